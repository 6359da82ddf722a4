//! `switchboard-tray`: see what waits for you and pause/resume runs from the desktop.
//!
//! A thin client over `protocol`, in three parts:
//! - [`controller`]: pure state (active runs from a snapshot and ledger records) → menu
//!   model, and menu ids → commands. No GUI types; tested without a display.
//! - [`sync`]: the snapshot and the global ledger stream (reconnects with back-off, resumes
//!   from its stored cursor), and command submission.
//! - [`shell`]: the tray-icon/tao/muda shell that draws the model and feeds clicks back.
//!
//! [`connect`] finds the gateway and token (flags, environment, or a saved pairing);
//! [`autostart`] writes or removes the entry that opens the tray at login.

pub mod autostart;
pub mod connect;
pub mod controller;
pub mod shell;
pub mod sync;
