//! The gateway's configuration: providers, models with their targets, gateway keys, limits.
//!
//! The document is JSON (see `config/README.md` for the format). [`Config::parse`] checks both
//! its shape and its meaning and reports the first problem with its path in the document, so an
//! operator sees `models[2].targets[0].provider: unknown provider "opnai"` at start-up instead
//! of a failure at request time.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Default for `limits.stream_keepalive_ms`.
pub const DEFAULT_STREAM_KEEPALIVE_MS: u64 = 15_000;

/// Default for `limits.max_body_bytes`: large enough for a chat with a few base64 images.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Default for `limits.max_upload_bytes`: OpenAI's own limit on an uploaded audio file, 25 MiB,
/// with room for the form around it.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 25 * 1024 * 1024 + 64 * 1024;
/// Default `api_version` of an Azure OpenAI provider (the current GA version).
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";
/// Default for a provider's `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;

/// A problem in the configuration document, at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { path: path.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI's API, or any vendor that speaks it (Groq, Mistral, DeepSeek, vLLM, Ollama, ...).
    Openai,
    /// Azure OpenAI: OpenAI's API at `{base_url}/openai/deployments/{model}` with an
    /// `api-version` and the `api-key` header.
    Azure,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API (generateContent).
    Gemini,
    /// Switchyard's built-in mock: answers inside the worker, needs no key and no network.
    Mock,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Name of the Workers secret holding the vendor key; `None` for keyless vendors.
    pub api_key_secret: Option<String>,
    /// Extra headers sent with every request to this provider.
    pub headers: Vec<(String, String)>,
    /// Time allowed for the vendor's response headers to arrive.
    pub timeout_ms: u64,
    /// Azure's `api-version` query parameter.
    pub api_version: Option<String>,
    /// OpenAI-format vendors: ask for usage in every stream (`stream_options.include_usage`),
    /// so that streamed calls are priced too. On by default; off for a vendor that refuses it.
    pub stream_usage: bool,
    /// Pass the client's `store` on to this vendor. Off by default: a client must not be able
    /// to write its prompts into the operator's vendor account logs unless the operator says so.
    pub forward_store: bool,
    /// OpenAI-format vendors that serve OpenAI's Responses API (`/responses`: OpenAI itself,
    /// Azure's v1 API): a Responses client's request passes through to them, built-in tools
    /// and the vendor's own conversation state included. Off by default, since most
    /// OpenAI-format vendors serve only Chat Completions.
    pub responses_api: bool,
}

impl Provider {
    /// A provider of `kind` at `base_url` with every optional setting at its default: no key,
    /// no extra headers, the default timeout, usage asked for in streams, `store` withheld.
    pub fn new(name: &str, kind: ProviderKind, base_url: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            base_url: base_url.to_owned(),
            api_key_secret: None,
            headers: Vec::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            api_version: (kind == ProviderKind::Azure).then(|| DEFAULT_AZURE_API_VERSION.to_owned()),
            stream_usage: true,
            forward_store: false,
            responses_api: false,
        }
    }
}

/// One place a model can be served from: a provider and the vendor's name for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Index into [`Config::providers`].
    pub provider: usize,
    pub model: String,
    /// Share of first attempts under the `weighted` strategy.
    pub weight: u32,
    /// The target's tier under the `cascade` strategy.
    pub tier: Option<crate::route::Tier>,
    /// The vendor's own limits for this model (`rpm`, `tpm`): a target at its limit is skipped.
    pub limits: crate::ratelimit::RateLimits,
}

/// A public model: the name clients send, its aliases, and its targets in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub name: String,
    pub aliases: Vec<String>,
    pub targets: Vec<Target>,
    pub owned_by: String,
    /// Refuse (400) parameters a target cannot honour instead of dropping them.
    pub strict: bool,
    /// How the first target is chosen among the healthy ones.
    pub strategy: crate::route::Strategy,
    /// Time allowed for all attempts of one request together.
    pub deadline_ms: Option<u64>,
    /// Attempts at most; more than the targets retries them in turn, with backoff.
    pub max_attempts: usize,
    /// Under `cascade`: prompts longer than this (in estimated tokens) are complex.
    pub max_simple_tokens: u64,
    /// Start the next target too when the first has not answered after this long.
    pub hedge_after_ms: Option<u64>,
    /// An answer whose first byte took longer than this counts against the target's health
    /// (its breaker), though the client still gets it.
    pub slow_ms: Option<u64>,
    /// Per attempt: time to the vendor's first byte (instead of the provider's `timeout_ms`),
    /// and time for the whole answer (streamed or translated).
    pub first_byte_timeout_ms: Option<u64>,
    pub total_timeout_ms: Option<u64>,
    /// Parameters billed beyond tokens (`crate::chat::BILLED_PARAMS`) that this model's
    /// targets may be sent; the others are withheld.
    pub allow_params: Vec<String>,
}

/// What happens to a call whose model the catalog does not price when a budget applies to
/// it (`pricing.unpriced`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unpriced {
    /// A budget of the configuration (the gateway's, or a listed key's) that covers an
    /// unpriced model is a configuration error; calls of admin-made keys with budgets to such
    /// a model are refused.
    #[default]
    Error,
    /// The configuration is accepted; every call to an unpriced model under a budget is
    /// refused with a 400.
    Refuse,
}

/// A gateway key, known by the SHA-256 of its text, and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayKey {
    pub name: String,
    pub sha256: [u8; 32],
    pub policy: crate::keys::KeyPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Largest multipart upload (`/v1/audio/transcriptions`, `/translations`, `/v1/images/edits`).
    pub max_upload_bytes: usize,
    /// How long a translated stream may be silent before the client gets a keep-alive
    /// (`limits.stream_keepalive_ms`, 15 s by default).
    pub stream_keepalive_ms: u64,
}

/// How target health is judged (`health` in the document).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(default)]
    pub breaker: crate::breaker::BreakerPolicy,
}

/// A validated configuration. Lookups by model name or alias are O(1).
#[derive(Debug, Clone)]
pub struct Config {
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    pub keys: Vec<GatewayKey>,
    /// Spending caps for the whole gateway.
    pub budgets: Vec<crate::ledger::Cap>,
    pub limits: Limits,
    pub health: HealthConfig,
    /// Catalog entries that replace or add to the embedded catalog, by vendor model name.
    pub catalog: BTreeMap<String, crate::catalog::ModelInfo>,
    pub unpriced: Unpriced,
    by_name: HashMap<String, usize>,
}

// ---- The document as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    providers: BTreeMap<String, ProviderDoc>,
    #[serde(default)]
    models: Vec<ModelDoc>,
    #[serde(default)]
    keys: Vec<KeyDoc>,
    #[serde(default)]
    budgets: Vec<crate::ledger::Cap>,
    #[serde(default)]
    limits: LimitsDoc,
    #[serde(default)]
    health: HealthConfig,
    #[serde(default)]
    catalog: BTreeMap<String, crate::catalog::ModelInfo>,
    #[serde(default)]
    pricing: PricingDoc,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PricingDoc {
    #[serde(default)]
    unpriced: Unpriced,
}

/// What `allow_params` may name beyond the billed parameters: vendor-hosted tools (billed per
/// use) and every Anthropic beta (some bill beyond the catalog's prices).
const ALLOWABLE_FEATURES: [&str; 2] = ["server_tools", "anthropic-beta"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderDoc {
    kind: ProviderKind,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_key_secret: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    stream_usage: Option<bool>,
    #[serde(default)]
    forward_store: bool,
    #[serde(default)]
    responses_api: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelDoc {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    targets: Vec<TargetDoc>,
    #[serde(default)]
    owned_by: Option<String>,
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    strategy: crate::route::Strategy,
    #[serde(default)]
    deadline_ms: Option<u64>,
    #[serde(default)]
    max_attempts: Option<usize>,
    #[serde(default)]
    max_simple_tokens: Option<u64>,
    #[serde(default)]
    hedge_after_ms: Option<u64>,
    #[serde(default)]
    slow_ms: Option<u64>,
    #[serde(default)]
    first_byte_timeout_ms: Option<u64>,
    #[serde(default)]
    total_timeout_ms: Option<u64>,
    #[serde(default)]
    allow_params: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetDoc {
    provider: String,
    model: String,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    tier: Option<crate::route::Tier>,
    #[serde(default)]
    rpm: Option<u64>,
    #[serde(default)]
    tpm: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDoc {
    name: String,
    sha256: String,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    budgets: Vec<crate::ledger::Cap>,
    #[serde(default)]
    rate_limits: crate::ratelimit::RateLimits,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsDoc {
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    max_upload_bytes: Option<usize>,
    #[serde(default)]
    stream_keepalive_ms: Option<u64>,
}

impl Config {
    /// Parses and validates a configuration document.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let doc: Document = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            ConfigError::at(path, e.into_inner().to_string())
        })?;
        Self::from_document(doc)
    }

    fn from_document(doc: Document) -> Result<Config, ConfigError> {
        let mut providers = Vec::with_capacity(doc.providers.len());
        let mut provider_index = HashMap::new();
        for (name, p) in doc.providers {
            let path = format!("providers.{name}");
            if !is_identifier(&name) {
                return Err(ConfigError::at(path, "a provider name uses only letters, digits, '-', '_' and '.'"));
            }
            let base_url = match (p.kind, p.base_url) {
                (_, Some(url)) => {
                    validate_base_url(&url).map_err(|r| ConfigError::at(format!("{path}.base_url"), r))?
                }
                (ProviderKind::Mock, None) => String::new(),
                (_, None) => return Err(ConfigError::at(format!("{path}.base_url"), "required for this kind")),
            };
            if let Some(secret) = &p.api_key_secret {
                check_secret_name(secret)
                    .map_err(|reason| ConfigError::at(format!("{path}.api_key_secret"), reason))?;
            }
            let mut headers = Vec::with_capacity(p.headers.len());
            for (header, value) in p.headers {
                if !is_header_name(&header) {
                    return Err(ConfigError::at(format!("{path}.headers.{header}"), "not a valid HTTP header name"));
                }
                if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                    return Err(ConfigError::at(
                        format!("{path}.headers.{header}"),
                        "a header value cannot hold CR, LF or NUL",
                    ));
                }
                headers.push((header.to_ascii_lowercase(), value));
            }
            if p.responses_api && !matches!(p.kind, ProviderKind::Openai | ProviderKind::Azure) {
                return Err(ConfigError::at(format!("{path}.responses_api"), "only for kind \"openai\" or \"azure\""));
            }
            let timeout_ms = p.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
            if timeout_ms == 0 {
                return Err(ConfigError::at(format!("{path}.timeout_ms"), "must be at least 1"));
            }
            let api_version = match (p.kind, p.api_version) {
                (ProviderKind::Azure, version) => {
                    let version = version.unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.to_owned());
                    if version.is_empty()
                        || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    {
                        return Err(ConfigError::at(
                            format!("{path}.api_version"),
                            "an Azure api-version such as 2024-10-21",
                        ));
                    }
                    Some(version)
                }
                (_, Some(_)) => return Err(ConfigError::at(format!("{path}.api_version"), "only for kind \"azure\"")),
                (_, None) => None,
            };
            provider_index.insert(name.clone(), providers.len());
            providers.push(Provider {
                name,
                kind: p.kind,
                base_url,
                api_key_secret: p.api_key_secret,
                headers,
                timeout_ms,
                api_version,
                stream_usage: p.stream_usage.unwrap_or(true),
                forward_store: p.forward_store,
                responses_api: p.responses_api,
            });
        }

        let mut models = Vec::with_capacity(doc.models.len());
        let mut by_name = HashMap::new();
        for (i, m) in doc.models.into_iter().enumerate() {
            let path = format!("models[{i}]");
            let mut claim = |name: &str, at: String| -> Result<(), ConfigError> {
                if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(ConfigError::at(at, "a model name is non-empty and has no whitespace"));
                }
                if by_name.insert(name.to_owned(), i).is_some() {
                    return Err(ConfigError::at(at, format!("the name \"{name}\" is used twice")));
                }
                Ok(())
            };
            claim(&m.name, format!("{path}.name"))?;
            for (j, alias) in m.aliases.iter().enumerate() {
                claim(alias, format!("{path}.aliases[{j}]"))?;
            }
            if m.targets.is_empty() {
                return Err(ConfigError::at(format!("{path}.targets"), "a model needs at least one target"));
            }
            let mut targets = Vec::with_capacity(m.targets.len());
            for (j, t) in m.targets.into_iter().enumerate() {
                let Some(&provider) = provider_index.get(&t.provider) else {
                    return Err(ConfigError::at(
                        format!("{path}.targets[{j}].provider"),
                        format!("unknown provider \"{}\"", t.provider),
                    ));
                };
                if t.model.is_empty() {
                    return Err(ConfigError::at(format!("{path}.targets[{j}].model"), "must not be empty"));
                }
                let weight = t.weight.unwrap_or(1);
                if weight == 0 && m.strategy == crate::route::Strategy::Weighted {
                    return Err(ConfigError::at(format!("{path}.targets[{j}].weight"), "must be at least 1"));
                }
                if m.strategy == crate::route::Strategy::Cascade && t.tier.is_none() {
                    return Err(ConfigError::at(
                        format!("{path}.targets[{j}].tier"),
                        "a cascade target needs a tier: simple or complex",
                    ));
                }
                if t.rpm == Some(0) || t.tpm == Some(0) {
                    return Err(ConfigError::at(format!("{path}.targets[{j}]"), "rpm and tpm must be at least 1"));
                }
                let limits = crate::ratelimit::RateLimits { rpm: t.rpm, tpm: t.tpm };
                targets.push(Target { provider, model: t.model, weight, tier: t.tier, limits });
            }
            let owned_by = m.owned_by.unwrap_or_else(|| providers[targets[0].provider].name.clone());
            for (field, value) in [
                ("deadline_ms", m.deadline_ms),
                ("first_byte_timeout_ms", m.first_byte_timeout_ms),
                ("total_timeout_ms", m.total_timeout_ms),
            ] {
                if value == Some(0) {
                    return Err(ConfigError::at(format!("{path}.{field}"), "must be at least 1"));
                }
            }
            for (j, param) in m.allow_params.iter().enumerate() {
                let allowable = crate::chat::BILLED_PARAMS.iter().chain(&ALLOWABLE_FEATURES);
                if !allowable.clone().any(|name| name == param) {
                    let names: Vec<&str> = allowable.copied().collect();
                    return Err(ConfigError::at(
                        format!("{path}.allow_params[{j}]"),
                        format!("one of {}", names.join(", ")),
                    ));
                }
            }
            let max_attempts = m.max_attempts.unwrap_or(targets.len());
            if !(1..=16).contains(&max_attempts) {
                return Err(ConfigError::at(format!("{path}.max_attempts"), "between 1 and 16"));
            }
            models.push(Model {
                name: m.name,
                aliases: m.aliases,
                targets,
                owned_by,
                strict: m.strict,
                strategy: m.strategy,
                deadline_ms: m.deadline_ms,
                max_attempts,
                max_simple_tokens: m.max_simple_tokens.unwrap_or(2_000),
                hedge_after_ms: m.hedge_after_ms,
                slow_ms: m.slow_ms,
                first_byte_timeout_ms: m.first_byte_timeout_ms,
                total_timeout_ms: m.total_timeout_ms,
                allow_params: m.allow_params,
            });
        }

        let mut keys: Vec<GatewayKey> = Vec::with_capacity(doc.keys.len());
        for (i, k) in doc.keys.into_iter().enumerate() {
            let path = format!("keys[{i}]");
            if k.name.is_empty() {
                return Err(ConfigError::at(format!("{path}.name"), "must not be empty"));
            }
            if keys.iter().any(|other| other.name == k.name) {
                return Err(ConfigError::at(
                    format!("{path}.name"),
                    format!("the key name \"{}\" is used twice", k.name),
                ));
            }
            let sha256 = parse_sha256(&k.sha256).ok_or_else(|| {
                ConfigError::at(
                    format!("{path}.sha256"),
                    "64 hexadecimal digits: the SHA-256 of the key (printf %s \"$KEY\" | sha256sum)",
                )
            })?;
            let policy = crate::keys::KeyPolicy {
                models: k.models,
                budgets: k.budgets,
                rate_limits: k.rate_limits,
                expires_at: k.expires_at,
                tags: k.tags,
            };
            policy.validate(None).map_err(|(field, reason)| ConfigError::at(format!("{path}.{field}"), reason))?;
            if let Some(j) = policy.models.iter().position(|m| !by_name.contains_key(m)) {
                return Err(ConfigError::at(
                    format!("{path}.models[{j}]"),
                    "not a model or alias of this configuration",
                ));
            }
            keys.push(GatewayKey { name: k.name, sha256, policy });
        }
        let gateway_budgets = crate::keys::KeyPolicy { budgets: doc.budgets, ..Default::default() };
        gateway_budgets.validate(None).map_err(|(field, reason)| ConfigError::at(field, reason))?;

        let max_body_bytes = doc.limits.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(ConfigError::at("limits.max_body_bytes", "must be at least 1024"));
        }
        let max_upload_bytes = doc.limits.max_upload_bytes.unwrap_or(DEFAULT_MAX_UPLOAD_BYTES);
        if max_upload_bytes < 1024 {
            return Err(ConfigError::at("limits.max_upload_bytes", "must be at least 1024"));
        }
        let stream_keepalive_ms = doc.limits.stream_keepalive_ms.unwrap_or(DEFAULT_STREAM_KEEPALIVE_MS);
        if !(100..=600_000).contains(&stream_keepalive_ms) {
            return Err(ConfigError::at("limits.stream_keepalive_ms", "must be between 100 and 600000"));
        }

        let b = &doc.health.breaker;
        let breaker_problem = if b.consecutive_failures == 0 {
            Some(("consecutive_failures", "must be at least 1"))
        } else if !(b.failure_rate > 0.0 && b.failure_rate <= 1.0) {
            Some(("failure_rate", "a fraction above 0 and at most 1"))
        } else if b.window_ms == 0 || b.cooldown_ms == 0 || b.probe_timeout_ms == 0 {
            Some(("cooldown_ms", "window_ms, cooldown_ms and probe_timeout_ms must be at least 1"))
        } else if b.max_cooldown_ms < b.cooldown_ms {
            Some(("max_cooldown_ms", "must be at least cooldown_ms"))
        } else {
            None
        };
        if let Some((field, reason)) = breaker_problem {
            return Err(ConfigError::at(format!("health.breaker.{field}"), reason));
        }

        for (name, info) in &doc.catalog {
            if let Some(field) = info.invalid_price() {
                return Err(ConfigError::at(
                    format!("catalog.{name}.{field}"),
                    "a price is a finite number, 0 or more",
                ));
            }
        }

        let config = Config {
            providers,
            models,
            keys,
            budgets: gateway_budgets.budgets,
            limits: Limits { max_body_bytes, max_upload_bytes, stream_keepalive_ms },
            health: doc.health,
            catalog: doc.catalog,
            unpriced: doc.pricing.unpriced,
            by_name,
        };
        if config.unpriced == Unpriced::Error {
            config.check_budgets_priced()?;
        }
        Ok(config)
    }

    /// A model under a budget must have a price: else its calls would be free to the budget.
    fn check_budgets_priced(&self) -> Result<(), ConfigError> {
        let fix = "add a `catalog` entry with its prices (0 to make it free on purpose), or set `pricing.unpriced` to \"refuse\"";
        if !self.budgets.is_empty() {
            for (i, model) in self.models.iter().enumerate() {
                if let Some(target) = self.unpriced_target(model) {
                    return Err(ConfigError::at(
                        format!("models[{i}].targets"),
                        format!(
                            "the gateway's budgets cover this model, but the catalog has no price for `{}`: {fix}",
                            target.model
                        ),
                    ));
                }
            }
        }
        for (k, key) in self.keys.iter().enumerate() {
            if key.policy.budgets.is_empty() {
                continue;
            }
            for (i, model) in self.models.iter().enumerate() {
                let covered =
                    key.policy.models.is_empty() || key.policy.models.iter().any(|m| self.by_name.get(m) == Some(&i));
                if let Some(target) = self.unpriced_target(model).filter(|_| covered) {
                    return Err(ConfigError::at(
                        format!("keys[{k}].budgets"),
                        format!(
                            "they cover the model `{}`, but the catalog has no price for `{}`: {fix}",
                            model.name, target.model
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A call to `model` under a budget (the key's, `key_budgets`, or the gateway's) is refused
    /// when one of its targets has no price: it would cost the budget nothing.
    pub fn check_priced(&self, key_budgets: bool, model: &Model) -> Result<(), crate::GatewayError> {
        if !key_budgets && self.budgets.is_empty() {
            return Ok(());
        }
        match self.unpriced_target(model) {
            None => Ok(()),
            Some(target) => Err(crate::GatewayError::new(
                400,
                "invalid_request_error",
                "model_unpriced",
                format!(
                    "The model `{}` cannot be used under a budget: this gateway's catalog has no price for `{}`; \
                     its operator has to add one.",
                    model.name, target.model
                ),
            )
            .with_param("model")),
        }
    }

    /// A target of `model` that the catalog (the configuration's or the embedded one) does
    /// not price; the built-in mock costs nothing and needs no price.
    pub fn unpriced_target<'m>(&self, model: &'m Model) -> Option<&'m Target> {
        model.targets.iter().find(|t| {
            self.providers[t.provider].kind != ProviderKind::Mock
                && !self.catalog.contains_key(&t.model)
                && crate::catalog::embedded(&t.model).is_none()
        })
    }

    /// The model whose name or alias is `name`.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.by_name.get(name).map(|&i| &self.models[i])
    }

    /// What the catalog (the configuration's, else the embedded one) knows of a vendor model.
    pub fn model_info(&self, vendor_model: &str) -> crate::catalog::ModelInfo {
        self.catalog.get(vendor_model).copied().or_else(|| crate::catalog::embedded(vendor_model)).unwrap_or_default()
    }

    pub fn provider(&self, target: &Target) -> &Provider {
        &self.providers[target.provider]
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `api_key_secret` names a Workers secret; it never holds a key. Values that look like a
/// vendor key (its well-known prefixes, or a long string of mixed case and digits) are refused
/// before they can be deployed in plain text, and the admin token is never a vendor's key.
fn check_secret_name(s: &str) -> Result<(), &'static str> {
    const KEY_PREFIXES: &[&str] = &["sk-", "sk_", "sk-ant-", "gsk_", "AIza", "xai-", "pplx-", "ghp_", "hf_", "r8_"];
    if s == "ADMIN_TOKEN" {
        return Err("ADMIN_TOKEN is the admin API's secret; a vendor key needs a secret of its own");
    }
    if KEY_PREFIXES.iter().any(|p| s.starts_with(p)) || looks_random(s) {
        return Err("this looks like a key itself: name the Workers secret that holds it (wrangler secret put NAME), never the key");
    }
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("the name of a Workers secret: letters, digits and '_', at most 64");
    }
    Ok(())
}

/// A long run of lower case, upper case and digits with few separators: a generated token,
/// not a name someone chose (names read `OPENAI_API_KEY`, `GroqKey2`).
fn looks_random(s: &str) -> bool {
    let has = |f: fn(&u8) -> bool| s.bytes().any(|b| f(&b));
    s.len() >= 20
        && has(u8::is_ascii_lowercase)
        && has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_digit)
        && s.bytes().filter(|&b| b == b'_').count() < 2
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn validate_base_url(url: &str) -> Result<String, &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err("has no host");
    }
    if rest.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be a plain URL without query, fragment or whitespace");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HASH: &str = "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b";

    fn minimal() -> String {
        format!(
            r#"{{
              "providers": {{
                "openai": {{"kind": "openai", "base_url": "https://api.openai.com/v1/", "api_key_secret": "OPENAI_API_KEY",
                            "headers": {{"OpenAI-Organization": "org-1"}}, "timeout_ms": 5000}},
                "mock": {{"kind": "mock"}}
              }},
              "models": [
                {{"name": "gpt-4o-mini", "aliases": ["fast"], "targets": [{{"provider": "openai", "model": "gpt-4o-mini-2024-07-18"}}]}},
                {{"name": "echo", "targets": [{{"provider": "mock", "model": "echo-1"}}]}}
              ],
              "keys": [{{"name": "app", "sha256": "{KEY_HASH}"}}]
            }}"#
        )
    }

    fn error_of(text: &str) -> ConfigError {
        Config::parse(text).expect_err("the document should be rejected")
    }

    #[test]
    fn parses_a_complete_document() {
        let config = Config::parse(&minimal()).unwrap();
        assert_eq!(config.providers.len(), 2);
        let model = config.model("fast").unwrap();
        assert_eq!(model.name, "gpt-4o-mini");
        let provider = config.provider(&model.targets[0]);
        assert_eq!(provider.base_url, "https://api.openai.com/v1");
        assert_eq!(provider.headers, vec![("openai-organization".to_owned(), "org-1".to_owned())]);
        assert_eq!(provider.timeout_ms, 5000);
        assert_eq!(model.owned_by, "openai");
        assert_eq!(config.keys[0].sha256[0], 0x6b);
        assert_eq!(config.limits.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(config.limits.max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
    }

    #[test]
    fn the_upload_limit_is_its_own() {
        let config = Config::parse(r#"{"limits": {"max_body_bytes": 2048, "max_upload_bytes": 1048576}}"#).unwrap();
        assert_eq!((config.limits.max_body_bytes, config.limits.max_upload_bytes), (2048, 1_048_576));
        let e = Config::parse(r#"{"limits": {"max_upload_bytes": 10}}"#).unwrap_err();
        assert_eq!(e.path, "limits.max_upload_bytes");
    }

    #[test]
    fn empty_document_is_a_valid_gateway_with_nothing_configured() {
        let config = Config::parse("{}").unwrap();
        assert!(config.models.is_empty() && config.keys.is_empty());
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let e = error_of("{\"providers\": {");
        assert!(e.reason.contains("line 1"), "{e}");
    }

    #[test]
    fn unknown_field_is_reported_with_its_path() {
        let e = error_of(r#"{"providers": {"a": {"kind": "openai", "base_url": "http://x", "api_key": "sk-1"}}}"#);
        assert_eq!(e.path, "providers.a.api_key");
        assert!(e.reason.contains("unknown field `api_key`"), "{e}");
    }

    #[test]
    fn unknown_kind_is_reported_with_its_path() {
        let e = error_of(r#"{"providers": {"a": {"kind": "openia", "base_url": "http://x"}}}"#);
        assert_eq!(e.path, "providers.a.kind");
    }

    #[test]
    fn wrong_type_is_reported_with_its_path() {
        let e = error_of(r#"{"models": [{"name": "m", "targets": "openai"}]}"#);
        assert_eq!(e.path, "models[0].targets");
    }

    #[test]
    fn target_naming_an_unknown_provider_is_rejected() {
        let text = minimal().replace(r#""provider": "mock""#, r#""provider": "mok""#);
        let e = error_of(&text);
        assert_eq!(e.path, "models[1].targets[0].provider");
        assert!(e.reason.contains("\"mok\""));
    }

    #[test]
    fn duplicate_model_name_or_alias_is_rejected() {
        let text = minimal().replace(r#""name": "echo""#, r#""name": "fast""#);
        let e = error_of(&text);
        assert_eq!(e.path, "models[1].name");
    }

    #[test]
    fn openai_provider_needs_a_base_url_and_a_real_one() {
        let e = error_of(r#"{"providers": {"a": {"kind": "openai"}}}"#);
        assert_eq!(e.path, "providers.a.base_url");
        let e = error_of(r#"{"providers": {"a": {"kind": "openai", "base_url": "api.openai.com"}}}"#);
        assert_eq!(e.path, "providers.a.base_url");
        let e = error_of(r#"{"providers": {"a": {"kind": "openai", "base_url": "https:///v1"}}}"#);
        assert_eq!(e.path, "providers.a.base_url");
    }

    #[test]
    fn model_without_targets_is_rejected() {
        let e = error_of(r#"{"models": [{"name": "m", "targets": []}]}"#);
        assert_eq!(e.path, "models[0].targets");
    }

    #[test]
    fn key_hash_must_be_64_hex_digits() {
        let e = error_of(r#"{"keys": [{"name": "k", "sha256": "sk-plaintext-key"}]}"#);
        assert_eq!(e.path, "keys[0].sha256");
    }

    #[test]
    fn breaker_policy_is_configurable_and_checked() {
        let config =
            Config::parse(r#"{"health": {"breaker": {"consecutive_failures": 2, "cooldown_ms": 100}}}"#).unwrap();
        assert_eq!(config.health.breaker.consecutive_failures, 2);
        assert_eq!(config.health.breaker.window_ms, 60_000, "the rest keep their defaults");
        let e = error_of(r#"{"health": {"breaker": {"failure_rate": 2}}}"#);
        assert_eq!(e.path, "health.breaker.failure_rate");
        let e = error_of(r#"{"health": {"breaker": {"cooldown": 2}}}"#);
        assert_eq!(e.path, "health.breaker.cooldown");
    }

    #[test]
    fn api_key_secret_names_a_secret_and_never_holds_a_key() {
        let provider = |secret: &str| {
            format!(
                r#"{{"providers": {{"a": {{"kind": "openai", "base_url": "http://x", "api_key_secret": "{secret}"}}}}}}"#
            )
        };
        for ok in ["OPENAI_API_KEY", "GroqKey2", "ANTHROPIC_KEY_EU_WEST_1"] {
            assert!(Config::parse(&provider(ok)).is_ok(), "{ok}");
        }
        for key in [
            "sk-proj-abc123",
            "gsk_8s7d6f5g4h3j2k1l0zxcvbnmqwerty",
            "AIzaSyD3xAmPlE0fAkeKeY123456789",
            "Xk9fQ2LmN7pR4sT1vW8yZ3bC6dE0gH5j",
            "ADMIN_TOKEN",
            "has-dash",
        ] {
            let e = error_of(&provider(key));
            assert_eq!(e.path, "providers.a.api_key_secret", "{key}");
            assert!(!e.reason.contains(key) || key == "ADMIN_TOKEN", "the reason does not repeat the value: {e}");
        }
    }

    #[test]
    fn prices_are_finite_and_not_negative() {
        let e = error_of(r#"{"catalog": {"m": {"input": -1.0}}}"#);
        assert_eq!((e.path.as_str(), e.reason.contains("finite")), ("catalog.m.input", true));
        let e = error_of(r#"{"catalog": {"m": {"output": 1e400}}}"#);
        assert!(e.path.starts_with("catalog"), "{e}");
        assert!(Config::parse(r#"{"catalog": {"m": {"input": 0, "output": 0.5}}}"#).is_ok());
    }

    fn budgeted(unpriced: &str, catalog: &str, budgets_on_key: bool) -> String {
        let (gateway, key) = if budgets_on_key {
            ("[]", r#"[{"window": "day", "limit_usd": 5}]"#)
        } else {
            (r#"[{"window": "day", "limit_usd": 5}]"#, "[]")
        };
        format!(
            r#"{{
              "providers": {{"p": {{"kind": "openai", "base_url": "http://x"}}, "mock": {{"kind": "mock"}}}},
              "models": [
                {{"name": "known", "targets": [{{"provider": "p", "model": "gpt-4o-mini"}}]}},
                {{"name": "free", "targets": [{{"provider": "mock", "model": "anything"}}]}},
                {{"name": "mine", "targets": [{{"provider": "p", "model": "my-finetune"}}]}}
              ],
              "keys": [{{"name": "k", "sha256": "{KEY_HASH}", "budgets": {key}}}],
              "budgets": {gateway},
              "catalog": {catalog},
              "pricing": {{"unpriced": "{unpriced}"}}
            }}"#
        )
    }

    #[test]
    fn a_budget_over_an_unpriced_model_is_a_configuration_error_or_refused_by_choice() {
        let e = error_of(&budgeted("error", "{}", false));
        assert_eq!(e.path, "models[2].targets");
        assert!(e.reason.contains("my-finetune") && e.reason.contains("pricing.unpriced"), "{e}");
        let e = error_of(&budgeted("error", "{}", true));
        assert_eq!(e.path, "keys[0].budgets");
        // Priced on purpose, even at 0: accepted.
        assert!(Config::parse(&budgeted("error", r#"{"my-finetune": {"input": 0, "output": 0}}"#, false)).is_ok());
        // The operator chose refusal: accepted, and calls to the unpriced model are refused.
        let config = Config::parse(&budgeted("refuse", "{}", false)).unwrap();
        let e = config.check_priced(false, config.model("mine").unwrap()).unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (400, Some("model_unpriced")));
        assert!(config.check_priced(false, config.model("known").unwrap()).is_ok());
        assert!(config.check_priced(false, config.model("free").unwrap()).is_ok());
        // Without any budget, nothing is refused.
        let config = Config::parse(&budgeted("refuse", "{}", true)).unwrap();
        assert!(config.check_priced(false, config.model("mine").unwrap()).is_ok());
        assert!(config.check_priced(true, config.model("mine").unwrap()).is_err());
    }

    #[test]
    fn allow_params_names_billed_parameters_only() {
        let doc = |params: &str| {
            format!(
                r#"{{"providers": {{"p": {{"kind": "openai", "base_url": "http://x", "forward_store": true}}}},
                    "models": [{{"name": "m", "allow_params": {params}, "targets": [{{"provider": "p", "model": "gpt-4o"}}]}}]}}"#
            )
        };
        let config = Config::parse(&doc(r#"["service_tier", "audio", "server_tools", "anthropic-beta"]"#)).unwrap();
        assert_eq!(config.models[0].allow_params, ["service_tier", "audio", "server_tools", "anthropic-beta"]);
        assert!(config.providers[0].forward_store);
        let e = error_of(&doc(r#"["temperature"]"#));
        assert_eq!(e.path, "models[0].allow_params[0]");
    }

    #[test]
    fn responses_api_is_for_openai_format_vendors() {
        let doc = |kind: &str| {
            format!(r#"{{"providers": {{"p": {{"kind": "{kind}", "base_url": "http://x", "responses_api": true}}}}}}"#)
        };
        assert!(Config::parse(&doc("openai")).unwrap().providers[0].responses_api);
        assert!(Config::parse(&doc("azure")).unwrap().providers[0].responses_api);
        assert_eq!(error_of(&doc("anthropic")).path, "providers.p.responses_api");
    }

    #[test]
    fn header_with_line_break_is_rejected() {
        let e = error_of(
            r#"{"providers": {"a": {"kind": "openai", "base_url": "http://x", "headers": {"x-a": "1\r\nx-b: 2"}}}}"#,
        );
        assert_eq!(e.path, "providers.a.headers.x-a");
    }
}
