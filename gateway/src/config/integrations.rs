//! Triggers, webhooks and the OpenAI surface: their flags and environment over the file.

use super::{FileConfig, ServeArgs, duration};

/// Triggers, webhooks and the OpenAI surface (flags/environment over the file).
pub(super) struct Integrations {
    pub(super) triggers: crate::triggers::TriggerConfig,
    pub(super) webhook_retry: crate::webhooks::RetryPolicy,
    pub(super) openai_timeout: std::time::Duration,
}

pub(super) fn resolve(
    args: &mut ServeArgs,
    f: &mut FileConfig,
    problems: &mut Vec<String>,
) -> Integrations {
    let mut defs = std::collections::BTreeMap::new();
    for (name, t) in std::mem::take(&mut f.triggers) {
        defs.insert(
            name,
            crate::triggers::TriggerDef {
                flow: t.flow,
                secret: t.secret,
            },
        );
    }
    for pair in args
        .triggers
        .take()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some((name, flow)) if !name.trim().is_empty() && !flow.trim().is_empty() => {
                defs.entry(name.trim().to_owned())
                    .or_insert_with(Default::default)
                    .flow = Some(flow.trim().to_owned());
            }
            _ => problems.push(format!(
                "SWITCHBOARD_TRIGGERS: `{pair}` must be `name=flow`"
            )),
        }
    }
    let window = duration(
        args.trigger_window.take().or(f.trigger_window.take()),
        "5m",
        "SWITCHBOARD_TRIGGER_WINDOW",
        problems,
    );
    let base = duration(
        args.webhook_retry_base
            .take()
            .or(f.webhook_retry_base.take()),
        "2s",
        "SWITCHBOARD_WEBHOOK_RETRY_BASE",
        problems,
    );
    let max_attempts = args
        .webhook_max_attempts
        .or(f.webhook_max_attempts)
        .unwrap_or(10);
    if max_attempts == 0 {
        problems.push("SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS must be at least 1".into());
    }
    let openai_timeout = duration(
        args.openai_timeout.take().or(f.openai_timeout.take()),
        "5m",
        "SWITCHBOARD_OPENAI_TIMEOUT",
        problems,
    );
    Integrations {
        triggers: crate::triggers::TriggerConfig {
            defs,
            env_secrets: crate::triggers::TriggerConfig::secrets_from_env(std::env::vars()),
            window,
        },
        webhook_retry: crate::webhooks::RetryPolicy {
            base,
            max_attempts,
            ..Default::default()
        },
        openai_timeout,
    }
}
