//! HTTP plumbing: error and JSON responses, the headers every response carries, the request
//! body under its size limit.

use futures::StreamExt;
use serde::Serialize;
use switchyard_core::config::ConfigError;
use switchyard_core::GatewayError;
use worker::{Headers, Request, Response, ResponseBuilder};

/// Headers a browser client may read from a cross-origin response.
const EXPOSED: &str = "x-request-id, x-switchyard-provider, x-switchyard-model, x-switchyard-attempts, \
    x-switchyard-fallbacks, x-switchyard-route, x-switchyard-cascade, x-switchyard-dropped-params, \
    x-switchyard-adjusted-params, x-switchyard-cost-usd, x-switchyard-budget-warning, x-switchyard-budget-window, \
    x-switchyard-budget-reset, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
    x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, retry-after";

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
    pub fn response(&self) -> Response {
        with_headers(error_response(&self.error), &self.headers)
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
    set(
        &headers,
        "access-control-allow-headers",
        "authorization, content-type, x-api-key, x-stainless-os, x-stainless-lang, x-stainless-package-version, x-stainless-runtime, x-stainless-runtime-version, x-stainless-arch, x-stainless-retry-count, x-stainless-timeout, openai-organization, openai-project, anthropic-version, anthropic-beta, x-switchyard-strict, x-switchyard-tier",
    );
    set(&headers, "access-control-max-age", "86400");
    ResponseBuilder::new().with_status(204).with_headers(headers).empty()
}

/// `GET /health`: 200 while the gateway can serve, 503 with the reason when its configuration
/// is invalid.
pub fn health(config_error: Option<ConfigError>) -> Response {
    match config_error {
        None => json(200, &serde_json::json!({"status": "ok"})),
        Some(e) => json(503, &serde_json::json!({"status": "error", "config": e.to_string()})),
    }
}

/// Headers every response carries, whatever produced it.
pub fn finish(response: Response, request_id: &str) -> Response {
    let headers = response.headers();
    set(headers, "x-request-id", request_id);
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
