//! `POST /v1/chat/completions`: parse, resolve the model's targets, try them in order, and
//! answer with the first success, passed through untouched.

use crate::{http, upstream};
use futures::StreamExt;
use switchyard_core::chat::ChatRequest;
use switchyard_core::config::{Config, Provider, ProviderKind, Target};
use switchyard_core::health::Outcome;
use switchyard_core::providers::{self, is_retryable_status, mock, ParamReport, StreamTranslator};
use switchyard_core::GatewayError;
use worker::{Date, Env, Headers, Response, ResponseBuilder};

/// An attempt that produced no answer for the client.
struct Failed {
    error: GatewayError,
    /// Whether the next target may succeed where this one failed.
    retryable: bool,
    retry_after: Option<String>,
    /// The vendor's status, when it answered at all.
    vendor_status: Option<u16>,
}

impl Failed {
    fn retryable(error: GatewayError) -> Self {
        Self { error, retryable: true, retry_after: None, vendor_status: None }
    }

    /// The request itself is at fault: another target would refuse it too.
    fn final_(error: GatewayError) -> Self {
        Self { error, retryable: false, retry_after: None, vendor_status: None }
    }
}

/// The client's answer, and what each attempt at a vendor came to (for the health record).
pub struct Completed {
    pub response: Response,
    pub outcomes: Vec<Outcome>,
}

/// `strict_header`: the client's `x-switchyard-strict` asks that parameters a target cannot
/// honour be refused rather than dropped.
pub async fn complete(config: &Config, env: &Env, body: &[u8], strict_header: bool) -> Result<Completed, GatewayError> {
    let request = ChatRequest::parse(body)?;
    let model = config.model(&request.model).ok_or_else(|| GatewayError::model_not_found(&request.model))?;
    let strict = strict_header || model.strict;

    let mut failures: Vec<(&Target, Failed)> = Vec::new();
    let mut outcomes = Vec::new();
    for target in &model.targets {
        let provider = config.provider(target);
        let started = Date::now().as_millis();
        let result = attempt(provider, target, &request, env, strict).await;
        if provider.kind != ProviderKind::Mock {
            outcomes.push(outcome(config, target, &result, started));
        }
        match result {
            Ok(response) => return Ok(Completed { response: annotate(response, config, target, &failures), outcomes }),
            Err(failed) => {
                let stop = !failed.retryable;
                failures.push((target, failed));
                if stop {
                    break;
                }
            }
        }
    }
    Ok(Completed { response: failure_response(config, failures), outcomes })
}

fn outcome(config: &Config, target: &Target, result: &Result<Response, Failed>, started: u64) -> Outcome {
    let at_ms = Date::now().as_millis();
    let (ok, status, error) = match result {
        Ok(response) => (true, Some(response.status_code()), None),
        // A failure that is not retryable is the request's fault, not the vendor's: the vendor
        // answered, and is healthy.
        Err(failed) => (!failed.retryable, failed.vendor_status, failed.error.code.as_deref().map(str::to_owned)),
    };
    Outcome {
        target: describe(config, target),
        ok,
        status,
        error,
        latency_ms: at_ms.saturating_sub(started) as f64,
        at_ms,
    }
}

async fn attempt(
    provider: &Provider,
    target: &Target,
    request: &ChatRequest,
    env: &Env,
    strict: bool,
) -> Result<Response, Failed> {
    if provider.kind == ProviderKind::Mock {
        return Ok(mock_answer(request, &target.model));
    }
    let key = match &provider.api_key_secret {
        Some(secret) => Some(
            env.secret(secret)
                .map_err(|_| Failed::retryable(GatewayError::provider_key_missing(&provider.name, secret)))?
                .to_string(),
        ),
        None => None,
    };
    let prepared =
        providers::prepare_chat(provider, &target.model, request, key.as_deref(), strict).map_err(Failed::final_)?;
    let mut response =
        upstream::send(&prepared.outbound, provider.timeout_ms).await.map_err(|failure| match failure {
            upstream::Failure::Unreachable(cause) => {
                Failed::retryable(GatewayError::upstream_unreachable(&provider.name, cause))
            }
            upstream::Failure::Timeout => {
                Failed::retryable(GatewayError::upstream_timeout(&provider.name, provider.timeout_ms))
            }
        })?;
    let status = response.status_code();
    if !(200..300).contains(&status) {
        let retry_after = response.headers().get("retry-after").ok().flatten();
        let body = response.bytes().await.unwrap_or_default();
        return Err(Failed {
            error: providers::vendor_error(provider, status, &body, key.as_deref()),
            retryable: is_retryable_status(status),
            retry_after,
            vendor_status: Some(status),
        });
    }
    let created = Date::now().as_millis() / 1000;
    let answer = if prepared.plan.stream {
        let translator = providers::chat_stream(provider, prepared.plan.clone(), created);
        translate_stream(response, translator)
            .map_err(|e| Failed::retryable(GatewayError::upstream_invalid(&provider.name, e)))?
    } else if provider.kind == ProviderKind::Openai {
        pass_through(response)
    } else {
        let body = response
            .bytes()
            .await
            .map_err(|e| Failed::retryable(GatewayError::upstream_unreachable(&provider.name, e)))?;
        match providers::decode_chat(provider, &body, &prepared.plan, created) {
            Ok(Some(completion)) => http::json(200, &completion),
            Ok(None) => http::bytes_response(200, "application/json", body),
            Err(e) => return Err(Failed::retryable(e)),
        }
    };
    Ok(report_params(answer, &prepared.report))
}

/// The vendor's answer with its body untouched and only the headers the client needs; the
/// vendor's other headers (cookies, its own rate limits, ids) stay behind.
fn pass_through(response: Response) -> Response {
    let content_type = response.headers().get("content-type").ok().flatten();
    let status = response.status_code();
    let (_, body) = response.into_parts();
    let headers = Headers::new();
    let _ = headers.set("content-type", content_type.as_deref().unwrap_or("application/json"));
    ResponseBuilder::new().with_status(status).with_headers(headers).body(body)
}

/// The vendor's event stream through `translator`, chunk by chunk as it arrives. However the
/// vendor's stream ends, the client's ends with `[DONE]` (after an error event if it broke).
fn translate_stream(mut response: Response, translator: Box<dyn StreamTranslator>) -> worker::Result<Response> {
    let upstream = response.stream()?;
    let chunks = futures::stream::unfold(Some((upstream, translator)), |state| async move {
        let (mut upstream, mut translator) = state?;
        loop {
            let mut out = Vec::new();
            match upstream.next().await {
                Some(Ok(bytes)) => {
                    translator.push(&bytes, &mut out);
                    if !out.is_empty() {
                        return Some((Ok::<Vec<u8>, worker::Error>(out), Some((upstream, translator))));
                    }
                }
                Some(Err(e)) => {
                    translator.finish(Some(&e.to_string()), &mut out);
                    return Some((Ok(out), None));
                }
                None => {
                    translator.finish(None, &mut out);
                    return Some((Ok(out), None));
                }
            }
        }
    });
    let response = Response::from_stream(chunks)?;
    let headers = response.headers();
    headers.set("content-type", "text/event-stream; charset=utf-8")?;
    headers.set("cache-control", "no-cache")?;
    Ok(response)
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
    let created = worker::Date::now().as_millis() / 1000;
    if request.is_stream() {
        let response = http::bytes_response(200, "text/event-stream", mock::stream(request, vendor_model, id, created));
        let _ = response.headers().set("cache-control", "no-cache");
        response
    } else {
        http::json(200, &mock::completion(request, vendor_model, id, created))
    }
}

fn describe(config: &Config, target: &Target) -> String {
    format!("{}/{}", config.provider(target).name, target.model)
}

/// The `x-switchyard-*` headers: who answered, after how many attempts, and why earlier
/// attempts were abandoned.
fn annotate(response: Response, config: &Config, answered: &Target, failures: &[(&Target, Failed)]) -> Response {
    let headers = response.headers();
    let _ = headers.set("x-switchyard-provider", &config.provider(answered).name);
    let _ = headers.set("x-switchyard-model", &answered.model);
    let _ = headers.set("x-switchyard-attempts", &(failures.len() + 1).to_string());
    if !failures.is_empty() {
        let reasons: Vec<String> = failures
            .iter()
            .map(|(t, f)| format!("{}={}", describe(config, t), f.error.code.as_deref().unwrap_or(f.error.kind)))
            .collect();
        let _ = headers.set("x-switchyard-fallbacks", &reasons.join(", "));
    }
    response
}

/// Every attempt failed: a single attempt's error is the client's answer as it is; several
/// become one 503 that names each attempt.
fn failure_response(config: &Config, mut failures: Vec<(&Target, Failed)>) -> Response {
    let attempts = failures.len().to_string();
    let (error, retry_after) = if failures.len() == 1 {
        let (_, only) = failures.remove(0);
        (only.error, only.retry_after)
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
    let response = http::error_response(&error);
    let headers = response.headers();
    let _ = headers.set("x-switchyard-attempts", &attempts);
    if let Some(value) = retry_after {
        let _ = headers.set("retry-after", &value);
    }
    response
}
