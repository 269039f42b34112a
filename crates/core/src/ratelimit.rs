//! Requests and tokens per minute, as token buckets: a bucket holds up to a minute's allowance
//! and refills continuously at that rate, so a client may burst to its limit and then goes at
//! the limit's pace. Time is an argument.

use serde::{Deserialize, Serialize};

const MINUTE_MS: f64 = 60_000.0;

/// Limits per minute; either may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none()
    }
}

/// One bucket's level. `level` may go below zero when a call used more tokens than it was
/// admitted with: the debt is paid back by the refill before the next call is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    level: f64,
    at_ms: u64,
}

/// What a bucket looks like after a call was admitted, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Remaining {
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset_ms: u64,
}

impl Bucket {
    /// A full bucket.
    pub fn full(limit: u64, now_ms: u64) -> Self {
        Self { level: limit as f64, at_ms: now_ms }
    }

    fn refill(&mut self, limit: u64, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64;
        self.level = (self.level + elapsed * limit as f64 / MINUTE_MS).min(limit as f64);
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Whether `amount` fits now; nothing is taken.
    /// `Err` holds the wait, in ms, until it will. An amount above the whole limit is
    /// counted as the whole limit, so that it can pass once the bucket is full.
    pub fn check(&mut self, limit: u64, amount: u64, now_ms: u64) -> Result<(), u64> {
        self.refill(limit, now_ms);
        let amount = amount.min(limit) as f64;
        if self.level >= amount {
            Ok(())
        } else if limit == 0 {
            Err(MINUTE_MS as u64)
        } else {
            Err(((amount - self.level) * MINUTE_MS / limit as f64).ceil() as u64)
        }
    }

    /// What the bucket holds now (below zero while it pays back a debt).
    pub fn level(&mut self, limit: u64, now_ms: u64) -> f64 {
        self.refill(limit, now_ms);
        self.level
    }

    /// Takes `amount` (after `check` allowed it).
    pub fn take(&mut self, limit: u64, amount: u64) -> Remaining {
        self.level -= amount.min(limit) as f64;
        self.remaining(limit)
    }

    /// Corrects an earlier take by `delta` (positive: more was used than taken).
    pub fn adjust(&mut self, limit: u64, delta: i64, now_ms: u64) {
        self.refill(limit, now_ms);
        self.level = (self.level - delta as f64).clamp(-(limit as f64), limit as f64);
    }

    pub fn remaining(&self, limit: u64) -> Remaining {
        let missing = limit as f64 - self.level;
        let reset_ms = if limit == 0 { 0 } else { (missing * MINUTE_MS / limit as f64).ceil().max(0.0) as u64 };
        Remaining { limit, remaining: self.level.max(0.0) as u64, reset_ms }
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `20ms`, `1s`, `6m0s`, `1h2m3s`.
pub fn openai_duration(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1_000);
    let (h, m, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_bursts_to_its_limit_then_paces() {
        let mut b = Bucket::full(60, 0);
        for _ in 0..60 {
            assert!(b.check(60, 1, 0).is_ok());
            b.take(60, 1);
        }
        // One a second comes back.
        assert_eq!(b.check(60, 1, 0), Err(1_000));
        assert_eq!(b.check(60, 1, 400), Err(600));
        assert!(b.check(60, 1, 1_000).is_ok());
        let r = b.take(60, 1);
        assert_eq!((r.limit, r.remaining, r.reset_ms), (60, 0, 60_000));
    }

    #[test]
    fn usage_above_the_estimate_is_a_debt_paid_by_the_refill() {
        let mut b = Bucket::full(1_000, 0);
        b.check(1_000, 100, 0).unwrap();
        b.take(1_000, 100);
        // The call used 700 tokens, not 100: 400 left.
        b.adjust(1_000, 600, 0);
        assert_eq!(b.remaining(1_000).remaining, 300);
        b.adjust(1_000, 5_000, 0);
        assert_eq!(b.remaining(1_000).remaining, 0);
        // Debt is bounded by one minute's allowance; it takes 60 s (+ what the call needs) to clear.
        assert_eq!(b.check(1_000, 1, 0), Err(60_060));
        // Less used than taken is given back.
        let mut b = Bucket::full(1_000, 0);
        b.take(1_000, 500);
        b.adjust(1_000, -200, 0);
        assert_eq!(b.remaining(1_000).remaining, 700);
    }

    #[test]
    fn an_amount_above_the_limit_passes_on_a_full_bucket() {
        let mut b = Bucket::full(100, 0);
        assert!(b.check(100, 5_000, 0).is_ok());
        b.take(100, 5_000);
        assert_eq!(b.check(100, 5_000, 0), Err(60_000));
    }

    #[test]
    fn durations_are_written_as_openai_does() {
        assert_eq!(openai_duration(20), "20ms");
        assert_eq!(openai_duration(1_000), "1s");
        assert_eq!(openai_duration(1_001), "2s");
        assert_eq!(openai_duration(360_000), "6m0s");
        assert_eq!(openai_duration(3_723_000), "1h2m3s");
    }
}
