//! The library's layering is one-way: a module uses only modules below it (the README's layout
//! section lists the same layers). Read from the sources, so that a new import upwards fails
//! here. Needs no GPU.

use std::path::Path;

/// The layers, top to bottom; modules on one line are siblings that do not use each other.
const LAYERS: &[&[&str]] = &[
    &["ops"],
    &["tensor"],
    &["context"],
    &["wgsl"],
    &["gpu"],
    &["cpu", "cases"],
    &["definitions"],
    &["accuracy"],
    &["layout", "npy"],
    &["error"],
];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| {
            panic!("module {module} is in no layer: add it to LAYERS and the README")
        })
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `crate::…` names in the code of `text` (comments left out).
fn uses(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn no_module_uses_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut checked = 0;
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "bin" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for used in uses(&text) {
            if used == module {
                continue;
            }
            assert!(
                layer(&used) > layer(&module),
                "{} uses crate::{used}, which is not below {module}",
                relative.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} imports seen");
}

#[test]
fn an_upward_import_would_be_seen() {
    assert_eq!(
        uses("use crate::ops::rows::RowPlan; // crate::tensor"),
        ["ops"]
    );
    assert!(layer("ops") < layer("gpu"));
}
