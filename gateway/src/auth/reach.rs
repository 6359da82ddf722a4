//! Who a run may reach. A run can make the gateway's channel bridges contact people: its
//! `notify` targets (`telegram:<chat>`, `email:<address>`) get its prompts and messages,
//! and a run in a channel session (`telegram:<chat>`, `email:<address>`) talks in that
//! chat or mail thread and shares its history. So:
//!
//! - a `notify` target on a channel must be on the allowlist that channel's bridge
//!   published (`PUT /api/gateway/channels/{channel}`: Telegram users and chats that are
//!   allowed or paired, the email bridge's allowed senders and domains), unless the caller
//!   has the `channel` scope (a bridge, or an admin);
//! - a notify to a channel no bridge has published is refused (nobody would deliver it);
//! - channel sessions belong to their bridge (`channel` scope), and `openai:<principal>:…`
//!   sessions to that principal (the `/v1` surface namespaces sessions by caller);
//! - only a bridge speaks for a channel's people: a command's `channel` and `client_id`,
//!   and ids in a channel's namespace (`telegram:…`, `email:…` command ids and
//!   `Idempotency-Key`s, which the bridges derive from update ids and Message-IDs), need
//!   the `channel` scope, so nobody can pose as a Telegram user or claim a bridge's next
//!   ids ahead of it.
//!
//! This module decides; the lists are persisted by the HTTP layer through the store.

use std::collections::HashMap;
use std::sync::RwLock;

use super::{Principal, Scope};

/// Channels whose bridges contact people, and so have allowlists.
pub(crate) const CONTACT_CHANNELS: &[&str] = &["telegram", "email"];
/// Channels a `notify` entry may name.
pub(crate) const NOTIFY_CHANNELS: &[&str] = &["telegram", "email", "web", "tray", "webhook"];
/// Session prefix of the OpenAI-compatible surface: `openai:<principal id>:<session>`.
pub(crate) const OPENAI_SESSION: &str = "openai:";

/// Why a run may not reach someone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The entry is malformed or names a channel nobody serves (400).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not reach that target (403).
    #[error("{0}")]
    Forbidden(String),
}

/// The published allowlists, by channel.
#[derive(Default)]
pub(crate) struct Reach {
    lists: RwLock<HashMap<String, Vec<String>>>,
    /// Orders publications (the store write, then memory), see `http::channels`.
    pub(crate) publishing: tokio::sync::Mutex<()>,
}

/// The settings key a channel's allowlist is stored under.
pub(crate) fn meta_key(channel: &str) -> String {
    format!("channel.allow.{channel}")
}

impl Reach {
    pub(crate) fn set(&self, channel: &str, allow: Vec<String>) {
        let mut m = self.lists.write().unwrap_or_else(|p| p.into_inner());
        m.insert(channel.to_owned(), allow);
    }

    pub(crate) fn remove(&self, channel: &str) -> bool {
        let mut m = self.lists.write().unwrap_or_else(|p| p.into_inner());
        m.remove(channel).is_some()
    }

    pub(crate) fn get(&self, channel: &str) -> Option<Vec<String>> {
        let m = self.lists.read().unwrap_or_else(|p| p.into_inner());
        m.get(channel).cloned()
    }

    /// Checks a new run's session and notify targets for the caller `who`.
    pub(crate) fn check(
        &self,
        who: &Principal,
        session: Option<&str>,
        notify: &[String],
    ) -> Result<(), Refusal> {
        if let Some(s) = session {
            check_session(who, s)?;
        }
        for entry in notify {
            self.check_notify(who, entry)?;
        }
        Ok(())
    }

    fn check_notify(&self, who: &Principal, entry: &str) -> Result<(), Refusal> {
        let target = parse_target(entry)?;
        let Some(channel) = target.contact_channel() else {
            return Ok(());
        };
        let Some(list) = self.get(channel) else {
            return Err(Refusal::Invalid(format!(
                "notify entry `{entry}`: the {channel} channel is not configured (no {channel} bridge has registered with this gateway)"
            )));
        };
        if who.allows(Scope::Channel) || target.allowed_by(&list) {
            return Ok(());
        }
        Err(Refusal::Forbidden(format!(
            "notify target `{entry}` is not on the {channel} channel's allowlist; only the channel's bridge or an admin may notify others"
        )))
    }
}

/// Whether `who` may start a run in session `s`.
pub(crate) fn check_session(who: &Principal, s: &str) -> Result<(), Refusal> {
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(Refusal::Invalid(
            "session_id must be 1-256 characters without control characters".into(),
        ));
    }
    if let Some(rest) = s.strip_prefix(OPENAI_SESSION) {
        let own = rest
            .split_once(':')
            .is_some_and(|(pid, _)| pid == who.id.as_str());
        if own || who.allows(Scope::Admin) {
            return Ok(());
        }
        return Err(Refusal::Forbidden(format!(
            "session `{s}` belongs to another caller of /v1"
        )));
    }
    let channel = s.split_once(':').map(|(c, _)| c);
    if let Some(c) = channel.filter(|c| CONTACT_CHANNELS.contains(c))
        && !who.allows(Scope::Channel)
    {
        return Err(Refusal::Forbidden(format!(
            "session `{s}` is a {c} conversation: only the {c} bridge (the `channel` scope) or an admin may start runs in it"
        )));
    }
    Ok(())
}

/// Whether `value` is in a channel's namespace (`telegram:…`, `email:…`).
fn in_channel_namespace(value: &str) -> Option<&'static str> {
    CONTACT_CHANNELS
        .iter()
        .find(|c| {
            value
                .strip_prefix(**c)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .copied()
}

/// Checks what a command or run start says about who sends it: `field` = `value` may name
/// a channel (or sit in its namespace) only when `who` is a bridge or an admin.
pub(crate) fn check_claim(who: &Principal, field: &str, value: &str) -> Result<(), Refusal> {
    let channel = in_channel_namespace(value)
        .or_else(|| CONTACT_CHANNELS.iter().find(|c| **c == value).copied());
    match channel {
        Some(c) if !who.allows(Scope::Channel) => Err(Refusal::Forbidden(format!(
            "{field} `{value}` speaks for the {c} channel: only its bridge (the `channel` scope) or an admin may send it"
        ))),
        _ => Ok(()),
    }
}

/// A parsed `notify` entry.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Telegram(i64),
    Email(String),
    Other,
}

impl Target {
    fn contact_channel(&self) -> Option<&'static str> {
        match self {
            Self::Telegram(_) => Some("telegram"),
            Self::Email(_) => Some("email"),
            Self::Other => None,
        }
    }

    fn allowed_by(&self, list: &[String]) -> bool {
        match self {
            Self::Telegram(chat) => list.iter().any(|a| a.trim().parse::<i64>() == Ok(*chat)),
            Self::Email(addr) => {
                let domain = addr.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                list.iter().any(|a| {
                    let a = a.trim().to_ascii_lowercase();
                    match a.strip_prefix('@') {
                        Some(d) => d == domain,
                        None => a == *addr,
                    }
                })
            }
            Self::Other => true,
        }
    }
}

/// Whether `addr` looks like a mail address that cannot break a header: one `@`, no
/// spaces, controls, quotes, brackets or separators.
pub(crate) fn plain_address(addr: &str) -> bool {
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"".contains(c);
    match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && addr.len() <= 254
                && !addr.chars().any(bad)
        }
        None => false,
    }
}

fn parse_target(entry: &str) -> Result<Target, Refusal> {
    let invalid = |why: &str| Refusal::Invalid(format!("notify entry `{entry}`: {why}"));
    let Some((channel, target)) = entry.split_once(':').filter(|(_, t)| !t.is_empty()) else {
        return Err(invalid(&format!(
            "must be `channel:target` with channel one of {}",
            NOTIFY_CHANNELS.join(", ")
        )));
    };
    match channel {
        "telegram" => target
            .parse::<i64>()
            .map(Target::Telegram)
            .map_err(|_| invalid("a Telegram target is a chat id (a whole number)")),
        "email" => {
            let (addr, mode) = match target.split_once('?') {
                Some((a, m)) => (a, Some(m)),
                None => (target, None),
            };
            if !plain_address(addr) {
                return Err(invalid("not a plain mail address"));
            }
            if mode.is_some_and(|m| !matches!(m, "all" | "asks_only")) {
                return Err(invalid("the mode after `?` must be `all` or `asks_only`"));
            }
            Ok(Target::Email(addr.to_ascii_lowercase()))
        }
        c if NOTIFY_CHANNELS.contains(&c) => Ok(Target::Other),
        _ => Err(invalid(&format!(
            "channel `{channel}` must be one of {}",
            NOTIFY_CHANNELS.join(", ")
        ))),
    }
}

/// Checks an allowlist a bridge publishes: at most 10,000 entries, each a chat id
/// (Telegram) or an address or `@domain` (email).
pub(crate) fn check_allowlist(channel: &str, allow: &[String]) -> Result<(), String> {
    if !CONTACT_CHANNELS.contains(&channel) {
        return Err(format!(
            "channel `{channel}` has no allowlist; it must be one of {}",
            CONTACT_CHANNELS.join(", ")
        ));
    }
    if allow.len() > 10_000 {
        return Err("allow holds at most 10000 entries".into());
    }
    for (i, a) in allow.iter().enumerate() {
        let ok = match channel {
            "telegram" => a.trim().parse::<i64>().is_ok(),
            _ => match a.strip_prefix('@') {
                Some(d) => plain_address(&format!("x@{d}")),
                None => plain_address(a),
            },
        };
        if !ok {
            return Err(format!(
                "allow[{i}] `{a}` must be {}",
                if channel == "telegram" {
                    "a chat or user id"
                } else {
                    "an address or `@domain`"
                }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(kind: &str, scopes: &[Scope]) -> Principal {
        Principal {
            id: format!("{kind}-id"),
            kind: kind.into(),
            name: kind.into(),
            scopes: scopes.to_vec(),
        }
    }

    fn reach() -> Reach {
        let r = Reach::default();
        r.set("telegram", vec!["4242".into()]);
        r.set(
            "email",
            vec!["alice@example.com".into(), "@corp.test".into()],
        );
        r
    }

    #[test]
    fn notify_targets_must_be_allowlisted_for_scoped_keys() {
        let (r, key) = (reach(), who("key", &[Scope::Read, Scope::Run]));
        let ok = |n: &str| r.check(&key, None, &[n.to_owned()]);
        assert_eq!(ok("telegram:4242"), Ok(()));
        assert_eq!(ok("email:Alice@Example.com?all"), Ok(()));
        assert_eq!(ok("email:bob@corp.test"), Ok(()));
        assert_eq!(ok("web:anything"), Ok(()));
        for refused in ["telegram:999999", "email:outsider@evil.test?all"] {
            assert!(matches!(ok(refused), Err(Refusal::Forbidden(m)) if m.contains(refused)));
        }
        let bridge = who("key", &[Scope::Run, Scope::Channel]);
        assert_eq!(r.check(&bridge, None, &["telegram:1".into()]), Ok(()));
        let admin = who("admin", &[Scope::Admin]);
        assert_eq!(r.check(&admin, None, &["email:x@y.test".into()]), Ok(()));
    }

    #[test]
    fn unconfigured_channels_and_bad_entries_are_invalid() {
        let r = Reach::default();
        let admin = who("admin", &[Scope::Admin]);
        for bad in [
            "telegram:1",
            "email:a@b.test",
            "sms:1",
            "telegram:x",
            "email:a b@c.test",
            "email:a@b.test\r\nBcc: x@y.test",
            "email:a@b.test?everything",
            "nothing",
        ] {
            assert!(
                matches!(
                    reach().check(&admin, None, &[bad.into()]),
                    Err(Refusal::Invalid(_))
                ) || matches!(
                    r.check(&admin, None, &[bad.into()]),
                    Err(Refusal::Invalid(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            r.check(&admin, None, &["telegram:1".into()]),
            Err(Refusal::Invalid(m)) if m.contains("not configured")
        ));
    }

    #[test]
    fn channel_and_openai_sessions_belong_to_their_owners() {
        let key = who("key", &[Scope::Run]);
        assert!(matches!(
            check_session(&key, "telegram:4242"),
            Err(Refusal::Forbidden(_))
        ));
        assert!(check_session(&key, "email:a@b.test").is_err());
        assert!(check_session(&key, "openai:other-id:x").is_err());
        assert_eq!(check_session(&key, "openai:key-id:x"), Ok(()));
        assert_eq!(check_session(&key, "my-session"), Ok(()));
        assert!(check_session(&key, "a\nb").is_err());
        let bridge = who("key", &[Scope::Channel]);
        assert_eq!(check_session(&bridge, "telegram:4242"), Ok(()));
    }

    #[test]
    fn only_a_bridge_speaks_for_a_channel() {
        let key = who("key", &[Scope::Command]);
        for (field, value) in [
            ("channel", "telegram"),
            ("client_id", "telegram:1001"),
            ("command_id", "telegram:777:42"),
            ("Idempotency-Key", "email:<m1@x>"),
        ] {
            assert!(check_claim(&key, field, value).is_err(), "{field}");
        }
        for (field, value) in [
            ("channel", "web"),
            ("client_id", "tray:me"),
            ("command_id", "telegramx"),
        ] {
            assert_eq!(check_claim(&key, field, value), Ok(()), "{field}");
        }
        let bridge = who("key", &[Scope::Channel]);
        assert_eq!(check_claim(&bridge, "client_id", "telegram:1001"), Ok(()));
    }

    #[test]
    fn allowlists_are_checked_when_published() {
        assert!(check_allowlist("telegram", &["12".into(), "-100".into()]).is_ok());
        assert!(check_allowlist("telegram", &["@x".into()]).is_err());
        assert!(check_allowlist("email", &["a@b.test".into(), "@b.test".into()]).is_ok());
        assert!(check_allowlist("email", &["a@b.test, c@d.test".into()]).is_err());
        assert!(check_allowlist("web", &[]).is_err());
    }
}
