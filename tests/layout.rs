//! The source layout keeps the architecture readable: no import cycle among `src/` modules, and
//! no file so long that it does several jobs.
//!
//! Read from the files themselves (each `crate::` and `super::` path in product code, i.e.
//! before a file's `#[cfg(test)]`), so the rule holds for code written after this test.
//! Modules are compared level by level: a use from `providers::github` of `repositories::paths`
//! is an edge `providers → repositories`; one from `providers::github` of `providers::http` is
//! an edge `github → http` among the children of `providers`. A parent and its own child may
//! use each other (that is how a module re-exports and shares its types).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path, e.g. `["providers", "github"]`; the crate root is `[]`.
type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).expect("a file under src/").with_extension("");
    let mut module: Module = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        module.pop();
    }
    module
}

/// The product code of a file: everything before its unit tests, comments dropped.
fn product_code(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers of a path after `prefix` (`crate::a::b::C` → a, b, C), and of each item
/// of a brace group (`crate::{a::x, b}` → [a, x], [b]).
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `my_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            for item in inner.split(',') {
                found.push(segments(item.trim()));
            }
        } else {
            found.push(segments(rest));
        }
    }
    found
}

fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        out.push(rest[..end].to_owned());
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    out
}

/// The deepest known module a path names (the rest are items in it).
fn resolve(path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains(m))
}

/// The module graph, as edges between siblings: (parent, from-child, to-child).
fn sibling_edges(src: &Path) -> BTreeSet<(Module, String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
    let mut edges = BTreeSet::new();
    for file in &files {
        let from = module_of(src, file);
        if from.is_empty() {
            continue; // lib.rs / main.rs declare the modules
        }
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let code = product_code(&text);
        let mut targets: Vec<Module> = paths_after(&code, "crate::")
            .iter()
            .filter_map(|p| resolve(p, &modules))
            .collect();
        // `super::` from a file's module: its parent (a mod.rs is its own directory's module).
        let parent: Module = from[..from.len() - 1].to_vec();
        for path in paths_after(&code, "super::") {
            let mut absolute = parent.clone();
            absolute.extend(path);
            targets.extend(resolve(&absolute, &modules));
        }
        for to in targets {
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // itself, its parent or its child
            }
            edges.insert((from[..common].to_vec(), from[common].clone(), to[common].clone()));
        }
    }
    edges
}

/// A cycle among one parent's children, if any, as the modules along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
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
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut done, &mut Vec::new()))
}

#[test]
fn no_import_cycle_among_src_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut by_parent: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (parent, from, to) in sibling_edges(&src) {
        by_parent.entry(parent).or_default().entry(from).or_default().insert(to);
    }
    assert!(
        by_parent.get(&Vec::new()).is_some_and(|top| top.len() > 10),
        "the scan sees the crate's top-level modules using each other: {by_parent:?}"
    );
    for (parent, edges) in &by_parent {
        if let Some(cycle) = find_cycle(edges) {
            let under: String = parent.iter().map(|m| format!("::{m}")).collect();
            panic!("import cycle under crate{under}: {}", cycle.join(" → "));
        }
    }
}

/// Lines of product code (before the unit tests) past which a file is split by job.
const MOST_PRODUCT_LINES: usize = 500;

#[test]
fn no_product_file_is_longer_than_its_job() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "the scan sees the source files: {files:?}");
    let too_long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let lines = text.split("#[cfg(test)]").next().unwrap_or_default().lines().count();
            (lines > MOST_PRODUCT_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "longer than {MOST_PRODUCT_LINES} lines before the tests: {too_long:?}"
    );
}

#[test]
fn the_scan_sees_a_cycle_when_there_is_one() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("feed".into()).or_default().insert("controller".into());
    edges.entry("controller".into()).or_default().insert("index".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("controller".into()).or_default().insert("feed".into());
    let cycle = find_cycle(&edges).expect("feed → controller → feed");
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.contains(&"feed".to_owned()) && cycle.contains(&"controller".to_owned()));
    assert_eq!(
        paths_after("use crate::{a::x, b};\nlet y = my_crate::c; super::d::E", "crate::"),
        [vec!["a".to_owned(), "x".to_owned()], vec!["b".to_owned()]]
    );
}

/// The `src/...` paths in the first column of `docs/architecture.md`'s table.
fn architecture_rows(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|path| path.starts_with("src/"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_src_file_has_its_job_in_the_architecture_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let rows = architecture_rows(&page);
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let files: BTreeSet<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(root)
                .expect("under the crate")
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    let missing: Vec<&String> = files.difference(&rows).collect();
    let gone: Vec<&String> = rows.difference(&files).collect();
    assert!(
        missing.is_empty(),
        "add a row (file → its one job) to docs/architecture.md for: {missing:?}"
    );
    assert!(
        gone.is_empty(),
        "docs/architecture.md names files that do not exist: {gone:?}"
    );
    assert_eq!(
        architecture_rows("| `src/a.rs` | job |\n| file | its one job |\n| `tests/x.rs` | no |"),
        BTreeSet::from(["src/a.rs".to_owned()])
    );
}
