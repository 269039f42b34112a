//! What translation costs, per vendor: a typical 2 KB chat request translated and its answer
//! translated back (µs per request + response), and stream translation throughput (MB/s of the
//! vendor's stream). `cargo bench -p switchyard-core --bench adapters` (or `make bench`) runs it
//! in full; run without `--bench` (as `make test` does) it only checks that every case works.

use std::hint::black_box;
use std::time::{Duration, Instant};
use switchyard_core::config::{Provider, ProviderKind};
use switchyard_core::ingress::openai_chat;
use switchyard_core::providers::{self, ChatPlan, StreamTranslator};

fn provider(kind: ProviderKind) -> Provider {
    Provider::new("bench", kind, "https://vendor.example/v1")
}

/// A chat of about 2 KB: a system prompt, a few turns, a tool.
fn request_body() -> Vec<u8> {
    let turn = "Please summarise the following paragraph about the history of railway switchyards, \
                keeping the names of the places and the dates exactly as they are written.";
    let mut messages = vec![
        serde_json::json!({"role": "system", "content": "You are a careful assistant. Answer briefly and cite the text."}),
    ];
    for i in 0..5 {
        messages.push(serde_json::json!({"role": "user", "content": format!("{turn} ({i})")}));
        messages.push(serde_json::json!({"role": "assistant", "content": format!("Here is the summary number {i} you asked for, with names and dates kept.")}));
    }
    messages.push(serde_json::json!({"role": "user", "content": turn}));
    let body = serde_json::json!({
        "model": "bench", "messages": messages, "temperature": 0.3, "max_tokens": 512,
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look a place up",
            "parameters": {"type": "object", "properties": {"place": {"type": "string"}}, "required": ["place"]}}}]
    });
    serde_json::to_vec(&body).unwrap()
}

fn anthropic_answer() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "The switchyard at Hamm, opened in 1914, was among the largest in Europe; by 1935 it sorted 7,000 wagons a day."}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 512, "output_tokens": 40, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    }))
    .unwrap()
}

fn gemini_answer() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "The switchyard at Hamm, opened in 1914, was among the largest in Europe; by 1935 it sorted 7,000 wagons a day."}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 512, "candidatesTokenCount": 40, "totalTokenCount": 552},
        "modelVersion": "gemini-2.5-flash", "responseId": "abc"
    }))
    .unwrap()
}

fn stream_of(kind: ProviderKind, events: usize) -> Vec<u8> {
    let mut out = String::new();
    let piece = "railway switchyard ";
    match kind {
        ProviderKind::Anthropic => {
            out.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n");
            out.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
            for _ in 0..events {
                out.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{piece}\"}}}}\n\n"));
            }
            out.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
            out.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":99}}\n\n");
            out.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        }
        ProviderKind::Gemini => {
            for i in 0..events {
                let finish = if i + 1 == events { ",\"finishReason\":\"STOP\"" } else { "" };
                out.push_str(&format!("data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"{piece}\"}}],\"role\":\"model\"}},\"index\":0{finish}}}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}}\r\n\r\n"));
            }
        }
        _ => {
            for _ in 0..events {
                out.push_str(&format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{piece}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"));
            }
            out.push_str("data: [DONE]\n\n");
        }
    }
    out.into_bytes()
}

/// Runs `f` in batches for about `budget`; the time of one run in the fastest batch. On a
/// shared machine, interference only ever adds time, so the fastest batch is the steadiest figure.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    let started = Instant::now();
    let mut best = Duration::MAX;
    while started.elapsed() < budget || best == Duration::MAX {
        let batch = Instant::now();
        let mut runs = 0u32;
        while batch.elapsed() < Duration::from_millis(20) || runs == 0 {
            f();
            runs += 1;
        }
        best = best.min(batch.elapsed() / runs);
    }
    best
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let budget = if full { Duration::from_millis(1500) } else { Duration::from_millis(5) };
    let body = request_body();
    println!("| vendor | request + response (2 KB chat) | stream translation |");
    println!("|---|---|---|");
    for (name, kind, answer) in [
        ("OpenAI (pass-through)", ProviderKind::Openai, None),
        ("Anthropic", ProviderKind::Anthropic, Some(anthropic_answer())),
        ("Gemini", ProviderKind::Gemini, Some(gemini_answer())),
    ] {
        let p = provider(kind);
        let round_trip = time(budget, || {
            let request = openai_chat::decode(black_box(body.as_slice())).unwrap();
            let prepared = providers::prepare_chat(&p, "model-x", &request, Some("key"), false).unwrap();
            if let Some(answer) = &answer {
                let decoded = providers::decode_chat(&p, answer, &prepared.plan).unwrap();
                black_box(decoded.map(|answer| openai_chat::encode_answer(&answer, 0)));
            }
            black_box(prepared);
        });
        let stream = stream_of(kind, if full { 20_000 } else { 50 });
        let per_stream = time(budget, || {
            let mut t: Box<dyn StreamTranslator> = providers::chat_stream(
                &p,
                ChatPlan::default(),
                Some("key"),
                Box::new(openai_chat::Stream::new(0, false)),
            );
            let mut out = Vec::with_capacity(stream.len() * 2);
            // Network-sized pieces, as the runtime hands them over.
            for chunk in stream.chunks(1400) {
                t.push(chunk, &mut out);
            }
            t.finish(None, &mut out);
            assert!(out.ends_with(b"data: [DONE]\n\n"), "{name}: the stream completes");
            black_box(out);
        });
        let mb_per_s = stream.len() as f64 / per_stream.as_secs_f64() / 1e6;
        println!("| {name} | {:.1} µs | {mb_per_s:.0} MB/s |", round_trip.as_secs_f64() * 1e6);
    }
    println!(
        "\nrequest body: {} bytes; streams of {} bytes in 1400-byte pieces",
        body.len(),
        stream_of(ProviderKind::Openai, if full { 20_000 } else { 50 }).len()
    );
}
