//! The dependency directions of the crate's modules (`src/lib.rs` has the map), checked on
//! the source: every `crate::…` path, and every `super::…` chain that climbs to the crate's
//! root, in every file under `src/` (tests included) must name a module the file's top-level
//! module may use. A new top-level module must be given its place in [`ALLOWED`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may use, top to bottom.
const ALLOWED: &[(&str, &[&str])] = &[
    // The composition root: builds and wires everything.
    (
        "app",
        &[
            "admin",
            "body",
            "chamilo",
            "config",
            "directory",
            "http1",
            "proxy",
            "scim",
            "secret",
            "server",
            "telemetry",
            "timer",
        ],
    ),
    // Listeners and connections; routes to the SCIM service and the pass-through. Knows
    // neither Chamilo nor the SCIM backend.
    (
        "server",
        &[
            "admin",
            "body",
            "config",
            "http1",
            "proxy",
            "scim",
            "secret",
            "telemetry",
            "timer",
        ],
    ),
    ("admin", &["body", "config", "secret", "telemetry"]),
    // The protocol, written against the `directory` trait.
    (
        "scim",
        &["body", "config", "directory", "secret", "telemetry"],
    ),
    // The pass-through, over the shared HTTP/1.1 codec.
    (
        "proxy",
        &["body", "config", "http1", "secret", "telemetry", "timer"],
    ),
    // The `directory` backend for Chamilo.
    (
        "chamilo",
        &[
            "body",
            "config",
            "directory",
            "secret",
            "telemetry",
            "timer",
        ],
    ),
    // The simulated Chamilo (tests, demo): knows nothing of the proxy.
    ("standin", &["body", "secret", "telemetry", "timer"]),
    ("directory", &["secret"]),
    ("http1", &[]),
    ("telemetry", &["config"]),
    ("config", &["secret"]),
    ("body", &[]),
    ("secret", &[]),
    ("timer", &[]),
];

/// Edges outside [`ALLOWED`] that are known and scheduled to go: (from, to, why).
const PENDING: &[(&str, &str, &str)] = &[];

fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    ALLOWED
        .iter()
        .map(|(module, uses)| (*module, uses.iter().copied().collect()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file below `src/` (`server/express/mod.rs` → `[server, express]`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The source without comments (line comments only: the crate has no block comments in code).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules named after each `crate::` (also in `crate::{a::…, b}` groups),
/// with their line numbers.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    for (at, _) in code.match_indices("crate::") {
        // `chamilo_scim_proxy::` does not occur in the library; skip identifiers ending in
        // `crate` (`my_crate::`).
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 1 => {
                        item_start = false;
                        found.push((line_of(at), ident_at(&group[i..]).to_owned()));
                    }
                    _ => {}
                }
            }
        } else {
            found.push((line_of(at), ident_at(rest).to_owned()));
        }
    }
    found
}

/// The byte ranges of inline modules (`mod tests { … }`), each a level more for `super::`.
fn inline_modules(code: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let after = &code[at + 4..];
        let name = ident_at(after.trim_start());
        let rest = after.trim_start()[name.len()..].trim_start();
        if name.is_empty() || !rest.starts_with('{') {
            continue;
        }
        let open = code.len() - rest.len();
        let mut depth = 0;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        spans.push((open, open + i));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    spans
}

/// The top-level modules named by `super::` chains that climb to the crate's root.
fn super_paths(code: &str, module: &[String]) -> Vec<(usize, String)> {
    let inline = inline_modules(code);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("super::") {
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        {
            continue; // the middle of a chain, counted from its start
        }
        let mut rest = &code[at..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        let depth = module.len() + inline.iter().filter(|(a, b)| *a < at && at < *b).count();
        if ups >= depth {
            let line = code[..at].matches('\n').count() + 1;
            found.push((line, ident_at(rest).to_owned()));
        }
    }
    found
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = allowed();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut pending_seen = BTreeSet::new();
    let mut unclassified = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = module_path(relative);
        if module == ["lib"] || module == ["main"] {
            continue; // the crate root and the binary may name every module
        }
        let top = module[0].as_str();
        let Some(uses) = allowed.get(top) else {
            unclassified.insert(top.to_owned());
            continue;
        };
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        let mut named = crate_paths(&code);
        named.extend(super_paths(&code, &module));
        for (line, target) in named {
            if target == top || target.is_empty() || target == "self" {
                continue;
            }
            if uses.contains(target.as_str()) {
                continue;
            }
            if let Some((a, b, _)) = PENDING.iter().find(|(a, b, _)| *a == top && *b == target) {
                pending_seen.insert((*a, *b));
                continue;
            }
            violations.push(format!(
                "src/{}:{line}: `{top}` uses `{target}`, which it may not (allowed: {uses:?})",
                relative.display()
            ));
        }
    }
    assert!(
        unclassified.is_empty(),
        "top-level modules without a place in tests/layering.rs ALLOWED: {unclassified:?}"
    );
    assert!(
        violations.is_empty(),
        "dependencies against the layering (see src/lib.rs):\n{}",
        violations.join("\n")
    );
    for (from, to, why) in PENDING {
        if !pending_seen.contains(&(*from, *to)) {
            eprintln!(
                "note: the pending exception {from} → {to} is no longer used and can be removed from tests/layering.rs ({why})"
            );
        }
    }
}

#[test]
fn the_allowed_directions_have_no_cycle() {
    let allowed = allowed();
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        allowed: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        state: &mut BTreeMap<&'a str, bool>,
        stack: &mut Vec<&'a str>,
    ) {
        match state.get(node) {
            Some(true) => return,
            Some(false) => panic!("cycle: {} → {node}", stack.join(" → ")),
            None => {}
        }
        state.insert(node, false);
        stack.push(node);
        for next in allowed.get(node).into_iter().flatten() {
            assert!(allowed.contains_key(next), "{node} may use unknown {next}");
            visit(next, allowed, state, stack);
        }
        stack.pop();
        state.insert(node, true);
    }
    let mut state = BTreeMap::new();
    for node in allowed.keys() {
        visit(node, &allowed, &mut state, &mut Vec::new());
    }
}

#[test]
fn the_scanner_finds_grouped_and_relative_paths() {
    let code = "use crate::{a::X, b,\n    c::{d, e}};\nlet x = crate::f::g();\nuse super::super::h::Y;\nuse super::i;\nmod tests {\n    use super::super::j;\n    use super::super::super::k;\n}";
    let names: Vec<String> = crate_paths(code).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["a", "b", "c", "f"]);
    let module = vec!["m".to_owned(), "n".to_owned()];
    let names: Vec<String> = super_paths(code, &module)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names, ["h", "k"]);
}
