//! The project's rule "no module cycles inside a crate", checked on the sources.
//!
//! Every `.rs` file under a crate's `src/` is a module. A `crate::…`, `super::…` or `self::…`
//! path in code (comments and `#[cfg(test)]` modules left out) is an edge from the file's
//! module to the module that defines the path's item; an item named through a parent's
//! `pub use child::Item` re-export resolves to `child`. Edges are lifted to the children of
//! the two modules' closest common parent (`arch/model.rs → lora/adapter.rs` is `arch → lora`;
//! `arch/model.rs → arch/delta.rs` is `model → delta`), and each parent's children must form
//! an acyclic graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 4] = ["sdpo-core", "sdpo-models", "sdpo-train", "sdpo-cli"];

type ModPath = Vec<String>;

/// A crate's modules: path → code (comments and unit-test modules removed).
fn modules(src: &Path) -> BTreeMap<ModPath, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.insert(module_path(src, &path), code_of(&path));
            }
        }
    }
    out
}

fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel: PathBuf = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModPath = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file's code without comments and without `#[cfg(test)]` items that follow.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path that starts with `crate::`, `super::` or `self::` in `code`, as segments,
/// with `use a::{b, c::d}` groups expanded (only the first segment inside a group matters
/// for resolution, so nested groups are cut there).
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .any(|p| rest.starts_with(p));
        let boundary = i == 0 || !is_ident_char(bytes[i - 1]);
        if starts && boundary {
            let (segments, end) = read_path(&bytes, i);
            out.extend(segments);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Reads `a::b::{c, d::e}` starting at `i`; returns the expanded paths and the end index.
fn read_path(chars: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        let start = i;
        while i < chars.len() && is_ident_char(chars[i]) {
            i += 1;
        }
        prefix.push(chars[start..i].iter().collect::<String>());
        if chars[i..].starts_with(&[':', ':']) {
            i += 2;
            if chars.get(i) == Some(&'{') {
                let mut depth = 0;
                let mut item = String::new();
                let mut items = Vec::new();
                for (j, &c) in chars.iter().enumerate().skip(i) {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                        _ if depth == 1 => item.push(c),
                        _ => {}
                    }
                    if depth == 0 {
                        items.push(item);
                        let expanded = items
                            .iter()
                            .filter_map(|it| {
                                let first: String = it
                                    .trim()
                                    .chars()
                                    .take_while(|c| is_ident_char(*c))
                                    .collect();
                                (!first.is_empty()).then(|| {
                                    let mut p = prefix.clone();
                                    p.push(first);
                                    p
                                })
                            })
                            .collect();
                        return (expanded, j + 1);
                    }
                }
                return (vec![prefix], chars.len());
            }
        } else {
            return (vec![prefix], i);
        }
    }
}

/// `pub use child::…::Item` re-exports of each module: (module, item) → child module.
fn re_exports(mods: &BTreeMap<ModPath, String>) -> BTreeMap<(ModPath, String), ModPath> {
    let mut out = BTreeMap::new();
    for (module, code) in mods {
        for stmt in code.split(';') {
            let Some(at) = stmt
                .find("pub use ")
                .or_else(|| stmt.find("pub(crate) use "))
            else {
                continue;
            };
            let body = stmt[at..].split_once("use ").unwrap().1.trim();
            let first: String = body.chars().take_while(|c| is_ident_char(*c)).collect();
            let mut child = module.clone();
            child.push(first);
            if !mods.contains_key(&child) {
                continue;
            }
            for item in body
                .split(|c: char| !is_ident_char(c))
                .filter(|s| !s.is_empty())
            {
                out.entry((module.clone(), item.to_string()))
                    .or_insert_with(|| child.clone());
            }
        }
    }
    out
}

/// The module that defines what `path` (as written in `from`) names.
fn resolve(
    from: &ModPath,
    path: &[String],
    mods: &BTreeMap<ModPath, String>,
    exports: &BTreeMap<(ModPath, String), ModPath>,
) -> Option<ModPath> {
    let mut base = from.clone();
    let mut rest = path;
    match path.first()?.as_str() {
        "crate" => {
            base.clear();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut module = base;
    for segment in rest {
        let mut child = module.clone();
        child.push(segment.clone());
        if mods.contains_key(&child) {
            module = child;
        } else if let Some(source) = exports.get(&(module.clone(), segment.clone())) {
            module = source.clone();
        } else {
            break;
        }
    }
    Some(module)
}

/// One cycle among `nodes` under `edges`, if any (as the nodes on it).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Sibling graphs: parent module → (child → children it uses).
fn sibling_graphs(src: &Path) -> BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> {
    let mods = modules(src);
    let exports = re_exports(&mods);
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, code) in &mods {
        for path in paths(code) {
            let Some(to) = resolve(from, &path, &mods, &exports) else {
                continue;
            };
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            // A module naming its own ancestor or descendant is declaration or re-export.
            if common == from.len() || common == to.len() {
                continue;
            }
            graphs
                .entry(from[..common].to_vec())
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .insert(to[common].clone());
        }
    }
    graphs
}

#[test]
fn no_crate_has_a_module_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cycles = Vec::new();
    for krate in CRATES {
        for (parent, graph) in sibling_graphs(&root.join(krate).join("src")) {
            if let Some(cycle) = find_cycle(&graph) {
                let parent = if parent.is_empty() {
                    krate.to_string()
                } else {
                    format!("{krate}::{}", parent.join("::"))
                };
                cycles.push(format!("in {parent}: {}", cycle.join(" → ")));
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_finds_a_cycle_and_resolves_re_exports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod inner;\npub use inner::Thing;\n").unwrap();
    std::fs::write(
        src.join("a/inner.rs"),
        "use crate::b::{Other, more::X};\n// use crate::nothing;\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "use crate::a::Thing;\n").unwrap();
    let graphs = sibling_graphs(src);
    let top = &graphs[&Vec::new()];
    assert_eq!(top["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(top["b"], BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(top).is_some());

    std::fs::write(src.join("b.rs"), "pub struct Other;\n").unwrap();
    let graphs = sibling_graphs(src);
    assert!(find_cycle(&graphs[&Vec::new()]).is_none());
}
