//! Google's Gemini API (`models/{model}:generateContent` and `:streamGenerateContent?alt=sse`),
//! as the real API answers: a `GenerateContentResponse`, or an event stream of partial ones
//! (CRLF-separated, no terminal event; the last carries `finishReason` and `usageMetadata`).
//! Errors have Google's shape (`{"error":{"code","message","status"}}`).
//!
//! What it answers: with function declarations offered (and not refused with mode NONE), a
//! `functionCall` of the allowed or first function with arguments that fit its schema; after a
//! `functionResponse`, a text quoting it; with `responseSchema`, JSON that fits it; otherwise
//! the canned words. It refuses a key in the URL and a request without `x-goog-api-key`.
//!
//! Thinking, as the real API does it: the model thinks when `thinkingConfig` has a
//! `thinkingBudget` other than 0 (a positive budget, or -1 for a dynamic one), or, without a
//! budget, `includeThoughts: true` or a `thinkingLevel`; `usageMetadata.thoughtsTokenCount` then
//! counts the canned reasoning's tokens (apart from `candidatesTokenCount`, inside
//! `totalTokenCount`). Only with `includeThoughts: true` does the answer show them: its first
//! parts are `{"text": ..., "thought": true}` (streamed: one an event, before the answer's).

use crate::faults::Fault;
use crate::wire::{event_stream, example, json_answer, text, thought, thought_tokens, word, THOUGHT};
use crate::{json, Body, Options};
use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub fn error(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": message, "status": kind}})
}

fn refuse(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &error(status.as_u16(), message))
}

enum Answer {
    Canned,
    Text(String),
    Call { name: String, args: Value },
}

fn answer(request: &Value) -> Answer {
    let contents = request.get("contents").and_then(Value::as_array).cloned().unwrap_or_default();
    let last_parts =
        contents.last().and_then(|c| c.get("parts")).and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(response) = last_parts.iter().find_map(|p| p.get("functionResponse")) {
        return Answer::Text(format!("The tool answered: {}", response.get("response").unwrap_or(&Value::Null)));
    }
    let declarations: Vec<Value> = request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .cloned()
        .collect();
    let config = request.pointer("/toolConfig/functionCallingConfig");
    let mode = config.and_then(|c| c.get("mode")).and_then(Value::as_str).unwrap_or("AUTO");
    if !declarations.is_empty() && mode != "NONE" {
        let allowed = config.and_then(|c| c.get("allowedFunctionNames")).and_then(Value::as_array);
        let declaration = declarations
            .iter()
            .find(|d| allowed.is_none_or(|names| names.iter().any(|n| n == d.get("name").unwrap_or(&Value::Null))))
            .unwrap_or(&declarations[0]);
        let name = declaration.get("name").and_then(Value::as_str).unwrap_or("tool").to_owned();
        let args = declaration.get("parameters").map_or_else(|| json!({}), example);
        return Answer::Call { name, args };
    }
    if let Some(schema) = request.pointer("/generationConfig/responseSchema") {
        return Answer::Text(example(schema).to_string());
    }
    Answer::Canned
}

/// Whether the model thinks, and whether it shows its thoughts (see the module's comment).
fn thinking(request: &Value) -> (bool, bool) {
    let config = request.pointer("/generationConfig/thinkingConfig");
    let include = config.and_then(|c| c.get("includeThoughts")).and_then(Value::as_bool) == Some(true);
    let thinks = match config.and_then(|c| c.get("thinkingBudget")).and_then(Value::as_i64) {
        Some(budget) => budget != 0,
        None => include || config.and_then(|c| c.get("thinkingLevel")).is_some_and(|l| !l.is_null()),
    };
    (thinks, thinks && include)
}

/// Usage of `candidates` tokens of answer after `thoughts` of thinking (counted only if any).
fn usage(request: &Value, candidates: usize, thoughts: usize) -> Value {
    let prompt = request.get("contents").map_or(0, |c| c.to_string().len().div_ceil(4))
        + request.get("systemInstruction").map_or(0, |s| s.to_string().len().div_ceil(4));
    let mut usage = json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates, "totalTokenCount": prompt + candidates + thoughts,
           "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]});
    if thoughts > 0 {
        usage["thoughtsTokenCount"] = json!(thoughts);
    }
    usage
}

pub fn generate(options: &Options, parts: &Parts, path: &str, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    let query = parts.uri.query().unwrap_or_default();
    if query.split('&').any(|p| p.starts_with("key=")) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "mock-upstream: the API key must travel in x-goog-api-key, not in the URL",
        );
    }
    if parts.headers.get("x-goog-api-key").is_none() {
        return refuse(StatusCode::FORBIDDEN, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.");
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return refuse(StatusCode::BAD_REQUEST, "Invalid JSON payload received.");
    };
    let Some(contents) = request.get("contents").and_then(Value::as_array).filter(|c| !c.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "* GenerateContentRequest.contents: contents is not specified");
    };
    for (i, turn) in contents.iter().enumerate() {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or("user");
        if role != "user" && role != "model" {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model."),
            );
        }
    }
    if let Some(kind) = crate::media::gemini_media(&request) {
        if !path.ends_with(":generateContent") {
            return refuse(StatusCode::BAD_REQUEST, "mock-upstream: media answers come from generateContent only");
        }
        return crate::media::gemini_generate(kind, path, &request, fault);
    }
    let model = path.rsplit('/').next().and_then(|m| m.split(':').next()).unwrap_or("gemini").to_owned();
    let response_id = format!("mockresp{:06}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let candidates =
        request.pointer("/generationConfig/candidateCount").and_then(Value::as_u64).unwrap_or(1).max(1) as usize;
    let words = fault.and_then(|f| f.stream_chunks).unwrap_or(options.stream_chunks);
    let answer = answer(&request);
    let (thinks, shows_thoughts) = thinking(&request);
    let thoughts = if thinks { thought_tokens() } else { 0 };
    let usage = |candidates: usize| usage(&request, candidates, thoughts);
    let response = |parts: Value, finish: Option<&str>, usage: Option<Value>| {
        let list: Vec<Value> = (0..candidates)
            .map(|index| {
                let mut c = json!({"content": {"parts": parts, "role": "model"}, "index": index});
                if let Some(reason) = finish {
                    c["finishReason"] = json!(reason);
                }
                c
            })
            .collect();
        let mut r = json!({"candidates": list, "modelVersion": model, "responseId": response_id});
        if let Some(usage) = usage {
            r["usageMetadata"] = usage;
        }
        r
    };
    if path.ends_with(":streamGenerateContent") {
        if query != "alt=sse" {
            return refuse(StatusCode::BAD_REQUEST, "mock-upstream speaks only the alt=sse stream");
        }
        let mut events = Vec::new();
        if fault.is_some_and(|f| f.malformed) {
            events.push(Bytes::from_static(b"data: {\"candidates\": [{\"content\r\n\r\n"));
        }
        let mut push = |value: Value| events.push(Bytes::from(format!("data: {value}\r\n\r\n")));
        if shows_thoughts {
            for piece in THOUGHT {
                push(response(json!([{"text": piece, "thought": true}]), None, None));
            }
        }
        match answer {
            Answer::Canned => {
                let n = words.max(1);
                for i in 0..n {
                    let last = i + 1 == n;
                    push(response(json!([{"text": word(i)}]), last.then_some("STOP"), last.then(|| usage(n))));
                }
            }
            Answer::Text(t) => {
                let middle = t.char_indices().nth(t.chars().count() / 2).map_or(0, |(i, _)| i);
                push(response(json!([{"text": &t[..middle]}]), None, None));
                push(response(json!([{"text": &t[middle..]}]), Some("STOP"), Some(usage(8))));
            }
            Answer::Call { name, args } => {
                push(response(json!([{"functionCall": {"name": name, "args": args}}]), Some("STOP"), Some(usage(10))));
            }
        }
        return event_stream(events, fault);
    }
    let (part, tokens) = match answer {
        Answer::Canned => (json!({"text": text(words)}), words.max(1)),
        Answer::Text(t) => (json!({"text": t}), 8),
        Answer::Call { name, args } => (json!({"functionCall": {"name": name, "args": args}}), 10),
    };
    let mut parts_json = Vec::new();
    if shows_thoughts {
        parts_json.push(json!({"text": thought(), "thought": true}));
    }
    parts_json.push(part);
    json_answer(&response(json!(parts_json), Some("STOP"), Some(usage(tokens))), fault)
}

/// `models/{model}:batchEmbedContents`: one deterministic vector per request, in order.
pub fn batch_embed(parts: &Parts, path: &str, body: &[u8]) -> Response<Body> {
    if parts.headers.get("x-goog-api-key").is_none() || parts.uri.query().is_some_and(|q| q.contains("key=")) {
        return refuse(StatusCode::FORBIDDEN, "the API key travels in x-goog-api-key only");
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return refuse(StatusCode::BAD_REQUEST, "Invalid JSON payload received.");
    };
    let model = path.rsplit('/').next().and_then(|m| m.split(':').next()).unwrap_or_default();
    let Some(requests) = request.get("requests").and_then(Value::as_array).filter(|r| !r.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "* BatchEmbedContentsRequest.requests: requests is required");
    };
    let mut embeddings = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        if r.get("model").and_then(Value::as_str) != Some(&format!("models/{model}")) {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!(
                    "* BatchEmbedContentsRequest.requests[{i}].model: the model of each request must be models/{model}"
                ),
            );
        }
        let text: String = r
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let dimensions = r.get("outputDimensionality").and_then(Value::as_u64).unwrap_or(8) as usize;
        embeddings.push(json!({"values": crate::wire::vector(&text, dimensions)}));
    }
    json(StatusCode::OK, &json!({"embeddings": embeddings}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, OPTIONS};

    const PATH: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
    const STREAM_PATH: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";

    fn request(thinking: Option<Value>) -> Value {
        let mut request = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]});
        if let Some(thinking) = thinking {
            request["generationConfig"] = json!({"thinkingConfig": thinking});
        }
        request
    }

    async fn generate_json(body: Value) -> Value {
        let parts = testing::parts(PATH, &[("x-goog-api-key", "k")]);
        let (status, answer) = testing::json(generate(&OPTIONS, &parts, PATH, body.to_string().as_bytes(), None)).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    #[tokio::test]
    async fn a_thinking_budget_counts_thoughts_without_showing_them() {
        let answer = generate_json(request(Some(json!({"thinkingBudget": 1024})))).await;
        assert_eq!(
            answer["candidates"][0]["content"]["parts"],
            json!([{"text": "Hello from mock-upstream, the vendor stand-in of Switchyard."}])
        );
        let usage = &answer["usageMetadata"];
        assert_eq!(usage["thoughtsTokenCount"], 8);
        assert_eq!(usage["candidatesTokenCount"], 8);
        assert_eq!(usage["totalTokenCount"], usage["promptTokenCount"].as_u64().unwrap() + 16);
    }

    #[tokio::test]
    async fn include_thoughts_shows_them_first() {
        for thinking in [json!({"includeThoughts": true}), json!({"thinkingBudget": -1, "includeThoughts": true})] {
            let answer = generate_json(request(Some(thinking))).await;
            let parts = &answer["candidates"][0]["content"]["parts"];
            assert_eq!(parts[0], json!({"text": "Let me think about what the user asks.", "thought": true}));
            assert_eq!(parts[1], json!({"text": "Hello from mock-upstream, the vendor stand-in of Switchyard."}));
            assert_eq!(answer["usageMetadata"]["thoughtsTokenCount"], 8);
        }
    }

    #[tokio::test]
    async fn no_thinking_no_thoughts() {
        for thinking in
            [None, Some(json!({"thinkingBudget": 0})), Some(json!({"thinkingBudget": 0, "includeThoughts": true}))]
        {
            let answer = generate_json(request(thinking)).await;
            assert_eq!(answer["candidates"][0]["content"]["parts"].as_array().unwrap().len(), 1);
            assert!(answer["usageMetadata"].get("thoughtsTokenCount").is_none());
            assert_eq!(
                answer["usageMetadata"]["totalTokenCount"],
                answer["usageMetadata"]["promptTokenCount"].as_u64().unwrap() + 8
            );
        }
    }

    #[tokio::test]
    async fn streamed_thoughts_come_in_the_first_events() {
        let body = request(Some(json!({"thinkingBudget": 2048, "includeThoughts": true})));
        let uri = format!("{STREAM_PATH}?alt=sse");
        let parts = testing::parts(&uri, &[("x-goog-api-key", "k")]);
        let events = testing::events(generate(&OPTIONS, &parts, STREAM_PATH, body.to_string().as_bytes(), None)).await;
        let first_parts: Vec<&Value> = events.iter().map(|e| &e["candidates"][0]["content"]["parts"][0]).collect();
        let thoughts: String = first_parts[..4].iter().map(|p| p["text"].as_str().unwrap()).collect();
        assert_eq!(thoughts, "Let me think about what the user asks.");
        assert!(first_parts[..4].iter().all(|p| p["thought"] == true));
        assert!(first_parts[4..].iter().all(|p| p.get("thought").is_none()));
        assert_eq!(events.len(), 4 + 8);
        assert_eq!(events.last().unwrap()["usageMetadata"]["thoughtsTokenCount"], 8);
    }
}
