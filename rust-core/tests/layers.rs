//! The layer rule of the core (`src/lib.rs`): every file belongs to the layer of its top
//! folder, and a file may use only files of its own layer or of layers below it:
//!
//! `lib.rs` > `jni_bridge` > `dispatch` > `flows` > `upstream` > `pure` > `wire`.
//!
//! Read from the source: every `use crate::…` / `use super::…` / `use self::…` declaration
//! and every inline `crate::…` / `super::…` path of non-test code is resolved to the file it
//! names. The test fails on an upward arrow, or on a cycle between files (within a layer, too).
//! Test code (`tests.rs` files, items under `#[cfg(test)]`) may call the crate from the top
//! and is not read.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const LAYERS: [&str; 6] = ["wire", "pure", "upstream", "flows", "dispatch", "jni_bridge"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as paths relative to `src/` with `/` separators.
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(src_dir()).unwrap().to_string_lossy().replace('\\', "/");
            out.push(rel);
        }
    }
}

/// Rank of a file's layer; `lib.rs` (the crate root) is above every layer.
fn rank(file: &str) -> usize {
    let top = file.split('/').next().unwrap_or("");
    match LAYERS.iter().position(|l| *l == top) {
        Some(r) => r,
        None if file == "lib.rs" => LAYERS.len(),
        None => panic!("{file} is in no layer: put it in one of {LAYERS:?}"),
    }
}

/// The module path of a file: `flows/app.rs` -> [flows, app]; `wire/mod.rs` -> [wire].
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.trim_end_matches(".rs").split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file a module path (from the crate root) names: the longest prefix that is a file.
fn file_of(segments: &[String], files: &BTreeSet<String>) -> String {
    for k in (1..=segments.len()).rev() {
        let base = segments[..k].join("/");
        for candidate in [format!("{base}.rs"), format!("{base}/mod.rs")] {
            if files.contains(&candidate) {
                return candidate;
            }
        }
    }
    "lib.rs".to_string()
}

/// Non-test code of a file: comments dropped, `#[cfg(test)]` items skipped (rustfmt closes
/// a top-level item with `}` in column 0, or it is one line ending with `;`).
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            for item in lines.by_ref() {
                let t = item.trim_end();
                if t == "}" || (!item.starts_with(' ') && t.ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// `a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e].
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else { return vec![tree.to_string()] };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).flat_map(|p| expand(&format!("{prefix}{}", p.trim()))).collect()
}

/// The paths a file's code names: `use` trees and inline `crate::` / `super::` paths.
fn named_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    // `use` declarations, possibly over several lines.
    let mut rest = code;
    while let Some(i) = find_use(rest) {
        let after = &rest[i..];
        let end = after.find(';').unwrap_or(after.len());
        let tree = after[4..end].trim();
        let tree = tree.split(" as ").next().unwrap_or(tree);
        paths.extend(expand(tree));
        rest = &after[end..];
    }
    // Inline paths (calls and types written out in full).
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            let prev = code[..at].chars().next_back();
            if !prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                let path: String =
                    code[at..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                paths.push(path);
            }
            from = at + start.len();
        }
    }
    paths
        .into_iter()
        .filter(|p| p.starts_with("crate::") || p.starts_with("super::") || p.starts_with("self::"))
        .collect()
}

/// Start of the next `use ` declaration (also `pub use`, `pub(crate) use`).
fn find_use(code: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = code[from..].find("use ") {
        let at = from + i;
        let prev = code[..at].chars().next_back();
        if prev.is_none_or(|c| c.is_whitespace() || c == ')' || c == ';' || c == '{' || c == '}') {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Resolves `crate::…`, `super::…`, `self::…` as written in `file` to a file.
fn resolve(path: &str, file: &str, files: &BTreeSet<String>) -> String {
    let mut segs: Vec<String> = path.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
    let mut base = match segs.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") | Some("self") => module_of(file),
        _ => unreachable!("only crate/super/self paths are resolved"),
    };
    if segs[0] == "crate" || segs[0] == "self" {
        segs.remove(0);
    }
    while segs.first().is_some_and(|s| s == "super") {
        segs.remove(0);
        base.pop();
    }
    base.extend(segs);
    file_of(&base, files)
}

/// File -> the files its non-test code uses (itself excluded).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    rust_files(&src_dir(), &mut all);
    let files: BTreeSet<String> = all.iter().cloned().collect();
    let mut g = BTreeMap::new();
    for f in all.iter().filter(|f| !f.ends_with("/tests.rs") && !f.contains("/tests/")) {
        let code = production_code(&fs::read_to_string(src_dir().join(f)).unwrap());
        let deps: BTreeSet<String> =
            named_paths(&code).iter().map(|p| resolve(p, f, &files)).filter(|d| d != f).collect();
        g.insert(f.clone(), deps);
    }
    g
}

#[test]
fn every_arrow_between_files_points_to_the_same_layer_or_down() {
    let g = graph();
    let upward: Vec<String> = g
        .iter()
        .flat_map(|(f, deps)| deps.iter().filter(|d| rank(d) > rank(f)).map(move |d| format!("{f} -> {d}")))
        .collect();
    assert!(
        upward.is_empty(),
        "upward arrows (a file may use only its own layer or lower ones):\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_cycle_between_files() {
    let g = graph();
    // Depth-first search; a grey node met again closes a cycle.
    fn visit<'a>(
        f: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(f, 1);
        stack.push(f);
        for d in g.get(f).into_iter().flatten() {
            match state.get(d.as_str()) {
                Some(1) => {
                    let i = stack.iter().position(|s| *s == d).unwrap_or(0);
                    cycles.push(format!("{} -> {d}", stack[i..].join(" -> ")));
                }
                Some(_) => {}
                None => visit(d, g, state, stack, cycles),
            }
        }
        stack.pop();
        state.insert(f, 2);
    }
    let (mut state, mut stack, mut cycles) = (BTreeMap::new(), Vec::new(), Vec::new());
    for f in g.keys() {
        if !state.contains_key(f.as_str()) {
            visit(f, &g, &mut state, &mut stack, &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles between files:\n{}", cycles.join("\n"));
}

#[test]
fn wire_types_import_nothing_of_ours_outside_wire() {
    let g = graph();
    for (f, deps) in g.iter().filter(|(f, _)| f.starts_with("wire/")) {
        for d in deps {
            assert!(d.starts_with("wire/"), "{f} uses {d}: the wire types import nothing of ours");
        }
    }
}

#[test]
fn the_reader_sees_uses_groups_inline_paths_and_skips_test_code() {
    // The reader itself must not miss arrows, or the tests above pass vacuously.
    let code = production_code(
        "use crate::wire::{Answer, answer::err_answer};\nuse super::json::{\n    non_empty_str,\n};\n\
         fn f() { crate::flows::app::handle(); } // crate::dispatch::call\n\
         #[cfg(test)]\nmod tests {\n    use crate::dispatch::call;\n}\n",
    );
    let paths = named_paths(&code);
    assert!(paths.contains(&"crate::wire::Answer".to_string()), "{paths:?}");
    assert!(paths.contains(&"crate::wire::answer::err_answer".to_string()), "{paths:?}");
    assert!(paths.contains(&"super::json::non_empty_str".to_string()), "{paths:?}");
    assert!(paths.contains(&"crate::flows::app::handle".to_string()), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("dispatch")), "comments and test code are not read: {paths:?}");
    let g = graph();
    assert!(g["dispatch/mod.rs"].contains("flows/storage.rs"), "{:?}", g["dispatch/mod.rs"]);
    assert!(g["flows/obo.rs"].contains("flows/resource.rs"), "{:?}", g["flows/obo.rs"]);
    assert!(g["jni_bridge/mod.rs"].contains("dispatch/mod.rs"), "{:?}", g["jni_bridge/mod.rs"]);
    assert!(g.len() > 30, "every source file is read: {}", g.len());
}
