//! The `sdpo` command-line trainer: `train`, `eval`, `generate`, `inspect`, `export` (the
//! commands live in the `sdpo_cli` library).
#![warn(missing_docs)]

use clap::{Parser, Subcommand};

use sdpo_cli::backend::{dispatch, ensure_compiled, BackendKind};
use sdpo_cli::commands::compare::{compare, CompareArgs};
use sdpo_cli::commands::eval::{Eval, EvalArgs};
use sdpo_cli::commands::export::{Export, ExportArgs};
use sdpo_cli::commands::generate::{Generate, GenerateArgs};
use sdpo_cli::commands::inspect::{Inspect, InspectArgs};
use sdpo_cli::commands::train::{train, TrainArgs};
use sdpo_cli::error::{report, CliError};
use sdpo_cli::models::ModelRef;

/// SDPO (Self-Distilled Policy Optimization) for language models, on Burn.
///
/// `sdpo train` with no arguments runs the built-in job: a small model learns to sort digits on
/// the CPU, with a before/after table and a run folder (metrics, plot, checkpoints).
#[derive(Parser, Debug)]
#[command(name = "sdpo", version, propagate_version = true)]
struct Cli {
    /// Compute backend: flex or ndarray (CPU, both in the default build), wgpu or cuda (cargo
    /// features of the same names). Default: the config's `backend`, else flex.
    #[arg(long, global = true, value_enum)]
    backend: Option<BackendKind>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model with SDPO (or GRPO); with no CONFIG, the built-in job.
    Train(TrainArgs),
    /// Compare training settings fairly: one shared start, a learning-rate sweep, several
    /// seeds; held-out success, its area under the curve and the teacher's readings.
    Compare(CompareArgs),
    /// Measure pass@k and mean reward of a model on a task or dataset.
    Eval(EvalArgs),
    /// Complete one prompt (chat template applied).
    Generate(GenerateArgs),
    /// Show a model's architecture, size, tokenizer and chat template.
    Inspect(InspectArgs),
    /// Write a model (a run's latest checkpoint, LoRA merged) as a Hugging Face folder.
    Export(ExportArgs),
}

fn backend_or_default(flag: Option<BackendKind>) -> Result<BackendKind, CliError> {
    let kind = flag.unwrap_or_default();
    ensure_compiled(kind)?;
    Ok(kind)
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Train(args) => train(args, cli.backend),
        Command::Compare(args) => compare(args, cli.backend),
        Command::Eval(args) => {
            let kind = backend_or_default(cli.backend)?;
            let report = dispatch(kind, Eval::prepare(args)?)?;
            println!("{report}");
            Ok(())
        }
        Command::Generate(args) => {
            let kind = backend_or_default(cli.backend)?;
            let model = ModelRef::parse(&args.model)?;
            let text = dispatch(kind, Generate { model, args })?;
            println!("{text}");
            Ok(())
        }
        Command::Inspect(args) => {
            let kind = backend_or_default(cli.backend)?;
            let text = dispatch(kind, Inspect(ModelRef::parse(&args.model)?))?;
            print!("{text}");
            Ok(())
        }
        Command::Export(args) => {
            let kind = backend_or_default(cli.backend)?;
            let model = ModelRef::parse(&args.model)?;
            let line = dispatch(
                kind,
                Export {
                    model,
                    out_dir: args.out_dir,
                },
            )?;
            println!("{line}");
            Ok(())
        }
    }
}

/// Log lines of the GPU runtimes go to stderr: cubecl names the adapter wgpu picked (e.g.
/// `llvmpipe` on Mesa's software Vulkan driver) when the first tensor is created. `RUST_LOG`
/// overrides the filter (e.g. `RUST_LOG=warn` to silence it, `RUST_LOG=debug` for more).
fn init_logging() {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("cubecl_wgpu=info,cubecl_cuda=info"),
    )
    .format_timestamp(None)
    .init();
}

fn main() {
    // Before anything uses rayon: the main thread works in the CPU kernels' pool.
    let pool = sdpo_core::threads::adopt_calling_thread();
    init_logging();
    if let Err(e) = pool {
        eprintln!("warning: the main thread could not join the CPU thread pool: {e}");
    }
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("{}", report(&e));
        std::process::exit(e.exit_code());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
