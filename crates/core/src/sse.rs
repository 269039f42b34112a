//! Server-sent events as OpenAI streams them: `data: <json>\n\n`, ending with `data: [DONE]`.

use serde::Serialize;

pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Appends one `data:` event holding `value` as JSON.
pub fn push_event<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    out.extend_from_slice(b"data: ");
    // Serializing the gateway's own wire types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_is_one_data_line_and_a_blank_line() {
        let mut out = Vec::new();
        super::push_event(&mut out, &serde_json::json!({"a": "b\nc"}));
        assert_eq!(out, b"data: {\"a\":\"b\\nc\"}\n\n");
    }
}
