//! The plan of one request: which of a model's targets to try, in which order.

use crate::breaker::Admission;
use serde::{Deserialize, Serialize};

/// How a model's first target is chosen among the healthy ones; the others follow as
/// fallbacks, in the configured order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The configured order.
    #[default]
    Fallback,
    /// At random, in proportion to the targets' `weight`.
    Weighted,
    /// The lowest recent latency first (a target without figures yet counts as fastest, so
    /// that it gets measured).
    Latency,
    /// The cheapest target able to serve the request first (by the catalog's prices).
    Cost,
    /// Simple requests to the `simple` tier, complex ones to the `complex` tier (see
    /// [`classify`]); each tier in its configured order.
    Cascade,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Fallback => "fallback",
            Strategy::Weighted => "weighted",
            Strategy::Latency => "latency",
            Strategy::Cost => "cost",
            Strategy::Cascade => "cascade",
        }
    }
}

/// What the strategy knows of one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub weight: u32,
    /// Recent latency (moving average), if any was measured.
    pub latency_ms: Option<f64>,
    /// The most the request can cost at this target, in USD.
    pub cost: f64,
}

/// The targets of a model that may serve a request, by index: those that `serves` (the
/// catalog's capabilities and context window), and under a cascade the decided tier's: a
/// complex request only the `complex` tier, a simple one the `simple` tier first, then the
/// complex one as its fallback.
pub fn eligible(targets: &[crate::config::Target], serves: impl Fn(usize) -> bool, tier: Option<Tier>) -> Vec<usize> {
    let mut eligible: Vec<usize> = (0..targets.len()).filter(|&i| serves(i)).collect();
    match tier {
        Some(Tier::Complex) => eligible.retain(|&i| targets[i].tier == Some(Tier::Complex)),
        // Stable: each tier keeps its configured order.
        Some(Tier::Simple) => eligible.sort_by_key(|&i| targets[i].tier != Some(Tier::Simple)),
        None => {}
    }
    eligible
}

/// How many attempts a request gets: the model's `max_attempts`, less the attempts its
/// ineligible targets would have had, but at least one an eligible target.
pub fn attempt_count(max_attempts: usize, targets: usize, eligible: usize) -> usize {
    max_attempts.min(eligible.max(max_attempts.saturating_sub(targets - eligible.min(targets))))
}

/// The order of attempts: the healthy targets (see [`plan`]) arranged by `strategy`, then
/// repeated in turn up to `max_attempts`. `random` is uniform in [0, 1).
pub fn order(
    strategy: Strategy,
    candidates: &[Candidate],
    admission: impl Fn(usize) -> Admission,
    random: f64,
    max_attempts: usize,
) -> Vec<usize> {
    let mut healthy = plan(candidates.len(), &admission);
    match strategy {
        Strategy::Fallback | Strategy::Cascade => {}
        Strategy::Cost => healthy.sort_by(|&a, &b| candidates[a].cost.total_cmp(&candidates[b].cost)),
        Strategy::Weighted => {
            let total: u64 = healthy.iter().map(|&i| u64::from(candidates[i].weight)).sum();
            if total > 0 {
                let mut pick = (random.clamp(0.0, 1.0) * total as f64) as u64;
                let position = healthy
                    .iter()
                    .position(|&i| {
                        let w = u64::from(candidates[i].weight);
                        if pick < w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .unwrap_or(healthy.len() - 1);
                let first = healthy.remove(position);
                healthy.insert(0, first);
            }
        }
        Strategy::Latency => {
            healthy.sort_by(|&a, &b| {
                candidates[a].latency_ms.unwrap_or(0.0).total_cmp(&candidates[b].latency_ms.unwrap_or(0.0))
            });
        }
    }
    if healthy.is_empty() {
        return healthy;
    }
    (0..max_attempts.max(1)).map(|k| healthy[k % healthy.len()]).collect()
}

/// The time one attempt starting at `now` has: to the vendor's first byte (`first_byte_ms`,
/// the route's or the provider's), and until its whole answer must be in (`now +
/// total_timeout_ms`), both cut to the request's `deadline`. `None`: the deadline has passed.
pub fn attempt_limits(
    first_byte_ms: u64,
    total_timeout_ms: Option<u64>,
    deadline: Option<u64>,
    now: u64,
) -> Option<(u64, Option<u64>)> {
    let total_until = total_timeout_ms.map(|t| now.saturating_add(t));
    match deadline {
        Some(d) if now >= d => None,
        Some(d) => Some((first_byte_ms.min(d - now), Some(total_until.map_or(d, |t| t.min(d))))),
        None => Some((first_byte_ms, total_until)),
    }
}

/// A cascade tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Simple,
    Complex,
}

/// The cascade's rule, in order: the client's hint (`x-switchyard-tier`) decides if given;
/// otherwise a request is complex if it has tools, images or a JSON schema to follow, asks for
/// medium or high reasoning effort, or its prompt is over `max_simple_tokens`; else simple.
/// Returns the tier and the reason, for the `x-switchyard-cascade` header.
pub fn classify(
    needs: &crate::catalog::Needs,
    reasoning_effort: Option<&str>,
    hint: Option<Tier>,
    max_simple_tokens: u64,
) -> (Tier, &'static str) {
    if let Some(tier) = hint {
        return (tier, "hint");
    }
    if needs.tools {
        (Tier::Complex, "tools")
    } else if needs.vision {
        (Tier::Complex, "images")
    } else if needs.json {
        (Tier::Complex, "json")
    } else if matches!(reasoning_effort, Some("medium" | "high")) {
        (Tier::Complex, "reasoning")
    } else if needs.prompt_tokens > max_simple_tokens {
        (Tier::Complex, "long prompt")
    } else {
        (Tier::Simple, "short prompt")
    }
}

/// The indices of `targets` to try, in order: every target whose health admits an attempt now,
/// in the configured order. When none does, none: a vendor whose breaker is open (or who asked
/// for time) gets no calls until its cooldown ends and the half-open probe goes, so a model
/// whose every target is out answers at once with when to come back, rather than sending
/// every request to the one back first.
pub fn plan(targets: usize, admission: impl Fn(usize) -> Admission) -> Vec<usize> {
    (0..targets).filter(|&i| !matches!(admission(i), Admission::Reject { .. })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiered(tiers: &[Option<Tier>]) -> Vec<crate::config::Target> {
        tiers
            .iter()
            .enumerate()
            .map(|(i, &tier)| crate::config::Target {
                provider: 0,
                model: format!("m{i}"),
                weight: 1,
                tier,
                limits: Default::default(),
            })
            .collect()
    }

    #[test]
    fn eligibility_keeps_what_serves_and_the_cascades_tier() {
        let targets = tiered(&[Some(Tier::Complex), Some(Tier::Simple), Some(Tier::Complex), Some(Tier::Simple)]);
        assert_eq!(eligible(&targets, |_| true, None), [0, 1, 2, 3]);
        assert_eq!(eligible(&targets, |i| i != 2, None), [0, 1, 3]);
        assert_eq!(eligible(&targets, |_| true, Some(Tier::Complex)), [0, 2]);
        assert_eq!(eligible(&targets, |_| true, Some(Tier::Simple)), [1, 3, 0, 2]);
        assert_eq!(eligible(&targets, |i| i != 1, Some(Tier::Simple)), [3, 0, 2]);
        assert!(eligible(&targets, |_| false, None).is_empty());
    }

    #[test]
    fn attempts_shrink_with_the_targets_left_out() {
        // Three targets, one attempt each: one left out, two attempts.
        assert_eq!(attempt_count(3, 3, 2), 2);
        // Retries of a single target are kept.
        assert_eq!(attempt_count(3, 1, 1), 3);
        // Never fewer than the eligible targets, never more than the model allows.
        assert_eq!(attempt_count(2, 4, 3), 2);
        assert_eq!(attempt_count(5, 4, 1), 2);
        assert_eq!(attempt_count(4, 4, 0), 0);
    }

    #[test]
    fn admitted_targets_keep_their_order_and_rejected_ones_are_skipped() {
        let states = [Admission::Reject { until_ms: 9 }, Admission::Allow, Admission::Probe];
        assert_eq!(plan(3, |i| states[i]), [1, 2]);
    }

    #[test]
    fn when_every_target_is_out_none_is_tried() {
        let states =
            [Admission::Reject { until_ms: 9 }, Admission::Reject { until_ms: 5 }, Admission::Reject { until_ms: 7 }];
        assert!(plan(3, |i| states[i]).is_empty());
    }

    fn candidates(weights: &[u32], latencies: &[Option<f64>]) -> Vec<Candidate> {
        weights
            .iter()
            .zip(latencies)
            .map(|(&weight, &latency_ms)| Candidate { weight, latency_ms, cost: 0.0 })
            .collect()
    }

    #[test]
    fn fallback_keeps_the_configured_order_and_max_attempts_repeats_it() {
        let c = candidates(&[1, 1], &[None, None]);
        assert_eq!(order(Strategy::Fallback, &c, |_| Admission::Allow, 0.9, 2), [0, 1]);
        assert_eq!(order(Strategy::Fallback, &c, |_| Admission::Allow, 0.9, 5), [0, 1, 0, 1, 0]);
        assert_eq!(order(Strategy::Fallback, &c, |_| Admission::Allow, 0.9, 1), [0]);
    }

    #[test]
    fn weighted_picks_the_first_by_weight_among_the_healthy_and_keeps_the_rest_as_fallbacks() {
        let c = candidates(&[1, 3, 6], &[None, None, None]);
        let all = |_| Admission::Allow;
        assert_eq!(order(Strategy::Weighted, &c, all, 0.05, 3), [0, 1, 2]);
        assert_eq!(order(Strategy::Weighted, &c, all, 0.15, 3), [1, 0, 2]);
        assert_eq!(order(Strategy::Weighted, &c, all, 0.45, 3), [2, 0, 1]);
        assert_eq!(order(Strategy::Weighted, &c, all, 0.999, 3), [2, 0, 1]);
        // Target 2 is out: its weight is not drawn.
        let no_two = |i| if i == 2 { Admission::Reject { until_ms: 9 } } else { Admission::Allow };
        assert_eq!(order(Strategy::Weighted, &c, no_two, 0.5, 2), [1, 0]);
        // Over many draws, first attempts follow the weights.
        let mut firsts = [0u32; 3];
        for k in 0..1000 {
            firsts[order(Strategy::Weighted, &c, all, f64::from(k) / 1000.0, 1)[0]] += 1;
        }
        assert_eq!(firsts, [100, 300, 600]);
    }

    #[test]
    fn latency_puts_the_fastest_first_and_unmeasured_targets_before_measured_ones() {
        let c = candidates(&[1, 1, 1], &[Some(300.0), Some(80.0), None]);
        assert_eq!(order(Strategy::Latency, &c, |_| Admission::Allow, 0.0, 3), [2, 1, 0]);
        let c = candidates(&[1, 1], &[Some(300.0), Some(80.0)]);
        assert_eq!(order(Strategy::Latency, &c, |_| Admission::Allow, 0.0, 2), [1, 0]);
    }

    #[test]
    fn cost_puts_the_cheapest_first() {
        let mut c = candidates(&[1, 1, 1], &[None, None, None]);
        c[0].cost = 0.3;
        c[1].cost = 0.01;
        c[2].cost = 0.2;
        assert_eq!(order(Strategy::Cost, &c, |_| Admission::Allow, 0.0, 3), [1, 2, 0]);
    }

    #[test]
    fn deadline_arithmetic() {
        // No deadline: the route's limits as they are.
        assert_eq!(attempt_limits(1_500, None, None, 1_000), Some((1_500, None)));
        assert_eq!(attempt_limits(1_500, Some(5_000), None, 1_000), Some((1_500, Some(6_000))));
        // A deadline cuts both to what is left.
        assert_eq!(attempt_limits(1_500, None, Some(1_800), 1_000), Some((800, Some(1_800))));
        assert_eq!(attempt_limits(1_500, Some(300), Some(1_800), 1_000), Some((800, Some(1_300))));
        assert_eq!(attempt_limits(500, Some(5_000), Some(9_000), 1_000), Some((500, Some(6_000))));
        // Past the deadline there is no attempt.
        assert_eq!(attempt_limits(1_500, None, Some(1_000), 1_000), None);
        assert_eq!(attempt_limits(1_500, None, Some(900), 1_000), None);
    }

    #[test]
    fn the_cascade_rule() {
        use crate::catalog::Needs;
        let plain = Needs { prompt_tokens: 100, ..Needs::default() };
        assert_eq!(classify(&plain, None, None, 2_000), (Tier::Simple, "short prompt"));
        assert_eq!(
            classify(&Needs { prompt_tokens: 2_001, ..plain }, None, None, 2_000),
            (Tier::Complex, "long prompt")
        );
        assert_eq!(classify(&Needs { tools: true, ..plain }, None, None, 2_000).0, Tier::Complex);
        assert_eq!(classify(&Needs { vision: true, ..plain }, None, None, 2_000).0, Tier::Complex);
        assert_eq!(classify(&Needs { json: true, ..plain }, None, None, 2_000).0, Tier::Complex);
        assert_eq!(classify(&plain, Some("high"), None, 2_000).0, Tier::Complex);
        assert_eq!(classify(&plain, Some("low"), None, 2_000).0, Tier::Simple);
        assert_eq!(classify(&Needs { tools: true, ..plain }, None, Some(Tier::Simple), 2_000), (Tier::Simple, "hint"));
    }

    #[test]
    fn when_every_target_is_out_there_is_no_attempt() {
        let c = candidates(&[1, 1], &[None, None]);
        let out = |i| Admission::Reject { until_ms: 10 - i as u64 };
        assert!(order(Strategy::Fallback, &c, out, 0.0, 4).is_empty());
        let half_open = |i| if i == 1 { Admission::Probe } else { Admission::Reject { until_ms: 10 } };
        assert_eq!(order(Strategy::Fallback, &c, half_open, 0.0, 4), [1, 1, 1, 1]);
    }

    #[test]
    fn no_targets_no_plan() {
        assert!(plan(0, |_| Admission::Allow).is_empty());
    }
}
