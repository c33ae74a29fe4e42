//! The architecture's invariants that a reader of the code could break without noticing, checked
//! over the source tree itself (no process is started): ARCHITECTURE.md states them, this file
//! keeps them true.
//!
//! - node/'s top-level modules depend on each other in one direction (no import circle);
//! - the crates depend in one direction: `core <- {cluster, shard} <- node`, and the lower
//!   crates link none of the upper crates' heavy dependencies (shard links neither openraft nor
//!   quinn; cluster knows nothing of HTTP, JWT, HNSW or actors);
//! - nothing outside `tessera-index` touches `hnsw_rs`;
//! - only node's API layer knows HTTP (axum, status codes) and builds JSON documents;
//! - the not-found texts that stop tenant enumeration are formatted in one place each;
//! - Raft never matches on metadata commands (it calls `MetadataState::apply`);
//! - no source file carries more than [`MAX_NON_TEST_LINES`] lines of non-test code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines of non-test code (the lines before a file's `#[cfg(test)]` module) a file may have.
const MAX_NON_TEST_LINES: usize = 800;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repo root")
        .to_path_buf()
}

/// Every `.rs` file below `dir`, sorted, skipping build output.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(p);
                }
            } else if name.ends_with(".rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The part of a file before its test module (the whole file if it has none).
fn non_test(src: &str) -> &str {
    match src.find("\n#[cfg(test)]") {
        Some(i) => &src[..i],
        None => src,
    }
}

/// The source with comments left out, so that prose naming a module or a text is not an edge.
fn code_only(src: &str) -> String {
    src.lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("//") || t.starts_with("/*") || t.starts_with('*'))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo())
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The crate source directories of the workspace (not tests/ of a crate, not benches).
fn crate_src_dirs() -> Vec<PathBuf> {
    [
        "core/src",
        "cluster/src",
        "shard/src",
        "shard/index/src",
        "node/src",
        "tests/src",
        "chaos/src",
    ]
    .iter()
    .map(|d| repo().join(d))
    .filter(|d| d.is_dir())
    .collect()
}

#[test]
fn no_source_file_is_over_the_line_limit() {
    let mut over = Vec::new();
    let mut dirs = crate_src_dirs();
    dirs.push(repo().join("node/benches"));
    for dir in dirs {
        for f in rust_files(&dir) {
            let n = non_test(&read(&f)).lines().count();
            if n > MAX_NON_TEST_LINES {
                over.push(format!("{}: {n} lines", rel(&f)));
            }
        }
    }
    assert!(
        over.is_empty(),
        "files over {MAX_NON_TEST_LINES} lines of non-test code (split them by concern): {over:#?}"
    );
}

/// node/'s top-level module of a file under node/src (`api/points.rs` -> `api`).
fn node_module(file: &Path, src_dir: &Path) -> Option<String> {
    let r = file.strip_prefix(src_dir).ok()?;
    let first = r
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    match name.as_str() {
        "lib" | "main" => None,
        _ => Some(name),
    }
}

/// The top-level modules a source file names through `crate::…` paths (use lines and inline).
fn crate_refs(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code = code_only(non_test(src));
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        let after = &rest[i + "crate::".len()..];
        rest = after;
        // `$crate::` and `tessera_x::crate` are not ours; `super::crate` does not exist
        if matches!(before, Some(c) if c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            // use crate::{a::X, b};
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
            continue;
        }
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// A cycle in `graph`, if there is one, as the list of modules around it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.to_owned(), Mark::Open);
        path.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(n.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in graph.keys() {
        let mut path = Vec::new();
        if let Some(c) = visit(n, graph, &mut marks, &mut path) {
            return Some(c);
        }
    }
    None
}

fn node_module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src_dir = repo().join("node/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in rust_files(&src_dir) {
        let Some(module) = node_module(&f, &src_dir) else {
            continue;
        };
        let refs = crate_refs(&read(&f));
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != module));
    }
    graph
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_passes_a_dag() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("api".into()).or_default().insert("router".into());
    g.entry("router".into())
        .or_default()
        .insert("access".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("access".into()).or_default().insert("api".into());
    let cycle = find_cycle(&g).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4, "{cycle:?}");
    // and the reference parser sees grouped, inline and nested paths, but no comments
    let refs = crate_refs(
        "use crate::{access::Scope, audit};\n// crate::commented\nlet x = crate::router::f();\n",
    );
    assert_eq!(
        refs,
        BTreeSet::from(["access".into(), "audit".into(), "router".into()])
    );
}

#[test]
fn node_modules_depend_in_one_direction() {
    let graph = node_module_graph();
    assert!(graph.len() > 5, "node/src was not read: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import circle among node's modules: {}\nthe whole graph: {graph:#?}",
            cycle.join(" -> ")
        );
    }
}

/// The `[dependencies]` (not dev- or build-dependencies) named in a crate's Cargo.toml.
fn normal_deps(manifest: &Path) -> BTreeSet<String> {
    let text = read(manifest);
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = t.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

#[test]
fn crates_depend_in_one_direction() {
    // (crate dir, dependencies it must not have)
    let rules: &[(&str, &[&str])] = &[
        (
            "core",
            &[
                "tessera-cluster",
                "tessera-shard",
                "tessera-index",
                "tessera-node",
                "openraft",
                "quinn",
                "rustls",
                "axum",
                "jsonwebtoken",
                "hnsw_rs",
                "ractor",
            ],
        ),
        (
            "cluster",
            &[
                "tessera-shard",
                "tessera-index",
                "tessera-node",
                "axum",
                "jsonwebtoken",
                "hnsw_rs",
                "ractor",
                "governor",
            ],
        ),
        (
            "shard",
            &[
                "tessera-cluster",
                "tessera-node",
                "openraft",
                "quinn",
                "rustls",
                "rcgen",
                "axum",
                "jsonwebtoken",
            ],
        ),
        (
            "shard/index",
            &[
                "tessera-core",
                "tessera-cluster",
                "tessera-shard",
                "tessera-node",
                "openraft",
                "quinn",
                "axum",
                "jsonwebtoken",
                "ractor",
            ],
        ),
    ];
    let mut broken = Vec::new();
    for (dir, forbidden) in rules {
        let manifest = repo().join(dir).join("Cargo.toml");
        assert!(manifest.is_file(), "{} is missing", rel(&manifest));
        let deps = normal_deps(&manifest);
        for f in *forbidden {
            if deps.contains(*f) {
                broken.push(format!("{dir} depends on {f}"));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken: {broken:#?}");
    assert!(
        normal_deps(&repo().join("shard/Cargo.toml")).contains("tessera-core"),
        "shard takes its errors, codec and record log from tessera-core"
    );
}

/// Files (relative to the repo) whose non-test code contains `needle`.
fn files_containing(dirs: &[&str], needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for d in dirs {
        for f in rust_files(&repo().join(d)) {
            if code_only(non_test(&read(&f))).contains(needle) {
                out.push(rel(&f));
            }
        }
    }
    out
}

#[test]
fn only_the_index_crate_touches_hnsw_rs() {
    let users = files_containing(
        &[
            "core/src",
            "cluster/src",
            "shard/src",
            "node/src",
            "tests/src",
            "chaos/src",
        ],
        "hnsw_rs::",
    );
    let outside: Vec<_> = users
        .into_iter()
        .filter(|f| !f.starts_with("shard/index/"))
        .collect();
    assert!(
        outside.is_empty(),
        "hnsw_rs used outside tessera-index: {outside:?}"
    );
    for dir in ["core", "cluster", "shard", "node", "tests", "chaos"] {
        let manifest = repo().join(dir).join("Cargo.toml");
        if manifest.is_file() {
            assert!(
                !normal_deps(&manifest).contains("hnsw_rs"),
                "{dir} depends on hnsw_rs directly"
            );
        }
    }
}

#[test]
fn only_the_api_layer_knows_http() {
    for needle in ["axum", "StatusCode"] {
        let outside: Vec<_> = files_containing(&["node/src", "cluster/src", "shard/src"], needle)
            .into_iter()
            .filter(|f| !f.starts_with("node/src/api/") && f != "node/src/lib.rs")
            .collect();
        assert!(
            outside.is_empty(),
            "{needle} outside node/src/api: {outside:?}"
        );
    }
}

#[test]
fn only_the_api_layer_builds_json_documents() {
    // Qdrant's JSON shapes are node's api/json; auth reads and writes JWT claims, which are JSON
    // by nature. Files that are test modules only are not product code.
    const TEST_ONLY: [&str; 3] = [
        "shard/src/filter/testkit.rs",
        "node/src/auth/test_keys.rs",
        "node/src/api/json/fuzz.rs",
    ];
    let outside: Vec<_> = files_containing(
        &["node/src", "cluster/src", "shard/src", "core/src"],
        "json!(",
    )
    .into_iter()
    .filter(|f| !f.starts_with("node/src/api/") && !f.starts_with("node/src/auth/"))
    .filter(|f| !TEST_ONLY.contains(&f.as_str()))
    .collect();
    assert!(
        outside.is_empty(),
        "JSON documents built outside node's api/: {outside:?}"
    );
}

#[test]
fn not_found_texts_have_one_source() {
    // identical 404s are what stop enumeration: each text is formatted in exactly one place
    // (core's not_found.rs, which the metadata, access and every replica answer with)
    for fragments in [
        ["Collection `", "doesn't exist!"],
        ["\"Shard key ", "not found\""],
    ] {
        let mut places = Vec::new();
        for d in ["node/src", "cluster/src", "shard/src", "core/src"] {
            for f in rust_files(&repo().join(d)) {
                let n = code_only(non_test(&read(&f)))
                    .lines()
                    .filter(|l| fragments.iter().all(|frag| l.contains(frag)))
                    .count();
                if n > 0 {
                    places.push(format!("{} ({n}x)", rel(&f)));
                }
            }
        }
        assert!(
            places.len() == 1 && places[0].ends_with("(1x)"),
            "`{fragments:?}` must be formatted in exactly one place, found: {places:?}"
        );
    }
}

#[test]
fn raft_never_matches_on_commands() {
    let places: Vec<_> = files_containing(&["cluster/src/raft"], "Command::")
        .into_iter()
        .filter(|f| !f.ends_with("/tests.rs"))
        .collect();
    assert!(
        places.is_empty(),
        "raft code names Command variants (it must call MetadataState::apply): {places:?}"
    );
}
