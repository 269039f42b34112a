//! Golden tests of every vendor adapter, both directions, from fixtures of wire bytes.
//!
//! Each case is a folder `fixtures/<vendor>/<case>/` holding some of:
//! - `openai-request.json` + `vendor-request.json`: the client's request and the body the
//!   vendor must receive (`report.json`: the dropped and adjusted parameters, when any);
//! - `vendor-response.json` + `openai-response.json`: the vendor's answer and the client's (or
//!   the error the client gets for it);
//! - `vendor-stream.sse` + `openai-stream.json`: the vendor's event stream and the client's
//!   events, the stream being fed in pieces of every size from 1 byte up;
//! - `vendor-error.json` (`{"status": .., "body": ..}`) + `openai-error.json`: an error answer.
//!
//! `BLESS=1 cargo test --test golden` writes the expected files that are missing.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use switchyard_core::canonical::{Answer, Egress, Request};
use switchyard_core::config::{Provider, ProviderKind};
use switchyard_core::ingress::openai_chat;
use switchyard_core::providers::{self, anthropic, gemini, is_vendor_fault, ChatPlan, StreamTranslator};

const CREATED: u64 = 1_750_000_000;
const KEY: &str = "sk-vendor-fixture-key";

fn provider(kind: ProviderKind, base_url: &str) -> Provider {
    Provider { api_key_secret: Some("KEY".into()), ..Provider::new("vendor", kind, base_url) }
}

struct Vendor {
    name: &'static str,
    prepare: fn(&Request) -> Result<providers::Prepared, switchyard_core::GatewayError>,
    response: fn(&[u8], &ChatPlan) -> Result<Value, switchyard_core::GatewayError>,
    stream: fn(ChatPlan) -> Box<dyn StreamTranslator>,
    error: fn(u16, &[u8]) -> switchyard_core::GatewayError,
}

fn anthropic_vendor() -> Vendor {
    Vendor {
        name: "anthropic",
        prepare: |r| {
            anthropic::chat_request(
                &provider(ProviderKind::Anthropic, "https://api.anthropic.com/v1"),
                "claude-sonnet-4-5",
                r,
                Some(KEY),
                false,
            )
        },
        response: |b, plan| anthropic::chat_response("vendor", b, plan).map(completion),
        stream: |plan| {
            let egress = egress(&plan);
            Box::new(anthropic::Stream::new("vendor", plan, Some(KEY), egress))
        },
        error: |status, body| anthropic::error_from_vendor("vendor", status, body, Some(KEY)),
    }
}

fn openai_vendor() -> Vendor {
    Vendor {
        name: "openai",
        prepare: |r| {
            let p = provider(ProviderKind::Openai, "https://api.openai.com/v1");
            providers::prepare_chat(&p, "gpt-4o-mini", r, Some(KEY), false)
        },
        response: |_, _| panic!("OpenAI answers pass through untouched: no response fixtures"),
        stream: |plan| Box::new(providers::openai::Stream::new("vendor", plan.include_usage, Some(KEY))),
        error: |status, body| providers::openai::error_from_vendor("vendor", status, body, Some(KEY)),
    }
}

fn gemini_vendor() -> Vendor {
    Vendor {
        name: "gemini",
        prepare: |r| {
            let p = provider(ProviderKind::Gemini, "https://generativelanguage.googleapis.com/v1beta");
            let prepared = gemini::chat_request(&p, "gemini-2.5-flash", r, Some(KEY), false)?;
            assert!(!prepared.outbound.url.contains(KEY), "the Gemini key never goes in the URL");
            let method = if r.is_stream() { "streamGenerateContent?alt=sse" } else { "generateContent" };
            assert_eq!(
                prepared.outbound.url,
                format!("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:{method}")
            );
            Ok(prepared)
        },
        response: |b, _| gemini::chat_response("vendor", b).map(completion),
        stream: |plan| Box::new(gemini::Stream::new("vendor", Some(KEY), egress(&plan))),
        error: |status, body| gemini::error_from_vendor("vendor", status, body, Some(KEY)),
    }
}

/// The client's answer: a canonical answer as OpenAI's chat completion.
fn completion(answer: Answer) -> Value {
    serde_json::to_value(openai_chat::encode_answer(&answer, CREATED)).unwrap()
}

/// The OpenAI Chat client's stream encoder.
fn egress(plan: &ChatPlan) -> Box<dyn Egress> {
    Box::new(openai_chat::Stream::new(CREATED, plan.include_usage))
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Compares with the expected file, or writes it under BLESS=1 when it is missing.
fn expect(path: &Path, actual: &Value) {
    match read_json(path) {
        Some(expected) => assert_eq!(
            actual,
            &expected,
            "{} differs; actual:\n{}",
            path.display(),
            serde_json::to_string_pretty(actual).unwrap()
        ),
        None if std::env::var_os("BLESS").is_some() => {
            std::fs::write(path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        }
        None => panic!(
            "{} is missing (BLESS=1 writes it); actual:\n{}",
            path.display(),
            serde_json::to_string_pretty(actual).unwrap()
        ),
    }
}

fn events(sse: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut parser = switchyard_core::sse::SseParser::new();
    let mut on_event = |_: &str, data: &[u8]| {
        out.push(if data == b"[DONE]" {
            json!("[DONE]")
        } else {
            serde_json::from_slice(data).expect("client events are JSON")
        })
    };
    parser.push(sse, &mut on_event).expect("client events are small");
    parser.finish();
    out
}

fn run_case(vendor: &Vendor, dir: &Path) {
    let request = std::fs::read(dir.join("openai-request.json")).ok();
    let parsed =
        request.as_deref().map(|r| openai_chat::decode(r).unwrap_or_else(|e| panic!("{}: {e}", dir.display())));
    let plan = match &parsed {
        Some(r) => (vendor.prepare)(r).map(|p| p.plan).unwrap_or_else(|_| ChatPlan::of(r)),
        None => ChatPlan::default(),
    };

    if let Some(request) = &parsed {
        match (vendor.prepare)(request) {
            Ok(prepared) => {
                let body: Value = serde_json::from_slice(&prepared.outbound.body).unwrap();
                expect(&dir.join("vendor-request.json"), &body);
                let report = json!({"dropped": prepared.report.dropped, "adjusted": prepared.report.adjusted});
                if report != json!({"dropped": [], "adjusted": []}) || dir.join("report.json").exists() {
                    expect(&dir.join("report.json"), &report);
                }
                let headers: Vec<String> = prepared.outbound.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                assert!(headers.iter().any(|h| h.contains(KEY)), "the vendor key is sent");
            }
            Err(e) => {
                expect(&dir.join("request-error.json"), &json!({"status": e.status, "param": e.param, "code": e.code}))
            }
        }
    }
    if let Ok(body) = std::fs::read(dir.join("vendor-response.json")) {
        let actual = (vendor.response)(&body, &plan)
            .unwrap_or_else(|e| json!({"error": {"status": e.status, "code": e.code, "message": e.message}}));
        expect(&dir.join("openai-response.json"), &actual);
    }
    if let Ok(stream) = std::fs::read(dir.join("vendor-stream.sse")) {
        let whole = {
            let mut t = (vendor.stream)(plan.clone());
            let mut out = Vec::new();
            t.push(&stream, &mut out);
            t.finish(None, &mut out);
            out
        };
        let expected = events(&whole);
        expect(&dir.join("openai-stream.json"), &Value::Array(expected.clone()));
        assert_eq!(expected.last(), Some(&json!("[DONE]")), "{}: a client stream ends with [DONE]", dir.display());
        for piece in 1..stream.len().min(64) {
            let mut t = (vendor.stream)(plan.clone());
            let mut out = Vec::new();
            for chunk in stream.chunks(piece) {
                t.push(chunk, &mut out);
            }
            t.finish(None, &mut out);
            assert_eq!(events(&out), expected, "{}: fed in pieces of {piece} bytes", dir.display());
        }
    }
    if let Some(error) = read_json(&dir.join("vendor-error.json")) {
        let status = error["status"].as_u64().unwrap() as u16;
        let body = match &error["body"] {
            Value::String(s) => s.clone().into_bytes(),
            other => serde_json::to_vec(other).unwrap(),
        };
        let e = (vendor.error)(status, &body);
        assert!(!e.message.contains(KEY), "the vendor key never reaches the client");
        let actual =
            json!({"status": e.status, "type": e.kind, "code": e.code, "retryable": is_vendor_fault(status, &e)});
        expect(&dir.join("openai-error.json"), &actual);
    }
}

fn cases(vendor: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(vendor);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures for {vendor}");
    dirs
}

#[test]
fn anthropic_fixtures() {
    let vendor = anthropic_vendor();
    for dir in cases(vendor.name) {
        run_case(&vendor, &dir);
    }
}

#[test]
fn gemini_fixtures() {
    let vendor = gemini_vendor();
    for dir in cases(vendor.name) {
        run_case(&vendor, &dir);
    }
}

#[test]
fn openai_fixtures() {
    let vendor = openai_vendor();
    for dir in cases(vendor.name) {
        run_case(&vendor, &dir);
    }
}

/// A complete OpenAI stream must reach the client byte for byte.
#[test]
fn openai_streams_pass_through_byte_for_byte() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai/stream-text");
    let input = std::fs::read(dir.join("vendor-stream.sse")).unwrap();
    for piece in [1, 5, 64, input.len()] {
        let mut t = providers::openai::Stream::new("vendor", true, Some(KEY));
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            t.push(chunk, &mut out);
        }
        t.finish(None, &mut out);
        assert_eq!(out, input);
    }
}
