//! `gpu-activations`: run the crate's ops on .npy files, check them against the CPU
//! reference, benchmark them against the adapter's copy ceiling, and demo the whole path.

mod demo;
mod info;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gpu_activations::{Backend, Context, ContextOptions};

#[derive(Parser)]
#[command(name = "gpu-activations", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter, say which one is chosen and why, and show the limits that matter.
    #[command(after_help = "Example:\n  gpu-activations info --backend gl")]
    Info(info::InfoArgs),
    /// Run activations, softmax and the fused cross-entropy on a built-in batch and compare
    /// with the CPU reference.
    #[command(after_help = "Example:\n  gpu-activations demo --rows 4096 --cols 1000")]
    Demo(demo::DemoArgs),
}

/// The `--backend` option every subcommand takes.
#[derive(Args, Clone, Debug)]
pub struct BackendArg {
    /// auto, vulkan, metal, dx12, gl or cpu (auto: hardware first, then software, then CPU).
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    pub backend: BackendChoice,
}

/// A parsed `--backend` value: `None` is auto.
#[derive(Clone, Debug)]
pub struct BackendChoice(pub Option<Backend>);

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    Backend::parse_choice(s)
        .map(BackendChoice)
        .map_err(|e| e.to_string())
}

impl BackendArg {
    /// The context the user asked for.
    pub fn context(&self) -> gpu_activations::Result<Context> {
        Context::with_options(ContextOptions {
            backend: self.backend.0,
            ..Default::default()
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(&args),
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gpu-activations: {e}");
            ExitCode::FAILURE
        }
    }
}
