//! Compiles the team options of an `ask` step: `approvers`, `quorum`, `reject_on`,
//! `remind`, `remind_max`, `escalate: {after, notify, approvers}`.

use super::*;

/// Reminders a prompt sends unless `remind_max` says otherwise.
const DEFAULT_REMIND_MAX: i64 = 3;
/// Most approvers, reminders and quorum a prompt may name.
const MAX_APPROVERS: usize = 100;

/// Whether `s` names who may answer: `admin`, or `<kind>:<name>` with a known kind.
pub(crate) fn approver_ok(s: &str) -> bool {
    if s == "admin" {
        return true;
    }
    let Some((kind, name)) = s.split_once(':') else {
        return false;
    };
    let kinds = ["person", "group", "key", "device", "telegram", "email"];
    // Device names may hold spaces (the web app names its devices `web: <name>`).
    kinds.contains(&kind)
        && !name.is_empty()
        && name.len() <= 200
        && name.trim() == name
        && !name.chars().any(char::is_control)
}

/// Whether `s` is a target an escalation can notify: `telegram:<chat id>`, `email:<address>`.
fn notify_ok(s: &str) -> bool {
    match s.split_once(':') {
        Some(("telegram", chat)) => chat.parse::<i64>().is_ok(),
        Some(("email", a)) => {
            a.len() <= 254
                && a.split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
                && !a.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        _ => false,
    }
}

impl Cx<'_> {
    pub(super) fn team<'a>(
        &mut self,
        get: &dyn Fn(&str) -> Option<&'a Node>,
        choices: &[String],
        free_text: bool,
    ) -> Result<Option<Team>, FlowError> {
        let Some(list) = get("approvers") else {
            for k in ["quorum", "reject_on", "remind", "remind_max", "escalate"] {
                if let Some(n) = get(k) {
                    return Err(self.err(n.pos, format!("`{k}` needs `approvers:`")));
                }
            }
            return Ok(None);
        };
        if choices.is_empty() || free_text {
            return Err(self.err(
                list.pos,
                "a prompt with approvers needs `choices:` and no free text (votes are counted by choice)".into(),
            ));
        }
        let approvers = self.approvers(list)?;
        let quorum = get("quorum")
            .map(|n| self.int(n, 1, MAX_APPROVERS as i64, "quorum"))
            .transpose()?
            .unwrap_or(1) as u32;
        let reject_on_any = match get("reject_on") {
            None => false,
            Some(n) => match self.string(n)?.as_str() {
                "any" => true,
                other => {
                    return Err(self.err(
                        n.pos,
                        format!("reject_on `{other}` must be `any` (one vote for another choice than `{}` ends it)", choices[0]),
                    ));
                }
            },
        };
        let remind = get("remind")
            .map(|n| self.bounded(n, "remind"))
            .transpose()?;
        let remind_max = get("remind_max")
            .map(|n| self.int(n, 1, MAX_APPROVERS as i64, "remind_max"))
            .transpose()?
            .unwrap_or(DEFAULT_REMIND_MAX) as u32;
        let escalate = get("escalate").map(|n| self.escalation(n)).transpose()?;
        Ok(Some(Team {
            approvers,
            quorum,
            reject_on_any,
            remind,
            remind_max,
            escalate,
        }))
    }

    /// A duration from 1 second to a year (reminders and escalations are timers).
    fn bounded(&self, n: &Node, what: &str) -> Result<std::time::Duration, FlowError> {
        let d = self.duration(n, what)?;
        let year = std::time::Duration::from_secs(365 * 24 * 3600);
        if d < std::time::Duration::from_secs(1) || d > year {
            return Err(self.err(n.pos, format!("{what} must be from 1s to 365d")));
        }
        Ok(d)
    }

    fn approvers(&self, n: &Node) -> Result<Vec<String>, FlowError> {
        let Kind::Seq(items) = &n.kind else {
            return Err(self.err(
                n.pos,
                "`approvers` is a list like [\"person:alice\", \"group:ops\", \"telegram:111\"]"
                    .into(),
            ));
        };
        if items.is_empty() || items.len() > MAX_APPROVERS {
            return Err(self.err(
                n.pos,
                format!("`approvers` names 1 to {MAX_APPROVERS} approvers"),
            ));
        }
        items
            .iter()
            .map(|i| {
                let s = self.string(i)?;
                if approver_ok(&s) {
                    Ok(s)
                } else {
                    Err(self.err(
                        i.pos,
                        format!("`{s}` is not an approver: write person:NAME, group:NAME, key:NAME, device:NAME, telegram:USER_ID, email:ADDRESS (or email:@DOMAIN) or admin"),
                    ))
                }
            })
            .collect()
    }

    fn escalation(&self, n: &Node) -> Result<Escalation, FlowError> {
        let Kind::Map(m) = &n.kind else {
            return Err(self.err(
                n.pos,
                "`escalate` is a mapping: {after: 4h, notify: [...], approvers: [...]}".into(),
            ));
        };
        let o = StepOpts {
            map: m,
            kind: "escalate",
        };
        o.only(self, &["after", "notify", "approvers"])?;
        let Some(after) = o.get("after") else {
            return Err(self.err(n.pos, "`escalate` needs `after:` (a duration)".into()));
        };
        let notify = match o.get("notify") {
            None => Vec::new(),
            Some(l) => match &l.kind {
                Kind::Seq(items) => items
                    .iter()
                    .map(|i| {
                        let s = self.string(i)?;
                        if notify_ok(&s) {
                            Ok(s)
                        } else {
                            Err(self.err(
                                i.pos,
                                format!("`{s}` is not a channel target: write telegram:<chat id> or email:<address>"),
                            ))
                        }
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(self.err(l.pos, "`notify` is a list of channel targets".into())),
            },
        };
        let approvers = o
            .get("approvers")
            .map(|a| self.approvers(a))
            .transpose()?
            .unwrap_or_default();
        if notify.is_empty() && approvers.is_empty() {
            return Err(self.err(n.pos, "`escalate` needs `notify:` or `approvers:`".into()));
        }
        Ok(Escalation {
            after: self.bounded(after, "escalate.after")?,
            notify,
            approvers,
        })
    }
}
