//! Every shader parses, validates, and translates to SPIR-V (Vulkan), MSL (Metal), HLSL
//! (DX12) and GLSL (GL), entry point by entry point, so that a back end's breakage shows here
//! without its machine. Needs no GPU.

use gpu_activations::wgsl::{self, Module};
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn parse(m: &Module) -> (naga::Module, naga::valid::ModuleInfo) {
    let name = format!("{} ({})", m.name, m.storage);
    let module = naga::front::wgsl::parse_str(m.source())
        .unwrap_or_else(|e| panic!("{name}: {}", m.relabel(&e.emit_to_string(m.source()))));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", m.relabel(&e.emit_to_string(m.source()))));
    (module, info)
}

#[test]
fn every_shader_validates_and_translates_to_every_backend_language() {
    let all = wgsl::modules();
    assert!(all.len() >= 29, "{} modules", all.len());
    let spirv = SpirvFiles::new();
    for m in &all {
        let (module, info) = parse(m);
        assert!(
            !module.entry_points.is_empty(),
            "{}.wgsl has no entry point",
            m.name
        );
        for ep in &module.entry_points {
            let name = format!("{}::{} ({})", m.name, ep.name, m.storage);
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{name}");
            // Resolve the override constants to their defaults, as a pipeline would.
            let (module, info) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((ep.stage, &ep.name)),
                &Default::default(),
            )
            .unwrap_or_else(|e| panic!("{name}: overrides: {e}"));

            // SPIR-V 1.3 (Vulkan 1.1), which the subgroup operations need.
            let spv_options = spv::Options {
                lang_version: (1, 3),
                ..Default::default()
            };
            let spv_pipeline = spv::PipelineOptions {
                shader_stage: ep.stage,
                entry_point: ep.name.clone(),
            };
            let words = spv::write_vec(&module, &info, &spv_options, Some(&spv_pipeline))
                .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));
            assert_eq!(words.first(), Some(&0x0723_0203), "{name}: SPIR-V magic");
            spirv.add(&name, &words);

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
            if m.requires_subgroups {
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

/// The SPIR-V naga writes for every entry point, kept in a temporary directory and validated
/// by Khronos' `spirv-val` (Debian's spirv-tools) when dropped: a module naga accepts but the
/// SPIR-V rules do not (which a Vulkan driver may then reject or miscompile) fails here.
struct SpirvFiles {
    dir: tempfile::TempDir,
    files: std::cell::RefCell<Vec<(String, std::path::PathBuf)>>,
}

impl SpirvFiles {
    fn new() -> SpirvFiles {
        SpirvFiles {
            dir: tempfile::tempdir().unwrap(),
            files: Default::default(),
        }
    }

    fn add(&self, name: &str, words: &[u32]) {
        let mut files = self.files.borrow_mut();
        let path = self.dir.path().join(format!("{}.spv", files.len()));
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap();
        files.push((name.to_string(), path));
    }
}

impl Drop for SpirvFiles {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let files = self.files.borrow();
        let probe = std::process::Command::new("spirv-val")
            .arg("--version")
            .output();
        if probe.is_err() {
            let required = std::env::var("GPU_ACTIVATIONS_REQUIRE_ADAPTER").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "spirv-val is missing (apt-get install spirv-tools; scripts/setup.sh does with \
                 GPU_ACTIVATIONS_SETUP=test)"
            );
            eprintln!(
                "SKIP: spirv-val not found; {} SPIR-V modules not validated",
                files.len()
            );
            return;
        }
        let mut failures = Vec::new();
        for (name, path) in files.iter() {
            let out = std::process::Command::new("spirv-val")
                .args(["--target-env", "vulkan1.1"])
                .arg(path)
                .output()
                .unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{name}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        assert!(files.len() >= 150, "{} SPIR-V modules", files.len());
        assert!(failures.is_empty(), "spirv-val:\n{}", failures.join("\n"));
    }
}

/// The check above can fail: spirv-val rejects a module that breaks a SPIR-V rule.
#[test]
fn spirv_val_rejects_invalid_spirv() {
    if std::process::Command::new("spirv-val")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    let m = wgsl::module("copy", gpu_activations::DType::F32).unwrap();
    let module = naga::front::wgsl::parse_str(m.source()).unwrap();
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap();
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, "copy")),
        &Default::default(),
    )
    .unwrap();
    let mut words = spv::write_vec(&module, &info, &spv::Options::default(), None).unwrap();
    // The id bound (word 3) below the ids the module uses breaks the rule every id obeys.
    words[3] = 2;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.spv");
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("spirv-val")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "spirv-val accepted a broken module");
}

#[test]
fn every_file_states_its_formula_in_a_header_comment() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        let header: Vec<&str> = source.lines().take_while(|l| l.starts_with("//")).collect();
        assert!(
            !header.is_empty() && header.iter().any(|l| l.contains('=')),
            "{} should open with a comment giving its formula",
            path.display()
        );
        files += 1;
    }
    assert!(files >= 30, "{files} files");
}

/// Every module is composed of the files its root imports, transitively, each once, with the
/// generated prelude; a file in shaders/ that no module uses is a mistake.
#[test]
fn modules_are_composed_from_their_imports() {
    let all = wgsl::modules();
    let softmax = all
        .iter()
        .find(|m| m.name == "softmax_subgroup" && m.storage == gpu_activations::DType::F16)
        .unwrap();
    assert_eq!(
        softmax.files(),
        [
            "softmax_subgroup",
            "softmax",
            "online_softmax",
            "special",
            "grid",
            "softmax_subgroup_rows",
            "row_cache",
            "row_reduce_subgroup",
            "prelude",
            "storage_f16"
        ]
    );
    assert!(softmax.requires_subgroups);
    let shared = all.iter().find(|m| m.name == "softmax_shared").unwrap();
    assert!(!shared.requires_subgroups);
    assert!(!shared.files().contains(&"row_reduce_subgroup"));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(
            all.iter().any(|m| m.files().contains(&stem.as_str())),
            "shaders/{stem}.wgsl is in no module"
        );
    }
}

/// A compiler's message about a composed module points at the file and line it came from.
#[test]
fn a_compiler_error_points_at_the_file_and_line_it_came_from() {
    let m = wgsl::module("activation", gpu_activations::DType::BF16).unwrap();
    // Break one line of math.wgsl inside the composed source, and find it again.
    let (number, _) = m
        .source()
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("fn log1p_unit"))
        .unwrap();
    let (file, line) = m.locate(number + 1).unwrap();
    assert_eq!(file, "math");
    let in_file = include_str!("../shaders/math.wgsl")
        .lines()
        .position(|l| l.starts_with("fn log1p_unit"))
        .unwrap();
    assert_eq!(line, in_file + 1);
    let broken: String = m
        .source()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == number {
                "fn log1p_unit(e: V) -> V { return e +; }"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let error = naga::front::wgsl::parse_str(&broken).unwrap_err();
    let message = m.relabel(&error.emit_to_string(&broken));
    assert!(
        message.contains(&format!("math.wgsl:{}:", in_file + 1)),
        "{message}"
    );
    // Lines of the generated prelude say so.
    let (number, _) = m
        .source()
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("const IGNORED"))
        .unwrap();
    assert_eq!(m.locate(number + 1).map(|(f, _)| f), Some("prelude"));
}
