//! OpenAI's Chat Completions (`/v1/chat/completions`): its request into the canonical one, and
//! canonical answers and stream events back into completions and chunks. The wire types are in
//! `crate::chat`.

use crate::canonical::{
    self, Answer, Block, BlockKind, Delta, Dialect, Egress, Event, Finish, Media, OutputFormat, Part, Reasoning,
    Request, Role as Speaker, Source, ToolDef, Turn,
};
use crate::chat::{
    AssistantMessage, ChatCompletion, ChatRequest, Choice, ChunkWriter, Content, ContentPart, Delta as ChunkDelta,
    FinishReason, FunctionCall, FunctionCallDelta, FunctionType, ResponseFormat, Role, Stop, ToolCall, ToolCallDelta,
    ToolChoice, ToolChoiceMode, Usage, COMPLETION_OBJECT,
};
use crate::error::GatewayError;

/// Parses, validates and maps a Chat Completions request.
pub fn decode(body: impl Into<Vec<u8>>) -> Result<Request, GatewayError> {
    Ok(from_chat(ChatRequest::parse(body)?))
}

/// The canonical request of a parsed Chat Completions request; its bytes stay as the source,
/// for a pass-through to an OpenAI-format vendor. The client's own fallback list (`models`) is
/// the gateway's: the caller takes it before this, and a pass-through leaves it out.
pub fn from_chat(request: ChatRequest) -> Request {
    let ChatRequest {
        model,
        messages,
        stream,
        stream_options,
        temperature,
        top_p,
        n,
        max_tokens,
        max_completion_tokens,
        stop,
        seed,
        user,
        tools,
        tool_choice,
        parallel_tool_calls,
        response_format,
        reasoning_effort,
        models,
        extra,
        raw,
    } = request;
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::with_capacity(messages.len());
    for m in messages {
        match m.role {
            Role::System | Role::Developer => system.extend(m.content.map(parts).unwrap_or_default()),
            Role::User => push(&mut turns, Speaker::User, m.content.map(parts).unwrap_or_default()),
            Role::Assistant => {
                let mut content = m.content.map(parts).unwrap_or_default();
                for call in m.tool_calls.into_iter().flatten() {
                    let (id, signature) = crate::canonical::signature::unfold(&call.id);
                    content.push(Part::ToolCall {
                        id: id.to_owned(),
                        name: call.function.name,
                        arguments: call.function.arguments,
                        signature,
                        cache: None,
                    });
                }
                push(&mut turns, Speaker::Assistant, content);
            }
            Role::Tool | Role::Function => {
                let (id, name) = match (m.role, m.tool_call_id) {
                    (Role::Function, _) => (m.name.clone().unwrap_or_default(), m.name),
                    (_, Some(id)) => (crate::canonical::signature::call_id(&id).to_owned(), None),
                    (_, None) => (m.name.clone().unwrap_or_default(), m.name),
                };
                let content = m.content.map(parts).unwrap_or_default();
                let result = Part::ToolResult { id, name, content, is_error: false, cache: None };
                push(&mut turns, Speaker::User, vec![result]);
            }
        }
    }
    Request {
        model,
        system,
        turns,
        tools: tools
            .into_iter()
            .flatten()
            .map(|t| ToolDef {
                name: t.function.name,
                description: t.function.description,
                parameters: t.function.parameters,
                strict: t.function.strict,
                cache: None,
            })
            .collect(),
        tool_choice: tool_choice.map(|choice| match choice {
            ToolChoice::Mode(ToolChoiceMode::Auto) => canonical::ToolChoice::Auto,
            ToolChoice::Mode(ToolChoiceMode::None) => canonical::ToolChoice::None,
            ToolChoice::Mode(ToolChoiceMode::Required) => canonical::ToolChoice::Required,
            ToolChoice::Named(named) => canonical::ToolChoice::Named(named.function.name),
        }),
        parallel_tool_calls,
        output: match response_format {
            None | Some(ResponseFormat::Text) => OutputFormat::Text,
            Some(ResponseFormat::JsonObject) => OutputFormat::JsonObject,
            Some(ResponseFormat::JsonSchema { json_schema }) => OutputFormat::JsonSchema {
                name: json_schema.name,
                description: json_schema.description,
                schema: json_schema.schema,
                strict: json_schema.strict,
            },
        },
        // A vendor that reads only `max_tokens` may take the larger of the two: the pass-through
        // sends both as they came, and a translation sends this one.
        max_output_tokens: max_completion_tokens.or(max_tokens),
        temperature,
        top_p,
        top_k: None,
        stop: match stop {
            None => vec![],
            Some(Stop::One(one)) => vec![one],
            Some(Stop::Many(many)) => many,
        },
        seed,
        choices: n.unwrap_or(1).max(1),
        user,
        reasoning: reasoning_effort.map(Reasoning::Effort),
        stream: stream == Some(true),
        include_usage: stream_options.and_then(|o| o.include_usage) == Some(true),
        extra,
        server_tools: vec![],
        source: Source {
            dialect: Dialect::OpenaiChat,
            bytes: raw.bytes,
            model_span: raw.model_span,
            gateway_members: if models.is_some() { vec!["models"] } else { vec![] },
            headers: vec![],
            max_output_tokens: max_tokens.max(max_completion_tokens),
        },
    }
}

/// Appends a turn, merged into the previous one when it has the same role (several tool
/// results in a row are one user turn).
fn push(turns: &mut Vec<Turn>, role: Speaker, parts: Vec<Part>) {
    if parts.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.parts.extend(parts),
        _ => turns.push(Turn { role, parts }),
    }
}

fn parts(content: Content) -> Vec<Part> {
    match content {
        Content::Text(text) if text.is_empty() => vec![],
        Content::Text(text) => vec![Part::text(text)],
        Content::Parts(list) => list
            .into_iter()
            .filter_map(|part| match part {
                ContentPart::Text { text, .. } if text.is_empty() => None,
                ContentPart::Text { text, cache_control } => Some(Part::Text { text, cache: cache_control }),
                ContentPart::ImageUrl { image_url } => {
                    Some(Part::Image { media: media_of_url(image_url.url), detail: image_url.detail, cache: None })
                }
                ContentPart::InputAudio { input_audio } => {
                    let field = |name: &str| input_audio.get(name).and_then(|v| v.as_str()).map(str::to_owned);
                    Some(Part::Audio {
                        data: field("data").unwrap_or_default(),
                        format: field("format").unwrap_or_else(|| "wav".to_owned()),
                    })
                }
                ContentPart::File { file } => {
                    let field = |name: &str| file.get(name).and_then(|v| v.as_str()).map(str::to_owned);
                    let media = match (field("file_data"), field("file_id")) {
                        (Some(data), _) => media_of_url(data),
                        (None, Some(id)) => Media::FileId(id),
                        (None, None) => Media::Url(String::new()),
                    };
                    Some(Part::Document { media, title: field("filename"), cache: None })
                }
                ContentPart::Refusal { refusal } => Some(Part::text(refusal)),
            })
            .collect(),
    }
}

/// A data URL as its media type and base64 payload; anything else stays a URL, for each
/// adapter to judge (only https is ever fetched by a vendor).
pub fn media_of_url(url: String) -> Media {
    match crate::providers::parse_data_url(&url) {
        Some((media_type, data)) => Media::Base64 { media_type: media_type.to_owned(), data: data.to_owned() },
        None => Media::Url(url),
    }
}

pub fn finish_reason(finish: &Finish) -> FinishReason {
    match finish {
        Finish::Stop | Finish::StopSequence(_) => FinishReason::Stop,
        Finish::Length => FinishReason::Length,
        Finish::ToolCalls => FinishReason::ToolCalls,
        Finish::ContentFilter => FinishReason::ContentFilter,
    }
}

/// A canonical answer as a chat completion.
pub fn encode_answer(answer: &Answer, created: u64) -> ChatCompletion {
    let choices = answer
        .outputs
        .iter()
        .map(|output| {
            let (mut text, mut reasoning, mut refusal) = (String::new(), String::new(), String::new());
            let mut tool_calls = Vec::new();
            for block in &output.blocks {
                match block {
                    Block::Text(t) => text.push_str(t),
                    Block::Thinking { text: t, .. } => reasoning.push_str(t),
                    Block::RedactedThinking(_) => {}
                    Block::Refusal(r) => refusal.push_str(r),
                    Block::ToolCall { id, name, arguments, signature } => tool_calls.push(ToolCall {
                        id: crate::canonical::signature::fold(id, signature.as_deref()),
                        kind: FunctionType::Function,
                        function: FunctionCall { name: name.clone(), arguments: arguments.clone() },
                    }),
                }
            }
            Choice {
                index: output.index,
                message: AssistantMessage {
                    role: Role::Assistant,
                    content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                    refusal: (!refusal.is_empty()).then_some(refusal),
                    tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                    reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                },
                finish_reason: finish_reason(&output.finish),
                logprobs: None,
            }
        })
        .collect();
    ChatCompletion {
        id: answer.id.clone(),
        object: COMPLETION_OBJECT.to_owned(),
        created,
        model: answer.model.clone(),
        choices,
        usage: answer.usage,
        system_fingerprint: None,
    }
}

/// Canonical stream events as `chat.completion.chunk`s: a role chunk as each choice begins,
/// content, reasoning (`reasoning_content`) and tool-call deltas, a finish chunk per choice,
/// the usage chunk when the client asked for it, then `[DONE]`.
pub struct Stream {
    created: u64,
    include_usage: bool,
    writer: Option<ChunkWriter>,
    /// Per choice: whether its role chunk went out, the tool-call index of each of its blocks
    /// (`u32::MAX` for a block that is not a tool call), its tool calls so far.
    choices: Vec<ChoiceState>,
    usage: Option<Usage>,
}

#[derive(Default, Clone)]
struct ChoiceState {
    started: bool,
    tool_of_block: Vec<u32>,
    tool_calls: u32,
    /// A tool call begun but not yet written (its block, index, id and name): it goes out
    /// with its first piece of arguments, so that a call that comes whole is one chunk.
    pending: Option<(u32, u32, String, String)>,
}

impl ChoiceState {
    /// Writes the pending tool call's start, with `arguments` (its first piece) if given.
    fn flush(&mut self, writer: &ChunkWriter, choice: u32, arguments: &str, out: &mut Vec<u8>) {
        if let Some((_, index, id, name)) = self.pending.take() {
            let call = ToolCallDelta {
                index,
                id: Some(id),
                kind: Some(FunctionType::Function),
                function: FunctionCallDelta { name: Some(name), arguments: Some(arguments.to_owned()) },
            };
            writer.delta(out, choice, &ChunkDelta { tool_calls: Some(vec![call]), ..ChunkDelta::default() }, None);
        }
    }
}

/// Choices a stream may have (OpenAI's `n` is at most 128).
const MAX_CHOICES: u32 = 128;

impl Stream {
    pub fn new(created: u64, include_usage: bool) -> Self {
        Self { created, include_usage, writer: None, choices: Vec::new(), usage: None }
    }

    /// The writer, and the choice's state with its role chunk sent; `None` for a choice past
    /// the bound (which the vendor decoders already refuse).
    fn choice(&mut self, choice: u32, out: &mut Vec<u8>) -> Option<(&ChunkWriter, &mut ChoiceState)> {
        if choice >= MAX_CHOICES {
            return None;
        }
        let writer = self.writer.get_or_insert_with(|| ChunkWriter::new("chatcmpl-gateway", self.created, ""));
        let i = choice as usize;
        if self.choices.len() <= i {
            self.choices.resize(i + 1, ChoiceState::default());
        }
        let state = &mut self.choices[i];
        if !state.started {
            state.started = true;
            let role =
                ChunkDelta { role: Some(Role::Assistant), content: Some(String::new()), ..ChunkDelta::default() };
            writer.delta(out, choice, &role, None);
        }
        Some((writer, state))
    }
}

impl Egress for Stream {
    fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>) {
        match event {
            Event::Start { id, model } => {
                if self.writer.is_none() {
                    self.writer = Some(ChunkWriter::new(id, self.created, model));
                    self.choice(0, out);
                }
            }
            Event::Usage(usage) => self.usage = Some(usage),
            Event::BlockStart { choice, block, kind } => {
                let created = self.created;
                let Some((writer, state)) = self.choice(choice, out) else { return };
                let i = block as usize;
                if state.tool_of_block.len() <= i {
                    state.tool_of_block.resize(i + 1, u32::MAX);
                }
                state.flush(writer, choice, "", out);
                if let BlockKind::ToolCall { id, name, signature } = kind {
                    let index = state.tool_calls;
                    state.tool_calls = state.tool_calls.saturating_add(1);
                    state.tool_of_block[i] = index;
                    // A vendor that sent no id: one the answer's later turns can name.
                    let id = if id.is_empty() { format!("call_{created}_{choice}_{index}") } else { id.to_owned() };
                    let id = crate::canonical::signature::fold(&id, signature);
                    state.pending = Some((block, index, id, name.to_owned()));
                }
            }
            Event::Delta { choice, block, delta } => {
                let Some((writer, state)) = self.choice(choice, out) else { return };
                if let (Delta::ToolArguments(json), Some((pending, ..))) = (&delta, &state.pending) {
                    if *pending == block {
                        return state.flush(writer, choice, json, out);
                    }
                }
                state.flush(writer, choice, "", out);
                match delta {
                    Delta::Text(text) => writer.content(out, choice, text),
                    Delta::Thinking(text) => {
                        let delta = ChunkDelta { reasoning_content: Some(text.to_owned()), ..ChunkDelta::default() };
                        writer.delta(out, choice, &delta, None);
                    }
                    Delta::Signature(_) => {}
                    Delta::ToolArguments(json) => {
                        let Some(&index) = state.tool_of_block.get(block as usize).filter(|&&i| i != u32::MAX) else {
                            return;
                        };
                        let call = ToolCallDelta {
                            index,
                            function: FunctionCallDelta {
                                arguments: Some(json.to_owned()),
                                ..FunctionCallDelta::default()
                            },
                            ..ToolCallDelta::default()
                        };
                        writer.delta(
                            out,
                            choice,
                            &ChunkDelta { tool_calls: Some(vec![call]), ..ChunkDelta::default() },
                            None,
                        );
                    }
                }
            }
            Event::BlockStop { choice, .. } => {
                if let Some((writer, state)) = self.choice(choice, out) {
                    state.flush(writer, choice, "", out);
                }
            }
            Event::Finish { choice, finish } => {
                let Some((writer, state)) = self.choice(choice, out) else { return };
                state.flush(writer, choice, "", out);
                writer.delta(out, choice, &ChunkDelta::default(), Some(finish_reason(&finish)));
            }
        }
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        if let (true, Some(writer)) = (self.include_usage, &self.writer) {
            writer.usage(out, &self.usage.unwrap_or_default());
        }
        out.extend_from_slice(crate::sse::DONE);
    }

    fn fail(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
        error_event(error, out);
        out.extend_from_slice(crate::sse::DONE);
    }
}

/// The OpenAI error event a stream ends with when the vendor's stream breaks.
pub fn error_event(error: &GatewayError, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&error.to_json());
    out.extend_from_slice(b"\n\n");
}
