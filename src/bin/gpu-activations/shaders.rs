//! `gpu-activations shaders --dump DIR`: every WGSL module exactly as the crate composes it, one
//! file per kernel family and storage type, and the pipelines it builds (entry points and
//! override constants) while running `check` on the chosen adapter, for another compiler to
//! take (Tint in a browser, a driver's own).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use gpu_activations::wgsl;
use gpu_activations::{Context, ContextOptions, DType, Subgroups};

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
        // The adapter as chosen, and again with subgroups off where it has them (a browser's
        // WebGPU offers none to wgpu today): the pipelines of both reduction paths.
        let ctx = args.backend.context()?;
        let mut contexts = vec![ctx.clone()];
        if ctx.uses_subgroups() {
            contexts.push(Context::with_options(ContextOptions {
                subgroups: Subgroups::Off,
                adapter: Some(ctx.adapter_info().name.clone()),
                backend: Some(ctx.backend()),
                ..args.backend.options()
            })?);
        }
        let mut failed = 0;
        let mut seen = std::collections::BTreeSet::new();
        for c in &contexts {
            failed += crate::check::count_failures(c)?;
            for p in c.pipelines_built()? {
                let constants: serde_json::Map<String, serde_json::Value> = p
                    .constants
                    .iter()
                    .map(|&(k, v)| (k.to_string(), serde_json::json!(v)))
                    .collect();
                let entry = serde_json::json!({
                    "file": module_file(p.module, p.storage),
                    "entry": p.entry,
                    "constants": constants,
                });
                if seen.insert(entry.to_string()) {
                    pipelines.push(entry);
                }
            }
        }
        say!(
            "ran check on {} ({failed} failed, subgroups on and off): {} pipelines",
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
