//! (stub until the module lands: the signatures the worker calls)

use crate::canonical::{Answer, Egress, Event, Request};
use crate::error::GatewayError;

pub fn decode(_body: Vec<u8>) -> Result<Request, GatewayError> {
    Err(GatewayError::invalid_request("", "not yet"))
}

pub fn encode_answer(_answer: &Answer) -> Vec<u8> {
    Vec::new()
}

pub fn error_body(error: &GatewayError) -> (u16, Vec<u8>) {
    (error.status, error.to_json())
}

#[derive(Default)]
pub struct Stream;

impl Stream {
    pub fn new() -> Self {
        Self
    }
}

impl Egress for Stream {
    fn event(&mut self, _: Event<'_>, _: &mut Vec<u8>) {}
    fn complete(&mut self, _: &mut Vec<u8>) {}
    fn fail(&mut self, _: &GatewayError, _: &mut Vec<u8>) {}
}
