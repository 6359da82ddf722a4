//! `[groups.NAME] members = ["person:alice", "key:ci"]`: approver groups declared in the
//! config file. At start each one is written to the store with exactly these members (the
//! API and the CLI manage the others, and may change these until the next start).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::auth::approvers;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGroup {
    members: Vec<String>,
}

/// Checks each group (name and members); a bad one is a start-up problem.
pub(super) fn resolve(
    groups: BTreeMap<String, FileGroup>,
    problems: &mut Vec<String>,
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (name, g) in groups {
        let at = format!("[groups.{name}]");
        let checked = approvers::check_name(&name, "the group name").and_then(|()| {
            approvers::check_entries(&g.members, "members", approvers::MEMBER_KINDS)
        });
        match checked {
            Ok(()) => out.push((
                name,
                g.members.iter().map(|m| approvers::normalise(m)).collect(),
            )),
            Err(e) => problems.push(format!("{at}: {e}")),
        }
    }
    out
}
