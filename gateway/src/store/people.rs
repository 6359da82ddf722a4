//! People and groups: a person is one name over channel identities (`telegram:111`,
//! `email:alice@example.com`, `device:alices-phone`, `key:ci`), so a quorum counts people,
//! not channels; a group is a named list of approvers. Each identity belongs to at most
//! one person.

use super::sql::{Db, DbResult, Optional, args};
use super::{Result, Store, StoreError, now, ts};

/// Who is who: the stored people and groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Directory {
    /// `(identity, person)`, sorted by person.
    pub(crate) people: Vec<(String, String)>,
    /// `(group, member)`, sorted by group.
    pub(crate) groups: Vec<(String, String)>,
}

impl Store {
    pub(crate) async fn directory(&self) -> Result<Directory> {
        self.read(load_directory).await
    }

    /// Links `identities` to `person`; an identity another person holds is a conflict.
    pub(crate) async fn add_person(&self, person: &str, identities: &[String]) -> Result<()> {
        let (p, ids) = (person.to_owned(), identities.to_vec());
        self.write(move |c, _| {
            let at = ts(now());
            for id in &ids {
                let holder: Option<String> = c
                    .query_row("SELECT person FROM people WHERE identity = ?1", [id], |r| {
                        r.get(0)
                    })
                    .optional()?;
                match holder {
                    Some(h) if h != p => {
                        return Err(StoreError::Conflict(format!(
                            "{id} belongs to {h}; remove it there first"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        c.execute(
                            "INSERT INTO people (identity, person, created_at) VALUES (?1, ?2, ?3)",
                            args![id, p, at],
                        )?;
                    }
                }
            }
            Ok(())
        })
        .await
        .map(|(r, _)| r)
    }

    /// Forgets a person (all their identities); `false` when there was none.
    pub(crate) async fn remove_person(&self, person: &str) -> Result<bool> {
        let p = person.to_owned();
        self.write(move |c, _| Ok(c.execute("DELETE FROM people WHERE person = ?1", [&p])? > 0))
            .await
            .map(|(r, _)| r)
    }

    /// Adds members to a group (made by its first member).
    pub(crate) async fn add_group_members(&self, group: &str, members: &[String]) -> Result<()> {
        self.write_group(group, members, false).await
    }

    /// Sets a group's members to exactly `members` (a group the config declares).
    pub(crate) async fn set_group(&self, group: &str, members: &[String]) -> Result<()> {
        self.write_group(group, members, true).await
    }

    async fn write_group(&self, group: &str, members: &[String], replace: bool) -> Result<()> {
        let (g, ms) = (group.to_owned(), members.to_vec());
        self.write(move |c, _| {
            if replace {
                c.execute("DELETE FROM group_members WHERE group_name = ?1", [&g])?;
            }
            let at = ts(now());
            for m in &ms {
                c.execute(
                    "INSERT INTO group_members (group_name, member, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (group_name, member) DO NOTHING",
                    args![g, m, at],
                )?;
            }
            Ok(())
        })
        .await
        .map(|(r, _)| r)
    }

    /// Forgets a group; `false` when there was none.
    pub(crate) async fn remove_group(&self, group: &str) -> Result<bool> {
        let g = group.to_owned();
        self.write(move |c, _| {
            Ok(c.execute("DELETE FROM group_members WHERE group_name = ?1", [&g])? > 0)
        })
        .await
        .map(|(r, _)| r)
    }
}

/// The people and groups, read on `c` (a reader, or the writer inside a transaction).
pub(super) fn load_directory(c: &Db) -> Result<Directory> {
    let people = c
        .prepare_cached("SELECT identity, person FROM people ORDER BY person, identity")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<Vec<_>>>()?;
    let groups = c
        .prepare_cached("SELECT group_name, member FROM group_members ORDER BY group_name, member")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<Vec<_>>>()?;
    Ok(Directory { people, groups })
}
