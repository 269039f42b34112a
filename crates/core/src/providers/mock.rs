//! The built-in `mock` provider: answers inside the worker, with no key and no network, so the
//! demo configuration works the moment the gateway starts, in every dialect. It echoes the last
//! user message.

use crate::canonical::{Answer, Block, BlockKind, Delta, Egress, Event, Finish, Output, Part, Request, Role};
use crate::chat::Usage;

const GREETING: &str = "Hello from Switchyard's mock provider.";
const ECHO_LIMIT: usize = 400;

/// The text of a list of parts, joined.
fn text_of(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The words of the mock's answer and why it stopped.
fn words(request: &Request) -> (Vec<String>, Finish) {
    let last_user = request
        .turns
        .iter()
        .rev()
        .filter(|t| t.role == Role::User)
        .map(|t| text_of(&t.parts))
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    let mut text = GREETING.to_owned();
    let echo: String = last_user.chars().take(ECHO_LIMIT).collect();
    if !echo.trim().is_empty() {
        text.push_str(" You said: ");
        text.push_str(echo.trim());
    }
    // Words keep their leading space so that the stream's deltas concatenate to the full text.
    let mut words: Vec<String> = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        words.push(if i == 0 { word.to_owned() } else { format!(" {word}") });
    }
    match request.max_output_tokens.map(|n| n as usize) {
        Some(n) if n < words.len() => {
            words.truncate(n);
            (words, Finish::Length)
        }
        _ => (words, Finish::Stop),
    }
}

/// A rough token count (four characters a token), enough for a demo's usage figures.
fn prompt_tokens(request: &Request) -> u64 {
    let system = text_of(&request.system).chars().count().div_ceil(4) as u64;
    system + request.turns.iter().map(|t| 3 + text_of(&t.parts).chars().count().div_ceil(4) as u64).sum::<u64>()
}

fn usage(request: &Request, completion_tokens: usize) -> Usage {
    Usage::new(prompt_tokens(request), completion_tokens as u64)
}

/// The mock's whole answer.
pub fn answer(request: &Request, vendor_model: &str, id: String) -> Answer {
    let (words, finish) = words(request);
    let n = request.choices.max(1);
    let content = words.concat();
    let outputs = (0..n)
        .map(|index| Output { index, blocks: vec![Block::Text(content.clone())], finish: finish.clone() })
        .collect();
    Answer { id, model: vendor_model.to_owned(), outputs, usage: Some(usage(request, words.len() * n as usize)) }
}

/// The mock's answer as the complete body of an event stream in the client's dialect
/// (`egress`), one word an event.
pub fn stream(request: &Request, vendor_model: &str, id: String, mut egress: Box<dyn Egress>) -> Vec<u8> {
    let (words, finish) = words(request);
    let mut out = Vec::with_capacity(256 * (words.len() + 3));
    egress.event(Event::Start { id: &id, model: vendor_model }, &mut out);
    egress.event(Event::Usage(usage(request, 0)), &mut out);
    egress.event(Event::BlockStart { choice: 0, block: 0, kind: BlockKind::Text }, &mut out);
    for word in &words {
        egress.event(Event::Delta { choice: 0, block: 0, delta: Delta::Text(word) }, &mut out);
    }
    egress.event(Event::BlockStop { choice: 0, block: 0 }, &mut out);
    egress.event(Event::Usage(usage(request, words.len())), &mut out);
    egress.event(Event::Finish { choice: 0, finish }, &mut out);
    egress.complete(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::openai_chat;

    fn request(extra: &str) -> Request {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"system","content":"s"}},{{"role":"user","content":"ping pong"}}]{extra}}}"#
        );
        openai_chat::decode(body.into_bytes()).unwrap()
    }

    fn completion(request: &Request, model: &str, id: &str, created: u64) -> crate::chat::ChatCompletion {
        openai_chat::encode_answer(&answer(request, model, id.to_owned()), created)
    }

    #[test]
    fn completion_echoes_the_last_user_message() {
        let c = completion(&request(""), "echo-1", "chatcmpl-1", 7);
        let text = c.choices[0].message.content.as_deref().unwrap();
        assert!(text.ends_with("You said: ping pong"), "{text}");
        assert_eq!(c.choices[0].finish_reason, crate::chat::FinishReason::Stop);
        assert_eq!((c.model.as_str(), c.created, c.object.as_str()), ("echo-1", 7, "chat.completion"));
        let u = c.usage.unwrap();
        assert_eq!(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    }

    #[test]
    fn max_tokens_cuts_the_answer_with_length() {
        let c = completion(&request(r#","max_tokens":2"#), "echo-1", "x", 0);
        assert_eq!(c.choices[0].finish_reason, crate::chat::FinishReason::Length);
        assert_eq!(c.choices[0].message.content.as_deref(), Some("Hello from"));
    }

    #[test]
    fn stream_deltas_concatenate_to_the_completion_and_end_with_done() {
        let request = request(r#","stream":true,"stream_options":{"include_usage":true}"#);
        let body = stream(&request, "echo-1", "id".into(), Box::new(openai_chat::Stream::new(0, true)));
        let text = String::from_utf8(body).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
        let events: Vec<serde_json::Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let joined: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
        let whole = completion(&request, "echo-1", "id", 0);
        assert_eq!(Some(joined.as_str()), whole.choices[0].message.content.as_deref());
        let last = events.last().unwrap();
        assert_eq!(last["choices"].as_array().unwrap().len(), 0);
        assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
        assert_eq!(events[events.len() - 2]["choices"][0]["finish_reason"], "stop");
    }
}
