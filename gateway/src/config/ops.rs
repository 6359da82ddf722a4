//! Operations settings: retention (how long ended runs are kept, how often the gateway
//! prunes) and traces (where OTLP spans go). Both are off unless set.

use std::time::Duration;

use clap::Args;

use super::{FileConfig, duration};

#[derive(Debug, Args, Default)]
pub struct OpsArgs {
    /// Delete runs that ended longer ago than this, e.g. `30d` (default: keep every run).
    #[arg(long, env = "SWITCHBOARD_RETENTION")]
    pub(crate) retention: Option<String>,
    /// How often the gateway prunes when `SWITCHBOARD_RETENTION` is set, e.g. `1h`.
    #[arg(long, env = "SWITCHBOARD_RETENTION_INTERVAL")]
    pub(crate) retention_interval: Option<String>,
    /// An OTLP/HTTP collector, e.g. `http://collector:4318`: each run exports a trace.
    #[arg(long, env = "SWITCHBOARD_OTLP_ENDPOINT")]
    pub(crate) otlp_endpoint: Option<String>,
}

/// Validated operations settings.
#[derive(Debug, Clone, Default)]
pub struct OpsConfig {
    /// Runs that ended longer ago than this are pruned (`None`: never).
    pub(crate) retention: Option<Duration>,
    pub(crate) retention_interval: Duration,
    /// The collector's base URL (`/v1/traces` is appended), when traces are on.
    pub(crate) otlp_endpoint: Option<url::Url>,
}

impl OpsArgs {
    pub(super) fn resolve(self, f: &mut FileConfig, problems: &mut Vec<String>) -> OpsConfig {
        let retention = self
            .retention
            .or(f.retention.take())
            .filter(|s| !s.is_empty())
            .map(|s| {
                let d = duration(Some(s), "30d", "SWITCHBOARD_RETENTION", problems);
                if d < crate::retention::MIN_RETENTION {
                    problems.push(format!(
                        "SWITCHBOARD_RETENTION `{}` is under 1h: keep runs for an hour at least (e.g. 30d), or unset it to keep every run",
                        humantime::format_duration(d)
                    ));
                }
                d
            });
        let retention_interval = duration(
            self.retention_interval.or(f.retention_interval.take()),
            "1h",
            "SWITCHBOARD_RETENTION_INTERVAL",
            problems,
        );
        if retention_interval < Duration::from_millis(100) {
            problems.push("SWITCHBOARD_RETENTION_INTERVAL must be at least 100ms".into());
        }
        let otlp_endpoint = self
            .otlp_endpoint
            .or(f.otlp_endpoint.take())
            .filter(|s| !s.is_empty())
            .and_then(|s| match url::Url::parse(&s) {
                // Credentials, a query or a fragment would be logged or broken by the path.
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.username().is_empty()
                        && u.password().is_none()
                        && u.query().is_none()
                        && u.fragment().is_none() =>
                {
                    Some(u)
                }
                _ => {
                    problems.push(format!(
                        "SWITCHBOARD_OTLP_ENDPOINT `{s}` must be an http(s) URL like http://collector:4318, without credentials, query or fragment"
                    ));
                    None
                }
            });
        OpsConfig {
            retention,
            retention_interval,
            otlp_endpoint,
        }
    }
}
