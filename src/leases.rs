//! This isolate's leases (`switchyard_core::lease`): one a ledger instance it admits calls to
//! (a key, the gateway, a target). A call is admitted against its lease here, with no wait; only
//! a call that finds no lease, an expired one, or too little left in it waits for the ledger,
//! which then grants at least what that call needs or refuses it. Leases in use are refreshed
//! after responses (`maintain`, inside `ctx.wait_until`), which also reports their use: the
//! ledger counts what a lease's calls cost within `REFRESH_AFTER_MS` of their end.
//!
//! One refresh of a lease is in flight at a time; calls that need it meanwhile wait for it (and
//! ask themselves if it got no answer, while `ADMIT_MS` allows), unless the ledger's last answer
//! said a rate limit's bucket is dry (`LeaseView::dry`): then they are refused at once.
//! They wait on their own timers, looking at the lease now and then: a request must never poll
//! (or be woken by) another request's I/O, which the runtime refuses or cancels with that
//! request. A refresh whose request ended before it did never finishes: after `WAIT_MS` it is
//! taken for abandoned and the next call asks anew.

use crate::ledger;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use switchyard_core::config::Config;
use switchyard_core::keys::KeyRecord;
use switchyard_core::lease::{
    Amounts, Answered, LeaseAnswer, LeaseAsk, LeaseView, Taken, ASK_TIMEOUT_MS, REFRESH_AFTER_MS,
};
use switchyard_core::ledger::{Cap, Refusal};
use switchyard_core::ratelimit::RateLimits;
use worker::{Date, Env};

/// What a refresh came to.
#[derive(Clone)]
enum Refreshed {
    Granted { refused: Option<Refusal> },
    Denied(Box<KeyRecord>),
    Failed(String),
}

struct Slot {
    instance: String,
    view: RefCell<LeaseView>,
    /// The scope as the last call knew it (caps, limits, record): what refreshes send.
    base: RefCell<LeaseAsk>,
    /// When the refresh in flight was sent.
    refreshing: Cell<Option<u64>>,
    /// What the last refresh came to, when it was sent, and what its waiting call needed.
    last: RefCell<Option<(u64, Refreshed, Amounts)>>,
}

thread_local! {
    static SLOTS: RefCell<HashMap<String, Rc<Slot>>> = RefCell::new(HashMap::new());
    /// When the running `maintain` began (0: none runs).
    static MAINTAINING: Cell<u64> = const { Cell::new(0) };
}

/// The most leases an isolate keeps; past it, idle ones are dropped.
const MAX_SLOTS: usize = 10_000;
/// Another request's refresh is waited on this long at most.
const WAIT_MS: u64 = ASK_TIMEOUT_MS + 500;
/// How long a call may wait for its lease, however many other calls queue for it.
const ADMIT_MS: u64 = 3 * ASK_TIMEOUT_MS;
/// One `maintain` runs at most this long (the next request starts another); one older than
/// this is taken for abandoned (its request ended and the runtime stopped it).
const MAINTAIN_MS: u64 = 10_000;

/// The scope a call is admitted to: its caps and limits as this isolate knows them, and the
/// key's record (the ledger's own, if it has one, wins).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub caps: Vec<Cap>,
    pub limits: RateLimits,
    pub record: Option<KeyRecord>,
}

/// Why a call was not admitted.
pub enum Refused {
    /// Past a rate limit or a budget.
    Limit(Refusal),
    /// The key's record (as the ledger has it) refuses the call.
    Denied(Box<KeyRecord>),
    /// The ledger did not answer.
    Unavailable(String),
}

/// What a call took from one lease: settled or released when the call ends.
pub struct Part {
    slot: Rc<Slot>,
    taken: Taken,
}

impl Part {
    /// The call ended, costing `cost_usd` and using `tokens`.
    pub fn settle(self, cost_usd: f64, tokens: u64) {
        self.slot.view.borrow_mut().settle(&self.taken, cost_usd, tokens);
    }

    /// The call failed: what it held is free again.
    pub fn release(self) {
        self.slot.view.borrow_mut().release(&self.taken);
    }

    /// The rate-limit and budget headers of the call's answer.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.slot.view.borrow().headers()
    }
}

fn slot(instance: &str) -> Rc<Slot> {
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        if let Some(slot) = slots.get(instance) {
            return slot.clone();
        }
        if slots.len() >= MAX_SLOTS {
            let now = Date::now().as_millis();
            slots.retain(|_, s| s.view.borrow().due_in(now).is_some() || s.refreshing.get().is_some());
        }
        let id = format!("lease_{}", crate::http::request_id().trim_start_matches("req_"));
        let slot = Rc::new(Slot {
            instance: instance.to_owned(),
            view: RefCell::new(LeaseView::new(id, Date::now().as_millis())),
            base: RefCell::new(LeaseAsk::default()),
            refreshing: Cell::new(None),
            last: RefCell::new(None),
        });
        slots.insert(instance.to_owned(), slot.clone());
        slot
    })
}

/// Takes what a call to `models` needs from `instance`'s lease, asking the ledger only when
/// the lease cannot give it. `config` is for the key's record checks.
pub async fn take(
    env: &Env,
    config: Option<&Config>,
    instance: &str,
    scope: Scope,
    models: &[&str],
    need: Amounts,
) -> Result<Part, Refused> {
    let slot = slot(instance);
    {
        let mut base = slot.base.borrow_mut();
        base.caps = scope.caps;
        base.limits = scope.limits;
        base.record = scope.record;
    }
    // Waits for other calls' refreshes are bounded by time, this call's own by count.
    let started = Date::now().as_millis();
    let mut own = 0;
    while own < 3 && Date::now().as_millis().saturating_sub(started) < ADMIT_MS {
        let now = Date::now().as_millis();
        // While the lease lasts, the record it came with (the ledger's) has the last word.
        let record = {
            let view = slot.view.borrow();
            view.grant().filter(|_| view.usable(now)).and_then(|g| g.record.clone())
        };
        if let (Some(record), Some(config)) = (record, config) {
            if record.check(config, models, now).is_err() {
                return Err(Refused::Denied(Box::new(record)));
            }
        }
        let taken = slot.view.borrow_mut().take(need, now);
        if let Ok(taken) = taken {
            return Ok(Part { slot, taken });
        }
        // A rate limit's bucket the ledger said is dry, and this lease's part of its refill not
        // in yet: refused at once, not queued for the ledger.
        let refreshing = in_flight(&slot, now).is_some();
        if let Some(refusal) = slot.view.borrow().dry(need, now, refreshing) {
            return Err(Refused::Limit(refusal));
        }
        if let Some(sent_ms) = in_flight(&slot, now) {
            match wait_for(&slot, sent_ms).await {
                Some((Refreshed::Denied(record), _)) => return Err(Refused::Denied(record)),
                // Another call's ask got no answer: this one asks itself, if an ask of its own
                // can still end within `ADMIT_MS`.
                Some((Refreshed::Failed(e), _)) => {
                    if Date::now().as_millis().saturating_sub(started) + ASK_TIMEOUT_MS > ADMIT_MS {
                        return Err(Refused::Unavailable(e));
                    }
                    continue;
                }
                // Refused for a need no larger than this one: so is this one, without asking.
                Some((Refreshed::Granted { refused: Some(refusal) }, theirs)) if covers(need, theirs, &refusal) => {
                    return Err(Refused::Limit(refusal))
                }
                Some((Refreshed::Granted { .. }, _)) | None => continue,
            }
        }
        own += 1;
        match refresh(env, &slot, models, need).await {
            (Refreshed::Granted { refused: Some(refusal) }, _) => return Err(Refused::Limit(refusal)),
            (Refreshed::Granted { refused: None }, taken) => {
                if let Some(taken) = taken {
                    return Ok(Part { slot, taken });
                }
            }
            (Refreshed::Denied(record), _) => return Err(Refused::Denied(record)),
            (Refreshed::Failed(e), _) => return Err(Refused::Unavailable(e)),
        }
    }
    Err(Refused::Unavailable(format!(
        "ledger {instance}: the lease was taken by other calls each time it was refreshed"
    )))
}

/// When the refresh of `slot` in flight was sent, unless it is older than any answer can be.
fn in_flight(slot: &Slot, now: u64) -> Option<u64> {
    match slot.refreshing.get() {
        Some(sent_ms) if now.saturating_sub(sent_ms) <= WAIT_MS => Some(sent_ms),
        Some(_) => {
            slot.refreshing.set(None);
            None
        }
        None => None,
    }
}

/// Whether a refusal of `theirs` holds for `need` too: it asks as much of what was refused.
fn covers(need: Amounts, theirs: Amounts, refusal: &Refusal) -> bool {
    match refusal {
        Refusal::Budget(_) => need.usd >= theirs.usd,
        Refusal::Requests { .. } => need.requests >= theirs.requests.max(1),
        Refusal::Tokens { .. } => need.tokens >= theirs.tokens,
    }
}

/// Waits (on this request's own timers) for the refresh sent at `sent_ms` to end; what it came
/// to and what its waiting call needed, or `None` once it is taken for abandoned.
async fn wait_for(slot: &Slot, sent_ms: u64) -> Option<(Refreshed, Amounts)> {
    let mut pause_ms = 1;
    loop {
        if slot.refreshing.get() != Some(sent_ms) {
            let last = slot.last.borrow();
            return last.as_ref().filter(|(at, ..)| *at == sent_ms).map(|(_, r, need)| (r.clone(), *need));
        }
        if Date::now().as_millis().saturating_sub(sent_ms) > WAIT_MS {
            slot.refreshing.set(None);
            return None;
        }
        crate::upstream::timer(pause_ms).await;
        pause_ms = (pause_ms * 2).min(8);
    }
}

/// Sends `slot`'s lease its refresh (with the use so far and what `need` needs, taken now so
/// that no call can take it meanwhile) and applies the answer; returns what `need` took when
/// the ledger granted it.
async fn refresh(env: &Env, slot: &Slot, models: &[&str], need: Amounts) -> (Refreshed, Option<Taken>) {
    let sent_ms = Date::now().as_millis();
    let mut ask = slot.view.borrow_mut().ask(&slot.base.borrow(), need, sent_ms);
    ask.models = models.iter().map(|m| (*m).to_owned()).collect();
    slot.refreshing.set(Some(sent_ms));
    // Dropped before its answer (a call that ended while its refresh ran beside it): the ask
    // counts as failed at once, rather than leaving others to wait for it.
    struct Unanswered<'a>(&'a Slot, u64, u64, bool);
    impl Drop for Unanswered<'_> {
        fn drop(&mut self) {
            if !self.3 {
                self.0.view.borrow_mut().answered(self.2, Answered::Failed, self.1);
                if self.0.refreshing.get() == Some(self.1) {
                    self.0.refreshing.set(None);
                }
            }
        }
    }
    let mut unanswered = Unanswered(slot, sent_ms, ask.seq, false);
    let answer = ledger::lease(env, &slot.instance, &ask).await;
    unanswered.3 = true;
    let (answered, outcome) = match answer {
        Ok(LeaseAnswer::Granted { grant, refused: None }) => {
            (Answered::Granted(*grant), Refreshed::Granted { refused: None })
        }
        Ok(LeaseAnswer::Granted { grant, refused }) => (Answered::Refused(*grant), Refreshed::Granted { refused }),
        Ok(LeaseAnswer::Denied { record }) => (Answered::Denied, Refreshed::Denied(record)),
        Err(e) => {
            worker::console_error!("ledger {}: lease not refreshed: {e}", slot.instance);
            (Answered::Failed, Refreshed::Failed(e.to_string()))
        }
    };
    let taken = slot.view.borrow_mut().answered(ask.seq, answered, sent_ms);
    *slot.last.borrow_mut() = Some((sent_ms, outcome.clone(), need));
    if slot.refreshing.get() == Some(sent_ms) {
        slot.refreshing.set(None);
    }
    (outcome, taken)
}

/// Refreshes the leases that are due (in use, and half their lifetime gone, or running low),
/// which also reports their use; waits for the next one to fall due while any is in use, for
/// `MAINTAIN_MS` at most. One runs at a time; to be awaited inside `ctx.wait_until`.
pub async fn maintain(env: &Env) {
    let started = Date::now().as_millis();
    let running = MAINTAINING.with(Cell::get);
    if running != 0 && started.saturating_sub(running) < MAINTAIN_MS {
        return;
    }
    MAINTAINING.with(|m| m.set(started));
    struct Running(u64);
    impl Drop for Running {
        fn drop(&mut self) {
            MAINTAINING.with(|m| {
                if m.get() == self.0 {
                    m.set(0);
                }
            });
        }
    }
    let _running = Running(started);
    loop {
        let now = Date::now().as_millis();
        if now.saturating_sub(started) >= MAINTAIN_MS - REFRESH_AFTER_MS {
            return;
        }
        let slots: Vec<Rc<Slot>> = SLOTS.with(|slots| slots.borrow().values().cloned().collect());
        let mut due = Vec::new();
        let mut next: Option<u64> = None;
        for slot in slots {
            let due_in = slot.view.borrow().due_in(now);
            match due_in {
                Some(0) if in_flight(&slot, now).is_none() => due.push(slot),
                Some(ms) => next = Some(next.map_or(ms, |n| n.min(ms)).max(50)),
                None => {}
            }
        }
        if !due.is_empty() {
            let refreshes = due.iter().map(|slot| refresh(env, slot, &[], Amounts::default()));
            futures::future::join_all(refreshes).await;
            continue;
        }
        match next {
            Some(ms) => crate::upstream::timer(ms).await,
            None => return,
        }
    }
}

/// Reports the use of every lease whose calls' costs the ledger does not know yet (by a
/// refresh). The outbox runs it before it sends usage rows, so that a call's cost counts
/// against its caps by the time its usage shows. A lease whose refresh is in flight is reported
/// after it, if that refresh (sent before the use) left use unreported.
pub async fn report(env: &Env) {
    let slots: Vec<Rc<Slot>> =
        SLOTS.with(|slots| slots.borrow().values().filter(|slot| slot.view.borrow().unreported()).cloned().collect());
    futures::future::join_all(slots.iter().map(|slot| report_one(env, slot))).await;
}

/// The most rounds `report_one` waits on other refreshes or sends its own.
const REPORT_ROUNDS: u32 = 3;

async fn report_one(env: &Env, slot: &Slot) {
    for _ in 0..REPORT_ROUNDS {
        if !slot.view.borrow().unreported() {
            return;
        }
        match in_flight(slot, Date::now().as_millis()) {
            Some(sent_ms) => {
                wait_for(slot, sent_ms).await;
            }
            None => {
                refresh(env, slot, &[], Amounts::default()).await;
            }
        }
    }
}

/// Refreshes what is due among `instances`' leases now: for a call that runs long (a stream),
/// whose lease must not lapse while it holds part of it.
pub async fn keep(env: &Env, instances: &[String]) {
    let now = Date::now().as_millis();
    let due: Vec<Rc<Slot>> = instances
        .iter()
        .filter_map(|instance| SLOTS.with(|slots| slots.borrow().get(instance).cloned()))
        .filter(|slot| slot.view.borrow().due_in(now) == Some(0) && in_flight(slot, now).is_none())
        .collect();
    futures::future::join_all(due.iter().map(|slot| refresh(env, slot, &[], Amounts::default()))).await;
}

/// Drops this isolate's lease of `instance` (a key the admin API just changed or revoked: its
/// next call asks the ledger, which has the new record).
pub fn forget(instance: &str) {
    if let Some(slot) = SLOTS.with(|slots| slots.borrow().get(instance).cloned()) {
        slot.view.borrow_mut().expire();
    }
}
