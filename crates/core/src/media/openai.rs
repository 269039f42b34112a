//! Media to OpenAI-format vendors (OpenAI, Azure OpenAI, every vendor that serves OpenAI's
//! media endpoints): the client's bytes, JSON or multipart, with only `model` replaced, to the
//! task's endpoint; the answer goes back as it came.

use super::Task;
use crate::config::Provider;
use crate::providers::openai::{auth_header, endpoint};
use crate::providers::OutboundRequest;

/// The vendor request for `task`: `body` (the client's, its model already the vendor's) sent as
/// `content_type`.
pub fn request(
    provider: &Provider,
    vendor_model: &str,
    task: Task,
    body: Vec<u8>,
    content_type: String,
    api_key: Option<&str>,
) -> OutboundRequest {
    let mut headers = vec![("content-type".to_owned(), content_type)];
    if let Some(key) = api_key {
        headers.push(auth_header(provider, key));
    }
    headers.extend(provider.headers.iter().cloned());
    OutboundRequest { url: endpoint(provider, vendor_model, task.path()), headers, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;

    #[test]
    fn openai_and_azure_urls_and_keys() {
        let openai = Provider::new("o", ProviderKind::Openai, "https://api.openai.com/v1");
        let r = request(&openai, "gpt-image-1", Task::Images, b"{}".to_vec(), "application/json".into(), Some("sk-1"));
        assert_eq!(r.url, "https://api.openai.com/v1/images/generations");
        assert!(r.headers.contains(&("authorization".to_owned(), "Bearer sk-1".to_owned())));
        let azure = Provider::new("a", ProviderKind::Azure, "https://res.openai.azure.com");
        let r = request(&azure, "tts-prod", Task::Speech, vec![], "application/json".into(), Some("k"));
        assert_eq!(
            r.url,
            "https://res.openai.azure.com/openai/deployments/tts-prod/audio/speech?api-version=2024-10-21"
        );
        assert!(r.headers.contains(&("api-key".to_owned(), "k".to_owned())));
        let r = request(&azure, "whisper", Task::Translation, vec![], "multipart/form-data; boundary=b".into(), None);
        assert!(r.url.contains("/audio/translations?"));
        assert_eq!(r.headers, [("content-type".to_owned(), "multipart/form-data; boundary=b".to_owned())]);
    }
}
