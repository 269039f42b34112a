//! `/admin/*`: operator endpoints, authenticated by the `ADMIN_TOKEN` secret, never by a
//! gateway key.
//!
//! - `GET /admin/health`: every target's health record, from every shard (each with its `shard`);
//! - `POST /admin/keys`: a new key (its text in the answer, once); `GET /admin/keys`: every key;
//!   `GET|PATCH|DELETE /admin/keys/{id}`: one key, a change of its policy, its revocation;
//! - `GET /admin/usage?from=&to=&group_by=key|model|provider|tag`: usage and cost.

use crate::{http, keys, ledger, provider_health};
use serde::Serialize;
use switchyard_core::config::Config;
use switchyard_core::keys::{KeyChange, KeyRecord, Source};
use switchyard_core::ledger::{parse_time, rfc3339, usage_report, GroupBy, UsageTotal};
use switchyard_core::GatewayError;
use worker::{Date, Env, Method, Request, Response};

pub const TOKEN_SECRET: &str = "ADMIN_TOKEN";

/// The shortest admin token the admin API accepts: a shorter one turns the API off (it could
/// be guessed), and `/health` says so.
pub const MIN_TOKEN_LEN: usize = 32;

/// The admin token, if the admin API is on; why not, if it is off.
pub fn token(env: &Env) -> Result<String, GatewayError> {
    let disabled = |why: &str| GatewayError::new(403, "permission_error", "admin_disabled", why.to_owned());
    let Ok(token) = env.secret(TOKEN_SECRET).map(|s| s.to_string()) else {
        return Err(disabled(
            "The admin API is disabled: set the ADMIN_TOKEN secret (wrangler secret put ADMIN_TOKEN).",
        ));
    };
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(disabled(SHORT_TOKEN));
    }
    Ok(token)
}

pub const SHORT_TOKEN: &str = "The admin API is disabled: ADMIN_TOKEN is shorter than 32 characters \
    (make one with `openssl rand -hex 32`, then wrangler secret put ADMIN_TOKEN).";

/// Whether the request carries the admin token (compared by hash, in constant time).
pub fn is_admin(req: &Request, env: &Env) -> bool {
    authorize(req, env).is_ok()
}

fn authorize(req: &Request, env: &Env) -> Result<(), GatewayError> {
    let expected = token(env)?;
    let authorization = req.headers().get("authorization").ok().flatten();
    let presented = switchyard_core::auth::presented_key(authorization.as_deref(), None);
    let matches = presented.is_some_and(|p| {
        switchyard_core::auth::constant_time_eq(
            &switchyard_core::auth::sha256(p),
            &switchyard_core::auth::sha256(&expected),
        )
    });
    if matches {
        Ok(())
    } else {
        Err(GatewayError::new(
            401,
            "invalid_request_error",
            "invalid_admin_token",
            "The admin API needs `Authorization: Bearer <ADMIN_TOKEN>`.",
        ))
    }
}

/// `GET /admin/health`: every target's record; when the configuration is invalid, why.
pub async fn health(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    if let Err(e) = crate::config::current(env) {
        return Ok(http::health(Some(e), &[], true));
    }
    let records = provider_health::snapshot_all(env).await.map_err(|e| {
        GatewayError::new(503, "server_error", "health_unavailable", format!("The health record is unavailable: {e}"))
    })?;
    Ok(http::json(200, &records))
}

/// `/admin/keys` and `/admin/keys/{id}`.
pub async fn keys(mut req: Request, env: &Env, config: &Config, id: Option<&str>) -> Result<Response, GatewayError> {
    authorize(&req, env)?;
    let now = Date::now().as_millis();
    let method = match req.method() {
        Method::Head => Method::Get,
        method => method,
    };
    match (method, id) {
        (Method::Post, None) => {
            let body = http::read_body(&mut req, config.limits.max_body_bytes).await?;
            let mut random = [0u8; 32];
            getrandom::fill(&mut random).map_err(|e| {
                GatewayError::new(500, "server_error", "internal_error", format!("no randomness for a key: {e}"))
            })?;
            let key = switchyard_core::keys::generate(&random);
            let record = KeyChange::parse(&body)?.create(&key, config, now)?;
            save(env, &record).await?;
            #[derive(Serialize)]
            struct Created<'a> {
                #[serde(flatten)]
                record: &'a serde_json::Value,
                /// The key itself: shown this once, never stored.
                key: &'a str,
            }
            Ok(http::json(201, &Created { record: &shown(&record), key: &key }))
        }
        (Method::Get, None) => {
            let ids = keys::list_ids(env).await?;
            let loaded = futures::future::join_all(ids.iter().map(|id| keys::load(env, id))).await;
            let mut data: Vec<KeyRecord> =
                config.keys.iter().map(|k| KeyRecord::from_config(&k.name, &k.sha256, &k.policy)).collect();
            for record in loaded {
                data.extend(record?);
            }
            let data: Vec<serde_json::Value> = data.iter().map(shown).collect();
            Ok(http::json(200, &serde_json::json!({"object": "list", "data": data})))
        }
        (Method::Get, Some(id)) => Ok(http::json(200, &shown(&find(env, config, id).await?))),
        (Method::Patch | Method::Post, Some(id)) => {
            let body = http::read_body(&mut req, config.limits.max_body_bytes).await?;
            let change = KeyChange::parse(&body)?;
            let mut record = find_api_key(env, config, id).await?;
            change.apply(&mut record, config)?;
            save(env, &record).await?;
            Ok(http::json(200, &shown(&record)))
        }
        (Method::Delete, Some(id)) => {
            let mut record = find_api_key(env, config, id).await?;
            record.revoked_at.get_or_insert(now / 1000);
            save(env, &record).await?;
            Ok(http::json(200, &shown(&record)))
        }
        (method, _) => Err(GatewayError::method_not_allowed(
            method.as_ref(),
            req.path().as_str(),
            if id.is_some() { "GET, PATCH, DELETE" } else { "GET, POST" },
        )),
    }
}

/// A key's record as the admin API shows it: without the key's hash, which would help anyone
/// who reads it to guess a weak key listed in the configuration.
fn shown(record: &KeyRecord) -> serde_json::Value {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("sha256");
    }
    value
}

/// Writes a key's record: first to its ledger (the authoritative copy, so that a revocation is
/// in force at once everywhere), then to KV (where every edge finds it).
async fn save(env: &Env, record: &KeyRecord) -> Result<(), GatewayError> {
    ledger::put_record(env, record).await.map_err(|e| {
        GatewayError::new(503, "server_error", "ledger_unavailable", format!("The key's ledger cannot be written: {e}"))
    })?;
    // This isolate's copies go now; other isolates' within a lease's lifetime.
    crate::leases::forget(&record.id);
    keys::forget(&record.id);
    keys::store(env, record).await
}

/// A key by id: its ledger's record, else KV's, else one listed in the configuration.
async fn find(env: &Env, config: &Config, id: &str) -> Result<KeyRecord, GatewayError> {
    let not_found = || GatewayError::new(404, "invalid_request_error", "key_not_found", format!("No key `{id}`."));
    if !switchyard_core::keys::is_id(id) {
        return Err(not_found());
    }
    if let Some(k) = config.keys.iter().find(|k| switchyard_core::keys::id_of(&k.sha256) == id) {
        return Ok(KeyRecord::from_config(&k.name, &k.sha256, &k.policy));
    }
    // The ledger's record is the authoritative one: a ledger that cannot answer is an error,
    // never a reason to show (or change, from) the KV copy, which may predate a revocation.
    match ledger::get_record(env, id).await {
        Ok(Some(record)) => Ok(record),
        Ok(None) => keys::load(env, id).await?.ok_or_else(not_found),
        Err(e) => {
            worker::console_error!("ledger {id}: record unavailable: {e}");
            Err(GatewayError::new(
                503,
                "server_error",
                "ledger_unavailable",
                "The key's ledger cannot be reached; try again shortly.",
            ))
        }
    }
}

/// A key the admin API may change: not one listed in the configuration.
async fn find_api_key(env: &Env, config: &Config, id: &str) -> Result<KeyRecord, GatewayError> {
    let record = find(env, config, id).await?;
    if record.source == Source::Config {
        return Err(GatewayError::new(
            400,
            "invalid_request_error",
            "key_in_configuration",
            "This key is listed in the configuration; change it there.",
        ));
    }
    Ok(record)
}

/// `GET /admin/usage?from=&to=&group_by=`: requests, tokens and cost in `[from, to)` (Unix
/// seconds, a date or an RFC 3339 time; by default the current UTC month to now), grouped.
pub async fn usage(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    let url = req.url().map_err(|e| GatewayError::invalid_request("", e.to_string()))?;
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let now = Date::now().as_millis();
    let time = |name: &str, default: u64| match param(name) {
        None => Ok(default),
        Some(text) => parse_time(&text).ok_or_else(|| {
            GatewayError::invalid_request(
                name,
                format!("`{name}`: Unix seconds, a date (2026-11-22) or an RFC 3339 time in UTC."),
            )
        }),
    };
    let from = time("from", switchyard_core::ledger::Window::Month.start_ms(now))?;
    let to = time("to", now + 60_000)?;
    let group_by = match param("group_by") {
        None => GroupBy::Key,
        Some(text) => GroupBy::parse(&text)
            .ok_or_else(|| GatewayError::invalid_request("group_by", "`group_by`: key, model, provider or tag."))?,
    };
    let rows = ledger::usage(env, from, to).await.map_err(|e| {
        GatewayError::new(503, "server_error", "ledger_unavailable", format!("The usage ledger cannot be read: {e}"))
    })?;
    let (data, total) = usage_report(&rows, group_by);
    #[derive(Serialize)]
    struct Report {
        object: &'static str,
        from: String,
        to: String,
        group_by: GroupBy,
        data: Vec<UsageTotal>,
        total: UsageTotal,
    }
    Ok(http::json(200, &Report { object: "usage_report", from: rfc3339(from), to: rfc3339(to), group_by, data, total }))
}
