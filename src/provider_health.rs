//! The `ProviderHealth` Durable Object: one instance (named "global") keeps every target's
//! record in SQLite, so that every isolate and every edge location sees the same health.
//!
//! - `POST /report` with a `Report` (the breaker policy and the outcomes of one request's
//!   attempts): folds the outcomes into the records;
//! - `POST /admit` with `{"target", "policy"}`: whether an attempt may go to a target now; a
//!   half-open breaker grants its single probe to the first asker, wherever it runs;
//! - `GET /snapshot`: every target's record, as JSON.

use switchyard_core::breaker::{Admission, BreakerPolicy};
use switchyard_core::health::{Report, TargetHealth};
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

pub const BINDING: &str = "HEALTH";
pub const INSTANCE: &str = "global";

#[durable_object]
pub struct ProviderHealth {
    sql: SqlStorage,
}

impl DurableObject for ProviderHealth {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        // One row per target; the record is stored as JSON so that new fields need no migration.
        if let Err(e) =
            sql.exec("CREATE TABLE IF NOT EXISTS targets (target TEXT PRIMARY KEY, record TEXT NOT NULL)", None)
        {
            worker::console_error!("provider health: cannot create its table: {e}");
        }
        Self { sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/report") => {
                let report: Report = req.json().await?;
                // A report gathers many requests' outcomes (see the worker's outbox): each target's
                // record is read once, takes its outcomes in order, and is written once.
                let mut records: std::collections::BTreeMap<&str, TargetHealth> = std::collections::BTreeMap::new();
                let targets = report.outcomes.iter().map(|o| o.target.as_str());
                for target in targets.chain(report.completions.iter().map(|c| c.target.as_str())) {
                    if !records.contains_key(target) {
                        let record = self.load(target)?.unwrap_or_else(|| TargetHealth::new(target));
                        records.insert(target, record);
                    }
                }
                for outcome in &report.outcomes {
                    if let Some(record) = records.get_mut(outcome.target.as_str()) {
                        record.record(&report.policy, outcome);
                    }
                }
                for completion in &report.completions {
                    if let Some(record) = records.get_mut(completion.target.as_str()) {
                        record.complete(completion);
                    }
                }
                for record in records.values() {
                    self.save(record)?;
                }
                Response::from_json(&serde_json::json!({"recorded": report.outcomes.len() + report.completions.len()}))
            }
            (Method::Post, "/admit") => {
                let asked: AdmitRequest = req.json().await?;
                let mut record = self.load(&asked.target)?.unwrap_or_else(|| TargetHealth::new(&asked.target));
                let admission = record.admit(&asked.policy, worker::Date::now().as_millis());
                self.save(&record)?;
                Response::from_json(&AdmitAnswer::from(admission))
            }
            (Method::Get, "/snapshot") => Response::from_json(&self.snapshot()?),
            _ => Response::error("not found", 404),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AdmitRequest {
    target: String,
    policy: BreakerPolicy,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AdmitAnswer {
    /// `allow`, `probe` or `reject`
    admission: String,
    #[serde(default)]
    until_ms: Option<u64>,
}

impl From<Admission> for AdmitAnswer {
    fn from(admission: Admission) -> Self {
        let (name, until_ms) = match admission {
            Admission::Allow => ("allow", None),
            Admission::Probe => ("probe", None),
            Admission::Reject { until_ms } => ("reject", Some(until_ms)),
        };
        Self { admission: name.to_owned(), until_ms }
    }
}

#[derive(serde::Deserialize)]
struct Row {
    record: String,
}

impl ProviderHealth {
    fn load(&self, target: &str) -> Result<Option<TargetHealth>> {
        let rows: Vec<Row> = self
            .sql
            .exec("SELECT record FROM targets WHERE target = ?", vec![SqlStorageValue::String(target.to_owned())])?
            .to_array()?;
        Ok(rows.first().and_then(|row| serde_json::from_str(&row.record).ok()))
    }

    fn save(&self, record: &TargetHealth) -> Result<()> {
        let json = serde_json::to_string(record)?;
        self.sql.exec(
            "INSERT INTO targets (target, record) VALUES (?, ?) ON CONFLICT(target) DO UPDATE SET record = excluded.record",
            vec![SqlStorageValue::String(record.target.clone()), SqlStorageValue::String(json)],
        )?;
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<TargetHealth>> {
        let rows: Vec<Row> = self.sql.exec("SELECT record FROM targets ORDER BY target", None)?.to_array()?;
        Ok(rows.iter().filter_map(|row| serde_json::from_str(&row.record).ok()).collect())
    }
}

fn stub(env: &Env) -> Result<worker::Stub> {
    env.durable_object(BINDING)?.id_from_name(INSTANCE)?.get_stub()
}

/// Sends the outcomes of one request's attempts to the record. Runs after the response
/// (`ctx.wait_until`); a failure here is logged, never the client's problem.
pub async fn report(env: &Env, report: Report) {
    let sent = async {
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(serde_json::to_string(&report)?.into()));
        stub(env)?.fetch_with_request(Request::new_with_init("https://health/report", &init)?).await
    };
    if let Err(e) = sent.await {
        worker::console_error!("provider health: report failed: {e}");
    }
}

/// Every target's record.
pub async fn snapshot(env: &Env) -> Result<Response> {
    stub(env)?.fetch_with_str("https://health/snapshot").await
}

/// Every target's record, parsed.
pub async fn snapshot_records(env: &Env) -> Result<Vec<TargetHealth>> {
    snapshot(env).await?.json().await
}

/// Asks the shared record whether an attempt may go to `target` now (used for half-open probes).
pub async fn admit(env: &Env, target: &str, policy: &BreakerPolicy) -> Result<Admission> {
    let mut init = RequestInit::new();
    let asked = AdmitRequest { target: target.to_owned(), policy: policy.clone() };
    init.with_method(Method::Post).with_body(Some(serde_json::to_string(&asked)?.into()));
    let answer: AdmitAnswer =
        stub(env)?.fetch_with_request(Request::new_with_init("https://health/admit", &init)?).await?.json().await?;
    Ok(match (answer.admission.as_str(), answer.until_ms) {
        ("reject", Some(until_ms)) => Admission::Reject { until_ms },
        ("probe", _) => Admission::Probe,
        _ => Admission::Allow,
    })
}
