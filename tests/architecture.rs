//! The shape of the code, checked: the top-level modules under `src/` depend
//! on each other without cycles (dependencies point down the flow of a
//! delivery), and only the HTTP layer and the server know actix.
//!
//! `cargo test --test architecture -- --nocapture` prints the graph that
//! `docs/ARCHITECTURE.md` shows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Each top-level module and the modules its code (tests excluded) names as `crate::<module>`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let src = Path::new(ROOT).join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // A file's test modules come last (clippy's
            // `items_after_test_module`); a test-only item before them counts.
            let code = text.split("#[cfg(test)]\nmod ").next().unwrap();
            let deps = edges.entry(top.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    deps.insert(name);
                }
            }
        }
    }
    edges
}

/// The cycles of the graph (its strongly connected components of more than one module).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Kosaraju: order by finish time, then walk the reversed graph.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(n.to_string()) {
            return;
        }
        for m in edges.get(n).into_iter().flatten() {
            visit(m, edges, seen, order);
        }
        order.push(n.to_string());
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for n in edges.keys() {
        visit(n, edges, &mut seen, &mut order);
    }
    let mut reversed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (n, deps) in edges {
        for m in deps {
            reversed.entry(m.clone()).or_default().insert(n.clone());
        }
    }
    let mut assigned = BTreeSet::new();
    let mut found = Vec::new();
    for n in order.iter().rev() {
        if assigned.contains(n) {
            continue;
        }
        let mut component = Vec::new();
        let mut todo = vec![n.clone()];
        while let Some(x) = todo.pop() {
            if assigned.insert(x.clone()) {
                component.push(x.clone());
                todo.extend(reversed.get(&x).into_iter().flatten().cloned());
            }
        }
        if component.len() > 1 {
            component.sort();
            found.push(component);
        }
    }
    found
}

#[test]
fn the_module_graph_has_no_cycles() {
    let edges = graph();
    print!("{}", drawn(&edges));
    assert!(edges.contains_key("intake") && edges.contains_key("providers"));
    assert_eq!(
        cycles(&edges),
        Vec::<Vec<String>>::new(),
        "modules that depend on each other"
    );
}

/// The graph as `docs/ARCHITECTURE.md` draws it, one `module -> deps` line each.
fn drawn(edges: &BTreeMap<String, BTreeSet<String>>) -> String {
    edges
        .iter()
        .map(|(module, deps)| {
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            format!("{module:>10} -> {}", deps.join(", ")).trim_end().to_string() + "\n"
        })
        .collect()
}

#[test]
fn architecture_md_draws_the_graph_the_code_has() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/ARCHITECTURE.md")).unwrap();
    let section = &doc[doc.find("## Module graph").expect("a module graph section")..];
    let start = section.find("```\n").unwrap() + 4;
    let end = start + section[start..].find("```").unwrap();
    let in_doc: String = section[start..end]
        .lines()
        .map(|l| l.trim_end().to_string() + "\n")
        .collect();
    assert_eq!(
        in_doc,
        drawn(&graph()),
        "docs/ARCHITECTURE.md's module graph is not the code's: `cargo test --test architecture -- --nocapture` prints it"
    );
}

#[test]
fn only_the_http_layer_and_the_server_know_actix() {
    let src = Path::new(ROOT).join("src");
    let mut stack = vec![src.clone()];
    let mut offenders = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap().to_string_lossy().to_string();
            if rel.starts_with("http") || rel.starts_with("server") || rel == "logging.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            if text
                .lines()
                .any(|l| !l.trim_start().starts_with("//") && l.contains("actix"))
            {
                offenders.push(rel);
            }
        }
    }
    assert_eq!(offenders, Vec::<String>::new(), "modules below HTTP that use actix");
}

#[test]
fn a_cycle_is_found_where_there_is_one() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    edges.entry("c".into()).or_default().insert("a".into());
    edges.entry("d".into()).or_default().insert("a".into());
    assert_eq!(cycles(&edges), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
}
