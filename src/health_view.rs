//! This isolate's view of target health: the records of the `ProviderHealth` Durable Objects
//! (one of `health::HEALTH_SHARDS` a target), no more than a couple of seconds old, with this
//! isolate's own outcomes folded in at once. The request path reads it without waiting: the
//! copy of each shard that keeps a configured target is refreshed after responses, with
//! `ctx.wait_until`, at most `MAX_FANOUT` shards a response (the stalest first), so that no
//! response waits on every shard.

use crate::provider_health;
use std::cell::RefCell;
use std::collections::HashMap;
use switchyard_core::breaker::{Admission, BreakerPolicy};
use switchyard_core::config::Config;
use switchyard_core::health::{self, Completion, Outcome, RefreshClaim, TargetHealth};
use worker::Env;

/// How old the copy may grow before a refresh is started.
const FRESH_MS: u64 = 2_000;
/// How long a refresh may take before it is given up (and another may be claimed): a snapshot
/// that never comes must not freeze this isolate's view.
const REFRESH_TIMEOUT_MS: u64 = 5_000;
/// The most shards one response refreshes.
const MAX_FANOUT: usize = 4;

/// This isolate's copy of one shard's records: when it was fetched, and its refresh under way.
#[derive(Default)]
struct Shard {
    fetched_at_ms: u64,
    refresh: RefreshClaim,
}

#[derive(Default)]
struct View {
    targets: HashMap<String, TargetHealth>,
    /// The shards that keep the configured targets (the configuration is read once an isolate).
    shards: Option<Vec<(String, Shard)>>,
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

/// The shards whose copy is older than it may be and whose refresh this claims (no refresh of
/// theirs under way), the stalest first, `MAX_FANOUT` at most. A claim older than
/// `REFRESH_TIMEOUT_MS` is taken as abandoned.
pub fn claim_refresh(config: &Config, now_ms: u64) -> Vec<String> {
    VIEW.with(|v| {
        let mut view = v.borrow_mut();
        let shards = view.shards.get_or_insert_with(|| {
            let mut names: Vec<String> = config
                .models
                .iter()
                .flat_map(|m| m.targets.iter())
                .map(|t| health::shard_of(&crate::attempts::describe(config, t)))
                .collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|name| (name, Shard::default())).collect()
        });
        let mut stale: Vec<usize> = (0..shards.len()).collect();
        stale.sort_by_key(|&i| shards[i].1.fetched_at_ms);
        let mut claimed = Vec::new();
        for i in stale {
            if claimed.len() == MAX_FANOUT {
                break;
            }
            let (name, shard) = &mut shards[i];
            if shard.refresh.claim(now_ms, shard.fetched_at_ms, FRESH_MS, REFRESH_TIMEOUT_MS) {
                claimed.push(name.clone());
            }
        }
        claimed
    })
}

/// Frees a shard's refresh claim however the refresh ends: done, failed, timed out, or dropped
/// unfinished (the runtime may cancel work left after a response).
struct Claim<'a>(&'a str, Option<u64>);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(claimed_ms) = self.1 {
            with_shard(self.0, |shard| shard.refresh.release(claimed_ms));
        }
    }
}

fn with_shard<T>(name: &str, f: impl FnOnce(&mut Shard) -> T) -> Option<T> {
    VIEW.with(|v| {
        let mut view = v.borrow_mut();
        let shards = view.shards.as_mut()?;
        shards.iter_mut().find(|(n, _)| n == name).map(|(_, shard)| f(shard))
    })
}

/// Replaces the copy of each of `shards` (claimed by `claim_refresh`) with its Durable Object's
/// records, keeping a local record that is newer than the shared one (an outcome the object has
/// not folded in yet). All at once, each given up after `REFRESH_TIMEOUT_MS`: a shard's copy
/// then stays as it was, and a later response tries again.
pub async fn refresh(env: &Env, shards: Vec<String>) {
    futures::future::join_all(shards.iter().map(|name| refresh_shard(env, name))).await;
}

async fn refresh_shard(env: &Env, name: &str) {
    let _claim = Claim(name, with_shard(name, |shard| shard.refresh.since_ms()).flatten());
    let fetched = crate::upstream::within(REFRESH_TIMEOUT_MS, provider_health::snapshot_of(env, name))
        .await
        .unwrap_or_else(|| Err(worker::Error::RustError(format!("no snapshot within {REFRESH_TIMEOUT_MS} ms"))));
    let records = match fetched {
        Ok(records) => records,
        Err(e) => {
            worker::console_error!("provider health {name}: snapshot failed: {e}");
            return;
        }
    };
    let now_ms = worker::Date::now().as_millis();
    with_shard(name, |shard| shard.fetched_at_ms = now_ms);
    VIEW.with(|v| {
        let mut view = v.borrow_mut();
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
