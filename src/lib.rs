//! The Switchyard worker: the only code that touches the Workers runtime. It moves bytes
//! between the client, the vendors and the runtime's state, and asks `switchyard-core` for every
//! decision.
//!
//! The pipeline of one request, in order, the same for every endpoint and dialect:
//! 1. endpoint (`endpoint::resolve`, and the client's dialect from the path, which its errors
//!    are written in from here on);
//! 2. configuration; auth (the key record);
//! 3. body (size limit), then the dialect's decoder into the canonical request
//!    (`ingress::{openai_chat, anthropic_messages, openai_responses}`; a Responses
//!    continuation first reads its stored conversation);
//! 4. admission (`metering::admit`: key policy, rate limits, budget holds);
//! 5. plan (`route::eligible`, `route::attempt_count`, `route::order`) and attempts
//!    (`attempts::run`: each target's adapter builds the vendor request, the answer or stream
//!    is decoded into canonical terms and encoded in the client's dialect, or passed through);
//! 6. the response, with `x-switchyard-*` headers;
//! 7. record, after the response (`record`, with `ctx.wait_until`): settlement of the real
//!    cost, usage, health, and for the Responses API the stored answer.
//!
//! `chat::complete` runs steps 4 and 5 for every chat dialect; `embeddings::complete` for
//! embeddings; `media::serve` for images and audio.

mod admin;
mod attempts;
mod audio;
mod chat;
mod config;
mod embeddings;
mod health_view;
mod http;
mod images;
mod keys;
mod leases;
mod ledger;
mod media;
mod metering;
mod outbox;
mod provider_health;
mod relay;
mod response_store;
mod responses;
mod upstream;

pub use ledger::Ledger;
pub use provider_health::ProviderHealth;
pub use response_store::ResponseStore;

use http::Rejection;
use metering::Admission;
use std::rc::Rc;
use switchyard_core::chat::ChatRequest;
use switchyard_core::config::Config;
use switchyard_core::endpoint::{self, Endpoint};
use switchyard_core::ingress::{anthropic_messages, openai_chat};
use switchyard_core::keys::KeyRecord;
use switchyard_core::{auth, models, GatewayError};
use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(req: worker::web_sys::Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let req = without_cf(req);
    let request_id = http::request_id();
    let dialect = endpoint::dialect(&req.path());
    let response = match serve(req, &env, &ctx).await {
        Ok(response) => response,
        Err(rejection) => {
            // What a refused call left to send (the release of a hold that a ledger which did
            // not answer in time may have taken) goes now, not with some later request.
            if outbox::pending() {
                let env = env.clone();
                ctx.wait_until(async move { outbox::deliver(&env).await });
            }
            rejection.response(dialect)
        }
    };
    Ok(http::finish(response, &request_id))
}

/// The client's request, as the `worker` crate wraps it, without reading its `cf` object: the
/// runtime builds that object on first read (about 0.3 ms a request, measured in a CPU profile
/// of workerd), the wrapper reads it eagerly, and the gateway uses none of it. An own `cf`
/// property of the request shadows the runtime's getter.
fn without_cf(req: worker::web_sys::Request) -> Request {
    let descriptor = worker::js_sys::Object::new();
    let _ = worker::js_sys::Reflect::set(&descriptor, &"value".into(), &worker::wasm_bindgen::JsValue::UNDEFINED);
    let _ = worker::js_sys::Reflect::define_property(&req, &"cf".into(), &descriptor);
    Request::from(req)
}

async fn serve(mut req: Request, env: &Env, ctx: &Context) -> Result<Response, Rejection> {
    let path = req.path();
    let method = req.method();
    let endpoint = match endpoint::resolve(method.as_ref(), &path) {
        Ok(endpoint) => endpoint,
        Err(e) if e.status == 405 => {
            return Ok(http::with_allow(http::error_in(endpoint::dialect(&path), &e), endpoint::allowed_methods(&path)))
        }
        Err(e) => return Err(e.into()),
    };
    match endpoint {
        Endpoint::Preflight => return Ok(http::preflight(endpoint::allowed_methods(&path))),
        Endpoint::Health => {
            let short_token = matches!(admin::token(env), Err(e) if e.message == admin::SHORT_TOKEN);
            let warnings: &[&str] = if short_token { &[admin::SHORT_TOKEN] } else { &[] };
            return Ok(http::health(config::current(env).err(), warnings, admin::is_admin(&req, env)));
        }
        Endpoint::AdminHealth => return Ok(admin::health(&req, env).await?),
        _ => {}
    }

    let config = config::current(env).map_err(|e| http::config_invalid(&e))?;
    match &endpoint {
        Endpoint::AdminKeys => return Ok(admin::keys(req, env, &config, None).await?),
        Endpoint::AdminKey(id) => return Ok(admin::keys(req, env, &config, Some(id)).await?),
        Endpoint::AdminUsage => return Ok(admin::usage(&req, env).await?),
        _ => {}
    }
    let headers = req.headers();
    let authorization = headers.get("authorization").ok().flatten();
    let x_api_key = headers.get("x-api-key").ok().flatten();
    let presented = auth::presented_key(authorization.as_deref(), x_api_key.as_deref());
    let key = keys::authenticate(env, &config, presented).await?;
    if matches!(
        endpoint,
        Endpoint::ListModels | Endpoint::RetrieveModel(_) | Endpoint::Response(_) | Endpoint::ResponseInputItems(_)
    ) {
        // Calls to models consult the key's ledger when they are admitted; listing them, and
        // reading stored responses, asks it too, so that a revocation holds here at once as well.
        metering::confirm(env, &config, &key).await?;
    }

    match endpoint {
        Endpoint::ListModels => {
            // A key limited to some models sees only those.
            let mut list = models::list(&config);
            list.data.retain(|m| key.policy.allows(&config, m.id));
            // Anthropic's SDKs send their version: they get the list in their shape.
            if req.headers().get("anthropic-version").ok().flatten().is_some() {
                return Ok(http::json(200, &models::anthropic_list(&list)));
            }
            Ok(http::json(200, &list))
        }
        Endpoint::RetrieveModel(id) => {
            let model = models::retrieve(&config, &id)
                .filter(|_| key.policy.allows(&config, &id))
                .ok_or_else(|| GatewayError::model_not_found(&id))?;
            if req.headers().get("anthropic-version").ok().flatten().is_some() {
                return Ok(http::json(200, &models::anthropic_object(&id)));
            }
            Ok(http::json(200, &model))
        }
        Endpoint::ChatCompletions => {
            let body = http::read_body(&mut req, config.limits.max_body_bytes).await?;
            let request = ChatRequest::parse(body)?;
            let asked = chat::Asked { fallbacks: request.models.clone(), ..asked(&req) };
            let request = openai_chat::from_chat(request);
            let (completed, admission) = chat::complete(&config, env, &key, request, asked).await?;
            Ok(record(completed, admission, key, config, env, ctx))
        }
        Endpoint::Messages => {
            let body = http::read_body(&mut req, config.limits.max_body_bytes).await?;
            let mut request = anthropic_messages::decode(body)?;
            if let Some(beta) = req.headers().get("anthropic-beta").ok().flatten() {
                request.source.headers.push(("anthropic-beta".to_owned(), beta));
            }
            let (completed, admission) = chat::complete(&config, env, &key, request, asked(&req)).await?;
            Ok(record(completed, admission, key, config, env, ctx))
        }
        Endpoint::CountTokens => {
            let body = http::read_body(&mut req, config.limits.max_body_bytes).await?;
            let request = anthropic_messages::decode(counted_body(body))?;
            chat::count_tokens(&config, env, &key, request).await
        }
        Endpoint::Embeddings => {
            let body = http::read_body(&mut req, config.limits.max_body_bytes).await?;
            let (completed, admission) = embeddings::complete(&config, env, &key, &body).await?;
            Ok(record(completed, admission, key, config, env, ctx))
        }
        media @ (Endpoint::ImageGenerations
        | Endpoint::ImageEdits
        | Endpoint::Speech
        | Endpoint::Transcriptions
        | Endpoint::Translations) => {
            let (completed, admission) = media::serve(&mut req, media, &config, env, &key).await?;
            Ok(record(completed, admission, key, config, env, ctx))
        }
        Endpoint::CreateResponse => {
            let body = http::read_body(&mut req, config.limits.max_body_bytes).await?;
            let created = responses::create(&config, env, &key, body, asked(&req)).await?;
            let keep = created.store.map(|pending| {
                let env = env.clone();
                Box::pin(async move { pending.keep(&env).await })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
            });
            Ok(record_then(created.completed, created.admission, key, config, env, ctx, keep))
        }
        Endpoint::Response(id) => match req.method() {
            worker::Method::Delete => Ok(responses::delete(&config, env, &key, &id).await?),
            _ => Ok(responses::retrieve(env, &key, &id).await?),
        },
        Endpoint::ResponseInputItems(id) => {
            let query = req.url().map(|u| u.query().unwrap_or_default().to_owned()).unwrap_or_default();
            Ok(responses::input_items(env, &key, &id, &query).await?)
        }
        Endpoint::Health
        | Endpoint::Preflight
        | Endpoint::AdminHealth
        | Endpoint::AdminKeys
        | Endpoint::AdminKey(_)
        | Endpoint::AdminUsage => Err(unreachable_endpoint()),
    }
}

/// A token count's body as a message's: the counter takes no `max_tokens`, the decoder wants
/// one (the counter's request drops it again).
fn counted_body(body: Vec<u8>) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut members)) if !members.contains_key("max_tokens") => {
            members.insert("max_tokens".to_owned(), 1.into());
            serde_json::to_vec(&members).unwrap_or(body)
        }
        _ => body,
    }
}

/// What the client's headers ask of a chat.
fn asked(req: &Request) -> chat::Asked {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    chat::Asked {
        strict: header("x-switchyard-strict").is_some_and(|v| http::truthy(&v)),
        tier: match header("x-switchyard-tier").as_deref().map(str::trim) {
            Some("simple") => Some(switchyard_core::route::Tier::Simple),
            Some("complex") => Some(switchyard_core::route::Tier::Complex),
            _ => None,
        },
        fallbacks: None,
        responses: None,
    }
}

/// After the response, off the hot path: settles the call's real cost in the ledgers (once its
/// stream, if it streams, has ended) or frees what it held, and reports the attempts' outcomes
/// to the shared health record, both through the outbox; refreshes this isolate's copy of the
/// health record when it has grown old.
fn record(
    completed: attempts::Completed,
    admission: Admission,
    key: KeyRecord,
    config: Rc<Config>,
    env: &Env,
    ctx: &Context,
) -> Response {
    record_then(completed, admission, key, config, env, ctx, None)
}

/// `record`, and `then` once the answer is whole (a stream's, at its end).
fn record_then(
    completed: attempts::Completed,
    admission: Admission,
    key: KeyRecord,
    config: Rc<Config>,
    env: &Env,
    ctx: &Context,
    then: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>,
) -> Response {
    let response = http::with_headers(completed.response, &admission.headers);
    let mut report = completed.report;
    report.completions = health_view::take_completions();
    outbox::report(report);
    let refresh = health_view::claim_refresh(&config, worker::Date::now().as_millis());
    let answered = completed.answered;
    let env = env.clone();
    ctx.wait_until(async move {
        // A stream's usage is known at its end: its settlement waits for it (the health view's
        // refresh does not).
        let settled = async {
            match answered {
                Some(answered) => metering::settle(&config, &key, admission, answered).await,
                None => metering::release(admission),
            }
            if let Some(then) = then {
                then.await;
            }
            futures::join!(outbox::deliver(&env), leases::maintain(&env));
        };
        let refreshed = health_view::refresh(&env, refresh);
        // The health report goes now; the settlement with the batch after it.
        futures::join!(settled, refreshed, outbox::deliver(&env));
    });
    response
}

/// Health, preflight and the admin API are answered before a gateway key is asked for.
fn unreachable_endpoint() -> Rejection {
    GatewayError::new(500, "server_error", "internal_error", "endpoint dispatched twice").into()
}
