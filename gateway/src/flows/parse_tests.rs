use super::compile;

fn err(src: &str) -> crate::flows::FlowError {
    compile("t.yaml", "t", src).expect_err("should not compile")
}

#[test]
fn example_flows_compile() {
    for (id, src) in crate::flows::registry::EMBEDDED {
        let f = compile(id, id, src).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.bundle_id, *id);
        assert_eq!(f.hash.len(), 64);
    }
}

#[test]
fn unknown_step_names_its_line_and_column() {
    let e = err("steps:\n  - say: hi\n  - sya: typo\n");
    assert_eq!((e.line, e.column), (3, 5), "{e}");
    assert!(e.message.contains("unknown step `sya`"), "{e}");
}

#[test]
fn yaml_syntax_error_has_position() {
    let e = err("steps:\n  - say: [unclosed\n");
    assert!(e.line >= 2, "{e}");
    assert!(e.to_string().starts_with("t.yaml:"), "{e}");
}

#[test]
fn template_syntax_error_points_at_the_step() {
    let e = err("steps:\n  - say: \"{{ input.text \"\n");
    assert_eq!(e.line, 2, "{e}");
    assert!(e.message.contains("template error"), "{e}");
}

#[test]
fn unknown_option_is_named() {
    let e = err("steps:\n  - ask: ok?\n    choises: [a, b]\n");
    assert_eq!(e.line, 3);
    assert!(e.message.contains("choises"), "{e}");
}

#[test]
fn loops_must_be_bounded() {
    let e = err("steps:\n  - loop:\n      steps:\n        - say: x\n");
    assert!(e.message.contains("max"), "{e}");
    let e = err("steps:\n  - loop:\n      max: 100000\n      steps:\n        - say: x\n");
    assert!(e.message.contains("10000"), "{e}");
}

#[test]
fn duplicate_step_ids_are_refused() {
    let e = err("steps:\n  - id: a\n    say: x\n  - id: a\n    say: y\n");
    assert!(e.message.contains("used twice"), "{e}");
}

#[test]
fn bad_durations_and_schemas_are_refused() {
    assert!(err("steps:\n  - wait: 5x\n").message.contains("duration"));
    let e = err("input_schema: {type: nonsense}\nsteps:\n  - say: x\n");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("input_schema"), "{e}");
}

#[test]
fn ask_without_choices_must_allow_free_text() {
    let e = err("steps:\n  - ask: q\n    allow_free_text: false\n");
    assert!(e.message.contains("free text"), "{e}");
}

#[test]
fn flows_that_read_history_are_marked() -> Result<(), crate::flows::FlowError> {
    let history = |src: &str| compile("t.yaml", "t", src).map(|f| f.uses_history);
    let chat = crate::flows::registry::EMBEDDED
        .iter()
        .find(|(id, _)| *id == "chat")
        .map_or("", |(_, src)| src);
    assert!(history(chat)?, "an llm step with history: true");
    assert!(history("steps:\n  - say: \"{{ history | length }}\"\n")?);
    assert!(!history("steps:\n  - llm: hi\n")?);
    Ok(())
}

#[test]
fn triggers_are_a_list_of_names() -> Result<(), crate::flows::FlowError> {
    let f = compile(
        "t.yaml",
        "t",
        "triggers: [deploy, nightly-2]\nsteps:\n  - say: hi\n",
    )?;
    assert_eq!(f.triggers, ["deploy", "nightly-2"]);
    let e = err("triggers: deploy\nsteps:\n  - say: hi\n");
    assert_eq!((e.line, e.column), (1, 11), "{e}");
    assert!(e.message.contains("list of names"), "{e}");
    let e = err("triggers: [\"bad name\"]\nsteps:\n  - say: hi\n");
    assert!(e.message.contains("trigger name"), "{e}");
    Ok(())
}
