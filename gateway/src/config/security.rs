//! Settings that bound what callers and flows can reach or make the gateway hold: trusted
//! proxies, the outbound allowlist of `http` steps and webhooks, reply and payload sizes,
//! and streams per caller. Each has a safe default; a bad value is a start-up problem that
//! says how to write it.

use clap::Args;
use ipnet::IpNet;
use serde::Deserialize;

use crate::net::{AllowEntry, NetPolicy};

#[derive(Debug, Clone, Args, Default)]
pub struct SecurityArgs {
    /// Reverse proxies (IPs or CIDRs, comma-separated) whose `X-Forwarded-For` names the
    /// client; without them every request counts as its peer's.
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES")]
    pub(crate) trusted_proxies: Option<String>,
    /// Private or local destinations `http` steps and webhooks may reach anyway (hosts,
    /// IPs or CIDRs, comma-separated). Public addresses need no entry.
    #[arg(long, env = "SWITCHBOARD_HTTP_ALLOW")]
    pub(crate) http_allow: Option<String>,
    /// Push services browsers' subscriptions may name (comma-separated host names, `*.` for
    /// subdomains; `http://<host>` allows plain http to it). Default: the services of
    /// Chrome, Firefox, Safari and Edge.
    #[arg(long, env = "SWITCHBOARD_PUSH_SERVICES")]
    pub(crate) push_services: Option<String>,
    /// The contact push services see in each notification's VAPID token (`mailto:` or
    /// `https:`; default: the public URL when it is https).
    #[arg(long, env = "SWITCHBOARD_PUSH_CONTACT")]
    pub(crate) push_contact: Option<String>,
    /// Largest reply body an `http` step reads, in bytes (default 1 MiB).
    #[arg(long, env = "SWITCHBOARD_HTTP_MAX_BODY")]
    pub(crate) http_max_body: Option<usize>,
    /// Event streams one caller may hold open at once (default 64).
    #[arg(long, env = "SWITCHBOARD_MAX_STREAMS")]
    pub(crate) max_streams: Option<usize>,
    /// Largest answer or event payload a command may carry, in bytes (default 64 KiB).
    #[arg(long, env = "SWITCHBOARD_MAX_PAYLOAD")]
    pub(crate) max_payload: Option<usize>,
}

/// The same keys in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSecurity {
    pub(crate) trusted_proxies: Option<String>,
    pub(crate) http_allow: Option<String>,
    pub(crate) push_services: Option<String>,
    pub(crate) push_contact: Option<String>,
    pub(crate) http_max_body: Option<usize>,
    pub(crate) max_streams: Option<usize>,
    pub(crate) max_payload: Option<usize>,
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) net: NetPolicy,
    pub(crate) max_streams: usize,
    pub(crate) max_payload: usize,
    pub(crate) push_contact: Option<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            net: NetPolicy::default(),
            max_streams: 64,
            max_payload: 64 * 1024,
            push_contact: None,
        }
    }
}

fn list(s: Option<String>) -> Vec<String> {
    s.unwrap_or_default()
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

impl SecurityArgs {
    pub(crate) fn resolve(self, f: FileSecurity, problems: &mut Vec<String>) -> SecurityConfig {
        let d = SecurityConfig::default();
        let mut trusted_proxies = Vec::new();
        for p in list(self.trusted_proxies.or(f.trusted_proxies)) {
            match crate::net::parse_net(&p) {
                Some(n) => trusted_proxies.push(n),
                None => problems.push(format!(
                    "SWITCHBOARD_TRUSTED_PROXIES: `{p}` is not an IP address or CIDR (e.g. 10.0.0.0/8)"
                )),
            }
        }
        let mut allow = Vec::new();
        for a in list(self.http_allow.or(f.http_allow)) {
            match AllowEntry::parse(&a) {
                Some(e) => allow.push(e),
                None => problems.push(format!(
                    "SWITCHBOARD_HTTP_ALLOW: `{a}` is not a host name, IP address or CIDR"
                )),
            }
        }
        let push_services = match list(self.push_services.or(f.push_services)) {
            l if l.is_empty() => d.net.push_services.clone(),
            l => l,
        };
        for s in &push_services {
            let host = s.strip_prefix("http://").unwrap_or(s);
            let host = host.strip_prefix("*.").unwrap_or(host);
            if AllowEntry::parse(host).is_none() || host.contains('/') {
                problems.push(format!(
                    "SWITCHBOARD_PUSH_SERVICES: `{s}` is not a host name (`push.example.com`, `*.example.com` or `http://127.0.0.1`)"
                ));
            }
        }
        let push_contact = self.push_contact.or(f.push_contact);
        if let Some(c) = &push_contact
            && !(c.starts_with("mailto:") && c.contains('@') || c.starts_with("https://"))
        {
            problems.push(format!(
                "SWITCHBOARD_PUSH_CONTACT: `{c}` must be a `mailto:` address or an `https://` URL"
            ));
        }
        let max_body = self
            .http_max_body
            .or(f.http_max_body)
            .unwrap_or(d.net.max_body);
        let max_streams = self.max_streams.or(f.max_streams).unwrap_or(d.max_streams);
        let max_payload = self.max_payload.or(f.max_payload).unwrap_or(d.max_payload);
        for (v, name) in [
            (max_body, "SWITCHBOARD_HTTP_MAX_BODY"),
            (max_streams, "SWITCHBOARD_MAX_STREAMS"),
            (max_payload, "SWITCHBOARD_MAX_PAYLOAD"),
        ] {
            if v == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        SecurityConfig {
            trusted_proxies,
            net: NetPolicy {
                allow,
                max_body,
                push_services,
            },
            max_streams,
            max_payload,
            push_contact,
        }
    }
}
