//! The `Ledger` Durable Object: the spend, rate-limit buckets and calls in flight of one scope
//! (one instance a key, `gateway` for the whole gateway, `target:<provider/model>` for a
//! vendor's own limits), kept in SQLite. An instance handles one request at a time, so a cap
//! holds however many calls arrive together. The arithmetic is `switchyard_core::ledger`'s, the
//! once-only settlement and the holds' expiry `switchyard_core::settlement`'s.
//!
//! - `POST /admit` (`Admit`): takes on a call or refuses it; for a key, its stored record (the
//!   authoritative one: a revocation here is seen at once everywhere) is checked first. The
//!   call's hold is kept under the call's id until its own expiry (`ttl_ms` from now); a call
//!   whose id is known already (settled: given up by its isolate; or admitted) gets a 409;
//! - `POST /lease` (`LeaseAsk`): an isolate's lease, new or refreshed (`switchyard_core::lease`):
//!   its use counted, its slice of the caps and rate limits set anew, the key's record checked
//!   (a revoked key's lease is `Denied`); leases not refreshed are freed after their expiry;
//! - `POST /take`: the same for a target's rate limits, holding nothing;
//! - `POST /settle` (`Batch`): calls that ended: each hold settled at the call's real cost and
//!   tokens, or released if the call failed; and usage rows, for the `gateway` instance, which
//!   keeps every key's usage. Each settlement and usage row is applied once, however often the
//!   batch is sent (`Outcome` says what was done);
//! - `POST /renew` (`Renew`): calls still running; their holds' expiry moves on (`Renewed`);
//! - `PUT /record`, `GET /record`: a key's record, as the admin API last wrote it (404: none);
//! - `GET /usage?from=&to=`: usage rows in a time range (ms since the epoch).
//!
//! A batch is applied in one go: everything that can fail for a reason other than storage (the
//! body, the rows read, their decoding, the arithmetic, the scope's encoding) is done before
//! the first write, and the writes follow one another with no `await` between them. Each SQLite
//! statement is atomic, and the runtime commits the writes of one event together (its implicit
//! transaction, released by the output gate: should the commit fail, the answer is replaced by
//! an error and the object restarts, and the sender sends the batch again). What this does not
//! cover is a statement failing mid-way through the writes (worker 0.8.7 binds no
//! `transactionSync` to roll back): the scope is written first, so that such a failure errs
//! towards counting a cost again, never towards a reservation that is never freed.

use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use switchyard_core::keys::KeyRecord;
use switchyard_core::lease::{self, LeaseAnswer, LeaseAsk, LeaseState};
use switchyard_core::ledger::{Scope, UsageRow};
use switchyard_core::ledger_protocol::RecordStatus;
use switchyard_core::settlement::{self, Book, Changes, Held};
use switchyard_core::GatewayError;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

pub use switchyard_core::ledger_protocol::{Admit, Answer, Batch, Outcome, Renew};

pub const BINDING: &str = "LEDGER";
/// The instance of the whole gateway: its caps and every key's usage.
pub const GATEWAY: &str = "gateway";
/// The longest the worker waits for an instance's answer: one that hangs must not hold the
/// client (or the outbox) for ever.
pub const TIMEOUT_MS: u64 = 5_000;

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
    // The settlements and usage rows applied, by id, for `settlement::SETTLED_KEEP_MS`.
    "CREATE TABLE IF NOT EXISTS settled (id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS settled_at ON settled (at_ms)",
    // Isolates' leases (`switchyard_core::lease`): `reserved` > 0 while the account holds some
    // of the scope's budget for it.
    "CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, state TEXT NOT NULL, until_ms INTEGER NOT NULL, \
     reserved REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS leases_until ON leases (until_ms)",
];

/// Columns added to tables that deployed instances already have: each is added once (a second
/// time fails with "duplicate column", which is what an instance that has it answers). Rows
/// written before have it NULL: a hold without `until_ms` expires `HOLD_TTL_MS` after `at_ms`.
const MIGRATIONS: &[&str] = &["ALTER TABLE holds ADD COLUMN until_ms INTEGER"];

impl DurableObject for Ledger {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for statement in SCHEMA {
            if let Err(e) = sql.exec(statement, None) {
                worker::console_error!("ledger: cannot create its tables: {e}");
            }
        }
        for statement in MIGRATIONS {
            match sql.exec(statement, None) {
                Err(e) if !e.to_string().contains("duplicate column") => {
                    worker::console_error!("ledger: cannot migrate its tables ({statement}): {e}");
                }
                _ => {}
            }
        }
        Self { sql, env, scope: RefCell::new(None), record: RefCell::new(None), swept_ms: std::cell::Cell::new(0) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let now = worker::Date::now().as_millis();
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/admit") => {
                let admit: Admit = req.json().await?;
                if self.known(&admit)? {
                    return Response::error("call already admitted or settled", 409);
                }
                Response::from_json(&self.admit(admit, true, now)?)
            }
            (Method::Post, "/lease") => {
                let ask: LeaseAsk = req.json().await?;
                Response::from_json(&self.lease(ask, now)?)
            }
            (Method::Post, "/take") => {
                let admit: Admit = req.json().await?;
                Response::from_json(&self.admit(admit, false, now)?)
            }
            (Method::Post, "/settle") => {
                let batch: Batch = req.json().await?;
                self.release_stale(now)?;
                let outcome = self.settle(&batch, now)?;
                if outcome.late > 0 {
                    worker::console_error!(
                        "ledger: {} settlements ended more than {} min ago, not applied",
                        outcome.late,
                        settlement::LATE_LIMIT_MS / 60_000
                    );
                }
                Response::from_json(&outcome)
            }
            (Method::Post, "/renew") => {
                let renew: Renew = req.json().await?;
                Response::from_json(&settlement::renew(&mut SqlBook(&self.sql), &renew, now)?)
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
    #[serde(default)]
    id: String,
    hold: String,
    limits: String,
    #[serde(default)]
    until_ms: Option<i64>,
}

impl HoldRow {
    fn held(&self) -> Option<Held> {
        let decoded = serde_json::from_str(&self.hold).and_then(|hold| Ok((hold, serde_json::from_str(&self.limits)?)));
        match decoded {
            Ok((hold, limits)) => Some(Held::stored(hold, limits, self.until_ms.map(|ms| ms.max(0) as u64))),
            Err(e) => {
                worker::console_error!("ledger: hold {} cannot be read: {e}", self.id);
                None
            }
        }
    }
}

/// The instance's SQLite tables as a `settlement::Book`.
struct SqlBook<'a>(&'a SqlStorage);

impl Book for SqlBook<'_> {
    type Error = worker::Error;

    fn held(&mut self, id: &str) -> Result<Option<Held>> {
        let rows: Vec<HoldRow> = self
            .0
            .exec(
                "SELECT id, hold, limits, until_ms FROM holds WHERE id = ?",
                vec![SqlStorageValue::String(id.to_owned())],
            )?
            .to_array()?;
        Ok(rows.first().and_then(HoldRow::held))
    }

    fn holds(&mut self) -> Result<Vec<(String, Held)>> {
        let rows: Vec<HoldRow> = self.0.exec("SELECT id, hold, limits, until_ms FROM holds", None)?.to_array()?;
        Ok(rows.iter().filter_map(|row| Some((row.id.clone(), row.held()?))).collect())
    }

    fn applied(&mut self, id: &str) -> Result<bool> {
        #[derive(Deserialize)]
        struct One {
            #[allow(dead_code)]
            one: i64,
        }
        let rows: Vec<One> = self
            .0
            .exec("SELECT 1 AS one FROM settled WHERE id = ?", vec![SqlStorageValue::String(id.to_owned())])?
            .to_array()?;
        Ok(!rows.is_empty())
    }

    /// The scope first (see the module's note on what a failure mid-way leaves), then the rest.
    fn write(&mut self, changes: &Changes<'_>) -> Result<()> {
        let scope = changes.scope.as_ref().map(serde_json::to_string).transpose()?;
        let now = SqlStorageValue::Integer(changes.now_ms as i64);
        if let Some(scope) = scope {
            write_scope(self.0, scope)?;
        }
        for id in &changes.freed {
            self.0.exec("DELETE FROM holds WHERE id = ?", vec![SqlStorageValue::String(id.clone())])?;
        }
        for id in &changes.applied {
            self.0.exec(
                "INSERT INTO settled (id, at_ms) VALUES (?, ?) ON CONFLICT(id) DO NOTHING",
                vec![SqlStorageValue::String(id.clone()), now.clone()],
            )?;
        }
        for row in &changes.usage {
            add_usage(self.0, row)?;
        }
        for (id, until_ms) in &changes.renewed {
            self.0.exec(
                "UPDATE holds SET until_ms = ? WHERE id = ?",
                vec![SqlStorageValue::Integer(*until_ms as i64), SqlStorageValue::String(id.clone())],
            )?;
        }
        if let Some(before) = changes.forget_before_ms {
            self.0.exec("DELETE FROM settled WHERE at_ms < ?", vec![SqlStorageValue::Integer(before as i64)])?;
        }
        Ok(())
    }
}

fn write_scope(sql: &SqlStorage, state: String) -> Result<()> {
    sql.exec(
        "INSERT INTO scope (id, state) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state",
        vec![SqlStorageValue::String(state)],
    )?;
    Ok(())
}

fn add_usage(sql: &SqlStorage, row: &UsageRow) -> Result<()> {
    sql.exec(
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

    /// The scope as stored (a copy: the cache changes only once the change is stored).
    fn scope(&self) -> Result<Scope> {
        if let Some(scope) = self.scope.borrow().as_ref() {
            return Ok(scope.clone());
        }
        let rows: Vec<Text> = self.sql.exec("SELECT state AS text FROM scope WHERE id = 1", None)?.to_array()?;
        let scope: Scope = rows.first().and_then(|row| serde_json::from_str(&row.text).ok()).unwrap_or_default();
        *self.scope.borrow_mut() = Some(scope.clone());
        Ok(scope)
    }

    /// Runs `f` on the scope and stores what it became. On an error, the cached copy is dropped
    /// (read again from storage next time), whatever part of the change was stored.
    fn with_scope<T>(&self, f: impl FnOnce(&mut Scope) -> Result<T>) -> Result<T> {
        let mut scope = self.scope()?;
        match f(&mut scope) {
            Ok(result) => {
                *self.scope.borrow_mut() = Some(scope);
                Ok(result)
            }
            Err(e) => {
                *self.scope.borrow_mut() = None;
                Err(e)
            }
        }
    }

    /// Whether the call is known here already: settled (or released) before its admission
    /// arrived (its isolate gave up waiting for the answer), or admitted before (the same
    /// admission twice must not hold twice).
    fn known(&self, admit: &Admit) -> Result<bool> {
        let Some(id) = &admit.hold_id else { return Ok(false) };
        let mut book = SqlBook(&self.sql);
        Ok(book.applied(id)? || book.held(id)?.is_some())
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
        let until_ms = settlement::hold_until(now, admit.ttl_ms);
        let hold_id = admit.hold_id.unwrap_or_else(crate::http::request_id);
        self.with_scope(|scope| {
            let admitted = scope.admit(&ask, now);
            let state = serde_json::to_string(scope)?;
            let admitted = match admitted {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    write_scope(&self.sql, state)?;
                    return Ok(Answer::Refused { refusal });
                }
            };
            // A hold matters only when there is something to give back: a reservation or tokens.
            if !hold || (admitted.hold.reservation.is_empty() && ask.limits.tpm.is_none()) {
                write_scope(&self.sql, state)?;
                return Ok(Answer::Admitted { hold_id: None, admitted, until_ms: None });
            }
            let (hold_json, limits_json) =
                (serde_json::to_string(&admitted.hold)?, serde_json::to_string(&ask.limits)?);
            // The hold before the scope: should the second write fail, a hold that frees a little
            // too much, rather than a reservation that nothing ever frees.
            self.sql.exec(
                "INSERT INTO holds (id, hold, limits, at_ms, until_ms) VALUES (?, ?, ?, ?, ?)",
                vec![
                    SqlStorageValue::String(hold_id.clone()),
                    SqlStorageValue::String(hold_json),
                    SqlStorageValue::String(limits_json),
                    SqlStorageValue::Integer(now as i64),
                    SqlStorageValue::Integer(until_ms as i64),
                ],
            )?;
            write_scope(&self.sql, state)?;
            Ok(Answer::Admitted { hold_id: Some(hold_id), admitted, until_ms: Some(until_ms) })
        })
    }

    /// An isolate's lease, asked for or refreshed (see `switchyard_core::lease`). The key's
    /// record is checked first, as for an admission; leases whose isolates stopped refreshing
    /// them are freed before the headroom is shared out.
    fn lease(&self, mut ask: LeaseAsk, now: u64) -> Result<LeaseAnswer> {
        self.free_stale_leases(now)?;
        let mut denied = None;
        if let Some(record) = self.record()?.or(ask.record.take()) {
            let config = crate::config::current(&self.env).map_err(|e| worker::Error::RustError(e.to_string()))?;
            let models: Vec<&str> = ask.models.iter().map(String::as_str).collect();
            if record.check(&config, &models, now).is_err() {
                // Refused: the lease's use is still counted, and what its calls in flight hold
                // kept, but nothing more is granted.
                ask.need = Default::default();
                ask.want = Default::default();
                denied = Some(Box::new(record.clone()));
            }
            ask.caps = record.policy.budgets.clone();
            ask.limits = record.policy.rate_limits;
            ask.record = Some(record);
        }
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        let stored: Vec<Text> = self
            .sql
            .exec("SELECT state AS text FROM leases WHERE id = ?", vec![SqlStorageValue::String(ask.lease_id.clone())])?
            .to_array()?;
        let state: Option<LeaseState> = stored.first().and_then(|row| serde_json::from_str(&row.text).ok());
        let live: Vec<Count> = self
            .sql
            .exec(
                "SELECT COUNT(*) AS n FROM leases WHERE until_ms >= ? AND id != ?",
                vec![
                    SqlStorageValue::Integer(now.saturating_sub(lease::LEASE_GRACE_MS) as i64),
                    SqlStorageValue::String(ask.lease_id.clone()),
                ],
            )?
            .to_array()?;
        let live = live.first().map_or(0, |c| c.n.max(0) as usize);
        self.with_scope(|scope| {
            let (state, refused) = lease::refresh(scope, state, &ask, live, now);
            let (state_json, scope_json) = (serde_json::to_string(&state)?, serde_json::to_string(scope)?);
            // The scope first (see the module's note on what a failure mid-way leaves).
            write_scope(&self.sql, scope_json)?;
            self.sql.exec(
                "INSERT INTO leases (id, state, until_ms, reserved) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET \
                 state = excluded.state, until_ms = excluded.until_ms, reserved = excluded.reserved",
                vec![
                    SqlStorageValue::String(ask.lease_id.clone()),
                    SqlStorageValue::String(state_json),
                    SqlStorageValue::Integer(state.grant.until_ms as i64),
                    SqlStorageValue::Float(state.reserved_usd),
                ],
            )?;
            Ok(match denied {
                Some(record) => LeaseAnswer::Denied { record },
                None => LeaseAnswer::Granted { grant: Box::new(state.grant), refused },
            })
        })
    }

    /// Leases past their expiry and grace give their reservations back; those past keeping
    /// are forgotten.
    fn free_stale_leases(&self, now: u64) -> Result<()> {
        #[derive(Deserialize)]
        struct Row {
            id: String,
            state: String,
        }
        let stale_before = now.saturating_sub(lease::LEASE_GRACE_MS) as i64;
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT id, state FROM leases WHERE reserved > 0 AND until_ms < ?",
                vec![SqlStorageValue::Integer(stale_before)],
            )?
            .to_array()?;
        if !rows.is_empty() {
            self.with_scope(|scope| {
                let mut freed = Vec::with_capacity(rows.len());
                for row in &rows {
                    let Ok(mut state) = serde_json::from_str::<LeaseState>(&row.state) else { continue };
                    lease::free(scope, &mut state, now);
                    freed.push((row.id.clone(), serde_json::to_string(&state)?));
                }
                write_scope(&self.sql, serde_json::to_string(scope)?)?;
                for (id, state) in freed {
                    self.sql.exec(
                        "UPDATE leases SET state = ?, reserved = 0 WHERE id = ?",
                        vec![SqlStorageValue::String(state), SqlStorageValue::String(id)],
                    )?;
                }
                Ok(())
            })?;
        }
        if now.saturating_sub(self.swept_ms.get()) >= 60_000 {
            let forget_before = now.saturating_sub(lease::LEASE_KEEP_MS) as i64;
            self.sql.exec("DELETE FROM leases WHERE until_ms < ?", vec![SqlStorageValue::Integer(forget_before)])?;
        }
        Ok(())
    }

    /// Applies a batch once (see `settlement::apply`).
    fn settle(&self, batch: &Batch, now: u64) -> Result<Outcome> {
        self.with_scope(|scope| settlement::apply(&mut SqlBook(&self.sql), scope, batch, now))
    }

    /// Holds of calls whose end never came by their own expiry (their isolate died) are
    /// released, and applied ids past their keeping forgotten; looked for once a minute at most.
    fn release_stale(&self, now: u64) -> Result<()> {
        if now.saturating_sub(self.swept_ms.get()) < 60_000 {
            return Ok(());
        }
        self.swept_ms.set(now);
        self.roll_up_usage(now)?;
        self.with_scope(|scope| settlement::sweep(&mut SqlBook(&self.sql), scope, now)).map(drop)
    }

    /// Usage rows are kept by the minute for `MINUTE_ROWS_MS`, then by the hour until
    /// `HOUR_ROWS_MS`, then by the day, so that an instance's storage does not grow with every
    /// minute of traffic. Each step is two statements with no `await` between them: one event's
    /// writes, committed together.
    fn roll_up_usage(&self, now: u64) -> Result<()> {
        const MINUTE_ROWS_MS: u64 = 7 * 24 * 3_600_000;
        const HOUR_ROWS_MS: u64 = 90 * 24 * 3_600_000;
        for (older_than_ms, unit_ms) in [(MINUTE_ROWS_MS, 3_600_000u64), (HOUR_ROWS_MS, 86_400_000u64)] {
            let before = SqlStorageValue::Integer(now.saturating_sub(older_than_ms) as i64);
            let unit = SqlStorageValue::Integer(unit_ms as i64);
            self.sql.exec(
                "INSERT INTO usage (minute_ms, key_id, key_name, model, provider, tags, requests, prompt_tokens, \
                 completion_tokens, cost_usd) \
                 SELECT (minute_ms / ?1) * ?1 AS at, key_id, MAX(key_name), model, provider, tags, SUM(requests), \
                 SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd) FROM usage \
                 WHERE minute_ms < ?2 AND minute_ms % ?1 != 0 GROUP BY at, key_id, model, provider, tags \
                 ON CONFLICT(minute_ms, key_id, model, provider, tags) DO UPDATE SET \
                 requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens, \
                 completion_tokens = completion_tokens + excluded.completion_tokens, \
                 cost_usd = cost_usd + excluded.cost_usd",
                vec![unit.clone(), before.clone()],
            )?;
            self.sql.exec("DELETE FROM usage WHERE minute_ms < ?2 AND minute_ms % ?1 != 0", vec![unit, before])?;
        }
        Ok(())
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

/// `call`'s outcome, or an error once `TIMEOUT_MS` passed without one (the instance may still
/// carry the request out: what it takes on under a call's id, the caller can still release).
async fn bounded<T>(instance: &str, path: &str, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    bounded_by(TIMEOUT_MS, instance, path, call).await
}

async fn bounded_by<T>(
    timeout_ms: u64,
    instance: &str,
    path: &str,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    crate::upstream::within(timeout_ms, call).await.unwrap_or_else(|| {
        Err(worker::Error::RustError(format!("ledger {instance}{path}: no answer within {timeout_ms} ms")))
    })
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

/// Sends `body` and reads the answer, within `TIMEOUT_MS`.
async fn ask<T: Serialize, A: serde::de::DeserializeOwned>(
    env: &Env,
    instance: &str,
    method: Method,
    path: &str,
    body: &T,
) -> Result<A> {
    bounded(instance, path, async { send(env, instance, method, path, body).await?.json().await }).await
}

/// Asks `instance` for a lease, or refreshes one (see `leases`).
pub async fn lease(env: &Env, instance: &str, asked: &LeaseAsk) -> Result<LeaseAnswer> {
    bounded_by(lease::ASK_TIMEOUT_MS, instance, "/lease", async {
        send(env, instance, Method::Post, "/lease", asked).await?.json().await
    })
    .await
}

/// Sends `instance` the calls that ended (see `outbox`).
pub async fn settle(env: &Env, instance: &str, batch: &Batch) -> Result<Outcome> {
    ask(env, instance, Method::Post, "/settle", batch).await
}

pub async fn put_record(env: &Env, record: &KeyRecord) -> Result<()> {
    let _: KeyRecord = ask(env, &record.id, Method::Put, "/record", record).await?;
    Ok(())
}

/// A key's record as its instance has it; `None` only when the instance says it has none (404):
/// any other answer, or none in time, is an error, never a reason to trust an older copy.
pub async fn get_record(env: &Env, id: &str) -> Result<Option<KeyRecord>> {
    bounded(id, "/record", async {
        let mut response = stub(env, id)?.fetch_with_str("https://ledger/record").await?;
        match RecordStatus::of(response.status_code()) {
            RecordStatus::Found => response.json().await.map(Some),
            RecordStatus::NoRecord => Ok(None),
            RecordStatus::Failed => {
                Err(worker::Error::RustError(format!("ledger {id}/record: status {}", response.status_code())))
            }
        }
    })
    .await
}

/// Usage rows in a time range, from every instance that keeps them (asked at once).
pub async fn usage(env: &Env, from_ms: u64, to_ms: u64) -> Result<Vec<UsageRow>> {
    let path = format!("/usage?from={from_ms}&to={to_ms}");
    let instances = switchyard_core::ledger_protocol::usage_instances();
    let shards = futures::future::join_all(instances.iter().map(|instance| {
        let path = &path;
        bounded(instance, path, async move {
            let mut response = stub(env, instance)?.fetch_with_str(&format!("https://ledger{path}")).await?;
            if response.status_code() != 200 {
                return Err(worker::Error::RustError(format!(
                    "ledger {instance}{path}: status {}",
                    response.status_code()
                )));
            }
            response.json::<Vec<UsageRow>>().await
        })
    }))
    .await;
    let mut rows = Vec::new();
    for shard in shards {
        rows.extend(shard?);
    }
    Ok(rows)
}

/// The client's answer when a ledger cannot be asked (an error status, an answer that cannot
/// be read, none in time): 503, to be tried again shortly. The key's record, its rate limits
/// and budgets are all there: without it the request can be neither checked nor admitted.
pub fn unavailable(e: impl std::fmt::Display) -> GatewayError {
    worker::console_error!("ledger unavailable: {e}");
    GatewayError::new(
        503,
        "server_error",
        "ledger_unavailable",
        "The ledger that holds this key's record and budgets cannot be reached; try again shortly.",
    )
}
