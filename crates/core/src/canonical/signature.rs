//! A vendor's signature of a tool call (Gemini's `thoughtSignature`), carried in the call's id
//! for the dialects that have no field for it: every client keeps a call's id and sends it back
//! with the call and its result, so the signature comes back with them, whatever the client.
//!
//! The id a client sees is `<id>__ts__<signature>`, the signature in base64url without padding
//! (an Anthropic `tool_use` id allows only `[A-Za-z0-9_-]`). Decoders split it again, so a
//! vendor only ever sees the call's own id, and the signature goes back only as a signature.

/// What separates a call's id from its signature.
const MARK: &str = "__ts__";

/// The id a client sees for a call with `signature`.
pub fn fold(id: &str, signature: Option<&str>) -> String {
    let Some(signature) = signature.filter(|s| !s.is_empty()) else { return id.to_owned() };
    let mut folded = String::with_capacity(id.len() + MARK.len() + signature.len());
    folded.push_str(id);
    folded.push_str(MARK);
    folded.extend(signature.chars().filter(|&c| c != '=').map(|c| match c {
        '+' => '-',
        '/' => '_',
        c => c,
    }));
    folded
}

/// A client's id of a call as the call's own id and the signature folded into it (standard
/// base64, padded, as the vendor sent it).
pub fn unfold(id: &str) -> (&str, Option<String>) {
    let Some((id, folded)) = id.split_once(MARK) else { return (id, None) };
    if folded.is_empty() {
        return (id, None);
    }
    let mut signature: String = folded
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !signature.len().is_multiple_of(4) {
        signature.push('=');
    }
    (id, Some(signature))
}

/// A client's id of a call without the signature folded into it (a tool result's reference).
pub fn call_id(id: &str) -> &str {
    id.split_once(MARK).map_or(id, |(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_folds_into_an_anthropic_safe_id_and_back() {
        let signature = "Cp8BAVSoXO6+/x/Abw==";
        let folded = fold("call_0f3a", Some(signature));
        assert!(folded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{folded}");
        assert_eq!(unfold(&folded), ("call_0f3a", Some(signature.to_owned())));
        assert_eq!(call_id(&folded), "call_0f3a");
        assert_eq!(fold("toolu_1", None), "toolu_1");
        assert_eq!(unfold("toolu_1"), ("toolu_1", None));
        assert_eq!(unfold("x__ts__"), ("x", None));
        for signature in ["a", "ab", "abc", "abcd", "abcde+/"] {
            let padded = format!("{signature}{}", "=".repeat((4 - signature.len() % 4) % 4));
            assert_eq!(unfold(&fold("c", Some(&padded))).1.as_deref(), Some(padded.as_str()));
        }
    }
}
