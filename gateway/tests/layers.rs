//! Layering: no import circles among a crate's top-level modules (each file
//! or folder directly under `src/`), for the gateway and the worker. The
//! same rule as `shared/tools/import-circles.py`: a module's edges are its
//! `crate::X` references outside `#[cfg(test)]` parts (unit tests may reach
//! anywhere); any strongly connected set of two or more modules fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level modules `crate::` references in `text` (test parts cut off).
fn references(text: &str) -> BTreeSet<String> {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut refs = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        // `crate::` inside a longer name (`my_crate::`) is not ours.
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first segment of each top-level item.
            let (mut depth, mut item_start, mut end) = (0usize, true, group.len());
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = j;
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[j..]);
                        if !name.is_empty() && name != "self" {
                            refs.insert(name);
                        }
                    }
                    _ => {}
                }
            }
            rest = &group[end..];
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs
}

/// The module graph of a crate's `src/` (`main` and `lib` are roots, not modules).
fn graph_of(src: &Path) -> Graph {
    fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, files);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut sources = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        sources.push((top, std::fs::read_to_string(&f).unwrap()));
    }
    graph(sources.iter().map(|(m, t)| (m.as_str(), t.as_str())))
}

/// Builds the graph from (top-level module, source text) pairs.
fn graph<'a>(sources: impl Iterator<Item = (&'a str, &'a str)>) -> Graph {
    let mut g = Graph::new();
    for (top, text) in sources {
        if top == "main" || top == "lib" {
            continue;
        }
        let refs = references(text);
        g.entry(top.to_string()).or_default().extend(refs.into_iter().filter(|r| r != top));
    }
    // Only edges to modules of the crate (not `crate::SomeReexport` names).
    let mods: BTreeSet<String> = g.keys().cloned().collect();
    for targets in g.values_mut() {
        targets.retain(|t| mods.contains(t));
    }
    g
}

/// The import circles: strongly connected sets of two or more modules (Tarjan).
fn circles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in &t.g[v] {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn assert_no_circles(crate_dir: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(crate_dir).join("src");
    let g = graph_of(&src);
    assert!(g.len() > 3, "{}: found only {:?}", src.display(), g.keys());
    let found = circles(&g);
    let listed: Vec<String> = found.iter().map(|c| c.join(" -> ")).collect();
    assert!(found.is_empty(), "import circles in {crate_dir}/src (a lower layer uses a higher one):\n  {}", listed.join("\n  "));
}

#[test]
fn gateway_modules_import_only_downward() {
    assert_no_circles("gateway");
}

#[test]
fn worker_modules_import_only_downward() {
    assert_no_circles("worker");
}

#[test]
fn the_checker_finds_a_circle_and_ignores_unit_tests() {
    let sources = [
        ("a", "use crate::b::Thing;\nfn f() {}"),
        ("b", "fn g() { crate::c::h() }"),
        ("c", "use crate::{a, d::{x, y}};"),
        ("d", "use crate::error::E;\n#[cfg(test)]\nmod tests { use crate::a; }"),
        ("error", "pub struct E; // my_crate::d is another crate"),
        ("main", "use crate::a;"),
    ];
    let g = graph(sources.into_iter());
    assert_eq!(g["c"], ["a", "d"].map(String::from).into());
    assert!(!g["d"].contains("a"), "a #[cfg(test)] part makes no edge");
    assert!(g["error"].is_empty());
    assert_eq!(circles(&g), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    // Breaking the edge c -> a breaks the circle.
    let g = graph(sources.into_iter().map(|(m, t)| if m == "c" { (m, "use crate::d::x;") } else { (m, t) }));
    assert!(circles(&g).is_empty());
}
