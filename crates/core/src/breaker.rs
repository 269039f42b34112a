//! The circuit breaker of one target: closed while it works; open after a run of consecutive
//! failures, or a failure rate over a window with a minimum volume; open for a cooldown that
//! doubles on each trip in a row, capped; then half-open, letting a single probe through, whose
//! success closes it and whose failure opens it again. Time is an argument: nothing here reads
//! a clock.

use serde::{Deserialize, Serialize};

/// When a breaker trips and for how long. Configured as `health.breaker`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: u32,
    /// Failure rate over the window that opens it, once the window holds `min_volume` attempts.
    pub failure_rate: f64,
    pub min_volume: u32,
    pub window_ms: u64,
    /// First cooldown; each further trip in a row doubles it, up to `max_cooldown_ms`.
    pub cooldown_ms: u64,
    pub max_cooldown_ms: u64,
    /// A probe that never reports back frees the half-open slot after this long.
    pub probe_timeout_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_volume: 20,
            window_ms: 60_000,
            cooldown_ms: 5_000,
            max_cooldown_ms: 300_000,
            probe_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    #[default]
    Closed,
    Open {
        until_ms: u64,
    },
    HalfOpen {
        /// When the probe in flight started; `None`: no probe yet.
        probe_since_ms: Option<u64>,
    },
}

/// Whether an attempt may go to the target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// Allowed as the half-open breaker's single probe.
    Probe,
    /// Not before `until_ms`.
    Reject {
        until_ms: u64,
    },
}

const BUCKETS: usize = 6;

/// Attempts in one slice of the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    start_ms: u64,
    ok: u32,
    failed: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// Trips since the breaker last closed after a probe: the cooldown grows with them.
    pub trips: u32,
    window: [Bucket; BUCKETS],
}

impl Breaker {
    /// Whether an attempt may go now, without taking the probe slot.
    pub fn peek(&self, policy: &BreakerPolicy, now_ms: u64) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::Allow,
            BreakerState::Open { until_ms } if now_ms < until_ms => Admission::Reject { until_ms },
            BreakerState::Open { .. } | BreakerState::HalfOpen { probe_since_ms: None } => Admission::Probe,
            BreakerState::HalfOpen { probe_since_ms: Some(since) } => {
                let until_ms = since + policy.probe_timeout_ms;
                if now_ms < until_ms {
                    Admission::Reject { until_ms }
                } else {
                    Admission::Probe
                }
            }
        }
    }

    /// Whether an attempt may go now; a probe takes the half-open slot.
    pub fn admit(&mut self, policy: &BreakerPolicy, now_ms: u64) -> Admission {
        let admission = self.peek(policy, now_ms);
        if admission == Admission::Probe {
            self.state = BreakerState::HalfOpen { probe_since_ms: Some(now_ms) };
        }
        admission
    }

    /// Folds in the outcome of an attempt that ended at `now_ms`.
    pub fn record(&mut self, policy: &BreakerPolicy, ok: bool, now_ms: u64) {
        self.count(policy, ok, now_ms);
        // Past its cooldown an open breaker is half-open, whoever let the probe through (the
        // shared record never admits: it learns of probes from their outcomes).
        let probing = match self.state {
            BreakerState::HalfOpen { .. } => true,
            BreakerState::Open { until_ms } => now_ms >= until_ms,
            BreakerState::Closed => false,
        };
        match self.state {
            _ if probing && ok => {
                *self = Breaker::default();
            }
            _ if probing => self.trip(policy, now_ms),
            BreakerState::Closed if ok => self.consecutive_failures = 0,
            BreakerState::Closed => {
                self.consecutive_failures += 1;
                let (ok_count, failed) = self.totals(policy, now_ms);
                let volume = ok_count + failed;
                let rate_exceeded =
                    volume >= policy.min_volume && f64::from(failed) >= policy.failure_rate * f64::from(volume);
                if self.consecutive_failures >= policy.consecutive_failures || rate_exceeded {
                    self.trip(policy, now_ms);
                }
            }
            // A straggler: an attempt that started before the breaker opened (or, half-open,
            // cannot be: `probing` covers it).
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {}
        }
    }

    /// When an open breaker lets a probe through, if it is open.
    pub fn reopens_at(&self) -> Option<u64> {
        match self.state {
            BreakerState::Open { until_ms } => Some(until_ms),
            _ => None,
        }
    }

    fn trip(&mut self, policy: &BreakerPolicy, now_ms: u64) {
        self.trips = self.trips.saturating_add(1);
        let doublings = (self.trips - 1).min(20);
        let cooldown = policy.cooldown_ms.saturating_mul(1 << doublings).min(policy.max_cooldown_ms);
        self.state = BreakerState::Open { until_ms: now_ms + cooldown };
        self.consecutive_failures = 0;
        self.window = [Bucket::default(); BUCKETS];
    }

    fn bucket_width(policy: &BreakerPolicy) -> u64 {
        (policy.window_ms / BUCKETS as u64).max(1)
    }

    fn count(&mut self, policy: &BreakerPolicy, ok: bool, now_ms: u64) {
        let width = Self::bucket_width(policy);
        let start_ms = now_ms / width * width;
        let bucket = &mut self.window[(now_ms / width) as usize % BUCKETS];
        if bucket.start_ms != start_ms {
            *bucket = Bucket { start_ms, ok: 0, failed: 0 };
        }
        if ok {
            bucket.ok += 1;
        } else {
            bucket.failed += 1;
        }
    }

    /// Successes and failures within the window ending at `now_ms`.
    fn totals(&self, policy: &BreakerPolicy, now_ms: u64) -> (u32, u32) {
        let oldest = now_ms.saturating_sub(policy.window_ms);
        self.window
            .iter()
            .filter(|b| b.start_ms + Self::bucket_width(policy) > oldest && (b.ok + b.failed) > 0)
            .fold((0, 0), |(ok, failed), b| (ok + b.ok, failed + b.failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_volume: 10,
            window_ms: 60_000,
            cooldown_ms: 1_000,
            max_cooldown_ms: 5_000,
            probe_timeout_ms: 2_000,
        }
    }

    #[test]
    fn closed_admits_and_successes_reset_the_run() {
        let p = policy();
        let mut b = Breaker::default();
        assert_eq!(b.admit(&p, 0), Admission::Allow);
        b.record(&p, false, 1);
        b.record(&p, false, 2);
        b.record(&p, true, 3);
        b.record(&p, false, 4);
        assert_eq!(b.state, BreakerState::Closed);
        assert_eq!(b.consecutive_failures, 1);
    }

    #[test]
    fn consecutive_failures_open_it_for_the_cooldown() {
        let p = policy();
        let mut b = Breaker::default();
        for t in 0..3 {
            b.record(&p, false, t);
        }
        assert_eq!(b.state, BreakerState::Open { until_ms: 2 + 1_000 });
        assert_eq!(b.admit(&p, 500), Admission::Reject { until_ms: 1_002 });
        assert_eq!(b.reopens_at(), Some(1_002));
    }

    #[test]
    fn a_failure_rate_over_the_minimum_volume_opens_it() {
        let p = policy();
        let mut b = Breaker::default();
        // Alternating: never 3 failures in a row, but half of 10 attempts failed.
        for t in 0..10u64 {
            b.record(&p, t % 2 == 0, t * 100);
        }
        assert!(matches!(b.state, BreakerState::Open { .. }));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let p = policy();
        let mut b = Breaker::default();
        for t in 0..9u64 {
            b.record(&p, t % 2 == 0, t);
        }
        // The 10th attempt comes two windows later: the earlier ones have aged out.
        b.record(&p, false, 130_000);
        assert_eq!(b.state, BreakerState::Closed);
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_through_and_its_success_closes_it() {
        let p = policy();
        let mut b = Breaker::default();
        for t in 0..3 {
            b.record(&p, false, t);
        }
        assert_eq!(b.peek(&p, 1_002), Admission::Probe);
        assert_eq!(b.admit(&p, 1_002), Admission::Probe);
        assert_eq!(b.admit(&p, 1_003), Admission::Reject { until_ms: 3_002 }, "only one probe");
        b.record(&p, true, 1_100);
        assert_eq!(b, Breaker::default());
        assert_eq!(b.admit(&p, 1_101), Admission::Allow);
    }

    #[test]
    fn a_failed_probe_reopens_it_for_twice_as_long_up_to_the_cap() {
        let p = policy();
        let mut b = Breaker::default();
        for t in 0..3 {
            b.record(&p, false, t);
        }
        let mut now = 1_002;
        let mut cooldowns = vec![];
        for _ in 0..5 {
            assert_eq!(b.admit(&p, now), Admission::Probe);
            b.record(&p, false, now);
            let until = b.reopens_at().unwrap();
            cooldowns.push(until - now);
            now = until;
        }
        assert_eq!(cooldowns, [2_000, 4_000, 5_000, 5_000, 5_000]);
    }

    #[test]
    fn a_probe_that_never_reports_frees_the_slot_after_its_timeout() {
        let p = policy();
        let mut b = Breaker::default();
        for t in 0..3 {
            b.record(&p, false, t);
        }
        assert_eq!(b.admit(&p, 1_002), Admission::Probe);
        assert_eq!(b.admit(&p, 3_001), Admission::Reject { until_ms: 3_002 });
        assert_eq!(b.admit(&p, 3_002), Admission::Probe);
    }

    #[test]
    fn an_outcome_after_the_cooldown_is_a_probe_result_even_without_an_admission() {
        let p = policy();
        let mut shared = Breaker::default();
        for t in 0..3 {
            shared.record(&p, false, t);
        }
        shared.record(&p, true, 1_500);
        assert_eq!(shared, Breaker::default());
        for t in 0..3 {
            shared.record(&p, false, 2_000 + t);
        }
        shared.record(&p, false, 3_100);
        assert_eq!(shared.reopens_at(), Some(3_100 + 2_000), "a failed probe reopens it for longer");
    }

    #[test]
    fn stragglers_do_not_move_an_open_breaker() {
        let p = policy();
        let mut b = Breaker::default();
        for t in 0..3 {
            b.record(&p, false, t);
        }
        let open = b.clone();
        b.record(&p, true, 10);
        b.record(&p, false, 11);
        assert_eq!(b.state, open.state);
    }
}
