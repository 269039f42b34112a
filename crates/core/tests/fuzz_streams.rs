//! Property tests of everything that reads a vendor's bytes: the stream translators, the SSE
//! parser and the non-streamed decoders, fed arbitrary bytes, and arbitrary JSON in the shapes of
//! each vendor's events (indices huge or negative, fields of the wrong type or missing, unknown
//! event types, any order), split at arbitrary points.
//!
//! Whatever comes in: nothing panics (a panic aborts the worker's isolate, and every request it
//! serves); a client's stream ends with one `data: [DONE]`, after events that are all JSON; the
//! vendor key is in no error the client gets. Runs are bounded (256 cases a property, a few
//! seconds in debug); `FUZZ_CASES` runs more, `PROPTEST_RNG_SEED` replays a run.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Map, Value};
use switchyard_core::canonical::Dialect;
use switchyard_core::config::{Provider, ProviderKind};
use switchyard_core::embeddings::EmbeddingRequest;
use switchyard_core::ingress::openai_chat;
use switchyard_core::providers::{self, ChatPlan};
use switchyard_core::sse::{SseParser, DONE};

/// The vendor key, with characters that percent-encode, as a vendor might echo it.
const KEY: &str = "sk-fuzz-SECRET/key+42=";

const KINDS: [ProviderKind; 3] = [ProviderKind::Openai, ProviderKind::Anthropic, ProviderKind::Gemini];

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
            "sk-fuzz-SECRET%2Fkey%2B42%3D",
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
        Just(json!({"type": "server_tool_use"})),
    ]);
    let delta = or_any(object(vec![
        ("type", one_of(&["text_delta", "input_json_delta", "thinking_delta", "signature_delta"])),
        ("text", text_value()),
        ("partial_json", text_value()),
        ("thinking", text_value()),
        ("stop_reason", one_of(&["end_turn", "max_tokens", "tool_use", "refusal", "stop_sequence"])),
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
    let choice = or_any(object(vec![
        ("index", number().boxed()),
        ("delta", or_any(object(vec![("content", text_value()), ("role", one_of(&["assistant"]))]))),
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
    Done,
    Comment,
    /// A line that is no SSE field, or data that is not JSON.
    Raw(Vec<u8>),
}

fn frame(event: BoxedStrategy<Value>) -> impl Strategy<Value = Frame> {
    prop_oneof![
        8 => event.clone().prop_map(Frame::Data),
        2 => (text(), event.clone()).prop_map(|(name, v)| Frame::Named(name.replace(['\n', '\r'], ""), v)),
        1 => event.prop_map(Frame::CrLf),
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
            Frame::Done => out.extend_from_slice(b"data: [DONE]\n\n"),
            Frame::Comment => out.extend_from_slice(b": keep-alive\n\n"),
            Frame::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
    out
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

// ---- Checks ----

/// Runs a translator as the worker does (stopping once it says the vendor's stream is done),
/// and checks what the client got.
fn translate(kind: ProviderKind, plan: &ChatPlan, pieces: &[&[u8]]) -> Vec<Vec<u8>> {
    let egress = Box::new(openai_chat::Stream::new(1_750_000_000, plan.include_usage));
    let mut translator = providers::chat_stream(&provider(kind), plan.clone(), Some(KEY), egress);
    let mut out = Vec::new();
    for piece in pieces {
        translator.push(piece, &mut out);
        if translator.done() {
            break;
        }
    }
    translator.finish(None, &mut out);
    let _ = translator.usage();
    check_client_stream(kind, &out)
}

/// The client's stream: all JSON events, the key in none of its errors, then one `[DONE]`.
fn check_client_stream(kind: ProviderKind, out: &[u8]) -> Vec<Vec<u8>> {
    assert!(out.ends_with(DONE), "{kind:?}: the client's stream ends with [DONE]: {}", String::from_utf8_lossy(out));
    let mut events = Vec::new();
    let mut parser = SseParser::new();
    parser.push(out, &mut |_, data| events.push(data.to_vec())).expect("the client's events are small");
    assert_eq!(events.last().map(Vec::as_slice), Some(&b"[DONE]"[..]), "{kind:?}: [DONE] is the last event");
    assert_eq!(events.iter().filter(|e| e.as_slice() == b"[DONE]").count(), 1, "{kind:?}: one [DONE]");
    for data in &events[..events.len() - 1] {
        let text = std::str::from_utf8(data).unwrap_or_else(|e| panic!("{kind:?}: an event is not UTF-8: {e}"));
        // JSON's grammar (serde_json's `Value` also refuses numbers past f64, which JSON allows).
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            panic!("{kind:?}: an event is not JSON ({e}): {text}");
        }
        if let Ok(Value::Object(event)) = serde_json::from_str::<Value>(text) {
            if event.get("error").is_some_and(|e| !e.is_null()) {
                assert!(!has_key(text), "{kind:?}: the vendor key in an error event: {text}");
            }
        }
    }
    events
}

fn has_key(text: &str) -> bool {
    text.contains(KEY) || text.to_ascii_lowercase().contains(&"sk-fuzz-SECRET%2Fkey%2B42%3D".to_ascii_lowercase())
}

fn check_error(e: &switchyard_core::GatewayError) {
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
    for kind in
        [ProviderKind::Openai, ProviderKind::Azure, ProviderKind::Anthropic, ProviderKind::Gemini, ProviderKind::Mock]
    {
        let p = provider(kind);
        for plan in &plans {
            match providers::decode_chat(&p, body, plan) {
                Ok(Some(answer)) => assert!(serde_json::to_vec(&openai_chat::encode_answer(&answer, 1)).is_ok()),
                Ok(None) => {}
                Err(e) => check_error(&e),
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

    /// (a) Arbitrary bytes, arbitrarily split, into every translator.
    #[test]
    fn every_translator_takes_any_bytes(bytes in sse_bytes(), cuts in cuts(), plan in plan()) {
        for kind in KINDS {
            let whole = translate(kind, &plan, &[&bytes]);
            let split = translate(kind, &plan, &pieces(&bytes, &cuts));
            prop_assert_eq!(whole, split, "{:?}: the same events however the bytes are split", kind);
        }
    }

    /// (b) Anthropic's events, with any fields, in any order.
    #[test]
    fn the_anthropic_translator_takes_any_events(
        start in any::<bool>(),
        frames in prop::collection::vec(frame(anthropic_event()), 0..24),
        cuts in cuts(),
        plan in plan(),
    ) {
        let mut bytes = Vec::new();
        if start {
            bytes.extend_from_slice(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg\",\"model\":\"claude\",\"usage\":{}}}\n\n");
        }
        bytes.extend(wire(&frames));
        let whole = translate(ProviderKind::Anthropic, &plan, &[&bytes]);
        prop_assert_eq!(whole, translate(ProviderKind::Anthropic, &plan, &pieces(&bytes, &cuts)));
    }

    /// (b) Gemini's events, with any fields, in any order.
    #[test]
    fn the_gemini_translator_takes_any_events(
        frames in prop::collection::vec(frame(gemini_event()), 0..16),
        cuts in cuts(),
        plan in plan(),
    ) {
        let bytes = wire(&frames);
        let whole = translate(ProviderKind::Gemini, &plan, &[&bytes]);
        prop_assert_eq!(whole, translate(ProviderKind::Gemini, &plan, &pieces(&bytes, &cuts)));
    }

    /// (b) OpenAI-format chunks, with any fields, in any order.
    #[test]
    fn the_openai_translator_takes_any_events(
        frames in prop::collection::vec(frame(openai_event()), 0..16),
        cuts in cuts(),
        plan in plan(),
    ) {
        let bytes = wire(&frames);
        let whole = translate(ProviderKind::Openai, &plan, &[&bytes]);
        prop_assert_eq!(whole, translate(ProviderKind::Openai, &plan, &pieces(&bytes, &cuts)));
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
