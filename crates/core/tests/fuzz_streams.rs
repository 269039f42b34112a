//! Property tests of everything that reads a vendor's bytes: the stream translators, the SSE
//! parser and the non-streamed decoders, fed arbitrary bytes, arbitrary JSON in the shapes of
//! each vendor's events (indices huge or negative, fields of the wrong type or missing, unknown
//! event types, any order), and well-formed vendor streams (generated, or the golden tests'
//! recordings) with a few events dropped, repeated, swapped, inserted, reframed or cut off, split
//! at arbitrary points.
//!
//! Every vendor kind's translator (Openai, Azure, Anthropic, Gemini, Mock) runs under every
//! client dialect (OpenAI Chat, Anthropic Messages, OpenAI Responses), through that dialect's
//! encoder, and what the client gets is checked against the dialect's grammar, written here:
//! - OpenAI Chat: JSON events, at most one error event, just before the one `data: [DONE]`
//!   that ends the stream (the gateway's own chunks also of one id, each choice beginning with
//!   its role chunk, each tool call with its id and name, the usage chunk last);
//! - Anthropic Messages: one `message_start` first (pings anywhere), blocks numbered 0, 1, 2...
//!   one at a time, each started and stopped once, deltas of their block's kind, then
//!   `message_delta` and `message_stop`, or an `error` event, last;
//! - OpenAI Responses: sequence numbers 0, 1, 2..., `response.created` then
//!   `response.in_progress`, every item added then done at its output index, parts and deltas
//!   only in their open item, one terminal event and nothing after it but an `error` event;
//! - the pass-through of Anthropic's stream to an Anthropic client, loosely: whole events, JSON
//!   data, one `message_start`, ending with `message_stop` or an `error` event.
//!
//! Whatever comes in: nothing panics (a panic aborts the worker's isolate, and every request it
//! serves); nothing is written once the translator is done; the client gets an error event iff
//! the translator's `error()` is set once finished, and on a clean end the usage the client is
//! told is the translator's `usage()`; the vendor key is in no error the client gets, and in
//! nothing at all when the vendor put it only in its error events. A well-formed stream's text,
//! thinking and tool calls reach the client of every dialect as the vendor sent them.
//!
//! The bugs it found are pinned by the tests at the end. Runs are bounded (256 cases a
//! property, a few seconds in debug); `FUZZ_CASES` runs more, `PROPTEST_RNG_SEED` replays a run.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::OnceLock;
use switchyard_core::canonical::{Dialect, Egress, Request, Usage};
use switchyard_core::config::{Provider, ProviderKind};
use switchyard_core::embeddings::EmbeddingRequest;
use switchyard_core::ingress::{anthropic_messages, openai_chat, openai_responses};
use switchyard_core::providers::{self, ChatPlan};
use switchyard_core::sse::{EventSplitter, SseParser, DONE};
use switchyard_core::GatewayError;

/// The vendor key, with characters that percent-encode, as a vendor might echo it.
const KEY: &str = "sk-fuzz-SECRET/key+42=";
/// The key as it appears percent-encoded in a URL a vendor echoes.
const KEY_ENCODED: &str = "sk-fuzz-SECRET%2Fkey%2B42%3D";

const ALL_KINDS: [ProviderKind; 5] =
    [ProviderKind::Openai, ProviderKind::Azure, ProviderKind::Anthropic, ProviderKind::Gemini, ProviderKind::Mock];
/// The kinds whose vendors stream OpenAI's chunks (the mock's translator reads them too).
const OPENAI_FORMAT: [ProviderKind; 3] = [ProviderKind::Openai, ProviderKind::Azure, ProviderKind::Mock];
const DIALECTS: [Dialect; 3] = [Dialect::OpenaiChat, Dialect::AnthropicMessages, Dialect::OpenaiResponses];

const CREATED: u64 = 1_750_000_000;
const RESPONSE_ID: &str = "resp_fuzz0123456789";

/// 256 cases a property; `FUZZ_CASES=100000` for a longer hunt.
fn config() -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn provider(kind: ProviderKind) -> Provider {
    Provider { api_key_secret: Some("KEY".into()), ..Provider::new("vendor", kind, "https://vendor.example/v1") }
}

// ---- Generators ----

/// Text a vendor might send, the key and SSE syntax among it.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "hi",
            "Hel",
            "lo",
            "{\"a\":",
            "1}",
            "text",
            "tool_use",
            "json_response",
            "thinking",
            "STOP",
            "MAX_TOKENS",
            "SAFETY",
            "tool_calls",
            "[DONE]",
            "\n\ndata: [DONE]\n\n",
            "\r",
            "é€😀",
            "\u{0}",
            KEY,
            KEY_ENCODED,
            "API key not valid",
            "API_KEY_INVALID",
        ])
        .prop_map(str::to_owned),
        prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        (prop::collection::vec(any::<char>(), 0..4), prop::collection::vec(any::<char>(), 0..4))
            .prop_map(|(a, b)| format!("{}{KEY}{}", String::from_iter(a), String::from_iter(b))),
    ]
}

/// A number or anything else where a vendor puts an index or a count.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0u64..4).prop_map(Value::from),
        1 => prop::sample::select(vec![
            json!(255), json!(256), json!(127), json!(128), json!(4_000_000_000u64), json!(1_000_000_000_000u64),
            json!(u64::MAX), json!(-1), json!(i64::MIN), json!(1.5), json!(1e300), json!("0"), json!(null),
            json!([]), json!({}), json!(true),
        ]),
        1 => any::<i64>().prop_map(Value::from),
    ]
}

const MEMBERS: &[&str] = &[
    "type",
    "index",
    "delta",
    "text",
    "partial_json",
    "thinking",
    "stop_reason",
    "message",
    "id",
    "model",
    "usage",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "content_block",
    "name",
    "input",
    "error",
    "code",
    "status",
    "details",
    "reason",
    "param",
    "candidates",
    "content",
    "parts",
    "thought",
    "functionCall",
    "args",
    "finishReason",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "promptFeedback",
    "blockReason",
    "modelVersion",
    "responseId",
    "choices",
    "finish_reason",
    "tool_calls",
    "function",
    "arguments",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "embeddings",
    "values",
    "role",
    "stop_sequence",
    "reasoning_content",
    "refusal",
    "signature",
    "data",
    "x",
];

/// Any JSON, its member names those the vendors use.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(MEMBERS), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A plausible value most of the time, anything at all sometimes.
fn or_any(plausible: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![4 => plausible, 1 => any_json()].boxed()
}

/// An object of these members, each one there or not.
fn object(members: Vec<(&'static str, BoxedStrategy<Value>)>) -> impl Strategy<Value = Value> {
    let members: Vec<_> =
        members.into_iter().map(|(name, value)| prop::option::of(value.prop_map(move |v| (name, v)))).collect();
    members.prop_map(|members| Value::Object(members.into_iter().flatten().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn one_of(names: &[&'static str]) -> BoxedStrategy<Value> {
    or_any(prop::sample::select(names.to_vec()).prop_map(Value::from))
}

fn text_value() -> BoxedStrategy<Value> {
    or_any(text().prop_map(Value::from))
}

fn vendor_error_object() -> BoxedStrategy<Value> {
    or_any(object(vec![
        (
            "type",
            one_of(&[
                "overloaded_error",
                "api_error",
                "authentication_error",
                "permission_error",
                "invalid_request_error",
                "rate_limit_error",
                "x",
            ]),
        ),
        ("message", text_value()),
        ("code", or_any(prop_oneof![number(), text().prop_map(Value::from)])),
        ("param", text_value()),
        ("status", one_of(&["INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "UNAVAILABLE", "INTERNAL"])),
        (
            "details",
            or_any(
                prop::collection::vec(
                    object(vec![("reason", one_of(&["API_KEY_INVALID", "API_KEY_EXPIRED", "OTHER"]))]),
                    0..3,
                )
                .prop_map(Value::Array),
            ),
        ),
    ]))
}

fn anthropic_usage() -> BoxedStrategy<Value> {
    or_any(object(vec![
        ("input_tokens", number().boxed()),
        ("output_tokens", number().boxed()),
        ("cache_read_input_tokens", number().boxed()),
        ("cache_creation_input_tokens", number().boxed()),
    ]))
}

fn anthropic_event() -> BoxedStrategy<Value> {
    let kind = one_of(&[
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
        "something_new",
    ]);
    let block = or_any(prop_oneof![
        text().prop_map(|text| json!({"type": "text", "text": text})),
        (text(), prop::sample::select(vec!["f", "json_response"]))
            .prop_map(|(id, name)| json!({"type": "tool_use", "id": id, "name": name, "input": {}})),
        Just(json!({"type": "thinking", "thinking": ""})),
        text().prop_map(|data| json!({"type": "redacted_thinking", "data": data})),
        Just(json!({"type": "server_tool_use"})),
    ]);
    let delta = or_any(object(vec![
        ("type", one_of(&["text_delta", "input_json_delta", "thinking_delta", "signature_delta"])),
        ("text", text_value()),
        ("partial_json", text_value()),
        ("thinking", text_value()),
        ("signature", text_value()),
        ("stop_reason", one_of(&["end_turn", "max_tokens", "tool_use", "refusal", "stop_sequence"])),
        ("stop_sequence", text_value()),
    ]));
    let message = or_any(object(vec![("id", text_value()), ("model", text_value()), ("usage", anthropic_usage())]));
    object(vec![
        ("type", kind),
        ("index", number().boxed()),
        ("content_block", block),
        ("delta", delta),
        ("message", message),
        ("usage", anthropic_usage()),
        ("error", vendor_error_object()),
    ])
    .boxed()
}

fn gemini_event() -> BoxedStrategy<Value> {
    let call = or_any(object(vec![("name", text_value()), ("args", any_json().boxed()), ("id", text_value())]));
    let part = or_any(object(vec![
        ("text", text_value()),
        ("thought", or_any(any::<bool>().prop_map(Value::from))),
        ("functionCall", call),
    ]));
    let candidate = or_any(object(vec![
        ("index", number().boxed()),
        ("content", or_any(object(vec![("parts", or_any(prop::collection::vec(part, 0..4).prop_map(Value::Array)))]))),
        ("finishReason", one_of(&["STOP", "MAX_TOKENS", "SAFETY", "OTHER"])),
    ]));
    let usage = or_any(object(vec![
        ("promptTokenCount", number().boxed()),
        ("candidatesTokenCount", number().boxed()),
        ("thoughtsTokenCount", number().boxed()),
        ("cachedContentTokenCount", number().boxed()),
    ]));
    object(vec![
        ("candidates", or_any(prop::collection::vec(candidate, 0..3).prop_map(Value::Array))),
        ("usageMetadata", usage),
        ("promptFeedback", or_any(object(vec![("blockReason", one_of(&["SAFETY", "OTHER"]))]))),
        ("modelVersion", text_value()),
        ("responseId", text_value()),
        ("error", vendor_error_object()),
    ])
    .boxed()
}

fn openai_event() -> BoxedStrategy<Value> {
    let call = or_any(object(vec![
        ("index", number().boxed()),
        ("id", text_value()),
        ("function", or_any(object(vec![("name", text_value()), ("arguments", text_value())]))),
    ]));
    let delta = or_any(object(vec![
        ("content", text_value()),
        ("role", one_of(&["assistant"])),
        ("reasoning_content", text_value()),
        ("refusal", text_value()),
        ("tool_calls", or_any(prop::collection::vec(call, 0..3).prop_map(Value::Array))),
    ]));
    let choice = or_any(object(vec![
        ("index", number().boxed()),
        ("delta", delta),
        ("finish_reason", one_of(&["stop", "length", "tool_calls"])),
    ]));
    object(vec![
        ("id", text_value()),
        ("choices", or_any(prop::collection::vec(choice, 0..3).prop_map(Value::Array))),
        ("usage", or_any(object(vec![("prompt_tokens", number().boxed()), ("completion_tokens", number().boxed())]))),
        ("error", or_any(prop_oneof![Just(Value::Null), vendor_error_object()])),
    ])
    .boxed()
}

/// How one event goes on the wire.
#[derive(Debug, Clone)]
enum Frame {
    Data(Value),
    Named(String, Value),
    CrLf(Value),
    /// Lines ended by a lone CR, as SSE allows.
    Cr(Value),
    Done,
    Comment,
    /// A line that is no SSE field, or data that is not JSON.
    Raw(Vec<u8>),
}

fn frame(event: BoxedStrategy<Value>) -> impl Strategy<Value = Frame> {
    prop_oneof![
        8 => event.clone().prop_map(Frame::Data),
        2 => (text(), event.clone()).prop_map(|(name, v)| Frame::Named(name.replace(['\n', '\r'], ""), v)),
        1 => event.clone().prop_map(Frame::CrLf),
        1 => event.prop_map(Frame::Cr),
        1 => Just(Frame::Done),
        1 => Just(Frame::Comment),
        1 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Frame::Raw),
    ]
}

fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        match frame {
            Frame::Data(v) => out.extend_from_slice(format!("data: {v}\n\n").as_bytes()),
            Frame::Named(name, v) => out.extend_from_slice(format!("event: {name}\ndata: {v}\n\n").as_bytes()),
            Frame::CrLf(v) => out.extend_from_slice(format!("data: {v}\r\n\r\n").as_bytes()),
            Frame::Cr(v) => out.extend_from_slice(format!("data: {v}\r\r").as_bytes()),
            Frame::Done => out.extend_from_slice(b"data: [DONE]\n\n"),
            Frame::Comment => out.extend_from_slice(b": keep-alive\n\n"),
            Frame::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
    out
}

/// Anthropic's framing: each event named by its type.
fn named(event: Value) -> Frame {
    Frame::Named(event["type"].as_str().unwrap_or_default().to_owned(), event)
}

// ---- Well-formed vendor streams, and what goes wrong with them ----

/// A piece of a stream's text: mostly plain, sometimes anything `text` makes.
fn piece() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec!["Hel", "lo", " world", "{\"city\":", "\"Paris\"}", "", "é€😀", "\n", "\"", "\\"])
            .prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(piece(), 0..4)
}

/// A plausible value nearly always, anything at all rarely: a well-formed stream's members.
fn mostly(plausible: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![12 => plausible, 1 => any_json()].boxed()
}

fn mostly_one_of(names: &[&'static str]) -> BoxedStrategy<Value> {
    mostly(prop::sample::select(names.to_vec()).prop_map(Value::from))
}

/// Anthropic's usage as Anthropic reports it (the cache members not always there).
fn plain_anthropic_usage() -> BoxedStrategy<Value> {
    mostly((0u64..5000, 0u64..5000, prop::option::of((0u64..100, 0u64..100))).prop_map(|(input, output, cache)| {
        let mut usage = json!({"input_tokens": input, "output_tokens": output});
        if let Some((read, written)) = cache {
            usage["cache_read_input_tokens"] = json!(read);
            usage["cache_creation_input_tokens"] = json!(written);
        }
        usage
    }))
}

/// What happens to a well-formed stream on its way (or what a vendor gets wrong).
#[derive(Debug, Clone)]
enum Mutation {
    Drop(usize),
    Repeat(usize),
    Swap(usize),
    Insert(usize, Frame),
    /// The event framed another way (unnamed, CRLF, lone CR).
    Reframe(usize, u8),
    /// The stream breaks off here.
    Cut(usize),
}

/// No mutation a third of the time: the well-formed stream must come out whole.
fn mutations(insert: BoxedStrategy<Value>) -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        2 => any::<usize>().prop_map(Mutation::Drop),
        1 => any::<usize>().prop_map(Mutation::Repeat),
        1 => any::<usize>().prop_map(Mutation::Swap),
        2 => (any::<usize>(), frame(insert)).prop_map(|(at, frame)| Mutation::Insert(at, frame)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, how)| Mutation::Reframe(at, how)),
        1 => any::<usize>().prop_map(Mutation::Cut),
    ];
    prop_oneof![1 => Just(Vec::new()), 2 => prop::collection::vec(one, 1..4)]
}

fn mutate(mut frames: Vec<Frame>, mutations: &[Mutation]) -> Vec<Frame> {
    for mutation in mutations {
        let n = frames.len();
        match mutation {
            Mutation::Drop(at) if n > 0 => {
                frames.remove(at % n);
            }
            Mutation::Repeat(at) if n > 0 => {
                let frame = frames[at % n].clone();
                frames.insert(at % n, frame);
            }
            Mutation::Swap(at) if n > 1 => frames.swap(at % (n - 1), at % (n - 1) + 1),
            Mutation::Insert(at, frame) => frames.insert(at % (n + 1), frame.clone()),
            Mutation::Reframe(at, how) if n > 0 => {
                let frame = &mut frames[at % n];
                let value = match frame {
                    Frame::Data(v) | Frame::Named(_, v) | Frame::CrLf(v) | Frame::Cr(v) => v.clone(),
                    _ => continue,
                };
                *frame = match how % 4 {
                    0 => Frame::Data(value),
                    1 => named(value),
                    2 => Frame::CrLf(value),
                    _ => Frame::Cr(value),
                };
            }
            Mutation::Cut(at) => frames.truncate(at % (n + 1)),
            _ => {}
        }
    }
    frames
}

#[derive(Debug, Clone)]
enum AnthropicBlock {
    Text {
        initial: String,
        deltas: Vec<String>,
    },
    Thinking {
        deltas: Vec<String>,
        signature: Option<String>,
    },
    Tool {
        id: String,
        name: &'static str,
        deltas: Vec<String>,
    },
    Redacted(String),
    /// A server tool's block, which the client of another dialect is not shown.
    Server {
        deltas: Vec<String>,
    },
}

fn anthropic_block() -> impl Strategy<Value = AnthropicBlock> {
    prop_oneof![
        3 => (prop_oneof![3 => Just(String::new()), 1 => piece()], texts())
            .prop_map(|(initial, deltas)| AnthropicBlock::Text { initial, deltas }),
        2 => (texts(), prop::option::of(piece()))
            .prop_map(|(deltas, signature)| AnthropicBlock::Thinking { deltas, signature }),
        2 => (
            prop_oneof![3 => Just("toolu_01".to_owned()), 1 => text()],
            prop::sample::select(vec!["get_weather", "json_response"]),
            texts(),
        )
            .prop_map(|(id, name, deltas)| AnthropicBlock::Tool { id, name, deltas }),
        1 => piece().prop_map(AnthropicBlock::Redacted),
        1 => texts().prop_map(|deltas| AnthropicBlock::Server { deltas }),
    ]
}

/// Anthropic's stream of a whole message, as Anthropic sends it.
fn anthropic_stream() -> impl Strategy<Value = Vec<Frame>> {
    (
        prop_oneof![3 => Just("msg_01".to_owned()), 1 => text()],
        prop_oneof![3 => Just("claude-sonnet-4-5".to_owned()), 1 => text()],
        plain_anthropic_usage(),
        prop::collection::vec(anthropic_block(), 0..5),
        mostly_one_of(&["end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal", "pause_turn"]),
        prop::option::of(piece()),
        plain_anthropic_usage(),
    )
        .prop_map(|(id, model, start_usage, blocks, stop_reason, stop_sequence, usage)| {
            let message = json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": start_usage});
            let mut events = vec![json!({"type": "message_start", "message": message}), json!({"type": "ping"})];
            for (index, block) in blocks.into_iter().enumerate() {
                let delta = |kind: &str, field: &str, piece: String| json!({"type": kind, field: piece});
                let (start, deltas): (Value, Vec<Value>) = match block {
                    AnthropicBlock::Text { initial, deltas } => (
                        json!({"type": "text", "text": initial}),
                        deltas.into_iter().map(|d| delta("text_delta", "text", d)).collect(),
                    ),
                    AnthropicBlock::Thinking { deltas, signature } => (
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        deltas
                            .into_iter()
                            .map(|d| delta("thinking_delta", "thinking", d))
                            .chain(signature.map(|s| delta("signature_delta", "signature", s)))
                            .collect(),
                    ),
                    AnthropicBlock::Tool { id, name, deltas } => (
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                        // Anthropic's first piece of a tool's input is empty.
                        std::iter::once(String::new())
                            .chain(deltas)
                            .map(|d| delta("input_json_delta", "partial_json", d))
                            .collect(),
                    ),
                    AnthropicBlock::Redacted(data) => (json!({"type": "redacted_thinking", "data": data}), vec![]),
                    AnthropicBlock::Server { deltas } => (
                        json!({"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {}}),
                        deltas.into_iter().map(|d| delta("input_json_delta", "partial_json", d)).collect(),
                    ),
                };
                events.push(json!({"type": "content_block_start", "index": index, "content_block": start}));
                for delta in deltas {
                    events.push(json!({"type": "content_block_delta", "index": index, "delta": delta}));
                }
                events.push(json!({"type": "content_block_stop", "index": index}));
            }
            let delta = json!({"stop_reason": stop_reason, "stop_sequence": stop_sequence});
            events.push(json!({"type": "message_delta", "delta": delta, "usage": usage}));
            events.push(json!({"type": "message_stop"}));
            events.into_iter().map(named).collect()
        })
}

#[derive(Debug, Clone)]
enum OpenaiPiece {
    Content(String),
    Reasoning(String),
    Refusal(String),
    Tool { id: Option<String>, name: String, arguments: Vec<String> },
}

fn openai_piece() -> impl Strategy<Value = OpenaiPiece> {
    prop_oneof![
        3 => piece().prop_map(OpenaiPiece::Content),
        1 => piece().prop_map(OpenaiPiece::Reasoning),
        1 => piece().prop_map(OpenaiPiece::Refusal),
        2 => (
            prop::option::weighted(0.8, prop_oneof![3 => Just("call_1".to_owned()), 1 => text()]),
            prop_oneof![3 => Just("get_weather".to_owned()), 1 => text()],
            texts(),
        )
            .prop_map(|(id, name, arguments)| OpenaiPiece::Tool { id, name, arguments }),
    ]
}

fn openai_usage() -> BoxedStrategy<Value> {
    mostly((0u64..5000, 0u64..5000, prop::option::of(0u64..100), prop::option::of(0u64..100)).prop_map(
        |(prompt, completion, cached, reasoning)| {
            let mut usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
                    "total_tokens": prompt + completion});
            if let Some(cached) = cached {
                usage["prompt_tokens_details"] = json!({"cached_tokens": cached});
            }
            if let Some(reasoning) = reasoning {
                usage["completion_tokens_details"] = json!({"reasoning_tokens": reasoning});
            }
            usage
        },
    ))
}

/// An OpenAI-format stream of `n` choices, their pieces interleaved, as OpenAI sends it.
fn openai_stream() -> impl Strategy<Value = Vec<Frame>> {
    (
        prop_oneof![3 => Just("chatcmpl-1".to_owned()), 1 => text()],
        prop_oneof![3 => Just("gpt-4o".to_owned()), 1 => text()],
        prop_oneof![3 => Just(1u32), 1 => 2u32..4],
        prop::collection::vec((0u32..3, openai_piece()), 0..8),
        prop::collection::vec(mostly_one_of(&["stop", "length", "tool_calls", "content_filter", "function_call"]), 3),
        prop::option::weighted(0.7, openai_usage()),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(id, model, n, pieces, reasons, usage, done)| {
            let chunk = |choices: Value| {
                json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": model, "choices": choices})
            };
            let choice = |c: u32, delta: Value| json!([{"index": c, "delta": delta, "finish_reason": null}]);
            let mut frames = vec![Frame::Data(chunk(choice(0, json!({"role": "assistant", "content": ""}))))];
            let mut tools = [0u32; 3];
            for (c, piece) in pieces {
                let c = c % n;
                match piece {
                    OpenaiPiece::Content(text) => frames.push(Frame::Data(chunk(choice(c, json!({"content": text}))))),
                    OpenaiPiece::Reasoning(text) => {
                        frames.push(Frame::Data(chunk(choice(c, json!({"reasoning_content": text})))))
                    }
                    OpenaiPiece::Refusal(text) => frames.push(Frame::Data(chunk(choice(c, json!({"refusal": text}))))),
                    OpenaiPiece::Tool { id, name, arguments } => {
                        let index = tools[c as usize];
                        tools[c as usize] += 1;
                        let mut call = json!({"index": index, "type": "function",
                            "function": {"name": name, "arguments": ""}});
                        if let Some(id) = id {
                            call["id"] = json!(id);
                        }
                        frames.push(Frame::Data(chunk(choice(c, json!({"tool_calls": [call]})))));
                        for piece in arguments {
                            let call = json!({"index": index, "function": {"arguments": piece}});
                            frames.push(Frame::Data(chunk(choice(c, json!({"tool_calls": [call]})))));
                        }
                    }
                }
            }
            for c in 0..n {
                let finish = json!([{"index": c, "delta": {}, "finish_reason": reasons[c as usize]}]);
                frames.push(Frame::Data(chunk(finish)));
            }
            if let Some(usage) = usage {
                let mut last = chunk(json!([]));
                last["usage"] = usage;
                frames.push(Frame::Data(last));
            }
            if done {
                frames.push(Frame::Done);
            }
            frames
        })
}

fn gemini_part() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => piece().prop_map(|text| json!({"text": text})),
        2 => piece().prop_map(|text| json!({"text": text, "thought": true})),
        1 => (
            prop_oneof![3 => Just("get_weather".to_owned()), 1 => text()],
            prop_oneof![2 => Just(json!({"city": "Paris"})), 1 => Just(json!({})), 1 => any_json()],
            prop::option::of(text()),
        )
            .prop_map(|(name, args, id)| {
                let mut call = json!({"name": name, "args": args});
                if let Some(id) = id {
                    call["id"] = json!(id);
                }
                json!({"functionCall": call})
            }),
    ]
}

/// Gemini's stream of `n` candidates, their parts interleaved, each finishing in the last event.
fn gemini_stream() -> impl Strategy<Value = Vec<Frame>> {
    (
        prop_oneof![3 => Just("resp-1".to_owned()), 1 => text()],
        prop_oneof![3 => Just("gemini-2.5-flash".to_owned()), 1 => text()],
        prop_oneof![3 => Just(1u32), 1 => 2u32..4],
        prop::collection::vec((0u32..3, prop::collection::vec(gemini_part(), 0..3)), 0..6),
        prop::collection::vec(
            mostly_one_of(&["STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "MALFORMED_FUNCTION_CALL"]),
            3,
        ),
        mostly(
            (0u64..5000, 0u64..5000, prop::option::of(0u64..100))
                .prop_map(|(prompt, candidates, thoughts)| {
                    let mut usage = json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                        "totalTokenCount": prompt + candidates});
                    if let Some(thoughts) = thoughts {
                        usage["thoughtsTokenCount"] = json!(thoughts);
                    }
                    usage
                }),
        ),
    )
        .prop_map(|(response_id, model, n, events, reasons, usage)| {
            let event = |candidates: Value| json!({"candidates": candidates, "modelVersion": model, "responseId": response_id});
            let mut frames: Vec<Frame> = events
                .into_iter()
                .map(|(c, parts)| {
                    Frame::Data(event(json!([{"index": c % n, "content": {"role": "model", "parts": parts}}])))
                })
                .collect();
            let last: Vec<Value> = (0..n)
                .map(|c| json!({"index": c, "content": {"role": "model", "parts": []}, "finishReason": reasons[c as usize]}))
                .collect();
            let mut last = event(Value::Array(last));
            last["usageMetadata"] = usage;
            frames.push(Frame::Data(last));
            frames
        })
}

/// The events with the key only where the vendor reports an error (and in no event's name):
/// then the key must reach the client nowhere.
fn key_only_in_errors(frames: Vec<Frame>, is_error: fn(&Value) -> bool) -> Vec<Frame> {
    fn scrub_text(text: &str) -> String {
        text.replace(KEY, "sk-other").replace(KEY_ENCODED, "sk-other")
    }
    fn scrub(value: &mut Value) {
        match value {
            Value::String(s) => *s = scrub_text(s),
            Value::Array(values) => values.iter_mut().for_each(scrub),
            Value::Object(members) => members.values_mut().for_each(scrub),
            _ => {}
        }
    }
    let scrubbed = |mut value: Value| {
        if !is_error(&value) {
            scrub(&mut value);
        }
        value
    };
    frames
        .into_iter()
        .map(|frame| match frame {
            Frame::Data(v) => Frame::Data(scrubbed(v)),
            Frame::Named(name, v) => Frame::Named(scrub_text(&name), scrubbed(v)),
            Frame::CrLf(v) => Frame::CrLf(scrubbed(v)),
            Frame::Cr(v) => Frame::Cr(scrubbed(v)),
            other => other,
        })
        .collect()
}

/// An OpenAI-format or Gemini event that reports an error: one with an `error` member.
fn has_error_member(event: &Value) -> bool {
    event.get("error").is_some_and(|e| !e.is_null())
}

/// An Anthropic event that reports an error: one of type `error`.
fn is_anthropic_error(event: &Value) -> bool {
    event["type"] == "error"
}

/// Bytes with SSE's syntax in them often enough to reach past the parser.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        4 => any::<u8>().prop_map(|b| vec![b]),
        1 => prop::sample::select(vec![
            &b"data: "[..], b"data:", b"event: ", b"\n", b"\r", b"\r\n", b"\n\n", b":", b"{", b"}", b"\"", b"[DONE]",
            b"{\"error\":", b"{\"type\":\"message_start\",\"message\":{\"id\":\"a\",\"model\":\"m\"}}",
            b"{\"candidates\":[{\"index\":", b"\xf0\x9f", b"\xff",
        ])
        .prop_map(<[u8]>::to_vec),
    ];
    prop::collection::vec(token, 0..256).prop_map(|tokens| tokens.concat())
}

fn plan() -> impl Strategy<Value = ChatPlan> {
    (any::<bool>(), any::<bool>()).prop_map(|(include_usage, json)| ChatPlan {
        stream: true,
        include_usage,
        json_tool: json.then(|| "json_response".to_owned()),
        dialect: Dialect::OpenaiChat,
    })
}

/// Cut points: the bytes are fed in the pieces between them, as the network hands them over.
fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..24)
}

fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.windows(2).filter_map(|w| bytes.get(w[0]..w[1])).collect()
}

/// A vendor's recorded stream (a golden test's fixture), as events.
struct Recorded {
    /// The kinds whose translators read it.
    kinds: &'static [ProviderKind],
    case: String,
    /// The plan of the fixture's request.
    plan: ChatPlan,
    frames: Vec<Frame>,
}

/// Every recorded stream of `tests/fixtures/<vendor>/<case>/vendor-stream.sse`.
fn recorded() -> &'static [Recorded] {
    static RECORDED: OnceLock<Vec<Recorded>> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let vendors: [(&str, &'static [ProviderKind], &str); 3] = [
            ("anthropic", &[ProviderKind::Anthropic], "claude-sonnet-4-5"),
            ("gemini", &[ProviderKind::Gemini], "gemini-2.5-flash"),
            ("openai", &OPENAI_FORMAT, "gpt-4o-mini"),
        ];
        let mut all = Vec::new();
        for (vendor, kinds, model) in vendors {
            let mut cases: Vec<_> = std::fs::read_dir(root.join(vendor))
                .expect("the fixtures")
                .map(|entry| entry.expect("a fixture").path())
                .filter(|case| case.join("vendor-stream.sse").exists())
                .collect();
            cases.sort();
            for case in cases {
                let request = std::fs::read(case.join("openai-request.json")).expect("the fixture's request");
                let request = openai_chat::decode(request).expect("the fixture's request decodes");
                let plan = providers::prepare_chat(&provider(kinds[0]), model, &request, Some(KEY), false)
                    .expect("the fixture's request is the vendor's")
                    .plan;
                let bytes = std::fs::read(case.join("vendor-stream.sse")).expect("the fixture's stream");
                let mut frames = Vec::new();
                SseParser::new()
                    .push(&bytes, &mut |name, data| {
                        frames.push(match serde_json::from_slice::<Value>(data) {
                            _ if data == b"[DONE]" => Frame::Done,
                            Ok(value) if name.is_empty() => Frame::Data(value),
                            Ok(value) => Frame::Named(name.to_owned(), value),
                            Err(_) => Frame::Raw([b"data: ", data, b"\n\n"].concat()),
                        })
                    })
                    .expect("the fixture's events are small");
                let case = format!("{vendor}/{}", case.file_name().unwrap_or_default().to_string_lossy());
                all.push(Recorded { kinds, case, plan, frames });
            }
        }
        assert!(all.len() >= 10, "the recorded streams: {}", all.len());
        all
    })
}

/// Any vendor's event, where a recorded stream gets one that does not belong.
fn any_vendor_event() -> BoxedStrategy<Value> {
    prop_oneof![anthropic_event(), openai_event(), gemini_event()].boxed()
}

// ---- What the answer said ----

/// What choice 0 of an answer said, as a client of any dialect reads it: its text (a forced
/// JSON tool's input included), its thinking, its tool calls (name, arguments).
#[derive(Debug, Clone, Default, PartialEq)]
struct Said {
    text: String,
    thinking: String,
    calls: Vec<(String, String)>,
}

/// The data of SSE events that are JSON (`[DONE]` and the rest left out).
fn json_events(bytes: &[u8]) -> Vec<Value> {
    let mut events = Vec::new();
    let _ = SseParser::new().push(bytes, &mut |_, data| {
        if let Ok(event) = serde_json::from_slice(data) {
            events.push(event);
        }
    });
    events
}

/// What OpenAI chunks say (a vendor's, or the gateway's to its client).
fn said_openai(events: &[Value]) -> Said {
    let mut said = Said::default();
    let mut calls: Vec<(u64, String, String)> = Vec::new();
    for event in events {
        let choices = event["choices"].as_array().map(Vec::as_slice).unwrap_or_default();
        for choice in choices.iter().filter(|c| c["index"].as_u64().unwrap_or(0) == 0) {
            let delta = &choice["delta"];
            for field in ["content", "refusal"] {
                said.text.push_str(delta[field].as_str().unwrap_or_default());
            }
            said.thinking.push_str(delta["reasoning_content"].as_str().unwrap_or_default());
            for call in delta["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let index = call["index"].as_u64().unwrap_or(0);
                let arguments = call["function"]["arguments"].as_str().unwrap_or_default();
                match calls.iter_mut().find(|(i, ..)| *i == index) {
                    Some((_, _, joined)) => joined.push_str(arguments),
                    None => {
                        let name = call["function"]["name"].as_str().unwrap_or_default().to_owned();
                        calls.push((index, name, arguments.to_owned()));
                    }
                }
            }
        }
    }
    said.calls = calls.into_iter().map(|(_, name, arguments)| (name, arguments)).collect();
    said
}

/// What Anthropic's events say (a vendor's, or the gateway's to its client): the blocks of
/// `json_tool` are text, server tools' blocks nothing.
fn said_anthropic(events: &[Value], json_tool: Option<&str>) -> Said {
    #[derive(PartialEq)]
    enum Block {
        Text,
        Thinking,
        Tool,
        Other,
    }
    let mut said = Said::default();
    let mut block = Block::Other;
    for event in events {
        match event["type"].as_str().unwrap_or_default() {
            "content_block_start" => {
                let start = &event["content_block"];
                block = match start["type"].as_str().unwrap_or_default() {
                    "text" => {
                        said.text.push_str(start["text"].as_str().unwrap_or_default());
                        Block::Text
                    }
                    "thinking" => {
                        said.thinking.push_str(start["thinking"].as_str().unwrap_or_default());
                        Block::Thinking
                    }
                    "tool_use" if start["name"].as_str() == json_tool => Block::Text,
                    "tool_use" => {
                        said.calls.push((start["name"].as_str().unwrap_or_default().to_owned(), String::new()));
                        Block::Tool
                    }
                    _ => Block::Other,
                };
            }
            "content_block_delta" => {
                let delta = &event["delta"];
                let piece = |field: &str| delta[field].as_str().unwrap_or_default();
                match (&block, delta["type"].as_str().unwrap_or_default()) {
                    (Block::Text, "text_delta") => said.text.push_str(piece("text")),
                    (Block::Text, "input_json_delta") => said.text.push_str(piece("partial_json")),
                    (Block::Thinking, "thinking_delta") => said.thinking.push_str(piece("thinking")),
                    (Block::Tool, "input_json_delta") => {
                        if let Some((_, arguments)) = said.calls.last_mut() {
                            arguments.push_str(piece("partial_json"));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    said
}

/// What Gemini's events say: candidate 0's parts.
fn said_gemini(events: &[Value]) -> Said {
    let mut said = Said::default();
    for event in events {
        let candidates = event["candidates"].as_array().map(Vec::as_slice).unwrap_or_default();
        for candidate in candidates.iter().filter(|c| c["index"].as_u64().unwrap_or(0) == 0) {
            for part in candidate["content"]["parts"].as_array().map(Vec::as_slice).unwrap_or_default() {
                if let Some(text) = part["text"].as_str() {
                    let thought = part["thought"].as_bool().unwrap_or(false);
                    (if thought { &mut said.thinking } else { &mut said.text }).push_str(text);
                } else if let Some(call) = part.get("functionCall") {
                    let args = if call["args"].is_null() { "{}".to_owned() } else { call["args"].to_string() };
                    said.calls.push((call["name"].as_str().unwrap_or_default().to_owned(), args));
                }
            }
        }
    }
    said
}

/// What a Responses stream's terminal response says.
fn said_responses(out: &[u8]) -> Said {
    let mut said = Said::default();
    let events = json_events(out);
    let Some(terminal) = events.iter().rev().find(|e| e["response"]["status"] != "in_progress") else { return said };
    for item in terminal["response"]["output"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let texts = |member: &str| -> String {
            let parts = item[member].as_array().map(Vec::as_slice).unwrap_or_default();
            parts.iter().filter_map(|p| p["text"].as_str()).collect()
        };
        match item["type"].as_str().unwrap_or_default() {
            "message" => said.text.push_str(&texts("content")),
            "reasoning" => said.thinking.push_str(&texts("summary")),
            "function_call" => said.calls.push((
                item["name"].as_str().unwrap_or_default().to_owned(),
                item["arguments"].as_str().unwrap_or_default().to_owned(),
            )),
            _ => {}
        }
    }
    said
}

/// For a vendor's stream that ends well: every client of every dialect is told what the vendor
/// said (the pass-through of Anthropic's stream aside, which shows its server tools' blocks).
fn check_said(kinds: &[ProviderKind], plan: &ChatPlan, frames: &[Frame]) {
    let bytes = wire(frames);
    let events = json_events(&bytes);
    for &kind in kinds {
        let vendor = match kind {
            ProviderKind::Anthropic => said_anthropic(&events, plan.json_tool.as_deref()),
            ProviderKind::Gemini => said_gemini(&events),
            _ => said_openai(&events),
        };
        for dialect in DIALECTS {
            let plan = ChatPlan { dialect, ..plan.clone() };
            if kind == ProviderKind::Anthropic && dialect == Dialect::AnthropicMessages {
                continue;
            }
            let outcome = run(kind, &plan, &[&bytes], false);
            if outcome.error.is_some() {
                continue; // a member of the wrong type, which the grammar checks cover
            }
            let client = match dialect {
                Dialect::OpenaiChat => said_openai(&json_events(&outcome.out)),
                Dialect::AnthropicMessages => said_anthropic(&json_events(&outcome.out), None),
                Dialect::OpenaiResponses => said_responses(&outcome.out),
            };
            assert_eq!(client, vendor, "{kind:?} → {dialect:?}: what the vendor said: {}", lossy(&outcome.out));
        }
    }
}

// ---- Running a translator ----

/// The request a Responses client's stream answers, decoded once.
fn responses_request() -> &'static (Request, openai_responses::Params) {
    static REQUEST: OnceLock<(Request, openai_responses::Params)> = OnceLock::new();
    REQUEST.get_or_init(|| {
        let body = br#"{"model":"public-model","input":"What is the weather in Paris?","stream":true}"#;
        openai_responses::decode(body.to_vec(), &[]).expect("a Responses request")
    })
}

/// The encoder of the plan's client dialect, as the worker makes it.
fn egress(plan: &ChatPlan) -> Box<dyn Egress> {
    match plan.dialect {
        Dialect::OpenaiChat => Box::new(openai_chat::Stream::new(CREATED, plan.include_usage)),
        Dialect::AnthropicMessages => Box::new(anthropic_messages::Stream::with_seed("req-fuzz")),
        Dialect::OpenaiResponses => {
            let (request, params) = responses_request();
            Box::new(openai_responses::Stream::new(request, params, RESPONSE_ID.to_owned(), CREATED))
        }
    }
}

/// What a translator gave the client, and what it said of the stream once finished.
struct Outcome {
    out: Vec<u8>,
    error: Option<GatewayError>,
    usage: Option<Usage>,
}

/// Runs a translator as the worker does: pieces fed until it says the vendor's stream is done
/// (the rest fed all the same, which must write nothing), then `finish`, with the connection's
/// error if it `broke`.
fn run(kind: ProviderKind, plan: &ChatPlan, pieces: &[&[u8]], broke: bool) -> Outcome {
    let mut translator = providers::chat_stream(&provider(kind), plan.clone(), Some(KEY), egress(plan));
    let mut out = Vec::new();
    for piece in pieces {
        if translator.done() {
            let mut late = Vec::new();
            translator.push(piece, &mut late);
            assert!(late.is_empty(), "{kind:?} → {:?}: written after done(): {}", plan.dialect, lossy(&late));
        } else {
            translator.push(piece, &mut out);
        }
    }
    translator.finish(broke.then_some("the connection was reset"), &mut out);
    assert!(translator.done(), "{kind:?} → {:?}: done() once finished", plan.dialect);
    if let Some(e) = translator.error() {
        check_error(e);
    }
    Outcome { out, error: translator.error().cloned(), usage: translator.usage() }
}

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Runs the translator of `kind` for a client of the plan's dialect, on the bytes whole and
/// split, and checks what the client got each time; the client's bytes.
fn translate(kind: ProviderKind, plan: &ChatPlan, bytes: &[u8], cuts: &[usize], broke: bool, clean: bool) -> Outcome {
    let whole = run_and_check(kind, plan, &[bytes], broke, clean);
    let split = run_and_check(kind, plan, &pieces(bytes, cuts), broke, clean).out;
    assert!(
        whole.out == split,
        "{kind:?} → {:?}: the same bytes however split:\n{}\n----\n{}",
        plan.dialect,
        lossy(&whole.out),
        lossy(&split)
    );
    whole
}

/// Every kind of `kinds` for a client of every dialect.
fn translate_all(kinds: &[ProviderKind], plan: &ChatPlan, bytes: &[u8], cuts: &[usize], broke: bool, clean: bool) {
    for &kind in kinds {
        for dialect in DIALECTS {
            translate(kind, &ChatPlan { dialect, ..plan.clone() }, bytes, cuts, broke, clean);
        }
    }
}

/// `clean`: the vendor put the key only in its error events, so it must be nowhere in the
/// client's stream (else only in none of its error events).
fn run_and_check(kind: ProviderKind, plan: &ChatPlan, pieces: &[&[u8]], broke: bool, clean: bool) -> Outcome {
    let outcome = run(kind, plan, pieces, broke);
    let passes = providers::passes_through(&provider(kind), plan.dialect);
    let context = format!("{kind:?} → {:?}{}", plan.dialect, if passes { " (pass-through)" } else { "" });
    let checked = match (plan.dialect, passes) {
        (Dialect::OpenaiChat, passes) => check_openai(&outcome.out, !passes),
        (Dialect::AnthropicMessages, true) => check_anthropic_passthrough(&outcome.out),
        (Dialect::AnthropicMessages, false) => check_anthropic(&outcome.out),
        (Dialect::OpenaiResponses, _) => check_responses(&outcome.out),
    };
    let client = checked.unwrap_or_else(|why| panic!("{context}: {why}\n{}", lossy(&outcome.out)));
    if clean {
        // What an SSE client reads: the events' names and data. (A pass-through forwards the
        // vendor's lines that are no field, comments and the like, as they are: no client reads
        // them.)
        let mut read = Vec::new();
        SseParser::new()
            .push(&outcome.out, &mut |name, data| read.push(format!("{name}: {}", lossy(data))))
            .expect("the client's events are small");
        let leak = read.iter().find(|event| has_key(event));
        assert!(leak.is_none(), "{context}: the vendor key reached the client in {leak:?}: {}", lossy(&outcome.out));
    }
    assert_eq!(
        client.error.is_some(),
        outcome.error.is_some(),
        "{context}: an error event iff error() once finished ({:?}): {}",
        outcome.error,
        lossy(&outcome.out)
    );
    if !passes && outcome.error.is_none() {
        check_usage(&context, plan, &outcome, &client);
    }
    if passes && plan.dialect == Dialect::AnthropicMessages && outcome.error.is_none() {
        // What the client is told it used is what the gateway counts.
        let told = client.usage.as_ref().and_then(|u| u["output_tokens"].as_u64()).unwrap_or(0);
        let counted = outcome.usage.map(|u| u.completion_tokens);
        assert_eq!(Some(told), counted, "{context}: the output tokens: {}", lossy(&outcome.out));
    }
    outcome
}

/// On a clean end, the usage the client is told is the translator's.
fn check_usage(context: &str, plan: &ChatPlan, outcome: &Outcome, client: &Client) {
    let out = lossy(&outcome.out);
    match plan.dialect {
        Dialect::OpenaiChat => {
            // Nothing but [DONE] when the stream never began (no chunk to hang the usage on).
            let began = outcome.out.len() > DONE.len();
            let expected = (plan.include_usage && began)
                .then(|| serde_json::to_value(outcome.usage.unwrap_or_default()).expect("usage is JSON"));
            assert_eq!(client.usage, expected, "{context}: the usage chunk: {out}");
        }
        Dialect::AnthropicMessages => {
            let expected = anthropic_messages::usage_json(outcome.usage.as_ref());
            assert_eq!(client.usage.as_ref(), Some(&expected), "{context}: message_delta's usage: {out}");
        }
        Dialect::OpenaiResponses => {
            let got = client.usage.as_ref().map(|u| (u["input_tokens"].as_u64(), u["output_tokens"].as_u64()));
            let expected = outcome.usage.map(|u| (Some(u.prompt_tokens), Some(u.completion_tokens)));
            assert_eq!(got, expected, "{context}: the response's usage: {out}");
        }
    }
}

// ---- The client dialects' grammars ----

/// What a client's stream said, once checked.
#[derive(Debug, Default)]
struct Client {
    /// The error event the stream ended with.
    error: Option<Value>,
    /// The usage the stream ended with (OpenAI's usage chunk, Anthropic's `message_delta`, the
    /// terminal response's; of a pass-through of Anthropic's stream, the last output tokens).
    usage: Option<Value>,
}

fn has_key(text: &str) -> bool {
    text.contains(KEY) || text.to_ascii_lowercase().contains(&KEY_ENCODED.to_ascii_lowercase())
}

/// Events as the gateway's own encoders write them: `event: <type>\ndata: <json>\n\n`, nothing
/// else, the name the data's `type`.
fn named_events(out: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let text = std::str::from_utf8(out).map_err(|e| format!("not UTF-8: {e}"))?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let body = text.strip_suffix("\n\n").ok_or("the stream does not end with a blank line")?;
    body.split("\n\n")
        .enumerate()
        .map(|(n, event)| {
            let (name, data) = event.split_once('\n').ok_or(format!("event {n}: not two lines"))?;
            let name = name.strip_prefix("event: ").ok_or(format!("event {n}: no event line"))?;
            let data = data.strip_prefix("data: ").ok_or(format!("event {n}: no data line"))?;
            if data.contains('\n') {
                return Err(format!("event {n}: more than two lines"));
            }
            let value: Value = serde_json::from_str(data).map_err(|e| format!("event {n}: not JSON ({e})"))?;
            if value["type"] != name {
                return Err(format!("event {n}: named {name}, typed {}", value["type"]));
            }
            Ok((name.to_owned(), value))
        })
        .collect()
}

/// OpenAI's chunks: all JSON, at most one error event (without the key), just before the one
/// `[DONE]` that ends the stream. The gateway's own (`encoded`, not a vendor's passed through)
/// are also chunks as its types define them, of one id, `created` and model, each choice
/// beginning with its role chunk, each tool call with its id, type and name, its index the
/// choice's next, the usage chunk (no choices) last.
fn check_openai(out: &[u8], encoded: bool) -> Result<Client, String> {
    if !out.ends_with(DONE) {
        return Err("the client's stream does not end with [DONE]".into());
    }
    let mut events = Vec::new();
    let mut parser = SseParser::new();
    parser.push(out, &mut |_, data| events.push(data.to_vec())).map_err(|e| format!("the client's events: {e}"))?;
    if events.last().map(Vec::as_slice) != Some(&b"[DONE]"[..]) {
        return Err("[DONE] is not the last event".into());
    }
    if events.iter().filter(|e| e.as_slice() == b"[DONE]").count() != 1 {
        return Err("more than one [DONE]".into());
    }
    let mut client = Client::default();
    let last = events.len() - 1;
    for (i, data) in events[..last].iter().enumerate() {
        let text = std::str::from_utf8(data).map_err(|e| format!("an event is not UTF-8: {e}"))?;
        // JSON's grammar (serde_json's `Value` also refuses numbers past f64, which JSON allows).
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return Err(format!("an event is not JSON ({e}): {text}"));
        }
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(text) else { continue };
        if event.get("error").is_some_and(|e| !e.is_null()) {
            if has_key(text) {
                return Err(format!("the vendor key in an error event: {text}"));
            }
            if client.error.is_some() || i + 1 != last {
                return Err(format!("an error event that is not the last before [DONE]: {text}"));
            }
            client.error = Some(Value::Object(event));
        } else if event.get("choices") == Some(&json!([])) && event.get("usage").is_some_and(|u| !u.is_null()) {
            client.usage = event.get("usage").cloned();
        }
    }
    if encoded {
        let chunks: Vec<Value> = events[..last]
            .iter()
            .filter_map(|data| serde_json::from_slice::<Value>(data).ok())
            .filter(|event| event.get("error").is_none())
            .collect();
        check_chunks(&chunks)?;
    }
    Ok(client)
}

fn check_chunks(chunks: &[Value]) -> Result<(), String> {
    let Some(first) = chunks.first() else { return Ok(()) };
    // Per choice: its tool calls so far.
    let mut choices: Vec<Option<u64>> = Vec::new();
    for (n, chunk) in chunks.iter().enumerate() {
        let fail = |why: &str| Err(format!("chunk {n}: {why}: {chunk}"));
        if let Err(e) = serde_json::from_value::<switchyard_core::chat::ChatChunk>(chunk.clone()) {
            return fail(&format!("not a chat.completion.chunk ({e})"));
        }
        if chunk["object"] != "chat.completion.chunk"
            || chunk["id"] != first["id"]
            || chunk["created"] != first["created"]
            || chunk["model"] != first["model"]
        {
            return fail("not the stream's id, created and model");
        }
        let list = chunk["choices"].as_array().map(Vec::as_slice).unwrap_or_default();
        if list.is_empty() && (n + 1 != chunks.len() || chunk["usage"].is_null()) {
            return fail("a chunk without choices that is not the usage chunk, last");
        }
        for choice in list {
            let index = choice["index"].as_u64().unwrap_or(u64::MAX) as usize;
            if choices.len() <= index {
                choices.resize(index + 1, None);
            }
            let delta = &choice["delta"];
            let Some(calls) = &mut choices[index] else {
                if delta != &json!({"role": "assistant", "content": ""}) || !choice["finish_reason"].is_null() {
                    return fail("a choice that does not begin with its role chunk");
                }
                choices[index] = Some(0);
                continue;
            };
            for call in delta["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let Some(i) = call["index"].as_u64() else { return fail("a tool call without its index") };
                if i == *calls {
                    let starts = call["id"].as_str().is_some_and(|id| !id.is_empty())
                        && call["type"] == "function"
                        && call["function"]["name"].is_string();
                    if !starts {
                        return fail("a tool call's first chunk without its id, type and name");
                    }
                    *calls += 1;
                } else if i > *calls {
                    return fail("a tool call's index is not the next");
                } else if call.get("id").is_some() || call["function"].get("name").is_some() {
                    return fail("a tool call started again");
                }
            }
        }
    }
    Ok(())
}

/// Anthropic's grammar, as the gateway's encoder writes it: pings anywhere before the end, one
/// `message_start` first, then blocks one at a time numbered from 0 (each started and stopped
/// once, its deltas of its kind, never empty, a thinking block's signature last), then
/// `message_delta` and `message_stop`; or an `error` event (without the key), last.
fn check_anthropic(out: &[u8]) -> Result<Client, String> {
    let events = named_events(out)?;
    let mut client = Client::default();
    let mut started = false;
    let mut next = 0u64;
    // (index, type, signed)
    let mut open: Option<(u64, String, bool)> = None;
    let mut message_delta = false;
    let mut ended = false;
    for (i, (name, data)) in events.iter().enumerate() {
        let fail = |why: &str| Err(format!("event {i} ({name}): {why}"));
        if ended {
            return fail("after the end");
        }
        if !started && !matches!(name.as_str(), "ping" | "message_start") {
            return fail("before message_start");
        }
        match name.as_str() {
            "ping" => {}
            "message_start" => {
                if started {
                    return fail("a second message_start");
                }
                started = true;
                let m = &data["message"];
                let shaped = m["type"] == "message"
                    && m["role"] == "assistant"
                    && m["id"].as_str().is_some_and(|id| !id.is_empty())
                    && m["model"].is_string()
                    && m["content"] == json!([])
                    && m["stop_reason"].is_null()
                    && m["stop_sequence"].is_null()
                    && ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]
                        .iter()
                        .all(|field| m["usage"][field].is_u64());
                if !shaped {
                    return fail("not an empty message with an id, a model and a usage");
                }
            }
            "content_block_start" => {
                if open.is_some() || message_delta {
                    return fail("a block starts while another is open, or after message_delta");
                }
                if data["index"] != next {
                    return fail(&format!("not the next index, {next}"));
                }
                let block = &data["content_block"];
                let kind = block["type"].as_str().unwrap_or_default().to_owned();
                let shaped = match kind.as_str() {
                    "text" => block == &json!({"type": "text", "text": ""}),
                    "thinking" => block == &json!({"type": "thinking", "thinking": "", "signature": ""}),
                    "redacted_thinking" => block["data"].is_string(),
                    "tool_use" => {
                        block["id"].as_str().is_some_and(|id| !id.is_empty())
                            && block["name"].is_string()
                            && block["input"] == json!({})
                    }
                    _ => false,
                };
                if !shaped {
                    return fail("not an empty text, thinking, redacted_thinking or tool_use block");
                }
                open = Some((next, kind, false));
                next += 1;
            }
            "content_block_delta" => {
                let Some((index, kind, signed)) = open.as_mut() else { return fail("no block is open") };
                if data["index"] != *index {
                    return fail("not the open block's index");
                }
                if *signed {
                    return fail("after the block's signature");
                }
                let delta = &data["delta"];
                let field = match (kind.as_str(), delta["type"].as_str().unwrap_or_default()) {
                    ("text", "text_delta") => "text",
                    ("thinking", "thinking_delta") => "thinking",
                    ("thinking", "signature_delta") => {
                        *signed = true;
                        "signature"
                    }
                    ("tool_use", "input_json_delta") => "partial_json",
                    (kind, delta) => return fail(&format!("a {delta} in a {kind} block")),
                };
                if delta[field].as_str().is_none_or(str::is_empty) {
                    return fail(&format!("no {field}, or an empty one"));
                }
            }
            "content_block_stop" => {
                let Some((index, ..)) = open.take() else { return fail("no block is open") };
                if data["index"] != index {
                    return fail("not the open block's index");
                }
            }
            "message_delta" => {
                if open.is_some() || message_delta {
                    return fail("with a block open, or a second one");
                }
                message_delta = true;
                let reasons = ["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"];
                if !data["delta"]["stop_reason"].as_str().is_some_and(|r| reasons.contains(&r))
                    || !data["usage"]["output_tokens"].is_u64()
                {
                    return fail("no stop reason of Anthropic's, or no output_tokens");
                }
                client.usage = Some(data["usage"].clone());
            }
            "message_stop" => {
                if !message_delta {
                    return fail("without message_delta");
                }
                ended = true;
            }
            "error" => {
                if let Err(why) = check_anthropic_error(data) {
                    return fail(&why);
                }
                client.error = Some(data.clone());
                ended = true;
            }
            _ => return fail("an event Anthropic's grammar does not have"),
        }
    }
    if !ended {
        return Err("the stream ends with neither message_stop nor an error event".into());
    }
    Ok(client)
}

fn check_anthropic_error(event: &Value) -> Result<(), String> {
    if !event["error"]["type"].is_string() || !event["error"]["message"].is_string() {
        return Err("an error event without its type and message".into());
    }
    if has_key(&event.to_string()) {
        return Err("the vendor key in an error event".into());
    }
    Ok(())
}

/// Anthropic's own stream passed through, checked loosely (Anthropic may send what the
/// gateway's encoder never writes: an empty `partial_json`, event names of its own): whole
/// events, all data JSON with a `type`, pings and then one `message_start` before anything
/// else, ending with `message_stop` or an `error` event (without the key).
fn check_anthropic_passthrough(out: &[u8]) -> Result<Client, String> {
    let mut splitter = EventSplitter::default();
    splitter.push(out, |_| true).map_err(|e| format!("the client's events: {e}"))?;
    // An event that ends at a CR, the last byte, is whole.
    let _ = splitter.take_held();
    if splitter.pending_len() != 0 {
        return Err("the stream ends inside an event".into());
    }
    let mut events = Vec::new();
    let mut parser = SseParser::new();
    parser.push(out, &mut |_, data| events.push(data.to_vec())).map_err(|e| format!("the client's events: {e}"))?;
    let mut client = Client::default();
    let mut started = false;
    let mut ended = false;
    for (i, data) in events.iter().enumerate() {
        let text = std::str::from_utf8(data).map_err(|e| format!("event {i}: not UTF-8 ({e})"))?;
        let fail = |why: &str| Err(format!("event {i}: {why}: {text}"));
        if ended {
            return fail("after the end");
        }
        let Ok(event) = serde_json::from_str::<Value>(text) else { return fail("not JSON") };
        let Some(kind) = event["type"].as_str() else { return fail("no type") };
        // The output tokens Anthropic counted so far (each count replacing the one before).
        let usage = match kind {
            "message_start" => &event["message"]["usage"],
            "message_delta" => &event["usage"],
            _ => &Value::Null,
        };
        if let Some(output_tokens) = usage["output_tokens"].as_u64() {
            client.usage = Some(json!({"output_tokens": output_tokens}));
        }
        match kind {
            "ping" => {}
            "message_start" if started => return fail("a second message_start"),
            "message_start" => started = true,
            // The vendor's own error, or the gateway's in its place (bare: the vendor's
            // message_start, if any, went out already; before it, the client sees nothing
            // else, and the SDKs raise it).
            "error" => {
                if let Err(why) = check_anthropic_error(&event) {
                    return fail(&why);
                }
                client.error = Some(event);
                ended = true;
            }
            _ if !started => return fail("before message_start"),
            "message_stop" => ended = true,
            _ => {}
        }
    }
    if !ended {
        return Err("the stream ends with neither message_stop nor an error event".into());
    }
    Ok(client)
}

/// An output item open in a Responses stream.
#[derive(Default)]
struct OpenItem {
    index: usize,
    item: Value,
    parts: Vec<Value>,
    /// The open content or summary part's text, and whether its text is done.
    part: Option<(String, bool)>,
    arguments: String,
    arguments_done: bool,
    summary: Vec<Value>,
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// The Responses grammar: every event named by its `type`, sequence numbers 0, 1, 2...;
/// `response.created` and `response.in_progress` (an empty response in progress) first; items
/// one at a time, each added at the next output index and done at the same, their parts and
/// deltas only while they are open and agreeing with the item done; one terminal event
/// (completed, incomplete or failed) whose output is the items done, and after it nothing but
/// the `error` event that must follow `response.failed`. No error says the vendor key.
fn check_responses(out: &[u8]) -> Result<Client, String> {
    let events: Vec<Value> = named_events(out)?.into_iter().map(|(_, e)| e).collect();
    for (n, e) in events.iter().enumerate() {
        if e["sequence_number"] != n {
            return Err(format!("event {n} ({}): sequence_number {}", e["type"], e["sequence_number"]));
        }
    }
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
    if kinds.len() < 3 || kinds[0] != "response.created" || kinds[1] != "response.in_progress" {
        return Err(format!("the stream must start with response.created, response.in_progress: {kinds:?}"));
    }
    let id = events[0]["response"]["id"].clone();
    for e in &events[..2] {
        let r = &e["response"];
        if r["id"] != id || r["status"] != "in_progress" || r["output"] != json!([]) || r["object"] != "response" {
            return Err(format!("{}: not an empty in_progress response {id}", e["type"]));
        }
    }
    let mut items: Vec<Value> = Vec::new();
    let mut open: Option<OpenItem> = None;
    let mut terminal: Option<String> = None;
    let mut client = Client::default();
    for (n, e) in events.iter().enumerate().skip(2) {
        let kind = kinds[n];
        let fail = |why: &str| Err(format!("event {n} ({kind}): {why}"));
        if client.error.is_some() {
            return fail("after the error event");
        }
        if terminal.is_some() && kind != "error" {
            return fail("after the terminal event");
        }
        // Every item event names the open item.
        if kind.starts_with("response.") && e.get("item_id").is_some() {
            let Some(o) = &open else { return fail("no item is open") };
            if e["item_id"] != o.item["id"] || e["output_index"] != o.index {
                return fail("not the open item's id and index");
            }
        }
        let item_type = open.as_ref().map(|o| o.item["type"].as_str().unwrap_or("").to_owned()).unwrap_or_default();
        match kind {
            "response.output_item.added" => {
                if open.is_some() {
                    return fail("an item is already open");
                }
                if e["output_index"] != items.len() {
                    return fail("output_index is not the next index");
                }
                let item = &e["item"];
                if item["status"] != "in_progress" || item["id"].as_str().is_none_or(str::is_empty) {
                    return fail("the item is not in_progress with an id");
                }
                match item["type"].as_str() {
                    Some("message") if item["content"] == json!([]) && item["role"] == "assistant" => {}
                    Some("function_call")
                        if item["arguments"] == "" && item["call_id"].is_string() && item["name"].is_string() => {}
                    Some("reasoning") if item["summary"] == json!([]) => {}
                    _ => return fail("not an empty message, function call or reasoning item"),
                }
                if items.iter().any(|i| i["id"] == item["id"])
                    || (item["type"] == "function_call" && items.iter().any(|i| i["call_id"] == item["call_id"]))
                {
                    return fail("the item's id (or call_id) is an earlier item's");
                }
                open = Some(OpenItem { index: items.len(), item: item.clone(), ..OpenItem::default() });
            }
            "response.content_part.added" | "response.reasoning_summary_part.added" => {
                let Some(o) = open.as_mut() else { return fail("no item is open") };
                let (want, index_key, done) = if kind == "response.content_part.added" {
                    ("message", "content_index", o.parts.len())
                } else {
                    ("reasoning", "summary_index", o.summary.len())
                };
                if item_type != want || o.part.is_some() || e[index_key] != done {
                    return fail("not the next part of the open item");
                }
                let expected =
                    if want == "message" { output_text_part("") } else { json!({"type": "summary_text", "text": ""}) };
                if e["part"] != expected {
                    return fail("the part is not empty");
                }
                o.part = Some((String::new(), false));
            }
            "response.output_text.delta" | "response.reasoning_summary_text.delta" => {
                let Some(o) = open.as_mut() else { return fail("no item is open") };
                let (want, index) = if kind == "response.output_text.delta" {
                    ("message", o.parts.len())
                } else {
                    ("reasoning", o.summary.len())
                };
                if item_type != want {
                    return fail("not a delta of the open item's kind");
                }
                let (Some((text, false)), Some(delta)) = (&mut o.part, e["delta"].as_str()) else {
                    return fail("no open part, or no delta");
                };
                if e.get("content_index").or(e.get("summary_index")) != Some(&json!(index)) {
                    return fail("not the open part's index");
                }
                if kind == "response.output_text.delta" && e["logprobs"] != json!([]) {
                    return fail("no logprobs");
                }
                text.push_str(delta);
            }
            "response.output_text.done" | "response.reasoning_summary_text.done" => {
                let Some(o) = open.as_mut() else { return fail("no item is open") };
                let Some((text, done @ false)) = &mut o.part else { return fail("no open part") };
                if e["text"] != text.as_str() {
                    return fail("the text is not the deltas'");
                }
                *done = true;
            }
            "response.content_part.done" | "response.reasoning_summary_part.done" => {
                let Some(o) = open.as_mut() else { return fail("no item is open") };
                let Some((text, true)) = &o.part else { return fail("the part's text is not done") };
                let part = if kind == "response.content_part.done" {
                    output_text_part(text)
                } else {
                    json!({"type": "summary_text", "text": text})
                };
                if e["part"] != part {
                    return fail("the part is not its text's");
                }
                if kind == "response.content_part.done" {
                    o.parts.push(part)
                } else {
                    o.summary.push(part)
                }
                o.part = None;
            }
            "response.function_call_arguments.delta" => {
                let Some(o) = open.as_mut() else { return fail("no item is open") };
                if item_type != "function_call" || o.arguments_done {
                    return fail("not an open function call");
                }
                let Some(delta) = e["delta"].as_str() else { return fail("no delta") };
                o.arguments.push_str(delta);
            }
            "response.function_call_arguments.done" => {
                let Some(o) = open.as_mut() else { return fail("no item is open") };
                if item_type != "function_call" || e["arguments"] != o.arguments.as_str() || e["name"] != o.item["name"]
                {
                    return fail("not the call's arguments and name");
                }
                o.arguments_done = true;
            }
            "response.output_item.done" => {
                let Some(o) = open.take() else { return fail("no item is open") };
                let item = &e["item"];
                if e["output_index"] != o.index || item["id"] != o.item["id"] || item["type"] != o.item["type"] {
                    return fail("not the open item");
                }
                if !matches!(item["status"].as_str(), Some("completed" | "incomplete")) || o.part.is_some() {
                    return fail("the item or one of its parts is not done");
                }
                let agrees = match item_type.as_str() {
                    "message" => !o.parts.is_empty() && item["content"] == Value::Array(o.parts.clone()),
                    "function_call" => {
                        o.arguments_done
                            && item["arguments"] == o.arguments.as_str()
                            && item["call_id"] == o.item["call_id"]
                            && item["name"] == o.item["name"]
                    }
                    _ => {
                        item["summary"] == Value::Array(o.summary.clone())
                            && (o.item.get("encrypted_content").is_none()
                                || item["encrypted_content"] == o.item["encrypted_content"])
                    }
                };
                if !agrees {
                    return fail("the item is not what its events said");
                }
                items.push(item.clone());
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                if open.is_some() {
                    return fail("an item is still open");
                }
                let r = &e["response"];
                if r["id"] != id || r["output"] != Value::Array(items.clone()) {
                    return fail("not the stream's response, or its output is not the items done");
                }
                let status = &kind["response.".len()..];
                let consistent = r["status"] == status
                    && match status {
                        "completed" => r["error"].is_null() && r["incomplete_details"].is_null(),
                        "incomplete" => r["error"].is_null() && r["incomplete_details"]["reason"].is_string(),
                        _ => r["error"]["code"].is_string() && r["error"]["message"].is_string(),
                    };
                if !consistent {
                    return fail("the status, error and incomplete_details disagree");
                }
                if status == "failed" && has_key(&r["error"].to_string()) {
                    return fail("the vendor key in the response's error");
                }
                client.usage = r.get("usage").cloned();
                terminal = Some(kind.to_owned());
            }
            "error" => {
                if terminal.as_deref() != Some("response.failed") {
                    return fail("an error event that does not follow response.failed");
                }
                if !e["code"].is_string() || !e["message"].is_string() || e["error"]["message"] != e["message"] {
                    return fail("no code and message (at the top and under error)");
                }
                if has_key(&e.to_string()) {
                    return fail("the vendor key in the error event");
                }
                client.error = Some(e.clone());
            }
            _ => return fail("an event the Responses API does not have"),
        }
    }
    match terminal.as_deref() {
        None => Err("no terminal event".into()),
        Some("response.failed") if client.error.is_none() => {
            Err("response.failed is not followed by the error event the SDKs raise".into())
        }
        Some(_) => Ok(client),
    }
}

// ---- The non-streamed decoders ----

fn check_error(e: &GatewayError) {
    assert!((400..=599).contains(&e.status), "an error status: {}", e.status);
    let body = String::from_utf8(e.to_json()).expect("error bodies are UTF-8");
    assert!(!has_key(&body), "the vendor key in {body}");
    assert!(serde_json::from_str::<Value>(&body).is_ok());
}

fn check_decoders(body: &[u8], status: u16, inputs: usize) {
    let plans = [ChatPlan::default(), ChatPlan { json_tool: Some("json_response".into()), ..ChatPlan::default() }];
    let texts: Vec<String> = (0..inputs).map(|i| format!("text {i}")).collect();
    let embedding_request = EmbeddingRequest::parse(json!({"model": "e", "input": texts}).to_string().as_bytes())
        .expect("an embeddings request");
    let (request, params) = responses_request();
    for kind in ALL_KINDS {
        let p = provider(kind);
        for plan in &plans {
            for dialect in DIALECTS {
                let plan = ChatPlan { dialect, ..plan.clone() };
                // The answer in the client's dialect.
                let encoded = match providers::decode_chat(&p, body, &plan) {
                    Ok(Some(answer)) => match dialect {
                        Dialect::OpenaiChat => serde_json::to_vec(&openai_chat::encode_answer(&answer, 1)).ok(),
                        Dialect::AnthropicMessages => Some(anthropic_messages::encode_answer(&answer)),
                        Dialect::OpenaiResponses => {
                            let response = openai_responses::encode_answer(&answer, request, params, RESPONSE_ID, 1);
                            serde_json::to_vec(&response).ok()
                        }
                    },
                    Ok(None) => {
                        assert!(providers::passes_through(&p, dialect), "{kind:?} → {dialect:?}: an answer");
                        continue;
                    }
                    Err(e) => {
                        check_error(&e);
                        continue;
                    }
                };
                let encoded = encoded.unwrap_or_else(|| panic!("{kind:?} → {dialect:?}: the answer is JSON"));
                assert!(
                    serde_json::from_slice::<Value>(&encoded).is_ok(),
                    "{kind:?} → {dialect:?}: the answer is JSON: {}",
                    lossy(&encoded)
                );
            }
        }
        match providers::decode_embeddings(&p, body, &embedding_request, "models/e") {
            Ok(Some(list)) => assert_eq!(list.data.len(), inputs),
            Ok(None) => {}
            Err(e) => check_error(&e),
        }
        let e = providers::vendor_error(&p, status, body, Some(KEY));
        check_error(&e);
        let _ = providers::is_vendor_fault(status, &e);
    }
}

fn statuses() -> impl Strategy<Value = u16> {
    prop_oneof![
        prop::sample::select(vec![200u16, 302, 400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 529]),
        any::<u16>(),
    ]
}

// ---- Properties ----

proptest! {
    #![proptest_config(config())]

    /// (a) Arbitrary bytes, arbitrarily split: the same events however split, and no panic.
    #[test]
    fn the_sse_parser_reads_any_bytes_the_same_however_split(bytes in sse_bytes(), cuts in cuts()) {
        let read = |pieces: &[&[u8]]| {
            let mut events = Vec::new();
            let mut parser = SseParser::new();
            for piece in pieces {
                parser.push(piece, &mut |name, data| events.push((name.to_owned(), data.to_vec()))).unwrap();
            }
            parser.finish();
            events
        };
        prop_assert_eq!(read(&[&bytes]), read(&pieces(&bytes, &cuts)));
    }

    /// (a) Arbitrary bytes, arbitrarily split, into every kind's translator, for every dialect.
    #[test]
    fn every_translator_takes_any_bytes(bytes in sse_bytes(), cuts in cuts(), plan in plan(), broke in any::<bool>()) {
        translate_all(&ALL_KINDS, &plan, &bytes, &cuts, broke, false);
    }

    /// (b) Anthropic's events, with any fields, in any order.
    #[test]
    fn the_anthropic_translator_takes_any_events(
        start in any::<bool>(),
        frames in prop::collection::vec(frame(anthropic_event()), 0..24),
        clean in any::<bool>(),
        cuts in cuts(),
        plan in plan(),
        broke in prop::bool::weighted(0.2),
    ) {
        let mut bytes = Vec::new();
        if start {
            bytes.extend_from_slice(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg\",\"model\":\"claude\",\"usage\":{}}}\n\n");
        }
        let frames = if clean { key_only_in_errors(frames, is_anthropic_error) } else { frames };
        bytes.extend(wire(&frames));
        translate_all(&[ProviderKind::Anthropic], &plan, &bytes, &cuts, broke, clean);
    }

    /// (b) Gemini's events, with any fields, in any order.
    #[test]
    fn the_gemini_translator_takes_any_events(
        frames in prop::collection::vec(frame(gemini_event()), 0..16),
        clean in any::<bool>(),
        cuts in cuts(),
        plan in plan(),
        broke in prop::bool::weighted(0.2),
    ) {
        let frames = if clean { key_only_in_errors(frames, has_error_member) } else { frames };
        translate_all(&[ProviderKind::Gemini], &plan, &wire(&frames), &cuts, broke, clean);
    }

    /// (b) OpenAI-format chunks, with any fields, in any order.
    #[test]
    fn the_openai_translators_take_any_events(
        frames in prop::collection::vec(frame(openai_event()), 0..16),
        clean in any::<bool>(),
        cuts in cuts(),
        plan in plan(),
        broke in prop::bool::weighted(0.2),
    ) {
        let frames = if clean { key_only_in_errors(frames, has_error_member) } else { frames };
        translate_all(&OPENAI_FORMAT, &plan, &wire(&frames), &cuts, broke, clean);
    }

    /// (d) Anthropic's whole messages, as sent or a little broken.
    #[test]
    fn anthropic_streams_keep_every_dialects_grammar(
        frames in anthropic_stream(),
        mutations in mutations(anthropic_event()),
        clean in any::<bool>(),
        cuts in cuts(),
        plan in plan(),
        broke in prop::bool::weighted(0.1),
    ) {
        if mutations.is_empty() && !broke {
            check_said(&[ProviderKind::Anthropic], &plan, &frames);
        }
        let frames = mutate(frames, &mutations);
        let frames = if clean { key_only_in_errors(frames, is_anthropic_error) } else { frames };
        translate_all(&[ProviderKind::Anthropic], &plan, &wire(&frames), &cuts, broke, clean);
    }

    /// (d) Gemini's whole answers, as sent or a little broken.
    #[test]
    fn gemini_streams_keep_every_dialects_grammar(
        frames in gemini_stream(),
        mutations in mutations(gemini_event()),
        clean in any::<bool>(),
        cuts in cuts(),
        plan in plan(),
        broke in prop::bool::weighted(0.1),
    ) {
        if mutations.is_empty() && !broke {
            check_said(&[ProviderKind::Gemini], &plan, &frames);
        }
        let frames = mutate(frames, &mutations);
        let frames = if clean { key_only_in_errors(frames, has_error_member) } else { frames };
        translate_all(&[ProviderKind::Gemini], &plan, &wire(&frames), &cuts, broke, clean);
    }

    /// (d) OpenAI-format streams of whole answers, as sent or a little broken.
    #[test]
    fn openai_streams_keep_every_dialects_grammar(
        frames in openai_stream(),
        mutations in mutations(openai_event()),
        clean in any::<bool>(),
        cuts in cuts(),
        plan in plan(),
        broke in prop::bool::weighted(0.1),
    ) {
        if mutations.is_empty() && !broke {
            check_said(&OPENAI_FORMAT, &plan, &frames);
        }
        let frames = mutate(frames, &mutations);
        let frames = if clean { key_only_in_errors(frames, has_error_member) } else { frames };
        translate_all(&OPENAI_FORMAT, &plan, &wire(&frames), &cuts, broke, clean);
    }

    /// (d) The vendors' recorded streams, a little broken.
    #[test]
    fn recorded_streams_a_little_broken_keep_every_dialects_grammar(
        which in any::<usize>(),
        mutations in mutations(any_vendor_event()),
        clean in any::<bool>(),
        cuts in cuts(),
        include_usage in any::<bool>(),
        broke in prop::bool::weighted(0.1),
    ) {
        let recorded = &recorded()[which % recorded().len()];
        let frames = mutate(recorded.frames.clone(), &mutations);
        let frames = match (clean, recorded.kinds[0]) {
            (false, _) => frames,
            (true, ProviderKind::Anthropic) => key_only_in_errors(frames, is_anthropic_error),
            (true, _) => key_only_in_errors(frames, has_error_member),
        };
        let plan = ChatPlan { include_usage, ..recorded.plan.clone() };
        translate_all(recorded.kinds, &plan, &wire(&frames), &cuts, broke, clean);
    }

    /// (e) The built-in mock's stream, whatever the prompt, in every dialect's grammar.
    #[test]
    fn the_mock_streams_every_dialects_grammar(
        prompt in text(),
        max_tokens in prop::option::of(0u32..12),
        include_usage in any::<bool>(),
    ) {
        let mut body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": prompt}]});
        if let Some(max_tokens) = max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        let Ok(request) = openai_chat::decode(body.to_string()) else { return Ok(()) };
        for dialect in DIALECTS {
            let plan = ChatPlan { stream: true, include_usage, json_tool: None, dialect };
            let out = providers::mock::stream(&request, "echo-1", "mock-1".into(), egress(&plan));
            let checked = match dialect {
                Dialect::OpenaiChat => check_openai(&out, true),
                Dialect::AnthropicMessages => check_anthropic(&out),
                Dialect::OpenaiResponses => check_responses(&out),
            };
            let client = checked.unwrap_or_else(|why| panic!("mock → {dialect:?}: {why}\n{}", lossy(&out)));
            prop_assert!(client.error.is_none(), "mock → {:?}: no error: {}", dialect, lossy(&out));
        }
    }

    /// (c) The non-streamed decoders on arbitrary bytes, the key somewhere among them.
    #[test]
    fn the_decoders_take_any_bytes(
        head in prop::collection::vec(any::<u8>(), 0..700),
        key in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
        status in statuses(),
        inputs in 1usize..4,
    ) {
        let mut body = head;
        if key {
            body.extend_from_slice(KEY.as_bytes());
        }
        body.extend(tail);
        check_decoders(&body, status, inputs);
    }

    /// (c) The non-streamed decoders on arbitrary JSON in the shapes of the vendors' answers.
    #[test]
    fn the_decoders_take_any_json(value in any_json(), shaped in decoder_shapes(), status in statuses(), inputs in 1usize..4) {
        check_decoders(value.to_string().as_bytes(), status, inputs);
        check_decoders(shaped.to_string().as_bytes(), status, inputs);
    }
}

/// Answers and errors as the vendors shape them, their fields anything.
fn decoder_shapes() -> impl Strategy<Value = Value> {
    let anthropic_block = or_any(object(vec![
        ("type", one_of(&["text", "tool_use", "thinking", "other"])),
        ("text", text_value()),
        ("id", text_value()),
        ("name", one_of(&["f", "json_response"])),
        ("input", any_json().boxed()),
        ("thinking", text_value()),
    ]));
    let anthropic_answer = object(vec![
        ("id", text_value()),
        ("model", text_value()),
        ("content", or_any(prop::collection::vec(anthropic_block, 0..4).prop_map(Value::Array))),
        ("stop_reason", one_of(&["end_turn", "max_tokens", "tool_use"])),
        ("usage", anthropic_usage()),
    ]);
    let embeddings = object(vec![(
        "embeddings",
        or_any(
            prop::collection::vec(
                object(vec![("values", or_any(prop::collection::vec(number(), 0..4).prop_map(Value::Array)))]),
                0..4,
            )
            .prop_map(Value::Array),
        ),
    )]);
    prop_oneof![
        anthropic_answer,
        gemini_event(),
        embeddings,
        object(vec![("error", vendor_error_object()), ("type", one_of(&["error"]))]),
        vendor_error_object().prop_map(|e| Value::Object(Map::from_iter([("error".to_owned(), e)]))),
    ]
}

// ---- The recorded streams, and the checkers themselves ----

/// Every vendor's recorded streams, for every kind that reads them and every client dialect,
/// fed whole and in pieces of every size from 1 to 16 bytes: the client's stream keeps its
/// dialect's grammar, and ends in an error exactly for the streams that are cut, blocked or
/// end with the vendor's error.
#[test]
fn the_recorded_streams_keep_every_dialects_grammar() {
    for recorded in recorded() {
        let bytes = wire(&recorded.frames);
        let fails = ["cut", "error", "block"].iter().any(|end| recorded.case.contains(end));
        for &kind in recorded.kinds {
            for dialect in DIALECTS {
                let plan = ChatPlan { dialect, ..recorded.plan.clone() };
                let whole = run_and_check(kind, &plan, &[&bytes], false, false);
                assert_eq!(
                    whole.error.is_some(),
                    fails,
                    "{} → {kind:?} → {dialect:?}: {:?}",
                    recorded.case,
                    whole.error
                );
                if !fails {
                    check_said(&[kind], &plan, &recorded.frames);
                }
                for size in 1..=16 {
                    let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
                    let split = run_and_check(kind, &plan, &pieces, false, false);
                    assert!(whole.out == split.out, "{} → {kind:?} → {dialect:?}: pieces of {size}", recorded.case);
                }
            }
        }
    }
}

/// Events written back as the gateway's encoders write them (Responses' sequence numbers
/// counted afresh).
fn rewrite(events: &[(String, Value)], renumber: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, (name, data)) in events.iter().enumerate() {
        let mut data = data.clone();
        if renumber {
            data["sequence_number"] = json!(n);
        }
        out.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
    }
    out
}

/// The checkers take the gateway's golden streams, and refuse them without any one of their
/// structural events, with a block's index or a delta's kind changed, or with an event after
/// the end.
#[test]
fn the_checkers_refuse_what_breaks_the_grammars() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ingress");
    let anthropic = std::fs::read(fixtures.join("anthropic/stream-thinking-tool.sse")).expect("the golden stream");
    check_anthropic(&anthropic).expect("the golden stream keeps the grammar");
    check_anthropic_passthrough(&anthropic).expect("the golden stream passes through");
    let events = named_events(&anthropic).expect("the golden stream's events");
    for i in 0..events.len() {
        let mut fewer = events.clone();
        let (name, _) = fewer.remove(i);
        if !matches!(name.as_str(), "ping" | "content_block_delta") {
            assert!(check_anthropic(&rewrite(&fewer, false)).is_err(), "without event {i} ({name})");
        }
        let mut after = events.clone();
        after.push(events[i].clone());
        assert!(check_anthropic(&rewrite(&after, false)).is_err(), "event {i} ({name}) again after the end");
        assert!(check_anthropic_passthrough(&rewrite(&after, false)).is_err(), "event {i} ({name}) at the end");
        let mut changed = events.clone();
        let data = &mut changed[i].1;
        match name.as_str() {
            "content_block_start" | "content_block_stop" => data["index"] = json!(7),
            "content_block_delta" => {
                let kind = data["delta"]["type"].as_str().unwrap_or_default();
                let other = if kind == "text_delta" { "input_json_delta" } else { "text_delta" };
                data["delta"]["type"] = json!(other);
            }
            _ => continue,
        }
        assert!(check_anthropic(&rewrite(&changed, false)).is_err(), "event {i} ({name}) changed");
    }

    let mut responses = 0;
    for entry in std::fs::read_dir(fixtures.join("responses/streams")).expect("the golden streams") {
        let path = entry.expect("a golden stream").path();
        let stream = std::fs::read(&path).expect("a golden stream");
        check_responses(&stream).unwrap_or_else(|why| panic!("{}: {why}", path.display()));
        let events = named_events(&stream).expect("the golden stream's events");
        for i in 0..events.len() {
            let mut fewer = events.clone();
            fewer.remove(i);
            assert!(check_responses(&rewrite(&fewer, true)).is_err(), "{}: without event {i}", path.display());
            let mut gap = events.clone();
            gap[i].1["sequence_number"] = json!(i + 1);
            assert!(check_responses(&rewrite(&gap, false)).is_err(), "{}: event {i} out of sequence", path.display());
        }
        let mut after = events.clone();
        after.push(events[2].clone());
        assert!(check_responses(&rewrite(&after, true)).is_err(), "{}: an event after the end", path.display());
        responses += 1;
    }
    assert!(responses >= 5, "the Responses golden streams");

    let chunk = b"data: {\"choices\":[]}\n\n";
    let error = b"data: {\"error\":{\"message\":\"broke\"}}\n\n";
    assert!(check_openai(&[&chunk[..], DONE].concat(), false).is_ok());
    assert!(check_openai(&[&chunk[..], error, DONE].concat(), false).is_ok_and(|c| c.error.is_some()));
    for broken in [
        [&chunk[..], DONE, DONE].concat(),
        [&chunk[..], DONE, chunk].concat(),
        [&error[..], chunk, DONE].concat(),
        [&chunk[..], b"data: {\"a\":\n\n", DONE].concat(),
        [&error[..], error, DONE].concat(),
        chunk.to_vec(),
    ] {
        assert!(check_openai(&broken, false).is_err(), "{}", lossy(&broken));
    }
}

// ---- Bugs the fuzzing found, left for their fix: each test fails until its bug is fixed ----

/// The data of the client's events, as an SSE client reads them.
fn client_events(out: &[u8]) -> Vec<Value> {
    let mut events = Vec::new();
    SseParser::new()
        .push(out, &mut |_, data| events.push(serde_json::from_slice(data).unwrap_or(Value::Null)))
        .expect("the client's events are small");
    events
}

const ANTHROPIC_START: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n";

/// Anthropic's stream passed through to an Anthropic client, the vendor's stream failing after
/// its `message_start` went through (here it breaks off; an unreadable event or a usage of the
/// wrong type does the same): the gateway's error event comes after a second `message_start`,
/// written by the client dialect's encoder, which the pass-through's reader hands only the
/// failure (`ErrorsOnly`) and which therefore believes nothing was written yet. The TypeScript
/// SDK's `MessageStream` throws on a `message_start` before `message_stop` ("Unexpected event
/// order"), so its client gets that instead of the vendor's error.
#[test]

fn a_pass_through_that_fails_after_message_start_starts_no_second_message() {
    let plan = ChatPlan { stream: true, dialect: Dialect::AnthropicMessages, ..ChatPlan::default() };
    let outcome = run(ProviderKind::Anthropic, &plan, &[ANTHROPIC_START], false);
    assert!(outcome.error.is_some());
    let starts = client_events(&outcome.out).iter().filter(|e| e["type"] == "message_start").count();
    assert_eq!(starts, 1, "one message_start: {}", lossy(&outcome.out));
}

/// The pass-throughs split the vendor's bytes into events at blank lines ended by LF only
/// (`sse::EventSplitter`), where the SSE parser (and SSE) also ends lines at a lone CR: events
/// ended by lone CRs reach the pass-through as one, and it judges and forwards them as one.
/// Anthropic's pass-through forwards the events after `message_stop` in the same piece (here a
/// `content_block_start`: the client's stream goes on after its end; an `error` event there
/// would reach the client unredacted).
#[test]

fn an_anthropic_pass_through_forwards_nothing_after_message_stop() {
    let plan = ChatPlan { stream: true, dialect: Dialect::AnthropicMessages, ..ChatPlan::default() };
    let mut bytes = ANTHROPIC_START.to_vec();
    bytes.extend_from_slice(b"data: {\"type\":\"message_stop\"}\r\r");
    bytes.extend_from_slice(
        b"data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    );
    let outcome = run(ProviderKind::Anthropic, &plan, &[&bytes], false);
    let events = client_events(&outcome.out);
    assert_eq!(events.last().map(|e| &e["type"]), Some(&json!("message_stop")), "{}", lossy(&outcome.out));
}

/// The same splitting in OpenAI's pass-through: a chunk and `[DONE]` ended by lone CRs are one
/// event, whose verdict is `[DONE]`'s, and the chunk is dropped: the client gets neither its
/// text nor its finish reason, only `data: [DONE]`.
#[test]

fn an_openai_pass_through_loses_no_chunk_before_done() {
    let plan = ChatPlan { stream: true, ..ChatPlan::default() };
    let chunk = br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}"#;
    let bytes = [&b"data: "[..], chunk, b"\r\rdata: [DONE]\n\n"].concat();
    let outcome = run(ProviderKind::Openai, &plan, &[&bytes], false);
    let events = client_events(&outcome.out);
    assert!(events.iter().any(|e| e["choices"][0]["delta"]["content"] == "hi"), "{}", lossy(&outcome.out));
}

/// A tool call whose vendor id is empty (an Anthropic `tool_use` with `"id": ""`, or an
/// OpenAI-format chunk's): the Anthropic and Responses encoders and the Gemini decoder make an
/// id for it, but an OpenAI Chat client gets `"id": ""`, and cannot tell its calls' results
/// apart. Low stakes (the vendors send ids), but the one dialect left out.
#[test]

fn an_openai_client_gets_no_empty_tool_call_id() {
    let plan = ChatPlan { stream: true, ..ChatPlan::default() };
    let mut bytes = ANTHROPIC_START.to_vec();
    bytes.extend_from_slice(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"\",\"name\":\"get_weather\",\"input\":{}}}\n\n");
    bytes.extend_from_slice(b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
    bytes.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    let outcome = run(ProviderKind::Anthropic, &plan, &[&bytes], false);
    assert!(outcome.error.is_none(), "{}", lossy(&outcome.out));
    let ids: Vec<Value> = client_events(&outcome.out)
        .iter()
        .flat_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array().cloned().unwrap_or_default())
        .filter_map(|call| call.get("id").cloned())
        .collect();
    assert!(!ids.is_empty() && ids.iter().all(|id| id.as_str().is_some_and(|id| !id.is_empty())), "{ids:?}");
}
