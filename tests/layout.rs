//! The code's shape (issue 13): the admin side is split into folders by
//! what they do, the store by resource, and no two of those parts depend on
//! each other in a circle — read from the `crate::…` paths in the sources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without `//` comments (doc links name other modules freely).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The parts named right after `prefix` (`crate::admin::` → `ops`, `http`,
/// and each name of a `{a, b::c}` group).
fn named_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name = ident(item.trim());
                if !name.is_empty() && name != "self" {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// `part → parts it names`, for the children of `root` (a file `root.rs` and
/// its folder `root/`), ignoring unit-test files.
fn graph(root: &str, prefix: &str) -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&dir).expect("under root");
        if rel.file_stem().is_some_and(|s| s == "tests") {
            continue;
        }
        let part = rel
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let text = std::fs::read_to_string(&f).expect("read source");
        let mut named = named_after(&code(&text), prefix);
        named.remove(&part);
        g.entry(part).or_default().extend(named);
    }
    g
}

/// A circle in `g`, if there is one.
fn circle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

#[test]
fn the_checker_finds_a_circle_and_group_imports() {
    let named = named_after(
        &code("use crate::admin::{ops::x, state};\n// crate::admin::start\nlet _ = crate::admin::http::y;"),
        "crate::admin::",
    );
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["http", "ops", "state"]
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(circle(&g).expect("a circle").len(), 4);
    g.get_mut("c").expect("c").clear();
    assert_eq!(circle(&g), None);
}

#[test]
fn the_admin_side_has_its_folders_and_no_circle() {
    let g = graph("src/admin", "crate::admin::");
    for folder in ["start", "control", "http", "ops", "pipeline", "nodes"] {
        assert!(
            g.contains_key(folder),
            "src/admin/{folder} is missing: {g:?}"
        );
    }
    assert_eq!(circle(&g), None, "admin parts depend on each other: {g:#?}");
    // Start-up is the top: nothing below it reaches back into it.
    for (part, named) in &g {
        assert!(
            !named.contains("start"),
            "{part} depends on start-up: {named:?}"
        );
    }
    // check-host is a command-line tool, not part of the admin side.
    let admin = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin");
    let mut files = Vec::new();
    rust_files(&admin, &mut files);
    assert!(files.iter().all(|f| !f.ends_with("check_host.rs")));
}

#[test]
fn the_store_splits_by_resource_with_no_circle() {
    let mut g = graph("src/store", "crate::store::");
    for (part, named) in graph("src/store", "super::") {
        g.entry(part).or_default().extend(named);
    }
    for resource in ["endpoints", "users", "nodes", "sessions", "audit"] {
        assert!(
            g.contains_key(resource),
            "src/store/{resource}.rs is missing"
        );
    }
    // Names after `super::` include the parent's own items; keep the parts.
    let parts: BTreeSet<String> = g.keys().cloned().collect();
    for named in g.values_mut() {
        named.retain(|n| parts.contains(n));
    }
    assert_eq!(circle(&g), None, "store parts depend on each other: {g:#?}");
}

#[test]
fn one_tungstenite_in_the_dependency_tree() {
    // axum's WebSocket support pins a tungstenite; wsrelay's own (the
    // handshake, tests, the load tool) is kept at the same version so one
    // copy is built and audited.
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))
        .expect("Cargo.lock");
    let versions: Vec<&str> = lock
        .split("[[package]]")
        .filter(|p| p.contains("\nname = \"tungstenite\"\n"))
        .filter_map(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "tungstenite versions in Cargo.lock: {versions:?}"
    );
}
