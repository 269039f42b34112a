//! Golden tests of the cross-dialect translations: a client of one dialect served by a vendor
//! of another, both ways, from fixtures of wire bytes, through the same calls the worker makes
//! (`src/chat.rs`: `attempt`, `egress`, `encode`; `src/responses.rs`).
//!
//! Each case is a folder `fixtures/cross/<client>-<vendor>/<case>/`, where `<client>` is the
//! client's dialect (`anthropic`: Anthropic Messages; `responses`: OpenAI Responses) and
//! `<vendor>` the provider kind that serves it (`openai`: Chat Completions, `anthropic`,
//! `gemini`). A case holds some of:
//! - `client-request.json`: the client's bytes, as its SDK sends them;
//! - `client-headers.json` (optional): the client's headers the worker keeps on the request
//!   (`anthropic-beta`), as an object;
//! - `target.json` (optional): `{"base_url", "model"}` of the target, when the case needs
//!   another than its vendor's default (`gpt-4.1-mini`, `claude-sonnet-4-5`,
//!   `gemini-2.5-flash`): a reasoning model, or an OpenAI-format vendor that streams its
//!   reasoning (DeepSeek);
//! - `vendor-request.json`: the body the vendor must receive, compared as parsed JSON; for a
//!   pass-through (`anthropic-anthropic`) compared byte for byte, and it must be the client's
//!   bytes with only the `model` value renamed. The URL and headers are checked in code
//!   ([`check_outbound`]);
//! - `report.json`: the parameters dropped and adjusted (the worker's
//!   `x-switchyard-dropped-params` / `-adjusted-params`), whenever there are any;
//! - `vendor-response.json` + `client-response.json`: the vendor's answer and the client's
//!   (compared as parsed JSON; byte for byte for a pass-through);
//! - `vendor-stream.sse` + `client-stream.sse`: the vendor's event stream and the client's,
//!   as the egress writes it. They are compared event by event (event name and parsed data;
//!   byte for byte for a pass-through), the vendor stream being fed in pieces of every size
//!   from 1 byte up to 64 and whole, every feeding giving the same bytes. The client's stream
//!   must also keep its dialect's grammar ([`check_anthropic_stream`],
//!   [`check_responses_stream`]), whatever the fixture says.
//!
//! A case streams exactly when its client asked to (`"stream": true`), and then has a stream
//! fixture and no response fixture (and the other way round).
//!
//! Ids and times are fixed so that the output is deterministic: the Anthropic egress is seeded
//! with [`SEED`] (`anthropic_messages::Stream::with_seed`), a Responses call has the id
//! [`RESPONSE_ID`] and `created_at` [`CREATED_AT`], and its input items get ids from fixed
//! entropy. `completed_at` stays null: the worker sets it, the core has no clock.
//!
//! Vendor answers and streams are in each vendor's own wire shapes (OpenAI's chunks with
//! `usage: null` and `obfuscation`, Anthropic's named events with pings, Gemini's
//! `data:`-only events separated by CRLF), as the vendor fixtures of `golden.rs` are.
//!
//! `BLESS=1 cargo test -p switchyard-core --test cross` writes the expected files that are
//! missing (read them critically before committing: a blessed bug is a pinned bug).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use switchyard_core::canonical::{Dialect, Egress, Request};
use switchyard_core::config::{Provider, ProviderKind};
use switchyard_core::ingress::{anthropic_messages, openai_responses};
use switchyard_core::providers::{self, ChatPlan, Prepared};

/// The vendor key the targets have: it must be sent, and never reach the client.
const KEY: &str = "sk-vendor-fixture-key";
/// The Anthropic egress's seed (the worker's request id).
const SEED: &str = "req_cross0fixture0seed";
/// The id the gateway gives a Responses call (`resp_` and 48 hex digits, as `new_id` makes).
const RESPONSE_ID: &str = "resp_0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778";
const CREATED_AT: u64 = 1_750_000_000;
/// The bytes the worker's `entropy()` would give the input items' ids.
const ENTROPY: &[u8; 16] = b"cross-fixture-16";

// ---- The pipeline, as the worker runs it ----

/// A client's request, decoded: the canonical request and, for a Responses call, its params.
struct Decoded {
    request: Request,
    params: Option<openai_responses::Params>,
}

/// The target of a case: its vendor's default, or the case's `target.json`.
fn target(vendor: &str, dir: &Path) -> (Provider, String) {
    let (kind, base_url, model) = match vendor {
        "openai" => (ProviderKind::Openai, "https://api.openai.com/v1", "gpt-4.1-mini"),
        "anthropic" => (ProviderKind::Anthropic, "https://api.anthropic.com/v1", "claude-sonnet-4-5"),
        "gemini" => (ProviderKind::Gemini, "https://generativelanguage.googleapis.com/v1beta", "gemini-2.5-flash"),
        other => panic!("{}: no vendor `{other}`", dir.display()),
    };
    let chosen = read_json(&dir.join("target.json")).unwrap_or(json!({}));
    let base_url = chosen["base_url"].as_str().unwrap_or(base_url);
    let model = chosen["model"].as_str().unwrap_or(model);
    let provider = Provider { api_key_secret: Some("KEY".into()), ..Provider::new("vendor", kind, base_url) };
    (provider, model.to_owned())
}

/// `POST /v1/messages` or `POST /v1/responses`: the body decoded, the kept headers added.
fn decode(client: &str, dir: &Path, body: &[u8]) -> Decoded {
    let fail = |e: switchyard_core::GatewayError| -> ! { panic!("{}: the client request: {e}", dir.display()) };
    let mut decoded = match client {
        "anthropic" => {
            let request = anthropic_messages::decode(body.to_vec()).unwrap_or_else(|e| fail(e));
            Decoded { request, params: None }
        }
        "responses" => {
            let (request, mut params) = openai_responses::decode(body.to_vec(), &[]).unwrap_or_else(|e| fail(e));
            params.assign_ids(ENTROPY);
            Decoded { request, params: Some(params) }
        }
        other => panic!("{}: no client dialect `{other}`", dir.display()),
    };
    if let Some(Value::Object(headers)) = read_json(&dir.join("client-headers.json")) {
        for (name, value) in headers {
            decoded.request.source.headers.push((name, value.as_str().expect("header values are strings").to_owned()));
        }
    }
    decoded
}

/// The vendor request, as `attempt` makes it: the billed parameters withheld, the request
/// prepared, and what was withheld (and the dialect's own headers, for another vendor)
/// reported as dropped. The request the vendor gets is returned too: the egress is made of it.
fn prepare(provider: &Provider, model: &str, request: &Request) -> (Request, Prepared) {
    let withheld = request.withheld(&[], provider.forward_store, false).expect("nothing is refused");
    let (request, names) = match withheld {
        Some((request, names)) => (request, names),
        None => (request.clone(), Vec::new()),
    };
    let mut prepared = providers::prepare_chat(provider, model, &request, Some(KEY), false)
        .unwrap_or_else(|e| panic!("the vendor request: {e}"));
    prepared.report.dropped.splice(0..0, names);
    if !providers::passes_through(provider, request.source.dialect) {
        for (name, value) in &request.source.headers {
            prepared.report.dropped.push(format!("{name}: {value}"));
        }
    }
    (request, prepared)
}

/// The client dialect's stream encoder (`chat.rs`'s `egress`).
fn egress(request: &Request, params: Option<&openai_responses::Params>) -> Box<dyn Egress> {
    match request.source.dialect {
        Dialect::AnthropicMessages => Box::new(anthropic_messages::Stream::with_seed(SEED)),
        Dialect::OpenaiResponses => Box::new(openai_responses::Stream::new(
            request,
            params.expect("a Responses call has its params"),
            RESPONSE_ID.to_owned(),
            CREATED_AT,
        )),
        Dialect::OpenaiChat => unreachable!("golden.rs has the OpenAI Chat client"),
    }
}

/// The client's answer (`chat.rs`'s `encode`): the vendor's body untouched when it speaks the
/// client's dialect, else the canonical answer in the client's dialect.
fn answer(provider: &Provider, decoded: &Decoded, request: &Request, plan: &ChatPlan, body: &[u8]) -> Vec<u8> {
    let answer = match providers::decode_chat(provider, body, plan) {
        Ok(Some(answer)) => answer,
        Ok(None) => return body.to_vec(),
        Err(e) => panic!("the vendor answer: {e}"),
    };
    match request.source.dialect {
        Dialect::AnthropicMessages => anthropic_messages::encode_answer(&answer),
        Dialect::OpenaiResponses => {
            let params = decoded.params.as_ref().expect("a Responses call has its params");
            let response = openai_responses::encode_answer(&answer, request, params, RESPONSE_ID, CREATED_AT);
            serde_json::to_vec(&response).unwrap()
        }
        Dialect::OpenaiChat => unreachable!(),
    }
}

/// The client's stream for the vendor's, fed in pieces of `piece` bytes; as the worker's pump,
/// it stops feeding once the vendor's end event came, then ends the stream.
fn stream(
    provider: &Provider,
    decoded: &Decoded,
    request: &Request,
    plan: &ChatPlan,
    vendor: &[u8],
    piece: usize,
) -> Vec<u8> {
    let egress = egress(request, decoded.params.as_ref());
    let mut translator = providers::chat_stream(provider, plan.clone(), Some(KEY), egress);
    let mut out = Vec::new();
    for chunk in vendor.chunks(piece) {
        translator.push(chunk, &mut out);
        if translator.done() {
            break;
        }
    }
    translator.finish(None, &mut out);
    assert!(translator.error().is_none(), "the stream broke: {:?}", translator.error());
    assert!(translator.done());
    assert!(translator.usage().is_some(), "the stream's usage reaches the ledger");
    out
}

// ---- Checks every case gets ----

/// The URL and headers of the vendor request.
fn check_outbound(provider: &Provider, model: &str, request: &Request, prepared: &Prepared) {
    let outbound = &prepared.outbound;
    let header = |name: &str| outbound.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(header("content-type"), Some("application/json"));
    match provider.kind {
        ProviderKind::Openai => {
            assert_eq!(outbound.url, format!("{}/chat/completions", provider.base_url));
            assert_eq!(header("authorization"), Some(format!("Bearer {KEY}").as_str()));
            let accept = if request.stream { "text/event-stream" } else { "application/json" };
            assert_eq!(header("accept"), Some(accept));
        }
        ProviderKind::Anthropic => {
            assert_eq!(outbound.url, format!("{}/messages", provider.base_url));
            assert_eq!(header("x-api-key"), Some(KEY));
            assert_eq!(header("anthropic-version"), Some("2023-06-01"));
            // The client's own headers go to Anthropic only on a pass-through, less the betas
            // withheld (those billed beyond the catalog's prices).
            let betas = request.source.headers.iter().find(|(n, _)| n == "anthropic-beta").map(|(_, v)| v.as_str());
            assert_eq!(header("anthropic-beta"), betas);
        }
        ProviderKind::Gemini => {
            let method = if request.stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
            assert_eq!(outbound.url, format!("{}/models/{model}:{method}", provider.base_url));
            assert_eq!(header("x-goog-api-key"), Some(KEY));
            assert!(!outbound.url.contains(KEY), "the Gemini key never goes in the URL");
        }
        _ => unreachable!(),
    }
}

/// An Anthropic Message as the SDKs read it.
fn check_anthropic_message(message: &Value) {
    assert_eq!((message["type"].as_str(), message["role"].as_str()), (Some("message"), Some("assistant")));
    assert!(message["id"].as_str().is_some_and(|id| !id.is_empty()));
    let stop = message["stop_reason"].as_str().expect("a whole message has its stop reason");
    assert!(["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"].contains(&stop));
    assert_eq!(message["stop_sequence"].is_string(), stop == "stop_sequence");
    for block in message["content"].as_array().expect("content is an array") {
        match block["type"].as_str() {
            Some("text") => assert!(block["text"].is_string()),
            Some("thinking") => assert!(block["thinking"].is_string() && block["signature"].is_string()),
            Some("redacted_thinking") => assert!(block["data"].is_string()),
            Some("tool_use") => {
                assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()) && block["name"].is_string());
                assert!(block["input"].is_object());
            }
            other => panic!("a content block of type {other:?}"),
        }
    }
    for field in ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"] {
        assert!(message["usage"][field].is_u64(), "usage.{field}");
    }
}

/// An Anthropic event stream's grammar: one `message_start` (with an empty message) before
/// anything but pings; blocks numbered from 0, each start / its own deltas / stop, none
/// overlapping; one `message_delta` once every block is closed; `message_stop` last. A tool
/// call's JSON pieces make an object.
fn check_anthropic_stream(events: &[(String, Value)]) {
    let mut started = false;
    let mut open: Option<(u64, String, String)> = None; // index, type, what the deltas made
    let mut signed = false;
    let mut next = 0;
    let mut delta_seen = false;
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"].as_str(), Some(name.as_str()), "event {i}: its name is its type");
        assert!(name != "error", "event {i}: an error event");
        if name == "ping" {
            assert!(!delta_seen, "event {i}: a ping after message_delta");
            continue;
        }
        if !started {
            assert_eq!(name, "message_start", "event {i}: message_start comes first");
            let message = &data["message"];
            assert_eq!((message["type"].as_str(), message["role"].as_str()), (Some("message"), Some("assistant")));
            assert_eq!(message["content"], json!([]));
            assert!(message["stop_reason"].is_null() && message["stop_sequence"].is_null());
            assert!(message["id"].as_str().is_some_and(|id| !id.is_empty()));
            assert!(message["usage"]["input_tokens"].is_u64());
            started = true;
            continue;
        }
        let index = data["index"].as_u64();
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none() && !delta_seen, "event {i}: a block starts while another is open");
                assert_eq!(index, Some(next), "event {i}: blocks are numbered in order from 0");
                next += 1;
                let block = &data["content_block"];
                let kind = block["type"].as_str().expect("a block has a type").to_owned();
                match kind.as_str() {
                    "text" => assert_eq!(block["text"], ""),
                    "thinking" => assert_eq!((&block["thinking"], &block["signature"]), (&json!(""), &json!(""))),
                    "tool_use" => {
                        assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()), "event {i}: a tool id");
                        assert!(block["name"].as_str().is_some_and(|n| !n.is_empty()), "event {i}: a tool name");
                        assert_eq!(block["input"], json!({}));
                    }
                    "redacted_thinking" => assert!(block["data"].is_string()),
                    other => panic!("event {i}: a block of type {other}"),
                }
                open = Some((next - 1, kind, String::new()));
                signed = false;
            }
            "content_block_delta" => {
                let Some((at, kind, made)) = open.as_mut() else { panic!("event {i}: a delta outside a block") };
                assert_eq!(index, Some(*at), "event {i}: a delta of the open block");
                let delta = &data["delta"];
                let (field, piece) = match (kind.as_str(), delta["type"].as_str()) {
                    ("text", Some("text_delta")) => ("text", &delta["text"]),
                    ("thinking", Some("thinking_delta")) => {
                        assert!(!signed, "event {i}: thinking after the block's signature");
                        ("thinking", &delta["thinking"])
                    }
                    ("thinking", Some("signature_delta")) => {
                        assert!(!signed, "event {i}: a second signature");
                        signed = true;
                        ("signature", &delta["signature"])
                    }
                    ("tool_use", Some("input_json_delta")) => ("partial_json", &delta["partial_json"]),
                    (kind, other) => panic!("event {i}: a {other:?} delta in a {kind} block"),
                };
                let piece = piece.as_str().unwrap_or_else(|| panic!("event {i}: delta.{field} is a string"));
                assert!(!piece.is_empty(), "event {i}: an empty delta");
                if field != "signature" {
                    made.push_str(piece);
                }
            }
            "content_block_stop" => {
                let Some((at, kind, made)) = open.take() else { panic!("event {i}: a stop outside a block") };
                assert_eq!(index, Some(at), "event {i}: the open block stops");
                if kind == "tool_use" {
                    let input: Value = serde_json::from_str(&made)
                        .unwrap_or_else(|e| panic!("event {i}: the tool call's JSON pieces: {e}: {made}"));
                    assert!(input.is_object(), "event {i}: a tool call's input is an object");
                }
            }
            "message_delta" => {
                assert!(open.is_none(), "event {i}: message_delta while a block is open");
                assert!(!delta_seen, "event {i}: a second message_delta");
                delta_seen = true;
                let stop = data["delta"]["stop_reason"].as_str().expect("message_delta has its stop reason");
                assert!(
                    ["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"].contains(&stop)
                );
                assert!(data["usage"]["output_tokens"].is_u64());
            }
            "message_stop" => {
                assert!(delta_seen, "event {i}: message_stop without message_delta");
                assert_eq!(i, events.len() - 1, "message_stop is the last event");
            }
            other => panic!("event {i}: an event of type {other}"),
        }
    }
    assert!(events.last().is_some_and(|(name, _)| name == "message_stop"), "the stream ends with message_stop");
}

/// A Responses `Response` object as the SDKs read it: its status, and output items with ids
/// and statuses of their own.
fn check_response_object(response: &Value) {
    assert_eq!((response["id"].as_str(), response["object"].as_str()), (Some(RESPONSE_ID), Some("response")));
    assert_eq!(response["created_at"], CREATED_AT);
    let status = response["status"].as_str().expect("a status");
    assert!(["completed", "incomplete"].contains(&status), "status {status}");
    assert_eq!(response["incomplete_details"].is_object(), status == "incomplete");
    let mut ids = std::collections::HashSet::new();
    for item in response["output"].as_array().expect("output is an array") {
        assert!(ids.insert(item["id"].as_str().expect("an item has an id").to_owned()), "item ids are unique");
        match item["type"].as_str() {
            Some("message") => {
                assert_eq!(item["role"], "assistant");
                for part in item["content"].as_array().unwrap() {
                    assert!(["output_text", "refusal"].contains(&part["type"].as_str().unwrap()));
                }
            }
            Some("function_call") => {
                assert!(item["call_id"].as_str().is_some_and(|id| !id.is_empty()) && item["name"].is_string());
                let arguments: Value = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
                assert!(arguments.is_object());
            }
            Some("reasoning") => assert!(item["summary"].is_array()),
            other => panic!("an output item of type {other:?}"),
        }
    }
    for field in ["input_tokens", "output_tokens", "total_tokens"] {
        assert!(response["usage"][field].is_u64(), "usage.{field}");
    }
}

/// The Responses event stream's grammar: `sequence_number` counting from 0; `response.created`
/// and `response.in_progress` first; items one at a time, `output_item.added` ... `.done` with
/// their own events between (naming the item), the deltas adding up to what `.done` says;
/// `response.completed` (or `.incomplete`) last, its output the items done, in order.
fn check_responses_stream(events: &[(String, Value)]) {
    assert!(events.len() >= 3, "a stream has at least its created, in_progress and completed");
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"].as_str(), Some(name.as_str()), "event {i}: its name is its type");
        assert_eq!(data["sequence_number"].as_u64(), Some(i as u64), "event {i}: sequence numbers count from 0");
    }
    assert_eq!(events[0].0, "response.created");
    assert_eq!(events[1].0, "response.in_progress");
    for (_, data) in &events[..2] {
        assert_eq!(data["response"]["status"], "in_progress");
        assert_eq!(data["response"]["output"], json!([]));
        assert_eq!(data["response"]["id"], RESPONSE_ID);
    }
    let (last, end) = events.last().unwrap();
    assert!(last == "response.completed" || last == "response.incomplete", "the stream ends with {last}");
    let mut done: Vec<Value> = Vec::new();
    // The open item: its id, its output index, and what its deltas made.
    let mut open: Option<(String, usize, String)> = None;
    for (i, (name, data)) in events[2..events.len() - 1].iter().enumerate().map(|(i, e)| (i + 2, e)) {
        match name.as_str() {
            "response.output_item.added" => {
                assert!(open.is_none(), "event {i}: an item added while another is open");
                assert_eq!(data["output_index"].as_u64(), Some(done.len() as u64), "event {i}: items in order");
                assert_eq!(data["item"]["status"], "in_progress", "event {i}");
                let id = data["item"]["id"].as_str().expect("an item has an id").to_owned();
                open = Some((id, done.len(), String::new()));
            }
            "response.output_item.done" => {
                let Some((id, index, _)) = open.take() else { panic!("event {i}: no item open") };
                assert_eq!(
                    (data["item"]["id"].as_str(), data["output_index"].as_u64()),
                    (Some(id.as_str()), Some(index as u64))
                );
                done.push(data["item"].clone());
            }
            _ => {
                let Some((id, index, made)) = open.as_mut() else { panic!("event {i}: {name} outside an item") };
                assert_eq!(data["item_id"].as_str(), Some(id.as_str()), "event {i}: {name} of the open item");
                assert_eq!(data["output_index"].as_u64(), Some(*index as u64), "event {i}");
                match name.as_str() {
                    "response.output_text.delta"
                    | "response.reasoning_summary_text.delta"
                    | "response.function_call_arguments.delta" => {
                        let delta = data["delta"].as_str().expect("a delta is a string");
                        assert!(!delta.is_empty(), "event {i}: an empty delta");
                        made.push_str(delta);
                    }
                    "response.output_text.done" | "response.reasoning_summary_text.done" => {
                        assert_eq!(data["text"].as_str(), Some(made.as_str()), "event {i}: the deltas add up");
                        made.clear();
                    }
                    "response.function_call_arguments.done" => {
                        let arguments = data["arguments"].as_str().unwrap();
                        assert_eq!(arguments, made, "event {i}: the deltas add up");
                        let parsed: Value = serde_json::from_str(arguments).expect("the arguments are JSON");
                        assert!(parsed.is_object());
                        made.clear();
                    }
                    "response.content_part.added"
                    | "response.content_part.done"
                    | "response.reasoning_summary_part.added"
                    | "response.reasoning_summary_part.done" => {}
                    other => panic!("event {i}: an event of type {other}"),
                }
            }
        }
    }
    assert!(open.is_none(), "an item is still open at the end");
    let response = &end["response"];
    assert_eq!(response["output"], Value::Array(done), "the final output is the items done");
    assert_eq!(format!("response.{}", response["status"].as_str().unwrap()), *last);
    check_response_object(response);
}

// ---- Files ----

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn blessing() -> bool {
    std::env::var_os("BLESS").is_some()
}

fn missing(path: &Path, actual: &str) -> ! {
    panic!("{} is missing (BLESS=1 writes it); actual:\n{actual}", path.display())
}

/// Compares with the expected JSON file, or writes it under BLESS=1 when it is missing.
fn expect_json(path: &Path, actual: &Value) {
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    match read_json(path) {
        Some(expected) => assert!(actual == &expected, "{} differs; actual:\n{pretty}", path.display()),
        None if blessing() => std::fs::write(path, pretty).unwrap(),
        None => missing(path, &pretty),
    }
}

/// Compares with the expected file byte for byte, or writes it under BLESS=1.
fn expect_bytes(path: &Path, actual: &[u8]) {
    match std::fs::read(path) {
        Ok(expected) => assert!(
            actual == expected,
            "{} differs byte for byte; actual:\n{}",
            path.display(),
            String::from_utf8_lossy(actual)
        ),
        Err(_) if blessing() => std::fs::write(path, actual).unwrap(),
        Err(_) => missing(path, &String::from_utf8_lossy(actual)),
    }
}

/// An SSE stream's events: each one's name (`message` when it has none) and parsed data.
fn sse_events(sse: &[u8]) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut parser = switchyard_core::sse::SseParser::new();
    let mut on_event = |name: &str, data: &[u8]| {
        let data = serde_json::from_slice(data)
            .unwrap_or_else(|e| panic!("an event's data is JSON: {e}: {}", String::from_utf8_lossy(data)));
        events.push((if name.is_empty() { "message".to_owned() } else { name.to_owned() }, data));
    };
    parser.push(sse, &mut on_event).expect("the events are small");
    parser.finish();
    events
}

/// Compares the client's stream with the expected one event by event (byte for byte when
/// `exact`), or writes it under BLESS=1.
fn expect_stream(path: &Path, actual: &[u8], exact: bool) {
    if exact {
        return expect_bytes(path, actual);
    }
    match std::fs::read(path) {
        Ok(expected) => {
            let (actual_events, expected_events) = (sse_events(actual), sse_events(&expected));
            let shown = String::from_utf8_lossy(actual);
            assert_eq!(actual_events.len(), expected_events.len(), "{}: events; actual:\n{shown}", path.display());
            for (i, (a, e)) in actual_events.iter().zip(&expected_events).enumerate() {
                assert!(a == e, "{}: event {i} differs: {a:?}, expected {e:?}; actual:\n{shown}", path.display());
            }
        }
        Err(_) if blessing() => std::fs::write(path, actual).unwrap(),
        Err(_) => missing(path, &String::from_utf8_lossy(actual)),
    }
}

// ---- A case ----

fn run_case(client: &str, vendor: &str, dir: &Path) {
    let at = dir.display();
    let (provider, model) = target(vendor, dir);
    let body = std::fs::read(dir.join("client-request.json")).unwrap_or_else(|e| panic!("{at}: {e}"));
    let decoded = decode(client, dir, &body);
    let passes = providers::passes_through(&provider, decoded.request.source.dialect);

    let (request, prepared) = prepare(&provider, &model, &decoded.request);
    check_outbound(&provider, &model, &request, &prepared);
    let sent = &prepared.outbound.body;
    if passes {
        // The client's bytes with only the model renamed: what the gateway does not model
        // (cache markers, signatures, members Anthropic adds later) reaches the vendor as sent.
        let (start, end) = request.source.model_span;
        let mut renamed = request.source.bytes[..start].to_vec();
        renamed.extend_from_slice(serde_json::to_string(&model).unwrap().as_bytes());
        renamed.extend_from_slice(&request.source.bytes[end..]);
        assert!(sent == &renamed, "{at}: a pass-through renames the model and nothing else");
        expect_bytes(&dir.join("vendor-request.json"), sent);
    } else {
        let sent: Value = serde_json::from_slice(sent).unwrap_or_else(|e| panic!("{at}: the vendor body: {e}"));
        expect_json(&dir.join("vendor-request.json"), &sent);
    }
    let report = json!({"dropped": prepared.report.dropped, "adjusted": prepared.report.adjusted});
    if report != json!({"dropped": [], "adjusted": []}) || dir.join("report.json").exists() {
        expect_json(&dir.join("report.json"), &report);
    }
    let plan = &prepared.plan;
    assert_eq!(plan.stream, request.stream, "{at}");

    let response = dir.join("vendor-response.json");
    let vendor_stream = dir.join("vendor-stream.sse");
    assert_eq!(response.exists(), !request.stream, "{at}: a response fixture exactly when the client does not stream");
    assert_eq!(vendor_stream.exists(), request.stream, "{at}: a stream fixture exactly when the client streams");

    if let Ok(vendor_body) = std::fs::read(&response) {
        let client_body = answer(&provider, &decoded, &request, plan, &vendor_body);
        assert!(!String::from_utf8_lossy(&client_body).contains(KEY), "{at}: the vendor key never reaches the client");
        let parsed: Value = serde_json::from_slice(&client_body).unwrap_or_else(|e| panic!("{at}: {e}"));
        match client {
            "anthropic" => check_anthropic_message(&parsed),
            _ => check_response_object(&parsed),
        }
        if passes {
            assert!(client_body == vendor_body, "{at}: a pass-through answer goes back untouched");
            expect_bytes(&dir.join("client-response.json"), &client_body);
        } else {
            expect_json(&dir.join("client-response.json"), &parsed);
        }
    }

    if let Ok(vendor) = std::fs::read(&vendor_stream) {
        let whole = stream(&provider, &decoded, &request, plan, &vendor, vendor.len());
        assert!(!String::from_utf8_lossy(&whole).contains(KEY), "{at}: the vendor key never reaches the client");
        if passes {
            assert!(whole == vendor, "{at}: a pass-through stream goes back byte for byte");
        }
        expect_stream(&dir.join("client-stream.sse"), &whole, passes);
        let events = sse_events(&whole);
        match client {
            "anthropic" => check_anthropic_stream(&events),
            _ => check_responses_stream(&events),
        }
        for piece in 1..=vendor.len().min(64) {
            let pieces = stream(&provider, &decoded, &request, plan, &vendor, piece);
            assert!(
                pieces == whole,
                "{at}: fed in pieces of {piece} bytes, the stream differs:\n{}",
                String::from_utf8_lossy(&pieces)
            );
        }
    }
}

/// The cases of a client and vendor pair, in order.
fn cases(pair: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cross").join(pair);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures for {pair}");
    dirs
}

fn run_pair(client: &str, vendor: &str) {
    for dir in cases(&format!("{client}-{vendor}")) {
        run_case(client, vendor, &dir);
    }
}

#[test]
fn anthropic_client_openai_vendor() {
    run_pair("anthropic", "openai");
}

#[test]
fn anthropic_client_gemini_vendor() {
    run_pair("anthropic", "gemini");
}

#[test]
fn anthropic_client_anthropic_vendor_passes_through() {
    run_pair("anthropic", "anthropic");
}

#[test]
fn responses_client_anthropic_vendor() {
    run_pair("responses", "anthropic");
}

#[test]
fn responses_client_gemini_vendor() {
    run_pair("responses", "gemini");
}

#[test]
fn responses_client_openai_vendor() {
    run_pair("responses", "openai");
}

/// The pass-through fixture holds what a translation would lose, so that its byte-for-byte
/// check means something: cache markers, thinking signatures, a member the gateway does not
/// know, a billed beta withheld and another kept.
#[test]
fn the_pass_through_fixture_holds_what_a_translation_would_lose() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cross/anthropic-anthropic/passthrough");
    let sent = std::fs::read_to_string(dir.join("vendor-request.json")).unwrap();
    for kept in ["\"cache_control\"", "\"signature\"", "\"redacted_thinking\"", "\"context_management\""] {
        assert!(sent.contains(kept), "{kept}");
    }
    // Escapes and a number as the client wrote them: nothing was parsed and written again.
    for kept in [r#"R\u00e9sum\u00e9s"#, "2.50", "\"model\" : "] {
        assert!(sent.contains(kept), "{kept}");
    }
    let request = anthropic_messages::decode(std::fs::read(dir.join("client-request.json")).unwrap()).unwrap();
    assert!(request.extra.contains_key("context_management"), "a member the canonical request does not model");
    assert!(request.extra.contains_key("x_future_field"), "a member Anthropic may add later");
    let report = read_json(&dir.join("report.json")).unwrap();
    assert_eq!(report["dropped"], json!(["anthropic-beta: context-1m-2025-08-07"]));
    // Independently of the model's span: the client's text with its model's value replaced.
    for case in ["passthrough", "passthrough-stream"] {
        let dir = dir.with_file_name(case);
        let client = std::fs::read_to_string(dir.join("client-request.json")).unwrap();
        assert_eq!(client.matches("\"claude-sonnet\"").count(), 1);
        let expected = client.replace("\"claude-sonnet\"", "\"claude-sonnet-4-5\"");
        assert_eq!(std::fs::read_to_string(dir.join("vendor-request.json")).unwrap(), expected, "{case}");
    }
}

/// A change to a stream's events.
type Mutation<'a> = Box<dyn Fn(&mut Vec<(String, Value)>) + 'a>;

/// Whether `check` panics on `events`.
fn rejects(check: fn(&[(String, Value)]), events: &[(String, Value)]) -> bool {
    std::panic::catch_unwind(|| check(events)).is_err()
}

/// The grammar checks catch what they are there for: each mutation of a blessed stream fails.
#[test]
fn the_grammar_checks_reject_broken_streams() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cross");
    let good = sse_events(&std::fs::read(root.join("anthropic-openai/claude-code/client-stream.sse")).unwrap());
    check_anthropic_stream(&good);
    let position = |name: &str| good.iter().position(|(n, _)| n == name).unwrap();
    let mutations: Vec<(&str, Mutation<'_>)> = vec![
        ("a second message_start", Box::new(|e| e.insert(3, e[0].clone()))),
        ("no message_stop", Box::new(|e| drop(e.pop()))),
        ("no message_delta", Box::new(move |e| drop(e.remove(position("message_delta"))))),
        ("a block left open", Box::new(move |e| drop(e.remove(position("content_block_stop"))))),
        (
            "a text delta in a tool_use block",
            Box::new(|e| {
                let at = e.iter().rposition(|(n, _)| n == "content_block_delta").unwrap();
                e[at].1["delta"] = json!({"type": "text_delta", "text": "x"});
            }),
        ),
        (
            "blocks numbered out of order",
            Box::new(|e| {
                let at = e.iter().rposition(|(n, _)| n == "content_block_start").unwrap();
                e[at].1["index"] = json!(5);
            }),
        ),
        (
            "broken tool JSON",
            Box::new(|e| {
                let at = e.iter().rposition(|(n, _)| n == "content_block_delta").unwrap();
                e[at].1["delta"]["partial_json"] = json!("\"description\":");
            }),
        ),
    ];
    for (what, mutate) in &mutations {
        let mut events = good.clone();
        mutate(&mut events);
        assert!(rejects(check_anthropic_stream, &events), "{what}");
    }

    let good =
        sse_events(&std::fs::read(root.join("responses-anthropic/stream-function-call/client-stream.sse")).unwrap());
    check_responses_stream(&good);
    let mutations: Vec<(&str, Mutation<'_>)> = vec![
        ("a sequence number skipped", Box::new(|e| e[4].1["sequence_number"] = json!(5))),
        ("no response.completed", Box::new(|e| drop(e.pop()))),
        (
            "an item never done",
            Box::new(|e| {
                let at = e.iter().position(|(n, _)| n == "response.output_item.done").unwrap();
                e.remove(at);
                for (i, (_, data)) in e.iter_mut().enumerate() {
                    data["sequence_number"] = json!(i);
                }
            }),
        ),
        (
            "deltas that do not add up",
            Box::new(|e| {
                let at = e.iter().position(|(n, _)| n == "response.function_call_arguments.delta").unwrap();
                e[at].1["delta"] = json!("{\"loc");
            }),
        ),
        (
            "a final output that is not the items done",
            Box::new(|e| {
                let last = e.len() - 1;
                e[last].1["response"]["output"] = json!([]);
            }),
        ),
    ];
    for (what, mutate) in &mutations {
        let mut events = good.clone();
        mutate(&mut events);
        assert!(rejects(check_responses_stream, &events), "{what}");
    }
}

/// Every pair has its cases: a folder lost is a failure, not a pass.
#[test]
fn every_pair_has_its_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cross");
    let mut pairs: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            "anthropic-anthropic",
            "anthropic-gemini",
            "anthropic-openai",
            "responses-anthropic",
            "responses-gemini",
            "responses-openai"
        ]
    );
    let count = |pair: &str| cases(pair).len();
    assert!(count("anthropic-openai") >= 6 && count("anthropic-gemini") >= 6);
    assert!(count("responses-anthropic") >= 6 && count("responses-gemini") >= 6);
    assert!(count("responses-openai") >= 4 && count("anthropic-anthropic") >= 2);
}
