//! Outbound HTTP for what flows and webhook subscribers choose: `http` steps and webhook
//! deliveries. Their URLs come from flow authors, run input and API callers, so by default
//! they reach only public addresses: loopback, private, link-local (cloud metadata at
//! 169.254.169.254), shared, multicast, reserved and unspecified destinations are refused.
//!
//! The check is made on the address actually connected to: host names go through a
//! resolver that drops refused addresses (so a name that resolves to a private address at
//! connect time, DNS rebinding included, cannot get through), literal addresses are checked
//! before the request and on every redirect, and proxies from the environment are not used
//! (a proxy would connect on the request's behalf, unchecked). `SWITCHBOARD_HTTP_ALLOW`
//! names hosts and networks that may be reached anyway. Reply bodies are read up to a cap.
//!
//! The LLM client is not built here: its URL is the operator's own configuration.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 10;

/// An entry of `SWITCHBOARD_HTTP_ALLOW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AllowEntry {
    /// A host name (exact, case-insensitive): every address it resolves to is allowed.
    Host(String),
    /// An address or network.
    Net(IpNet),
}

impl AllowEntry {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some(n) = parse_net(s) {
            return Some(Self::Net(n));
        }
        let host = s.trim_end_matches('.').to_ascii_lowercase();
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        ok.then_some(Self::Host(host))
    }
}

/// An address or network: `10.0.0.0/8`, or a single IP as its own /32 (/128).
pub(crate) fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Where flows and webhooks may connect, and how much of a reply they read.
#[derive(Debug, Clone)]
pub(crate) struct NetPolicy {
    pub(crate) allow: Vec<AllowEntry>,
    /// Largest reply body read, in bytes.
    pub(crate) max_body: usize,
    /// The push services Web Push subscriptions may name (`SWITCHBOARD_PUSH_SERVICES`).
    pub(crate) push_services: Vec<String>,
}

/// The push services of Chrome (FCM), Firefox (autopush), Safari and Edge.
pub(crate) const PUSH_SERVICES: &[&str] = &[
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "*.push.apple.com",
    "*.notify.windows.com",
];

impl Default for NetPolicy {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            max_body: 1024 * 1024,
            push_services: PUSH_SERVICES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// A destination the policy refuses. The message names the destination as the request
/// gave it and the setting; for a host name it does not say which address the name
/// resolved to (that would let whoever reads a run's ledger map internal names), the
/// gateway's log does.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "refused to connect to {target} (a {kind} address): flows and webhooks reach only public addresses; to allow it, add it to SWITCHBOARD_HTTP_ALLOW"
)]
pub(crate) struct Refused {
    pub(crate) target: String,
    pub(crate) addr: IpAddr,
    pub(crate) kind: &'static str,
}

/// Why an address is not public, or `None` when it is.
pub(crate) fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() || a >= 240 => "reserved",
        _ if a == 100 && (64..128).contains(&b) => "shared (carrier-grade NAT)",
        _ if a == 198 && (b == 18 || b == 19) => "benchmarking",
        _ if a == 192 && b == 0 && c == 0 => "IETF protocol",
        _ if ip.is_documentation() => "documentation",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0; 4] {
        return non_public_v4(embedded(seg[6], seg[7])); // NAT64
    }
    if seg[0] == 0x2002 {
        return non_public_v4(embedded(seg[1], seg[2])); // 6to4
    }
    if seg[..4] == [0, 0, 0, 0] && seg[4] == 0xffff && seg[5] == 0 {
        return non_public_v4(embedded(seg[6], seg[7])); // SIIT, ::ffff:0:a.b.c.d
    }
    Some(match () {
        _ if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 => "local NAT64",
        _ if seg[0] == 0x2001 && seg[1] == 0 => "Teredo",
        _ if seg[0] == 0x2001 && seg[1] == 2 && seg[2] == 0 => "benchmarking",
        _ if seg[0] == 0x100 && seg[1..4] == [0, 0, 0] => "discard",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_multicast() => "multicast",
        _ if (seg[0] & 0xfe00) == 0xfc00 => "private (unique local)",
        _ if (seg[0] & 0xffc0) == 0xfe80 || (seg[0] & 0xffc0) == 0xfec0 => "link-local",
        _ if seg[0] == 0x2001 && seg[1] == 0x0db8 => "documentation",
        _ if seg[..6] == [0; 6] => "IPv4-compatible",
        _ => return None,
    })
}

impl NetPolicy {
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allow
            .iter()
            .any(|a| matches!(a, AllowEntry::Host(h) if h.eq_ignore_ascii_case(host)))
    }

    /// `Err` when `ip` (reached for `target`) is refused.
    pub(crate) fn check_ip(&self, target: &str, ip: IpAddr) -> Result<(), Refused> {
        let Some(kind) = non_public(ip) else {
            return Ok(());
        };
        let listed = self
            .allow
            .iter()
            .any(|a| matches!(a, AllowEntry::Net(n) if n.contains(&ip)));
        if listed || self.host_allowed(target) {
            return Ok(());
        }
        Err(Refused {
            target: target.to_owned(),
            addr: ip,
            kind,
        })
    }

    /// Checks a URL before a request or a redirect: http(s) only; a literal address must be
    /// allowed (names are checked as they resolve, by the client's resolver).
    pub(crate) fn check_url(&self, url: &url::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{url}` is not an http(s) URL"));
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(format!("`{url}` has no host")),
        };
        self.check_ip(&ip.to_string(), ip)
            .map_err(|e| e.to_string())
    }

    /// A client that connects only where this policy allows: no proxies, and no redirects
    /// of its own (a webhook receiver's 3xx is a failed delivery, so a signed event never
    /// goes elsewhere; `http` steps follow them through [`Outbound::send`]).
    pub(crate) fn client(self: &Arc<Self>) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .dns_resolver(Arc::new(Resolver(self.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .build()
    }

    /// Reads a reply's body, refusing one larger than `max_body` (declared or actual).
    pub(crate) async fn read_body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
        let url = resp.url().to_string();
        let over = |url: &str| {
            format!(
                "the reply from {url} is larger than {} bytes (SWITCHBOARD_HTTP_MAX_BODY)",
                self.max_body
            )
        };
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(over(&url));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the reply from {url} failed: {}", explain(&e)))?
        {
            if body.len() + chunk.len() > self.max_body {
                return Err(over(&url));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A client bound to a policy, for the runner's `http` steps and the webhook sender.
#[derive(Clone)]
pub(crate) struct Outbound {
    pub(crate) client: reqwest::Client,
    pub(crate) policy: Arc<NetPolicy>,
}

impl Outbound {
    pub(crate) fn new(policy: NetPolicy) -> reqwest::Result<Self> {
        let policy = Arc::new(policy);
        Ok(Self {
            client: policy.client()?,
            policy,
        })
    }
}

/// What an `http` step sends.
pub(crate) struct StepRequest<'a> {
    pub(crate) method: reqwest::Method,
    pub(crate) url: url::Url,
    /// Headers the flow set: sent to the URL's own origin only.
    pub(crate) headers: &'a [(String, String)],
    pub(crate) body: Option<&'a serde_json::Value>,
    pub(crate) timeout: Duration,
    pub(crate) idempotency_key: &'a str,
    /// The call's W3C trace context (when traces are on): sent wherever it goes.
    pub(crate) traceparent: Option<&'a str>,
}

impl Outbound {
    /// Sends an `http` step's request, following up to 10 redirects by hand: each
    /// destination is checked like the first, the flow's own headers (API keys…) go only to
    /// the origin the flow named, and a 303 (or a 301/302 after a POST) becomes a GET
    /// without a body.
    pub(crate) async fn send(&self, req: StepRequest<'_>) -> Result<reqwest::Response, String> {
        let origin = req.url.origin();
        let (mut method, mut url, mut body) = (req.method, req.url, req.body);
        for _ in 0..=MAX_REDIRECTS {
            self.policy.check_url(&url)?;
            let mut rb = self
                .client
                .request(method.clone(), url.clone())
                .timeout(req.timeout)
                .header("Idempotency-Key", req.idempotency_key);
            // A flow that sets its own trace context keeps it.
            if let Some(tp) = req.traceparent
                && !req
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
            {
                rb = rb.header("traceparent", tp);
            }
            if url.origin() == origin {
                for (k, v) in req.headers {
                    rb = rb.header(k, v);
                }
            }
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let resp = rb
                .send()
                .await
                .map_err(|e| format!("HTTP request to {url} failed: {}", explain(&e)))?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            let Some(next) = location.filter(|_| resp.status().is_redirection()) else {
                return Ok(resp);
            };
            let next = url
                .join(next)
                .map_err(|e| format!("{url} redirected to `{next}`, which is not a URL: {e}"))?;
            if status == 303 || (matches!(status, 301 | 302) && method == reqwest::Method::POST) {
                method = reqwest::Method::GET;
                body = None;
            }
            url = next;
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

/// The message of a request error, naming a refused destination when that is the cause.
pub(crate) fn explain(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut parts = Vec::new();
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return r.to_string();
        }
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Resolves host names and keeps only the addresses the policy allows.
struct Resolver(Arc<NetPolicy>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| match policy.check_ip(&host, a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        tracing::warn!(host = %host, addr = %r.addr, kind = r.kind, "outbound request refused");
                        refused.get_or_insert(r);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(r)) => Err(Box::new(r) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_local_addresses_are_not_public() {
        for (a, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("224.0.0.1", "multicast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a00:1", "private"),
            ("2002:c0a8:101::1", "private"),
            ("::ffff:0:7f00:1", "loopback"),
            ("64:ff9b:1::1", "local NAT64"),
            ("2001:0:4136:e378::1", "Teredo"),
            ("100::1", "discard"),
        ] {
            assert_eq!(non_public(ip(a)), Some(kind), "{a}");
        }
        for a in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert_eq!(non_public(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn the_allowlist_takes_hosts_and_networks() {
        let p = NetPolicy {
            allow: ["127.0.0.1", "10.0.0.0/8", "Internal.Example"]
                .iter()
                .filter_map(|s| AllowEntry::parse(s))
                .collect(),
            max_body: 10,
            ..Default::default()
        };
        assert!(p.check_ip("127.0.0.1", ip("127.0.0.1")).is_ok());
        assert!(p.check_ip("x", ip("10.9.9.9")).is_ok());
        assert!(p.check_ip("internal.example.", ip("192.168.0.5")).is_ok());
        let e = p.check_ip("evil.test", ip("192.168.0.5")).unwrap_err();
        // The name, not what it resolved to (the log has that).
        let text = e.to_string();
        assert!(text.contains("evil.test") && text.contains("SWITCHBOARD_HTTP_ALLOW"));
        assert!(!text.contains("192.168.0.5"), "{text}");
        assert!(AllowEntry::parse("not a host").is_none());
    }

    #[test]
    fn literal_addresses_in_urls_are_checked() {
        let p = NetPolicy::default();
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(p.check_url(&u("http://169.254.169.254/latest")).is_err());
        assert!(p.check_url(&u("http://[::1]:8080/")).is_err());
        assert!(p.check_url(&u("http://0x7f.1/")).is_err());
        assert!(p.check_url(&u("https://example.com/")).is_ok());
        assert!(p.check_url(&u("file:///etc/passwd")).is_err());
    }
}
