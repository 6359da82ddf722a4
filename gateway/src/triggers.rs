//! Inbound triggers: which names exist, which flow each starts, and how a request proves
//! it may fire one (an HMAC signature over timestamp and body, within a time window, or a
//! token with the `run` scope).
//!
//! Names come from the config (`[triggers.NAME] flow = …, secret = …`,
//! `SWITCHBOARD_TRIGGERS=name=flow,…`) and from flows (`triggers: [name]`); the config wins.
//! Secrets come from the config file or `SWITCHBOARD_TRIGGER_SECRET_<NAME>` (the name in
//! capitals, `-` as `_`). This module checks; it never starts runs itself.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::flows::Registry;

/// A trigger declared in the configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct TriggerDef {
    /// The flow it starts (`None`: the flow that declares the name).
    pub(crate) flow: Option<String>,
    pub(crate) secret: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct TriggerConfig {
    pub(crate) defs: BTreeMap<String, TriggerDef>,
    /// Secrets from `SWITCHBOARD_TRIGGER_SECRET_<NAME>`, by normalised name.
    pub(crate) env_secrets: BTreeMap<String, String>,
    /// How far a signed request's timestamp may be from now.
    pub(crate) window: Duration,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        Self {
            defs: BTreeMap::new(),
            env_secrets: BTreeMap::new(),
            window: Duration::from_secs(300),
        }
    }
}

/// `deploy-hook` → `DEPLOY_HOOK`.
pub(crate) fn env_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A trigger as resolved for one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) name: String,
    pub(crate) flow: String,
    pub(crate) secret: Option<String>,
}

impl TriggerConfig {
    pub(crate) const ENV_PREFIX: &str = "SWITCHBOARD_TRIGGER_SECRET_";

    /// Reads `SWITCHBOARD_TRIGGER_SECRET_*` from the environment.
    pub(crate) fn secrets_from_env(
        vars: impl Iterator<Item = (String, String)>,
    ) -> BTreeMap<String, String> {
        vars.filter_map(|(k, v)| {
            let name = k.strip_prefix(Self::ENV_PREFIX)?;
            (!v.is_empty()).then(|| (name.to_owned(), v))
        })
        .collect()
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.defs
            .get(name)
            .and_then(|d| d.secret.clone())
            .or_else(|| self.env_secrets.get(&env_key(name)).cloned())
    }

    /// The trigger `name`, if the config or a current flow declares it.
    pub(crate) fn resolve(&self, name: &str, registry: &Registry) -> Option<Resolved> {
        let from_flow = || {
            registry
                .list()
                .into_iter()
                .find(|v| v.flow.triggers.iter().any(|t| t == name))
                .map(|v| v.flow.bundle_id.clone())
        };
        let flow = match self.defs.get(name) {
            Some(TriggerDef { flow: Some(f), .. }) => Some(f.clone()),
            _ => from_flow(),
        }?;
        Some(Resolved {
            name: name.to_owned(),
            flow,
            secret: self.secret(name),
        })
    }

    /// Every trigger: the config's, then those of flows.
    pub(crate) fn list(&self, registry: &Registry) -> Vec<Resolved> {
        let mut names: Vec<String> = self.defs.keys().cloned().collect();
        for v in registry.list() {
            names.extend(v.flow.triggers.iter().cloned());
        }
        names.sort();
        names.dedup();
        names
            .iter()
            .filter_map(|n| self.resolve(n, registry))
            .collect()
    }
}

/// Checks a signed request: a fresh timestamp and a valid signature. The error names what
/// is wrong (never the expected signature).
pub(crate) fn check_signature(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    window: Duration,
    now_unix: i64,
) -> Result<(), String> {
    let ts = timestamp
        .ok_or("missing X-Switchboard-Timestamp (Unix seconds; signed together with the body)")?;
    let sig = signature.ok_or("missing X-Switchboard-Signature (`sha256=<hex hmac>`)")?;
    let t: i64 = ts
        .trim()
        .parse()
        .map_err(|_| format!("X-Switchboard-Timestamp `{ts}` is not Unix seconds"))?;
    let skew = (now_unix - t).unsigned_abs();
    if skew > window.as_secs() {
        return Err(format!(
            "X-Switchboard-Timestamp is {skew} s away from now (the window is {} s): a stale or replayed request",
            window.as_secs()
        ));
    }
    if !crate::signing::verify(secret, ts.trim(), body, sig) {
        return Err("X-Switchboard-Signature does not match the body and timestamp".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_and_secrets() {
        assert_eq!(env_key("deploy-hook.v2"), "DEPLOY_HOOK_V2");
        let m = TriggerConfig::secrets_from_env(
            [
                (
                    "SWITCHBOARD_TRIGGER_SECRET_DEPLOY".to_owned(),
                    "s".to_owned(),
                ),
                ("SWITCHBOARD_TRIGGER_SECRET_EMPTY".to_owned(), String::new()),
                ("OTHER".to_owned(), "x".to_owned()),
            ]
            .into_iter(),
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m["DEPLOY"], "s");
    }

    #[test]
    fn signatures_are_checked_with_a_window() {
        let body = b"{}";
        let sig = crate::signing::sign("k", "1000", body);
        let w = Duration::from_secs(300);
        assert!(check_signature("k", Some("1000"), Some(&sig), body, w, 1100).is_ok());
        let stale = check_signature("k", Some("1000"), Some(&sig), body, w, 2000).unwrap_err();
        assert!(stale.contains("stale"), "{stale}");
        let bad = check_signature("k", Some("1000"), Some("sha256=00"), body, w, 1000).unwrap_err();
        assert!(bad.contains("does not match"));
        assert!(
            check_signature("k", None, Some(&sig), body, w, 1000)
                .unwrap_err()
                .contains("Timestamp")
        );
        assert!(
            check_signature("k", Some("x"), Some(&sig), body, w, 1000)
                .unwrap_err()
                .contains("Unix")
        );
    }
}
