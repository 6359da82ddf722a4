//! Schedules, the pure part: reading a schedule request (every problem named by its field)
//! and planning fire times: intervals, 5-field cron in an IANA time zone (DST-correct),
//! fixed-rate or fixed-delay, repeat limits, and the catch-up policy after downtime (fire
//! once for everything missed, never a burst). No clock, no I/O: callers pass `now`.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The shortest interval accepted: a schedule cannot turn the gateway into a busy loop.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// Due times follow the plan, whatever the runs take (no drift).
    FixedRate,
    /// The next firing is `interval` after the previous child run ended.
    FixedDelay,
}

/// A schedule as stored (JSON) and planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Spec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timezone: Option<String>,
    pub(crate) mode: Mode,
    pub(crate) start_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) repeat_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) repeat_until: Option<DateTime<Utc>>,
}

/// What a caller may change with `update_schedule`, and the fields of `runs/schedule`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Timing {
    #[serde(default)]
    pub(crate) start_at: Option<String>,
    #[serde(default)]
    pub(crate) interval: Option<String>,
    #[serde(default)]
    pub(crate) cron: Option<String>,
    #[serde(default)]
    pub(crate) timezone: Option<String>,
    #[serde(default)]
    pub(crate) repeat_count: Option<i64>,
    #[serde(default)]
    pub(crate) repeat_until: Option<String>,
    #[serde(default)]
    pub(crate) mode: Option<String>,
}

/// `field: what is wrong`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub(crate) struct SpecError {
    pub(crate) field: &'static str,
    pub(crate) message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> SpecError {
    SpecError {
        field,
        message: message.into(),
    }
}

fn time(field: &'static str, s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, SpecError> {
    if s == "now" {
        return Ok(now);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            bad(
                field,
                format!("`{s}` is not \"now\" or an ISO 8601 time like 2026-01-31T09:00:00Z ({e})"),
            )
        })
}

/// Parses an interval like `30s`, `15m`, `1h`, `2d`.
pub(crate) fn interval(s: &str) -> Result<Duration, SpecError> {
    let d = humantime::parse_duration(s.trim()).map_err(|_| {
        bad(
            "interval",
            format!("`{s}` is not a duration like 30s, 15m, 1h or 2d"),
        )
    })?;
    if d < MIN_INTERVAL {
        return Err(bad(
            "interval",
            format!(
                "`{s}` is shorter than the minimum of {} s",
                MIN_INTERVAL.as_secs()
            ),
        ));
    }
    Ok(d)
}

/// Parses a 5-field cron expression (minute hour day-of-month month day-of-week).
pub(crate) fn cron(s: &str) -> Result<croner::Cron, SpecError> {
    let n = s.split_whitespace().count();
    if n != 5 {
        return Err(bad(
            "cron",
            format!("`{s}` has {n} fields; use 5: minute hour day-of-month month day-of-week"),
        ));
    }
    croner::Cron::from_str(s)
        .map_err(|e| bad("cron", format!("`{s}` is not a valid cron expression: {e}")))
}

pub(crate) fn timezone(s: &str) -> Result<Tz, SpecError> {
    Tz::from_str(s).map_err(|_| {
        bad(
            "timezone",
            format!("`{s}` is not an IANA time zone (e.g. Europe/Paris, America/New_York)"),
        )
    })
}

impl Timing {
    /// Checks a whole schedule request into a [`Spec`].
    pub(crate) fn into_spec(self, now: DateTime<Utc>) -> Result<Spec, SpecError> {
        let (interval_ms, cron_expr) = match (&self.interval, &self.cron) {
            (Some(_), Some(_)) => return Err(bad("cron", "give `interval` or `cron`, not both")),
            (None, None) => {
                return Err(bad(
                    "interval",
                    "give `interval` (e.g. \"15m\") or `cron` (e.g. \"0 9 * * *\")",
                ));
            }
            (Some(i), None) => (Some(interval(i)?.as_millis() as u64), None),
            (None, Some(c)) => {
                cron(c)?;
                (None, Some(c.trim().to_owned()))
            }
        };
        if let Some(tz) = &self.timezone {
            if cron_expr.is_none() {
                return Err(bad(
                    "timezone",
                    "a time zone applies to `cron` schedules only",
                ));
            }
            timezone(tz)?;
        }
        let mode = match self.mode.as_deref() {
            None if cron_expr.is_some() => Mode::FixedRate,
            None => Mode::FixedDelay,
            Some("fixed_rate" | "fixed-rate") => Mode::FixedRate,
            Some("fixed_delay" | "fixed-delay") => Mode::FixedDelay,
            Some(m) => {
                return Err(bad(
                    "mode",
                    format!("`{m}` must be fixed_rate or fixed_delay"),
                ));
            }
        };
        let start_at = time("start_at", self.start_at.as_deref().unwrap_or("now"), now)?;
        let repeat_count = match self.repeat_count {
            None => None,
            Some(n) if n < 1 => {
                return Err(bad(
                    "repeat_count",
                    "must be at least 1 (leave it out to repeat without a count)",
                ));
            }
            Some(n) => Some(u32::try_from(n).map_err(|_| bad("repeat_count", "is too large"))?),
        };
        let repeat_until = self
            .repeat_until
            .as_deref()
            .map(|s| time("repeat_until", s, now))
            .transpose()?;
        if repeat_until.is_some_and(|u| u <= start_at) {
            return Err(bad("repeat_until", "must be after start_at"));
        }
        Ok(Spec {
            interval_ms,
            cron: cron_expr,
            timezone: self.timezone,
            mode,
            start_at,
            repeat_count,
            repeat_until,
        })
    }
}

impl Spec {
    fn tz(&self) -> Tz {
        self.timezone
            .as_deref()
            .and_then(|t| Tz::from_str(t).ok())
            .unwrap_or(Tz::UTC)
    }

    /// The first occurrence at or after `t` (after `t` when not `inclusive`).
    fn occurrence(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        match (&self.cron, self.interval_ms) {
            (Some(c), _) => {
                let cron = cron(c).ok()?;
                let local = t.with_timezone(&self.tz());
                cron.find_next_occurrence(&local, inclusive)
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            }
            (None, Some(ms)) => {
                let step = chrono::Duration::milliseconds(ms as i64);
                Some(if inclusive { t } else { t + step })
            }
            (None, None) => None,
        }
    }

    fn within(&self, t: DateTime<Utc>, fired: u32) -> Option<DateTime<Utc>> {
        if self.repeat_count.is_some_and(|n| fired >= n) || self.repeat_until.is_some_and(|u| t > u)
        {
            return None;
        }
        Some(t)
    }

    /// When the first firing is due.
    pub(crate) fn first(&self) -> Option<DateTime<Utc>> {
        self.within(self.occurrence(self.start_at, true)?, 0)
    }

    /// After the firing due at `due` (the `fired`-th), when the next is due; `None` when the
    /// schedule is done, or (fixed-delay) when it waits for the child run to end. Firings
    /// missed while the gateway was down are not replayed: the next one is in the future.
    pub(crate) fn after_fire(
        &self,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        fired: u32,
    ) -> Option<DateTime<Utc>> {
        if self.mode == Mode::FixedDelay {
            return None;
        }
        let mut next = self.occurrence(due, false)?;
        if next <= now {
            next = match self.interval_ms {
                Some(ms) if self.cron.is_none() => {
                    let step = ms as i64;
                    let behind = (now - due).num_milliseconds();
                    due + chrono::Duration::milliseconds((behind / step + 1) * step)
                }
                _ => self.occurrence(now, false)?,
            };
        }
        self.within(next, fired)
    }

    /// Fixed-delay: when the next firing is due after the child run ended at `ended`.
    pub(crate) fn after_child(&self, ended: DateTime<Utc>, fired: u32) -> Option<DateTime<Utc>> {
        self.within(self.occurrence(ended, false)?, fired)
    }

    /// Whether more firings may follow the `fired`-th.
    pub(crate) fn more_after(&self, fired: u32) -> bool {
        self.repeat_count.is_none_or(|n| fired < n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn timing(json: serde_json::Value) -> Timing {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn interval_times_repeat_count() {
        let now = at("2026-03-01T00:00:00Z");
        let s =
            timing(serde_json::json!({"interval": "1h", "repeat_count": 3, "mode": "fixed_rate"}))
                .into_spec(now)
                .unwrap();
        let t1 = s.first().unwrap();
        assert_eq!(t1, now);
        let t2 = s.after_fire(t1, t1, 1).unwrap();
        let t3 = s.after_fire(t2, t2, 2).unwrap();
        assert_eq!((t2 - t1).num_hours(), 1);
        assert_eq!((t3 - t2).num_hours(), 1);
        assert_eq!(s.after_fire(t3, t3, 3), None, "three firings, then done");
    }

    #[test]
    fn repeat_until_ends_the_schedule() {
        let now = at("2026-03-01T00:00:00Z");
        let s = timing(serde_json::json!({"interval": "30m", "repeat_until": "2026-03-01T01:00:00Z", "mode": "fixed_rate"}))
            .into_spec(now)
            .unwrap();
        let t2 = s.after_fire(now, now, 1).unwrap();
        let t3 = s.after_fire(t2, t2, 2).unwrap();
        assert_eq!(t3, at("2026-03-01T01:00:00Z"));
        assert_eq!(s.after_fire(t3, t3, 3), None);
    }

    #[test]
    fn cron_in_a_time_zone_keeps_local_time_across_dst() {
        // Europe/Paris moves from UTC+1 to UTC+2 on 2026-03-29.
        let now = at("2026-03-27T12:00:00Z");
        let s = timing(serde_json::json!({"cron": "0 9 * * *", "timezone": "Europe/Paris"}))
            .into_spec(now)
            .unwrap();
        assert_eq!(s.mode, Mode::FixedRate);
        let d1 = s.first().unwrap();
        assert_eq!(d1, at("2026-03-28T08:00:00Z"), "09:00 at UTC+1");
        let d2 = s.after_fire(d1, d1, 1).unwrap();
        assert_eq!(
            d2,
            at("2026-03-29T07:00:00Z"),
            "09:00 at UTC+2, 23 hours later"
        );
        let d3 = s.after_fire(d2, d2, 2).unwrap();
        assert_eq!(d3, at("2026-03-30T07:00:00Z"));
        let paris = chrono_tz::Europe::Paris;
        assert_eq!(
            d2.with_timezone(&paris).format("%H:%M").to_string(),
            "09:00"
        );
        assert_eq!(
            paris
                .with_ymd_and_hms(2026, 3, 29, 9, 0, 0)
                .unwrap()
                .with_timezone(&Utc),
            d2
        );
    }

    #[test]
    fn missed_firings_catch_up_once_never_in_a_burst() {
        let start = at("2026-03-01T00:00:00Z");
        let s = timing(serde_json::json!({"interval": "10m", "mode": "fixed_rate"}))
            .into_spec(start)
            .unwrap();
        // Down from 00:05 to 01:03: the 00:10 firing runs late, once; the next is 01:10.
        let now = at("2026-03-01T01:03:00Z");
        assert_eq!(
            s.after_fire(at("2026-03-01T00:10:00Z"), now, 2),
            Some(at("2026-03-01T01:10:00Z"))
        );
        let c = timing(serde_json::json!({"cron": "*/15 * * * *"}))
            .into_spec(start)
            .unwrap();
        assert_eq!(
            c.after_fire(at("2026-03-01T00:15:00Z"), now, 2),
            Some(at("2026-03-01T01:15:00Z"))
        );
    }

    #[test]
    fn fixed_delay_waits_for_the_child() {
        let now = at("2026-03-01T00:00:00Z");
        let s = timing(serde_json::json!({"interval": "5m"}))
            .into_spec(now)
            .unwrap();
        assert_eq!(s.mode, Mode::FixedDelay);
        assert_eq!(s.after_fire(now, now, 1), None);
        assert_eq!(
            s.after_child(at("2026-03-01T00:02:00Z"), 1),
            Some(at("2026-03-01T00:07:00Z"))
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let now = at("2026-03-01T00:00:00Z");
        let cases = [
            (serde_json::json!({"interval": "5x"}), "interval"),
            (serde_json::json!({"cron": "0 0 9 * * *"}), "cron"),
            (
                serde_json::json!({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}),
                "timezone",
            ),
            (
                serde_json::json!({"interval": "1h", "repeat_count": 0}),
                "repeat_count",
            ),
            (
                serde_json::json!({"interval": "1h", "cron": "0 9 * * *"}),
                "cron",
            ),
            (serde_json::json!({}), "interval"),
            (
                serde_json::json!({"interval": "1h", "start_at": "tomorrow"}),
                "start_at",
            ),
            (
                serde_json::json!({"interval": "1h", "mode": "sometimes"}),
                "mode",
            ),
            (
                serde_json::json!({"interval": "1h", "timezone": "UTC"}),
                "timezone",
            ),
            (
                serde_json::json!({"interval": "1h", "repeat_until": "2025-01-01T00:00:00Z"}),
                "repeat_until",
            ),
        ];
        for (req, field) in cases {
            let e = timing(req.clone()).into_spec(now).unwrap_err();
            assert_eq!(e.field, field, "{req}: {e}");
        }
    }
}
