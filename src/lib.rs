//! The Switchyard worker: the only code that touches the Workers runtime. It moves bytes
//! between the client, the vendors and the runtime's state, and asks `switchyard-core` for every
//! decision.
//!
//! The pipeline of one request, in order: endpoint -> configuration -> auth -> body (size limit)
//! -> parse and validate -> route (model -> targets) -> attempts -> response with
//! `x-switchyard-*` headers.

mod admin;
mod attempts;
mod chat;
mod config;
mod embeddings;
mod health_view;
mod http;
mod provider_health;
mod upstream;

pub use provider_health::ProviderHealth;

use switchyard_core::endpoint::{self, Endpoint};
use switchyard_core::{auth, models, GatewayError};
use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let request_id = http::request_id();
    let response = match serve(req, &env, &ctx).await {
        Ok(response) => response,
        Err(error) => http::error_response(&error),
    };
    Ok(http::finish(response, &request_id))
}

async fn serve(mut req: Request, env: &Env, ctx: &Context) -> Result<Response, GatewayError> {
    let path = req.path();
    let method = req.method();
    let endpoint = match endpoint::resolve(method.as_ref(), &path) {
        Ok(endpoint) => endpoint,
        Err(e) if e.status == 405 => {
            return Ok(http::with_allow(http::error_response(&e), endpoint::allowed_methods(&path)))
        }
        Err(e) => return Err(e),
    };
    match endpoint {
        Endpoint::Preflight => return Ok(http::preflight(endpoint::allowed_methods(&path))),
        Endpoint::Health => return Ok(http::health(config::current(env).err())),
        _ => {}
    }

    let config = config::current(env).map_err(GatewayError::config_invalid)?;
    if endpoint == Endpoint::AdminHealth {
        return admin::health(&req, env).await;
    }
    let headers = req.headers();
    let authorization = headers.get("authorization").ok().flatten();
    let x_api_key = headers.get("x-api-key").ok().flatten();
    auth::authenticate(&config, auth::presented_key(authorization.as_deref(), x_api_key.as_deref()))?;

    match endpoint {
        Endpoint::ListModels => Ok(http::json(200, &models::list(&config))),
        Endpoint::RetrieveModel(id) => {
            let model = models::retrieve(&config, &id).ok_or_else(|| GatewayError::model_not_found(&id))?;
            Ok(http::json(200, &model))
        }
        Endpoint::ChatCompletions => {
            let strict = req.headers().get("x-switchyard-strict").ok().flatten().is_some_and(|v| http::truthy(&v));
            let tier = match req.headers().get("x-switchyard-tier").ok().flatten().as_deref().map(str::trim) {
                Some("simple") => Some(switchyard_core::route::Tier::Simple),
                Some("complex") => Some(switchyard_core::route::Tier::Complex),
                _ => None,
            };
            let body = http::read_body(&mut req, config.limits.max_body_bytes).await?;
            let completed = chat::complete(&config, env, &body, strict, tier).await?;
            Ok(record(completed, env, ctx))
        }
        Endpoint::Embeddings => {
            let body = http::read_body(&mut req, config.limits.max_body_bytes).await?;
            let completed = embeddings::complete(&config, env, &body).await?;
            Ok(record(completed, env, ctx))
        }
        Endpoint::Health | Endpoint::Preflight | Endpoint::AdminHealth => unreachable_endpoint(),
    }
}

/// After the response, off the hot path: reports the attempts' outcomes to the shared health
/// record, and refreshes this isolate's copy of it when it has grown old.
fn record(completed: attempts::Completed, env: &Env, ctx: &Context) -> Response {
    let mut report = completed.report;
    report.completions = health_view::take_completions();
    let report = (!report.outcomes.is_empty() || !report.completions.is_empty()).then_some(report);
    let refresh = health_view::claim_refresh(worker::Date::now().as_millis());
    if report.is_some() || refresh {
        let env = env.clone();
        ctx.wait_until(async move {
            if let Some(report) = report {
                provider_health::report(&env, report).await;
            }
            if refresh {
                health_view::refresh(&env).await;
            }
        });
    }
    completed.response
}

/// Health and preflight are answered before authentication.
fn unreachable_endpoint() -> Result<Response, GatewayError> {
    Err(GatewayError::new(500, "server_error", "internal_error", "endpoint dispatched twice"))
}
