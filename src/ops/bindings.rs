//! The host's bindings checked against the shaders: for every kernel an op may launch, naga reads
//! the entry point's WGSL and lists the buffers it uses. Each must be declared by the host with
//! the same access (binding 0 the uniform `Params`, storage buffers read-only or read-write as
//! the shader declares them), and the host's parameter block must hold the whole of the
//! shader's `Params` struct (within one arena slot). A mismatch fails here instead of as a GPU validation error at run time.

use std::collections::{BTreeMap, HashMap};

use naga::valid::{Capabilities, ValidationFlags, Validator};

use crate::gpu::pipelines::{Kernel, ModuleRef, Slot};
use crate::layout::DType;
use crate::wgsl::Shader;

/// How the shader uses one binding of group 0.
#[derive(Debug, PartialEq, Eq)]
enum Use {
    /// The `Params` block: its size and its members' names and types, in order.
    Uniform {
        bytes: u32,
        fields: Vec<(String, String)>,
    },
    Storage {
        writable: bool,
    },
}

/// The members of a uniform struct as (name, WGSL scalar type).
fn members(module: &naga::Module, ty: naga::Handle<naga::Type>) -> Vec<(String, String)> {
    let naga::TypeInner::Struct { members, .. } = &module.types[ty].inner else {
        return Vec::new();
    };
    members
        .iter()
        .map(|m| {
            let ty = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar::U32) => "u32",
                naga::TypeInner::Scalar(naga::Scalar::I32) => "i32",
                naga::TypeInner::Scalar(naga::Scalar::F32) => "f32",
                _ => "other",
            };
            (m.name.clone().unwrap_or_default(), ty.to_string())
        })
        .collect()
}

fn parse(module: ModuleRef) -> (naga::Module, naga::valid::ModuleInfo) {
    let composed = [DType::F32, DType::F16]
        .into_iter()
        .find_map(|t| (module.compose)(module.name, t))
        .expect("every family is built for f32 or f16");
    let parsed = naga::front::wgsl::parse_str(&composed.source)
        .unwrap_or_else(|e| panic!("{}: {e}", module.name));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&parsed)
        .unwrap_or_else(|e| panic!("{}: {e}", module.name));
    (parsed, info)
}

/// The bindings of group 0 that `entry` uses, by binding number.
fn used_bindings(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
) -> BTreeMap<u32, Use> {
    let index = module
        .entry_points
        .iter()
        .position(|ep| ep.name == entry)
        .unwrap_or_else(|| panic!("no entry point {entry}"));
    let function = info.get_entry_point(index);
    let mut used = BTreeMap::new();
    for (handle, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else {
            continue;
        };
        if function[handle].is_empty() {
            continue;
        }
        assert_eq!(binding.group, 0, "{entry}: only group 0 is bound");
        let what = match var.space {
            naga::AddressSpace::Uniform => Use::Uniform {
                bytes: module.types[var.ty].inner.size(module.to_ctx()),
                fields: members(module, var.ty),
            },
            naga::AddressSpace::Storage { access } => Use::Storage {
                writable: access.contains(naga::StorageAccess::STORE),
            },
            other => panic!("{entry}: binding {} in {other:?}", binding.binding),
        };
        // Two views of one binding (e.g. `x1` and `x4`) must agree on the access.
        if let Some(before) = used.insert(binding.binding, what) {
            assert_eq!(
                Some(&before),
                used.get(&binding.binding),
                "{entry}: binding {} is declared twice with different access",
                binding.binding
            );
        }
    }
    used
}

/// Every entry point of every module the crate composes is one some op launches (the ops'
/// kernel tables, `launched_kernels`), and every kernel an op launches is an entry point of its
/// module: a kernel added to a shader and forgotten by the host, or renamed in one place only,
/// fails here.
#[test]
fn every_entry_point_is_launched_and_every_launch_names_one() {
    let launched: std::collections::BTreeSet<(&str, &str)> = super::launched_kernels()
        .into_iter()
        .map(|(k, _)| (k.module.name, k.entry))
        .collect();
    let mut declared = std::collections::BTreeSet::new();
    for shader in Shader::ALL {
        let (module, _) = parse(shader.module());
        for ep in &module.entry_points {
            declared.insert((shader.name(), ep.name.clone()));
        }
    }
    let unlaunched: Vec<String> = declared
        .iter()
        .filter(|(m, e)| !launched.contains(&(*m, e.as_str())))
        .map(|(m, e)| format!("{m}::{e}"))
        .collect();
    assert!(
        unlaunched.is_empty(),
        "entry points no op launches: {unlaunched:?}"
    );
    let undeclared: Vec<String> = launched
        .iter()
        .filter(|(m, e)| !declared.contains(&(*m, e.to_string())))
        .map(|(m, e)| format!("{m}::{e}"))
        .collect();
    assert!(
        undeclared.is_empty(),
        "launched kernels no module declares: {undeclared:?}"
    );
}

#[test]
fn every_launched_kernel_binds_what_its_shader_declares() {
    let mut modules = HashMap::new();
    let kernels = super::launched_kernels();
    for (kernel, params) in kernels {
        let Kernel {
            module,
            entry,
            slots,
        } = kernel;
        let (parsed, info) = modules.entry(module).or_insert_with(|| parse(module));
        let used = used_bindings(parsed, info, entry);
        let name = format!("{}::{entry}", module.name);
        for (&binding, what) in &used {
            match what {
                Use::Uniform { bytes, fields } => {
                    assert_eq!(binding, 0, "{name}: the uniform block is binding 0");
                    // The copy kernel reads only the first field of the elementwise block.
                    let size = params.size;
                    assert!(
                        *bytes as usize <= size
                            && size as u64 <= crate::gpu::pipelines::PARAMS_SLOT,
                        "{name}: the shader's Params is {bytes} bytes, the host writes {size}"
                    );
                    // Field by field, in order: the shader's are the host's (or their start).
                    let host: Vec<(String, String)> = params
                        .fields
                        .iter()
                        .map(|(n, t)| (n.to_string(), t.to_string()))
                        .collect();
                    assert!(
                        !fields.is_empty() && host.starts_with(fields),
                        "{name}: the shader's Params {fields:?} is not the host's {host:?}"
                    );
                }
                Use::Storage { writable } => {
                    let declared = slots.iter().find(|s| match s {
                        Slot::Read(b) | Slot::ReadWrite(b) => *b == binding,
                    });
                    match declared {
                        Some(Slot::ReadWrite(_)) => assert!(
                            *writable,
                            "{name}: binding {binding} is read_write on the host, read-only in WGSL"
                        ),
                        Some(Slot::Read(_)) => assert!(
                            !writable,
                            "{name}: binding {binding} is read-only on the host, read_write in WGSL"
                        ),
                        None => {
                            panic!("{name}: uses binding {binding}, which the host never binds")
                        }
                    }
                }
            }
        }
        assert!(
            used.contains_key(&0),
            "{name}: reads no Params block, but the host binds one"
        );
    }
}

/// The test above must be able to fail: a host slot of the wrong access, and a params block
/// of the wrong size, are both caught.
#[test]
fn a_wrong_binding_or_params_size_is_caught() {
    let (module, info) = parse(Shader::Activation.module());
    let used = used_bindings(&module, &info, "forward");
    assert_eq!(used.get(&1), Some(&Use::Storage { writable: false }));
    assert_eq!(used.get(&3), Some(&Use::Storage { writable: true }));
    let Some(Use::Uniform { bytes, fields }) = used.get(&0) else {
        panic!("forward reads its Params");
    };
    assert_eq!(*bytes as usize, super::ElementwiseParams::LAYOUT.size);
    // A field out of order on either side would differ here.
    let host: Vec<(String, String)> = super::ElementwiseParams::LAYOUT
        .fields
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(fields, &host);
    let mut swapped = host.clone();
    swapped.swap(1, 2);
    assert!(!swapped.starts_with(fields));
    // The softmax block is larger than the elementwise one: a host that wrote the elementwise
    // block for a softmax kernel would fail the size check.
    let (module, info) = parse(Shader::Softmax.module());
    let Some(Use::Uniform { bytes, .. }) = used_bindings(&module, &info, "forward_rows").remove(&0)
    else {
        panic!("forward_rows reads its Params");
    };
    assert!(bytes as usize > super::ElementwiseParams::LAYOUT.size);
}
