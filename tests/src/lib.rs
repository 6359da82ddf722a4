//! Support for the workspace's end-to-end tests (`tests/tests/*.rs`): the real `switchboard`
//! binary started as a process on a temporary data dir, and loopback fakes for what this
//! machine cannot reach: Telegram's Bot API ([`telegram_fake`]) and an OpenAI-compatible
//! LLM ([`llm_fake`], shared with the gateway's own tests); and real parts started for a
//! test: Postfix + Dovecot ([`mail_server`]).

#[path = "../../gateway/tests/common/llm_fake.rs"]
pub mod llm_fake;
pub mod mail_server;
pub mod process;
pub mod telegram_fake;
pub mod tidy;
