//! Anthropic's Messages API (`POST /v1/messages`), as the real API answers: a `message` object,
//! or the event stream `message_start`, `content_block_*`, `message_delta`, `message_stop`
//! (with `ping`s); and its token counter (`POST /v1/messages/count_tokens`), answering
//! `{"input_tokens": N}`. Errors have Anthropic's shape (`{"type":"error","error":{...}}`).
//!
//! What it answers: with tools offered (and not refused), a `tool_use` of the forced or first
//! tool with input that fits its schema; after a tool result, a text quoting it; otherwise the
//! canned words. With `thinking` enabled (or adaptive), the answer starts with a `thinking` block
//! (the canned reasoning and its signature; streamed as `thinking_delta`s and one
//! `signature_delta`), the text or `tool_use` block coming after it. A text answer stops before
//! the earliest of its `stop_sequences` that occurs in it, with `stop_reason: "stop_sequence"`.
//!
//! It checks what the real API requires: `x-api-key`, `anthropic-version`, `max_tokens` (and,
//! at the counter, none of the fields only a message takes), alternating roles starting with
//! `user`, no `system` role in `messages`, a `signature` on every `thinking` block of the
//! history and `data` on every `redacted_thinking` one; with thinking, a `budget_tokens` of at
//! least 1024 and below `max_tokens`, no `temperature` but 1, no `top_k`, no `top_p` below 0.95,
//! no forced tool, and a last assistant turn of a tool loop that starts with its thinking.

use crate::faults::Fault;
use crate::wire::{cut_at_stop, event_stream, example, json_answer, signature, thought, thought_tokens, word, THOUGHT};
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

/// Which endpoint a request came to: the counter takes neither `max_tokens` nor sampling.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Create,
    Count,
}

/// Fields of a Messages request that the token counter refuses, as unknown fields.
const CREATE_ONLY: [&str; 10] = [
    "max_tokens",
    "stream",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "service_tier",
    "container",
    "inference_geo",
];

/// Whether the request asks Claude to think, and whether to show the thinking.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Thinking {
    Off,
    /// `display: "omitted"`: the block comes with its signature and empty `thinking`.
    On {
        omitted: bool,
    },
}

/// Where Anthropic's messages about thinking send the reader.
const THINKING_DOCS: &str = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking";

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// The thinking and redacted thinking blocks of message `i` must carry what the API gave them.
fn check_blocks(i: usize, blocks: &[Value]) -> Result<(), Box<Response<Body>>> {
    for (j, block) in blocks.iter().enumerate() {
        match block_type(block) {
            "thinking" => {
                if block.get("thinking").is_none_or(|t| !t.is_string()) {
                    return Err(Box::new(invalid(&format!(
                        "messages.{i}.content.{j}.thinking.thinking: Field required"
                    ))));
                }
                match block.get("signature") {
                    None | Some(Value::Null) => {
                        return Err(Box::new(invalid(&format!(
                            "messages.{i}.content.{j}.thinking.signature: Field required"
                        ))))
                    }
                    Some(Value::String(s)) if !s.is_empty() => {}
                    Some(_) => {
                        return Err(Box::new(invalid(&format!(
                            "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                        ))))
                    }
                }
            }
            "redacted_thinking" => match block.get("data") {
                None | Some(Value::Null) => {
                    return Err(Box::new(invalid(&format!(
                        "messages.{i}.content.{j}.redacted_thinking.data: Field required"
                    ))))
                }
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(_) => {
                    return Err(Box::new(invalid(&format!(
                        "messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block"
                    ))))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// The `thinking` the request asks for, refused as the real API refuses it.
fn thinking(request: &Value, route: Route) -> Result<Thinking, Box<Response<Body>>> {
    let Some(config) = request.get("thinking").filter(|t| !t.is_null()) else {
        return Ok(Thinking::Off);
    };
    let omitted = config.get("display").and_then(Value::as_str) == Some("omitted");
    match config.get("type").and_then(Value::as_str) {
        Some("enabled") => {
            let budget = match config.get("budget_tokens") {
                None | Some(Value::Null) => {
                    return Err(Box::new(invalid("thinking.enabled.budget_tokens: Field required")))
                }
                Some(budget) => budget.as_i64().ok_or_else(|| {
                    Box::new(invalid("thinking.enabled.budget_tokens: Input should be a valid integer"))
                })?,
            };
            if budget < 1024 {
                return Err(Box::new(invalid(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
                )));
            }
            let max_tokens = request.get("max_tokens").and_then(Value::as_u64).unwrap_or(u64::MAX);
            if route == Route::Create && budget as u64 >= max_tokens {
                return Err(Box::new(invalid(&format!("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at {THINKING_DOCS}#max-tokens-and-context-window-size"))));
            }
            Ok(Thinking::On { omitted })
        }
        Some("adaptive") => Ok(Thinking::On { omitted }),
        Some("disabled" | "between_tools") => Ok(Thinking::Off),
        Some(other) => Err(Box::new(invalid(&format!("thinking: Input tag '{other}' found using 'type' does not match any of the expected tags: 'adaptive', 'between_tools', 'disabled', 'enabled'")))),
        None => Err(Box::new(invalid("thinking: Unable to extract tag using discriminator 'type'"))),
    }
}

/// What thinking rules out: sampling changes, a forced tool, and a tool loop whose last
/// assistant turn lost its thinking.
fn check_thinking(request: &Value, route: Route, messages: &[Value]) -> Result<(), Box<Response<Body>>> {
    if request.get("temperature").and_then(Value::as_f64).is_some_and(|t| t != 1.0) {
        return Err(Box::new(invalid(&format!("`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. Please consult our documentation at {THINKING_DOCS}#feature-compatibility"))));
    }
    if request.get("top_k").is_some_and(|k| !k.is_null()) {
        return Err(Box::new(invalid(&format!(
            "`top_k` must be unset when thinking is enabled. Please consult our documentation at {THINKING_DOCS}#feature-compatibility"
        ))));
    }
    if request.get("top_p").and_then(Value::as_f64).is_some_and(|p| p < 0.95) {
        return Err(Box::new(invalid(&format!("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. Please consult our documentation at {THINKING_DOCS}#feature-compatibility"))));
    }
    let forced = request.pointer("/tool_choice/type").and_then(Value::as_str);
    if route == Route::Create && matches!(forced, Some("any" | "tool")) {
        return Err(Box::new(invalid("Thinking may not be enabled when tool_choice forces tool use.")));
    }
    if let [.., assistant, last] = messages {
        let results = last.get("content").and_then(Value::as_array);
        if results.is_some_and(|blocks| blocks.iter().any(|b| block_type(b) == "tool_result")) {
            let first = match assistant.get("content") {
                Some(Value::Array(blocks)) => blocks.first().map_or("text", block_type),
                _ => "text",
            };
            if first != "thinking" && first != "redacted_thinking" {
                let i = messages.len() - 2;
                return Err(Box::new(invalid(&format!("messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at {THINKING_DOCS}"))));
            }
        }
    }
    Ok(())
}

/// Refuses what the real API refuses, so that a translation mistake fails the tests; else says
/// whether to think.
fn check(parts: &Parts, request: &Value, route: Route) -> Result<Thinking, Box<Response<Body>>> {
    if parts.headers.get("x-api-key").is_none() {
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "authentication_error", "x-api-key header is required")));
    }
    if parts.headers.get("anthropic-version").is_none() {
        return Err(Box::new(invalid("anthropic-version: header is required")));
    }
    match route {
        Route::Create => {
            if !request.get("max_tokens").is_some_and(Value::is_u64) {
                return Err(Box::new(invalid("max_tokens: Field required")));
            }
        }
        Route::Count => {
            if let Some(field) = CREATE_ONLY.iter().find(|f| request.get(**f).is_some()) {
                return Err(Box::new(invalid(&format!("{field}: Extra inputs are not permitted"))));
            }
            if !request.get("model").is_some_and(Value::is_string) {
                return Err(Box::new(invalid("model: Field required")));
            }
        }
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
        if let Some(blocks) = m.get("content").and_then(Value::as_array) {
            check_blocks(i, blocks)?;
        }
        expected = if role == "user" { "assistant" } else { "user" };
    }
    if let Some(t) = request.get("temperature").and_then(Value::as_f64) {
        if !(0.0..=1.0).contains(&t) {
            return Err(Box::new(invalid("temperature: Input should be less than or equal to 1")));
        }
    }
    match request.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stops)) => {
            if let Some(k) = stops.iter().position(|s| !s.is_string()) {
                return Err(Box::new(invalid(&format!("stop_sequences.{k}: Input should be a valid string"))));
            }
        }
        Some(_) => return Err(Box::new(invalid("stop_sequences: Input should be a valid list"))),
    }
    let thinking = thinking(request, route)?;
    if thinking != Thinking::Off {
        check_thinking(request, route, messages)?;
    }
    Ok(thinking)
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

/// The prompt's tokens: a token for four characters of its messages and system prompt, the same
/// for a message's usage and for the counter.
fn input_tokens(request: &Value) -> usize {
    request.get("messages").map_or(0, |m| m.to_string().len().div_ceil(4))
        + request.get("system").map_or(0, |s| s.to_string().len().div_ceil(4))
}

fn usage(request: &Value, output_tokens: usize) -> Value {
    json!({"input_tokens": input_tokens(request), "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": output_tokens, "service_tier": "standard"})
}

/// The answer's last block: text in the pieces it streams in, or a tool call.
enum Main {
    Text(Vec<String>),
    ToolUse { name: String, input: Value },
}

/// An answer as both the message and the stream send it.
struct Reply {
    /// The `thinking` block's text (empty when omitted), if there is one.
    thinking: Option<String>,
    main: Main,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    output_tokens: usize,
}

fn reply(request: &Value, answer: Answer, words: usize, thinking: Thinking, streamed: bool) -> Reply {
    let stops: Vec<&str> = request
        .get("stop_sequences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let (main, stop_reason, stop_sequence, tokens) = match answer {
        Answer::ToolUse { name, input } => (Main::ToolUse { name, input }, "tool_use", None, 20),
        Answer::Canned => {
            let (pieces, stop) = cut_at_stop((0..words.max(1)).map(word).collect(), &stops);
            let tokens = if stop.is_some() { pieces.len() } else { words.max(1) };
            (Main::Text(pieces), if stop.is_some() { "stop_sequence" } else { "end_turn" }, stop, tokens)
        }
        Answer::Text(t) => {
            let middle = t.char_indices().nth(t.chars().count() / 2).map_or(0, |(i, _)| i);
            let (pieces, stop) = cut_at_stop(vec![t[..middle].to_owned(), t[middle..].to_owned()], &stops);
            let tokens = match (&stop, streamed) {
                (Some(_), _) | (None, true) => pieces.len(),
                (None, false) => 8,
            };
            (Main::Text(pieces), if stop.is_some() { "stop_sequence" } else { "end_turn" }, stop, tokens)
        }
    };
    let (thinking, thinking_tokens) = match thinking {
        Thinking::Off => (None, 0),
        Thinking::On { omitted } => (Some(if omitted { String::new() } else { thought() }), thought_tokens()),
    };
    Reply { thinking, main, stop_reason, stop_sequence, output_tokens: tokens + thinking_tokens }
}

pub fn messages(options: &Options, parts: &Parts, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("There was an error parsing the body of your request as JSON.");
    };
    let thinking = match check(parts, &request, Route::Create) {
        Ok(thinking) => thinking,
        Err(refusal) => return *refusal,
    };
    let model = request.get("model").and_then(Value::as_str).unwrap_or("claude").to_owned();
    let id = format!("msg_mock{:06}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let words = fault.and_then(|f| f.stream_chunks).unwrap_or(options.stream_chunks);
    let streamed = request.get("stream").and_then(Value::as_bool) == Some(true);
    let reply = reply(&request, answer(&request), words, thinking, streamed);
    if streamed {
        return stream(&request, &id, &model, reply, fault);
    }
    let mut content = Vec::new();
    if let Some(thinking) = &reply.thinking {
        content.push(json!({"type": "thinking", "thinking": thinking, "signature": signature(&thought())}));
    }
    content.push(match reply.main {
        Main::Text(pieces) => json!({"type": "text", "text": pieces.concat()}),
        Main::ToolUse { name, input } => {
            json!({"type": "tool_use", "id": "toolu_mock01", "name": name, "input": input})
        }
    });
    json_answer(
        &json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence,
            "usage": usage(&request, reply.output_tokens)
        }),
        fault,
    )
}

/// `POST /v1/messages/count_tokens`: the prompt's tokens, as a message's usage counts them.
pub fn count_tokens(parts: &Parts, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("There was an error parsing the body of your request as JSON.");
    };
    if let Err(refusal) = check(parts, &request, Route::Count) {
        return *refusal;
    }
    json_answer(&json!({"input_tokens": input_tokens(&request)}), fault)
}

fn event(value: Value) -> Bytes {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("message").to_owned();
    Bytes::from(format!("event: {kind}\ndata: {value}\n\n"))
}

fn stream(request: &Value, id: &str, model: &str, reply: Reply, fault: Option<&Fault>) -> Response<Body> {
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
    let mut index = 0;
    if let Some(thinking) = &reply.thinking {
        events.push(event(
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ));
        if !thinking.is_empty() {
            for piece in THOUGHT {
                events.push(event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": piece}})));
            }
        }
        events.push(event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": signature(&thought())}})));
        events.push(event(json!({"type": "content_block_stop", "index": 0})));
        index = 1;
    }
    match reply.main {
        Main::Text(pieces) => {
            events.push(event(
                json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
            ));
            for piece in &pieces {
                events.push(event(json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})));
            }
        }
        Main::ToolUse { name, input } => {
            events.push(event(json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": "toolu_mock01", "name": name, "input": {}}})));
            let json_text = input.to_string();
            let middle = json_text.len() / 2;
            for piece in ["", &json_text[..middle], &json_text[middle..]] {
                events.push(event(json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
            }
        }
    }
    events.push(event(json!({"type": "content_block_stop", "index": index})));
    events.push(event(json!({"type": "message_delta", "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence}, "usage": {"output_tokens": reply.output_tokens}})));
    events.push(event(json!({"type": "message_stop"})));
    event_stream(events, fault)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, OPTIONS};

    const HEADERS: [(&str, &str); 2] = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];

    async fn create(body: Value) -> (u16, Value) {
        let parts = testing::parts("/v1/messages", &HEADERS);
        testing::json(messages(&OPTIONS, &parts, body.to_string().as_bytes(), None)).await
    }

    async fn create_stream(mut body: Value) -> Vec<Value> {
        body["stream"] = json!(true);
        let parts = testing::parts("/v1/messages", &HEADERS);
        testing::events(messages(&OPTIONS, &parts, body.to_string().as_bytes(), None)).await
    }

    async fn refusal(body: Value) -> String {
        let (status, answer) = create(body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["type"], "error");
        assert_eq!(answer["error"]["type"], "invalid_request_error");
        answer["error"]["message"].as_str().expect("a message").to_owned()
    }

    fn hi() -> Value {
        json!([{"role": "user", "content": "Hi"}])
    }

    fn thinking_request() -> Value {
        json!({"model": "claude", "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": hi()})
    }

    /// A tool loop: a call, then its result, the assistant turn starting with `first`.
    fn tool_loop(first: Option<Value>) -> Value {
        let call = json!({"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}});
        let turn: Vec<Value> = first.into_iter().chain([call]).collect();
        json!([
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": turn},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}
        ])
    }

    #[tokio::test]
    async fn without_thinking_the_answer_is_one_text_block() {
        let (status, answer) = create(json!({"model": "claude", "max_tokens": 100, "messages": hi()})).await;
        assert_eq!(status, 200);
        assert_eq!(
            answer["content"],
            json!([{"type": "text", "text": "Hello from mock-upstream, the vendor stand-in of Switchyard."}])
        );
        assert_eq!(answer["stop_reason"], "end_turn");
        assert_eq!(answer["stop_sequence"], Value::Null);
        assert_eq!(answer["usage"]["output_tokens"], 8);
    }

    #[tokio::test]
    async fn thinking_comes_first_with_its_signature() {
        let (status, answer) = create(thinking_request()).await;
        assert_eq!(status, 200, "{answer}");
        let content = answer["content"].as_array().expect("content");
        assert_eq!(content.len(), 2);
        assert_eq!(content[0]["type"], "thinking");
        assert_eq!(content[0]["thinking"], "Let me think about what the user asks.");
        assert_eq!(content[0]["signature"], json!(signature(&thought())));
        assert_eq!(content[1]["type"], "text");
        assert_eq!(answer["usage"]["output_tokens"], 16);
    }

    #[tokio::test]
    async fn thinking_streams_as_deltas_and_a_signature_then_the_next_block_at_index_1() {
        let events = create_stream(thinking_request()).await;
        let kinds: Vec<String> = events
            .iter()
            .map(|e| {
                let delta = e.pointer("/delta/type").and_then(Value::as_str).map(|d| format!(":{d}"));
                format!("{}{}", e["type"].as_str().unwrap_or_default(), delta.unwrap_or_default())
            })
            .collect();
        let mut expected = vec!["message_start", "ping", "content_block_start"];
        expected.extend(["content_block_delta:thinking_delta"; 4]);
        expected.extend(["content_block_delta:signature_delta", "content_block_stop", "content_block_start"]);
        expected.extend(["content_block_delta:text_delta"; 8]);
        expected.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(kinds, expected);
        assert_eq!(events[2]["content_block"], json!({"type": "thinking", "thinking": ""}));
        let thinking: String =
            events.iter().filter_map(|e| e.pointer("/delta/thinking").and_then(Value::as_str)).collect();
        assert_eq!(thinking, thought());
        assert_eq!(events[7]["delta"]["signature"], json!(signature(&thought())));
        assert!(events[2..9].iter().all(|e| e["index"] == 0));
        assert_eq!(events[9]["index"], 1);
        assert_eq!(events[9]["content_block"]["type"], "text");
        assert!(events[10..19].iter().all(|e| e["index"] == 1));
        assert_eq!(events[19]["usage"]["output_tokens"], 16);
    }

    #[tokio::test]
    async fn omitted_thinking_is_an_empty_block_with_its_signature() {
        let mut request = thinking_request();
        request["thinking"]["display"] = json!("omitted");
        let (_, answer) = create(request.clone()).await;
        assert_eq!(answer["content"][0]["thinking"], "");
        assert!(answer["content"][0]["signature"].as_str().is_some_and(|s| !s.is_empty()));
        let events = create_stream(request).await;
        assert!(events.iter().all(|e| e.pointer("/delta/type") != Some(&json!("thinking_delta"))));
        assert!(events.iter().any(|e| e.pointer("/delta/type") == Some(&json!("signature_delta"))));
    }

    #[tokio::test]
    async fn thinking_precedes_a_tool_use_too() {
        let mut request = thinking_request();
        request["tools"] = json!([{"name": "weather", "input_schema": {"type": "object"}}]);
        let (_, answer) = create(request.clone()).await;
        assert_eq!(answer["content"][0]["type"], "thinking");
        assert_eq!(answer["content"][1]["type"], "tool_use");
        assert_eq!(answer["stop_reason"], "tool_use");
        let events = create_stream(request).await;
        let start = events.iter().find(|e| e.pointer("/content_block/type") == Some(&json!("tool_use")));
        assert_eq!(start.expect("a tool_use block")["index"], 1);
    }

    #[tokio::test]
    async fn the_thinking_budget_is_at_least_1024_and_below_max_tokens() {
        let mut request = thinking_request();
        request["thinking"]["budget_tokens"] = json!(1023);
        assert_eq!(
            refusal(request.clone()).await,
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        );
        request["thinking"]["budget_tokens"] = json!(2048);
        assert!(refusal(request.clone())
            .await
            .starts_with("`max_tokens` must be greater than `thinking.budget_tokens`."));
        request["thinking"] = json!({"type": "enabled"});
        assert_eq!(refusal(request.clone()).await, "thinking.enabled.budget_tokens: Field required");
        request["thinking"] = json!({"type": "sometimes"});
        assert!(refusal(request).await.starts_with("thinking: Input tag 'sometimes'"));
    }

    #[tokio::test]
    async fn thinking_takes_no_temperature_but_1_and_no_forced_tool() {
        let mut request = thinking_request();
        request["temperature"] = json!(0.5);
        assert!(refusal(request.clone())
            .await
            .starts_with("`temperature` may only be set to 1 when thinking is enabled or in adaptive mode."));
        request["temperature"] = json!(1);
        assert_eq!(create(request.clone()).await.0, 200);
        request["top_k"] = json!(5);
        assert!(refusal(request.clone()).await.starts_with("`top_k` must be unset when thinking is enabled."));
        request.as_object_mut().map(|r| r.remove("top_k"));
        request["tools"] = json!([{"name": "weather", "input_schema": {"type": "object"}}]);
        request["tool_choice"] = json!({"type": "tool", "name": "weather"});
        assert_eq!(refusal(request.clone()).await, "Thinking may not be enabled when tool_choice forces tool use.");
        request["tool_choice"] = json!({"type": "auto"});
        assert_eq!(create(request).await.0, 200);
    }

    #[tokio::test]
    async fn without_thinking_temperature_and_tool_choice_are_free() {
        let mut request = thinking_request();
        request["thinking"] = json!({"type": "disabled"});
        request["temperature"] = json!(0.2);
        request["tools"] = json!([{"name": "weather", "input_schema": {"type": "object"}}]);
        request["tool_choice"] = json!({"type": "any"});
        let (status, answer) = create(request).await;
        assert_eq!(status, 200);
        assert_eq!(answer["content"][0]["type"], "tool_use");
    }

    #[tokio::test]
    async fn a_thinking_block_of_the_history_needs_its_signature() {
        let history = |block: Value| {
            json!({"model": "claude", "max_tokens": 100, "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [block, {"type": "text", "text": "Hello"}]},
                {"role": "user", "content": "Again"}
            ]})
        };
        assert_eq!(
            refusal(history(json!({"type": "thinking", "thinking": "hm"}))).await,
            "messages.1.content.0.thinking.signature: Field required"
        );
        assert_eq!(
            refusal(history(json!({"type": "thinking", "thinking": "hm", "signature": ""}))).await,
            "messages.1.content.0: Invalid `signature` in `thinking` block"
        );
        assert_eq!(
            refusal(history(json!({"type": "redacted_thinking"}))).await,
            "messages.1.content.0.redacted_thinking.data: Field required"
        );
        assert_eq!(create(history(json!({"type": "thinking", "thinking": "hm", "signature": "c2ln"}))).await.0, 200);
        assert_eq!(create(history(json!({"type": "redacted_thinking", "data": "ZGF0YQ=="}))).await.0, 200);
    }

    #[tokio::test]
    async fn with_thinking_a_tool_loop_keeps_the_thinking_of_its_last_assistant_turn() {
        let mut request = thinking_request();
        request["messages"] = tool_loop(None);
        let message = refusal(request.clone()).await;
        assert!(
            message.starts_with(
                "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`."
            ),
            "{message}"
        );
        request["messages"] = tool_loop(Some(json!({"type": "thinking", "thinking": "hm", "signature": "c2ln"})));
        let (status, answer) = create(request).await;
        assert_eq!(status, 200);
        assert_eq!(answer["content"][1]["text"], "The tool answered: sunny");
        // Without thinking, the same loop is fine.
        let request = json!({"model": "claude", "max_tokens": 100, "messages": tool_loop(None)});
        assert_eq!(create(request).await.0, 200);
    }

    #[tokio::test]
    async fn a_stop_sequence_in_the_text_ends_the_answer_there() {
        let request =
            json!({"model": "claude", "max_tokens": 100, "stop_sequences": ["END", "vendor"], "messages": hi()});
        let (_, answer) = create(request.clone()).await;
        assert_eq!(answer["content"], json!([{"type": "text", "text": "Hello from mock-upstream, the "}]));
        assert_eq!(answer["stop_reason"], "stop_sequence");
        assert_eq!(answer["stop_sequence"], "vendor");
        let events = create_stream(request).await;
        let text: String = events.iter().filter_map(|e| e.pointer("/delta/text").and_then(Value::as_str)).collect();
        assert_eq!(text, "Hello from mock-upstream, the ");
        let delta = events.iter().find(|e| e["type"] == "message_delta").expect("message_delta");
        assert_eq!(delta["delta"], json!({"stop_reason": "stop_sequence", "stop_sequence": "vendor"}));
    }

    #[tokio::test]
    async fn a_stop_sequence_not_in_the_text_changes_nothing() {
        let request = json!({"model": "claude", "max_tokens": 100, "stop_sequences": ["END"], "messages": hi()});
        let (_, answer) = create(request).await;
        assert_eq!(answer["content"][0]["text"], "Hello from mock-upstream, the vendor stand-in of Switchyard.");
        assert_eq!(answer["stop_reason"], "end_turn");
        assert_eq!(answer["stop_sequence"], Value::Null);
        let request = json!({"model": "claude", "max_tokens": 100, "stop_sequences": "END", "messages": hi()});
        assert_eq!(refusal(request).await, "stop_sequences: Input should be a valid list");
    }

    async fn count(headers: &[(&str, &str)], body: Value) -> (u16, Value) {
        let parts = testing::parts("/v1/messages/count_tokens", headers);
        testing::json(count_tokens(&parts, body.to_string().as_bytes(), None)).await
    }

    #[tokio::test]
    async fn the_counter_counts_as_the_usage_does() {
        let request = json!({"model": "claude", "system": "Be brief.", "messages": hi()});
        let (status, counted) = count(&HEADERS, request.clone()).await;
        assert_eq!(status, 200);
        let mut create_request = request.clone();
        create_request["max_tokens"] = json!(100);
        let (_, answer) = create(create_request).await;
        assert_eq!(counted, json!({"input_tokens": answer["usage"]["input_tokens"]}));
        let mut thinking = request;
        thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 4096});
        assert_eq!(count(&HEADERS, thinking).await.0, 200);
    }

    #[tokio::test]
    async fn the_counter_refuses_max_tokens_and_what_messages_refuse() {
        let (status, answer) = count(&HEADERS, json!({"model": "claude", "max_tokens": 100, "messages": hi()})).await;
        assert_eq!(status, 400);
        assert_eq!(answer["error"]["message"], "max_tokens: Extra inputs are not permitted");
        let (status, answer) = count(&HEADERS[1..], json!({"model": "claude", "messages": hi()})).await;
        assert_eq!(status, 401);
        assert_eq!(answer["error"]["type"], "authentication_error");
        let (status, _) = count(&HEADERS[..1], json!({"model": "claude", "messages": hi()})).await;
        assert_eq!(status, 400);
        let (_, answer) = count(&HEADERS, json!({"messages": hi()})).await;
        assert_eq!(answer["error"]["message"], "model: Field required");
        let (_, answer) =
            count(&HEADERS, json!({"model": "claude", "messages": [{"role": "assistant", "content": "Hi"}]})).await;
        assert!(answer["error"]["message"].as_str().is_some_and(|m| m.starts_with("messages.0.role")));
        let (_, answer) = count(
            &HEADERS,
            json!({"model": "claude", "thinking": {"type": "enabled", "budget_tokens": 10}, "messages": hi()}),
        )
        .await;
        assert_eq!(
            answer["error"]["message"],
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        );
    }
}
