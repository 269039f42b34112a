//! What each attempt at a target came to, as the worker reports it to the `ProviderHealth`
//! Durable Object after the response, and the per-target record kept there.

use serde::{Deserialize, Serialize};

/// The outcome of one attempt at one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// `provider/model`
    pub target: String,
    pub ok: bool,
    /// The vendor's HTTP status, when it answered.
    #[serde(default)]
    pub status: Option<u16>,
    /// The error code when it failed (`upstream_timeout`, `upstream_unreachable`, ...).
    #[serde(default)]
    pub error: Option<String>,
    /// Time to the vendor's response headers.
    pub latency_ms: f64,
    /// When the attempt ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A target's record: counts, the current run of failures, and the latest attempt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub target: String,
    pub successes: u64,
    pub failures: u64,
    pub consecutive_failures: u64,
    /// Exponential moving average of latency (weight 0.2 on the newest).
    pub latency_ewma_ms: f64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub updated_at_ms: u64,
}

const EWMA_WEIGHT: f64 = 0.2;

impl TargetHealth {
    pub fn new(target: &str) -> Self {
        Self { target: target.to_owned(), ..Self::default() }
    }

    /// The record after `outcome`.
    pub fn record(&mut self, outcome: &Outcome) {
        if outcome.ok {
            self.successes += 1;
            self.consecutive_failures = 0;
        } else {
            self.failures += 1;
            self.consecutive_failures += 1;
        }
        let attempts = self.successes + self.failures;
        self.latency_ewma_ms = if attempts == 1 {
            outcome.latency_ms
        } else {
            EWMA_WEIGHT * outcome.latency_ms + (1.0 - EWMA_WEIGHT) * self.latency_ewma_ms
        };
        self.last_status = outcome.status;
        self.last_error = outcome.error.clone();
        self.updated_at_ms = self.updated_at_ms.max(outcome.at_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ok: bool, latency_ms: f64) -> Outcome {
        Outcome {
            target: "p/m".into(),
            ok,
            status: Some(if ok { 200 } else { 500 }),
            error: (!ok).then(|| "upstream_error".into()),
            latency_ms,
            at_ms: 10,
        }
    }

    #[test]
    fn failures_run_until_a_success() {
        let mut h = TargetHealth::new("p/m");
        h.record(&outcome(false, 100.0));
        h.record(&outcome(false, 100.0));
        assert_eq!((h.failures, h.consecutive_failures), (2, 2));
        assert_eq!(h.last_error.as_deref(), Some("upstream_error"));
        h.record(&outcome(true, 100.0));
        assert_eq!((h.successes, h.failures, h.consecutive_failures), (1, 2, 0));
        assert_eq!(h.last_error, None);
    }

    #[test]
    fn latency_average_starts_at_the_first_sample_and_moves_by_a_fifth() {
        let mut h = TargetHealth::new("p/m");
        h.record(&outcome(true, 100.0));
        assert_eq!(h.latency_ewma_ms, 100.0);
        h.record(&outcome(true, 200.0));
        assert!((h.latency_ewma_ms - 120.0).abs() < 1e-9);
    }
}
