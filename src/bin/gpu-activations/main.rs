//! `gpu-activations`: run the crate's ops on .npy files, check them against the CPU
//! reference, benchmark them against the adapter's copy ceiling, demo the whole path, and draw
//! the activations, a training run and a benchmark.

/// `println!` that returns the write's error instead of panicking (a closed pipe, as with
/// `gpu-activations check | head`): `main` ends quietly on a broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

mod bench;
mod bench_linear;
mod chart;
mod check;
mod demo;
mod figures;
mod info;
mod plot;
mod registry;
mod run;
mod shaders;
mod sizes;
mod train;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gpu_activations::{Backend, Context, ContextOptions, MatmulKernel, RowStrategy};

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
    /// Apply one op to .npy files.
    #[command(
        after_help = "Examples:\n  gpu-activations run gelu --input x.npy --output y.npy\n  \
        gpu-activations run softmax-backward --input x.npy --grad-output g.npy --output dx.npy\n  \
        gpu-activations run cross-entropy --input logits.npy --targets labels.npy \\\n      \
        --label-smoothing 0.1 --output dlogits.npy --loss-output loss.npy"
    )]
    Run(Box<run::RunArgs>),
    /// Run every op, forward and backward, against the CPU reference and print a table.
    #[command(after_help = "Example:\n  gpu-activations check --backend vulkan")]
    Check(check::CheckArgs),
    /// Time the ops against the adapter's copy ceiling.
    #[command(
        after_help = "Examples:\n  gpu-activations bench --json bench.json\n  \
        gpu-activations bench --op softmax --op log-softmax --shape 4096,1024"
    )]
    Bench(bench::BenchArgs),
    /// Run activations, softmax and the fused cross-entropy on a built-in batch and compare
    /// with the CPU reference.
    #[command(after_help = "Example:\n  gpu-activations demo --rows 4096 --cols 1000")]
    Demo(demo::DemoArgs),
    /// Train the note's softmax or logistic regression on the handwritten digits.
    #[command(after_help = "Examples:\n  gpu-activations train\n  \
        gpu-activations train --model logistic --epochs 600 --backend vulkan")]
    Train(train::TrainArgs),
    /// Draw activations and their derivatives, computed on the adapter, to an SVG or PNG file.
    #[command(
        after_help = "Examples:\n  gpu-activations plot --output activations.svg\n  \
        gpu-activations plot gelu mish elu --range=-4,4 --output act.png --backend vulkan"
    )]
    Plot(plot::PlotArgs),
    /// Write every WGSL module as the crate composes it, and the pipelines it builds, for
    /// another shader compiler.
    #[command(after_help = "Example:\n  gpu-activations shaders --dump wgsl/")]
    Shaders(shaders::ShadersArgs),
}

/// The `--backend` option every subcommand takes.
#[derive(Args, Clone, Debug)]
pub struct BackendArg {
    /// auto, vulkan, metal, dx12, gl or cpu (auto: hardware first, then software, then CPU;
    /// metal is macOS's and iOS's, dx12 Windows's).
    /// Add `:NAME` to take only adapters whose name contains NAME (case-insensitive) where
    /// several share a backend, e.g. `vulkan:swiftshader` or `vulkan:llvmpipe` (`info` lists
    /// them).
    #[arg(long, default_value = "auto", value_parser = parse_backend, value_name = "BACKEND[:NAME]")]
    pub backend: BackendChoice,
    /// Which kernel covers a row in softmax and cross-entropy (for tuning; auto chooses by
    /// shape and adapter).
    #[arg(long, value_enum, default_value_t = RowKernelArg::Auto)]
    pub row_kernel: RowKernelArg,
    /// Which kernel forms the linear layer's matrix products (for tuning; auto: tiled on
    /// hardware, registers on software adapters).
    #[arg(long, value_enum, default_value_t = MatmulKernelArg::Auto)]
    pub matmul_kernel: MatmulKernelArg,
    /// The longest, in seconds, a read-back or synchronize waits for the adapter before failing
    /// (a large layer on a software adapter can take minutes).
    #[arg(long, default_value_t = 120.0, value_parser = parse_timeout)]
    pub timeout: f64,
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e6 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 1e6]")),
    }
}

/// A `--matmul-kernel` value.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum MatmulKernelArg {
    Auto,
    Tiled,
    Registers,
}

impl From<MatmulKernelArg> for MatmulKernel {
    fn from(arg: MatmulKernelArg) -> MatmulKernel {
        match arg {
            MatmulKernelArg::Auto => MatmulKernel::Auto,
            MatmulKernelArg::Tiled => MatmulKernel::Tiled,
            MatmulKernelArg::Registers => MatmulKernel::Registers,
        }
    }
}

/// A `--row-kernel` value: the row strategy, spelled for the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum RowKernelArg {
    Auto,
    PerRow,
    Segmented,
    Workgroup,
    Subgroup,
}

impl From<RowKernelArg> for RowStrategy {
    fn from(arg: RowKernelArg) -> RowStrategy {
        match arg {
            RowKernelArg::Auto => RowStrategy::Auto,
            RowKernelArg::PerRow => RowStrategy::PerRow,
            RowKernelArg::Segmented => RowStrategy::Segmented,
            RowKernelArg::Workgroup => RowStrategy::Workgroup,
            RowKernelArg::Subgroup => RowStrategy::Subgroup,
        }
    }
}

/// A parsed `--backend` value: the backend (`None`: auto) and an adapter name to match.
#[derive(Clone, Debug)]
pub struct BackendChoice {
    pub backend: Option<Backend>,
    pub adapter: Option<String>,
}

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    let (backend, adapter) = match s.split_once(':') {
        Some((b, name)) if !name.trim().is_empty() => (b, Some(name.trim().to_string())),
        Some((b, _)) => (b, None),
        None => (s, None),
    };
    let backend = Backend::parse_choice(backend).map_err(|e| e.to_string())?;
    if let Some(b) = backend
        && let Some(why) = not_on_this_system(b)
    {
        return Err(why);
    }
    Ok(BackendChoice { backend, adapter })
}

/// Why `backend` cannot serve on this system, if it cannot: which systems have it.
fn not_on_this_system(backend: Backend) -> Option<String> {
    let (name, systems, here) = match backend {
        Backend::Metal => ("metal", "macOS and iOS", cfg!(target_vendor = "apple")),
        Backend::Dx12 => ("dx12", "Windows", cfg!(target_os = "windows")),
        Backend::WebGpu => (
            "webgpu",
            "a browser (the library built for wasm32); the command line runs natively",
            cfg!(target_arch = "wasm32"),
        ),
        _ => return None,
    };
    (!here).then(|| {
        format!(
            "{name} is the backend of {systems}, not of this system ({}): choose vulkan, gl, cpu \
             or auto",
            std::env::consts::OS
        )
    })
}

impl BackendArg {
    /// The context the user asked for.
    pub fn context(&self) -> gpu_activations::Result<Context> {
        Context::with_options(self.options())
    }

    /// The options of the context the user asked for.
    pub fn options(&self) -> ContextOptions {
        ContextOptions {
            backend: self.backend.backend,
            adapter: self.backend.adapter.clone(),
            row_strategy: self.row_kernel.into(),
            matmul_kernel: self.matmul_kernel.into(),
            readback_timeout: std::time::Duration::from_secs_f64(self.timeout),
            ..Default::default()
        }
    }
}

fn main() -> ExitCode {
    quiet_window_system_warnings();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Plot(args) => plot::run(&args),
        Command::Shaders(args) => shaders::run(&args),
    };
    match result {
        Ok(code) => code,
        // The reader stopped reading (`| head`): nothing is left to say to anyone.
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpu-activations: {e}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Mesa's window-system code prints "XDG_RUNTIME_DIR is invalid or not set" on headless machines;
/// a private temporary directory silences it. Runs before any thread starts.
fn quiet_window_system_warnings() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join("gpu-activations-xdg");
    if std::fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}
