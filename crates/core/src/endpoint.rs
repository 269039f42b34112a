//! Which endpoint a request is for, from its method and path.

use crate::error::GatewayError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /health`: liveness, no auth.
    Health,
    /// `GET /v1/models`
    ListModels,
    /// `GET /v1/models/{model}`
    RetrieveModel(String),
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/images/generations`
    ImageGenerations,
    /// `POST /v1/images/edits` (multipart)
    ImageEdits,
    /// `POST /v1/audio/speech`
    Speech,
    /// `POST /v1/audio/transcriptions` (multipart)
    Transcriptions,
    /// `POST /v1/audio/translations` (multipart)
    Translations,
    /// `POST /v1/messages`: Anthropic's Messages API.
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokens,
    /// `POST /v1/responses`: OpenAI's Responses API.
    CreateResponse,
    /// `GET|DELETE /v1/responses/{id}`
    Response(String),
    /// `GET /v1/responses/{id}/input_items`
    ResponseInputItems(String),
    /// `GET /admin/health`: every target's health record (admin token).
    AdminHealth,
    /// `GET|POST /admin/keys`: the gateway keys, a new one (admin token).
    AdminKeys,
    /// `GET|PATCH|DELETE /admin/keys/{id}`: one key (admin token).
    AdminKey(String),
    /// `GET /admin/usage`: usage and cost (admin token).
    AdminUsage,
    /// `OPTIONS` on any endpoint: a browser's CORS preflight.
    Preflight,
}

/// Resolves `method` and `path` to an endpoint: 404 for an unknown path, 405 for a known path
/// with the wrong method.
pub fn resolve(method: &str, path: &str) -> Result<Endpoint, GatewayError> {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let (endpoint, allowed) = match path {
        "/health" => (Endpoint::Health, "GET"),
        "/v1/models" => (Endpoint::ListModels, "GET"),
        "/v1/chat/completions" => (Endpoint::ChatCompletions, "POST"),
        "/v1/embeddings" => (Endpoint::Embeddings, "POST"),
        "/v1/images/generations" => (Endpoint::ImageGenerations, "POST"),
        "/v1/images/edits" => (Endpoint::ImageEdits, "POST"),
        "/v1/audio/speech" => (Endpoint::Speech, "POST"),
        "/v1/audio/transcriptions" => (Endpoint::Transcriptions, "POST"),
        "/v1/audio/translations" => (Endpoint::Translations, "POST"),
        "/v1/messages" => (Endpoint::Messages, "POST"),
        "/v1/messages/count_tokens" => (Endpoint::CountTokens, "POST"),
        "/v1/responses" => (Endpoint::CreateResponse, "POST"),
        "/admin/health" => (Endpoint::AdminHealth, "GET"),
        "/admin/keys" => (Endpoint::AdminKeys, "GET, POST"),
        "/admin/usage" => (Endpoint::AdminUsage, "GET"),
        _ => match (path.strip_prefix("/v1/models/"), path.strip_prefix("/admin/keys/")) {
            (Some(id), _) if !id.is_empty() => (Endpoint::RetrieveModel(percent_decode(id)), "GET"),
            _ if path.starts_with("/v1/responses/") => match path["/v1/responses/".len()..].split_once('/') {
                None if path.len() > "/v1/responses/".len() => {
                    (Endpoint::Response(path["/v1/responses/".len()..].to_owned()), "GET, DELETE")
                }
                Some((id, "input_items")) if !id.is_empty() => (Endpoint::ResponseInputItems(id.to_owned()), "GET"),
                _ => return Err(GatewayError::unknown_url(method, path)),
            },
            (_, Some(id)) if !id.is_empty() && !id.contains('/') => {
                (Endpoint::AdminKey(id.to_owned()), "GET, PATCH, POST, DELETE")
            }
            _ => return Err(GatewayError::unknown_url(method, path)),
        },
    };
    if method == "OPTIONS" {
        return Ok(Endpoint::Preflight);
    }
    let mut methods = allowed.split(", ");
    let method_ok = methods.any(|m| m == method || (method == "HEAD" && m == "GET"));
    if method_ok {
        Ok(endpoint)
    } else {
        Err(GatewayError::method_not_allowed(method, path, allowed))
    }
}

/// The methods an endpoint answers, for the `Allow` header of a 405 and of a preflight.
pub fn allowed_methods(path: &str) -> &'static str {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    if path.starts_with("/v1/chat/")
        || path.starts_with("/v1/embeddings")
        || path.starts_with("/v1/images/")
        || path.starts_with("/v1/audio/")
        || path.starts_with("/v1/messages")
        || path == "/v1/responses"
    {
        "POST, OPTIONS"
    } else if path.starts_with("/v1/responses/") && !path.ends_with("/input_items") {
        "GET, HEAD, DELETE, OPTIONS"
    } else if path == "/admin/keys" {
        "GET, HEAD, POST, OPTIONS"
    } else if path.starts_with("/admin/keys/") {
        "GET, HEAD, PATCH, POST, DELETE, OPTIONS"
    } else {
        "GET, HEAD, OPTIONS"
    }
}

/// The dialect of the client at `path`: the shape its errors are written in.
pub fn dialect(path: &str) -> crate::canonical::Dialect {
    if path.starts_with("/v1/messages") {
        crate::canonical::Dialect::AnthropicMessages
    } else if path.starts_with("/v1/responses") {
        crate::canonical::Dialect::OpenaiResponses
    } else {
        crate::canonical::Dialect::OpenaiChat
    }
}

/// Model ids may hold '/' or ':' (`meta-llama/Llama-3`, `ft:gpt-4o:org`), which SDKs encode.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_resolve() {
        assert_eq!(resolve("GET", "/health"), Ok(Endpoint::Health));
        assert_eq!(resolve("GET", "/v1/models"), Ok(Endpoint::ListModels));
        assert_eq!(resolve("POST", "/v1/chat/completions"), Ok(Endpoint::ChatCompletions));
        assert_eq!(resolve("POST", "/v1/chat/completions/"), Ok(Endpoint::ChatCompletions));
        assert_eq!(resolve("GET", "/v1/models/gpt-4o"), Ok(Endpoint::RetrieveModel("gpt-4o".into())));
        assert_eq!(
            resolve("GET", "/v1/models/meta-llama%2FLlama-3"),
            Ok(Endpoint::RetrieveModel("meta-llama/Llama-3".into()))
        );
        assert_eq!(resolve("OPTIONS", "/v1/chat/completions"), Ok(Endpoint::Preflight));
        assert_eq!(resolve("POST", "/v1/messages"), Ok(Endpoint::Messages));
        assert_eq!(resolve("POST", "/v1/messages/count_tokens"), Ok(Endpoint::CountTokens));
        assert_eq!(resolve("POST", "/v1/responses"), Ok(Endpoint::CreateResponse));
        assert_eq!(resolve("POST", "/v1/images/generations"), Ok(Endpoint::ImageGenerations));
        assert_eq!(resolve("POST", "/v1/images/edits"), Ok(Endpoint::ImageEdits));
        assert_eq!(resolve("POST", "/v1/audio/speech"), Ok(Endpoint::Speech));
        assert_eq!(resolve("POST", "/v1/audio/transcriptions/"), Ok(Endpoint::Transcriptions));
        assert_eq!(resolve("POST", "/v1/audio/translations"), Ok(Endpoint::Translations));
        assert_eq!(resolve("GET", "/v1/audio/speech").unwrap_err().status, 405);
        assert_eq!(allowed_methods("/v1/images/edits"), "POST, OPTIONS");
        assert_eq!(resolve("POST", "/v1/images/variations").unwrap_err().status, 404);
        assert_eq!(resolve("GET", "/v1/responses/resp_1"), Ok(Endpoint::Response("resp_1".into())));
        assert_eq!(resolve("DELETE", "/v1/responses/resp_1"), Ok(Endpoint::Response("resp_1".into())));
        assert_eq!(
            resolve("GET", "/v1/responses/resp_1/input_items"),
            Ok(Endpoint::ResponseInputItems("resp_1".into()))
        );
        assert_eq!(resolve("POST", "/v1/responses/resp_1").unwrap_err().status, 405);
        assert_eq!(resolve("GET", "/v1/responses/resp_1/other").unwrap_err().status, 404);
        assert_eq!(dialect("/v1/messages"), crate::canonical::Dialect::AnthropicMessages);
        assert_eq!(dialect("/v1/responses/x"), crate::canonical::Dialect::OpenaiResponses);
    }

    #[test]
    fn wrong_method_is_405_and_unknown_path_404() {
        let e = resolve("GET", "/v1/chat/completions").unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (405, Some("method_not_allowed")));
        let e = resolve("DELETE", "/v1/models").unwrap_err();
        assert_eq!(e.status, 405);
        let e = resolve("POST", "/v1/nothing").unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (404, Some("unknown_url")));
        assert_eq!(resolve("GET", "/v1/models/").unwrap(), Endpoint::ListModels);
    }

    #[test]
    fn admin_endpoints_take_their_methods() {
        assert_eq!(resolve("POST", "/admin/keys"), Ok(Endpoint::AdminKeys));
        assert_eq!(resolve("GET", "/admin/keys/key_1"), Ok(Endpoint::AdminKey("key_1".into())));
        assert_eq!(resolve("DELETE", "/admin/keys/key_1"), Ok(Endpoint::AdminKey("key_1".into())));
        assert_eq!(resolve("PATCH", "/admin/keys/key_1/"), Ok(Endpoint::AdminKey("key_1".into())));
        assert_eq!(resolve("DELETE", "/admin/keys").unwrap_err().status, 405);
        assert_eq!(resolve("POST", "/admin/usage").unwrap_err().status, 405);
        assert_eq!(resolve("GET", "/admin/keys/a/b").unwrap_err().status, 404);
        assert_eq!(allowed_methods("/admin/keys/key_1"), "GET, HEAD, PATCH, POST, DELETE, OPTIONS");
    }

    #[test]
    fn malformed_percent_escapes_are_kept_verbatim() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("%41"), "A");
    }
}
