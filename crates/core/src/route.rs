//! The plan of one request: which of a model's targets to try, in which order.

use crate::breaker::Admission;

/// The indices of `targets` to try, in order: every target whose health admits an attempt now,
/// in the configured order; when none does, the one whose wait (breaker cooldown or the
/// vendor's Retry-After) ends first, rather than failing at once.
pub fn plan(targets: usize, admission: impl Fn(usize) -> Admission) -> Vec<usize> {
    let mut allowed = Vec::with_capacity(targets);
    let mut soonest: Option<(u64, usize)> = None;
    for i in 0..targets {
        match admission(i) {
            Admission::Allow | Admission::Probe => allowed.push(i),
            Admission::Reject { until_ms } => {
                if soonest.is_none_or(|(best, _)| until_ms < best) {
                    soonest = Some((until_ms, i));
                }
            }
        }
    }
    if allowed.is_empty() {
        allowed.extend(soonest.map(|(_, i)| i));
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admitted_targets_keep_their_order_and_rejected_ones_are_skipped() {
        let states = [Admission::Reject { until_ms: 9 }, Admission::Allow, Admission::Probe];
        assert_eq!(plan(3, |i| states[i]), [1, 2]);
    }

    #[test]
    fn when_every_target_is_out_the_one_back_first_is_tried() {
        let states =
            [Admission::Reject { until_ms: 9 }, Admission::Reject { until_ms: 5 }, Admission::Reject { until_ms: 7 }];
        assert_eq!(plan(3, |i| states[i]), [1]);
    }

    #[test]
    fn no_targets_no_plan() {
        assert!(plan(0, |_| Admission::Allow).is_empty());
    }
}
