//! TLS to PostgreSQL: asked for in the URL (`sslmode=require`), the connection is encrypted
//! and the server's certificate is verified (against `sslrootcert`); a server the gateway
//! cannot verify is refused. Runs in `scripts/test`'s PostgreSQL pass, whose cluster has TLS
//! on with a throwaway CA (`SWITCHBOARD_TEST_PG_CA`).

use e2e::app::{Opts, TestStore, spawn_with};
use serde_json::json;

#[tokio::test]
async fn a_url_asking_for_tls_gets_a_verified_encrypted_connection() {
    if !e2e::cluster::on_postgres() {
        return;
    }
    let ca = std::env::var("SWITCHBOARD_TEST_PG_CA").expect("the test cluster's CA");
    let plain = TestStore::Postgres.create_database().await.unwrap();
    let db = plain.rsplit('/').next().unwrap().to_owned();
    let app = spawn_with(Opts {
        store: TestStore::Postgres,
        database_url: Some(format!("{plain}?sslmode=require&sslrootcert={ca}")),
        ..Default::default()
    })
    .await;
    let run = app.start_run("echo", json!({"text": "over TLS"})).await;
    app.wait_for_status(&run, "completed").await;
    let sql = format!(
        "SELECT count(*) FILTER (WHERE s.ssl)::text || '/' || count(*)::text
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = '{db}' AND a.application_name = 'switchboard'"
    );
    let counts = e2e::pg::query_texts(&plain, &sql).await;
    let (tls, all) = counts[0].split_once('/').unwrap();
    assert!(
        all != "0" && tls == all,
        "every connection is TLS: {tls} of {all}"
    );

    // Without the CA the server's certificate cannot be verified: the gateway will not start.
    for (query, says) in [
        ("sslmode=require", "certificate"),
        ("sslmode=maybe", "sslmode `maybe`"),
        (
            &format!("sslmode=verify-full&sslrootcert={ca}.missing") as &str,
            "sslrootcert",
        ),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(app.data_dir.join("other"))
            .arg("--database-url")
            .arg(format!("{plain}?{query}"))
            .env("SWITCHBOARD_AUTH_TOKEN", e2e::app::TOKEN)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{query}: {err}");
        assert!(err.contains(says), "{query}: {err}");
    }
}
