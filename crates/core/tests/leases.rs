//! Admission leases at scale: a deterministic discrete-event simulation of isolates admitting
//! one key's calls against their leases (`switchyard_core::lease`) and refreshing them from the
//! key's ledger, with the ledger's queue, the latencies of the edge, isolates that die and
//! messages that are lost. Its figures and what they mean: BENCHMARKS.md, "Admission at scale
//! (simulation)".
//!
//! What is modelled (the parameters are the constants below):
//! - `LATENCY_MS.len()` locations at one-way latencies from the ledger's location; the isolates
//!   are spread evenly over them. The ledger (a Durable Object) serves one message at a time, in
//!   arrival order, each taking `SERVICE_US`: it frees stale leases (`lease::free` of every lease
//!   `LeaseState::expired`), counts the live ones (`LeaseState::live`), checks the key's record
//!   (a revoked key's asks are counted with no need and no want, and answered `Denied`, as the
//!   object does) and applies `lease::refresh`.
//! - Calls arrive as one Poisson stream, each at an isolate drawn uniformly. A call is admitted
//!   as the worker admits it (`src/leases.rs`, `take`): `LeaseView::take`; else it waits for the
//!   refresh of the lease in flight, if one is, and takes again; else it sends one with its own
//!   need (one in flight a lease at a time) and takes from the answer before anyone else; a
//!   refusal in the answer refuses it (429), `Denied` too (401, `LeaseView::deny`). At most
//!   `ATTEMPTS` rounds, then it fails (503). A call holds its estimate while it runs and settles
//!   its actual cost (at most the estimate) when it ends. After each call ends, and whenever the
//!   isolate's `maintain` wakes (when the lease falls due by age, `TICK_MS` apart at least)
//!   while the lease is in use, a lease `due` with no refresh in flight is refreshed off the
//!   hot path (need: nothing).
//! - A lost message (the ask or its answer, `LOSS` of them) is never answered: the isolate gives
//!   up on it after `TIMEOUT_MS` (the calls waiting on it fail, 503) and its next ask carries the
//!   cumulative use with a new seq.
//! - Isolates die (`DEATH_MEAN_S` on average each): their calls in flight are billed by the
//!   vendor (at their actual cost) but never reported, their lease is left to expire, and a new
//!   isolate with a new lease takes their place.
//!
//! `cargo test -p switchyard-core --test leases -- --nocapture` prints the figures (a markdown
//! table, written to stderr directly and to `leases.md` in the target's temporary directory,
//! whatever the capture); `check` asserts the invariants, each as precisely as it holds. Two
//! overruns of a cap the simulation found are reduced to a few calls of the lease functions at
//! the end, as tests ignored until they are fixed (`-- --ignored`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write;

use switchyard_core::keys::{KeyPolicy, KeyRecord, Source};
use switchyard_core::lease::{
    self, Amounts, LeaseAnswer, LeaseAsk, LeaseState, LeaseView, Short, Taken, Use, LEASE_GRACE_MS, LEASE_TTL_MS,
    REFRESH_AFTER_MS,
};
use switchyard_core::ledger::{Cap, Refusal, Scope, Window};
use switchyard_core::ratelimit::RateLimits;

/// 2026-11-22T10:30:00Z: the day window does not roll over during a run.
const EPOCH_MS: u64 = 1_795_343_400_000;
/// One-way latency from each location to the ledger's.
const LATENCY_MS: [f64; 6] = [1.0, 10.0, 30.0, 60.0, 90.0, 150.0];
/// Each message's latency varies by up to this share either way.
const LATENCY_JITTER: f64 = 0.1;
/// The key's calls, all isolates together.
const CALLS_PER_S: f64 = 5_000.0;
/// Calls arrive for this long; then the run goes on until every call and message is done.
const RUN_MS: u64 = 60_000;
const DRAIN_MS: u64 = 15_000;
/// The ledger's time to serve one message (uniform).
const SERVICE_US: (f64, f64) = (200.0, 400.0);
/// A call's estimate (what it is admitted with), its actual cost as a share of it, its duration.
const ESTIMATE_USD: (f64, f64) = (0.001, 0.01);
const ACTUAL_SHARE: (f64, f64) = (0.3, 1.0);
const DURATION_MS: (f64, f64) = (200.0, 3_000.0);
/// The key's day budget when it binds, and when it does not.
const DAY_CAP_USD: f64 = 150.0;
const LOOSE_CAP_USD: f64 = 1_000_000.0;
/// Requests per minute when they bind, and when they do not.
const TIGHT_RPM: u64 = 60_000;
const LOOSE_RPM: u64 = 1_000_000;
/// Each isolate dies after this long on average (exponential).
const DEATH_MEAN_S: f64 = 180.0;
/// The share of messages lost (half of them asks, half answers).
const LOSS: f64 = 0.002;
/// The worker's wait for the ledger (`ledger::TIMEOUT_MS`), and its rounds of `take`.
const TIMEOUT_MS: u64 = 5_000;
const ATTEMPTS: u32 = 4;
/// How often an isolate looks for a due refresh while its lease is in use (`maintain`'s floor).
const TICK_MS: u64 = 50;
/// When the key is revoked, in the variants that revoke it.
const REVOKE_AT_MS: u64 = 40_000;
const SEED: u64 = 0x5157_4c45_4153_4531;
/// Money compared with this tolerance.
const EPS: f64 = 1e-9;

#[derive(Clone, Copy, Debug)]
struct Variant {
    name: &'static str,
    isolates: usize,
    cap_usd: f64,
    rpm: u64,
    revoke: bool,
    /// Whether isolates die and messages are lost.
    faults: bool,
    /// How long calls arrive.
    run_ms: u64,
}

/// An event at a time: ordered by time, then by when it was scheduled.
#[derive(Clone, Copy)]
struct Item {
    key: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key.cmp(&self.key) // the earliest first out of a max-heap
    }
}

/// The event queue: a bucket a millisecond, the current one a heap (a debug build's
/// `BinaryHeap` of all pending events costs more than the simulated code).
struct Queue {
    buckets: Vec<Vec<Item>>,
    current: usize,
    heap: BinaryHeap<Item>,
    order: u64,
    end_us: u64,
}

impl Queue {
    fn new(end_us: u64) -> Self {
        let n = (end_us / 1000 + 1) as usize;
        Queue { buckets: (0..n).map(|_| Vec::new()).collect(), current: 0, heap: BinaryHeap::new(), order: 0, end_us }
    }

    /// Events past the end of the run are dropped.
    fn push(&mut self, at_us: u64, ev: Ev) {
        self.order += 1;
        if at_us > self.end_us {
            return;
        }
        let item = Item { key: at_us << 24 | (self.order & 0xff_ffff), ev };
        let b = (at_us / 1000) as usize;
        if b <= self.current {
            self.heap.push(item);
        } else {
            self.buckets[b].push(item);
        }
    }

    fn pop(&mut self) -> Option<(u64, Ev)> {
        while self.heap.is_empty() {
            self.current += 1;
            if self.current >= self.buckets.len() {
                return None;
            }
            self.heap = BinaryHeap::from(std::mem::take(&mut self.buckets[self.current]));
        }
        self.heap.pop().map(|item| (item.key >> 24, item.ev))
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn uniform(&mut self, (lo, hi): (f64, f64)) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Arrival,
    End(usize),
    AtLedger(usize),
    LedgerDone,
    Answer(usize),
    Timeout(usize),
    Tick(usize, u64),
    Death,
    Revoke,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    Admitted,
    /// 429: the budget.
    Budget,
    /// 429: requests per minute.
    Requests,
    /// 401: the key's record.
    Denied,
    /// 503: the ledger did not answer in time.
    Timeout,
    /// 503: the lease was taken by other calls each round.
    Exhausted,
    /// Its isolate died while it waited.
    Died,
}

struct Call {
    iso: usize,
    inc: u64,
    arrived: u64,
    est: f64,
    actual: f64,
    duration: u64,
    attempts: u32,
    waited: bool,
    /// Why its first take failed, and whether a refresh was in flight then.
    short: Option<(Short, bool)>,
    taken: Taken,
    /// Its place in its isolate's `running`.
    slot: usize,
    outcome: Outcome,
    decided: u64,
}

struct Flight {
    msg: usize,
    sent_ms: u64,
    need: Amounts,
    asker: Option<usize>,
    waiters: Vec<usize>,
}

struct Isolate {
    loc: usize,
    inc: u64,
    lease: usize,
    view: LeaseView,
    flight: Option<Flight>,
    running: Vec<usize>,
    ticking: bool,
    /// The use the last ask carried, and the calls seen since (for "in use").
    asked_used: Use,
    seen: u64,
    asked_at: u64,
    /// Whether its last ask was lost on its way (its use counts as reported in the view).
    last_ask_lost: bool,
}

struct Msg {
    iso: usize,
    inc: u64,
    lease: usize,
    sent: u64,
    ask: Box<LeaseAsk>,
    answer: Option<LeaseAnswer>,
    answer_lost: bool,
}

struct Ledger {
    scope: Scope,
    /// By lease number (the lease's id is `lease_id(n)`).
    leases: Vec<Option<LeaseState>>,
    freed: Vec<bool>,
    /// How many leases are live, and when each stops being (`until_ms + LEASE_GRACE_MS`; an
    /// entry a later refresh moved on is skipped): the object's `SELECT COUNT(*)` and its sweep
    /// of stale leases, in O(log n) a message.
    live: usize,
    deadlines: BinaryHeap<Reverse<(u64, usize)>>,
    queue: VecDeque<usize>,
    busy: bool,
    record: KeyRecord,
}

#[derive(Default, Clone, Copy)]
struct Bin {
    arrivals: u64,
    msgs: u64,
    busy_us: f64,
}

#[derive(Default)]
struct Stats {
    bins: Vec<Bin>,
    msgs_hot: u64,
    msgs_off: u64,
    lost: u64,
    freed: u64,
    deaths: u64,
    /// Ended calls' actual cost plus running calls' estimate, over all admitted calls.
    exposure: f64,
    max_exposure: f64,
    max_committed: f64,
    /// Answers applied that granted less than the lease's calls had already taken: how many,
    /// by how much money in all, and requests.
    beyond_grant: (u64, f64, u64),
    /// Spend a lease reported after the ledger had freed it.
    late_usd: f64,
    first_budget_refusal: Option<(u64, f64)>,
    admitted_at: Vec<u64>,
    revoked_at: Option<u64>,
    /// When the ledger served its first ask (the request bucket was made then).
    first_served: Option<u64>,
    last_admitted_after_revoke: Option<u64>,
    admitted_after_revoke: u64,
}

struct Sim {
    v: Variant,
    now: u64,
    queue: Queue,
    rng: Rng,
    base: LeaseAsk,
    isolates: Vec<Isolate>,
    calls: Vec<Call>,
    msgs: Vec<Msg>,
    ledger: Ledger,
    /// By lease number: what its admitted calls cost (billed), and whether its isolate died.
    lease_billed: Vec<f64>,
    lease_dead: Vec<bool>,
    s: Stats,
}

fn lease_id(n: usize) -> String {
    format!("lease_{n}")
}

impl Sim {
    fn new(v: Variant, seed: u64) -> Self {
        let record = KeyRecord {
            id: "key_000000000000000000000000".into(),
            object: "gateway_key".into(),
            name: "simulated".into(),
            redacted_key: "sy-...sim".into(),
            sha256: String::new(),
            created_at: EPOCH_MS / 1000 - 86_400,
            revoked_at: None,
            source: Source::Api,
            policy: KeyPolicy::default(),
        };
        let base = LeaseAsk {
            caps: vec![Cap { window: Window::Day, limit_usd: v.cap_usd, warn_at: None }],
            limits: RateLimits { rpm: Some(v.rpm), tpm: None },
            ..LeaseAsk::default()
        };
        let isolates = (0..v.isolates)
            .map(|i| Isolate {
                loc: i % LATENCY_MS.len(),
                inc: 0,
                lease: i,
                view: LeaseView::new(lease_id(i), EPOCH_MS),
                flight: None,
                running: Vec::new(),
                ticking: false,
                asked_used: Use::default(),
                seen: 0,
                asked_at: 0,
                last_ask_lost: false,
            })
            .collect();
        let bins = ((v.run_ms + DRAIN_MS) / 1000 + 2) as usize;
        let mut sim = Sim {
            v,
            now: 0,
            queue: Queue::new((v.run_ms + DRAIN_MS) * 1000),
            rng: Rng(seed),
            base,
            isolates,
            calls: Vec::with_capacity((CALLS_PER_S * v.run_ms as f64 / 1000.0 * 1.02) as usize),
            msgs: Vec::new(),
            ledger: Ledger {
                scope: Scope::default(),
                leases: Vec::new(),
                freed: Vec::new(),
                live: 0,
                deadlines: BinaryHeap::new(),
                queue: VecDeque::new(),
                busy: false,
                record,
            },
            lease_billed: vec![0.0; v.isolates],
            lease_dead: vec![false; v.isolates],
            s: Stats { bins: vec![Bin::default(); bins], ..Stats::default() },
        };
        sim.schedule(0, Ev::Arrival);
        let death = sim.rng.exp(DEATH_MEAN_S * 1e6 / v.isolates as f64) as u64;
        if v.faults {
            sim.schedule(death, Ev::Death);
        }
        if v.revoke {
            sim.schedule(REVOKE_AT_MS * 1000, Ev::Revoke);
        }
        sim
    }

    fn now_ms(&self) -> u64 {
        EPOCH_MS + self.now / 1000
    }

    fn bin(&mut self) -> &mut Bin {
        let i = (self.now / 1_000_000) as usize;
        &mut self.s.bins[i]
    }

    fn schedule(&mut self, at_us: u64, ev: Ev) {
        self.queue.push(at_us, ev);
    }

    fn latency_us(&mut self, loc: usize) -> u64 {
        (LATENCY_MS[loc] * 1000.0 * self.rng.uniform((1.0 - LATENCY_JITTER, 1.0 + LATENCY_JITTER))) as u64
    }

    fn run(mut self) -> Self {
        while let Some((at, ev)) = self.queue.pop() {
            self.now = at;
            match ev {
                Ev::Arrival => self.arrival(),
                Ev::End(c) => self.end(c),
                Ev::AtLedger(m) => {
                    self.ledger.queue.push_back(m);
                    self.serve();
                }
                Ev::LedgerDone => {
                    let m = self.ledger.queue.pop_front().expect("a message in service");
                    self.ledger.busy = false;
                    self.process(m);
                    self.serve();
                }
                Ev::Answer(m) => self.answer(m),
                Ev::Timeout(m) => {
                    let (i, inc) = (self.msgs[m].iso, self.msgs[m].inc);
                    if self.isolates[i].inc == inc && self.isolates[i].flight.as_ref().is_some_and(|f| f.msg == m) {
                        self.resolve(i, None);
                    }
                }
                Ev::Tick(i, inc) => {
                    if self.isolates[i].inc == inc {
                        self.isolates[i].ticking = false;
                        self.maybe_refresh(i);
                        if self.in_use(i) {
                            self.ensure_tick(i);
                        }
                    }
                }
                Ev::Death => self.death(),
                Ev::Revoke => {
                    self.ledger.record.revoked_at = Some(self.now_ms() / 1000);
                    self.s.revoked_at = Some(self.now);
                }
            }
        }
        self
    }

    fn arrival(&mut self) {
        let i = self.rng.below(self.v.isolates);
        let est = self.rng.uniform(ESTIMATE_USD);
        let actual = est * self.rng.uniform(ACTUAL_SHARE);
        let duration = (self.rng.uniform(DURATION_MS) * 1000.0) as u64;
        let c = self.calls.len();
        self.calls.push(Call {
            iso: i,
            inc: self.isolates[i].inc,
            arrived: self.now,
            est,
            actual,
            duration,
            attempts: 0,
            waited: false,
            short: None,
            taken: Taken::default(),
            slot: 0,
            outcome: Outcome::Pending,
            decided: 0,
        });
        self.bin().arrivals += 1;
        self.attempt(c);
        let next = self.now + self.rng.exp(1e6 / CALLS_PER_S).max(1.0) as u64;
        if next < self.v.run_ms * 1000 {
            self.schedule(next, Ev::Arrival);
        }
    }

    fn need(&self, c: usize) -> Amounts {
        Amounts { usd: self.calls[c].est, requests: 1, tokens: 0 }
    }

    /// One round of the worker's `take`.
    fn attempt(&mut self, c: usize) {
        if self.calls[c].attempts >= ATTEMPTS {
            self.decide(c, Outcome::Exhausted);
            return;
        }
        self.calls[c].attempts += 1;
        let (i, need, now_ms) = (self.calls[c].iso, self.need(c), self.now_ms());
        self.isolates[i].seen += 1;
        self.ensure_tick(i);
        match self.isolates[i].view.take(need, now_ms) {
            Ok(taken) => self.admit(c, taken),
            Err(short) => {
                self.calls[c].waited = true;
                if self.calls[c].attempts == 1 {
                    let behind = self.isolates[i].flight.is_some();
                    self.calls[c].short = Some((short, behind));
                }
                match &mut self.isolates[i].flight {
                    Some(flight) => flight.waiters.push(c),
                    None => self.send(i, need, Some(c)),
                }
            }
        }
    }

    fn admit(&mut self, c: usize, taken: Taken) {
        let call = &mut self.calls[c];
        call.outcome = Outcome::Admitted;
        call.decided = self.now;
        call.taken = taken;
        let (i, est, actual, end) = (call.iso, call.est, call.actual, self.now + call.duration);
        self.calls[c].slot = self.isolates[i].running.len();
        self.isolates[i].running.push(c);
        self.schedule(end, Ev::End(c));
        self.s.exposure += est;
        self.s.max_exposure = self.s.max_exposure.max(self.s.exposure);
        self.lease_billed[self.isolates[i].lease] += actual;
        self.s.admitted_at.push(self.now);
        if self.s.revoked_at.is_some() {
            self.s.last_admitted_after_revoke = Some(self.now);
            self.s.admitted_after_revoke += 1;
        }
    }

    fn decide(&mut self, c: usize, outcome: Outcome) {
        self.calls[c].outcome = outcome;
        self.calls[c].decided = self.now;
        if outcome == Outcome::Budget && self.s.first_budget_refusal.is_none() {
            self.s.first_budget_refusal = Some((self.now, self.s.exposure));
        }
    }

    fn send(&mut self, i: usize, need: Amounts, asker: Option<usize>) {
        let now_ms = self.now_ms();
        let iso = &mut self.isolates[i];
        let ask = iso.view.ask(&self.base, need, now_ms);
        iso.asked_used = ask.used;
        iso.seen = 0;
        iso.asked_at = self.now;
        let (loc, inc, lease) = (iso.loc, iso.inc, iso.lease);
        let m = self.msgs.len();
        iso.flight = Some(Flight { msg: m, sent_ms: now_ms, need, asker, waiters: Vec::new() });
        if asker.is_some() {
            self.s.msgs_hot += 1;
        } else {
            self.s.msgs_off += 1;
        }
        let lost = if self.v.faults { self.rng.unit() } else { 1.0 };
        self.msgs.push(Msg {
            iso: i,
            inc,
            lease,
            sent: self.now,
            ask: Box::new(ask),
            answer: None,
            answer_lost: lost < LOSS / 2.0,
        });
        if lost < LOSS {
            self.s.lost += 1;
        }
        self.isolates[i].last_ask_lost = (LOSS / 2.0..LOSS).contains(&lost);
        if !(LOSS / 2.0..LOSS).contains(&lost) {
            let at = self.now + self.latency_us(loc);
            self.schedule(at, Ev::AtLedger(m));
        }
        if lost < LOSS {
            // An answer that comes is never that late (asserted in `answer`).
            self.schedule(self.now + TIMEOUT_MS * 1000, Ev::Timeout(m));
        }
    }

    fn serve(&mut self) {
        if self.ledger.busy || self.ledger.queue.is_empty() {
            return;
        }
        self.ledger.busy = true;
        let service = self.rng.uniform(SERVICE_US);
        self.bin().busy_us += service;
        self.schedule(self.now + service as u64, Ev::LedgerDone);
    }

    /// The ledger's `POST /lease`, as the Durable Object serves it.
    fn process(&mut self, m: usize) {
        let now_ms = self.now_ms();
        self.bin().msgs += 1;
        self.s.first_served.get_or_insert(self.now);
        let ledger = &mut self.ledger;
        while let Some(&Reverse((deadline, n))) = ledger.deadlines.peek() {
            if deadline >= now_ms {
                break;
            }
            ledger.deadlines.pop();
            let Some(state) = ledger.leases[n].as_mut() else { continue };
            if state.grant.until_ms + LEASE_GRACE_MS != deadline {
                continue;
            }
            assert!(!state.live(now_ms));
            ledger.live -= 1;
            if state.expired(now_ms) {
                lease::free(&mut ledger.scope, state, now_ms);
                ledger.freed[n] = true;
                self.s.freed += 1;
            }
        }
        let mut ask = *std::mem::take(&mut self.msgs[m].ask);
        let denied = ledger.record.revoked_at.is_some();
        if denied {
            ask.need = Amounts::default();
            ask.want = Amounts::default();
        }
        let n = self.msgs[m].lease;
        if ledger.leases.len() <= n {
            ledger.leases.resize(n + 1, None);
            ledger.freed.resize(n + 1, false);
        }
        let prior = ledger.leases[n].take();
        let prior_deadline = prior.as_ref().map(|p| p.grant.until_ms + LEASE_GRACE_MS);
        let was_live = prior.as_ref().is_some_and(|p| p.live(now_ms));
        let live = ledger.live - usize::from(was_live);
        if std::mem::take(&mut ledger.freed[n]) {
            let prior = prior.as_ref().expect("a freed lease is known");
            if ask.seq > prior.grant.seq {
                self.s.late_usd += (ask.used.spent_usd - prior.counted_usd).max(0.0);
            }
        }
        let (state, refused) = lease::refresh(&mut ledger.scope, prior, &ask, live, now_ms);
        let committed = ledger.scope.committed(Window::Day, now_ms);
        self.s.max_committed = self.s.max_committed.max(committed);
        let answer = if denied {
            LeaseAnswer::Denied { record: Box::new(ledger.record.clone()) }
        } else {
            LeaseAnswer::Granted { grant: Box::new(state.grant.clone()), refused }
        };
        let deadline = state.grant.until_ms + LEASE_GRACE_MS;
        if state.live(now_ms) {
            if !was_live {
                ledger.live += 1;
            }
            if !was_live || prior_deadline != Some(deadline) {
                ledger.deadlines.push(Reverse((deadline, n)));
            }
        }
        ledger.leases[n] = Some(state);
        if !self.msgs[m].answer_lost {
            self.msgs[m].answer = Some(answer);
            let at = self.now + self.latency_us(self.isolates[self.msgs[m].iso].loc);
            self.schedule(at, Ev::Answer(m));
        }
    }

    fn answer(&mut self, m: usize) {
        let (i, inc) = (self.msgs[m].iso, self.msgs[m].inc);
        if self.isolates[i].inc != inc || self.isolates[i].flight.as_ref().is_none_or(|f| f.msg != m) {
            return;
        }
        assert!(self.now - self.msgs[m].sent < TIMEOUT_MS * 1000, "an answer later than the worker waits");
        let answer = self.msgs[m].answer.take();
        self.resolve(i, answer);
    }

    /// The refresh in flight of isolate `i` came to `answer` (`None`: no answer in time).
    fn resolve(&mut self, i: usize, answer: Option<LeaseAnswer>) {
        let flight = self.isolates[i].flight.take().expect("a refresh in flight");
        let now_ms = self.now_ms();
        match answer {
            Some(LeaseAnswer::Granted { grant, refused }) => {
                let view = &mut self.isolates[i].view;
                view.granted(*grant, flight.sent_ms);
                // What the lease's calls took since the ask beyond what the answer grants: taken
                // from the old grant's free part, which the ledger no longer holds for them.
                let (used, limit) = (view.used(), view.grant().expect("granted").limit);
                let over_usd = used.spent_usd + used.held_usd - limit.usd;
                if over_usd > EPS {
                    self.s.beyond_grant.0 += 1;
                    self.s.beyond_grant.1 += over_usd;
                }
                self.s.beyond_grant.2 += used.requests.saturating_sub(limit.requests);
                if let Some(c) = flight.asker {
                    match refused {
                        Some(Refusal::Budget(_)) => self.decide(c, Outcome::Budget),
                        Some(_) => self.decide(c, Outcome::Requests),
                        None => match self.isolates[i].view.take(flight.need, now_ms) {
                            Ok(taken) => self.admit(c, taken),
                            Err(_) => self.attempt(c),
                        },
                    }
                }
                for w in flight.waiters {
                    self.attempt(w);
                }
            }
            Some(LeaseAnswer::Denied { .. }) => {
                self.isolates[i].view.deny();
                for c in flight.asker.into_iter().chain(flight.waiters) {
                    self.decide(c, Outcome::Denied);
                }
            }
            None => {
                for c in flight.asker.into_iter().chain(flight.waiters) {
                    self.decide(c, Outcome::Timeout);
                }
            }
        }
    }

    fn end(&mut self, c: usize) {
        let call = &self.calls[c];
        let i = call.iso;
        if self.isolates[i].inc != call.inc {
            return; // its isolate died: billed at its death, never reported
        }
        let (taken, est, actual) = (call.taken, call.est, call.actual);
        let iso = &mut self.isolates[i];
        iso.view.settle(&taken, actual, 0);
        let at = self.calls[c].slot;
        iso.running.swap_remove(at);
        if let Some(&moved) = iso.running.get(at) {
            self.calls[moved].slot = at;
        }
        self.s.exposure -= est - actual;
        self.maybe_refresh(i);
    }

    fn in_use(&self, i: usize) -> bool {
        let iso = &self.isolates[i];
        !iso.running.is_empty() || iso.seen > 0 || iso.view.used() != iso.asked_used
    }

    /// The worker's `maintain`: it sleeps until the lease falls due by its age, `TICK_MS` at
    /// least (and a call's end looks too, in `end`).
    fn ensure_tick(&mut self, i: usize) {
        if !self.isolates[i].ticking {
            self.isolates[i].ticking = true;
            let inc = self.isolates[i].inc;
            let due_at = self.isolates[i].asked_at + REFRESH_AFTER_MS * 1000;
            let at = due_at.max(self.now + TICK_MS * 1000);
            self.schedule(at, Ev::Tick(i, inc));
        }
    }

    fn maybe_refresh(&mut self, i: usize) {
        let now_ms = self.now_ms();
        if self.isolates[i].flight.is_none() && self.isolates[i].view.due(now_ms) {
            self.send(i, Amounts::default(), None);
        }
    }

    fn death(&mut self) {
        let i = self.rng.below(self.v.isolates);
        self.s.deaths += 1;
        let old = std::mem::take(&mut self.isolates[i].running);
        for c in old {
            // Billed in full by the vendor; never reported.
            self.s.exposure -= self.calls[c].est - self.calls[c].actual;
        }
        if let Some(flight) = self.isolates[i].flight.take() {
            for c in flight.asker.into_iter().chain(flight.waiters) {
                self.decide(c, Outcome::Died);
            }
        }
        self.lease_dead[self.isolates[i].lease] = true;
        let n = self.lease_billed.len();
        self.lease_billed.push(0.0);
        self.lease_dead.push(false);
        let now_ms = self.now_ms();
        let iso = &mut self.isolates[i];
        iso.inc += 1;
        iso.lease = n;
        iso.view = LeaseView::new(lease_id(n), now_ms);
        iso.ticking = false;
        iso.asked_used = Use::default();
        iso.seen = 0;
        iso.asked_at = self.now;
        let next = self.now + self.rng.exp(DEATH_MEAN_S * 1e6 / self.v.isolates as f64) as u64;
        if next < self.v.run_ms * 1000 {
            self.schedule(next, Ev::Death);
        }
    }
}

/// The figures of one run.
struct Report {
    v: Variant,
    calls: usize,
    /// From 1 s (the first leases are asked for) to 3 s before the first refusal (429, or the
    /// revocation), and from 3 s after it to the end of arrivals: µs.
    steady: (u64, u64),
    limited: Option<(u64, u64)>,
    waited_steady: f64,
    waited_admitted: f64,
    /// Of the calls that waited in the steady state: why (no lease, expired, too small), and
    /// how many found a refresh in flight.
    why_steady: [u64; 4],
    /// Added wait of admitted calls, ms: p50, p99, p99.9 in the steady state and over the run.
    wait_steady: [f64; 3],
    wait_run: [f64; 3],
    /// The wait before a refusal (429, 401, 503 after its rounds), ms.
    wait_refused: [f64; 3],
    msgs_per_1k: [f64; 3],
    util: [f64; 3],
    util_peak: f64,
    outcomes: [u64; 8],
    first_budget_refusal: Option<(f64, f64)>,
    counted_usd: f64,
    billed_usd: f64,
    unreported_dead_usd: f64,
    unreported_alive_usd: f64,
    /// Live isolates' whose last ask was lost: `LeaseView::ask` took it for reported.
    unreported_lost_last_usd: f64,
    max_committed: f64,
    max_exposure: f64,
    late_usd: f64,
    beyond_grant: (u64, f64, u64),
    /// Requests: admitted in all; the most in any 60 s; the least slack of `rpm + rpm * t / 60 s`.
    admitted: u64,
    max_60s: u64,
    least_slack: f64,
    revoke: Option<(f64, u64)>,
    deaths: u64,
    lost: u64,
    freed: u64,
}

const OUTCOMES: [(Outcome, &str); 8] = [
    (Outcome::Admitted, "admitted"),
    (Outcome::Budget, "429 budget"),
    (Outcome::Requests, "429 rpm"),
    (Outcome::Denied, "401 revoked"),
    (Outcome::Exhausted, "503 after 4 rounds"),
    (Outcome::Timeout, "503 ledger timeout"),
    (Outcome::Died, "isolate died"),
    (Outcome::Pending, "pending"),
];

fn percentiles(mut waits: Vec<u64>) -> [f64; 3] {
    waits.sort_unstable();
    let at = |p: f64| {
        if waits.is_empty() {
            return 0.0;
        }
        let i = ((waits.len() as f64 * p).ceil() as usize).clamp(1, waits.len()) - 1;
        waits[i] as f64 / 1000.0
    };
    [at(0.5), at(0.99), at(0.999)]
}

fn report(sim: &Sim) -> Report {
    let s = &sim.s;
    let run_us = sim.v.run_ms * 1000;
    let first_refusal = sim
        .calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Budget | Outcome::Requests))
        .map(|c| c.arrived)
        .min()
        .into_iter()
        .chain(s.revoked_at)
        .min();
    let steady = (1_000_000, first_refusal.map_or(run_us, |t| t.saturating_sub(3_000_000)).max(2_000_000));
    let limited = first_refusal.map(|t| (t + 3_000_000, run_us)).filter(|(a, b)| a < b);
    let within = |t: u64, (a, b): (u64, u64)| t >= a && t < b;
    let admitted: Vec<&Call> = sim.calls.iter().filter(|c| c.outcome == Outcome::Admitted).collect();
    let steady_admitted: Vec<&Call> = admitted.iter().copied().filter(|c| within(c.arrived, steady)).collect();
    let share = |calls: &[&Call]| calls.iter().filter(|c| c.waited).count() as f64 / calls.len().max(1) as f64;
    let wait = |calls: &[&Call]| percentiles(calls.iter().map(|c| c.decided - c.arrived).collect());
    let bins = |(a, b): (u64, u64)| &s.bins[(a / 1_000_000) as usize..(b / 1_000_000) as usize];
    let per_1k = |(a, b): (u64, u64)| {
        let bins = bins((a, b));
        1000.0 * bins.iter().map(|b| b.msgs).sum::<u64>() as f64 / bins.iter().map(|b| b.arrivals).sum::<u64>() as f64
    };
    let util = |(a, b): (u64, u64)| bins((a, b)).iter().map(|b| b.busy_us).sum::<f64>() / (b - a) as f64;
    let counted = |n: usize| sim.ledger.leases.get(n).and_then(|s| s.as_ref()).map_or(0.0, |s| s.counted_usd);
    let (mut dead, mut alive, mut alive_lost) = (0.0, 0.0, 0.0);
    for (n, billed) in sim.lease_billed.iter().enumerate() {
        if sim.lease_dead[n] {
            dead += billed - counted(n);
        }
    }
    for iso in &sim.isolates {
        let gap = sim.lease_billed[iso.lease] - counted(iso.lease);
        if iso.last_ask_lost {
            alive_lost += gap;
        } else {
            alive += gap;
        }
    }
    let (rpm, at) = (sim.v.rpm as f64, &s.admitted_at);
    let (mut max_60s, mut j) = (0u64, 0usize);
    for k in 0..at.len() {
        while at[k] - at[j] >= 60_000_000 {
            j += 1;
        }
        max_60s = max_60s.max((k - j + 1) as u64);
    }
    // The bucket was made full when the ledger served its first ask.
    let made = s.first_served.unwrap_or(0);
    let least_slack = at
        .iter()
        .enumerate()
        .map(|(k, &t)| rpm + rpm * t.saturating_sub(made) as f64 / 60e6 - (k + 1) as f64)
        .fold(f64::INFINITY, f64::min);
    Report {
        v: sim.v,
        calls: sim.calls.len(),
        steady,
        limited,
        waited_steady: share(&steady_admitted),
        waited_admitted: share(&admitted),
        why_steady: steady_admitted.iter().filter_map(|c| c.short).fold([0; 4], |mut n, (short, behind)| {
            n[match short {
                Short::NoLease => 0,
                Short::Expired => 1,
                Short::Insufficient => 2,
            }] += 1;
            n[3] += u64::from(behind);
            n
        }),
        wait_steady: wait(&steady_admitted),
        wait_run: wait(&admitted),
        wait_refused: wait(
            &sim.calls
                .iter()
                .filter(|c| {
                    matches!(c.outcome, Outcome::Budget | Outcome::Requests | Outcome::Denied | Outcome::Exhausted)
                })
                .collect::<Vec<_>>(),
        ),
        msgs_per_1k: [per_1k(steady), limited.map_or(f64::NAN, per_1k), per_1k((0, run_us))],
        util: [util(steady), limited.map_or(f64::NAN, util), util((0, run_us))],
        util_peak: s.bins.iter().map(|b| b.busy_us / 1e6).fold(0.0, f64::max),
        outcomes: sim.calls.iter().fold([0; 8], |mut n, c| {
            n[OUTCOMES.iter().position(|(o, _)| *o == c.outcome).expect("an outcome")] += 1;
            n
        }),
        first_budget_refusal: s.first_budget_refusal.map(|(t, e)| (t as f64 / 1e6, e)),
        counted_usd: sim.ledger.leases.iter().flatten().map(|s| s.counted_usd).sum(),
        billed_usd: sim.lease_billed.iter().sum(),
        unreported_dead_usd: dead,
        unreported_alive_usd: alive,
        unreported_lost_last_usd: alive_lost,
        max_committed: s.max_committed,
        max_exposure: s.max_exposure,
        late_usd: s.late_usd,
        beyond_grant: s.beyond_grant,
        admitted: at.len() as u64,
        max_60s,
        least_slack,
        revoke: s
            .revoked_at
            .map(|r| (s.last_admitted_after_revoke.map_or(0.0, |t| (t - r) as f64 / 1000.0), s.admitted_after_revoke)),
        deaths: s.deaths,
        lost: s.lost,
        freed: s.freed,
    }
}

fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    let row = |out: &mut String, name: &str, f: &dyn Fn(&Report) -> String| {
        out.push_str(&format!("| {name} |"));
        for r in reports {
            out.push_str(&format!(" {} |", f(r)));
        }
        out.push('\n');
    };
    let pct = |x: f64| if x.is_nan() { "-".to_string() } else { format!("{:.2}%", x * 100.0) };
    let num = |x: f64| if x.is_nan() { "-".to_string() } else { format!("{x:.1}") };
    let ms = |w: [f64; 3]| format!("{:.0} / {:.0} / {:.0} ms", w[0], w[1], w[2]);
    let secs = |(a, b): (u64, u64)| format!("{}-{} s", a / 1_000_000, b / 1_000_000);
    let capped = |r: &Report| r.v.cap_usd < LOOSE_CAP_USD;
    row(&mut out, "variant", &|r| format!("**{}**", r.v.name));
    out.push_str(&format!("|---|{}\n", "---|".repeat(reports.len())));
    row(&mut out, "isolates; calls offered; run", &|r| {
        format!("{}; {}; {} s", r.v.isolates, r.calls, r.v.run_ms / 1000)
    });
    row(&mut out, "binds", &|r| {
        let mut binds = Vec::new();
        if capped(r) {
            binds.push(format!("${} day cap", r.v.cap_usd));
        }
        if r.v.rpm < LOOSE_RPM {
            binds.push(format!("{} rpm", r.v.rpm));
        }
        if r.v.revoke {
            binds.push(format!("revoked at {} s", REVOKE_AT_MS / 1000));
        }
        if binds.is_empty() {
            binds.push("nothing".into());
        }
        binds.join(", ")
    });
    row(&mut out, "faults (isolates died; messages lost)", &|r| {
        if r.v.faults {
            format!("{}; {}", r.deaths, r.lost)
        } else {
            "none".into()
        }
    });
    row(&mut out, "steady state; after the limit", &|r| {
        format!("{}; {}", secs(r.steady), r.limited.map_or("-".into(), secs))
    });
    row(&mut out, "admitted calls that waited: steady; whole run", &|r| {
        format!("{}; {}", pct(r.waited_steady), pct(r.waited_admitted))
    });
    row(&mut out, "why, steady: no lease / expired / too small (behind a refresh in flight)", &|r| {
        let w = r.why_steady;
        format!("{} / {} / {} ({})", w[0], w[1], w[2], w[3])
    });
    row(&mut out, "added wait p50 / p99 / p99.9, steady", &|r| ms(r.wait_steady));
    row(&mut out, "added wait p50 / p99 / p99.9, whole run", &|r| ms(r.wait_run));
    row(&mut out, "wait before a refusal (429, 401, 503 after 4 rounds) p50 / p99 / p99.9", &|r| ms(r.wait_refused));
    row(&mut out, "ledger messages per 1,000 calls: steady; after the limit; run", &|r| {
        format!("{}; {}; {}", num(r.msgs_per_1k[0]), num(r.msgs_per_1k[1]), num(r.msgs_per_1k[2]))
    });
    row(&mut out, "ledger utilisation: steady; after the limit; run; busiest second", &|r| {
        format!("{}; {}; {}; {}", pct(r.util[0]), pct(r.util[1]), pct(r.util[2]), pct(r.util_peak))
    });
    row(&mut out, "outcomes", &|r| {
        let parts: Vec<String> = OUTCOMES
            .iter()
            .zip(r.outcomes)
            .filter(|(_, n)| *n > 0)
            .map(|((_, name), n)| format!("{name} {n}"))
            .collect();
        parts.join(", ")
    });
    row(&mut out, "first budget 429 at; exposure then (of cap)", &|r| match r.first_budget_refusal {
        Some((t, e)) => format!("{t:.2} s; {}", pct(e / r.v.cap_usd)),
        None => "-".into(),
    });
    row(&mut out, "spend counted by the ledger at the end; billed (of cap)", &|r| {
        if capped(r) {
            format!(
                "${:.3} ({}); ${:.3} ({})",
                r.counted_usd,
                pct(r.counted_usd / r.v.cap_usd),
                r.billed_usd,
                pct(r.billed_usd / r.v.cap_usd)
            )
        } else {
            format!("${:.2}; ${:.2}", r.counted_usd, r.billed_usd)
        }
    });
    row(&mut out, "billed, never reported: dead isolates'; live isolates' (whose last ask was lost)", &|r| {
        format!(
            "${:.2}; ${:.2} (${:.2})",
            r.unreported_dead_usd,
            (r.unreported_alive_usd + r.unreported_lost_last_usd).max(0.0),
            r.unreported_lost_last_usd.max(0.0)
        )
    });
    row(&mut out, "most committed in the ledger; most exposure (billed + held)", &|r| {
        if capped(r) {
            format!("${:.4}; ${:.4}", r.max_committed, r.max_exposure)
        } else {
            "-".into()
        }
    });
    row(&mut out, "answers granting less than already taken: count; $; requests", &|r| {
        format!("{}; ${:.2}; {}", r.beyond_grant.0, r.beyond_grant.1, r.beyond_grant.2)
    });
    row(&mut out, "spend reported after the ledger freed its lease; leases freed", &|r| {
        format!("${:.2}; {}", r.late_usd, r.freed)
    });
    row(&mut out, "rpm: admitted; most in any 60 s (bound 2 x rpm); least slack of rpm + rpm * t / 60 s", &|r| {
        if r.v.rpm < LOOSE_RPM {
            format!("{}; {} ({}); {:.0}", r.admitted, r.max_60s, 2 * r.v.rpm, r.least_slack)
        } else {
            "-".into()
        }
    });
    row(&mut out, "revocation: last admission after it; calls admitted after it", &|r| match r.revoke {
        Some((t, n)) => format!("{t:.0} ms; {n}"),
        None => "-".into(),
    });
    out
}

#[test]
fn leases_at_scale() {
    let started = std::time::Instant::now();
    // Another seed: `LEASES_SIM_SEED=<number>`.
    let seed = std::env::var("LEASES_SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED);
    let v = |name, isolates, cap_usd, rpm, revoke, faults, run_ms| Variant {
        name,
        isolates,
        cap_usd,
        rpm,
        revoke,
        faults,
        run_ms,
    };
    let variants = [
        v("cap", 60, DAY_CAP_USD, LOOSE_RPM, false, true, RUN_MS),
        v("cap, no faults", 60, DAY_CAP_USD, LOOSE_RPM, false, false, 20_000),
        v("rpm", 60, LOOSE_CAP_USD, TIGHT_RPM, false, true, RUN_MS),
        v("revoke", 60, LOOSE_CAP_USD, LOOSE_RPM, true, true, REVOKE_AT_MS + 5_000),
        v("cap, 600", 600, DAY_CAP_USD, LOOSE_RPM, false, true, 30_000),
        v("revoke, 600", 600, LOOSE_CAP_USD, LOOSE_RPM, true, true, REVOKE_AT_MS + 5_000),
        v("free, 6000", 6000, LOOSE_CAP_USD, LOOSE_RPM, false, false, 10_000),
    ];
    // Two at a time (each run is deterministic on its own): the machine has two cores.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut reports: Vec<(usize, Report)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&v) = variants.get(k) else { return done };
                        let t = std::time::Instant::now();
                        let sim = Sim::new(v, seed).run();
                        if std::env::var_os("LEASES_SIM_TIMES").is_some() {
                            eprintln!("{}: {:.2} s, {} events", v.name, t.elapsed().as_secs_f64(), sim.queue.order);
                        }
                        check_run(&sim);
                        done.push((k, report(&sim)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a run")).collect()
    });
    reports.sort_by_key(|(k, _)| *k);
    let reports: Vec<Report> = reports.into_iter().map(|(_, r)| r).collect();
    let text = format!(
        "{}\n{} runs simulated in {:.1} s (seed {seed:#x}).\n",
        table(&reports),
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    // Straight to the file descriptor, past the test harness's capture; and to a file.
    let _ = std::io::stderr().write_all(text.as_bytes());
    let _ = std::fs::write(concat!(env!("CARGO_TARGET_TMPDIR"), "/leases.md"), &text);
    for r in &reports {
        check(r);
    }
}

/// Every call came to an end, and no isolate still waits for the ledger.
fn check_run(sim: &Sim) {
    assert!(sim.calls.iter().all(|c| c.outcome != Outcome::Pending), "{}: a call still waits", sim.v.name);
    assert!(sim.isolates.iter().all(|i| i.flight.is_none()), "{}: a refresh still in flight", sim.v.name);
    assert!(sim.ledger.queue.is_empty());
}

/// The invariants, each as precisely as it holds (see the module's notes on the overruns).
fn check(r: &Report) {
    let name = r.v.name;
    if r.v.cap_usd < LOOSE_CAP_USD {
        // No cap is overrun but by what the overruns' known sources allow: answers that granted
        // a lease less than its calls had taken meanwhile, spend reported after its lease was
        // freed, dead isolates' calls (billed, never reported), and live isolates' whose last
        // ask was lost (`LeaseView::ask` takes the use it carries for reported).
        let explained = r.beyond_grant.1 + r.late_usd;
        let unreported = r.unreported_dead_usd + r.unreported_lost_last_usd.max(0.0);
        assert!(r.max_committed <= r.v.cap_usd + explained + EPS, "{name}: committed {}", r.max_committed);
        assert!(r.max_exposure <= r.v.cap_usd + explained + unreported + EPS, "{name}: exposure {}", r.max_exposure);
        assert!(r.billed_usd <= r.v.cap_usd + explained + unreported + EPS, "{name}: billed {}", r.billed_usd);
        // Otherwise what the ledger counted is what the live isolates' calls cost, and the cap
        // is used: less than 1% of it is left when the run ends.
        assert!(
            r.unreported_alive_usd.abs() < 1e-6,
            "{name}: live isolates' spend unreported: {}",
            r.unreported_alive_usd
        );
        assert!(r.counted_usd >= 0.99 * r.v.cap_usd, "{name}: only ${} of the cap used", r.counted_usd);
        let (_, exposure) = r.first_budget_refusal.expect("the cap was reached");
        assert!(exposure >= 0.95 * r.v.cap_usd, "{name}: refusals began at ${exposure}");
    }
    if r.v.rpm < LOOSE_RPM {
        // Requests: from the moment the bucket was made (full), no more were admitted than it
        // holds plus its refill (`rpm + rpm * t / 60 s`, for every t); hence in any 60 s window
        // no more than twice the limit.
        assert!(r.least_slack >= -(r.beyond_grant.2 as f64), "{name}: the bucket was overrun by {}", -r.least_slack);
        assert!(r.max_60s <= 2 * r.v.rpm + r.beyond_grant.2, "{name}: {} in 60 s", r.max_60s);
        // And the limit is used: at least 98% of what the bucket allowed was admitted.
        let allowed = r.v.rpm as f64 * (1.0 + r.v.run_ms as f64 / 60_000.0);
        assert!(r.admitted as f64 >= 0.98 * allowed, "{name}: {} admitted of {allowed}", r.admitted);
    }
    if let Some((after_ms, _)) = r.revoke {
        // No call admitted past a lease's lifetime (which runs from when its ask was sent, before
        // the revocation) plus the farthest one-way latency.
        let bound = LEASE_TTL_MS as f64 + LATENCY_MS.iter().copied().fold(0.0, f64::max);
        assert!(after_ms <= bound, "{name}: a call admitted {after_ms} ms after the revocation");
    }
    // Most calls in the steady state are admitted with no wait, while the ledger keeps up.
    if r.util[0] < 0.5 {
        let bound = if r.v.isolates > 100 { 0.02 } else { 0.01 };
        assert!(r.waited_steady <= bound, "{name}: {} of calls waited in the steady state", r.waited_steady);
    }
}

// Two scenarios the simulation found, reduced to the lease functions alone: each fails today
// (`cargo test -p switchyard-core --test leases -- --ignored`), and passes once it is fixed.

fn cap_of(limit_usd: f64) -> Vec<Cap> {
    vec![Cap { window: Window::Day, limit_usd, warn_at: None }]
}

fn usd(usd: f64) -> Amounts {
    Amounts { usd, requests: 1, tokens: 0 }
}

/// An isolate goes on taking calls from its lease while its refresh is in flight (as the worker
/// does); the ledger, meanwhile short of headroom, answers with a smaller free part, sized on
/// the use the ask reported. What was taken since the ask beyond the new grant is then reserved
/// nowhere, and the ledger hands it out again.
#[test]
#[ignore = "lease::refresh shrinks a lease below what its calls took while the refresh was in flight"]
fn calls_taken_while_a_refresh_is_in_flight_stay_reserved() {
    let now = EPOCH_MS;
    let (cap, base) = (1.0, LeaseAsk { caps: cap_of(1.0), ..LeaseAsk::default() });
    let mut scope = Scope::default();
    // Isolate A: a first call of $0.1 gets a lease of $0.3 (three calls' worth) and holds $0.1.
    let mut a = LeaseView::new("a", now);
    assert_eq!(a.take(usd(0.1), now), Err(Short::NoLease));
    let ask = a.ask(&base, usd(0.1), now);
    let (state_a, refused) = lease::refresh(&mut scope, None, &ask, 0, now);
    assert!(refused.is_none());
    a.granted(state_a.grant.clone(), now);
    a.take(usd(0.1), now).unwrap();
    assert!((a.grant().unwrap().limit.usd - 0.3).abs() < 1e-9);
    // Its refresh falls due and is sent (it reports $0.1 held); while it is on its way, two
    // more calls take $0.2 from the lease, which allows it.
    let t1 = now + REFRESH_AFTER_MS;
    let refresh_a = a.ask(&base, Amounts::default(), t1);
    a.take(usd(0.1), t1).unwrap();
    a.take(usd(0.1), t1).unwrap();
    // Isolate B asks first: $0.6 of the $0.7 left.
    let mut b = LeaseView::new("b", t1);
    let ask = b.ask(&base, usd(0.6), t1);
    let (state_b, refused) = lease::refresh(&mut scope, None, &ask, 1, t1);
    assert!(refused.is_none());
    b.granted(state_b.grant.clone(), t1);
    b.take(usd(0.6), t1).unwrap();
    // Then A's refresh: $0.1 held by its account, so its lease shrinks to $0.175 in all.
    let (state_a, _) = lease::refresh(&mut scope, Some(state_a), &refresh_a, 1, t1 + 1);
    a.granted(state_a.grant.clone(), t1);
    // Isolate C asks for $0.2, which the ledger finds free.
    let mut c = LeaseView::new("c", t1);
    let ask = c.ask(&base, usd(0.2), t1 + 2);
    let (state_c, refused) = lease::refresh(&mut scope, None, &ask, 2, t1 + 2);
    if refused.is_none() {
        c.granted(state_c.grant.clone(), t1 + 2);
        c.take(usd(0.2), t1 + 2).unwrap();
    }
    // The calls running now may cost what they hold: $0.3 + $0.6 + $0.2 against a $1 cap.
    let held = a.used().held_usd + b.used().held_usd + c.used().held_usd;
    assert!(held <= cap + EPS, "calls running hold ${held:.3} against a ${cap} cap");
}

/// A refresh is lost on its way. The worker gives up on it after its timeout (`TIMEOUT_MS`,
/// 5 s) and asks again; but the ledger frees the lease `LEASE_TTL_MS + LEASE_GRACE_MS` (5 s)
/// after the last ask it served, which was sent before the lost one: the next ask comes after
/// the lease was freed, and what its calls in flight hold went back to the cap and was handed
/// out again. (A lost answer frees it too, whenever the next ask is a little slower than the
/// lost one.)
#[test]
#[ignore = "LEASE_GRACE_MS is shorter than the worker's wait for a lost refresh: a live lease's holds are freed"]
fn a_lost_refresh_does_not_free_what_calls_in_flight_hold() {
    let now = EPOCH_MS;
    let (cap, base) = (1.0, LeaseAsk { caps: cap_of(1.0), ..LeaseAsk::default() });
    let mut scope = Scope::default();
    // A call of $0.5 (a long stream) holds its estimate in isolate A's lease.
    let mut a = LeaseView::new("a", now);
    let ask = a.ask(&base, usd(0.5), now);
    let (state_a, _) = lease::refresh(&mut scope, None, &ask, 0, now);
    a.granted(state_a.grant.clone(), now);
    a.take(usd(0.5), now).unwrap();
    // Its refresh falls due and is sent; it never arrives.
    let t1 = now + REFRESH_AFTER_MS;
    assert!(a.due(t1));
    let _lost = a.ask(&base, Amounts::default(), t1);
    // Before the worker gives up on it, another isolate's ask makes the ledger sweep its stale
    // leases, and is granted what it needs.
    let swept = t1 + TIMEOUT_MS - 1;
    let mut state_a = state_a;
    if state_a.expired(swept) {
        lease::free(&mut scope, &mut state_a, swept);
    }
    let mut b = LeaseView::new("b", swept);
    let ask = b.ask(&base, usd(0.9), swept);
    let (state_b, refused) = lease::refresh(&mut scope, None, &ask, 1, swept);
    if refused.is_none() {
        b.granted(state_b.grant, swept);
        b.take(usd(0.9), swept).unwrap();
    }
    // A asks again, with its call still running.
    let again = t1 + TIMEOUT_MS;
    let ask = a.ask(&base, Amounts::default(), again);
    let _ = lease::refresh(&mut scope, Some(state_a), &ask, 1, again + 10);
    let committed = scope.committed(Window::Day, again + 10);
    assert!(committed <= cap + EPS, "the ledger has ${committed:.2} committed against a ${cap} cap");
}
