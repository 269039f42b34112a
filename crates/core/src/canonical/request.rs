//! The canonical request: system parts, turns of typed parts, tools, and the parameters every
//! vendor shares, each in one form whatever the dialect it came in.

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

/// The client's own request, kept for a pass-through to a vendor of the same dialect.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    pub dialect: super::Dialect,
    /// The request as it came.
    pub bytes: Vec<u8>,
    /// The byte range of its top-level `model` value.
    pub model_span: (usize, usize),
}

impl Source {
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
    /// size in tokens (estimated: four characters a token, a flat 1,000 an image or file).
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
        Part::Document { .. } | Part::Audio { .. } => 4_000,
        Part::ToolCall { name, arguments, .. } => name.len() + arguments.len(),
        Part::ToolResult { content, .. } => content.iter().map(|p| part_chars(p, needs)).sum::<usize>() + 16,
        Part::Thinking { text, .. } => text.len(),
        Part::RedactedThinking { data } => data.len(),
    }
}
