//! The built-in `mock` provider: answers inside the worker, with no key and no network, so the
//! demo configuration works the moment the gateway starts. It echoes the last user message.

use crate::chat::{
    AssistantMessage, ChatChunk, ChatCompletion, ChatRequest, Choice, ChunkChoice, Delta, FinishReason, Role, Usage,
    CHUNK_OBJECT, COMPLETION_OBJECT,
};
use crate::sse;

const GREETING: &str = "Hello from Switchyard's mock provider.";
const ECHO_LIMIT: usize = 400;

/// The words of the mock's answer and why it stopped.
fn answer(request: &ChatRequest) -> (Vec<String>, FinishReason) {
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .and_then(|m| m.content.as_ref())
        .and_then(|c| c.text().map(|t| t.into_owned()))
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
    let limit = request.max_completion_tokens.or(request.max_tokens).map(|n| n as usize);
    match limit {
        Some(n) if n < words.len() => {
            words.truncate(n);
            (words, FinishReason::Length)
        }
        _ => (words, FinishReason::Stop),
    }
}

/// A rough token count (four characters a token), enough for a demo's usage figures.
fn prompt_tokens(request: &ChatRequest) -> u64 {
    request
        .messages
        .iter()
        .map(|m| 3 + m.content.as_ref().and_then(|c| c.text()).map_or(0, |t| t.chars().count().div_ceil(4)) as u64)
        .sum()
}

fn usage(request: &ChatRequest, completion_tokens: usize) -> Usage {
    Usage::new(prompt_tokens(request), completion_tokens as u64)
}

/// The mock's answer as a complete chat completion.
pub fn completion(request: &ChatRequest, vendor_model: &str, id: String, created: u64) -> ChatCompletion {
    let (words, finish_reason) = answer(request);
    let n = request.n.unwrap_or(1);
    let content = words.concat();
    let choices = (0..n)
        .map(|index| Choice {
            index,
            message: AssistantMessage {
                role: Role::Assistant,
                content: Some(content.clone()),
                refusal: None,
                tool_calls: None,
                reasoning_content: None,
            },
            finish_reason,
            logprobs: None,
        })
        .collect();
    ChatCompletion {
        id,
        object: COMPLETION_OBJECT.to_owned(),
        created,
        model: vendor_model.to_owned(),
        choices,
        usage: Some(usage(request, words.len() * n as usize)),
        system_fingerprint: None,
    }
}

/// The mock's answer as the complete body of an OpenAI event stream, one word a chunk.
pub fn stream(request: &ChatRequest, vendor_model: &str, id: String, created: u64) -> Vec<u8> {
    let (words, finish_reason) = answer(request);
    let chunk = |delta: Delta, finish_reason: Option<FinishReason>| ChatChunk {
        id: id.clone(),
        object: CHUNK_OBJECT.to_owned(),
        created,
        model: vendor_model.to_owned(),
        choices: vec![ChunkChoice { index: 0, delta, finish_reason, logprobs: None }],
        usage: None,
    };
    let mut out = Vec::with_capacity(256 * (words.len() + 3));
    sse::push_event(
        &mut out,
        &chunk(Delta { role: Some(Role::Assistant), content: Some(String::new()), ..Delta::default() }, None),
    );
    for word in &words {
        sse::push_event(&mut out, &chunk(Delta { content: Some(word.clone()), ..Delta::default() }, None));
    }
    sse::push_event(&mut out, &chunk(Delta::default(), Some(finish_reason)));
    if request.wants_stream_usage() {
        let mut last = chunk(Delta::default(), None);
        last.choices.clear();
        last.usage = Some(usage(request, words.len()));
        sse::push_event(&mut out, &last);
    }
    out.extend_from_slice(sse::DONE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &str) -> ChatRequest {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"system","content":"s"}},{{"role":"user","content":"ping pong"}}]{extra}}}"#
        );
        ChatRequest::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn completion_echoes_the_last_user_message() {
        let c = completion(&request(""), "echo-1", "chatcmpl-1".into(), 7);
        let text = c.choices[0].message.content.as_deref().unwrap();
        assert!(text.ends_with("You said: ping pong"), "{text}");
        assert_eq!(c.choices[0].finish_reason, FinishReason::Stop);
        assert_eq!((c.model.as_str(), c.created, c.object.as_str()), ("echo-1", 7, "chat.completion"));
        let u = c.usage.unwrap();
        assert_eq!(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    }

    #[test]
    fn max_tokens_cuts_the_answer_with_length() {
        let c = completion(&request(r#","max_tokens":2"#), "echo-1", "x".into(), 0);
        assert_eq!(c.choices[0].finish_reason, FinishReason::Length);
        assert_eq!(c.choices[0].message.content.as_deref(), Some("Hello from"));
    }

    #[test]
    fn stream_deltas_concatenate_to_the_completion_and_end_with_done() {
        let body =
            stream(&request(r#","stream":true,"stream_options":{"include_usage":true}"#), "echo-1", "id".into(), 0);
        let text = String::from_utf8(body).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
        let events: Vec<serde_json::Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let joined: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
        let whole = completion(&request(""), "echo-1", "id".into(), 0);
        assert_eq!(Some(joined.as_str()), whole.choices[0].message.content.as_deref());
        let last = events.last().unwrap();
        assert_eq!(last["choices"].as_array().unwrap().len(), 0);
        assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
        assert_eq!(events[events.len() - 2]["choices"][0]["finish_reason"], "stop");
    }
}
