//! `POST /v1/chat/completions`: parse, resolve the model's targets, and answer with the first
//! target that succeeds, translated into OpenAI's shape (or passed through untouched when the
//! vendor already speaks it).

use crate::attempts::{self, call_vendor, read_answer, vendor_key, Budget, Completed, Failed, Selection};
use crate::{health_view, http, upstream};
use futures::StreamExt;
use switchyard_core::catalog::ModelInfo;
use switchyard_core::chat::ChatRequest;
use switchyard_core::config::{Config, Model, Provider, ProviderKind, Target};
use switchyard_core::providers::{self, mock, ParamReport, StreamTranslator};
use switchyard_core::route::{self, Strategy, Tier};
use switchyard_core::GatewayError;
use worker::{Date, Env, Response};

/// `strict_header`: the client's `x-switchyard-strict` asks that parameters a target cannot
/// honour be refused rather than dropped.
/// `tier_hint`: the client's `x-switchyard-tier`, which decides a cascade's tier.
pub async fn complete(
    config: &Config,
    env: &Env,
    body: &[u8],
    strict_header: bool,
    tier_hint: Option<Tier>,
) -> Result<Completed, GatewayError> {
    let request = ChatRequest::parse(body)?;
    let model = config.model(&request.model).ok_or_else(|| GatewayError::model_not_found(&request.model))?;
    let strict = strict_header || model.strict;
    let with_fallbacks = match &request.models {
        Some(list) => Some(client_fallbacks(config, model, list)?),
        None => None,
    };
    let model = with_fallbacks.as_ref().unwrap_or(model);
    let needs = request.needs();
    let tier = (model.strategy == Strategy::Cascade)
        .then(|| route::classify(&needs, request.reasoning_effort.as_deref(), tier_hint, model.max_simple_tokens));
    let selection = Selection { needs: Some(needs), tier };
    let request = &request;
    Ok(attempts::run(config, env, model, &selection, |provider, target, budget| {
        attempt(provider, target, request, env, strict, budget, config.model_info(&target.model))
    })
    .await)
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

async fn attempt(
    provider: &Provider,
    target: &Target,
    request: &ChatRequest,
    env: &Env,
    strict: bool,
    budget: Budget,
    info: ModelInfo,
) -> Result<Response, Failed> {
    if provider.kind == ProviderKind::Mock {
        return Ok(mock_answer(request, &target.model));
    }
    let key = vendor_key(provider, env)?;
    let prepared =
        providers::prepare_chat(provider, &target.model, request, key.as_deref(), strict).map_err(Failed::final_)?;
    let mut response = call_vendor(provider, &prepared.outbound, key.as_deref(), budget.first_byte_ms).await?;
    let created = Date::now().as_millis() / 1000;
    let name = format!("{}/{}", provider.name, target.model);
    let answer = if prepared.plan.stream {
        let translator = providers::chat_stream(provider, prepared.plan.clone(), created);
        translate_stream(provider, name, response, translator, budget).await?
    } else {
        let content_type = response.headers().get("content-type").ok().flatten();
        let body = read_answer(provider, &name, &mut response, budget).await?;
        let (response, usage) = match providers::decode_chat(provider, &body, &prepared.plan, created) {
            Ok(Some(completion)) => (http::json(200, &completion), completion.usage),
            // OpenAI-format answers go back byte for byte, with the vendor's content type.
            Ok(None) => {
                let usage = providers::openai::usage_of(&body);
                (http::bytes_response(200, content_type.as_deref().unwrap_or("application/json"), body), usage)
            }
            Err(e) => return Err(Failed::retryable(e)),
        };
        if let Some(usage) = usage {
            // The catalog's price times what the vendor reported using.
            let _ = response.headers().set("x-switchyard-cost-usd", &format!("{:.8}", info.cost(&usage)));
        }
        response
    };
    Ok(report_params(answer, &prepared.report))
}

/// The vendor's event stream through `translator`, chunk by chunk as it arrives.
///
/// The gateway commits to this target only once the vendor's first event has translated into
/// something for the client: a stream that fails before that (an error event, a break, nothing
/// within the provider's timeout) is a failed attempt, and the client never sees it. After the
/// commit, however the vendor's stream ends, the client's ends with `[DONE]` (after an error
/// event if it broke).
async fn translate_stream(
    provider: &Provider,
    name: String,
    mut response: Response,
    mut translator: Box<dyn StreamTranslator>,
    budget: Budget,
) -> Result<Response, Failed> {
    let timeout_ms = budget.first_byte_ms.min(remaining_ms(budget.total_until_ms));
    let broken = |cause: String| {
        Failed::retryable(GatewayError::new(
            502,
            "server_error",
            "upstream_stream_broken",
            format!("Provider `{}` broke off its stream before its first event: {cause}", provider.name),
        ))
    };
    let mut upstream = response.stream().map_err(|e| broken(e.to_string()))?;
    let mut first = Vec::new();
    let mut ended = false;
    while first.is_empty() && !ended {
        match upstream::within(timeout_ms, upstream.next()).await {
            None => return Err(Failed::retryable(GatewayError::upstream_timeout(&provider.name, timeout_ms))),
            Some(Some(Ok(bytes))) => translator.push(&bytes, &mut first),
            Some(Some(Err(e))) => return Err(broken(e.to_string())),
            Some(None) => {
                translator.finish(None, &mut first);
                ended = true;
            }
        }
        if let Some(error) = translator.error() {
            return Err(Failed::retryable(error.clone()));
        }
    }

    let (total_until_ms, started_ms) = (budget.total_until_ms, budget.started_ms);
    // The stream's total time is known at its end, after the response has gone: it is kept in
    // this isolate's health view and sent along with the next report.
    let finished = move || health_view::complete(&name, Date::now().as_millis().saturating_sub(started_ms) as f64);
    if ended {
        finished();
    }
    let rest = futures::stream::unfold((!ended).then_some((upstream, translator, finished)), move |state| async move {
        let (mut upstream, mut translator, finished) = state?;
        loop {
            let mut out = Vec::new();
            // A timer only when the route sets a total timeout: one per chunk costs otherwise.
            let next = match total_until_ms {
                Some(_) => match upstream::within(remaining_ms(total_until_ms), upstream.next()).await {
                    Some(next) => next,
                    None => {
                        translator.finish(Some("the answer took longer than the route's total timeout"), &mut out);
                        finished();
                        return Some((Ok(out), None));
                    }
                },
                None => upstream.next().await,
            };
            match next {
                Some(Ok(bytes)) => {
                    translator.push(&bytes, &mut out);
                    if !out.is_empty() {
                        return Some((Ok::<Vec<u8>, worker::Error>(out), Some((upstream, translator, finished))));
                    }
                }
                Some(Err(e)) => {
                    translator.finish(Some(&e.to_string()), &mut out);
                    finished();
                    return Some((Ok(out), None));
                }
                None => {
                    translator.finish(None, &mut out);
                    finished();
                    return Some((Ok(out), None));
                }
            }
        }
    });
    let chunks = futures::stream::once(async move { Ok(first) }).chain(rest);
    let response = Response::from_stream(chunks).map_err(|e| broken(e.to_string()))?;
    let headers = response.headers();
    let _ = headers.set("content-type", "text/event-stream; charset=utf-8");
    let _ = headers.set("cache-control", "no-cache");
    Ok(response)
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

fn mock_answer(request: &ChatRequest, vendor_model: &str) -> Response {
    let id = format!("chatcmpl-{}", &http::request_id()[4..]);
    let created = Date::now().as_millis() / 1000;
    if request.is_stream() {
        let response = http::bytes_response(200, "text/event-stream", mock::stream(request, vendor_model, id, created));
        let _ = response.headers().set("cache-control", "no-cache");
        response
    } else {
        http::json(200, &mock::completion(request, vendor_model, id, created))
    }
}
