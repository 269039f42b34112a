//! HTTP plumbing: error and JSON responses, the headers every response carries, the request
//! body under its size limit.

use futures::StreamExt;
use serde::Serialize;
use switchyard_core::canonical::Dialect;
use switchyard_core::config::ConfigError;
use switchyard_core::GatewayError;
use worker::{Headers, Request, Response, ResponseBuilder};

/// Headers a browser client may read from a cross-origin response.
const EXPOSED: &str = "x-request-id, x-switchyard-provider, x-switchyard-model, x-switchyard-attempts, \
    x-switchyard-fallbacks, x-switchyard-route, x-switchyard-cascade, x-switchyard-dropped-params, \
    x-switchyard-adjusted-params, x-switchyard-cost-usd, x-switchyard-budget-warning, x-switchyard-budget-window, \
    x-switchyard-budget-reset, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
    x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, retry-after";

/// Request headers a browser client may send: the OpenAI and Anthropic SDKs' own (the
/// Anthropic SDK in a browser sends `anthropic-dangerous-direct-browser-access`), and the
/// gateway's.
const ALLOWED_HEADERS: &str = "authorization, content-type, accept, x-api-key, x-stainless-os, x-stainless-lang, \
    x-stainless-package-version, x-stainless-runtime, x-stainless-runtime-version, x-stainless-arch, \
    x-stainless-retry-count, x-stainless-timeout, x-stainless-helper-method, x-stainless-poll-helper, \
    x-stainless-async, openai-organization, openai-project, openai-beta, idempotency-key, anthropic-version, \
    anthropic-beta, anthropic-dangerous-direct-browser-access, x-goog-api-key, x-goog-api-client, traceparent, \
    tracestate, x-switchyard-strict, x-switchyard-tier, x-switchyard-cache-ttl, cache-control";

/// A header value meaning yes: `1`, `true`, `yes`, `on`.
pub fn truthy(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

pub fn request_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&(worker::Date::now().as_millis()).to_be_bytes());
    }
    let mut id = String::with_capacity(4 + 24);
    id.push_str("req_");
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

fn set(headers: &Headers, name: &str, value: &str) {
    // Only fails for names or values that are not valid HTTP, which the gateway never builds.
    let _ = headers.set(name, value);
}

pub fn bytes_response(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    let headers = Headers::new();
    set(&headers, "content-type", content_type);
    ResponseBuilder::new().with_status(status).with_headers(headers).fixed(body)
}

pub fn json<T: Serialize>(status: u16, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => bytes_response(status, "application/json", body),
        Err(e) => error_response(&GatewayError::new(
            500,
            "server_error",
            "internal_error",
            format!("cannot encode the response: {e}"),
        )),
    }
}

pub fn error_response(error: &GatewayError) -> Response {
    bytes_response(error.status, "application/json", error.to_json())
}

/// The error in the client's dialect, with the status that dialect gives it (Anthropic's 529
/// when every target is out).
pub fn error_in(dialect: Dialect, error: &GatewayError) -> Response {
    match dialect {
        Dialect::AnthropicMessages => {
            let (status, body) = switchyard_core::ingress::anthropic_messages::error_body(error);
            bytes_response(status, "application/json", body)
        }
        Dialect::OpenaiChat | Dialect::OpenaiResponses => error_response(error),
    }
}

/// A request refused before any vendor was called: the error, and headers that tell the client
/// when to come back (`Retry-After`, `x-ratelimit-*`, ...).
#[derive(Debug)]
pub struct Rejection {
    pub error: GatewayError,
    pub headers: Vec<(String, String)>,
}

impl From<GatewayError> for Rejection {
    fn from(error: GatewayError) -> Self {
        Self { error, headers: Vec::new() }
    }
}

impl Rejection {
    /// The refusal in the client's dialect.
    pub fn response(&self, dialect: Dialect) -> Response {
        with_headers(error_in(dialect, &self.error), &self.headers)
    }
}

/// `response` with `headers` added.
pub fn with_headers(response: Response, headers: &[(String, String)]) -> Response {
    for (name, value) in headers {
        set(response.headers(), name, value);
    }
    response
}

pub fn with_allow(response: Response, allowed: &str) -> Response {
    set(response.headers(), "allow", allowed);
    response
}

/// The answer to a browser's CORS preflight.
pub fn preflight(allowed: &str) -> Response {
    let headers = Headers::new();
    set(&headers, "allow", allowed);
    set(&headers, "access-control-allow-methods", allowed);
    set(&headers, "access-control-allow-headers", ALLOWED_HEADERS);
    set(&headers, "access-control-max-age", "86400");
    ResponseBuilder::new().with_status(204).with_headers(headers).empty()
}

/// `GET /health`: 200 while the gateway can serve, 503 when its configuration is invalid. The
/// public answer says only that, with an error id the operator finds in the worker's log; the
/// reason itself is shown only with the admin token (`detail`), since a configuration's
/// problem can name its providers, hosts and secrets. `warnings` are for the operator too, but
/// reveal nothing (the admin API being off for a short token).
pub fn health(config_error: Option<ConfigError>, warnings: &[&str], detail: bool) -> Response {
    let mut body = serde_json::Map::new();
    let status = match &config_error {
        None => {
            body.insert("status".into(), "ok".into());
            200
        }
        Some(e) => {
            body.insert("status".into(), "error".into());
            body.insert("error_id".into(), config_error_id(e).into());
            if detail {
                body.insert("config".into(), e.to_string().into());
            }
            503
        }
    };
    if !warnings.is_empty() {
        body.insert("warnings".into(), warnings.iter().map(|w| serde_json::Value::from(*w)).collect());
    }
    json(status, &body)
}

/// A configuration problem's id: the same problem, the same id, in the answer and in the log.
pub fn config_error_id(error: &ConfigError) -> String {
    let digest = switchyard_core::auth::sha256(&error.to_string());
    format!("cfg_{}", &switchyard_core::keys::hex(&digest)[..12])
}

/// What a client is told when the configuration is invalid: that it is, and its id; never the
/// reason (see `health`).
pub fn config_invalid(error: &ConfigError) -> GatewayError {
    let id = config_error_id(error);
    // Once per isolate: every request fails the same way, and the log must not flood.
    thread_local! {
        static LOGGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !LOGGED.with(|logged| logged.replace(true)) {
        worker::console_error!("switchyard: invalid configuration ({id}): {error}");
    }
    GatewayError::new(
        500,
        "server_error",
        "config_invalid",
        format!(
            "The gateway's configuration is invalid (error id {id}); its operator finds the reason at /admin/health."
        ),
    )
}

/// Headers every response carries, whatever produced it.
pub fn finish(response: Response, request_id: &str) -> Response {
    let headers = response.headers();
    set(headers, "x-request-id", request_id);
    // Anthropic's SDKs read the request id from `request-id`.
    set(headers, "request-id", request_id);
    set(headers, "access-control-allow-origin", "*");
    set(headers, "access-control-expose-headers", EXPOSED);
    response
}

/// The request body, refused with 413 as soon as it exceeds `limit` bytes (by its
/// Content-Length, or while it streams in when it has none).
pub async fn read_body(req: &mut Request, limit: usize) -> Result<Vec<u8>, GatewayError> {
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(GatewayError::request_too_large(limit));
    }
    if declared.is_some() {
        // Its length is known and within the limit: read whole, in one step (a stream costs a
        // promise turn a chunk). The runtime holds a body to its Content-Length.
        return req
            .bytes()
            .await
            .map_err(|e| GatewayError::invalid_request("", format!("The request body could not be read: {e}")));
    }
    let mut body = Vec::with_capacity(4096);
    // A request without a body has no stream; it parses as the empty document.
    let Ok(mut stream) = req.stream() else {
        return Ok(body);
    };
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| GatewayError::invalid_request("", format!("The request body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(GatewayError::request_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
