//! How the tray reaches the gateway: a URL and token given on the command line or in
//! `SWITCHBOARD_URL`/`SWITCHBOARD_TOKEN`, or a device token obtained once with a pairing
//! code and remembered in the user's config dir (`tray.json`, mode 0600, beside the
//! tray's ledger cursor). No GUI, no ledger.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "no token: pass --token (or SWITCHBOARD_TOKEN), or pair once with --pair CODE (a code from `switchboard pair`)"
    )]
    NoToken,
    #[error("pairing failed: {0}")]
    Pairing(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} is damaged ({1}); delete it and pair again")]
    Damaged(String, serde_json::Error),
}

/// A gateway and the token to use there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub gateway: String,
    pub token: String,
}

/// The tray's config dir: `$XDG_CONFIG_HOME/switchboard`, or `~/.config/switchboard`
/// (`~/Library/Application Support/switchboard` on macOS).
pub fn config_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("switchboard"));
    }
    let home = PathBuf::from(std::env::var_os("HOME")?);
    if cfg!(target_os = "macos") {
        Some(home.join("Library/Application Support/switchboard"))
    } else {
        Some(home.join(".config/switchboard"))
    }
}

fn saved_path(dir: &Path) -> PathBuf {
    dir.join("tray.json")
}

/// The connection saved by an earlier pairing, if any.
pub fn load(dir: &Path) -> Result<Option<Connection>, ConnectError> {
    let path = saved_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ConnectError::Damaged(path.display().to_string(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConnectError::Io(path.display().to_string(), e)),
    }
}

/// Saves a connection (mode 0600).
pub fn save(dir: &Path, c: &Connection) -> Result<(), ConnectError> {
    let path = saved_path(dir);
    let io = |e| ConnectError::Io(path.display().to_string(), e);
    std::fs::create_dir_all(dir).map_err(io)?;
    let text = serde_json::to_string_pretty(c)
        .map_err(|e| ConnectError::Damaged(path.display().to_string(), e))?;
    write_private(&path, &text).map_err(io)
}

use protocol::secret_file::write_private;

/// Trades a pairing code for a device token.
pub async fn pair(gateway: &str, code: &str, name: &str) -> Result<Connection, ConnectError> {
    let client =
        protocol::Client::new(gateway, None).map_err(|e| ConnectError::Pairing(e.to_string()))?;
    let paired = client
        .pair(code, name)
        .await
        .map_err(|e| ConnectError::Pairing(e.message()))?;
    Ok(Connection {
        gateway: gateway.to_owned(),
        token: paired.token,
    })
}

/// Picks the connection: a token given wins; else a pairing code is traded (and saved);
/// else the saved one.
pub async fn resolve(
    gateway: &str,
    token: Option<String>,
    pair_code: Option<String>,
    dir: Option<&Path>,
) -> Result<Connection, ConnectError> {
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        return Ok(Connection {
            gateway: gateway.to_owned(),
            token,
        });
    }
    if let Some(code) = pair_code {
        let name = format!("tray on {}", host_name());
        let c = pair(gateway, &code, &name).await?;
        if let Some(dir) = dir {
            save(dir, &c)?;
        }
        return Ok(c);
    }
    match dir.map(load).transpose()?.flatten() {
        Some(c) => Ok(c),
        None => Err(ConnectError::NoToken),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this computer".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_given_token_wins_and_a_saved_one_is_used_otherwise() -> Result<(), ConnectError> {
        let dir = tempfile::tempdir().map_err(|e| ConnectError::Io("tmp".into(), e))?;
        let given = resolve("http://g", Some("t1".into()), None, Some(dir.path())).await?;
        assert_eq!(given.token, "t1");
        assert!(matches!(
            resolve("http://g", None, None, Some(dir.path())).await,
            Err(ConnectError::NoToken)
        ));
        let saved = Connection {
            gateway: "http://saved".into(),
            token: "t2".into(),
        };
        save(dir.path(), &saved)?;
        assert_eq!(
            resolve("http://g", None, None, Some(dir.path())).await?,
            saved
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(saved_path(dir.path())).map(|m| m.permissions().mode());
            assert_eq!(mode.ok().map(|m| m & 0o777), Some(0o600));
        }
        std::fs::write(saved_path(dir.path()), "{").map_err(|e| ConnectError::Io("w".into(), e))?;
        assert!(matches!(load(dir.path()), Err(ConnectError::Damaged(..))));
        Ok(())
    }
}
