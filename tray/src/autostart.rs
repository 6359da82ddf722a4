//! "Open at login": the tray started with the desktop session. On Linux an XDG autostart
//! entry (`$XDG_CONFIG_HOME/autostart/switchboard-tray.desktop`, default `~/.config`); on
//! macOS a LaunchAgent property list (`~/Library/LaunchAgents/dev.switchboard.tray.plist`,
//! run at load). The entry runs this program as it was started (its path, no token: the
//! tray finds its saved pairing). Turning it off removes the file.

use std::path::{Path, PathBuf};

/// Where the entry lives for a user whose config dir is `config` (Linux) or whose home is
/// `home` (macOS).
pub fn entry_in(config: &Path, home: &Path) -> PathBuf {
    if cfg!(target_os = "macos") {
        home.join("Library/LaunchAgents/dev.switchboard.tray.plist")
    } else {
        config.join("autostart/switchboard-tray.desktop")
    }
}

/// This user's entry, if the environment names a home.
pub fn entry() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".config"));
    Some(entry_in(&config, &home))
}

/// An argument of a desktop entry's `Exec` key, quoted as the specification says.
fn exec_arg(a: &str) -> String {
    let mut out = String::from("\"");
    for c in a.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    // `%` is a field code in `Exec`; a literal one is written twice.
    out.replace('%', "%%")
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The entry's text for `program`.
pub fn render(program: &Path) -> String {
    let p = program.display().to_string();
    if cfg!(target_os = "macos") {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n  <key>Label</key>\n  <string>dev.switchboard.tray</string>\n  <key>ProgramArguments</key>\n  <array>\n    <string>{}</string>\n  </array>\n  <key>RunAtLoad</key>\n  <true/>\n</dict>\n</plist>\n",
            xml(&p)
        )
    } else {
        format!(
            "[Desktop Entry]\nType=Application\nName=Switchboard\nComment=Runs waiting for you, from the tray\nExec={}\nTerminal=false\nX-GNOME-Autostart-enabled=true\n",
            exec_arg(&p)
        )
    }
}

/// Whether the entry at `path` is there.
pub fn is_on(path: &Path) -> bool {
    path.is_file()
}

/// Writes (or removes) the entry at `path` for `program`.
pub fn set(path: &Path, on: bool, program: &Path) -> std::io::Result<()> {
    if !on {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, render(program))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_is_written_quoted_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = entry_in(&tmp.path().join("config"), tmp.path());
        let program = Path::new("/opt/switch board/switchboard-tray$1");
        assert!(!is_on(&path));
        set(&path, true, program).unwrap();
        assert!(is_on(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        if cfg!(target_os = "macos") {
            assert!(text.contains("<string>/opt/switch board/switchboard-tray$1</string>"));
        } else {
            assert!(path.ends_with("config/autostart/switchboard-tray.desktop"));
            assert!(
                text.starts_with("[Desktop Entry]\nType=Application\n"),
                "{text}"
            );
            assert!(
                text.contains("Exec=\"/opt/switch board/switchboard-tray\\$1\"\n"),
                "{text}"
            );
        }
        set(&path, false, program).unwrap();
        assert!(!is_on(&path));
        set(&path, false, program).unwrap(); // already off: nothing to do
        assert_eq!(exec_arg("/a%b"), "\"/a%%b\"");
    }
}
