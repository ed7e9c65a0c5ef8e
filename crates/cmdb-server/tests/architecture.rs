//! Checks of the invariants ARCHITECTURE.md states about the server's structure, read from the
//! source itself: the module graph has no cycles, the service layer depends on no edge, and no
//! request handler (`api/`, `web/pages/`) holds SQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its unit tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level module of each file (the first component under src/), and the files.
fn files() -> Vec<(String, PathBuf, String)> {
    let mut paths = Vec::new();
    sources(&src(), &mut paths);
    paths
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(src()).ok()?.to_string_lossy().into_owned();
            if relative == "main.rs" || relative == "lib.rs" {
                return None;
            }
            let module = relative.split('/').next()?.trim_end_matches(".rs").to_owned();
            Some((module, path.clone(), relative))
        })
        .collect()
}

/// module -> the crate modules it names (`crate::x`).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path, _) in files() {
        let text = code(&path);
        let entry = graph.entry(module.clone()).or_default();
        for (index, _) in text.match_indices("crate::") {
            let name: String = text[index + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() && name != module {
                entry.insert(name);
            }
        }
    }
    graph
}

#[test]
fn the_module_graph_has_no_cycles() {
    let graph = graph();
    assert!(graph.contains_key("service") && graph.contains_key("api") && graph.contains_key("web"), "{graph:?}");
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_service_layer_depends_on_no_edge() {
    let graph = graph();
    let service = &graph["service"];
    for edge in ["api", "web", "app", "error", "state", "routing"] {
        assert!(!service.contains(edge), "service depends on {edge}: {service:?}");
    }
    for (module, path, relative) in files() {
        if module == "service" {
            let text = code(&path);
            for word in ["axum", "StatusCode", "ApiError", "WebError"] {
                assert!(!text.contains(word), "{relative} names {word}: the service layer knows no HTTP");
            }
        }
    }
    // The database layer depends on nothing of the server.
    let db_uses: Vec<&String> = graph.get("db").map(|uses| uses.iter().collect()).unwrap_or_default();
    assert!(
        db_uses.iter().all(|module| module.as_str() == "file_modes"),
        "db.rs opens databases and nothing more (it may only create its files private): {db_uses:?}"
    );
}

#[test]
fn sql_stays_out_of_request_handlers() {
    let mut handlers = 0;
    for (_, path, relative) in files() {
        if !(relative.starts_with("api/") || relative.starts_with("web/pages/")) {
            continue;
        }
        handlers += 1;
        let text = code(&path);
        for word in ["sqlx::query", "Sql::new", "query_scalar", "SELECT ", "INSERT ", "UPDATE ", "DELETE "] {
            assert!(!text.contains(word), "{relative} runs SQL ({word}): move it into a service function");
        }
    }
    assert!(handlers >= 10, "the handler files were found: {handlers}");
}
