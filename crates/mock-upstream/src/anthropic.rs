//! Anthropic's Messages API (`POST /v1/messages`), as the real API answers: a `message` object,
//! or the event stream `message_start`, `content_block_*`, `message_delta`, `message_stop`
//! (with `ping`s). Errors have Anthropic's shape (`{"type":"error","error":{...}}`).
//!
//! What it answers: with tools offered (and not refused), a `tool_use` of the forced or first
//! tool with input that fits its schema; after a tool result, a text quoting it; otherwise the
//! canned words. It checks what the real API requires: `x-api-key`, `anthropic-version`,
//! `max_tokens`, alternating roles starting with `user`, and no `system` role in `messages`.

use crate::faults::Fault;
use crate::wire::{event_stream, example, json_answer, text, word};
use crate::{json, Body, Options};
use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    json(status, &json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"}))
}

/// The error type Anthropic sends with a status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn invalid(message: &str) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// Refuses what the real API refuses, so that a translation mistake fails the tests.
fn check(parts: &Parts, request: &Value) -> Result<(), Box<Response<Body>>> {
    if parts.headers.get("x-api-key").is_none() {
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "authentication_error", "x-api-key header is required")));
    }
    if parts.headers.get("anthropic-version").is_none() {
        return Err(Box::new(invalid("anthropic-version: header is required")));
    }
    if !request.get("max_tokens").is_some_and(Value::is_u64) {
        return Err(Box::new(invalid("max_tokens: Field required")));
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| Box::new(invalid("messages: Field required")))?;
    let mut expected = "user";
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != expected {
            return Err(Box::new(invalid(&format!("messages.{i}.role: roles must alternate between \"user\" and \"assistant\", starting with \"user\"; got \"{role}\""))));
        }
        let content_ok = match m.get("content") {
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(blocks)) => !blocks.is_empty() && blocks.iter().all(|b| b.get("type").is_some()),
            _ => false,
        };
        if !content_ok {
            return Err(Box::new(invalid(&format!(
                "messages.{i}.content: a non-empty string or array of content blocks is required"
            ))));
        }
        expected = if role == "user" { "assistant" } else { "user" };
    }
    if let Some(t) = request.get("temperature").and_then(Value::as_f64) {
        if !(0.0..=1.0).contains(&t) {
            return Err(Box::new(invalid("temperature: Input should be less than or equal to 1")));
        }
    }
    Ok(())
}

enum Answer {
    Canned,
    Text(String),
    ToolUse { name: String, input: Value },
}

fn answer(request: &Value) -> Answer {
    let messages = request.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let tool_result = messages.last().and_then(|m| m.get("content")).and_then(Value::as_array).and_then(|blocks| {
        blocks.iter().find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")).cloned()
    });
    if let Some(result) = tool_result {
        let content = match result.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(blocks)) => blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect(),
            _ => String::new(),
        };
        return Answer::Text(format!("The tool answered: {content}"));
    }
    let tools = request.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty());
    let choice = request.get("tool_choice");
    let refused = choice.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("none");
    if let (Some(tools), false) = (tools, refused) {
        let forced = choice.and_then(|c| c.get("name")).and_then(Value::as_str);
        let tool = tools
            .iter()
            .find(|t| forced.is_none() || t.get("name").and_then(Value::as_str) == forced)
            .unwrap_or(&tools[0]);
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("tool").to_owned();
        let input = example(tool.get("input_schema").unwrap_or(&json!({"type": "object"})));
        return Answer::ToolUse { name, input };
    }
    Answer::Canned
}

fn usage(request: &Value, output_tokens: usize) -> Value {
    let input_tokens = request.get("messages").map_or(0, |m| m.to_string().len().div_ceil(4))
        + request.get("system").map_or(0, |s| s.to_string().len().div_ceil(4));
    json!({"input_tokens": input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": output_tokens, "service_tier": "standard"})
}

pub fn messages(options: &Options, parts: &Parts, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("There was an error parsing the body of your request as JSON.");
    };
    if let Err(refusal) = check(parts, &request) {
        return *refusal;
    }
    let model = request.get("model").and_then(Value::as_str).unwrap_or("claude").to_owned();
    let id = format!("msg_mock{:06}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let words = fault.and_then(|f| f.stream_chunks).unwrap_or(options.stream_chunks);
    let answer = answer(&request);
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream(&request, &id, &model, answer, words, fault);
    }
    let (content, stop_reason, output_tokens) = match answer {
        Answer::Canned => (json!([{"type": "text", "text": text(words)}]), "end_turn", words.max(1)),
        Answer::Text(t) => (json!([{"type": "text", "text": t}]), "end_turn", 8),
        Answer::ToolUse { name, input } => {
            (json!([{"type": "tool_use", "id": "toolu_mock01", "name": name, "input": input}]), "tool_use", 20)
        }
    };
    json_answer(
        &json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": null, "usage": usage(&request, output_tokens)
        }),
        fault,
    )
}

fn event(value: Value) -> Bytes {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("message").to_owned();
    Bytes::from(format!("event: {kind}\ndata: {value}\n\n"))
}

fn stream(
    request: &Value,
    id: &str,
    model: &str,
    answer: Answer,
    words: usize,
    fault: Option<&Fault>,
) -> Response<Body> {
    let mut start_usage = usage(request, 1);
    start_usage["output_tokens"] = json!(1);
    let mut events = vec![event(json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": null, "stop_sequence": null, "usage": start_usage}}))];
    if fault.is_some_and(|f| f.malformed) {
        events.push(Bytes::from_static(
            b"event: content_block_start\ndata: {\"type\": \"content_block_start\", \"index\": 0, \"content_bl\n\n",
        ));
    }
    events.push(event(json!({"type": "ping"})));
    let (stop_reason, output_tokens) = match answer {
        Answer::Canned | Answer::Text(_) => {
            let pieces: Vec<String> = match answer {
                Answer::Text(t) => {
                    let middle = t.char_indices().nth(t.chars().count() / 2).map_or(0, |(i, _)| i);
                    vec![t[..middle].to_owned(), t[middle..].to_owned()]
                }
                _ => (0..words.max(1)).map(word).collect(),
            };
            events.push(event(
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            for piece in &pieces {
                events.push(event(
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
            events.push(event(json!({"type": "content_block_stop", "index": 0})));
            ("end_turn", pieces.len())
        }
        Answer::ToolUse { name, input } => {
            events.push(event(json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_mock01", "name": name, "input": {}}})));
            let json_text = input.to_string();
            let middle = json_text.len() / 2;
            for piece in ["", &json_text[..middle], &json_text[middle..]] {
                events.push(event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}})));
            }
            events.push(event(json!({"type": "content_block_stop", "index": 0})));
            ("tool_use", 20)
        }
    };
    events.push(event(json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output_tokens}})));
    events.push(event(json!({"type": "message_stop"})));
    event_stream(events, fault)
}
