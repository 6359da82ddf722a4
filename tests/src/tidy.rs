//! Tidy checks: the architecture's invariants as code, in the spirit of rust-analyzer's
//! `tidy` tests. Each rule reads the source tree (no build) and names every place that
//! breaks it:
//!
//! - [`sql_outside_store`]: only `gateway::store` speaks SQL or uses rusqlite or postgres;
//! - [`clients_on_gateway`]: the thin clients (`bridges`, `web`, `tray`, `bench`) never
//!   depend on the `gateway` crate;
//! - [`engine_io`]: the engine imports no I/O (async runtime, network, files, processes,
//!   the clock, the store or the runner);
//! - [`long_files`]: no non-test source file passes 600 lines.
//!
//! `tests/tests/tidy.rs` runs them on the workspace and on a tree with planted violations.

use std::path::{Path, PathBuf};

/// One broken rule: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub path: PathBuf,
    pub line: usize,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: [{}] {}",
            self.path.display(),
            self.line,
            self.rule,
            self.what
        )
    }
}

/// Every rule on the workspace at `root`.
pub fn check(root: &Path) -> Vec<Violation> {
    let mut v = sql_outside_store(root);
    v.extend(clients_on_gateway(root));
    v.extend(engine_io(root));
    v.extend(long_files(root));
    v
}

/// The `.rs` files under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The lines of a file that are code (not `//` comments), numbered from 1.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_owned()))
        .collect()
}

/// SQL statements as they appear in string literals.
const SQL: &[&str] = &[
    "SELECT ",
    "INSERT INTO",
    "INSERT OR ",
    "DELETE FROM",
    "UPDATE ",
    "CREATE TABLE",
    "CREATE INDEX",
    "ALTER TABLE",
    "PRAGMA ",
    "BEGIN IMMEDIATE",
];

/// Only `gateway/src/store` speaks SQL in the gateway.
pub fn sql_outside_store(root: &Path) -> Vec<Violation> {
    let src = root.join("gateway/src");
    let store = src.join("store");
    let mut out = Vec::new();
    for f in rust_files(&src)
        .into_iter()
        .filter(|f| !f.starts_with(&store))
    {
        for (n, line) in code_lines(&f) {
            let sql = line.contains('"') && SQL.iter().any(|s| line.contains(s));
            if line.contains("rusqlite") || line.contains("postgres::") || sql {
                out.push(Violation {
                    rule: "sql-outside-store",
                    path: f.clone(),
                    line: n,
                    what: format!("SQL outside gateway::store: `{}`", line.trim()),
                });
            }
        }
    }
    out
}

/// The thin clients: they speak to the gateway over HTTP through `protocol` only.
pub const CLIENTS: &[&str] = &["bridges", "web", "tray", "bench"];

/// No thin client depends on the `gateway` crate (normal, dev or build dependency).
pub fn clients_on_gateway(root: &Path) -> Vec<Violation> {
    let mut out = Vec::new();
    for c in CLIENTS {
        let path = root.join(c).join("Cargo.toml");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let manifest: toml::Table = toml::from_str(&text).unwrap_or_default();
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let deps = manifest.get(section).and_then(|d| d.as_table());
            if deps.is_some_and(|d| d.contains_key("gateway")) {
                out.push(Violation {
                    rule: "client-on-gateway",
                    path: path.clone(),
                    line: line_of(&text, "gateway"),
                    what: format!(
                        "`{c}` is a thin client: its [{section}] must not name `gateway`"
                    ),
                });
            }
        }
    }
    out
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map_or(1, |i| i + 1)
}

/// What the engine must not touch: it computes transitions from data it is given.
const ENGINE_FORBIDDEN: &[&str] = &[
    "tokio",
    "reqwest",
    "rusqlite",
    "std::fs",
    "std::net",
    "std::process",
    "std::thread",
    "SystemTime",
    "Instant::now",
    "Utc::now",
    "Local::now",
    "crate::store",
    "crate::runner",
    "crate::http",
    "crate::llm",
];

/// The engine performs no I/O.
pub fn engine_io(root: &Path) -> Vec<Violation> {
    let mut out = Vec::new();
    for f in rust_files(&root.join("gateway/src/engine")) {
        for (n, line) in code_lines(&f) {
            if let Some(bad) = ENGINE_FORBIDDEN.iter().find(|b| line.contains(*b)) {
                out.push(Violation {
                    rule: "engine-io",
                    path: f.clone(),
                    line: n,
                    what: format!("the engine performs no I/O, yet this uses `{bad}`"),
                });
            }
        }
    }
    out
}

/// The longest a non-test source file may be.
pub const MAX_LINES: usize = 600;

/// Whether `path` holds tests (a `tests/` dir, `tests.rs`, `*_tests.rs`) or examples.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    path.components().any(|c| {
        matches!(
            c.as_os_str().to_str(),
            Some("tests" | "benches" | "examples")
        )
    }) || name == "tests.rs"
        || name.ends_with("_tests.rs")
}

/// No non-test source file of a workspace crate passes [`MAX_LINES`].
pub fn long_files(root: &Path) -> Vec<Violation> {
    let crates = [
        "protocol", "gateway", "bridges", "web", "tray", "bench", "tests",
    ];
    let mut out = Vec::new();
    for c in crates {
        let src = root.join(c).join("src");
        for f in rust_files(&src) {
            // Relative to the crate's `src`: the harness crate's own folder is `tests/`.
            if is_test_file(f.strip_prefix(&src).unwrap_or(&f)) {
                continue;
            }
            let n = std::fs::read_to_string(&f).map_or(0, |t| t.lines().count());
            if n > MAX_LINES {
                out.push(Violation {
                    rule: "long-file",
                    path: f,
                    line: n,
                    what: format!("{n} lines; split it by concern (at most {MAX_LINES})"),
                });
            }
        }
    }
    out
}
