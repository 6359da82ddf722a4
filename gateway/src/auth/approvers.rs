//! Who may answer a prompt with approvers, and whose vote an answer is.
//!
//! A caller's identities: a channel bridge answering for a channel user is that user
//! (`telegram:<id>`, `email:<address>`: the bridge proved it, and only a bridge may claim
//! such a client id); anyone else is their credential (`admin`, `key:<name>`,
//! `device:<name>`). A person links identities under one name, so `person:<name>` matches
//! any of them and counts once. Approver entries: those identities, `person:`, `group:`
//! (one level: members are entries but not groups), `email:@<domain>`. Pure.

use super::Principal;
use crate::store::Directory;

/// Checks the name of a person or a group.
pub(crate) fn check_name(name: &str, field: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} `{name}` must be 1-64 letters, digits, `_`, `-` or `.`"
        ))
    }
}

/// Checks a list of 1 to 100 approver entries of the given kinds (or `admin`).
pub(crate) fn check_entries(list: &[String], field: &str, kinds: &[&str]) -> Result<(), String> {
    if list.is_empty() || list.len() > 100 {
        return Err(format!("{field} holds 1 to 100 entries"));
    }
    for (i, e) in list.iter().enumerate() {
        let kind = e.split_once(':').map_or(e.as_str(), |(k, _)| k);
        let ok = (e == "admin" || kinds.contains(&kind)) && crate::flows::parse::approver_ok(e);
        if !ok {
            return Err(format!(
                "{field}[{i}] `{e}` must be one of {} (as `kind:name`)",
                kinds.join(", ")
            ));
        }
    }
    Ok(())
}

/// What a group may hold: anything an approver names but another group.
pub(crate) const MEMBER_KINDS: &[&str] = &["person", "telegram", "email", "device", "key"];

/// Email addresses compare without case.
pub(crate) fn normalise(entry: &str) -> String {
    match entry.strip_prefix("email:") {
        Some(a) => format!("email:{}", a.to_lowercase()),
        None => entry.to_owned(),
    }
}

/// The identities an answer comes from.
pub(crate) fn identities(who: &Principal, client_id: Option<&str>) -> Vec<String> {
    if let Some(c) = client_id
        && (c.starts_with("telegram:") || c.starts_with("email:"))
    {
        return vec![c.to_lowercase()];
    }
    vec![who.label()]
}

/// The identities an approver entry stands for when listing prompts `for` it: a person's
/// identities, a group's members' (one level), or the entry itself.
pub(crate) fn expand(dir: &Directory, entry: &str) -> Vec<String> {
    if let Some(g) = entry.strip_prefix("group:") {
        let members = dir.groups.iter().filter(|(name, _)| name == g);
        return members
            .flat_map(|(_, m)| match m.starts_with("group:") {
                true => Vec::new(),
                false => expand(dir, m),
            })
            .collect();
    }
    match entry.strip_prefix("person:") {
        Some(p) => dir
            .people
            .iter()
            .filter(|(_, q)| q == p)
            .map(|(i, _)| i.clone())
            .collect(),
        None => vec![entry.to_owned()],
    }
}

/// The person a recorded voter stands for (`person:<name>`, also for an identity linked to
/// a person after it voted), or the identity itself, lower case.
fn counted_as(dir: &Directory, voter: &str) -> String {
    if voter.starts_with("person:") {
        return voter.to_lowercase();
    }
    match person_of(dir, &[voter.to_owned()]) {
        Some(p) => format!("person:{p}").to_lowercase(),
        None => voter.to_lowercase(),
    }
}

/// The vote `voter` (or the person behind it) already gave, if any.
pub(crate) fn vote_of<'a>(
    dir: &Directory,
    votes: &'a [protocol::Vote],
    voter: &str,
) -> Option<&'a protocol::Vote> {
    let me = counted_as(dir, voter);
    votes.iter().find(|v| counted_as(dir, &v.voter) == me)
}

/// The person `ids` belong to, if any.
pub(crate) fn person_of<'a>(dir: &'a Directory, ids: &[String]) -> Option<&'a str> {
    dir.people
        .iter()
        .find(|(identity, _)| ids.iter().any(|i| i.eq_ignore_ascii_case(identity)))
        .map(|(_, p)| p.as_str())
}

/// Whose vote it is: `person:<name>` when linked, else the identity itself.
pub(crate) fn voter(dir: &Directory, ids: &[String]) -> String {
    match person_of(dir, ids) {
        Some(p) => format!("person:{p}"),
        None => ids.first().cloned().unwrap_or_default(),
    }
}

/// Whether any of `approvers` admits `ids`.
pub(crate) fn admits(dir: &Directory, approvers: &[String], ids: &[String]) -> bool {
    let person = person_of(dir, ids);
    approvers.iter().any(|a| matches(dir, a, ids, person, true))
}

fn matches(
    dir: &Directory,
    entry: &str,
    ids: &[String],
    person: Option<&str>,
    groups: bool,
) -> bool {
    match entry.split_once(':') {
        Some(("person", p)) => person.is_some_and(|q| q.eq_ignore_ascii_case(p)),
        Some(("group", g)) => {
            groups
                && dir
                    .groups
                    .iter()
                    .filter(|(name, _)| name == g)
                    .any(|(_, m)| matches(dir, m, ids, person, false))
        }
        Some(("email", domain)) if domain.starts_with('@') => ids.iter().any(|i| {
            i.strip_prefix("email:")
                .is_some_and(|a| a.to_lowercase().ends_with(&domain.to_lowercase()))
        }),
        _ => ids.iter().any(|i| i.eq_ignore_ascii_case(entry)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        Directory {
            people: vec![
                ("email:alice@example.com".into(), "alice".into()),
                ("telegram:111".into(), "alice".into()),
            ],
            groups: vec![
                ("ops".into(), "person:alice".into()),
                ("ops".into(), "key:ci".into()),
            ],
        }
    }

    fn ids(s: &str) -> Vec<String> {
        vec![s.to_owned()]
    }

    #[test]
    fn a_group_lists_its_members_prompts_and_a_person_votes_once() {
        let d = dir();
        let mut members = expand(&d, "group:ops");
        members.sort();
        assert_eq!(
            members,
            ["email:alice@example.com", "key:ci", "telegram:111"]
        );
        assert!(expand(&d, "group:nobody").is_empty());
        let vote = |voter: &str| protocol::Vote {
            voter: voter.into(),
            choice: "approve".into(),
            channel: None,
        };
        // Telegram 111 voted before it was linked to alice: alice has voted.
        let votes = [vote("telegram:111")];
        assert!(vote_of(&d, &votes, "person:alice").is_some());
        assert!(vote_of(&d, &votes, "key:ci").is_none());
        assert!(vote_of(&d, &[vote("person:alice")], "telegram:111").is_some());
    }

    #[test]
    fn people_groups_and_domains_admit_whom_they_name() {
        let d = dir();
        let only = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(admits(&d, &only(&["person:alice"]), &ids("telegram:111")));
        assert!(admits(
            &d,
            &only(&["person:alice"]),
            &ids("email:Alice@Example.com")
        ));
        assert!(!admits(&d, &only(&["person:alice"]), &ids("telegram:222")));
        assert!(admits(&d, &only(&["group:ops"]), &ids("key:ci")));
        assert!(admits(&d, &only(&["group:ops"]), &ids("telegram:111")));
        assert!(!admits(&d, &only(&["group:ops"]), &ids("key:other")));
        assert!(admits(
            &d,
            &only(&["email:@example.com"]),
            &ids("email:bob@example.com")
        ));
        assert!(!admits(
            &d,
            &only(&["email:@example.com"]),
            &ids("email:bob@example.com.evil")
        ));
        assert!(admits(&d, &only(&["admin"]), &ids("admin")));
        assert_eq!(voter(&d, &ids("telegram:111")), "person:alice");
        assert_eq!(voter(&d, &ids("telegram:222")), "telegram:222");
    }
}
