//! The code's layout is part of its design: `src/http` follows the request path with no
//! import cycle between modules, only `http/mod.rs` imports `http::spec` (the code that
//! shapes the served document), and the route table the running code uses has exactly
//! the document's operations. `tools/module-graph` prints the graph these tests check.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde_json::Value;

/// Every module of the crate (`http::extract::auth`) and its file.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], found: &mut BTreeMap<String, PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module = prefix.to_vec();
                if !matches!(name.as_str(), "mod" | "lib" | "main") {
                    module.push(name);
                }
                found.insert(module.join("::"), path);
            }
        }
    }
    let mut found = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut found);
    found
}

/// The paths a module's `use` declarations and code name, as `a::b::c` segments.
fn referenced_paths(source: &str) -> Vec<Vec<String>> {
    // Comments out: they name modules without depending on them.
    let code: String = source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    // `use` trees, expanded: use a::{b::{c, d}, e};
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        // A `use` item starts its line (after `pub` at most): not the word in a string.
        let line_start = rest[..at].rfind('\n').map_or(0, |n| n + 1);
        let before_ok = matches!(rest[line_start..at].trim(), "" | "pub" | "pub(crate)" | "pub(super)");
        let tail = &rest[at + 4..];
        let Some(end) = tail.find(';') else { break };
        if before_ok {
            expand(&tail[..end], &mut Vec::new(), &mut paths);
        }
        rest = &tail[end..];
    }
    // Paths written in code: super::x::y, crate::x::y, child::y (those that are modules
    // are told apart from other crates' paths in `graph`).
    let inline = regex::Regex::new(r"\b[a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)+").unwrap();
    for found in inline.find_iter(&code) {
        paths.push(found.as_str().split("::").map(str::to_owned).collect());
    }
    paths
}

/// Expands one use tree into its paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> =
            tree[..open].split("::").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap()];
        let depth = prefix.len();
        prefix.extend(head);
        // Split on commas at nesting depth 0.
        let (mut level, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => level += 1,
                '}' => level -= 1,
                ',' if level == 0 => {
                    expand(&inner[start..i], prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], prefix, out);
        prefix.truncate(depth);
    } else if !tree.is_empty() {
        let mut path = prefix.clone();
        path.extend(tree.split(" as ").next().unwrap().split("::").map(|s| s.trim().to_owned()));
        out.push(path);
    }
}

/// Module -> the other modules of the crate it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let source = std::fs::read_to_string(file).unwrap();
        let here: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
        // `super` of a mod.rs is its parent; of a file module, the directory's module.
        let parent = here[..here.len().saturating_sub(1)].to_vec();
        let mut targets = BTreeSet::new();
        for path in referenced_paths(&source) {
            let absolute: Vec<String> = match path.first().map(String::as_str) {
                Some("crate") => path[1..].to_vec(),
                Some("super") => {
                    let mut base = parent.clone();
                    let mut rest = &path[1..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.extend(rest.iter().cloned());
                    base
                }
                Some("self") => here.iter().cloned().chain(path[1..].iter().cloned()).collect(),
                Some(first)
                    if modules.contains_key(
                        &here.iter().cloned().chain([first.to_owned()]).collect::<Vec<_>>().join("::"),
                    ) =>
                {
                    here.iter().cloned().chain(path.iter().cloned()).collect()
                }
                _ => continue,
            };
            // The longest prefix that is a module.
            let target = (1..=absolute.len())
                .rev()
                .map(|n| absolute[..n].join("::"))
                .find(|candidate| modules.contains_key(candidate));
            if let Some(target) = target
                && target != *module
                && !module.starts_with(&format!("{target}::"))
            {
                targets.insert(target);
            }
        }
        edges.insert(module.clone(), targets);
    }
    edges
}

/// A cycle among `modules` (restricted to edges within them), if any.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>, within: &str) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        within: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten().filter(|n| n.starts_with(within)) {
            if let Some(cycle) = visit(next, edges, within, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys().filter(|n| n.starts_with(within)) {
        if let Some(cycle) = visit(node, edges, within, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn http_modules_import_each_other_without_a_cycle() {
    let edges = graph();
    if std::env::var_os("PRINT_MODULE_GRAPH").is_some() {
        for (module, targets) in &edges {
            let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
            println!("{module} -> {}", targets.join(", "));
        }
    }
    assert!(edges.contains_key("http::error") && edges.contains_key("http::extract::auth"), "{edges:?}");
    assert_eq!(find_cycle(&edges, "http"), None, "an import cycle in src/http");
    let error: Vec<&String> = edges["http::error"].iter().filter(|t| t.starts_with("http")).collect();
    assert!(error.is_empty(), "http::error is a leaf of http, but imports {error:?}");
}

#[test]
fn only_http_mod_imports_the_document_shaping_spec_module() {
    let importers: Vec<String> = graph()
        .into_iter()
        .filter(|(module, targets)| {
            !module.starts_with("http::spec") && targets.iter().any(|t| t.starts_with("http::spec"))
        })
        .map(|(module, _)| module)
        .collect();
    assert_eq!(importers, ["http"], "who imports http::spec");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("http::a".to_owned(), BTreeSet::from(["http::b".to_owned()])),
        ("http::b".to_owned(), BTreeSet::from(["http::a".to_owned()])),
    ]
    .into();
    assert!(find_cycle(&edges, "http").is_some());
    let mut paths = Vec::new();
    expand("super::{a::{B, C}, d, e::f as g}", &mut Vec::new(), &mut paths);
    assert_eq!(
        paths,
        [vec!["super", "a", "B"], vec!["super", "a", "C"], vec!["super", "d"], vec!["super", "e", "f"]]
    );
}

#[test]
fn the_route_table_has_exactly_the_documents_operations() {
    let spec: Value = serde_json::from_str(include_str!("../../../openapi/openapi.json")).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert((
                operation["operationId"].as_str().unwrap().to_owned(),
                method.to_uppercase(),
                path.clone(),
            ));
        }
    }
    let table: BTreeSet<(String, String, String)> = tenantry::http::api::route_table()
        .operations()
        .iter()
        .map(|op| (op.id.to_owned(), op.method.to_string(), op.path.clone()))
        .collect();
    assert_eq!(table, documented);
}
