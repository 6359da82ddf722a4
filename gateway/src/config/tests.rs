//! The settings: flags over environment over file, and every problem named at start.

use super::*;

#[test]
fn the_command_line_is_well_formed() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn non_loopback_without_token_is_refused() {
    let args = ServeArgs {
        host: Some("0.0.0.0".into()),
        ..Default::default()
    };
    let Err(e) = ServeConfig::resolve(args, None) else {
        panic!("a non-loopback bind without a token must be refused");
    };
    assert!(e.to_string().contains("SWITCHBOARD_AUTH_TOKEN"), "{e}");
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let f = dir.path().join("sb.toml");
    std::fs::write(
        &f,
        "port = 9000\nflows_dir = \"/srv/flows\"\n[llm]\nmodel = \"m1\"\n",
    )?;
    let args = ServeArgs {
        port: Some(9100),
        ..Default::default()
    };
    let c = ServeConfig::resolve(args, Some(&f))?;
    assert_eq!(c.addr.port(), 9100);
    assert_eq!(c.flows_dir, PathBuf::from("/srv/flows"));
    assert_eq!(c.llm.model.as_deref(), Some("m1"));
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    std::fs::write(&f, "prot = 1\n")?;
    let Err(e) = ServeConfig::resolve(ServeArgs::default(), Some(&f)) else {
        panic!("an unknown key in the file must be refused");
    };
    assert!(e.to_string().contains("prot"), "{e}");
    Ok(())
}

#[test]
fn every_problem_is_listed() {
    let args = ServeArgs {
        host: Some("nowhere".into()),
        log_format: Some("xml".into()),
        llm_base_url: Some("::".into()),
        ..Default::default()
    };
    let Err(e) = ServeConfig::resolve(args, None) else {
        panic!("three bad settings must be refused");
    };
    assert_eq!(e.0.len(), 3, "{e}");
}

#[test]
fn the_store_is_the_data_dirs_file_unless_a_postgres_url_is_given()
-> Result<(), Box<dyn std::error::Error>> {
    let c = ServeConfig::resolve(ServeArgs::default(), None)?;
    assert_eq!(
        c.store,
        crate::store::Location::Sqlite(PathBuf::from(DEFAULT_DATA_DIR))
    );
    let url = "postgres://sb@db.internal:5432/switchboard";
    let args = ServeArgs {
        database_url: Some(url.into()),
        ..Default::default()
    };
    let c = ServeConfig::resolve(args, None)?;
    assert_eq!(c.store, crate::store::Location::Postgres(url.into()));
    let args = ServeArgs {
        database_url: Some("mysql://root:hunter2@db/x".into()),
        ..Default::default()
    };
    let Err(e) = ServeConfig::resolve(args, None) else {
        panic!("a non-PostgreSQL URL must be refused");
    };
    let e = e.to_string();
    assert!(
        e.contains("SWITCHBOARD_DATABASE_URL") && e.contains("postgres://"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "the password is not echoed: {e}");
    Ok(())
}

#[test]
fn groups_come_from_the_file_checked() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let f = dir.path().join("sb.toml");
    std::fs::write(
        &f,
        "[groups.ops]\nmembers = [\"person:alice\", \"email:Bob@Example.com\"]\n",
    )?;
    let c = ServeConfig::resolve(ServeArgs::default(), Some(&f))?;
    let want = vec![
        "person:alice".to_owned(),
        "email:bob@example.com".to_owned(),
    ];
    assert_eq!(c.groups, vec![("ops".to_owned(), want)]);
    std::fs::write(
        &f,
        "[groups.ops]\nmembers = [\"group:admins\"]\n[groups.\"a b\"]\nmembers = [\"key:x\"]\n[groups.empty]\nmembers = []\n",
    )?;
    let Err(e) = ServeConfig::resolve(ServeArgs::default(), Some(&f)) else {
        panic!("bad groups must be refused");
    };
    let e = e.to_string();
    assert!(e.contains("[groups.ops]: members[0] `group:admins`"), "{e}");
    assert!(e.contains("[groups.a b]: the group name"), "{e}");
    assert!(e.contains("[groups.empty]: members holds 1 to 100"), "{e}");
    Ok(())
}

#[test]
fn operations_settings_name_what_is_wrong() -> Result<(), Box<dyn std::error::Error>> {
    let refused = |ops: OpsArgs, want: &str| {
        let args = ServeArgs {
            ops,
            ..Default::default()
        };
        match ServeConfig::resolve(args, None) {
            Ok(_) => panic!("{want}: accepted"),
            Err(e) => assert!(e.to_string().contains(want), "{want}: {e}"),
        }
    };
    for bad in [
        "collector:4318",
        "ftp://collector:4318",
        "http://user:secret@collector:4318",
        "http://collector:4318/?token=x",
        "http://collector:4318/#x",
    ] {
        let ops = OpsArgs {
            otlp_endpoint: Some(bad.into()),
            ..Default::default()
        };
        refused(ops, &format!("SWITCHBOARD_OTLP_ENDPOINT `{bad}`"));
    }
    let interval = |v: &str| OpsArgs {
        retention: Some("30d".into()),
        retention_interval: Some(v.into()),
        ..Default::default()
    };
    refused(
        interval("10ms"),
        "SWITCHBOARD_RETENTION_INTERVAL must be at least 100ms",
    );
    refused(interval("soon"), "SWITCHBOARD_RETENTION_INTERVAL `soon`");
    let retention = OpsArgs {
        retention: Some("forever".into()),
        ..Default::default()
    };
    refused(retention, "SWITCHBOARD_RETENTION `forever`");
    // Good settings, from the file.
    let dir = tempfile::tempdir()?;
    let f = dir.path().join("sb.toml");
    std::fs::write(
        &f,
        "retention = \"30d\"\nretention_interval = \"2h\"\notlp_endpoint = \"http://collector:4318\"\n",
    )?;
    let c = ServeConfig::resolve(ServeArgs::default(), Some(&f))?;
    assert_eq!(
        c.ops.retention,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
    assert_eq!(
        c.ops.retention_interval,
        std::time::Duration::from_secs(7_200)
    );
    assert_eq!(
        c.ops.otlp_endpoint.map(|u| u.to_string()).as_deref(),
        Some("http://collector:4318/")
    );
    Ok(())
}
