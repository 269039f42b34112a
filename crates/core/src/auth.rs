//! Gateway keys: which key a request presents, and the configured key it is.
//!
//! Keys are known only by their SHA-256; the plain key is hashed on arrival and never stored.

use crate::config::{Config, GatewayKey};
use sha2::{Digest, Sha256};

/// The key a client presents: `Authorization: Bearer <key>`, else `x-api-key: <key>` (as the
/// Anthropic SDK and some other clients send it).
pub fn presented_key<'a>(authorization: Option<&'a str>, x_api_key: Option<&'a str>) -> Option<&'a str> {
    let bearer = authorization.and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer.or(x_api_key.map(str::trim)).filter(|key| !key.is_empty())
}

pub fn sha256(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key listed in the configuration whose SHA-256 is `hash`.
pub fn configured<'c>(config: &'c Config, hash: &[u8; 32]) -> Option<&'c GatewayKey> {
    config.keys.iter().find(|known| constant_time_eq(&known.sha256, hash))
}

/// Compares without an early exit, so that timing tells nothing of where two values differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        // sha256("sk-test") = the value below.
        let hash = sha256("sk-test").iter().map(|b| format!("{b:02x}")).collect::<String>();
        Config::parse(&format!(r#"{{"keys": [{{"name": "test", "sha256": "{hash}"}}]}}"#)).unwrap()
    }

    #[test]
    fn bearer_and_x_api_key_are_both_accepted() {
        assert_eq!(presented_key(Some("Bearer sk-1"), None), Some("sk-1"));
        assert_eq!(presented_key(Some("bearer  sk-1 "), None), Some("sk-1"));
        assert_eq!(presented_key(None, Some("sk-2")), Some("sk-2"));
        assert_eq!(presented_key(Some("Bearer sk-1"), Some("sk-2")), Some("sk-1"));
    }

    #[test]
    fn other_schemes_and_empty_keys_are_not_keys() {
        assert_eq!(presented_key(Some("Basic dXNlcjpwYXNz"), None), None);
        assert_eq!(presented_key(Some("Bearer "), None), None);
        assert_eq!(presented_key(None, Some("  ")), None);
        assert_eq!(presented_key(Some("Basic x"), Some("sk-2")), Some("sk-2"));
    }

    #[test]
    fn a_configured_key_is_found_by_its_hash() {
        let config = config();
        assert_eq!(configured(&config, &sha256("sk-test")).unwrap().name, "test");
        assert!(configured(&config, &sha256("sk-other")).is_none());
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"ab", b"abc")
        );
    }
}
