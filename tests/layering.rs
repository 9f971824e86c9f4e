//! The library's layering is one-way: a module uses only modules below it (the README's layout
//! section lists the same layers). Read from the sources — `crate::` and `super::` paths in
//! every form (grouped imports, the root's re-exports), comments and strings left out — so
//! that a new import upwards fails here. Needs no GPU.

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
    &["dtype"],
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

/// The code of `text` without its comments (line comments, doc comments and block comments).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else if let Some(after) = rest.strip_prefix('"') {
            // A string literal: skipped whole (it may hold `//`).
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            out.push_str("\"\"");
            rest = &after[end.min(after.len())..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The first segments of the paths a `{ … }` group starting at `text` names, with what follows.
fn group(text: &str) -> Vec<String> {
    let mut depth = 0;
    let mut entries = vec![String::new()];
    for c in text.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => {
                entries.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = entries.last_mut() {
            last.push(c);
        }
    }
    entries
        .into_iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// The path segments right after each `crate::` (or after enough `super::` to reach the crate
/// root from a file `depth` modules deep) in `text`: `crate::ops::x` gives `ops`, a group
/// `crate::{a::X, b}` gives `a` and `b`, `crate::DType` gives `DType` (a re-export).
fn roots(text: &str, depth: usize) -> Vec<String> {
    let code = code(text);
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let at_word_start =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &code[i..];
        let prefix = if at_word_start && rest.starts_with("crate::") {
            Some("crate::".len())
        } else if at_word_start && rest.starts_with("super::") {
            let mut n = 0;
            let mut r = rest;
            while let Some(after) = r.strip_prefix("super::") {
                n += 1;
                r = after;
            }
            (n >= depth).then_some(rest.len() - r.len())
        } else {
            None
        };
        let Some(skip) = prefix else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let path = &rest[skip..];
        if path.starts_with('{') {
            for entry in group(path) {
                let name: String = entry
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push(name);
            }
        } else {
            let name: String = path
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
        i += skip;
    }
    found
        .into_iter()
        .filter(|n| !n.is_empty() && n != "self")
        .collect()
}

/// The library root's re-exports: item name → the top-level module it comes from.
fn reexports(lib: &str) -> Vec<(String, String)> {
    let mut map = Vec::new();
    let code = code(lib);
    for statement in code.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module: String = path
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let items = match path.find('{') {
            Some(i) => group(&path[i..]),
            None => vec![path.rsplit("::").next().unwrap_or("").to_string()],
        };
        for item in items {
            let name = item.rsplit("::").next().unwrap_or("").trim().to_string();
            map.push((name, module.clone()));
        }
    }
    map
}

/// The top-level modules the code of `text` uses, through `crate::`, `super::` or the root's
/// re-exports, from a file `depth` modules below the root (src/x.rs or src/x/mod.rs: 1).
fn uses_at(text: &str, depth: usize, reexported: &[(String, String)]) -> Vec<String> {
    roots(text, depth)
        .into_iter()
        .map(|name| {
            if name.chars().next().is_some_and(char::is_uppercase) {
                reexported
                    .iter()
                    .find(|(item, _)| *item == name)
                    .map_or(name.clone(), |(_, module)| module.clone())
            } else {
                name
            }
        })
        .filter(|name| name.chars().next().is_some_and(char::is_lowercase))
        .collect()
}

#[test]
fn no_module_uses_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let reexported = reexports(&lib);
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut checked = 0;
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let parts: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let module = parts[0].trim_end_matches(".rs").to_string();
        if module == "lib" || module == "bin" {
            continue;
        }
        // How many `super::` reach the crate root: src/x.rs and src/x/mod.rs are one module
        // deep, src/x/y.rs two, src/x/y/mod.rs two.
        let depth = parts.len() - usize::from(parts.last().is_some_and(|p| p == "mod.rs"));
        let text = std::fs::read_to_string(&file).unwrap();
        for used in uses_at(&text, depth, &reexported) {
            if used == module || used == "wgpu" {
                continue;
            }
            assert!(
                layer(&used) > layer(&module),
                "{} uses {used}, which is not below {module}",
                relative.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} imports seen");
}

#[test]
fn an_upward_import_would_be_seen_in_every_form() {
    let reexported = reexports("pub use tensor::Tensor;\npub use dtype::{DType, Other};");
    assert_eq!(
        uses_at(
            "use crate::ops::rows::RowPlan; // crate::tensor",
            1,
            &reexported
        ),
        ["ops"]
    );
    // A re-export of the root, a group, and `super::` from a file two modules deep.
    assert_eq!(
        uses_at("fn f(x: crate::Tensor) {}", 1, &reexported),
        ["tensor"]
    );
    assert_eq!(
        uses_at(
            "use crate::{gpu::Gpu, layout::{self, VEC4}};",
            1,
            &reexported
        ),
        ["gpu", "layout"]
    );
    assert_eq!(
        uses_at("use super::super::context::X;", 2, &reexported),
        ["context"]
    );
    assert!(uses_at("use super::rows::RowPlan;", 2, &reexported).is_empty());
    assert_eq!(
        uses_at("pub(crate) use crate::DType;", 1, &reexported),
        ["dtype"]
    );
    // Not in strings or comments.
    assert!(uses_at("let s = \"crate::ops\"; /* crate::ops */", 1, &reexported).is_empty());
    assert!(layer("ops") < layer("gpu"));
    assert!(layer("error") < layer("dtype"));
}
