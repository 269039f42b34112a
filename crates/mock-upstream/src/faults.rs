//! Faults a test can ask for: an error status, a slow first byte, slow or cut streams, bodies
//! that are not what the vendor's API promises.

use crate::{full, Body, Vendor};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use std::time::Duration;

/// Which requests a fault applies to. Absent fields match anything.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The `model` of the request body.
    pub model: Option<String>,
    /// A substring of the request path.
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default, rename = "match")]
    pub matches: Match,
    /// How many requests the fault applies to; absent: every matching request.
    pub times: Option<u32>,
    /// Answer with this status instead of a success.
    pub status: Option<u16>,
    /// Body of that answer: a string is sent as is, anything else as JSON.
    pub body: Option<serde_json::Value>,
    /// `Retry-After` header of that answer.
    pub retry_after: Option<String>,
    /// `retry-after-ms` header of that answer.
    pub retry_after_ms: Option<String>,
    /// Wait before sending anything.
    pub first_byte_delay_ms: Option<u64>,
    /// Wait between stream events.
    pub chunk_delay_ms: Option<u64>,
    /// Close the connection after this many stream events (or body bytes, unstreamed).
    pub cut_after: Option<usize>,
    /// Send a body that is not valid JSON.
    #[serde(default)]
    pub malformed: bool,
    /// Content chunks in a streamed answer, instead of the server's default.
    pub stream_chunks: Option<usize>,
    /// Applies to this fraction of the matching requests, spread evenly and deterministically
    /// (0.3: the 4th, 7th, 10th, ... of every ten), instead of to every one.
    pub ratio: Option<f64>,
    /// `Location` header of that answer (with a 3xx `status`: a redirect).
    pub location: Option<String>,
    /// Send that answer's body a few bytes at a time, this long apart.
    pub trickle_ms: Option<u64>,
    /// Answer 200 `text/event-stream` with this many bytes and never a line break (a broken
    /// server or proxy).
    pub endless_line_bytes: Option<usize>,
    /// Matching requests seen so far, for `ratio`.
    #[serde(skip)]
    pub seen: u64,
}

impl Fault {
    pub fn matches(&self, path: &str, model: Option<&str>) -> bool {
        let path_ok = self.matches.path.as_deref().is_none_or(|p| path.contains(p));
        let model_ok = self.matches.model.as_deref().is_none_or(|m| Some(m) == model);
        path_ok && model_ok
    }

    /// The error answer this fault asks for, if it asks for one, in the vendor's error shape.
    pub fn error_response(&self, vendor: Vendor) -> Option<Response<Body>> {
        let status = StatusCode::from_u16(self.status?).ok()?;
        let (content_type, body) = match &self.body {
            Some(serde_json::Value::String(s)) => ("text/plain", s.clone().into_bytes()),
            Some(value) => ("application/json", serde_json::to_vec(value).unwrap_or_default()),
            None => {
                let message = format!("mock-upstream injected status {}", status.as_u16());
                let body = match vendor {
                    Vendor::OpenAi => serde_json::json!({"error": {
                        "message": message,
                        "type": if status.is_server_error() { "server_error" } else { "invalid_request_error" },
                        "param": null, "code": null}}),
                    Vendor::Anthropic => serde_json::json!({"type": "error", "error": {
                        "type": crate::anthropic::error_type(status.as_u16()), "message": message}}),
                    Vendor::Gemini => crate::gemini::error(status.as_u16(), &message),
                };
                ("application/json", serde_json::to_vec(&body).unwrap_or_default())
            }
        };
        let mut response = match self.trickle_ms {
            Some(ms) => trickle(status, content_type, body, Duration::from_millis(ms)),
            None => full(status, content_type, body),
        };
        let headers = [
            ("retry-after", &self.retry_after),
            ("retry-after-ms", &self.retry_after_ms),
            ("location", &self.location),
        ];
        for (name, value) in headers {
            if let Some(value) = value.as_ref().and_then(|v| v.parse().ok()) {
                response.headers_mut().insert(name, value);
            }
        }
        Some(response)
    }
}

/// A body sent eight bytes at a time, `gap` apart.
fn trickle(status: StatusCode, content_type: &str, body: Vec<u8>, gap: Duration) -> Response<Body> {
    let pieces: Vec<Bytes> = body.chunks(8).map(Bytes::copy_from_slice).collect();
    let stream = futures_util::stream::unfold(pieces.into_iter(), move |mut pieces| async move {
        let piece = pieces.next()?;
        tokio::time::sleep(gap).await;
        Some((Ok::<_, std::io::Error>(Frame::data(piece)), pieces))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", content_type.parse().expect("static content type"));
    response
}

/// `bytes` of one line that never ends, in 64 KiB pieces.
pub fn endless_line(bytes: usize) -> Response<Body> {
    let piece = Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_util::stream::unfold(0usize, move |sent| {
        let piece = piece.clone();
        async move {
            if sent >= bytes {
                return None;
            }
            let piece = piece.slice(..piece.len().min(bytes - sent));
            tokio::task::yield_now().await;
            Some((Ok::<_, std::io::Error>(Frame::data(piece.clone())), sent + piece.len()))
        }
    });
    let mut response = Response::new(StreamBody::new(stream).boxed());
    response.headers_mut().insert("content-type", "text/event-stream".parse().expect("static content type"));
    response
}
