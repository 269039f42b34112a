//! Vendor adapters: pure transformations between the canonical OpenAI-shaped request and each
//! vendor's wire format. The worker performs the HTTP call; adapters only build and read bytes.

pub mod mock;
pub mod openai;

/// An HTTP request for a vendor, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Whether a vendor status is the vendor's trouble (another target may succeed) rather than a
/// problem with the request itself.
pub fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// Removes every occurrence of `secret` from `text`, so a vendor that echoes a key back in an
/// error message cannot make the gateway leak it.
pub fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 4 && text.contains(s) => text.replace(s, "[redacted]"),
        _ => text.to_owned(),
    }
}
