//! Gateway keys and their policies: which models a key may use, what it may spend, how fast it
//! may call, until when, and the tags its usage is reported under.
//!
//! A key is `sy-` and 43 characters of base64url (256 random bits). It is shown once, when it is
//! created; only its SHA-256 is kept, and its id is derived from that hash, so that a presented
//! key finds its record in one lookup.

use crate::config::Config;
use crate::error::GatewayError;
use crate::ledger::Cap;
use crate::ratelimit::RateLimits;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// What every key begins with, so that a leaked one is recognised (by secret scanners too).
pub const PREFIX: &str = "sy-";

/// What a key may do. Empty `models` means every model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyPolicy {
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub budgets: Vec<Cap>,
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// Unix seconds; refused from then on.
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Where a key was made: by the admin API (kept in KV), or listed in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    #[default]
    Api,
    Config,
}

/// A key as stored and as the admin API shows it: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    #[serde(default = "object_name")]
    pub object: String,
    pub name: String,
    /// The key's prefix and last four characters, to tell keys apart.
    pub redacted_key: String,
    pub sha256: String,
    /// Unix seconds.
    pub created_at: u64,
    #[serde(default)]
    pub revoked_at: Option<u64>,
    #[serde(default)]
    pub source: Source,
    #[serde(flatten)]
    pub policy: KeyPolicy,
}

fn object_name() -> String {
    "gateway_key".to_owned()
}

/// A new key's text from 32 random bytes.
pub fn generate(random: &[u8; 32]) -> String {
    format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key's id, from the SHA-256 of its text: `key_` and 24 hex digits.
pub fn id_of(sha256: &[u8; 32]) -> String {
    format!("key_{}", hex(&sha256[..12]))
}

/// Whether `id` has the shape of a key id (checked before it names a storage entry).
pub fn is_id(id: &str) -> bool {
    id.len() == 28 && id.starts_with("key_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl KeyRecord {
    /// The record of a key listed in the configuration.
    pub fn from_config(name: &str, sha256: &[u8; 32], policy: &KeyPolicy) -> Self {
        Self {
            id: id_of(sha256),
            object: object_name(),
            name: name.to_owned(),
            redacted_key: String::new(),
            sha256: hex(sha256),
            created_at: 0,
            revoked_at: None,
            source: Source::Config,
            policy: policy.clone(),
        }
    }

    /// Whether the key may make a call now to each of `models` (names or aliases): a revoked or
    /// expired key is a 401, a model outside the key's list a 403.
    pub fn check(&self, config: &Config, models: &[&str], now_ms: u64) -> Result<(), GatewayError> {
        if self.revoked_at.is_some() {
            return Err(GatewayError::new(401, "invalid_request_error", "key_revoked", "This API key was revoked."));
        }
        if self.policy.expires_at.is_some_and(|at| now_ms / 1000 >= at) {
            return Err(GatewayError::new(401, "invalid_request_error", "key_expired", "This API key has expired."));
        }
        match models.iter().find(|m| !self.policy.allows(config, m)) {
            Some(model) => Err(GatewayError::new(
                403,
                "permission_error",
                "model_not_allowed",
                format!("This API key may not use the model `{model}`."),
            )
            .with_param("model")),
            None => Ok(()),
        }
    }
}

impl KeyPolicy {
    /// Whether `model` (a name or an alias) is one of the key's models, by any of its names.
    pub fn allows(&self, config: &Config, model: &str) -> bool {
        if self.models.is_empty() {
            return true;
        }
        let canonical = config.model(model).map(|m| m.name.as_str());
        self.models.iter().any(|allowed| {
            allowed == model || (canonical.is_some() && config.model(allowed).map(|m| m.name.as_str()) == canonical)
        })
    }

    /// Checks the policy against the configuration; the error names the field at fault.
    pub fn validate(&self, config: Option<&Config>) -> Result<(), (String, String)> {
        let fail = |path: String, reason: &str| Err((path, reason.to_owned()));
        for (i, model) in self.models.iter().enumerate() {
            if config.is_some_and(|c| c.model(model).is_none()) {
                return fail(format!("models[{i}]"), "not a model or alias of this gateway");
            }
        }
        for (i, cap) in self.budgets.iter().enumerate() {
            if !(cap.limit_usd.is_finite() && cap.limit_usd >= 0.0) {
                return fail(format!("budgets[{i}].limit_usd"), "a non-negative amount in USD");
            }
            if cap.warn_at.is_some_and(|w| !(w > 0.0 && w <= 1.0)) {
                return fail(format!("budgets[{i}].warn_at"), "a fraction of the limit, above 0 and at most 1");
            }
            if self.budgets[..i].iter().any(|other| other.window == cap.window) {
                return fail(format!("budgets[{i}].window"), "one budget per window");
            }
        }
        for (field, value) in [("rpm", self.rate_limits.rpm), ("tpm", self.rate_limits.tpm)] {
            if value == Some(0) {
                return fail(format!("rate_limits.{field}"), "at least 1");
            }
        }
        if self.tags.len() > 32 {
            return fail("tags".to_owned(), "at most 32 tags");
        }
        if let Some(tag) = self.tags.iter().find(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256) {
            return fail(format!("tags.{}", tag.0), "a tag name of 1 to 64 characters, a value of at most 256");
        }
        Ok(())
    }
}

/// A request of the admin API to create a key (`name` required) or to change one (every field
/// optional; `expires_at: null` removes the expiry).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub budgets: Option<Vec<Cap>>,
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
    #[serde(default, deserialize_with = "present")]
    pub expires_at: Option<Option<u64>>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl KeyChange {
    pub fn parse(body: &[u8]) -> Result<Self, GatewayError> {
        crate::error::parse_body(body)
    }

    /// The record of a new key, `key` being its text; a 400 names what is wrong.
    pub fn create(self, key: &str, config: &Config, now_ms: u64) -> Result<KeyRecord, GatewayError> {
        let sha256 = crate::auth::sha256(key);
        let mut record = KeyRecord {
            id: id_of(&sha256),
            object: object_name(),
            name: String::new(),
            redacted_key: format!("{PREFIX}...{}", &key[key.len().saturating_sub(4)..]),
            sha256: hex(&sha256),
            created_at: now_ms / 1000,
            revoked_at: None,
            source: Source::Api,
            policy: KeyPolicy::default(),
        };
        if self.name.is_none() {
            return Err(GatewayError::invalid_request("name", "A key needs a `name`."));
        }
        self.apply(&mut record, config)?;
        Ok(record)
    }

    /// Applies the change to `record`; a 400 names what is wrong, and `record` is untouched then.
    pub fn apply(self, record: &mut KeyRecord, config: &Config) -> Result<(), GatewayError> {
        let mut changed = record.clone();
        if let Some(name) = self.name {
            if name.trim().is_empty() || name.len() > 200 {
                return Err(GatewayError::invalid_request("name", "A key's name has 1 to 200 characters."));
            }
            changed.name = name;
        }
        let policy = &mut changed.policy;
        if let Some(models) = self.models {
            policy.models = models;
        }
        if let Some(budgets) = self.budgets {
            policy.budgets = budgets;
        }
        if let Some(rate_limits) = self.rate_limits {
            policy.rate_limits = rate_limits;
        }
        if let Some(expires_at) = self.expires_at {
            policy.expires_at = expires_at;
        }
        if let Some(tags) = self.tags {
            policy.tags = tags;
        }
        policy.validate(Some(config)).map_err(|(path, reason)| {
            GatewayError::invalid_request(path.clone(), format!("Invalid `{path}`: {reason}."))
        })?;
        *record = changed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"{"providers": {"m": {"kind": "mock"}},
                "models": [{"name": "small", "aliases": ["fast"], "targets": [{"provider": "m", "model": "x"}]},
                           {"name": "big", "targets": [{"provider": "m", "model": "y"}]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_key_is_recognisable_and_its_id_comes_from_its_hash() {
        let key = generate(&[7; 32]);
        assert!(key.starts_with("sy-") && key.len() == 46);
        let id = id_of(&crate::auth::sha256(&key));
        assert!(is_id(&id));
        assert!(!is_id("key_../../etc") && !is_id("key_0123"));
    }

    #[test]
    fn the_record_holds_the_hash_and_never_the_key() {
        let key = generate(&[9; 32]);
        let change = KeyChange::parse(br#"{"name": "app", "models": ["fast"], "tags": {"team": "a"}}"#).unwrap();
        let record = change.create(&key, &config(), 1_795_343_400_000).unwrap();
        let stored = serde_json::to_string(&record).unwrap();
        assert!(!stored.contains(&key));
        assert!(stored.contains(&hex(&crate::auth::sha256(&key))));
        assert_eq!(record.redacted_key, format!("sy-...{}", &key[42..]));
        assert_eq!(serde_json::from_str::<KeyRecord>(&stored).unwrap(), record);
    }

    #[test]
    fn models_are_allowed_by_name_or_alias() {
        let config = config();
        let policy = KeyPolicy { models: vec!["fast".into()], ..KeyPolicy::default() };
        assert!(policy.allows(&config, "small") && policy.allows(&config, "fast"));
        assert!(!policy.allows(&config, "big"));
        assert!(KeyPolicy::default().allows(&config, "big"));
        let record = KeyRecord::from_config("k", &[0; 32], &policy);
        let e = record.check(&config, &["small", "big"], 0).unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (403, Some("model_not_allowed")));
        assert!(e.message.contains("`big`"));
    }

    #[test]
    fn revoked_and_expired_keys_are_refused() {
        let config = config();
        let mut record = KeyRecord::from_config("k", &[0; 32], &KeyPolicy::default());
        record.policy.expires_at = Some(100);
        assert!(record.check(&config, &["big"], 99_999).is_ok());
        assert_eq!(record.check(&config, &["big"], 100_000).unwrap_err().code.as_deref(), Some("key_expired"));
        record.revoked_at = Some(1);
        assert_eq!(record.check(&config, &["big"], 0).unwrap_err().status, 401);
    }

    #[test]
    fn changes_are_validated_and_applied_whole_or_not_at_all() {
        let config = config();
        let mut record =
            KeyChange::parse(br#"{"name": "app", "expires_at": 5}"#).unwrap().create("sy-abcdef", &config, 0).unwrap();
        let bad = KeyChange::parse(br#"{"name": "renamed", "models": ["nope"]}"#).unwrap();
        let e = bad.apply(&mut record, &config).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("models[0]"));
        assert_eq!(record.name, "app");
        let budget = br#"{"budgets": [{"window": "day", "limit_usd": 1, "warn_at": 1.5}]}"#;
        assert_eq!(
            KeyChange::parse(budget).unwrap().apply(&mut record, &config).unwrap_err().param.as_deref(),
            Some("budgets[0].warn_at")
        );
        KeyChange::parse(br#"{"expires_at": null, "rate_limits": {"rpm": 5}}"#)
            .unwrap()
            .apply(&mut record, &config)
            .unwrap();
        assert_eq!((record.policy.expires_at, record.policy.rate_limits.rpm), (None, Some(5)));
        assert!(KeyChange::parse(br#"{"nmae": "x"}"#).is_err());
        assert!(KeyChange::parse(br#"{"models": ["small"]}"#).unwrap().create("sy-x", &config, 0).is_err());
    }
}
