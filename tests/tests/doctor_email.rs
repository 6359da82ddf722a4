//! `switchboard doctor` against the real mail servers (Postfix and Dovecot on loopback): the
//! IMAP login and the SMTP greeting pass with the bridge's credentials, and a wrong
//! password is a thing to fix, named with its setting.

use e2e::mail_server::MailServer;

fn doctor(env: &[(&'static str, String)]) -> (bool, String) {
    let out = std::process::Command::new(e2e::process::binary())
        .arg("doctor")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run doctor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn doctor_logs_in_to_the_real_mail_servers() {
    let mail = MailServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut env = mail.bridge_env();
    env.push((
        "SWITCHBOARD_EMAIL_ALLOWED_SENDERS",
        "bob@example.test".into(),
    ));
    env.push((
        "SWITCHBOARD_DATA_DIR",
        tmp.path().join("data").display().to_string(),
    ));
    let (ok, said) = tokio::task::spawn_blocking({
        let env = env.clone();
        move || doctor(&env)
    })
    .await
    .unwrap();
    assert!(
        said.contains("ok    email imap: logged in to 127.0.0.1:"),
        "{said}"
    );
    assert!(said.contains("ok    email smtp: 127.0.0.1:"), "{said}");
    assert!(ok, "{said}");
    for (k, v) in env.iter_mut() {
        if *k == "SWITCHBOARD_EMAIL_IMAP_PASSWORD" {
            *v = "wrong".into();
        }
    }
    let (ok, said) = tokio::task::spawn_blocking(move || doctor(&env))
        .await
        .unwrap();
    assert!(!ok, "{said}");
    assert!(
        said.contains("FIX   email imap:") && said.contains("SWITCHBOARD_EMAIL_IMAP_"),
        "{said}"
    );
    assert!(
        !said.contains("wrong"),
        "the password is never printed: {said}"
    );
}
