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
/// identities (and the person), or the entry itself.
pub(crate) fn expand(dir: &Directory, entry: &str) -> Vec<String> {
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
