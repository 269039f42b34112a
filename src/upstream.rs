//! Outbound calls to vendors, with a deadline: the runtime's `fetch` has none, so the call races
//! a timer and is aborted when the timer wins. Redirects are never followed: a vendor key sent
//! in `x-api-key` or `x-goog-api-key` would go along to wherever the redirect points (the Fetch
//! standard strips only `Authorization` across origins).

use futures::future::{select, Either};
use futures::StreamExt;
use std::time::Duration;
use switchyard_core::providers::OutboundRequest;
use worker::js_sys::Uint8Array;
use worker::{
    AbortController, AbortSignal, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response,
    ResponseBody,
};

/// The most of a vendor's error body the gateway reads: enough for any vendor's error object,
/// little enough that an HTML page or an endless body costs nothing.
pub const ERROR_BODY_CAP: usize = 64 * 1024;

/// Why a vendor gave no answer at all.
#[derive(Debug)]
pub enum Failure {
    /// Connection refused or reset, DNS, TLS: the vendor could not be reached.
    Unreachable(String),
    /// No response headers within the provider's timeout.
    Timeout,
}

/// Sends `outbound` and returns the vendor's response once its headers arrive, or the failure.
pub async fn send(outbound: &OutboundRequest, timeout_ms: u64) -> Result<Response, Failure> {
    send_as(Method::Post, outbound, timeout_ms).await
}

/// [`send`] with another method than POST (a body only with POST).
pub async fn send_as(method: Method, outbound: &OutboundRequest, timeout_ms: u64) -> Result<Response, Failure> {
    let request =
        build(method, outbound).map_err(|e| Failure::Unreachable(format!("cannot build the request: {e}")))?;
    let mut guard = AbortOnDrop(Some(AbortController::default()));
    let signal = guard.0.as_ref().map(AbortController::signal).unwrap_or_else(AbortSignal::abort);
    let fetch = Fetch::Request(request);
    let call = fetch.send_with_signal(&signal);
    let timer = timer(timeout_ms);
    futures::pin_mut!(call, timer);
    match select(call, timer).await {
        Either::Left((Ok(response), _)) => {
            // The body still streams in: the request must not be aborted any more.
            guard.0 = None;
            Ok(response)
        }
        Either::Left((Err(e), _)) => Err(Failure::Unreachable(e.to_string())),
        Either::Right(_) => Err(Failure::Timeout),
    }
}

/// Aborts the vendor request when the attempt is given up before its response arrived: on a
/// timeout, when it loses a hedged race, or when the client goes away.
struct AbortOnDrop(Option<AbortController>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(controller) = self.0.take() {
            controller.abort();
        }
    }
}

fn build(method: Method, outbound: &OutboundRequest) -> worker::Result<Request> {
    let headers = Headers::new();
    for (name, value) in &outbound.headers {
        headers.set(name, value)?;
    }
    let mut init = RequestInit::new();
    if method == Method::Post {
        init.with_body(Some(Uint8Array::from(outbound.body.as_slice()).into()));
    }
    init.with_method(method).with_headers(headers).with_redirect(RequestRedirect::Manual);
    Request::new_with_init(&outbound.url, &init)
}

/// The longest timer the runtime takes (`setTimeout` counts in an i32 of milliseconds: a
/// longer one wraps, often to a negative delay that fires at once).
const LONGEST_TIMER_MS: u64 = i32::MAX as u64;

/// A timer of `ms`, at most `LONGEST_TIMER_MS`.
pub fn timer(ms: u64) -> Delay {
    Delay::from(Duration::from_millis(ms.min(LONGEST_TIMER_MS)))
}

/// `future`'s output, or `None` when `timeout_ms` passes first.
pub async fn within<F: std::future::Future>(timeout_ms: u64, future: F) -> Option<F::Output> {
    let timer = timer(timeout_ms);
    futures::pin_mut!(future, timer);
    match select(future, timer).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

/// The whole of a vendor's body, read by the runtime in one piece (one promise, not a future
/// and a copy a chunk as `Response::bytes` reads a stream).
pub async fn body_bytes(response: &mut Response) -> Result<Vec<u8>, String> {
    let stream = match response.body() {
        ResponseBody::Body(bytes) => return Ok(bytes.clone()),
        ResponseBody::Empty => return Ok(Vec::new()),
        ResponseBody::Stream(stream) => stream.clone(),
    };
    let whole = worker::web_sys::Response::new_with_opt_readable_stream(Some(&stream))
        .and_then(|body| body.array_buffer())
        .map_err(crate::relay::describe)?;
    let buffer = worker::wasm_bindgen_futures::JsFuture::from(whole).await.map_err(crate::relay::describe)?;
    Ok(worker::js_sys::Uint8Array::new(&buffer).to_vec())
}

/// At most `cap` bytes of a body, read for at most `timeout_ms`; the rest is not waited for,
/// and the body is cancelled (dropping the reader cancels the vendor's stream), so that a body
/// that trickles in or never ends holds neither the client nor a connection.
pub async fn read_capped(response: &mut Response, cap: usize, timeout_ms: u64) -> Vec<u8> {
    let mut stream = match response.body() {
        ResponseBody::Body(bytes) => return bytes[..bytes.len().min(cap)].to_vec(),
        ResponseBody::Empty => return Vec::new(),
        ResponseBody::Stream(_) => match response.stream() {
            Ok(stream) => stream,
            Err(_) => return Vec::new(),
        },
    };
    let mut body = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            let room = cap - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= cap {
                break;
            }
        }
    };
    within(timeout_ms.max(1), read).await;
    body
}

/// Lets go of a vendor's body that will not be read: its stream is cancelled now rather than
/// when the runtime collects it, so the connection is freed at once.
pub fn discard(response: Response) {
    if let ResponseBody::Stream(stream) = response.body() {
        let _ = stream.cancel();
    }
}
