//! OpenAI Chat Completions wire types: the canonical request every adapter reads, and the
//! response and stream chunk every adapter produces.
//!
//! The request is parsed once into typed fields; parameters it does not model are kept in
//! `extra` (for adapters to map or report), and the original bytes are kept too, so that a
//! pass-through to an OpenAI-format vendor sends them as they came, with only the model renamed.

use crate::error::GatewayError;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The public model name the client asked for; adapters write the vendor's model instead.
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// The client's own fallbacks (as OpenRouter takes them): public models to try, in order,
    /// after `model`. A gateway parameter, never sent to a vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Every top-level parameter not modelled above, as sent.
    #[serde(skip)]
    pub extra: Map<String, Value>,
    /// The request as it came, and where its `model` value lies in it.
    #[serde(skip)]
    pub raw: RawBody,
}

/// The original bytes of a request, and the byte range of its top-level `model` value.
#[derive(Debug, Clone, Default)]
pub struct RawBody {
    pub bytes: Vec<u8>,
    pub model_span: (usize, usize),
}

/// Parameters that change what a vendor bills beyond the tokens the catalog prices (a faster
/// tier, web searches, audio, predicted outputs): sent only to models whose configuration
/// allows them (`allow_params`).
pub const BILLED_PARAMS: &[&str] = &["service_tier", "web_search_options", "audio", "modalities", "prediction"];

/// Top-level parameters `ChatRequest` models; any other is kept in `extra`.
const MODELLED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "models",
];

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Message {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A message's content: a string, or an array of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text of the content, parts joined without separator; `None` if it has no text.
    pub fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Content::Text(s) => Some(s.as_str().into()),
            Content::Parts(parts) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter_map(|p| match p {
                        ContentPart::Text { text, .. } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                match texts.as_slice() {
                    [] => None,
                    [one] => Some((*one).into()),
                    many => Some(many.concat().into()),
                }
            }
        }
    }
}

// Hand-written so that a string or an array is decoded directly, without `untagged`'s buffering.
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(Content::Parts(parts))
            }
        }
        deserializer.deserialize_any(ContentVisitor)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
        /// Anthropic's prompt-caching marker, accepted on OpenAI-format requests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    InputAudio {
        input_audio: Value,
    },
    File {
        file: Value,
    },
    Refusal {
        refusal: String,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ImageUrl {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: FunctionType,
    pub function: FunctionDefinition,
}

/// The only tool type Chat Completions defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionType {
    Function,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(ToolChoiceMode),
    Named(NamedToolChoice),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    None,
    Auto,
    Required,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    pub kind: FunctionType,
    pub function: FunctionName,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FunctionName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: FunctionType,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl ChatRequest {
    /// Parses and validates a request body. A body that is not JSON is `invalid_json`; a body
    /// that breaks the schema is `invalid_request` naming the offending parameter.
    pub fn parse(body: impl Into<Vec<u8>>) -> Result<ChatRequest, GatewayError> {
        let body = body.into();
        let mut request: ChatRequest = crate::error::parse_body(&body)?;
        request.validate()?;
        // A second, shallow pass: the top-level values as raw slices of the body, for the
        // parameters not modelled and for where `model` lies. A body it cannot read (a member
        // nested deeper than the parser's limit, which the typed pass skipped unread) is
        // refused: its bytes are never sent on.
        let top = crate::error::top_level(&body)?;
        for (key, value) in top {
            if key == "model" {
                let start = value.get().as_ptr() as usize - body.as_ptr() as usize;
                request.raw.model_span = (start, start + value.get().len());
            } else if !MODELLED.contains(&key.as_ref()) {
                let value = serde_json::from_str(value.get()).map_err(|e| {
                    GatewayError::invalid_request(key.as_ref(), format!("Invalid value for '{key}': {e}"))
                })?;
                request.extra.insert(key.into_owned(), value);
            }
        }
        if request.raw.model_span == (0, 0) {
            return Err(GatewayError::invalid_request("model", "'model' must be a non-empty string."));
        }
        request.raw.bytes = body;
        Ok(request)
    }

    fn validate(&self) -> Result<(), GatewayError> {
        if self.model.is_empty() {
            return Err(GatewayError::invalid_request("model", "'model' must be a non-empty string."));
        }
        if self.messages.is_empty() {
            return Err(GatewayError::invalid_request("messages", "'messages' must contain at least one message."));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if m.role == Role::Tool && m.tool_call_id.is_none() {
                return Err(GatewayError::invalid_request(
                    format!("messages[{i}].tool_call_id"),
                    format!("messages[{i}] has role 'tool' and needs 'tool_call_id'."),
                ));
            }
            let needs_content = !matches!(m.role, Role::Assistant);
            if needs_content && m.content.is_none() {
                return Err(GatewayError::invalid_request(
                    format!("messages[{i}].content"),
                    format!("messages[{i}] needs 'content'."),
                ));
            }
        }
        in_range("temperature", self.temperature, 0.0, 2.0)?;
        in_range("top_p", self.top_p, 0.0, 1.0)?;
        if let Some(n) = self.n {
            if !(1..=128).contains(&n) {
                return Err(GatewayError::invalid_request("n", "'n' must be between 1 and 128."));
            }
        }
        for (name, value) in [("max_tokens", self.max_tokens), ("max_completion_tokens", self.max_completion_tokens)] {
            if value == Some(0) {
                return Err(GatewayError::invalid_request(name, format!("'{name}' must be at least 1.")));
            }
        }
        if self.stream_options.is_some() && !self.is_stream() {
            return Err(GatewayError::invalid_request(
                "stream_options",
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            ));
        }
        Ok(())
    }

    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true)
    }
}

fn in_range(name: &str, value: Option<f64>, min: f64, max: f64) -> Result<(), GatewayError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => {
            Err(GatewayError::invalid_request(name, format!("'{name}' must be between {min} and {max}; got {v}.")))
        }
        _ => Ok(()),
    }
}

// ---- Responses ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: FinishReason,
    #[serde(default)]
    pub logprobs: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub role: Role,
    pub content: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A reasoning model's thinking, kept out of `content` (the field DeepSeek and others use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    FunctionCall,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Absent from an embeddings answer's usage.
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// What the vendor bills beyond the counts above (Anthropic's one-hour cache writes and
    /// server tool uses): the gateway's, for the cost, never sent to a client.
    #[serde(skip)]
    pub billed: Billed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the vendor's prompt cache.
    pub cached_tokens: u64,
    /// Prompt tokens written to the vendor's prompt cache (Anthropic bills these apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u64,
}

/// Usage Anthropic bills apart from its token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billed {
    /// Of the prompt tokens written to the cache, those written to its one-hour cache (billed
    /// at twice the input price, not 1.25 times).
    pub cache_write_1h_tokens: u64,
    /// Web searches a server tool made (`usage.server_tool_use.web_search_requests`).
    pub web_search_requests: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        // Saturating: the counts are the vendor's, and a vendor may send any number.
        let total_tokens = prompt_tokens.saturating_add(completion_tokens);
        Self { prompt_tokens, completion_tokens, total_tokens, ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub finish_reason: Option<FinishReason>,
    #[serde(default)]
    pub logprobs: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a streamed tool call: the first for each `index` carries its id and name, the
/// following ones pieces of its arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<FunctionType>,
    pub function: FunctionCallDelta,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// Writes the `chat.completion.chunk` events of one stream. What every chunk repeats (id,
/// object, created, model) is encoded once; each chunk then costs only its own delta, which for
/// the common text delta is one escaped string.
#[derive(Debug, Clone, Default)]
pub struct ChunkWriter {
    /// `data: {"id":..,"object":"chat.completion.chunk","created":..,"model":..,"choices":[`
    head: Vec<u8>,
}

impl ChunkWriter {
    pub fn new(id: &str, created: u64, model: &str) -> Self {
        let mut head = Vec::with_capacity(96 + id.len() + model.len());
        head.extend_from_slice(b"data: {\"id\":");
        let _ = serde_json::to_writer(&mut head, id);
        head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        head.extend_from_slice(created.to_string().as_bytes());
        head.extend_from_slice(b",\"model\":");
        let _ = serde_json::to_writer(&mut head, model);
        head.extend_from_slice(b",\"choices\":[");
        Self { head }
    }

    fn open_choice(&self, out: &mut Vec<u8>, index: u32) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"{\"index\":");
        out.extend_from_slice(index.to_string().as_bytes());
        out.extend_from_slice(b",\"delta\":");
    }

    fn close_choice(out: &mut Vec<u8>, finish_reason: Option<FinishReason>) {
        out.extend_from_slice(b",\"finish_reason\":");
        let _ = serde_json::to_writer(&mut *out, &finish_reason);
        out.extend_from_slice(b",\"logprobs\":null}]}\n\n");
    }

    /// A chunk whose delta is a piece of the answer's text.
    pub fn content(&self, out: &mut Vec<u8>, index: u32, text: &str) {
        self.open_choice(out, index);
        out.extend_from_slice(b"{\"content\":");
        let _ = serde_json::to_writer(&mut *out, text);
        out.push(b'}');
        Self::close_choice(out, None);
    }

    /// A chunk with any delta and, on the last chunk of a choice, its finish reason.
    pub fn delta(&self, out: &mut Vec<u8>, index: u32, delta: &Delta, finish_reason: Option<FinishReason>) {
        self.open_choice(out, index);
        let _ = serde_json::to_writer(&mut *out, delta);
        Self::close_choice(out, finish_reason);
    }

    /// The usage chunk: no choices, the usage of the whole answer.
    pub fn usage(&self, out: &mut Vec<u8>, usage: &Usage) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"],\"usage\":");
        let _ = serde_json::to_writer(&mut *out, usage);
        out.extend_from_slice(b"}\n\n");
    }
}

pub const COMPLETION_OBJECT: &str = "chat.completion";
pub const CHUNK_OBJECT: &str = "chat.completion.chunk";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ChatRequest, GatewayError> {
        ChatRequest::parse(body.as_bytes())
    }

    #[test]
    fn minimal_request_parses() {
        let r = parse(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(r.model, "gpt-4o");
        assert_eq!(r.messages[0].content.as_ref().unwrap().text().unwrap(), "hi");
        assert!(!r.is_stream());
    }

    #[test]
    fn content_parts_tools_and_unknown_parameters_parse() {
        let r = parse(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"metadata":{"a":"b"},
                "messages":[
                  {"role":"system","content":"be brief"},
                  {"role":"user","content":[{"type":"text","text":"what is"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]},
                  {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                  {"role":"tool","tool_call_id":"call_1","content":"42"}],
                "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
                "tool_choice":{"type":"function","function":{"name":"f"}},
                "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}},
                "stop":["\n"]}"#,
        )
        .unwrap();
        assert!(r.is_stream() && r.wants_stream_usage());
        assert_eq!(r.extra["metadata"]["a"], "b");
        assert!(matches!(&r.messages[1].content, Some(Content::Parts(p)) if p.len() == 2));
        assert!(matches!(r.tool_choice, Some(ToolChoice::Named(_))));
        assert!(matches!(r.response_format, Some(ResponseFormat::JsonSchema { .. })));
        assert_eq!(r.stop, Some(Stop::Many(vec!["\n".into()])));
    }

    #[test]
    fn chunk_writer_writes_the_same_json_as_the_chunk_type() {
        let w = ChunkWriter::new("id\"1", 7, "m");
        let mut out = Vec::new();
        w.content(&mut out, 0, "h\u{e9}\n");
        w.delta(&mut out, 1, &Delta::default(), Some(FinishReason::Stop));
        w.usage(&mut out, &Usage::new(1, 2));
        let text = String::from_utf8(out).unwrap();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let chunk = |choices: Vec<ChunkChoice>, usage: Option<Usage>| {
            serde_json::to_value(ChatChunk {
                id: "id\"1".into(),
                object: CHUNK_OBJECT.into(),
                created: 7,
                model: "m".into(),
                choices,
                usage,
            })
            .unwrap()
        };
        let content = Delta { content: Some("h\u{e9}\n".into()), ..Delta::default() };
        assert_eq!(
            events[0],
            chunk(vec![ChunkChoice { index: 0, delta: content, finish_reason: None, logprobs: None }], None)
        );
        let stop =
            ChunkChoice { index: 1, delta: Delta::default(), finish_reason: Some(FinishReason::Stop), logprobs: None };
        assert_eq!(events[1], chunk(vec![stop], None));
        assert_eq!(events[2], chunk(vec![], Some(Usage::new(1, 2))));
    }

    #[test]
    fn not_json_is_invalid_json() {
        let e = parse("{\"model\": ").unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (400, Some("invalid_json")));
        let e = parse("").unwrap_err();
        assert_eq!(e.code.as_deref(), Some("invalid_json"));
    }

    #[test]
    fn schema_errors_name_the_parameter() {
        let e = parse(r#"{"model":"m","messages":[{"role":"wizard","content":"hi"}]}"#).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("messages[0].role")));
        let e = parse(r#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap_err();
        assert!(e.message.contains("model"), "{e}");
        let e = parse(r#"{"model":"m","messages":"hi"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = parse(r#"[1,2]"#).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("invalid_request"));
    }

    #[test]
    fn semantic_errors_name_the_parameter() {
        let cases = [
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#, "model"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#, "temperature"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}"#, "n"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, "max_tokens"),
            (r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#, "messages[0].tool_call_id"),
            (r#"{"model":"m","messages":[{"role":"user"}]}"#, "messages[0].content"),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
                "stream_options",
            ),
        ];
        for (body, param) in cases {
            let e = parse(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
            assert_eq!(e.status, 400);
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_or_too_deep_anywhere_are_refused() {
        let bad =
            b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"metadata\":{\"k\":\"\xff\"}}";
        let e = ChatRequest::parse(&bad[..]).unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (400, Some("invalid_json")));
        let deep = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"metadata":{}{}}}"#,
            "[".repeat(1000),
            "]".repeat(1000)
        );
        let e = ChatRequest::parse(deep.into_bytes()).unwrap_err();
        assert_eq!(e.status, 400);
    }
}
