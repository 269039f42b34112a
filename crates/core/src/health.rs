//! Target health: what each attempt at a target came to, folded into a record per target that
//! holds its circuit breaker, its latency figures and when the vendor asked not to be called
//! before (Retry-After). The `ProviderHealth` Durable Objects keep the shared records, one of
//! `HEALTH_SHARDS` instances a target (`shard_of`); each isolate keeps a recent copy and folds
//! its own outcomes in at once.

use crate::breaker::{Admission, Breaker, BreakerPolicy};
use serde::{Deserialize, Serialize};

/// The outcome of one attempt at one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// `provider/model`
    pub target: String,
    /// Whether the target did its part. A refusal of a bad request is a success of the target.
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
    /// The vendor asked not to be called again before this time (Retry-After).
    #[serde(default)]
    pub retry_after_until_ms: Option<u64>,
}

/// How long a target's whole answer took, known only once it has been read or streamed to
/// the end (after the attempt's outcome).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub target: String,
    pub total_ms: f64,
    pub at_ms: u64,
}

/// What an isolate sends the Durable Object after a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub policy: BreakerPolicy,
    pub outcomes: Vec<Outcome>,
    /// Completions of earlier answers, sent along with the next report.
    #[serde(default)]
    pub completions: Vec<Completion>,
}

/// How many `ProviderHealth` instances keep the target records: a target's record lives in one
/// of them, by its name, so that no single object takes every isolate's reports and probes.
pub const HEALTH_SHARDS: u64 = 16;

/// The instance that kept every record before they were sharded: read (never written) by the
/// admin API for one release, so that its last records stay visible during the upgrade.
pub const LEGACY_INSTANCE: &str = "global";

/// The instance that keeps `target`'s record (and grants its half-open probe).
pub fn shard_of(target: &str) -> String {
    // FNV-1a: stable across versions and platforms (a target's record must not move).
    let hash = target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("targets:{}", hash % HEALTH_SHARDS)
}

/// Every instance that may keep records, in order.
pub fn shards() -> Vec<String> {
    (0..HEALTH_SHARDS).map(|n| format!("targets:{n}")).collect()
}

impl Report {
    /// This report split by the instance that keeps each target's record, in the instances' order.
    pub fn by_shard(self) -> Vec<(String, Report)> {
        let mut split: std::collections::BTreeMap<String, Report> = std::collections::BTreeMap::new();
        let empty =
            |policy: &BreakerPolicy| Report { policy: policy.clone(), outcomes: Vec::new(), completions: Vec::new() };
        for outcome in self.outcomes {
            split.entry(shard_of(&outcome.target)).or_insert_with(|| empty(&self.policy)).outcomes.push(outcome);
        }
        for completion in self.completions {
            split
                .entry(shard_of(&completion.target))
                .or_insert_with(|| empty(&self.policy))
                .completions
                .push(completion);
        }
        split.into_iter().collect()
    }
}

/// Latency samples kept per target for its p95.
const SAMPLES: usize = 64;
const EWMA_WEIGHT: f64 = 0.2;

/// A target's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub target: String,
    pub successes: u64,
    pub failures: u64,
    pub breaker: Breaker,
    /// Time to first byte: exponential moving average (weight 0.2 on the newest) and p95 of
    /// the last 64 attempts.
    pub latency_ewma_ms: f64,
    pub latency_p95_ms: f64,
    #[serde(default)]
    samples: Vec<f64>,
    /// Time to the end of the answer, the same way.
    #[serde(default)]
    pub total_ewma_ms: f64,
    #[serde(default)]
    pub total_p95_ms: f64,
    #[serde(default)]
    total_samples: Vec<f64>,
    #[serde(default)]
    pub retry_after_until_ms: Option<u64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// When the latest outcome folded in here ended.
    pub updated_at_ms: u64,
}

impl TargetHealth {
    pub fn new(target: &str) -> Self {
        Self { target: target.to_owned(), ..Self::default() }
    }

    /// The record after `outcome`.
    pub fn record(&mut self, policy: &BreakerPolicy, outcome: &Outcome) {
        if outcome.ok {
            self.successes += 1;
        } else {
            self.failures += 1;
        }
        self.breaker.record(policy, outcome.ok, outcome.at_ms);
        self.latency_ewma_ms = track(&mut self.samples, self.latency_ewma_ms, outcome.latency_ms);
        self.latency_p95_ms = percentile(&self.samples, 0.95);
        if let Some(until) = outcome.retry_after_until_ms {
            self.retry_after_until_ms = Some(self.retry_after_until_ms.map_or(until, |u| u.max(until)));
        }
        self.last_status = outcome.status;
        self.last_error = outcome.error.clone();
        self.updated_at_ms = self.updated_at_ms.max(outcome.at_ms);
    }

    /// Folds in how long a whole answer took.
    pub fn complete(&mut self, completion: &Completion) {
        self.total_ewma_ms = track(&mut self.total_samples, self.total_ewma_ms, completion.total_ms);
        self.total_p95_ms = percentile(&self.total_samples, 0.95);
        self.updated_at_ms = self.updated_at_ms.max(completion.at_ms);
    }

    /// Whether an attempt may go now (the breaker, and the vendor's Retry-After), without
    /// taking the half-open probe slot.
    pub fn peek(&self, policy: &BreakerPolicy, now_ms: u64) -> Admission {
        match self.retry_after_until_ms {
            Some(until_ms) if now_ms < until_ms => Admission::Reject { until_ms },
            _ => self.breaker.peek(policy, now_ms),
        }
    }

    /// As `peek`, taking the probe slot when the attempt is the probe.
    pub fn admit(&mut self, policy: &BreakerPolicy, now_ms: u64) -> Admission {
        match self.peek(policy, now_ms) {
            Admission::Reject { until_ms } => Admission::Reject { until_ms },
            _ => self.breaker.admit(policy, now_ms),
        }
    }
}

/// Adds `sample` to the last-64 window and returns the moving average after it.
fn track(samples: &mut Vec<f64>, average: f64, sample: f64) -> f64 {
    let first = samples.is_empty();
    if samples.len() == SAMPLES {
        samples.remove(0);
    }
    samples.push(sample);
    if first {
        sample
    } else {
        EWMA_WEIGHT * sample + (1.0 - EWMA_WEIGHT) * average
    }
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// When a vendor that sent `Retry-After` (seconds) or `retry-after-ms` may be called again.
pub fn retry_after_until(retry_after: Option<&str>, retry_after_ms: Option<&str>, now_ms: u64) -> Option<u64> {
    let ms = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0);
    let seconds = retry_after.and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0);
    // Capped: a vendor cannot take a target out for longer than an hour by a header.
    let wait_ms = ms.or(seconds.map(|s| s * 1000.0))?.min(3_600_000.0);
    Some(now_ms + wait_ms as u64)
}

/// Which refresh of an isolate's copy of the health records is under way, if one is: one at a
/// time, and none for longer than `timeout_ms`, so that a snapshot that never comes (its
/// future dropped, a Durable Object that hangs) cannot freeze the copy for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshClaim {
    since_ms: Option<u64>,
}

impl RefreshClaim {
    /// Claims the refresh when the copy, fetched at `fetched_at_ms`, is older than `fresh_ms`
    /// and no claim younger than `timeout_ms` is held.
    pub fn claim(&mut self, now_ms: u64, fetched_at_ms: u64, fresh_ms: u64, timeout_ms: u64) -> bool {
        let under_way = self.since_ms.is_some_and(|at| now_ms.saturating_sub(at) < timeout_ms);
        if under_way || now_ms.saturating_sub(fetched_at_ms) < fresh_ms {
            return false;
        }
        self.since_ms = Some(now_ms);
        true
    }

    /// The refresh claimed at `claimed_ms` ended, however it ended. A later claim (made after
    /// this one was given up) stays.
    pub fn release(&mut self, claimed_ms: u64) {
        if self.since_ms == Some(claimed_ms) {
            self.since_ms = None;
        }
    }

    pub fn since_ms(&self) -> Option<u64> {
        self.since_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerState;

    fn outcome(ok: bool, latency_ms: f64, at_ms: u64) -> Outcome {
        Outcome {
            target: "p/m".into(),
            ok,
            status: Some(if ok { 200 } else { 500 }),
            error: (!ok).then(|| "upstream_error".into()),
            latency_ms,
            at_ms,
            retry_after_until_ms: None,
        }
    }

    #[test]
    fn outcomes_drive_the_breaker_and_the_counts() {
        let policy = BreakerPolicy { consecutive_failures: 2, ..BreakerPolicy::default() };
        let mut h = TargetHealth::new("p/m");
        h.record(&policy, &outcome(false, 100.0, 1));
        h.record(&policy, &outcome(false, 100.0, 2));
        assert_eq!((h.successes, h.failures), (0, 2));
        assert!(matches!(h.breaker.state, BreakerState::Open { .. }));
        assert_eq!(h.last_error.as_deref(), Some("upstream_error"));
        assert!(matches!(h.peek(&policy, 3), Admission::Reject { .. }));
    }

    #[test]
    fn latency_average_and_p95() {
        let policy = BreakerPolicy::default();
        let mut h = TargetHealth::new("p/m");
        h.record(&policy, &outcome(true, 100.0, 1));
        assert_eq!(h.latency_ewma_ms, 100.0);
        h.record(&policy, &outcome(true, 200.0, 2));
        assert!((h.latency_ewma_ms - 120.0).abs() < 1e-9);
        for i in 0..100 {
            h.record(&policy, &outcome(true, f64::from(i), 3));
        }
        assert_eq!(h.latency_p95_ms, 96.0, "the 95th percentile of the last 64 samples, 36..=99");
    }

    #[test]
    fn completions_track_total_time_apart_from_first_byte() {
        let mut h = TargetHealth::new("p/m");
        h.record(&BreakerPolicy::default(), &outcome(true, 50.0, 1));
        h.complete(&Completion { target: "p/m".into(), total_ms: 900.0, at_ms: 2 });
        h.complete(&Completion { target: "p/m".into(), total_ms: 1000.0, at_ms: 3 });
        assert_eq!(h.latency_ewma_ms, 50.0);
        assert!((h.total_ewma_ms - 920.0).abs() < 1e-9);
        assert_eq!(h.total_p95_ms, 1000.0);
        assert_eq!(h.updated_at_ms, 3);
    }

    #[test]
    fn retry_after_keeps_the_target_out_until_then() {
        let policy = BreakerPolicy::default();
        let mut h = TargetHealth::new("p/m");
        let mut o = outcome(false, 5.0, 1_000);
        o.retry_after_until_ms = retry_after_until(Some("2"), None, 1_000);
        h.record(&policy, &o);
        assert_eq!(h.peek(&policy, 2_999), Admission::Reject { until_ms: 3_000 });
        assert_eq!(h.peek(&policy, 3_000), Admission::Allow);
    }

    #[test]
    fn retry_after_headers_parse() {
        assert_eq!(retry_after_until(Some("7"), None, 10), Some(7_010));
        assert_eq!(retry_after_until(Some("7"), Some("250"), 10), Some(260), "the millisecond header wins");
        assert_eq!(retry_after_until(Some("Wed, 21 Oct 2015 07:28:00 GMT"), None, 10), None);
        assert_eq!(retry_after_until(Some("-1"), None, 10), None);
        assert_eq!(retry_after_until(Some("999999"), None, 0), Some(3_600_000));
    }

    #[test]
    fn targets_are_spread_over_the_shards_by_a_stable_hash() {
        // Pinned: a target's record must not move between versions (FNV-1a of the name).
        assert_eq!(shard_of("upstream/vendor-primary"), shard_of("upstream/vendor-primary"));
        assert_eq!(shard_of(""), format!("targets:{}", 0xcbf2_9ce4_8422_2325u64 % HEALTH_SHARDS));
        assert_eq!(shard_of("a"), format!("targets:{}", 0xaf63_dc4c_8601_ec8cu64 % HEALTH_SHARDS));
        assert!(shards().contains(&shard_of("openai/gpt-4o")));
        assert_eq!(shards().len() as u64, HEALTH_SHARDS);
        // A hundred targets land in most shards, none in more than a fifth of them.
        let mut counts = std::collections::HashMap::new();
        for i in 0..100 {
            *counts.entry(shard_of(&format!("provider{}/model-{i}", i % 7))).or_insert(0) += 1;
        }
        assert!(counts.len() >= 12 && counts.values().all(|&n| n <= 20), "{counts:?}");
    }

    #[test]
    fn a_report_is_split_by_the_shard_of_each_target() {
        let policy = BreakerPolicy::default();
        let (a, b) = ("upstream/vendor-primary", "upstream/vendor-backup");
        let mut report = Report { policy: policy.clone(), outcomes: vec![], completions: vec![] };
        for target in [a, b, a] {
            report.outcomes.push(Outcome { target: target.into(), ..outcome(true, 1.0, 1) });
        }
        report.completions.push(Completion { target: b.into(), total_ms: 5.0, at_ms: 2 });
        let split = report.by_shard();
        let total: usize = split.iter().map(|(_, r)| r.outcomes.len() + r.completions.len()).sum();
        assert_eq!(total, 4);
        for (shard, part) in &split {
            assert!(part.outcomes.iter().all(|o| &shard_of(&o.target) == shard));
            assert!(part.completions.iter().all(|c| &shard_of(&c.target) == shard));
            assert_eq!(part.policy, policy);
        }
        let of_a = split.iter().find(|(s, _)| *s == shard_of(a)).unwrap();
        assert_eq!(of_a.1.outcomes.iter().filter(|o| o.target == a).count(), 2, "in order, none lost");
    }

    #[test]
    fn a_refresh_that_never_ends_is_given_up() {
        let mut claim = RefreshClaim::default();
        assert!(claim.claim(10_000, 0, 2_000, 5_000));
        assert!(!claim.claim(11_000, 0, 2_000, 5_000), "one at a time");
        // The first never released (its future was dropped): after the timeout, another may go.
        assert!(claim.claim(15_000, 0, 2_000, 5_000));
        claim.release(10_000);
        assert_eq!(claim.since_ms(), Some(15_000), "the late end of the first frees nothing of the second");
        claim.release(15_000);
        assert!(!claim.claim(16_000, 15_500, 2_000, 5_000), "a fresh copy needs no refresh");
        assert!(claim.claim(18_000, 15_500, 2_000, 5_000));
    }
}
