//! Request limits: the origin allowlist (glob patterns), a rate limit per client, a
//! lockout of addresses that keep presenting bad credentials (exponential back-off), and
//! which peers are trusted proxies (their `X-Forwarded-For` names the client).
//!
//! A lockout throttles failures only: a valid credential is checked first and never
//! refused because of it, since many clients can share one address (the web app's and the
//! bridges' loopback calls, everything behind one reverse proxy or NAT). A success does not
//! clear an address's failures either, or one person's success would wipe out an
//! attacker's count on a shared address; failures are forgotten once the longest lockout
//! has passed without a new one. In memory: limits reset when the process restarts, which
//! only ever loosens them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;

/// The longest a lockout lasts.
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Addresses whose failures are remembered at once; past this the oldest are forgotten.
const MAX_TRACKED: usize = 100_000;
/// The rate limiter forgets idle clients every this many checks.
const SWEEP_EVERY: u64 = 16_384;

/// What a limit counts: an IPv4 address, or the /64 an IPv6 address is in (one host
/// usually holds a whole /64, so single IPv6 addresses would be free to rotate through).
/// IPv4 addresses seen through an IPv6 socket (`::ffff:a.b.c.d`) count as IPv4.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LimitConfig {
    /// Glob patterns such as `http://localhost:*`.
    pub(crate) allowed_origins: Vec<String>,
    /// Requests per second per client (the burst is twice that).
    pub(crate) rate_per_sec: u32,
    /// Bad credentials from one address before it is locked out.
    pub(crate) lockout_after: u32,
    /// The first lockout's length; each further failure doubles it.
    pub(crate) lockout_base: Duration,
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies).
    pub(crate) trusted_proxies: Vec<IpNet>,
}

struct Failures {
    count: u32,
    until: Option<Instant>,
    last: Instant,
}

pub(crate) struct Limits {
    origins: Vec<glob::Pattern>,
    rate: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    cfg: LimitConfig,
}

impl Limits {
    /// Fails with the patterns that are not valid globs.
    pub(crate) fn new(cfg: LimitConfig) -> Result<Self, String> {
        let origins = cfg
            .allowed_origins
            .iter()
            .map(|p| glob::Pattern::new(p).map_err(|e| format!("origin pattern `{p}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let per_sec = NonZeroU32::new(cfg.rate_per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst =
            NonZeroU32::new(cfg.rate_per_sec.max(1).saturating_mul(2)).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            origins,
            rate: governor::RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
            checks: AtomicU64::new(0),
            failures: Mutex::new(HashMap::new()),
            cfg,
        })
    }

    pub(crate) fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|p| p.matches(origin))
    }

    /// `Err(wait)` when `client` is over its rate.
    pub(crate) fn check_rate(&self, client: &str) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.rate.retain_recent();
            self.rate.shrink_to_fit();
        }
        self.rate
            .check_key(&client.to_owned())
            .map_err(|not_until| {
                not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
            })
    }

    /// `Err(wait)` when the address `ip` is over its rate (anonymous calls and failures).
    pub(crate) fn check_address(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_rate(&format!("ip:{}", client_key(ip)))
    }

    /// How long `ip` is still locked out, if it is.
    pub(crate) fn locked(&self, ip: IpAddr) -> Option<Duration> {
        let ip = client_key(ip);
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let until = f.get(&ip)?.until?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// Counts a bad credential; returns the lockout it started, if any.
    pub(crate) fn failed(&self, ip: IpAddr) -> Option<Duration> {
        let ip = client_key(ip);
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() >= MAX_TRACKED && !f.contains_key(&ip) {
            f.retain(|_, v| now.duration_since(v.last) < MAX_LOCKOUT);
            if f.len() >= MAX_TRACKED {
                // A flood of fresh addresses: keep only those locked out now.
                f.retain(|_, v| v.until.is_some_and(|u| u > now));
            }
            if f.len() >= MAX_TRACKED {
                return None;
            }
        }
        let e = f.entry(ip).or_insert(Failures {
            count: 0,
            until: None,
            last: now,
        });
        if now.duration_since(e.last) >= MAX_LOCKOUT {
            e.count = 0;
        }
        e.last = now;
        e.count += 1;
        let over = e.count.checked_sub(self.cfg.lockout_after)?;
        let lock = self
            .cfg
            .lockout_base
            .saturating_mul(1 << over.min(20))
            .min(MAX_LOCKOUT);
        e.until = Some(Instant::now() + lock);
        Some(lock)
    }

    pub(crate) fn trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.cfg.trusted_proxies.iter().any(|n| n.contains(&peer))
    }

    /// The client behind `peer`: when `peer` is a trusted proxy, the right-most address of
    /// `X-Forwarded-For` that is not itself a trusted proxy (addresses further left were
    /// written by the client and prove nothing); otherwise `peer`.
    pub(crate) fn client_behind(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        if !self.trusted_proxy(peer) {
            return peer;
        }
        let hops = forwarded_for
            .iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .rev();
        for hop in hops {
            // A hop may carry a port (`1.2.3.4:5678`, `[2001:db8::1]:443`).
            let parsed = hop
                .parse::<IpAddr>()
                .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()));
            match parsed.map(|ip| ip.to_canonical()) {
                Ok(ip) if self.trusted_proxy(ip) => continue,
                Ok(ip) => return ip,
                // Garbage where an address should be: the proxy chain is not trustworthy
                // from here on, so count the request as the nearest proxy's.
                Err(_) => return peer,
            }
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::new(LimitConfig {
            allowed_origins: vec!["http://localhost:*".into(), "https://*.example.com".into()],
            rate_per_sec: 2,
            lockout_after: 3,
            lockout_base: Duration::from_secs(1),
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        })
        .unwrap()
    }

    #[test]
    fn origins_match_globs() {
        let l = limits();
        assert!(l.origin_allowed("http://localhost:5173"));
        assert!(l.origin_allowed("https://app.example.com"));
        assert!(!l.origin_allowed("https://evil.com"));
        assert!(!l.origin_allowed("http://localhost.evil.com"));
    }

    #[test]
    fn lockout_doubles_per_address() {
        let l = limits();
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert_eq!((l.failed(ip), l.failed(ip)), (None, None));
        assert_eq!(l.failed(ip), Some(Duration::from_secs(1)));
        assert_eq!(l.failed(ip), Some(Duration::from_secs(2)));
        assert!(l.locked(ip).is_some());
        assert!(l.locked([10, 0, 0, 2].into()).is_none());
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let l = limits();
        let proxy: IpAddr = [10, 1, 2, 3].into();
        let outsider: IpAddr = [203, 0, 113, 9].into();
        // An untrusted peer's header is ignored.
        assert_eq!(l.client_behind(outsider, &["198.51.100.1"]), outsider);
        // Through a trusted proxy: the right-most untrusted hop; spoofed hops on the left lose.
        assert_eq!(
            l.client_behind(proxy, &["1.1.1.1, 198.51.100.7", "10.9.9.9"]),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(l.client_behind(proxy, &["junk"]), proxy);
        assert_eq!(l.client_behind(proxy, &[]), proxy);
        // Ports on hops, and IPv4 proxies seen through an IPv6 socket.
        assert_eq!(
            l.client_behind("::ffff:10.1.2.3".parse().unwrap(), &["198.51.100.7:4711"]),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            l.client_behind(proxy, &["[2001:db8::7]:443"]),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let l = limits();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for _ in 0..3 {
            l.failed(a);
        }
        assert!(l.locked(b).is_some(), "the same /64");
        assert!(l.locked("2001:db8:1:3::1".parse().unwrap()).is_none());
        assert_eq!(
            client_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn rate_is_per_client_with_a_burst() {
        let l = limits();
        for _ in 0..4 {
            assert!(l.check_rate("a").is_ok());
        }
        assert!(l.check_rate("a").is_err());
        assert!(l.check_rate("b").is_ok());
    }
}
