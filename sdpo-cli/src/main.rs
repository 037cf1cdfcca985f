//! The `sdpo` command-line trainer.
//!
//! The `train`, `eval`, `generate`, `inspect` and `export` commands land with
//! issue 5; until then every command explains that and exits with status 2.
use clap::Parser;

/// SDPO (Self-Distilled Policy Optimization) for language models.
#[derive(Parser, Debug)]
#[command(name = "sdpo", version, about)]
struct Cli {
    /// The command and its arguments (`train`, `eval`, `generate`, `inspect`, `export`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    let command = cli.args.first().map(String::as_str).unwrap_or("train");
    eprintln!(
        "sdpo {command}: not built yet. The library crates (sdpo-core, sdpo-models) work today; \
         the trainer and the `train`, `eval`, `generate`, `inspect` and `export` commands come next (see README)."
    );
    std::process::exit(2);
}
