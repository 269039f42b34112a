//! Which gateway key a request presents: one listed in the configuration (by its hash), else
//! one made by the admin API, whose record KV keeps under `key/<id>` (the id derived from the
//! key's hash, so one read finds it).

use switchyard_core::auth;
use switchyard_core::config::Config;
use switchyard_core::keys::{self, KeyRecord, Source};
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
    let record = load(env, &keys::id_of(&hash)).await?.ok_or_else(|| GatewayError::invalid_api_key(true))?;
    if !auth::constant_time_eq(record.sha256.as_bytes(), keys::hex(&hash).as_bytes()) {
        return Err(GatewayError::invalid_api_key(true));
    }
    record.check(config, &[], Date::now().as_millis())?;
    Ok(record)
}

/// A key made by the admin API, checked against its ledger's record (the authoritative one: KV
/// may lag a revocation by up to a minute at other edges). Only a ledger that says it has no
/// record lets the KV copy stand; one that cannot say (an error, no answer in time) is a 503
/// `ledger_unavailable`, since the key may have been revoked there.
pub async fn confirm(env: &Env, config: &Config, key: &KeyRecord) -> Result<(), GatewayError> {
    if key.source != Source::Api {
        return Ok(());
    }
    match crate::ledger::get_record(env, &key.id).await {
        Ok(Some(record)) => record.check(config, &[], Date::now().as_millis()),
        Ok(None) => Ok(()),
        Err(e) => Err(crate::ledger::unavailable(e)),
    }
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
