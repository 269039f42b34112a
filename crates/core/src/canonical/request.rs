//! The canonical request: system parts, turns of typed parts, tools, and the parameters every
//! vendor shares, each in one form whatever the dialect it came in.

use crate::error::GatewayError;
use serde_json::{Map, Value};

/// A call as a client asked for it, in no dialect's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// The public model name the client asked for; adapters write the vendor's model instead.
    pub model: String,
    /// The system prompt (OpenAI's system and developer messages, Anthropic's `system`,
    /// Responses' `instructions`), as parts with their cache markers.
    pub system: Vec<Part>,
    pub turns: Vec<Turn>,
    pub tools: Vec<ToolDef>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)`: at most one tool call an answer.
    pub parallel_tool_calls: Option<bool>,
    pub output: OutputFormat,
    /// The most output tokens an answer may have (each choice's).
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    /// How many answers (OpenAI's `n`, Gemini's candidates): at least one.
    pub choices: u32,
    /// The end user, for the vendor's abuse monitoring.
    pub user: Option<String>,
    pub reasoning: Option<Reasoning>,
    pub stream: bool,
    /// The client wants the stream's usage (OpenAI's `stream_options.include_usage`; the other
    /// dialects always report it).
    pub include_usage: bool,
    /// Parameters of the client's dialect the canonical model does not hold, as sent: a
    /// same-dialect pass-through sends them on, an adapter to another wire format maps those it
    /// knows and drops (or, strictly, refuses) the rest.
    pub extra: Map<String, Value>,
    /// Vendor-hosted tools the client asked for (Anthropic's `web_search_20250305`, Responses'
    /// `web_search`, ...), by type: only a vendor that hosts them can serve the request.
    pub server_tools: Vec<String>,
    /// The client's bytes, for a target that speaks the client's dialect.
    pub source: Source,
}

/// Anthropic beta features (by prefix) that bill beyond the catalog's token prices: a
/// long-context premium, MCP servers, code execution containers. Withheld unless the model's
/// `allow_params` lists `anthropic-beta`.
pub const BILLED_BETAS: &[&str] = &["context-1m", "mcp-client", "code-execution"];

/// The client's own request, kept for a pass-through to a vendor of the same dialect.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    pub dialect: super::Dialect,
    /// The request as it came.
    pub bytes: Vec<u8>,
    /// The byte range of its top-level `model` value.
    pub model_span: (usize, usize),
    /// Top-level members that are the gateway's own (OpenAI Chat's `models` fallback list),
    /// taken out of a pass-through.
    pub gateway_members: Vec<&'static str>,
    /// Headers of the dialect that go to a vendor of the same dialect (Anthropic's
    /// `anthropic-beta`), lower-case names.
    pub headers: Vec<(String, String)>,
    /// The most output tokens the client's own bytes let a vendor produce, when that differs
    /// from `Request::max_output_tokens` (OpenAI Chat sends both of its limits through, and a
    /// vendor that reads only `max_tokens` may take the larger).
    pub max_output_tokens: Option<u32>,
}

/// Whether a pass-through asks the vendor for the stream's usage beyond what the client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskUsage {
    /// As the client sent it.
    Leave,
    /// Add `stream_options: {include_usage: true}` (the client sent no `stream_options`).
    Add,
    /// Set `include_usage: true` in the client's `stream_options`.
    Set,
}

impl Source {
    /// The bytes with the `model` value replaced by `model`, without the gateway's own members,
    /// and with the stream's usage asked for as `usage` says. Renaming the model and appending
    /// `stream_options` leave every other byte untouched; taking a member out or merging into
    /// `stream_options` rebuilds the body (a slow path, for the rare request that needs it).
    pub fn rewritten(&self, model: &str, usage: AskUsage) -> Vec<u8> {
        if self.gateway_members.is_empty() && usage != AskUsage::Set {
            let mut out = self.with_model(model);
            if usage == AskUsage::Add {
                if let Some(end) = out.iter().rposition(|&b| b == b'}') {
                    out.splice(end..end, br#","stream_options":{"include_usage":true}"#.iter().copied());
                }
            }
            return out;
        }
        let Ok(Value::Object(mut members)) = serde_json::from_slice::<Value>(&self.bytes) else {
            return self.with_model(model);
        };
        for name in &self.gateway_members {
            members.remove(*name);
        }
        members.insert("model".to_owned(), Value::String(model.to_owned()));
        if usage != AskUsage::Leave {
            let options = members.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Value::Object(options) = options {
                options.insert("include_usage".to_owned(), Value::Bool(true));
            }
        }
        serde_json::to_vec(&members).unwrap_or_default()
    }

    /// The source with top-level members replaced or added (`Some`) or taken out (`None`), the
    /// other members as sent, byte for byte and in their order; `model_span` follows. A slow
    /// path (the body is scanned once), for the rare request a vendor must get otherwise.
    pub fn edited(&self, edits: &[(&str, Option<Value>)]) -> Result<Source, GatewayError> {
        let mut bytes = Vec::with_capacity(self.bytes.len() + 64);
        let mut model_span = None;
        let mut member = |bytes: &mut Vec<u8>, key: &str, value: &[u8]| {
            bytes.push(if bytes.is_empty() { b'{' } else { b',' });
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *bytes, key);
            bytes.push(b':');
            if key == "model" {
                model_span = Some((bytes.len(), bytes.len() + value.len()));
            }
            bytes.extend_from_slice(value);
        };
        let encode = |value: &Value| serde_json::to_vec(value).map_err(GatewayError::invalid_json);
        let members = crate::error::top_level(&self.bytes)?;
        for (key, value) in &members {
            match edits.iter().find(|(name, _)| name == key) {
                None => member(&mut bytes, key, value.get().as_bytes()),
                Some((_, Some(edit))) => member(&mut bytes, key, &encode(edit)?),
                Some((_, None)) => {}
            }
        }
        for (key, value) in edits {
            if let (Some(value), false) = (value, members.iter().any(|(name, _)| name == key)) {
                member(&mut bytes, key, &encode(value)?);
            }
        }
        if bytes.is_empty() {
            bytes.push(b'{');
        }
        bytes.push(b'}');
        let model_span = model_span.ok_or_else(|| GatewayError::invalid_request("model", "'model' is required."))?;
        Ok(Source { bytes, model_span, ..self.clone() })
    }

    /// The bytes with the `model` value replaced by `model`, all else untouched.
    pub fn with_model(&self, model: &str) -> Vec<u8> {
        let (start, end) = self.model_span;
        let mut out = Vec::with_capacity(self.bytes.len() + model.len());
        out.extend_from_slice(&self.bytes[..start]);
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, model);
        out.extend_from_slice(&self.bytes[end..]);
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One turn of the conversation. Tool results are parts of a user turn (as Anthropic has
/// them); a vendor that wants them apart (OpenAI's `tool` messages) splits them out.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub parts: Vec<Part>,
}

/// A typed piece of a turn. `cache` is Anthropic's `cache_control` marker where the client set
/// one, as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text {
        text: String,
        cache: Option<Value>,
    },
    Image {
        media: Media,
        /// OpenAI's `detail` (low, high, auto).
        detail: Option<String>,
        cache: Option<Value>,
    },
    /// A document (a PDF, a text file).
    Document {
        media: Media,
        title: Option<String>,
        cache: Option<Value>,
    },
    Audio {
        /// Base64.
        data: String,
        /// `wav`, `mp3`, ...
        format: String,
    },
    /// A tool call of an earlier answer.
    ToolCall {
        id: String,
        name: String,
        /// The arguments as JSON text (an object).
        arguments: String,
        /// The signature its vendor gave the call (Gemini's `thoughtSignature`), to go back to it.
        signature: Option<String>,
        cache: Option<Value>,
    },
    /// What a tool call returned.
    ToolResult {
        id: String,
        /// The tool's name, where the dialect carries it (Gemini needs it).
        name: Option<String>,
        content: Vec<Part>,
        is_error: bool,
        cache: Option<Value>,
    },
    /// A reasoning model's thinking in an earlier answer, with the signature its vendor needs
    /// to accept it back.
    Thinking {
        text: String,
        signature: Option<String>,
    },
    /// Thinking the vendor returned encrypted.
    RedactedThinking {
        data: String,
    },
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text { text: text.into(), cache: None }
    }
}

/// Where an image's or a document's bytes are.
#[derive(Debug, Clone, PartialEq)]
pub enum Media {
    Base64 {
        media_type: String,
        data: String,
    },
    Url(String),
    /// A file the client uploaded to the vendor before.
    FileId(String),
    /// Plain text (Anthropic's text documents).
    Text(String),
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    /// A JSON schema of its arguments (an object schema when the client sent none).
    pub parameters: Option<Value>,
    pub strict: Option<bool>,
    pub cache: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// Some tool must be called.
    Required,
    /// This tool must be called.
    Named(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum OutputFormat {
    #[default]
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Option<Value>,
        strict: Option<bool>,
    },
}

/// How much the model should think before it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reasoning {
    /// OpenAI's effort levels: none, minimal, low, medium, high (as sent; adapters refuse what
    /// they do not know).
    Effort(String),
    /// A budget of thinking tokens (Anthropic's `thinking.budget_tokens`).
    Budget(u32),
}

impl Request {
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// What the request needs of the model that serves it: images, tools, JSON output, and its
    /// size in tokens (estimated: four characters a token; an image a flat 1,000, a document or
    /// audio by the length of its data, at least 1,000). A continued conversation's history is
    /// in the turns, and counts.
    pub fn needs(&self) -> crate::catalog::Needs {
        let mut needs = crate::catalog::Needs {
            tools: !self.tools.is_empty(),
            json: !matches!(self.output, OutputFormat::Text),
            max_output: u64::from(self.max_output_tokens.unwrap_or(0)),
            ..Default::default()
        };
        let mut chars = 0usize;
        for part in &self.system {
            chars += part_chars(part, &mut needs);
        }
        for turn in &self.turns {
            chars += 16;
            for part in &turn.parts {
                chars += part_chars(part, &mut needs);
            }
        }
        needs.prompt_tokens = chars.div_ceil(4) as u64;
        needs
    }

    /// The request as one target may receive it: without the billed parameters its model does
    /// not allow (`crate::chat::BILLED_PARAMS`), and without `store` unless its provider
    /// forwards it (a client must not write prompts into the operator's vendor logs by
    /// default). `None` when nothing is withheld (the common case: no copy); else the request
    /// without them, its source rebuilt, and the names withheld, which are dropped and
    /// reported, or refused in strict mode.
    pub fn withheld(
        &self,
        allow: &[String],
        forward_store: bool,
        strict: bool,
    ) -> Result<Option<(Request, Vec<String>)>, GatewayError> {
        let allowed = |name: &str| allow.iter().any(|a| a == name);
        // Vendor-hosted tools bill per use (a web search, a container's hours), beyond the
        // tokens the catalog prices: only where the operator allows them. A tool cannot be
        // dropped from a request that passes through, so it is refused, strict or not.
        if let Some(tool) = self.server_tools.first().filter(|_| !allowed("server_tools")) {
            return Err(GatewayError::new(
                400,
                "invalid_request_error",
                "unsupported_tool",
                format!(
                    "The tool or item type '{tool}' runs on its vendor's servers and is billed per use; it is not \
                     enabled for the model `{}` on this gateway (allow_params: [\"server_tools\"]).",
                    self.model
                ),
            )
            .with_param("tools"));
        }
        // Anthropic's beta features that bill beyond the catalog's prices.
        let mut betas_withheld = Vec::new();
        let mut headers = Vec::with_capacity(self.source.headers.len());
        for (name, value) in &self.source.headers {
            if name != "anthropic-beta" || allowed("anthropic-beta") {
                headers.push((name.clone(), value.clone()));
                continue;
            }
            let (billed, kept): (Vec<&str>, Vec<&str>) = value
                .split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .partition(|b| BILLED_BETAS.iter().any(|prefix| b.starts_with(prefix)));
            betas_withheld.extend(billed.iter().map(|b| format!("anthropic-beta: {b}")));
            if !kept.is_empty() {
                headers.push((name.clone(), kept.join(",")));
            }
        }
        if let (true, Some(first)) = (strict, betas_withheld.first()) {
            return Err(GatewayError::new(
                400,
                "invalid_request_error",
                "unsupported_parameter",
                format!("'{first}' is not enabled for the model `{}` on this gateway (strict mode).", self.model),
            ));
        }
        let withheld: Vec<String> = self
            .extra
            .keys()
            .filter(|name| {
                (name.as_str() == "store" && !forward_store)
                    || (crate::chat::BILLED_PARAMS.contains(&name.as_str()) && !allow.iter().any(|a| a == *name))
            })
            .cloned()
            .collect();
        let Some(first) = withheld.first() else {
            if betas_withheld.is_empty() {
                return Ok(None);
            }
            let mut kept = self.clone();
            kept.source.headers = headers;
            return Ok(Some((kept, betas_withheld)));
        };
        if strict {
            return Err(GatewayError::new(
                400,
                "invalid_request_error",
                "unsupported_parameter",
                format!(
                    "The parameter '{first}' is not enabled for the model `{}` on this gateway (strict mode); remove it.",
                    self.model
                ),
            )
            .with_param(first.clone()));
        }
        let mut kept = self.clone();
        for name in &withheld {
            kept.extra.remove(name);
        }
        let edits: Vec<(&str, Option<Value>)> = withheld.iter().map(|name| (name.as_str(), None)).collect();
        kept.source = self.source.edited(&edits)?;
        kept.source.headers = headers;
        let mut withheld = withheld;
        withheld.extend(betas_withheld);
        Ok(Some((kept, withheld)))
    }

    /// Whether the client marked any part or tool for the prompt cache (`cache_control`).
    pub fn has_cache_markers(&self) -> bool {
        fn marked(part: &Part) -> bool {
            match part {
                Part::Text { cache, .. }
                | Part::Image { cache, .. }
                | Part::Document { cache, .. }
                | Part::ToolCall { cache, .. } => cache.is_some(),
                Part::ToolResult { cache, content, .. } => cache.is_some() || content.iter().any(marked),
                Part::Audio { .. } | Part::Thinking { .. } | Part::RedactedThinking { .. } => false,
            }
        }
        self.system.iter().any(marked)
            || self.turns.iter().any(|turn| turn.parts.iter().any(marked))
            || self.tools.iter().any(|tool| tool.cache.is_some())
    }

    /// The reasoning effort asked for by name, if it was asked for so.
    pub fn effort(&self) -> Option<&str> {
        match &self.reasoning {
            Some(Reasoning::Effort(effort)) => Some(effort),
            _ => None,
        }
    }
}

fn part_chars(part: &Part, needs: &mut crate::catalog::Needs) -> usize {
    match part {
        Part::Text { text, .. } => text.len(),
        Part::Image { .. } => {
            needs.vision = true;
            4_000
        }
        // A document costs by its size (a PDF's pages): its base64 or text length, at least a
        // flat 4,000 (a file by URL or id, whose size the gateway does not see).
        Part::Document { media: Media::Base64 { data, .. } | Media::Text(data), .. } => data.len().max(4_000),
        Part::Audio { data, .. } => data.len().max(4_000),
        Part::Document { .. } => 4_000,
        Part::ToolCall { name, arguments, .. } => name.len() + arguments.len(),
        Part::ToolResult { content, .. } => content.iter().map(|p| part_chars(p, needs)).sum::<usize>() + 16,
        Part::Thinking { text, .. } => text.len(),
        Part::RedactedThinking { data } => data.len(),
    }
}

#[cfg(test)]
mod tests {
    use crate::ingress::openai_chat;
    use serde_json::Value;

    #[test]
    fn the_source_renames_the_model_and_keeps_every_other_byte() {
        let body = "{ \"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"x\":1}],\n  \"model\" : \"fast\", \"logit_bias\":{\"50256\":-100},\"temperature\":0.50}";
        let r = openai_chat::decode(body).unwrap();
        assert_eq!(r.extra.keys().collect::<Vec<_>>(), ["logit_bias"]);
        let renamed = String::from_utf8(r.source.with_model("gpt-4o \"mini\"")).unwrap();
        assert_eq!(renamed, body.replace("\"fast\"", "\"gpt-4o \\\"mini\\\"\""));
    }

    #[test]
    fn billed_parameters_and_store_are_withheld_unless_allowed() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"service_tier":"priority","store":true,"audio":{"voice":"alloy"},"logit_bias":{"1":2}}"#;
        let request = openai_chat::decode(&body[..]).unwrap();
        let (kept, mut names) = request.withheld(&[], false, false).unwrap().unwrap();
        names.sort();
        assert_eq!(names, ["audio", "service_tier", "store"]);
        let sent: Value = serde_json::from_slice(&kept.source.bytes).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"model":"m","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":2}})
        );
        assert_eq!(
            kept.source.with_model("vendor")[..],
            br#"{"model":"vendor","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":2}}"#[..],
            "the other members as sent, in their order"
        );
        assert_eq!(kept.extra.keys().collect::<Vec<_>>(), ["logit_bias"]);
        let edited = request
            .source
            .edited(&[("store", None), ("seed", Some(serde_json::json!(7))), ("model", Some("x".into()))])
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&edited.bytes).unwrap(),
            r#"{"model":"x","messages":[{"role":"user","content":"hi"}],"service_tier":"priority","audio":{"voice":"alloy"},"logit_bias":{"1":2},"seed":7}"#
        );
        assert_eq!(&edited.bytes[edited.model_span.0..edited.model_span.1], br#""x""#);
        // Allowed by the model, forwarded by the provider: nothing is withheld, nothing copied.
        let allow = ["service_tier".to_owned(), "audio".to_owned()];
        assert!(request.withheld(&allow, true, false).unwrap().is_none());
        // Strict mode refuses instead.
        let e = request.withheld(&allow, false, true).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("store")));
    }

    #[test]
    fn server_tools_and_billed_betas_go_only_where_allowed() {
        let body = br#"{"model":"m","max_tokens":10,"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":50}],"messages":[{"role":"user","content":"x"}]}"#;
        let mut request = crate::ingress::anthropic_messages::decode(body.to_vec()).unwrap();
        let e = request.withheld(&[], false, false).unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (400, Some("unsupported_tool")));
        assert!(e.message.contains("web_search_20250305"), "{e}");
        assert!(request.withheld(&["server_tools".to_owned()], false, false).unwrap().is_none());
        request.server_tools.clear();
        request.source.headers =
            vec![("anthropic-beta".to_owned(), "interleaved-thinking-2025-05-14, context-1m-2025-08-07".to_owned())];
        let (kept, names) = request.withheld(&[], false, false).unwrap().unwrap();
        assert_eq!(names, ["anthropic-beta: context-1m-2025-08-07"]);
        assert_eq!(kept.source.headers, [("anthropic-beta".to_owned(), "interleaved-thinking-2025-05-14".to_owned())]);
        assert!(request.withheld(&[], false, true).is_err(), "strict mode refuses");
        assert!(request.withheld(&["anthropic-beta".to_owned()], false, false).unwrap().is_none());
    }
}
