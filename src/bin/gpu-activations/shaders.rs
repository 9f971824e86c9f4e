//! `gpu-activations shaders --dump DIR`: every WGSL module exactly as the crate composes it, one
//! file per kernel family and storage type, and the pipelines it builds (entry points and
//! override constants) while running `check` on the chosen adapter, for another compiler to
//! take (Tint in a browser, a driver's own).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use gpu_activations::DType;
use gpu_activations::wgsl;

use crate::BackendArg;

#[derive(Args)]
pub struct ShadersArgs {
    /// Write the modules to this directory (created if missing), as FAMILY.STORAGE.wgsl, with
    /// pipelines.json listing the pipelines.
    #[arg(long, value_name = "DIR")]
    dump: PathBuf,
    /// Skip running `check` (pipelines.json then lists each entry point with no constants).
    #[arg(long)]
    modules_only: bool,
    #[command(flatten)]
    backend: BackendArg,
}

/// The file a module is written to: FAMILY.STORAGE.wgsl.
pub fn module_file(name: &str, storage: DType) -> String {
    format!("{name}.{}.wgsl", storage.name())
}

pub fn run(args: &ShadersArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&args.dump)?;
    let mut modules = Vec::new();
    for module in wgsl::modules() {
        let file = module_file(module.name, module.storage);
        std::fs::write(args.dump.join(&file), module.source())?;
        modules.push(serde_json::json!({
            "family": module.name,
            "storage": module.storage.name(),
            "file": file,
            "files": module.files(),
            "subgroups": module.requires_subgroups,
        }));
    }
    let mut pipelines = Vec::new();
    if !args.modules_only {
        let ctx = args.backend.context()?;
        let failed = crate::check::count_failures(&ctx)?;
        for p in ctx.pipelines_built()? {
            let constants: serde_json::Map<String, serde_json::Value> = p
                .constants
                .iter()
                .map(|&(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect();
            pipelines.push(serde_json::json!({
                "file": module_file(p.module, p.storage),
                "entry": p.entry,
                "constants": constants,
            }));
        }
        say!(
            "ran check on {} ({failed} failed): {} pipelines",
            ctx.adapter_info(),
            pipelines.len()
        );
    }
    let manifest = serde_json::json!({ "modules": modules, "pipelines": pipelines });
    std::fs::write(
        args.dump.join("pipelines.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    say!("wrote {} modules to {}", modules.len(), args.dump.display());
    Ok(ExitCode::SUCCESS)
}
