//! The pages against a real `switchboard serve`, over plain HTTP (no JavaScript): the run
//! list filters, a flow started from its form, and a schedule paused from its page.

mod common;

use common::{csrf_in, http, sign_in};
use e2e::process::Gateway;
use serde_json::json;

async fn page(gw: &Gateway, cookie: &str, path: &str) -> String {
    let r = http()
        .get(format!("{}{path}", gw.url))
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200, "{path}");
    r.text().await.unwrap_or_default()
}

#[tokio::test]
async fn a_flow_starts_from_its_form_and_the_run_list_filters() {
    let gw = Gateway::start(&[]).await;
    let (cookie, _) = sign_in(&gw).await;
    let form = page(&gw, &cookie, "/app/start/approval").await;
    assert!(
        form.contains(r#"<label for="f-text">Text</label>"#),
        "{form}"
    );
    let r = http()
        .post(format!("{}/app/start/approval", gw.url))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf_in(&form).as_str()),
            ("nonce", "start-1"),
            ("text", "from a form"),
        ])
        .send()
        .await
        .expect("start");
    assert_eq!(r.status().as_u16(), 303);
    let run_page = r.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(run_page.starts_with("/app/runs/"), "{run_page}");
    let run_id = run_page.trim_start_matches("/app/runs/");
    gw.wait_status(run_id, "waiting", 10).await;
    let html = page(&gw, &cookie, &run_page).await;
    assert!(html.contains("Approve or reject: from a form"), "{html}");
    let waiting = page(&gw, &cookie, "/app/runs?status=waiting").await;
    assert!(waiting.contains(&run_page), "{waiting}");
    let done = page(&gw, &cookie, "/app/runs?status=completed").await;
    assert!(
        !done.contains(&run_page) && done.contains("No runs."),
        "{done}"
    );
    // Without the CSRF token, nothing starts.
    let r = http()
        .post(format!("{}/app/start/approval", gw.url))
        .header("cookie", &cookie)
        .form(&[("text", "forged")])
        .send()
        .await
        .expect("start");
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(gw.runs_of("approval").await.len(), 1);
}

#[tokio::test]
async fn a_schedule_is_listed_and_paused_from_its_page() {
    let gw = Gateway::start(&[]).await;
    let body = json!({"bundle_id": "echo", "input_data": {"text": "tick"}, "start_at": "now",
        "interval": "1h", "repeat_count": 3});
    let (s, sched) = gw.post("/api/gateway/runs/schedule", &body).await;
    assert_eq!(s, 200, "{sched}");
    let id = sched["run_id"].as_str().unwrap_or_default().to_owned();
    let (cookie, _) = sign_in(&gw).await;
    let html = page(&gw, &cookie, "/app/schedules").await;
    assert!(
        html.contains("every 1h, 3 times") && html.contains(&id),
        "{html}"
    );
    let r = http()
        .post(format!("{}/app/runs/{id}/pause", gw.url))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf_in(&html).as_str()),
            ("nonce", "p-1"),
            ("back", "/app/schedules"),
        ])
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/app/schedules");
    let run = gw.get(&format!("/api/gateway/runs/{id}")).await.1;
    assert_eq!(run["status"], "paused", "{run}");
    let html = page(&gw, &cookie, "/app/schedules").await;
    assert!(html.contains(">Resume</button>"), "{html}");
}

const DEPLOY: &str = "name: Deploy\ndescription: Deploys a build.\ninput_schema:\n  type: object\n  required: [target]\n  properties:\n    target: {type: string, enum: [staging, production]}\n    replicas: {type: integer}\nsteps:\n  - say: \"Deploying to {{ input.target }}\"\n";

#[tokio::test]
async fn a_bad_start_form_names_each_field_and_keeps_what_was_typed() {
    let flows = tempfile::tempdir().expect("flows dir");
    std::fs::write(flows.path().join("deploy.yaml"), DEPLOY).expect("write deploy.yaml");
    let gw = Gateway::start_with_flows(&[], flows.path()).await;
    let (cookie, _) = sign_in(&gw).await;
    let form = page(&gw, &cookie, "/app/start/deploy").await;
    assert!(
        form.contains(r#"<select id="f-target" name="target" required>"#),
        "{form}"
    );
    let r = http()
        .post(format!("{}/app/start/deploy", gw.url))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf_in(&form).as_str()),
            ("nonce", "d-1"),
            ("replicas", "many"),
        ])
        .send()
        .await
        .expect("start");
    assert_eq!(r.status().as_u16(), 400);
    let html = r.text().await.unwrap_or_default();
    assert!(html.contains("<li>Target is required</li>"), "{html}");
    assert!(
        html.contains("<li>Replicas must be a whole number</li>"),
        "{html}"
    );
    assert!(html.contains(r#"name="replicas" value="many""#), "{html}");
    assert!(gw.runs_of("deploy").await.is_empty());
}
