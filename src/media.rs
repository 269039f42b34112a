//! What the media endpoints (`images`, `audio`) share: the body under its limit (JSON bodies
//! under `max_body_bytes`, multipart uploads under `max_upload_bytes`), the model's targets that
//! can serve the task, admission with the most the call can cost, the vendor calls of one
//! attempt, and the answer with its cost and the parameters a target could not take as sent.
//! The attempts themselves are `attempts::run`'s, as for chat and embeddings.

use crate::attempts::{call_vendor, read_answer, Answer, Budget, Completed, Failed, Selection};
use crate::http::{self, Rejection};
use crate::metering::{self, Admission, Estimate, Metered};
use crate::{audio, images};
use std::borrow::Cow;
use switchyard_core::chat::Usage;
use switchyard_core::config::{Config, Model, Provider, Target};
use switchyard_core::endpoint::Endpoint;
use switchyard_core::keys::KeyRecord;
use switchyard_core::media::{multipart, Task};
use switchyard_core::providers::{OutboundRequest, ParamReport};
use switchyard_core::GatewayError;
use worker::{Env, Request, Response, ResponseBody};

/// One of the media endpoints: its body read (refused with 413 past its limit, and a multipart
/// one with 400 before it is read when its Content-Type is not a form's), then the call.
pub async fn serve(
    req: &mut Request,
    endpoint: Endpoint,
    config: &Config,
    env: &Env,
    key: &KeyRecord,
) -> Result<(Completed, Admission), Rejection> {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let strict = header("x-switchyard-strict").is_some_and(|v| http::truthy(&v));
    let content_type = header("content-type").unwrap_or_default();
    let limits = &config.limits;
    let declared = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let limit = match endpoint {
        Endpoint::ImageGenerations | Endpoint::Speech => limits.max_body_bytes,
        _ => limits.max_upload_bytes,
    };
    if declared.is_some_and(|len| len > limit as u64) {
        drain(req, declared.unwrap_or(0)).await;
        return Err(GatewayError::request_too_large(limit).into());
    }
    match endpoint {
        Endpoint::ImageGenerations => {
            let body = http::read_body(req, limits.max_body_bytes).await?;
            images::generate(config, env, key, body, strict).await
        }
        Endpoint::Speech => {
            let body = http::read_body(req, limits.max_body_bytes).await?;
            audio::speech(config, env, key, body, strict).await
        }
        Endpoint::ImageEdits | Endpoint::Transcriptions | Endpoint::Translations => {
            if multipart::boundary(&content_type)?.is_none() {
                return Err(GatewayError::invalid_request(
                    "",
                    "This endpoint takes a multipart/form-data body (with a boundary in its Content-Type).",
                )
                .into());
            }
            let body = http::read_body(req, limits.max_upload_bytes).await?;
            let form = multipart::Form::parse(&content_type, body)?;
            match endpoint {
                Endpoint::ImageEdits => images::edit(config, env, key, form, strict).await,
                _ => audio::transcribe(config, env, key, form, endpoint == Endpoint::Translations, strict).await,
            }
        }
        _ => Err(GatewayError::new(500, "server_error", "internal_error", "not a media endpoint").into()),
    }
}

/// The most of a body over its limit that is read (and thrown away) before the 413, and for
/// how long: a client that is still sending does not read an answer that comes first (it sees
/// its connection reset instead), and an upload a little over the limit is the usual case.
const DRAIN_CAP: u64 = 64 * 1024 * 1024;
const DRAIN_MS: u64 = 30_000;

/// Reads a refused body to its end (`declared` bytes, at most `DRAIN_CAP`, within `DRAIN_MS`).
async fn drain(req: &mut Request, declared: u64) {
    use futures::StreamExt;
    if declared > DRAIN_CAP {
        return;
    }
    let Ok(mut stream) = req.stream() else { return };
    let read = async {
        let mut total = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            total += chunk.len() as u64;
            if total > DRAIN_CAP {
                break;
            }
        }
    };
    crate::upstream::within(DRAIN_MS, read).await;
}

/// The model `name` with the targets that can serve `task`, and whether parameters a target
/// cannot honour are refused (the client's `x-switchyard-strict`, or the model's `strict`).
pub fn plan<'c>(
    config: &'c Config,
    key: &KeyRecord,
    name: &str,
    task: Task,
    strict: bool,
) -> Result<(Cow<'c, Model>, bool), Rejection> {
    let model = config.model(name).ok_or_else(|| GatewayError::model_not_found(name))?;
    config.check_priced(!key.policy.budgets.is_empty(), model)?;
    let strict = strict || model.strict;
    Ok((switchyard_core::media::servable(config, model, task)?, strict))
}

/// Admits the call, holding `amount_usd` (the most it can cost at the dearest target).
///
/// Then runs its attempts (`attempt` for each target tried), the call's leases kept from
/// lapsing while they run: the answer and the admission to settle.
#[allow(clippy::too_many_arguments)]
pub async fn admit_and_run<'c, F, Fut>(
    env: &Env,
    config: &'c Config,
    key: &KeyRecord,
    model: &'c Model,
    name: &str,
    amount_usd: f64,
    tokens: u64,
    mut attempt: F,
) -> Result<(Completed, Admission), Rejection>
where
    F: FnMut(&'c Provider, &'c Target, Budget) -> Fut,
    Fut: std::future::Future<Output = Result<Answer, Failed>>,
{
    let admission = metering::admit(env, config, key, &[name], Estimate { amount_usd, tokens }).await?;
    let selection = Selection { tokens, ..Selection::default() };
    let dispatched = admission.dispatch_flag();
    let completed = admission
        .keep_while(crate::attempts::run(config, env, model, &selection, |provider, target, budget| {
            dispatched.set(true);
            attempt(provider, target, budget)
        }))
        .await;
    Ok((completed, admission))
}

/// The answers of `calls` (one attempt's, made together: a vendor that makes one image a call
/// is called once an image), each read whole; the first failure fails the attempt, and the
/// others are aborted.
pub async fn call_all(
    provider: &Provider,
    name: &str,
    calls: &[OutboundRequest],
    api_key: Option<&str>,
    budget: Budget,
) -> Result<Vec<Vec<u8>>, Failed> {
    futures::future::try_join_all(calls.iter().map(|call| async move {
        let mut response = call_vendor(provider, call, api_key, budget).await?;
        read_answer(provider, name, &mut response, budget).await
    }))
    .await
}

/// A translation's failure: the vendor's filters (400 `content_filter`) are the request's,
/// anything else (an answer that is not the API's) the vendor's.
pub fn decode_failed(error: GatewayError) -> Failed {
    if error.status == 400 {
        Failed::final_(error)
    } else {
        Failed::retryable(error)
    }
}

/// The client's answer: its cost (when known, in `x-switchyard-cost-usd`; else the call is
/// charged what was held), the tokens for the usage row, and what the target could not take
/// as sent.
pub fn answer(response: Response, cost_usd: Option<f64>, usage: Option<Usage>, report: &ParamReport) -> Answer {
    let headers = response.headers();
    if let Some(cost) = cost_usd {
        let _ = headers.set("x-switchyard-cost-usd", &format!("{cost:.8}"));
    }
    if !report.dropped.is_empty() {
        let _ = headers.set("x-switchyard-dropped-params", &report.dropped.join(", "));
    }
    if !report.adjusted.is_empty() {
        let _ = headers.set("x-switchyard-adjusted-params", &report.adjusted.join(", "));
    }
    Answer::new(response, Metered::Priced { cost_usd, usage })
}

/// The vendor's answer streamed through to the client as it arrives, never read here, with the
/// vendor's content type (`fallback` if it sent none).
///
/// The route's total time holds it too: a vendor still sending when it passes is cut off, and
/// the client's body ends in an error (audio has no error event to end with).
pub fn stream_through(
    provider: &Provider,
    vendor: &Response,
    fallback: &str,
    budget: &Budget,
) -> Result<Response, Failed> {
    let content_type = vendor.headers().get("content-type").ok().flatten().unwrap_or_else(|| fallback.to_owned());
    let left_ms = budget.total_until_ms.map(|until| until.saturating_sub(worker::Date::now().as_millis()).max(1));
    let body = match vendor.body() {
        ResponseBody::Stream(stream) => ResponseBody::Stream(match left_ms {
            Some(ms) => crate::relay::cut_after(stream, ms),
            None => stream.clone(),
        }),
        ResponseBody::Body(bytes) => ResponseBody::Body(bytes.clone()),
        ResponseBody::Empty => ResponseBody::Empty,
    };
    let response = Response::from_body(body)
        .map_err(|e| Failed::retryable(GatewayError::upstream_stream_broken(&provider.name, e)))?;
    let _ = response.headers().set("content-type", &content_type);
    Ok(response)
}

/// Whole bytes as the client's answer.
pub fn bytes(body: Vec<u8>, content_type: &str) -> Response {
    http::bytes_response(200, content_type, body)
}
