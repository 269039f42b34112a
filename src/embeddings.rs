//! `POST /v1/embeddings`: the first target that answers, in OpenAI's list shape (passed through
//! from OpenAI-format vendors, translated from Gemini's batchEmbedContents).

use crate::attempts::{self, call_vendor, read_answer, vendor_key, Answer, Budget, Completed, Failed, Selection};
use crate::http::{self, Rejection};
use crate::metering::{self, Admission, Estimate, Metered};
use switchyard_core::config::{Config, Provider, Target};
use switchyard_core::embeddings::EmbeddingRequest;
use switchyard_core::keys::KeyRecord;
use switchyard_core::providers;
use switchyard_core::GatewayError;
use worker::Env;

pub async fn complete(
    config: &Config,
    env: &Env,
    key: &KeyRecord,
    body: &[u8],
) -> Result<(Completed, Admission), Rejection> {
    let request = EmbeddingRequest::parse(body)?;
    let model = config.model(&request.model).ok_or_else(|| GatewayError::model_not_found(&request.model))?;
    config.check_priced(!key.policy.budgets.is_empty(), model)?;
    // The input, at four characters a token, at the dearest target's input price.
    let tokens = request.input_chars() as u64 / 4 + 1;
    let amount_usd = model.targets.iter().map(|t| config.model_info(&t.model).max_cost(tokens, 0)).fold(0.0, f64::max);
    let admission = metering::admit(env, config, key, &[&request.model], Estimate { amount_usd, tokens }).await?;
    let request = &request;
    let selection = Selection { tokens, ..Selection::default() };
    let dispatched = admission.dispatch_flag();
    let completed = admission
        .keep_while(attempts::run(config, env, model, &selection, |provider, target, budget| {
            dispatched.set(true);
            attempt(provider, target, request, env, budget)
        }))
        .await;
    Ok((completed, admission))
}

async fn attempt(
    provider: &Provider,
    target: &Target,
    request: &EmbeddingRequest,
    env: &Env,
    budget: Budget,
) -> Result<Answer, Failed> {
    providers::check_embeddings(provider, request).map_err(Failed::final_)?;
    let key = vendor_key(provider, env)?;
    let outbound =
        providers::prepare_embeddings(provider, &target.model, request, key.as_deref()).map_err(Failed::final_)?;
    let mut response = call_vendor(provider, &outbound, key.as_deref(), budget).await?;
    let content_type = response.headers().get("content-type").ok().flatten();
    let body = read_answer(provider, &format!("{}/{}", provider.name, target.model), &mut response, budget).await?;
    match providers::decode_embeddings(provider, &body, request, &target.model) {
        Ok(Some(list)) => {
            let usage = list.usage_as_chat();
            Ok(Answer::new(http::json(200, &list), Metered::Now(usage)))
        }
        // OpenAI-format vendors answer in OpenAI's shape: it goes back byte for byte.
        Ok(None) => {
            let usage = providers::usage_of(provider, switchyard_core::canonical::Dialect::OpenaiChat, &body);
            let response = http::bytes_response(200, content_type.as_deref().unwrap_or("application/json"), body);
            Ok(Answer::new(response, Metered::Now(usage)))
        }
        Err(e) => Err(Failed::retryable(e)),
    }
}
