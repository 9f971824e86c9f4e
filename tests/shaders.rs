//! Every shader parses, validates, and translates to SPIR-V (Vulkan), MSL (Metal), HLSL
//! (DX12) and GLSL (GL), entry point by entry point, so that a back end's breakage shows here
//! without its machine. Needs no GPU.

use gpu_activations::{DType, Shader};
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn parse(shader: Shader, storage: DType) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = shader.source_for(storage).unwrap();
    let module = naga::front::wgsl::parse_str(&source)
        .unwrap_or_else(|e| panic!("{}.wgsl: {}", shader.name(), e.emit_to_string(&source)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}.wgsl: {}", shader.name(), e.emit_to_string(&source)));
    (module, info)
}

/// Every family with every storage type it is built for.
fn every_module() -> Vec<(Shader, DType)> {
    let mut all = Vec::new();
    for shader in Shader::ALL {
        all.push((shader, DType::F32));
        if shader.has_half_storage() {
            all.extend([(shader, DType::F16), (shader, DType::BF16)]);
        } else {
            assert!(shader.source_for(DType::F16).is_none(), "{}", shader.name());
        }
    }
    all
}

#[test]
fn every_shader_validates_and_translates_to_every_backend_language() {
    for (shader, storage) in every_module() {
        let (module, info) = parse(shader, storage);
        assert!(
            !module.entry_points.is_empty(),
            "{}.wgsl has no entry point",
            shader.name()
        );
        for ep in &module.entry_points {
            let name = format!("{}::{} ({storage})", shader.name(), ep.name);
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{name}");
            // Resolve the override constants to their defaults, as a pipeline would.
            let (module, info) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((ep.stage, &ep.name)),
                &Default::default(),
            )
            .unwrap_or_else(|e| panic!("{name}: overrides: {e}"));

            let spv_options = spv::Options::default();
            let spv_pipeline = spv::PipelineOptions {
                shader_stage: ep.stage,
                entry_point: ep.name.clone(),
            };
            let words = spv::write_vec(&module, &info, &spv_options, Some(&spv_pipeline))
                .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));
            assert_eq!(words.first(), Some(&0x0723_0203), "{name}: SPIR-V magic");

            let msl_options = msl::Options {
                lang_version: (2, 4),
                ..Default::default()
            };
            let msl_pipeline = msl::PipelineOptions {
                entry_point: Some((ep.stage, ep.name.clone())),
                ..Default::default()
            };
            let (metal, _) = msl::write_string(&module, &info, &msl_options, &msl_pipeline)
                .unwrap_or_else(|e| panic!("{name}: MSL: {e}"));
            assert!(metal.contains("kernel"), "{name}: MSL has no kernel");

            let hlsl_options = hlsl::Options {
                shader_model: hlsl::ShaderModel::V6_0,
                ..Default::default()
            };
            let hlsl_pipeline = hlsl::PipelineOptions {
                entry_point: Some((ep.stage, ep.name.clone())),
            };
            let mut text = String::new();
            hlsl::Writer::new(&mut text, &hlsl_options, &hlsl_pipeline)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{name}: HLSL: {e}"));
            assert!(
                text.contains("numthreads"),
                "{name}: HLSL has no numthreads"
            );

            // wgpu's GL backend offers no subgroups, so modules that use them never run there.
            if shader.needs_subgroups() {
                continue;
            }
            let glsl_options = glsl::Options {
                version: glsl::Version::new_gles(310),
                ..Default::default()
            };
            let glsl_pipeline = glsl::PipelineOptions {
                shader_stage: ep.stage,
                entry_point: ep.name.clone(),
                multiview: None,
            };
            let mut text = String::new();
            glsl::Writer::new(
                &mut text,
                &module,
                &info,
                &glsl_options,
                &glsl_pipeline,
                naga::proc::BoundsCheckPolicies::default(),
            )
            .and_then(|mut w| w.write())
            .unwrap_or_else(|e| panic!("{name}: GLSL: {e}"));
            assert!(
                text.contains("local_size_x"),
                "{name}: GLSL has no local size"
            );
        }
    }
}

#[test]
fn every_shader_states_its_formula_in_a_header_comment() {
    for shader in Shader::ALL {
        let source = shader.source();
        let header: Vec<&str> = source.lines().take_while(|l| l.starts_with("//")).collect();
        assert!(
            !header.is_empty() && header.iter().any(|l| l.contains('=')),
            "{}.wgsl should open with a comment giving its formula",
            shader.name()
        );
    }
}
