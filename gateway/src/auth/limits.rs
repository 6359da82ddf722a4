//! Request limits: the origin allowlist (glob patterns), a rate limit per client, and a
//! lockout of addresses that keep presenting bad credentials (exponential back-off).
//! In memory: limits reset when the process restarts, which only ever loosens them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};

/// The longest a lockout lasts.
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct LimitConfig {
    /// Glob patterns such as `http://localhost:*`.
    pub allowed_origins: Vec<String>,
    /// Requests per second per client (the burst is twice that).
    pub rate_per_sec: u32,
    /// Bad credentials from one address before it is locked out.
    pub lockout_after: u32,
    /// The first lockout's length; each further failure doubles it.
    pub lockout_base: Duration,
}

struct Failures {
    count: u32,
    until: Option<Instant>,
}

pub struct Limits {
    origins: Vec<glob::Pattern>,
    rate: DefaultKeyedRateLimiter<String>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    cfg: LimitConfig,
}

impl Limits {
    /// Fails with the patterns that are not valid globs.
    pub fn new(cfg: LimitConfig) -> Result<Self, String> {
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
            failures: Mutex::new(HashMap::new()),
            cfg,
        })
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|p| p.matches(origin))
    }

    /// `Err(wait)` when `client` is over its rate.
    pub fn check_rate(&self, client: &str) -> Result<(), Duration> {
        self.rate
            .check_key(&client.to_owned())
            .map_err(|not_until| {
                not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
            })
    }

    /// How long `ip` is still locked out, if it is.
    pub fn locked(&self, ip: IpAddr) -> Option<Duration> {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let until = f.get(&ip)?.until?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// Counts a bad credential; returns the lockout it started, if any.
    pub fn failed(&self, ip: IpAddr) -> Option<Duration> {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() > 100_000 {
            f.retain(|_, v| v.until.is_some_and(|u| u > Instant::now()));
        }
        let e = f.entry(ip).or_insert(Failures {
            count: 0,
            until: None,
        });
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

    pub fn succeeded(&self, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.get(&ip).is_some_and(|e| e.count > 0) {
            f.remove(&ip);
        }
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
    fn lockout_doubles_and_ends_on_success() {
        let l = limits();
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert_eq!((l.failed(ip), l.failed(ip)), (None, None));
        assert_eq!(l.failed(ip), Some(Duration::from_secs(1)));
        assert_eq!(l.failed(ip), Some(Duration::from_secs(2)));
        assert!(l.locked(ip).is_some());
        l.succeeded(ip);
        assert!(l.locked(ip).is_none());
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
