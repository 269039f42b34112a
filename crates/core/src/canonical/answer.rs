//! The canonical answer: one output a choice, each a list of typed blocks and why it ended.

use super::Usage;

/// A vendor's whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The vendor's id of the answer.
    pub id: String,
    /// The vendor's name of the model that answered.
    pub model: String,
    /// One output a choice, in the order of their index.
    pub outputs: Vec<Output>,
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub index: u32,
    pub blocks: Vec<Block>,
    pub finish: Finish,
}

/// A piece of an answer, in the order the model produced them.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Text(String),
    Thinking {
        text: String,
        signature: Option<String>,
    },
    RedactedThinking(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
        /// The vendor's signature of the call, which it needs back with the call in the next
        /// turn (Gemini's `thoughtSignature`).
        signature: Option<String>,
    },
    /// The model declined to answer (OpenAI's `refusal`).
    Refusal(String),
}

/// Why an output ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Finish {
    /// The model was done.
    #[default]
    Stop,
    /// At a stop sequence (which one, where the vendor says).
    StopSequence(Option<String>),
    /// At the output limit (or the context's).
    Length,
    /// To call tools.
    ToolCalls,
    /// Stopped by the vendor's content filter, or a refusal.
    ContentFilter,
}

impl Output {
    /// The text blocks, joined.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for block in &self.blocks {
            if let Block::Text(t) = block {
                text.push_str(t);
            }
        }
        text
    }
}
