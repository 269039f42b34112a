//! This isolate's view of target health: the records of the `ProviderHealth` Durable Object,
//! no more than a couple of seconds old, with this isolate's own outcomes folded in at once.
//! The request path reads it without waiting: the copy is refreshed after responses, with
//! `ctx.wait_until`.

use crate::provider_health;
use std::cell::RefCell;
use std::collections::HashMap;
use switchyard_core::breaker::{Admission, BreakerPolicy};
use switchyard_core::health::{Completion, Outcome, RefreshClaim, TargetHealth};
use worker::Env;

/// How old the copy may grow before a refresh is started.
const FRESH_MS: u64 = 2_000;
/// How long a refresh may take before it is given up (and another may be claimed): a snapshot
/// that never comes must not freeze this isolate's view.
const REFRESH_TIMEOUT_MS: u64 = 5_000;

#[derive(Default)]
struct View {
    targets: HashMap<String, TargetHealth>,
    fetched_at_ms: u64,
    refresh: RefreshClaim,
    /// Completions not yet sent to the Durable Object: they go with the next report.
    completions: Vec<Completion>,
}

thread_local! {
    static VIEW: RefCell<View> = RefCell::new(View::default());
}

/// Whether `target` may be tried now, without taking a half-open probe slot.
pub fn peek(target: &str, policy: &BreakerPolicy, now_ms: u64) -> Admission {
    VIEW.with(|v| v.borrow().targets.get(target).map_or(Admission::Allow, |h| h.peek(policy, now_ms)))
}

/// The target's recent latency (moving average), if it was measured.
pub fn latency(target: &str) -> Option<f64> {
    VIEW.with(|v| v.borrow().targets.get(target).filter(|h| h.successes + h.failures > 0).map(|h| h.latency_ewma_ms))
}

/// As `peek`, taking the probe slot when this attempt is the probe.
pub fn admit(target: &str, policy: &BreakerPolicy, now_ms: u64) -> Admission {
    VIEW.with(|v| {
        let mut view = v.borrow_mut();
        match view.targets.get_mut(target) {
            Some(health) => health.admit(policy, now_ms),
            None => Admission::Allow,
        }
    })
}

/// Folds this isolate's outcomes in at once, before the Durable Object has them.
pub fn record(policy: &BreakerPolicy, outcomes: &[Outcome]) {
    VIEW.with(|v| {
        let mut view = v.borrow_mut();
        for outcome in outcomes {
            view.targets
                .entry(outcome.target.clone())
                .or_insert_with(|| TargetHealth::new(&outcome.target))
                .record(policy, outcome);
        }
    });
}

/// Folds in how long a whole answer took, and keeps it for the next report.
pub fn complete(target: &str, total_ms: f64) {
    let completion = Completion { target: target.to_owned(), total_ms, at_ms: worker::Date::now().as_millis() };
    VIEW.with(|v| {
        let mut view = v.borrow_mut();
        view.targets
            .entry(completion.target.clone())
            .or_insert_with(|| TargetHealth::new(target))
            .complete(&completion);
        view.completions.push(completion);
    });
}

/// The completions not yet reported.
pub fn take_completions() -> Vec<Completion> {
    VIEW.with(|v| std::mem::take(&mut v.borrow_mut().completions))
}

/// Whether the copy is older than it may be, and no refresh is under way (which this claims).
/// A claim older than `REFRESH_TIMEOUT_MS` is taken as abandoned.
pub fn claim_refresh(now_ms: u64) -> bool {
    VIEW.with(|v| {
        let mut view = v.borrow_mut();
        let fetched_at_ms = view.fetched_at_ms;
        view.refresh.claim(now_ms, fetched_at_ms, FRESH_MS, REFRESH_TIMEOUT_MS)
    })
}

/// Frees the refresh claim however the refresh ends: done, failed, timed out, or dropped
/// unfinished (the runtime may cancel work left after a response).
struct Claim(Option<u64>);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(claimed_ms) = self.0 {
            VIEW.with(|v| v.borrow_mut().refresh.release(claimed_ms));
        }
    }
}

/// Replaces the copy with the Durable Object's records, keeping a local record that is newer
/// than the shared one (an outcome the object has not folded in yet). Given up after
/// `REFRESH_TIMEOUT_MS`: the copy then stays as it was, and the next response tries again.
pub async fn refresh(env: &Env) {
    let _claim = Claim(VIEW.with(|v| v.borrow().refresh.since_ms()));
    let fetched = crate::upstream::within(REFRESH_TIMEOUT_MS, provider_health::snapshot_records(env))
        .await
        .unwrap_or_else(|| Err(worker::Error::RustError(format!("no snapshot within {REFRESH_TIMEOUT_MS} ms"))));
    let now_ms = worker::Date::now().as_millis();
    VIEW.with(|v| {
        let mut view = v.borrow_mut();
        let records = match fetched {
            Ok(records) => records,
            Err(e) => {
                worker::console_error!("provider health: snapshot failed: {e}");
                return;
            }
        };
        view.fetched_at_ms = now_ms;
        for shared in records {
            match view.targets.get(&shared.target) {
                Some(local) if local.updated_at_ms > shared.updated_at_ms => {}
                _ => {
                    view.targets.insert(shared.target.clone(), shared);
                }
            }
        }
    });
}
