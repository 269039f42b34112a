//! The attempt loop every model endpoint shares: try the model's targets in order, fail over on
//! the vendor's trouble (unreachable, timeout, 408, 429, 5xx), stop at the request's own fault,
//! and name in headers who answered and why earlier targets were abandoned.

use crate::metering::{self, Answered, Metered};
use crate::{health_view, provider_health, upstream};
use futures::future::Either;
use std::future::Future;
use switchyard_core::breaker::{Admission, BreakerPolicy};
use switchyard_core::canonical::Dialect;
use switchyard_core::catalog::Needs;
use switchyard_core::config::{Config, Model, Provider, Target};
use switchyard_core::health::{retry_after_until, Outcome, Report};
use switchyard_core::providers::{self, OutboundRequest};
use switchyard_core::route::Tier;
use switchyard_core::{route, GatewayError};
use worker::{Date, Env, Response};

/// An attempt that produced no answer for the client.
pub struct Failed {
    pub error: Box<GatewayError>,
    /// Whether the next target may succeed where this one failed.
    pub retryable: bool,
    pub retry_after: Option<String>,
    /// When the vendor may be called again, from its Retry-After or retry-after-ms.
    pub retry_after_until_ms: Option<u64>,
    /// The vendor's status, when it answered at all.
    pub vendor_status: Option<u16>,
}

impl Failed {
    /// The vendor's trouble: another target may succeed.
    pub fn retryable(error: GatewayError) -> Self {
        Self {
            error: Box::new(error),
            retryable: true,
            retry_after: None,
            retry_after_until_ms: None,
            vendor_status: None,
        }
    }

    /// The request itself is at fault: another target would refuse it too.
    pub fn final_(error: GatewayError) -> Self {
        Self {
            error: Box::new(error),
            retryable: false,
            retry_after: None,
            retry_after_until_ms: None,
            vendor_status: None,
        }
    }
}

/// A target's answer, and the usage it reports (now, or when its stream ends).
pub struct Answer {
    pub response: Response,
    pub metered: Metered,
}

impl Answer {
    pub fn new(response: Response, metered: Metered) -> Self {
        Self { response, metered }
    }
}

/// The client's answer, what each attempt at a vendor came to (for the health record), and
/// who answered with what usage (for the ledger).
pub struct Completed {
    pub response: Response,
    pub report: Report,
    pub answered: Option<Answered>,
}

/// Tries `model`'s targets in order with `attempt` until one answers or one fails for a reason
/// that another target would share.
/// The time one attempt has: to the vendor's first byte, and for its whole answer.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// When the attempt started (ms since the epoch), for its total time.
    pub started_ms: u64,
    pub first_byte_ms: u64,
    /// When the answer must be complete (ms since the epoch): the route's `total_timeout_ms`
    /// from the attempt's start, or the request's deadline, whichever comes first.
    pub total_until_ms: Option<u64>,
}

/// What narrows and orders a request's targets beyond their health.
#[derive(Default)]
pub struct Selection {
    /// What the request needs (chat): targets that cannot serve it are skipped.
    pub needs: Option<Needs>,
    /// The cascade's decision and why.
    pub tier: Option<(Tier, &'static str)>,
    /// The tokens a call is expected to count against a target's per-minute limit.
    pub tokens: u64,
    /// The client's dialect, which its errors are written in.
    pub dialect: Dialect,
}

pub async fn run<'c, F, Fut>(
    config: &'c Config,
    env: &Env,
    model: &'c Model,
    selection: &Selection,
    mut attempt: F,
) -> Completed
where
    F: FnMut(&'c Provider, &'c Target, Budget) -> Fut,
    Fut: Future<Output = Result<Answer, Failed>>,
{
    let policy = &config.health.breaker;
    let now = Date::now().as_millis();
    let deadline = model.deadline_ms.map(|ms| now + ms);
    let names: Vec<String> = model.targets.iter().map(|t| describe(config, t)).collect();
    // The targets able to serve the request (the catalog's capabilities and context window),
    // and under a cascade the decided tier's.
    let serves = |i: usize| {
        selection.needs.is_none_or(|needs| config.model_info(&model.targets[i].model).unmet(&needs).is_none())
    };
    let eligible = route::eligible(&model.targets, serves, selection.tier.map(|(tier, _)| tier));
    if eligible.is_empty() {
        let what = selection
            .needs
            .and_then(|needs| model.targets.iter().find_map(|t| config.model_info(&t.model).unmet(&needs)))
            .unwrap_or("this request");
        let error = GatewayError::new(
            400,
            "invalid_request_error",
            "unsupported_model",
            format!("No target of the model `{}` can serve {what}.", model.name),
        )
        .with_param("model");
        return Completed {
            response: crate::http::error_in(selection.dialect, &error),
            report: Report { policy: policy.clone(), outcomes: vec![], completions: vec![] },
            answered: None,
        };
    }
    let needs = selection.needs.unwrap_or_default();
    let candidates: Vec<route::Candidate> = eligible
        .iter()
        .map(|&i| {
            let info = config.model_info(&model.targets[i].model);
            route::Candidate {
                weight: model.targets[i].weight,
                latency_ms: health_view::latency(&names[i]),
                cost: info.max_cost(needs.prompt_tokens, if needs.max_output > 0 { needs.max_output } else { 4_096 }),
            }
        })
        .collect();
    // Targets whose breaker is open or whose vendor asked for time are skipped. When every
    // target is out, nothing is sent: the half-open probe, once a cooldown ends, is the only
    // call that goes, and the client is told when to come back.
    let plan: Vec<usize> = route::order(
        model.strategy,
        &candidates,
        |k| health_view::peek(&names[eligible[k]], policy, now),
        random_unit(),
        route::attempt_count(model.max_attempts, model.targets.len(), eligible.len()),
    )
    .into_iter()
    .map(|k| eligible[k])
    .collect();

    let mut tally = Tally { failures: Vec::new(), outcomes: Vec::new(), answer: None, back_at_ms: None };
    if plan.is_empty() {
        tally.back_at_ms = eligible
            .iter()
            .filter_map(|&i| match health_view::peek(&names[i], policy, now) {
                Admission::Reject { until_ms } => Some(until_ms),
                _ => None,
            })
            .min();
    }
    let gate = |i: usize, may_probe: bool| {
        let name = &names[i];
        let target = &model.targets[i];
        async move { admit_target(env, name, target, policy, selection.tokens, may_probe).await }
    };
    let mut hedged = None;
    for (k, &i) in plan.iter().enumerate() {
        if hedged == Some(k) {
            continue; // raced already, as the hedge of the first attempt
        }
        let target = &model.targets[i];
        let provider = config.provider(target);
        if plan[..k].contains(&i) {
            // A target out of service since (its probe failed, its breaker opened) is not
            // waited for.
            if matches!(health_view::peek(&names[i], policy, Date::now().as_millis()), Admission::Reject { .. }) {
                continue;
            }
            // Retrying a target already tried in this request: back off first, with jitter.
            let tries = plan[..k].iter().filter(|&&j| j == i).count() as u32;
            let backoff_ms = (100.0 * f64::from(1u32 << tries.min(5)) * (0.5 + random_unit())) as u64;
            if deadline.is_some_and(|d| Date::now().as_millis() + backoff_ms >= d) {
                break;
            }
            worker::Delay::from(std::time::Duration::from_millis(backoff_ms)).await;
        }
        let started = Date::now().as_millis();
        let Some(budget) = attempt_budget(model, provider, deadline, started) else {
            tally.failures.push((target, Failed::final_(deadline_passed(model, &names[i]))));
            break;
        };
        if let Gate::Skip(skipped) = gate(i, true).await {
            tally.skip(target, skipped);
            continue;
        }

        // Hedging: when the first target has not answered after `hedge_after_ms`, the next one
        // is started too, if its health and limits let it be tried just as a first attempt
        // would be; the first to answer wins, and the other is cancelled (its fetch aborted). A
        // failure of either leaves the race to the other.
        let second = plan.get(1).copied().filter(|&j| k == 0 && j != i);
        if let (Some(hedge_ms), Some(j)) = (model.hedge_after_ms, second) {
            hedged = Some(1);
            let (target_b, provider_b) = (&model.targets[j], config.provider(&model.targets[j]));
            let first = attempt(provider, target, budget);
            let hedge = async {
                worker::Delay::from(std::time::Duration::from_millis(hedge_ms)).await;
                let started_b = Date::now().as_millis();
                let Some(budget_b) = attempt_budget(model, provider_b, deadline, started_b) else {
                    return Err(Skipped::default());
                };
                // Never the half-open probe: a hedge is dropped when the first attempt wins, and
                // a probe dropped unreported would keep its target out for the probe's timeout.
                match gate(j, false).await {
                    Gate::Go => Ok((started_b, attempt(provider_b, target_b, budget_b).await)),
                    Gate::Skip(skipped) => Err(skipped),
                }
            };
            futures::pin_mut!(first, hedge);
            let done = match futures::future::select(first, hedge).await {
                Either::Left((a, hedge)) => {
                    if tally.settle(config, model, selection, &names, i, started, a) {
                        match hedge.await {
                            Ok((started_b, b)) => tally.settle(config, model, selection, &names, j, started_b, b),
                            Err(skipped) => {
                                tally.skip(target_b, skipped);
                                true
                            }
                        }
                    } else {
                        false
                    }
                }
                Either::Right((Ok((started_b, b)), first)) => {
                    if tally.settle(config, model, selection, &names, j, started_b, b) {
                        let a = first.await;
                        tally.settle(config, model, selection, &names, i, started, a)
                    } else {
                        false
                    }
                }
                Either::Right((Err(skipped), first)) => {
                    tally.skip(target_b, skipped);
                    let a = first.await;
                    tally.settle(config, model, selection, &names, i, started, a)
                }
            };
            if !done {
                break;
            }
            continue;
        }

        let result = attempt(provider, target, budget).await;
        if !tally.settle(config, model, selection, &names, i, started, result) {
            break;
        }
    }
    let Tally { failures, outcomes, answer, back_at_ms } = tally;
    health_view::record(policy, &outcomes);
    let report = Report { policy: policy.clone(), outcomes, completions: vec![] };
    match answer {
        Some((answer, target)) => Completed {
            response: answer.response,
            report,
            answered: Some(Answered {
                provider: config.provider(target).name.clone(),
                vendor_model: target.model.clone(),
                metered: answer.metered,
            }),
        },
        None => Completed {
            response: failure_response(config, failures, back_at_ms, selection.dialect),
            report,
            answered: None,
        },
    }
}

/// The least time a vendor's error body is given, when the first byte's time has run out.
const ERROR_BODY_MIN_MS: u64 = 1_000;

/// How long the shared health record is waited for when it grants a half-open probe.
const PROBE_ASK_MS: u64 = 2_000;

/// Whether a target may be tried now.
enum Gate {
    Go,
    Skip(Skipped),
}

/// Why a target was not tried: at its vendor's rate limit (a failure the client may see), or
/// out of service until `back_at_ms` (its breaker open, its vendor's Retry-After, or its
/// single half-open probe taken by another request).
#[derive(Default)]
struct Skipped {
    failure: Option<Failed>,
    back_at_ms: Option<u64>,
}

/// Asks everything a call to a target must pass, first attempt or hedge alike: this isolate's
/// view of its breaker, the shared record for a half-open probe (one probe across every
/// isolate and location), then the target's own rate limits (only once health lets it be
/// tried, so a skipped target spends none of them).
async fn admit_target(
    env: &Env,
    name: &str,
    target: &Target,
    policy: &BreakerPolicy,
    tokens: u64,
    may_probe: bool,
) -> Gate {
    let now = Date::now().as_millis();
    let out = |until_ms| Gate::Skip(Skipped { failure: None, back_at_ms: Some(until_ms) });
    if !may_probe && health_view::peek(name, policy, now) == Admission::Probe {
        return Gate::Skip(Skipped::default());
    }
    match health_view::admit(name, policy, now) {
        Admission::Reject { until_ms } => return out(until_ms),
        Admission::Probe => {
            // A shared record that cannot answer in time leaves the probe to this isolate's view.
            let shared = upstream::within(PROBE_ASK_MS, provider_health::admit(env, name, policy)).await;
            if let Some(Ok(Admission::Reject { until_ms })) = shared {
                return out(until_ms);
            }
        }
        Admission::Allow => {}
    }
    if !target.limits.is_empty() {
        if let Err(wait_ms) = metering::take_target(env, name, target.limits, tokens).await {
            return Gate::Skip(Skipped { failure: Some(at_limit(name, wait_ms)), back_at_ms: None });
        }
    }
    Gate::Go
}

fn deadline_passed(model: &Model, name: &str) -> GatewayError {
    GatewayError::new(
        504,
        "server_error",
        "deadline_exceeded",
        format!("The model's deadline of {} ms passed before `{name}` could be tried.", model.deadline_ms.unwrap_or(0)),
    )
}

/// The failure recorded for a target skipped at its vendor's rate limit.
fn at_limit(name: &str, wait_ms: u64) -> Failed {
    let error = GatewayError::new(
        429,
        "requests",
        "target_rate_limited",
        format!("`{name}` is at its configured rate limit; try again in {} s.", wait_ms.div_ceil(1000).max(1)),
    );
    Failed {
        error: Box::new(error),
        retryable: true,
        retry_after: Some(wait_ms.div_ceil(1000).max(1).to_string()),
        retry_after_until_ms: None,
        vendor_status: None,
    }
}

/// The vendor key of `provider`, from its secret.
pub fn vendor_key(provider: &Provider, env: &Env) -> Result<Option<String>, Failed> {
    match &provider.api_key_secret {
        Some(secret) => env.secret(secret).map(|s| Some(s.to_string())).map_err(|_| {
            // Once per isolate and secret: every call to the provider fails the same way.
            thread_local! {
                static LOGGED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            let first = LOGGED.with(|logged| {
                let mut logged = logged.borrow_mut();
                let first = !logged.contains(secret);
                if first {
                    logged.push(secret.clone());
                }
                first
            });
            if first {
                worker::console_error!(
                    "provider {}: the secret {secret} is not set (wrangler secret put {secret})",
                    provider.name
                );
            }
            Failed::retryable(GatewayError::provider_key_missing(&provider.name))
        }),
        None => Ok(None),
    }
}

/// Sends `outbound` to the vendor: its successful response, or the failure in the client's
/// terms (the vendor's error translated, its key never repeated). A redirect is a failed
/// attempt, never followed. An error body is read up to `ERROR_BODY_CAP` and only while the
/// attempt has time left: a vendor that trickles its error page cannot hold the client past
/// the attempt's deadline, nor keep the fallback target from its turn.
pub async fn call_vendor(
    provider: &Provider,
    outbound: &OutboundRequest,
    key: Option<&str>,
    budget: Budget,
) -> Result<Response, Failed> {
    let timeout_ms = budget.first_byte_ms;
    let mut response = upstream::send(outbound, timeout_ms).await.map_err(|failure| match failure {
        upstream::Failure::Unreachable(cause) => {
            Failed::retryable(GatewayError::upstream_unreachable(&provider.name, cause))
        }
        upstream::Failure::Timeout => Failed::retryable(GatewayError::upstream_timeout(&provider.name, timeout_ms)),
    })?;
    let status = response.status_code();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    if (300..400).contains(&status) {
        upstream::discard(response);
        let error = GatewayError::new(
            502,
            "server_error",
            "upstream_redirect",
            format!(
                "Provider `{}` answered with a redirect (HTTP {status}); vendor redirects are not followed.",
                provider.name
            ),
        );
        return Err(Failed { vendor_status: Some(status), ..Failed::retryable(error) });
    }
    let retry_after = response.headers().get("retry-after").ok().flatten();
    let retry_after_ms = response.headers().get("retry-after-ms").ok().flatten();
    let now = Date::now().as_millis();
    let retry_after_until_ms = retry_after_until(retry_after.as_deref(), retry_after_ms.as_deref(), now);
    // The body's own time: what is left of the first byte's, but at least a moment (headers
    // that came late must not leave an error unread, Gemini names a bad key only in it), and
    // never past the attempt's total time.
    let until = budget
        .started_ms
        .saturating_add(timeout_ms)
        .max(now + ERROR_BODY_MIN_MS)
        .min(budget.total_until_ms.unwrap_or(u64::MAX));
    let body = upstream::read_capped(&mut response, upstream::ERROR_BODY_CAP, until.saturating_sub(now)).await;
    let error = providers::vendor_error(provider, status, &body, key);
    Err(Failed {
        retryable: providers::is_vendor_fault(status, &error),
        error: Box::new(error),
        retry_after,
        retry_after_until_ms,
        vendor_status: Some(status),
    })
}

fn outcome(target: &str, result: &Result<Answer, Failed>, started: u64) -> Outcome {
    let at_ms = Date::now().as_millis();
    let (ok, status, error, retry_after_until_ms) = match result {
        Ok(answer) => (true, Some(answer.response.status_code()), None, None),
        // A failure that is not retryable is the request's fault, not the vendor's: the vendor
        // answered, and is healthy.
        Err(failed) => (
            !failed.retryable,
            failed.vendor_status,
            failed.error.code.as_deref().map(str::to_owned),
            failed.retry_after_until_ms,
        ),
    };
    Outcome {
        target: target.to_owned(),
        ok,
        status,
        error,
        latency_ms: at_ms.saturating_sub(started) as f64,
        at_ms,
        retry_after_until_ms,
    }
}

/// The attempts of one request so far.
struct Tally<'c> {
    failures: Vec<(&'c Target, Failed)>,
    outcomes: Vec<Outcome>,
    answer: Option<(Answer, &'c Target)>,
    /// The soonest a skipped target is back in service, for the client's Retry-After.
    back_at_ms: Option<u64>,
}

impl<'c> Tally<'c> {
    fn skip(&mut self, target: &'c Target, skipped: Skipped) {
        if let Some(failure) = skipped.failure {
            self.failures.push((target, failure));
        }
        if let Some(at) = skipped.back_at_ms {
            self.back_at_ms = Some(self.back_at_ms.map_or(at, |known| known.min(at)));
        }
    }

    /// Takes in the result of the attempt at target `i`; whether to go on to the next target.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        config: &Config,
        model: &'c Model,
        selection: &Selection,
        names: &[String],
        i: usize,
        started: u64,
        result: Result<Answer, Failed>,
    ) -> bool {
        let target = &model.targets[i];
        if !providers::answers_in_worker(config.provider(target)) {
            let mut outcome = outcome(&names[i], &result, started);
            if outcome.ok && result.is_ok() && model.slow_ms.is_some_and(|slow| outcome.latency_ms > slow as f64) {
                outcome.ok = false;
                outcome.error = Some("slow".to_owned());
            }
            self.outcomes.push(outcome);
        }
        match result {
            Ok(answer) => {
                let response = annotate(answer.response, config, model, target, &self.failures);
                if let Some((tier, why)) = selection.tier {
                    let tier = if tier == Tier::Simple { "simple" } else { "complex" };
                    let _ = response.headers().set("x-switchyard-cascade", &format!("{tier}; {why}"));
                }
                self.answer = Some((Answer { response, ..answer }, target));
                false
            }
            Err(failed) => {
                let go_on = failed.retryable;
                self.failures.push((target, failed));
                go_on
            }
        }
    }
}

/// An attempt's time: the route's first-byte timeout (else its provider's) and total timeout,
/// both cut short by what is left of the request's deadline; `None` once the deadline passed.
fn attempt_budget(model: &Model, provider: &Provider, deadline: Option<u64>, now: u64) -> Option<Budget> {
    let first_byte_ms = model.first_byte_timeout_ms.unwrap_or(provider.timeout_ms);
    let (first_byte_ms, total_until_ms) = route::attempt_limits(first_byte_ms, model.total_timeout_ms, deadline, now)?;
    Some(Budget { started_ms: now, first_byte_ms, total_until_ms })
}

/// Uniform in [0, 1), from the runtime's cryptographic source.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.0;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// The whole of a non-streamed vendor answer, read within the attempt's total time. Its total
/// time goes to the health record; a body that breaks off is a failed attempt (the client has
/// seen nothing yet, so the next target is tried).
pub async fn read_answer(
    provider: &Provider,
    name: &str,
    response: &mut Response,
    budget: Budget,
) -> Result<Vec<u8>, Failed> {
    let read = match budget.total_until_ms {
        Some(until) => {
            let left = until.saturating_sub(Date::now().as_millis()).max(1);
            upstream::within(left, upstream::body_bytes(response)).await.ok_or_else(|| {
                Failed::retryable(GatewayError::new(
                    504,
                    "server_error",
                    "upstream_timeout",
                    format!(
                        "Provider `{}` did not complete its answer within the route's total timeout.",
                        provider.name
                    ),
                ))
            })?
        }
        None => upstream::body_bytes(response).await,
    };
    let body = read.map_err(|e| Failed::retryable(GatewayError::upstream_stream_broken(&provider.name, &e)))?;
    health_view::complete(name, Date::now().as_millis().saturating_sub(budget.started_ms) as f64);
    Ok(body)
}

/// Why an attempt was abandoned, in a word: the error code, else the vendor's status.
fn reason(failed: &Failed) -> String {
    match (failed.error.code.as_deref(), failed.vendor_status) {
        (Some(code), _) if code != "upstream_error" => code.to_owned(),
        (_, Some(status)) => format!("http_{status}"),
        (code, None) => code.unwrap_or(failed.error.kind).to_owned(),
    }
}

/// A target's name in the health record: `provider/model`.
pub fn describe(config: &Config, target: &Target) -> String {
    format!("{}/{}", config.provider(target).name, target.model)
}

/// The `x-switchyard-*` headers: who answered, after how many attempts, and why earlier
/// attempts were abandoned.
fn annotate(
    response: Response,
    config: &Config,
    model: &Model,
    answered: &Target,
    failures: &[(&Target, Failed)],
) -> Response {
    let headers = response.headers();
    let _ = headers.set("x-switchyard-route", &format!("{}; strategy={}", model.name, model.strategy.name()));
    let _ = headers.set("x-switchyard-provider", &config.provider(answered).name);
    let _ = headers.set("x-switchyard-model", &answered.model);
    let _ = headers.set("x-switchyard-attempts", &(failures.len() + 1).to_string());
    if !failures.is_empty() {
        let reasons: Vec<String> =
            failures.iter().map(|(t, f)| format!("{}={}", describe(config, t), reason(f))).collect();
        let _ = headers.set("x-switchyard-fallbacks", &reasons.join(", "));
    }
    response
}

/// Every attempt failed: a single attempt's error is the client's answer as it is; several
/// become one 503 that names each attempt.
fn failure_response(
    config: &Config,
    mut failures: Vec<(&Target, Failed)>,
    back_at_ms: Option<u64>,
    dialect: Dialect,
) -> Response {
    let attempts = failures.len().to_string();
    let (error, retry_after) = if failures.is_empty() {
        let wait_s = back_at_ms.map_or(1, |at| at.saturating_sub(Date::now().as_millis()).div_ceil(1000).max(1));
        let error = GatewayError::new(
            503,
            "server_error",
            "no_target_available",
            format!(
                "Every target of this model is out of service (open circuit breaker, or its vendor asked for time); \
                 try again in {wait_s} s."
            ),
        );
        (error, Some(wait_s.to_string()))
    } else if failures.len() == 1 {
        let (_, only) = failures.remove(0);
        (*only.error, only.retry_after)
    } else if failures.iter().all(|(_, f)| f.error.code.as_deref() == Some("target_rate_limited")) {
        // Every target is at its vendor's limit: the client waits for the first to free up.
        let soonest = failures.iter().min_by_key(|(_, f)| f.retry_after.as_deref().and_then(|s| s.parse::<u64>().ok()));
        let retry_after = soonest.and_then(|(_, f)| f.retry_after.clone());
        let error = GatewayError::new(
            429,
            "requests",
            "rate_limit_exceeded",
            "Every target of this model is at its configured rate limit; try again shortly.",
        );
        (error, retry_after)
    } else if failures.last().is_some_and(|(_, f)| f.error.code.as_deref() == Some("deadline_exceeded")) {
        let list: Vec<String> =
            failures.iter().map(|(t, f)| format!("{}: {}", describe(config, t), f.error.message)).collect();
        let error = GatewayError::new(504, "server_error", "deadline_exceeded", list.join("; "));
        (error, None)
    } else {
        let list: Vec<String> =
            failures.iter().map(|(t, f)| format!("{}: {}", describe(config, t), f.error.message)).collect();
        let error = GatewayError::new(
            503,
            "server_error",
            "all_targets_failed",
            format!("Every target failed. {}", list.join("; ")),
        );
        let retry_after = failures.iter().filter_map(|(_, f)| f.retry_after.clone()).next();
        (error, retry_after)
    };
    let response = crate::http::error_in(dialect, &error);
    let headers = response.headers();
    let _ = headers.set("x-switchyard-attempts", &attempts);
    if let Some(value) = retry_after {
        let _ = headers.set("retry-after", &value);
    }
    response
}
