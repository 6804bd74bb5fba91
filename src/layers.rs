//! The layering ARCHITECTURE.md draws, checked on the source itself: the
//! modules' `use` graph has no cycle, the core names no I/O library, and
//! each outside system's library is named only by its shell.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// The source of each top-level module, comments left out.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let name = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        if name == "lib" || name == "main" || name == "layers" {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        let code: String = text
            .lines()
            .map(|line| line.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        modules.entry(name).or_default().push_str(&code);
    }
    modules
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level modules `code` names through `crate::`, as in
/// `crate::db::Database` or `use crate::{db::Database, domain}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The items at the group's first level, each up to its `::`.
            let mut depth = 0;
            let mut items = vec![String::new()];
            for c in group.chars() {
                match c {
                    '}' if depth == 0 => break,
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(String::new()),
                    c if depth == 0 => items.last_mut().unwrap().push(c),
                    _ => {}
                }
            }
            for item in items {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    named.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            named.insert(name);
        }
    }
    named
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    modules
        .iter()
        .map(|(name, code)| {
            let uses = named_modules(code)
                .into_iter()
                .filter(|used| used != name && modules.contains_key(used))
                .collect();
            (name.clone(), uses)
        })
        .collect()
}

/// A cycle through `start`, if there is one, as the modules along it.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in &graph[last] {
            if next == start {
                return Some(path.iter().cloned().chain([next.clone()]).collect());
            }
            if seen.insert(next.clone()) {
                stack.push(path.iter().cloned().chain([next.clone()]).collect());
            }
        }
    }
    None
}

#[test]
fn the_modules_use_graph_has_no_cycle() {
    let graph = graph();
    assert!(graph.contains_key("domain") && graph["worker"].contains("domain"));
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            panic!("a cycle of modules: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_reader_finds_cycles_and_group_imports() {
    let named = named_modules(
        "use crate::{db::{Database, x}, domain, error::Result};\ncrate::amqp::record(x)",
    );
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["amqp", "db", "domain", "error"]
    );
    let looped: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(cycle_through(&looped, "a").unwrap(), ["a", "b", "a"]);
    assert_eq!(cycle_through(&looped, "c"), None);
}

/// The modules whose code names `library` (as `library::`).
fn naming(library: &str) -> BTreeSet<String> {
    let pattern = format!("{library}::");
    modules()
        .into_iter()
        .filter(|(_, code)| {
            code.match_indices(&pattern).any(|(at, _)| {
                let before = code[..at].chars().next_back();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            })
        })
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn the_core_names_no_io_library() {
    for library in [
        "lapin",
        "diesel",
        "diesel_async",
        "tokio",
        "reqwest",
        "axum",
    ] {
        assert!(
            !naming(library).contains("domain"),
            "domain names {library}"
        );
    }
}

#[test]
fn each_outside_systems_library_is_named_by_its_shell_alone() {
    let shells = [
        ("lapin", &["amqp"][..]),
        ("diesel", &["db"][..]),
        ("diesel_async", &["db"][..]),
        ("reqwest", &["gateway", "status"][..]),
        ("axum", &["http"][..]),
    ];
    for (library, allowed) in shells {
        let named = naming(library);
        assert!(!named.is_empty(), "no module names {library}");
        let strays: Vec<_> = named
            .iter()
            .filter(|module| !allowed.contains(&module.as_str()))
            .collect();
        assert!(
            strays.is_empty(),
            "{library} named outside its shell: {strays:?}"
        );
    }
}
