//! OpenAI Embeddings wire types (`POST /v1/embeddings`): the request every adapter reads and the
//! list every adapter produces.

use crate::error::GatewayError;
use base64::Engine;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EmbeddingRequest {
    /// The public model name; adapters write the vendor's model instead.
    #[serde(skip_serializing)]
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What to embed: one text, several, or the same as token ids.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// The texts, in order; `None` for token ids, which only OpenAI-format vendors take.
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self {
            EmbeddingInput::Text(t) => Some(vec![t.as_str()]),
            EmbeddingInput::Texts(ts) => Some(ts.iter().map(String::as_str).collect()),
            EmbeddingInput::Tokens(_) | EmbeddingInput::TokenLists(_) => None,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            EmbeddingInput::Text(_) => false,
            EmbeddingInput::Texts(v) => v.is_empty(),
            EmbeddingInput::Tokens(v) => v.is_empty(),
            EmbeddingInput::TokenLists(v) => v.is_empty() || v.iter().any(Vec::is_empty),
        }
    }
}

// Decoded by its first element, without `untagged`'s buffering and its unhelpful error.
impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = EmbeddingInput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, an array of strings, an array of token ids, or an array of such arrays")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EmbeddingInput, E> {
                Ok(EmbeddingInput::Text(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EmbeddingInput, A::Error> {
                let Some(first) = seq.next_element::<Value>()? else {
                    return Ok(EmbeddingInput::Texts(vec![]));
                };
                let mut rest = vec![first];
                while let Some(v) = seq.next_element::<Value>()? {
                    rest.push(v);
                }
                let as_err = |e: serde_json::Error| de::Error::custom(e.to_string());
                match &rest[0] {
                    Value::String(_) => {
                        serde_json::from_value(Value::Array(rest)).map(EmbeddingInput::Texts).map_err(as_err)
                    }
                    Value::Number(_) => {
                        serde_json::from_value(Value::Array(rest)).map(EmbeddingInput::Tokens).map_err(as_err)
                    }
                    Value::Array(_) => {
                        serde_json::from_value(Value::Array(rest)).map(EmbeddingInput::TokenLists).map_err(as_err)
                    }
                    _ => Err(de::Error::custom("input items are strings or token ids")),
                }
            }
        }
        deserializer.deserialize_any(InputVisitor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

/// OpenAI's limit on inputs in one request.
pub const MAX_INPUTS: usize = 2048;

impl EmbeddingRequest {
    /// The size of the input in characters (a token id counted as four), for estimates.
    pub fn input_chars(&self) -> usize {
        match &self.input {
            EmbeddingInput::Text(text) => text.len(),
            EmbeddingInput::Texts(texts) => texts.iter().map(String::len).sum(),
            EmbeddingInput::Tokens(ids) => ids.len() * 4,
            EmbeddingInput::TokenLists(lists) => lists.iter().map(|ids| ids.len() * 4).sum(),
        }
    }

    pub fn parse(body: &[u8]) -> Result<EmbeddingRequest, GatewayError> {
        let request: EmbeddingRequest = crate::error::parse_body(body)?;
        if request.model.is_empty() {
            return Err(GatewayError::invalid_request("model", "'model' must be a non-empty string."));
        }
        if request.input.is_empty() {
            return Err(GatewayError::invalid_request("input", "'input' must not be empty."));
        }
        let count = match &request.input {
            EmbeddingInput::Texts(v) => v.len(),
            EmbeddingInput::TokenLists(v) => v.len(),
            _ => 1,
        };
        if count > MAX_INPUTS {
            return Err(GatewayError::invalid_request("input", format!("'input' holds at most {MAX_INPUTS} items.")));
        }
        if request.dimensions == Some(0) {
            return Err(GatewayError::invalid_request("dimensions", "'dimensions' must be at least 1."));
        }
        Ok(request)
    }

    pub fn wants_base64(&self) -> bool {
        self.encoding_format == Some(EncodingFormat::Base64)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingList {
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    pub object: String,
    pub index: u32,
    pub embedding: EmbeddingVector,
}

/// A vector as floats, or as the base64 of its little-endian float32s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

impl EmbeddingVector {
    pub fn encode(values: Vec<f32>, base64: bool) -> Self {
        if !base64 {
            return EmbeddingVector::Float(values);
        }
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

impl EmbeddingList {
    /// The usage as a chat's, for pricing.
    pub fn usage_as_chat(&self) -> Option<crate::chat::Usage> {
        Some(crate::chat::Usage::new(self.usage.prompt_tokens, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_shape_parses() {
        let p = |s: &str| EmbeddingRequest::parse(s.as_bytes()).map(|r| r.input);
        assert_eq!(p(r#"{"model":"m","input":"a"}"#).unwrap(), EmbeddingInput::Text("a".into()));
        assert_eq!(
            p(r#"{"model":"m","input":["a","b"]}"#).unwrap(),
            EmbeddingInput::Texts(vec!["a".into(), "b".into()])
        );
        assert_eq!(p(r#"{"model":"m","input":[1,2]}"#).unwrap(), EmbeddingInput::Tokens(vec![1, 2]));
        assert_eq!(
            p(r#"{"model":"m","input":[[1],[2,3]]}"#).unwrap(),
            EmbeddingInput::TokenLists(vec![vec![1], vec![2, 3]])
        );
        assert_eq!(p(r#"{"model":"m","input":[]}"#).unwrap_err().param.as_deref(), Some("input"));
        assert_eq!(p(r#"{"model":"m","input":["a",1]}"#).unwrap_err().param.as_deref(), Some("input"));
        assert_eq!(p(r#"{"model":"m"}"#).unwrap_err().status, 400);
        assert_eq!(
            p(r#"{"model":"m","input":"a","encoding_format":"hex"}"#).unwrap_err().param.as_deref(),
            Some("encoding_format")
        );
    }

    #[test]
    fn base64_is_little_endian_float32() {
        let v = EmbeddingVector::encode(vec![1.0, -2.5], true);
        // 1.0 = 00 00 80 3f, -2.5 = 00 00 20 c0
        assert_eq!(v, EmbeddingVector::Base64("AACAPwAAIMA=".into()));
    }
}
