//! The mails the bridge writes: a prompt (subject with the flow and the question, numbered
//! choices, a link to the run in the web app, how to reply), a run's `say` output and its
//! end, and the short answers to replies that came too late or matched no choice. Threading
//! (In-Reply-To, References, "Re:") is decided here too. Pure: no I/O, no clock.

use super::state::{EmailRun, OutMail, Prompt};
use super::token::{self, Token};
use protocol::RunStatus;

/// How mails are addressed and linked.
#[derive(Debug, Clone)]
pub struct Style {
    /// The domain of the bridge's address (right of the `@`), used in Message-IDs.
    pub domain: String,
    /// The gateway's public URL, for links to `/app/runs/<id>`.
    pub public_url: Option<String>,
}

const SUBJECT_MAX: usize = 80;

fn one_line(s: &str, max: usize) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let cut: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

fn re(subject: &str) -> String {
    let s = subject.trim();
    if s.len() >= 3 && s[..3].eq_ignore_ascii_case("re:") {
        s.to_owned()
    } else {
        format!("Re: {s}")
    }
}

/// A random Message-ID for mail that carries no token.
pub fn random_id(domain: &str) -> String {
    use rand::Rng;
    let n: u128 = rand::rng().random();
    format!("sbm.{n:032x}@{domain}")
}

/// The link to a run in the web app, when the public URL is known.
pub fn link(style: &Style, run_id: &str) -> Option<String> {
    let base = style.public_url.as_deref()?.trim_end_matches('/');
    Some(format!("{base}/app/runs/{run_id}"))
}

/// One-click answer links (`/app/answer/<token>?choice=<c>`): each opens a confirmation
/// page in the web app; nothing is recorded until its button is pressed.
pub fn answer_links(style: &Style, token: &str, choices: &[String]) -> Option<String> {
    let base = style.public_url.as_deref()?.trim_end_matches('/');
    let mut text =
        String::from("Or answer with one click (you confirm on the page that opens):\n\n");
    for c in choices {
        let q: String = c
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        text.push_str(&format!("  {c}: {base}/app/answer/{token}?choice={q}\n"));
    }
    Some(text)
}

/// Threads a new mail about `run` under what the bridge sent before (or the mail that
/// started the run).
fn thread(run: &EmailRun) -> (Option<String>, Vec<String>) {
    let mut refs = Vec::new();
    if let Some(t) = &run.thread_id {
        refs.push(t.clone());
    }
    if let Some(last) = &run.last_message_id
        && !refs.contains(last)
    {
        refs.push(last.clone());
    }
    (refs.last().cloned(), refs)
}

fn subject_for(run: &EmailRun, text: &str) -> String {
    match &run.thread_subject {
        Some(s) => re(s),
        None => format!("{}: {}", run.flow, one_line(text, SUBJECT_MAX)),
    }
}

/// The mail that asks `p` (whose token is `t`).
/// A reminder of an unanswered prompt: its mail again with a reminder line on top, its own
/// Message-ID (the reply token stays in the subject and the reply address), in the thread.
pub fn reminder(style: &Style, run: &EmailRun, p: &Prompt, t: &Token, n: u64) -> OutMail {
    let mut mail = prompt(style, run, p, t);
    mail.key = format!("remind:{}:{n}", p.id);
    mail.body = format!(
        "Reminder {n}: this still waits for your answer.\n\n{}",
        mail.body
    );
    mail.subject = format!("Reminder: {}", mail.subject);
    let id = mail
        .message_id
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    mail.message_id = format!("<remind{n}.{id}>");
    mail
}

pub fn prompt(style: &Style, run: &EmailRun, p: &Prompt, t: &Token) -> OutMail {
    let mut body = format!("{}\n\n", p.question.trim());
    if !p.choices.is_empty() {
        body.push_str("Reply with the number or the name of your choice:\n\n");
        for (i, c) in p.choices.iter().enumerate() {
            body.push_str(&format!("  {}. {c}\n", i + 1));
        }
        body.push('\n');
        if p.allow_free_text {
            body.push_str("Or reply with an answer of your own.\n\n");
        }
    }
    body.push_str("Write your answer above the quoted text when you reply.\n");
    if let Some(l) = link(style, &run.run_id) {
        body.push_str(&format!("\nOpen the run in the web app: {l}\n"));
    }
    body.push_str(&footer(run));
    let (in_reply_to, references) = thread(run);
    OutMail {
        key: format!("prompt:{}", p.id),
        to: p.address.clone(),
        subject: format!(
            "{} {}",
            subject_for(run, &p.question),
            token::subject_tag(t)
        ),
        body,
        message_id: token::message_id(t, &style.domain),
        in_reply_to,
        references,
    }
}

fn footer(run: &EmailRun) -> String {
    format!(
        "\n-- \nSwitchboard · {} · run {}\n",
        run.flow,
        short(&run.run_id)
    )
}

pub fn short(run_id: &str) -> &str {
    run_id.get(..8).unwrap_or(run_id)
}

/// A run's message (`say`, or an LLM reply) for runs that mail everything.
pub fn say(style: &Style, run: &EmailRun, key: &str, text: &str) -> OutMail {
    let (in_reply_to, references) = thread(run);
    OutMail {
        key: key.to_owned(),
        to: run.address.clone(),
        subject: subject_for(run, text),
        body: format!("{}\n{}", text.trim(), footer(run)),
        message_id: random_id(&style.domain),
        in_reply_to,
        references,
    }
}

/// A run's end: completed (with its output's text), failed (why) or cancelled.
pub fn ended(
    style: &Style,
    run: &EmailRun,
    status: RunStatus,
    error: Option<&str>,
    output: Option<&str>,
) -> OutMail {
    let text = match (status, error, output) {
        (RunStatus::Failed, Some(e), _) => format!("{} failed: {e}", run.flow),
        (RunStatus::Failed, None, _) => format!("{} failed.", run.flow),
        (RunStatus::Cancelled, ..) => format!("{} was cancelled.", run.flow),
        (_, _, Some(out)) => format!("{} finished.\n\n{out}", run.flow),
        _ => format!("{} finished.", run.flow),
    };
    let mut m = say(
        style,
        run,
        &format!("end:{}:{}", run.run_id, run.address),
        &text,
    );
    if run.thread_subject.is_none() {
        m.subject = format!("{}: {}", run.flow, status.as_str());
    }
    m
}

/// What a reply that is being answered looked like: its id, subject and references.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    pub message_id: String,
    pub from: String,
    pub subject: String,
    pub references: Vec<String>,
}

fn answer_to(style: &Style, to: &Incoming, key: &str, body: String) -> OutMail {
    let mut references = to.references.clone();
    references.push(to.message_id.clone());
    OutMail {
        key: key.to_owned(),
        to: to.from.clone(),
        subject: re(&to.subject),
        body,
        message_id: random_id(&style.domain),
        in_reply_to: Some(to.message_id.clone()),
        references,
    }
}

/// The answer to a reply whose prompt was already answered (by `who`, at `when`).
pub fn stale(style: &Style, to: &Incoming, p: &Prompt, who: &str, when: Option<&str>) -> OutMail {
    let when = when.map(|w| format!(" on {w}")).unwrap_or_default();
    let body = format!(
        "Your reply was not used: \"{}\" was already answered by {who}{when}.\n",
        one_line(&p.question, 200)
    );
    answer_to(style, to, &format!("stale:{}", to.message_id), body)
}

/// The answer to a reply that matched none of the prompt's choices.
pub fn invalid(style: &Style, to: &Incoming, p: &Prompt, given: &str) -> OutMail {
    let mut body = format!(
        "\"{}\" is not one of the answers to \"{}\".\n\nReply with one of:\n\n",
        one_line(given, 100),
        one_line(&p.question, 200)
    );
    for (i, c) in p.choices.iter().enumerate() {
        body.push_str(&format!("  {}. {c}\n", i + 1));
    }
    let mut m = answer_to(style, to, &format!("invalid:{}", to.message_id), body);
    // Keep the prompt's token in the thread so the next reply still finds the prompt.
    if let Some(pid) = &p.message_id
        && !m.references.contains(pid)
    {
        m.references.insert(0, pid.clone());
    }
    m
}

/// The answer to a reply the gateway refused for another reason (the run is gone, say).
pub fn refused(style: &Style, to: &Incoming, why: &str) -> OutMail {
    let body = format!("Your reply could not be used: {why}\n");
    answer_to(style, to, &format!("refused:{}", to.message_id), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style() -> Style {
        Style {
            domain: "example.test".into(),
            public_url: Some("https://sb.example.test/".into()),
        }
    }

    fn run() -> EmailRun {
        EmailRun::new(
            "0123456789abcdef",
            "alice@example.test",
            "approval",
            "asks_only",
        )
    }

    fn prompt() -> Prompt {
        Prompt {
            id: 3,
            run_id: "0123456789abcdef".into(),
            wait_key: "decide".into(),
            address: "alice@example.test".into(),
            question: "Approve or reject: deploy v2".into(),
            choices: vec!["approve".into(), "reject".into()],
            allow_free_text: false,
            message_id: Some("sb.3.00@example.test".into()),
            answered: false,
        }
    }

    fn token() -> Token {
        Token {
            prompt: 3,
            sig: "0123456789abcdef".into(),
        }
    }

    #[test]
    fn a_prompt_mail_has_the_flow_question_choices_link_and_token() {
        let m = prompt_mail();
        assert_eq!(
            m.subject,
            "approval: Approve or reject: deploy v2 [ref sb.3.0123456789abcdef]"
        );
        assert!(m.body.contains("  1. approve\n  2. reject\n"), "{}", m.body);
        assert!(
            m.body
                .contains("https://sb.example.test/app/runs/0123456789abcdef")
        );
        assert!(m.body.contains("above the quoted text"));
        assert_eq!(m.message_id, "sb.3.0123456789abcdef@example.test");
        assert_eq!(m.to, "alice@example.test");
        assert!(m.in_reply_to.is_none());
    }

    fn prompt_mail() -> OutMail {
        super::prompt(&style(), &run(), &prompt(), &token())
    }

    #[test]
    fn a_run_started_by_mail_answers_in_its_thread() {
        let mut r = run();
        r.thread_id = Some("orig@client.test".into());
        r.thread_subject = Some("Deploy v2?".into());
        let m = super::prompt(&style(), &r, &prompt(), &token());
        assert!(
            m.subject.starts_with("Re: Deploy v2? [ref "),
            "{}",
            m.subject
        );
        assert_eq!(m.in_reply_to.as_deref(), Some("orig@client.test"));
        assert_eq!(m.references, vec!["orig@client.test"]);
        r.last_message_id = Some("sbm.1@example.test".into());
        let s = say(&style(), &r, "say:1", "Done.");
        assert_eq!(s.in_reply_to.as_deref(), Some("sbm.1@example.test"));
        assert_eq!(s.references, vec!["orig@client.test", "sbm.1@example.test"]);
    }

    #[test]
    fn answers_to_replies_say_why_and_stay_in_the_thread() {
        let to = Incoming {
            message_id: "reply1@client.test".into(),
            from: "alice@example.test".into(),
            subject: "Re: approval: deploy".into(),
            references: vec!["sb.3.x@example.test".into()],
        };
        let s = stale(
            &style(),
            &to,
            &prompt(),
            "bob via web",
            Some("2026-11-27 10:00 UTC"),
        );
        assert!(
            s.body
                .contains("already answered by bob via web on 2026-11-27 10:00 UTC")
        );
        assert_eq!(s.subject, "Re: approval: deploy");
        assert_eq!(s.in_reply_to.as_deref(), Some("reply1@client.test"));
        let i = invalid(&style(), &to, &prompt(), "maybe");
        assert!(i.body.contains("\"maybe\" is not one of the answers"));
        assert!(i.body.contains("  1. approve\n  2. reject"));
        assert_eq!(i.key, "invalid:reply1@client.test");
    }

    #[test]
    fn run_ends_say_how() {
        let e = ended(&style(), &run(), RunStatus::Failed, Some("boom"), None);
        assert!(e.body.starts_with("approval failed: boom"));
        assert_eq!(e.subject, "approval: failed");
        let e = ended(
            &style(),
            &run(),
            RunStatus::Completed,
            None,
            Some("decision: approve"),
        );
        assert!(
            e.body
                .starts_with("approval finished.\n\ndecision: approve")
        );
        assert_eq!(one_line(&"x".repeat(100), 10).chars().count(), 10);
    }
}
