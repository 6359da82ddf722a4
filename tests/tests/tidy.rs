//! The workspace keeps its architecture's invariants (`e2e::tidy`): only the store speaks
//! SQL, thin clients never depend on the gateway, the engine performs no I/O, and no source
//! file passes 600 lines. The second test plants one violation of each rule in a copy of
//! the relevant files and checks that each rule reports it.

use std::path::Path;

use e2e::tidy;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_workspace_is_tidy() {
    let found = tidy::check(workspace());
    let list: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(list.is_empty(), "tidy violations:\n{}", list.join("\n"));
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("a parent dir")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

#[test]
fn each_rule_reports_a_planted_violation() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    // A clean tree first: nothing to report.
    write(
        root,
        "gateway/src/store/runs.rs",
        "fn f() { c.execute(\"SELECT 1\") }\n",
    );
    write(
        root,
        "gateway/src/engine/exec.rs",
        "use crate::flows::Flow;\n",
    );
    write(
        root,
        "web/Cargo.toml",
        "[package]\nname = \"web\"\n[dependencies]\nprotocol = { path = \"../protocol\" }\n",
    );
    write(
        root,
        "protocol/src/lib.rs",
        &"// line\n".repeat(tidy::MAX_LINES),
    );
    write(
        root,
        "gateway/src/flows/parse_tests.rs",
        &"x\n".repeat(2 * tidy::MAX_LINES),
    );
    write(
        root,
        "gateway/src/engine/tests/table.rs",
        &"x\n".repeat(2 * tidy::MAX_LINES),
    );
    assert_eq!(tidy::check(root), Vec::new());

    // Then one violation per rule.
    write(
        root,
        "gateway/src/http/runs.rs",
        "let n: i64 = conn.query_row(\"SELECT count(*) FROM runs\", [], |r| r.get(0))?;\n",
    );
    write(
        root,
        "gateway/src/http/raw.rs",
        "use rusqlite::Connection;\n",
    );
    write(
        root,
        "bench/Cargo.toml",
        "[package]\nname = \"bench\"\n[dev-dependencies]\ngateway = { path = \"../gateway\" }\n",
    );
    write(
        root,
        "gateway/src/engine/exec.rs",
        "use crate::flows::Flow;\nlet now = chrono::Utc::now();\n",
    );
    write(
        root,
        "gateway/src/engine/resume.rs",
        "async fn f() { tokio::time::sleep(d).await }\n",
    );
    write(
        root,
        "protocol/src/lib.rs",
        &"// line\n".repeat(tidy::MAX_LINES + 1),
    );
    // The harness crate lives in `tests/`, but its `src` is not test code.
    write(
        root,
        "tests/src/app.rs",
        &"// line\n".repeat(tidy::MAX_LINES + 1),
    );
    let found = tidy::check(root);
    let rules = |r: &str| found.iter().filter(|v| v.rule == r).count();
    assert_eq!(rules("sql-outside-store"), 2, "{found:#?}");
    assert_eq!(rules("client-on-gateway"), 1, "{found:#?}");
    assert_eq!(rules("engine-io"), 2, "{found:#?}");
    assert_eq!(rules("long-file"), 2, "{found:#?}");
    let engine = found
        .iter()
        .find(|v| v.rule == "engine-io")
        .expect("engine");
    assert_eq!(engine.line, 2, "it names the line: {engine}");
}
