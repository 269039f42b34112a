//! The `ProviderHealth` Durable Object: each target's record lives in SQLite in one of
//! `health::HEALTH_SHARDS` instances (`health::shard_of`, a stable hash of its name), so that every
//! isolate and every edge location sees the same health, and no one object takes every report.
//! The instance of a target grants its half-open probe: once across the world.
//!
//! - `POST /report` with a `Report` (the breaker policy and the outcomes of one request's
//!   attempts): folds the outcomes into the records;
//! - `POST /admit` with `{"target", "policy"}`: whether an attempt may go to a target now; a
//!   half-open breaker grants its single probe to the first asker, wherever it runs;
//! - `GET /snapshot`: every target's record, as JSON.

use switchyard_core::breaker::{Admission, BreakerPolicy};
use switchyard_core::health::{self, Report, TargetHealth};
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

pub const BINDING: &str = "HEALTH";

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

fn stub(env: &Env, instance: &str) -> Result<worker::Stub> {
    env.durable_object(BINDING)?.id_from_name(instance)?.get_stub()
}

/// Sends the outcomes of requests' attempts to the records: one message for each instance that
/// keeps one of their targets, at the same time. Runs after the response (`ctx.wait_until`); a
/// failure here is logged, never the client's problem.
pub async fn report(env: &Env, report: Report) {
    let sends = report.by_shard().into_iter().map(|(instance, part)| async move {
        let sent = async {
            let mut init = RequestInit::new();
            init.with_method(Method::Post).with_body(Some(serde_json::to_string(&part)?.into()));
            stub(env, &instance)?.fetch_with_request(Request::new_with_init("https://health/report", &init)?).await
        };
        if let Err(e) = sent.await {
            worker::console_error!("provider health {instance}: report failed: {e}");
        }
    });
    futures::future::join_all(sends).await;
}

/// The records one instance keeps.
pub async fn snapshot_of(env: &Env, instance: &str) -> Result<Vec<TargetHealth>> {
    stub(env, instance)?.fetch_with_str("https://health/snapshot").await?.json().await
}

/// A record as the admin API shows it: with the instance that keeps it.
#[derive(serde::Serialize)]
pub struct Kept {
    #[serde(flatten)]
    pub record: TargetHealth,
    pub shard: String,
}

/// Every target's record, from every instance at the same time, by target. For one release the
/// instance that kept them all before (`health::LEGACY_INSTANCE`) is read too: its record of a
/// target shows only where no shard has a newer one.
pub async fn snapshot_all(env: &Env) -> Result<Vec<Kept>> {
    let instances: Vec<String> =
        health::shards().into_iter().chain(std::iter::once(health::LEGACY_INSTANCE.to_owned())).collect();
    let read = futures::future::join_all(instances.iter().map(|instance| snapshot_of(env, instance))).await;
    let mut by_target: std::collections::BTreeMap<String, Kept> = std::collections::BTreeMap::new();
    for (instance, records) in instances.into_iter().zip(read) {
        let records = records.map_err(|e| worker::Error::RustError(format!("instance {instance}: {e}")))?;
        for record in records {
            let newer =
                by_target.get(&record.target).is_none_or(|kept| record.updated_at_ms > kept.record.updated_at_ms);
            if newer {
                by_target.insert(record.target.clone(), Kept { record, shard: instance.clone() });
            }
        }
    }
    Ok(by_target.into_values().collect())
}

/// Asks the instance that keeps `target`'s record whether an attempt may go to it now (used for
/// half-open probes: that instance grants the one probe across every isolate and location).
pub async fn admit(env: &Env, target: &str, policy: &BreakerPolicy) -> Result<Admission> {
    let mut init = RequestInit::new();
    let asked = AdmitRequest { target: target.to_owned(), policy: policy.clone() };
    init.with_method(Method::Post).with_body(Some(serde_json::to_string(&asked)?.into()));
    let request = Request::new_with_init("https://health/admit", &init)?;
    let answer: AdmitAnswer = stub(env, &health::shard_of(target))?.fetch_with_request(request).await?.json().await?;
    Ok(match (answer.admission.as_str(), answer.until_ms) {
        ("reject", Some(until_ms)) => Admission::Reject { until_ms },
        ("probe", _) => Admission::Probe,
        _ => Admission::Allow,
    })
}
