//! The API description is served, is OpenAPI 3, and covers the whole client contract.

use e2e::app::spawn_app;

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("get", "/api/health"),
        ("get", "/api/gateway/bundles"),
        ("post", "/api/gateway/bundles/upload"),
        ("post", "/api/gateway/bundles/reload"),
        ("post", "/api/gateway/runs/start"),
        ("get", "/api/gateway/runs"),
        ("get", "/api/gateway/runs/{id}"),
        ("get", "/api/gateway/runs/{id}/ledger"),
        ("get", "/api/gateway/runs/{id}/ledger/stream"),
        ("post", "/api/gateway/runs/ledger/batch"),
        ("get", "/api/gateway/runs/{id}/input_data"),
        ("get", "/api/gateway/runs/{id}/history_bundle"),
        ("get", "/api/gateway/ledger/stream"),
        ("get", "/api/gateway/ledger/head"),
        ("post", "/api/gateway/commands"),
        ("get", "/api/gateway/commands/{id}"),
        ("get", "/api/gateway/discovery/capabilities"),
        ("post", "/api/gateway/pair"),
        ("post", "/api/gateway/pair/codes"),
        ("get", "/api/gateway/devices"),
        ("delete", "/api/gateway/devices/{id}"),
        ("get", "/api/gateway/keys"),
        ("post", "/api/gateway/keys"),
        ("delete", "/api/gateway/keys/{id}"),
        ("post", "/api/gateway/token/rotate"),
        ("post", "/api/gateway/pause"),
        ("post", "/api/gateway/resume"),
        ("get", "/metrics"),
        ("post", "/api/gateway/runs/schedule"),
        ("get", "/api/gateway/schedules"),
        ("get", "/api/gateway/triggers"),
        ("post", "/api/gateway/triggers/{name}"),
        ("post", "/api/gateway/webhooks"),
        ("get", "/api/gateway/webhooks"),
        ("delete", "/api/gateway/webhooks/{id}"),
        ("get", "/api/gateway/webhooks/deliveries"),
        ("get", "/api/gateway/whoami"),
        ("delete", "/api/gateway/devices/self"),
        ("get", "/api/gateway/channels"),
        ("put", "/api/gateway/channels/{channel}"),
        ("delete", "/api/gateway/channels/{channel}"),
        ("get", "/api/gateway/approvals"),
        ("post", "/api/gateway/runs/{id}/approve"),
        ("post", "/api/gateway/runs/{id}/deny"),
        ("get", "/api/gateway/push/key"),
        ("get", "/api/gateway/push/subscriptions"),
        ("post", "/api/gateway/push/subscriptions"),
        ("delete", "/api/gateway/push/subscriptions/{id}"),
        ("get", "/api/gateway/people"),
        ("post", "/api/gateway/people"),
        ("delete", "/api/gateway/people/{name}"),
        ("get", "/api/gateway/groups"),
        ("post", "/api/gateway/groups"),
        ("delete", "/api/gateway/groups/{name}"),
        ("post", "/api/gateway/links"),
        ("get", "/api/gateway/links/{token}"),
        ("post", "/api/gateway/links/{token}"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let ops: usize = paths.values().map(|v| v.as_object().unwrap().len()).sum();
    assert_eq!(
        ops,
        expected.len(),
        "every operation is listed here: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (method, path) in expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not described");
        assert!(
            op["responses"]["200"].is_object() || op["responses"]["201"].is_object(),
            "{method} {path} has no 2xx response"
        );
        // Every response body is a named, typed schema (a `protocol` struct), never a bare
        // object whose fields only prose describes.
        for (status, resp) in op["responses"].as_object().unwrap() {
            for (kind, content) in resp["content"].as_object().into_iter().flatten() {
                let schema = &content["schema"];
                let typed = schema["$ref"].is_string()
                    || schema["type"] == "string"
                    || schema["items"]["$ref"].is_string();
                assert!(
                    typed,
                    "{method} {path} {status} ({kind}) has no typed schema: {schema}"
                );
            }
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["LedgerRecord"]["properties"]["record_hash"].is_object());
    let r = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("/openapi.json"));
}
