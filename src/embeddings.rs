//! `POST /v1/embeddings`: the first target that answers, in OpenAI's list shape (passed through
//! from OpenAI-format vendors, translated from Gemini's batchEmbedContents).

use crate::attempts::{self, call_vendor, read_answer, vendor_key, Budget, Completed, Failed};
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
    Ok(attempts::run(config, env, model, &Default::default(), |provider, target, budget| {
        attempt(provider, target, request, env, budget)
    })
    .await)
}

async fn attempt(
    provider: &Provider,
    target: &Target,
    request: &EmbeddingRequest,
    env: &Env,
    budget: Budget,
) -> Result<Response, Failed> {
    providers::check_embeddings(provider, request).map_err(Failed::final_)?;
    let key = vendor_key(provider, env)?;
    let outbound =
        providers::prepare_embeddings(provider, &target.model, request, key.as_deref()).map_err(Failed::final_)?;
    let mut response = call_vendor(provider, &outbound, key.as_deref(), budget.first_byte_ms).await?;
    let content_type = response.headers().get("content-type").ok().flatten();
    let body = read_answer(provider, &format!("{}/{}", provider.name, target.model), &mut response, budget).await?;
    if matches!(provider.kind, ProviderKind::Openai | ProviderKind::Azure) {
        // OpenAI-format vendors answer in OpenAI's shape: it goes back byte for byte.
        return Ok(http::bytes_response(200, content_type.as_deref().unwrap_or("application/json"), body));
    }
    match providers::decode_embeddings(provider, &body, request, &target.model) {
        Ok(Some(list)) => Ok(http::json(200, &list)),
        Ok(None) => Ok(http::bytes_response(200, "application/json", body)),
        Err(e) => Err(Failed::retryable(e)),
    }
}
