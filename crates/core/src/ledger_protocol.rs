//! The messages of the worker's `Ledger` Durable Object (one instance a key, one for the whole
//! gateway, one a target): what the worker asks and what an instance answers. New fields have
//! defaults, so that an instance and an isolate of different versions (during a deployment)
//! still understand each other. The settlement messages are `settlement`'s.

use crate::keys::KeyRecord;
use crate::ledger::{Admitted, Ask, Refusal};
use serde::{Deserialize, Serialize};

pub use crate::settlement::{Batch, Outcome, Renew, Renewed, Settle};

/// How many `Ledger` instances keep usage rows: a key's rows go to one of them, by its id, so
/// that no single instance takes every call's row.
pub const USAGE_SHARDS: u64 = 16;

/// The instance that keeps `key_id`'s usage rows.
pub fn usage_instance(key_id: &str) -> String {
    // FNV-1a: stable across versions and platforms (the instance a key's rows went to must not
    // move).
    let hash = key_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("usage:{}", hash % USAGE_SHARDS)
}

/// Every instance that may hold usage rows: the shards, and `gateway`, which kept them all before.
pub fn usage_instances() -> Vec<String> {
    (0..USAGE_SHARDS).map(|n| format!("usage:{n}")).chain(std::iter::once("gateway".to_owned())).collect()
}

/// `POST /admit` (take on a call, holding what it may cost) and `POST /take` (a target's rate
/// limits, holding nothing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Admit {
    pub ask: Ask,
    /// The key's record as the caller knows it; the instance's own, once the admin API wrote
    /// one, wins.
    #[serde(default)]
    pub record: Option<KeyRecord>,
    /// The models the call may use (names or aliases), checked against the key's policy.
    #[serde(default)]
    pub models: Vec<String>,
    /// The call's id, under which its hold is kept (none: the instance makes one up); the
    /// caller can release the hold by this id even when the answer never came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
    /// How long the hold lives without renewal (none: `HOLD_TTL_MS`): the call's own time limit
    /// and the grace for its settlement (see `settlement::hold_ttl_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Answer {
    Admitted {
        #[serde(default)]
        hold_id: Option<String>,
        admitted: Admitted,
        /// When the hold expires unless renewed (ms since the epoch).
        #[serde(default)]
        until_ms: Option<u64>,
    },
    Refused {
        refusal: Refusal,
    },
    /// The key's record refuses the call (revoked, expired, model not allowed).
    Denied {
        record: KeyRecord,
    },
}

/// What the status of `GET /record` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    /// 200: the record the admin API last wrote.
    Found,
    /// 404: the admin API never wrote one (a key made before records were kept there).
    NoRecord,
    /// Anything else (a 500, an overloaded object): the instance did not say, so whether the
    /// key was revoked is unknown; not a reason to trust an older copy.
    Failed,
}

impl RecordStatus {
    pub fn of(status: u16) -> Self {
        match status {
            200 => Self::Found,
            404 => Self::NoRecord,
            _ => Self::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Scope;

    #[test]
    fn a_keys_usage_goes_to_one_stable_shard_and_keys_spread_over_all() {
        assert_eq!(usage_instance("key_16628156a0af8d76b03c7fe0"), usage_instance("key_16628156a0af8d76b03c7fe0"));
        assert_eq!(usage_instance(""), format!("usage:{}", 0xcbf2_9ce4_8422_2325u64 % USAGE_SHARDS));
        let used: std::collections::BTreeSet<String> =
            (0..400).map(|i| usage_instance(&format!("key_{i:024x}"))).collect();
        assert_eq!(used.len() as u64, USAGE_SHARDS);
        assert!(usage_instances().iter().all(|i| i == "gateway" || used.contains(i)));
    }

    #[test]
    fn only_a_404_means_no_record() {
        assert_eq!(RecordStatus::of(200), RecordStatus::Found);
        assert_eq!(RecordStatus::of(404), RecordStatus::NoRecord);
        for status in [500, 503, 502, 429, 409, 400, 301, 204] {
            assert_eq!(RecordStatus::of(status), RecordStatus::Failed, "{status}");
        }
    }

    #[test]
    fn messages_of_the_previous_version_still_parse() {
        let admit: Admit = serde_json::from_str(r#"{"ask":{"amount_usd":0.1,"tokens":5},"models":["gpt"]}"#).unwrap();
        assert_eq!((admit.hold_id, admit.ttl_ms), (None, None));
        let admitted = Scope::default().admit(&Ask::default(), 0).unwrap();
        let old = serde_json::json!({"status": "admitted", "hold_id": "req_1", "admitted": admitted});
        let answer: Answer = serde_json::from_value(old).unwrap();
        assert!(matches!(answer, Answer::Admitted { until_ms: None, .. }));
        // And the new fields are left out when there is nothing to say.
        let sent = serde_json::to_value(Admit::default()).unwrap();
        assert!(sent.get("hold_id").is_none() && sent.get("ttl_ms").is_none());
    }
}
