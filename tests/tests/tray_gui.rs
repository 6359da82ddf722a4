//! The real `switchboard-tray` under Xvfb and a private D-Bus session: its exported menu
//! (`com.canonical.dbusmenu`, read with `gdbus`) shows the right labels for a gateway with
//! one running and one waiting run, and a `clicked` event on "Pause" pauses that run.
//!
//! The test re-runs itself under `dbus-run-session -- xvfb-run -a` when it is not already
//! inside one (scripts/test installs xvfb, xauth, dbus-daemon and libglib2.0-bin).

use e2e::app::eventually;
use std::process::Stdio;

use e2e::process::{Gateway, TOKEN, flows_dir, workspace_binary};
use serde_json::json;
use tokio::process::Command;

const INNER: &str = "SWITCHBOARD_TRAY_GUI_INNER";
const MENU_ROOT: &str = "/org/ayatana/NotificationItem";

/// A flow that stays running for an hour (a timer), beside the shipped ones.
const REMIND: &str = "name: Remind\ndescription: Waits, then reminds.\nsteps:\n  - wait: 1h\n  - say: \"Time is up\"\n";

#[test]
fn the_tray_menu_shows_the_gateway_and_pause_pauses_a_run() {
    if std::env::var_os(INNER).is_none() {
        let exe = std::env::current_exe().expect("test executable");
        let status = std::process::Command::new("dbus-run-session")
            .args(["--", "xvfb-run", "-a"])
            .arg(exe)
            .args([
                "--exact",
                "the_tray_menu_shows_the_gateway_and_pause_pauses_a_run",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INNER, "1")
            .status()
            .expect("dbus-run-session and xvfb-run (apt: dbus-daemon xvfb xauth)");
        assert!(
            status.success(),
            "the tray GUI test failed inside Xvfb + D-Bus"
        );
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(inner());
}

async fn gdbus(args: &[&str]) -> Option<String> {
    let out = Command::new("gdbus")
        .args(["call", "--session", "--timeout", "5"])
        .args(args)
        .output()
        .await
        .expect("gdbus (apt: libglib2.0-bin)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The unique bus names owned by process `pid` (a GTK app has several connections).
async fn bus_names_of(pid: u32) -> Vec<String> {
    let bus = [
        "--dest",
        "org.freedesktop.DBus",
        "--object-path",
        "/org/freedesktop/DBus",
    ];
    let listed = [&bus[..], &["--method", "org.freedesktop.DBus.ListNames"]].concat();
    let names = gdbus(&listed).await.unwrap_or_default();
    let mut mine = Vec::new();
    for name in names.split('\'').filter(|n| n.starts_with(":1.")) {
        let method = [
            "--method",
            "org.freedesktop.DBus.GetConnectionUnixProcessID",
            name,
        ];
        let owner = gdbus(&[&bus[..], &method[..]].concat())
            .await
            .unwrap_or_default();
        if owner.contains(&format!("uint32 {pid},")) {
            mine.push(name.to_owned());
        }
    }
    mine
}

/// The menu object the tray exports, once it exists.
async fn menu_path(name: &str) -> Option<String> {
    let out = Command::new("gdbus")
        .args([
            "introspect",
            "--session",
            "--dest",
            name,
            "--object-path",
            MENU_ROOT,
        ])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let node = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("node "))
        .find(|n| !n.starts_with('/'))?
        .trim_end_matches(" {")
        .to_owned();
    Some(format!("{MENU_ROOT}/{node}/Menu"))
}

async fn layout(name: &str, path: &str, parent: u32) -> String {
    let parent = parent.to_string();
    let args = [
        "--dest",
        name,
        "--object-path",
        path,
        "--method",
        "com.canonical.dbusmenu.GetLayout",
        "--",
        &parent,
        "-1",
        "[]",
    ];
    gdbus(&args).await.unwrap_or_default()
}

/// The id of the menu item labelled `label` in a GetLayout answer.
fn item_id(layout: &str, label: &str) -> Option<u32> {
    let at = layout.find(&format!("'label': <'{label}'>"))?;
    let open = layout[..at].rfind("<(")?;
    layout[open + 2..].split(',').next()?.trim().parse().ok()
}

async fn inner() {
    let flows = tempfile::tempdir().expect("flows dir");
    for f in std::fs::read_dir(flows_dir())
        .expect("shipped flows")
        .flatten()
    {
        std::fs::copy(f.path(), flows.path().join(f.file_name())).expect("copy a flow");
    }
    std::fs::write(flows.path().join("remind.yaml"), REMIND).expect("write remind.yaml");
    let gw = Gateway::start_with_flows(&[], flows.path()).await;
    let start = |flow: &str| json!({"bundle_id": flow, "input_data": {"text": "deploy v2"}});
    let (s, waiting) = gw.post("/api/gateway/runs/start", &start("approval")).await;
    assert_eq!(s, 200, "{waiting}");
    let (s, running) = gw.post("/api/gateway/runs/start", &start("remind")).await;
    assert_eq!(s, 200, "{running}");
    let run = running["run_id"].as_str().unwrap_or_default().to_owned();

    let config = tempfile::tempdir().expect("config dir");
    // Desktop notifications are D-Bus calls; a monitor on the private bus sees them.
    let notes = config.path().join("notifications.log");
    let _monitor = Command::new("dbus-monitor")
        .args(["--session", "interface='org.freedesktop.Notifications'"])
        .stdout(std::fs::File::create(&notes).expect("monitor log"))
        .kill_on_drop(true)
        .spawn()
        .expect("dbus-monitor (apt: dbus-bin or dbus)");
    let tray = Command::new(workspace_binary("switchboard-tray"))
        .args(["--gateway", &gw.url, "--token", TOKEN, "--config-dir"])
        .arg(config.path())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start switchboard-tray");
    let pid = tray.id().expect("tray pid");

    let (name, path, last) = eventually(20, "the tray's menu to show the runs", || async {
        for name in bus_names_of(pid).await {
            let Some(path) = menu_path(&name).await else {
                continue;
            };
            let menu = layout(&name, &path, 0).await;
            if menu.contains("'label': <'1 running · 1 waiting'>") {
                return Some((name, path, menu));
            }
        }
        None
    })
    .await;
    for label in [
        "Waiting for you",
        "approval: Approve or reject: deploy v2",
        "approve",
        "reject",
        "Runs (2)",
        "Pause all",
        "Open web app",
        "Open at login",
        "Quit",
    ] {
        assert!(item_id(&last, label).is_some(), "no `{label}` in {last}");
    }
    let entry = format!("remind ({}) · waiting", &run[..8]);
    let entry_id = item_id(&last, &entry).unwrap_or_else(|| panic!("no `{entry}` in {last}"));
    let sub = layout(&name, &path, entry_id).await;
    let pause = item_id(&sub, "Pause").unwrap_or_else(|| panic!("no Pause in {sub}"));
    let pause = pause.to_string();
    let click = [
        "--dest",
        &name,
        "--object-path",
        &path,
        "--method",
        "com.canonical.dbusmenu.Event",
        "--",
        &pause,
        "clicked",
        "<0>",
        "0",
    ];
    eprintln!("clicking Pause ({pause}) of {entry}");
    gdbus(&click).await.expect("the clicked event");
    gw.wait_status(&run, "paused", 10).await;
    let paused = format!("remind ({}) · paused", &run[..8]);
    eventually(10, &format!("the menu to show `{paused}`"), || async {
        layout(&name, &path, 0)
            .await
            .contains(&paused)
            .then_some(())
    })
    .await;

    // A new prompt is announced on the desktop (the one waiting at start is not).
    let text = json!({"bundle_id": "approval", "input_data": {"text": "notify me"}});
    let (s, _) = gw.post("/api/gateway/runs/start", &text).await;
    assert_eq!(s, 200);
    let log = eventually(10, "the desktop notification", || async {
        let log = std::fs::read_to_string(&notes).unwrap_or_default();
        log.contains("Approve or reject: notify me").then_some(log)
    })
    .await;
    assert!(log.contains("member=Notify"), "no notification call: {log}");
    assert!(log.contains("approval is waiting for you"), "{log}");
    assert!(
        !log.contains("Approve or reject: deploy v2"),
        "not for the old prompt: {log}"
    );
}
