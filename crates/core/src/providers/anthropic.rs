//! Anthropic's Messages API (`POST /v1/messages`, `x-api-key`, `anthropic-version`).
//!
//! A client that speaks Anthropic's dialect gets its bytes passed through with only the model
//! renamed, and the answer back untouched. Any other: the canonical request's system parts go
//! to `system`; consecutive turns of one role are merged; tool results are `tool_result`
//! blocks; images and documents become base64, URL or file sources; thinking goes back with its
//! signature (thinking without one came from another vendor, and is left out). Answers, stream
//! events, stop reasons and usage (cache reads and writes included) map to canonical ones.

use super::{tool_arguments, ChatPlan, OutboundRequest, ParamPolicy, Prepared, StreamEnd, StreamTranslator};
use crate::canonical::{
    Answer, Block as AnswerBlock, BlockKind, Delta, Dialect, Egress, Event, Finish, Media, Output, OutputFormat, Part,
    Reasoning, Request, Role, ToolChoice,
};
use crate::chat::{PromptTokensDetails, Usage};
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
pub const MAX_CONTENT_BLOCKS: usize = 4_096;

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
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
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
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Image {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Document {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: Vec<Block<'a>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
    File { file_id: &'a str },
    Text { media_type: &'a str, data: &'a str },
}

#[derive(Serialize)]
struct Tool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'a Value>,
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

/// A canonical part as an Anthropic block; `None` for what Anthropic cannot be sent (thinking
/// without its signature, which Anthropic refuses: it came from another vendor).
fn block<'a>(part: &'a Part, at: &str) -> Result<Option<Block<'a>>, GatewayError> {
    Ok(Some(match part {
        Part::Text { text, .. } if text.is_empty() => return Ok(None),
        Part::Text { text, cache } => Block::Text { text, cache_control: cache.as_ref() },
        Part::Image { media, cache, .. } => {
            let source = match media {
                Media::Base64 { media_type, data } => Source::Base64 { media_type, data },
                Media::Url(url) if super::is_https_url(url) => Source::Url { url },
                Media::FileId(file_id) => Source::File { file_id },
                _ => return Err(GatewayError::invalid_request(at, "An image is a base64 data URL or an https URL.")),
            };
            Block::Image { source, cache_control: cache.as_ref() }
        }
        Part::Document { media, title, cache } => {
            let source = match media {
                Media::Base64 { media_type, data } => Source::Base64 { media_type, data },
                Media::Url(url) if super::is_https_url(url) => Source::Url { url },
                Media::FileId(file_id) => Source::File { file_id },
                Media::Text(data) => Source::Text { media_type: "text/plain", data },
                Media::Url(_) => return Err(GatewayError::invalid_request(
                    at,
                    "Anthropic models take files as base64 data (`file_data`), an https URL or an uploaded file id.",
                )),
            };
            Block::Document { source, title: title.as_deref(), cache_control: cache.as_ref() }
        }
        Part::Audio { .. } => {
            return Err(GatewayError::invalid_request(at, "Anthropic models do not take audio input."))
        }
        // Another vendor's signature of a call means nothing to Anthropic.
        Part::ToolCall { id, name, arguments, cache, .. } => {
            let input = tool_arguments(arguments, at)?;
            Block::ToolUse { id, name, input, cache_control: cache.as_ref() }
        }
        Part::ToolResult { id, content, is_error, cache, .. } => {
            let mut blocks = Vec::with_capacity(content.len());
            for (i, part) in content.iter().enumerate() {
                blocks.extend(block(part, &format!("{at}.content[{i}]"))?);
            }
            Block::ToolResult { tool_use_id: id, content: blocks, is_error: *is_error, cache_control: cache.as_ref() }
        }
        Part::Thinking { text, signature: Some(signature) } => Block::Thinking { thinking: text, signature },
        Part::Thinking { signature: None, .. } => return Ok(None),
        Part::RedactedThinking { data } => Block::RedactedThinking { data },
    }))
}

/// The blocks of a list of parts.
fn blocks<'a>(parts: &'a [Part], at: &str) -> Result<Vec<Block<'a>>, GatewayError> {
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        out.extend(block(part, &format!("{at}[{i}]"))?);
    }
    Ok(out)
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

/// The thinking budget the request asks of Anthropic: its own budget, or its effort's (none
/// for none or minimal).
pub fn thinking_budget(request: &Request) -> Result<Option<u32>, GatewayError> {
    Ok(match &request.reasoning {
        None => None,
        Some(Reasoning::Budget(budget)) => Some(*budget),
        Some(Reasoning::Effort(effort)) => match effort.as_str() {
            "none" | "minimal" => None,
            "low" => Some(1_024),
            "medium" => Some(4_096),
            "high" => Some(16_384),
            other => {
                return Err(GatewayError::invalid_request(
                    "reasoning_effort",
                    format!("'reasoning_effort' is one of none, minimal, low, medium, high; got '{other}'."),
                ))
            }
        },
    })
}

/// The `max_tokens` sent: the client's limit, else the model's default; with thinking, which
/// Anthropic counts inside `max_tokens` and which must stay below it, raised by the budget when
/// the client's limit does not exceed it (reported as adjusted). What the call can cost follows
/// from this number.
pub fn max_tokens(request: &Request, vendor_model: &str, thinking_budget: Option<u32>) -> u32 {
    let max_tokens = request.max_output_tokens.unwrap_or_else(|| default_max_tokens(vendor_model));
    match thinking_budget {
        Some(budget) if max_tokens <= budget => max_tokens.saturating_add(budget),
        _ => max_tokens,
    }
}

/// The vendor request for a chat: the client's bytes with only the model renamed when the
/// client speaks Anthropic's dialect (so `cache_control`, thinking signatures and fields the
/// gateway does not know survive), else built from the canonical request.
pub fn chat_request(
    provider: &Provider,
    vendor_model: &str,
    request: &Request,
    api_key: Option<&str>,
    strict: bool,
) -> Result<Prepared, GatewayError> {
    if request.source.dialect == Dialect::AnthropicMessages {
        let body = request.source.with_model(vendor_model);
        let mut headers = headers(provider, api_key);
        merge_headers(&mut headers, &request.source.headers);
        let outbound = OutboundRequest { url: format!("{}/messages", provider.base_url), headers, body };
        return Ok(Prepared { outbound, report: super::ParamReport::default(), plan: ChatPlan::of(request) });
    }
    let mut policy = ParamPolicy::for_chat("Anthropic", request, strict);
    let mut plan = ChatPlan::of(request);

    if request.choices > 1 {
        return Err(GatewayError::invalid_request("n", "Anthropic models return one choice; 'n' must be 1."));
    }

    let system = blocks(&request.system, "system")?;
    let mut messages: Vec<Message> = Vec::with_capacity(request.turns.len());
    for (i, turn) in request.turns.iter().enumerate() {
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        push_turn(&mut messages, role, blocks(&turn.parts, &format!("messages[{i}].content"))?);
    }

    let mut tools: Vec<Tool> = request
        .tools
        .iter()
        .map(|t| Tool {
            name: &t.name,
            description: t.description.as_deref(),
            input_schema: t.parameters.as_ref().map_or_else(|| Cow::Owned(empty_object_schema()), Cow::Borrowed),
            cache_control: t.cache.as_ref(),
        })
        .collect();

    let disable_parallel = request.parallel_tool_calls == Some(false);
    let mut tool_choice = match &request.tool_choice {
        None if disable_parallel && !tools.is_empty() => {
            Some(AnthropicToolChoice { kind: "auto", name: None, disable_parallel_tool_use: true })
        }
        None => None,
        Some(choice @ (ToolChoice::Auto | ToolChoice::None | ToolChoice::Required)) => Some(AnthropicToolChoice {
            kind: match choice {
                ToolChoice::None => "none",
                ToolChoice::Required => "any",
                _ => "auto",
            },
            name: None,
            disable_parallel_tool_use: disable_parallel && *choice != ToolChoice::None,
        }),
        Some(ToolChoice::Named(name)) => {
            Some(AnthropicToolChoice { kind: "tool", name: Some(name), disable_parallel_tool_use: disable_parallel })
        }
    };

    // JSON output: force a tool whose input schema is the requested schema; its input is the answer.
    let json_tool = match &request.output {
        OutputFormat::JsonSchema { description, schema, .. } => Some(Tool {
            name: JSON_TOOL,
            description: Some(description.as_deref().unwrap_or("Respond with JSON matching this schema.")),
            input_schema: schema.as_ref().map_or_else(|| Cow::Owned(empty_object_schema()), Cow::Borrowed),
            cache_control: None,
        }),
        OutputFormat::JsonObject => Some(Tool {
            name: JSON_TOOL,
            description: Some("Respond with a JSON object."),
            input_schema: Cow::Owned(serde_json::json!({"type": "object", "additionalProperties": true})),
            cache_control: None,
        }),
        OutputFormat::Text => None,
    };
    if let Some(tool) = json_tool {
        tools.push(tool);
        tool_choice =
            Some(AnthropicToolChoice { kind: "tool", name: Some(JSON_TOOL), disable_parallel_tool_use: true });
        plan.json_tool = Some(JSON_TOOL.to_owned());
    }

    let budget_tokens = thinking_budget(request)?;
    let max_tokens = max_tokens(request, vendor_model, budget_tokens);
    if request.max_output_tokens.is_some_and(|asked| asked != max_tokens) {
        policy.adjust("max_tokens", max_tokens)?;
    }
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
    let top_k = if thinking.is_some() && request.top_k.is_some() {
        policy.drop("top_k")?;
        None
    } else {
        request.top_k
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
        policy.drop_extra(name)?;
    }

    let body = MessagesRequest {
        model: vendor_model,
        max_tokens,
        messages,
        system,
        stop_sequences: &request.stop,
        temperature,
        top_p,
        top_k,
        stream: request.stream,
        tools,
        tool_choice,
        metadata: request.user.as_deref().map(|user_id| Metadata { user_id }),
        thinking,
    };
    let body = serde_json::to_vec(&body)
        .map_err(|e| GatewayError::invalid_request("", format!("The request cannot be encoded: {e}")))?;
    Ok(Prepared {
        outbound: OutboundRequest {
            url: format!("{}/messages", provider.base_url),
            headers: headers(provider, api_key),
            body,
        },
        report: policy.report,
        plan,
    })
}

/// The request to Anthropic's token counter: the client's body, model renamed, without the
/// members the counter does not take.
pub fn count_tokens_request(
    provider: &Provider,
    vendor_model: &str,
    request: &Request,
    api_key: Option<&str>,
) -> OutboundRequest {
    let mut body = request.source.with_model(vendor_model);
    if let Ok(Value::Object(mut members)) = serde_json::from_slice::<Value>(&body) {
        for name in
            ["max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences", "metadata", "service_tier"]
        {
            members.remove(name);
        }
        body = serde_json::to_vec(&members).unwrap_or(body);
    }
    OutboundRequest {
        url: format!("{}/messages/count_tokens", provider.base_url),
        headers: headers(provider, api_key),
        body,
    }
}

/// Adds the client's headers (its `anthropic-beta`) to the vendor request's: a list the
/// operator set on the provider too is joined with the client's, not replaced by it.
pub fn merge_headers(headers: &mut Vec<(String, String)>, client: &[(String, String)]) {
    for (name, value) in client {
        match headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            None => headers.push((name.clone(), value.clone())),
        }
    }
}

fn headers(provider: &Provider, api_key: Option<&str>) -> Vec<(String, String)> {
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("anthropic-version".to_owned(), API_VERSION.to_owned()),
    ];
    if let Some(key) = api_key {
        headers.push(("x-api-key".to_owned(), key.to_owned()));
    }
    headers.extend(provider.headers.iter().cloned());
    headers
}

// ---- Answer ----

#[derive(Deserialize)]
struct MessagesResponse {
    id: String,
    model: String,
    content: Vec<ResponseBlock>,
    stop_reason: Option<String>,
    #[serde(default)]
    stop_sequence: Option<String>,
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
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
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
    /// The cache writes by lifetime (`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`).
    #[serde(default)]
    cache_creation: Option<CacheCreation>,
    #[serde(default)]
    server_tool_use: Option<ServerToolUse>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_1h_input_tokens: u64,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct ServerToolUse {
    #[serde(default)]
    web_search_requests: u64,
}

impl AnthropicUsage {
    /// Later figures replace earlier ones: Anthropic's counts are cumulative, never deltas.
    fn update(&mut self, newer: &AnthropicUsage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer.cache_read_input_tokens.or(self.cache_read_input_tokens);
        self.cache_creation = newer.cache_creation.or(self.cache_creation);
        self.server_tool_use = newer.server_tool_use.or(self.server_tool_use);
    }

    fn canonical(self) -> Usage {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0);
        let cache_write = self.cache_creation_input_tokens.unwrap_or(0);
        // OpenAI's prompt_tokens include cached tokens; Anthropic's input_tokens do not.
        let prompt_tokens = self.input_tokens.unwrap_or(0).saturating_add(cache_read).saturating_add(cache_write);
        let mut usage = Usage::new(prompt_tokens, self.output_tokens.unwrap_or(0));
        usage.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: cache_read,
            cache_creation_tokens: self.cache_creation_input_tokens,
        });
        usage.billed = crate::chat::Billed {
            cache_write_1h_tokens: self.cache_creation.map_or(0, |c| c.ephemeral_1h_input_tokens),
            web_search_requests: self.server_tool_use.map_or(0, |s| s.web_search_requests),
        };
        usage
    }
}

/// The usage an Anthropic message reports, read without decoding the rest.
pub fn usage_of(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct UsageOnly {
        #[serde(default)]
        usage: Option<AnthropicUsage>,
    }
    Some(serde_json::from_slice::<UsageOnly>(body).ok()?.usage?.canonical())
}

/// Why the answer ended, from Anthropic's `stop_reason` (and the `stop_sequence` it names).
pub fn finish(stop_reason: Option<&str>, stop_sequence: Option<String>, plan: &ChatPlan) -> Finish {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => Finish::Length,
        Some("tool_use") if plan.json_tool.is_none() => Finish::ToolCalls,
        Some("refusal") => Finish::ContentFilter,
        Some("stop_sequence") => Finish::StopSequence(stop_sequence),
        _ => Finish::Stop,
    }
}

/// The vendor's answer in canonical terms: the forced JSON tool's input as text.
pub fn chat_response(provider: &str, body: &[u8], plan: &ChatPlan) -> Result<Answer, GatewayError> {
    let answer: MessagesResponse =
        serde_json::from_slice(body).map_err(|e| super::invalid_answer(provider, super::decode_cause(&e)))?;
    let mut blocks = Vec::with_capacity(answer.content.len());
    for block in answer.content {
        blocks.push(match block {
            ResponseBlock::Text { text } => AnswerBlock::Text(text),
            ResponseBlock::ToolUse { name, input, .. } if plan.json_tool.as_deref() == Some(name.as_str()) => {
                AnswerBlock::Text(input.to_string())
            }
            ResponseBlock::ToolUse { id, name, input } => {
                AnswerBlock::ToolCall { id, name, arguments: input.to_string(), signature: None }
            }
            ResponseBlock::Thinking { thinking, signature } => AnswerBlock::Thinking { text: thinking, signature },
            ResponseBlock::RedactedThinking { data } => AnswerBlock::RedactedThinking(data),
            ResponseBlock::Other => continue,
        });
    }
    let finish = finish(answer.stop_reason.as_deref(), answer.stop_sequence, plan);
    Ok(Answer {
        id: answer.id,
        model: answer.model,
        outputs: vec![Output { index: 0, blocks, finish }],
        usage: Some(answer.usage.canonical()),
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
struct StreamEvent<'a> {
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

/// The `delta` of a `content_block_delta` (`text_delta`, `input_json_delta`, `thinking_delta`,
/// `signature_delta`) or of a `message_delta` (the stop reason).
#[derive(Deserialize)]
struct EventDelta<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    signature: Option<Cow<'a, str>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    stop_sequence: Option<String>,
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
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    RedactedThinking {
        data: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Tool,
    /// The forced JSON tool: its input streams out as text.
    Json,
    Thinking,
    /// A block the client is not shown (a server tool's, a type Anthropic adds later).
    Other,
}

/// Anthropic's event stream to canonical events. No vendor text is kept between events (text,
/// tool-call arguments and thinking go out as their deltas come), so what it holds is one event
/// (`sse::MAX_EVENT_BYTES`) and a few bytes a block (`MAX_CONTENT_BLOCKS`).
pub struct Stream {
    provider: String,
    /// The vendor key, redacted from the vendor's error events.
    api_key: Option<String>,
    plan: ChatPlan,
    parser: SseParser,
    started: bool,
    /// Per Anthropic block: its kind and its canonical index (blocks the client is not shown
    /// have none, and the others are numbered without them).
    blocks: Vec<(Kind, u32)>,
    shown: u32,
    usage: AnthropicUsage,
    finish: Option<Finish>,
    end: StreamEnd,
}

impl Stream {
    pub fn new(provider: &str, plan: ChatPlan, api_key: Option<&str>, egress: Box<dyn Egress>) -> Self {
        Self {
            provider: provider.to_owned(),
            api_key: api_key.map(str::to_owned),
            plan,
            parser: SseParser::new(),
            started: false,
            blocks: Vec::new(),
            shown: 0,
            usage: AnthropicUsage::default(),
            finish: None,
            end: StreamEnd::new(egress),
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
        let event: StreamEvent = match serde_json::from_slice(data) {
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
            if self.started {
                return self.fail(out, super::invalid_answer(&self.provider, "a second message_start"));
            }
            self.started = true;
            self.usage.update(&message.usage);
            self.end.emit(Event::Start { id: &message.id, model: &message.model }, out);
            self.end.emit(Event::Usage(self.usage.canonical()), out);
            return;
        }
        if !self.started {
            // Anything but a ping before message_start is not Anthropic's stream.
            if event.kind != "ping" {
                self.fail(out, super::invalid_answer(&self.provider, format!("`{}` before message_start", event.kind)));
            }
            return;
        }
        if let Err(cause) = self.check_index(&event) {
            return self.fail(out, super::invalid_answer(&self.provider, cause));
        }
        match event.kind.as_ref() {
            "content_block_delta" => {
                let Some(delta) = event.delta else { return };
                let Some(&(kind, block)) = self.blocks.get(event.index) else { return };
                let delta = match (kind, &delta) {
                    (Kind::Text, EventDelta { text: Some(text), .. }) => Delta::Text(text),
                    (Kind::Json, EventDelta { partial_json: Some(json), .. }) if !json.is_empty() => Delta::Text(json),
                    (Kind::Tool, EventDelta { partial_json: Some(json), .. }) if !json.is_empty() => {
                        Delta::ToolArguments(json)
                    }
                    (Kind::Thinking, EventDelta { thinking: Some(thinking), .. }) => Delta::Thinking(thinking),
                    (Kind::Thinking, EventDelta { signature: Some(signature), .. }) => Delta::Signature(signature),
                    _ => return,
                };
                self.end.emit(Event::Delta { choice: 0, block, delta }, out);
            }
            "content_block_start" => {
                let block = self.shown;
                let (kind, start) = match &event.content_block {
                    Some(StartBlock::Text { .. }) => (Kind::Text, Some(BlockKind::Text)),
                    Some(StartBlock::ToolUse { name, .. }) if self.plan.json_tool.as_deref() == Some(name.as_str()) => {
                        (Kind::Json, Some(BlockKind::Text))
                    }
                    Some(StartBlock::ToolUse { id, name }) => {
                        (Kind::Tool, Some(BlockKind::ToolCall { id, name, signature: None }))
                    }
                    Some(StartBlock::Thinking { .. }) => (Kind::Thinking, Some(BlockKind::Thinking)),
                    Some(StartBlock::RedactedThinking { data }) => {
                        (Kind::Other, Some(BlockKind::RedactedThinking { data }))
                    }
                    Some(StartBlock::Other) | None => (Kind::Other, None),
                };
                let shown = start.is_some();
                // In bounds: check_index let only a started block or the next one through.
                match self.blocks.get_mut(event.index) {
                    Some(known) => *known = (kind, block),
                    None => self.blocks.push((kind, block)),
                }
                if let Some(start) = start {
                    self.shown += 1;
                    self.end.emit(Event::BlockStart { choice: 0, block, kind: start }, out);
                }
                let initial = match &event.content_block {
                    Some(StartBlock::Text { text }) if !text.is_empty() => Some(Delta::Text(text)),
                    Some(StartBlock::Thinking { thinking }) if !thinking.is_empty() => Some(Delta::Thinking(thinking)),
                    _ => None,
                };
                if let (true, Some(delta)) = (shown, initial) {
                    self.end.emit(Event::Delta { choice: 0, block, delta }, out);
                }
                if !shown {
                    // Not shown: its index must not be taken for a shown block's.
                    if let Some(known) = self.blocks.get_mut(event.index) {
                        known.1 = u32::MAX;
                    }
                }
            }
            "content_block_stop" => {
                if let Some(&(_, block)) = self.blocks.get(event.index).filter(|(_, b)| *b != u32::MAX) {
                    self.end.emit(Event::BlockStop { choice: 0, block }, out);
                }
            }
            "message_delta" => {
                if let Some(usage) = &event.usage {
                    self.usage.update(usage);
                }
                let (stop_reason, stop_sequence) =
                    event.delta.map(|d| (d.stop_reason, d.stop_sequence)).unwrap_or_default();
                self.finish = Some(finish(stop_reason.as_deref(), stop_sequence, &self.plan));
            }
            "message_stop" => {
                self.end.emit(Event::Usage(self.usage.canonical()), out);
                let finish = self.finish.take().unwrap_or_default();
                self.end.emit(Event::Finish { choice: 0, finish }, out);
                self.end.complete(out);
            }
            // ping, and event types Anthropic adds later, carry nothing here.
            _ => {}
        }
    }

    /// Whether the event's block index is one the stream can have: a delta's, a block that
    /// started; a start's, the next block (or a started one again), within the bound.
    fn check_index(&self, event: &StreamEvent) -> Result<(), String> {
        let started = self.blocks.len();
        match event.kind.as_ref() {
            "content_block_delta" if event.index >= started => {
                Err(format!("content_block_delta for block {} of {started} started", event.index))
            }
            "content_block_start" if event.index > started => {
                Err(format!("content_block_start for block {} after {started} (blocks start in order)", event.index))
            }
            "content_block_start" if event.index >= MAX_CONTENT_BLOCKS || self.shown as usize >= MAX_CONTENT_BLOCKS => {
                Err(format!("more than {MAX_CONTENT_BLOCKS} content blocks in one answer"))
            }
            _ => Ok(()),
        }
    }
}

impl StreamTranslator for Stream {
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        self.end.keepalive(out);
    }

    fn error(&self) -> Option<&GatewayError> {
        self.end.error()
    }

    fn done(&self) -> bool {
        self.end.is_done()
    }

    /// The usage reported so far (input from `message_start`, output from `message_delta`).
    fn usage(&self) -> Option<Usage> {
        Some(self.usage.canonical())
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

/// Anthropic's stream to a client that speaks Anthropic's dialect: byte for byte, event by
/// event (a vendor that breaks off leaves no half event), read on the way by the decoder for
/// the usage, the end and the vendor's errors. The vendor's error event reaches the client as
/// the gateway's, without the vendor key; a stream that breaks ends with an error event.
pub struct Passthrough {
    splitter: crate::sse::EventSplitter,
    reader: Stream,
}

/// What a pass-through's reader writes: nothing but the error event the client gets when the
/// vendor's stream fails (bare: the vendor's own `message_start` went out already, when any
/// event did).
struct ErrorsOnly;

impl Egress for ErrorsOnly {
    fn event(&mut self, _: Event<'_>, _: &mut Vec<u8>) {}
    fn complete(&mut self, _: &mut Vec<u8>) {}
    fn fail(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
        let (_, body) = crate::ingress::anthropic_messages::error_body(error);
        out.extend_from_slice(b"event: error\ndata: ");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
    }
}

impl Passthrough {
    pub fn new(provider: &str, api_key: Option<&str>) -> Self {
        Self {
            splitter: crate::sse::EventSplitter::default(),
            reader: Stream::new(provider, ChatPlan::default(), api_key, Box::new(ErrorsOnly)),
        }
    }
}

impl Passthrough {
    /// One whole event, read, and forwarded as it came (or, if the reader failed on it, the
    /// gateway's error event instead).
    fn forward(&mut self, event: &[u8], out: &mut Vec<u8>) {
        let mut error = Vec::new();
        self.reader.push(event, &mut error);
        out.extend_from_slice(if self.reader.error().is_some() { &error } else { event });
    }
}

impl StreamTranslator for Passthrough {
    fn error(&self) -> Option<&GatewayError> {
        self.reader.error()
    }

    fn done(&self) -> bool {
        self.reader.done()
    }

    fn usage(&self) -> Option<Usage> {
        self.reader.usage()
    }

    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.reader.done() {
            return;
        }
        let mut splitter = std::mem::take(&mut self.splitter);
        let split = splitter.push(bytes, |event| {
            self.forward(event, out);
            !self.reader.done()
        });
        self.splitter = splitter;
        if let Err(too_large) = split {
            let error = super::invalid_answer(&self.reader.provider, too_large);
            self.reader.fail(out, error);
        }
    }

    fn finish(&mut self, error: Option<&str>, out: &mut Vec<u8>) {
        if let Some(event) = self.splitter.take_held().filter(|_| !self.reader.done()) {
            self.forward(&event, out);
        }
        self.reader.finish(error, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai_egress(include_usage: bool) -> Box<dyn Egress> {
        Box::new(crate::ingress::openai_chat::Stream::new(1, include_usage))
    }
    use crate::config::ProviderKind;

    const KEY: &str = "sk-ant-api03-secret-key";

    fn run(input: &str) -> (String, Option<GatewayError>) {
        let mut stream = Stream::new("claude", ChatPlan::default(), Some(KEY), openai_egress(false));
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
        let mut stream = Stream::new("claude", ChatPlan::default(), None, openai_egress(false));
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
        assert_invalid(&text, error, &format!("more than {MAX_CONTENT_BLOCKS} content blocks"));
        let tool = "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\"}}\n\n";
        let (text, error) = run(&format!("{START}{}", tool.repeat(MAX_CONTENT_BLOCKS + 1)));
        assert_invalid(&text, error, &format!("more than {MAX_CONTENT_BLOCKS} content blocks"));
    }

    #[test]
    fn a_stream_without_line_ends_is_a_stream_error() {
        let mut stream = Stream::new("claude", ChatPlan::default(), None, openai_egress(false));
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

    /// Anthropic counts thinking inside `max_tokens`, which must exceed the budget: a client's
    /// limit raised to fit is reported as adjusted, under the client's name for it.
    #[test]
    fn max_tokens_raised_above_the_thinking_budget_is_reported() {
        let prepare =
            |request: &Request, strict: bool| chat_request(&provider(), "claude-sonnet-4-5", request, None, strict);
        let sent_max_tokens = |prepared: &Prepared| {
            serde_json::from_slice::<Value>(&prepared.outbound.body).unwrap()["max_tokens"].as_u64().unwrap()
        };
        let chat = |extra: &str| {
            let body = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"reasoning_effort":"high"{extra}}}"#
            );
            crate::ingress::openai_chat::decode(body.as_bytes()).unwrap()
        };
        // 1,000 is below the 16,384 of "high": raised by the budget.
        let prepared = prepare(&chat(r#","max_completion_tokens":1000"#), false).unwrap();
        assert_eq!(sent_max_tokens(&prepared), 17_384);
        assert_eq!(prepared.report.adjusted, ["max_tokens=17384"]);
        let e = prepare(&chat(r#","max_completion_tokens":1000"#), true).err().unwrap();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("max_tokens")), "strict mode refuses");
        // Above the budget already, or the model's default: nothing the client set is changed.
        for extra in [r#","max_tokens":20000"#, ""] {
            let prepared = prepare(&chat(extra), true).unwrap();
            assert!(prepared.report.adjusted.is_empty(), "{extra}: {:?}", prepared.report);
        }
        let body = br#"{"model":"m","input":"hi","reasoning":{"effort":"medium"},"max_output_tokens":4096}"#;
        let (request, _) = crate::ingress::openai_responses::decode(body.to_vec(), &[]).unwrap();
        let prepared = prepare(&request, false).unwrap();
        assert_eq!(
            (sent_max_tokens(&prepared), &prepared.report.adjusted[..]),
            (8_192, &["max_output_tokens=8192".to_owned()][..])
        );
    }

    #[test]
    fn an_image_is_a_data_url_or_an_https_url_only() {
        for url in ["http://example.com/a.png", "gs://bucket/a.png", "file:///etc/passwd", "ftp://x/y.png", "https:/x"]
        {
            let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]}]});
            let request = crate::ingress::openai_chat::decode(body.to_string().as_bytes()).unwrap();
            let e = chat_request(&provider(), "claude-x", &request, None, false).err().unwrap();
            assert_eq!((e.status, e.param.as_deref()), (400, Some("messages[0].content[1]")), "{url}");
        }
        let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"HTTPS://example.com/a.png"}}]}]}"#;
        let request = crate::ingress::openai_chat::decode(body.as_bytes()).unwrap();
        assert!(chat_request(&provider(), "claude-x", &request, None, false).is_ok());
    }
}
