//! `POST /v1/embeddings`: the first target that answers, in OpenAI's list shape (passed through
//! from OpenAI-format vendors, translated from Gemini's batchEmbedContents).

use crate::attempts::{self, call_vendor, vendor_key, Completed, Failed};
use crate::chat::pass_through;
use crate::http;
use switchyard_core::config::{Config, Provider, ProviderKind, Target};
use switchyard_core::embeddings::EmbeddingRequest;
use switchyard_core::providers;
use switchyard_core::GatewayError;
use worker::{Env, Response};

pub async fn complete(config: &Config, env: &Env, body: &[u8]) -> Result<Completed, GatewayError> {
    let request = EmbeddingRequest::parse(body)?;
    let model = config.model(&request.model).ok_or_else(|| GatewayError::model_not_found(&request.model))?;
    let request = &request;
    Ok(attempts::run(config, model, &Default::default(), |provider, target, budget| {
        attempt(provider, target, request, env, budget.first_byte_ms)
    })
    .await)
}

async fn attempt(
    provider: &Provider,
    target: &Target,
    request: &EmbeddingRequest,
    env: &Env,
    timeout_ms: u64,
) -> Result<Response, Failed> {
    providers::check_embeddings(provider, request).map_err(Failed::final_)?;
    let key = vendor_key(provider, env)?;
    let outbound =
        providers::prepare_embeddings(provider, &target.model, request, key.as_deref()).map_err(Failed::final_)?;
    let mut response = call_vendor(provider, &outbound, key.as_deref(), timeout_ms).await?;
    if matches!(provider.kind, ProviderKind::Openai | ProviderKind::Azure) {
        // OpenAI-format vendors answer in OpenAI's shape: passed through without being read.
        return Ok(pass_through(response));
    }
    let body =
        response.bytes().await.map_err(|e| Failed::retryable(GatewayError::upstream_unreachable(&provider.name, e)))?;
    match providers::decode_embeddings(provider, &body, request, &target.model) {
        Ok(Some(list)) => Ok(http::json(200, &list)),
        Ok(None) => Ok(http::bytes_response(200, "application/json", body)),
        Err(e) => Err(Failed::retryable(e)),
    }
}
