//! Switchboard's channel bridges. Each is a thin client of the gateway's HTTP contract
//! (`protocol`): it starts runs, renders the ledger, and turns a person's reply into a
//! durable `resume` command; it never touches the gateway's store or engine.
//!
//! - [`telegram`]: chat with workflows and answer prompts from Telegram (teloxide).
//! - [`email`]: a run's questions arrive by mail; replies resume it (async-imap, lettre).

pub mod db;
pub mod email;
pub mod keys;
pub mod reconnect;
pub mod telegram;
