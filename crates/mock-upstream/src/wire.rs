//! What every vendor mock shares: canned words, example values from a JSON schema, and event
//! streams with their faults (delays between events, a cut in the middle).

use crate::faults::Fault;
use crate::Body;
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Response;
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a cut body waits before dropping the connection, so what precedes it is flushed.
const CUT_GRACE: Duration = Duration::from_millis(30);

const WORDS: [&str; 8] = ["Hello", "from", "mock-upstream,", "the", "vendor", "stand-in", "of", "Switchyard."];

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The i-th word of the canned answer, with its leading space.
pub fn word(i: usize) -> String {
    let w = WORDS[i % WORDS.len()];
    if i == 0 {
        w.to_owned()
    } else {
        format!(" {w}")
    }
}

pub fn text(words: usize) -> String {
    (0..words.max(1)).map(word).collect()
}

/// The pieces of the canned reasoning (Anthropic's `thinking`, OpenAI-style `reasoning_content`,
/// Gemini's thought parts), in the order they stream: one piece a delta or event.
pub const THOUGHT: [&str; 4] = ["Let me think", " about what", " the user", " asks."];

/// The canned reasoning whole: `Let me think about what the user asks.`
pub fn thought() -> String {
    THOUGHT.concat()
}

/// What the canned reasoning counts as in usage: one token a word.
pub fn thought_tokens() -> usize {
    thought().split_whitespace().count()
}

/// An opaque, base64-looking signature of `thinking` (as Anthropic signs its thinking blocks):
/// always the same for the same text, 64 characters of standard base64.
pub fn signature(thinking: &str) -> String {
    use base64::Engine;
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in thinking.bytes() {
        state ^= u64::from(byte);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    let mut bytes = vec![0x12u8, 0xa0];
    while bytes.len() < 48 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.push((state >> 24) as u8);
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `pieces` cut where the earliest of `stops` first occurs in their concatenation (the stop
/// sequence itself left out, as vendors do), with the stop sequence that matched; `pieces`
/// unchanged and `None` when none occurs. Empty pieces are dropped from a cut answer.
pub fn cut_at_stop(pieces: Vec<String>, stops: &[&str]) -> (Vec<String>, Option<String>) {
    let whole = pieces.concat();
    let found = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| whole.find(s).map(|at| (at, *s)))
        .min_by_key(|(at, _)| *at);
    let Some((at, stop)) = found else { return (pieces, None) };
    let mut kept = Vec::new();
    let mut start = 0;
    for piece in pieces {
        if start >= at {
            break;
        }
        let take = (at - start).min(piece.len());
        kept.push(piece[..take].to_owned());
        start += piece.len();
    }
    kept.retain(|p| !p.is_empty());
    (kept, Some(stop.to_owned()))
}

/// A value that satisfies a (simple) JSON schema, for mock tool arguments and JSON output.
pub fn example(schema: &Value) -> Value {
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    out.insert(name.clone(), example(property));
                }
            }
            Value::Object(out)
        }
        "array" => json!([example(schema.get("items").unwrap_or(&Value::Null))]),
        "integer" => json!(42),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!("example"),
    }
}

/// A streamed response of `events`, with the fault's delay between events and its cut.
pub fn event_stream(mut events: Vec<Bytes>, fault: Option<&Fault>) -> Response<Body> {
    let cut_after = fault.and_then(|f| f.cut_after);
    if let Some(cut) = cut_after {
        events.truncate(cut);
    }
    let delay = fault.and_then(|f| f.chunk_delay_ms).map(Duration::from_millis);
    let body_stream = stream::unfold((events.into_iter(), 0usize), move |(mut events, sent)| async move {
        match events.next() {
            Some(event) => {
                if let (Some(delay), true) = (delay, sent > 0) {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok(Frame::data(event)), (events, sent + 1)))
            }
            // A cut stream ends with an error, which makes hyper drop the connection without the
            // chunked encoding's terminating chunk: the client sees a truncated stream. hyper
            // drops its unflushed buffer on a body error, so first give it time to send what came
            // before, as a real connection that dies mid-stream would have.
            None if cut_after.is_some() && sent != usize::MAX => {
                tokio::time::sleep(CUT_GRACE).await;
                let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "mock-upstream cut the stream");
                Some((Err(cut), (events, usize::MAX)))
            }
            None => None,
        }
    });
    let mut response = Response::new(StreamBody::new(body_stream).boxed());
    let headers = response.headers_mut();
    headers.insert("content-type", "text/event-stream; charset=utf-8".parse().expect("static"));
    headers.insert("cache-control", "no-cache".parse().expect("static"));
    response
}

/// A JSON answer, possibly malformed or cut, as the fault asks.
pub fn json_answer(answer: &Value, fault: Option<&Fault>) -> Response<Body> {
    let mut bytes = serde_json::to_vec(answer).unwrap_or_default();
    if fault.is_some_and(|f| f.malformed) {
        bytes.truncate(bytes.len() / 2);
    }
    if let Some(cut) = fault.and_then(|f| f.cut_after) {
        bytes.truncate(cut);
        let mut response =
            event_stream(vec![Bytes::from(bytes)], Some(&Fault { cut_after: Some(1), ..Fault::default() }));
        response.headers_mut().insert("content-type", "application/json".parse().expect("static"));
        return response;
    }
    crate::full(hyper::StatusCode::OK, "application/json", bytes)
}

/// A deterministic unit vector for `text`: the same text always embeds the same way.
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        state ^= u64::from(byte);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    let mut values: Vec<f32> = (0..dimensions.max(1))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::EPSILON);
    values.iter_mut().for_each(|v| *v /= norm);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(words: usize) -> Vec<String> {
        (0..words).map(word).collect()
    }

    #[test]
    fn a_stop_sequence_cuts_the_pieces_before_it() {
        let (cut, stop) = cut_at_stop(pieces(8), &["vendor"]);
        assert_eq!(cut, ["Hello", " from", " mock-upstream,", " the", " "]);
        assert_eq!(stop.as_deref(), Some("vendor"));
        // Inside a piece, and the earliest of several wins whatever their order.
        let (cut, stop) = cut_at_stop(pieces(8), &["Switchyard", "upstream"]);
        assert_eq!(cut.concat(), "Hello from mock-");
        assert_eq!(stop.as_deref(), Some("upstream"));
        // At the very start: nothing is left.
        let (cut, stop) = cut_at_stop(pieces(8), &["Hello"]);
        assert!(cut.is_empty());
        assert_eq!(stop.as_deref(), Some("Hello"));
    }

    #[test]
    fn pieces_without_a_stop_sequence_are_unchanged() {
        assert_eq!(cut_at_stop(pieces(8), &["END", ""]), (pieces(8), None));
        assert_eq!(cut_at_stop(pieces(8), &[]), (pieces(8), None));
    }

    #[test]
    fn the_signature_is_opaque_base64_and_stable() {
        use base64::Engine;
        let signature = signature(&thought());
        assert_eq!(signature, super::signature(&thought()));
        assert_ne!(signature, super::signature("other thoughts"));
        assert_eq!(signature.len(), 64);
        assert!(base64::engine::general_purpose::STANDARD.decode(&signature).is_ok());
        assert_eq!(thought(), "Let me think about what the user asks.");
        assert_eq!(thought_tokens(), 8);
    }
}
