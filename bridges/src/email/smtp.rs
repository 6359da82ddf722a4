//! Sends the outbox over SMTP (lettre). A mail is marked sent after the server accepted
//! it; a temporary failure (connection refused, 4xx) is retried with doubling back-off, a
//! permanent one (5xx) or the last attempt marks it failed with the server's words. The
//! loop sleeps until the next mail is due or [`Ctx::outbox`] is notified.
//! It decides nothing about what to send (that is [`super::outbound`] and [`super::inbound`]).

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::state::{OutMail, Queued};
use super::{Ctx, EmailError, Server, Tls};

pub(crate) type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Longest wait between two looks at the outbox.
const IDLE_LOOK: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The SMTP transport for `s`.
pub(crate) fn transport(s: &Server) -> Result<Transport, EmailError> {
    let smtp_err = |e: lettre::transport::smtp::Error| EmailError::Smtp(e.to_string());
    let builder = match s.tls {
        Tls::None => Transport::builder_dangerous(&s.host),
        Tls::StartTls => Transport::starttls_relay(&s.host).map_err(smtp_err)?,
        Tls::Tls => Transport::relay(&s.host).map_err(smtp_err)?,
    };
    let mut builder = builder.port(s.port).timeout(Some(Duration::from_secs(30)));
    if let (Some(user), Some(pass)) = (&s.user, &s.password) {
        builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    Ok(builder.build())
}

fn angle(id: &str) -> String {
    format!("<{}>", id.trim_matches(|c| c == '<' || c == '>'))
}

/// The lettre message for an outbox row.
pub(crate) fn message(from: &str, m: &OutMail) -> Result<Message, String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("bad From `{from}`: {e}"))?;
    let to: Mailbox =
        m.to.parse()
            .map_err(|e| format!("bad recipient `{}`: {e}", m.to))?;
    let mut b = Message::builder()
        .from(from)
        .to(to)
        .subject(m.subject.clone())
        .message_id(Some(angle(&m.message_id)))
        .header(ContentType::TEXT_PLAIN)
        .header(AutoSubmitted);
    if let Some(r) = &m.in_reply_to {
        b = b.in_reply_to(angle(r));
    }
    if !m.references.is_empty() {
        let refs: Vec<String> = m.references.iter().map(|r| angle(r)).collect();
        b = b.references(refs.join(" "));
    }
    b.body(m.body.clone()).map_err(|e| e.to_string())
}

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders do not answer it.
#[derive(Clone)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sends due mail forever.
pub(crate) async fn send_loop(ctx: Arc<Ctx>, transport: Transport) {
    loop {
        let woken = ctx.outbox.notified();
        match ctx.state.due(now_ms(), 50).await {
            Ok(due) => {
                for q in due {
                    send_one(&ctx, &transport, q).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "email outbox unreadable"),
        }
        let wait = match ctx.state.next_due().await {
            Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, 5_000) as u64),
            _ => IDLE_LOOK,
        };
        if wait.is_zero() {
            // Something is due now (sent just failed and is retried later, or more than a
            // batch): look again after a short pause rather than spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let _ = tokio::time::timeout(wait, woken).await;
    }
}

async fn send_one(ctx: &Ctx, transport: &Transport, q: Queued) {
    let msg = match message(&ctx.cfg.from, &q.mail) {
        Ok(m) => m,
        Err(why) => {
            tracing::error!(key = %q.mail.key, %why, "email cannot be built; given up");
            let _ = ctx.state.mark_failed(q.id, why, None).await;
            return;
        }
    };
    match transport.send(msg).await {
        Ok(_) => {
            tracing::info!(to = %q.mail.to, key = %q.mail.key, "email sent");
            if let Err(e) = ctx.state.mark_sent(q.id).await {
                tracing::error!(error = %e, "cannot mark an email sent (it may be sent again)");
            }
        }
        Err(e) => {
            let attempts = q.attempts + 1;
            let give_up = e.is_permanent() || attempts >= ctx.cfg.max_attempts;
            let next = (!give_up).then(|| {
                let backoff = ctx
                    .cfg
                    .retry_base
                    .saturating_mul(1 << attempts.min(20))
                    .min(MAX_BACKOFF);
                now_ms() + backoff.as_millis() as i64
            });
            tracing::warn!(to = %q.mail.to, error = %e, attempts, give_up, "email not sent");
            if let Err(e) = ctx.state.mark_failed(q.id, e.to_string(), next).await {
                tracing::error!(error = %e, "cannot record a failed email");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_threading_headers_and_auto_submitted() {
        let m = OutMail {
            key: "k".into(),
            to: "alice@example.test".into(),
            subject: "approval: ok? [ref sb.1.0123456789abcdef]".into(),
            body: "ok?\n".into(),
            message_id: "sb.1.0123456789abcdef@example.test".into(),
            in_reply_to: Some("orig@client.test".into()),
            references: vec!["orig@client.test".into(), "x@y".into()],
        };
        let msg = message("Switchboard <bot@example.test>", &m).unwrap_or_else(|e| panic!("{e}"));
        let raw = String::from_utf8(msg.formatted()).unwrap_or_default();
        assert!(
            raw.contains("Message-ID: <sb.1.0123456789abcdef@example.test>"),
            "{raw}"
        );
        assert!(raw.contains("In-Reply-To: <orig@client.test>"), "{raw}");
        assert!(
            raw.contains("References: <orig@client.test> <x@y>"),
            "{raw}"
        );
        assert!(raw.contains("Auto-Submitted: auto-generated"), "{raw}");
        assert!(
            message(
                "Switchboard <bot@example.test>",
                &OutMail {
                    to: "not an address".into(),
                    ..m
                }
            )
            .is_err()
        );
    }
}
