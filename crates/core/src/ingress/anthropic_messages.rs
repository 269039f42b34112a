//! Anthropic's Messages API (`POST /v1/messages`) as a client dialect: the request decoded into
//! the canonical [`Request`], and the canonical answer, stream and errors written back in
//! Anthropic's shapes, so that the official SDKs and Claude Code work against the gateway
//! whichever vendor answers.
//!
//! Decisions where Anthropic's contract leaves room, or the canonical model does:
//!
//! - `thinking`: `enabled` (with `budget_tokens` >= 1024) is [`Reasoning::Budget`]; `disabled`
//!   is no reasoning; any other type (`adaptive`, `between_tools`, types Anthropic adds later)
//!   has no canonical form, so the whole `thinking` member is kept in `extra`, as sent, for an
//!   adapter to map or refuse, and `reasoning` stays `None`.
//! - `messages` with role `system` (the newest SDKs have them): those before the first user or
//!   assistant turn join `system`; one after the conversation began has no place in the
//!   canonical turns and is refused (400, naming its `role`).
//! - Blocks only Anthropic can take (`server_tool_use`, `*_tool_result` of server tools,
//!   `mcp_tool_use`, `container_upload`, `compaction`, `tool_reference`, ...) name their type in
//!   `server_tools` and are left out of the turns; an Anthropic target gets the client's bytes.
//! - A `document` whose source is `content` (blocks of its own) becomes a text document of its
//!   text blocks, its images following it as image parts; a `search_result` becomes a text
//!   document titled with its title (its `source` is not kept).
//! - A thinking block's `signature` may be absent or empty (a gateway answer from a vendor that
//!   does not sign thinking is sent back so): `None`.
//! - `max_tokens` must be at least 1 (Anthropic takes 0 to pre-warm its prompt cache, which no
//!   other vendor can do); `citations` of text blocks and documents, and members of blocks the
//!   canonical parts have no field for, are not kept (an Anthropic target has them in the bytes).
//! - Answers: a tool call's `input` is its arguments when they are a JSON object, else `{}`; a
//!   refusal is a text block; an unknown signature is `""`.
//! - Errors ([`error_type`]): the gateway's "every target failed / none available" 503s and a
//!   vendor's overload are 529 `overloaded_error`; a spent budget (`insufficient_quota`, 429 in
//!   OpenAI's terms) is 402 `billing_error`, which the SDKs do not retry.

use crate::canonical::signature::fold;
use crate::canonical::{
    Answer, Block, BlockKind, Delta, Dialect, Egress, Event, Finish, Media, Part, Reasoning, Request, Role, Source,
    ToolChoice, ToolDef, Turn, Usage,
};
use crate::error::GatewayError;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;

// ---- Request ----

/// Top-level parameters the typed pass models; any other is kept in `extra` (and `thinking`
/// too, when its type has no canonical form).
const MODELLED: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "stream",
    "thinking",
];

/// The least `thinking.budget_tokens` Anthropic takes.
pub const MIN_THINKING_BUDGET: u32 = 1_024;

/// The body as the typed pass reads it: required members are `Option`s, so that their absence
/// is reported by their name rather than as a bare "missing field".
#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    messages: Option<Vec<RawMessage>>,
    #[serde(default)]
    system: Option<Content>,
    #[serde(default)]
    tools: Option<Vec<RawTool>>,
    #[serde(default)]
    tool_choice: Option<RawToolChoice>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    metadata: Option<RawMetadata>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    thinking: Option<RawThinking>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawRole {
    User,
    Assistant,
    System,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    role: Option<RawRole>,
    #[serde(default)]
    content: Option<Content>,
}

/// A content block of any type, flat: which fields it must have follows from its `type`, and is
/// checked after the parse with the block's path. Members of no modelled block are skipped.
#[derive(Deserialize)]
struct RawBlock {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    cache_control: Option<Value>,
    #[serde(default)]
    source: Option<SourceField>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    data: Option<String>,
}

/// `content`: a string, an array of blocks, or (in server tools' results) anything else, which
/// only the blocks that need a string or an array refuse.
enum Content {
    Text(String),
    Blocks(Vec<RawBlock>),
    Other,
}

// Hand-written: a string or an array decoded directly, without `untagged`'s buffering (which
// would also lose the path of an error inside a block).
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content blocks")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(Content::Blocks(blocks))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Content, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Content::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Content, E> {
                Ok(Content::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Content, E> {
                Ok(Content::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Content, E> {
                Ok(Content::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Content, E> {
                Ok(Content::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Content, E> {
                Ok(Content::Other)
            }
        }
        deserializer.deserialize_any(ContentVisitor)
    }
}

/// A block's `source`: an object for images and documents; anything else (a search result's
/// is a string, which is not kept) only images and documents refuse.
enum SourceField {
    Object(RawSource),
    Other,
}

impl<'de> Deserialize<'de> for SourceField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SourceVisitor;
        impl<'de> Visitor<'de> for SourceVisitor {
            type Value = SourceField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a source object")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SourceField, E> {
                Ok(SourceField::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SourceField, A::Error> {
                RawSource::deserialize(de::value::MapAccessDeserializer::new(map)).map(SourceField::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SourceField, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(SourceField::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SourceField, E> {
                Ok(SourceField::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SourceField, E> {
                Ok(SourceField::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SourceField, E> {
                Ok(SourceField::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SourceField, E> {
                Ok(SourceField::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<SourceField, E> {
                Ok(SourceField::Other)
            }
        }
        deserializer.deserialize_any(SourceVisitor)
    }
}

#[derive(Deserialize)]
struct RawSource {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    file_id: Option<String>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
struct RawTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
    #[serde(default)]
    cache_control: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct RawToolChoice {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct RawMetadata {
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct RawThinking {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    budget_tokens: Option<u32>,
}

/// Parses and validates a Messages request. A body that is not JSON is `invalid_json`; one that
/// breaks Anthropic's schema is `invalid_request` (400) naming the offending parameter by its
/// path (`messages[2].content[0].source`).
pub fn decode(body: Vec<u8>) -> Result<Request, GatewayError> {
    let raw: Body = crate::error::parse_body(&body)?;
    let mut request = Request { choices: 1, include_usage: true, ..Request::default() };
    let thinking_in_extra = convert(raw, &mut request)?;
    // The shallow pass: the members not modelled, and where `model` lies. A body it cannot
    // read (a member nested past the parser's limit, skipped unread by the typed pass) is
    // refused: its bytes are never sent on.
    let mut model_span = None;
    for (key, value) in crate::error::top_level(&body)? {
        if key == "model" {
            let start = value.get().as_ptr() as usize - body.as_ptr() as usize;
            model_span = Some((start, start + value.get().len()));
        } else if !MODELLED.contains(&key.as_ref()) || (key == "thinking" && thinking_in_extra) {
            let value = serde_json::from_str(value.get())
                .map_err(|e| GatewayError::invalid_request(key.as_ref(), format!("Invalid value for '{key}': {e}")))?;
            request.extra.insert(key.into_owned(), value);
        }
    }
    let Some(model_span) = model_span else {
        return Err(GatewayError::invalid_request("model", "'model' must be a non-empty string."));
    };
    request.source = Source { dialect: Dialect::AnthropicMessages, bytes: body, model_span, ..Source::default() };
    Ok(request)
}

/// Where a block stands, which decides the types it may have.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    System,
    Turn,
    ToolResult,
    /// A document's `content` source.
    Document,
}

impl Place {
    fn describe(self) -> &'static str {
        match self {
            Place::System => "a system prompt",
            Place::Turn => "a message",
            Place::ToolResult => "a tool_result's content",
            Place::Document => "a document's content",
        }
    }
}

/// What the conversion carries from block to block.
struct Context<'r> {
    server_tools: &'r mut Vec<String>,
    /// The names of the tool calls seen so far, by id: a tool result's name.
    tool_names: HashMap<String, String>,
}

fn push_server_tool(server_tools: &mut Vec<String>, kind: &str) {
    if !server_tools.iter().any(|t| t == kind) {
        server_tools.push(kind.to_owned());
    }
}

/// Block types only Anthropic can take back: server tools' calls and results, MCP, containers,
/// compaction, tool search references.
fn anthropic_only(kind: &str) -> bool {
    matches!(
        kind,
        "server_tool_use"
            | "mcp_tool_use"
            | "mcp_tool_result"
            | "mcp_tool_listing"
            | "container_upload"
            | "compaction"
            | "tool_addition"
            | "tool_removal"
            | "tool_reference"
            | "mcp_tool_reference"
            | "mcp_toolset_reference"
            | "browser_state"
            | "fallback"
    ) || (kind.ends_with("_tool_result") && kind != "tool_result")
}

fn required<T>(value: Option<T>, at: &str, field: &str, what: &str) -> Result<T, GatewayError> {
    value.ok_or_else(|| {
        GatewayError::invalid_request(format!("{at}.{field}"), format!("'{at}.{field}' is required for {what}."))
    })
}

/// Fills `request` from the typed body; whether `thinking` is to be kept in `extra`.
fn convert(raw: Body, request: &mut Request) -> Result<bool, GatewayError> {
    match raw.model {
        Some(model) if !model.is_empty() => request.model = model,
        _ => return Err(GatewayError::invalid_request("model", "'model' must be a non-empty string.")),
    }
    match raw.max_tokens {
        None => return Err(GatewayError::invalid_request("max_tokens", "'max_tokens' is required.")),
        Some(0) => return Err(GatewayError::invalid_request("max_tokens", "'max_tokens' must be at least 1.")),
        Some(n) => request.max_output_tokens = Some(n),
    }
    let Some(messages) = raw.messages else {
        return Err(GatewayError::invalid_request("messages", "'messages' is required."));
    };
    if messages.is_empty() {
        return Err(GatewayError::invalid_request("messages", "'messages' must contain at least one message."));
    }
    for (name, value) in [("temperature", raw.temperature), ("top_p", raw.top_p)] {
        if let Some(v) = value {
            if !(0.0..=1.0).contains(&v) {
                return Err(GatewayError::invalid_request(name, format!("'{name}' must be between 0 and 1; got {v}.")));
            }
        }
    }
    request.temperature = raw.temperature;
    request.top_p = raw.top_p;
    request.top_k = raw.top_k;
    request.stop = raw.stop_sequences.unwrap_or_default();
    request.user = raw.metadata.and_then(|m| m.user_id);
    request.stream = raw.stream.unwrap_or(false);

    for (i, tool) in raw.tools.into_iter().flatten().enumerate() {
        let at = format!("tools[{i}]");
        match tool.kind.as_deref() {
            None | Some("custom") => {
                let name = match tool.name {
                    Some(name) if !name.is_empty() => name,
                    _ => {
                        return Err(GatewayError::invalid_request(
                            format!("{at}.name"),
                            format!("'{at}.name' must be a non-empty string."),
                        ))
                    }
                };
                let schema = required(tool.input_schema, &at, "input_schema", "a custom tool")?;
                if !schema.is_object() {
                    return Err(GatewayError::invalid_request(
                        format!("{at}.input_schema"),
                        format!("'{at}.input_schema' must be a JSON schema object."),
                    ));
                }
                request.tools.push(ToolDef {
                    name,
                    description: tool.description,
                    parameters: Some(schema),
                    strict: tool.strict,
                    cache: tool.cache_control,
                });
            }
            Some(server) => push_server_tool(&mut request.server_tools, server),
        }
    }

    let mut context = Context { server_tools: &mut request.server_tools, tool_names: HashMap::new() };
    if let Some(system) = raw.system {
        content_parts(system, "system", Place::System, &mut context, &mut request.system)?;
    }
    for (i, message) in messages.into_iter().enumerate() {
        let at = format!("messages[{i}]");
        let Some(role) = message.role else {
            return Err(GatewayError::invalid_request(format!("{at}.role"), format!("'{at}.role' is required.")));
        };
        let Some(content) = message.content else {
            return Err(GatewayError::invalid_request(format!("{at}.content"), format!("'{at}.content' is required.")));
        };
        let at = format!("{at}.content");
        match role {
            RawRole::System if request.turns.is_empty() => {
                content_parts(content, &at, Place::System, &mut context, &mut request.system)?;
            }
            RawRole::System => {
                return Err(GatewayError::invalid_request(
                    format!("messages[{i}].role"),
                    format!(
                        "messages[{i}] is a system message after the conversation began; this gateway takes system \
                         messages only before the first user or assistant message (or in 'system')."
                    ),
                ));
            }
            RawRole::User | RawRole::Assistant => {
                let mut parts = Vec::new();
                content_parts(content, &at, Place::Turn, &mut context, &mut parts)?;
                let role = if role == RawRole::User { Role::User } else { Role::Assistant };
                request.turns.push(Turn { role, parts });
            }
        }
    }

    if let Some(choice) = raw.tool_choice {
        let disable_parallel = choice.disable_parallel_tool_use == Some(true);
        request.tool_choice = Some(match choice.kind.as_deref() {
            Some("auto") => ToolChoice::Auto,
            Some("any") => ToolChoice::Required,
            Some("none") => ToolChoice::None,
            Some("tool") => match choice.name {
                Some(name) if !name.is_empty() => ToolChoice::Named(name),
                _ => {
                    return Err(GatewayError::invalid_request(
                        "tool_choice.name",
                        "'tool_choice.name' is required when 'tool_choice.type' is 'tool'.",
                    ))
                }
            },
            Some(other) => {
                return Err(GatewayError::invalid_request(
                    "tool_choice.type",
                    format!("'tool_choice.type' is one of auto, any, tool, none; got '{other}'."),
                ))
            }
            None => return Err(GatewayError::invalid_request("tool_choice.type", "'tool_choice.type' is required.")),
        });
        if disable_parallel && request.tool_choice != Some(ToolChoice::None) {
            request.parallel_tool_calls = Some(false);
        }
    }

    let mut thinking_in_extra = false;
    if let Some(thinking) = raw.thinking {
        match thinking.kind.as_deref() {
            Some("enabled") => match thinking.budget_tokens {
                Some(budget) if budget >= MIN_THINKING_BUDGET => request.reasoning = Some(Reasoning::Budget(budget)),
                Some(budget) => {
                    return Err(GatewayError::invalid_request(
                        "thinking.budget_tokens",
                        format!("'thinking.budget_tokens' must be at least {MIN_THINKING_BUDGET}; got {budget}."),
                    ))
                }
                None => {
                    return Err(GatewayError::invalid_request(
                        "thinking.budget_tokens",
                        "'thinking.budget_tokens' is required when 'thinking.type' is 'enabled'.",
                    ))
                }
            },
            Some("disabled") => {}
            // adaptive, between_tools, and what Anthropic adds: no canonical form (see above).
            Some(_) => thinking_in_extra = true,
            None => return Err(GatewayError::invalid_request("thinking.type", "'thinking.type' is required.")),
        }
    }
    Ok(thinking_in_extra)
}

/// The parts of a `content` (a message's, the system prompt's, a tool result's) at `at`.
fn content_parts(
    content: Content,
    at: &str,
    place: Place,
    context: &mut Context,
    out: &mut Vec<Part>,
) -> Result<(), GatewayError> {
    match content {
        Content::Text(text) => {
            // An empty system prompt or tool result is none; a message's string is one text
            // block, empty or not, as sent.
            if !(text.is_empty() && matches!(place, Place::System | Place::ToolResult)) {
                out.push(Part::text(text));
            }
        }
        Content::Blocks(blocks) => {
            out.reserve(blocks.len());
            for (i, block) in blocks.into_iter().enumerate() {
                block_parts(block, &format!("{at}[{i}]"), place, context, out)?;
            }
        }
        Content::Other => {
            return Err(GatewayError::invalid_request(
                at,
                format!("'{at}' must be a string or an array of content blocks."),
            ))
        }
    }
    Ok(())
}

fn misplaced(at: &str, kind: &str, place: Place) -> GatewayError {
    GatewayError::invalid_request(
        format!("{at}.type"),
        format!("A '{kind}' block cannot be in {} ('{at}').", place.describe()),
    )
}

fn block_parts(
    block: RawBlock,
    at: &str,
    place: Place,
    context: &mut Context,
    out: &mut Vec<Part>,
) -> Result<(), GatewayError> {
    let Some(kind) = block.kind.as_deref() else {
        return Err(GatewayError::invalid_request(format!("{at}.type"), format!("'{at}.type' is required.")));
    };
    match kind {
        "text" => {
            let text = required(block.text, at, "text", "a text block")?;
            out.push(Part::Text { text, cache: block.cache_control });
        }
        "image" if place != Place::System => {
            let media = image_media(block.source, at)?;
            out.push(Part::Image { media, detail: None, cache: block.cache_control });
        }
        "document" if matches!(place, Place::Turn | Place::ToolResult) => document_parts(block, at, out)?,
        "search_result" if matches!(place, Place::Turn | Place::ToolResult) => {
            let texts = match block.content {
                Some(Content::Blocks(blocks)) => joined_texts(blocks, &format!("{at}.content"))?,
                Some(Content::Text(text)) => text,
                _ => {
                    return Err(GatewayError::invalid_request(
                        format!("{at}.content"),
                        format!("'{at}.content' must be an array of text blocks."),
                    ))
                }
            };
            out.push(Part::Document { media: Media::Text(texts), title: block.title, cache: block.cache_control });
        }
        "tool_use" if place == Place::Turn => {
            let id = required(block.id, at, "id", "a tool_use block")?;
            let name = required(block.name, at, "name", "a tool_use block")?;
            let input = required(block.input, at, "input", "a tool_use block")?;
            if !input.is_object() {
                return Err(GatewayError::invalid_request(
                    format!("{at}.input"),
                    format!("'{at}.input' must be an object."),
                ));
            }
            let (id, signature) = crate::canonical::signature::unfold(&id);
            let id = id.to_owned();
            context.tool_names.insert(id.clone(), name.clone());
            out.push(Part::ToolCall { id, name, arguments: input.to_string(), signature, cache: block.cache_control });
        }
        "tool_result" if place == Place::Turn => {
            let id = required(block.tool_use_id, at, "tool_use_id", "a tool_result block")?;
            let id = crate::canonical::signature::call_id(&id).to_owned();
            let mut content = Vec::new();
            if let Some(c) = block.content {
                content_parts(c, &format!("{at}.content"), Place::ToolResult, context, &mut content)?;
            }
            let name = context.tool_names.get(&id).cloned();
            out.push(Part::ToolResult {
                id,
                name,
                content,
                is_error: block.is_error.unwrap_or(false),
                cache: block.cache_control,
            });
        }
        "thinking" if place == Place::Turn => {
            let text = required(block.thinking, at, "thinking", "a thinking block")?;
            let signature = block.signature.filter(|s| !s.is_empty());
            out.push(Part::Thinking { text, signature });
        }
        "redacted_thinking" if place == Place::Turn => {
            let data = required(block.data, at, "data", "a redacted_thinking block")?;
            out.push(Part::RedactedThinking { data });
        }
        kind if anthropic_only(kind) && matches!(place, Place::Turn | Place::ToolResult) => {
            push_server_tool(context.server_tools, kind);
        }
        "image" | "document" | "search_result" | "tool_use" | "tool_result" | "thinking" | "redacted_thinking" => {
            return Err(misplaced(at, kind, place))
        }
        kind if anthropic_only(kind) => return Err(misplaced(at, kind, place)),
        other => {
            return Err(GatewayError::invalid_request(
                format!("{at}.type"),
                format!("'{at}.type' is not a content block type this API has: '{other}'."),
            ))
        }
    }
    Ok(())
}

/// The texts of text blocks (a search result's content), joined by blank lines.
fn joined_texts(blocks: Vec<RawBlock>, at: &str) -> Result<String, GatewayError> {
    let mut joined = String::new();
    for (i, block) in blocks.into_iter().enumerate() {
        let at = format!("{at}[{i}]");
        if block.kind.as_deref() != Some("text") {
            return Err(GatewayError::invalid_request(format!("{at}.type"), format!("'{at}' must be a text block.")));
        }
        if !joined.is_empty() {
            joined.push_str("\n\n");
        }
        joined.push_str(&required(block.text, &at, "text", "a text block")?);
    }
    Ok(joined)
}

fn source_object(source: Option<SourceField>, at: &str) -> Result<RawSource, GatewayError> {
    match source {
        Some(SourceField::Object(source)) => Ok(source),
        None => Err(GatewayError::invalid_request(format!("{at}.source"), format!("'{at}.source' is required."))),
        Some(_) => {
            Err(GatewayError::invalid_request(format!("{at}.source"), format!("'{at}.source' must be an object.")))
        }
    }
}

/// The media of a base64, url or file source (what images and documents share).
fn common_media(source: &mut RawSource, kind: &str, at: &str) -> Result<Option<Media>, GatewayError> {
    let at = format!("{at}.source");
    Ok(Some(match kind {
        "base64" => Media::Base64 {
            media_type: required(source.media_type.take(), &at, "media_type", "a base64 source")?,
            data: required(source.data.take(), &at, "data", "a base64 source")?,
        },
        "url" => Media::Url(required(source.url.take(), &at, "url", "a url source")?),
        "file" => Media::FileId(required(source.file_id.take(), &at, "file_id", "a file source")?),
        _ => return Ok(None),
    }))
}

fn unknown_source(at: &str, kind: Option<&str>, allowed: &str) -> GatewayError {
    let param = format!("{at}.source.type");
    match kind {
        Some(kind) => {
            GatewayError::invalid_request(param, format!("'{at}.source.type' is one of {allowed}; got '{kind}'."))
        }
        None => GatewayError::invalid_request(param.clone(), format!("'{param}' is required.")),
    }
}

fn image_media(source: Option<SourceField>, at: &str) -> Result<Media, GatewayError> {
    let mut source = source_object(source, at)?;
    let kind = source.kind.take();
    match kind.as_deref() {
        Some(k) => {
            common_media(&mut source, k, at)?.ok_or_else(|| unknown_source(at, kind.as_deref(), "base64, url, file"))
        }
        None => Err(unknown_source(at, None, "")),
    }
}

fn document_parts(block: RawBlock, at: &str, out: &mut Vec<Part>) -> Result<(), GatewayError> {
    let mut source = source_object(block.source, at)?;
    let kind = source.kind.take();
    let (title, cache) = (block.title, block.cache_control);
    let media = match kind.as_deref() {
        Some("base64") => {
            if let Some(media_type) = source.media_type.as_deref() {
                if media_type != "application/pdf" {
                    return Err(GatewayError::invalid_request(
                        format!("{at}.source.media_type"),
                        format!("A base64 document is a PDF: '{at}.source.media_type' must be 'application/pdf'."),
                    ));
                }
            }
            common_media(&mut source, "base64", at)?
        }
        Some("text") => {
            if let Some(media_type) = source.media_type.as_deref() {
                if media_type != "text/plain" {
                    return Err(GatewayError::invalid_request(
                        format!("{at}.source.media_type"),
                        format!("'{at}.source.media_type' of a text document must be 'text/plain'."),
                    ));
                }
            }
            Some(Media::Text(required(source.data.take(), &format!("{at}.source"), "data", "a text source")?))
        }
        Some("content") => {
            // Blocks of its own: their text is the document, their images follow it.
            let at_content = format!("{at}.source.content");
            let mut parts = Vec::new();
            let mut ignored = Vec::new();
            let mut context = Context { server_tools: &mut ignored, tool_names: HashMap::new() };
            match source.content.take() {
                Some(content) => content_parts(content, &at_content, Place::Document, &mut context, &mut parts)?,
                None => {
                    return Err(GatewayError::invalid_request(
                        at_content.clone(),
                        format!("'{at_content}' is required."),
                    ))
                }
            }
            let mut text = String::new();
            let mut images = Vec::new();
            for part in parts {
                match part {
                    Part::Text { text: t, .. } => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(&t);
                    }
                    image => images.push(image),
                }
            }
            if !text.is_empty() || images.is_empty() {
                out.push(Part::Document { media: Media::Text(text), title, cache });
            }
            out.extend(images);
            return Ok(());
        }
        Some(k @ ("url" | "file")) => common_media(&mut source, k, at)?,
        _ => None,
    };
    let media = media.ok_or_else(|| unknown_source(at, kind.as_deref(), "base64, text, content, url, file"))?;
    out.push(Part::Document { media, title, cache });
    Ok(())
}

// ---- Answer ----

/// Anthropic's `stop_reason` for a finish.
pub fn stop_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::StopSequence(_) => "stop_sequence",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
        Finish::ContentFilter => "refusal",
    }
}

/// The stop sequence a finish names, if any.
pub fn stop_sequence(finish: &Finish) -> Option<&str> {
    match finish {
        Finish::StopSequence(sequence) => sequence.as_deref(),
        _ => None,
    }
}

/// Anthropic's usage object. `input_tokens` leaves out the tokens read from and written to the
/// prompt cache, which the canonical `prompt_tokens` counts (taken off, saturating).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageUsage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

impl MessageUsage {
    pub fn of(usage: Option<&Usage>) -> Self {
        let Some(usage) = usage else { return Self::default() };
        let details = usage.prompt_tokens_details.unwrap_or_default();
        let cache_read = details.cached_tokens;
        let cache_creation = details.cache_creation_tokens.unwrap_or(0);
        Self {
            input_tokens: usage.prompt_tokens.saturating_sub(cache_read).saturating_sub(cache_creation),
            cache_creation_input_tokens: cache_creation,
            cache_read_input_tokens: cache_read,
            output_tokens: usage.completion_tokens,
        }
    }
}

/// The usage as Anthropic's JSON object (zeros when there is none).
pub fn usage_json(usage: Option<&Usage>) -> Value {
    serde_json::to_value(MessageUsage::of(usage)).unwrap_or(Value::Null)
}

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<ContentOut<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'a str>,
    usage: MessageUsage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentOut<'a> {
    Text { text: &'a str },
    Thinking { thinking: &'a str, signature: &'a str },
    RedactedThinking { data: &'a str },
    ToolUse { id: std::borrow::Cow<'a, str>, name: &'a str, input: Value },
}

/// A tool call's arguments as `input`: the object they are, `{}` when empty, not JSON, or not
/// an object (Anthropic's `input` is always an object).
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::Object(Map::new()),
    }
}

/// An id of `prefix` derived from `seed`, for what the vendor left without one.
fn derived_id(prefix: &str, seed: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("switchyard:{prefix}:{seed}").as_bytes());
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    for byte in &digest[..12] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// The Message JSON of a whole answer: its first output's blocks, why it stopped, its usage.
/// An answer without outputs is a message without content that ended its turn.
pub fn encode_answer(answer: &Answer) -> Vec<u8> {
    let output = answer.outputs.first();
    let id = if answer.id.is_empty() { derived_id("msg_", &answer.model) } else { answer.id.clone() };
    let mut content = Vec::with_capacity(output.map_or(0, |o| o.blocks.len()));
    for (i, block) in output.map(|o| o.blocks.as_slice()).unwrap_or_default().iter().enumerate() {
        content.push(match block {
            Block::Text(text) | Block::Refusal(text) => ContentOut::Text { text },
            Block::Thinking { text, signature } => {
                ContentOut::Thinking { thinking: text, signature: signature.as_deref().unwrap_or("") }
            }
            Block::RedactedThinking(data) => ContentOut::RedactedThinking { data },
            Block::ToolCall { id: call_id, name, arguments, signature } => ContentOut::ToolUse {
                id: match (call_id.is_empty(), signature) {
                    (true, _) => fold(&derived_id("toolu_", &format!("{id}:{i}")), signature.as_deref()).into(),
                    (false, None) => call_id.as_str().into(),
                    (false, Some(signature)) => fold(call_id, Some(signature)).into(),
                },
                name,
                input: tool_input(arguments),
            },
        });
    }
    let finish = output.map(|o| &o.finish).unwrap_or(&Finish::Stop);
    let message = MessageOut {
        id: &id,
        kind: "message",
        role: "assistant",
        model: if answer.model.is_empty() { "unknown" } else { &answer.model },
        content,
        stop_reason: Some(stop_reason(finish)),
        stop_sequence: stop_sequence(finish),
        usage: MessageUsage::of(answer.usage.as_ref()),
    };
    // Serializing strings and values into a Vec cannot fail.
    serde_json::to_vec(&message).unwrap_or_default()
}

// ---- Errors ----

/// The status and `type` an error has in Anthropic's terms. The gateway's "every target failed
/// or is out of service" (503) and a vendor's overload are Anthropic's 529 `overloaded_error`,
/// which its SDKs retry; a spent budget (`insufficient_quota`, which OpenAI answers with 429)
/// is Anthropic's 402 `billing_error`, which they do not retry.
pub fn error_type(error: &GatewayError) -> (u16, &'static str) {
    let code = error.code.as_deref().unwrap_or("");
    if matches!(code, "all_targets_failed" | "no_target_available" | "upstream_overloaded") && error.status >= 500 {
        return (529, "overloaded_error");
    }
    if error.kind == "insufficient_quota" {
        return (402, "billing_error");
    }
    match error.status {
        400 => (400, "invalid_request_error"),
        401 => (401, "authentication_error"),
        402 => (402, "billing_error"),
        403 => (403, "permission_error"),
        404 => (404, "not_found_error"),
        408 => (408, "timeout_error"),
        413 => (413, "request_too_large"),
        429 => (429, "rate_limit_error"),
        504 => (504, "timeout_error"),
        529 => (529, "overloaded_error"),
        status @ 405..=499 => (status, "invalid_request_error"),
        status @ 500..=599 => (status, "api_error"),
        // Not an error status: the gateway's own fault.
        _ => (500, "api_error"),
    }
}

/// The message of an error in Anthropic's body: the gateway's, with its code (which Anthropic's
/// body has no field for) and the parameter it names.
fn error_message(error: &GatewayError) -> String {
    let mut message = error.message.clone();
    match (error.code.as_deref(), error.param.as_deref()) {
        (Some(code), Some(param)) if !param.is_empty() => message.push_str(&format!(" ({code}: {param})")),
        (Some(code), _) => message.push_str(&format!(" ({code})")),
        (None, Some(param)) if !param.is_empty() => message.push_str(&format!(" ({param})")),
        _ => {}
    }
    message
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorInner<'a>,
}

#[derive(Serialize)]
struct ErrorInner<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

/// Anthropic's error body `{"type":"error","error":{"type","message"}}` and the status it goes
/// with. The worker adds `request_id`.
pub fn error_body(error: &GatewayError) -> (u16, Vec<u8>) {
    let (status, kind) = error_type(error);
    let message = error_message(error);
    let body = ErrorOut { kind: "error", error: ErrorInner { kind, message: &message } };
    (status, serde_json::to_vec(&body).unwrap_or_default())
}

// ---- Stream ----

/// The kind of the block open in the client's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    ToolUse,
    RedactedThinking,
}

#[derive(Debug)]
struct OpenBlock {
    /// The canonical block index (choice 0) it was opened for.
    block: u32,
    /// Its index in the client's stream.
    index: u32,
    kind: Open,
    /// A thinking block's signature, written just before its stop (where Anthropic has it).
    signature: String,
}

/// Writes canonical stream events as Anthropic's event stream, upholding its grammar whatever
/// the events:
///
/// `message_start` (exactly one, with empty content, `stop_reason: null` and the usage known by
/// then: it is written lazily, at the first block or the end), `ping`, then each block as
/// `content_block_start` / its deltas / `content_block_stop`, numbered from 0 in the order
/// written, then at [`Egress::complete`] one `message_delta` (stop reason, usage) and
/// `message_stop`; or, at [`Egress::fail`], an `error` event and nothing after it.
///
/// Only choice 0 is written. Where the events break their own grammar:
/// - a `BlockStart` while a block is open closes the open one first (and a `BlockStart` for an
///   index already seen opens a new block all the same);
/// - a `BlockStop` for a block not open is dropped;
/// - a text or thinking delta for the open block when that block is of another kind closes it
///   and opens a block of the delta's kind; one for a block never started does the same
///   (closing the open block, if any); a signature or tool-arguments delta that matches no open
///   block of its kind is dropped (it cannot open one: a tool_use needs an id and a name);
/// - a delta for a block already closed is dropped;
/// - empty deltas are dropped (never an empty `partial_json`); a thinking block's signature
///   pieces are joined and written as one `signature_delta` just before its stop;
/// - a `Start` once `message_start` is out, or a second one, is ignored; a tool call without an
///   id gets one derived from the seed; `complete` closes an open block; nothing is written
///   after `complete` or `fail`.
///
/// Tool arguments go out as they come, unchecked (no vendor text is held back): broken JSON
/// from a vendor reaches the client broken, where [`encode_answer`] would write `{}`.
///
/// If the end comes before `Start` (no vendor id), `message_start` has an id derived from the
/// stream's seed ([`Stream::with_seed`]) and model `unknown`. [`Stream::ping`] writes keepalives.
#[derive(Debug)]
pub struct Stream {
    seed: String,
    id: Option<String>,
    model: Option<String>,
    started: bool,
    usage: Option<Usage>,
    open: Option<OpenBlock>,
    /// The highest canonical block index of choice 0 seen so far.
    seen: Option<u32>,
    /// The index the next block gets in the client's stream.
    next: u32,
    finish: Option<Finish>,
    done: bool,
}

impl Default for Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl Stream {
    pub fn new() -> Self {
        Self::with_seed("")
    }

    /// A stream whose fallback ids (for a message or tool call the vendor left without one)
    /// derive from `seed`: the worker's request id makes them unique.
    pub fn with_seed(seed: &str) -> Self {
        Self {
            seed: seed.to_owned(),
            id: None,
            model: None,
            started: false,
            usage: None,
            open: None,
            seen: None,
            next: 0,
            finish: None,
            done: false,
        }
    }

    /// Whether the stream has ended (`complete` or `fail`).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A `ping` event, for the worker to keep a quiet stream alive (a vendor thinking before
    /// its first block: `message_start` waits for it). Pings are valid anywhere before the end,
    /// before `message_start` too, and every SDK skips them; after the end nothing is written.
    pub fn ping(&self, out: &mut Vec<u8>) {
        if !self.done {
            out.extend_from_slice(PING);
        }
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = match &self.id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => derived_id("msg_", &self.seed),
        };
        let model = match self.model.as_deref() {
            Some(model) if !model.is_empty() => model,
            _ => "unknown",
        };
        #[derive(Serialize)]
        struct Start<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            message: MessageOut<'a>,
        }
        let message = MessageOut {
            id: &id,
            kind: "message",
            role: "assistant",
            model,
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: MessageUsage::of(self.usage.as_ref()),
        };
        write_event(out, "message_start", &Start { kind: "message_start", message });
        out.extend_from_slice(PING);
    }

    fn open_block(&mut self, block: u32, kind: &BlockKind<'_>, out: &mut Vec<u8>) {
        self.close_block(out);
        self.ensure_started(out);
        let index = self.next;
        self.next = self.next.saturating_add(1);
        self.seen = Some(self.seen.map_or(block, |seen| seen.max(block)));
        out.extend_from_slice(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":");
        out.extend_from_slice(index.to_string().as_bytes());
        out.extend_from_slice(b",\"content_block\":");
        let open = match kind {
            BlockKind::Text => {
                out.extend_from_slice(br#"{"type":"text","text":""}"#);
                Open::Text
            }
            BlockKind::Thinking => {
                out.extend_from_slice(br#"{"type":"thinking","thinking":"","signature":""}"#);
                Open::Thinking
            }
            BlockKind::RedactedThinking { data } => {
                out.extend_from_slice(br#"{"type":"redacted_thinking","data":"#);
                let _ = serde_json::to_writer(&mut *out, data);
                out.push(b'}');
                Open::RedactedThinking
            }
            BlockKind::ToolCall { id, name, signature } => {
                out.extend_from_slice(br#"{"type":"tool_use","id":"#);
                if id.is_empty() {
                    let seed = format!("{}:{}:{index}", self.seed, self.id.as_deref().unwrap_or(""));
                    let _ = serde_json::to_writer(&mut *out, &fold(&derived_id("toolu_", &seed), *signature));
                } else if signature.is_some() {
                    let _ = serde_json::to_writer(&mut *out, &fold(id, *signature));
                } else {
                    let _ = serde_json::to_writer(&mut *out, id);
                }
                out.extend_from_slice(br#","name":"#);
                let _ = serde_json::to_writer(&mut *out, name);
                out.extend_from_slice(br#","input":{}}"#);
                Open::ToolUse
            }
        };
        out.extend_from_slice(b"}\n\n");
        self.open = Some(OpenBlock { block, index, kind: open, signature: String::new() });
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        let Some(open) = self.open.take() else { return };
        if open.kind == Open::Thinking && !open.signature.is_empty() {
            write_delta(out, open.index, "signature_delta", "signature", &open.signature);
        }
        out.extend_from_slice(b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":");
        out.extend_from_slice(open.index.to_string().as_bytes());
        out.extend_from_slice(b"}\n\n");
    }

    fn delta(&mut self, block: u32, delta: Delta<'_>, out: &mut Vec<u8>) {
        let (kind, piece) = match delta {
            Delta::Text(t) => (Open::Text, t),
            Delta::Thinking(t) => (Open::Thinking, t),
            Delta::Signature(s) => (Open::Thinking, s),
            Delta::ToolArguments(a) => (Open::ToolUse, a),
        };
        if piece.is_empty() {
            return;
        }
        let is_signature = matches!(delta, Delta::Signature(_));
        let open_here = self.open.as_ref().is_some_and(|o| o.block == block);
        if !open_here && self.seen.is_some_and(|seen| block <= seen) {
            return; // a block already closed
        }
        if !self.open.as_ref().is_some_and(|o| o.block == block && o.kind == kind) {
            // Not open, or open as another kind: a new block, if the delta can make one.
            match (kind, is_signature) {
                (Open::Text, _) => self.open_block(block, &BlockKind::Text, out),
                (Open::Thinking, false) => self.open_block(block, &BlockKind::Thinking, out),
                _ => return,
            }
        }
        let Some(open) = self.open.as_mut() else { return };
        match delta {
            Delta::Text(text) => write_delta(out, open.index, "text_delta", "text", text),
            Delta::Thinking(thinking) => write_delta(out, open.index, "thinking_delta", "thinking", thinking),
            Delta::Signature(signature) => open.signature.push_str(signature),
            Delta::ToolArguments(json) => write_delta(out, open.index, "input_json_delta", "partial_json", json),
        }
    }
}

const PING: &[u8] = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";

fn write_event(out: &mut Vec<u8>, name: &str, data: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serializing the gateway's own types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// A `content_block_delta`: `{"type":"content_block_delta","index":i,"delta":{"type":kind,field:value}}`.
fn write_delta(out: &mut Vec<u8>, index: u32, kind: &str, field: &str, value: &str) {
    out.extend_from_slice(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":");
    out.extend_from_slice(index.to_string().as_bytes());
    out.extend_from_slice(b",\"delta\":{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":");
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"}}\n\n");
}

impl Egress for Stream {
    /// Anthropic's own keep-alive, valid anywhere in its stream.
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        self.ping(out);
    }

    fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match event {
            Event::Start { id, model } => {
                if !self.started && self.id.is_none() {
                    self.id = Some(id.to_owned());
                    self.model = Some(model.to_owned());
                }
            }
            Event::BlockStart { choice: 0, block, kind } => self.open_block(block, &kind, out),
            Event::Delta { choice: 0, block, delta } => self.delta(block, delta, out),
            Event::BlockStop { choice: 0, block } => {
                if self.open.as_ref().is_some_and(|o| o.block == block) {
                    self.close_block(out);
                }
            }
            Event::Finish { choice: 0, finish } => self.finish = Some(finish),
            Event::Usage(usage) => self.usage = Some(usage),
            // Other choices: Anthropic's messages have one.
            Event::BlockStart { .. } | Event::Delta { .. } | Event::BlockStop { .. } | Event::Finish { .. } => {}
        }
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.close_block(out);
        self.ensure_started(out);
        self.done = true;
        let finish = self.finish.take().unwrap_or_default();
        #[derive(Serialize)]
        struct MessageDelta<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            delta: StopDelta<'a>,
            usage: MessageUsage,
        }
        #[derive(Serialize)]
        struct StopDelta<'a> {
            stop_reason: &'static str,
            stop_sequence: Option<&'a str>,
        }
        let delta = MessageDelta {
            kind: "message_delta",
            delta: StopDelta { stop_reason: stop_reason(&finish), stop_sequence: stop_sequence(&finish) },
            usage: MessageUsage::of(self.usage.as_ref()),
        };
        write_event(out, "message_delta", &delta);
        out.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }

    fn fail(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.ensure_started(out);
        self.done = true;
        let (_, kind) = error_type(error);
        let message = error_message(error);
        write_event(out, "error", &ErrorOut { kind: "error", error: ErrorInner { kind, message: &message } });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::Output;
    use crate::chat::PromptTokensDetails;
    use proptest::prelude::*;
    use serde_json::json;

    const CLAUDE_CODE: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ingress/anthropic/claude-code-request.json"));
    const GOLDEN_STREAM: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ingress/anthropic/stream-thinking-tool.sse"));

    fn decode_str(body: &str) -> Result<Request, GatewayError> {
        decode(body.as_bytes().to_vec())
    }

    fn ephemeral() -> Option<Value> {
        Some(json!({"type": "ephemeral"}))
    }

    fn usage(prompt: u64, completion: u64, cache_read: u64, cache_write: Option<u64>) -> Usage {
        let mut usage = Usage::new(prompt, completion);
        usage.prompt_tokens_details =
            Some(PromptTokensDetails { cached_tokens: cache_read, cache_creation_tokens: cache_write });
        usage
    }

    // ---- decode ----

    #[test]
    fn a_claude_code_request_decodes_part_by_part() {
        let r = decode_str(CLAUDE_CODE).unwrap();
        assert_eq!(r.model, "claude-sonnet-4-5-20250929");
        assert_eq!(r.max_output_tokens, Some(32_000));
        assert_eq!(r.reasoning, Some(Reasoning::Budget(31_999)));
        assert_eq!(r.temperature, Some(1.0));
        assert!(r.stream && r.include_usage);
        assert_eq!(r.choices, 1);
        assert!(r.user.as_deref().unwrap().starts_with("user_2f8a9c1e"));
        assert_eq!(r.extra.keys().collect::<Vec<_>>(), ["context_management"]);
        assert_eq!(r.extra["context_management"]["edits"][0]["type"], "clear_thinking_20251015");
        assert_eq!(r.server_tools, ["web_search_20250305"]);

        // System blocks, each with its cache marker as sent.
        assert_eq!(r.system.len(), 2);
        assert_eq!(
            r.system[0],
            Part::Text { text: "You are Claude Code, Anthropic's official CLI for Claude.".into(), cache: ephemeral() }
        );
        assert!(
            matches!(&r.system[1], Part::Text { cache: Some(c), .. } if c == &json!({"type":"ephemeral","ttl":"1h"}))
        );

        // Tools: three custom ones, the last with a cache marker; the server tool is not a ToolDef.
        assert_eq!(r.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["Bash", "Read", "Edit"]);
        assert_eq!(r.tools[0].parameters.as_ref().unwrap()["required"], json!(["command"]));
        assert!(r.tools[0].description.as_deref().unwrap().starts_with("Executes a given bash command"));
        assert_eq!((r.tools[0].cache.as_ref(), r.tools[2].cache.clone()), (None, ephemeral()));

        // Seven turns, as sent.
        let roles: Vec<Role> = r.turns.iter().map(|t| t.role).collect();
        use Role::{Assistant as A, User as U};
        assert_eq!(roles, [U, A, U, A, U, A, U]);

        let t = &r.turns[0].parts;
        assert_eq!(t.len(), 2);
        assert!(matches!(&t[0], Part::Text { text, cache: None } if text.starts_with("<system-reminder>")));
        assert!(matches!(&t[1], Part::Text { cache, .. } if *cache == ephemeral()));

        let t = &r.turns[1].parts;
        assert!(matches!(&t[0], Part::Thinking { text, signature: Some(s) }
            if text.starts_with("The user wants") && s.starts_with("EqQBCkYIBxgCKkDx")));
        assert_eq!(t[1], Part::text("I'll run the test suite to see what fails."));
        let Part::ToolCall { id, name, arguments, cache, .. } = &t[2] else { panic!("{:?}", t[2]) };
        assert_eq!((id.as_str(), name.as_str(), cache), ("toolu_01A09q90qw90lq917835lq9", "Bash", &None));
        let args: Value = serde_json::from_str(arguments).unwrap();
        assert_eq!(
            args,
            json!({"command": "cargo test -p switchyard-core 2>&1 | tail -40", "description": "Run the core tests"})
        );

        let Part::ToolResult { id, name, content, is_error, cache } = &r.turns[2].parts[0] else { panic!() };
        assert_eq!(
            (id.as_str(), name.as_deref(), *is_error, cache),
            ("toolu_01A09q90qw90lq917835lq9", Some("Bash"), true, &None)
        );
        assert_eq!(content.len(), 2);
        assert!(matches!(&content[0], Part::Text { text, .. } if text.starts_with("error[E0425]")));

        let t = &r.turns[3].parts;
        assert!(matches!(&t[0], Part::Thinking { signature: Some(_), .. }));
        assert!(matches!(&t[1], Part::ToolCall { name, cache, .. } if name == "Read" && *cache == ephemeral()));

        let t = &r.turns[4].parts;
        assert_eq!(t.len(), 4);
        let Part::ToolResult { name, content, is_error, .. } = &t[0] else { panic!() };
        assert_eq!((name.as_deref(), *is_error), (Some("Read"), false));
        assert!(matches!(&content[..], [Part::Text { text, cache: None }] if text.contains("fn read")));
        assert_eq!(t[1], Part::text("Also, here is a screenshot of the CI page and the spec."));
        assert!(matches!(&t[2], Part::Image { media: Media::Base64 { media_type, data }, detail: None, cache: None }
            if media_type == "image/png" && data.starts_with("iVBORw0KGgo")));
        assert!(
            matches!(&t[3], Part::Document { media: Media::Base64 { media_type, data }, title: Some(title), cache }
            if media_type == "application/pdf" && data.starts_with("JVBERi0") && title == "SSE specification" && *cache == ephemeral())
        );

        let t = &r.turns[5].parts;
        assert!(matches!(&t[0], Part::RedactedThinking { data } if data.starts_with("EmwKAhgB")));
        assert!(matches!(&t[1], Part::ToolCall { name, .. } if name == "Edit"));

        let Part::ToolResult { name, content, .. } = &r.turns[6].parts[0] else { panic!() };
        assert_eq!(name.as_deref(), Some("Edit"));
        assert!(matches!(&content[..], [Part::Text { cache, .. }] if *cache == ephemeral()));

        // The bytes are kept, and the model renamed in place.
        assert_eq!(r.source.dialect, Dialect::AnthropicMessages);
        assert_eq!(r.source.bytes, CLAUDE_CODE.as_bytes());
        let renamed = String::from_utf8(r.source.with_model("claude-x")).unwrap();
        assert_eq!(renamed, CLAUDE_CODE.replace("\"claude-sonnet-4-5-20250929\"", "\"claude-x\""));
    }

    #[test]
    fn a_minimal_sdk_request_decodes_with_the_defaults() {
        let body =
            r#"{"max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}],"model":"claude-haiku"}"#;
        let r = decode_str(body).unwrap();
        assert_eq!(r.turns, [Turn { role: Role::User, parts: vec![Part::text("Hello, Claude")] }]);
        assert_eq!((r.choices, r.include_usage, r.stream), (1, true, false));
        assert!(r.system.is_empty() && r.tools.is_empty() && r.extra.is_empty() && r.server_tools.is_empty());
        assert_eq!((r.tool_choice.clone(), r.parallel_tool_calls, r.reasoning.clone()), (None, None, None));
        assert_eq!(&body[r.source.model_span.0..r.source.model_span.1], "\"claude-haiku\"");
    }

    #[test]
    fn sampling_stop_metadata_tool_choice_and_unmodelled_members() {
        let r = decode_str(
            r#"{"model":"m","max_tokens":5,"system":"Be brief.","messages":[
                {"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"The answer is ("}],
                "temperature":0.2,"top_p":0.9,"top_k":40,"stop_sequences":["\n\nHuman:","END"],
                "metadata":{"user_id":"u-1"},"tool_choice":{"type":"any","disable_parallel_tool_use":true},
                "tools":[{"type":"custom","name":"f","input_schema":{"type":"object"},"strict":true}],
                "service_tier":"auto","container":"c-1","mcp_servers":[{"type":"url","url":"https://x","name":"x"}],
                "output_config":{"effort":"high"},"inference_geo":"us","cache_control":{"type":"ephemeral"}}"#,
        )
        .unwrap();
        assert_eq!(r.system, [Part::text("Be brief.")]);
        // Consecutive turns of one role stay as sent.
        assert_eq!(r.turns.len(), 3);
        assert_eq!(r.turns[2].role, Role::Assistant);
        assert_eq!((r.temperature, r.top_p, r.top_k), (Some(0.2), Some(0.9), Some(40)));
        assert_eq!(r.stop, ["\n\nHuman:", "END"]);
        assert_eq!(r.user.as_deref(), Some("u-1"));
        assert_eq!((r.tool_choice.clone(), r.parallel_tool_calls), (Some(ToolChoice::Required), Some(false)));
        assert_eq!(r.tools[0].strict, Some(true));
        let mut extra: Vec<&str> = r.extra.keys().map(String::as_str).collect();
        extra.sort();
        assert_eq!(
            extra,
            ["cache_control", "container", "inference_geo", "mcp_servers", "output_config", "service_tier"]
        );
        assert_eq!(r.extra["output_config"], json!({"effort": "high"}));

        let choice = |c: &str| {
            decode_str(&format!(
                r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"a"}}],"tool_choice":{c}}}"#
            ))
            .unwrap()
        };
        assert_eq!(choice(r#"{"type":"auto"}"#).tool_choice, Some(ToolChoice::Auto));
        assert_eq!(choice(r#"{"type":"none"}"#).tool_choice, Some(ToolChoice::None));
        let named = choice(r#"{"type":"tool","name":"get_weather","disable_parallel_tool_use":false}"#);
        assert_eq!(
            (named.tool_choice, named.parallel_tool_calls),
            (Some(ToolChoice::Named("get_weather".into())), None)
        );
    }

    #[test]
    fn thinking_types_enabled_disabled_and_the_rest_kept_in_extra() {
        let with = |t: &str| {
            decode_str(&format!(
                r#"{{"model":"m","max_tokens":4096,"messages":[{{"role":"user","content":"a"}}],"thinking":{t}}}"#
            ))
        };
        let r = with(r#"{"type":"enabled","budget_tokens":1024,"display":"omitted"}"#).unwrap();
        assert_eq!((r.reasoning, r.extra.contains_key("thinking")), (Some(Reasoning::Budget(1024)), false));
        let r = with(r#"{"type":"disabled"}"#).unwrap();
        assert_eq!((r.reasoning, r.extra.contains_key("thinking")), (None, false));
        for other in [r#"{"type":"adaptive"}"#, r#"{"type":"between_tools"}"#] {
            let r = with(other).unwrap();
            assert_eq!(r.reasoning, None);
            assert_eq!(r.extra["thinking"], serde_json::from_str::<Value>(other).unwrap());
        }
    }

    #[test]
    fn leading_system_messages_join_the_system_prompt() {
        let r = decode_str(
            r#"{"model":"m","max_tokens":5,"system":"one","messages":[
                {"role":"system","content":[{"type":"text","text":"two","cache_control":{"type":"ephemeral"}}]},
                {"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(r.system, [Part::text("one"), Part::Text { text: "two".into(), cache: ephemeral() }]);
        assert_eq!(r.turns.len(), 1);
    }

    #[test]
    fn server_tools_and_their_history_blocks_are_named_and_left_out_of_the_turns() {
        let r = decode_str(
            r#"{"model":"m","max_tokens":5,
                "tools":[{"type":"web_search_20250305","name":"web_search","max_uses":3},
                         {"type":"bash_20250124","name":"bash"},{"type":"text_editor_20250728","name":"str_replace_based_edit_tool"},
                         {"type":"code_execution_20250825","name":"code_execution"},{"name":"f","input_schema":{"type":"object"}}],
                "messages":[{"role":"user","content":"news?"},
                  {"role":"assistant","content":[
                    {"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"news"}},
                    {"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[
                      {"type":"web_search_result","url":"https://e.com","title":"E","encrypted_content":"abc","page_age":null}]},
                    {"type":"code_execution_tool_result","tool_use_id":"srvtoolu_2","content":{"type":"code_execution_result","stdout":"","stderr":"","return_code":0,"content":[]}},
                    {"type":"text","text":"Here is the news.","citations":[{"type":"web_search_result_location","url":"https://e.com","title":"E","encrypted_index":"x","cited_text":"y"}]}]},
                  {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"tool_reference","tool_name":"f"},{"type":"text","text":"ok"}]}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.server_tools,
            [
                "web_search_20250305",
                "bash_20250124",
                "text_editor_20250728",
                "code_execution_20250825",
                "server_tool_use",
                "web_search_tool_result",
                "code_execution_tool_result",
                "tool_reference"
            ]
        );
        assert_eq!(r.tools.len(), 1);
        assert_eq!(r.turns[1].parts, [Part::text("Here is the news.")]);
        let Part::ToolResult { name, content, .. } = &r.turns[2].parts[0] else { panic!() };
        assert_eq!((name, content.as_slice()), (&None, [Part::text("ok")].as_slice()));
    }

    #[test]
    fn every_image_and_document_source_and_search_results() {
        let r = decode_str(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[
                {"type":"image","source":{"type":"url","url":"https://e.com/a.png"},"cache_control":{"type":"ephemeral"}},
                {"type":"image","source":{"type":"file","file_id":"file_1"}},
                {"type":"document","source":{"type":"text","media_type":"text/plain","data":"plain"},"title":"T","citations":{"enabled":true},"context":"c"},
                {"type":"document","source":{"type":"url","url":"https://e.com/a.pdf"}},
                {"type":"document","source":{"type":"file","file_id":"file_2"},"title":null},
                {"type":"document","source":{"type":"content","content":[{"type":"text","text":"one"},{"type":"image","source":{"type":"url","url":"https://e.com/b.png"}},{"type":"text","text":"two"}]}},
                {"type":"document","source":{"type":"content","content":"just text"}},
                {"type":"search_result","source":"https://e.com/r","title":"R","content":[{"type":"text","text":"r1"},{"type":"text","text":"r2"}]}]}]}"#,
        )
        .unwrap();
        let p = &r.turns[0].parts;
        assert_eq!(
            p[0],
            Part::Image { media: Media::Url("https://e.com/a.png".into()), detail: None, cache: ephemeral() }
        );
        assert_eq!(p[1], Part::Image { media: Media::FileId("file_1".into()), detail: None, cache: None });
        assert_eq!(p[2], Part::Document { media: Media::Text("plain".into()), title: Some("T".into()), cache: None });
        assert_eq!(p[3], Part::Document { media: Media::Url("https://e.com/a.pdf".into()), title: None, cache: None });
        assert_eq!(p[4], Part::Document { media: Media::FileId("file_2".into()), title: None, cache: None });
        assert_eq!(p[5], Part::Document { media: Media::Text("one\ntwo".into()), title: None, cache: None });
        assert_eq!(p[6], Part::Image { media: Media::Url("https://e.com/b.png".into()), detail: None, cache: None });
        assert_eq!(p[7], Part::Document { media: Media::Text("just text".into()), title: None, cache: None });
        assert_eq!(
            p[8],
            Part::Document { media: Media::Text("r1\n\nr2".into()), title: Some("R".into()), cache: None }
        );
        assert_eq!(p.len(), 9);
    }

    #[test]
    fn a_tool_result_names_only_an_earlier_tool_use_and_takes_images_and_documents() {
        let r = decode_str(
            r#"{"model":"m","max_tokens":5,"messages":[
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"later"}]},
                {"role":"assistant","content":[{"type":"tool_use","id":"later","name":"shot","input":{}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"later","content":[
                   {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/"}},
                   {"type":"document","source":{"type":"text","data":"log"}}],"cache_control":{"type":"ephemeral"}},
                   {"type":"tool_result","tool_use_id":"x","content":""}]}]}"#,
        )
        .unwrap();
        assert!(
            matches!(&r.turns[0].parts[0], Part::ToolResult { name: None, content, is_error: false, .. } if content.is_empty())
        );
        assert_eq!(
            r.turns[1].parts[0],
            Part::ToolCall {
                signature: None,
                id: "later".into(),
                name: "shot".into(),
                arguments: "{}".into(),
                cache: None
            }
        );
        let Part::ToolResult { name, content, cache, .. } = &r.turns[2].parts[0] else { panic!() };
        assert_eq!((name.as_deref(), cache), (Some("shot"), &ephemeral()));
        assert!(
            matches!(&content[..], [Part::Image { .. }, Part::Document { media: Media::Text(t), .. }] if t == "log")
        );
        assert!(matches!(&r.turns[2].parts[1], Part::ToolResult { content, .. } if content.is_empty()));
    }

    #[test]
    fn a_thinking_block_without_a_signature_is_taken() {
        let r = decode_str(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[
                {"type":"thinking","thinking":"hm","signature":""},{"type":"thinking","thinking":"hm2"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.turns[1].parts,
            [
                Part::Thinking { text: "hm".into(), signature: None },
                Part::Thinking { text: "hm2".into(), signature: None }
            ]
        );
    }

    #[test]
    fn every_validation_error_is_a_400_naming_its_parameter() {
        let msg = r#"[{"role":"user","content":"x"}]"#;
        let with = |rest: &str| format!(r#"{{"model":"m","max_tokens":8,"messages":{msg}{rest}}}"#);
        let content = |blocks: &str| {
            format!(r#"{{"model":"m","max_tokens":8,"messages":[{{"role":"user","content":{blocks}}}]}}"#)
        };
        let assistant = |blocks: &str| {
            format!(
                r#"{{"model":"m","max_tokens":8,"messages":[{{"role":"user","content":"q"}},{{"role":"assistant","content":{blocks}}}]}}"#
            )
        };
        let cases: Vec<(String, &str)> = vec![
            (format!(r#"{{"max_tokens":8,"messages":{msg}}}"#), "model"),
            (format!(r#"{{"model":"","max_tokens":8,"messages":{msg}}}"#), "model"),
            (format!(r#"{{"model":7,"max_tokens":8,"messages":{msg}}}"#), "model"),
            (format!(r#"{{"model":"m","messages":{msg}}}"#), "max_tokens"),
            (format!(r#"{{"model":"m","max_tokens":0,"messages":{msg}}}"#), "max_tokens"),
            (format!(r#"{{"model":"m","max_tokens":-1,"messages":{msg}}}"#), "max_tokens"),
            (format!(r#"{{"model":"m","max_tokens":"8","messages":{msg}}}"#), "max_tokens"),
            (r#"{"model":"m","max_tokens":8}"#.to_owned(), "messages"),
            (r#"{"model":"m","max_tokens":8,"messages":[]}"#.to_owned(), "messages"),
            (r#"{"model":"m","max_tokens":8,"messages":"hi"}"#.to_owned(), "messages"),
            (r#"{"model":"m","max_tokens":8,"messages":[{"role":"wizard","content":"x"}]}"#.to_owned(), "messages[0].role"),
            (r#"{"model":"m","max_tokens":8,"messages":[{"content":"x"}]}"#.to_owned(), "messages[0].role"),
            (r#"{"model":"m","max_tokens":8,"messages":[{"role":"user"}]}"#.to_owned(), "messages[0].content"),
            (r#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":7}]}"#.to_owned(), "messages[0].content"),
            (
                r#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"x"},{"role":"system","content":"late"}]}"#.to_owned(),
                "messages[1].role",
            ),
            (with(r#","temperature":1.5"#), "temperature"),
            (with(r#","temperature":-0.1"#), "temperature"),
            (with(r#","top_p":2"#), "top_p"),
            (with(r#","top_k":-3"#), "top_k"),
            (with(r#","stop_sequences":"END""#), "stop_sequences"),
            (with(r#","stream":"yes""#), "stream"),
            (with(r#","metadata":{"user_id":5}"#), "metadata.user_id"),
            (with(r#","system":[{"type":"image","source":{"type":"url","url":"https://e"}}]"#), "system[0].type"),
            (with(r#","system":[{"type":"text"}]"#), "system[0].text"),
            (with(r#","system":5"#), "system"),
            (with(r#","tools":[{"input_schema":{"type":"object"}}]"#), "tools[0].name"),
            (with(r#","tools":[{"name":"f"}]"#), "tools[0].input_schema"),
            (with(r#","tools":[{"name":"f","input_schema":"object"}]"#), "tools[0].input_schema"),
            (with(r#","tools":{"name":"f"}"#), "tools"),
            (with(r#","tool_choice":{"type":"required"}"#), "tool_choice.type"),
            (with(r#","tool_choice":{}"#), "tool_choice.type"),
            (with(r#","tool_choice":{"type":"tool"}"#), "tool_choice.name"),
            (with(r#","thinking":{"type":"enabled","budget_tokens":1023}"#), "thinking.budget_tokens"),
            (with(r#","thinking":{"type":"enabled"}"#), "thinking.budget_tokens"),
            (with(r#","thinking":{"budget_tokens":2000}"#), "thinking.type"),
            (content(r#"[{"text":"x"}]"#), "messages[0].content[0].type"),
            (content(r#"[{"type":"text"}]"#), "messages[0].content[0].text"),
            (content(r#"[{"type":"text","text":5}]"#), "messages[0].content[0].text"),
            (content(r#"[{"type":"text","text":"a"},{"type":"video","url":"x"}]"#), "messages[0].content[1].type"),
            (content(r#"[{"type":"image"}]"#), "messages[0].content[0].source"),
            (content(r#"[{"type":"image","source":"https://e.com/a.png"}]"#), "messages[0].content[0].source"),
            (content(r#"[{"type":"image","source":{"url":"https://e"}}]"#), "messages[0].content[0].source.type"),
            (content(r#"[{"type":"image","source":{"type":"ftp","url":"x"}}]"#), "messages[0].content[0].source.type"),
            (content(r#"[{"type":"image","source":{"type":"base64","data":"AA"}}]"#), "messages[0].content[0].source.media_type"),
            (content(r#"[{"type":"image","source":{"type":"base64","media_type":"image/png"}}]"#), "messages[0].content[0].source.data"),
            (content(r#"[{"type":"image","source":{"type":"base64","media_type":"image/png","data":5}}]"#), "messages[0].content[0].source.data"),
            (content(r#"[{"type":"image","source":{"type":"url"}}]"#), "messages[0].content[0].source.url"),
            (content(r#"[{"type":"image","source":{"type":"file"}}]"#), "messages[0].content[0].source.file_id"),
            (content(r#"[{"type":"image","source":{"type":"text","data":"x"}}]"#), "messages[0].content[0].source.type"),
            (content(r#"[{"type":"document","source":{"type":"base64","media_type":"image/png","data":"AA"}}]"#), "messages[0].content[0].source.media_type"),
            (content(r#"[{"type":"document","source":{"type":"text","media_type":"text/html","data":"x"}}]"#), "messages[0].content[0].source.media_type"),
            (content(r#"[{"type":"document","source":{"type":"text"}}]"#), "messages[0].content[0].source.data"),
            (content(r#"[{"type":"document","source":{"type":"content"}}]"#), "messages[0].content[0].source.content"),
            (content(r#"[{"type":"document","source":{"type":"content","content":[{"type":"document","source":{"type":"text","data":"x"}}]}}]"#), "messages[0].content[0].source.content[0].type"),
            (content(r#"[{"type":"document","title":7,"source":{"type":"text","data":"x"}}]"#), "messages[0].content[0].title"),
            (content(r#"[{"type":"search_result","source":"s","title":"t"}]"#), "messages[0].content[0].content"),
            (content(r#"[{"type":"search_result","source":"s","title":"t","content":[{"type":"image"}]}]"#), "messages[0].content[0].content[0].type"),
            (content(r#"[{"type":"tool_result"}]"#), "messages[0].content[0].tool_use_id"),
            (content(r#"[{"type":"tool_result","tool_use_id":"t","content":{"a":1}}]"#), "messages[0].content[0].content"),
            (content(r#"[{"type":"tool_result","tool_use_id":"t","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]"#), "messages[0].content[0].content[0].type"),
            (content(r#"[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"wat"}]}]"#), "messages[0].content[0].content[1].type"),
            (content(r#"[{"type":"tool_result","tool_use_id":"t","is_error":"yes"}]"#), "messages[0].content[0].is_error"),
            (assistant(r#"[{"type":"tool_use","name":"f","input":{}}]"#), "messages[1].content[0].id"),
            (assistant(r#"[{"type":"tool_use","id":"a","input":{}}]"#), "messages[1].content[0].name"),
            (assistant(r#"[{"type":"tool_use","id":"a","name":"f"}]"#), "messages[1].content[0].input"),
            (assistant(r#"[{"type":"tool_use","id":"a","name":"f","input":"{}"}]"#), "messages[1].content[0].input"),
            (assistant(r#"[{"type":"thinking","signature":"s"}]"#), "messages[1].content[0].thinking"),
            (assistant(r#"[{"type":"redacted_thinking"}]"#), "messages[1].content[0].data"),
            (assistant(r#"[{"type":"text","text":"a"},{"type":"thinking","thinking":5}]"#), "messages[1].content[1].thinking"),
        ];
        for (body, param) in cases {
            let e = decode_str(&body).expect_err(&body);
            assert_eq!(
                (e.status, e.kind, e.param.as_deref()),
                (400, "invalid_request_error", Some(param)),
                "{body}: {e}"
            );
            assert_eq!(e.code.as_deref(), Some("invalid_request"), "{body}");
            let (status, error) = error_body(&e);
            let error: Value = serde_json::from_slice(&error).unwrap();
            assert_eq!((status, error["error"]["type"].as_str()), (400, Some("invalid_request_error")));
        }
    }

    #[test]
    fn bodies_that_are_not_json_or_not_objects_are_refused() {
        for body in ["", "{\"model\": ", "nope", "{\"model\":\"m\",\"model\":\"n\",\"max_tokens\":1,\"messages\":[]}"] {
            assert_eq!(decode_str(body).unwrap_err().status, 400, "{body}");
        }
        assert_eq!(decode_str("{\"model\": ").unwrap_err().code.as_deref(), Some("invalid_json"));
        assert_eq!(decode_str("[1]").unwrap_err().code.as_deref(), Some("invalid_request"));
        let bad =
            b"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"x\":\"\xff\"}";
        assert_eq!(decode(bad.to_vec()).unwrap_err().code.as_deref(), Some("invalid_json"));
        let deep = format!(
            r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":"x"}}],"mcp_servers":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(decode_str(&deep).unwrap_err().code.as_deref(), Some("invalid_json"));
    }

    // ---- encode_answer ----

    fn answer(blocks: Vec<Block>, finish: Finish, usage: Option<Usage>) -> Answer {
        Answer {
            id: "msg_01".into(),
            model: "claude-x".into(),
            outputs: vec![Output { index: 0, blocks, finish }],
            usage,
        }
    }

    fn encoded(answer: &Answer) -> Value {
        serde_json::from_slice(&encode_answer(answer)).unwrap()
    }

    #[test]
    fn an_answer_is_a_message_with_every_block_kind() {
        let a = answer(
            vec![
                Block::Thinking { text: "hmm".into(), signature: Some("sig".into()) },
                Block::Thinking { text: "unsigned".into(), signature: None },
                Block::RedactedThinking("enc".into()),
                Block::Text("Hello".into()),
                Block::Refusal("I can't".into()),
                Block::ToolCall {
                    signature: None,
                    id: "toolu_1".into(),
                    name: "f".into(),
                    arguments: r#"{"a":[1,2]}"#.into(),
                },
                Block::ToolCall { signature: None, id: "toolu_2".into(), name: "g".into(), arguments: String::new() },
                Block::ToolCall {
                    signature: None,
                    id: "toolu_3".into(),
                    name: "h".into(),
                    arguments: "{\"a\":".into(),
                },
                Block::ToolCall { signature: None, id: "toolu_4".into(), name: "i".into(), arguments: "[1]".into() },
            ],
            Finish::ToolCalls,
            Some(usage(1000, 50, 600, Some(300))),
        );
        assert_eq!(
            encoded(&a),
            json!({
                "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "thinking", "thinking": "unsigned", "signature": ""},
                    {"type": "redacted_thinking", "data": "enc"},
                    {"type": "text", "text": "Hello"},
                    {"type": "text", "text": "I can't"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, 2]}},
                    {"type": "tool_use", "id": "toolu_2", "name": "g", "input": {}},
                    {"type": "tool_use", "id": "toolu_3", "name": "h", "input": {}},
                    {"type": "tool_use", "id": "toolu_4", "name": "i", "input": {}},
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 100, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 600, "output_tokens": 50},
            })
        );
    }

    #[test]
    fn each_finish_has_its_stop_reason() {
        let cases = [
            (Finish::Stop, "end_turn", Value::Null),
            (Finish::StopSequence(Some("END".into())), "stop_sequence", json!("END")),
            (Finish::StopSequence(None), "stop_sequence", Value::Null),
            (Finish::Length, "max_tokens", Value::Null),
            (Finish::ToolCalls, "tool_use", Value::Null),
            (Finish::ContentFilter, "refusal", Value::Null),
        ];
        for (finish, reason, sequence) in cases {
            assert_eq!(stop_reason(&finish), reason);
            let m = encoded(&answer(vec![Block::Text("x".into())], finish, None));
            assert_eq!((&m["stop_reason"], &m["stop_sequence"]), (&json!(reason), &sequence));
        }
    }

    #[test]
    fn an_answer_without_outputs_or_usage_is_still_a_message() {
        let a = Answer { id: String::new(), model: String::new(), outputs: vec![], usage: None };
        let m = encoded(&a);
        assert!(m["id"].as_str().unwrap().starts_with("msg_") && m["id"].as_str().unwrap().len() > 10);
        assert_eq!(m["model"], "unknown");
        assert_eq!(m["content"], json!([]));
        assert_eq!(m["stop_reason"], "end_turn");
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0})
        );
        // Only the first output is written; a tool call without an id gets one.
        let mut a = answer(
            vec![Block::ToolCall { signature: None, id: String::new(), name: "f".into(), arguments: "{}".into() }],
            Finish::ToolCalls,
            None,
        );
        a.outputs.push(Output { index: 1, blocks: vec![Block::Text("second".into())], finish: Finish::Stop });
        let m = encoded(&a);
        assert_eq!(m["content"].as_array().unwrap().len(), 1);
        assert!(m["content"][0]["id"].as_str().unwrap().starts_with("toolu_"));
    }

    #[test]
    fn usage_takes_the_cache_tokens_off_the_input_saturating() {
        assert_eq!(
            MessageUsage::of(Some(&usage(10, 3, 8, Some(5)))),
            MessageUsage {
                input_tokens: 0,
                cache_creation_input_tokens: 5,
                cache_read_input_tokens: 8,
                output_tokens: 3
            }
        );
        assert_eq!(usage_json(Some(&Usage::new(7, 2)))["input_tokens"], 7);
        assert_eq!(usage_json(None)["output_tokens"], 0);
    }

    // ---- errors ----

    #[test]
    fn errors_have_anthropics_statuses_and_types() {
        let e = |status, kind, code| GatewayError::new(status, kind, code, "m");
        let cases = [
            (GatewayError::invalid_request("messages", "bad"), 400, "invalid_request_error"),
            (GatewayError::invalid_api_key(true), 401, "authentication_error"),
            (e(402, "billing_error", "payment_required"), 402, "billing_error"),
            (e(429, "insufficient_quota", "budget_exceeded"), 402, "billing_error"),
            (e(403, "permission_error", "admin_disabled"), 403, "permission_error"),
            (GatewayError::model_not_found("x"), 404, "not_found_error"),
            (GatewayError::unknown_url("GET", "/x"), 404, "not_found_error"),
            (GatewayError::method_not_allowed("GET", "/v1/messages", "POST"), 405, "invalid_request_error"),
            (GatewayError::request_too_large(10), 413, "request_too_large"),
            (e(429, "rate_limit_error", "rate_limit_exceeded"), 429, "rate_limit_error"),
            (e(500, "server_error", "internal_error"), 500, "api_error"),
            (GatewayError::upstream_unreachable("p", "reset"), 502, "api_error"),
            (GatewayError::upstream_timeout("p", 5), 504, "timeout_error"),
            (e(503, "server_error", "all_targets_failed"), 529, "overloaded_error"),
            (e(503, "server_error", "no_target_available"), 529, "overloaded_error"),
            (e(503, "server_error", "upstream_overloaded"), 529, "overloaded_error"),
            (GatewayError::provider_key_missing("p"), 503, "api_error"),
            (e(529, "server_error", "x"), 529, "overloaded_error"),
            (e(200, "server_error", "x"), 500, "api_error"),
        ];
        for (error, status, kind) in cases {
            let (got, body) = error_body(&error);
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!((got, body["error"]["type"].as_str().unwrap()), (status, kind), "{error}");
            assert_eq!(body["type"], "error");
            assert_eq!(body.as_object().unwrap().len(), 2);
            assert_eq!(body["error"].as_object().unwrap().len(), 2);
            assert!(body["error"]["message"].as_str().unwrap().starts_with(&error.message));
        }
        let (_, body) = error_body(&GatewayError::invalid_request("messages[0].content", "Nope."));
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["message"], "Nope. (invalid_request: messages[0].content)");
    }

    // ---- stream ----

    /// One parsed SSE event: its name and its data.
    fn parse_sse(text: &str) -> Vec<(String, Value)> {
        assert!(text.is_empty() || text.ends_with("\n\n"), "the stream ends an event: {text:?}");
        let mut events = Vec::new();
        for chunk in text.split("\n\n").filter(|c| !c.is_empty()) {
            let mut lines = chunk.split('\n');
            let name = lines.next().and_then(|l| l.strip_prefix("event: ")).expect("an event line first");
            let data = lines.next().and_then(|l| l.strip_prefix("data: ")).expect("a data line second");
            assert!(lines.next().is_none(), "one data line: {chunk:?}");
            let data: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
            events.push((name.to_owned(), data));
        }
        events
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Got {
        Text(String),
        Thinking(String, String),
        Redacted(String),
        Tool(String, String, String),
    }

    #[derive(Debug, Default)]
    struct Message {
        id: String,
        model: String,
        blocks: Vec<Got>,
        stop_reason: Option<String>,
        stop_sequence: Option<String>,
        start_usage: Value,
        usage: Value,
        error: Option<Value>,
    }

    /// Asserts Anthropic's stream grammar (and what this encoder adds to it: a ping right after
    /// message_start, no empty delta, one signature just before a thinking block's stop) and
    /// returns the message the stream accumulates to.
    fn check_grammar(text: &str) -> Message {
        let mut events = parse_sse(text);
        // Pings may come before message_start (the worker's keepalives).
        let leading =
            events.iter().take_while(|(name, data)| name == "ping" && data == &json!({"type": "ping"})).count();
        events.drain(..leading);
        let mut m = Message::default();
        let ctx = |i: usize| format!("event {i} of {text}");
        assert!(events.len() >= 3, "{text}");
        let (name, start) = &events[0];
        assert_eq!(name, "message_start", "{}", ctx(0));
        let message = &start["message"];
        assert_eq!((message["type"].as_str(), message["role"].as_str()), (Some("message"), Some("assistant")));
        assert_eq!(
            (&message["content"], &message["stop_reason"], &message["stop_sequence"]),
            (&json!([]), &Value::Null, &Value::Null)
        );
        m.id = message["id"].as_str().expect("an id").to_owned();
        assert!(!m.id.is_empty());
        m.model = message["model"].as_str().expect("a model").to_owned();
        for field in ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"] {
            assert!(message["usage"][field].is_u64(), "{field}: {}", ctx(0));
        }
        m.start_usage = message["usage"].clone();
        assert_eq!(events[1].0, "ping");
        // (out index, kind, saw a signature)
        let mut open: Option<(u64, String, bool)> = None;
        let mut delta_seen = false;
        let mut ended = false;
        for (i, (name, data)) in events.iter().enumerate().skip(1) {
            assert!(!ended, "nothing after the end: {}", ctx(i));
            assert_eq!(data["type"].as_str(), Some(name.as_str()), "{}", ctx(i));
            match name.as_str() {
                "ping" => assert!(!delta_seen, "{}", ctx(i)),
                "message_start" => panic!("a second message_start: {}", ctx(i)),
                "content_block_start" => {
                    assert!(open.is_none() && !delta_seen, "a block starts while another is open: {}", ctx(i));
                    let index = data["index"].as_u64().unwrap();
                    assert_eq!(index, m.blocks.len() as u64, "blocks are numbered in order: {}", ctx(i));
                    let block = &data["content_block"];
                    let kind = block["type"].as_str().unwrap().to_owned();
                    m.blocks.push(match kind.as_str() {
                        "text" => {
                            assert_eq!(block, &json!({"type": "text", "text": ""}));
                            Got::Text(String::new())
                        }
                        "thinking" => {
                            assert_eq!(block, &json!({"type": "thinking", "thinking": "", "signature": ""}));
                            Got::Thinking(String::new(), String::new())
                        }
                        "redacted_thinking" => Got::Redacted(block["data"].as_str().unwrap().to_owned()),
                        "tool_use" => {
                            assert_eq!(block["input"], json!({}), "{}", ctx(i));
                            let id = block["id"].as_str().unwrap();
                            assert!(!id.is_empty());
                            Got::Tool(id.to_owned(), block["name"].as_str().unwrap().to_owned(), String::new())
                        }
                        other => panic!("block type {other}: {}", ctx(i)),
                    });
                    open = Some((index, kind, false));
                }
                "content_block_delta" => {
                    let Some((index, kind, signed)) = open.as_mut() else {
                        panic!("a delta outside a block: {}", ctx(i))
                    };
                    assert_eq!(data["index"].as_u64(), Some(*index), "{}", ctx(i));
                    let delta = &data["delta"];
                    let block = m.blocks.last_mut().unwrap();
                    let piece = |field: &str| {
                        let piece = delta[field].as_str().unwrap_or_else(|| panic!("{field}: {}", ctx(i)));
                        assert!(!piece.is_empty(), "an empty delta: {}", ctx(i));
                        piece.to_owned()
                    };
                    assert!(!*signed, "nothing after a signature but the stop: {}", ctx(i));
                    match (kind.as_str(), delta["type"].as_str().unwrap(), block) {
                        ("text", "text_delta", Got::Text(t)) => t.push_str(&piece("text")),
                        ("thinking", "thinking_delta", Got::Thinking(t, _)) => t.push_str(&piece("thinking")),
                        ("thinking", "signature_delta", Got::Thinking(_, s)) => {
                            *s = piece("signature");
                            *signed = true;
                        }
                        ("tool_use", "input_json_delta", Got::Tool(_, _, json)) => {
                            json.push_str(&piece("partial_json"))
                        }
                        (kind, delta, _) => panic!("a {delta} in a {kind} block: {}", ctx(i)),
                    }
                }
                "content_block_stop" => {
                    let Some((index, _, _)) = open.take() else { panic!("a stop outside a block: {}", ctx(i)) };
                    assert_eq!(data["index"].as_u64(), Some(index), "{}", ctx(i));
                }
                "message_delta" => {
                    assert!(open.is_none(), "message_delta with a block open: {}", ctx(i));
                    assert!(!delta_seen, "a second message_delta: {}", ctx(i));
                    delta_seen = true;
                    let reason = data["delta"]["stop_reason"].as_str().expect("a stop reason").to_owned();
                    assert!(
                        ["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"]
                            .contains(&reason.as_str()),
                        "{}",
                        ctx(i)
                    );
                    m.stop_reason = Some(reason);
                    m.stop_sequence = data["delta"]["stop_sequence"].as_str().map(str::to_owned);
                    assert!(data["usage"]["output_tokens"].is_u64(), "{}", ctx(i));
                    m.usage = data["usage"].clone();
                }
                "message_stop" => {
                    assert!(delta_seen, "message_stop without message_delta: {}", ctx(i));
                    ended = true;
                }
                "error" => {
                    assert!(!delta_seen, "an error after message_delta: {}", ctx(i));
                    let error = &data["error"];
                    assert!(error["type"].is_string() && error["message"].is_string(), "{}", ctx(i));
                    m.error = Some(error.clone());
                    ended = true;
                }
                other => panic!("an event {other}: {}", ctx(i)),
            }
        }
        assert!(ended, "the stream ends with message_stop or error: {text}");
        m
    }

    fn run(events: &[Event<'_>], end: Option<&GatewayError>) -> String {
        let mut stream = Stream::with_seed("req-1");
        let mut out = Vec::new();
        for event in events {
            stream.event(event.clone(), &mut out);
        }
        match end {
            None => stream.complete(&mut out),
            Some(error) => stream.fail(error, &mut out),
        }
        assert!(stream.is_done());
        // Nothing after the end.
        let len = out.len();
        stream.event(Event::BlockStart { choice: 0, block: 9, kind: BlockKind::Text }, &mut out);
        stream.complete(&mut out);
        stream.fail(&GatewayError::invalid_json("x"), &mut out);
        assert_eq!(out.len(), len);
        String::from_utf8(out).unwrap()
    }

    fn start() -> Event<'static> {
        Event::Start { id: "msg_abc", model: "claude-x" }
    }
    fn block_start(block: u32, kind: BlockKind<'static>) -> Event<'static> {
        Event::BlockStart { choice: 0, block, kind }
    }
    fn delta(block: u32, delta: Delta<'static>) -> Event<'static> {
        Event::Delta { choice: 0, block, delta }
    }
    fn block_stop(block: u32) -> Event<'static> {
        Event::BlockStop { choice: 0, block }
    }

    #[test]
    fn a_stream_writes_anthropics_exact_events() {
        let events = [
            start(),
            Event::Usage(usage(120, 1, 100, Some(0))),
            block_start(0, BlockKind::Thinking),
            delta(0, Delta::Thinking("Let me")),
            delta(0, Delta::Signature("sig-")),
            delta(0, Delta::Thinking(" think.")),
            delta(0, Delta::Signature("123")),
            block_stop(0),
            block_start(1, BlockKind::Text),
            delta(1, Delta::Text("Checking \"the\" weather\n")),
            block_stop(1),
            block_start(2, BlockKind::ToolCall { signature: None, id: "toolu_01", name: "get_weather" }),
            delta(2, Delta::ToolArguments("")),
            delta(2, Delta::ToolArguments("{\"city\":")),
            delta(2, Delta::ToolArguments("\"Paris\"}")),
            block_stop(2),
            Event::Finish { choice: 0, finish: Finish::ToolCalls },
            Event::Usage(usage(120, 42, 100, Some(0))),
        ];
        let text = run(&events, None);
        assert_eq!(text, GOLDEN_STREAM, "{text}");
        let m = check_grammar(&text);
        assert_eq!((m.id.as_str(), m.model.as_str()), ("msg_abc", "claude-x"));
        assert_eq!(
            m.blocks,
            [
                Got::Thinking("Let me think.".into(), "sig-123".into()),
                Got::Text("Checking \"the\" weather\n".into()),
                Got::Tool("toolu_01".into(), "get_weather".into(), "{\"city\":\"Paris\"}".into()),
            ]
        );
        assert_eq!(m.start_usage["input_tokens"], 20);
        assert_eq!(
            m.usage,
            json!({"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100, "output_tokens": 42})
        );
    }

    #[test]
    fn malformed_events_still_make_a_well_formed_stream() {
        let events = [
            block_start(0, BlockKind::Text), // before Start: message_start synthesised
            start(),                         // too late: ignored
            delta(0, Delta::Text("a")),
            delta(0, Delta::ToolArguments("{}")), // cannot open a tool_use: dropped
            delta(0, Delta::Signature("s")),      // not a thinking block: dropped
            delta(0, Delta::Thinking("t")),       // closes the text, opens thinking
            block_start(1, BlockKind::Text),      // closes the thinking block
            delta(3, Delta::Text("")),            // empty: dropped
            delta(3, Delta::Text("c")),           // a block never started: opened
            delta(1, Delta::Text("late")),        // block 1 was closed: dropped
            block_stop(7),                        // not open: dropped
            Event::BlockStart { choice: 1, block: 0, kind: BlockKind::Text },
            Event::Delta { choice: 1, block: 0, delta: Delta::Text("other choice") },
            block_start(4, BlockKind::RedactedThinking { data: "enc" }),
            delta(4, Delta::Text("d")), // closes the redacted block
            block_start(5, BlockKind::ToolCall { signature: None, id: "", name: "f" }),
            Event::Finish { choice: 1, finish: Finish::Length },
            Event::Finish { choice: 0, finish: Finish::StopSequence(Some("END".into())) },
        ];
        let m = check_grammar(&run(&events, None));
        assert!(m.id.starts_with("msg_") && m.id != "msg_abc");
        assert_eq!(m.model, "unknown");
        assert_eq!(m.blocks.len(), 7);
        assert_eq!(
            m.blocks[..6],
            [
                Got::Text("a".into()),
                Got::Thinking("t".into(), String::new()),
                Got::Text(String::new()),
                Got::Text("c".into()),
                Got::Redacted("enc".into()),
                Got::Text("d".into()),
            ]
        );
        assert!(
            matches!(&m.blocks[6], Got::Tool(id, name, json) if id.starts_with("toolu_") && name == "f" && json.is_empty())
        );
        assert_eq!((m.stop_reason.as_deref(), m.stop_sequence.as_deref()), (Some("stop_sequence"), Some("END")));
    }

    #[test]
    fn the_end_before_anything_is_still_a_message_or_an_error() {
        let m = check_grammar(&run(&[], None));
        assert!(m.id.starts_with("msg_"));
        assert_eq!((m.model.as_str(), m.blocks.len(), m.stop_reason.as_deref()), ("unknown", 0, Some("end_turn")));
        // The fallback id derives from the seed.
        assert_eq!(m.id, check_grammar(&run(&[], None)).id);
        let mut other = Vec::new();
        Stream::with_seed("req-2").complete(&mut other);
        assert_ne!(check_grammar(&String::from_utf8(other).unwrap()).id, m.id);

        let error = GatewayError::new(503, "server_error", "all_targets_failed", "Every target failed.");
        let text = run(&[start()], Some(&error));
        let events = parse_sse(&text);
        assert_eq!(events.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["message_start", "ping", "error"]);
        assert_eq!(
            events[2].1,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Every target failed. (all_targets_failed)"}})
        );
        assert_eq!(events[0].1["message"]["id"], "msg_abc");
        check_grammar(&text);
    }

    #[test]
    fn keepalive_pings_come_before_message_start_and_never_after_the_end() {
        let mut stream = Stream::new();
        let mut out = Vec::new();
        stream.ping(&mut out);
        stream.event(start(), &mut out);
        stream.ping(&mut out);
        stream.event(block_start(0, BlockKind::Text), &mut out);
        stream.event(delta(0, Delta::Text("hi")), &mut out);
        stream.ping(&mut out);
        stream.complete(&mut out);
        let len = out.len();
        stream.ping(&mut out);
        assert_eq!(out.len(), len);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("event: ping\ndata: {\"type\":\"ping\"}\n\nevent: ping\n"), "{text}");
        assert_eq!(check_grammar(&text).blocks, [Got::Text("hi".into())]);
    }

    #[test]
    fn an_error_mid_block_ends_the_stream_there() {
        let events = [start(), block_start(0, BlockKind::Text), delta(0, Delta::Text("partial"))];
        let text = run(&events, Some(&GatewayError::upstream_stream_broken("p", "reset")));
        let m = check_grammar(&text);
        assert_eq!(m.error.unwrap()["type"], "api_error");
        assert!(
            !text.contains("content_block_stop") && !text.contains("message_delta") && !text.contains("message_stop")
        );
    }

    #[test]
    fn usage_known_before_the_first_block_is_in_message_start() {
        let events = [
            start(),
            Event::Usage(usage(50, 0, 0, None)),
            block_start(0, BlockKind::Text),
            Event::Usage(usage(60, 9, 10, Some(5))),
        ];
        let m = check_grammar(&run(&events, None));
        assert_eq!(m.start_usage["input_tokens"], 50);
        assert_eq!(
            m.usage,
            json!({"input_tokens": 45, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 10, "output_tokens": 9})
        );
        assert_eq!(m.blocks, [Got::Text(String::new())]);
    }

    // Random event sequences, well-formed or not.

    #[derive(Debug, Clone)]
    enum Spec {
        Start(String, String),
        BlockStart(u32, u32, KindSpec),
        Delta(u32, u32, DeltaSpec),
        BlockStop(u32, u32),
        Finish(u32, Finish),
        Usage(u64, u64, u64, u64),
    }

    #[derive(Debug, Clone)]
    enum KindSpec {
        Text,
        Thinking,
        Redacted(String),
        Tool(String, String),
    }

    #[derive(Debug, Clone)]
    enum DeltaSpec {
        Text(String),
        Thinking(String),
        Signature(String),
        Arguments(String),
    }

    impl Spec {
        fn event(&self) -> Event<'_> {
            match self {
                Spec::Start(id, model) => Event::Start { id, model },
                Spec::BlockStart(choice, block, kind) => Event::BlockStart {
                    choice: *choice,
                    block: *block,
                    kind: match kind {
                        KindSpec::Text => BlockKind::Text,
                        KindSpec::Thinking => BlockKind::Thinking,
                        KindSpec::Redacted(data) => BlockKind::RedactedThinking { data },
                        KindSpec::Tool(id, name) => BlockKind::ToolCall { signature: None, id, name },
                    },
                },
                Spec::Delta(choice, block, delta) => Event::Delta {
                    choice: *choice,
                    block: *block,
                    delta: match delta {
                        DeltaSpec::Text(t) => Delta::Text(t),
                        DeltaSpec::Thinking(t) => Delta::Thinking(t),
                        DeltaSpec::Signature(s) => Delta::Signature(s),
                        DeltaSpec::Arguments(a) => Delta::ToolArguments(a),
                    },
                },
                Spec::BlockStop(choice, block) => Event::BlockStop { choice: *choice, block: *block },
                Spec::Finish(choice, finish) => Event::Finish { choice: *choice, finish: finish.clone() },
                Spec::Usage(p, c, r, w) => Event::Usage(usage(*p, *c, *r, Some(*w))),
            }
        }
    }

    fn piece() -> impl Strategy<Value = String> {
        let chars =
            prop::sample::select(vec!['a', 'Z', ' ', '"', '\\', '\n', '{', '}', ':', '\u{e9}', '\u{1f600}', '\u{0}']);
        prop::collection::vec(chars, 0..6).prop_map(|c| c.into_iter().collect())
    }

    fn kind_spec() -> impl Strategy<Value = KindSpec> {
        prop_oneof![
            3 => Just(KindSpec::Text),
            2 => Just(KindSpec::Thinking),
            1 => piece().prop_map(KindSpec::Redacted),
            2 => (piece(), piece()).prop_map(|(id, name)| KindSpec::Tool(id, name)),
        ]
    }

    fn delta_spec() -> impl Strategy<Value = DeltaSpec> {
        prop_oneof![
            piece().prop_map(DeltaSpec::Text),
            piece().prop_map(DeltaSpec::Thinking),
            piece().prop_map(DeltaSpec::Signature),
            piece().prop_map(DeltaSpec::Arguments),
        ]
    }

    fn finish_spec() -> impl Strategy<Value = Finish> {
        prop_oneof![
            Just(Finish::Stop),
            Just(Finish::Length),
            Just(Finish::ToolCalls),
            Just(Finish::ContentFilter),
            prop::option::of(piece()).prop_map(Finish::StopSequence),
        ]
    }

    fn spec() -> impl Strategy<Value = Spec> {
        let choice = prop_oneof![4 => Just(0u32), 1 => Just(1u32)];
        let block = 0u32..5;
        prop_oneof![
            1 => (piece(), piece()).prop_map(|(id, model)| Spec::Start(id, model)),
            3 => (choice.clone(), block.clone(), kind_spec()).prop_map(|(c, b, k)| Spec::BlockStart(c, b, k)),
            6 => (choice.clone(), block.clone(), delta_spec()).prop_map(|(c, b, d)| Spec::Delta(c, b, d)),
            3 => (choice.clone(), block).prop_map(|(c, b)| Spec::BlockStop(c, b)),
            1 => (choice, finish_spec()).prop_map(|(c, f)| Spec::Finish(c, f)),
            1 => (0u64..1000, 0u64..1000, 0u64..1000, 0u64..1000).prop_map(|(p, c, r, w)| Spec::Usage(p, c, r, w)),
        ]
    }

    fn end_spec() -> impl Strategy<Value = Option<GatewayError>> {
        prop_oneof![
            3 => Just(None),
            1 => Just(Some(GatewayError::upstream_stream_broken("p", "reset"))),
            1 => Just(Some(GatewayError::new(503, "server_error", "all_targets_failed", "down"))),
            1 => Just(Some(GatewayError::new(429, "rate_limit_error", "rate_limit_exceeded", "slow down"))),
        ]
    }

    /// A well-formed stream of choice 0 (with another choice's events among them) and what it
    /// must accumulate to.
    fn well_formed() -> impl Strategy<Value = (Vec<Spec>, Vec<Got>, Finish)> {
        let block = (kind_spec(), prop::collection::vec(piece(), 0..4), piece());
        (prop::collection::vec(block, 0..5), finish_spec(), any::<bool>()).prop_map(|(blocks, finish, noise)| {
            let mut specs = vec![Spec::Start("msg_1".into(), "m".into()), Spec::Usage(10, 0, 2, 1)];
            let mut expected = Vec::new();
            for (i, (kind, pieces, signature)) in blocks.into_iter().enumerate() {
                let i = i as u32;
                specs.push(Spec::BlockStart(0, i, kind.clone()));
                let joined: String = pieces.concat();
                match &kind {
                    KindSpec::Text => {
                        specs.extend(pieces.into_iter().map(|p| Spec::Delta(0, i, DeltaSpec::Text(p))));
                        expected.push(Got::Text(joined));
                    }
                    KindSpec::Thinking => {
                        specs.extend(pieces.into_iter().map(|p| Spec::Delta(0, i, DeltaSpec::Thinking(p))));
                        specs.push(Spec::Delta(0, i, DeltaSpec::Signature(signature.clone())));
                        expected.push(Got::Thinking(joined, signature));
                    }
                    KindSpec::Redacted(data) => expected.push(Got::Redacted(data.clone())),
                    KindSpec::Tool(id, name) => {
                        specs.extend(pieces.into_iter().map(|p| Spec::Delta(0, i, DeltaSpec::Arguments(p))));
                        expected.push(Got::Tool(id.clone(), name.clone(), joined));
                    }
                }
                if noise {
                    specs.push(Spec::BlockStart(1, i, KindSpec::Text));
                    specs.push(Spec::Delta(1, i, DeltaSpec::Text("noise".into())));
                    specs.push(Spec::BlockStop(1, i));
                }
                specs.push(Spec::BlockStop(0, i));
            }
            specs.push(Spec::Finish(0, finish.clone()));
            specs.push(Spec::Usage(10, 7, 2, 1));
            (specs, expected, finish)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_event_sequence_makes_a_well_formed_stream(specs in prop::collection::vec(spec(), 0..40), end in end_spec()) {
            let events: Vec<Event> = specs.iter().map(Spec::event).collect();
            let m = check_grammar(&run(&events, end.as_ref()));
            prop_assert_eq!(m.error.is_some(), end.is_some());
        }

        #[test]
        fn a_well_formed_sequence_is_written_faithfully((specs, expected, finish) in well_formed()) {
            let events: Vec<Event> = specs.iter().map(Spec::event).collect();
            let m = check_grammar(&run(&events, None));
            // An empty tool id is given one; the rest is as the events said.
            let blocks: Vec<Got> = m.blocks.iter().zip(&expected).map(|(got, want)| match (got, want) {
                (Got::Tool(id, name, json), Got::Tool(want_id, _, _)) if want_id.is_empty() => {
                    assert!(id.starts_with("toolu_"));
                    Got::Tool(String::new(), name.clone(), json.clone())
                }
                _ => got.clone(),
            }).collect();
            prop_assert_eq!(blocks, expected);
            prop_assert_eq!(m.stop_reason.as_deref(), Some(stop_reason(&finish)));
            prop_assert_eq!(m.stop_sequence.as_deref(), stop_sequence(&finish));
            prop_assert_eq!((m.id.as_str(), m.model.as_str()), ("msg_1", "m"));
            prop_assert_eq!(m.usage, json!({"input_tokens": 7, "cache_creation_input_tokens": 1, "cache_read_input_tokens": 2, "output_tokens": 7}));
        }
    }
}
