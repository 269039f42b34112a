//! A chat in any client dialect (OpenAI Chat Completions, Anthropic Messages): the canonical
//! request's targets, and the answer of the first that succeeds in the client's dialect
//! (passed through untouched when the vendor speaks it).

use crate::attempts::{self, call_vendor, read_answer, vendor_key, Answer, Budget, Completed, Failed, Selection};
use crate::http::Rejection;
use crate::metering::{self, Admission, Estimate, Metered, StreamEnd};
use crate::{health_view, http, relay, upstream};
use futures::channel::oneshot;
use std::cell::RefCell;
use std::rc::Rc;
use switchyard_core::canonical::{Dialect, Egress, Request};
use switchyard_core::catalog::{ModelInfo, Needs};
use switchyard_core::config::{Config, Model, Provider, Target};
use switchyard_core::ingress::{anthropic_messages, openai_chat, openai_responses};
use switchyard_core::keys::KeyRecord;
use switchyard_core::providers::{self, mock, ParamReport, StreamTranslator};
use switchyard_core::route::{self, Strategy, Tier};
use switchyard_core::GatewayError;
use worker::web_sys::ReadableStreamDefaultReader;
use worker::{Date, Env, Response};

/// How the client asked: `strict` (its `x-switchyard-strict`) that parameters a target cannot
/// honour be refused rather than dropped; `tier` (its `x-switchyard-tier`) a cascade's tier;
/// `fallbacks` its own list of models to try after the first (OpenAI Chat's `models`).
/// `responses`: what a Responses API answer is made of beyond the canonical one.
#[derive(Default)]
pub struct Asked {
    pub strict: bool,
    pub tier: Option<Tier>,
    pub fallbacks: Option<Vec<String>>,
    pub responses: Option<Rc<ResponsesReply>>,
}

/// A Responses API call's own: its parameters, the id and time the gateway gave it, the
/// conversation it continues, and the Response object once its answer is whole (for the store).
pub struct ResponsesReply {
    pub params: openai_responses::Params,
    pub id: String,
    pub created_at: u64,
    /// The stored conversation of `previous_response_id`, oldest first.
    pub history: Vec<serde_json::Value>,
    /// The provider whose vendor keeps the previous response itself (a pass-through to a
    /// provider that forwards `store`): a request to it continues by id, any other is sent
    /// `history`.
    pub held_by: Option<String>,
    pub kept: RefCell<Option<Kept>>,
    /// The provider whose vendor keeps this response itself, when it does.
    pub vendor_holds: RefCell<Option<String>>,
}

/// The Response object of an answer, as the gateway made it or as the vendor sent it (a
/// pass-through, read only when it is stored, after the client has it).
pub enum Kept {
    Made(serde_json::Value),
    Sent(Vec<u8>),
}

/// The Responses stream encoder, keeping the final Response object as the stream ends.
struct Keeping {
    inner: openai_responses::Stream,
    reply: Rc<ResponsesReply>,
}

impl Keeping {
    fn keep(&self) {
        *self.reply.kept.borrow_mut() = self.inner.response().cloned().map(Kept::Made);
    }
}

impl Egress for Keeping {
    fn event(&mut self, event: switchyard_core::canonical::Event<'_>, out: &mut Vec<u8>) {
        self.inner.event(event, out);
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        self.inner.complete(out);
        self.keep();
    }

    fn fail(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
        self.inner.fail(error, out);
    }

    fn keepalive(&mut self, out: &mut Vec<u8>) {
        self.inner.keepalive(out);
    }
}

pub async fn complete(
    config: &Config,
    env: &Env,
    key: &KeyRecord,
    request: Request,
    asked: Asked,
) -> Result<(Completed, Admission), Rejection> {
    let model = config.model(&request.model).ok_or_else(|| GatewayError::model_not_found(&request.model))?;
    let strict = asked.strict || model.strict;
    let with_fallbacks = match &asked.fallbacks {
        Some(list) => Some(client_fallbacks(config, model, list)?),
        None => None,
    };
    let mut names: Vec<&str> = vec![&request.model];
    names.extend(asked.fallbacks.iter().flatten().map(String::as_str));
    let model = with_fallbacks.as_ref().unwrap_or(model);
    let needs = request.needs();
    config.check_priced(!key.policy.budgets.is_empty(), model)?;
    let estimate = estimate(config, model, &request, &needs, request.source.bytes.len());
    let admission = metering::admit(env, config, key, &names, estimate).await?;
    let tier = (model.strategy == Strategy::Cascade)
        .then(|| route::classify(&needs, request.effort(), asked.tier, model.max_simple_tokens));
    let dialect = request.source.dialect;
    let selection = Selection { needs: Some(needs), tier, tokens: needs.prompt_tokens + needs.max_output, dialect };
    let call = Call {
        model,
        request: &request,
        reply: asked.responses.as_ref(),
        env,
        strict,
        keepalive_ms: config.limits.stream_keepalive_ms,
    };
    let call = &call;
    // The holds are renewed should the attempts outlast them (a stream's, after, by `settle`).
    let dispatched = admission.dispatch_flag();
    let completed = admission
        .keep_while(attempts::run(config, env, model, &selection, |provider, target, budget| {
            dispatched.set(true);
            attempt(call, provider, target, budget, config.model_info(&target.model))
        }))
        .await;
    Ok((completed, admission))
}

/// The most a chat can cost: its prompt at the input price plus the most output the vendor
/// request lets it get (every choice, and the thinking a translation adds: see
/// `providers::output_bound`) at the output price, at the dearest of the model's targets. The
/// prompt is taken at a token per four bytes of the whole request (its text at four
/// characters a token, if more), which is above what vendors count for text, so that a cap
/// holds against the estimate's error; images and tool definitions can count for more than
/// their bytes, and are covered only as far as the rest of the estimate's margin goes.
fn estimate(config: &Config, model: &Model, request: &Request, needs: &Needs, body_bytes: usize) -> Estimate {
    let prompt_tokens = needs.prompt_tokens.max((body_bytes as u64).div_ceil(4));
    let amount_usd = model
        .targets
        .iter()
        .map(|t| {
            let info = config.model_info(&t.model);
            info.max_cost(prompt_tokens, providers::output_bound(config.provider(t), &t.model, request, &info, needs))
        })
        .fold(0.0, f64::max);
    Estimate { amount_usd, tokens: needs.prompt_tokens + needs.max_output }
}

/// The request's model followed by the client's own list (`models`), as one model to try in
/// that order: each listed model's targets after the previous one's, none twice.
fn client_fallbacks(config: &Config, first: &Model, list: &[String]) -> Result<Model, GatewayError> {
    let mut model = first.clone();
    model.strategy = Strategy::Fallback;
    for (i, name) in list.iter().enumerate() {
        let listed =
            config.model(name).ok_or_else(|| GatewayError::model_not_found(name).with_param(format!("models[{i}]")))?;
        for target in &listed.targets {
            if !model.targets.contains(target) {
                model.targets.push(target.clone());
            }
        }
    }
    model.max_attempts = model.max_attempts.max(model.targets.len()).min(16);
    Ok(model)
}

/// The encoder of canonical stream events in the client's dialect.
fn egress(request: &Request, reply: Option<&Rc<ResponsesReply>>, created: u64) -> Box<dyn Egress> {
    match (request.source.dialect, reply) {
        (Dialect::AnthropicMessages, _) => Box::new(anthropic_messages::Stream::with_seed(&http::request_id())),
        (Dialect::OpenaiResponses, Some(reply)) => Box::new(Keeping {
            inner: openai_responses::Stream::new(request, &reply.params, reply.id.clone(), reply.created_at),
            reply: reply.clone(),
        }),
        (Dialect::OpenaiChat | Dialect::OpenaiResponses, _) => {
            Box::new(openai_chat::Stream::new(created, request.include_usage))
        }
    }
}

/// A canonical answer in the client's dialect.
fn encode(
    request: &Request,
    reply: Option<&Rc<ResponsesReply>>,
    answer: &switchyard_core::canonical::Answer,
    created: u64,
) -> Response {
    match (request.source.dialect, reply) {
        (Dialect::AnthropicMessages, _) => {
            http::bytes_response(200, "application/json", anthropic_messages::encode_answer(answer))
        }
        (Dialect::OpenaiResponses, Some(reply)) => {
            let mut response =
                openai_responses::encode_answer(answer, request, &reply.params, &reply.id, reply.created_at);
            response["completed_at"] = (Date::now().as_millis() / 1000).into();
            let sent = http::json(200, &response);
            *reply.kept.borrow_mut() = Some(Kept::Made(response));
            sent
        }
        (Dialect::OpenaiChat | Dialect::OpenaiResponses, _) => {
            http::json(200, &openai_chat::encode_answer(answer, created))
        }
    }
}

/// What every attempt of one call shares.
struct Call<'a> {
    model: &'a Model,
    request: &'a Request,
    reply: Option<&'a Rc<ResponsesReply>>,
    env: &'a Env,
    strict: bool,
    keepalive_ms: u64,
}

async fn attempt(
    call: &Call<'_>,
    provider: &Provider,
    target: &Target,
    budget: Budget,
    info: ModelInfo,
) -> Result<Answer, Failed> {
    let Call { model, request, reply, env, strict, keepalive_ms } = *call;
    let created = Date::now().as_millis() / 1000;
    if providers::answers_in_worker(provider) {
        return Ok(mock_answer(request, reply, &target.model, created));
    }
    let key = vendor_key(provider, env)?;
    let withheld = request.withheld(&model.allow_params, provider.forward_store, strict).map_err(Failed::final_)?;
    let (request, withheld) = match &withheld {
        Some((request, names)) => (request, names.as_slice()),
        None => (request, &[][..]),
    };
    let passes = providers::passes_through(provider, request.source.dialect);
    let continued = match reply.filter(|_| passes) {
        Some(reply) => continued(provider, request, reply).map_err(Failed::final_)?,
        None => None,
    };
    let request = continued.as_ref().unwrap_or(request);
    let mut prepared =
        providers::prepare_chat(provider, &target.model, request, key.as_deref(), strict).map_err(Failed::final_)?;
    prepared.report.dropped.splice(0..0, withheld.iter().cloned());
    if !passes {
        // The dialect's own headers (Anthropic's beta features) mean nothing to another vendor:
        // the features they name that change the request are refused by its checks.
        for (name, value) in &request.source.headers {
            prepared.report.dropped.push(format!("{name}: {value}"));
        }
    }
    let mut response = call_vendor(provider, &prepared.outbound, key.as_deref(), budget).await?;
    let name = format!("{}/{}", provider.name, target.model);
    let answer = if prepared.plan.stream {
        let translator =
            providers::chat_stream(provider, prepared.plan.clone(), key.as_deref(), egress(request, reply, created));
        let keep = reply.filter(|_| passes).cloned();
        // A stream passed through carries the vendor's bytes only: no keep-alive to ring.
        let keepalive_ms = if passes { 0 } else { keepalive_ms };
        let stream = StreamOf { name, info, keepalive_ms, keep };
        translate_stream(provider, stream, response, translator, budget).await?
    } else {
        let content_type = response.headers().get("content-type").ok().flatten();
        let body = read_answer(provider, &name, &mut response, budget).await?;
        let (response, usage) = match providers::decode_chat(provider, &body, &prepared.plan) {
            Ok(Some(answer)) => (encode(request, reply, &answer, created), answer.usage),
            // Answers in the client's own dialect go back byte for byte, with the vendor's
            // content type.
            Ok(None) => {
                let usage = providers::usage_of(provider, request.source.dialect, &body);
                if let Some(reply) = reply {
                    *reply.kept.borrow_mut() = Some(Kept::Sent(body.clone()));
                }
                (http::bytes_response(200, content_type.as_deref().unwrap_or("application/json"), body), usage)
            }
            Err(e) => return Err(Failed::retryable(e)),
        };
        if let Some(usage) = usage {
            // The catalog's price times what the vendor reported using.
            let _ = response.headers().set("x-switchyard-cost-usd", &format!("{:.8}", info.cost(&usage)));
        }
        Answer::new(response, Metered::Now(usage))
    };
    if let Some(reply) = reply.filter(|reply| passes && provider.forward_store && reply.params.store) {
        *reply.vendor_holds.borrow_mut() = Some(provider.name.clone());
    }
    Ok(Answer { response: report_params(answer.response, &prepared.report), ..answer })
}

/// A Responses request as a provider that serves the Responses API is to get it: told not to
/// store unless the provider forwards `store`, and sent the stored conversation unless its
/// vendor holds the previous response itself. `None`: the client's bytes as they are.
fn continued(provider: &Provider, request: &Request, reply: &ResponsesReply) -> Result<Option<Request>, GatewayError> {
    use providers::openai_responses::{for_vendor, Chain};
    let params = &reply.params;
    let chain = match params.previous_response_id {
        Some(_) if reply.held_by.as_deref() != Some(provider.name.as_str()) => {
            Chain::Replay { history: &reply.history, input: &params.input_items }
        }
        _ => Chain::AsSent,
    };
    let source = for_vendor(&request.source, params.store, provider.forward_store, chain)?;
    Ok(source.map(|source| Request { source, ..request.clone() }))
}

/// The vendor's event stream through `translator`, chunk by chunk as it arrives.
///
/// The gateway commits to this target only once the vendor's first event has translated into
/// something for the client: a stream that fails before that (an error event, a break, nothing
/// within the provider's timeout) is a failed attempt, and the client never sees it. After the
/// commit, however the vendor's stream ends, the client's ends with `[DONE]` (after an error
/// event if it broke). The usage the vendor reported is known at the end: it goes to the
/// ledger, and its cost to the client as an SSE comment before `[DONE]`
/// (`: x-switchyard-cost-usd=...`, which SSE readers skip).
async fn translate_stream(
    provider: &Provider,
    stream: StreamOf,
    response: Response,
    translator: Box<dyn StreamTranslator>,
    budget: Budget,
) -> Result<Answer, Failed> {
    let StreamOf { name, info, keepalive_ms, keep } = stream;
    let timeout_ms = budget.first_byte_ms.min(remaining_ms(budget.total_until_ms));
    let broken = |cause: String| {
        Failed::retryable(GatewayError::new(
            502,
            "server_error",
            "upstream_stream_broken",
            format!("Provider `{}` broke off its stream before its first event: {cause}", provider.name),
        ))
    };
    let body = match response.body() {
        worker::ResponseBody::Stream(body) => body.clone(),
        _ => return Err(broken("the answer has no body".to_owned())),
    };
    // Closed (the vendor's connection with it) unless the client's stream takes it over.
    struct Reading(Option<ReadableStreamDefaultReader>);
    impl Drop for Reading {
        fn drop(&mut self) {
            if let Some(reader) = self.0.take() {
                relay::cancel(&reader);
            }
        }
    }
    let mut reading = Reading(Some(relay::reader(&body)));
    let (meter, metered) = oneshot::channel();
    let mut pump = Pump { translator, name, started_ms: budget.started_ms, meter: Some(meter), info, keep };
    let mut first = Vec::new();
    let mut ended = false;
    // One timer for the first event, however many bytes arrive before it (keep-alive comments
    // or an unterminated line must not restart it).
    let first_until_ms = Date::now().as_millis().saturating_add(timeout_ms);
    // Keep-alive comments alone do not commit the gateway to this target: they go out with the
    // first event.
    while !switchyard_core::sse::holds_data(&first) && !ended {
        let Some(reader) = reading.0.as_ref() else { break };
        match upstream::within(remaining_ms(Some(first_until_ms)), relay::read(reader)).await {
            None => return Err(Failed::retryable(GatewayError::upstream_timeout(&provider.name, timeout_ms))),
            Some(Ok(Some(bytes))) => {
                pump.translator.push(&bytes, &mut first);
                if pump.translator.done() && pump.translator.error().is_none() {
                    pump.end(None, &mut first);
                    ended = true;
                }
            }
            Some(Err(e)) => return Err(broken(e)),
            Some(Ok(None)) => {
                pump.end(None, &mut first);
                ended = true;
            }
        }
        if let Some(error) = pump.translator.error() {
            return Err(Failed::retryable(error.clone()));
        }
    }

    // Committed: the rest is relayed (see `relay`), chunk by chunk, by the response itself.
    if ended {
        // The whole answer came before the commit: the vendor's connection is closed (by
        // `reading`), the client gets it in one piece.
        drop(pump);
        let response = Response::from_bytes(first).map_err(|e| broken(e.to_string()))?;
        return Ok(sse_answer(response, metered));
    }
    let reader = reading.0.take().expect("read until the commit");
    let total_ms = budget.total_until_ms.map(|_| remaining_ms(budget.total_until_ms));
    let body = relay::relay(&reader, &first, Box::new(pump), keepalive_ms, total_ms);
    let response = Response::from_body(worker::ResponseBody::Stream(body)).map_err(|e| broken(e.to_string()))?;
    Ok(sse_answer(response, metered))
}

/// A relayed stream's answer, with its headers; its usage known at its end.
fn sse_answer(response: Response, metered: oneshot::Receiver<StreamEnd>) -> Answer {
    let headers = response.headers();
    let _ = headers.set("content-type", "text/event-stream; charset=utf-8");
    let _ = headers.set("cache-control", "no-cache");
    Answer::new(response, Metered::AtEnd(metered))
}

/// What a stream's pump is told of its call: the target's name (for its total time in the
/// health view), its prices, the keep-alive interval, and a passed-through Responses call to
/// keep the vendor's final Response for.
struct StreamOf {
    name: String,
    info: ModelInfo,
    keepalive_ms: u64,
    keep: Option<Rc<ResponsesReply>>,
}

/// A vendor stream being translated for the client, and what its end reports.
struct Pump {
    translator: Box<dyn StreamTranslator>,
    /// The target, for its total time in the health view.
    name: String,
    started_ms: u64,
    /// Where the usage goes when the stream ends (or the client goes away).
    meter: Option<oneshot::Sender<StreamEnd>>,
    info: ModelInfo,
    /// A passed-through Responses stream's call, which keeps the vendor's final Response.
    keep: Option<Rc<ResponsesReply>>,
}

impl relay::Tail for Pump {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.translator.push(bytes, out);
    }

    fn done(&self) -> bool {
        self.translator.done()
    }

    fn keepalive(&mut self, out: &mut Vec<u8>) {
        self.translator.keepalive(out);
    }

    fn finish(&mut self, error: Option<&str>, out: &mut Vec<u8>) {
        self.end(error, out);
    }
}

impl Pump {
    /// The vendor's stream ended (with `error` if it broke): the client's stream is ended, its
    /// cost written before `[DONE]`, the total time and the usage reported.
    fn end(&mut self, error: Option<&str>, out: &mut Vec<u8>) {
        self.translator.finish(error, out);
        // The stream's total time is known only now, after the response has gone: it is kept in
        // this isolate's health view and sent along with the next report.
        health_view::complete(&self.name, Date::now().as_millis().saturating_sub(self.started_ms) as f64);
        if let (Some(reply), Some(response)) = (&self.keep, self.translator.final_answer()) {
            *reply.kept.borrow_mut() = Some(Kept::Sent(response.to_vec()));
        }
        let usage = self.translator.usage();
        if let Some(usage) = &usage {
            let comment = format!(": x-switchyard-cost-usd={:.8}\n\n", self.info.cost(usage));
            let at = if out.ends_with(switchyard_core::sse::DONE) {
                out.len() - switchyard_core::sse::DONE.len()
            } else {
                out.len()
            };
            out.splice(at..at, comment.into_bytes());
        }
        if let Some(meter) = self.meter.take() {
            // Complete only when the vendor's end event came and nothing broke.
            let complete = error.is_none() && self.translator.done() && self.translator.error().is_none();
            let _ = meter.send(StreamEnd { usage, complete });
        }
    }
}

impl Drop for Pump {
    /// A client that goes away mid-stream pays for what it held, or for what the vendor
    /// produced until then if that is more.
    fn drop(&mut self) {
        if let Some(meter) = self.meter.take() {
            let _ = meter.send(StreamEnd { usage: self.translator.usage(), complete: false });
        }
    }
}

/// Milliseconds left until `until_ms` (none: no limit).
fn remaining_ms(until_ms: Option<u64>) -> u64 {
    until_ms.map_or(u64::from(u32::MAX), |until| until.saturating_sub(Date::now().as_millis()).max(1))
}

/// Names what the target could not take as sent.
fn report_params(response: Response, report: &ParamReport) -> Response {
    let headers = response.headers();
    if !report.dropped.is_empty() {
        let _ = headers.set("x-switchyard-dropped-params", &report.dropped.join(", "));
    }
    if !report.adjusted.is_empty() {
        let _ = headers.set("x-switchyard-adjusted-params", &report.adjusted.join(", "));
    }
    response
}

fn mock_answer(request: &Request, reply: Option<&Rc<ResponsesReply>>, vendor_model: &str, created: u64) -> Answer {
    let id = match request.source.dialect {
        Dialect::AnthropicMessages => format!("msg_{}", &http::request_id()[4..]),
        Dialect::OpenaiChat | Dialect::OpenaiResponses => format!("chatcmpl-{}", &http::request_id()[4..]),
    };
    if request.stream {
        let body = mock::stream(request, vendor_model, id, egress(request, reply, created));
        let response = http::bytes_response(200, "text/event-stream", body);
        let _ = response.headers().set("cache-control", "no-cache");
        Answer::new(response, Metered::Now(None))
    } else {
        let answer = mock::answer(request, vendor_model, id);
        Answer::new(encode(request, reply, &answer, created), Metered::Now(answer.usage))
    }
}

/// `POST /v1/messages/count_tokens`: the prompt's tokens, counted by Anthropic when the model's
/// first target is Anthropic's (its own count, exact), else estimated (four characters a
/// token), and said so in `x-switchyard-token-count: estimate`. Nothing is charged.
pub async fn count_tokens(
    config: &Config,
    env: &Env,
    key: &KeyRecord,
    request: Request,
) -> Result<Response, Rejection> {
    let model = config.model(&request.model).ok_or_else(|| GatewayError::model_not_found(&request.model))?;
    // The key's own record decides (a revocation holds at once), as for a call.
    crate::metering::confirm(env, config, key).await?;
    key.check(config, &[&request.model], Date::now().as_millis())?;
    let estimate = || {
        let body = format!("{{\"input_tokens\":{}}}", request.needs().prompt_tokens);
        let response = http::bytes_response(200, "application/json", body.into_bytes());
        let _ = response.headers().set("x-switchyard-token-count", "estimate");
        response
    };
    let Some(target) = model.targets.first() else { return Ok(estimate()) };
    let provider = config.provider(target);
    let Ok(api_key) = vendor_key(provider, env) else { return Ok(estimate()) };
    let Some(outbound) = providers::count_tokens_request(provider, &target.model, &request, api_key.as_deref()) else {
        return Ok(estimate());
    };
    let now = Date::now().as_millis();
    let budget =
        Budget { started_ms: now, first_byte_ms: provider.timeout_ms, total_until_ms: Some(now + provider.timeout_ms) };
    match call_vendor(provider, &outbound, api_key.as_deref(), budget).await {
        Ok(mut response) => {
            let name = format!("{}/{}", provider.name, target.model);
            match read_answer(provider, &name, &mut response, budget).await {
                Ok(body) => {
                    let response = http::bytes_response(200, "application/json", body);
                    let _ = response.headers().set("x-switchyard-token-count", "exact");
                    Ok(response)
                }
                Err(_) => Ok(estimate()),
            }
        }
        // The request's own fault is the client's answer; the vendor's trouble, an estimate.
        Err(failed) if !failed.retryable => Err((*failed.error).into()),
        Err(_) => Ok(estimate()),
    }
}
