//! OpenAI's Chat Completions API, and every vendor that speaks it (Groq, Mistral, DeepSeek,
//! Together, Fireworks, OpenRouter, vLLM, Ollama, ...). A Chat Completions client's request
//! passes through with only the model renamed, and the response back untouched; a client of
//! another dialect has its canonical request encoded, and the answer and stream decoded.

use super::{OutboundRequest, ParamReport, Prepared, StreamEnd, StreamTranslator};
use crate::canonical::request::AskUsage;
use crate::canonical::{
    Answer, Block, BlockKind, Delta, Dialect, Egress, Event, Finish, Media, Output, OutputFormat, Part, Reasoning,
    Request, Role, ToolChoice,
};
use crate::chat::{AssistantMessage, FinishReason, Usage};
use crate::config::Provider;
use crate::error::GatewayError;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The vendor request for `request`, sent to `vendor_model` at `provider`.
/// The URL of an endpoint (`chat/completions`, `embeddings`) for a model at this provider.
pub(crate) fn endpoint(provider: &Provider, vendor_model: &str, path: &str) -> String {
    match (&provider.kind, &provider.api_version) {
        (crate::config::ProviderKind::Azure, Some(version)) => {
            format!("{}/openai/deployments/{vendor_model}/{path}?api-version={version}", provider.base_url)
        }
        _ => format!("{}/{path}", provider.base_url),
    }
}

/// The vendor key's header: `api-key` for Azure, a bearer token for everyone else.
pub(crate) fn auth_header(provider: &Provider, key: &str) -> (String, String) {
    match provider.kind {
        crate::config::ProviderKind::Azure => ("api-key".to_owned(), key.to_owned()),
        _ => ("authorization".to_owned(), format!("Bearer {key}")),
    }
}

/// The vendor request for a chat: the client's bytes with only the model renamed when the
/// client speaks Chat Completions (and the gateway's own `models` list taken out, which a
/// vendor would refuse), else the canonical request in Chat Completions' terms.
pub fn chat_request(
    provider: &Provider,
    vendor_model: &str,
    request: &Request,
    api_key: Option<&str>,
    strict: bool,
) -> Result<Prepared, GatewayError> {
    let mut headers = Vec::with_capacity(3 + provider.headers.len());
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    let accept = if request.stream { "text/event-stream" } else { "application/json" };
    headers.push(("accept".to_owned(), accept.to_owned()));
    if let Some(key) = api_key {
        headers.push(auth_header(provider, key));
    }
    headers.extend(provider.headers.iter().cloned());
    let url = endpoint(provider, vendor_model, "chat/completions");
    let plan = super::ChatPlan::of(request);
    if request.source.dialect == Dialect::OpenaiChat {
        // A `"stream_options": null` parses as none, but is there to be replaced, not added to.
        let sent_options = || memchr::memmem::find(&request.source.bytes, b"\"stream_options\"").is_some();
        let usage = match request.stream && provider.stream_usage {
            false => AskUsage::Leave,
            true if request.include_usage => AskUsage::Leave,
            true if sent_options() => AskUsage::Set,
            true => AskUsage::Add,
        };
        let body = request.source.rewritten(vendor_model, usage);
        return Ok(Prepared { outbound: OutboundRequest { url, headers, body }, report: ParamReport::default(), plan });
    }
    let mut policy = super::ParamPolicy::for_chat("OpenAI-format", request, strict);
    let body = encode_request(request, vendor_model, provider.stream_usage, &mut policy)?;
    Ok(Prepared { outbound: OutboundRequest { url, headers, body }, report: policy.report, plan })
}

/// The most output tokens the vendor request lets an answer have (each choice's): both of the
/// client's limits pass through, and a vendor that reads only `max_tokens` may take the larger.
pub fn max_output_tokens(request: &Request) -> Option<u32> {
    match request.source.dialect {
        Dialect::OpenaiChat => request.source.max_output_tokens,
        _ => request.max_output_tokens,
    }
}

// ---- The canonical request in Chat Completions' terms ----

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<OutContent<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutContent<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<serde_json::Value>),
}

/// Parts as Chat Completions content: a string when they are all text, else typed parts.
fn content<'a>(parts: &[&'a Part], at: &str) -> Result<Option<OutContent<'a>>, GatewayError> {
    let only_text = parts.iter().all(|p| matches!(p, Part::Text { .. }));
    if only_text {
        let texts: Vec<&str> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        return Ok(match texts.as_slice() {
            [] => None,
            [one] => Some(OutContent::Text(Cow::Borrowed(one))),
            many => Some(OutContent::Text(Cow::Owned(many.join("\n\n")))),
        });
    }
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        out.extend(typed_part(part, &format!("{at}[{i}]"))?);
    }
    Ok(Some(OutContent::Parts(out)))
}

/// A part as a typed Chat Completions content part; `None` for what is not content (tool calls,
/// results and thinking, which the caller takes out).
fn typed_part(part: &Part, at: &str) -> Result<Option<serde_json::Value>, GatewayError> {
    Ok(Some(match part {
        Part::Text { text, .. } => serde_json::json!({"type": "text", "text": text}),
        Part::Image { media, detail, .. } => {
            let url = match media {
                Media::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
                Media::Url(url) => url.clone(),
                _ => {
                    return Err(GatewayError::invalid_request(
                        at,
                        "OpenAI-format models take images as data or https URLs.",
                    ))
                }
            };
            let mut image = serde_json::json!({"url": url});
            if let Some(detail) = detail {
                image["detail"] = serde_json::Value::String(detail.clone());
            }
            serde_json::json!({"type": "image_url", "image_url": image})
        }
        Part::Document { media, title, .. } => {
            let mut file = serde_json::Map::new();
            match media {
                Media::Base64 { media_type, data } => {
                    file.insert("file_data".into(), format!("data:{media_type};base64,{data}").into());
                }
                Media::FileId(id) => {
                    file.insert("file_id".into(), id.clone().into());
                }
                Media::Url(_) => {
                    return Err(GatewayError::invalid_request(
                        at,
                        "OpenAI-format models take documents as base64 data or uploaded file ids, not URLs.",
                    ))
                }
                Media::Text(text) => return Ok(Some(serde_json::json!({"type": "text", "text": text}))),
            }
            file.insert("filename".into(), title.clone().unwrap_or_else(|| "document.pdf".into()).into());
            serde_json::json!({"type": "file", "file": file})
        }
        Part::Audio { data, format } => {
            serde_json::json!({"type": "input_audio", "input_audio": {"data": data, "format": format}})
        }
        Part::ToolCall { .. } | Part::ToolResult { .. } | Part::Thinking { .. } | Part::RedactedThinking { .. } => {
            return Ok(None)
        }
    }))
}

/// The tool results' images and files held back, as the `user` message that follows the
/// results' `tool` messages.
fn flush_tool_media(messages: &mut Vec<OutMessage<'_>>, media: &mut Vec<serde_json::Value>) {
    if !media.is_empty() {
        let content = Some(OutContent::Parts(std::mem::take(media)));
        messages.push(OutMessage { role: "user", content, tool_calls: vec![], tool_call_id: None });
    }
}

/// The canonical request as a Chat Completions body. Tool results become `tool` messages (in
/// their order, before the rest of their turn); a `tool` message carries only text, so the
/// images and files of the results follow them in a `user` message. Thinking, which Chat
/// Completions cannot take back, is left out.
fn encode_request(
    request: &Request,
    vendor_model: &str,
    stream_usage: bool,
    policy: &mut super::ParamPolicy,
) -> Result<Vec<u8>, GatewayError> {
    let mut messages = Vec::with_capacity(request.turns.len() + 1);
    let system: Vec<&Part> = request.system.iter().collect();
    if let Some(content) = content(&system, "system")? {
        messages.push(OutMessage { role: "system", content: Some(content), tool_calls: vec![], tool_call_id: None });
    }
    // The media of the tool results since the last message that was not one: sent once the
    // run of `tool` messages ends, which must directly follow the assistant's calls.
    let mut tool_media: Vec<serde_json::Value> = Vec::new();
    for (i, turn) in request.turns.iter().enumerate() {
        let at = format!("messages[{i}].content");
        let mut rest: Vec<&Part> = Vec::with_capacity(turn.parts.len());
        let mut calls = Vec::new();
        for (j, part) in turn.parts.iter().enumerate() {
            match part {
                Part::ToolResult { id, content: result, is_error, .. } => {
                    let (mut text, media) = super::split_tool_result(result);
                    for (k, media) in media {
                        tool_media.extend(typed_part(media, &format!("{at}[{j}].content[{k}]"))?);
                    }
                    if *is_error {
                        text = format!("Error: {text}");
                    }
                    messages.push(OutMessage {
                        role: "tool",
                        content: Some(OutContent::Text(Cow::Owned(text))),
                        tool_calls: vec![],
                        tool_call_id: Some(id),
                    });
                }
                Part::ToolCall { id, name, arguments, .. } => calls.push(serde_json::json!({
                    "id": id, "type": "function", "function": {"name": name, "arguments": arguments}
                })),
                Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
                other => rest.push(other),
            }
        }
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let content = content(&rest, &at)?;
        if content.is_some() || !calls.is_empty() {
            flush_tool_media(&mut messages, &mut tool_media);
            messages.push(OutMessage { role, content, tool_calls: calls, tool_call_id: None });
        }
    }
    flush_tool_media(&mut messages, &mut tool_media);
    let tools = request
        .tools
        .iter()
        .map(|t| {
            let mut function = serde_json::json!({"name": t.name});
            if let Some(description) = &t.description {
                function["description"] = description.clone().into();
            }
            function["parameters"] =
                t.parameters.clone().unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
            if let Some(strict) = t.strict {
                function["strict"] = strict.into();
            }
            serde_json::json!({"type": "function", "function": function})
        })
        .collect();
    let tool_choice = request.tool_choice.as_ref().map(|choice| match choice {
        ToolChoice::Auto => serde_json::json!("auto"),
        ToolChoice::None => serde_json::json!("none"),
        ToolChoice::Required => serde_json::json!("required"),
        ToolChoice::Named(name) => serde_json::json!({"type": "function", "function": {"name": name}}),
    });
    let response_format = match &request.output {
        OutputFormat::Text => None,
        OutputFormat::JsonObject => Some(serde_json::json!({"type": "json_object"})),
        OutputFormat::JsonSchema { name, description, schema, strict } => {
            let mut format = serde_json::json!({"name": name});
            if let Some(description) = description {
                format["description"] = description.clone().into();
            }
            if let Some(schema) = schema {
                format["schema"] = schema.clone();
            }
            if let Some(strict) = strict {
                format["strict"] = (*strict).into();
            }
            Some(serde_json::json!({"type": "json_schema", "json_schema": format}))
        }
    };
    let reasoning_effort = match &request.reasoning {
        None => None,
        Some(Reasoning::Effort(effort)) => Some(effort.as_str()),
        // A budget of tokens as the nearest effort: a change of what was asked, reported.
        Some(Reasoning::Budget(budget)) => {
            let effort = effort_of_budget(*budget);
            policy.adjust("reasoning_effort", effort)?;
            Some(effort)
        }
    };
    if request.top_k.is_some() {
        policy.drop("top_k")?;
    }
    if request.has_cache_markers() {
        // OpenAI caches long prompt prefixes by itself; the marker has no field to go to.
        policy.note_dropped("cache_control");
    }
    for name in request.extra.keys() {
        policy.drop_extra(name)?;
    }
    let body = ChatBody {
        model: vendor_model,
        messages,
        stream: request.stream,
        stream_options: (request.stream && (request.include_usage || stream_usage))
            .then(|| serde_json::json!({"include_usage": true})),
        max_completion_tokens: request.max_output_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        stop: &request.stop,
        seed: request.seed,
        n: (request.choices > 1).then_some(request.choices),
        user: request.user.as_deref(),
        tools,
        tool_choice,
        parallel_tool_calls: request.parallel_tool_calls,
        response_format,
        reasoning_effort,
    };
    serde_json::to_vec(&body)
        .map_err(|e| GatewayError::invalid_request("", format!("The request cannot be encoded: {e}")))
}

/// The reasoning effort nearest a budget of thinking tokens.
pub fn effort_of_budget(budget: u32) -> &'static str {
    match budget {
        0..=2_047 => "low",
        2_048..=8_191 => "medium",
        _ => "high",
    }
}

// ---- The answer in canonical terms ----

/// A chat completion as a vendor sends it: Chat Completions' shape, and the stop sequence
/// that ended a choice where the vendor names it.
#[derive(Deserialize)]
struct Completion {
    id: String,
    #[allow(dead_code)]
    object: serde::de::IgnoredAny,
    #[allow(dead_code)]
    created: serde::de::IgnoredAny,
    model: String,
    choices: Vec<CompletionChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    index: u32,
    message: AssistantMessage,
    finish_reason: FinishReason,
    #[serde(default)]
    stop_reason: Option<serde_json::Value>,
}

/// An OpenAI-format chat completion as a canonical answer.
pub fn chat_response(provider: &str, body: &[u8]) -> Result<Answer, GatewayError> {
    let completion: Completion =
        serde_json::from_slice(body).map_err(|e| super::invalid_answer(provider, super::decode_cause(&e)))?;
    let outputs = completion
        .choices
        .into_iter()
        .map(|choice| {
            let message = choice.message;
            let mut blocks = Vec::new();
            if let Some(reasoning) = message.reasoning_content.filter(|r| !r.is_empty()) {
                blocks.push(Block::Thinking { text: reasoning, signature: None });
            }
            if let Some(text) = message.content.filter(|t| !t.is_empty()) {
                blocks.push(Block::Text(text));
            }
            if let Some(refusal) = message.refusal.filter(|r| !r.is_empty()) {
                blocks.push(Block::Refusal(refusal));
            }
            for call in message.tool_calls.into_iter().flatten() {
                blocks.push(Block::ToolCall {
                    id: call.id,
                    name: call.function.name,
                    arguments: call.function.arguments,
                    signature: None,
                });
            }
            let finish = finish(Some(choice.finish_reason), choice.stop_reason.as_ref());
            Output { index: choice.index, blocks, finish }
        })
        .collect();
    Ok(Answer { id: completion.id, model: completion.model, outputs, usage: completion.usage })
}

/// Why a choice ended. OpenAI's `stop` is a natural end or a stop sequence alike; vendors on
/// vLLM or SGLang say which sequence in `stop_reason` (a string; a number is a stop token).
fn finish(reason: Option<FinishReason>, stop_reason: Option<&serde_json::Value>) -> Finish {
    match reason {
        Some(FinishReason::Length) => Finish::Length,
        Some(FinishReason::ToolCalls | FinishReason::FunctionCall) => Finish::ToolCalls,
        Some(FinishReason::ContentFilter) => Finish::ContentFilter,
        Some(FinishReason::Stop) | None => match stop_reason.and_then(serde_json::Value::as_str) {
            Some(sequence) => Finish::StopSequence(Some(sequence.to_owned())),
            None => Finish::Stop,
        },
    }
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow)]
    error: ErrorObject<'a>,
}

#[derive(Deserialize)]
struct ErrorObject<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    param: Option<Cow<'a, str>>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// The client's error for a vendor's non-success answer. The vendor's message is kept (without
/// any trace of the vendor key, in any field); a vendor's 401/403 on the gateway's own key is
/// the operator's problem, reported as a 502 that does not repeat what the vendor said.
pub fn error_from_vendor(provider: &str, status: u16, body: &[u8], api_key: Option<&str>) -> GatewayError {
    super::redacted(translate_error(provider, status, body, api_key), api_key)
}

fn translate_error(provider: &str, vendor_status: u16, body: &[u8], api_key: Option<&str>) -> GatewayError {
    if matches!(vendor_status, 401 | 403) {
        return GatewayError::upstream_auth_failed(provider);
    }
    // The HTTP status decides the class (a 5xx stays a 5xx); the body's type only refines it.
    let status = if (400..=599).contains(&vendor_status) { vendor_status } else { 502 };
    let kind = if status < 500 { "invalid_request_error" } else { "server_error" };
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let Some(ErrorBody { error }) = parsed else {
        let message =
            format!("Provider `{provider}` answered HTTP {vendor_status}: {}", super::body_excerpt(body, api_key));
        return GatewayError::new(status, kind, "upstream_error", message);
    };
    let code = match error.code {
        Some(serde_json::Value::String(s)) => Some(Cow::Owned(s)),
        Some(serde_json::Value::Number(n)) => Some(Cow::Owned(n.to_string())),
        _ => None,
    };
    GatewayError {
        status,
        kind: match error.kind.as_deref() {
            Some("invalid_request_error") => "invalid_request_error",
            Some("rate_limit_error") | Some("requests") | Some("tokens") => "rate_limit_error",
            Some("insufficient_quota") => "insufficient_quota",
            _ => kind,
        },
        code,
        param: error.param.map(Cow::into_owned),
        message: error.message.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;

    pub(super) fn provider() -> Provider {
        Provider {
            api_key_secret: Some("OPENAI_API_KEY".into()),
            headers: vec![("openai-organization".into(), "org-1".into())],
            ..Provider::new("openai", ProviderKind::Openai, "https://api.example.com/v1")
        }
    }

    #[test]
    fn request_renames_the_model_and_keeps_everything_else() {
        let req = crate::ingress::openai_chat::decode(
            br#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"stream":true,"logit_bias":{"1":2},"store":false}"#,
        )
        .unwrap();
        let out = chat_request(&provider(), "gpt-4o-mini", &req, Some("sk-vendor"), false).unwrap().outbound;
        assert_eq!(out.url, "https://api.example.com/v1/chat/completions");
        assert!(out.headers.contains(&("authorization".into(), "Bearer sk-vendor".into())));
        assert!(out.headers.contains(&("accept".into(), "text/event-stream".into())));
        assert!(out.headers.contains(&("openai-organization".into(), "org-1".into())));
        let body: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream"], true);
        assert_eq!(body["logit_bias"]["1"], 2);
        assert_eq!(body["store"], false);
        assert_eq!(body["messages"][0]["content"], "hi");
    }

    #[test]
    fn azure_gets_its_deployment_url_api_version_and_api_key_header() {
        let mut azure = provider();
        azure.kind = ProviderKind::Azure;
        azure.base_url = "https://myres.openai.azure.com".into();
        azure.api_version = Some("2024-10-21".into());
        let req = crate::ingress::openai_chat::decode(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
            .unwrap();
        let out = chat_request(&azure, "gpt4o-prod", &req, Some("azkey"), false).unwrap().outbound;
        assert_eq!(
            out.url,
            "https://myres.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
        );
        assert!(out.headers.contains(&("api-key".into(), "azkey".into())));
        assert!(!out.headers.iter().any(|(h, _)| h == "authorization"));
    }

    #[test]
    fn the_clients_fallback_list_never_reaches_the_vendor() {
        let req = crate::ingress::openai_chat::decode(
            br#"{"model":"a","models":["b"],"messages":[{"role":"user","content":"hi"}],"top_k":3}"#,
        )
        .unwrap();
        assert_eq!(req.source.gateway_members, ["models"]);
        let out = chat_request(&provider(), "vendor-a", &req, None, false).unwrap().outbound;
        let body: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body, serde_json::json!({"model":"vendor-a","messages":[{"role":"user","content":"hi"}],"top_k":3}));
    }

    /// A `tool` message carries only text: a tool result's images follow the turn's `tool`
    /// messages in a `user` message, before the rest of the turn.
    #[test]
    fn a_tool_results_images_follow_its_tool_messages_as_a_user_message() {
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
        let out = chat_request(&provider(), "gpt-4.1", &request, None, false).unwrap().outbound;
        let body: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            body["messages"].as_array().unwrap()[2..],
            serde_json::json!([
                {"role": "tool", "tool_call_id": "toolu_a", "content": "Chart A\n\ncaptured 12:00"},
                {"role": "tool", "tool_call_id": "toolu_b", "content": "Error: stale"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}}]},
                {"role": "user", "content": "Which is higher?"}
            ])
            .as_array()
            .unwrap()[..]
        );
    }

    #[test]
    fn usage_is_read_from_an_answer_with_details() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
            "prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        let usage = usage_of(body).unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (10, 5));
        assert_eq!(usage.prompt_tokens_details.unwrap().cached_tokens, 4);
        assert_eq!(usage_of(br#"{"id":"x"}"#), None);
        assert_eq!(usage_of(b"not json"), None);
    }

    #[test]
    fn keyless_vendor_gets_no_authorization_header() {
        let req = crate::ingress::openai_chat::decode(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
            .unwrap();
        let out = chat_request(&provider(), "llama3", &req, None, false).unwrap().outbound;
        assert!(!out.headers.iter().any(|(h, _)| h == "authorization"));
    }

    #[test]
    fn vendor_error_keeps_its_fields_and_loses_the_key() {
        let body = br#"{"error":{"message":"Bad sk-vendor-123 value","type":"invalid_request_error","param":"messages","code":"bad"}}"#;
        let e = error_from_vendor("openai", 400, body, Some("sk-vendor-123"));
        assert_eq!(
            (e.status, e.kind, e.param.as_deref(), e.code.as_deref()),
            (400, "invalid_request_error", Some("messages"), Some("bad"))
        );
        assert_eq!(e.message, "Bad [redacted] value");
    }

    #[test]
    fn vendor_401_is_the_operators_problem() {
        let body =
            br#"{"error":{"message":"Incorrect API key provided: sk-ven***123","type":"invalid_request_error"}}"#;
        let e = error_from_vendor("openai", 401, body, Some("sk-vendor-123"));
        assert_eq!(e.status, 502);
        assert!(!e.message.contains("sk-"));
    }

    #[test]
    fn vendor_403_is_the_operators_problem_too() {
        let body = br#"{"error":{"message":"Project proj_1 does not have access to model gpt-5","type":"invalid_request_error","code":"model_not_found"}}"#;
        let e = error_from_vendor("openai", 403, body, Some("sk-vendor-123"));
        assert_eq!((e.status, e.kind, e.code.as_deref()), (502, "server_error", Some("upstream_auth_failed")));
        assert!(e.message.contains("`openai`") && !e.message.contains("proj_1"), "{}", e.message);
        assert!(crate::providers::is_vendor_fault(403, &e));
    }

    #[test]
    fn the_key_is_redacted_from_every_field() {
        let key = "sk-vendor/123+abc";
        let body = br#"{"error":{"message":"bad key sk-vendor%2F123%2Babc","type":"invalid_request_error","param":"auth sk-vendor/123+abc","code":"sk-vendor/123+abc"}}"#;
        let e = error_from_vendor("openai", 400, body, Some(key));
        assert_eq!(e.message, "bad key [redacted]");
        assert_eq!(e.param.as_deref(), Some("auth [redacted]"));
        assert_eq!(e.code.as_deref(), Some("[redacted]"));
        let json = String::from_utf8(e.to_json()).unwrap();
        assert!(!json.contains("sk-vendor"), "{json}");
    }

    #[test]
    fn an_unparsed_body_loses_the_key_even_where_it_is_cut() {
        let key = "sk-vendor-0123456789abcdef0123456789";
        for at in [0, 490, 500, 511, 2040, 2060, 3000] {
            let mut body = "x".repeat(at);
            body.push_str(key);
            body.push_str(&"y".repeat(4000));
            let e = error_from_vendor("openai", 502, body.as_bytes(), Some(key));
            for n in 5..key.len() {
                assert!(!e.message.contains(&key[..n]), "key at {at}: {n} bytes of it in {}", e.message);
            }
            assert!(e.message.chars().count() < 600);
        }
    }

    #[test]
    fn the_status_class_is_the_vendors() {
        let body = br#"{"error":{"message":"oops","type":"invalid_request_error","code":null}}"#;
        let e = error_from_vendor("openai", 500, body, None);
        assert_eq!(e.status, 500);
        assert!(crate::providers::is_retryable_status(500));
        let e = error_from_vendor("openai", 302, b"Found", None);
        assert_eq!((e.status, e.kind), (502, "server_error"));
    }

    #[test]
    fn non_json_vendor_error_is_wrapped() {
        let e = error_from_vendor("openai", 503, b"<html>Service Unavailable</html>", None);
        assert_eq!((e.status, e.kind, e.code.as_deref()), (503, "server_error", Some("upstream_error")));
        assert!(e.message.contains("Service Unavailable"));
    }
}

/// The usage an OpenAI-format chat completion reports, read without decoding the rest.
pub fn usage_of(body: &[u8]) -> Option<crate::chat::Usage> {
    #[derive(Deserialize)]
    struct UsageOnly {
        #[serde(default)]
        usage: Option<crate::chat::Usage>,
    }
    serde_json::from_slice::<UsageOnly>(body).ok()?.usage
}

/// An OpenAI-format stream passes through byte for byte, event by event: bytes are forwarded
/// up to the last complete event (the blank line that ends it), so a stream the vendor breaks
/// off leaves no half event for the client to choke on, and ends, for the client, with an error
/// event and `[DONE]` instead of a silent truncation. Each event is read before it goes: one
/// whose data is not JSON ends the stream with an error, and the vendor's error event reaches
/// the client as the gateway's, without the vendor key.
pub struct Stream {
    provider: String,
    /// The vendor key, redacted from the vendor's error events.
    api_key: Option<String>,
    parser: crate::sse::SseParser,
    splitter: crate::sse::EventSplitter,
    /// `[DONE]` or an error went by: nothing more is forwarded, `finish` ends the client's stream.
    ended: bool,
    error: Option<GatewayError>,
    /// The client asked for the usage chunk; if not, the one the gateway asked for is hidden.
    include_usage: bool,
    usage: Option<Usage>,
}

/// What becomes of one of the vendor's events.
enum Verdict {
    Forward,
    /// The usage chunk the gateway asked for and the client did not.
    Hide,
    Done,
    Fail(GatewayError),
}

/// The members of a chunk the gateway looks at, borrowed unparsed.
#[derive(Deserialize)]
struct ChunkProbe<'a> {
    #[serde(default, borrow)]
    error: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    choices: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    usage: Option<&'a serde_json::value::RawValue>,
}

impl Stream {
    pub fn new(provider: &str, include_usage: bool, api_key: Option<&str>) -> Self {
        Self {
            provider: provider.to_owned(),
            api_key: api_key.map(str::to_owned),
            parser: crate::sse::SseParser::new(),
            splitter: crate::sse::EventSplitter::default(),
            ended: false,
            error: None,
            include_usage,
            usage: None,
        }
    }

    /// Ends the client's stream with `error`, which may quote the vendor: without its key.
    fn fail(&mut self, out: &mut Vec<u8>, error: GatewayError) {
        let error = super::redacted(error, self.api_key.as_deref());
        if !self.ended {
            crate::ingress::openai_chat::error_event(&error, out);
            self.error = Some(error);
            self.ended = true;
        }
    }

    /// One event, with the blank line that ends it.
    fn forward_event(&mut self, event: &[u8], out: &mut Vec<u8>) {
        let verdict = match single_data_line(event) {
            Some(data) => Some(self.judge(data)),
            None => {
                let mut parser = std::mem::take(&mut self.parser);
                let mut verdict = None;
                let read = parser.push(event, &mut |_, data| {
                    verdict = match (verdict.take(), self.judge(data)) {
                        (Some(end @ (Verdict::Done | Verdict::Fail(_))), _) => Some(end),
                        (_, next @ (Verdict::Done | Verdict::Fail(_))) => Some(next),
                        (Some(Verdict::Forward), _) | (_, Verdict::Forward) => Some(Verdict::Forward),
                        _ => Some(Verdict::Hide),
                    };
                });
                self.parser = parser;
                if let Err(too_large) = read {
                    return self.fail(out, super::invalid_answer(&self.provider, too_large));
                }
                verdict
            }
        };
        match verdict.unwrap_or(Verdict::Forward) {
            Verdict::Forward => out.extend_from_slice(event),
            Verdict::Hide => {}
            // `[DONE]` is held back until the vendor's stream ends, so that what the gateway
            // adds at the end (the call's cost) comes before it.
            Verdict::Done => self.ended = true,
            Verdict::Fail(error) => self.fail(out, error),
        }
    }

    /// Reads one event's data: the end, the vendor's error, or a chunk (whose usage is kept).
    fn judge(&mut self, data: &[u8]) -> Verdict {
        if data == b"[DONE]" {
            return Verdict::Done;
        }
        let text = match std::str::from_utf8(data) {
            Ok(text) => text,
            Err(e) => return Verdict::Fail(super::invalid_answer(&self.provider, format!("stream event: {e}"))),
        };
        // Not JSON, or JSON that is no chunk (not an object, a member given twice): the client
        // could not read it either, and a twice-given `error` could hide the vendor's text.
        let object = text.trim_start().starts_with('{');
        let probe = match serde_json::from_str::<ChunkProbe>(text) {
            Ok(probe) if object => probe,
            Ok(_) => return Verdict::Fail(super::invalid_answer(&self.provider, "a stream event that is no object")),
            Err(e) => {
                let cause = format!("unreadable stream event: {}", super::decode_cause(&e));
                return Verdict::Fail(super::invalid_answer(&self.provider, cause));
            }
        };
        if probe.error.is_some() {
            return Verdict::Fail(error_from_vendor(&self.provider, 502, data, self.api_key.as_deref()));
        }
        // Usage comes once a stream, in its last chunk (`"usage":null` in the others).
        let Some(usage) = probe.usage.and_then(|u| serde_json::from_str::<Usage>(u.get()).ok()) else {
            return Verdict::Forward;
        };
        self.usage = Some(usage);
        let no_choices = probe
            .choices
            .is_none_or(|c| serde_json::from_str::<Vec<serde::de::IgnoredAny>>(c.get()).is_ok_and(|c| c.is_empty()));
        if no_choices && !self.include_usage {
            Verdict::Hide
        } else {
            Verdict::Forward
        }
    }
}

/// The data of an event that is one `data:` line and its blank line, as nearly every vendor
/// sends them: read in place, without the parser's copy. Anything else goes to the parser.
fn single_data_line(event: &[u8]) -> Option<&[u8]> {
    let line = event.strip_suffix(b"\n\n")?.strip_prefix(b"data:")?;
    let fits = event.len() <= crate::sse::MAX_EVENT_BYTES && memchr::memchr2(b'\n', b'\r', line).is_none();
    fits.then(|| line.strip_prefix(b" ").unwrap_or(line))
}

impl super::StreamTranslator for Stream {
    fn error(&self) -> Option<&GatewayError> {
        self.error.as_ref()
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn done(&self) -> bool {
        self.ended
    }

    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let mut splitter = std::mem::take(&mut self.splitter);
        let split = splitter.push(bytes, |event| {
            self.forward_event(event, out);
            !self.ended // nothing follows `[DONE]` or an error
        });
        self.splitter = splitter;
        if let Err(too_large) = split {
            self.fail(out, super::invalid_answer(&self.provider, too_large));
        }
    }

    fn finish(&mut self, error: Option<&str>, out: &mut Vec<u8>) {
        if let Some(event) = self.splitter.take_held().filter(|_| !self.ended) {
            self.forward_event(&event, out);
        }
        self.parser.finish();
        if !self.ended {
            let cause = error.unwrap_or("the stream ended before [DONE]");
            self.fail(out, GatewayError::upstream_stream_broken(&self.provider, cause));
        }
        out.extend_from_slice(crate::sse::DONE);
    }
}

/// An OpenAI-format stream to canonical events, for a client of another dialect. Blocks are
/// made of the deltas' kinds as they come (reasoning, text, each tool call), one open at a time
/// a choice; a tool call's arguments that come after another block began are out of order,
/// which no OpenAI-format vendor does: the stream fails rather than lose them.
pub struct ChunkDecoder {
    provider: String,
    api_key: Option<String>,
    parser: crate::sse::SseParser,
    started: bool,
    choices: Vec<ChoiceBlocks>,
    usage: Option<Usage>,
    end: StreamEnd,
}

#[derive(Default, Clone)]
struct ChoiceBlocks {
    open: Option<(Open, u32)>,
    next: u32,
    /// The tool-call indexes that have had their block.
    tools: Vec<u32>,
    finished: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Open {
    Text,
    Thinking,
    Tool(u32),
}

/// The members of a chunk the decoder reads, borrowed.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Vec<ChunkChoice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default, borrow)]
    error: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    delta: Option<ChunkDelta<'a>>,
    #[serde(default)]
    finish_reason: Option<FinishReason>,
    #[serde(default)]
    stop_reason: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Vec<ChunkToolCall<'a>>,
}

#[derive(Deserialize)]
struct ChunkToolCall<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<ChunkFunction<'a>>,
}

#[derive(Deserialize)]
struct ChunkFunction<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

/// Choices and tool calls a stream may have: a vendor's index never sizes memory past these.
const MAX_CHOICES: u32 = 128;
const MAX_TOOL_CALLS: u32 = 256;

impl ChunkDecoder {
    pub fn new(provider: &str, api_key: Option<&str>, egress: Box<dyn Egress>) -> Self {
        Self {
            provider: provider.to_owned(),
            api_key: api_key.map(str::to_owned),
            parser: crate::sse::SseParser::new(),
            started: false,
            choices: Vec::new(),
            usage: None,
            end: StreamEnd::new(egress),
        }
    }

    fn fail(&mut self, out: &mut Vec<u8>, error: GatewayError) {
        self.end.fail(out, super::redacted(error, self.api_key.as_deref()));
    }

    /// Makes `want` the choice's open block (stopping the one open before); its index.
    fn open(&mut self, choice: u32, want: Open, kind: BlockKind<'_>, out: &mut Vec<u8>) -> u32 {
        let state = &mut self.choices[choice as usize];
        if let Some((open, block)) = state.open {
            if open == want {
                return block;
            }
            self.end.emit(Event::BlockStop { choice, block }, out);
        }
        let block = state.next;
        state.next += 1;
        state.open = Some((want, block));
        self.end.emit(Event::BlockStart { choice, block, kind }, out);
        block
    }

    fn close(&mut self, choice: u32, out: &mut Vec<u8>) {
        if let Some((_, block)) = self.choices[choice as usize].open.take() {
            self.end.emit(Event::BlockStop { choice, block }, out);
        }
    }

    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.end.is_done() {
            return;
        }
        if data == b"[DONE]" {
            return self.complete(out);
        }
        let chunk: Chunk = match serde_json::from_slice(data) {
            Ok(chunk) => chunk,
            Err(e) => {
                let cause = format!("unreadable stream event: {}", super::decode_cause(&e));
                return self.fail(out, super::invalid_answer(&self.provider, cause));
            }
        };
        if chunk.error.is_some() {
            let error = error_from_vendor(&self.provider, 502, data, self.api_key.as_deref());
            return self.fail(out, error);
        }
        if !self.started {
            self.started = true;
            let id = chunk.id.as_deref().unwrap_or("chatcmpl-gateway");
            self.end.emit(Event::Start { id, model: chunk.model.as_deref().unwrap_or_default() }, out);
        }
        for choice in chunk.choices {
            let c = choice.index;
            if c >= MAX_CHOICES {
                let cause = format!("choice index {c} (at most {MAX_CHOICES} choices)");
                return self.fail(out, super::invalid_answer(&self.provider, cause));
            }
            if self.choices.len() <= c as usize {
                self.choices.resize(c as usize + 1, ChoiceBlocks::default());
            }
            if let Some(delta) = choice.delta {
                let thinking = delta.reasoning_content.or(delta.reasoning).filter(|t| !t.is_empty());
                if let Some(text) = thinking {
                    let block = self.open(c, Open::Thinking, BlockKind::Thinking, out);
                    self.end.emit(Event::Delta { choice: c, block, delta: Delta::Thinking(&text) }, out);
                }
                for text in [delta.content, delta.refusal].into_iter().flatten().filter(|t| !t.is_empty()) {
                    let block = self.open(c, Open::Text, BlockKind::Text, out);
                    self.end.emit(Event::Delta { choice: c, block, delta: Delta::Text(&text) }, out);
                }
                for call in delta.tool_calls {
                    let i = call.index;
                    if i >= MAX_TOOL_CALLS {
                        let cause = format!("tool call index {i} (at most {MAX_TOOL_CALLS})");
                        return self.fail(out, super::invalid_answer(&self.provider, cause));
                    }
                    let (name, arguments) = match call.function {
                        Some(f) => (f.name, f.arguments),
                        None => (None, None),
                    };
                    let state = &self.choices[c as usize];
                    let block = if state.open.is_some_and(|(open, _)| open == Open::Tool(i)) {
                        state.open.map(|(_, block)| block).unwrap_or_default()
                    } else if state.tools.contains(&i) {
                        let cause = format!("arguments of tool call {i} after another block began");
                        return self.fail(out, super::invalid_answer(&self.provider, cause));
                    } else {
                        self.choices[c as usize].tools.push(i);
                        let id = call.id.map(Cow::into_owned).unwrap_or_else(|| format!("call_{c}_{i}"));
                        let name = name.as_deref().unwrap_or_default();
                        self.open(c, Open::Tool(i), BlockKind::ToolCall { id: &id, name, signature: None }, out)
                    };
                    if let Some(arguments) = arguments.filter(|a| !a.is_empty()) {
                        let delta = Delta::ToolArguments(&arguments);
                        self.end.emit(Event::Delta { choice: c, block, delta }, out);
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.close(c, out);
                self.choices[c as usize].finished = true;
                let finish = finish(Some(reason), choice.stop_reason.as_ref());
                self.end.emit(Event::Finish { choice: c, finish }, out);
            }
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
            self.end.emit(Event::Usage(usage), out);
        }
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        for c in 0..self.choices.len() as u32 {
            if !self.choices[c as usize].finished {
                self.close(c, out);
                self.choices[c as usize].finished = true;
                self.end.emit(Event::Finish { choice: c, finish: Finish::Stop }, out);
            }
        }
        self.end.complete(out);
    }
}

impl StreamTranslator for ChunkDecoder {
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        self.end.keepalive(out);
    }

    fn error(&self) -> Option<&GatewayError> {
        self.end.error()
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn done(&self) -> bool {
        self.end.is_done()
    }

    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut parser = std::mem::take(&mut self.parser);
        let read = parser.push(bytes, &mut |_, data| self.on_event(data, out));
        self.parser = parser;
        if let Err(too_large) = read {
            self.fail(out, super::invalid_answer(&self.provider, too_large));
        }
    }

    /// A stream that ends without `[DONE]` is whole only if every choice finished.
    fn finish(&mut self, error: Option<&str>, out: &mut Vec<u8>) {
        self.parser.finish();
        if self.end.is_done() {
            return;
        }
        let whole = error.is_none() && !self.choices.is_empty() && self.choices.iter().all(|c| c.finished);
        if whole {
            return self.complete(out);
        }
        let cause = error.unwrap_or("the stream ended before [DONE]");
        self.fail(out, GatewayError::upstream_stream_broken(&self.provider, cause));
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;
    use crate::providers::StreamTranslator;

    #[test]
    fn a_complete_stream_passes_through_byte_for_byte() {
        let input = b"data: {\"id\":\"1\",\"choices\":[]}\n\ndata: [DONE]\n\n";
        let mut out = Vec::new();
        let mut s = Stream::new("p", false, None);
        for chunk in input.chunks(7) {
            s.push(chunk, &mut out);
        }
        s.finish(None, &mut out);
        assert_eq!(out, input);
    }

    const WITH_USAGE: &[u8] =
        b"data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"id\":\"1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\r\n\r\n\
data: [DONE]\n\n";

    #[test]
    fn the_usage_chunk_is_read_and_hidden_from_a_client_that_did_not_ask() {
        for size in [1, 5, 64, WITH_USAGE.len()] {
            let (mut hidden, mut shown) = (Vec::new(), Vec::new());
            let (mut a, mut b) = (Stream::new("p", false, None), Stream::new("p", true, None));
            for chunk in WITH_USAGE.chunks(size) {
                a.push(chunk, &mut hidden);
                b.push(chunk, &mut shown);
            }
            a.finish(None, &mut hidden);
            b.finish(None, &mut shown);
            assert_eq!(shown, WITH_USAGE);
            let hidden = String::from_utf8(hidden).unwrap();
            assert!(!hidden.contains("prompt_tokens") && hidden.contains("\"hi\"") && hidden.ends_with("[DONE]\n\n"));
            for s in [&a, &b] {
                assert_eq!(s.usage().map(|u| (u.prompt_tokens, u.completion_tokens)), Some((7, 3)));
            }
        }
    }

    #[test]
    fn a_usage_object_is_found_however_it_is_spaced() {
        let mut plain = Stream::new("p", false, None);
        let mut out = Vec::new();
        let chunk =
            b"data: {\"choices\":[{\"delta\":{\"content\":\"the \\\"usage\\\" of words\"}}],\"usage\":null}\n\n";
        plain.push(chunk, &mut out);
        assert_eq!((out.as_slice(), plain.usage()), (&chunk[..], None));
        let mut s = Stream::new("p", false, None);
        let mut out = Vec::new();
        s.push(b"data: {\"choices\": null, \"usage\": {\"prompt_tokens\": 2, \"completion_tokens\": 1}}\n\n", &mut out);
        assert!(out.is_empty());
        assert_eq!(s.usage().map(|u| u.prompt_tokens), Some(2));
    }

    #[test]
    fn usage_is_asked_of_the_vendor_for_every_stream() {
        let ask = |body: &str| {
            let req = crate::ingress::openai_chat::decode(body.as_bytes()).unwrap();
            let out = chat_request(&super::tests::provider(), "v", &req, None, false).unwrap().outbound;
            serde_json::from_slice::<serde_json::Value>(&out.body).unwrap()
        };
        let added = ask(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!(added["stream_options"]["include_usage"], true);
        assert_eq!(added["model"], "v");
        let merged = ask(
            r#"{"model":"m","stream":true,"stream_options":{"include_obfuscation":false},"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(merged["stream_options"], serde_json::json!({"include_obfuscation": false, "include_usage": true}));
        let null =
            ask(r#"{"model":"m","stream":true,"stream_options":null,"messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!(null["stream_options"], serde_json::json!({"include_usage": true}));
        let plain = ask(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        assert!(plain.get("stream_options").is_none());
    }

    #[test]
    fn a_cut_stream_ends_with_an_error_event_and_done() {
        let mut out = Vec::new();
        let mut s = Stream::new("p", false, None);
        s.push(b"data: {\"id\":\"1\",\"choices\":[]}\n\ndata: {\"id\":", &mut out);
        s.finish(Some("connection reset"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\n\ndata: {\"error\":{\"message\":\"Provider `p` broke off its stream: connection reset\"")
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    fn run(s: &mut Stream, input: &[u8]) -> String {
        let mut out = Vec::new();
        for chunk in input.chunks(3) {
            s.push(chunk, &mut out);
        }
        s.finish(None, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_vendor_error_event_loses_the_key_and_ends_the_stream() {
        let key = "sk-live-abcdef123456";
        let input = format!(
            "data: {{\"choices\":[]}}\n\ndata: {{\"error\":{{\"message\":\"key {key} revoked\",\"type\":\"server_error\",\"param\":\"{key}\",\"code\":\"{key}\"}}}}\n\ndata: {{\"after\":1}}\n\n"
        );
        let mut s = Stream::new("p", false, Some(key));
        let text = run(&mut s, input.as_bytes());
        assert!(!text.contains(key), "{text}");
        assert!(text.contains("key [redacted] revoked") && !text.contains("after"), "{text}");
        assert!(text.ends_with("}\n\ndata: [DONE]\n\n"), "{text}");
        assert_eq!(s.error().map(|e| e.message.as_str()), Some("key [redacted] revoked"));
        assert!(s.done());
    }

    #[test]
    fn an_event_that_is_not_json_ends_the_stream_with_an_error() {
        let mut s = Stream::new("p", false, None);
        let text = run(&mut s, b"data: {\"choices\":[]}\n\ndata: <html>Bad Gateway</html>\n\ndata: [DONE]\n\n");
        assert!(!text.contains("<html>"), "{text}");
        assert_eq!(s.error().and_then(|e| e.code.as_deref()), Some("upstream_invalid_response"));
        assert!(text.starts_with("data: {\"choices\":[]}\n\ndata: {\"error\":") && text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn a_stream_without_line_ends_is_refused_at_the_limit() {
        let mut s = Stream::new("p", false, None);
        let mut out = Vec::new();
        s.push(b"data: {\"choices\":[]}\n\n", &mut out);
        let piece = vec![b'<'; 64 * 1024];
        for _ in 0..40 {
            s.push(&piece, &mut out);
            assert!(s.splitter.pending_len() <= 2 * crate::sse::MAX_EVENT_BYTES);
        }
        assert!(s.done());
        let error = s.error().unwrap();
        assert_eq!(error.code.as_deref(), Some("upstream_invalid_response"));
        assert!(error.message.contains("1048576 bytes"), "{}", error.message);
        s.finish(None, &mut out);
        assert!(out.ends_with(crate::sse::DONE));
    }

    #[test]
    fn one_long_data_line_is_refused_by_the_parser() {
        let mut s = Stream::new("p", false, None);
        let mut input = b"data: \"".to_vec();
        input.resize(crate::sse::MAX_EVENT_BYTES + 100, b'a');
        input.extend_from_slice(b"\"\n\n");
        let text = run(&mut s, &input);
        assert!(text.len() < 1000 && text.ends_with("data: [DONE]\n\n"), "{}", &text[..text.len().min(300)]);
        assert!(s.error().is_some_and(|e| e.message.contains("exceeds the limit")));
    }
}

#[derive(Serialize)]
struct EmbeddingsBody<'a> {
    model: &'a str,
    #[serde(flatten)]
    request: &'a crate::embeddings::EmbeddingRequest,
}

/// The vendor request for embeddings: the client's, with the vendor's model.
pub fn embeddings_request(
    provider: &Provider,
    vendor_model: &str,
    request: &crate::embeddings::EmbeddingRequest,
    api_key: Option<&str>,
) -> OutboundRequest {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(key) = api_key {
        headers.push(auth_header(provider, key));
    }
    headers.extend(provider.headers.iter().cloned());
    let body = serde_json::to_vec(&EmbeddingsBody { model: vendor_model, request }).unwrap_or_default();
    OutboundRequest { url: endpoint(provider, vendor_model, "embeddings"), headers, body }
}
