//! `switchboard doctor`: what `serve` would need, checked before it is needed: the
//! settings (every problem at once), the data dir (private, writable), the store (sound,
//! and the clock not behind its latest change), free disk, the LLM provider, the
//! bridges' credentials (Telegram `getMe`, IMAP login, SMTP greeting) and each MCP server
//! (started, its tools listed). Each check prints `ok` or what to fix. It changes nothing.

use std::path::Path;
use std::time::Duration;

use crate::config::{ServeArgs, ServeConfig};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Less free space than this is worth a warning.
const LOW_DISK: u64 = 1 << 30;

/// One check's verdict.
struct Verdict {
    what: String,
    outcome: Result<String, String>,
}

fn verdict(what: impl Into<String>, outcome: Result<String, String>) -> Verdict {
    Verdict {
        what: what.into(),
        outcome,
    }
}

/// Runs every check; the report, and whether all passed.
pub async fn doctor(args: ServeArgs, config: Option<&Path>) -> (String, bool) {
    let checks = match ServeConfig::resolve(args, config) {
        Err(problems) => problems
            .0
            .into_iter()
            .map(|p| verdict("config", Err(p)))
            .collect(),
        Ok(cfg) => {
            let mut v = vec![verdict("config", Ok("settings are valid".into()))];
            v.extend(local(&cfg));
            v.extend(remote(&cfg).await);
            v
        }
    };
    let ok = checks.iter().all(|c| c.outcome.is_ok());
    let report = checks
        .iter()
        .map(|c| match &c.outcome {
            Ok(m) => format!("ok    {}: {m}", c.what),
            Err(m) => format!("FIX   {}: {m}", c.what),
        })
        .collect::<Vec<_>>()
        .join("\n");
    (report, ok)
}

/// The data dir, the store, the disk and the clock.
fn local(cfg: &ServeConfig) -> Vec<Verdict> {
    let dir = &cfg.data_dir;
    let mut v = vec![verdict("data dir", data_dir(dir))];
    if let crate::store::Location::Postgres(url) = &cfg.store {
        let said = format!(
            "PostgreSQL at {}: not checked here",
            crate::store::redact_url(url)
        );
        v.push(verdict("store", Ok(said)));
    }
    if let crate::store::Location::Sqlite(_) = &cfg.store {
        let db = dir.join("switchboard.db");
        let store = if db.exists() {
            crate::store::doctor_sqlite(&db)
                .map_err(|e| format!("{e}: restore a backup (`switchboard restore`)"))
                .and_then(|newest| clock(newest.as_deref()))
        } else {
            Ok("no store yet: `serve` makes one".into())
        };
        v.push(verdict("store", store));
    }
    v.push(verdict("disk", disk(dir)));
    v
}

fn data_dir(dir: &Path) -> Result<String, String> {
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(format!(
            "{} does not exist yet: `serve` makes it",
            dir.display()
        ));
    };
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is open to others (mode {mode:o}): chmod 700 {}",
                dir.display(),
                dir.display()
            ));
        }
    }
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    Ok(format!("{} is private and writable", dir.display()))
}

fn clock(newest: Option<&str>) -> Result<String, String> {
    let now = chrono::Utc::now();
    let Some(at) = newest.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return Ok("sound (no records yet)".into());
    };
    if at.with_timezone(&chrono::Utc) > now + chrono::Duration::seconds(5) {
        return Err(format!(
            "the clock ({}) is behind the store's latest change ({at}): timers and leases need a right clock; sync it (NTP)",
            crate::engine::ts(now)
        ));
    }
    Ok("sound; the clock is past its latest change".into())
}

fn disk(dir: &Path) -> Result<String, String> {
    let at = if dir.exists() {
        dir
    } else {
        dir.parent().unwrap_or(Path::new("."))
    };
    let at = if at.as_os_str().is_empty() {
        Path::new(".")
    } else {
        at
    };
    let s = rustix::fs::statvfs(at).map_err(|e| format!("cannot read {}: {e}", at.display()))?;
    let free = s.f_bavail.saturating_mul(s.f_frsize);
    let gib = free as f64 / (1u64 << 30) as f64;
    if free < LOW_DISK {
        return Err(format!(
            "{gib:.2} GiB free under {}: make room (or prune old runs)",
            at.display()
        ));
    }
    Ok(format!("{gib:.1} GiB free"))
}

/// The services the gateway talks to.
async fn remote(cfg: &ServeConfig) -> Vec<Verdict> {
    let http = reqwest::Client::builder().timeout(TIMEOUT).build();
    let Ok(http) = http else {
        return vec![verdict(
            "network",
            Err("cannot build an HTTP client".into()),
        )];
    };
    let mut v = Vec::new();
    if let Some(base) = &cfg.llm.base_url {
        v.push(verdict(
            "llm",
            llm(&http, base, cfg.llm.api_key.as_deref()).await,
        ));
    }
    if let Some(tg) = &cfg.telegram {
        v.push(verdict(
            "telegram",
            crate::channels::check_telegram(&http, tg).await,
        ));
    }
    if let Some(em) = &cfg.email {
        for (what, outcome) in bridges::email::check_servers(&em.config).await {
            v.push(verdict(what, outcome));
        }
    }
    let hub = crate::mcp::Hub::new(&cfg.mcp);
    for name in cfg.mcp.names() {
        let listed = tokio::time::timeout(Duration::from_secs(30), hub.tools(&name)).await;
        let outcome = match listed {
            Ok(Ok(tools)) => Ok(format!("{} tools", tools.len())),
            Ok(Err(e)) => Err(format!("{e}: check [mcp.servers.{name}]")),
            Err(_) => Err(format!("no answer within 30 s: check [mcp.servers.{name}]")),
        };
        v.push(verdict(format!("mcp {name}"), outcome));
    }
    v
}

async fn llm(http: &reqwest::Client, base_url: &str, key: Option<&str>) -> Result<String, String> {
    let url = format!("{}/models", base_url.trim_end_matches('/'));
    let base = &crate::store::redact_url(base_url);
    let mut req = http.get(&url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Ok(format!("{base} answers")),
        Ok(r) if r.status().as_u16() == 404 => Ok(format!("{base} answers (it lists no models)")),
        Ok(r) if r.status().as_u16() == 401 || r.status().as_u16() == 403 => Err(format!(
            "{base} refused the key ({}): check SWITCHBOARD_LLM_API_KEY",
            r.status()
        )),
        Ok(r) => Err(format!(
            "{base} answered {}: check SWITCHBOARD_LLM_BASE_URL",
            r.status()
        )),
        Err(e) => Err(format!(
            "cannot reach {base} ({}): check SWITCHBOARD_LLM_BASE_URL",
            crate::net::explain(&e.without_url())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_behind_the_store_is_a_thing_to_fix() {
        let behind = clock(Some("2999-01-01T00:00:00Z")).unwrap_err();
        assert!(behind.contains("NTP"), "{behind}");
        assert!(clock(Some("2020-01-01T00:00:00Z")).is_ok());
        assert!(clock(None).is_ok());
    }
}
