//! Leases: how an isolate admits calls against a scope's caps and rate limits without asking
//! the scope's ledger each time, and without any way to overrun them.
//!
//! An isolate holds one lease a scope (a key, the gateway, a target): a slice of the scope's
//! budget, of its request tokens and of its token tokens, reserved for it in the ledger. Calls
//! are admitted against the slice locally (`LeaseView::take`), settled into it locally
//! (`LeaseView::settle`), and the lease's use is reported with its refresh (`LeaseAsk`), which
//! also tops the slice up (or shrinks it) and moves its expiry on. The refresh runs off the hot
//! path while the lease has room; only a call that finds no lease, an expired one or too small
//! a slice waits for the ledger, which then grants at least what that call needs or refuses it
//! exactly as it refused calls before leases.
//!
//! Why no cap can be overrun: everything a lease may hand out is reserved in the ledger before
//! the isolate can hand it out, against every cap of the scope; a slice's free part is at most
//! `SHARE` of what the caps leave, divided among the scope's live leases, so slices shrink as a
//! cap gets near, down to exactly the need of the call that asks (the per-call hold of before).
//! What calls in flight hold stays reserved through every refresh; a lease whose isolate stops
//! reporting is freed `LEASE_GRACE_MS` after its expiry, and a report that comes later still
//! counts its spend once (amounts are cumulative, so a report sent twice counts once).
//!
//! Revocation and policy changes: the ledger checks the key's record on every refresh, and an
//! isolate never uses a lease past `LEASE_TTL_MS` from when it asked for it: a revoked key's
//! calls stop within `LEASE_TTL_MS` everywhere.
//!
//! Time is an argument; the simulation in `tests/leases.rs` runs this code at scale.

use crate::keys::KeyRecord;
use crate::ledger::{Cap, Exceeded, Refusal, Scope, Warning, Window};
use crate::ratelimit::{Bucket, RateLimits, Remaining};
use serde::{Deserialize, Serialize};

/// How long a lease may be used from the moment its isolate asked for it.
pub const LEASE_TTL_MS: u64 = 2_000;
/// A lease is refreshed (off the hot path) once this old, or once its use waits this long to
/// be reported.
pub const REFRESH_AFTER_MS: u64 = LEASE_TTL_MS / 2;
/// How long an isolate waits for the answer to a lease's ask. Together with `LEASE_TTL_MS` it
/// is shorter than `LEASE_GRACE_MS`, so that an ask that got lost is followed by the next one
/// before the ledger takes the lease for abandoned.
pub const ASK_TIMEOUT_MS: u64 = 2_000;
/// How long past its expiry the ledger keeps a lease's reservation: its next refresh may be on
/// its way, after an ask that got lost.
pub const LEASE_GRACE_MS: u64 = 5_000;
/// How long the ledger remembers a lease it freed, so that a late report still counts its
/// spend once.
pub const LEASE_KEEP_MS: u64 = 60 * 60_000;
/// At most this share of what a cap (or a bucket) has left goes to the free parts of leases,
/// divided among the live ones.
const SHARE: f64 = 0.5;
/// A lease with no traffic seen yet asks for this many calls' worth.
const MIN_CALLS: f64 = 2.0;
/// And for what the traffic it saw would use in this many lease lifetimes.
const HEADROOM_LIFETIMES: f64 = 1.5;
/// Money is compared with this tolerance (sums of float prices).
const EPSILON_USD: f64 = 1e-12;

/// An amount of each thing a scope meters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Amounts {
    #[serde(default)]
    pub usd: f64,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub tokens: u64,
}

/// A lease's use since it was granted, cumulative: what ended calls cost, what calls in flight
/// hold, the requests taken, and the tokens (ended calls' real count, calls in flight's
/// estimate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Use {
    #[serde(default)]
    pub spent_usd: f64,
    #[serde(default)]
    pub held_usd: f64,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub tokens: u64,
}

/// `POST /lease`: a new lease, or a refresh of one: its use so far, what the call waiting on
/// the answer needs (nothing when the refresh is off the hot path), and what the isolate would
/// like free for a lease's lifetime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaseAsk {
    pub lease_id: String,
    /// Grows with each ask of one lease: an ask not newer than the last one applied (sent
    /// twice) changes nothing and gets the lease as it is.
    pub seq: u64,
    /// The scope's caps and limits as the isolate knows them (a key's stored record wins).
    #[serde(default)]
    pub caps: Vec<Cap>,
    #[serde(default)]
    pub limits: RateLimits,
    #[serde(default)]
    pub record: Option<KeyRecord>,
    /// The models the calls may use, checked against the key's record.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub used: Use,
    /// The limit the isolate applies while this ask travels (its grant in force).
    #[serde(default)]
    pub acked: Amounts,
    /// What the waiting call needs: the isolate has taken it already (it is in `used`).
    #[serde(default)]
    pub need: Amounts,
    #[serde(default)]
    pub want: Amounts,
}

/// What a lease allows, as its ledger last said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub seq: u64,
    /// What the isolate may have spent and held, requests and tokens taken, cumulative.
    pub limit: Amounts,
    /// The ledger frees the lease `LEASE_GRACE_MS` after this (ms since the epoch).
    pub until_ms: u64,
    /// The caps and limits that apply (a key's stored record's).
    #[serde(default)]
    pub caps: Vec<Cap>,
    #[serde(default)]
    pub limits: RateLimits,
    /// Budgets past their warning share.
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// The scope's buckets after the grant, without the lease's own free part.
    #[serde(default)]
    pub requests: Option<Remaining>,
    #[serde(default)]
    pub tokens: Option<Remaining>,
    /// The key's record as the ledger holds it, for the isolate's checks while the lease lasts.
    #[serde(default)]
    pub record: Option<KeyRecord>,
    /// How many live leases share the scope's buckets, this one included (0: not said): a
    /// lease's part of a bucket's refill, when the bucket is empty (`LeaseView::dry`).
    #[serde(default)]
    pub live: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LeaseAnswer {
    /// The lease as it now is; `refused`: what the waiting call needs does not fit.
    Granted {
        grant: Box<Grant>,
        #[serde(default)]
        refused: Option<Refusal>,
    },
    /// The key's record refuses its calls (revoked, expired, model not allowed).
    Denied { record: Box<KeyRecord> },
}

/// The ledger's record of one lease.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaseState {
    pub grant: Grant,
    /// The spend counted into the scope so far.
    pub counted_usd: f64,
    /// Reserved in the scope's account for the lease now, and in which windows.
    pub reserved_usd: f64,
    pub windows: Vec<Window>,
}

impl LeaseState {
    /// Whether the ledger frees it now: its isolate stopped refreshing it.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.reserved_usd > 0.0 && now_ms > self.grant.until_ms.saturating_add(LEASE_GRACE_MS)
    }

    /// Whether the ledger counts it among the live leases a slice is shared with.
    pub fn live(&self, now_ms: u64) -> bool {
        now_ms <= self.grant.until_ms.saturating_add(LEASE_GRACE_MS)
    }

    /// Whether the ledger may forget it: freed long enough ago that no report can still come.
    pub fn forgotten(&self, now_ms: u64) -> bool {
        now_ms > self.grant.until_ms.saturating_add(LEASE_KEEP_MS)
    }
}

/// The free part a lease gets of `left`: what it would like, at most its share of what is
/// left, and at least what the waiting call needs when that fits (`None`: it does not).
fn slice(left: f64, live: usize, want: f64, need: f64) -> Option<f64> {
    let fair = left.max(0.0) * SHARE / live.max(1) as f64;
    let free = want.max(need).min(fair);
    if free + EPSILON_USD >= need {
        Some(free)
    } else if left + EPSILON_USD >= need {
        Some(need)
    } else {
        None
    }
}

/// A bucket's part: tops the lease's free part (`granted - used`) up to its slice of the
/// bucket (never down: the isolate may be using it while the answer travels). `used` is
/// without the waiting call, whose `need` the top-up includes. Returns the new cumulative
/// grant, or the wait until the need fits.
fn rebucket(
    bucket: &mut Bucket,
    limit: u64,
    (granted, used): (u64, u64),
    live: usize,
    want: u64,
    need: u64,
    now_ms: u64,
) -> Result<u64, u64> {
    let mut granted = granted;
    if used > granted {
        // Calls used more than they were taken with (tokens beyond their estimate): the debt
        // goes to the bucket.
        bucket.adjust(limit, (used - granted) as i64, now_ms);
        granted = used;
    }
    let free = granted - used;
    let level = bucket.level(limit, now_ms);
    let Some(target) = slice(level + free as f64, live, want as f64, need as f64) else {
        let missing = need.saturating_sub(free);
        return Err(bucket.check(limit, missing, now_ms).err().unwrap_or(1));
    };
    // Whole units, and never less than the need (which fits: `slice` said so).
    let target = (target.floor() as u64).max(need);
    if target > free {
        bucket.take(limit, target - free);
        granted += target - free;
    }
    Ok(granted)
}

/// A lease asked for or refreshed: its use counted into the scope, then its free part and its
/// expiry set anew. `state` is the lease as the ledger has it (none: a new one); `live`: how
/// many live leases the scope has besides this one. The isolate took what the waiting call
/// needs already (it is in `ask.used`): it is granted on top of what the lease holds, or
/// refused, and then left out of the lease. Either way the use is counted and what calls in
/// flight hold stays reserved; and what the isolate may be using while the answer travels (up
/// to the limit it applies, `ask.acked`) stays reserved until its next ask.
pub fn refresh(
    scope: &mut Scope,
    state: Option<LeaseState>,
    ask: &LeaseAsk,
    live: usize,
    now_ms: u64,
) -> (LeaseState, Option<Refusal>) {
    let mut state = state.unwrap_or_default();
    if state.grant.seq != 0 && ask.seq <= state.grant.seq {
        return (state, None);
    }
    let live = live + 1;
    // The lease's reservation is taken back, its new spend counted.
    scope.account.release(
        &crate::ledger::Reservation {
            amount_usd: state.reserved_usd,
            held: state.windows.iter().map(|&w| (w, 0)).collect(),
        },
        now_ms,
    );
    let spent = (ask.used.spent_usd - state.counted_usd).max(0.0);
    if spent > 0.0 {
        scope.account.charge(spent, now_ms);
        state.counted_usd += spent;
    }
    // The lease's use without the waiting call.
    let need = ask.need;
    let before = Use {
        spent_usd: ask.used.spent_usd,
        held_usd: (ask.used.held_usd - need.usd).max(0.0),
        requests: ask.used.requests.saturating_sub(need.requests),
        tokens: ask.used.tokens.saturating_sub(need.tokens),
    };
    let mut refused = None;

    // Requests, then tokens, then money: a call over a rate limit is refused before anything
    // is held, as before leases.
    let mut limit = state.grant.limit;
    if let Some(rpm) = ask.limits.rpm {
        let bucket = scope.requests.get_or_insert_with(|| Bucket::full(rpm, now_ms));
        match rebucket(bucket, rpm, (limit.requests, before.requests), live, ask.want.requests, need.requests, now_ms) {
            Ok(granted) => limit.requests = granted,
            Err(retry_after_ms) => refused = Some(Refusal::Requests { limit: rpm, retry_after_ms }),
        }
    }
    if let (Some(tpm), None) = (ask.limits.tpm, &refused) {
        let bucket = scope.tokens.get_or_insert_with(|| Bucket::full(tpm, now_ms));
        match rebucket(bucket, tpm, (limit.tokens, before.tokens), live, ask.want.tokens, need.tokens.min(tpm), now_ms)
        {
            Ok(granted) => limit.tokens = granted,
            Err(retry_after_ms) => refused = Some(Refusal::Tokens { limit: tpm, retry_after_ms }),
        }
    }

    // Money: what calls in flight hold is reserved again whatever the caps say (they run
    // already); the waiting call and the free part only within them.
    let windows: Vec<Window> = ask.caps.iter().map(|c| c.window).collect();
    let mut part = 0.0;
    if !ask.caps.is_empty() && refused.is_none() {
        let committed = |scope: &mut Scope, cap: &Cap| scope.account.committed(cap.window, now_ms);
        let mut left = f64::INFINITY;
        let mut tightest = ask.caps[0];
        for cap in &ask.caps {
            let cap_left = cap.limit_usd - committed(scope, cap) - before.held_usd;
            if cap_left < left {
                (left, tightest) = (cap_left, *cap);
            }
        }
        match slice(left, live, ask.want.usd, need.usd) {
            Some(granted) => part = granted,
            None => {
                refused = Some(Refusal::Budget(Exceeded {
                    window: tightest.window,
                    limit_usd: tightest.limit_usd,
                    spent_usd: committed(scope, &tightest) + before.held_usd,
                    asked_usd: need.usd,
                    resets_at_ms: tightest.window.reset_ms(now_ms),
                }));
            }
        }
    }
    // Refused, the waiting call holds nothing, and nothing more is granted.
    let held = if refused.is_none() { ask.used.held_usd } else { before.held_usd };
    let free = if refused.is_none() { (part - need.usd).max(0.0) } else { 0.0 };
    limit.usd = state.counted_usd + held + free;
    let reserved = (ask.acked.usd - state.counted_usd).max(held + free);
    scope.account.force_reserve(&windows, reserved, now_ms);
    state.reserved_usd = reserved;
    state.windows = windows;

    let warnings = scope.warnings(&ask.caps, now_ms);
    let requests = ask.limits.rpm.zip(scope.requests.as_ref()).map(|(rpm, b)| b.remaining(rpm));
    let tokens = ask.limits.tpm.zip(scope.tokens.as_ref()).map(|(tpm, b)| b.remaining(tpm));
    state.grant = Grant {
        seq: ask.seq,
        limit,
        until_ms: now_ms.saturating_add(LEASE_TTL_MS),
        caps: ask.caps.clone(),
        limits: ask.limits,
        warnings,
        requests,
        tokens,
        record: ask.record.clone(),
        live: live as u64,
    };
    (state, refused)
}

/// The ledger frees a lease its isolate stopped refreshing: its reservation goes back to the
/// caps (its request and token slices are not given back: calls may have used them).
pub fn free(scope: &mut Scope, state: &mut LeaseState, now_ms: u64) {
    scope.account.release(
        &crate::ledger::Reservation {
            amount_usd: state.reserved_usd,
            held: state.windows.iter().map(|&w| (w, 0)).collect(),
        },
        now_ms,
    );
    state.reserved_usd = 0.0;
}

/// What a call took from a lease, to settle or release when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Taken {
    pub usd: f64,
    pub requests: u64,
    pub tokens: u64,
}

/// Why a lease could not take a call: the call then waits for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Short {
    /// No lease yet (or the last was given up).
    NoLease,
    /// Older than `LEASE_TTL_MS`: it may not be used any more.
    Expired,
    /// Its free part is smaller than what the call needs.
    Insufficient,
}

/// What became of an ask.
#[derive(Debug, Clone)]
pub enum Answered {
    /// The lease as the ledger now has it, with the waiting call's need in it.
    Granted(Grant),
    /// The lease as the ledger now has it; the waiting call's need did not fit.
    Refused(Grant),
    /// The key's record refuses the calls.
    Denied,
    /// No answer (an error, or none in time).
    Failed,
}

/// An isolate's side of one lease: what the ledger granted, what the isolate's calls used.
#[derive(Debug, Clone, Default)]
pub struct LeaseView {
    pub id: String,
    seq: u64,
    grant: Option<Grant>,
    /// When the last ask was sent, which bounds the lease's use (`LEASE_TTL_MS` from then).
    granted_ask_ms: u64,
    asked_ms: u64,
    used: Use,
    /// The use the last ask carried.
    reported: Use,
    /// What the ask in flight took for the call waiting on it, and that ask's `seq`.
    pending: Option<(u64, Taken)>,
    /// Demand seen since the last ask: what the calls needed, how many, since when.
    seen: Amounts,
    seen_calls: u64,
    seen_since_ms: u64,
}

impl LeaseView {
    pub fn new(id: impl Into<String>, now_ms: u64) -> Self {
        Self { id: id.into(), seen_since_ms: now_ms, ..Self::default() }
    }

    /// The grant in force, if any (it may have expired: see `take`).
    pub fn grant(&self) -> Option<&Grant> {
        self.grant.as_ref()
    }

    /// Whether it may be used at `now_ms`.
    pub fn usable(&self, now_ms: u64) -> bool {
        self.grant.is_some() && now_ms < self.granted_ask_ms.saturating_add(LEASE_TTL_MS)
    }

    pub fn used(&self) -> Use {
        self.used
    }

    /// Takes what a call needs, or says why it cannot (the call then waits for a refresh).
    pub fn take(&mut self, need: Amounts, now_ms: u64) -> Result<Taken, Short> {
        self.seen.usd += need.usd;
        self.seen.requests += need.requests;
        self.seen.tokens += need.tokens;
        self.seen_calls += 1;
        let grant = self.grant.as_ref().ok_or(Short::NoLease)?;
        if !self.usable(now_ms) {
            return Err(Short::Expired);
        }
        let taken = Taken {
            usd: if grant.caps.is_empty() { 0.0 } else { need.usd },
            requests: if grant.limits.rpm.is_some() { need.requests } else { 0 },
            tokens: grant.limits.tpm.map_or(0, |tpm| need.tokens.min(tpm)),
        };
        let fits = (taken.usd == 0.0
            || self.used.spent_usd + self.used.held_usd + taken.usd <= grant.limit.usd + EPSILON_USD)
            && (taken.requests == 0 || self.used.requests + taken.requests <= grant.limit.requests)
            && (taken.tokens == 0 || self.used.tokens + taken.tokens <= grant.limit.tokens);
        if !fits {
            return Err(Short::Insufficient);
        }
        self.used.held_usd += taken.usd;
        self.used.requests += taken.requests;
        self.used.tokens += taken.tokens;
        Ok(taken)
    }

    /// A call that ended, costing `cost_usd` and using `tokens`.
    pub fn settle(&mut self, taken: &Taken, cost_usd: f64, tokens: u64) {
        self.used.held_usd = (self.used.held_usd - taken.usd).max(0.0);
        if !self.grant.as_ref().is_some_and(|g| g.caps.is_empty()) {
            self.used.spent_usd += cost_usd;
        }
        if taken.tokens > 0 || self.grant.as_ref().is_some_and(|g| g.limits.tpm.is_some()) {
            self.used.tokens = (self.used.tokens - taken.tokens).saturating_add(tokens);
        }
    }

    /// A call that failed: what it held is free again (its request stays taken).
    pub fn release(&mut self, taken: &Taken) {
        self.used.held_usd = (self.used.held_usd - taken.usd).max(0.0);
        self.used.tokens -= taken.tokens.min(self.used.tokens);
    }

    /// The next ask for this lease: its use so far, what the demand seen asks for a lease's
    /// lifetime, and `need`, what a call waiting on the answer needs (nothing, off the hot
    /// path), which is taken now, ahead of the grant: calls that come meanwhile cannot take it
    /// from under the waiting one. `answered` hands it over, or gives it back. `base` holds
    /// the scope's caps, limits, record and models.
    pub fn ask(&mut self, base: &LeaseAsk, need: Amounts, now_ms: u64) -> LeaseAsk {
        if let Some((_, stale)) = self.pending.take() {
            // An ask whose answer never came: what it took goes back.
            self.undo(&stale);
        }
        self.seq += 1;
        self.asked_ms = now_ms;
        let taken = match &self.grant {
            Some(grant) => Taken {
                usd: if grant.caps.is_empty() { 0.0 } else { need.usd },
                requests: if grant.limits.rpm.is_some() { need.requests } else { 0 },
                tokens: grant.limits.tpm.map_or(0, |tpm| need.tokens.min(tpm)),
            },
            None => Taken { usd: need.usd, requests: need.requests, tokens: need.tokens },
        };
        if taken != Taken::default() {
            self.used.held_usd += taken.usd;
            self.used.requests += taken.requests;
            self.used.tokens += taken.tokens;
            self.pending = Some((self.seq, taken));
        }
        self.reported = self.used;
        let want = self.want(need, now_ms);
        // The demand is measured over at least a refresh's interval: asks that come sooner (a
        // report after a call's end) leave it to grow.
        if now_ms.saturating_sub(self.seen_since_ms) >= REFRESH_AFTER_MS {
            self.seen = Amounts::default();
            self.seen_calls = 0;
            self.seen_since_ms = now_ms;
        }
        LeaseAsk {
            lease_id: self.id.clone(),
            seq: self.seq,
            used: self.used,
            acked: self.grant.as_ref().map(|g| g.limit).unwrap_or_default(),
            need: Amounts { usd: taken.usd, requests: taken.requests, tokens: taken.tokens },
            want,
            ..base.clone()
        }
    }

    /// What the ledger answered to ask `seq`, sent at `asked_ms`: the grant is in force until
    /// `LEASE_TTL_MS` after that. Returns what the ask took for its waiting call when the
    /// ledger granted it; refused, denied or unanswered, that goes back.
    pub fn answered(&mut self, seq: u64, answer: Answered, asked_ms: u64) -> Option<Taken> {
        let taken = match self.pending {
            Some((pending, taken)) if pending == seq => {
                self.pending = None;
                Some(taken)
            }
            _ => None,
        };
        let granted = match answer {
            // Older than the grant in force: only what it says of the waiting call counts.
            Answered::Granted(ref grant) if self.grant.as_ref().is_some_and(|g| g.seq > grant.seq) => true,
            Answered::Refused(ref grant) if self.grant.as_ref().is_some_and(|g| g.seq > grant.seq) => false,
            Answered::Granted(grant) => {
                self.granted_ask_ms = asked_ms;
                self.grant = Some(grant);
                true
            }
            Answered::Refused(grant) => {
                self.granted_ask_ms = asked_ms;
                self.grant = Some(grant);
                false
            }
            Answered::Denied => {
                self.expire();
                false
            }
            Answered::Failed => {
                // Whether the ledger counted the use the ask carried is unknown: it goes again
                // (amounts are cumulative, so it counts once).
                self.reported.spent_usd = f64::NAN;
                false
            }
        };
        match taken {
            Some(taken) if granted => Some(taken),
            Some(taken) => {
                self.undo(&taken);
                None
            }
            None => None,
        }
    }

    /// Gives back what an ask took for a call that was not admitted.
    fn undo(&mut self, taken: &Taken) {
        self.used.held_usd = (self.used.held_usd - taken.usd).max(0.0);
        self.used.requests -= taken.requests.min(self.used.requests);
        self.used.tokens -= taken.tokens.min(self.used.tokens);
    }

    /// What the demand seen since the last ask would use in `HEADROOM_LIFETIMES` lifetimes,
    /// at least `MIN_CALLS` calls' worth (of `need` when nothing was seen).
    fn want(&self, need: Amounts, now_ms: u64) -> Amounts {
        if self.seen_calls == 0 {
            return Amounts {
                usd: need.usd * MIN_CALLS,
                requests: (need.requests as f64 * MIN_CALLS) as u64,
                tokens: (need.tokens as f64 * MIN_CALLS) as u64,
            };
        }
        // Over at least a refresh's interval: a burst of a few calls is not a rate.
        let elapsed = now_ms.saturating_sub(self.seen_since_ms).max(REFRESH_AFTER_MS) as f64;
        let rate = self.seen_calls as f64 / elapsed;
        let calls = (rate * LEASE_TTL_MS as f64 * HEADROOM_LIFETIMES).max(MIN_CALLS);
        let per_call = |total: f64| total / self.seen_calls as f64 * calls;
        Amounts {
            usd: per_call(self.seen.usd).max(need.usd),
            requests: (per_call(self.seen.requests as f64).ceil() as u64).max(need.requests),
            tokens: (per_call(self.seen.tokens as f64).ceil() as u64).max(need.tokens),
        }
    }

    /// The lease may not be used any more (the key's record refuses its calls, or changed):
    /// the next call waits for the ledger. What its calls in flight use is still reported.
    pub fn expire(&mut self) {
        self.granted_ask_ms = 0;
    }

    /// Ms from `now_ms` until a refresh is due if nothing changes (0: now); `None`: the lease is
    /// idle and left to lapse.
    pub fn due_in(&self, now_ms: u64) -> Option<u64> {
        if self.due(now_ms) {
            return Some(0);
        }
        let in_use = self.in_use();
        (self.grant.is_some() && in_use).then(|| self.asked_ms.saturating_add(REFRESH_AFTER_MS).saturating_sub(now_ms))
    }

    /// Whether calls used the lease since its last ask, hold part of it, or left use to report.
    fn in_use(&self) -> bool {
        self.seen_calls > 0 || self.used.held_usd > EPSILON_USD || self.used != self.reported
    }

    /// Whether use (spend or tokens) waits to be reported to the ledger.
    pub fn unreported(&self) -> bool {
        self.grant.is_some()
            && (self.used.spent_usd != self.reported.spent_usd || self.used.tokens != self.reported.tokens)
    }

    /// Whether a refresh is due now (off the hot path): the lease is in use and half its
    /// lifetime has passed since it was asked for, or its use waits that long to be reported,
    /// or its free part fell below half of what the demand seen asks. An idle lease is left
    /// to lapse.
    pub fn due(&self, now_ms: u64) -> bool {
        let Some(grant) = &self.grant else { return false };
        let in_use = self.in_use();
        if !in_use {
            return false;
        }
        if now_ms >= self.asked_ms.saturating_add(REFRESH_AFTER_MS) {
            return true;
        }
        let want = self.want(Amounts::default(), now_ms);
        let low = |limit: f64, used: f64, want: f64| limit - used < want / 2.0;
        (!grant.caps.is_empty() && low(grant.limit.usd, self.used.spent_usd + self.used.held_usd, want.usd))
            || (grant.limits.rpm.is_some()
                && low(grant.limit.requests as f64, self.used.requests as f64, want.requests as f64))
            || (grant.limits.tpm.is_some()
                && low(grant.limit.tokens as f64, self.used.tokens as f64, want.tokens as f64))
    }

    /// A refusal for a call the lease cannot take (`take` said `Insufficient`) because a rate
    /// limit's bucket is dry: the ledger's last answer left the scope's bucket with less than a
    /// lease's lifetime of refill (what it keeps back for other leases, `SHARE`, aside, the limit
    /// binds), and either a refresh of the lease is in flight (`refreshing`: its answer brings
    /// at most this lease's part of the refill, which the calls before this one take) or this
    /// lease's part of the refill (the bucket's rate over its live leases) has not brought what
    /// the call misses since the answer's ask. The refusal's `retry_after_ms` is when that part
    /// will have. The call is then refused at once rather than queued for the ledger, which
    /// would grant a call here and there of the refill and leave the rest to wait until they
    /// give up. `None`: the call asks the ledger (or waits for the refresh in flight), as before;
    /// a burst into a bucket with room is admitted in full.
    pub fn dry(&self, need: Amounts, now_ms: u64, refreshing: bool) -> Option<Refusal> {
        let grant = self.grant.as_ref()?;
        if !self.usable(now_ms) {
            return None;
        }
        let share = grant.live.max(1) as f64;
        // When the lease's part of the refill brings what the call misses: `None` if it is free.
        let refills_at = |limit: u64, remaining: Option<Remaining>, granted: u64, used: u64, need: u64| {
            let missing = (used + need).saturating_sub(granted);
            let r = remaining?;
            if missing == 0 || limit == 0 {
                return None;
            }
            // The bucket's level after the answer (its reset is the time to fill it up).
            let level = limit as f64 - r.reset_ms as f64 * limit as f64 / 60_000.0;
            if level >= limit as f64 * LEASE_TTL_MS as f64 / 60_000.0 {
                return None;
            }
            let wait_ms = (missing as f64 * 60_000.0 * share / limit as f64).ceil() as u64;
            let at = self.granted_ask_ms.saturating_add(wait_ms);
            if at > now_ms {
                Some(at - now_ms)
            } else {
                refreshing.then_some(wait_ms.max(1))
            }
        };
        if let Some(rpm) = grant.limits.rpm {
            let missing = refills_at(rpm, grant.requests, grant.limit.requests, self.used.requests, need.requests);
            if let Some(retry_after_ms) = missing {
                return Some(Refusal::Requests { limit: rpm, retry_after_ms });
            }
        }
        if let Some(tpm) = grant.limits.tpm {
            let need = need.tokens.min(tpm);
            if let Some(retry_after_ms) = refills_at(tpm, grant.tokens, grant.limit.tokens, self.used.tokens, need) {
                return Some(Refusal::Tokens { limit: tpm, retry_after_ms });
            }
        }
        None
    }

    /// The rate-limit and budget headers a call admitted now carries: the scope's buckets as
    /// of the grant, plus what the lease still has free of them.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let Some(grant) = &self.grant else { return Vec::new() };
        let plus = |r: Option<Remaining>, free: u64| r.map(|r| Remaining { remaining: r.remaining + free, ..r });
        crate::ledger::limit_headers(
            &grant.warnings,
            plus(grant.requests, grant.limit.requests.saturating_sub(self.used.requests)),
            plus(grant.tokens, grant.limit.tokens.saturating_sub(self.used.tokens)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22T10:30:00Z
    const NOW: u64 = 1_795_343_400_000;

    fn cap(limit_usd: f64) -> Vec<Cap> {
        vec![Cap { window: Window::Day, limit_usd, warn_at: None }]
    }

    fn base(caps: Vec<Cap>, limits: RateLimits) -> LeaseAsk {
        LeaseAsk { caps, limits, ..LeaseAsk::default() }
    }

    fn usd(usd: f64) -> Amounts {
        Amounts { usd, requests: 1, tokens: 0 }
    }

    /// One isolate's lease and the ledger's copy, with the ledger's answers applied.
    struct Pair {
        scope: Scope,
        state: Option<LeaseState>,
        view: LeaseView,
        base: LeaseAsk,
    }

    impl Pair {
        fn new(caps: Vec<Cap>, limits: RateLimits) -> Self {
            Self {
                scope: Scope::default(),
                state: None,
                view: LeaseView::new("lease_a", NOW),
                base: base(caps, limits),
            }
        }

        /// Asks the ledger (at once) for `need`: what it took, or the refusal.
        fn ask(&mut self, need: Amounts, now: u64) -> Result<Option<Taken>, Refusal> {
            let ask = self.view.ask(&self.base, need, now);
            let (state, refused) = refresh(&mut self.scope, self.state.take(), &ask, 0, now);
            let answer = match refused {
                None => Answered::Granted(state.grant.clone()),
                Some(_) => Answered::Refused(state.grant.clone()),
            };
            let taken = self.view.answered(ask.seq, answer, now);
            self.state = Some(state);
            refused.map_or(Ok(taken), Err)
        }

        fn refresh(&mut self, need: Amounts, now: u64) -> Option<Refusal> {
            self.ask(need, now).err()
        }

        /// A call admitted as the worker admits it: locally, else after a refresh.
        fn admit(&mut self, need: Amounts, now: u64) -> Result<Taken, Refusal> {
            if let Ok(taken) = self.view.take(need, now) {
                return Ok(taken);
            }
            Ok(self.ask(need, now)?.expect("a grant holds its need"))
        }

        fn committed(&mut self, now: u64) -> f64 {
            self.scope.committed(Window::Day, now)
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_lease_holds_a_share_of_what_is_left_and_at_least_the_need() {
        let mut pair = Pair::new(cap(10.0), RateLimits::default());
        assert!(pair.admit(usd(0.1), NOW).is_ok());
        let grant = pair.view.grant().unwrap().clone();
        // One call seen: what three would need (1.5 lifetimes at one a second), well under half
        // of the $10 left.
        assert!(close(grant.limit.usd, 0.3), "{}", grant.limit.usd);
        assert!(close(pair.committed(NOW), 0.3));
        // Near the cap, the slice shrinks to the need itself.
        let mut pair = Pair::new(cap(0.15), RateLimits::default());
        assert!(pair.admit(usd(0.1), NOW).is_ok());
        assert!(close(pair.view.grant().unwrap().limit.usd, 0.1));
        // And past it, the call is refused as before leases: nothing more is held.
        let refused = pair.admit(usd(0.1), NOW).unwrap_err();
        let Refusal::Budget(exceeded) = refused else { panic!("{refused:?}") };
        assert!(close(exceeded.spent_usd, 0.1) && close(exceeded.asked_usd, 0.1));
        assert!(close(pair.committed(NOW), 0.1), "the first call's hold stays");
    }

    #[test]
    fn spend_is_counted_once_however_often_a_report_is_sent() {
        let mut pair = Pair::new(cap(10.0), RateLimits::default());
        let taken = pair.admit(usd(0.5), NOW).unwrap();
        pair.view.settle(&taken, 0.25, 0);
        let ask = pair.view.ask(&pair.base, Amounts::default(), NOW + 10);
        let (state, _) = refresh(&mut pair.scope, pair.state.take(), &ask, 0, NOW + 10);
        let committed = pair.scope.committed(Window::Day, NOW + 10);
        // The same ask again (its answer was lost) changes nothing.
        let (state, _) = refresh(&mut pair.scope, Some(state), &ask, 0, NOW + 20);
        assert!(close(pair.scope.committed(Window::Day, NOW + 20), committed));
        assert!(close(state.counted_usd, 0.25));
        // Settled spend is what the report said; the rest is the lease's new free part.
        assert!(close(committed - state.reserved_usd, 0.25));
    }

    #[test]
    fn what_calls_in_flight_hold_stays_reserved_even_past_the_cap() {
        let mut pair = Pair::new(cap(1.0), RateLimits::default());
        let a = pair.admit(usd(0.4), NOW).unwrap();
        let _b = pair.admit(usd(0.4), NOW).unwrap();
        // `a` cost far more than it was admitted with (a vendor that overbilled).
        pair.view.settle(&a, 0.9, 0);
        assert!(pair.refresh(Amounts::default(), NOW + 5).is_none());
        let state = pair.state.clone().unwrap();
        assert!(close(state.reserved_usd, 0.4), "b's hold is kept: {}", state.reserved_usd);
        assert!(close(pair.committed(NOW + 5), 1.3));
        assert!(pair.admit(usd(0.01), NOW + 6).is_err(), "nothing is free");
    }

    #[test]
    fn a_lease_its_isolate_stopped_refreshing_is_freed_and_a_late_report_counts_once() {
        let mut pair = Pair::new(cap(10.0), RateLimits::default());
        let taken = pair.admit(usd(1.0), NOW).unwrap();
        let mut state = pair.state.take().unwrap();
        let later = NOW + LEASE_TTL_MS + LEASE_GRACE_MS + 1;
        assert!(state.expired(later) && state.live(NOW + LEASE_TTL_MS) && !state.live(later));
        free(&mut pair.scope, &mut state, later);
        assert!(close(pair.committed(later), 0.0));
        // The call ends after all, and its isolate reports it: its cost counts once.
        pair.view.settle(&taken, 0.7, 0);
        let ask = pair.view.ask(&pair.base, Amounts::default(), later);
        let (state, _) = refresh(&mut pair.scope, Some(state), &ask, 0, later);
        let (state, _) = refresh(&mut pair.scope, Some(state), &ask, 0, later);
        assert!(close(state.counted_usd, 0.7));
        assert!(close(pair.committed(later) - state.reserved_usd, 0.7));
    }

    #[test]
    fn requests_per_minute_are_taken_exactly_as_before_leases() {
        let mut pair = Pair::new(vec![], RateLimits { rpm: Some(3), tpm: None });
        for left in [2, 1, 0] {
            pair.admit(usd(0.0), NOW).unwrap();
            let headers = pair.view.headers();
            let remaining = headers.iter().find(|(n, _)| *n == "x-ratelimit-remaining-requests").unwrap();
            assert_eq!(remaining.1, left.to_string());
        }
        let refused = pair.admit(usd(0.0), NOW + 1).unwrap_err();
        let Refusal::Requests { limit: 3, retry_after_ms } = refused else { panic!("{refused:?}") };
        assert!(retry_after_ms > 0 && retry_after_ms <= 20_000, "{retry_after_ms}");
    }

    #[test]
    fn a_lease_told_its_bucket_is_dry_refuses_at_once_until_its_part_refills() {
        // 600 rpm, ten requests a second; three leases share it.
        let mut pair = Pair::new(vec![], RateLimits { rpm: Some(600), tpm: None });
        pair.scope.requests = Some(Bucket::full(600, NOW));
        pair.scope.requests.as_mut().unwrap().take(600, 599);
        let ask = pair.view.ask(&pair.base, usd(0.0), NOW);
        let (state, refused) = refresh(&mut pair.scope, None, &ask, 2, NOW);
        assert!(refused.is_none());
        assert_eq!(state.grant.live, 3);
        pair.view.answered(ask.seq, Answered::Granted(state.grant.clone()), NOW);
        assert_eq!(pair.view.grant().unwrap().requests.unwrap().remaining, 0, "the last request went to this lease");
        // The next call finds the lease short and the bucket dry: its third of the refill
        // brings a request in 300 ms.
        assert_eq!(pair.view.take(usd(0.0), NOW + 10), Err(Short::Insufficient));
        let refusal = pair.view.dry(usd(0.0), NOW + 10, false).expect("refused at once");
        assert_eq!(refusal, Refusal::Requests { limit: 600, retry_after_ms: 290 });
        // Once that part came, the call asks the ledger (it is there to be had), unless a
        // refresh is on its way already, which brings no more than that part.
        assert!(pair.view.dry(usd(0.0), NOW + 400, false).is_none());
        assert_eq!(
            pair.view.dry(usd(0.0), NOW + 400, true),
            Some(Refusal::Requests { limit: 600, retry_after_ms: 300 })
        );
        // Past the lease's lifetime the call asks the ledger again, as before.
        assert!(pair.view.dry(usd(0.0), NOW + LEASE_TTL_MS, true).is_none());
        // A lease with room, or a bucket with enough left, refuses nothing.
        let mut roomy = Pair::new(vec![], RateLimits { rpm: Some(60), tpm: None });
        roomy.admit(usd(0.0), NOW).unwrap();
        assert!(roomy.view.dry(usd(0.0), NOW + 1, true).is_none());
        let taken = (0..10).take_while(|_| roomy.view.take(usd(0.0), NOW + 1).is_ok()).count();
        assert!(taken > 0 && taken < 10, "a few calls' worth: {taken}");
        assert!(roomy.view.dry(usd(0.0), NOW + 1, true).is_none(), "most of the bucket is left: ask for it");
    }

    #[test]
    fn tokens_beyond_the_estimate_are_a_debt_and_unused_ones_come_back() {
        let mut pair = Pair::new(vec![], RateLimits { rpm: None, tpm: Some(100) });
        let need = Amounts { usd: 0.0, requests: 1, tokens: 95 };
        let taken = pair.admit(need, NOW).unwrap();
        assert!(pair.admit(need, NOW).is_err(), "a second call of 95 does not fit");
        // The first used 17: the rest is free again at once, in the lease.
        pair.view.settle(&taken, 0.0, 17);
        assert!(pair.admit(Amounts { tokens: 65, ..need }, NOW + 1).is_ok());
        // A call that used more than its estimate leaves a debt in the bucket.
        let mut pair = Pair::new(vec![], RateLimits { rpm: None, tpm: Some(100) });
        let taken = pair.admit(Amounts { tokens: 10, ..need }, NOW).unwrap();
        pair.view.settle(&taken, 0.0, 150);
        assert!(pair.admit(Amounts { tokens: 10, ..need }, NOW + 1).is_err());
    }

    #[test]
    fn a_lease_is_used_for_its_lifetime_only_and_refreshed_when_due() {
        let mut pair = Pair::new(cap(100.0), RateLimits::default());
        pair.admit(usd(0.01), NOW).unwrap();
        assert!(!pair.view.due(NOW + 10), "fresh, with room");
        assert!(pair.view.due(NOW + REFRESH_AFTER_MS), "in use and half way through its life");
        assert_eq!(pair.view.take(usd(0.01), NOW + LEASE_TTL_MS), Err(Short::Expired));
        // An idle lease is left to lapse.
        let mut idle = Pair::new(cap(100.0), RateLimits::default());
        idle.refresh(Amounts::default(), NOW);
        assert!(!idle.view.due(NOW + REFRESH_AFTER_MS));
    }

    #[test]
    fn the_slice_follows_the_demand_seen() {
        let mut pair = Pair::new(cap(1_000.0), RateLimits { rpm: Some(1_000_000), tpm: None });
        pair.admit(usd(0.01), NOW).unwrap();
        // A thousand calls in the next second.
        for i in 0..1_000 {
            let _ = pair.view.take(usd(0.01), NOW + i);
        }
        pair.refresh(Amounts::default(), NOW + 1_000);
        let grant = pair.view.grant().unwrap();
        // About what 3 s of it would use (1.5 lifetimes), not half the budget or bucket.
        assert!(grant.limit.usd > 20.0 && grant.limit.usd < 40.0, "{}", grant.limit.usd);
        assert!(grant.limit.requests > 2_000 && grant.limit.requests < 4_000, "{}", grant.limit.requests);
    }

    #[test]
    fn many_leases_over_one_cap_never_overrun_it() {
        // Eight isolates, each with a lease, racing calls of random sizes at a $5 cap, with
        // their refreshes and reports in any order: the settled spend never passes the cap.
        let mut scope = Scope::default();
        let caps = cap(5.0);
        let base = base(caps.clone(), RateLimits::default());
        let mut states: Vec<Option<LeaseState>> = vec![None; 8];
        let mut views: Vec<LeaseView> = (0..8).map(|i| LeaseView::new(format!("l{i}"), NOW)).collect();
        let mut in_flight: Vec<(usize, Taken, f64)> = Vec::new();
        let mut seed = 7u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut settled = 0.0;
        for step in 0..5_000u64 {
            let now = NOW + step;
            let i = (next() % 8) as usize;
            match next() % 3 {
                0 => {
                    let need = 0.01 + (next() % 100) as f64 / 1_000.0;
                    let taken = match views[i].take(usd(need), now) {
                        Ok(taken) => Some(taken),
                        Err(_) => {
                            let live = states.iter().filter(|s| s.as_ref().is_some_and(|s| s.live(now))).count();
                            let ask = views[i].ask(&base, usd(need), now);
                            let (state, refused) =
                                refresh(&mut scope, states[i].take(), &ask, live.saturating_sub(1), now);
                            let answer = match refused {
                                None => Answered::Granted(state.grant.clone()),
                                Some(_) => Answered::Refused(state.grant.clone()),
                            };
                            states[i] = Some(state);
                            views[i].answered(ask.seq, answer, now)
                        }
                    };
                    if let Some(taken) = taken {
                        // A call costs at most what it was admitted with.
                        in_flight.push((i, taken, need * (next() % 101) as f64 / 100.0));
                    }
                }
                1 if !in_flight.is_empty() => {
                    let (i, taken, cost) = in_flight.swap_remove((next() as usize) % in_flight.len());
                    views[i].settle(&taken, cost, 0);
                    settled += cost;
                }
                _ => {
                    if views[i].grant().is_some() {
                        let ask = views[i].ask(&base, Amounts::default(), now);
                        let (state, _) = refresh(&mut scope, states[i].take(), &ask, 7, now);
                        views[i].answered(ask.seq, Answered::Granted(state.grant.clone()), now);
                        states[i] = Some(state);
                    }
                }
            }
            let held: f64 = in_flight.iter().map(|(_, t, _)| t.usd).sum();
            assert!(settled + held <= 5.0 + 1e-9, "step {step}: {settled} settled + {held} held");
            assert!(scope.committed(Window::Day, now) <= 5.0 + 1e-9);
        }
        assert!(settled > 4.0, "the cap was used: {settled}");
    }
}
