//! The tray's brain, with no GUI types: the state of the gateway's active runs, built from a
//! snapshot (`GET /runs`) and the ledger records that follow; the menu model that state
//! shows; and what a click on a menu item asks of the gateway. Pure and deterministic (the
//! clock and the command ids are passed in), so it is tested without a display.

use std::collections::BTreeMap;

use protocol::{Command, CommandRequest, LedgerRecord, RecordStatus, RunStatus, RunSummary};
use serde_json::json;

/// A question a run waits on.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub wait_key: String,
    pub text: String,
    pub choices: Vec<String>,
    /// It names approvers: shown only when this device's person is one of them.
    pub team: bool,
}

/// An active run as the tray shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub run_id: String,
    pub flow: String,
    /// Running, waiting or paused (terminal runs leave the menu).
    pub status: RunStatus,
    pub prompt: Option<Prompt>,
}

/// Which icon the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icon {
    Idle,
    /// Something waits for the person.
    Attention,
    /// The gateway is unreachable.
    Offline,
}

/// One menu entry; `children` make it a submenu.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub label: String,
    pub enabled: bool,
    /// Drawn as a submenu (holding `children`, possibly none).
    pub submenu: bool,
    pub children: Vec<Item>,
}

impl Item {
    fn action(id: impl Into<String>, label: impl Into<String>, enabled: bool) -> Self {
        Self {
            id: id.into(),
            label: label.into(),
            enabled,
            submenu: false,
            children: Vec::new(),
        }
    }

    fn text(label: impl Into<String>) -> Self {
        Self::action("", label, false)
    }

    fn submenu(label: impl Into<String>, children: Vec<Item>) -> Self {
        Self {
            id: String::new(),
            label: label.into(),
            enabled: !children.is_empty(),
            submenu: true,
            children,
        }
    }

    /// A separator line.
    pub fn separator() -> Self {
        Self::action("-", "", false)
    }

    pub fn is_separator(&self) -> bool {
        self.id == "-"
    }
}

/// What the menu shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Menu {
    pub icon: Icon,
    pub tooltip: String,
    pub items: Vec<Item>,
}

impl Menu {
    /// The first item (at any depth) labelled `label`.
    pub fn find(&self, label: &str) -> Option<&Item> {
        fn walk<'a>(items: &'a [Item], label: &str) -> Option<&'a Item> {
            items.iter().find_map(|i| {
                if i.label == label {
                    Some(i)
                } else {
                    walk(&i.children, label)
                }
            })
        }
        walk(&self.items, label)
    }
}

/// What a click asks for.
#[derive(Debug, Clone)]
pub enum Action {
    /// Durable commands to submit, in order.
    Commands(Vec<CommandRequest>),
    /// A URL to open in the browser.
    Open(String),
    /// Turn "open at login" on (`true`) or off.
    Autostart(bool),
    Quit,
}

/// A desktop notification to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub title: String,
    pub body: String,
}

/// Prompts older than this when their record arrives are not notified (catch-up after a
/// restart must not flood the desktop).
const NOTIFY_WITHIN_SECS: i64 = 120;

/// The tray's state.
#[derive(Debug, Clone, Default)]
pub struct Controller {
    runs: BTreeMap<String, RunView>,
    /// Runs whose prompt with approvers this device may answer (from the gateway).
    mine: std::collections::HashSet<String>,
    connected: bool,
    /// The gateway's base URL (for the web app's links).
    gateway: String,
    /// `client_id` of the commands this tray sends.
    client_id: String,
    /// The tray opens at login (its autostart entry is there).
    autostart: bool,
}

fn short(run_id: &str) -> &str {
    run_id.get(..8).unwrap_or(run_id)
}

impl Controller {
    pub fn new(gateway: &str, client_id: &str) -> Self {
        Self {
            gateway: gateway.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            ..Self::default()
        }
    }

    /// Whether the tray opens at login, as the shell found or made it.
    pub fn set_autostart(&mut self, on: bool) {
        self.autostart = on;
    }

    pub fn runs(&self) -> impl Iterator<Item = &RunView> {
        self.runs.values()
    }

    pub fn run(&self, run_id: &str) -> Option<&RunView> {
        self.runs.get(run_id)
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn set_connected(&mut self, connected: bool) {
        self.connected = connected;
    }

    /// The runs whose prompt with approvers this device may answer.
    pub fn set_mine(&mut self, mine: std::collections::HashSet<String>) {
        self.mine = mine;
    }

    /// Whether `run` asks something of this device's person.
    fn asks_me(&self, run: &RunView) -> bool {
        run.prompt
            .as_ref()
            .is_some_and(|p| !p.team || self.mine.contains(&run.run_id))
    }

    /// Replaces the state with a snapshot of the active runs.
    pub fn load(&mut self, active: &[RunSummary]) {
        self.runs.clear();
        for r in active.iter().filter(|r| !r.status.is_terminal()) {
            let prompt = r
                .waiting
                .as_ref()
                .filter(|w| w.is_for_a_person())
                .map(|w| Prompt {
                    wait_key: w.wait_key.clone(),
                    text: w.prompt.clone().unwrap_or_default(),
                    choices: w.choices.clone(),
                    team: !w.approvers.is_empty(),
                });
            let view = RunView {
                run_id: r.run_id.clone(),
                flow: r.bundle_id.clone(),
                status: r.status,
                prompt,
            };
            self.runs.insert(r.run_id.clone(), view);
        }
        self.connected = true;
    }

    /// Applies one ledger record; returns the notification it calls for. `now` is unix
    /// seconds.
    pub fn apply(&mut self, r: &LedgerRecord, now: i64) -> Option<Notice> {
        let id = &r.run_id;
        match (r.status, r.effect_kind()) {
            (_, "run_started") => {
                let flow = r.effect_payload()["bundle_id"]
                    .as_str()
                    .unwrap_or("run")
                    .to_owned();
                self.runs.entry(id.clone()).or_insert(RunView {
                    run_id: id.clone(),
                    flow,
                    status: RunStatus::Running,
                    prompt: None,
                });
                None
            }
            _ if r.run_end().is_some() => {
                self.runs.remove(id);
                None
            }
            (RecordStatus::Waiting, "ask") => self.asked(r, now),
            (RecordStatus::Waiting, _) => {
                self.set_status(id, RunStatus::Waiting);
                None
            }
            (RecordStatus::Completed, "pause") => {
                self.set_status(id, RunStatus::Paused);
                None
            }
            (RecordStatus::Completed, "resume") => {
                self.set_status(id, RunStatus::Running);
                None
            }
            (RecordStatus::Completed, "")
                if r.result
                    .as_ref()
                    .is_some_and(|v| v.get("response").is_some()) =>
            {
                if let Some(run) = self.runs.get_mut(id)
                    && run.prompt.as_ref().is_some_and(|p| p.wait_key == r.step_id)
                {
                    run.prompt = None;
                    run.status = RunStatus::Running;
                }
                None
            }
            _ => None,
        }
    }

    fn set_status(&mut self, run_id: &str, status: RunStatus) {
        if let Some(run) = self.runs.get_mut(run_id) {
            run.status = status;
        }
    }

    fn asked(&mut self, r: &LedgerRecord, now: i64) -> Option<Notice> {
        let q = r.question()?;
        let team = r.effect_payload()["approvers"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        let prompt = Prompt {
            wait_key: q.wait_key,
            text: q.prompt.unwrap_or_else(|| "A question".into()),
            choices: q.choices,
            team,
        };
        let run = self.runs.entry(r.run_id.clone()).or_insert(RunView {
            run_id: r.run_id.clone(),
            flow: "run".into(),
            status: RunStatus::Waiting,
            prompt: None,
        });
        run.status = RunStatus::Waiting;
        run.prompt = Some(prompt.clone());
        let fresh = chrono::DateTime::parse_from_rfc3339(&r.started_at)
            .map(|t| now - t.timestamp() <= NOTIFY_WITHIN_SECS)
            .unwrap_or(false)
            && (!team || self.mine.contains(&r.run_id));
        fresh.then(|| Notice {
            title: format!("{} is waiting for you", run.flow),
            body: prompt.text,
        })
    }

    /// Runs waiting on a person, and the others.
    fn counts(&self) -> (usize, usize, usize) {
        let waiting = self.runs.values().filter(|r| self.asks_me(r)).count();
        let paused = self
            .runs
            .values()
            .filter(|r| !self.asks_me(r) && r.status == RunStatus::Paused)
            .count();
        (self.runs.len() - waiting - paused, waiting, paused)
    }

    /// The top line: "2 running · 1 waiting", or that the gateway is unreachable.
    pub fn summary(&self) -> String {
        if !self.connected {
            return "Gateway unreachable (retrying)".into();
        }
        let (running, waiting, paused) = self.counts();
        let mut s = format!("{running} running · {waiting} waiting");
        if paused > 0 {
            s.push_str(&format!(" · {paused} paused"));
        }
        s
    }

    /// The menu for the current state.
    pub fn menu(&self) -> Menu {
        let (_, waiting, _) = self.counts();
        let icon = match (self.connected, waiting) {
            (false, _) => Icon::Offline,
            (true, 0) => Icon::Idle,
            (true, _) => Icon::Attention,
        };
        let mut items = vec![Item::text(self.summary()), Item::separator()];
        items.push(Item::text("Waiting for you"));
        let prompts: Vec<&RunView> = self.runs.values().filter(|r| self.asks_me(r)).collect();
        if prompts.is_empty() {
            items.push(Item::text("  Nothing waits for you"));
        }
        for run in prompts {
            items.push(prompt_entry(run));
        }
        items.push(Item::separator());
        let runs: Vec<Item> = self.runs.values().map(run_entry).collect();
        items.push(Item::submenu(format!("Runs ({})", runs.len()), runs));
        let any_running = self.runs.values().any(|r| r.status != RunStatus::Paused);
        let any_paused = self.runs.values().any(|r| r.status == RunStatus::Paused);
        items.push(Item::action("pause_all", "Pause all", any_running));
        items.push(Item::action("resume_all", "Resume all", any_paused));
        items.push(Item::separator());
        items.push(Item::action("open_app", "Open web app", true));
        let login = if self.autostart {
            "✓ Open at login"
        } else {
            "Open at login"
        };
        items.push(Item::action("autostart", login, true));
        items.push(Item::action("quit", "Quit", true));
        Menu {
            icon,
            tooltip: format!("Switchboard: {}", self.summary()),
            items,
        }
    }

    /// What a click on the item `id` asks for; `command_id` names the command(s) it sends
    /// (one click, one intent: a fresh id each click).
    pub fn click(&self, id: &str, command_id: &str) -> Option<Action> {
        let mut parts = id.splitn(4, '|');
        let verb = parts.next()?;
        match verb {
            "quit" => Some(Action::Quit),
            "autostart" => Some(Action::Autostart(!self.autostart)),
            "open_app" => Some(Action::Open(format!("{}/app", self.gateway))),
            "open" => {
                let run = parts.next()?;
                Some(Action::Open(format!("{}/app/runs/{run}", self.gateway)))
            }
            "answer" => {
                let idx: usize = parts.next()?.parse().ok()?;
                let run = self.runs.get(parts.next()?)?;
                let wait_key = parts.next()?;
                let prompt = run.prompt.as_ref().filter(|p| p.wait_key == wait_key)?;
                let answer = Command::Answer {
                    wait_key: wait_key.to_owned(),
                    response: json!(prompt.choices.get(idx)?),
                };
                Some(self.commands(vec![(run.run_id.as_str(), answer)], command_id))
            }
            "pause" | "resume" | "cancel" => {
                let run = self.runs.get(parts.next()?)?;
                let command = match verb {
                    "pause" => Command::Pause,
                    "resume" => Command::Unpause,
                    _ => Command::Cancel,
                };
                Some(self.commands(vec![(run.run_id.as_str(), command)], command_id))
            }
            "pause_all" | "resume_all" => {
                let (want, command) = match verb {
                    "pause_all" => (false, Command::Pause),
                    _ => (true, Command::Unpause),
                };
                let targets: Vec<_> = self
                    .runs
                    .values()
                    .filter(|r| (r.status == RunStatus::Paused) == want)
                    .map(|r| (r.run_id.as_str(), command.clone()))
                    .collect();
                (!targets.is_empty()).then(|| self.commands(targets, command_id))
            }
            _ => None,
        }
    }

    fn commands(&self, targets: Vec<(&str, Command)>, command_id: &str) -> Action {
        let many = targets.len() > 1;
        Action::Commands(
            targets
                .into_iter()
                .enumerate()
                .map(|(i, (run, command))| {
                    let id = if many {
                        format!("{command_id}.{i}")
                    } else {
                        command_id.to_owned()
                    };
                    CommandRequest::new(id, run, &command)
                        .from_client(Some(&self.client_id), "tray")
                })
                .collect(),
        )
    }
}

fn prompt_entry(run: &RunView) -> Item {
    let Some(p) = &run.prompt else {
        return Item::text(&run.flow);
    };
    let mut children: Vec<Item> = p
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let id = format!("answer|{i}|{}|{}", run.run_id, p.wait_key);
            Item::action(id, c, true)
        })
        .collect();
    if !children.is_empty() {
        children.push(Item::separator());
    }
    children.push(Item::action(format!("open|{}", run.run_id), "Open…", true));
    let text: String = p.text.chars().take(60).collect();
    Item::submenu(format!("{}: {text}", run.flow), children)
}

fn run_entry(run: &RunView) -> Item {
    let id = &run.run_id;
    let paused = run.status == RunStatus::Paused;
    Item::submenu(
        format!("{} ({}) · {}", run.flow, short(id), run.status.as_str()),
        vec![
            Item::action(format!("pause|{id}"), "Pause", !paused),
            Item::action(format!("resume|{id}"), "Resume", paused),
            Item::action(format!("cancel|{id}"), "Cancel", true),
            Item::separator(),
            Item::action(format!("open|{id}"), "Open…", true),
        ],
    )
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
