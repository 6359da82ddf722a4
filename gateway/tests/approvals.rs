//! Team approvals over HTTP: approvers checked as answers arrive (403 for a stranger, 409
//! for a second vote or a vote too late), a quorum of people, the approvals list and its
//! filter, people and groups, and reminders as durable timers across `kill -9`.

use e2e::app::{TestApp, spawn_app};
use e2e::wait::eventually;
use serde_json::{Value, json};

const GATE: &str = "steps:\n  - id: gate\n    ask: \"Ship {{ input.text }}?\"\n    choices: [approve, reject]\n    approvers: [\"person:alice\", \"group:ops\", \"key:carol\"]\n    quorum: 2\n  - output: \"{{ steps.gate }}\"\n";

async fn key(app: &TestApp, name: &str) -> String {
    let k = app.create_key(name, &["read", "command"]).await;
    k["token"].as_str().unwrap().to_owned()
}

fn records(ledger: &[Value], prefix: &str) -> Vec<Value> {
    ledger
        .iter()
        .filter(|r| r["step_id"].as_str().is_some_and(|s| s.starts_with(prefix)))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_quorum_of_people_decides_and_everyone_else_is_refused() {
    let app = spawn_app().await;
    let (alice, bob, carol, dave) = (
        key(&app, "alice").await,
        key(&app, "bob").await,
        key(&app, "carol").await,
        key(&app, "dave").await,
    );
    let alice2 = key(&app, "alice-laptop").await;
    let (st, b) = app
        .post("/api/gateway/people", &json!({"name": "alice", "identities": ["key:alice", "key:alice-laptop", "telegram:111"]}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = app
        .post(
            "/api/gateway/groups",
            &json!({"name": "ops", "members": ["key:bob"]}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = app.get("/api/gateway/people").await;
    assert_eq!(
        (st, b["items"][0]["identities"].as_array().unwrap().len()),
        (200, 3),
        "{b}"
    );
    let (st, b) = app.upload("gate.yaml", GATE).await;
    assert_eq!(st, 200, "{b}");
    let run = app.start_run("gate", json!({"text": "v2"})).await;
    app.wait_on(&run, "gate.1").await;

    // The approvals list: the caller's by default; an admin may ask for anyone's.
    let (_, mine) = app.with_token(&carol).get("/api/gateway/approvals").await;
    assert_eq!(mine["items"][0]["run_id"], run.as_str(), "{mine}");
    assert_eq!(mine["items"][0]["quorum"], 2);
    let (_, theirs) = app.with_token(&dave).get("/api/gateway/approvals").await;
    assert_eq!(theirs["items"], json!([]), "dave may answer nothing");
    let (st, _) = app
        .with_token(&dave)
        .get("/api/gateway/approvals?for=person:alice")
        .await;
    assert_eq!(st, 403);
    let (_, alices) = app.get("/api/gateway/approvals?for=person:alice").await;
    assert_eq!(alices["items"].as_array().unwrap().len(), 1, "{alices}");

    let path = format!("/api/gateway/runs/{run}/approve");
    let (st, b) = app.with_token(&dave).post_empty(&path).await;
    assert_eq!(st, 403, "a stranger: {b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not answer"),
        "{b}"
    );
    let (st, b) = app.with_token(&alice).post_empty(&path).await;
    assert_eq!(st, 200, "{b}");
    votes_counted(&app, &run, 1).await;
    // Alice again, from another of her identities: one vote per person.
    let (st, b) = app
        .with_token(&alice2)
        .post_empty(&format!("/api/gateway/runs/{run}/deny"))
        .await;
    assert_eq!(st, 409, "a second vote: {b}");
    let (st, b) = app.with_token(&bob).post_empty(&path).await;
    assert_eq!(st, 200, "bob, through group ops: {b}");
    let done = app.wait_for_status(&run, "completed").await;
    assert_eq!(done["output"]["response"], "approve");
    let (st, b) = app.with_token(&carol).post_empty(&path).await;
    assert_eq!(st, 409, "too late: {b}");

    let ledger = app.ledger(&run).await;
    let votes = records(&ledger, "gate.1/vote");
    let voters: Vec<&str> = votes
        .iter()
        .map(|v| v["result"]["voter"].as_str().unwrap())
        .collect();
    assert_eq!(voters, ["person:alice", "key:bob"]);
    assert_eq!(
        votes[1]["result"]["tally"],
        json!({"approve": 2, "reject": 0})
    );
}

/// An answer is checked against the prompt inside the transaction that stores it, after the
/// idempotency check: a retried vote (same `command_id`, same payload) is the same command
/// even once it counted (and another sender reusing it is refused), while a new vote from
/// the same person is refused, and an answer that is no choice is refused before anything
/// is stored.
#[tokio::test]
async fn a_retried_vote_is_the_same_command_and_a_second_vote_is_refused() {
    let app = spawn_app().await;
    let (alice, dave) = (key(&app, "alice").await, key(&app, "dave").await);
    let flow = "steps:\n  - id: gate\n    ask: Ship?\n    choices: [approve, reject]\n    approvers: [\"key:alice\", \"key:bob\"]\n    quorum: 2\n";
    let (st, b) = app.upload("pair.yaml", flow).await;
    assert_eq!(st, 200, "{b}");
    let run = app.start_run("pair", json!({})).await;
    let wait_key = app.wait_key(&run).await;
    let vote = |id: &str, response: &str| {
        json!({"command_id": id, "run_id": run, "type": "resume",
               "payload": {"wait_key": wait_key, "payload": {"response": response}}})
    };
    let alice = app.with_token(&alice);
    let (st, b) = alice
        .post("/api/gateway/commands", &vote("a1", "maybe"))
        .await;
    assert_eq!(
        (st, &b["error"]["code"]),
        (400, &json!("invalid_answer")),
        "{b}"
    );
    let (st, b) = alice
        .post("/api/gateway/commands", &vote("a1", "approve"))
        .await;
    assert_eq!((st, &b["duplicate"]), (200, &json!(false)), "{b}");
    votes_counted(&app, &run, 1).await;
    let (st, b) = alice
        .post("/api/gateway/commands", &vote("a1", "approve"))
        .await;
    assert_eq!((st, &b["duplicate"]), (200, &json!(true)), "a retry: {b}");
    // Someone else sending the same command learns nothing of alice's vote.
    let (st, b) = app
        .with_token(&dave)
        .post("/api/gateway/commands", &vote("a1", "approve"))
        .await;
    assert_eq!(st, 409, "another sender's command_id: {b}");
    let (st, b) = alice
        .post("/api/gateway/commands", &vote("a2", "reject"))
        .await;
    assert_eq!(st, 409, "a second vote: {b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("key:alice already voted `approve`")),
        "{b}"
    );
    let (st, b) = app.get("/api/gateway/commands/a2").await;
    assert_eq!(st, 404, "a refused vote is not stored: {b}");
    assert_eq!(records(&app.ledger(&run).await, "gate.1/vote").len(), 1);
}

/// Waits until `n` votes on the run's prompt have counted.
async fn votes_counted(app: &TestApp, run: &str, n: usize) {
    eventually(10, "the votes to count", || async {
        (app.run(run).await["waiting"]["votes"]
            .as_array()
            .map(Vec::len)
            == Some(n))
        .then_some(())
    })
    .await;
}

async fn count(app: &TestApp, run: &str, prefix: &str) -> usize {
    records(&app.ledger(run).await, prefix).len()
}

#[tokio::test]
async fn reminders_are_timers_that_fire_once_across_kill_9() {
    let mut app = spawn_app().await;
    let flow = "steps:\n  - id: gate\n    ask: Ship?\n    choices: [approve, reject]\n    approvers: [\"admin\"]\n    remind: 1s\n    remind_max: 2\n";
    let (st, b) = app.upload("nag.yaml", flow).await;
    assert_eq!(st, 200, "{b}");
    let run = app.start_run("nag", json!({})).await;
    eventually(15, "the first reminder", || async {
        (count(&app, &run, "gate.1/remind1").await == 1).then_some(())
    })
    .await;
    app.kill9().await;
    app.restart().await;
    eventually(15, "the second reminder", || async {
        (count(&app, &run, "gate.1/remind2").await == 1).then_some(())
    })
    .await;
    let ledger = app.ledger(&run).await;
    assert_eq!(
        records(&ledger, "gate.1/remind").len(),
        2,
        "each reminder once, and no more than remind_max"
    );
    let remind = &records(&ledger, "gate.1/remind1")[0];
    assert_eq!(remind["effect"]["type"], "remind");
    assert_eq!(remind["effect"]["payload"]["prompt"], "Ship?");
    assert_eq!(app.run(&run).await["status"], "waiting");
}

#[tokio::test]
async fn a_new_device_cannot_take_the_name_of_another() {
    let app = spawn_app().await;
    let mut names = Vec::new();
    for _ in 0..2 {
        let (_, c) = app.post("/api/gateway/pair/codes", &json!({})).await;
        let (st, p) = app
            .anonymous()
            .post(
                "/api/gateway/pair",
                &json!({"code": c["code"], "name": "Alices-Phone"}),
            )
            .await;
        assert_eq!(st, 200, "{p}");
        names.push(p["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(names, ["Alices-Phone", "Alices-Phone (2)"]);
}

#[tokio::test]
async fn answer_links_are_made_only_for_people_a_run_asks() {
    let app = spawn_app().await;
    let (st, r) = app
        .post(
            "/api/gateway/runs/start",
            &json!({"bundle_id": "approval", "input_data": {"text": "x"}}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let run = r["run_id"].as_str().unwrap().to_owned();
    app.wait_on(&run, "decide.1").await;
    let (st, b) = app
        .post(
            "/api/gateway/links",
            &json!({"run_id": run, "wait_key": "decide.1", "recipient": "email:eve@example.com"}),
        )
        .await;
    assert_eq!(st, 403, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not ask email:eve@example.com"),
        "{b}"
    );
}

#[tokio::test]
async fn groups_declared_in_the_config_are_there_at_start_and_list_their_members_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(
        &file,
        "[groups.ops]\nmembers = [\"person:alice\", \"key:ci\"]\n",
    )
    .unwrap();
    let app = e2e::app::spawn_with(e2e::app::Opts {
        env: vec![("SWITCHBOARD_CONFIG", file.display().to_string())],
        ..Default::default()
    })
    .await;
    let (st, groups) = app.get("/api/gateway/groups").await;
    assert_eq!(st, 200, "{groups}");
    assert_eq!(groups["items"][0]["name"], "ops");
    assert_eq!(
        groups["items"][0]["members"],
        json!(["key:ci", "person:alice"])
    );
    // A prompt for alice is on the group's list.
    let flow = "steps:\n  - id: gate\n    ask: Ship?\n    choices: [approve, reject]\n    approvers: [\"person:alice\"]\n";
    assert_eq!(app.upload("alice_gate", flow).await.0, 200);
    let (st, b) = app
        .post(
            "/api/gateway/people",
            &json!({"name": "alice", "identities": ["key:alice"]}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let run = app.start_run("alice_gate", json!({})).await;
    app.wait_for_status(&run, "waiting").await;
    let (st, list) = app.get("/api/gateway/approvals?for=group:ops").await;
    assert_eq!(st, 200, "{list}");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["run_id"] == run.as_str()),
        "{list}"
    );
}
