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
    /// `GET /admin/health`: every target's health record (admin token).
    AdminHealth,
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
        "/admin/health" => (Endpoint::AdminHealth, "GET"),
        _ => match path.strip_prefix("/v1/models/") {
            Some(id) if !id.is_empty() => (Endpoint::RetrieveModel(percent_decode(id)), "GET"),
            _ => return Err(GatewayError::unknown_url(method, path)),
        },
    };
    if method == "OPTIONS" {
        return Ok(Endpoint::Preflight);
    }
    let method_ok = method == allowed || (method == "HEAD" && allowed == "GET");
    if method_ok {
        Ok(endpoint)
    } else {
        Err(GatewayError::method_not_allowed(method, path, allowed))
    }
}

/// The methods an endpoint answers, for the `Allow` header of a 405 and of a preflight.
pub fn allowed_methods(path: &str) -> &'static str {
    if path.starts_with("/v1/chat/") || path.starts_with("/v1/embeddings") {
        "POST, OPTIONS"
    } else {
        "GET, HEAD, OPTIONS"
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
    fn malformed_percent_escapes_are_kept_verbatim() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("%41"), "A");
    }
}
