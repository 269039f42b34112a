//! OpenAI's Responses API (`/v1/responses`): a chat like any other (the same routing, keys,
//! budgets and failover), answered as a Response object or its event stream, and kept, when
//! `store` is true, in the `ResponseStore` so that `previous_response_id` continues it and
//! `GET` / `DELETE` / `input_items` find it. A stored response belongs to the key that made
//! it: any other key is told it does not exist.

use crate::chat::{self, Asked, Kept, ResponsesReply};
use crate::http::{self, Rejection};
use crate::response_store::{self, StoredResponse};
use crate::{attempts, metering, upstream};
use std::cell::RefCell;
use std::rc::Rc;
use switchyard_core::config::Config;
use switchyard_core::ingress::openai_responses;
use switchyard_core::keys::KeyRecord;
use switchyard_core::providers;
use switchyard_core::GatewayError;
use worker::{Date, Env, Response};

/// A call made, and what is left to do once its answer is whole: keep it.
pub struct Created {
    pub completed: attempts::Completed,
    pub admission: metering::Admission,
    pub store: Option<Pending>,
}

/// A response to keep once its stream (if it streams) has ended.
pub struct Pending {
    reply: Rc<ResponsesReply>,
    owner: String,
}

impl Pending {
    /// Keeps the response, if its answer came whole (a failed call keeps nothing), under its
    /// id: the gateway's, or the vendor's for an answer passed through.
    pub async fn keep(self, env: &Env) {
        let kept = self.reply.kept.borrow_mut().take();
        let mut response = match kept {
            None => return,
            Some(Kept::Made(response)) => response,
            Some(Kept::Sent(bytes)) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(response) if response.is_object() => response,
                _ => {
                    worker::console_error!("response store: the vendor's Response object is not JSON; not kept");
                    return;
                }
            },
        };
        let Some(id) = response["id"].as_str().filter(|id| is_response_id(id)).map(str::to_owned) else {
            worker::console_error!("response store: the Response object has no id of the API's shape; not kept");
            return;
        };
        if response["completed_at"].is_null() && response["status"] != "in_progress" {
            response["completed_at"] = (Date::now().as_millis() / 1000).into();
        }
        let reply = &self.reply;
        let input_items = reply.params.input_items.clone();
        let mut history = reply.history.clone();
        history.extend(input_items.iter().cloned());
        history.extend(openai_responses::output_items(&response));
        let record = StoredResponse {
            owner: self.owner,
            expires_at_ms: Date::now().as_millis().saturating_add(response_store::TTL_MS),
            response,
            input_items,
            history,
            held_by: reply.vendor_holds.borrow_mut().take(),
        };
        if let Err(e) = response_store::put(env, &id, &record).await {
            worker::console_error!("response store: keeping {id} failed: {e}");
        }
    }
}

/// 16 random bytes, for the ids the gateway gives.
fn entropy() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&Date::now().as_millis().to_le_bytes());
    }
    bytes
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::new(404, "invalid_request_error", "not_found", format!("No response found with id '{id}'."))
}

/// Whether `id` has a response id's shape: `resp_` and 16 to 96 letters and digits, as the
/// gateway gives them (48 hex digits) and as OpenAI does (an answer passed through keeps the
/// vendor's id). Anything else names no stored response, and is not looked up (a lookup would
/// make a Durable Object of any string).
fn is_response_id(id: &str) -> bool {
    id.strip_prefix("resp_")
        .is_some_and(|rest| (16..=96).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The stored response `id` if `key` made it. A response kept just before may still be on
/// its way to the store (it is written after its answer went out): a miss is asked again,
/// twice, a moment apart.
async fn owned(env: &Env, key: &KeyRecord, id: &str) -> Result<StoredResponse, Rejection> {
    if !is_response_id(id) {
        return Err(not_found(&id.chars().take(64).collect::<String>()).into());
    }
    for wait_ms in [0, 100, 250] {
        if wait_ms > 0 {
            worker::Delay::from(std::time::Duration::from_millis(wait_ms)).await;
        }
        if let Some(record) = stored(env, id).await? {
            return match record.owner == key.id {
                true => Ok(record),
                false => Err(not_found(id).into()),
            };
        }
    }
    Err(not_found(id).into())
}

async fn stored(env: &Env, id: &str) -> Result<Option<StoredResponse>, Rejection> {
    response_store::get(env, id).await.map_err(|e| {
        worker::console_error!("response store: reading {id} failed: {e}");
        GatewayError::new(503, "server_error", "store_unavailable", "The response store did not answer; try again.")
            .into()
    })
}

/// `POST /v1/responses`.
pub async fn create(
    config: &Config,
    env: &Env,
    key: &KeyRecord,
    body: Vec<u8>,
    asked: Asked,
) -> Result<Created, Rejection> {
    // The conversation it continues, read first: the decoder takes it as the turns before.
    let previous = openai_responses::previous_response_id(&body)?;
    let (history, held_by) = match previous.as_deref() {
        Some(id) => match owned(env, key, id).await {
            Ok(record) => (record.history, record.held_by),
            Err(rejection) if rejection.error.status == 404 => {
                let error = GatewayError::new(
                    404,
                    "invalid_request_error",
                    "previous_response_not_found",
                    format!("Previous response with id '{}' not found.", id.chars().take(64).collect::<String>()),
                )
                .with_param("previous_response_id");
                return Err(error.into());
            }
            Err(rejection) => return Err(rejection),
        },
        None => (Vec::new(), None),
    };
    let (request, mut params) = openai_responses::decode(body, &history)?;
    if params.store {
        within_quota(env, key).await?;
    }
    params.assign_ids(&entropy());
    let id = openai_responses::new_id("resp", &entropy());
    let store = params.store;
    let reply = Rc::new(ResponsesReply {
        params,
        id,
        created_at: Date::now().as_millis() / 1000,
        history,
        held_by,
        kept: RefCell::new(None),
        vendor_holds: RefCell::new(None),
    });
    let asked = Asked { responses: Some(reply.clone()), ..asked };
    let (completed, admission) = chat::complete(config, env, key, request, asked).await?;
    let store = store.then(|| Pending { reply, owner: key.id.clone() });
    Ok(Created { completed, admission, store })
}

/// Refuses a call that would store a response when its key's stored responses are at its
/// quota (in number or in bytes): before the vendor is called, so the refusal costs nothing.
async fn within_quota(env: &Env, key: &KeyRecord) -> Result<(), Rejection> {
    let limits = response_store::limits(env);
    let used = response_store::quota_use(env, &key.id).await.map_err(|e| {
        worker::console_error!("response store: the quota of {} could not be read: {e}", key.id);
        Rejection::from(GatewayError::new(
            503,
            "server_error",
            "store_unavailable",
            "The response store did not answer; try again.",
        ))
    })?;
    let over = if used.count >= limits.count {
        Some(format!("{} stored responses, its limit", used.count))
    } else if used.bytes >= limits.bytes {
        Some(format!("{} MiB of stored responses, its limit of {} MiB", used.bytes >> 20, limits.bytes >> 20))
    } else {
        None
    };
    let Some(over) = over else { return Ok(()) };
    let error = GatewayError::new(
        429,
        "insufficient_quota",
        "stored_responses_quota_exceeded",
        format!(
            "This key has {over}: delete some (DELETE /v1/responses/{{id}}), let them expire, or send \"store\": false."
        ),
    )
    .with_param("store");
    Err(Rejection { error, headers: vec![("x-should-retry".to_owned(), "false".to_owned())] })
}

/// `GET /v1/responses/{id}`.
pub async fn retrieve(env: &Env, key: &KeyRecord, id: &str) -> Result<Response, Rejection> {
    Ok(http::json(200, &owned(env, key, id).await?.response))
}

/// `DELETE /v1/responses/{id}`: the gateway's record, and the vendor's own copy where the
/// vendor keeps one (asked once, within the provider's timeout; a failure there is logged:
/// the vendor's copy expires on its own terms).
pub async fn delete(config: &Config, env: &Env, key: &KeyRecord, id: &str) -> Result<Response, Rejection> {
    let record = owned(env, key, id).await?;
    if let Some(provider) = record.held_by.as_deref().and_then(|name| config.providers.iter().find(|p| p.name == name))
    {
        let api_key = attempts::vendor_key(provider, env).ok().flatten();
        let outbound = providers::openai_responses::delete_request(provider, id, api_key.as_deref());
        match upstream::send_as(worker::Method::Delete, &outbound, provider.timeout_ms).await {
            Ok(response) if (200..300).contains(&response.status_code()) || response.status_code() == 404 => {
                upstream::discard(response)
            }
            Ok(response) => {
                worker::console_error!("response store: {} kept {id}: HTTP {}", provider.name, response.status_code())
            }
            Err(_) => worker::console_error!("response store: {} could not be asked to delete {id}", provider.name),
        }
    }
    response_store::delete(env, id).await.map_err(|e| {
        worker::console_error!("response store: deleting {id} failed: {e}");
        Rejection::from(GatewayError::new(
            503,
            "server_error",
            "store_unavailable",
            "The response store did not answer.",
        ))
    })?;
    if let Err(e) = response_store::forget_in_quota(env, &key.id, id).await {
        worker::console_error!("response store: the quota of {} still counts {id}: {e}", key.id);
    }
    Ok(http::json(200, &serde_json::json!({"id": id, "object": "response", "deleted": true})))
}

/// `GET /v1/responses/{id}/input_items`: the response's input, newest first unless
/// `order=asc`, `limit` (1 to 100, 20 by default) a page, after the item `after`.
pub async fn input_items(env: &Env, key: &KeyRecord, id: &str, query: &str) -> Result<Response, Rejection> {
    let record = owned(env, key, id).await?;
    let mut order_asc = false;
    let mut limit = 20usize;
    let mut after: Option<String> = None;
    for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        match name {
            "order" if value == "asc" || value == "desc" => order_asc = value == "asc",
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => {
                    return Err(GatewayError::invalid_request("limit", "'limit' is between 1 and 100.").into());
                }
            },
            "after" => after = Some(value.to_owned()),
            "order" => return Err(GatewayError::invalid_request("order", "'order' is asc or desc.").into()),
            _ => {}
        }
    }
    let mut items = record.input_items;
    if !order_asc {
        items.reverse();
    }
    if let Some(after) = after {
        if let Some(at) = items.iter().position(|item| item["id"].as_str() == Some(after.as_str())) {
            items.drain(..=at);
        }
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    let first_id = items.first().and_then(|i| i["id"].as_str()).map(str::to_owned);
    let last_id = items.last().and_then(|i| i["id"].as_str()).map(str::to_owned);
    Ok(http::json(
        200,
        &serde_json::json!({"object": "list", "data": items, "first_id": first_id, "last_id": last_id, "has_more": has_more}),
    ))
}
