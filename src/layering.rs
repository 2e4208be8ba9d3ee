//! The top-level modules form layers: a module imports only modules of
//! lower layers, in the order `docs/ARCHITECTURE.md` draws. Computed from
//! the `crate::module` paths of the library's own code (unit tests and
//! comments left out), so a new import that goes up fails here, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layer picture of `docs/ARCHITECTURE.md`: its lines `N  a, b, c  text`,
/// as module → layer number.
fn layers_in_architecture() -> BTreeMap<String, u32> {
    let path = src().join("../docs/ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).expect("docs/ARCHITECTURE.md is readable");
    let block = text
        .split("```")
        .nth(1)
        .expect("ARCHITECTURE.md opens with the layer picture in a code block");
    let mut layers = BTreeMap::new();
    for line in block.lines() {
        let line = line.trim_start();
        let Some((number, rest)) = line.split_once("  ") else {
            continue;
        };
        let Ok(layer) = number.parse::<u32>() else {
            continue;
        };
        // The module names come first; two spaces start the description.
        let names = rest.trim_start().split("  ").next().unwrap_or_default();
        for name in names.split(',') {
            let name = name.trim().to_owned();
            assert!(
                layers.insert(name.clone(), layer).is_none(),
                "{name} is in two layers of the picture"
            );
        }
    }
    assert!(
        !layers.is_empty(),
        "no layer lines (`N  module, …`) in the picture"
    );
    layers
}

/// Source without `#[cfg(test)]` items and without comments. Relies on
/// rustfmt's layout: a test module's block ends at the first `}` in its
/// own column.
fn production_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            let indent = &line[..line.len() - trimmed.len()];
            i += 1;
            while i < lines.len() && lines[i].trim_start().starts_with("#[") {
                i += 1;
            }
            if i < lines.len() && lines[i].trim_end().ends_with('{') {
                let end = format!("{indent}}}");
                while i < lines.len() && lines[i] != end {
                    i += 1;
                }
            } else {
                while i < lines.len() && !lines[i].trim_end().ends_with([';', ',']) {
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        if !trimmed.starts_with("//") {
            let code = line.split(" // ").next().unwrap_or_default();
            out.push_str(code);
            out.push('\n');
        }
        i += 1;
    }
    out
}

/// The library's top-level modules, from `src/lib.rs`.
fn modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs is readable");
    production_code(&lib)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.to_owned())
        })
        .collect()
}

/// The files of module `name`, unit-test files left out.
fn files_of(name: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{name}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut files = Vec::new();
    let mut dirs = vec![src().join(name)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a module directory is readable") {
            let path = entry.expect("a readable entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                files.push(path);
            }
        }
    }
    files
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first segments of the `crate::` paths in `code`, `crate::{a, b::c}`
/// included.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphanumeric() || c == '_') => {
                        found.push(identifier(&group[i..]).to_owned());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(identifier(rest).to_owned());
        }
    }
    found
}

/// Module → the other top-level modules it names.
fn imports(modules: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    let mut root_paths = Vec::new();
    for module in modules {
        let mut deps = BTreeSet::new();
        for file in files_of(module) {
            let text = std::fs::read_to_string(&file).expect("a readable source file");
            for first in crate_paths(&production_code(&text)) {
                if modules.contains(&first) {
                    if &first != module {
                        deps.insert(first);
                    }
                } else {
                    root_paths.push(format!("{}: crate::{first}", rel(&file)));
                }
            }
        }
        graph.insert(module.clone(), deps);
    }
    assert!(
        root_paths.is_empty(),
        "name items by their module (crate::module::Item), so the graph sees the import: {root_paths:#?}"
    );
    graph
}

fn rel(path: &Path) -> String {
    path.strip_prefix(src())
        .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
}

#[test]
fn every_module_imports_only_modules_of_lower_layers_as_architecture_md_draws() {
    let layers = layers_in_architecture();
    let modules = modules();
    let pictured: BTreeSet<String> = layers.keys().cloned().collect();
    // `cli` is the binary's (src/main.rs): it reaches the library only
    // through the public API, so it is the top layer by construction.
    let mut expected = modules.clone();
    expected.insert("cli".to_owned());
    assert_eq!(
        pictured, expected,
        "the picture names every module of src/lib.rs (and the binary's cli), once"
    );
    let mut upward = Vec::new();
    for (module, deps) in imports(&modules) {
        for dep in deps {
            if layers[&dep] >= layers[&module] {
                upward.push(format!(
                    "{module} (layer {}) imports {dep} (layer {})",
                    layers[&module], layers[&dep]
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not go down: {upward:#?}"
    );
}

#[test]
fn the_import_scan_sees_grouped_paths_and_skips_tests_and_comments() {
    let code = production_code(
        "use crate::{event::Phase, log::{self, Level}};\n\
         // crate::journal in a comment\n\
         let x = crate::metrics::Metrics::new(); // crate::ws\n\
         #[cfg(test)]\n\
         mod tests {\n    use crate::server;\n}\n\
         #[cfg(test)]\n\
         use crate::tracker;\n",
    );
    assert_eq!(crate_paths(&code), ["event", "log", "metrics"]);
}
