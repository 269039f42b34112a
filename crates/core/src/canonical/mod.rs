//! The canonical model of a call, belonging to no dialect: what a client asked for
//! ([`Request`]), what a vendor answered ([`Answer`]) and, for a stream, the answer as it
//! arrives ([`Event`]).
//!
//! Ingress decoders (`crate::ingress`) map a client's dialect into a [`Request`]; vendor
//! adapters (`crate::providers`) map it to their vendor's wire format and the vendor's answer
//! and stream back into [`Answer`] and [`Event`]s; egress encoders ([`Egress`]) write those in
//! the client's dialect. A dialect or a vendor is one module each: no pairwise translators.

mod answer;
mod event;
pub mod request;
pub mod signature;

pub use answer::{Answer, Block, Finish, Output};
pub use event::{BlockKind, Delta, Egress, Event};
pub use request::{Media, OutputFormat, Part, Reasoning, Request, Role, Source, ToolChoice, ToolDef, Turn};

/// What a call's tokens came to: the usage of every dialect, kept in one shape. `prompt_tokens`
/// counts every input token, those read from or written to a prompt cache included (OpenAI's
/// convention; Anthropic's `input_tokens` leave them out, and its encoder takes them off).
pub use crate::chat::Usage;

/// The dialect a client speaks: decides how its request is read, and how answers, stream
/// events and errors are written back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// OpenAI's Chat Completions (`/v1/chat/completions`).
    #[default]
    OpenaiChat,
    /// Anthropic's Messages API (`/v1/messages`).
    AnthropicMessages,
    /// OpenAI's Responses API (`/v1/responses`).
    OpenaiResponses,
}
