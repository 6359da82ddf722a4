//! `switchboard service`: the systemd unit and launchd property list it writes for `serve`
//! (checked by `systemd-analyze verify` when the machine has it), `--dry-run`, `status`
//! and `uninstall`.

use std::process::Command;

fn sb(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_unit_is_written_verified_reported_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let (units, data) = (tmp.path().join("units"), tmp.path().join("data"));
    std::fs::create_dir_all(&data).unwrap();
    let config = tmp.path().join("switchboard.toml");
    std::fs::write(&config, "port = 8080\n").unwrap();
    let (u, d, c) = (
        units.to_str().unwrap(),
        data.to_str().unwrap(),
        config.to_str().unwrap(),
    );
    let target = ["--manager", "systemd", "--unit-dir", u];
    let install = |extra: &[&str]| {
        let mut a = vec!["--config", c, "service", "install", "--data-dir", d];
        a.extend(target);
        a.extend(extra);
        sb(&a)
    };
    let (ok, printed, err) = install(&["--dry-run"]);
    assert!(ok, "{err}");
    assert!(
        printed.contains("ExecStart=") && printed.contains(&format!("serve --data-dir {d}")),
        "{printed}"
    );
    assert!(printed.contains(&format!("--config {c}")), "{printed}");
    assert!(!units.exists(), "a dry run writes nothing");
    let (ok, said, err) = install(&[]);
    assert!(ok, "{err}");
    let unit = units.join("switchboard.service");
    assert!(
        said.contains("systemctl daemon-reload") && unit.is_file(),
        "{said}"
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    assert_eq!(
        text,
        printed
            .split_once('\n')
            .unwrap()
            .1
            .trim_end_matches('\n')
            .to_owned()
            + "\n"
    );
    let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    let binary = exec
        .trim_start_matches("ExecStart=")
        .split(' ')
        .next()
        .unwrap();
    assert!(
        std::path::Path::new(binary).is_absolute() && std::path::Path::new(binary).exists(),
        "{exec}"
    );
    for key in [
        "[Unit]",
        "[Service]",
        "[Install]",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "WantedBy=multi-user.target",
    ] {
        assert!(text.contains(key), "{key} in {text}");
    }
    // systemd's own check, where the machine has it.
    if let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
    {
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !said.contains("switchboard.service:"),
            "systemd-analyze verify: {said}"
        );
    }
    let mut status = vec!["service", "status"];
    status.extend(target);
    let (ok, said, _) = sb(&status);
    assert!(ok && said.contains("installed at"), "{said}");
    let mut uninstall = vec!["service", "uninstall"];
    uninstall.extend(target);
    let (ok, said, err) = sb(&uninstall);
    assert!(
        ok && said.contains("removed") && !unit.exists(),
        "{said}{err}"
    );
    let (ok, _, err) = sb(&uninstall);
    assert!(!ok && err.contains("no service file"), "{err}");
    let (ok, said, _) = sb(&status);
    assert!(ok && said.contains("not installed"), "{said}");
}

#[test]
fn a_launchd_list_is_printed_for_macos() {
    let (ok, printed, err) = sb(&[
        "service",
        "install",
        "--user",
        "--manager",
        "launchd",
        "--dry-run",
        "--data-dir",
        "/srv/sb",
    ]);
    assert!(ok, "{err}");
    assert!(
        printed.starts_with("# ")
            && printed.contains("Library/LaunchAgents/dev.switchboard.gateway.plist"),
        "{printed}"
    );
    for key in [
        "<key>ProgramArguments</key>",
        "<string>serve</string>",
        "<string>/srv/sb</string>",
        "<key>RunAtLoad</key>",
        "<key>KeepAlive</key>",
    ] {
        assert!(printed.contains(key), "{key} in {printed}");
    }
}
