//! OpenAI's Chat Completions, as the real API answers it: a `chat.completion` object, or an
//! event stream of `chat.completion.chunk` objects ending with `data: [DONE]`.

use crate::faults::Fault;
use crate::{full, json, Body, Options};
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a cut body waits before dropping the connection, so what precedes it is flushed.
const CUT_GRACE: Duration = Duration::from_millis(30);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

const WORDS: [&str; 8] = [
    "Hello",
    "from",
    "mock-upstream,",
    "the",
    "vendor",
    "stand-in",
    "of",
    "Switchyard.",
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn word(i: usize) -> String {
    let w = WORDS[i % WORDS.len()];
    if i == 0 {
        w.to_owned()
    } else {
        format!(" {w}")
    }
}

fn usage(request: &Value, completion_tokens: usize) -> Value {
    let prompt_tokens = request
        .get("messages")
        .map_or(0, |m| m.to_string().len().div_ceil(4));
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    })
}

fn invalid(message: &str) -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

pub fn chat_completions(options: &Options, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("We could not parse the JSON body of your request.");
    };
    let Some(model) = request
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return invalid("you must provide a model parameter");
    };
    if !request.get("messages").is_some_and(Value::is_array) {
        return invalid("'messages' is a required property");
    }
    let id = format!("chatcmpl-mock{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let created = now();
    let chunks = fault
        .and_then(|f| f.stream_chunks)
        .unwrap_or(options.stream_chunks);
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        return stream_response(&request, &id, &model, created, chunks, include_usage, fault);
    }

    let content: String = (0..chunks.max(1)).map(word).collect();
    let answer = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": usage(&request, chunks.max(1)),
        "service_tier": "default",
        "system_fingerprint": "fp_mock"
    });
    let mut bytes = serde_json::to_vec(&answer).unwrap_or_default();
    if fault.is_some_and(|f| f.malformed) {
        bytes.truncate(bytes.len() / 2);
    }
    if let Some(cut) = fault.and_then(|f| f.cut_after) {
        let head = Bytes::from(bytes[..cut.min(bytes.len())].to_vec());
        let frames = stream::unfold(Some(head), |head| async move {
            match head {
                Some(head) => Some((Ok(Frame::data(head)), None)),
                None => {
                    tokio::time::sleep(CUT_GRACE).await;
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "mock-upstream cut the body",
                        )),
                        None,
                    ))
                }
            }
        });
        let mut response = Response::new(StreamBody::new(frames).boxed());
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().expect("static"));
        return response;
    }
    full(StatusCode::OK, "application/json", bytes)
}

fn chunk(id: &str, model: &str, created: u64, delta: Value, finish_reason: Value) -> Bytes {
    let event = json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]
    });
    Bytes::from(format!("data: {event}\n\n"))
}

fn stream_response(
    request: &Value,
    id: &str,
    model: &str,
    created: u64,
    chunks: usize,
    include_usage: bool,
    fault: Option<&Fault>,
) -> Response<Body> {
    let mut events = Vec::with_capacity(chunks + 4);
    events.push(chunk(
        id,
        model,
        created,
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    ));
    if fault.is_some_and(|f| f.malformed) {
        events.push(Bytes::from_static(
            b"data: {\"id\": \"chatcmpl-broken\", \"choices\": [\n\n",
        ));
    }
    for i in 0..chunks {
        events.push(chunk(
            id,
            model,
            created,
            json!({"content": word(i)}),
            Value::Null,
        ));
    }
    events.push(chunk(id, model, created, json!({}), json!("stop")));
    if include_usage {
        let event = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_mock", "choices": [], "usage": usage(request, chunks)
        });
        events.push(Bytes::from(format!("data: {event}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));

    let cut_after = fault.and_then(|f| f.cut_after);
    if let Some(cut) = cut_after {
        events.truncate(cut);
    }
    let delay = fault
        .and_then(|f| f.chunk_delay_ms)
        .map(Duration::from_millis);

    let body_stream = stream::unfold(
        (events.into_iter(), 0usize),
        move |(mut events, sent)| async move {
            match events.next() {
                Some(event) => {
                    if let (Some(delay), true) = (delay, sent > 0) {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok(Frame::data(event)), (events, sent + 1)))
                }
                // A cut stream ends with an error, which makes hyper drop the connection without
                // the chunked encoding's terminating chunk: the client sees a truncated stream.
                None if cut_after.is_some() && sent != usize::MAX => {
                    // hyper drops its unflushed buffer on a body error; give it time to send what
                    // came before, as a real connection that dies mid-stream would have.
                    tokio::time::sleep(CUT_GRACE).await;
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "mock-upstream cut the stream",
                        )),
                        (events, usize::MAX),
                    ))
                }
                None => None,
            }
        },
    );
    let mut response = Response::new(StreamBody::new(body_stream).boxed());
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        "text/event-stream; charset=utf-8".parse().expect("static"),
    );
    headers.insert("cache-control", "no-cache".parse().expect("static"));
    response
}
