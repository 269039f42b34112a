//! Spending caps that concurrency cannot overrun: before a call the most it can cost is
//! reserved against every cap of its scope (a key, or the whole gateway); after the call the
//! real cost is settled and the rest freed; a failed call frees it all. Windows are UTC
//! calendar hours, days and months. Time is an argument.
//!
//! This is the arithmetic of the worker's `Ledger` Durable Object: one instance a key, one for
//! the whole gateway. Each instance keeps one `Scope`: its spend, its rate-limit buckets and the
//! calls in flight; the object stores it and applies these functions, one request at a time.

use crate::error::GatewayError;
use crate::ratelimit::{openai_duration, Bucket, RateLimits, Remaining};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Hour,
    Day,
    Month,
}

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), and back (Howard Hinnant's civil
/// calendar).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn civil_from_days(days: i64) -> (i64, u32) {
    let (year, month, _) = civil(days);
    (year, month)
}

/// Days since 1970-01-01 of the first of a month.
fn days_from_civil(year: i64, month: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Window {
    /// When the window holding `now_ms` began (ms since the epoch, UTC).
    pub fn start_ms(self, now_ms: u64) -> u64 {
        match self {
            Window::Hour => now_ms / HOUR_MS * HOUR_MS,
            Window::Day => now_ms / DAY_MS * DAY_MS,
            Window::Month => {
                let (year, month) = civil_from_days((now_ms / DAY_MS) as i64);
                days_from_civil(year, month) as u64 * DAY_MS
            }
        }
    }

    /// When the window holding `now_ms` ends and the next begins.
    pub fn reset_ms(self, now_ms: u64) -> u64 {
        match self {
            Window::Hour => self.start_ms(now_ms) + HOUR_MS,
            Window::Day => self.start_ms(now_ms) + DAY_MS,
            Window::Month => {
                let (year, month) = civil_from_days((now_ms / DAY_MS) as i64);
                let (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                days_from_civil(year, month) as u64 * DAY_MS
            }
        }
    }
}

/// A spending cap, and the share of it from which calls carry a warning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    pub window: Window,
    pub limit_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_at: Option<f64>,
}

/// One window's spend: settled, and reserved by calls in flight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Spend {
    window: Window,
    start_ms: u64,
    settled_usd: f64,
    reserved_usd: f64,
}

/// The spend of one scope (a key, or the whole gateway) in each window it is capped in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    spends: Vec<Spend>,
}

/// An amount held for a call in flight, to settle or release when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub amount_usd: f64,
    /// The windows (and their starts) the amount was held in.
    pub(crate) held: Vec<(Window, u64)>,
}

impl Reservation {
    /// Whether it holds nothing that a release would give back.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty() || self.amount_usd == 0.0
    }
}

/// A cap that a reservation would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Exceeded {
    pub window: Window,
    pub limit_usd: f64,
    pub spent_usd: f64,
    /// The most the refused call could have cost.
    #[serde(default)]
    pub asked_usd: f64,
    pub resets_at_ms: u64,
}

impl Account {
    /// The spend of `window` now, rolled over to a fresh window when the old one ended.
    fn spend(&mut self, window: Window, now_ms: u64) -> &mut Spend {
        let start_ms = window.start_ms(now_ms);
        let i = match self.spends.iter().position(|s| s.window == window) {
            Some(i) => i,
            None => {
                self.spends.push(Spend { window, start_ms, settled_usd: 0.0, reserved_usd: 0.0 });
                self.spends.len() - 1
            }
        };
        let spend = &mut self.spends[i];
        if spend.start_ms != start_ms {
            // A new window: settled spend starts again from zero, but calls still in flight keep
            // their holds, since their cost will be counted in this window when they settle.
            *spend = Spend { window, start_ms, settled_usd: 0.0, reserved_usd: spend.reserved_usd };
        }
        spend
    }

    /// Settled and reserved spend in `window` now.
    pub fn committed(&mut self, window: Window, now_ms: u64) -> f64 {
        let spend = self.spend(window, now_ms);
        spend.settled_usd + spend.reserved_usd
    }

    /// Holds `amount_usd` against every cap, or names the first cap it would exceed (holding
    /// nothing then).
    pub fn reserve(&mut self, caps: &[Cap], amount_usd: f64, now_ms: u64) -> Result<Reservation, Exceeded> {
        for cap in caps {
            let committed = self.committed(cap.window, now_ms);
            if committed + amount_usd > cap.limit_usd {
                return Err(Exceeded {
                    window: cap.window,
                    limit_usd: cap.limit_usd,
                    spent_usd: committed,
                    asked_usd: amount_usd,
                    resets_at_ms: cap.window.reset_ms(now_ms),
                });
            }
        }
        let mut held = Vec::with_capacity(caps.len());
        for cap in caps {
            let spend = self.spend(cap.window, now_ms);
            spend.reserved_usd += amount_usd;
            held.push((cap.window, spend.start_ms));
        }
        Ok(Reservation { amount_usd, held })
    }

    /// The call ended and cost `actual_usd`: the hold is freed and the cost counted.
    pub fn settle(&mut self, reservation: &Reservation, actual_usd: f64, now_ms: u64) {
        self.release(reservation, now_ms);
        for &(window, _) in &reservation.held {
            self.spend(window, now_ms).settled_usd += actual_usd;
        }
    }

    /// The call failed: the hold is freed, nothing is counted. (Holds carry over into a new
    /// window, so the hold is freed from the current one, whenever it was made.)
    pub fn release(&mut self, reservation: &Reservation, now_ms: u64) {
        for &(window, _) in &reservation.held {
            let spend = self.spend(window, now_ms);
            spend.reserved_usd = (spend.reserved_usd - reservation.amount_usd).max(0.0);
        }
    }

    /// Holds `amount_usd` in every window of `windows`, whatever the caps say: what calls in
    /// flight already hold cannot be refused any more (see `lease`).
    pub(crate) fn force_reserve(&mut self, windows: &[Window], amount_usd: f64, now_ms: u64) -> Reservation {
        let held = windows
            .iter()
            .map(|&window| {
                let spend = self.spend(window, now_ms);
                spend.reserved_usd += amount_usd;
                (window, spend.start_ms)
            })
            .collect();
        Reservation { amount_usd, held }
    }

    /// A cost whose hold is gone (freed as stale before the call reported back): counted in
    /// every window the account tracks.
    pub fn charge(&mut self, actual_usd: f64, now_ms: u64) {
        let windows: Vec<Window> = self.spends.iter().map(|s| s.window).collect();
        for window in windows {
            self.spend(window, now_ms).settled_usd += actual_usd;
        }
    }
}

/// What a call asks of a scope: the caps and limits that apply, the most the call can cost,
/// and the tokens it is expected to use (its prompt and its output limit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    #[serde(default)]
    pub caps: Vec<Cap>,
    #[serde(default)]
    pub limits: RateLimits,
    pub amount_usd: f64,
    pub tokens: u64,
}

/// A cap a call brought past its warning share.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub window: Window,
    pub limit_usd: f64,
    pub committed_usd: f64,
    pub resets_at_ms: u64,
}

/// A call the scope took on: what it holds, and what is left of the limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Admitted {
    pub hold: Hold,
    #[serde(default)]
    pub warnings: Vec<Warning>,
    #[serde(default)]
    pub requests: Option<Remaining>,
    #[serde(default)]
    pub tokens: Option<Remaining>,
}

/// What a call in flight holds in a scope, to settle or release when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    pub reservation: Reservation,
    pub tokens: u64,
    pub at_ms: u64,
}

/// Why a scope refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "refused", rename_all = "snake_case")]
pub enum Refusal {
    Budget(Exceeded),
    Requests { limit: u64, retry_after_ms: u64 },
    Tokens { limit: u64, retry_after_ms: u64 },
}

/// A scope's state: its spend and its rate-limit buckets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    pub(crate) account: Account,
    #[serde(default)]
    pub(crate) requests: Option<Bucket>,
    #[serde(default)]
    pub(crate) tokens: Option<Bucket>,
}

/// How long a hold lives when its call says nothing of its own time limit: past its expiry (see
/// `settlement::Held`), a call is taken for one whose end will never be reported (its isolate
/// died) and its reservation is released.
pub const HOLD_TTL_MS: u64 = 15 * 60_000;

impl Scope {
    /// Takes on a call, or refuses it: rate limits first (a call over them is refused before
    /// anything is held), then every budget cap; an admitted call takes one request and its
    /// expected tokens from the buckets and holds its most cost against every cap.
    pub fn admit(&mut self, ask: &Ask, now_ms: u64) -> Result<Admitted, Refusal> {
        if let Some(limit) = ask.limits.rpm {
            let bucket = self.requests.get_or_insert_with(|| Bucket::full(limit, now_ms));
            bucket.check(limit, 1, now_ms).map_err(|retry_after_ms| Refusal::Requests { limit, retry_after_ms })?;
        }
        if let Some(limit) = ask.limits.tpm {
            let bucket = self.tokens.get_or_insert_with(|| Bucket::full(limit, now_ms));
            bucket
                .check(limit, ask.tokens, now_ms)
                .map_err(|retry_after_ms| Refusal::Tokens { limit, retry_after_ms })?;
        }
        let reservation = self.account.reserve(&ask.caps, ask.amount_usd, now_ms).map_err(Refusal::Budget)?;
        let requests = ask.limits.rpm.zip(self.requests.as_mut()).map(|(limit, b)| b.take(limit, 1));
        let tokens = ask.limits.tpm.zip(self.tokens.as_mut()).map(|(limit, b)| b.take(limit, ask.tokens));
        let warnings = self.warnings(&ask.caps, now_ms);
        Ok(Admitted { hold: Hold { reservation, tokens: ask.tokens, at_ms: now_ms }, warnings, requests, tokens })
    }

    /// The call ended, costing `cost_usd` and using `tokens`: the hold becomes the real cost, and
    /// the token bucket is corrected by what the call used beyond (or short of) its estimate.
    pub fn settle(&mut self, hold: &Hold, cost_usd: f64, tokens: u64, limits: &RateLimits, now_ms: u64) {
        self.account.settle(&hold.reservation, cost_usd, now_ms);
        if let (Some(limit), Some(bucket)) = (limits.tpm, self.tokens.as_mut()) {
            bucket.adjust(limit, tokens as i64 - hold.tokens as i64, now_ms);
        }
    }

    /// A call's cost whose hold is gone (see `Account::charge`).
    pub fn charge(&mut self, cost_usd: f64, now_ms: u64) {
        self.account.charge(cost_usd, now_ms);
    }

    /// The call failed: its hold is freed, its expected tokens given back.
    pub fn release(&mut self, hold: &Hold, limits: &RateLimits, now_ms: u64) {
        self.account.release(&hold.reservation, now_ms);
        if let (Some(limit), Some(bucket)) = (limits.tpm, self.tokens.as_mut()) {
            bucket.adjust(limit, -(hold.tokens as i64), now_ms);
        }
    }

    /// Settled plus reserved spend in `window` now.
    pub fn committed(&mut self, window: Window, now_ms: u64) -> f64 {
        self.account.committed(window, now_ms)
    }

    /// The caps whose settled and reserved spend is past their warning share now.
    pub(crate) fn warnings(&mut self, caps: &[Cap], now_ms: u64) -> Vec<Warning> {
        caps.iter()
            .filter_map(|cap| {
                let warn_at = cap.warn_at?;
                let committed_usd = self.account.committed(cap.window, now_ms);
                (committed_usd >= warn_at * cap.limit_usd).then_some(Warning {
                    window: cap.window,
                    limit_usd: cap.limit_usd,
                    committed_usd,
                    resets_at_ms: cap.window.reset_ms(now_ms),
                })
            })
            .collect()
    }
}

impl Refusal {
    /// How long until the call would be taken on.
    pub fn retry_after_ms(&self, now_ms: u64) -> u64 {
        match *self {
            Refusal::Budget(e) => e.resets_at_ms.saturating_sub(now_ms),
            Refusal::Requests { retry_after_ms, .. } | Refusal::Tokens { retry_after_ms, .. } => retry_after_ms,
        }
    }

    /// The client's answer: 429, in OpenAI's shape, with the headers that say when to come back.
    /// A spent budget is not worth retrying before its window resets (`x-should-retry: false`
    /// tells OpenAI's SDKs so); a rate limit is, after `Retry-After`.
    pub fn to_error(&self, whose: &str, now_ms: u64) -> (GatewayError, Vec<(String, String)>) {
        match *self {
            Refusal::Budget(e) => {
                let window = window_name(e.window);
                let message = if e.spent_usd + e.asked_usd > e.limit_usd && e.spent_usd < e.limit_usd {
                    format!(
                        "The {window} budget of {whose} (${:.2}) cannot take this call: ${:.4} is settled or held, and \
                         the call may cost up to ${:.4} (a lower max_tokens asks for less); it resets at {}.",
                        e.limit_usd,
                        e.spent_usd,
                        e.asked_usd,
                        rfc3339(e.resets_at_ms)
                    )
                } else {
                    format!(
                        "The {window} budget of {whose} (${:.2}) is spent (${:.4} settled or held); it resets at {}.",
                        e.limit_usd,
                        e.spent_usd,
                        rfc3339(e.resets_at_ms)
                    )
                };
                let error = GatewayError::new(429, "insufficient_quota", "budget_exceeded", message);
                let headers = vec![
                    ("x-switchyard-budget-window".to_owned(), window.to_owned()),
                    ("x-switchyard-budget-reset".to_owned(), rfc3339(e.resets_at_ms)),
                    ("retry-after".to_owned(), e.resets_at_ms.saturating_sub(now_ms).div_ceil(1000).to_string()),
                    ("x-should-retry".to_owned(), "false".to_owned()),
                ];
                (error, headers)
            }
            Refusal::Requests { limit, retry_after_ms } | Refusal::Tokens { limit, retry_after_ms } => {
                let unit = if matches!(self, Refusal::Requests { .. }) { "requests" } else { "tokens" };
                let error = GatewayError::new(
                    429,
                    unit,
                    "rate_limit_exceeded",
                    format!(
                        "Rate limit reached for {whose}: {limit} {unit} per minute. Try again in {}.",
                        openai_duration(retry_after_ms)
                    ),
                );
                let headers = vec![
                    ("retry-after".to_owned(), retry_after_ms.div_ceil(1000).max(1).to_string()),
                    ("retry-after-ms".to_owned(), retry_after_ms.to_string()),
                    (format!("x-ratelimit-limit-{unit}"), limit.to_string()),
                    (format!("x-ratelimit-remaining-{unit}"), "0".to_owned()),
                    (format!("x-ratelimit-reset-{unit}"), openai_duration(retry_after_ms)),
                ];
                (error, headers)
            }
        }
    }
}

impl Admitted {
    /// The headers an answer carries: what is left of the rate limits (as OpenAI names them),
    /// and a warning for each budget past its warning share.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        limit_headers(&self.warnings, self.requests, self.tokens)
    }
}

/// What is left of the rate limits (as OpenAI names it), and a warning for each budget past
/// its warning share.
pub fn limit_headers(
    warnings: &[Warning],
    requests: Option<Remaining>,
    tokens: Option<Remaining>,
) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if let Some(r) = requests {
        headers.push(("x-ratelimit-limit-requests", r.limit.to_string()));
        headers.push(("x-ratelimit-remaining-requests", r.remaining.min(r.limit).to_string()));
        headers.push(("x-ratelimit-reset-requests", openai_duration(r.reset_ms)));
    }
    if let Some(t) = tokens {
        headers.push(("x-ratelimit-limit-tokens", t.limit.to_string()));
        headers.push(("x-ratelimit-remaining-tokens", t.remaining.min(t.limit).to_string()));
        headers.push(("x-ratelimit-reset-tokens", openai_duration(t.reset_ms)));
    }
    let warnings: Vec<String> = warnings
        .iter()
        .map(|w| {
            format!(
                "{} budget {:.0}% used (${:.4} of ${:.2}), resets {}",
                window_name(w.window),
                100.0 * w.committed_usd / w.limit_usd.max(f64::MIN_POSITIVE),
                w.committed_usd,
                w.limit_usd,
                rfc3339(w.resets_at_ms)
            )
        })
        .collect();
    if !warnings.is_empty() {
        headers.push(("x-switchyard-budget-warning", warnings.join("; ")));
    }
    headers
}

fn window_name(window: Window) -> &'static str {
    match window {
        Window::Hour => "hourly",
        Window::Day => "daily",
        Window::Month => "monthly",
    }
}

/// A time as RFC 3339 in UTC, to the second: `2026-11-22T10:30:00Z`.
pub fn rfc3339(ms: u64) -> String {
    let days = (ms / DAY_MS) as i64;
    let (year, month, day) = civil(days);
    let secs = ms % DAY_MS / 1000;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A time given as Unix seconds, a date (`2026-11-22`, its midnight UTC) or an RFC 3339 time in
/// UTC (`2026-11-22T10:30:00Z`); ms since the epoch.
pub fn parse_time(text: &str) -> Option<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return secs.checked_mul(1000);
    }
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').or_else(|| time.strip_suffix("+00:00"))?)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month) + i64::from(day) - 1;
    if civil(days).1 != month {
        return None; // the 31st of a 30-day month, and the like
    }
    let mut secs = 0u64;
    if let Some(time) = time {
        let time = time.split('.').next()?;
        let mut hms = time.splitn(3, ':').map(|p| p.parse::<u64>().ok());
        let (h, m, s) = (hms.next()??, hms.next()??, hms.next().unwrap_or(Some(0))?);
        if h > 23 || m > 59 || s > 60 {
            return None;
        }
        secs = h * 3600 + m * 60 + s;
    }
    Some(days as u64 * DAY_MS + secs * 1000)
}

/// One row of usage: a key's calls to a model through a provider in one minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub minute_ms: u64,
    pub key_id: String,
    pub key_name: String,
    pub model: String,
    pub provider: String,
    /// The key's tags, as a JSON object.
    pub tags: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// The call's id (given when it was admitted), under which the row is applied once; empty
    /// in rows read back, and in rows of an older sender.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub call_id: String,
}

/// What usage is grouped by in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Key,
    Model,
    Provider,
    Tag,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "key" => Self::Key,
            "model" => Self::Model,
            "provider" => Self::Provider,
            "tag" => Self::Tag,
            _ => return None,
        })
    }
}

/// One group's total in a usage report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotal {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// `name:value`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost_usd: f64,
}

impl UsageTotal {
    fn add(&mut self, row: &UsageRow) {
        // Vendor-reported counts: saturating, as everywhere usage is summed.
        self.requests = self.requests.saturating_add(row.requests);
        self.prompt_tokens = self.prompt_tokens.saturating_add(row.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(row.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(row.prompt_tokens.saturating_add(row.completion_tokens));
        self.cost_usd += row.cost_usd;
    }
}

/// Usage rows summed by group (a key's usage counts once under each of its tags; usage of
/// untagged keys is under no tag), highest cost first; and the total of every row.
pub fn usage_report(rows: &[UsageRow], group_by: GroupBy) -> (Vec<UsageTotal>, UsageTotal) {
    let mut groups: std::collections::BTreeMap<String, UsageTotal> = std::collections::BTreeMap::new();
    let mut total = UsageTotal::default();
    for row in rows {
        total.add(row);
        let mut names = Vec::new();
        match group_by {
            GroupBy::Key => names.push(row.key_id.clone()),
            GroupBy::Model => names.push(row.model.clone()),
            GroupBy::Provider => names.push(row.provider.clone()),
            GroupBy::Tag => {
                let tags: std::collections::BTreeMap<String, String> =
                    serde_json::from_str(&row.tags).unwrap_or_default();
                names.extend(tags.iter().map(|(k, v)| format!("{k}:{v}")));
            }
        }
        for name in names {
            let group = groups.entry(name.clone()).or_insert_with(|| {
                let mut group = UsageTotal::default();
                match group_by {
                    GroupBy::Key => (group.key, group.key_name) = (Some(name), Some(row.key_name.clone())),
                    GroupBy::Model => group.model = Some(name),
                    GroupBy::Provider => group.provider = Some(name),
                    GroupBy::Tag => group.tag = Some(name),
                }
                group
            });
            group.add(row);
        }
    }
    let mut groups: Vec<UsageTotal> = groups.into_values().collect();
    groups.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd));
    (groups, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22T10:30:00Z
    const NOW: u64 = 1_795_343_400_000;

    #[test]
    fn windows_are_utc_hours_days_and_months() {
        assert_eq!(Window::Hour.start_ms(NOW), 1_795_341_600_000); // 10:00
        assert_eq!(Window::Hour.reset_ms(NOW), 1_795_345_200_000); // 11:00
        assert_eq!(Window::Day.start_ms(NOW), 1_795_305_600_000); // 2026-11-22T00:00Z
        assert_eq!(Window::Month.start_ms(NOW), 1_793_491_200_000); // 2026-11-01T00:00Z
        assert_eq!(Window::Month.reset_ms(NOW), 1_796_083_200_000); // 2026-12-01T00:00Z
                                                                    // December rolls into January of the next year; February of a leap year has 29 days.
        let dec = 1_797_897_600_000; // 2026-12-22T00:00Z
        assert_eq!(Window::Month.reset_ms(dec), 1_798_761_600_000); // 2027-01-01T00:00Z
        let feb_2028 = 1_833_926_400_000; // 2028-02-12T00:00Z
        assert_eq!(Window::Month.reset_ms(feb_2028) - Window::Month.start_ms(feb_2028), 29 * DAY_MS);
    }

    #[test]
    fn reservations_hold_against_every_cap_and_refuse_past_one() {
        let caps = [
            Cap { window: Window::Hour, limit_usd: 1.0, warn_at: None },
            Cap { window: Window::Month, limit_usd: 10.0, warn_at: None },
        ];
        let mut account = Account::default();
        let a = account.reserve(&caps, 0.6, NOW).unwrap();
        let refused = account.reserve(&caps, 0.5, NOW).unwrap_err();
        assert_eq!(refused.window, Window::Hour);
        assert!((refused.spent_usd - 0.6).abs() < 1e-12);
        assert_eq!(refused.resets_at_ms, Window::Hour.reset_ms(NOW));
        // Settling frees the unused part of the hold.
        account.settle(&a, 0.1, NOW);
        assert!((account.committed(Window::Hour, NOW) - 0.1).abs() < 1e-12);
        assert!(account.reserve(&caps, 0.5, NOW).is_ok());
    }

    #[test]
    fn a_failed_call_frees_its_hold() {
        let caps = [Cap { window: Window::Day, limit_usd: 1.0, warn_at: None }];
        let mut account = Account::default();
        let a = account.reserve(&caps, 1.0, NOW).unwrap();
        assert!(account.reserve(&caps, 0.01, NOW).is_err());
        account.release(&a, NOW);
        assert_eq!(account.committed(Window::Day, NOW), 0.0);
    }

    #[test]
    fn windows_roll_over() {
        let caps = [Cap { window: Window::Hour, limit_usd: 1.0, warn_at: None }];
        let mut account = Account::default();
        let a = account.reserve(&caps, 1.0, NOW).unwrap();
        account.settle(&a, 1.0, NOW);
        assert!(account.reserve(&caps, 0.5, NOW).is_err());
        let next_hour = Window::Hour.reset_ms(NOW);
        assert!(account.reserve(&caps, 0.5, next_hour).is_ok());
        assert!((account.committed(Window::Hour, next_hour) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn holds_in_flight_carry_into_the_next_window_and_settle_there() {
        let caps = [Cap { window: Window::Hour, limit_usd: 1.0, warn_at: None }];
        let mut account = Account::default();
        let a = account.reserve(&caps, 0.8, NOW).unwrap();
        let next_hour = Window::Hour.reset_ms(NOW);
        // The new hour starts with nothing settled, but the call in flight still holds 0.8.
        assert!(account.reserve(&caps, 0.5, next_hour).is_err());
        account.settle(&a, 0.3, next_hour);
        assert!((account.committed(Window::Hour, next_hour) - 0.3).abs() < 1e-12);
        // A cost whose hold was freed as stale still counts.
        account.charge(0.2, next_hour);
        assert!((account.committed(Window::Hour, next_hour) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn concurrent_holds_never_exceed_the_cap_whatever_the_order() {
        let caps = [Cap { window: Window::Day, limit_usd: 1.0, warn_at: None }];
        let mut account = Account::default();
        let mut holds = vec![];
        for _ in 0..200 {
            if let Ok(r) = account.reserve(&caps, 0.03, NOW) {
                holds.push(r);
            }
        }
        assert_eq!(holds.len(), 33);
        for r in &holds {
            account.settle(r, 0.03, NOW);
        }
        assert!(account.committed(Window::Day, NOW) <= 1.0);
    }

    fn ask(caps: Vec<Cap>, limits: RateLimits, amount_usd: f64, tokens: u64) -> Ask {
        Ask { caps, limits, amount_usd, tokens }
    }

    #[test]
    fn a_scope_refuses_past_its_rate_limits_before_holding_anything() {
        let caps = vec![Cap { window: Window::Day, limit_usd: 1.0, warn_at: None }];
        let limits = RateLimits { rpm: Some(2), tpm: None };
        let mut scope = Scope::default();
        let a = scope.admit(&ask(caps.clone(), limits, 0.1, 10), NOW).unwrap();
        assert_eq!(a.requests.unwrap().remaining, 1);
        scope.admit(&ask(caps.clone(), limits, 0.1, 10), NOW).unwrap();
        let refused = scope.admit(&ask(caps.clone(), limits, 0.1, 10), NOW).unwrap_err();
        assert_eq!(refused, Refusal::Requests { limit: 2, retry_after_ms: 30_000 });
        // The refused call held nothing.
        assert!((scope.committed(Window::Day, NOW) - 0.2).abs() < 1e-12);
        let (error, headers) = refused.to_error("this key", NOW);
        assert_eq!((error.status, error.code.as_deref(), error.kind), (429, Some("rate_limit_exceeded"), "requests"));
        assert!(headers.contains(&("retry-after".to_owned(), "30".to_owned())));
        assert!(headers.contains(&("x-ratelimit-reset-requests".to_owned(), "30s".to_owned())));
    }

    #[test]
    fn tokens_are_taken_on_admission_and_corrected_on_settlement() {
        let limits = RateLimits { rpm: None, tpm: Some(1_000) };
        let mut scope = Scope::default();
        let a = scope.admit(&ask(vec![], limits, 0.0, 600), NOW).unwrap();
        assert_eq!(a.tokens.unwrap().remaining, 400);
        assert!(matches!(scope.admit(&ask(vec![], limits, 0.0, 600), NOW), Err(Refusal::Tokens { .. })));
        // The call used 100 tokens: 500 come back.
        scope.settle(&a.hold, 0.0, 100, &limits, NOW);
        let b = scope.admit(&ask(vec![], limits, 0.0, 600), NOW).unwrap();
        assert_eq!(b.tokens.unwrap().remaining, 300);
        scope.release(&b.hold, &limits, NOW);
        assert_eq!(scope.admit(&ask(vec![], limits, 0.0, 0), NOW).unwrap().tokens.unwrap().remaining, 900);
    }

    #[test]
    fn a_spent_budget_is_a_429_that_names_its_window_and_reset() {
        let caps = vec![Cap { window: Window::Month, limit_usd: 5.0, warn_at: Some(0.5) }];
        let mut scope = Scope::default();
        let a = scope.admit(&ask(caps.clone(), RateLimits::default(), 2.0, 0), NOW).unwrap();
        assert!(a.warnings.is_empty());
        let b = scope.admit(&ask(caps.clone(), RateLimits::default(), 1.0, 0), NOW).unwrap();
        assert_eq!(b.warnings.len(), 1);
        let warning = b.headers().into_iter().find(|(h, _)| *h == "x-switchyard-budget-warning").unwrap().1;
        assert_eq!(warning, "monthly budget 60% used ($3.0000 of $5.00), resets 2026-12-01T00:00:00Z");
        scope.settle(&a.hold, 2.0, 0, &RateLimits::default(), NOW);
        scope.settle(&b.hold, 2.5, 0, &RateLimits::default(), NOW);
        let refused = scope.admit(&ask(caps, RateLimits::default(), 1.0, 0), NOW).unwrap_err();
        let (error, headers) = refused.to_error("key `app`", NOW);
        assert_eq!((error.status, error.code.as_deref()), (429, Some("budget_exceeded")));
        assert!(error.message.starts_with("The monthly budget of key `app` ($5.00) cannot take this call"));
        assert!(error.message.contains("$4.5000 is settled or held, and the call may cost up to $1.0000"));
        assert!(error.message.ends_with("it resets at 2026-12-01T00:00:00Z."));
        assert!(headers.contains(&("x-should-retry".to_owned(), "false".to_owned())));
        assert!(headers.contains(&("x-switchyard-budget-window".to_owned(), "monthly".to_owned())));
    }

    #[test]
    fn times_are_written_and_read_in_utc() {
        assert_eq!(rfc3339(NOW), "2026-11-22T10:30:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time("2026-11-22T10:30:00Z"), Some(NOW));
        assert_eq!(parse_time("2026-11-22T10:30:00.250Z"), Some(NOW));
        assert_eq!(parse_time("2026-11-22"), Some(Window::Day.start_ms(NOW)));
        assert_eq!(parse_time("1795343400"), Some(NOW));
        assert_eq!(parse_time("2028-02-29"), Some(1_835_395_200_000));
        for bad in ["2026-02-30", "2026-13-01", "2026-11-22T25:00:00Z", "2026-11-22T10:30:00+02:00", "soon", ""] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn usage_is_grouped_by_key_model_provider_or_tag() {
        let row = |key: &str, model: &str, provider: &str, tags: &str, cost_usd: f64| UsageRow {
            minute_ms: NOW,
            key_id: key.into(),
            key_name: format!("{key}-name"),
            model: model.into(),
            provider: provider.into(),
            tags: tags.into(),
            requests: 1,
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_usd,
            call_id: String::new(),
        };
        let rows = [
            row("k1", "gpt", "openai", r#"{"team":"a"}"#, 1.0),
            row("k1", "claude", "anthropic", r#"{"team":"a"}"#, 2.0),
            row("k2", "gpt", "openai", r#"{"team":"b","env":"prod"}"#, 4.0),
        ];
        let (by_key, total) = usage_report(&rows, GroupBy::Key);
        assert_eq!((total.requests, total.total_tokens, total.cost_usd), (3, 45, 7.0));
        assert_eq!(by_key[0].key.as_deref(), Some("k2"));
        assert_eq!((by_key[1].requests, by_key[1].key_name.as_deref()), (2, Some("k1-name")));
        let (by_model, _) = usage_report(&rows, GroupBy::Model);
        assert_eq!(
            by_model.iter().map(|g| (g.model.as_deref().unwrap(), g.cost_usd)).collect::<Vec<_>>(),
            [("gpt", 5.0), ("claude", 2.0)]
        );
        let (by_tag, _) = usage_report(&rows, GroupBy::Tag);
        let tags: Vec<_> = by_tag.iter().map(|g| (g.tag.as_deref().unwrap(), g.requests)).collect();
        assert_eq!(tags, [("env:prod", 1), ("team:b", 1), ("team:a", 2)]);
    }
}
