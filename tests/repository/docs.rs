//! The documents that ship with the crate: every relative link in the README
//! and `docs/` points at a file of this repository, so does every file they
//! name in a code span, and `docs/METRICS.md` documents every family the
//! server renders.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use agentgate_obs::metrics::Format;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README and every Markdown file under `docs/`.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![repo().join("README.md")];
    let dir = repo().join("docs");
    for entry in std::fs::read_dir(&dir).expect("docs/ exists") {
        let path = entry.expect("readable docs/").path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    docs
}

/// The targets of Markdown links `[text](target)` and images in `text`,
/// outside code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].trim().to_owned());
            rest = &after[end..];
        }
    }
    targets
}

fn is_external(target: &str) -> bool {
    target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:")
        || target.starts_with('#')
}

#[test]
fn relative_links_in_the_readme_and_docs_point_at_repository_files_without_climbing() {
    let root = repo().canonicalize().expect("repository path");
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("readable document");
        let base = doc.parent().unwrap_or(Path::new("."));
        for target in link_targets(&text) {
            if is_external(&target) {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            let resolved = base.join(path);
            let inside = resolved
                .canonicalize()
                .is_ok_and(|real| real.starts_with(&root));
            // `docs/` stands on its own: a page there links to its
            // neighbours, never up and out of the folder a reader browses.
            let climbs = Path::new(path)
                .components()
                .any(|c| c == std::path::Component::ParentDir);
            if !inside || climbs {
                broken.push(format!("{}: ({target})", doc.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that point nowhere, outside the repository or up with `..`:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_link_check_finds_a_dead_link() {
    let targets = link_targets("see [a](docs/NOPE.md) and [b](https://x.y) \n```\n[c](z)\n```");
    assert_eq!(targets, ["docs/NOPE.md", "https://x.y"]);
    assert!(!repo().join("docs/NOPE.md").exists());
}

/// The top-level folders of the repository whose files the documents name.
const FOLDERS: &[&str] = &[
    ".config", "benches", "deploy", "docs", "examples", "fuzz", "scripts", "src", "tests",
];

/// The repository paths named in code spans (`` `src/lib.rs` ``) outside
/// code blocks: each word of a span that starts with one of [`FOLDERS`],
/// cut before a placeholder or glob (`fuzz/seeds/<target>/` names
/// `fuzz/seeds/`) and before a test name (`tests/x/main.rs::name`).
fn mentioned_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut in_code_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        // Odd pieces between backticks are code spans.
        for span in line.split('`').skip(1).step_by(2) {
            for word in span.split_whitespace() {
                let word = word.trim_start_matches(['(', '[', '"', '\'']);
                let word = word.split("::").next().unwrap_or_default();
                let word = word
                    .split(['<', '*', '{', '#', '?'])
                    .next()
                    .unwrap_or_default();
                let word = word.trim_end_matches([',', '.', ';', ':', ')', ']', '"', '\'']);
                let named = FOLDERS.iter().any(|folder| {
                    word.strip_prefix(folder)
                        .is_some_and(|rest| rest.starts_with('/'))
                });
                if named {
                    paths.push(word.to_owned());
                }
            }
        }
    }
    paths
}

#[test]
fn every_repository_file_the_readme_and_docs_name_in_a_code_span_exists() {
    let mut missing = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("readable document");
        for path in mentioned_paths(&text) {
            if !repo().join(&path).exists() {
                missing.push(format!("{}: `{path}`", doc.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files named in the documents that are not in the repository:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_path_check_finds_a_file_that_does_not_exist() {
    let text = "run `scripts/nope` and `cargo test --test x` on `tests/x/main.rs::a_test`,\n\
                seeds in `fuzz/seeds/<target>/`, `src/dashboard/*.js`, (`docs/NOPE.md`).\n\
                ```\nsrc/in_a_block.rs\n```\n`target/debug` and `srcs/x`";
    assert_eq!(
        mentioned_paths(text),
        [
            "scripts/nope",
            "tests/x/main.rs",
            "fuzz/seeds/",
            "src/dashboard/",
            "docs/NOPE.md"
        ]
    );
    assert!(!repo().join("scripts/nope").exists());
}

/// The family names (without the namespace) of an exposition.
fn families(exposition: &str, namespace: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|name| {
            name.strip_prefix(namespace)
                .and_then(|n| n.strip_prefix('_'))
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

#[test]
fn every_family_the_server_renders_is_documented_in_metrics_md() {
    let obs = common::quiet().start().expect("pipeline starts");
    let exposition = obs.metrics().render_as(Format::Prometheus);
    let rendered = families(&exposition, obs.namespace());
    assert!(rendered.len() >= 20, "{rendered:?}");
    let doc = std::fs::read_to_string(repo().join("docs/METRICS.md")).expect("docs/METRICS.md");
    let undocumented: Vec<_> = rendered
        .iter()
        .filter(|family| !doc.contains(&format!("| `{family}` |")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "families rendered on /metrics but missing from docs/METRICS.md's tables: {undocumented:?}"
    );
}

#[test]
fn every_family_metrics_md_documents_is_rendered_by_the_server() {
    let obs = common::quiet().start().expect("pipeline starts");
    let rendered = families(
        &obs.metrics().render_as(Format::Prometheus),
        obs.namespace(),
    );
    let doc = std::fs::read_to_string(repo().join("docs/METRICS.md")).expect("docs/METRICS.md");
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name))
        .collect();
    assert!(documented.len() >= 20, "{documented:?}");
    let stale: Vec<_> = documented
        .iter()
        .filter(|name| !rendered.contains(**name))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/METRICS.md documents families /metrics does not render: {stale:?}"
    );
}
