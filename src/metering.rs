//! Before a call: the key's policy, its rate limits and budgets, and the gateway's budgets,
//! each taken from this isolate's lease of its `Ledger` instance (`leases`; at the same time),
//! which holds the most the call can cost. After the call: the real cost from the vendor's
//! usage is settled into the leases, the rest of the hold freed, the usage row written (off the
//! hot path, by the outbox); a call that failed frees everything it held. The leases report
//! what their calls cost to their ledgers with their next refresh (`leases::maintain`).
//!
//! Every call gets an id when it is admitted: its usage row's, under which the gateway's ledger
//! applies it once however often it is sent.

use crate::http::Rejection;
use crate::leases::{self, Part, Refused};
use crate::ledger;
use crate::ledger::GATEWAY as GATEWAY_INSTANCE;
use crate::outbox;
use futures::channel::oneshot;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use switchyard_core::chat::Usage;
use switchyard_core::config::Config;
use switchyard_core::keys::{KeyRecord, Source};
use switchyard_core::lease::{Amounts, REFRESH_AFTER_MS};
use switchyard_core::ledger::UsageRow;
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

/// What a call holds in the leases, and the headers its answer carries (what is left of the
/// rate limits, budget warnings). Dropped before it is settled (the client went away while the
/// call was made), it frees what it holds.
pub struct Admission {
    /// The call's id: its usage row's.
    call_id: String,
    env: Env,
    /// What it took from each lease (the key's, the gateway's).
    parts: RefCell<Vec<Part>>,
    /// The ledger instances of those leases, kept alive while the call runs.
    instances: Vec<String>,
    /// What was held: charged when the vendor reports no usage.
    estimate: Estimate,
    pub headers: Vec<(String, String)>,
    /// Set once a vendor was sent the call: from then on it may bill, whatever becomes of it.
    dispatched: Rc<Cell<bool>>,
}

impl Admission {
    /// Set when the call is sent to a vendor (see `dispatched`).
    pub fn dispatch_flag(&self) -> Rc<Cell<bool>> {
        self.dispatched.clone()
    }

    /// `call`'s output; while it runs, the leases it holds part of are kept from lapsing (a
    /// refresh when one is due, beside the call, which is polled all the while).
    pub async fn keep_while<F: Future>(&self, call: F) -> F::Output {
        futures::pin_mut!(call);
        if self.instances.is_empty() {
            return call.await;
        }
        loop {
            if let Some(output) = crate::upstream::within(REFRESH_AFTER_MS, &mut call).await {
                return output;
            }
            let kept = leases::keep(&self.env, &self.instances);
            futures::pin_mut!(kept);
            if let futures::future::Either::Left((output, _)) = futures::future::select(&mut call, kept).await {
                return output;
            }
        }
    }

    /// Settles every part at `cost_usd` and `tokens`.
    fn settle_parts(&self, cost_usd: f64, tokens: u64) {
        for part in self.parts.take() {
            part.settle(cost_usd, tokens);
        }
    }
}

/// Dropped unsettled: before any vendor was called (refused, or the client left early), the
/// holds are freed; after (the client left while the vendor answered, which it bills), the
/// call is charged what was held.
impl Drop for Admission {
    fn drop(&mut self) {
        if self.dispatched.get() {
            self.settle_parts(self.estimate.amount_usd, self.estimate.tokens);
        } else {
            for part in self.parts.take() {
                part.release();
            }
        }
    }
}

/// The usage of an answer: known with it, or at the end of its stream.
pub enum Metered {
    Now(Option<Usage>),
    AtEnd(oneshot::Receiver<StreamEnd>),
    /// Media, priced by their endpoint (images, characters, minutes, or tokens at a media
    /// model's prices): the cost (`None`: not known, charged what was held) and the tokens for
    /// the usage row.
    Priced {
        cost_usd: Option<f64>,
        usage: Option<Usage>,
    },
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

/// A new call's id.
fn call_id() -> String {
    let id = crate::http::request_id();
    format!("call_{}", id.strip_prefix("req_").unwrap_or(&id))
}

/// Takes on a call of `key` to `models` (names or aliases), or refuses it: 401 for a revoked or
/// expired key, 403 for a model the key may not use, 429 past a rate limit or a budget, 503
/// when a ledger that had to be asked gives no answer (an error, or none within
/// `ledger::TIMEOUT_MS`).
pub async fn admit(
    env: &Env,
    config: &Config,
    key: &KeyRecord,
    models: &[&str],
    estimate: Estimate,
) -> Result<Admission, Rejection> {
    let now = Date::now().as_millis();
    key.check(config, models, now)?;
    // A key made by the admin API is always admitted through its instance's lease, whose
    // record (the instance's, as the admin API last wrote it) is checked at each refresh: a
    // revocation is in force within a lease's lifetime, wherever the call arrives.
    let key_scope = key.source == Source::Api || !key.policy.budgets.is_empty() || !key.policy.rate_limits.is_empty();
    let gateway_scope = !config.budgets.is_empty();
    let need = Amounts { usd: estimate.amount_usd, requests: 1, tokens: estimate.tokens };
    let key_part =
        leases::Scope { caps: key.policy.budgets.clone(), limits: key.policy.rate_limits, record: Some(key.clone()) };
    let gateway_part = leases::Scope { caps: config.budgets.clone(), ..leases::Scope::default() };
    let (by_key, by_gateway) = futures::join!(
        async {
            if key_scope {
                Some(leases::take(env, Some(config), &key.id, key_part, models, need).await)
            } else {
                None
            }
        },
        async {
            if gateway_scope {
                Some(leases::take(env, None, GATEWAY_INSTANCE, gateway_part, &[], need).await)
            } else {
                None
            }
        },
    );

    let mut admission = Admission {
        call_id: call_id(),
        env: env.clone(),
        parts: RefCell::new(Vec::new()),
        instances: Vec::new(),
        estimate,
        headers: Vec::new(),
        dispatched: Rc::default(),
    };
    let mut rejection: Option<Rejection> = None;
    for (instance, answer) in [(key.id.as_str(), by_key), (GATEWAY_INSTANCE, by_gateway)] {
        let whose = if instance == GATEWAY_INSTANCE { "the gateway".to_owned() } else { format!("key `{}`", key.name) };
        match answer {
            None => {}
            Some(Ok(part)) => {
                for (name, value) in part.headers() {
                    // Both the key's and the gateway's budgets may warn: one header, both warnings.
                    match admission.headers.iter_mut().find(|(n, _)| n == name) {
                        Some((_, existing)) => *existing = format!("{existing}; {value}"),
                        None => admission.headers.push((name.to_owned(), value)),
                    }
                }
                admission.parts.borrow_mut().push(part);
                admission.instances.push(instance.to_owned());
            }
            Some(Err(Refused::Limit(refusal))) => {
                let (error, headers) = refusal.to_error(&whose, now);
                rejection = rejection.or(Some(Rejection { error, headers }));
            }
            Some(Err(Refused::Denied(record))) => {
                let error =
                    record.check(config, models, now).err().unwrap_or_else(|| GatewayError::invalid_api_key(true));
                rejection = rejection.or(Some(error.into()));
            }
            Some(Err(Refused::Unavailable(e))) => {
                rejection = rejection.or(Some(ledger::unavailable(e).into()));
            }
        }
    }
    match rejection {
        // What one lease took while another refused goes back to it at once (the admission's
        // drop, before any vendor was called).
        Some(rejection) => Err(rejection),
        None => Ok(admission),
    }
}

/// A key made by the admin API, checked against its instance's record through its lease (no
/// wait while the lease lasts): for calls that use no model (listing models, reading stored
/// responses), so that a revocation holds there too.
pub async fn confirm(env: &Env, config: &Config, key: &KeyRecord) -> Result<(), GatewayError> {
    if key.source != Source::Api {
        return Ok(());
    }
    let scope =
        leases::Scope { caps: key.policy.budgets.clone(), limits: key.policy.rate_limits, record: Some(key.clone()) };
    match leases::take(env, Some(config), &key.id, scope, &[], Amounts::default()).await {
        Ok(part) => {
            part.release();
            Ok(())
        }
        Err(Refused::Denied(record)) => Err(record
            .check(config, &[], Date::now().as_millis())
            .err()
            .unwrap_or_else(|| GatewayError::invalid_api_key(true))),
        Err(Refused::Unavailable(e)) => Err(ledger::unavailable(e)),
        Err(Refused::Limit(_)) => Ok(()),
    }
}

/// The call failed (every attempt ended in an error, which vendors do not bill): everything it
/// held is freed.
pub fn release(admission: Admission) {
    admission.dispatched.set(false);
    drop(admission);
}

/// The call was answered: its real cost (the catalog's price of the usage the vendor reported)
/// is settled into every lease it took from (reported to their ledgers with their next
/// refresh), and its usage row goes to the gateway's ledger (by the outbox's next batch). A
/// stream's leases are kept from lapsing while it runs. A call whose vendor reported no usage
/// (or a stream the client left before its usage came) is charged what was held for it: the
/// most it could have cost.
pub async fn settle(config: &Config, key: &KeyRecord, admission: Admission, answered: Answered) {
    let (ended, priced) = match answered.metered {
        Metered::Now(usage) => (StreamEnd { usage, complete: true }, None),
        Metered::AtEnd(receiver) => (admission.keep_while(receiver).await.unwrap_or_default(), None),
        Metered::Priced { cost_usd, usage } => (StreamEnd { usage, complete: true }, Some(cost_usd)),
    };
    let usage = ended.usage;
    let usage_usd = match priced {
        Some(cost_usd) => cost_usd,
        None => usage.map(|u| config.model_info(&answered.vendor_model).cost(&u)),
    };
    let cost_usd = settlement::charge_usd(usage_usd, ended.complete, admission.estimate.amount_usd);
    let tokens = usage.map_or(admission.estimate.tokens, |u| u.prompt_tokens + u.completion_tokens);
    let row = UsageRow {
        minute_ms: Date::now().as_millis(),
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
    admission.settle_parts(cost_usd, tokens);
    outbox::usage(row);
}

/// Whether a target is within its vendor's own limits (`rpm`, `tpm`) for one more call of
/// `tokens`, taken from this isolate's lease of the target's ledger; `Err` holds the wait until
/// it will be. A ledger that cannot be reached (or does not answer within `ledger::TIMEOUT_MS`)
/// lets the call through: the vendor enforces its limits anyway.
pub async fn take_target(env: &Env, name: &str, limits: RateLimits, tokens: u64) -> Result<(), u64> {
    let scope = leases::Scope { limits, ..leases::Scope::default() };
    let need = Amounts { usd: 0.0, requests: 1, tokens };
    match leases::take(env, None, &format!("target:{name}"), scope, &[], need).await {
        // What the target's call uses is counted as taken (its estimate), as vendors count it.
        Ok(_part) => Ok(()),
        Err(Refused::Limit(refusal)) => Err(refusal.retry_after_ms(Date::now().as_millis())),
        Err(Refused::Denied(_)) => Ok(()),
        Err(Refused::Unavailable(e)) => {
            worker::console_error!("ledger: target limit of {name} not checked: {e}");
            Ok(())
        }
    }
}
