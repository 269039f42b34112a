//! Vendor adapters: pure transformations between the canonical request (`crate::canonical`)
//! and each vendor's wire format. The worker performs the HTTP call; adapters only build and
//! read bytes.
//!
//! Each adapter provides: the vendor request for a chat (URL, headers, body) with a report of
//! the parameters it could not honour; the decoding of the vendor's answer into a canonical
//! `Answer`; a stream decoder from the vendor's events to canonical `Event`s, which an egress
//! encoder writes in the client's dialect; and the classification of the vendor's errors. A
//! vendor that speaks the client's own dialect gets the client's bytes, and its answer goes back
//! untouched.

pub mod anthropic;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod openai_responses;

use crate::canonical::{Answer, Dialect, Egress, Event, Request};
use crate::config::{Provider, ProviderKind};
use crate::embeddings::{EmbeddingList, EmbeddingRequest};
use crate::error::GatewayError;
use std::borrow::Cow;

/// An HTTP request for a vendor, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Parameters a target could not take as sent: dropped, or changed to fit (named with the
/// value used). Reported to the client in `x-switchyard-dropped-params` and
/// `x-switchyard-adjusted-params`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamReport {
    pub dropped: Vec<String>,
    pub adjusted: Vec<String>,
}

/// Decides, parameter by parameter, what happens to one the vendor cannot honour: in lenient
/// mode it is dropped (or adjusted) and reported; in strict mode the request is refused. Both
/// name the parameter as the client's dialect does (an Anthropic client sent `stop_sequences`,
/// not `stop`): adapters name the canonical parameters as Chat Completions does, and the
/// policy translates.
pub struct ParamPolicy {
    strict: bool,
    vendor: &'static str,
    dialect: Dialect,
    /// The request's reasoning is a budget of tokens (Anthropic's `thinking.budget_tokens`).
    budget: bool,
    pub report: ParamReport,
}

impl ParamPolicy {
    /// A policy for parameters named as the client sent them (the OpenAI media endpoints).
    pub fn new(vendor: &'static str, strict: bool) -> Self {
        Self { strict, vendor, dialect: Dialect::OpenaiChat, budget: false, report: ParamReport::default() }
    }

    /// A policy for a chat request: its parameters named as its dialect names them.
    pub fn for_chat(vendor: &'static str, request: &Request, strict: bool) -> Self {
        Self {
            dialect: request.source.dialect,
            budget: matches!(request.reasoning, Some(crate::canonical::Reasoning::Budget(_))),
            ..Self::new(vendor, strict)
        }
    }

    fn refuse(&self, name: &str, what: &str) -> GatewayError {
        GatewayError::new(
            400,
            "invalid_request_error",
            "unsupported_parameter",
            format!(
                "{what} '{name}' is not supported by {} models (strict mode); remove it or turn strict mode off.",
                self.vendor
            ),
        )
        .with_param(name)
    }

    /// The client's name of a canonical parameter, named as Chat Completions names it.
    pub fn client_name<'n>(&self, name: &'n str) -> &'n str {
        match (self.dialect, name) {
            (_, "reasoning_effort") if self.budget => "thinking.budget_tokens",
            (Dialect::AnthropicMessages, "stop") => "stop_sequences",
            (Dialect::AnthropicMessages, "user") => "metadata.user_id",
            (Dialect::AnthropicMessages, "parallel_tool_calls") => "tool_choice.disable_parallel_tool_use",
            (Dialect::OpenaiResponses, "max_tokens") => "max_output_tokens",
            (Dialect::OpenaiResponses, "reasoning_effort") => "reasoning.effort",
            (Dialect::OpenaiResponses, "response_format") => "text.format",
            _ => name,
        }
    }

    /// Drops a canonical parameter (named as Chat Completions names it).
    pub fn drop(&mut self, name: &str) -> Result<(), GatewayError> {
        self.drop_extra(self.client_name(name))
    }

    /// Drops a parameter the canonical model does not hold (`Request::extra`), already named in
    /// the client's terms.
    pub fn drop_extra(&mut self, name: &str) -> Result<(), GatewayError> {
        if self.strict {
            return Err(self.refuse(name, "The parameter"));
        }
        self.report.dropped.push(name.to_owned());
        Ok(())
    }

    /// Reports a hint the vendor is not sent but whose purpose it serves its own way (a
    /// `cache_control` marker to a vendor that caches prompt prefixes by itself): reported as
    /// dropped, never refused, strict or not.
    pub fn note_dropped(&mut self, name: &str) {
        if !self.report.dropped.iter().any(|d| d == name) {
            self.report.dropped.push(name.to_owned());
        }
    }

    /// Sends a canonical parameter (named as Chat Completions names it) changed to `used`.
    pub fn adjust(&mut self, name: &str, used: impl std::fmt::Display) -> Result<(), GatewayError> {
        let name = self.client_name(name);
        if self.strict {
            return Err(self.refuse(name, "The value of"));
        }
        self.report.adjusted.push(format!("{name}={used}"));
        Ok(())
    }
}

/// What decoding the vendor's answer needs to know about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatPlan {
    pub stream: bool,
    /// The client asked for the stream's usage (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The request's JSON output was obtained by forcing this tool: its input is the answer.
    pub json_tool: Option<String>,
    /// The client's dialect: a vendor that speaks it passes its answer through.
    pub dialect: Dialect,
}

impl ChatPlan {
    pub fn of(request: &Request) -> Self {
        Self {
            stream: request.stream,
            include_usage: request.include_usage,
            json_tool: None,
            dialect: request.source.dialect,
        }
    }
}

/// A vendor request and what is needed to read its answer.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub outbound: OutboundRequest,
    pub report: ParamReport,
    pub plan: ChatPlan,
}

/// Turns a vendor's event stream into the client's, incrementally.
pub trait StreamTranslator {
    /// Feeds bytes as they arrive; appends what the client should receive now to `out`.
    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>);
    /// The vendor's stream ended, cleanly or (with `error`) not. Appends the end of the
    /// client's stream: an error event if the vendor's stream did not complete, then `[DONE]`.
    fn finish(&mut self, error: Option<&str>, out: &mut Vec<u8>);
    /// The error the client's stream ended with, when it ended in one (the vendor's error event,
    /// a broken or unreadable stream). Before the gateway commits to a target, such an error
    /// is a failed attempt, and the next target is tried instead.
    fn error(&self) -> Option<&GatewayError>;
    /// The usage the vendor reported in the stream so far (complete once the stream ended).
    fn usage(&self) -> Option<crate::chat::Usage>;
    /// The vendor's stream has said all it will (its end event came): `finish` may be called
    /// without waiting for the vendor to close the connection.
    fn done(&self) -> bool;
    /// The vendor has been silent a while: appends the client dialect's keep-alive, if the
    /// stream is translated (a pass-through sends the vendor's own bytes only).
    fn keepalive(&mut self, _out: &mut Vec<u8>) {}
    /// The vendor's final answer object in the client's dialect, once a passed-through stream
    /// has ended with one (the Responses API's `response.completed`), for the gateway's store.
    fn final_answer(&self) -> Option<&[u8]> {
        None
    }
}

/// The vendor request for a chat, by the provider's wire format.
pub fn prepare_chat(
    provider: &Provider,
    vendor_model: &str,
    request: &Request,
    api_key: Option<&str>,
    strict: bool,
) -> Result<Prepared, GatewayError> {
    if let Some(tool) = request.server_tools.first() {
        if !hosts_server_tools(provider, request.source.dialect) {
            return Err(GatewayError::new(
                400,
                "invalid_request_error",
                "unsupported_tool",
                format!(
                    "The tool or item type '{tool}' runs on its vendor's servers; provider `{}` cannot run it. \
                     Route this request to a model of that vendor, or remove it.",
                    provider.name
                ),
            )
            .with_param("tools"));
        }
    }
    match provider.kind {
        ProviderKind::Openai | ProviderKind::Azure
            if request.source.dialect == Dialect::OpenaiResponses
                && passes_through(provider, request.source.dialect) =>
        {
            Ok(openai_responses::chat_request(provider, vendor_model, request, api_key))
        }
        ProviderKind::Openai | ProviderKind::Azure => {
            openai::chat_request(provider, vendor_model, request, api_key, strict)
        }
        ProviderKind::Anthropic => anthropic::chat_request(provider, vendor_model, request, api_key, strict),
        ProviderKind::Gemini => gemini::chat_request(provider, vendor_model, request, api_key, strict),
        ProviderKind::Mock => Err(GatewayError::new(
            500,
            "server_error",
            "internal_error",
            "the built-in mock provider answers in the worker; it has no vendor request",
        )),
    }
}

/// The most output tokens the vendor request built for `request` lets the vendor produce, all
/// choices and any thinking the translation adds included: what a budget's hold must cover. It
/// reads the numbers the adapters write (`max_tokens` raised by Anthropic's thinking budget,
/// Gemini's `candidateCount` and `thinkingBudget`, OpenAI's `n`), through the functions that
/// write them.
pub fn output_bound(
    provider: &Provider,
    vendor_model: &str,
    request: &Request,
    info: &crate::catalog::ModelInfo,
    needs: &crate::catalog::Needs,
) -> u64 {
    let choices = u64::from(request.choices.max(1));
    // The model's own largest answer, not cut to what the context leaves after the prompt:
    // the prompt's count is an estimate, and the less of it is credited, the more output fits.
    let model_max = match (needs.max_output, info.max_output) {
        (0, 0) => info.context_window,
        (0, max) => max,
        (limit, _) => limit,
    };
    let per_choice = match provider.kind {
        ProviderKind::Mock => return 0,
        ProviderKind::Openai | ProviderKind::Azure => match openai::max_output_tokens(request) {
            Some(limit) => u64::from(limit),
            None => model_max,
        },
        ProviderKind::Anthropic => {
            let thinking = anthropic::thinking_budget(request).ok().flatten();
            u64::from(anthropic::max_tokens(request, vendor_model, thinking))
        }
        ProviderKind::Gemini => {
            let thinking = gemini::thinking_budget(request).ok().flatten();
            let thinking = thinking.map(|budget| gemini::fit_thinking_budget(vendor_model, budget));
            // Thinking is billed as output; counted on top of the client's limit, since whether
            // the vendor counts it inside `maxOutputTokens` is the vendor's to change.
            match needs.max_output {
                0 => model_max,
                limit => limit.saturating_add(u64::from(thinking.unwrap_or(0))),
            }
        }
    };
    per_choice.saturating_mul(choices)
}

/// Whether the provider answers inside the worker (the built-in mock), with no vendor call.
pub fn answers_in_worker(provider: &Provider) -> bool {
    provider.kind == ProviderKind::Mock
}

/// The vendor request that counts a request's prompt tokens, for a vendor that has a counter
/// (Anthropic's `count_tokens`); `None` for the others, whose count is estimated.
pub fn count_tokens_request(
    provider: &Provider,
    vendor_model: &str,
    request: &Request,
    api_key: Option<&str>,
) -> Option<OutboundRequest> {
    match provider.kind {
        ProviderKind::Anthropic => {
            let mut outbound = anthropic::count_tokens_request(provider, vendor_model, request, api_key);
            if passes_through(provider, request.source.dialect) {
                anthropic::merge_headers(&mut outbound.headers, &request.source.headers);
            }
            Some(outbound)
        }
        _ => None,
    }
}

/// Whether the target passes the client's request and answer through: its vendor speaks the
/// client's dialect, so the request goes with only the model renamed, and the answer comes
/// back untouched.
pub fn passes_through(provider: &Provider, dialect: Dialect) -> bool {
    match (provider.kind, dialect) {
        (ProviderKind::Openai | ProviderKind::Azure, Dialect::OpenaiChat) => true,
        (ProviderKind::Openai | ProviderKind::Azure, Dialect::OpenaiResponses) => provider.responses_api,
        (ProviderKind::Anthropic, Dialect::AnthropicMessages) => true,
        _ => false,
    }
}

/// Whether a provider can run the vendor-hosted tools of a request in `dialect`: only its own
/// vendor's, which only a pass-through carries.
fn hosts_server_tools(provider: &Provider, dialect: Dialect) -> bool {
    passes_through(provider, dialect)
}

/// The usage a vendor's answer in the client's own dialect reports (a pass-through), read
/// without decoding the rest.
pub fn usage_of(provider: &Provider, dialect: Dialect, body: &[u8]) -> Option<crate::chat::Usage> {
    match (provider.kind, dialect) {
        (ProviderKind::Anthropic, _) => anthropic::usage_of(body),
        (_, Dialect::OpenaiResponses) => openai_responses::usage_of(body),
        _ => openai::usage_of(body),
    }
}

/// The vendor's (non-streamed) answer in canonical terms; `None` when the vendor speaks the
/// client's dialect and its answer passes through untouched.
pub fn decode_chat(provider: &Provider, body: &[u8], plan: &ChatPlan) -> Result<Option<Answer>, GatewayError> {
    if passes_through(provider, plan.dialect) {
        return Ok(None);
    }
    match provider.kind {
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::Mock => {
            openai::chat_response(&provider.name, body).map(Some)
        }
        ProviderKind::Anthropic => anthropic::chat_response(&provider.name, body, plan).map(Some),
        ProviderKind::Gemini => gemini::chat_response(&provider.name, body).map(Some),
    }
}

/// The translator of the vendor's event stream into the client's: the vendor's decoder, writing
/// through `egress` (the client dialect's encoder), or the pass-through of a vendor that speaks
/// the client's dialect. `api_key` is the vendor key, redacted from the vendor's error events
/// before the client sees them.
pub fn chat_stream(
    provider: &Provider,
    plan: ChatPlan,
    api_key: Option<&str>,
    egress: Box<dyn Egress>,
) -> Box<dyn StreamTranslator> {
    let passes = passes_through(provider, plan.dialect);
    match provider.kind {
        ProviderKind::Openai | ProviderKind::Azure if passes && plan.dialect == Dialect::OpenaiResponses => {
            Box::new(openai_responses::Passthrough::new(&provider.name, api_key))
        }
        ProviderKind::Openai | ProviderKind::Azure if passes => {
            Box::new(openai::Stream::new(&provider.name, plan.include_usage, api_key))
        }
        ProviderKind::Anthropic if passes => Box::new(anthropic::Passthrough::new(&provider.name, api_key)),
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::Mock => {
            Box::new(openai::ChunkDecoder::new(&provider.name, api_key, egress))
        }
        ProviderKind::Anthropic => Box::new(anthropic::Stream::new(&provider.name, plan, api_key, egress)),
        ProviderKind::Gemini => Box::new(gemini::Stream::new(&provider.name, api_key, egress)),
    }
}

/// The client's error for a vendor's error answer.
pub fn vendor_error(provider: &Provider, status: u16, body: &[u8], api_key: Option<&str>) -> GatewayError {
    match provider.kind {
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::Mock => {
            openai::error_from_vendor(&provider.name, status, body, api_key)
        }
        ProviderKind::Anthropic => anthropic::error_from_vendor(&provider.name, status, body, api_key),
        ProviderKind::Gemini => gemini::error_from_vendor(&provider.name, status, body, api_key),
    }
}

/// Whether the provider has an embeddings API at all (checked before its key is looked up).
pub fn check_embeddings(provider: &Provider, request: &EmbeddingRequest) -> Result<(), GatewayError> {
    match provider.kind {
        ProviderKind::Openai | ProviderKind::Azure | ProviderKind::Gemini => Ok(()),
        ProviderKind::Anthropic | ProviderKind::Mock => Err(GatewayError::new(
            400,
            "invalid_request_error",
            "unsupported_model",
            format!(
                "The model `{}` cannot make embeddings: provider `{}` has no embeddings API.",
                request.model, provider.name
            ),
        )
        .with_param("model")),
    }
}

/// The vendor request for embeddings, by the provider's wire format.
pub fn prepare_embeddings(
    provider: &Provider,
    vendor_model: &str,
    request: &EmbeddingRequest,
    api_key: Option<&str>,
) -> Result<OutboundRequest, GatewayError> {
    check_embeddings(provider, request)?;
    match provider.kind {
        ProviderKind::Gemini => gemini::embeddings_request(provider, vendor_model, request, api_key),
        _ => Ok(openai::embeddings_request(provider, vendor_model, request, api_key)),
    }
}

/// The vendor's embeddings as OpenAI's list; `None` when the answer already is one.
pub fn decode_embeddings(
    provider: &Provider,
    body: &[u8],
    request: &EmbeddingRequest,
    vendor_model: &str,
) -> Result<Option<EmbeddingList>, GatewayError> {
    match provider.kind {
        ProviderKind::Gemini => gemini::embeddings_response(&provider.name, body, request, vendor_model).map(Some),
        _ => Ok(None),
    }
}

/// Whether a vendor status is the vendor's trouble (another target may succeed) rather than a
/// problem with the request itself. 529 is Anthropic's "overloaded". 401 and 403 refuse the
/// operator's key for this target, which another target's key may not share.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 401 | 403 | 408 | 429) || status >= 500
}

/// Whether a vendor's error answer is the target's fault, not the request's: the attempt loop
/// then tries the next target and counts the failure against this one's health. That is a
/// retryable status, or an error the adapter recognised as the vendor refusing the gateway's
/// key whatever the status (Gemini says so with a 400 `API_KEY_INVALID`). `error` is the
/// adapter's translation of the answer (`vendor_error`).
pub fn is_vendor_fault(status: u16, error: &GatewayError) -> bool {
    is_retryable_status(status) || error.code.as_deref() == Some("upstream_auth_failed")
}

/// What stands in for the vendor key in what reaches the client.
const REDACTED: &str = "[redacted]";

/// The forms of `secret` a vendor may echo: as sent, and percent-encoded (as it appears in a
/// URL or a form body) in upper- and lower-case hex, when that differs.
fn secret_forms(secret: &str) -> Vec<String> {
    use std::fmt::Write;
    let (mut upper, mut lower) = (String::with_capacity(secret.len() * 3), String::with_capacity(secret.len() * 3));
    for byte in secret.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            upper.push(char::from(byte));
            lower.push(char::from(byte));
        } else {
            let _ = write!(upper, "%{byte:02X}");
            let _ = write!(lower, "%{byte:02x}");
        }
    }
    let mut forms = vec![secret.to_owned()];
    for encoded in [upper, lower] {
        if !forms.contains(&encoded) {
            forms.push(encoded);
        }
    }
    forms
}

/// Removes every occurrence of `secret` (and of its percent-encoding) from `text`, so a vendor
/// that echoes a key back in an error cannot make the gateway leak it. A secret shorter than
/// four bytes is no key worth the name, and redacting it would garble the text.
pub fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if secret.len() >= 4 => {
            let mut text = Cow::Borrowed(text);
            for form in secret_forms(secret) {
                if text.contains(form.as_str()) {
                    text = Cow::Owned(text.replace(form.as_str(), REDACTED));
                }
            }
            text.into_owned()
        }
        _ => text.to_owned(),
    }
}

/// `error` with `secret` redacted from every field a vendor's text can reach: message, param
/// and code (its `type` is always one of the gateway's own).
pub fn redacted(mut error: GatewayError, secret: Option<&str>) -> GatewayError {
    if secret.is_some_and(|s| s.len() >= 4) {
        error.message = redact(&error.message, secret);
        error.param = error.param.map(|param| redact(&param, secret));
        error.code = error.code.map(|code| match code {
            Cow::Owned(code) => Cow::Owned(redact(&code, secret)),
            borrowed => borrowed, // the gateway's own codes
        });
    }
    error
}

/// The start of a vendor's error body that is not its API's error, for the client's message:
/// at most 512 characters, the key redacted before the cut so that no piece of it is left.
pub fn body_excerpt(body: &[u8], secret: Option<&str>) -> String {
    const EXCERPT_CHARS: usize = 512;
    // Room for 512 characters of four bytes, and for a key beginning just before the cut.
    let window = EXCERPT_CHARS * 4 + secret.map_or(0, |s| s.len() * 3);
    let cut = body.len() > window;
    let text = String::from_utf8_lossy(body.get(..window).unwrap_or(body));
    let mut text = redact(&text, secret);
    if let (true, Some(secret)) = (cut, secret.filter(|s| s.len() >= 4)) {
        // A key cut by the window leaves its beginning at the end: that goes too.
        for form in secret_forms(secret) {
            let partial = (1..form.len()).rev().filter_map(|n| form.get(..n)).find(|p| text.ends_with(p));
            if let Some(partial) = partial {
                text.truncate(text.len() - partial.len());
            }
        }
    }
    text.trim().chars().take(EXCERPT_CHARS).collect::<String>().trim_end().to_owned()
}

/// A tool call's arguments (a JSON string in OpenAI's wire format) as the JSON object other
/// vendors take; empty arguments are the empty object. `at` locates the call for the error.
pub fn tool_arguments(arguments: &str, at: &str) -> Result<serde_json::Value, GatewayError> {
    if arguments.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(arguments).map_err(|e| {
        GatewayError::invalid_request(
            format!("{at}.function.arguments"),
            format!("Tool call arguments must be a JSON object: {e}"),
        )
    })
}

/// A tool result's content as a vendor whose tool results carry only text takes it: the text
/// (its text parts and text documents, joined by blank lines, as the parts of a message are),
/// and the media (images, files, audio) that must travel beside the result, in their order and
/// with their index in the content.
pub fn split_tool_result(content: &[crate::canonical::Part]) -> (String, Vec<(usize, &crate::canonical::Part)>) {
    use crate::canonical::{Media, Part};
    let mut texts = Vec::new();
    let mut media = Vec::new();
    for (i, part) in content.iter().enumerate() {
        match part {
            Part::Text { text, .. } | Part::Document { media: Media::Text(text), .. } if text.is_empty() => {}
            Part::Text { text, .. } | Part::Document { media: Media::Text(text), .. } => texts.push(text.as_str()),
            Part::Image { .. } | Part::Document { .. } | Part::Audio { .. } => media.push((i, part)),
            // Not content a tool returns; no dialect decodes them there.
            Part::ToolCall { .. } | Part::ToolResult { .. } | Part::Thinking { .. } | Part::RedactedThinking { .. } => {
            }
        }
    }
    (texts.join("\n\n"), media)
}

/// Whether `url` is an https URL (its scheme in any case): the only remote source a client may
/// hand a vendor. Anything else (`gs://`, `file:`, plain `http:`) the vendor would fetch with
/// the operator's credentials or from inside its own network.
pub fn is_https_url(url: &str) -> bool {
    url.len() > 8 && url.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// A `data:` URL's media type and base64 payload.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((if media_type.is_empty() { "application/octet-stream" } else { media_type }, data))
}

/// The error for a vendor answer that is not its API's answer.
pub fn invalid_answer(provider: &str, cause: impl std::fmt::Display) -> GatewayError {
    GatewayError::upstream_invalid(provider, cause)
}

/// Why a vendor's JSON could not be read, without the vendor's values: serde quotes the string
/// or name it stumbled on, and that may be the key a vendor echoed (the non-streamed decoders
/// have no key to redact). Syntax errors and missing fields name nothing of the vendor's.
pub fn decode_cause(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let quotes_the_vendor = message.contains('"') || message.starts_with("unknown ");
    match error.classify() {
        serde_json::error::Category::Data if quotes_the_vendor => {
            format!("a value of the wrong type or name at line {} column {}", error.line(), error.column())
        }
        _ => message,
    }
}

/// A translated stream's way out to the client: canonical events go to the client dialect's
/// encoder until the stream has ended (cleanly, or after an error event if it broke); nothing
/// is written after that.
pub struct StreamEnd {
    done: bool,
    error: Option<GatewayError>,
    egress: Box<dyn Egress>,
}

impl StreamEnd {
    pub fn new(egress: Box<dyn Egress>) -> Self {
        Self { done: false, error: None, egress }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The error the client's stream ended with, if it ended in one.
    pub fn error(&self) -> Option<&GatewayError> {
        self.error.as_ref()
    }

    pub fn emit(&mut self, event: Event<'_>, out: &mut Vec<u8>) {
        if !self.done {
            self.egress.event(event, out);
        }
    }

    /// The client dialect's keep-alive, while the stream runs.
    pub fn keepalive(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            self.egress.keepalive(out);
        }
    }

    /// Ends the client's stream cleanly.
    pub fn complete(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            self.egress.complete(out);
            self.done = true;
        }
    }

    /// Ends the client's stream with `error`.
    pub fn fail(&mut self, out: &mut Vec<u8>, error: GatewayError) {
        if !self.done {
            self.egress.fail(&error, out);
            self.done = true;
            self.error = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_split_into_media_type_and_payload() {
        assert_eq!(parse_data_url("data:image/png;base64,AAAA"), Some(("image/png", "AAAA")));
        assert_eq!(parse_data_url("data:;base64,AA"), Some(("application/octet-stream", "AA")));
        assert_eq!(parse_data_url("data:text/plain,hello"), None);
        assert_eq!(parse_data_url("https://x/y.png"), None);
    }

    #[test]
    fn the_output_bound_covers_every_token_the_vendor_request_allows() {
        use crate::config::Config;
        let config = Config::parse(
            r#"{"providers": {"o": {"kind": "openai", "base_url": "http://x"}, "a": {"kind": "anthropic", "base_url": "http://x"},
                              "g": {"kind": "gemini", "base_url": "http://x"}}}"#,
        )
        .unwrap();
        let bodies = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":8,"max_tokens":100}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":3}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high","max_tokens":100}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low","max_completion_tokens":5000}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"medium","n":2,"max_tokens":10}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":1,"max_tokens":9000}"#,
        ];
        let models = [("o", "gpt-4o"), ("a", "claude-sonnet-4-5"), ("g", "gemini-2.5-flash")];
        for body in bodies {
            let request = crate::ingress::openai_chat::decode(body.as_bytes()).unwrap();
            let needs = request.needs();
            for (name, vendor_model) in models {
                let provider = config.providers.iter().find(|p| p.name == name).unwrap();
                let Ok(prepared) = prepare_chat(provider, vendor_model, &request, None, false) else {
                    continue; // Anthropic refuses n > 1
                };
                let sent: serde_json::Value = serde_json::from_slice(&prepared.outbound.body).unwrap();
                let number = |v: &serde_json::Value| v.as_u64();
                let allowed = match provider.kind {
                    ProviderKind::Anthropic => number(&sent["max_tokens"]),
                    ProviderKind::Gemini => {
                        let config = &sent["generationConfig"];
                        number(&config["maxOutputTokens"]).map(|max| {
                            (max + number(&config["thinkingConfig"]["thinkingBudget"]).unwrap_or(0))
                                * number(&config["candidateCount"]).unwrap_or(1)
                        })
                    }
                    _ => number(&sent["max_completion_tokens"])
                        .max(number(&sent["max_tokens"]))
                        .map(|max| max * number(&sent["n"]).unwrap_or(1)),
                };
                let info = config.model_info(vendor_model);
                let bound = output_bound(provider, vendor_model, &request, &info, &needs);
                match allowed {
                    Some(allowed) => assert_eq!(bound, allowed, "{name}: {body}"),
                    // No limit sent: the vendor's own, the model's largest answer, every choice.
                    None => assert_eq!(bound, info.max_output * u64::from(request.choices), "{name}: {body}"),
                }
            }
        }
    }

    #[test]
    fn strict_policy_refuses_and_lenient_reports() {
        let request =
            crate::ingress::openai_chat::decode(&br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#[..])
                .unwrap();
        let mut lenient = ParamPolicy::for_chat("Anthropic", &request, false);
        lenient.drop("logprobs").unwrap();
        lenient.adjust("temperature", 1).unwrap();
        assert_eq!(lenient.report.dropped, ["logprobs"]);
        assert_eq!(lenient.report.adjusted, ["temperature=1"]);
        let mut strict = ParamPolicy::for_chat("Anthropic", &request, true);
        let e = strict.drop("logprobs").unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref(), e.code.as_deref()),
            (400, Some("logprobs"), Some("unsupported_parameter"))
        );
    }

    #[test]
    fn dropped_and_adjusted_parameters_are_named_in_the_clients_dialect() {
        use crate::config::Config;
        use crate::ingress::{anthropic_messages, openai_responses};
        let config = Config::parse(
            r#"{"providers": {"o": {"kind": "openai", "base_url": "http://x"}, "a": {"kind": "anthropic", "base_url": "http://x"},
                              "g": {"kind": "gemini", "base_url": "http://x"}}}"#,
        )
        .unwrap();
        let provider = |name: &str| config.providers.iter().find(|p| p.name == name).unwrap();
        let anthropic = anthropic_messages::decode(
            br#"{"model":"m","max_tokens":4000,"top_k":5,"stop_sequences":["END"],"metadata":{"user_id":"u1"},
                "thinking":{"type":"enabled","budget_tokens":3000},
                "tools":[{"name":"t","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],
                "tool_choice":{"type":"auto","disable_parallel_tool_use":true},
                "system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral","ttl":"1h"}}],
                "messages":[{"role":"user","content":"hi"}]}"#
                .to_vec(),
        )
        .unwrap();
        let report =
            |p: &str, request: &Request| prepare_chat(provider(p), "model-x", request, None, false).unwrap().report;
        let openai = report("o", &anthropic);
        assert_eq!(openai.dropped, ["top_k", "cache_control"]);
        assert_eq!(openai.adjusted, ["thinking.budget_tokens=medium"], "the budget went as an effort");
        let gemini = report("g", &anthropic);
        assert_eq!(gemini.dropped, ["tool_choice.disable_parallel_tool_use", "metadata.user_id", "cache_control"]);
        // Strict mode refuses in the same terms (a cache marker is reported, never refused).
        let e = prepare_chat(provider("o"), "model-x", &anthropic, None, true).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("thinking.budget_tokens"), "{e}");
        assert!(e.message.contains("'thinking.budget_tokens'"), "{e}");
        let e = prepare_chat(provider("g"), "model-x", &anthropic, None, true).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tool_choice.disable_parallel_tool_use"), "{e}");

        // A Responses client's limit and effort, as it named them.
        let (responses, _) = openai_responses::decode(
            br#"{"model":"m","input":"hi","max_output_tokens":1000,"reasoning":{"effort":"high"}}"#.to_vec(),
            &[],
        )
        .unwrap();
        assert_eq!(report("a", &responses).adjusted, ["max_output_tokens=17384"]);
        // Chat clients keep Chat's names.
        let chat = crate::ingress::openai_chat::decode(
            &br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"parallel_tool_calls":false,"user":"u","stop":["x"]}"#[..],
        )
        .unwrap();
        assert_eq!(report("g", &chat).dropped, ["parallel_tool_calls", "user"]);
    }

    #[test]
    fn the_key_is_redacted_as_sent_and_percent_encoded() {
        let key = Some("k3y/with+signs=");
        assert_eq!(redact("a k3y/with+signs= b", key), "a [redacted] b");
        assert_eq!(redact("?key=k3y%2Fwith%2Bsigns%3D&x", key), "?key=[redacted]&x");
        assert_eq!(redact("?key=k3y%2fwith%2bsigns%3d&x", key), "?key=[redacted]&x");
        assert_eq!(redact("nothing here", key), "nothing here");
        assert_eq!(redact("abc abc", Some("abc")), "abc abc", "too short to be a key");
        let e = redacted(
            GatewayError {
                status: 400,
                kind: "invalid_request_error",
                code: Some(Cow::Owned("k3y/with+signs=".into())),
                param: Some("k3y%2Fwith%2Bsigns%3D".into()),
                message: "m".into(),
            },
            key,
        );
        assert_eq!((e.code.as_deref(), e.param.as_deref()), (Some("[redacted]"), Some("[redacted]")));
    }

    #[test]
    fn a_refused_key_fails_over_and_counts_against_the_target() {
        for status in [401, 403, 408, 429, 500, 529] {
            assert!(is_retryable_status(status), "{status}");
        }
        for status in [400, 404, 413, 422] {
            assert!(!is_retryable_status(status), "{status}");
        }
        let bad_request = GatewayError::invalid_request("x", "no");
        assert!(!is_vendor_fault(400, &bad_request));
        assert!(is_vendor_fault(400, &GatewayError::upstream_auth_failed("p")));
        assert!(is_vendor_fault(503, &bad_request));
    }

    #[test]
    fn only_https_is_a_url_a_vendor_may_fetch() {
        assert!(is_https_url("https://x/y.png") && is_https_url("HTTPS://x"));
        for url in ["http://x", "gs://b/o", "file:///etc/passwd", "https://", "https:x", "", "httpsx://a"] {
            assert!(!is_https_url(url), "{url}");
        }
    }
}
