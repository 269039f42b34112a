//! Anthropic's Messages API (`POST /v1/messages`, `x-api-key`, `anthropic-version`).
//!
//! Request: every system and developer message goes to `system`; consecutive turns of one role
//! are merged; tool results become `tool_result` blocks of one user turn; images become
//! base64 or URL sources. Answer: text blocks to `content`, `tool_use` to `tool_calls`,
//! thinking to `reasoning_content`, stop reasons and usage (cache reads and writes included)
//! mapped to OpenAI's.

use super::{parse_data_url, ChatPlan, OutboundRequest, ParamPolicy, Prepared, StreamTranslator};
use super::{tool_arguments, StreamEnd};
use crate::chat::{
    AssistantMessage, ChatCompletion, ChatRequest, Choice, ChunkWriter, CompletionTokensDetails, Content, ContentPart,
    Delta, FinishReason, FunctionCall, FunctionCallDelta, FunctionType, PromptTokensDetails, ResponseFormat, Role,
    Stop, ToolCall, ToolCallDelta, ToolChoice, ToolChoiceMode, Usage, COMPLETION_OBJECT,
};
use crate::config::Provider;
use crate::error::GatewayError;
use crate::sse::SseParser;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

pub const API_VERSION: &str = "2023-06-01";
/// The tool forced to obtain JSON output (`response_format`); its input is the answer.
pub const JSON_TOOL: &str = "json_response";
/// The most content blocks a streamed answer may have (tool calls among them). Blocks start in
/// order, so an index is at most the count so far: a vendor's index never sizes memory.
pub const MAX_CONTENT_BLOCKS: usize = 256;

/// Output tokens when the client sets no limit: the model's documented maximum output.
pub fn default_max_tokens(model: &str) -> u32 {
    let m = model.to_ascii_lowercase();
    if m.contains("opus-4") {
        32_000
    } else if m.contains("sonnet-4") || m.contains("haiku-4") || m.contains("3-7-sonnet") {
        64_000
    } else if m.contains("3-5-sonnet") || m.contains("3-5-haiku") {
        8_192
    } else {
        4_096
    }
}

// ---- Request ----

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<AnthropicToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Thinking>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Image {
        source: Source<'a>,
    },
    Document {
        source: Source<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: Vec<Block<'a>>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
struct Tool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
}

#[derive(Serialize)]
struct AnthropicToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

#[derive(Serialize)]
struct Thinking {
    #[serde(rename = "type")]
    kind: &'static str,
    budget_tokens: u32,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// The blocks of a user, tool or system message's content.
fn blocks<'a>(content: &'a Content, at: &str) -> Result<Vec<Block<'a>>, GatewayError> {
    match content {
        Content::Text(text) => {
            Ok(if text.is_empty() { vec![] } else { vec![Block::Text { text: text.into(), cache_control: None }] })
        }
        Content::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let at = format!("{at}[{i}]");
                match part {
                    ContentPart::Text { text, cache_control } => {
                        if !text.is_empty() {
                            out.push(Block::Text { text: text.into(), cache_control: cache_control.as_ref() });
                        }
                    }
                    ContentPart::ImageUrl { image_url } => {
                        let source = if let Some((media_type, data)) = parse_data_url(&image_url.url) {
                            Source::Base64 { media_type, data }
                        } else if super::is_https_url(&image_url.url) {
                            Source::Url { url: &image_url.url }
                        } else {
                            return Err(GatewayError::invalid_request(
                                format!("{at}.image_url.url"),
                                "An image is a base64 data URL or an https URL.",
                            ));
                        };
                        out.push(Block::Image { source });
                    }
                    ContentPart::File { file } => {
                        let data_url = file.get("file_data").and_then(Value::as_str).and_then(parse_data_url);
                        match data_url {
                            Some((media_type, data)) => out.push(Block::Document { source: Source::Base64 { media_type, data } }),
                            None => {
                                return Err(GatewayError::invalid_request(
                                    format!("{at}.file"),
                                    "Anthropic models take files as `file_data` (a base64 data URL); uploaded file ids are not supported.",
                                ))
                            }
                        }
                    }
                    ContentPart::InputAudio { .. } => {
                        return Err(GatewayError::invalid_request(at, "Anthropic models do not take audio input."));
                    }
                    ContentPart::Refusal { refusal } => {
                        out.push(Block::Text { text: refusal.into(), cache_control: None })
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Appends `content` as a turn of `role`, merged into the previous turn if it has the same role.
fn push_turn<'a>(messages: &mut Vec<Message<'a>>, role: &'static str, content: Vec<Block<'a>>) {
    if content.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(content),
        _ => messages.push(Message { role, content }),
    }
}

/// The vendor request for a chat.
/// The thinking budget a `reasoning_effort` asks of Anthropic; none for none or minimal.
pub fn thinking_budget(effort: Option<&str>) -> Result<Option<u32>, GatewayError> {
    Ok(match effort {
        None | Some("none") | Some("minimal") => None,
        Some("low") => Some(1_024),
        Some("medium") => Some(4_096),
        Some("high") => Some(16_384),
        Some(other) => {
            return Err(GatewayError::invalid_request(
                "reasoning_effort",
                format!("'reasoning_effort' is one of none, minimal, low, medium, high; got '{other}'."),
            ))
        }
    })
}

/// The `max_tokens` sent: the client's limit, else the model's default; with thinking, which
/// Anthropic counts inside `max_tokens` and which must stay below it, raised by the budget when
/// the client's limit does not exceed it. What the call can cost follows from this number.
pub fn max_tokens(request: &ChatRequest, vendor_model: &str, thinking_budget: Option<u32>) -> u32 {
    let max_tokens =
        request.max_completion_tokens.or(request.max_tokens).unwrap_or_else(|| default_max_tokens(vendor_model));
    match thinking_budget {
        Some(budget) if max_tokens <= budget => max_tokens.saturating_add(budget),
        _ => max_tokens,
    }
}

pub fn chat_request(
    provider: &Provider,
    vendor_model: &str,
    request: &ChatRequest,
    api_key: Option<&str>,
    strict: bool,
) -> Result<Prepared, GatewayError> {
    let mut policy = ParamPolicy::new("Anthropic", strict);
    let mut plan = ChatPlan::of(request);

    if request.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::invalid_request("n", "Anthropic models return one choice; 'n' must be 1."));
    }

    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::with_capacity(request.messages.len());
    for (i, m) in request.messages.iter().enumerate() {
        let at = format!("messages[{i}].content");
        match m.role {
            Role::System | Role::Developer => {
                if let Some(content) = &m.content {
                    system.extend(blocks(content, &at)?);
                }
            }
            Role::User => push_turn(
                &mut messages,
                "user",
                m.content.as_ref().map(|c| blocks(c, &at)).transpose()?.unwrap_or_default(),
            ),
            Role::Assistant => {
                let mut content = m.content.as_ref().map(|c| blocks(c, &at)).transpose()?.unwrap_or_default();
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    let input = tool_arguments(&call.function.arguments, &format!("messages[{i}].tool_calls[{j}]"))?;
                    content.push(Block::ToolUse { id: &call.id, name: &call.function.name, input });
                }
                push_turn(&mut messages, "assistant", content);
            }
            Role::Tool | Role::Function => {
                let tool_use_id = m.tool_call_id.as_deref().or(m.name.as_deref()).unwrap_or_default();
                let content = m.content.as_ref().map(|c| blocks(c, &at)).transpose()?.unwrap_or_default();
                push_turn(&mut messages, "user", vec![Block::ToolResult { tool_use_id, content }]);
            }
        }
    }

    let mut tools: Vec<Tool> = request
        .tools
        .iter()
        .flatten()
        .map(|t| Tool {
            name: &t.function.name,
            description: t.function.description.as_deref(),
            input_schema: t
                .function
                .parameters
                .as_ref()
                .map_or_else(|| Cow::Owned(empty_object_schema()), Cow::Borrowed),
        })
        .collect();

    let disable_parallel = request.parallel_tool_calls == Some(false);
    let mut tool_choice = match &request.tool_choice {
        None if disable_parallel && !tools.is_empty() => {
            Some(AnthropicToolChoice { kind: "auto", name: None, disable_parallel_tool_use: true })
        }
        None => None,
        Some(ToolChoice::Mode(mode)) => Some(AnthropicToolChoice {
            kind: match mode {
                ToolChoiceMode::Auto => "auto",
                ToolChoiceMode::None => "none",
                ToolChoiceMode::Required => "any",
            },
            name: None,
            disable_parallel_tool_use: disable_parallel && *mode != ToolChoiceMode::None,
        }),
        Some(ToolChoice::Named(named)) => Some(AnthropicToolChoice {
            kind: "tool",
            name: Some(&named.function.name),
            disable_parallel_tool_use: disable_parallel,
        }),
    };

    // JSON output: force a tool whose input schema is the requested schema; its input is the answer.
    match &request.response_format {
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            tools.push(Tool {
                name: JSON_TOOL,
                description: Some(
                    json_schema.description.as_deref().unwrap_or("Respond with JSON matching this schema."),
                ),
                input_schema: json_schema
                    .schema
                    .as_ref()
                    .map_or_else(|| Cow::Owned(empty_object_schema()), Cow::Borrowed),
            });
            tool_choice =
                Some(AnthropicToolChoice { kind: "tool", name: Some(JSON_TOOL), disable_parallel_tool_use: true });
            plan.json_tool = Some(JSON_TOOL.to_owned());
        }
        Some(ResponseFormat::JsonObject) => {
            tools.push(Tool {
                name: JSON_TOOL,
                description: Some("Respond with a JSON object."),
                input_schema: Cow::Owned(serde_json::json!({"type": "object", "additionalProperties": true})),
            });
            tool_choice =
                Some(AnthropicToolChoice { kind: "tool", name: Some(JSON_TOOL), disable_parallel_tool_use: true });
            plan.json_tool = Some(JSON_TOOL.to_owned());
        }
        Some(ResponseFormat::Text) | None => {}
    }

    let budget_tokens = thinking_budget(request.reasoning_effort.as_deref())?;
    let max_tokens = max_tokens(request, vendor_model, budget_tokens);
    let thinking = budget_tokens.map(|budget_tokens| Thinking { kind: "enabled", budget_tokens });

    let mut temperature = request.temperature;
    if let Some(t) = temperature {
        if thinking.is_some() {
            policy.drop("temperature")?;
            temperature = None;
        } else if t > 1.0 {
            policy.adjust("temperature", 1)?;
            temperature = Some(1.0);
        }
    }
    let top_p = if thinking.is_some() && request.top_p.is_some() {
        policy.drop("top_p")?;
        None
    } else {
        request.top_p
    };
    if thinking.is_some() && matches!(tool_choice, Some(AnthropicToolChoice { kind: "any" | "tool", .. })) {
        return Err(GatewayError::invalid_request(
            "reasoning_effort",
            "Anthropic models cannot think while a tool (or JSON output) is forced; drop reasoning_effort or the forced tool.",
        ));
    }
    if request.seed.is_some() {
        policy.drop("seed")?;
    }
    for name in request.extra.keys() {
        policy.drop(name)?;
    }

    let body = MessagesRequest {
        model: vendor_model,
        max_tokens,
        messages,
        system,
        stop_sequences: request.stop.as_ref().map(|s| match s {
            Stop::One(one) => vec![one.as_str()],
            Stop::Many(many) => many.iter().map(String::as_str).collect(),
        }),
        temperature,
        top_p,
        stream: request.is_stream(),
        tools,
        tool_choice,
        metadata: request.user.as_deref().map(|user_id| Metadata { user_id }),
        thinking,
    };
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("anthropic-version".to_owned(), API_VERSION.to_owned()),
    ];
    if let Some(key) = api_key {
        headers.push(("x-api-key".to_owned(), key.to_owned()));
    }
    headers.extend(provider.headers.iter().cloned());
    let body = serde_json::to_vec(&body)
        .map_err(|e| GatewayError::invalid_request("", format!("The request cannot be encoded: {e}")))?;
    Ok(Prepared {
        outbound: OutboundRequest { url: format!("{}/messages", provider.base_url), headers, body },
        report: policy.report,
        plan,
    })
}

// ---- Answer ----

#[derive(Deserialize)]
struct MessagesResponse {
    id: String,
    model: String,
    content: Vec<ResponseBlock>,
    stop_reason: Option<String>,
    usage: AnthropicUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Thinking {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Later figures replace earlier ones: Anthropic's counts are cumulative, never deltas.
    fn update(&mut self, newer: &AnthropicUsage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer.cache_read_input_tokens.or(self.cache_read_input_tokens);
    }

    fn to_openai(self, reasoning_tokens: Option<u64>) -> Usage {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0);
        let cache_write = self.cache_creation_input_tokens.unwrap_or(0);
        // OpenAI's prompt_tokens include cached tokens; Anthropic's input_tokens do not.
        let prompt_tokens = self.input_tokens.unwrap_or(0).saturating_add(cache_read).saturating_add(cache_write);
        let mut usage = Usage::new(prompt_tokens, self.output_tokens.unwrap_or(0));
        usage.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: cache_read,
            cache_creation_tokens: self.cache_creation_input_tokens,
        });
        if let Some(reasoning_tokens) = reasoning_tokens {
            usage.completion_tokens_details = Some(CompletionTokensDetails { reasoning_tokens });
        }
        usage
    }
}

pub fn finish_reason(stop_reason: Option<&str>, plan: &ChatPlan) -> FinishReason {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") if plan.json_tool.is_none() => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// The vendor's answer as an OpenAI chat completion.
pub fn chat_response(
    provider: &str,
    body: &[u8],
    plan: &ChatPlan,
    created: u64,
) -> Result<ChatCompletion, GatewayError> {
    let answer: MessagesResponse =
        serde_json::from_slice(body).map_err(|e| super::invalid_answer(provider, super::decode_cause(&e)))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in answer.content {
        match block {
            ResponseBlock::Text { text: t } => text.push_str(&t),
            ResponseBlock::ToolUse { name, input, .. } if plan.json_tool.as_deref() == Some(name.as_str()) => {
                text.push_str(&input.to_string());
            }
            ResponseBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: FunctionType::Function,
                function: FunctionCall { name, arguments: input.to_string() },
            }),
            ResponseBlock::Thinking { thinking } => reasoning.push_str(&thinking),
            ResponseBlock::Other => {}
        }
    }
    let finish_reason = finish_reason(answer.stop_reason.as_deref(), plan);
    Ok(ChatCompletion {
        id: answer.id,
        object: COMPLETION_OBJECT.to_owned(),
        created,
        model: answer.model,
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: Role::Assistant,
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                refusal: None,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            },
            finish_reason,
            logprobs: None,
        }],
        usage: Some(answer.usage.to_openai(None)),
        system_fingerprint: None,
    })
}

// ---- Errors ----

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// The client's error for an Anthropic error answer (or stream `error` event). The HTTP status
/// decides the class (a 5xx stays a 5xx, a 4xx a 4xx); the body's `type` only names the error
/// within it. A refused key is the operator's problem, whatever the status says.
fn error_from_parts(provider: &str, status: u16, kind: &str, message: &str) -> GatewayError {
    if matches!(status, 401 | 403) || matches!(kind, "authentication_error" | "permission_error") {
        return GatewayError::upstream_auth_failed(provider);
    }
    let message = message.to_owned();
    match status {
        529 => GatewayError::new(
            503,
            "server_error",
            "upstream_overloaded",
            format!("Provider `{provider}` is overloaded: {message}"),
        ),
        500..=599 if kind == "overloaded_error" => GatewayError::new(
            status,
            "server_error",
            "upstream_overloaded",
            format!("Provider `{provider}` is overloaded: {message}"),
        ),
        500..=599 => GatewayError::new(status, "server_error", "upstream_error", message),
        429 => GatewayError::new(429, "rate_limit_error", "rate_limit_exceeded", message),
        413 => GatewayError::new(413, "invalid_request_error", "request_too_large", message),
        404 => GatewayError::new(404, "invalid_request_error", "model_not_found", message),
        400..=499 => match kind {
            "rate_limit_error" => GatewayError::new(status, "rate_limit_error", "rate_limit_exceeded", message),
            "request_too_large" => GatewayError::new(status, "invalid_request_error", "request_too_large", message),
            "not_found_error" => GatewayError::new(status, "invalid_request_error", "model_not_found", message),
            _ => GatewayError::new(status, "invalid_request_error", "invalid_request", message),
        },
        // Not an error status at all: the vendor's answer makes no sense.
        _ => GatewayError::new(502, "server_error", "upstream_error", message),
    }
}

/// The client's error for an Anthropic error answer, without the vendor key in any field.
pub fn error_from_vendor(provider: &str, status: u16, body: &[u8], api_key: Option<&str>) -> GatewayError {
    let error = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => error_from_parts(provider, status, &error.kind, &error.message),
        Err(_) => {
            let text = super::body_excerpt(body, api_key);
            error_from_parts(provider, status, "", &format!("Provider `{provider}` answered HTTP {status}: {text}"))
        }
    };
    super::redacted(error, api_key)
}

/// The status Anthropic answers an error of this `type` with, for an `error` event in a stream
/// (which has no status of its own).
fn stream_error_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

// ---- Stream ----

/// One stream event, flat: its `type` says which fields it has. Flat and borrowing, so the
/// frequent `content_block_delta` costs one pass over its bytes and no copy of its text.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: usize,
    #[serde(default, borrow)]
    delta: Option<EventDelta<'a>>,
    #[serde(default)]
    message: Option<StartMessage>,
    #[serde(default)]
    content_block: Option<StartBlock>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

/// The `delta` of a `content_block_delta` (`text_delta`, `input_json_delta`, `thinking_delta`)
/// or of a `message_delta` (the stop reason).
#[derive(Deserialize)]
struct EventDelta<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct StartMessage {
    id: String,
    model: String,
    #[serde(default)]
    usage: AnthropicUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    Thinking {},
    #[serde(other)]
    Other,
}

#[derive(Clone, Copy, PartialEq)]
enum BlockKind {
    Text,
    /// A tool call, with its index among the answer's tool calls.
    Tool(u32),
    /// The forced JSON tool: its input streams out as content.
    Json,
    Thinking,
    Other,
}

/// Anthropic's event stream to OpenAI's chunks. No vendor text is kept between events (text,
/// tool-call arguments and thinking go out as their deltas come), so what it holds is one event
/// (`sse::MAX_EVENT_BYTES`), the id and model, and one byte a block (`MAX_CONTENT_BLOCKS`).
pub struct Stream {
    provider: String,
    /// The vendor key, redacted from the vendor's error events.
    api_key: Option<String>,
    plan: ChatPlan,
    parser: SseParser,
    created: u64,
    /// Set by `message_start`, which carries the id and model every chunk repeats.
    writer: Option<ChunkWriter>,
    blocks: Vec<BlockKind>,
    tool_calls: u32,
    usage: AnthropicUsage,
    finish: Option<FinishReason>,
    end: StreamEnd,
}

impl Stream {
    pub fn new(provider: &str, plan: ChatPlan, created: u64, api_key: Option<&str>) -> Self {
        Self {
            provider: provider.to_owned(),
            api_key: api_key.map(str::to_owned),
            plan,
            parser: SseParser::new(),
            created,
            writer: None,
            blocks: Vec::new(),
            tool_calls: 0,
            usage: AnthropicUsage::default(),
            finish: None,
            end: StreamEnd::default(),
        }
    }

    /// Ends the client's stream with `error`, which may quote the vendor: without its key.
    fn fail(&mut self, out: &mut Vec<u8>, error: GatewayError) {
        self.end.fail(out, super::redacted(error, self.api_key.as_deref()));
    }

    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.end.is_done() {
            return;
        }
        let event: Event = match serde_json::from_slice(data) {
            Ok(event) => event,
            Err(e) => {
                let cause = format!("unreadable stream event: {}", super::decode_cause(&e));
                let error = super::invalid_answer(&self.provider, cause);
                return self.fail(out, error);
            }
        };
        if event.kind == "error" {
            let error = event.error.unwrap_or(ErrorObject { kind: String::new(), message: "stream error".into() });
            let status = stream_error_status(&error.kind);
            let error = error_from_parts(&self.provider, status, &error.kind, &error.message);
            return self.fail(out, error);
        }
        if event.kind == "message_start" {
            let Some(message) = event.message else {
                return self.fail(out, super::invalid_answer(&self.provider, "message_start without its message"));
            };
            self.usage.update(&message.usage);
            let writer = ChunkWriter::new(&message.id, self.created, &message.model);
            writer.delta(
                out,
                0,
                &Delta { role: Some(Role::Assistant), content: Some(String::new()), ..Delta::default() },
                None,
            );
            self.writer = Some(writer);
            return;
        }
        if self.writer.is_none() {
            // Anything but a ping before message_start is not Anthropic's stream.
            if event.kind != "ping" {
                self.fail(out, super::invalid_answer(&self.provider, format!("`{}` before message_start", event.kind)));
            }
            return;
        }
        if let Err(cause) = self.check_index(&event) {
            return self.fail(out, super::invalid_answer(&self.provider, cause));
        }
        let Some(writer) = &self.writer else { return };
        match event.kind.as_ref() {
            "content_block_delta" => {
                let Some(delta) = event.delta else { return };
                let Some(&kind) = self.blocks.get(event.index) else { return };
                match (kind, delta) {
                    (BlockKind::Text, EventDelta { text: Some(text), .. }) => writer.content(out, 0, &text),
                    (BlockKind::Json, EventDelta { partial_json: Some(json), .. }) if !json.is_empty() => {
                        writer.content(out, 0, &json)
                    }
                    (BlockKind::Tool(i), EventDelta { partial_json: Some(json), .. }) if !json.is_empty() => {
                        let call = ToolCallDelta {
                            index: i,
                            function: FunctionCallDelta {
                                arguments: Some(json.into_owned()),
                                ..FunctionCallDelta::default()
                            },
                            ..ToolCallDelta::default()
                        };
                        writer.delta(out, 0, &Delta { tool_calls: Some(vec![call]), ..Delta::default() }, None);
                    }
                    (BlockKind::Thinking, EventDelta { thinking: Some(thinking), .. }) => {
                        let delta = Delta { reasoning_content: Some(thinking.into_owned()), ..Delta::default() };
                        writer.delta(out, 0, &delta, None);
                    }
                    _ => {}
                }
            }
            "content_block_start" => {
                let kind = match event.content_block {
                    Some(StartBlock::Text { text }) => {
                        if !text.is_empty() {
                            writer.content(out, 0, &text);
                        }
                        BlockKind::Text
                    }
                    Some(StartBlock::ToolUse { name, .. }) if self.plan.json_tool.as_deref() == Some(name.as_str()) => {
                        BlockKind::Json
                    }
                    Some(StartBlock::ToolUse { id, name }) => {
                        let tool_index = self.tool_calls;
                        self.tool_calls = self.tool_calls.saturating_add(1);
                        let call = ToolCallDelta {
                            index: tool_index,
                            id: Some(id),
                            kind: Some(FunctionType::Function),
                            function: FunctionCallDelta { name: Some(name), arguments: Some(String::new()) },
                        };
                        writer.delta(out, 0, &Delta { tool_calls: Some(vec![call]), ..Delta::default() }, None);
                        BlockKind::Tool(tool_index)
                    }
                    Some(StartBlock::Thinking {}) => BlockKind::Thinking,
                    Some(StartBlock::Other) | None => BlockKind::Other,
                };
                // In bounds: check_index let only a started block or the next one through.
                match self.blocks.get_mut(event.index) {
                    Some(block) => *block = kind,
                    None => self.blocks.push(kind),
                }
            }
            "message_delta" => {
                if let Some(usage) = &event.usage {
                    self.usage.update(usage);
                }
                let stop_reason = event.delta.and_then(|d| d.stop_reason);
                self.finish = Some(finish_reason(stop_reason.as_deref(), &self.plan));
            }
            "message_stop" => {
                writer.delta(out, 0, &Delta::default(), Some(self.finish.unwrap_or(FinishReason::Stop)));
                if self.plan.include_usage {
                    writer.usage(out, &self.usage.to_openai(None));
                }
                self.end.complete(out);
            }
            // content_block_stop, ping, and event types Anthropic adds later carry nothing here.
            _ => {}
        }
    }
}

impl Stream {
    /// Whether the event's block index is one the stream can have: a delta's, a block that
    /// started; a start's, the next block (or a started one again), within the bound.
    fn check_index(&self, event: &Event) -> Result<(), String> {
        let started = self.blocks.len();
        match event.kind.as_ref() {
            "content_block_delta" if event.index >= started => {
                Err(format!("content_block_delta for block {} of {started} started", event.index))
            }
            "content_block_start" if event.index > started => {
                Err(format!("content_block_start for block {} after {started} (blocks start in order)", event.index))
            }
            "content_block_start"
                if event.index >= MAX_CONTENT_BLOCKS || self.tool_calls as usize >= MAX_CONTENT_BLOCKS =>
            {
                Err(format!("more than {MAX_CONTENT_BLOCKS} content blocks in one answer"))
            }
            _ => Ok(()),
        }
    }
}

impl StreamTranslator for Stream {
    fn error(&self) -> Option<&GatewayError> {
        self.end.error()
    }

    fn done(&self) -> bool {
        self.end.is_done()
    }

    /// The usage reported so far (input from `message_start`, output from `message_delta`).
    fn usage(&self) -> Option<Usage> {
        Some(self.usage.to_openai(None))
    }

    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut parser = std::mem::take(&mut self.parser);
        let read = parser.push(bytes, &mut |_, data| self.on_event(data, out));
        self.parser = parser;
        if let Err(too_large) = read {
            self.fail(out, super::invalid_answer(&self.provider, too_large));
        }
    }

    fn finish(&mut self, error: Option<&str>, out: &mut Vec<u8>) {
        self.parser.finish();
        if !self.end.is_done() {
            let cause = error.unwrap_or("the stream ended before the answer was complete");
            let error = GatewayError::upstream_stream_broken(&self.provider, cause);
            self.fail(out, error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;

    const KEY: &str = "sk-ant-api03-secret-key";

    fn run(input: &str) -> (String, Option<GatewayError>) {
        let mut stream = Stream::new("claude", ChatPlan::default(), 1, Some(KEY));
        let mut out = Vec::new();
        for piece in input.as_bytes().chunks(7) {
            stream.push(piece, &mut out);
        }
        stream.finish(None, &mut out);
        (String::from_utf8(out).unwrap(), stream.error().cloned())
    }

    const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{}}}\n\n";

    fn block_start(index: u64) -> String {
        format!("data: {{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n")
    }

    fn assert_invalid(text: &str, error: Option<GatewayError>, says: &str) {
        let error = error.expect("the stream failed");
        assert_eq!(error.code.as_deref(), Some("upstream_invalid_response"));
        assert!(error.message.contains(says), "{}", error.message);
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }

    #[test]
    fn a_huge_block_index_is_a_stream_error_not_an_allocation() {
        let (text, error) = run(&format!("{START}{}", block_start(1_000_000_000_000)));
        assert_invalid(&text, error, "block 1000000000000 after 0");
        let delta = "data: {\"type\":\"content_block_delta\",\"index\":1000000000000,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n";
        let (text, error) = run(&format!("{START}{}{delta}", block_start(0)));
        assert_invalid(&text, error, "block 1000000000000 of 1 started");
        let (text, error) = run(&format!("{START}{}", block_start(u64::MAX)));
        assert_invalid(&text, error, "after 0");
        let (text, error) = run(&format!("{START}{}", r#"data: {"type":"content_block_start","index":-1}"#));
        assert!(error.is_some() && text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn counts_past_u64_do_not_overflow() {
        let max = u64::MAX;
        let start = format!("data: {{\"type\":\"message_start\",\"message\":{{\"id\":\"m\",\"model\":\"c\",\"usage\":{{\"input_tokens\":{max},\"cache_read_input_tokens\":{max},\"cache_creation_input_tokens\":1,\"output_tokens\":{max}}}}}}}\n\n");
        let (_, error) = run(&start);
        assert!(error.is_some_and(|e| e.code.as_deref() == Some("upstream_stream_broken")));
        let mut stream = Stream::new("claude", ChatPlan::default(), 1, None);
        stream.push(start.as_bytes(), &mut Vec::new());
        let usage = stream.usage().unwrap();
        assert_eq!((usage.prompt_tokens, usage.total_tokens), (max, max));
    }

    #[test]
    fn blocks_start_in_order_and_are_bounded() {
        let (text, error) = run(&format!("{START}{}{}", block_start(0), block_start(2)));
        assert_invalid(&text, error, "block 2 after 1");
        let many: String = (0..=MAX_CONTENT_BLOCKS as u64).map(block_start).collect();
        let (text, error) = run(&format!("{START}{many}"));
        assert_invalid(&text, error, "more than 256 content blocks");
        let tool = "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\"}}\n\n";
        let (text, error) = run(&format!("{START}{}", tool.repeat(MAX_CONTENT_BLOCKS + 1)));
        assert_invalid(&text, error, "more than 256 content blocks");
    }

    #[test]
    fn a_stream_without_line_ends_is_a_stream_error() {
        let mut stream = Stream::new("claude", ChatPlan::default(), 1, None);
        let mut out = Vec::new();
        stream.push(START.as_bytes(), &mut out);
        let html = vec![b'<'; 256 * 1024];
        for _ in 0..5 {
            stream.push(&html, &mut out);
        }
        assert!(stream.done());
        assert!(stream.error().is_some_and(|e| e.message.contains("exceeds the limit of 1048576 bytes")));
        assert!(out.ends_with(crate::sse::DONE));
    }

    #[test]
    fn a_stream_error_event_loses_the_key() {
        let event = format!("event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"api_error\",\"message\":\"bad {KEY}\"}}}}\n\n");
        let (text, error) = run(&format!("{START}{event}"));
        assert!(!text.contains(KEY), "{text}");
        assert!(text.contains("bad [redacted]"), "{text}");
        assert_eq!(error.map(|e| (e.status, e.message)), Some((500, "bad [redacted]".to_owned())));
        let event = "data: {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key\"}}\n\n";
        let (text, error) = run(&format!("{START}{event}"));
        assert!(!text.contains("x-api-key"));
        assert_eq!(error.and_then(|e| e.code).as_deref(), Some("upstream_auth_failed"));
    }

    fn vendor_error(status: u16, kind: &str, message: &str) -> GatewayError {
        let body = serde_json::json!({"type": "error", "error": {"type": kind, "message": message}});
        error_from_vendor("claude", status, body.to_string().as_bytes(), Some(KEY))
    }

    #[test]
    fn the_status_class_is_the_vendors_and_the_type_only_names_it() {
        let e = vendor_error(500, "invalid_request_error", "odd");
        assert_eq!((e.status, e.kind, e.code.as_deref()), (500, "server_error", Some("upstream_error")));
        let e = vendor_error(503, "overloaded_error", "busy");
        assert_eq!((e.status, e.code.as_deref()), (503, Some("upstream_overloaded")));
        let e = vendor_error(400, "rate_limit_error", "slow down");
        assert_eq!((e.status, e.kind), (400, "rate_limit_error"));
        let e = vendor_error(422, "invalid_request_error", "no");
        assert_eq!((e.status, e.code.as_deref()), (422, Some("invalid_request")));
        assert_eq!(vendor_error(200, "api_error", "?").status, 502);
    }

    #[test]
    fn a_refused_key_is_the_operators_problem_at_401_and_403() {
        for (status, kind) in [(401, "authentication_error"), (403, "permission_error"), (403, "forbidden")] {
            let e = vendor_error(status, kind, &format!("key {KEY} may not"));
            assert_eq!((e.status, e.kind, e.code.as_deref()), (502, "server_error", Some("upstream_auth_failed")));
            assert!(e.message.contains("`claude`") && !e.message.contains("may not"), "{}", e.message);
            assert!(crate::providers::is_vendor_fault(status, &e) && crate::providers::is_retryable_status(status));
        }
    }

    #[test]
    fn the_key_is_redacted_from_every_form_of_the_answer() {
        let e = vendor_error(400, "invalid_request_error", &format!("x-api-key {KEY} is odd"));
        assert_eq!(e.message, "x-api-key [redacted] is odd");
        let e = error_from_vendor("claude", 502, format!("<html>proxy saw {KEY}</html>").as_bytes(), Some(KEY));
        assert!(!e.message.contains(KEY) && e.message.contains("proxy saw [redacted]"), "{}", e.message);
    }

    fn provider() -> Provider {
        Provider::new("claude", ProviderKind::Anthropic, "https://api.anthropic.com/v1")
    }

    #[test]
    fn an_image_is_a_data_url_or_an_https_url_only() {
        for url in ["http://example.com/a.png", "gs://bucket/a.png", "file:///etc/passwd", "ftp://x/y.png", "https:/x"]
        {
            let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]}]});
            let request = ChatRequest::parse(body.to_string().as_bytes()).unwrap();
            let e = chat_request(&provider(), "claude-x", &request, None, false).err().unwrap();
            assert_eq!((e.status, e.param.as_deref()), (400, Some("messages[0].content[1].image_url.url")), "{url}");
        }
        let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"HTTPS://example.com/a.png"}}]}]}"#;
        let request = ChatRequest::parse(body.as_bytes()).unwrap();
        assert!(chat_request(&provider(), "claude-x", &request, None, false).is_ok());
    }
}
