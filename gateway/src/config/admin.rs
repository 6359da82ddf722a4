//! The administration subcommands of the CLI (pairing, devices, keys, the admin token,
//! people and groups); `admin_cli` runs them over the HTTP API.

use clap::Subcommand;

use super::ClientArgs;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Mint a one-time pairing code for a new device.
    Pair {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List paired devices, or revoke one.
    Devices {
        #[command(flatten)]
        client: ClientArgs,
        /// Revoke this device id.
        #[arg(long)]
        revoke: Option<String>,
    },
    /// List scoped API keys, create one (`--create NAME --scope read,run`), or revoke one.
    Keys {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        create: Option<String>,
        /// Comma-separated: read, run, command, channel, admin.
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        #[arg(long)]
        revoke: Option<String>,
    },
    /// The admin token.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// People: one name over channel identities, so a quorum counts people.
    People {
        #[command(subcommand)]
        action: PeopleAction,
    },
    /// Groups of approvers (`group:NAME` in a prompt's `approvers`).
    Groups {
        #[command(subcommand)]
        action: GroupsAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Replace the admin token (the old one stops working at once).
    Rotate {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PeopleAction {
    /// List people and their identities.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Link identities to NAME (`people add alice --telegram 111 --email alice@example.com
    /// --device "web: alices-phone" --key ci`).
    Add {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
        #[arg(long)]
        telegram: Vec<String>,
        #[arg(long)]
        email: Vec<String>,
        #[arg(long)]
        device: Vec<String>,
        #[arg(long)]
        key: Vec<String>,
    },
    /// Forget NAME (all their identities).
    Remove {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupsAction {
    /// List groups and their members.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add MEMBERS (`person:alice`, `key:ci`, `telegram:111`…) to NAME.
    Add {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
        members: Vec<String>,
    },
    /// Forget NAME.
    Remove {
        #[command(flatten)]
        client: ClientArgs,
        name: String,
    },
}

impl AdminCommand {
    /// The gateway the command talks to.
    pub fn client(&self) -> &ClientArgs {
        match self {
            Self::Pair { client }
            | Self::Devices { client, .. }
            | Self::Keys { client, .. }
            | Self::Token {
                action: TokenAction::Rotate { client },
            }
            | Self::People {
                action:
                    PeopleAction::List { client }
                    | PeopleAction::Add { client, .. }
                    | PeopleAction::Remove { client, .. },
            }
            | Self::Groups {
                action:
                    GroupsAction::List { client }
                    | GroupsAction::Add { client, .. }
                    | GroupsAction::Remove { client, .. },
            } => client,
        }
    }
}
