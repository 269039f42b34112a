//! Calls in flight and their ends, as one ledger instance sees them: each call's hold lives
//! until its own expiry (set from the call's own time limit, pushed back by renewals while the
//! call runs), and each settlement and usage row is applied once, however often it is sent.
//!
//! The storage is the caller's (`Book`: SQLite tables in the worker's `Ledger`, a map in the
//! tests); the arithmetic is `ledger::Scope`'s. Every function here reads what it needs first,
//! decides in memory, and hands the book all its changes in one `write`, so that an error while
//! reading changes nothing.
//!
//! Ids: a call gets one id when it is admitted; it is the id of its hold in every instance and
//! of its usage row. A settlement is remembered by its hold's id, a usage row as `usage/<id>`,
//! for `SETTLED_KEEP_MS`; the outbox gives up re-sending after `RESEND_WINDOW_MS`, and an
//! instance refuses a settlement whose hold is gone, or a usage row, of a call that ended more
//! than `LATE_LIMIT_MS` ago (its id might have been forgotten): nothing is applied twice.

use crate::ledger::{Hold, Scope, UsageRow, HOLD_TTL_MS};
use crate::ratelimit::RateLimits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

const MINUTE_MS: u64 = 60_000;

/// How long an instance remembers the settlements and usage rows it applied.
pub const SETTLED_KEEP_MS: u64 = 60 * MINUTE_MS;
/// A settlement (whose hold is gone) or usage row of a call that ended longer ago than this is
/// not applied: whether it already was may have been forgotten.
pub const LATE_LIMIT_MS: u64 = SETTLED_KEEP_MS / 2;
/// How long the outbox keeps re-sending what an instance did not take.
pub const RESEND_WINDOW_MS: u64 = 20 * MINUTE_MS;

/// A hold is kept at least this long, and at most this long without a renewal.
pub const MIN_HOLD_TTL_MS: u64 = MINUTE_MS;
pub const MAX_HOLD_TTL_MS: u64 = 24 * 60 * MINUTE_MS;
/// Beyond a call's own time limit, time for its settlement to arrive.
pub const HOLD_GRACE_MS: u64 = 5 * MINUTE_MS;
/// The longest wait between two attempts of one request (the attempts' backoff).
const MAX_BACKOFF_MS: u64 = 5_000;

/// The longest a call to a model can take: its deadline, else its total timeout for each of
/// its attempts (and the backoff between them); `None` when nothing bounds it (a stream may
/// then run for as long as the vendor sends).
pub fn call_limit_ms(deadline_ms: Option<u64>, total_timeout_ms: Option<u64>, attempts: usize) -> Option<u64> {
    if deadline_ms.is_some() {
        return deadline_ms;
    }
    let attempts = attempts.max(1) as u64;
    total_timeout_ms.map(|t| t.saturating_mul(attempts).saturating_add(MAX_BACKOFF_MS * (attempts - 1)))
}

/// How long a call's hold is kept (before any renewal): its time limit and the grace for its
/// settlement, else `HOLD_TTL_MS`; at most `MAX_HOLD_TTL_MS` (a longer call renews it).
pub fn hold_ttl_ms(call_limit_ms: Option<u64>) -> u64 {
    call_limit_ms
        .map_or(HOLD_TTL_MS, |limit| limit.saturating_add(HOLD_GRACE_MS))
        .clamp(MIN_HOLD_TTL_MS, MAX_HOLD_TTL_MS)
}

/// When a hold asked to live `ttl_ms` from `now_ms` expires (the ask kept within bounds, so that
/// a sender's mistake neither frees a hold at once nor keeps it for ever).
pub fn hold_until(now_ms: u64, ttl_ms: Option<u64>) -> u64 {
    now_ms.saturating_add(ttl_ms.unwrap_or(HOLD_TTL_MS).clamp(MIN_HOLD_TTL_MS, MAX_HOLD_TTL_MS))
}

/// When a hold that expires at `until_ms`, renewed `ttl_ms` at a time, is due for renewal: once
/// two thirds of a term have passed, which leaves a third for the renewal to arrive (and be
/// tried again).
pub fn renew_due_ms(until_ms: u64, ttl_ms: u64) -> u64 {
    until_ms.saturating_sub(ttl_ms / 3)
}

/// A call's hold in one instance, with its own expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub hold: Hold,
    pub limits: RateLimits,
    pub until_ms: u64,
}

impl Held {
    /// A hold as stored: rows written before holds had their own expiry expire `HOLD_TTL_MS`
    /// after their admission, as they did then.
    pub fn stored(hold: Hold, limits: RateLimits, until_ms: Option<u64>) -> Self {
        let until_ms = until_ms.unwrap_or(hold.at_ms.saturating_add(HOLD_TTL_MS));
        Self { hold, limits, until_ms }
    }

    /// Whether the sweep frees it: its call has not reported back by its expiry (its isolate
    /// died, or it stopped renewing).
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms > self.until_ms
    }
}

/// A call that ended: its hold settled at its real cost and tokens, or released if it failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settle {
    pub hold_id: String,
    #[serde(default)]
    pub cost_usd: f64,
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub released: bool,
    /// When the call ended (ms since the epoch; 0: not said, by an older sender).
    #[serde(default)]
    pub ended_ms: u64,
}

/// What an instance is sent after calls ended, gathered over a short while.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    #[serde(default)]
    pub settles: Vec<Settle>,
    #[serde(default)]
    pub usage: Vec<UsageRow>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.settles.is_empty() && self.usage.is_empty()
    }

    pub fn len(&self) -> usize {
        self.settles.len() + self.usage.len()
    }

    /// Drops what ended before `oldest_ms` (with no end time: kept); returns how much went.
    pub fn drop_older_than(&mut self, oldest_ms: u64) -> usize {
        let before = self.len();
        self.settles.retain(|s| s.ended_ms == 0 || s.ended_ms >= oldest_ms);
        self.usage.retain(|u| u.call_id.is_empty() || u.minute_ms >= oldest_ms);
        before - self.len()
    }
}

/// `POST /renew`: the calls are still running; their holds expire `ttl_ms` from now (or later).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Renew {
    pub hold_ids: Vec<String>,
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// What a renewal found: the holds still held and their new expiry (a hold not listed is gone:
/// settled, or freed by the sweep).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Renewed {
    pub renewed: Vec<(String, u64)>,
}

/// The id under which a usage row is remembered once applied.
pub fn usage_id(call_id: &str) -> String {
    format!("usage/{call_id}")
}

/// Where an instance keeps the holds of its calls in flight and the ids it applied.
pub trait Book {
    type Error;
    /// The hold of call `id`, if it is still held.
    fn held(&mut self, id: &str) -> Result<Option<Held>, Self::Error>;
    /// Every hold still held.
    fn holds(&mut self) -> Result<Vec<(String, Held)>, Self::Error>;
    /// Whether the settlement or usage row `id` was applied (and is still remembered).
    fn applied(&mut self, id: &str) -> Result<bool, Self::Error>;
    /// Stores everything in `changes`, together.
    fn write(&mut self, changes: &Changes<'_>) -> Result<(), Self::Error>;
}

/// What one batch, sweep or renewal changes.
#[derive(Debug, Default, PartialEq)]
pub struct Changes<'a> {
    pub now_ms: u64,
    /// The scope as it is now, when it changed.
    pub scope: Option<Scope>,
    /// Holds settled, released or swept: their rows go.
    pub freed: Vec<String>,
    /// Settlements and usage rows applied now, to remember.
    pub applied: Vec<String>,
    /// Usage rows to add to the instance's usage.
    pub usage: Vec<&'a UsageRow>,
    /// Holds whose expiry moved.
    pub renewed: Vec<(String, u64)>,
    /// Applied ids remembered since before this are forgotten.
    pub forget_before_ms: Option<u64>,
}

/// What became of a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Holds settled at the call's real cost.
    pub settled: usize,
    /// Holds released (the call failed).
    pub released: usize,
    /// Costs of calls whose hold was gone (swept as stale: the call outlived it), counted now.
    pub charged: usize,
    pub usage: usize,
    /// Applied before: nothing done.
    pub repeated: usize,
    /// Ended longer ago than `LATE_LIMIT_MS`: not applied.
    pub late: usize,
}

fn late(ended_ms: u64, now_ms: u64) -> bool {
    ended_ms != 0 && now_ms.saturating_sub(ended_ms) > LATE_LIMIT_MS
}

/// Applies a batch once: each settlement settles (or releases) its call's hold; a cost whose
/// hold is gone (swept as stale before the call reported back) is charged; usage rows are
/// added. Whatever was applied before (the batch was sent again after an answer that was lost)
/// is left alone. `scope` is updated only when the book took the changes.
pub fn apply<B: Book>(book: &mut B, scope: &mut Scope, batch: &Batch, now_ms: u64) -> Result<Outcome, B::Error> {
    let mut next = scope.clone();
    let mut changes = Changes { now_ms, ..Changes::default() };
    let mut outcome = Outcome::default();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for settle in &batch.settles {
        let id = settle.hold_id.as_str();
        if !seen.insert(id) || book.applied(id)? {
            outcome.repeated += 1;
            continue;
        }
        match book.held(id)? {
            Some(held) => {
                if settle.released {
                    next.release(&held.hold, &held.limits, now_ms);
                    outcome.released += 1;
                } else {
                    next.settle(&held.hold, settle.cost_usd, settle.tokens, &held.limits, now_ms);
                    outcome.settled += 1;
                }
                changes.freed.push(id.to_owned());
            }
            // Still held, it was not applied, however late; gone, it may have been, and been
            // forgotten since.
            None if late(settle.ended_ms, now_ms) => {
                outcome.late += 1;
                continue;
            }
            None if !settle.released => {
                next.charge(settle.cost_usd, now_ms);
                outcome.charged += 1;
            }
            // Released, and not held (swept, or never held): remembered all the same, so that
            // an admission of this call that arrives after it holds nothing.
            None => outcome.released += 1,
        }
        changes.applied.push(id.to_owned());
    }
    let mut usage_ids = BTreeSet::new();
    for row in &batch.usage {
        if row.call_id.is_empty() {
            // From an older sender, with no id: applied as it comes.
            changes.usage.push(row);
            outcome.usage += 1;
            continue;
        }
        if late(row.minute_ms, now_ms) {
            outcome.late += 1;
            continue;
        }
        let id = usage_id(&row.call_id);
        if usage_ids.contains(&id) || book.applied(&id)? {
            outcome.repeated += 1;
            continue;
        }
        usage_ids.insert(id.clone());
        changes.usage.push(row);
        changes.applied.push(id);
        outcome.usage += 1;
    }
    if next != *scope {
        changes.scope = Some(next);
    }
    if changes.applied.is_empty() && changes.usage.is_empty() {
        return Ok(outcome);
    }
    book.write(&changes)?;
    if let Some(next) = changes.scope {
        *scope = next;
    }
    Ok(outcome)
}

/// Frees the holds of calls that have not reported back by their own expiry (their isolate
/// died): their reservations are released. They are not remembered as settled: the call's
/// settlement, should it still come, counts its cost once. Applied ids older than
/// `SETTLED_KEEP_MS` are forgotten. Returns how many holds were freed.
pub fn sweep<B: Book>(book: &mut B, scope: &mut Scope, now_ms: u64) -> Result<usize, B::Error> {
    let mut next = scope.clone();
    let mut changes =
        Changes { now_ms, forget_before_ms: Some(now_ms.saturating_sub(SETTLED_KEEP_MS)), ..Changes::default() };
    for (id, held) in book.holds()? {
        if held.expired(now_ms) {
            next.release(&held.hold, &held.limits, now_ms);
            changes.freed.push(id);
        }
    }
    let freed = changes.freed.len();
    if next != *scope {
        changes.scope = Some(next);
    }
    book.write(&changes)?;
    if let Some(next) = changes.scope {
        *scope = next;
    }
    Ok(freed)
}

/// The calls are still running: each hold still held expires `ttl_ms` from now, unless it
/// already expires later. Returns the holds found and their expiry.
pub fn renew<B: Book>(book: &mut B, renew: &Renew, now_ms: u64) -> Result<Renewed, B::Error> {
    let until_ms = hold_until(now_ms, renew.ttl_ms);
    let mut renewed = Vec::with_capacity(renew.hold_ids.len());
    let mut changes = Changes { now_ms, ..Changes::default() };
    for id in &renew.hold_ids {
        let Some(held) = book.held(id)? else { continue };
        if until_ms > held.until_ms {
            changes.renewed.push((id.clone(), until_ms));
        }
        renewed.push((id.clone(), held.until_ms.max(until_ms)));
    }
    if !changes.renewed.is_empty() {
        book.write(&changes)?;
    }
    Ok(Renewed { renewed })
}

/// A book in memory: what the worker's SQLite tables hold, for tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MemoryBook {
    pub holds: std::collections::BTreeMap<String, Held>,
    pub applied: std::collections::BTreeMap<String, u64>,
    pub usage: Vec<UsageRow>,
    /// The scope as last written.
    pub scope: Option<Scope>,
}

impl Book for MemoryBook {
    type Error = std::convert::Infallible;

    fn held(&mut self, id: &str) -> Result<Option<Held>, Self::Error> {
        Ok(self.holds.get(id).cloned())
    }

    fn holds(&mut self) -> Result<Vec<(String, Held)>, Self::Error> {
        Ok(self.holds.iter().map(|(id, held)| (id.clone(), held.clone())).collect())
    }

    fn applied(&mut self, id: &str) -> Result<bool, Self::Error> {
        Ok(self.applied.contains_key(id))
    }

    fn write(&mut self, changes: &Changes<'_>) -> Result<(), Self::Error> {
        if let Some(scope) = &changes.scope {
            self.scope = Some(scope.clone());
        }
        for id in &changes.freed {
            self.holds.remove(id);
        }
        for id in &changes.applied {
            self.applied.insert(id.clone(), changes.now_ms);
        }
        self.usage.extend(changes.usage.iter().map(|row| (*row).clone()));
        for (id, until_ms) in &changes.renewed {
            if let Some(held) = self.holds.get_mut(id) {
                held.until_ms = *until_ms;
            }
        }
        if let Some(before) = changes.forget_before_ms {
            self.applied.retain(|_, at| *at >= before);
        }
        Ok(())
    }
}

/// What a call is charged: the price of the usage its vendor reported, when the answer was
/// complete. A call without usage, or a stream left early (the client went away, the vendor
/// broke off), is charged what was held for it, or the usage seen so far if that costs more:
/// vendors report a stream's usage at different points (Anthropic's first event counts one
/// output token), so what was seen of a stream cut short says little of what the vendor bills.
pub fn charge_usd(usage_usd: Option<f64>, complete: bool, held_usd: f64) -> f64 {
    match usage_usd {
        Some(cost) if complete => cost,
        Some(cost) => cost.max(held_usd),
        None => held_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Ask, Cap, Window};

    // 2026-11-22T10:30:00Z
    const NOW: u64 = 1_795_343_400_000;

    fn caps() -> Vec<Cap> {
        vec![Cap { window: Window::Day, limit_usd: 10.0, warn_at: None }]
    }

    /// Admits a call of at most `amount_usd` into `scope`, its hold kept in `book` under `id`.
    fn admit(book: &mut MemoryBook, scope: &mut Scope, id: &str, amount_usd: f64, ttl_ms: Option<u64>, now: u64) {
        let limits = RateLimits { rpm: None, tpm: Some(10_000) };
        let ask = Ask { caps: caps(), limits, amount_usd, tokens: 100 };
        let admitted = scope.admit(&ask, now).unwrap();
        book.holds.insert(id.to_owned(), Held { hold: admitted.hold, limits, until_ms: hold_until(now, ttl_ms) });
    }

    fn settle(id: &str, cost_usd: f64, ended_ms: u64) -> Settle {
        Settle { hold_id: id.to_owned(), cost_usd, tokens: 50, released: false, ended_ms }
    }

    fn committed(scope: &mut Scope, now: u64) -> f64 {
        scope.committed(Window::Day, now)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_settlement_sent_twice_charges_once() {
        let (mut book, mut scope) = (MemoryBook::default(), Scope::default());
        admit(&mut book, &mut scope, "call_1", 2.0, None, NOW);
        assert!(close(committed(&mut scope, NOW), 2.0));
        let batch = Batch { settles: vec![settle("call_1", 0.5, NOW)], usage: vec![] };
        let first = apply(&mut book, &mut scope, &batch, NOW + 100).unwrap();
        assert_eq!((first.settled, first.repeated), (1, 0));
        assert!(close(committed(&mut scope, NOW), 0.5));
        // The ledger answered 500 after it had settled (or its answer was lost): the outbox
        // sends the same batch again, alone and then alongside a second call.
        let again = apply(&mut book, &mut scope, &batch, NOW + 1_000).unwrap();
        assert_eq!((again.settled, again.charged, again.repeated), (0, 0, 1));
        admit(&mut book, &mut scope, "call_2", 1.0, None, NOW);
        let mixed = Batch { settles: vec![settle("call_1", 0.5, NOW), settle("call_2", 0.25, NOW)], usage: vec![] };
        let outcome = apply(&mut book, &mut scope, &mixed, NOW + 2_000).unwrap();
        assert_eq!((outcome.settled, outcome.repeated), (1, 1));
        assert!(close(committed(&mut scope, NOW + 2_000), 0.75));
        // The same settlement twice in one batch counts once too.
        admit(&mut book, &mut scope, "call_3", 1.0, None, NOW);
        let doubled = Batch { settles: vec![settle("call_3", 0.25, NOW), settle("call_3", 0.25, NOW)], usage: vec![] };
        apply(&mut book, &mut scope, &doubled, NOW + 3_000).unwrap();
        assert!(close(committed(&mut scope, NOW + 3_000), 1.0));
        assert_eq!(book.scope.as_ref(), Some(&scope));
    }

    #[test]
    fn a_usage_row_sent_twice_counts_once() {
        let (mut book, mut scope) = (MemoryBook::default(), Scope::default());
        let row = UsageRow {
            minute_ms: NOW,
            key_id: "k".into(),
            call_id: "call_1".into(),
            requests: 1,
            cost_usd: 0.5,
            ..UsageRow::default()
        };
        let batch = Batch { settles: vec![], usage: vec![row.clone()] };
        assert_eq!(apply(&mut book, &mut scope, &batch, NOW).unwrap().usage, 1);
        assert_eq!(apply(&mut book, &mut scope, &batch, NOW + 500).unwrap().repeated, 1);
        assert_eq!(book.usage, vec![row.clone()]);
        // A call with no budget holds nothing: its usage row is still applied once.
        let other = UsageRow { call_id: "call_2".into(), ..row.clone() };
        let batch = Batch { settles: vec![], usage: vec![other.clone(), other] };
        assert_eq!(apply(&mut book, &mut scope, &batch, NOW + 600).unwrap().usage, 1);
        assert_eq!(book.usage.len(), 2);
        // A row from an older sender, with no id, is applied as it comes.
        let unnamed = Batch { settles: vec![], usage: vec![UsageRow { call_id: String::new(), ..row }] };
        apply(&mut book, &mut scope, &unnamed, NOW + 700).unwrap();
        apply(&mut book, &mut scope, &unnamed, NOW + 800).unwrap();
        assert_eq!(book.usage.len(), 4);
    }

    #[test]
    fn a_swept_holds_late_settlement_counts_once() {
        let (mut book, mut scope) = (MemoryBook::default(), Scope::default());
        admit(&mut book, &mut scope, "call_1", 2.0, None, NOW);
        // The call outlived its hold without renewing it: the sweep frees the reservation.
        let later = NOW + HOLD_TTL_MS + 1;
        assert_eq!(sweep(&mut book, &mut scope, later).unwrap(), 1);
        assert!(book.holds.is_empty());
        assert!(close(committed(&mut scope, later), 0.0));
        // Its settlement comes at last: the cost counts, once.
        let batch = Batch { settles: vec![settle("call_1", 0.5, later)], usage: vec![] };
        assert_eq!(apply(&mut book, &mut scope, &batch, later + 100).unwrap().charged, 1);
        assert_eq!(apply(&mut book, &mut scope, &batch, later + 200).unwrap().repeated, 1);
        assert!(close(committed(&mut scope, later), 0.5));
        // A release of a swept hold gives nothing back twice.
        admit(&mut book, &mut scope, "call_2", 1.0, None, later);
        sweep(&mut book, &mut scope, later + HOLD_TTL_MS + 1).unwrap();
        let release = Settle { hold_id: "call_2".into(), released: true, ..Settle::default() };
        apply(&mut book, &mut scope, &Batch { settles: vec![release], usage: vec![] }, later + HOLD_TTL_MS + 2)
            .unwrap();
        assert!(close(committed(&mut scope, later + HOLD_TTL_MS + 2), 0.5));
    }

    #[test]
    fn a_release_is_applied_once_and_blocks_nothing_else() {
        let (mut book, mut scope) = (MemoryBook::default(), Scope::default());
        admit(&mut book, &mut scope, "call_1", 2.0, None, NOW);
        let release = Batch {
            settles: vec![Settle { hold_id: "call_1".into(), released: true, ..Settle::default() }],
            usage: vec![],
        };
        assert_eq!(apply(&mut book, &mut scope, &release, NOW).unwrap().released, 1);
        assert!(close(committed(&mut scope, NOW), 0.0));
        // A second release (or a settlement after it) changes nothing.
        assert_eq!(apply(&mut book, &mut scope, &release, NOW).unwrap().repeated, 1);
        let late_settle = Batch { settles: vec![settle("call_1", 1.0, NOW)], usage: vec![] };
        assert_eq!(apply(&mut book, &mut scope, &late_settle, NOW).unwrap().repeated, 1);
        assert!(close(committed(&mut scope, NOW), 0.0));
    }

    #[test]
    fn the_sweep_leaves_a_hold_whose_expiry_is_ahead() {
        let (mut book, mut scope) = (MemoryBook::default(), Scope::default());
        // A call whose own limit is an hour holds past the default 15 minutes.
        admit(&mut book, &mut scope, "long", 2.0, Some(hold_ttl_ms(Some(60 * MINUTE_MS))), NOW);
        admit(&mut book, &mut scope, "short", 1.0, None, NOW);
        let after_default = NOW + HOLD_TTL_MS + MINUTE_MS;
        assert_eq!(sweep(&mut book, &mut scope, after_default).unwrap(), 1);
        assert_eq!(book.holds.keys().collect::<Vec<_>>(), ["long"]);
        assert!(close(committed(&mut scope, after_default), 2.0));
        assert_eq!(sweep(&mut book, &mut scope, NOW + 65 * MINUTE_MS + 1).unwrap(), 1);
        assert!(book.holds.is_empty());
    }

    #[test]
    fn a_renewal_keeps_a_hold_past_its_ttl() {
        let (mut book, mut scope) = (MemoryBook::default(), Scope::default());
        admit(&mut book, &mut scope, "stream", 2.0, None, NOW);
        let due = renew_due_ms(book.holds["stream"].until_ms, HOLD_TTL_MS);
        assert_eq!(due, NOW + 10 * MINUTE_MS);
        // The stream still runs when the renewal is due: its hold now expires 15 minutes later.
        let ask = Renew { hold_ids: vec!["stream".into(), "gone".into()], ttl_ms: None };
        let renewed = renew(&mut book, &ask, due).unwrap();
        assert_eq!(renewed.renewed, vec![("stream".to_owned(), due + HOLD_TTL_MS)]);
        assert_eq!(sweep(&mut book, &mut scope, NOW + HOLD_TTL_MS + MINUTE_MS).unwrap(), 0);
        assert!(close(committed(&mut scope, NOW), 2.0));
        // A renewal never shortens a hold.
        let short = Renew { hold_ids: vec!["stream".into()], ttl_ms: Some(MIN_HOLD_TTL_MS) };
        assert_eq!(renew(&mut book, &short, due).unwrap().renewed[0].1, due + HOLD_TTL_MS);
        // It settles normally afterwards.
        let batch = Batch { settles: vec![settle("stream", 0.5, NOW + 20 * MINUTE_MS)], usage: vec![] };
        assert_eq!(apply(&mut book, &mut scope, &batch, NOW + 20 * MINUTE_MS).unwrap().settled, 1);
        // Once the renewals stop, the hold goes with the sweep after its expiry.
        admit(&mut book, &mut scope, "stopped", 1.0, None, NOW);
        renew(&mut book, &Renew { hold_ids: vec!["stopped".into()], ttl_ms: None }, due).unwrap();
        assert_eq!(sweep(&mut book, &mut scope, due + HOLD_TTL_MS + 1).unwrap(), 1);
    }

    #[test]
    fn a_settlement_too_old_to_tell_is_not_applied() {
        let (mut book, mut scope) = (MemoryBook::default(), Scope::default());
        admit(&mut book, &mut scope, "call_1", 2.0, None, NOW);
        let batch = Batch { settles: vec![settle("call_1", 0.5, NOW)], usage: vec![] };
        apply(&mut book, &mut scope, &batch, NOW).unwrap();
        // An hour later the instance has forgotten it settled the call; the same settlement,
        // sent again now, is refused as late rather than charged a second time.
        let much_later = NOW + SETTLED_KEEP_MS + MINUTE_MS;
        sweep(&mut book, &mut scope, much_later).unwrap();
        assert!(book.applied.is_empty());
        assert_eq!(apply(&mut book, &mut scope, &batch, much_later).unwrap().late, 1);
        assert!(close(committed(&mut scope, NOW), 0.5));
        // A late settlement whose hold is still held was never applied: it is, now.
        admit(&mut book, &mut scope, "call_2", 1.0, Some(MAX_HOLD_TTL_MS), NOW);
        let late = Batch { settles: vec![settle("call_2", 0.25, NOW)], usage: vec![] };
        assert_eq!(apply(&mut book, &mut scope, &late, much_later).unwrap().settled, 1);
        assert!(close(committed(&mut scope, NOW), 0.75));
        // A late usage row cannot be told from one applied and forgotten: refused.
        let row = UsageRow { minute_ms: NOW, call_id: "call_2".into(), requests: 1, ..UsageRow::default() };
        assert_eq!(
            apply(&mut book, &mut scope, &Batch { settles: vec![], usage: vec![row] }, much_later).unwrap().late,
            1
        );
        assert!(book.usage.is_empty());
        // The bounds nest: the outbox stops re-sending before the ledger refuses, which is
        // before it forgets.
        const { assert!(RESEND_WINDOW_MS < LATE_LIMIT_MS && LATE_LIMIT_MS < SETTLED_KEEP_MS) };
    }

    #[test]
    fn a_batch_that_cannot_be_read_changes_nothing() {
        struct Failing(MemoryBook);
        impl Book for Failing {
            type Error = &'static str;
            fn held(&mut self, id: &str) -> Result<Option<Held>, Self::Error> {
                if id == "bad" {
                    return Err("unreadable");
                }
                Ok(self.0.held(id).unwrap_or(None))
            }
            fn holds(&mut self) -> Result<Vec<(String, Held)>, Self::Error> {
                Ok(self.0.holds().unwrap_or_default())
            }
            fn applied(&mut self, id: &str) -> Result<bool, Self::Error> {
                Ok(self.0.applied(id).unwrap_or(false))
            }
            fn write(&mut self, changes: &Changes<'_>) -> Result<(), Self::Error> {
                self.0.write(changes).map_err(|_| "unwritable")
            }
        }
        let mut book = MemoryBook::default();
        let mut scope = Scope::default();
        admit(&mut book, &mut scope, "good", 2.0, None, NOW);
        let mut failing = Failing(book);
        let before = (failing.0.clone(), scope.clone());
        let batch = Batch { settles: vec![settle("good", 0.5, NOW), settle("bad", 0.5, NOW)], usage: vec![] };
        assert!(apply(&mut failing, &mut scope, &batch, NOW).is_err());
        assert_eq!((failing.0, scope), before);
    }

    #[test]
    fn holds_last_as_long_as_their_call_may() {
        // No limit: the default; a deadline: the deadline and the grace; a total timeout: each
        // attempt's, and the backoff between them.
        assert_eq!(hold_ttl_ms(call_limit_ms(None, None, 3)), HOLD_TTL_MS);
        assert_eq!(hold_ttl_ms(call_limit_ms(Some(3_600_000), Some(60_000), 3)), 3_600_000 + HOLD_GRACE_MS);
        assert_eq!(call_limit_ms(None, Some(600_000), 3), Some(1_800_000 + 10_000));
        assert_eq!(hold_ttl_ms(Some(u64::MAX)), MAX_HOLD_TTL_MS);
        // What a sender asks is kept within bounds.
        assert_eq!(hold_until(NOW, Some(0)), NOW + MIN_HOLD_TTL_MS);
        assert_eq!(hold_until(NOW, Some(u64::MAX)), NOW + MAX_HOLD_TTL_MS);
        assert_eq!(hold_until(NOW, None), NOW + HOLD_TTL_MS);
        // A hold stored before holds had their own expiry keeps the old rule.
        let hold = Scope::default().admit(&Ask::default(), NOW).unwrap().hold;
        let held = Held::stored(hold, RateLimits::default(), None);
        assert!(!held.expired(NOW + HOLD_TTL_MS) && held.expired(NOW + HOLD_TTL_MS + 1));
    }

    #[test]
    fn old_messages_still_parse() {
        let settle: Settle = serde_json::from_str(r#"{"hold_id":"req_1","cost_usd":0.5,"tokens":3}"#).unwrap();
        assert_eq!((settle.ended_ms, settle.released), (0, false));
        let batch: Batch = serde_json::from_str(
            r#"{"settles":[],"usage":[{"minute_ms":1,"key_id":"k","key_name":"n","model":"m","provider":"p","tags":"{}","requests":1,"prompt_tokens":1,"completion_tokens":1,"cost_usd":0.1}]}"#,
        )
        .unwrap();
        assert_eq!(batch.usage[0].call_id, "");
        let renew: Renew = serde_json::from_str(r#"{"hold_ids":["a"]}"#).unwrap();
        assert_eq!(renew.ttl_ms, None);
    }

    #[test]
    fn the_outbox_drops_what_it_may_no_longer_resend() {
        let row = |call_id: &str, minute_ms| UsageRow { call_id: call_id.into(), minute_ms, ..UsageRow::default() };
        let mut batch = Batch {
            settles: vec![
                settle("old", 0.1, NOW - RESEND_WINDOW_MS - 1),
                settle("new", 0.1, NOW),
                settle("unsaid", 0.1, 0),
            ],
            usage: vec![row("old", NOW - RESEND_WINDOW_MS - 1), row("new", NOW), row("", 0)],
        };
        assert_eq!(batch.drop_older_than(NOW - RESEND_WINDOW_MS), 2);
        assert_eq!(batch.settles.iter().map(|s| s.hold_id.as_str()).collect::<Vec<_>>(), ["new", "unsaid"]);
        assert_eq!(batch.usage.len(), 2);
    }

    #[test]
    fn a_stream_left_early_is_charged_its_hold_or_what_it_used_if_more() {
        assert_eq!(charge_usd(Some(0.2), true, 1.0), 0.2);
        assert_eq!(charge_usd(Some(0.0001), false, 1.0), 1.0, "never the tiny message_start usage");
        assert_eq!(charge_usd(Some(3.0), false, 1.0), 3.0);
        assert_eq!(charge_usd(None, true, 1.0), 1.0);
        assert_eq!(charge_usd(None, false, 1.0), 1.0);
    }
}
