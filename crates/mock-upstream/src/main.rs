//! mock-upstream: a native stand-in for AI vendors' HTTP APIs, for Switchyard's end-to-end tests
//! and benchmarks.
//!
//! It answers in the vendors' real wire formats (OpenAI's Chat Completions, Responses (`POST
//! .../responses`, with `GET` and `DELETE .../responses/{id}` for those it stores) and Embeddings,
//! Anthropic's Messages and its token counter, Gemini's generateContent, streamGenerateContent
//! and batchEmbedContents; images and audio, see `media.rs`), reasoning included when a request
//! asks for it, records every
//! request it receives (unless `--no-record`, for benchmarks), and injects faults a test asks
//! for. Control endpoints live under `/_mock/` (see `control.rs`). Usage:
//! `mock-upstream [--port N] [--stream-chunks N] [--no-record]`; it prints
//! `mock-upstream listening on http://127.0.0.1:<port>` once it accepts connections, and stops on
//! SIGINT, SIGTERM or `POST /_mock/shutdown`.

mod anthropic;
mod control;
mod faults;
mod gemini;
mod media;
mod openai;
mod responses;
mod wire;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", content_type.parse().expect("static content type"));
    response
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    full(status, "application/json", serde_json::to_vec(value).unwrap_or_default())
}

/// Whose wire format a path belongs to, for the shape of errors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Vendor {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Vendor {
    pub fn of(path: &str) -> Self {
        if path.ends_with("/messages") || path.ends_with("/messages/count_tokens") {
            Vendor::Anthropic
        } else if path.contains("/models/") && path.contains(':') {
            Vendor::Gemini
        } else {
            Vendor::OpenAi
        }
    }
}

/// What the server is told at start-up.
#[derive(Clone, Debug)]
pub struct Options {
    pub port: u16,
    /// Content chunks in a streamed answer.
    pub stream_chunks: usize,
    /// Keep every request for `/_mock/requests`; `--no-record` turns it off for benchmarks, where
    /// the record would grow by a few KB a request and cost time to build.
    pub record: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options { port: 0, stream_chunks: 8, record: true };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => options.port = value("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            "--stream-chunks" => {
                options.stream_chunks =
                    value("--stream-chunks")?.parse().map_err(|e| format!("--stream-chunks: {e}"))?
            }
            "--no-record" => options.record = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

pub struct Server {
    pub options: Options,
    pub state: control::State,
    pub shutdown: Notify,
}

async fn handle(server: Arc<Server>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(full(StatusCode::BAD_REQUEST, "text/plain", format!("unreadable body: {e}"))),
    };
    if let Some(rest) = path.strip_prefix("/_mock/") {
        return Ok(control::handle(&server, &parts.method, rest, &body));
    }
    let model = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_owned))
        .or_else(|| media::form_model(&parts, &body));
    if server.options.record {
        server.state.record(&parts, &body);
    }
    let fault = server.state.take_fault(&path, model.as_deref());
    if let Some(delay) = fault.as_ref().and_then(|f| f.first_byte_delay_ms) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let vendor = Vendor::of(&path);
    if let Some(response) = fault.as_ref().and_then(|f| f.error_response(vendor)) {
        return Ok(response);
    }
    if let Some(bytes) = fault.as_ref().and_then(|f| f.endless_line_bytes) {
        return Ok(faults::endless_line(bytes));
    }
    let post = parts.method == hyper::Method::POST;
    let stored = &server.state.responses;
    let response = if post && path.ends_with("/chat/completions") {
        openai::chat_completions(&server.options, &body, fault.as_ref())
    } else if post && path.ends_with("/responses") {
        responses::create(&server.options, stored, &body, fault.as_ref())
    } else if let (Some(id), &hyper::Method::GET) = (responses::id_in(&path), &parts.method) {
        responses::retrieve(stored, id, fault.as_ref())
    } else if let (Some(id), &hyper::Method::DELETE) = (responses::id_in(&path), &parts.method) {
        responses::delete(stored, id)
    } else if post && path.ends_with("/messages/count_tokens") {
        anthropic::count_tokens(&parts, &body, fault.as_ref())
    } else if post && path.ends_with("/messages") {
        anthropic::messages(&server.options, &parts, &body, fault.as_ref())
    } else if post && path.ends_with("/images/generations") {
        media::image_generations(&parts, &body, fault.as_ref())
    } else if post && path.ends_with("/images/edits") {
        media::image_edits(&parts, &body, fault.as_ref())
    } else if post && path.ends_with("/audio/speech") {
        media::speech(&parts, &body, fault.as_ref())
    } else if post && (path.ends_with("/audio/transcriptions") || path.ends_with("/audio/translations")) {
        media::transcriptions(&parts, &body, fault.as_ref(), path.ends_with("/translations"))
    } else if post && path.ends_with(":predict") {
        media::imagen_predict(&parts, &body, fault.as_ref())
    } else if post && path.ends_with("/embeddings") {
        openai::embeddings(&body)
    } else if post && path.ends_with(":batchEmbedContents") {
        gemini::batch_embed(&parts, &path, &body)
    } else if post && (path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent")) {
        gemini::generate(&server.options, &parts, &path, &body, fault.as_ref())
    } else {
        json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": {"message": format!("mock-upstream has no route {path}"), "type": "invalid_request_error", "param": null, "code": null}}),
        )
    };
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("mock-upstream: {message}");
            }
            eprintln!("usage: mock-upstream [--port N] [--stream-chunks N] [--no-record]");
            std::process::exit(2);
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("mock-upstream: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("bound socket has an address");
    println!("mock-upstream listening on http://{local}");
    let server = Arc::new(Server { options, state: control::State::default(), shutdown: Notify::new() });

    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(server.clone(), request));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            _ = server.shutdown.notified() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    eprintln!("mock-upstream: stopped");
}

/// What the unit tests share: requests' heads, and answers read back.
#[cfg(test)]
pub mod testing {
    use super::{Body, Options};
    use http_body_util::BodyExt;
    use hyper::http::request::Parts;
    use hyper::Response;
    use serde_json::Value;

    pub const OPTIONS: Options = Options { port: 0, stream_chunks: 8, record: false };

    /// The head of a request to `uri` with these headers.
    pub fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = hyper::Request::builder().method("POST").uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("valid request").into_parts().0
    }

    pub async fn text(response: Response<Body>) -> (u16, String) {
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.expect("whole body").to_bytes();
        (status, String::from_utf8(bytes.to_vec()).expect("UTF-8 body"))
    }

    pub async fn json(response: Response<Body>) -> (u16, Value) {
        let (status, text) = text(response).await;
        (status, serde_json::from_str(&text).expect("JSON body"))
    }

    /// The `data:` of every event of a stream, as JSON (`[DONE]` left out).
    pub async fn events(response: Response<Body>) -> Vec<Value> {
        let (status, text) = text(response).await;
        assert_eq!(status, 200, "{text}");
        text.lines()
            .filter_map(|line| line.trim_end_matches('\r').strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .map(|data| serde_json::from_str(data).expect("JSON event"))
            .collect()
    }
}
