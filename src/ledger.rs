//! The `Ledger` Durable Object: the spend, rate-limit buckets and calls in flight of one scope
//! (one instance a key, `gateway` for the whole gateway, `target:<provider/model>` for a
//! vendor's own limits), kept in SQLite. An instance handles one request at a time, so a cap
//! holds however many calls arrive together. The arithmetic is `switchyard_core::ledger`'s.
//!
//! - `POST /admit` (`Admit`): takes on a call or refuses it; for a key, its stored record (the
//!   authoritative one: a revocation here is seen at once everywhere) is checked first;
//! - `POST /take`: the same for a target's rate limits, holding nothing;
//! - `POST /settle` (`Batch`): calls that ended: each hold settled at the call's real cost and
//!   tokens, or released if the call failed; and usage rows, for the `gateway` instance, which
//!   keeps every key's usage;
//! - `PUT /record`, `GET /record`: a key's record, as the admin API last wrote it;
//! - `GET /usage?from=&to=`: usage rows in a time range (ms since the epoch).

use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use switchyard_core::keys::KeyRecord;
use switchyard_core::ledger::{Admitted, Ask, Hold, Refusal, Scope, UsageRow, HOLD_TTL_MS};
use switchyard_core::ratelimit::RateLimits;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

pub const BINDING: &str = "LEDGER";
/// The instance of the whole gateway: its caps and every key's usage.
pub const GATEWAY: &str = "gateway";

#[derive(Debug, Serialize, Deserialize)]
pub struct Admit {
    pub ask: Ask,
    /// The key's record as the caller knows it; the instance's own, once the admin API wrote
    /// one, wins.
    #[serde(default)]
    pub record: Option<KeyRecord>,
    /// The models the call may use (names or aliases), checked against the key's policy.
    #[serde(default)]
    pub models: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Answer {
    Admitted {
        #[serde(default)]
        hold_id: Option<String>,
        admitted: Admitted,
    },
    Refused {
        refusal: Refusal,
    },
    /// The key's record refuses the call (revoked, expired, model not allowed).
    Denied {
        record: KeyRecord,
    },
}

/// A call that ended: its hold settled at its real cost and tokens, or released if it failed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settle {
    pub hold_id: String,
    #[serde(default)]
    pub cost_usd: f64,
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub released: bool,
}

/// What an instance is sent after calls ended, gathered over a short while.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Batch {
    #[serde(default)]
    pub settles: Vec<Settle>,
    #[serde(default)]
    pub usage: Vec<UsageRow>,
}

#[durable_object]
pub struct Ledger {
    sql: SqlStorage,
    env: Env,
    /// The scope as last stored, kept between requests (the instance is its only writer).
    scope: RefCell<Option<Scope>>,
    /// The key's record as last stored (`Some(None)`: none), likewise.
    record: RefCell<Option<Option<KeyRecord>>>,
    /// When holds were last swept for calls that never reported back.
    swept_ms: std::cell::Cell<u64>,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS scope (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS record (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY, hold TEXT NOT NULL, limits TEXT NOT NULL, at_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS usage (minute_ms INTEGER NOT NULL, key_id TEXT NOT NULL, key_name TEXT NOT NULL, \
     model TEXT NOT NULL, provider TEXT NOT NULL, tags TEXT NOT NULL, requests INTEGER NOT NULL, \
     prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, \
     PRIMARY KEY (minute_ms, key_id, model, provider, tags))",
];

impl DurableObject for Ledger {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for statement in SCHEMA {
            if let Err(e) = sql.exec(statement, None) {
                worker::console_error!("ledger: cannot create its tables: {e}");
            }
        }
        Self { sql, env, scope: RefCell::new(None), record: RefCell::new(None), swept_ms: std::cell::Cell::new(0) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let now = worker::Date::now().as_millis();
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/admit") => {
                let admit: Admit = req.json().await?;
                Response::from_json(&self.admit(admit, true, now)?)
            }
            (Method::Post, "/take") => {
                let admit: Admit = req.json().await?;
                Response::from_json(&self.admit(admit, false, now)?)
            }
            (Method::Post, "/settle") => {
                let batch: Batch = req.json().await?;
                self.settle(&batch.settles, now)?;
                for row in &batch.usage {
                    self.add_usage(row)?;
                }
                Response::from_json(&serde_json::json!({"settled": batch.settles.len(), "usage": batch.usage.len()}))
            }
            (Method::Put, "/record") => {
                let mut record: KeyRecord = req.json().await?;
                // A revocation is final: a change written from a copy read before it keeps it.
                if let Some(revoked_at) = self.record()?.and_then(|stored| stored.revoked_at) {
                    record.revoked_at = Some(revoked_at);
                }
                self.sql.exec(
                    "INSERT INTO record (id, record) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                    vec![SqlStorageValue::String(serde_json::to_string(&record)?)],
                )?;
                *self.record.borrow_mut() = Some(Some(record.clone()));
                Response::from_json(&record)
            }
            (Method::Get, "/record") => match self.record()? {
                Some(record) => Response::from_json(&record),
                None => Response::error("no record", 404),
            },
            (Method::Get, "/usage") => {
                let url = req.url()?;
                let param =
                    |name: &str| url.query_pairs().find(|(k, _)| k == name).and_then(|(_, v)| v.parse::<i64>().ok());
                let (from, to) = (param("from").unwrap_or(0), param("to").unwrap_or(i64::MAX));
                Response::from_json(&self.usage(from, to)?)
            }
            _ => Response::error("not found", 404),
        }
    }
}

#[derive(Deserialize)]
struct Text {
    text: String,
}

#[derive(Deserialize)]
struct HoldRow {
    id: String,
    hold: String,
    limits: String,
}

impl Ledger {
    fn record(&self) -> Result<Option<KeyRecord>> {
        if let Some(record) = self.record.borrow().as_ref() {
            return Ok(record.clone());
        }
        let rows: Vec<Text> = self.sql.exec("SELECT record AS text FROM record WHERE id = 1", None)?.to_array()?;
        let record: Option<KeyRecord> = rows.first().and_then(|row| serde_json::from_str(&row.text).ok());
        *self.record.borrow_mut() = Some(record.clone());
        Ok(record)
    }

    fn with_scope<T>(&self, f: impl FnOnce(&mut Scope) -> T) -> Result<T> {
        let mut cached = self.scope.borrow_mut();
        if cached.is_none() {
            let rows: Vec<Text> = self.sql.exec("SELECT state AS text FROM scope WHERE id = 1", None)?.to_array()?;
            *cached = Some(rows.first().and_then(|row| serde_json::from_str(&row.text).ok()).unwrap_or_default());
        }
        let scope = cached.get_or_insert_with(Scope::default);
        let result = f(scope);
        self.sql.exec(
            "INSERT INTO scope (id, state) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state",
            vec![SqlStorageValue::String(serde_json::to_string(scope)?)],
        )?;
        Ok(result)
    }

    fn admit(&self, admit: Admit, hold: bool, now: u64) -> Result<Answer> {
        self.release_stale(now)?;
        let mut ask = admit.ask;
        let record = self.record()?.or(admit.record);
        if let Some(record) = record {
            let config = crate::config::current(&self.env).map_err(|e| worker::Error::RustError(e.to_string()))?;
            let models: Vec<&str> = admit.models.iter().map(String::as_str).collect();
            if record.check(&config, &models, now).is_err() {
                return Ok(Answer::Denied { record });
            }
            ask.caps = record.policy.budgets.clone();
            ask.limits = record.policy.rate_limits;
        }
        let admitted = match self.with_scope(|scope| scope.admit(&ask, now))? {
            Ok(admitted) => admitted,
            Err(refusal) => return Ok(Answer::Refused { refusal }),
        };
        // A hold matters only when there is something to give back: a reservation or tokens.
        let hold_id = if hold && (!admitted.hold.reservation.is_empty() || ask.limits.tpm.is_some()) {
            let id = crate::http::request_id();
            self.sql.exec(
                "INSERT INTO holds (id, hold, limits, at_ms) VALUES (?, ?, ?, ?)",
                vec![
                    SqlStorageValue::String(id.clone()),
                    SqlStorageValue::String(serde_json::to_string(&admitted.hold)?),
                    SqlStorageValue::String(serde_json::to_string(&ask.limits)?),
                    SqlStorageValue::Integer(now as i64),
                ],
            )?;
            Some(id)
        } else {
            None
        };
        Ok(Answer::Admitted { hold_id, admitted })
    }

    /// Takes a hold out of the table.
    fn take_hold(&self, id: &str) -> Result<Option<(Hold, RateLimits)>> {
        let rows: Vec<HoldRow> = self
            .sql
            .exec(
                "DELETE FROM holds WHERE id = ? RETURNING id, hold, limits",
                vec![SqlStorageValue::String(id.to_owned())],
            )?
            .to_array()?;
        Ok(rows
            .first()
            .and_then(|row| Some((serde_json::from_str(&row.hold).ok()?, serde_json::from_str(&row.limits).ok()?))))
    }

    /// Settles (or releases) each call's hold; the scope is written once for all of them. A
    /// cost whose hold is gone (freed as stale: the call outlived `HOLD_TTL_MS`) still counts.
    fn settle(&self, settles: &[Settle], now: u64) -> Result<()> {
        let mut held = Vec::with_capacity(settles.len());
        for settle in settles {
            held.push((settle, self.take_hold(&settle.hold_id)?));
        }
        if held.iter().all(|(settle, hold)| hold.is_none() && (settle.released || settle.cost_usd == 0.0)) {
            return Ok(());
        }
        self.with_scope(|scope| {
            for (settle, hold) in &held {
                match hold {
                    Some((hold, limits)) if settle.released => scope.release(hold, limits, now),
                    Some((hold, limits)) => scope.settle(hold, settle.cost_usd, settle.tokens, limits, now),
                    None if !settle.released => scope.charge(settle.cost_usd, now),
                    None => {}
                }
            }
        })
    }

    fn add_usage(&self, row: &UsageRow) -> Result<()> {
        self.sql.exec(
            "INSERT INTO usage (minute_ms, key_id, key_name, model, provider, tags, requests, prompt_tokens, \
             completion_tokens, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(minute_ms, key_id, model, provider, tags) DO UPDATE SET \
             key_name = excluded.key_name, requests = requests + excluded.requests, \
             prompt_tokens = prompt_tokens + excluded.prompt_tokens, \
             completion_tokens = completion_tokens + excluded.completion_tokens, \
             cost_usd = cost_usd + excluded.cost_usd",
            vec![
                SqlStorageValue::Integer((row.minute_ms / 60_000 * 60_000) as i64),
                SqlStorageValue::String(row.key_id.clone()),
                SqlStorageValue::String(row.key_name.clone()),
                SqlStorageValue::String(row.model.clone()),
                SqlStorageValue::String(row.provider.clone()),
                SqlStorageValue::String(row.tags.clone()),
                SqlStorageValue::Integer(row.requests as i64),
                SqlStorageValue::Integer(row.prompt_tokens as i64),
                SqlStorageValue::Integer(row.completion_tokens as i64),
                SqlStorageValue::Float(row.cost_usd),
            ],
        )?;
        Ok(())
    }

    /// Holds of calls whose end never came (their isolate died) are released; looked for once a
    /// minute at most.
    fn release_stale(&self, now: u64) -> Result<()> {
        if now.saturating_sub(self.swept_ms.get()) < 60_000 {
            return Ok(());
        }
        self.swept_ms.set(now);
        let cutoff = SqlStorageValue::Integer(now.saturating_sub(HOLD_TTL_MS) as i64);
        let stale: Vec<HoldRow> =
            self.sql.exec("SELECT id, hold, limits FROM holds WHERE at_ms < ?", vec![cutoff])?.to_array()?;
        let releases: Vec<Settle> =
            stale.into_iter().map(|row| Settle { hold_id: row.id, released: true, ..Settle::default() }).collect();
        self.settle(&releases, now)
    }

    fn usage(&self, from: i64, to: i64) -> Result<Vec<UsageRow>> {
        #[derive(Deserialize)]
        struct Row {
            minute_ms: i64,
            key_id: String,
            key_name: String,
            model: String,
            provider: String,
            tags: String,
            requests: i64,
            prompt_tokens: i64,
            completion_tokens: i64,
            cost_usd: f64,
        }
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT MIN(minute_ms) AS minute_ms, key_id, MAX(key_name) AS key_name, model, provider, tags, \
                 SUM(requests) AS requests, SUM(prompt_tokens) AS prompt_tokens, \
                 SUM(completion_tokens) AS completion_tokens, SUM(cost_usd) AS cost_usd \
                 FROM usage WHERE minute_ms >= ? AND minute_ms < ? GROUP BY key_id, model, provider, tags",
                vec![SqlStorageValue::Integer(from), SqlStorageValue::Integer(to)],
            )?
            .to_array()?;
        Ok(rows
            .into_iter()
            .map(|r| UsageRow {
                minute_ms: r.minute_ms.max(0) as u64,
                key_id: r.key_id,
                key_name: r.key_name,
                model: r.model,
                provider: r.provider,
                tags: r.tags,
                requests: r.requests.max(0) as u64,
                prompt_tokens: r.prompt_tokens.max(0) as u64,
                completion_tokens: r.completion_tokens.max(0) as u64,
                cost_usd: r.cost_usd,
                call_id: String::new(),
            })
            .collect())
    }
}

fn stub(env: &Env, instance: &str) -> Result<worker::Stub> {
    env.durable_object(BINDING)?.id_from_name(instance)?.get_stub()
}

async fn send<T: Serialize>(env: &Env, instance: &str, method: Method, path: &str, body: &T) -> Result<Response> {
    let mut init = RequestInit::new();
    init.with_method(method).with_body(Some(serde_json::to_string(body)?.into()));
    let response = stub(env, instance)?
        .fetch_with_request(Request::new_with_init(&format!("https://ledger{path}"), &init)?)
        .await?;
    if response.status_code() >= 400 {
        return Err(worker::Error::RustError(format!("ledger {instance}{path}: status {}", response.status_code())));
    }
    Ok(response)
}

/// Asks `instance` to take on a call (`hold`: keep what it holds until settled).
pub async fn admit(env: &Env, instance: &str, admit: &Admit, hold: bool) -> Result<Answer> {
    send(env, instance, Method::Post, if hold { "/admit" } else { "/take" }, admit).await?.json().await
}

/// Sends `instance` the calls that ended (see `outbox`).
pub async fn settle(env: &Env, instance: &str, batch: &Batch) -> Result<()> {
    send(env, instance, Method::Post, "/settle", batch).await.map(drop)
}

pub async fn put_record(env: &Env, record: &KeyRecord) -> Result<()> {
    send(env, &record.id, Method::Put, "/record", record).await.map(drop)
}

pub async fn get_record(env: &Env, id: &str) -> Result<Option<KeyRecord>> {
    let mut response = stub(env, id)?.fetch_with_str("https://ledger/record").await?;
    match response.status_code() {
        200 => response.json().await.map(Some),
        _ => Ok(None),
    }
}

pub async fn usage(env: &Env, from_ms: u64, to_ms: u64) -> Result<Vec<UsageRow>> {
    let url = format!("https://ledger/usage?from={from_ms}&to={to_ms}");
    stub(env, GATEWAY)?.fetch_with_str(&url).await?.json().await
}
