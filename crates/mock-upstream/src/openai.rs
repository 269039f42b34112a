//! OpenAI's Chat Completions and Embeddings, as the real API answers them: a `chat.completion`
//! object or an event stream of `chat.completion.chunk`s ending with `data: [DONE]`, and an
//! embedding list.
//!
//! What it answers: with tools offered (and not refused with `tool_choice: none`), a call of
//! the forced or first tool with arguments that fit its schema; after a tool result, a text
//! quoting it; with `response_format: json_schema`, JSON that fits the schema; otherwise the
//! canned words (`--stream-chunks` or the fault's `stream_chunks` of them). With
//! `reasoning_effort` (other than `none`), the answer first carries the canned reasoning as
//! `reasoning_content`, as DeepSeek-style vendors send it (streamed: in `delta.reasoning_content`
//! chunks before the others), counted in `completion_tokens_details.reasoning_tokens`.

use crate::faults::Fault;
use crate::wire::{event_stream, example, json_answer, now, text, thought, thought_tokens, word, THOUGHT};
use crate::{json, Body, Options};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Usage of an answer of `completion_tokens` after `reasoning_tokens` of reasoning, which OpenAI
/// counts among the completion tokens.
fn usage(request: &Value, completion_tokens: usize, reasoning_tokens: usize) -> Value {
    let prompt_tokens = request.get("messages").map_or(0, |m| m.to_string().len().div_ceil(4));
    let completion_tokens = completion_tokens + reasoning_tokens;
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    })
}

pub fn invalid(message: &str) -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

/// The values of `reasoning_effort` (the Responses API's `reasoning.effort`) OpenAI takes.
pub const EFFORTS: [&str; 6] = ["none", "minimal", "low", "medium", "high", "xhigh"];

/// An OpenAI 400 about one parameter.
pub fn invalid_param(message: &str, param: &str, code: &str) -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}),
    )
}

/// Whether the request asks for reasoning, refused as OpenAI refuses an unknown effort.
fn wants_reasoning(request: &Value) -> Result<bool, Box<Response<Body>>> {
    match request.get("reasoning_effort") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(effort)) if EFFORTS.contains(&effort.as_str()) => Ok(effort != "none"),
        Some(Value::String(effort)) => Err(Box::new(invalid_param(
            &format!("Invalid value: '{effort}'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high', and 'xhigh'."),
            "reasoning_effort",
            "invalid_value",
        ))),
        Some(_) => Err(Box::new(invalid_param(
            "Invalid type for 'reasoning_effort': expected one of 'none', 'minimal', 'low', 'medium', 'high', or 'xhigh'.",
            "reasoning_effort",
            "invalid_type",
        ))),
    }
}

/// What the mock answers a chat with.
enum Answer {
    /// The canned words.
    Canned,
    Text(String),
    Call {
        name: String,
        arguments: String,
    },
}

fn answer(request: &Value, words: usize) -> Answer {
    let messages = request.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let last = messages.last();
    if last.and_then(|m| m.get("role")).and_then(Value::as_str) == Some("tool") {
        let result = last.and_then(|m| m.get("content")).map_or(String::new(), |c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        return Answer::Text(format!("The tool answered: {result}"));
    }
    let tools = request.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty());
    let choice = request.get("tool_choice");
    if let (Some(tools), false) = (tools, choice.and_then(Value::as_str) == Some("none")) {
        let forced = choice.and_then(|c| c.pointer("/function/name")).and_then(Value::as_str);
        let tool = tools
            .iter()
            .find(|t| forced.is_none() || t.pointer("/function/name").and_then(Value::as_str) == forced)
            .unwrap_or(&tools[0]);
        let name = tool.pointer("/function/name").and_then(Value::as_str).unwrap_or("tool").to_owned();
        let arguments = example(tool.pointer("/function/parameters").unwrap_or(&json!({"type": "object"}))).to_string();
        return Answer::Call { name, arguments };
    }
    if let Some(schema) = request.pointer("/response_format/json_schema/schema") {
        return Answer::Text(example(schema).to_string());
    }
    if request.pointer("/response_format/type").and_then(Value::as_str) == Some("json_object") {
        return Answer::Text(json!({"answer": text(words)}).to_string());
    }
    Answer::Canned
}

pub fn chat_completions(options: &Options, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("We could not parse the JSON body of your request.");
    };
    let Some(model) = request.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return invalid("you must provide a model parameter");
    };
    if !request.get("messages").is_some_and(Value::is_array) {
        return invalid("'messages' is a required property");
    }
    let reasoning = match wants_reasoning(&request) {
        Ok(reasoning) => reasoning,
        Err(refusal) => return *refusal,
    };
    let reasoning_tokens = if reasoning { thought_tokens() } else { 0 };
    let id = format!("chatcmpl-mock{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let created = now();
    let words = fault.and_then(|f| f.stream_chunks).unwrap_or(options.stream_chunks);
    let answer = answer(&request, words);
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = request.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        let stream = Stream { id: &id, model: &model, created, words, include_usage, reasoning };
        return stream_response(&request, &stream, answer, fault);
    }
    let (mut message, finish_reason, completion_tokens) = match answer {
        Answer::Canned => (
            json!({"role": "assistant", "content": text(words), "refusal": null, "annotations": []}),
            "stop",
            words.max(1),
        ),
        Answer::Text(content) => {
            let tokens = content.split(' ').count();
            (json!({"role": "assistant", "content": content, "refusal": null, "annotations": []}), "stop", tokens)
        }
        Answer::Call { name, arguments } => (
            json!({"role": "assistant", "content": null, "refusal": null, "annotations": [],
                   "tool_calls": [{"id": "call_mock1", "type": "function", "function": {"name": name, "arguments": arguments}}]}),
            "tool_calls",
            12,
        ),
    };
    if reasoning {
        message["reasoning_content"] = json!(thought());
    }
    json_answer(
        &json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
            "usage": usage(&request, completion_tokens, reasoning_tokens), "service_tier": "default", "system_fingerprint": "fp_mock"
        }),
        fault,
    )
}

fn chunk(id: &str, model: &str, created: u64, delta: Value, finish_reason: Value) -> Bytes {
    let event = json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]
    });
    Bytes::from(format!("data: {event}\n\n"))
}

/// What a streamed answer is sent with.
struct Stream<'a> {
    id: &'a str,
    model: &'a str,
    created: u64,
    words: usize,
    include_usage: bool,
    reasoning: bool,
}

fn stream_response(request: &Value, stream: &Stream, answer: Answer, fault: Option<&Fault>) -> Response<Body> {
    let &Stream { id, model, created, words, include_usage, reasoning } = stream;
    let mut events = Vec::with_capacity(words + 8);
    events.push(chunk(id, model, created, json!({"role": "assistant", "content": "", "refusal": null}), Value::Null));
    if fault.is_some_and(|f| f.malformed) {
        events.push(Bytes::from_static(b"data: {\"id\": \"chatcmpl-broken\", \"choices\": [\n\n"));
    }
    if reasoning {
        for piece in THOUGHT {
            events.push(chunk(id, model, created, json!({"content": null, "reasoning_content": piece}), Value::Null));
        }
    }
    let (finish, completion_tokens) = match answer {
        Answer::Canned => {
            for i in 0..words.max(1) {
                events.push(chunk(id, model, created, json!({"content": word(i)}), Value::Null));
            }
            ("stop", words.max(1))
        }
        Answer::Text(content) => {
            // Split in two, as a vendor's deltas split text anywhere.
            let middle = content.char_indices().nth(content.chars().count() / 2).map_or(0, |(i, _)| i);
            for part in [&content[..middle], &content[middle..]] {
                events.push(chunk(id, model, created, json!({"content": part}), Value::Null));
            }
            ("stop", 2)
        }
        Answer::Call { name, arguments } => {
            let call = json!([{"index": 0, "id": "call_mock1", "type": "function", "function": {"name": name, "arguments": ""}}]);
            events.push(chunk(id, model, created, json!({"tool_calls": call}), Value::Null));
            let middle = arguments.len() / 2;
            for part in [&arguments[..middle], &arguments[middle..]] {
                let delta = json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]});
                events.push(chunk(id, model, created, delta, Value::Null));
            }
            ("tool_calls", 12)
        }
    };
    events.push(chunk(id, model, created, json!({}), json!(finish)));
    if include_usage {
        let event = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_mock", "choices": [],
            "usage": usage(request, completion_tokens, if reasoning { thought_tokens() } else { 0 })
        });
        events.push(Bytes::from(format!("data: {event}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    event_stream(events, fault)
}

/// Dimensions of a mock embedding when the request does not ask for a number.
const EMBEDDING_DIMENSIONS: usize = 8;

/// `POST /v1/embeddings`: one deterministic vector per input, as floats or base64.
pub fn embeddings(body: &[u8]) -> Response<Body> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("We could not parse the JSON body of your request.");
    };
    let Some(model) = request.get("model").and_then(Value::as_str) else {
        return invalid("you must provide a model parameter");
    };
    let inputs: Vec<String> = match request.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items.iter().map(|i| i.to_string()).collect(),
        _ => return invalid("'input' is a required property"),
    };
    let dimensions = request.get("dimensions").and_then(Value::as_u64).map_or(EMBEDDING_DIMENSIONS, |d| d as usize);
    let base64 = request.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let values = crate::wire::vector(input.trim_matches('"'), dimensions);
            let embedding = if base64 {
                use base64::Engine;
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(values)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|i| i.len().div_ceil(4)).sum();
    json(
        StatusCode::OK,
        &json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, OPTIONS};

    fn request(effort: Option<&str>) -> Value {
        let mut request = json!({"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]});
        if let Some(effort) = effort {
            request["reasoning_effort"] = json!(effort);
        }
        request
    }

    async fn create(body: Value) -> (u16, Value) {
        testing::json(chat_completions(&OPTIONS, body.to_string().as_bytes(), None)).await
    }

    #[tokio::test]
    async fn reasoning_effort_brings_reasoning_content_and_reasoning_tokens() {
        let (status, answer) = create(request(Some("high"))).await;
        assert_eq!(status, 200);
        let message = &answer["choices"][0]["message"];
        assert_eq!(message["reasoning_content"], "Let me think about what the user asks.");
        assert_eq!(message["content"], "Hello from mock-upstream, the vendor stand-in of Switchyard.");
        assert_eq!(answer["usage"]["completion_tokens_details"]["reasoning_tokens"], 8);
        assert_eq!(answer["usage"]["completion_tokens"], 16);
        assert_eq!(answer["usage"]["total_tokens"], answer["usage"]["prompt_tokens"].as_u64().unwrap() + 16);
    }

    #[tokio::test]
    async fn without_reasoning_effort_or_with_none_there_is_no_reasoning() {
        for effort in [None, Some("none")] {
            let (_, answer) = create(request(effort)).await;
            assert!(answer["choices"][0]["message"].get("reasoning_content").is_none());
            assert_eq!(answer["usage"]["completion_tokens_details"]["reasoning_tokens"], 0);
            assert_eq!(answer["usage"]["completion_tokens"], 8);
        }
    }

    #[tokio::test]
    async fn streamed_reasoning_comes_before_the_content() {
        let mut body = request(Some("low"));
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let events = testing::events(chat_completions(&OPTIONS, body.to_string().as_bytes(), None)).await;
        let deltas: Vec<&Value> = events.iter().filter_map(|e| e.pointer("/choices/0/delta")).collect();
        assert_eq!(deltas[0], &json!({"role": "assistant", "content": "", "refusal": null}));
        let reasoning: String = deltas[1..5].iter().map(|d| d["reasoning_content"].as_str().unwrap()).collect();
        assert_eq!(reasoning, "Let me think about what the user asks.");
        assert!(deltas[1..5].iter().all(|d| d["content"].is_null()));
        assert_eq!(deltas[5], &json!({"content": "Hello"}));
        assert!(deltas[5..].iter().all(|d| d.get("reasoning_content").is_none()));
        let usage = &events.last().unwrap()["usage"];
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 8);
        assert_eq!(usage["completion_tokens"], 16);
    }

    #[tokio::test]
    async fn an_unknown_reasoning_effort_is_refused() {
        let (status, answer) = create(request(Some("extreme"))).await;
        assert_eq!(status, 400);
        assert_eq!(answer["error"]["param"], "reasoning_effort");
        assert_eq!(answer["error"]["code"], "invalid_value");
        let mut body = request(None);
        body["reasoning_effort"] = json!(3);
        assert_eq!(create(body).await.1["error"]["code"], "invalid_type");
    }
}
