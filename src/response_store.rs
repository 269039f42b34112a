//! The `ResponseStore` Durable Object: one instance a stored response (named by its id), so
//! that stored responses spread over as many objects as there are responses, and a chain read
//! right after it was written reads what was written (a response's `previous_response_id` is
//! often the one just made, from the same client).
//!
//! - `PUT /` with a `StoredResponse`: keeps it until its `expires_at_ms` (an alarm deletes it);
//! - `GET /`: the record, or 404;
//! - `DELETE /`: forgets it.
//!
//! The record is kept as JSON in SQLite, cut into rows below the row size limit.
//!
//! A key's quota of stored responses is one more instance, `quota:<key id>`, which lists the
//! key's stored responses (id, size, expiry) and answers what they come to:
//! - `POST /quota/add` with a `Kept`: counts one more (or again, for an id it has);
//! - `POST /quota/remove` with `{"id"}`: counts it no more;
//! - `GET /quota`: the key's `QuotaUse`, expired responses left out.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, SqlStorage, State};

pub const BINDING: &str = "RESPONSES";

/// How long a stored response is kept (OpenAI keeps them 30 days).
pub const TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// The most a record may hold (its conversation included): a longer chain is answered, but not
/// stored, and said so in the log.
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// SQLite rows hold at most 2 MB: the record is cut into parts of this many bytes.
const PART_BYTES: usize = 1024 * 1024;

/// A response as the gateway keeps it.
#[derive(Serialize, Deserialize)]
pub struct StoredResponse {
    /// The gateway key that made it: no other key sees it.
    pub owner: String,
    pub expires_at_ms: u64,
    /// The Response object as the client got it.
    pub response: Value,
    /// Its own input, as input items (`GET /v1/responses/{id}/input_items`).
    pub input_items: Vec<Value>,
    /// The whole conversation up to and including this response's output, as items: what a
    /// response that continues it (`previous_response_id`) is sent before its own input.
    pub history: Vec<Value>,
    /// The provider whose vendor keeps this response too (a pass-through with `store`
    /// forwarded): a continuation sent there names it by id, and its deletion goes there too.
    #[serde(default)]
    pub held_by: Option<String>,
}

#[durable_object]
pub struct ResponseStore {
    state: State,
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct Part {
    part: String,
}

/// The most stored responses a key may have, by default (the `STORED_RESPONSES_PER_KEY` var
/// replaces it).
pub const DEFAULT_MAX_PER_KEY: u64 = 10_000;
/// The most bytes a key's stored responses may hold together, by default, in MiB (the
/// `STORED_RESPONSE_MIB_PER_KEY` var replaces it).
pub const DEFAULT_MAX_MIB_PER_KEY: u64 = 1024;

/// A stored response, as its key's quota counts it.
#[derive(Serialize, Deserialize)]
pub struct Kept {
    pub id: String,
    pub bytes: u64,
    pub expires_at_ms: u64,
}

/// What a key's stored responses come to.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct QuotaUse {
    pub count: u64,
    pub bytes: u64,
}

#[derive(Deserialize)]
struct Forgotten {
    id: String,
}

impl DurableObject for ResponseStore {
    fn new(state: State, _env: Env) -> Self {
        // The table is made by the first write: a read of an id never written stores nothing.
        Self { sql: state.storage().sql(), state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path().starts_with("/quota") {
            return self.quota(req).await;
        }
        match req.method() {
            Method::Put => {
                let text = req.text().await?;
                let record: StoredResponse = serde_json::from_str(&text)?;
                self.sql.exec("CREATE TABLE IF NOT EXISTS parts (n INTEGER PRIMARY KEY, part TEXT NOT NULL)", None)?;
                self.sql.exec("DELETE FROM parts", None)?;
                for (n, part) in parts(&text).enumerate() {
                    self.sql.exec("INSERT INTO parts (n, part) VALUES (?, ?)", vec![(n as i64).into(), part.into()])?;
                }
                let left = record.expires_at_ms.saturating_sub(worker::Date::now().as_millis());
                self.state.storage().set_alarm(left.min(i64::MAX as u64) as i64).await?;
                Response::empty()
            }
            Method::Get => {
                let parts = self.parts("SELECT part FROM parts ORDER BY n");
                if parts.is_empty() {
                    return Response::error("not found", 404);
                }
                let text: String = parts.into_iter().map(|p| p.part).collect();
                let record: StoredResponse = serde_json::from_str(&text)?;
                if record.expires_at_ms <= worker::Date::now().as_millis() {
                    return Response::error("not found", 404);
                }
                Response::ok(text)
            }
            Method::Delete => {
                if self.parts("SELECT part FROM parts LIMIT 1").is_empty() {
                    return Response::error("not found", 404);
                }
                self.forget().await?;
                Response::empty()
            }
            _ => Response::error("method not allowed", 405),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        self.forget().await?;
        Response::empty()
    }
}

impl ResponseStore {
    /// A key's quota instance: its stored responses, counted.
    async fn quota(&self, mut req: Request) -> Result<Response> {
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS kept (id TEXT PRIMARY KEY, bytes INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL)",
            None,
        )?;
        let now = worker::Date::now().as_millis() as i64;
        self.sql.exec("DELETE FROM kept WHERE expires_at_ms <= ?", vec![now.into()])?;
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/quota/add") => {
                let kept: Kept = req.json().await?;
                self.sql.exec(
                    "INSERT OR REPLACE INTO kept (id, bytes, expires_at_ms) VALUES (?, ?, ?)",
                    vec![kept.id.into(), (kept.bytes as i64).into(), (kept.expires_at_ms as i64).into()],
                )?;
            }
            (Method::Post, "/quota/remove") => {
                let forgotten: Forgotten = req.json().await?;
                self.sql.exec("DELETE FROM kept WHERE id = ?", vec![forgotten.id.into()])?;
            }
            (Method::Get, "/quota") => {}
            _ => return Response::error("not found", 404),
        }
        let used: Vec<QuotaUse> =
            self.sql.exec("SELECT COUNT(*) AS count, COALESCE(SUM(bytes), 0) AS bytes FROM kept", None)?.to_array()?;
        Response::from_json(&used.first().copied().unwrap_or_default())
    }

    /// The rows a query finds; none when nothing was ever written here (no table).
    fn parts(&self, query: &str) -> Vec<Part> {
        self.sql.exec(query, None).and_then(|cursor| cursor.to_array()).unwrap_or_default()
    }

    /// Drops the record (the table stays, for a later request to this instance).
    async fn forget(&self) -> Result<()> {
        self.sql.exec("DELETE FROM parts", None)?;
        self.state.storage().delete_alarm().await
    }
}

/// `text` cut into parts of at most `PART_BYTES`, at character boundaries.
fn parts(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(PART_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (part, tail) = rest.split_at(end);
        rest = tail;
        Some(part.to_owned())
    })
}

fn stub(env: &Env, id: &str) -> Result<worker::Stub> {
    env.durable_object(BINDING)?.id_from_name(id)?.get_stub()
}

/// The stored response `id`, if there is one.
pub async fn get(env: &Env, id: &str) -> Result<Option<StoredResponse>> {
    let mut response = stub(env, id)?.fetch_with_str("https://responses/").await?;
    if response.status_code() == 404 {
        return Ok(None);
    }
    Ok(Some(response.json().await?))
}

/// Keeps `record` as the response `id`, and counts it in its key's quota.
pub async fn put(env: &Env, id: &str, record: &StoredResponse) -> Result<()> {
    let body = serde_json::to_string(record)?;
    if body.len() > MAX_RECORD_BYTES {
        worker::console_error!("response store: {id} is {} bytes, over {MAX_RECORD_BYTES}: not stored", body.len());
        return Ok(());
    }
    let kept = Kept { id: id.to_owned(), bytes: body.len() as u64, expires_at_ms: record.expires_at_ms };
    let used = quota_call(env, &record.owner, "/quota/add", Some(serde_json::to_string(&kept)?)).await?;
    remember(&record.owner, used);
    let mut init = RequestInit::new();
    init.with_method(Method::Put).with_body(Some(body.into()));
    let response = stub(env, id)?.fetch_with_request(Request::new_with_init("https://responses/", &init)?).await?;
    if response.status_code() >= 300 {
        worker::console_error!("response store: storing {id} failed with {}", response.status_code());
    }
    Ok(())
}

/// Forgets the response `id`; whether there was one.
pub async fn delete(env: &Env, id: &str) -> Result<bool> {
    let mut init = RequestInit::new();
    init.with_method(Method::Delete);
    let response = stub(env, id)?.fetch_with_request(Request::new_with_init("https://responses/", &init)?).await?;
    Ok(response.status_code() < 300)
}

/// A key's quota limits: the vars', else the defaults.
pub fn limits(env: &Env) -> QuotaUse {
    let var = |name: &str| env.var(name).ok().and_then(|v| v.to_string().trim().parse::<u64>().ok());
    QuotaUse {
        count: var("STORED_RESPONSES_PER_KEY").unwrap_or(DEFAULT_MAX_PER_KEY),
        bytes: var("STORED_RESPONSE_MIB_PER_KEY").unwrap_or(DEFAULT_MAX_MIB_PER_KEY).saturating_mul(1024 * 1024),
    }
}

/// How long this isolate trusts what it last heard of a key's quota use: a key may go over its
/// quota by what it stores in that time from every edge at once.
const QUOTA_FRESH_MS: u64 = 5_000;

thread_local! {
    /// Per key: its quota use as last heard, and when.
    static QUOTA_USE: std::cell::RefCell<std::collections::HashMap<String, (QuotaUse, u64)>> = Default::default();
}

fn remember(owner: &str, used: QuotaUse) {
    let now = worker::Date::now().as_millis();
    QUOTA_USE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() > 4_096 {
            cache.retain(|_, (_, at)| now.saturating_sub(*at) < QUOTA_FRESH_MS);
        }
        cache.insert(owner.to_owned(), (used, now));
    });
}

/// What the key `owner`'s stored responses come to: as heard within `QUOTA_FRESH_MS`, else
/// asked of its quota instance.
pub async fn quota_use(env: &Env, owner: &str) -> Result<QuotaUse> {
    let now = worker::Date::now().as_millis();
    let cached = QUOTA_USE.with(|cache| cache.borrow().get(owner).copied());
    if let Some((used, _)) = cached.filter(|(_, at)| now.saturating_sub(*at) < QUOTA_FRESH_MS) {
        return Ok(used);
    }
    let used = quota_call(env, owner, "/quota", None).await?;
    remember(owner, used);
    Ok(used)
}

/// Counts the response `id` of `owner` no more.
pub async fn forget_in_quota(env: &Env, owner: &str, id: &str) -> Result<()> {
    let body = serde_json::json!({ "id": id }).to_string();
    let used = quota_call(env, owner, "/quota/remove", Some(body)).await?;
    remember(owner, used);
    Ok(())
}

async fn quota_call(env: &Env, owner: &str, path: &str, body: Option<String>) -> Result<QuotaUse> {
    let mut init = RequestInit::new();
    if let Some(body) = body {
        init.with_method(Method::Post).with_body(Some(body.into()));
    }
    let url = format!("https://responses{path}");
    let mut response =
        stub(env, &format!("quota:{owner}"))?.fetch_with_request(Request::new_with_init(&url, &init)?).await?;
    if response.status_code() >= 300 {
        return Err(worker::Error::RustError(format!("quota instance answered {}", response.status_code())));
    }
    response.json().await
}
