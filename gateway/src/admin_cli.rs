//! The administration commands of the `switchboard` CLI, over the HTTP API (the running
//! gateway owns the store, so credentials change in one place).

use protocol::Client;
use protocol::client::ApiPath;
use serde_json::{Value, json};

use crate::config::{AdminCommand, TokenAction};

/// Runs one admin command against the gateway `c`.
pub async fn run(c: &Client, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Pair { .. } => {
            let r = c.post_json("api/gateway/pair/codes", &json!({})).await?;
            let code = r["code"].as_str().unwrap_or_default();
            let expiry = format!("expires {}", r["expires_at"].as_str().unwrap_or("soon"));
            crate::app::print_pairing_code(code, &expiry, c.base().as_str());
        }
        AdminCommand::Devices {
            revoke: Some(id), ..
        } => {
            c.delete_json(ApiPath::new("api/gateway/devices").id(&*id))
                .await?;
            println!("revoked device {id}");
        }
        AdminCommand::Devices { revoke: None, .. } => {
            print_rows(&c.get_json("api/gateway/devices").await?)
        }
        AdminCommand::Keys {
            revoke: Some(id), ..
        } => {
            c.delete_json(ApiPath::new("api/gateway/keys").id(&*id))
                .await?;
            println!("revoked key {id}");
        }
        AdminCommand::Keys {
            create: Some(name),
            scope,
            ..
        } => {
            let r = c
                .post_json("api/gateway/keys", &json!({"name": name, "scopes": scope}))
                .await?;
            println!(
                "key {} ({}) created; its token, shown once:",
                r["key_id"].as_str().unwrap_or(""),
                scope.join(",")
            );
            println!("  {}", r["token"].as_str().unwrap_or(""));
        }
        AdminCommand::Keys { .. } => print_rows(&c.get_json("api/gateway/keys").await?),
        AdminCommand::Token {
            action: TokenAction::Rotate { .. },
        } => {
            let r = c.post_json("api/gateway/token/rotate", &json!({})).await?;
            println!("new admin token (the old one no longer works):");
            println!("  {}", r["token"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}

fn print_rows(v: &Value) {
    for t in v["items"].as_array().into_iter().flatten() {
        let state = if t["revoked_at"].is_null() {
            "active"
        } else {
            "revoked"
        };
        let scopes: Vec<&str> = t["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{}  {:<20} {:<8} {:<24} last used {}",
            t["id"].as_str().unwrap_or(""),
            t["name"].as_str().unwrap_or(""),
            state,
            scopes.join(","),
            t["last_used_at"].as_str().unwrap_or("never")
        );
    }
}
