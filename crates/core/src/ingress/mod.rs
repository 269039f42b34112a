//! Ingress and egress of each client dialect: decoders from the dialect into the canonical
//! request, encoders of canonical answers, stream events and errors back into it.

pub mod anthropic_messages;
pub mod openai_chat;
pub mod openai_responses;
