//! Which gateway key a request presents: one listed in the configuration (by its hash), else
//! one made by the admin API, whose record KV keeps under `key/<id>` (the id derived from the
//! key's hash, so one read finds it).

use switchyard_core::auth;
use switchyard_core::config::Config;
use switchyard_core::keys::{self, KeyRecord};
use switchyard_core::GatewayError;
use worker::{Date, Env};

pub const KV_BINDING: &str = "SWITCHYARD_KV";

/// The KV entry of a key's record.
pub fn kv_name(id: &str) -> String {
    format!("key/{id}")
}

/// The record of the presented key, or a 401 (no key, an unknown one, a revoked or expired
/// one as far as this edge knows; the key's ledger has the last word on revocation).
pub async fn authenticate(env: &Env, config: &Config, presented: Option<&str>) -> Result<KeyRecord, GatewayError> {
    let key = presented.ok_or_else(|| GatewayError::invalid_api_key(false))?;
    let hash = auth::sha256(key);
    if let Some(known) = auth::configured(config, &hash) {
        // An expired key is refused on every endpoint, `/v1/models` too.
        let record = KeyRecord::from_config(&known.name, &known.sha256, &known.policy);
        record.check(config, &[], Date::now().as_millis())?;
        return Ok(record);
    }
    let record = cached(env, &keys::id_of(&hash)).await?.ok_or_else(|| GatewayError::invalid_api_key(true))?;
    if !auth::constant_time_eq(record.sha256.as_bytes(), keys::hex(&hash).as_bytes()) {
        return Err(GatewayError::invalid_api_key(true));
    }
    record.check(config, &[], Date::now().as_millis())?;
    Ok(record)
}

/// How long this isolate trusts its copy of a key's KV record: revocations and policy changes
/// are enforced by the key's ledger, through its lease, within a lease's lifetime; this copy
/// only saves a KV read a call. An unknown key is remembered for less.
const KNOWN_MS: u64 = 60_000;
const UNKNOWN_MS: u64 = 10_000;
/// The most records kept (past it the copy starts again empty).
const MAX_KEPT: usize = 10_000;

thread_local! {
    static KEPT: std::cell::RefCell<std::collections::HashMap<String, (Option<KeyRecord>, u64)>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// A key's record: this isolate's copy while it is fresh, else KV's.
async fn cached(env: &Env, id: &str) -> Result<Option<KeyRecord>, GatewayError> {
    let now = Date::now().as_millis();
    let kept = KEPT.with(|kept| kept.borrow().get(id).cloned());
    if let Some((record, at_ms)) = kept {
        let fresh_ms = if record.is_some() { KNOWN_MS } else { UNKNOWN_MS };
        if now.saturating_sub(at_ms) < fresh_ms {
            return Ok(record);
        }
    }
    let record = load(env, id).await?;
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.insert(id.to_owned(), (record.clone(), now));
    });
    Ok(record)
}

/// Forgets this isolate's copy of a key's record (the admin API just wrote a new one).
pub fn forget(id: &str) {
    KEPT.with(|kept| kept.borrow_mut().remove(id));
}

/// A key's record as KV has it.
pub async fn load(env: &Env, id: &str) -> Result<Option<KeyRecord>, GatewayError> {
    let store = env.kv(KV_BINDING).map_err(unavailable)?;
    store.get(&kv_name(id)).json().await.map_err(unavailable)
}

/// Writes a key's record to KV.
pub async fn store(env: &Env, record: &KeyRecord) -> Result<(), GatewayError> {
    let store = env.kv(KV_BINDING).map_err(unavailable)?;
    let json = serde_json::to_string(record).map_err(unavailable)?;
    store.put(&kv_name(&record.id), json).map_err(unavailable)?.execute().await.map_err(unavailable)
}

/// The ids of every key the admin API made, from KV.
pub async fn list_ids(env: &Env) -> Result<Vec<String>, GatewayError> {
    let store = env.kv(KV_BINDING).map_err(unavailable)?;
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let mut list = store.list().prefix("key/".to_owned());
        if let Some(cursor) = cursor.take() {
            list = list.cursor(cursor);
        }
        let page = list.execute().await.map_err(unavailable)?;
        ids.extend(page.keys.into_iter().filter_map(|k| k.name.strip_prefix("key/").map(str::to_owned)));
        match page.cursor.filter(|_| !page.list_complete) {
            Some(next) => cursor = Some(next),
            None => return Ok(ids),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> GatewayError {
    worker::console_error!("key store: {e}");
    GatewayError::new(
        503,
        "server_error",
        "key_store_unavailable",
        "The key store cannot be reached; try again shortly.",
    )
}
