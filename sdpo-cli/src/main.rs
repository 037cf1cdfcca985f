//! The `sdpo` command-line trainer.
use clap::Parser;

/// SDPO (Self-Distilled Policy Optimization) for language models.
#[derive(Parser, Debug)]
#[command(name = "sdpo", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("sdpo: the `train`, `eval`, `generate`, `inspect` and `export` commands are not built yet (issue 5).");
    std::process::exit(2);
}
