//! The gateway's errors, in OpenAI's shape: `{"error":{"message","type","param","code"}}`.
//!
//! Every failure that reaches a client is a [`GatewayError`]; its status and `type` follow what
//! OpenAI itself answers, so that the official SDKs raise the exception a user expects.

use serde::Serialize;
use std::borrow::Cow;
use std::fmt;

/// A failure reported to the client, with the HTTP status it is reported with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub status: u16,
    pub kind: &'static str,
    pub code: Option<Cow<'static, str>>,
    pub param: Option<String>,
    pub message: String,
}

impl GatewayError {
    pub fn new(status: u16, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, code: Some(Cow::Borrowed(code)), param: None, message: message.into() }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 400: the body is not JSON at all.
    pub fn invalid_json(reason: impl fmt::Display) -> Self {
        Self::new(400, "invalid_request_error", "invalid_json", format!("The request body is not valid JSON: {reason}"))
    }

    /// 400: the body is JSON but does not follow the API's schema.
    pub fn invalid_request(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", "invalid_request", message).with_param(param)
    }

    /// 401: no gateway key, or one the gateway does not know.
    pub fn invalid_api_key(presented: bool) -> Self {
        let message = if presented {
            "Incorrect API key provided. Use a Switchyard gateway key, not a vendor's key."
        } else {
            "You didn't provide an API key. Send your gateway key as `Authorization: Bearer <key>` (or `x-api-key`)."
        };
        Self::new(401, "invalid_request_error", "invalid_api_key", message)
    }

    /// 404: no configured model or alias has this name.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{model}` does not exist on this gateway. GET /v1/models lists the models it serves."),
        )
        .with_param("model")
    }

    /// 404: no endpoint at this path.
    pub fn unknown_url(method: &str, path: &str) -> Self {
        Self::new(404, "invalid_request_error", "unknown_url", format!("Invalid URL ({method} {path})"))
    }

    /// 405: the path exists but not with this method.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> Self {
        Self::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            format!("Method {method} is not allowed on {path}; use {allowed}."),
        )
    }

    /// 413: the body is larger than the configured limit.
    pub fn request_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("The request body exceeds the gateway's limit of {limit} bytes."),
        )
    }

    /// 502: the vendor could not be reached (connection refused, DNS, TLS, reset).
    pub fn upstream_unreachable(provider: &str, cause: impl fmt::Display) -> Self {
        Self::new(
            502,
            "server_error",
            "upstream_unreachable",
            format!("Provider `{provider}` could not be reached: {cause}"),
        )
    }

    /// 502: the vendor answered something that is not its API's answer.
    pub fn upstream_invalid(provider: &str, cause: impl fmt::Display) -> Self {
        Self::new(
            502,
            "server_error",
            "upstream_invalid_response",
            format!("Provider `{provider}` sent an invalid response: {cause}"),
        )
    }

    /// 502: the vendor refused the gateway's own key (wrong, revoked, or without access to the
    /// model): the operator's configuration to fix. What the vendor said about the key is not
    /// repeated, so nothing of it reaches the client.
    pub fn upstream_auth_failed(provider: &str) -> Self {
        Self::new(
            502,
            "server_error",
            "upstream_auth_failed",
            format!("Provider `{provider}` rejected the gateway's credentials; check its key secret."),
        )
    }

    /// 502: the vendor's stream ended, or broke, before the answer was complete.
    pub fn upstream_stream_broken(provider: &str, cause: impl fmt::Display) -> Self {
        Self::new(
            502,
            "server_error",
            "upstream_stream_broken",
            format!("Provider `{provider}` broke off its stream: {cause}"),
        )
    }

    /// 504: the vendor did not answer within the provider's timeout.
    pub fn upstream_timeout(provider: &str, timeout_ms: u64) -> Self {
        Self::new(
            504,
            "server_error",
            "upstream_timeout",
            format!("Provider `{provider}` did not answer within {timeout_ms} ms."),
        )
    }

    /// 503: the provider's key is not among the worker's secrets. The client is told which
    /// provider, never the secret's name (the operator's log has it).
    pub fn provider_key_missing(provider: &str) -> Self {
        Self::new(
            503,
            "server_error",
            "provider_key_missing",
            format!("Provider `{provider}` has no key configured on this gateway; its operator has to set it."),
        )
    }

    /// The error as OpenAI's JSON error body.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
        }
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        };
        // Serializing plain strings into a Vec cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// A JSON object's top-level members in order, their values as raw slices of `body` (a
/// shallow pass, after the typed one: for the members a dialect does not model, and for where
/// `model` lies, so that a pass-through can rename it in place).
pub fn top_level(body: &[u8]) -> Result<Vec<(std::borrow::Cow<'_, str>, &serde_json::value::RawValue)>, GatewayError> {
    serde_json::from_slice::<TopLevel>(body).map(|t| t.0).map_err(GatewayError::invalid_json)
}

/// A JSON object's members in order, values unparsed.
pub struct TopLevel<'a>(Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for TopLevel<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for MembersVisitor<'a> {
            type Value = TopLevel<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'a>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(TopLevel(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor(std::marker::PhantomData))
    }
}

/// Parses a request body into `T`: a body that is not JSON is `invalid_json`; one that breaks
/// the schema is `invalid_request` naming the offending parameter by its path.
pub fn parse_body<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    // JSON is UTF-8 throughout: the typed pass skips the members it does not model without
    // looking at their bytes, and a body passed through to a vendor must not carry bad ones.
    if let Err(e) = std::str::from_utf8(body) {
        return Err(GatewayError::invalid_json(format!("invalid UTF-8 at byte {}", e.valid_up_to())));
    }
    if nesting(body) > MAX_NESTING {
        return Err(GatewayError::invalid_json(format!("nested deeper than {MAX_NESTING} levels")));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => GatewayError::invalid_json(inner),
            _ if path == "." => GatewayError::invalid_request("", format!("Invalid request body: {inner}")),
            _ => GatewayError::invalid_request(path.clone(), format!("Invalid value for '{path}': {inner}")),
        }
    })
}

/// How deep a request body may nest: serde_json's own limit for what it parses into values. A
/// member the typed parse skips unread is held to it too, so that no part of a body can be
/// deeper than the gateway can read back (it would otherwise pass through unexamined).
pub const MAX_NESTING: usize = 128;

/// The deepest nesting of arrays and objects in `json`, strings skipped: one pass, no parse.
/// A request's bytes are mostly inside strings, which are crossed by `memchr` (a few hundred
/// nanoseconds for a 2 KB chat), not byte by byte.
fn nesting(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while let Some(&b) = json.get(i) {
        i += 1;
        match b {
            b'"' => loop {
                // Inside a string: to its closing quote, over escapes.
                match memchr::memchr2(b'"', b'\\', json.get(i..).unwrap_or_default()) {
                    Some(k) if json[i + k] == b'\\' => i += k + 2,
                    Some(k) => {
                        i += k + 1;
                        break;
                    }
                    None => return deepest,
                }
            },
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code.as_deref().unwrap_or(self.kind), self.message)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_every_field_of_openais_shape() {
        let body = GatewayError::model_not_found("gpt-9").to_json();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let e = &v["error"];
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["code"], "model_not_found");
        assert_eq!(e["param"], "model");
        assert!(e["message"].as_str().unwrap().contains("gpt-9"));
    }

    #[test]
    fn nesting_is_counted_outside_strings_and_capped() {
        assert_eq!(nesting(br#"{"a":[1,{"b":"[[[{{"}]}"#), 3);
        assert_eq!(nesting(br#"{"a":"\"[["}"#), 1);
        let deep = format!("{{\"model\":\"m\",\"x\":{}{}}}", "[".repeat(129), "]".repeat(129));
        let e = parse_body::<serde::de::IgnoredAny>(deep.as_bytes()).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("invalid_json"));
        let ok = format!("{{\"x\":{}{}}}", "[".repeat(127), "]".repeat(127));
        assert!(parse_body::<serde::de::IgnoredAny>(ok.as_bytes()).is_ok());
    }

    #[test]
    fn absent_param_is_null_not_missing() {
        let body = GatewayError::invalid_api_key(false).to_json();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"].as_object().unwrap().contains_key("param"));
        assert!(v["error"]["param"].is_null());
    }
}
