//! The administration commands of the `switchboard` CLI, over the HTTP API (the running
//! gateway owns the store, so credentials change in one place).

use protocol::{Client, ScheduleInfo, TokenInfo};

use crate::config::{AdminCommand, GroupsAction, PeopleAction, TokenAction};

/// Runs one admin command against the gateway `c`.
pub async fn run(c: &Client, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Pair { .. } => {
            let p = c.mint_pairing_code().await?;
            let expiry = format!("expires {}", p.expires_at);
            crate::app::print_pairing_code(&p.code, &expiry, c.base().as_str());
        }
        AdminCommand::Devices {
            revoke: Some(id), ..
        } => {
            c.revoke_device(&id).await?;
            println!("revoked device {id}");
        }
        AdminCommand::Devices { revoke: None, .. } => print_rows(&c.devices().await?.items),
        AdminCommand::Keys {
            revoke: Some(id), ..
        } => {
            c.revoke_key(&id).await?;
            println!("revoked key {id}");
        }
        AdminCommand::Keys {
            create: Some(name),
            scope,
            ..
        } => {
            let k = c.create_key(&name, &scope).await?;
            println!(
                "key {} ({}) created; its token, shown once:",
                k.key_id,
                k.scopes.join(",")
            );
            println!("  {}", k.token);
        }
        AdminCommand::Keys { .. } => print_rows(&c.keys().await?.items),
        AdminCommand::Token {
            action: TokenAction::Rotate { .. },
        } => {
            let t = c.rotate_token().await?;
            println!("new admin token (the old one no longer works):");
            println!("  {}", t.token);
        }
        AdminCommand::People { action } => people(c, action).await?,
        AdminCommand::Groups { action } => groups(c, action).await?,
    }
    Ok(())
}

async fn people(c: &Client, action: PeopleAction) -> anyhow::Result<()> {
    match action {
        PeopleAction::List { .. } => {
            for p in c.people().await?.items {
                println!("{:<20} {}", p.name, p.identities.join(", "));
            }
        }
        PeopleAction::Add {
            name,
            telegram,
            email,
            device,
            key,
            ..
        } => {
            let kinds = [
                ("telegram", telegram),
                ("email", email),
                ("device", device),
                ("key", key),
            ];
            let identities: Vec<String> = kinds
                .into_iter()
                .flat_map(|(k, vs)| vs.into_iter().map(move |v| format!("{k}:{v}")))
                .collect();
            if identities.is_empty() {
                anyhow::bail!("give at least one of --telegram, --email, --device, --key");
            }
            let p = c.add_person(&protocol::Person { name, identities }).await?;
            println!("{}: {}", p.name, p.identities.join(", "));
        }
        PeopleAction::Remove { name, .. } => {
            c.remove_person(&name).await?;
            println!("removed {name}");
        }
    }
    Ok(())
}

async fn groups(c: &Client, action: GroupsAction) -> anyhow::Result<()> {
    match action {
        GroupsAction::List { .. } => {
            for g in c.groups().await?.items {
                println!("{:<20} {}", g.name, g.members.join(", "));
            }
        }
        GroupsAction::Add { name, members, .. } => {
            let g = c.add_group(&protocol::Group { name, members }).await?;
            println!("{}: {}", g.name, g.members.join(", "));
        }
        GroupsAction::Remove { name, .. } => {
            c.remove_group(&name).await?;
            println!("removed {name}");
        }
    }
    Ok(())
}

fn print_rows(items: &[TokenInfo]) {
    for t in items {
        let state = if t.revoked_at.is_none() {
            "active"
        } else {
            "revoked"
        };
        println!(
            "{}  {:<20} {:<8} {:<24} last used {}",
            t.id,
            t.name,
            state,
            t.scopes.join(","),
            t.last_used_at.as_deref().unwrap_or("never")
        );
    }
}

/// One line of `switchboard schedules`.
pub fn schedule_line(s: &ScheduleInfo) -> String {
    let every = match (&s.spec.cron, s.spec.interval_ms) {
        (Some(cron), _) => cron.clone(),
        (None, ms) => format!("every {} ms", ms.unwrap_or(0)),
    };
    format!(
        "{}  {:<9} {:<12} {:<20} fired {:<4} next {}  last {}",
        s.run_id,
        s.status.as_str(),
        s.bundle_id,
        every,
        s.fired,
        s.next_fire_at.as_deref().unwrap_or("-"),
        s.last_result
            .as_ref()
            .and_then(|r| r.status)
            .map_or("-", |st| st.as_str()),
    )
}
