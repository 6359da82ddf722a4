//! Latency samples → percentiles, throughput and errors, printed as a Markdown table row.

use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct Sample {
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub elapsed: Duration,
}

impl Sample {
    pub fn ok(&self) -> usize {
        self.latencies.len()
    }

    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut v = self.latencies.clone();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i.min(v.len() - 1)]
    }

    pub fn throughput(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.ok() as f64 / self.elapsed.as_secs_f64()
        }
    }

    pub fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
    }

    /// The row as JSON (for `scripts/bench-compare`): times in milliseconds.
    pub fn json(&self, name: &str) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        serde_json::json!({
            "scenario": name,
            "ok": self.ok(),
            "errors": self.errors,
            "per_s": self.throughput(),
            "p50_ms": ms(self.pct(0.5)),
            "p90_ms": ms(self.pct(0.9)),
            "p99_ms": ms(self.pct(0.99)),
        })
    }

    /// `| name | ok | errors | per s | p50 | p90 | p99 |`
    pub fn row(&self, name: &str) -> String {
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
        format!(
            "| {name} | {} | {} | {:.0} | {} | {} | {} |",
            self.ok(),
            self.errors,
            self.throughput(),
            ms(self.pct(0.5)),
            ms(self.pct(0.9)),
            ms(self.pct(0.99))
        )
    }
}

pub const HEADER: &str = "| scenario | ok | errors | per s | p50 ms | p90 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|---:|";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_sample() {
        let s = Sample {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            errors: 0,
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(s.pct(0.5), Duration::from_millis(51));
        assert_eq!(s.pct(0.99), Duration::from_millis(99));
        assert_eq!(s.throughput(), 100.0);
    }
}
