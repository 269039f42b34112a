//! The canonical stream: what a vendor's stream says, event by event, and the encoder that
//! writes it in the client's dialect.
//!
//! A vendor decoder emits, for each vendor event, nothing or a few [`Event`]s, in this grammar:
//! one `Start`; for each choice, its blocks one after another (`BlockStart`, its `Delta`s,
//! `BlockStop`; blocks of one choice never interleave), then its `Finish`; `Usage` at any point
//! (the figures so far, replacing earlier ones). The stream's end, clean or broken, is the
//! encoder's `complete` or `fail`.

use super::{Finish, Usage};
use crate::error::GatewayError;

/// Block indexes count from zero within a choice, in the order the blocks start.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// The answer's id and the vendor's model name.
    Start {
        id: &'a str,
        model: &'a str,
    },
    BlockStart {
        choice: u32,
        block: u32,
        kind: BlockKind<'a>,
    },
    Delta {
        choice: u32,
        block: u32,
        delta: Delta<'a>,
    },
    BlockStop {
        choice: u32,
        block: u32,
    },
    Finish {
        choice: u32,
        finish: Finish,
    },
    Usage(Usage),
}

#[derive(Debug, Clone, PartialEq)]
pub enum BlockKind<'a> {
    Text,
    Thinking,
    RedactedThinking {
        data: &'a str,
    },
    /// A tool call, with the signature its vendor needs back with it (Gemini's `thoughtSignature`).
    ToolCall {
        id: &'a str,
        name: &'a str,
        signature: Option<&'a str>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Delta<'a> {
    Text(&'a str),
    Thinking(&'a str),
    /// The signature of a thinking block.
    Signature(&'a str),
    /// A piece of a tool call's arguments (JSON text).
    ToolArguments(&'a str),
}

/// Writes canonical events in a client's dialect, incrementally.
pub trait Egress {
    fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>);
    /// The vendor's stream ended cleanly: the end of the client's stream.
    fn complete(&mut self, out: &mut Vec<u8>);
    /// The vendor's stream broke (or said it failed) after the client's had begun: the
    /// dialect's error event and the end of the stream.
    fn fail(&mut self, error: &GatewayError, out: &mut Vec<u8>);
    /// The vendor has been silent a while: something that keeps the client's connection alive
    /// and means nothing to it (an SSE comment, unless the dialect has its own keep-alive).
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b": keep-alive\n\n");
    }
}
