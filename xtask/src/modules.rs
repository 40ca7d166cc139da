//! `cargo xtask ci`'s module check: no crate of the workspace has a cycle
//! of module imports (`a` uses `b` and `b`, directly or through others,
//! uses `a`). A module may use its ancestors (a child uses its parent's
//! items) and its descendants; siblings and cousins must form a DAG, as in
//! tower's middleware folders (the handle imports the worker, never the
//! reverse).
//!
//! The scan reads source text: every `crate::`, `super::` and `self::`
//! path outside comments and test modules (an inline `#[cfg(test)] mod
//! tests { .. }` and files named `tests.rs`), grouped imports (`use
//! super::{a, b}`) included, resolved to the deepest module that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every cycle found in the crates whose sources are `srcs`, each as its
/// modules' names (`crate-dir: a::b -> c -> a::b`).
pub(crate) fn cycles(srcs: &[PathBuf]) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for src in srcs {
        let name = src.parent().unwrap_or(src).display().to_string();
        let graph = imports(src)?;
        for cycle in find_cycles(&graph) {
            let shown: Vec<String> = cycle.iter().map(show).collect();
            found.push(format!("{name}: {}", shown.join(" -> ")));
        }
    }
    Ok(found)
}

/// The source folders of the workspace's crates under `root`: every
/// `crates/*/src`, and `tests/src`, `tests/chaos/src`, `xtask/src`.
pub(crate) fn crate_sources(root: &Path) -> Result<Vec<PathBuf>, String> {
    let crates = root.join("crates");
    let mut srcs: Vec<PathBuf> = fs::read_dir(&crates)
        .map_err(|e| format!("{}: {e}", crates.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("src")))
        .collect();
    srcs.extend(["tests/src", "tests/chaos/src", "xtask/src"].map(|dir| root.join(dir)));
    srcs.retain(|src| src.is_dir());
    srcs.sort();
    Ok(srcs)
}

fn show(module: &Module) -> String {
    match module.is_empty() {
        true => "crate".to_owned(),
        false => module.join("::"),
    }
}

/// The module import graph of the crate whose sources are in `src`.
fn imports(src: &Path) -> Result<BTreeMap<Module, BTreeSet<Module>>, String> {
    let mut files = Vec::new();
    collect_rs(src, &mut files)?;
    // Test modules kept in files of their own (`tests.rs`) are tests too.
    files.retain(|f| f.file_name().map_or(true, |name| name != "tests.rs"));
    let modules: BTreeMap<Module, &PathBuf> =
        files.iter().map(|f| (module_of(src, f), f)).collect();
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        for path in paths(&code_of(&text)) {
            let Some(target) = resolve(module, &path, &modules) else {
                continue;
            };
            let ancestor = target.len() < module.len() && module[..target.len()] == target[..];
            let descendant = target.len() > module.len() && target[..module.len()] == module[..];
            if target != *module && !ancestor && !descendant {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    Ok(graph)
}

fn collect_rs(dir: &Path, into: &mut Vec<PathBuf>) -> Result<(), String> {
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect_rs(&path, into)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
    Ok(())
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `src/lib.rs` is the root.
fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Module = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source without comments and without its `#[cfg(test)] mod tests`.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(end) => &text[..end],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(start) => &line[..start],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::`/`super::`/`self::` path, as segments; a group
/// (`super::{a, b::c}`) gives one path per item.
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        let head = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|head| code[i..].starts_with(head));
        let (true, Some(_)) = (word_start, head) else {
            i += 1;
            continue;
        };
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            segments.push(code[start..j].to_owned());
            if !code[j..].starts_with("::") {
                break;
            }
            j += 2;
            if code[j..].starts_with('{') {
                let end = code[j..].find('}').map_or(bytes.len(), |e| j + e);
                for item in code[j + 1..end].split(',') {
                    let first = item.trim().split("::").next().unwrap_or("").trim();
                    if !first.is_empty() && first != "self" {
                        let mut grouped = segments.clone();
                        grouped.push(first.to_owned());
                        found.push(grouped);
                    }
                }
                segments.clear();
                j = end;
                break;
            }
        }
        if !segments.is_empty() {
            found.push(segments);
        }
        i = j.max(i + 1);
    }
    found
}

/// The deepest module `path` names, seen from `module`.
fn resolve(
    module: &Module,
    path: &[String],
    modules: &BTreeMap<Module, &PathBuf>,
) -> Option<Module> {
    let (mut target, mut rest) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (module.clone(), &path[1..]),
        // `super` of `a::b` is `a`, whether `b` is `a/b.rs` or `a/b/mod.rs`.
        _ => (module.clone(), path),
    };
    while rest.first().is_some_and(|s| s == "super") {
        target.pop()?;
        rest = &rest[1..];
    }
    for segment in rest {
        let mut deeper = target.clone();
        deeper.push(segment.clone());
        if !modules.contains_key(&deeper) {
            break;
        }
        target = deeper;
    }
    modules.contains_key(&target).then_some(target)
}

/// The cycles of `graph`: one per strongly connected component of two or
/// more modules, shown as a path around it.
fn find_cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    let mut cycles = Vec::new();
    let mut reported: BTreeSet<Module> = BTreeSet::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        // A path from `start` back to itself, by depth-first search.
        let mut stack: Vec<(Module, Vec<Module>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen: BTreeSet<Module> = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    reported.extend(path.iter().cloned());
                    cycles.push(cycle);
                    stack.clear();
                    break;
                }
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_and_nested_paths_are_found() {
        let code = "use super::{members::Member, placement};\nlet x = crate::hash::score(1);";
        assert_eq!(
            paths(code),
            vec![
                vec!["super".to_owned(), "members".to_owned()],
                vec!["super".to_owned(), "placement".to_owned()],
                vec!["crate".to_owned(), "hash".to_owned(), "score".to_owned()],
            ]
        );
    }

    #[test]
    fn a_two_module_cycle_is_found_and_a_chain_is_not() {
        let m = |s: &str| s.split("::").map(str::to_owned).collect::<Module>();
        let mut graph = BTreeMap::new();
        graph.insert(m("a"), BTreeSet::from([m("b")]));
        graph.insert(m("b"), BTreeSet::from([m("c")]));
        assert!(find_cycles(&graph).is_empty());
        graph.insert(m("c"), BTreeSet::from([m("a")]));
        assert_eq!(
            find_cycles(&graph),
            vec![vec![m("a"), m("b"), m("c"), m("a")]]
        );
    }
}
