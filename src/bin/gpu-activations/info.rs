//! `gpu-activations info`: adapters, the choice, and the limits that matter.

use std::process::ExitCode;

use clap::Args;
use gpu_activations::Context;

use crate::BackendArg;

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    backend: BackendArg,
}

pub fn run(args: &InfoArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use gpu_activations::wgpu::Features;
    say!("Adapters found:");
    say!(
        "  {:<8} {:<14} {:<36} {:<10} {:<4} driver",
        "backend",
        "type",
        "name",
        "subgroups",
        "f16"
    );
    let yes = |f: Features, which: Features| if f.contains(which) { "yes" } else { "no" };
    for a in Context::adapters() {
        say!(
            "  {:<8} {:<14} {:<36} {:<10} {:<4} {}",
            a.backend.name(),
            format!("{:?}", a.device_type),
            a.name,
            yes(a.features, Features::SUBGROUP),
            yes(a.features, Features::SHADER_F16),
            format!("{} {}", a.driver, a.driver_info).trim()
        );
    }
    let ctx = args.backend.context()?;
    say!();
    say!("Chosen: {}", ctx.adapter_info());
    say!("Why:    {}", ctx.selection_reason());
    if let Some(l) = ctx.limits() {
        say!();
        say!("Limits and features that matter:");
        let rows: [(&str, String); 8] = [
            (
                "max_storage_buffer_binding_size",
                l.max_storage_buffer_binding_size.to_string(),
            ),
            ("max_buffer_size", l.max_buffer_size.to_string()),
            (
                "max_compute_workgroups_per_dimension",
                l.max_compute_workgroups_per_dimension.to_string(),
            ),
            (
                "max_compute_invocations_per_workgroup",
                l.max_compute_invocations_per_workgroup.to_string(),
            ),
            (
                "max_compute_workgroup_storage_size",
                l.max_compute_workgroup_storage_size.to_string(),
            ),
            (
                "min_storage_buffer_offset_alignment",
                l.min_storage_buffer_offset_alignment.to_string(),
            ),
            (
                "subgroups (used for row reductions)",
                ctx.uses_subgroups().to_string(),
            ),
            (
                "shader-f16 (adapter)",
                ctx.adapter_info()
                    .features
                    .contains(Features::SHADER_F16)
                    .to_string(),
            ),
        ];
        for (k, v) in rows {
            say!("  {k:<40} {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
