//! `switchboard service install|uninstall|status`: `serve` started at boot (or at login
//! with `--user`) by the system's service manager: a systemd unit on Linux, a launchd
//! property list on macOS, for this binary, its config file and its data dir (absolute
//! paths, no secrets: the token stays in the data dir or an environment file the unit
//! reads). `--dry-run` prints what would be written and where. Writing the file is all
//! `install` does; it prints the command that enables it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const NAME: &str = "switchboard";
const LABEL: &str = "dev.switchboard.gateway";

/// Which service manager a file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    /// This system's.
    pub fn native() -> Self {
        if cfg!(target_os = "macos") {
            Self::Launchd
        } else {
            Self::Systemd
        }
    }
}

/// What the service runs.
#[derive(Debug, Clone)]
pub struct Service {
    pub manager: Manager,
    /// At login, for this user (`--user`), or at boot for the system.
    pub user: bool,
    pub binary: PathBuf,
    /// Passed to `serve` when given (else the config file's, or the default under the
    /// working directory).
    pub data_dir: Option<PathBuf>,
    /// Where `serve` runs: relative paths of the config (the flows dir…) are taken from here.
    pub working_dir: PathBuf,
    pub config: Option<PathBuf>,
    /// Where the file goes (default: the manager's place for it).
    pub dir: Option<PathBuf>,
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set: give --unit-dir")
}

impl Service {
    /// The file's path.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        let dir = match (&self.dir, self.manager, self.user) {
            (Some(d), _, _) => d.clone(),
            (None, Manager::Systemd, true) => home()?.join(".config/systemd/user"),
            (None, Manager::Systemd, false) => PathBuf::from("/etc/systemd/system"),
            (None, Manager::Launchd, true) => home()?.join("Library/LaunchAgents"),
            (None, Manager::Launchd, false) => PathBuf::from("/Library/LaunchDaemons"),
        };
        Ok(match self.manager {
            Manager::Systemd => dir.join(format!("{NAME}.service")),
            Manager::Launchd => dir.join(format!("{LABEL}.plist")),
        })
    }

    /// `serve` with absolute paths.
    fn command(&self) -> anyhow::Result<Vec<String>> {
        let mut args = vec![absolute(&self.binary)?.display().to_string()];
        if let Some(c) = &self.config {
            args.extend(["--config".into(), absolute(c)?.display().to_string()]);
        }
        args.push("serve".into());
        if let Some(d) = &self.data_dir {
            args.extend(["--data-dir".into(), absolute(d)?.display().to_string()]);
        }
        Ok(args)
    }

    /// The file's text.
    pub fn render(&self) -> anyhow::Result<String> {
        let args = self.command()?;
        let dir = absolute(&self.working_dir)?.display().to_string();
        let all = args.iter().chain(std::iter::once(&dir));
        if let Some(bad) = all
            .clone()
            .find(|a| a.chars().any(|c| c.is_control() || c == '"'))
        {
            bail!("the path `{bad}` holds characters a service file cannot quote");
        }
        Ok(match self.manager {
            Manager::Systemd => systemd(&args, &dir, self.user),
            Manager::Launchd => launchd(&args, &dir),
        })
    }

    /// What to run after `install` (or `uninstall`).
    pub fn next_step(&self, install: bool) -> anyhow::Result<String> {
        let user = if self.user { " --user" } else { "" };
        let path = self.path()?.display().to_string();
        Ok(match (self.manager, install) {
            (Manager::Systemd, true) => {
                format!("systemctl{user} daemon-reload && systemctl{user} enable --now {NAME}")
            }
            (Manager::Systemd, false) => {
                format!("systemctl{user} disable --now {NAME}; systemctl{user} daemon-reload")
            }
            (Manager::Launchd, true) => format!("launchctl load -w '{path}'"),
            (Manager::Launchd, false) => format!("launchctl unload -w '{path}'"),
        })
    }
}

/// One word of a systemd setting: `%` and `$` escaped (systemd expands both), quoted when
/// it holds anything but plain path characters.
fn quote(a: &str) -> String {
    let escaped = a.replace('%', "%%").replace('$', "$$");
    if a.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:=+@".contains(c))
    {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', "\\\\"))
    }
}

fn systemd(args: &[String], dir: &str, user: bool) -> String {
    let exec: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let (target, env) = if user {
        ("default.target", "%h/.config/switchboard/env")
    } else {
        ("multi-user.target", "/etc/switchboard/env")
    };
    format!(
        "# Written by `switchboard service install`.\n[Unit]\nDescription=Switchboard workflow gateway\n\
         After=network-online.target\nWants=network-online.target\n\n[Service]\nType=simple\n\
         WorkingDirectory={}\nExecStart={}\n# Settings (SWITCHBOARD_*), one per line; the file may be absent.\n\
         EnvironmentFile=-{env}\nRestart=on-failure\nRestartSec=2\nKillSignal=SIGTERM\n\
         TimeoutStopSec=30\nUMask=0077\nNoNewPrivileges=yes\n\n[Install]\nWantedBy={target}\n",
        quote(dir),
        exec.join(" ")
    )
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn launchd(args: &[String], dir: &str) -> String {
    let program: String = args
        .iter()
        .map(|a| format!("    <string>{}</string>\n", xml(a)))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n  <key>Label</key>\n  <string>{LABEL}</string>\n\
         <key>ProgramArguments</key>\n  <array>\n{program}  </array>\n\
         <key>WorkingDirectory</key>\n  <string>{d}</string>\n  <key>RunAtLoad</key>\n  <true/>\n\
         <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n\
         <key>Umask</key>\n  <integer>63</integer>\n\
         <key>StandardOutPath</key>\n  <string>{d}/switchboard.log</string>\n\
         <key>StandardErrorPath</key>\n  <string>{d}/switchboard.log</string>\n</dict>\n</plist>\n",
        d = xml(dir)
    )
}

/// `switchboard service …`.
#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Write the service file that starts `serve` (at boot, or at login with `--user`).
    Install {
        #[command(flatten)]
        target: Target,
        /// The data dir `serve` uses (default: the config file's, or its default).
        #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Print the file and where it would go; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove the service file (stop the service first: the command is printed).
    Uninstall {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        dry_run: bool,
    },
    /// Whether the service file is there, and what the service manager says.
    Status {
        #[command(flatten)]
        target: Target,
    },
}

/// Which service file.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The user's service (started at login) instead of the system's (at boot).
    #[arg(long)]
    pub user: bool,
    /// `systemd` or `launchd` (default: this system's).
    #[arg(long, value_enum)]
    pub manager: Option<Manager>,
    /// Put the file in this directory instead of the manager's.
    #[arg(long)]
    pub unit_dir: Option<PathBuf>,
}

/// Runs a `service` command; `config` is the global `--config`.
pub fn run(cmd: ServiceCommand, config: Option<PathBuf>) -> anyhow::Result<String> {
    let binary = std::env::current_exe().context("cannot find this program's path")?;
    let working_dir = std::env::current_dir().context("cannot read the working directory")?;
    let service = |t: Target, data_dir: Option<PathBuf>| Service {
        manager: t.manager.unwrap_or_else(Manager::native),
        user: t.user,
        binary: binary.clone(),
        data_dir,
        working_dir: working_dir.clone(),
        config: config.clone(),
        dir: t.unit_dir,
    };
    let none = None;
    match cmd {
        ServiceCommand::Install {
            target,
            data_dir,
            dry_run,
        } => install(&service(target, data_dir), dry_run),
        ServiceCommand::Uninstall { target, dry_run } => uninstall(&service(target, none), dry_run),
        ServiceCommand::Status { target } => status(&service(target, none)),
    }
}

/// `service install`: writes the file (or prints it with `dry_run`).
pub fn install(s: &Service, dry_run: bool) -> anyhow::Result<String> {
    let (path, text) = (s.path()?, s.render()?);
    if dry_run {
        return Ok(format!("# {}\n{text}", path.display()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(format!(
        "wrote {}\nnext: {}",
        path.display(),
        s.next_step(true)?
    ))
}

/// `service uninstall`: removes the file.
pub fn uninstall(s: &Service, dry_run: bool) -> anyhow::Result<String> {
    let path = s.path()?;
    if !path.exists() {
        bail!("no service file at {}", path.display());
    }
    if !dry_run {
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(format!(
        "{} {}\nthen: {}",
        if dry_run { "would remove" } else { "removed" },
        path.display(),
        s.next_step(false)?
    ))
}

/// `service status`: whether the file is there and what the manager says of it.
pub fn status(s: &Service) -> anyhow::Result<String> {
    let path = s.path()?;
    if !path.exists() {
        return Ok(format!("not installed ({} is absent)", path.display()));
    }
    let (program, args): (&str, Vec<&str>) = match s.manager {
        Manager::Systemd if s.user => ("systemctl", vec!["--user", "is-active", NAME]),
        Manager::Systemd => ("systemctl", vec!["is-active", NAME]),
        Manager::Launchd => ("launchctl", vec!["list", LABEL]),
    };
    let said = std::process::Command::new(program)
        .args(&args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("{program} cannot be asked: {e}"));
    Ok(format!(
        "installed at {}\n{program}: {said}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(manager: Manager, user: bool) -> Service {
        Service {
            manager,
            user,
            binary: "/usr/local/bin/switchboard".into(),
            data_dir: Some("/var/lib/switch board".into()),
            working_dir: "/srv/sb".into(),
            config: Some("/etc/switchboard/switchboard.toml".into()),
            dir: None,
        }
    }

    #[test]
    fn a_system_unit_runs_serve_with_absolute_paths_and_no_secrets() {
        let unit = service(Manager::Systemd, false).render().unwrap();
        assert!(unit.contains("ExecStart=/usr/local/bin/switchboard --config /etc/switchboard/switchboard.toml serve --data-dir \"/var/lib/switch board\"\n"), "{unit}");
        assert!(unit.contains("WorkingDirectory=/srv/sb\n"), "{unit}");
        let mut odd = service(Manager::Systemd, false);
        odd.data_dir = Some("/srv/a%b$c".into());
        let unit = odd.render().unwrap();
        assert!(
            unit.contains("--data-dir \"/srv/a%%b$$c\"\n"),
            "systemd expands % and $: {unit}"
        );
        let mut plain = service(Manager::Systemd, false);
        plain.data_dir = None;
        let unit = plain.render().unwrap();
        assert!(
            unit.contains("switchboard.toml serve\n"),
            "the config's data dir: {unit}"
        );
        assert!(unit.contains("WantedBy=multi-user.target") && unit.contains("UMask=0077"));
        assert!(!unit.to_lowercase().contains("token"));
        let user = service(Manager::Systemd, true);
        assert!(user.render().unwrap().contains("WantedBy=default.target"));
        assert!(
            user.path()
                .unwrap()
                .ends_with(".config/systemd/user/switchboard.service")
        );
        assert!(
            user.next_step(true)
                .unwrap()
                .contains("systemctl --user enable --now switchboard")
        );
    }

    #[test]
    fn a_launchd_list_names_the_program_and_escapes_it() {
        let mut s = service(Manager::Launchd, true);
        s.working_dir = "/Users/a&b/data".into();
        let plist = s.render().unwrap();
        assert!(plist.contains("<string>dev.switchboard.gateway</string>"));
        assert!(
            plist.contains("<string>/Users/a&amp;b/data</string>"),
            "{plist}"
        );
        assert!(plist.contains("<key>RunAtLoad</key>\n  <true/>"));
        assert!(
            s.path()
                .unwrap()
                .ends_with("Library/LaunchAgents/dev.switchboard.gateway.plist")
        );
        s.data_dir = Some("/tmp/a\"b".into());
        assert!(s.render().unwrap_err().to_string().contains("cannot quote"));
    }
}
