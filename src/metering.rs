//! Before a call: the key's policy, its rate limits and budgets, and the gateway's budgets, each
//! in its `Ledger` instance (at the same time), which holds the most the call can cost. After
//! the call (off the hot path): the real cost from the vendor's usage is settled, the rest of
//! the hold freed, the usage row written; a call that failed frees everything it held.

use crate::http::Rejection;
use crate::ledger::{self, Admit, Answer, Batch, Settle, GATEWAY};
use crate::outbox;
use futures::channel::oneshot;
use switchyard_core::chat::Usage;
use switchyard_core::config::Config;
use switchyard_core::keys::{KeyRecord, Source};
use switchyard_core::ledger::{Ask, UsageRow};
use switchyard_core::ratelimit::RateLimits;
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
#[derive(Debug, Default)]
pub struct Admission {
    /// (instance, hold id)
    holds: Vec<(String, String)>,
    /// What was held: charged when the vendor reports no usage.
    estimate: Estimate,
    pub headers: Vec<(String, String)>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        for (instance, hold_id) in self.holds.drain(..) {
            outbox::settle(&instance, Settle { hold_id, released: true, ..Settle::default() });
        }
    }
}

/// The usage of an answer: known with it, or at the end of its stream.
pub enum Metered {
    Now(Option<Usage>),
    AtEnd(oneshot::Receiver<Option<Usage>>),
}

impl Metered {
    pub async fn usage(self) -> Option<Usage> {
        match self {
            Metered::Now(usage) => usage,
            Metered::AtEnd(receiver) => receiver.await.ok().flatten(),
        }
    }
}

/// Who answered a call, and what it used.
pub struct Answered {
    pub provider: String,
    pub vendor_model: String,
    pub metered: Metered,
}

fn unavailable(e: worker::Error) -> GatewayError {
    worker::console_error!("ledger unavailable: {e}");
    GatewayError::new(
        503,
        "server_error",
        "ledger_unavailable",
        "The budget ledger cannot be reached, so the call cannot be admitted; try again shortly.",
    )
}

/// Takes on a call of `key` to `models` (names or aliases), or refuses it: 401 for a revoked or
/// expired key, 403 for a model the key may not use, 429 past a rate limit or a budget.
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
    let ask =
        Ask { caps: vec![], limits: RateLimits::default(), amount_usd: estimate.amount_usd, tokens: estimate.tokens };
    let key_admit =
        Admit { ask: ask.clone(), record: Some(key.clone()), models: models.iter().map(|m| (*m).to_owned()).collect() };
    let gateway_admit = Admit { ask: Ask { caps: config.budgets.clone(), ..ask }, record: None, models: vec![] };
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

    let mut admission = Admission { holds: Vec::new(), estimate, headers: Vec::new() };
    let mut rejection: Option<Rejection> = None;
    for (instance, answer) in [(key.id.as_str(), by_key), (GATEWAY, by_gateway)] {
        let whose = if instance == GATEWAY { "the gateway".to_owned() } else { format!("key `{}`", key.name) };
        match answer {
            None => {}
            Some(Err(e)) => rejection = rejection.or(Some(unavailable(e).into())),
            Some(Ok(Answer::Admitted { hold_id, admitted })) => {
                if let Some(hold_id) = hold_id {
                    admission.holds.push((instance.to_owned(), hold_id));
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
            // One ledger refused what another took on: that hold is freed now, not with a later
            // request's batch (this isolate may see no other request for a while).
            let releases = std::mem::take(&mut admission.holds).into_iter().map(|(instance, hold_id)| async move {
                let batch =
                    Batch { settles: vec![Settle { hold_id, released: true, ..Settle::default() }], usage: vec![] };
                if let Err(e) = ledger::settle(env, &instance, &batch).await {
                    worker::console_error!("ledger {instance}: release failed: {e}");
                }
            });
            futures::future::join_all(releases).await;
            Err(rejection)
        }
        None => Ok(admission),
    }
}

/// The call failed: everything it held is freed (by the outbox's next batch).
pub fn release(admission: Admission) {
    drop(admission);
}

/// The call was answered: its real cost (the catalog's price of the usage the vendor reported)
/// is settled everywhere it held, and its usage row goes to the gateway's ledger (both by the
/// outbox's next batch).
/// A call whose vendor reported no usage (or a stream the client left before its usage came)
/// is charged what was held for it: the most it could have cost.
pub async fn settle(config: &Config, key: &KeyRecord, mut admission: Admission, answered: Answered) {
    let usage = answered.metered.usage().await;
    let cost_usd = match &usage {
        Some(u) => config.model_info(&answered.vendor_model).cost(u),
        None => admission.estimate.amount_usd,
    };
    let tokens = usage.map_or(0, |u| u.prompt_tokens + u.completion_tokens);
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
        call_id: String::new(),
    };
    for (instance, hold_id) in admission.holds.drain(..) {
        outbox::settle(&instance, Settle { hold_id, cost_usd, tokens, released: false });
    }
    outbox::usage(row);
}

/// Whether a target is within its vendor's own limits (`rpm`, `tpm`) for one more call of
/// `tokens`; `Err` holds the wait until it will be. A ledger that cannot be reached lets the
/// call through: the vendor enforces its limits anyway.
pub async fn take_target(env: &Env, name: &str, limits: RateLimits, tokens: u64) -> Result<(), u64> {
    let admit = Admit { ask: Ask { limits, tokens, ..Ask::default() }, record: None, models: vec![] };
    match ledger::admit(env, &format!("target:{name}"), &admit, false).await {
        Ok(Answer::Refused { refusal }) => Err(refusal.retry_after_ms(Date::now().as_millis())),
        Ok(_) => Ok(()),
        Err(e) => {
            worker::console_error!("ledger: target limit of {name} not checked: {e}");
            Ok(())
        }
    }
}
