//! Google's Gemini API (`models/{model}:generateContent`, `:streamGenerateContent?alt=sse`),
//! with the key in the `x-goog-api-key` header, never in the URL.
//!
//! Request (from the canonical one): system parts to `systemInstruction`; roles `user` /
//! `model`, consecutive turns merged; images and files inline or by URI; tools to
//! `functionDeclarations` with their JSON Schema reduced to the subset Gemini accepts; tool
//! results named after the call they answer. Answer: candidates to outputs, thoughts to
//! thinking, function calls to tool calls with stable ids, finish reasons and usage (thinking
//! and cached tokens included) to canonical ones.

use super::{tool_arguments, ChatPlan, OutboundRequest, ParamPolicy, Prepared, StreamEnd, StreamTranslator};
use crate::canonical::{
    Answer, Block, BlockKind, Delta, Egress, Event, Finish, Media, Output, OutputFormat, Part, Reasoning, Request,
    Role, ToolChoice,
};
use crate::chat::{CompletionTokensDetails, PromptTokensDetails, Usage};
use crate::config::Provider;
use crate::error::GatewayError;
use crate::sse::SseParser;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// The most candidates a streamed answer may have; a candidate index at or past it is refused.
pub const MAX_CANDIDATES: usize = 128;

// ---- Request ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest<'a> {
    contents: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolSet<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig,
}

#[derive(Serialize)]
struct Turn<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<GeminiPart<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
enum GeminiPart<'a> {
    Text(Cow<'a, str>),
    InlineData {
        mime_type: &'a str,
        data: &'a str,
    },
    FileData {
        mime_type: Cow<'a, str>,
        file_uri: &'a str,
    },
    FunctionResponse {
        name: &'a str,
        response: Value,
    },
    /// `{"functionCall": {...}, "thoughtSignature": "..."}`: the signature Gemini gave the call,
    /// which Gemini 3 requires back, is a sibling of `functionCall` in the part.
    #[serde(untagged)]
    FunctionCall(SignedCall<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignedCall<'a> {
    function_call: CallOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<&'a str>,
}

#[derive(Serialize)]
struct CallOut<'a> {
    name: &'a str,
    args: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSet<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Serialize)]
struct FunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<Vec<&'a str>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<ThinkingConfig>,
}

impl GenerationConfig {
    fn is_empty(&self) -> bool {
        serde_json::to_value(self).is_ok_and(|v| v.as_object().is_some_and(Map::is_empty))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThinkingConfig {
    thinking_budget: u32,
    /// Gemini returns the thoughts' text only when asked: the client asked for reasoning.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    include_thoughts: bool,
}

/// The `thinkingBudget` the request asks of Gemini (0 turns thinking off): its own budget, or
/// its effort's; none when the client did not say, leaving the model's own default. What is
/// sent is this as the model takes it (`fit_thinking_budget`).
pub fn thinking_budget(request: &Request) -> Result<Option<u32>, GatewayError> {
    let effort = match &request.reasoning {
        None => return Ok(None),
        Some(Reasoning::Budget(budget)) => return Ok(Some(*budget)),
        Some(Reasoning::Effort(effort)) => effort.as_str(),
    };
    Ok(match effort {
        "none" => Some(0),
        "minimal" | "low" => Some(1_024),
        "medium" => Some(8_192),
        "high" => Some(24_576),
        other => {
            return Err(GatewayError::invalid_request(
                "reasoning_effort",
                format!("'reasoning_effort' is one of none, minimal, low, medium, high; got '{other}'."),
            ))
        }
    })
}

/// The thinking budgets a Gemini model takes: whether 0 (thinking off) is one, and the range of
/// the others.
struct BudgetRange {
    off: bool,
    min: u32,
    max: u32,
}

/// The budgets of the Gemini 2.5 models, by family; `None` for a model these rules do not know
/// (Gemini 3 thinks by `thinkingLevel`), whose budget is sent as asked.
fn budget_range(vendor_model: &str) -> Option<BudgetRange> {
    let name = vendor_model.rsplit('/').next().unwrap_or(vendor_model).to_ascii_lowercase();
    let family = name.strip_prefix("gemini-2.5-")?;
    if family.starts_with("flash-lite") {
        Some(BudgetRange { off: true, min: 512, max: 24_576 })
    } else if family.starts_with("flash") {
        Some(BudgetRange { off: true, min: 1, max: 24_576 })
    } else if family.starts_with("pro") {
        // A pro model always thinks: 0 is refused, not thinking off.
        Some(BudgetRange { off: false, min: 128, max: 32_768 })
    } else {
        None
    }
}

/// `budget` as `vendor_model` takes it: within the model's range (a pro model, which cannot
/// stop thinking, thinks the least it can for 0); as asked for a model of unknown range.
pub fn fit_thinking_budget(vendor_model: &str, budget: u32) -> u32 {
    match budget_range(vendor_model) {
        Some(range) if budget == 0 && range.off => 0,
        Some(range) => budget.clamp(range.min, range.max),
        None => budget,
    }
}

/// Schema keywords Gemini's `Schema` object accepts; every other keyword is removed.
const SCHEMA_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "anyOf",
    "propertyOrdering",
    "default",
];

/// A JSON Schema reduced to what Gemini accepts: `$ref`s inlined from `$defs`/`definitions`,
/// `type: [T, "null"]` as `nullable`, `const` as a one-value `enum`, unknown keywords removed.
/// Gemini's schemas have no references, so a recursive `$ref` (one already being inlined on
/// the way down) becomes an open object; and inlining stops at `SCHEMA_NODES` subschemas, past
/// which the rest are open objects too: a 300-byte schema whose references fan out must not
/// grow into billions of nodes.
pub fn reduce_schema(schema: &Value) -> Value {
    let defs = schema.get("$defs").or_else(|| schema.get("definitions")).cloned().unwrap_or(Value::Null);
    let mut reducer = Reducer { defs: &defs, expanding: Vec::new(), nodes: 0 };
    reducer.reduce(schema, 0)
}

/// The most subschemas one reduced schema holds.
pub const SCHEMA_NODES: usize = 4_096;

struct Reducer<'d> {
    defs: &'d Value,
    /// The `$ref`s being inlined on the way from the root to here.
    expanding: Vec<String>,
    nodes: usize,
}

impl Reducer<'_> {
    fn reduce(&mut self, schema: &Value, depth: usize) -> Value {
        let Some(object) = schema.as_object() else { return schema.clone() };
        self.nodes += 1;
        if depth > 32 || self.nodes > SCHEMA_NODES {
            return serde_json::json!({"type": "object"});
        }
        if let Some(target) = object.get("$ref").and_then(Value::as_str) {
            let name = target.rsplit('/').next().unwrap_or_default();
            if self.expanding.iter().any(|n| n == name) {
                return serde_json::json!({"type": "object"}); // a recursive $ref: Gemini has no cycles
            }
            if let Some(found) = self.defs.get(name) {
                self.expanding.push(name.to_owned());
                let reduced = self.reduce(found, depth + 1);
                self.expanding.pop();
                return reduced;
            }
        }
        let mut out = Map::new();
        for (key, value) in object {
            match key.as_str() {
                "type" => match value {
                    Value::Array(types) => {
                        let non_null: Vec<&Value> = types.iter().filter(|t| t.as_str() != Some("null")).collect();
                        if non_null.len() < types.len() {
                            out.insert("nullable".into(), Value::Bool(true));
                        }
                        if let Some(first) = non_null.first() {
                            out.insert("type".into(), (*first).clone());
                        }
                    }
                    other => {
                        out.insert("type".into(), other.clone());
                    }
                },
                "const" => {
                    out.insert("enum".into(), Value::Array(vec![value.clone()]));
                }
                "properties" => {
                    let properties = value
                        .as_object()
                        .map(|p| p.iter().map(|(k, v)| (k.clone(), self.reduce(v, depth + 1))).collect());
                    out.insert(key.clone(), properties.map_or(Value::Object(Map::new()), Value::Object));
                }
                "items" => {
                    out.insert(key.clone(), self.reduce(value, depth + 1));
                }
                "anyOf" | "oneOf" => {
                    let options: Vec<Value> =
                        value.as_array().into_iter().flatten().map(|v| self.reduce(v, depth + 1)).collect();
                    out.insert("anyOf".into(), Value::Array(options));
                }
                "enum" => {
                    // Gemini's enums hold strings; a null among them means the value is nullable.
                    let values = value.as_array().cloned().unwrap_or_default();
                    if values.iter().any(Value::is_null) {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    out.insert(key.clone(), Value::Array(values.into_iter().filter(|v| !v.is_null()).collect()));
                }
                k if SCHEMA_KEYWORDS.contains(&k) => {
                    out.insert(key.clone(), value.clone());
                }
                _ => {}
            }
        }
        Value::Object(out)
    }
}

fn guess_mime_type(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default().to_ascii_lowercase();
    match path.rsplit('.').next().unwrap_or_default() {
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => "image/jpeg",
    }
}

/// A canonical part as Gemini parts (a tool result's content is its `response`; thinking,
/// whose signature is another vendor's, is not sent back).
fn part<'a>(part: &'a Part, at: &str, out: &mut Vec<GeminiPart<'a>>) -> Result<(), GatewayError> {
    match part {
        Part::Text { text, .. } if text.is_empty() => {}
        Part::Text { text, .. } => out.push(GeminiPart::Text(Cow::Borrowed(text))),
        Part::Image { media, .. } | Part::Document { media, .. } => match media {
            Media::Base64 { media_type, data } => out.push(GeminiPart::InlineData { mime_type: media_type, data }),
            Media::Url(url) if super::is_https_url(url) => {
                out.push(GeminiPart::FileData { mime_type: guess_mime_type(url).into(), file_uri: url })
            }
            Media::Text(text) => out.push(GeminiPart::Text(Cow::Borrowed(text))),
            // A `gs://` or `file:` URI would be read with the operator's access.
            Media::Url(_) => {
                let what = if matches!(part, Part::Image { .. }) { "An image" } else { "A file" };
                return Err(GatewayError::invalid_request(at, format!("{what} is a base64 data URL or an https URL.")));
            }
            Media::FileId(_) => {
                return Err(GatewayError::invalid_request(
                    at,
                    "Gemini models take files as `file_data` (a base64 data URL); uploaded file ids are not supported.",
                ))
            }
        },
        Part::Audio { data, format } => {
            let mime_type = if format == "mp3" { "audio/mp3" } else { "audio/wav" };
            if data.is_empty() {
                return Err(GatewayError::invalid_request(at, "Audio needs its base64 `data`."));
            }
            out.push(GeminiPart::InlineData { mime_type, data });
        }
        Part::ToolCall { name, arguments, signature, .. } => {
            let signature = signature.as_deref();
            let function_call = CallOut { name, args: tool_arguments(arguments, at)? };
            out.push(GeminiPart::FunctionCall(SignedCall { function_call, thought_signature: signature }));
        }
        // Named by the caller, which knows the calls made before.
        Part::ToolResult { .. } => {}
        Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
    }
    Ok(())
}

fn push_turn<'a>(contents: &mut Vec<Turn<'a>>, role: &'static str, parts: Vec<GeminiPart<'a>>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role == Some(role) => last.parts.extend(parts),
        _ => contents.push(Turn { role: Some(role), parts }),
    }
}

/// A tool result's text as the JSON object Gemini's `functionResponse.response` must be.
fn function_response(text: String, is_error: bool) -> Value {
    let value = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Value::Object(object),
        Ok(other) => serde_json::json!({ "result": other }),
        Err(_) => serde_json::json!({ "result": text }),
    };
    if is_error {
        serde_json::json!({ "error": value })
    } else {
        value
    }
}

pub(crate) fn model_path(vendor_model: &str) -> &str {
    vendor_model.strip_prefix("models/").unwrap_or(vendor_model)
}

/// The vendor request for a chat.
pub fn chat_request(
    provider: &Provider,
    vendor_model: &str,
    request: &Request,
    api_key: Option<&str>,
    strict: bool,
) -> Result<Prepared, GatewayError> {
    let mut policy = ParamPolicy::for_chat("Gemini", request, strict);
    let plan = ChatPlan::of(request);

    let mut system = Vec::new();
    for (i, p) in request.system.iter().enumerate() {
        part(p, &format!("system[{i}]"), &mut system)?;
    }
    let mut contents: Vec<Turn> = Vec::with_capacity(request.turns.len());
    // Gemini's function responses are matched by name; the other dialects' tool results by id.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for (i, turn) in request.turns.iter().enumerate() {
        let mut parts = Vec::with_capacity(turn.parts.len());
        let mut results = Vec::new();
        for (j, p) in turn.parts.iter().enumerate() {
            let at = format!("messages[{i}].content[{j}]");
            match p {
                Part::ToolCall { id, name, .. } => {
                    call_names.insert(id, name);
                    part(p, &at, &mut parts)?;
                }
                Part::ToolResult { id, name, content, is_error, .. } => {
                    let Some(name) = name.as_deref().or_else(|| call_names.get(id.as_str()).copied()) else {
                        return Err(GatewayError::invalid_request(
                            format!("messages[{i}].tool_call_id"),
                            format!("The tool result for `{id}` answers a tool call that no earlier assistant message made."),
                        ));
                    };
                    // The response holds text only; the result's images and files follow it in
                    // the same turn, as parts of their own.
                    let (text, media) = super::split_tool_result(content);
                    results.push(GeminiPart::FunctionResponse { name, response: function_response(text, *is_error) });
                    for (k, p) in media {
                        part(p, &format!("{at}.content[{k}]"), &mut results)?;
                    }
                }
                other => part(other, &at, &mut parts)?,
            }
        }
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        // A turn's tool results come before the rest of it, as they answer the turn before.
        results.extend(parts);
        push_turn(&mut contents, role, results);
    }
    if contents.is_empty() {
        return Err(GatewayError::invalid_request(
            "messages",
            "Gemini models need at least one user or assistant message besides the system prompt.",
        ));
    }

    let declarations: Vec<FunctionDeclaration> = request
        .tools
        .iter()
        .map(|t| FunctionDeclaration {
            name: &t.name,
            description: t.description.as_deref(),
            parameters: t
                .parameters
                .as_ref()
                .filter(|p| p.get("properties").and_then(Value::as_object).is_some_and(|props| !props.is_empty()))
                .map(reduce_schema),
        })
        .collect();
    let tool_config = request.tool_choice.as_ref().map(|choice| {
        let (mode, allowed_function_names) = match choice {
            ToolChoice::Auto => ("AUTO", None),
            ToolChoice::None => ("NONE", None),
            ToolChoice::Required => ("ANY", None),
            ToolChoice::Named(name) => ("ANY", Some(vec![name.as_str()])),
        };
        ToolConfig { function_calling_config: FunctionCallingConfig { mode, allowed_function_names } }
    });
    if request.parallel_tool_calls.is_some() {
        policy.drop("parallel_tool_calls")?;
    }

    let mut generation_config = GenerationConfig {
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        max_output_tokens: request.max_output_tokens,
        stop_sequences: (!request.stop.is_empty()).then(|| request.stop.clone()),
        candidate_count: (request.choices > 1).then_some(request.choices),
        seed: request.seed,
        ..GenerationConfig::default()
    };
    match &request.output {
        OutputFormat::JsonObject => generation_config.response_mime_type = Some("application/json"),
        OutputFormat::JsonSchema { schema, .. } => {
            generation_config.response_mime_type = Some("application/json");
            generation_config.response_schema = schema.as_ref().map(reduce_schema);
        }
        OutputFormat::Text => {}
    }
    if let Some(asked) = thinking_budget(request)? {
        let thinking_budget = fit_thinking_budget(vendor_model, asked);
        if thinking_budget != asked {
            policy.adjust("reasoning_effort", thinking_budget)?;
        }
        // Thoughts are shown when the client asked for thinking, not when the model insists.
        generation_config.thinking_config = Some(ThinkingConfig { thinking_budget, include_thoughts: asked > 0 });
    }
    for name in request.extra.keys() {
        match name.as_str() {
            "presence_penalty" => generation_config.presence_penalty = request.extra[name].as_f64(),
            "frequency_penalty" => generation_config.frequency_penalty = request.extra[name].as_f64(),
            other => policy.drop_extra(other)?,
        }
    }
    if request.user.is_some() {
        policy.drop("user")?;
    }
    if request.has_cache_markers() {
        // Gemini caches prompt prefixes by itself (implicit caching); an explicit cache is a
        // resource made beforehand, which a marker in the request cannot make.
        policy.note_dropped("cache_control");
    }

    let body = GenerateRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Turn { role: None, parts: system }),
        tools: if declarations.is_empty() { vec![] } else { vec![ToolSet { function_declarations: declarations }] },
        tool_config,
        generation_config,
    };
    let method = if plan.stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(key) = api_key {
        headers.push(("x-goog-api-key".to_owned(), key.to_owned()));
    }
    headers.extend(provider.headers.iter().cloned());
    let body = serde_json::to_vec(&body)
        .map_err(|e| GatewayError::invalid_request("", format!("The request cannot be encoded: {e}")))?;
    let url = format!("{}/models/{}:{method}", provider.base_url, model_path(vendor_model));
    Ok(Prepared { outbound: OutboundRequest { url, headers, body }, report: policy.report, plan })
}

// ---- Answer ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<CandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    index: u32,
}

#[derive(Deserialize, Default)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<ResponsePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponsePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    function_call: Option<ResponseFunctionCall>,
    #[serde(default)]
    thought_signature: Option<String>,
}

#[derive(Deserialize)]
struct ResponseFunctionCall {
    name: String,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
}

impl UsageMetadata {
    fn canonical(self) -> Usage {
        let reasoning = self.thoughts_token_count.unwrap_or(0);
        // OpenAI counts reasoning inside completion tokens; Gemini counts them apart.
        let mut usage = Usage::new(self.prompt_token_count, self.candidates_token_count.saturating_add(reasoning));
        if let Some(cached_tokens) = self.cached_content_token_count {
            usage.prompt_tokens_details = Some(PromptTokensDetails { cached_tokens, cache_creation_tokens: None });
        }
        if self.thoughts_token_count.is_some() {
            usage.completion_tokens_details = Some(CompletionTokensDetails { reasoning_tokens: reasoning });
        }
        usage
    }
}

fn finish(reason: &str, called_tools: bool) -> Finish {
    match reason {
        "MAX_TOKENS" => Finish::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" | "LANGUAGE" => {
            Finish::ContentFilter
        }
        _ if called_tools => Finish::ToolCalls,
        _ => Finish::Stop,
    }
}

/// A tool call id that is the same for the same answer: Gemini's own when it sends one, else
/// derived from the response id, the candidate and the call's position.
fn call_id(given: Option<String>, response_id: &str, candidate: u32, position: u32, name: &str) -> String {
    if let Some(id) = given.filter(|id| !id.is_empty()) {
        return id;
    }
    // FNV-1a: small, stable across platforms and releases.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in response_id.bytes().chain(candidate.to_le_bytes()).chain(position.to_le_bytes()).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("call_{hash:016x}")
}

fn blocked(provider: &str, feedback: &Option<PromptFeedback>) -> Option<GatewayError> {
    let reason = feedback.as_ref()?.block_reason.as_deref()?;
    // Gemini's reasons are names (SAFETY, BLOCKLIST); anything else is not repeated.
    let named = !reason.is_empty() && reason.len() <= 64 && reason.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    let reason = if named { reason } else { "a reason it did not name" };
    Some(GatewayError::new(
        400,
        "invalid_request_error",
        "content_filter",
        format!("Provider `{provider}` refused the prompt: it was blocked for {reason}."),
    ))
}

/// The vendor's answer in canonical terms: each candidate an output.
pub fn chat_response(provider: &str, body: &[u8]) -> Result<Answer, GatewayError> {
    let answer: GenerateResponse =
        serde_json::from_slice(body).map_err(|e| super::invalid_answer(provider, super::decode_cause(&e)))?;
    if answer.candidates.is_empty() {
        return Err(blocked(provider, &answer.prompt_feedback)
            .unwrap_or_else(|| super::invalid_answer(provider, "the answer has no candidates")));
    }
    let response_id = answer.response_id.clone().unwrap_or_default();
    let outputs = answer
        .candidates
        .into_iter()
        .map(|candidate| {
            let mut blocks: Vec<Block> = Vec::new();
            let mut calls = 0u32;
            for part in candidate.content.unwrap_or_default().parts {
                match (part.text, part.function_call) {
                    (Some(t), _) if part.thought => match blocks.last_mut() {
                        Some(Block::Thinking { text, .. }) => text.push_str(&t),
                        _ => blocks.push(Block::Thinking { text: t, signature: None }),
                    },
                    (Some(t), _) => match blocks.last_mut() {
                        Some(Block::Text(text)) => text.push_str(&t),
                        _ => blocks.push(Block::Text(t)),
                    },
                    (None, Some(call)) => {
                        let id = call_id(call.id, &response_id, candidate.index, calls, &call.name);
                        calls += 1;
                        let arguments = if call.args.is_null() { "{}".to_owned() } else { call.args.to_string() };
                        let signature = part.thought_signature.filter(|s| !s.is_empty());
                        blocks.push(Block::ToolCall { id, name: call.name, arguments, signature });
                    }
                    (None, None) => {}
                }
            }
            let finish = finish(candidate.finish_reason.as_deref().unwrap_or("STOP"), calls > 0);
            Output { index: candidate.index, blocks, finish }
        })
        .collect();
    Ok(Answer {
        id: answer_id(&response_id),
        model: answer.model_version.unwrap_or_default(),
        outputs,
        usage: answer.usage_metadata.map(UsageMetadata::canonical),
    })
}

/// The answer's id: Gemini's response id, prefixed as OpenAI's clients have them.
fn answer_id(response_id: &str) -> String {
    format!("chatcmpl-{}", if response_id.is_empty() { "gemini" } else { response_id })
}

// ---- Errors ----

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    /// The HTTP status the error goes with; in a stream, the only status there is.
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

/// One of `google.rpc.Status.details`; an `ErrorInfo` says why in `reason`.
#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    reason: Option<String>,
}

impl ErrorObject {
    /// Whether Google refused the key itself: `API_KEY_INVALID` (sent with a 400
    /// `INVALID_ARGUMENT`), `API_KEY_EXPIRED`, `API_KEY_SERVICE_BLOCKED` and their kin.
    fn refuses_the_key(&self) -> bool {
        self.status == "UNAUTHENTICATED"
            || self.status == "PERMISSION_DENIED"
            || self.details.iter().any(|d| d.reason.as_deref().is_some_and(|r| r.starts_with("API_KEY_")))
            || self.message.contains("API key not valid")
    }
}

/// The client's error for a Gemini error answer, without the vendor key in any field.
pub fn error_from_vendor(provider: &str, status: u16, body: &[u8], api_key: Option<&str>) -> GatewayError {
    let error = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => error_from_object(provider, status, &error),
        Err(_) => {
            let text = super::body_excerpt(body, api_key);
            let message = format!("Provider `{provider}` answered HTTP {status}: {text}");
            error_from_status(status, message)
        }
    };
    super::redacted(error, api_key)
}

/// A refused key (whatever the status: Gemini says so with a 400 as often as with a 401 or 403)
/// is the operator's problem; anything else keeps the vendor's status.
fn error_from_object(provider: &str, status: u16, error: &ErrorObject) -> GatewayError {
    if matches!(status, 401 | 403) || error.refuses_the_key() {
        return GatewayError::upstream_auth_failed(provider);
    }
    error_from_status(status, error.message.clone())
}

/// The HTTP status decides the class: a 5xx stays a 5xx, a 4xx a 4xx.
fn error_from_status(status: u16, message: String) -> GatewayError {
    match status {
        429 => GatewayError::new(429, "rate_limit_error", "rate_limit_exceeded", message),
        404 => GatewayError::new(404, "invalid_request_error", "model_not_found", message),
        400..=499 => GatewayError::new(status, "invalid_request_error", "invalid_request", message),
        500..=599 => GatewayError::new(status, "server_error", "upstream_error", message),
        _ => GatewayError::new(502, "server_error", "upstream_error", message),
    }
}

// ---- Stream ----

/// One event of the stream: a partial `GenerateContentResponse`, read borrowing its text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamEvent<'a> {
    #[serde(default, borrow)]
    candidates: Vec<StreamCandidate<'a>>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default, borrow)]
    model_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    response_id: Option<Cow<'a, str>>,
    /// An error instead of a response: Gemini's way of breaking off a stream.
    #[serde(default)]
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamCandidate<'a> {
    #[serde(default, borrow)]
    content: Option<StreamContent<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    index: u32,
}

#[derive(Deserialize)]
struct StreamContent<'a> {
    #[serde(default, borrow)]
    parts: Vec<StreamPart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamPart<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    function_call: Option<ResponseFunctionCall>,
    #[serde(default, borrow)]
    thought_signature: Option<Cow<'a, str>>,
}

/// Gemini's event stream (each event a partial `GenerateContentResponse`) to canonical events.
/// Gemini sends no terminal event: the stream is complete once every candidate has a finish
/// reason; ending before that is a break. No vendor text is kept between events (text, calls
/// and thoughts go out as they come), so what it holds is one event (`sse::MAX_EVENT_BYTES`)
/// and a few counters a candidate (`MAX_CANDIDATES`).
pub struct Stream {
    provider: String,
    /// The vendor key, redacted from the vendor's error events.
    api_key: Option<String>,
    parser: SseParser,
    response_id: String,
    started: bool,
    /// Per candidate: its open block, its blocks and tool calls so far, whether it finished.
    candidates: Vec<CandidateState>,
    usage: Option<UsageMetadata>,
    end: StreamEnd,
}

#[derive(Default, Clone)]
struct CandidateState {
    /// The open block: whether it is thinking (else text), and its index.
    open: Option<(bool, u32)>,
    blocks: u32,
    tool_calls: u32,
    finished: bool,
}

impl Stream {
    pub fn new(provider: &str, api_key: Option<&str>, egress: Box<dyn Egress>) -> Self {
        Self {
            provider: provider.to_owned(),
            api_key: api_key.map(str::to_owned),
            parser: SseParser::new(),
            response_id: String::new(),
            started: false,
            candidates: Vec::new(),
            usage: None,
            end: StreamEnd::new(egress),
        }
    }

    /// Ends the client's stream with `error`, which may quote the vendor: without its key.
    fn fail(&mut self, out: &mut Vec<u8>, error: GatewayError) {
        self.end.fail(out, super::redacted(error, self.api_key.as_deref()));
    }

    /// Stops the candidate's open block, if one is open.
    fn close(&mut self, choice: u32, out: &mut Vec<u8>) {
        if let Some((_, block)) = self.candidates[choice as usize].open.take() {
            self.end.emit(Event::BlockStop { choice, block }, out);
        }
    }

    /// Makes a text block (or a thinking one) the candidate's open block; its index.
    fn open(&mut self, choice: u32, thinking: bool, out: &mut Vec<u8>) -> u32 {
        if let Some((open, block)) = self.candidates[choice as usize].open {
            if open == thinking {
                return block;
            }
            self.close(choice, out);
        }
        let state = &mut self.candidates[choice as usize];
        let block = state.blocks;
        state.blocks += 1;
        state.open = Some((thinking, block));
        let kind = if thinking { BlockKind::Thinking } else { BlockKind::Text };
        self.end.emit(Event::BlockStart { choice, block, kind }, out);
        block
    }

    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.end.is_done() {
            return;
        }
        let event: StreamEvent = match serde_json::from_slice(data) {
            Ok(event) => event,
            Err(e) => {
                let error = match serde_json::from_slice::<ErrorBody>(data) {
                    Ok(_) => error_from_vendor(&self.provider, 500, data, self.api_key.as_deref()),
                    Err(_) => super::invalid_answer(
                        &self.provider,
                        format!("unreadable stream event: {}", super::decode_cause(&e)),
                    ),
                };
                return self.fail(out, error);
            }
        };
        if let Some(error) = &event.error {
            let status = error.code.and_then(|c| u16::try_from(c).ok()).filter(|c| (400..=599).contains(c));
            let error = error_from_object(&self.provider, status.unwrap_or(500), error);
            return self.fail(out, error);
        }
        // Candidates are few (`candidateCount` is at most 8): an index past the bound is not
        // Gemini's, and must not size the gateway's memory.
        if let Some(candidate) = event.candidates.iter().find(|c| c.index as usize >= MAX_CANDIDATES) {
            let cause = format!("candidate index {} (at most {MAX_CANDIDATES} candidates)", candidate.index);
            return self.fail(out, super::invalid_answer(&self.provider, cause));
        }
        if event.candidates.is_empty() {
            if let Some(error) = blocked(&self.provider, &event.prompt_feedback) {
                return self.fail(out, error);
            }
        }
        if !self.started {
            self.started = true;
            self.response_id = event.response_id.as_deref().unwrap_or_default().to_owned();
            let id = answer_id(&self.response_id);
            self.end.emit(Event::Start { id: &id, model: event.model_version.as_deref().unwrap_or_default() }, out);
        }
        if event.usage_metadata.is_some() {
            self.usage = event.usage_metadata;
            self.end.emit(Event::Usage(self.usage.unwrap_or_default().canonical()), out);
        }
        for candidate in event.candidates {
            let choice = candidate.index;
            let i = choice as usize;
            if self.candidates.len() <= i {
                self.candidates.resize(i + 1, CandidateState::default());
            }
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                match (part.text, part.function_call) {
                    (Some(t), _) if t.is_empty() => {}
                    (Some(t), _) => {
                        let block = self.open(choice, part.thought, out);
                        let delta = if part.thought { Delta::Thinking(&t) } else { Delta::Text(&t) };
                        self.end.emit(Event::Delta { choice, block, delta }, out);
                    }
                    (None, Some(call)) => {
                        self.close(choice, out);
                        let state = &mut self.candidates[i];
                        let (block, position) = (state.blocks, state.tool_calls);
                        state.blocks += 1;
                        state.tool_calls = state.tool_calls.saturating_add(1);
                        let id = call_id(call.id, &self.response_id, choice, position, &call.name);
                        let arguments = if call.args.is_null() { "{}".to_owned() } else { call.args.to_string() };
                        let signature = part.thought_signature.as_deref().filter(|s| !s.is_empty());
                        let kind = BlockKind::ToolCall { id: &id, name: &call.name, signature };
                        self.end.emit(Event::BlockStart { choice, block, kind }, out);
                        let delta = Delta::ToolArguments(&arguments);
                        self.end.emit(Event::Delta { choice, block, delta }, out);
                        self.end.emit(Event::BlockStop { choice, block }, out);
                    }
                    (None, None) => {}
                }
            }
            if let Some(reason) = candidate.finish_reason {
                self.close(choice, out);
                let state = &mut self.candidates[i];
                state.finished = true;
                let finish = finish(&reason, state.tool_calls > 0);
                self.end.emit(Event::Finish { choice, finish }, out);
            }
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

    fn usage(&self) -> Option<crate::chat::Usage> {
        self.usage.map(UsageMetadata::canonical)
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
        if self.end.is_done() {
            return;
        }
        // Once every candidate has finished, the answer is whole, however the connection ends.
        let complete = !self.candidates.is_empty() && self.candidates.iter().all(|c| c.finished);
        if !complete {
            let cause = error.unwrap_or("the stream ended before the answer was complete");
            let error = GatewayError::upstream_stream_broken(&self.provider, cause);
            return self.fail(out, error);
        }
        self.end.complete(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai_egress(include_usage: bool) -> Box<dyn Egress> {
        Box::new(crate::ingress::openai_chat::Stream::new(1, include_usage))
    }
    use serde_json::json;

    #[test]
    fn schema_reduction_keeps_what_gemini_takes() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "name": {"type": ["string", "null"], "description": "Name", "examples": ["x"]},
                "kind": {"const": "person"},
                "address": {"$ref": "#/$defs/Address"},
                "tags": {"type": "array", "items": {"type": "string", "minLength": 1}}
            },
            "required": ["name"],
            "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}}
        });
        assert_eq!(
            reduce_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "nullable": true, "description": "Name"},
                    "kind": {"enum": ["person"]},
                    "address": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "tags": {"type": "array", "items": {"type": "string", "minLength": 1}}
                },
                "required": ["name"]
            })
        );
    }

    #[test]
    fn recursive_refs_end() {
        let schema = json!({"$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}, "$ref": "#/$defs/Node"});
        let reduced = reduce_schema(&schema).to_string();
        assert!(reduced.len() < 20_000);
    }

    const KEY: &str = "AIzaSyA-secret-gemini-key";

    fn run(input: &str) -> (String, Option<GatewayError>) {
        let mut stream = Stream::new("gemini", Some(KEY), openai_egress(false));
        let mut out = Vec::new();
        for piece in input.as_bytes().chunks(5) {
            stream.push(piece, &mut out);
        }
        stream.finish(None, &mut out);
        (String::from_utf8(out).unwrap(), stream.error().cloned())
    }

    #[test]
    fn a_huge_candidate_index_is_a_stream_error_not_an_allocation() {
        for index in ["4000000000", "128", "1000000000000", "-1", "\"0\""] {
            let event = format!(
                "data: {{\"candidates\":[{{\"index\":{index},\"content\":{{\"parts\":[{{\"text\":\"hi\"}}]}}}}]}}\n\n"
            );
            let (text, error) = run(&event);
            let error = error.unwrap_or_else(|| panic!("index {index}: {text}"));
            assert_eq!(error.code.as_deref(), Some("upstream_invalid_response"), "{index}");
            assert!(text.ends_with("data: [DONE]\n\n") && !text.contains("\"hi\""), "{text}");
        }
        let last = format!(
            "data: {{\"candidates\":[{{\"index\":{},\"finishReason\":\"STOP\",\"content\":{{\"parts\":[{{\"text\":\"hi\"}}]}}}}]}}\n\n",
            MAX_CANDIDATES - 1
        );
        let (text, _) = run(&last);
        assert!(text.contains("\"hi\""));
    }

    #[test]
    fn an_error_in_the_stream_is_a_stream_error_without_the_key() {
        let first = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}]}}]}\n\n";
        let error = format!(
            "data: {{\"error\":{{\"code\":503,\"message\":\"key {KEY} overloaded\",\"status\":\"UNAVAILABLE\"}}}}\n\n"
        );
        let (text, e) = run(&format!("{first}{error}"));
        assert!(!text.contains(KEY) && text.contains("key [redacted] overloaded"), "{text}");
        let e = e.unwrap();
        assert_eq!((e.status, e.code.as_deref()), (503, Some("upstream_error")));
        let bad_key = "data: {\"error\":{\"code\":400,\"message\":\"API key not valid.\",\"status\":\"INVALID_ARGUMENT\",\"details\":[{\"reason\":\"API_KEY_INVALID\"}]}}\n\n";
        let (text, e) = run(bad_key);
        assert_eq!(e.and_then(|e| e.code).as_deref(), Some("upstream_auth_failed"));
        assert!(!text.contains("API key not valid"));
    }

    #[test]
    fn a_refused_key_is_the_operators_problem() {
        let cases = [
            (
                400,
                json!({"error": {"code": 400, "message": "Bad key.", "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}),
            ),
            (
                400,
                json!({"error": {"code": 400, "message": "API key expired. Please renew the API key.", "status": "INVALID_ARGUMENT",
                "details": [{"reason": "API_KEY_EXPIRED"}]}}),
            ),
            (
                403,
                json!({"error": {"code": 403, "message": "Permission denied on resource project x.", "status": "PERMISSION_DENIED"}}),
            ),
            (403, json!({"error": {"code": 403, "message": "Forbidden"}})),
            (401, json!({"error": {"code": 401, "message": "Unauthenticated", "status": "UNAUTHENTICATED"}})),
        ];
        for (status, body) in cases {
            let e = error_from_vendor("gemini", status, body.to_string().as_bytes(), Some(KEY));
            assert_eq!((e.status, e.code.as_deref()), (502, Some("upstream_auth_failed")), "{body}");
            assert!(crate::providers::is_vendor_fault(status, &e), "{body}");
        }
        let plain = json!({"error": {"code": 400, "message": "Unknown name \"foo\"", "status": "INVALID_ARGUMENT"}});
        let e = error_from_vendor("gemini", 400, plain.to_string().as_bytes(), Some(KEY));
        assert_eq!((e.status, e.code.as_deref()), (400, Some("invalid_request")));
        assert!(!crate::providers::is_vendor_fault(400, &e));
    }

    #[test]
    fn the_key_is_redacted_and_the_status_class_kept() {
        let body =
            json!({"error": {"code": 500, "message": format!("failed for {KEY}"), "status": "INVALID_ARGUMENT"}});
        let e = error_from_vendor("gemini", 500, body.to_string().as_bytes(), Some(KEY));
        assert_eq!((e.status, e.kind, e.message.as_str()), (500, "server_error", "failed for [redacted]"));
        let e = error_from_vendor("gemini", 502, format!("<html>{KEY}</html>").as_bytes(), Some(KEY));
        assert!(!e.message.contains(KEY), "{}", e.message);
    }

    #[test]
    fn an_image_is_a_data_url_or_an_https_url_only() {
        let provider = Provider::new(
            "gemini",
            crate::config::ProviderKind::Gemini,
            "https://generativelanguage.googleapis.com/v1beta",
        );
        for url in ["gs://operator-bucket/secret.png", "file:///etc/passwd", "http://169.254.169.254/x.png", "s3://b/k"]
        {
            let body = json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]}]});
            let request = crate::ingress::openai_chat::decode(body.to_string().as_bytes()).unwrap();
            let e = chat_request(&provider, "gemini-x", &request, None, false).err().unwrap();
            assert_eq!((e.status, e.param.as_deref()), (400, Some("messages[0].content[1]")), "{url}");
        }
        let body = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}}]}]});
        let request = crate::ingress::openai_chat::decode(body.to_string().as_bytes()).unwrap();
        assert!(chat_request(&provider, "gemini-x", &request, None, false).is_ok());
    }

    fn gemini() -> Provider {
        Provider::new("gemini", crate::config::ProviderKind::Gemini, "https://generativelanguage.googleapis.com/v1beta")
    }

    /// A tool result of several blocks reads as they do, one after the other, not glued; its
    /// images go beside its `functionResponse`, which holds text only.
    #[test]
    fn a_tool_results_texts_are_joined_and_its_images_follow_its_function_response() {
        let body = br#"{"model":"m","max_tokens":64,"messages":[
            {"role":"user","content":"Compare the two charts."},
            {"role":"assistant","content":[{"type":"tool_use","id":"toolu_a","name":"Screenshot","input":{}},
                {"type":"tool_use","id":"toolu_b","name":"Fetch","input":{"url":"https://example.com/b.png"}}]},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"toolu_a","content":[{"type":"text","text":"Chart A"},
                    {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
                    {"type":"text","text":"captured 12:00"}]},
                {"type":"tool_result","tool_use_id":"toolu_b","is_error":true,"content":[{"type":"text","text":"stale"},
                    {"type":"image","source":{"type":"url","url":"https://example.com/b.png"}}]},
                {"type":"text","text":"Which is higher?"}]}]}"#;
        let request = crate::ingress::anthropic_messages::decode(body.to_vec()).unwrap();
        let out = chat_request(&gemini(), "gemini-2.5-flash", &request, None, false).unwrap().outbound;
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            body["contents"][2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"name": "Screenshot", "response": {"result": "Chart A\n\ncaptured 12:00"}}},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"functionResponse": {"name": "Fetch", "response": {"error": {"result": "stale"}}}},
                {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/b.png"}},
                {"text": "Which is higher?"}
            ]})
        );
        // A JSON object in one text block is still the response itself.
        let body = br#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function",
            "function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":[{"type":"text","text":"{\"ok\":true}"}]}]}"#;
        let request = crate::ingress::openai_chat::decode(&body[..]).unwrap();
        let out = chat_request(&gemini(), "gemini-2.5-flash", &request, None, false).unwrap().outbound;
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body["contents"][1]["parts"][0]["functionResponse"]["response"], json!({"ok": true}));
    }

    #[test]
    fn thinking_budgets_fit_what_the_model_takes() {
        let cases = [
            ("gemini-2.5-pro", 0, 128),
            ("gemini-2.5-pro", 100, 128),
            ("models/gemini-2.5-pro-preview-06-05", 40_000, 32_768),
            ("gemini-2.5-pro", 31_999, 31_999),
            ("gemini-2.5-flash", 0, 0),
            ("gemini-2.5-flash", 31_999, 24_576),
            ("gemini-2.5-flash-preview-09-2025", 24_576, 24_576),
            ("gemini-2.5-flash-lite", 0, 0),
            ("gemini-2.5-flash-lite", 100, 512),
            ("Gemini-2.5-Flash-Lite", 30_000, 24_576),
            ("gemini-2.5-flash-lite", 512, 512),
            // Models of other rules (Gemini 3's thinkingLevel) or unknown: as asked.
            ("gemini-3-pro-preview", 0, 0),
            ("gemini-3-flash-preview", 40_000, 40_000),
            ("gemini-flash-latest", 40_000, 40_000),
        ];
        for (model, asked, fit) in cases {
            assert_eq!(fit_thinking_budget(model, asked), fit, "{model}: {asked}");
        }
    }

    /// The budget sent is one the model takes, and the client learns of the change in the
    /// client's own name for the parameter; strict mode refuses instead.
    #[test]
    fn a_gemini_3_call_signature_comes_back_with_the_call_through_a_chat_client() {
        // Gemini 3 signs its calls and refuses a history whose calls lack their signatures.
        let answer = br#"{"candidates":[{"content":{"role":"model","parts":[
            {"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"CiQB+/x9Ag=="},
            {"functionCall":{"name":"get_weather","args":{"city":"Lyon"}}}]},"finishReason":"STOP","index":0}],
            "modelVersion":"gemini-3-pro-preview","responseId":"r1"}"#;
        let answer = chat_response("g", answer).unwrap();
        let completion = serde_json::to_value(crate::ingress::openai_chat::encode_answer(&answer, 0)).unwrap();
        let message = &completion["choices"][0]["message"];
        let ids: Vec<&str> =
            message["tool_calls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert!(ids[0].contains("__ts__") && !ids[1].contains("__ts__"), "{ids:?}");
        // The client's next turn, as the OpenAI SDK sends it back: the message, then the results.
        let next = json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            message,
            {"role": "tool", "tool_call_id": ids[0], "content": "14"},
            {"role": "tool", "tool_call_id": ids[1], "content": "12"},
        ]});
        let request = crate::ingress::openai_chat::decode(serde_json::to_vec(&next).unwrap()).unwrap();
        let prepared = chat_request(&gemini(), "gemini-3-pro-preview", &request, None, false).unwrap();
        let sent: Value = serde_json::from_slice(&prepared.outbound.body).unwrap();
        let model = &sent["contents"][1]["parts"];
        assert_eq!(model[0]["thoughtSignature"], "CiQB+/x9Ag==", "the signature as Gemini sent it: {sent}");
        assert_eq!(model[0]["functionCall"]["name"], "get_weather");
        assert!(model[1].get("thoughtSignature").is_none(), "{sent}");
        let results = &sent["contents"][2]["parts"];
        assert_eq!(
            (results[0]["functionResponse"]["name"].as_str(), results.as_array().unwrap().len()),
            (Some("get_weather"), 2)
        );
        assert!(
            !String::from_utf8_lossy(&prepared.outbound.body).contains("__ts__"),
            "no folded id reaches the vendor"
        );
    }

    #[test]
    fn a_budget_the_model_does_not_take_is_adjusted_and_reported() {
        let sent = |prepared: &Prepared| {
            serde_json::from_slice::<Value>(&prepared.outbound.body).unwrap()["generationConfig"]["thinkingConfig"]
                .clone()
        };
        let anthropic = br#"{"model":"m","max_tokens":32000,"thinking":{"type":"enabled","budget_tokens":31999},"messages":[{"role":"user","content":"hi"}]}"#;
        let request = crate::ingress::anthropic_messages::decode(anthropic.to_vec()).unwrap();
        let prepared = chat_request(&gemini(), "gemini-2.5-flash", &request, None, false).unwrap();
        assert_eq!(sent(&prepared), json!({"thinkingBudget": 24_576, "includeThoughts": true}));
        assert_eq!(prepared.report.adjusted, ["thinking.budget_tokens=24576"]);
        let e = chat_request(&gemini(), "gemini-2.5-flash", &request, None, true).err().unwrap();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("thinking.budget_tokens")));
        let prepared = chat_request(&gemini(), "gemini-2.5-pro", &request, None, true).unwrap();
        assert_eq!((sent(&prepared)["thinkingBudget"].as_u64(), prepared.report.adjusted.len()), (Some(31_999), 0));

        // A pro model cannot stop thinking: "none" is its least budget, its thoughts not shown.
        let chat = br#"{"model":"m","reasoning_effort":"none","messages":[{"role":"user","content":"hi"}]}"#;
        let request = crate::ingress::openai_chat::decode(&chat[..]).unwrap();
        let prepared = chat_request(&gemini(), "gemini-2.5-pro", &request, None, false).unwrap();
        assert_eq!(sent(&prepared), json!({"thinkingBudget": 128}));
        assert_eq!(prepared.report.adjusted, ["reasoning_effort=128"]);
        let prepared = chat_request(&gemini(), "gemini-2.5-flash", &request, None, true).unwrap();
        assert_eq!(sent(&prepared), json!({"thinkingBudget": 0}));
        let responses = br#"{"model":"m","input":"hi","reasoning":{"effort":"none"}}"#;
        let (request, _) = crate::ingress::openai_responses::decode(responses.to_vec(), &[]).unwrap();
        let prepared = chat_request(&gemini(), "gemini-2.5-pro", &request, None, false).unwrap();
        assert_eq!(prepared.report.adjusted, ["reasoning.effort=128"]);
        // What a budget's hold covers is what is sent.
        let info = crate::catalog::ModelInfo::default();
        let needs = crate::catalog::Needs { max_output: 1_000, ..Default::default() };
        assert_eq!(crate::providers::output_bound(&gemini(), "gemini-2.5-pro", &request, &info, &needs), 1_128);
    }

    #[test]
    fn counts_past_u64_do_not_overflow() {
        let max = u64::MAX;
        let event = format!("data: {{\"candidates\":[{{\"finishReason\":\"STOP\"}}],\"usageMetadata\":{{\"promptTokenCount\":{max},\"candidatesTokenCount\":{max},\"thoughtsTokenCount\":{max}}}}}\n\n");
        let mut stream = Stream::new("gemini", None, openai_egress(true));
        let mut out = Vec::new();
        stream.push(event.as_bytes(), &mut out);
        stream.finish(None, &mut out);
        let usage = stream.usage().unwrap();
        assert_eq!((usage.completion_tokens, usage.total_tokens), (max, max));
    }

    #[test]
    fn generated_tool_call_ids_are_stable_and_distinct() {
        let a = call_id(None, "resp1", 0, 0, "f");
        assert_eq!(a, call_id(None, "resp1", 0, 0, "f"));
        assert_ne!(a, call_id(None, "resp1", 0, 1, "f"));
        assert_eq!(call_id(Some("given".into()), "resp1", 0, 0, "f"), "given");
    }
}

// ---- Embeddings (batchEmbedContents) ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: String,
    content: Turn<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

#[derive(Serialize)]
struct BatchEmbedRequest<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

#[derive(Deserialize)]
struct BatchEmbedResponse {
    embeddings: Vec<EmbeddingValues>,
}

#[derive(Deserialize)]
struct EmbeddingValues {
    values: Vec<f32>,
}

/// The vendor request for embeddings: one `batchEmbedContents` call, one request per input.
pub fn embeddings_request(
    provider: &Provider,
    vendor_model: &str,
    request: &crate::embeddings::EmbeddingRequest,
    api_key: Option<&str>,
) -> Result<OutboundRequest, GatewayError> {
    let texts = request.input.texts().ok_or_else(|| {
        GatewayError::invalid_request("input", "Gemini embedding models take text; token ids are not supported.")
    })?;
    let model = model_path(vendor_model);
    let body = BatchEmbedRequest {
        requests: texts
            .into_iter()
            .map(|text| EmbedRequest {
                model: format!("models/{model}"),
                content: Turn { role: None, parts: vec![GeminiPart::Text(text.into())] },
                output_dimensionality: request.dimensions,
            })
            .collect(),
    };
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(key) = api_key {
        headers.push(("x-goog-api-key".to_owned(), key.to_owned()));
    }
    headers.extend(provider.headers.iter().cloned());
    let body = serde_json::to_vec(&body).unwrap_or_default();
    Ok(OutboundRequest { url: format!("{}/models/{model}:batchEmbedContents", provider.base_url), headers, body })
}

/// The vendor's embeddings as OpenAI's list, in the order of the inputs. Gemini reports no
/// token counts for embeddings: usage is estimated at four characters a token.
pub fn embeddings_response(
    provider: &str,
    body: &[u8],
    request: &crate::embeddings::EmbeddingRequest,
    vendor_model: &str,
) -> Result<crate::embeddings::EmbeddingList, GatewayError> {
    use crate::embeddings::{Embedding, EmbeddingList, EmbeddingUsage, EmbeddingVector};
    let answer: BatchEmbedResponse =
        serde_json::from_slice(body).map_err(|e| super::invalid_answer(provider, super::decode_cause(&e)))?;
    let texts = request.input.texts().unwrap_or_default();
    if answer.embeddings.len() != texts.len() {
        return Err(super::invalid_answer(
            provider,
            format!("{} embeddings for {} inputs", answer.embeddings.len(), texts.len()),
        ));
    }
    let tokens: u64 = texts.iter().map(|t| t.chars().count().div_ceil(4) as u64).sum();
    let base64 = request.wants_base64();
    Ok(EmbeddingList {
        object: "list".to_owned(),
        data: answer
            .embeddings
            .into_iter()
            .enumerate()
            .map(|(index, e)| Embedding {
                object: "embedding".to_owned(),
                index: index as u32,
                embedding: EmbeddingVector::encode(e.values, base64),
            })
            .collect(),
        model: model_path(vendor_model).to_owned(),
        usage: EmbeddingUsage { prompt_tokens: tokens, total_tokens: tokens },
    })
}
