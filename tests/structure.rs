//! The crate's shape, kept by tests:
//! - no import circle between modules (a module using its parent's items is not one);
//! - no lower layer (domain, config, sources, sink, store, engine, transform…) importing a
//!   front end (`cli`, `tui`), the cloud glue (`cloud`) or the sandbox, and neither the engine
//!   nor the console naming an AWS SDK crate;
//! - no function of non-test code over `MAX_FN_LINES` lines.
//!
//! `cargo test --test structure -- --nocapture` prints the figures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 80;

/// Layers that must not import the front ends or the cloud glue.
const LOWER: &[&str] = &[
    "domain",
    "config",
    "secret",
    "workspace",
    "logs",
    "sources",
    "sink",
    "store",
    "engine",
    "transform",
];
const UPPER: &[&str] = &["cli", "tui", "cloud", "sandbox"];

type ModPath = Vec<String>;

struct Module {
    file: PathBuf,
    /// The file without its inline `#[cfg(test)] mod … { }` block.
    code: String,
    is_test: bool,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_test_file(rel: &Path) -> bool {
    let name = rel.file_name().unwrap().to_string_lossy();
    rel.components().any(|c| c.as_os_str() == "tests")
        || name == "tests.rs"
        || name.ends_with("_tests.rs")
        || name == "fixtures.rs"
}

/// Every module file of the library, by module path (`lib.rs` is the empty path).
fn modules() -> BTreeMap<ModPath, Module> {
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut out = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src()).unwrap().to_path_buf();
        if rel.starts_with("bin") || rel == Path::new("main.rs") {
            continue;
        }
        let mut path: ModPath = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if path == ["lib"] {
            path.clear();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = match inline_test_module(&text) {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        let is_test = is_test_file(&rel);
        out.insert(
            path,
            Module {
                file: rel,
                code,
                is_test,
            },
        );
    }
    out
}

/// Where `#[cfg(test)] mod NAME {` starts, if the file has one.
fn inline_test_module(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]") {
        let at = from + i;
        let rest = text[at + "#[cfg(test)]".len()..].trim_start();
        if let Some(after) = rest.strip_prefix("mod ") {
            let name_end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if after[name_end..].trim_start().starts_with('{') {
                return Some(at);
            }
        }
        from = at + 1;
    }
    None
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads `ident(::ident)*` from `s`, and a trailing `::{a, b::c}` group's first segments.
fn path_after(s: &str) -> (Vec<String>, Vec<String>, usize) {
    let mut segments = Vec::new();
    let mut at = 0;
    loop {
        let len = s[at..].find(|c: char| !is_ident(c)).unwrap_or(s.len() - at);
        if len == 0 {
            return (segments, Vec::new(), at);
        }
        segments.push(s[at..at + len].to_string());
        at += len;
        if !s[at..].starts_with("::") {
            return (segments, Vec::new(), at);
        }
        at += 2;
        if s[at..].starts_with('{') {
            let close = s[at..].find('}').map_or(s.len(), |c| at + c);
            let group = s[at + 1..close]
                .split(',')
                .filter_map(|item| {
                    let first = item.trim().split("::").next()?.trim();
                    let first = first.split_whitespace().next()?;
                    (first != "self" && first.chars().all(is_ident)).then(|| first.to_string())
                })
                .collect();
            return (segments, group, close);
        }
    }
}

/// The module a path names: its longest prefix that is a module file.
fn resolve(mods: &BTreeMap<ModPath, Module>, path: &[String]) -> Option<ModPath> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| mods.contains_key(p))
}

/// The modules a module's code names through `crate::`, `super::` or a child's name.
fn imports(mods: &BTreeMap<ModPath, Module>, me: &ModPath) -> BTreeSet<ModPath> {
    let code = &mods[me].code;
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let boundary = code[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !is_ident(c) && c != ':');
        let base = if !boundary {
            None
        } else if let Some(r) = rest.strip_prefix("crate::") {
            Some((Vec::new(), r, "crate::".len()))
        } else if rest.starts_with("super::") {
            let mut base = me.clone();
            let mut r = rest;
            let mut used = 0;
            while let Some(next) = r.strip_prefix("super::") {
                base.pop();
                r = next;
                used += "super::".len();
            }
            Some((base, r, used))
        } else {
            None
        };
        let Some((base, r, used)) = base else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let (segments, group, len) = path_after(r);
        let mut named = vec![[base.clone(), segments.clone()].concat()];
        for g in group {
            named.push([base.clone(), segments.clone(), vec![g]].concat());
        }
        for path in named {
            if let Some(m) = resolve(mods, &path) {
                out.insert(m);
            }
        }
        i += used + len.max(1);
    }
    // A parent naming its child module (`overlay::form(..)`).
    for child in mods.keys() {
        if child.len() == me.len() + 1 && child.starts_with(me) {
            let name = format!("{}::", child.last().unwrap());
            let named = code.match_indices(&name).any(|(at, _)| {
                code[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !is_ident(c) && c != ':')
            });
            if named {
                out.insert(child.clone());
            }
        }
    }
    out.remove(me);
    out
}

/// Import edges, without a module's uses of its own ancestors.
fn graph(mods: &BTreeMap<ModPath, Module>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    mods.keys()
        .map(|m| {
            let edges = imports(mods, m)
                .into_iter()
                .filter(|t| !(t.len() < m.len() && m.starts_with(t)))
                .collect();
            (m.clone(), edges)
        })
        .collect()
}

/// Strongly connected components of more than one module (Tarjan).
fn circles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'g ModPath, usize>,
        low: BTreeMap<&'g ModPath, usize>,
        stack: Vec<&'g ModPath>,
        on_stack: BTreeSet<&'g ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g ModPath) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in &self.graph[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    comp.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.found.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found
}

fn name(m: &ModPath) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mods = modules();
    let found = circles(&graph(&mods));
    let shown: Vec<String> = found
        .iter()
        .map(|c| c.iter().map(name).collect::<Vec<_>>().join(" <-> "))
        .collect();
    println!("import circles: {}", found.len());
    assert!(shown.is_empty(), "import circles:\n{}", shown.join("\n"));
}

#[test]
fn lower_layers_never_import_front_ends_the_cloud_or_an_aws_sdk() {
    let mods = modules();
    let graph = graph(&mods);
    let mut wrong = Vec::new();
    for (m, edges) in &graph {
        let Some(layer) = m.first() else { continue };
        if mods[m].is_test || !LOWER.contains(&layer.as_str()) {
            continue;
        }
        for t in edges {
            if t.first().is_some_and(|l| UPPER.contains(&l.as_str())) {
                wrong.push(format!("{} imports {}", name(m), name(t)));
            }
        }
    }
    println!("arrows up: {}", wrong.len());
    // The engine, the sources, the sink, the console and the domain never name an AWS type
    // (only `store::dynamodb`, `cloud` and the composition root in `cli` do).
    for (m, module) in &mods {
        let layer = m.first().map(String::as_str).unwrap_or("");
        let sdk_free = [
            "engine",
            "sources",
            "sink",
            "domain",
            "config",
            "transform",
            "tui",
        ];
        if sdk_free.contains(&layer) {
            for sdk in ["aws_sdk_", "aws_config", "aws_types", "aws_smithy"] {
                if module.code.contains(sdk) {
                    wrong.push(format!("{} names {sdk}", module.file.display()));
                }
            }
        }
        if layer == "engine"
            && (module.code.contains("ratatui") || module.code.contains("crossterm"))
        {
            wrong.push(format!("{} names the terminal UI", module.file.display()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Functions of non-test code longer than `MAX_FN_LINES`: (lines, file, line, name).
fn long_functions(mods: &BTreeMap<ModPath, Module>) -> Vec<(usize, String, usize, String)> {
    let mut out = Vec::new();
    for module in mods.values().filter(|m| !m.is_test) {
        let lines: Vec<&str> = module.code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(fn_name) = fn_header(line) else {
                continue;
            };
            let indent = &line[..line.len() - line.trim_start().len()];
            let Some(open) = (i..lines.len()).find(|&j| {
                let l = lines[j].trim_end();
                l.ends_with('{') || l.ends_with(';')
            }) else {
                continue;
            };
            if lines[open].trim_end().ends_with(';') {
                continue;
            }
            let close = (open + 1..lines.len())
                .find(|&k| lines[k] == format!("{indent}}}"))
                .unwrap_or(lines.len());
            let n = close - i + 1;
            if n > MAX_FN_LINES {
                out.push((n, module.file.display().to_string(), i + 1, fn_name));
            }
        }
    }
    out.sort_by(|a, b| b.cmp(a));
    out
}

/// The name of the function a line declares, if it declares one.
fn fn_header(line: &str) -> Option<String> {
    let mut rest = line.trim_start();
    for word in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(word).unwrap_or(rest);
        rest = rest.trim_start();
    }
    for word in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(word).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_string())
}

#[test]
fn no_function_is_longer_than_eighty_lines() {
    let long = long_functions(&modules());
    println!("functions over {MAX_FN_LINES} lines: {}", long.len());
    let shown: Vec<String> = long
        .iter()
        .map(|(n, file, line, f)| format!("{n:>4} src/{file}:{line} {f}"))
        .collect();
    assert!(shown.is_empty(), "{}", shown.join("\n"));
}

#[test]
fn the_reader_sees_circles_and_long_functions() {
    // The checks above would pass on a reader that sees nothing: show them a circle and a
    // long function, as text.
    assert_eq!(
        fn_header("    pub async fn run(x: u8) {").as_deref(),
        Some("run")
    );
    assert_eq!(fn_header("let f = run();"), None);
    let (segments, group, _) = path_after("engine::ops::{Ops, judge};");
    assert_eq!(segments, ["engine", "ops"]);
    assert_eq!(group, ["Ops", "judge"]);
    let a: ModPath = vec!["a".into()];
    let b: ModPath = vec!["b".into()];
    let graph = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert_eq!(circles(&graph), vec![vec![a, b]]);
    // The real tree has modules, imports and functions to look at.
    let mods = modules();
    assert!(mods.len() > 100, "{} modules", mods.len());
    let engine = vec!["engine".to_string()];
    assert!(
        imports(&mods, &engine).contains(&vec!["store".to_string()]),
        "the engine uses the store"
    );
}
