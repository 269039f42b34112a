//! Before a call: the key's policy, its rate limits and budgets, and the gateway's budgets, each
//! in its `Ledger` instance (at the same time), which holds the most the call can cost. After
//! the call (off the hot path): the real cost from the vendor's usage is settled, the rest of
//! the hold freed, the usage row written; a call that failed frees everything it held.
//!
//! Every call gets an id when it is admitted: the id of its hold in each instance and of its
//! usage row, under which each is applied once however often it is sent. A hold expires on its
//! own (the call's time limit and a grace, else `HOLD_TTL_MS`); a call that runs longer keeps
//! it by renewing it (`Renewal`), which `settle` does while a stream runs.

use crate::http::Rejection;
use crate::ledger::{self, Admit, Answer, Batch, Renew, Settle, GATEWAY};
use crate::outbox;
use futures::channel::oneshot;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use switchyard_core::chat::Usage;
use switchyard_core::config::Config;
use switchyard_core::keys::{KeyRecord, Source};
use switchyard_core::ledger::{Ask, UsageRow};
use switchyard_core::ratelimit::RateLimits;
use switchyard_core::settlement;
use switchyard_core::GatewayError;
use worker::{Date, Env};

/// The most a call can cost, and the tokens it counts against a per-minute limit on admission
/// (its prompt and the output the client allows; corrected by the real count afterwards).
#[derive(Debug, Clone, Copy, Default)]
pub struct Estimate {
    pub amount_usd: f64,
    pub tokens: u64,
}

/// What a call holds in the ledgers, and the headers its answer carries (what is left of the
/// rate limits, budget warnings). Dropped before it is settled (the client went away while the
/// call was made), it frees what it holds.
#[derive(Debug)]
pub struct Admission {
    /// The call's id: its holds' in every instance, and its usage row's.
    call_id: String,
    /// Its holds, and their renewal.
    renewal: Renewal,
    /// What was held: charged when the vendor reports no usage.
    estimate: Estimate,
    pub headers: Vec<(String, String)>,
    /// Set once a vendor was sent the call: from then on it may bill, whatever becomes of it.
    dispatched: Rc<Cell<bool>>,
}

impl Admission {
    /// `call`'s output, the holds renewed as they fall due while it runs.
    pub async fn keep_while<F: Future>(&self, call: F) -> F::Output {
        self.renewal.keep_while(call).await
    }
}

impl Admission {
    /// Set when the call is sent to a vendor (see `dispatched`).
    pub fn dispatch_flag(&self) -> Rc<Cell<bool>> {
        self.dispatched.clone()
    }
}

/// Dropped unsettled: before any vendor was called (refused, or the client left early), the
/// holds are freed; after (the client left while the vendor answered, which it bills), the
/// call is charged what was held.
impl Drop for Admission {
    fn drop(&mut self) {
        let ended_ms = Date::now().as_millis();
        let dispatched = self.dispatched.get();
        let cost_usd = if dispatched { self.estimate.amount_usd } else { 0.0 };
        for kept in self.renewal.take() {
            let settle = Settle {
                hold_id: kept.hold_id,
                released: !dispatched,
                cost_usd,
                tokens: if dispatched { self.estimate.tokens } else { 0 },
                ended_ms,
            };
            outbox::settle(&kept.instance, settle);
        }
    }
}

/// A call's hold in one instance, and when that instance frees it unless told the call still
/// runs.
#[derive(Debug, Clone)]
struct Kept {
    instance: String,
    hold_id: String,
    until_ms: u64,
}

/// The holds of a call in flight, shared by its `Admission` and by whatever keeps the call
/// going. Cheap to clone; once the call is settled or released there is nothing left to renew,
/// and renewing is a no-op.
///
/// While the call runs, call `renew_if_due` now and then (each chunk of a stream is fine: it
/// does nothing, and no I/O, until a renewal is due, two thirds into a hold's term), or run the
/// call under `keep_while`, which wakes up when one is due.
#[derive(Debug, Clone)]
pub struct Renewal(Rc<Holds>);

#[derive(Debug)]
struct Holds {
    env: Env,
    /// How long each renewal keeps the holds: the call's own hold time.
    ttl_ms: u64,
    kept: RefCell<Vec<Kept>>,
    /// A renewal is under way (from any of the handles).
    renewing: Cell<bool>,
    /// After a renewal that failed, not before this.
    retry_at_ms: Cell<u64>,
}

/// After a renewal failed, the wait before the next try.
const RENEW_RETRY_MS: u64 = 30_000;

impl Renewal {
    fn new(env: &Env, ttl_ms: u64) -> Self {
        Self(Rc::new(Holds {
            env: env.clone(),
            ttl_ms,
            kept: RefCell::new(Vec::new()),
            renewing: Cell::new(false),
            retry_at_ms: Cell::new(0),
        }))
    }

    fn push(&self, kept: Kept) {
        self.0.kept.borrow_mut().push(kept);
    }

    /// The holds, for their settlement or release: none are left to renew.
    fn take(&self) -> Vec<Kept> {
        std::mem::take(&mut *self.0.kept.borrow_mut())
    }

    /// Ms from `now_ms` until a renewal is due (0: now); `None`: nothing to renew.
    pub fn renew_before(&self, now_ms: u64) -> Option<u64> {
        let due = self.0.kept.borrow().iter().map(|k| settlement::renew_due_ms(k.until_ms, self.0.ttl_ms)).min()?;
        Some(due.max(self.0.retry_at_ms.get()).saturating_sub(now_ms))
    }

    /// Renews the holds that are due: each then expires the call's hold time from now. Returns
    /// at once when none is due or a renewal is under way. A renewal that fails is tried again
    /// `RENEW_RETRY_MS` later (the hold's last third leaves time for several); a hold its
    /// instance no longer has (freed by the sweep) is not renewed again, and its settlement
    /// still counts the cost once.
    pub async fn renew_if_due(&self) {
        let now = Date::now().as_millis();
        if self.renew_before(now) != Some(0) || self.0.renewing.replace(true) {
            return;
        }
        struct Renewing<'a>(&'a Cell<bool>);
        impl Drop for Renewing<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _renewing = Renewing(&self.0.renewing);
        let due: Vec<Kept> = self
            .0
            .kept
            .borrow()
            .iter()
            .filter(|k| settlement::renew_due_ms(k.until_ms, self.0.ttl_ms) <= now)
            .cloned()
            .collect();
        let ttl_ms = Some(self.0.ttl_ms);
        let env = &self.0.env;
        let answers = futures::future::join_all(due.iter().map(|k| async move {
            let renew = Renew { hold_ids: vec![k.hold_id.clone()], ttl_ms };
            (k, ledger::renew(env, &k.instance, &renew).await)
        }))
        .await;
        let mut failed = false;
        let mut kept = self.0.kept.borrow_mut();
        for (asked, answer) in answers {
            let Some(held) = kept.iter_mut().find(|k| k.instance == asked.instance && k.hold_id == asked.hold_id)
            else {
                continue; // settled meanwhile
            };
            match answer {
                Ok(renewed) => {
                    held.until_ms = match renewed.renewed.iter().find(|(id, _)| *id == held.hold_id) {
                        Some(&(_, until_ms)) => until_ms,
                        None => {
                            worker::console_error!(
                                "ledger {}: hold {} was freed while its call ran",
                                held.instance,
                                held.hold_id
                            );
                            u64::MAX
                        }
                    };
                }
                Err(e) => {
                    worker::console_error!("ledger {}: renewal failed, tried again shortly: {e}", held.instance);
                    failed = true;
                }
            }
        }
        if failed {
            self.0.retry_at_ms.set(now + RENEW_RETRY_MS);
        }
    }

    /// `call`'s output, the holds renewed as they fall due while it runs (a timer set for the
    /// next renewal, none when there is nothing to renew).
    pub async fn keep_while<F: Future>(&self, call: F) -> F::Output {
        futures::pin_mut!(call);
        loop {
            // At least a second apart: another handle may be renewing.
            let Some(wait_ms) = self.renew_before(Date::now().as_millis()).map(|ms| ms.max(1_000)) else {
                return call.await;
            };
            if let Some(output) = crate::upstream::within(wait_ms, &mut call).await {
                return output;
            }
            // Due: the renewal runs beside the call, which is polled all the while (a stream's
            // reads and an attempt's timers do not wait on the ledger).
            let renewal = self.renew_if_due();
            futures::pin_mut!(renewal);
            if let futures::future::Either::Left((output, _)) = futures::future::select(&mut call, renewal).await {
                return output;
            }
        }
    }
}

/// The usage of an answer: known with it, or at the end of its stream.
pub enum Metered {
    Now(Option<Usage>),
    AtEnd(oneshot::Receiver<StreamEnd>),
}

/// How a stream ended, for its cost: the usage the vendor reported, and whether the vendor
/// finished its answer (its end event) or the stream was left early (the client went away, the
/// vendor broke off).
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamEnd {
    pub usage: Option<Usage>,
    pub complete: bool,
}

/// Who answered a call, and what it used.
pub struct Answered {
    pub provider: String,
    pub vendor_model: String,
    pub metered: Metered,
}

/// How long `models`' call may hold: its first model's time limit (with more than one model,
/// the client's fallbacks, as many attempts as a request may make) and the grace for its
/// settlement, else `HOLD_TTL_MS`.
fn hold_ttl_ms(config: &Config, models: &[&str]) -> u64 {
    const MOST_ATTEMPTS: usize = 16;
    let limit = models.first().and_then(|name| config.model(name)).and_then(|model| {
        let attempts = if models.len() > 1 { MOST_ATTEMPTS } else { model.max_attempts };
        settlement::call_limit_ms(model.deadline_ms, model.total_timeout_ms, attempts)
    });
    settlement::hold_ttl_ms(limit)
}

/// A new call's id.
fn call_id() -> String {
    let id = crate::http::request_id();
    format!("call_{}", id.strip_prefix("req_").unwrap_or(&id))
}

/// Takes on a call of `key` to `models` (names or aliases), or refuses it: 401 for a revoked or
/// expired key, 403 for a model the key may not use, 429 past a rate limit or a budget, 503
/// when a ledger gives no answer (an error, or none within `ledger::TIMEOUT_MS`).
pub async fn admit(
    env: &Env,
    config: &Config,
    key: &KeyRecord,
    models: &[&str],
    estimate: Estimate,
) -> Result<Admission, Rejection> {
    let now = Date::now().as_millis();
    key.check(config, models, now)?;
    // A key made by the admin API is always asked of its instance, which holds its record as
    // last written: a revocation there is in force at once, wherever the call arrives.
    let key_scope = key.source == Source::Api || !key.policy.budgets.is_empty() || !key.policy.rate_limits.is_empty();
    let gateway_scope = !config.budgets.is_empty();
    let call_id = call_id();
    let ttl_ms = hold_ttl_ms(config, models);
    let ask =
        Ask { caps: vec![], limits: RateLimits::default(), amount_usd: estimate.amount_usd, tokens: estimate.tokens };
    let key_admit = Admit {
        ask: ask.clone(),
        record: Some(key.clone()),
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        hold_id: Some(call_id.clone()),
        ttl_ms: Some(ttl_ms),
    };
    let gateway_admit = Admit {
        ask: Ask { caps: config.budgets.clone(), ..ask },
        record: None,
        models: vec![],
        hold_id: Some(call_id.clone()),
        ttl_ms: Some(ttl_ms),
    };
    let (by_key, by_gateway) = futures::join!(
        async {
            if key_scope {
                Some(ledger::admit(env, &key.id, &key_admit, true).await)
            } else {
                None
            }
        },
        async {
            if gateway_scope {
                Some(ledger::admit(env, GATEWAY, &gateway_admit, true).await)
            } else {
                None
            }
        },
    );

    let renewal = Renewal::new(env, ttl_ms);
    let mut admission = Admission { call_id, renewal, estimate, headers: Vec::new(), dispatched: Rc::default() };
    let mut rejection: Option<Rejection> = None;
    // Instances that did not answer: they may hold the call all the same.
    let mut unanswered: Vec<&str> = Vec::new();
    for (instance, answer) in [(key.id.as_str(), by_key), (GATEWAY, by_gateway)] {
        let whose = if instance == GATEWAY { "the gateway".to_owned() } else { format!("key `{}`", key.name) };
        match answer {
            None => {}
            Some(Err(e)) => {
                unanswered.push(instance);
                rejection = rejection.or(Some(ledger::unavailable(e).into()));
            }
            Some(Ok(Answer::Admitted { hold_id, admitted, until_ms })) => {
                if let Some(hold_id) = hold_id {
                    let until_ms = until_ms.unwrap_or(now + ttl_ms);
                    admission.renewal.push(Kept { instance: instance.to_owned(), hold_id, until_ms });
                }
                for (name, value) in admitted.headers() {
                    // Both the key's and the gateway's budgets may warn: one header, both warnings.
                    match admission.headers.iter_mut().find(|(n, _)| n == name) {
                        Some((_, existing)) => *existing = format!("{existing}; {value}"),
                        None => admission.headers.push((name.to_owned(), value)),
                    }
                }
            }
            Some(Ok(Answer::Refused { refusal })) => {
                let (error, headers) = refusal.to_error(&whose, now);
                rejection = rejection.or(Some(Rejection { error, headers }));
            }
            Some(Ok(Answer::Denied { record })) => {
                let error =
                    record.check(config, models, now).err().unwrap_or_else(|| GatewayError::invalid_api_key(true));
                rejection = rejection.or(Some(error.into()));
            }
        }
    }
    match rejection {
        Some(rejection) => {
            // An instance that did not answer may have held the call (or may yet): released by
            // the call's id with the outbox's next batch, which also stops an admission still on
            // its way from holding anything.
            for instance in unanswered {
                outbox::settle(
                    instance,
                    Settle { hold_id: admission.call_id.clone(), released: true, ended_ms: now, ..Settle::default() },
                );
            }
            // One ledger refused what another took on: that hold is freed now, not with a later
            // request's batch (this isolate may see no other request for a while).
            let releases = admission.renewal.take().into_iter().map(|kept| async move {
                let release = Settle { hold_id: kept.hold_id, released: true, ended_ms: now, ..Settle::default() };
                let batch = Batch { settles: vec![release], usage: vec![] };
                if let Err(e) = ledger::settle(env, &kept.instance, &batch).await {
                    worker::console_error!("ledger {}: release failed, left to the hold's expiry: {e}", kept.instance);
                }
            });
            futures::future::join_all(releases).await;
            Err(rejection)
        }
        None => Ok(admission),
    }
}

/// The call failed (every attempt ended in an error, which vendors do not bill): everything it
/// held is freed (by the outbox's next batch).
pub fn release(admission: Admission) {
    admission.dispatched.set(false);
    drop(admission);
}

/// The call was answered: its real cost (the catalog's price of the usage the vendor reported)
/// is settled everywhere it held, and its usage row goes to the gateway's ledger (both by the
/// outbox's next batch). While a stream runs, its holds are renewed as they fall due.
/// A call whose vendor reported no usage (or a stream the client left before its usage came)
/// is charged what was held for it: the most it could have cost.
pub async fn settle(config: &Config, key: &KeyRecord, admission: Admission, answered: Answered) {
    let ended = match answered.metered {
        Metered::Now(usage) => StreamEnd { usage, complete: true },
        Metered::AtEnd(receiver) => admission.keep_while(receiver).await.unwrap_or_default(),
    };
    let usage = ended.usage;
    let cost_usd = settlement::charge_usd(
        usage.map(|u| config.model_info(&answered.vendor_model).cost(&u)),
        ended.complete,
        admission.estimate.amount_usd,
    );
    let tokens = usage.map_or(0, |u| u.prompt_tokens + u.completion_tokens);
    let ended_ms = Date::now().as_millis();
    let row = UsageRow {
        minute_ms: ended_ms,
        key_id: key.id.clone(),
        key_name: key.name.clone(),
        model: answered.vendor_model,
        provider: answered.provider,
        tags: serde_json::to_string(&key.policy.tags).unwrap_or_else(|_| "{}".to_owned()),
        requests: 1,
        prompt_tokens: usage.map_or(0, |u| u.prompt_tokens),
        completion_tokens: usage.map_or(0, |u| u.completion_tokens),
        cost_usd,
        call_id: admission.call_id.clone(),
    };
    for kept in admission.renewal.take() {
        outbox::settle(&kept.instance, Settle { hold_id: kept.hold_id, cost_usd, tokens, released: false, ended_ms });
    }
    outbox::usage(row);
}

/// Whether a target is within its vendor's own limits (`rpm`, `tpm`) for one more call of
/// `tokens`; `Err` holds the wait until it will be. A ledger that cannot be reached (or does not
/// answer within `ledger::TIMEOUT_MS`) lets the call through: the vendor enforces its limits
/// anyway.
pub async fn take_target(env: &Env, name: &str, limits: RateLimits, tokens: u64) -> Result<(), u64> {
    let admit = Admit { ask: Ask { limits, tokens, ..Ask::default() }, ..Admit::default() };
    match ledger::admit(env, &format!("target:{name}"), &admit, false).await {
        Ok(Answer::Refused { refusal }) => Err(refusal.retry_after_ms(Date::now().as_millis())),
        Ok(_) => Ok(()),
        Err(e) => {
            worker::console_error!("ledger: target limit of {name} not checked: {e}");
            Ok(())
        }
    }
}
