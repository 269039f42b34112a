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
//!   `LeaseState::expired`), counts the live ones (`LeaseState::live`), takes the key's caps and
//!   limits from its record and checks it (a revoked key's asks are counted with no need and no
//!   want, and answered `Denied`), and applies `lease::refresh`, as `src/ledger.rs` does.
//! - Calls arrive as one Poisson stream, each at an isolate drawn uniformly, and are admitted as
//!   the worker's `leases::take` (`src/leases.rs`) admits them: `LeaseView::take`; else, when
//!   another call's refresh of the lease is in flight (and younger than `WAIT_MS`), the call waits
//!   for it by polling the slot on its own timers (1, 2, 4, 8, 8, ... ms): a refusal of a need no
//!   larger than its own refuses it too, without asking, `Denied` refuses it (401), no answer
//!   fails it (503), anything else sends it round again; else it sends its own refresh, which
//!   pre-takes its need (`LeaseView::ask`) and admits it with what `LeaseView::answered` hands
//!   back, or refuses it (429, 401, 503). At most `OWN_REFRESHES` refreshes of its own and
//!   `ADMIT_MS` in all, then it fails (503). A call holds its estimate while it runs and settles
//!   its actual cost (at most the estimate) when it ends.
//! - Off the hot path, as the worker does: `keep_while` (each call, every `REFRESH_AFTER_MS` it
//!   runs, refreshes the lease if it is due and none is in flight; when the call ends first, the
//!   refresh is dropped with it: its ask reaches the ledger, its answer is applied nowhere, and the
//!   slot stays "refreshing" until a waiter or a take finds it older than `WAIT_MS`); `maintain`
//!   (started when a call ends unless one runs: refreshes the lease when `due`, else sleeps until
//!   it falls due by age, `MAINTAIN_FLOOR_MS` at least, for `MAINTAIN_MS - REFRESH_AFTER_MS` at
//!   most, ending when the lease is idle); and the outbox (`FLUSH_MS` after a call ends, unless a
//!   flush is pending: reports the lease if `LeaseView::unreported` and no refresh is in flight).
//! - An ask is answered `Failed` after `ASK_TIMEOUT_MS` (the worker's `ledger::lease`), whether it
//!   or its answer was lost (`LOSS` of the messages) or the answer is late; a late answer is
//!   dropped.
//! - Isolates die (`DEATH_MEAN_S` on average each): their calls in flight are billed by the
//!   vendor (at their actual cost) but never reported, their lease is left to expire, and a new
//!   isolate with a new lease takes their place.
//!
//! The worker's own constants are private to its crate: they are mirrored below, and
//! `the_worker_is_modelled_with_its_own_constants` checks them against its source.
//!
//! `cargo test -p switchyard-core --test leases -- --nocapture` prints the figures (a markdown
//! table, written to stderr directly and to `leases.md` in the target's temporary directory,
//! whatever the capture); `check` asserts the invariants, each as precisely as it holds. What
//! the simulation found in the lease code is reduced to a few calls of the lease functions at
//! the end: regression tests for the fixed overruns, and two tests ignored until fixed
//! (`-- --ignored`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write;

use switchyard_core::keys::{KeyPolicy, KeyRecord, Source};
use switchyard_core::lease::{
    self, Amounts, Answered, LeaseAnswer, LeaseAsk, LeaseState, LeaseView, Short, Taken, ASK_TIMEOUT_MS,
    LEASE_GRACE_MS, LEASE_TTL_MS, REFRESH_AFTER_MS,
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
/// When the key is revoked, in the variants that revoke it.
const REVOKE_AT_MS: u64 = 40_000;
const SEED: u64 = 0x5157_4c45_4153_4531;
/// The hierarchical design's shard ledgers (BENCHMARKS.md): one is simulated, with its part of
/// the isolates and of the calls.
const SHARDS: usize = 8;
/// Money compared with this tolerance.
const EPS: f64 = 1e-9;

// The worker's (`src/leases.rs`, `src/outbox.rs`), mirrored.
const _: () = assert!(WAIT_MS > ASK_TIMEOUT_MS, "the model of `wait_for` takes a refresh to end within `WAIT_MS`");
/// Another call's refresh is waited on this long at most (`leases::WAIT_MS`).
const WAIT_MS: u64 = ASK_TIMEOUT_MS + 500;
/// A call's wait for its lease, in all (`leases::ADMIT_MS`).
const ADMIT_MS: u64 = 3 * ASK_TIMEOUT_MS;
/// A call's own refreshes, at most (`leases::take`'s loop).
const OWN_REFRESHES: u32 = 3;
/// A waiter's pauses between looks at the slot (`leases::wait_for`): doubling up to this.
const POLL_MAX_MS: u64 = 8;
/// `leases::maintain`: how long one runs, and its shortest sleep.
const MAINTAIN_MS: u64 = 10_000;
const MAINTAIN_FLOOR_MS: u64 = 50;
/// `outbox::FLUSH_MS`: a call's end is followed by a report of its lease this much later.
const FLUSH_MS: u64 = 200;
/// `leases::REPORT_ROUNDS`: a report's waits on refreshes in flight and its own refreshes.
const REPORT_ROUNDS: u32 = 3;

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
    /// The calls this ledger serves: all of the key's (`CALLS_PER_S`), or one shard's of them
    /// (the hierarchical design's figure: `SHARDS` ledgers, each leasing a slice from a root).
    calls_per_s: f64,
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

/// An event (calls, messages, isolates by index: `u32`s keep the queue's items small).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Arrival,
    End(u32),
    /// A call's `keep_while` looks at its lease.
    Keep(u32),
    /// A waiting call looks at the slot (its wait's generation).
    Look(u32, u32),
    AtLedger(u32),
    LedgerDone,
    Answer(u32),
    /// `ASK_TIMEOUT_MS` after an ask was sent.
    AskTimeout(u32),
    /// An isolate's `maintain` (its incarnation, and when it started: ms since `EPOCH_MS`) wakes.
    Maintain(u32, u32, u32),
    /// An isolate's outbox flushes (its incarnation).
    Flush(u32, u32),
    /// An isolate's `leases::report` goes on after the refresh it waited on (its incarnation).
    Report(u32, u32),
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
    /// 503: the ledger did not answer in time (this call's refresh, or the one it waited on).
    Unavailable,
    /// 503: `OWN_REFRESHES` refreshes or `ADMIT_MS` and still no room.
    Exhausted,
    /// Its isolate died while it waited.
    Died,
}

/// What a refresh came to, as the worker's slot remembers it (`leases::Refreshed`).
#[derive(Clone, Copy, Debug)]
enum Refreshed {
    Granted(Option<Refusal>),
    Denied,
    Failed,
}

/// Who sent a refresh, and goes on when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// A call that found no room (`leases::take`).
    Hot(usize),
    /// A running call's `keep_while`.
    Keep(usize),
    /// `leases::maintain`, started at (ms).
    Maintain(u64),
    /// The outbox's `leases::report`.
    Report,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lost {
    No,
    Ask,
    Answer,
}

struct Call {
    iso: usize,
    inc: u64,
    arrived: u64,
    est: f64,
    actual: f64,
    duration: u64,
    /// Refreshes of its own sent so far.
    own: u32,
    /// The refresh it waits on (its `sent_ms`, as the slot knows it) and since when; `gen`
    /// tells this wait's looks from an earlier one's.
    wait: Option<(u64, u64)>,
    gen: u32,
    /// Its place in its isolate's `waiters`, while it waits.
    wslot: usize,
    waited: bool,
    /// Whether it waited on a refresh dropped with its call (`keep_while`), or for the lease
    /// after the slot was cleared of one.
    behind_dropped: bool,
    /// Why its first take failed, and whether a refresh was in flight then.
    short: Option<(Short, bool)>,
    taken: Taken,
    /// Its place in its isolate's `running`.
    slot: usize,
    running: bool,
    /// Its `keep_while`'s refresh in flight.
    keep_msg: Option<usize>,
    outcome: Outcome,
    decided: u64,
}

struct Isolate {
    loc: usize,
    inc: u64,
    lease: usize,
    view: LeaseView,
    /// `Slot::refreshing`: when the refresh in flight was sent (ms); and which it is.
    refreshing: Option<u64>,
    flight: usize,
    /// `Slot::last`: what the last refresh came to, when it was sent, its waiting call's need.
    last: Option<(u64, Refreshed, Amounts)>,
    /// Calls waiting on a refresh, and calls waiting on their own.
    waiters: Vec<Waiter>,
    asking: Vec<usize>,
    running: Vec<usize>,
    /// `MAINTAINING`: when the running `maintain` began (0: none).
    maintaining: u64,
    /// The outbox's flush is pending.
    sending: bool,
    /// Calls that tried the lease since its last ask.
    seen: u64,
    /// Its slot was cleared past `WAIT_MS` (a refresh dropped with its call), and no answer
    /// granted it a lease since.
    recovering: bool,
    /// Its `leases::report` gave up (`REPORT_ROUNDS` rounds) with use still unreported, and no
    /// ask went out since.
    skipped: bool,
    /// `leases::report`'s rounds so far, while one runs (`None`: none), and the refresh it waits
    /// on.
    reporting: Option<u32>,
    report_on: Option<u64>,
}

/// A call waiting on a refresh (a copy of its `wait`, kept together for `clear`).
#[derive(Clone, Copy)]
struct Waiter {
    call: u32,
    gen: u32,
    on: u64,
    since: u64,
}

struct Msg {
    iso: usize,
    inc: u64,
    lease: usize,
    sent: u64,
    sent_ms: u64,
    seq: u64,
    need: Amounts,
    owner: Owner,
    ask: Option<Box<LeaseAsk>>,
    answer: Option<LeaseAnswer>,
    lost: Lost,
    /// Answered, failed, or dropped with its call (`abandoned`).
    done: bool,
    abandoned: bool,
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
    /// Refreshes sent by: calls that found no room, `keep_while`, `maintain`, the outbox.
    sent: [u64; 4],
    lost: u64,
    /// Asks answered `Failed`, and of them those whose answer was on its way (late).
    failed: u64,
    late: u64,
    /// `keep_while` refreshes dropped with their call; slots found refreshing past `WAIT_MS`.
    abandoned: u64,
    stale: u64,
    /// Calls refused by a refusal they waited on, without asking.
    remembered: u64,
    /// Calls refused at once by a lease whose bucket the ledger said is dry (`LeaseView::dry`).
    dry: u64,
    /// Calls that waited on a refresh that got no answer and asked themselves.
    retried: u64,
    /// Refreshes of idle leases (see `send`).
    idle: u64,
    freed: u64,
    deaths: u64,
    /// Ended calls' actual cost plus running calls' estimate, over all admitted calls.
    exposure: f64,
    max_exposure: f64,
    max_committed: f64,
    /// Answers applied that granted less than the lease's calls had already taken (kept
    /// reserved by the ask's `acked`): how many, by how much money in all, and requests.
    beyond_grant: (u64, f64, u64),
    /// A live lease's admitted calls (ended: their cost; running: their estimate) beyond what
    /// the ledger counted and reserved for it: how many times, by how much at most.
    beyond_reserved: (u64, f64),
    /// Spend a lease reported after the ledger had freed it.
    late_usd: f64,
    first_budget_refusal: Option<(u64, f64)>,
    /// When the exposure first reached half the cap, or the request bucket was half empty.
    half_limit_at: Option<u64>,
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
    /// By lease number: what its admitted calls cost (billed); that with running calls at their
    /// estimate; whether its isolate died.
    lease_billed: Vec<f64>,
    lease_admitted: Vec<f64>,
    lease_dead: Vec<bool>,
    s: Stats,
}

fn lease_id(n: usize) -> String {
    format!("lease_{n}")
}

/// When a call that began to wait at `since` (µs) next looks at the slot, at `at` or after:
/// `leases::wait_for` looks at once, then after pauses of 1, 2, 4, 8, 8, ... ms.
fn next_look(since: u64, at: u64) -> u64 {
    if at <= since {
        return since;
    }
    let (mut t, mut pause) = (since, 1);
    while t < at {
        t += pause * 1000;
        pause = (pause * 2).min(POLL_MAX_MS);
        if pause == POLL_MAX_MS && t < at {
            // The rest in steps of `POLL_MAX_MS`, at once.
            let step = POLL_MAX_MS * 1000;
            return t + (at - t).div_ceil(step) * step;
        }
    }
    t
}

/// Whether a refusal of `theirs` holds for `need` too (`leases::covers`).
fn covers(need: Amounts, theirs: Amounts, refusal: &Refusal) -> bool {
    match refusal {
        Refusal::Budget(_) => need.usd >= theirs.usd,
        Refusal::Requests { .. } => need.requests >= theirs.requests.max(1),
        Refusal::Tokens { .. } => need.tokens >= theirs.tokens,
    }
}

fn refused(refusal: &Refusal) -> Outcome {
    match refusal {
        Refusal::Budget(_) => Outcome::Budget,
        _ => Outcome::Requests,
    }
}

impl Sim {
    fn new(v: Variant, seed: u64) -> Self {
        let caps = vec![Cap { window: Window::Day, limit_usd: v.cap_usd, warn_at: None }];
        let limits = RateLimits { rpm: Some(v.rpm), tpm: None };
        let record = KeyRecord {
            id: "key_000000000000000000000000".into(),
            object: "gateway_key".into(),
            name: "simulated".into(),
            redacted_key: "sy-...sim".into(),
            sha256: String::new(),
            created_at: EPOCH_MS / 1000 - 86_400,
            revoked_at: None,
            source: Source::Api,
            policy: KeyPolicy { budgets: caps.clone(), rate_limits: limits, ..KeyPolicy::default() },
        };
        let base = LeaseAsk { caps, limits, record: Some(record.clone()), ..LeaseAsk::default() };
        let isolates = (0..v.isolates)
            .map(|i| Isolate {
                loc: i % LATENCY_MS.len(),
                inc: 0,
                lease: i,
                view: LeaseView::new(lease_id(i), EPOCH_MS),
                refreshing: None,
                flight: 0,
                last: None,
                waiters: Vec::new(),
                asking: Vec::new(),
                running: Vec::new(),
                maintaining: 0,
                sending: false,
                seen: 0,
                skipped: false,
                recovering: false,
                reporting: None,
                report_on: None,
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
            calls: Vec::with_capacity((v.calls_per_s * v.run_ms as f64 / 1000.0 * 1.02) as usize),
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
            lease_admitted: vec![0.0; v.isolates],
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
                Ev::End(c) => self.end(c as usize),
                Ev::Keep(c) => self.keep(c as usize),
                Ev::Look(c, gen) => self.look(c as usize, gen),
                Ev::AtLedger(m) => {
                    self.ledger.queue.push_back(m as usize);
                    self.serve();
                }
                Ev::LedgerDone => {
                    let m = self.ledger.queue.pop_front().expect("a message in service");
                    self.ledger.busy = false;
                    self.process(m);
                    self.serve();
                }
                Ev::Answer(m) => {
                    let m = m as usize;
                    if !self.msgs[m].done {
                        let answer = self.msgs[m].answer.take();
                        self.resolve(m, answer);
                    }
                }
                Ev::AskTimeout(m) => {
                    let m = m as usize;
                    if !self.msgs[m].done {
                        self.s.failed += 1;
                        if self.msgs[m].lost == Lost::No {
                            self.s.late += 1;
                        }
                        self.resolve(m, None);
                    }
                }
                Ev::Maintain(i, inc, started) => {
                    if self.isolates[i as usize].inc == u64::from(inc) {
                        self.maintain(i as usize, EPOCH_MS + u64::from(started));
                    }
                }
                Ev::Flush(i, inc) => {
                    if self.isolates[i as usize].inc == u64::from(inc) {
                        self.flush(i as usize);
                    }
                }
                Ev::Report(i, inc) => {
                    if self.isolates[i as usize].inc == u64::from(inc) {
                        self.report_round(i as usize);
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
            own: 0,
            wait: None,
            gen: 0,
            wslot: 0,
            waited: false,
            behind_dropped: false,
            short: None,
            taken: Taken::default(),
            slot: 0,
            running: false,
            keep_msg: None,
            outcome: Outcome::Pending,
            decided: 0,
        });
        self.bin().arrivals += 1;
        self.attempt(c);
        let next = self.now + self.rng.exp(1e6 / self.v.calls_per_s).max(1.0) as u64;
        if next < self.v.run_ms * 1000 {
            self.schedule(next, Ev::Arrival);
        }
    }

    fn need(&self, c: usize) -> Amounts {
        Amounts { usd: self.calls[c].est, requests: 1, tokens: 0 }
    }

    /// `Slot`'s `in_flight`: when the refresh in flight was sent, unless it is older than
    /// `WAIT_MS` (then it is taken for abandoned, and the slot cleared).
    fn in_flight(&mut self, i: usize) -> Option<u64> {
        let now_ms = self.now_ms();
        match self.isolates[i].refreshing {
            Some(sent_ms) if now_ms.saturating_sub(sent_ms) <= WAIT_MS => Some(sent_ms),
            Some(sent_ms) => {
                self.s.stale += 1;
                self.isolates[i].recovering = true;
                self.clear(i, sent_ms);
                None
            }
            None => None,
        }
    }

    /// The slot is no longer refreshing with the ask sent at `sent_ms`: the calls waiting on it
    /// see it when they next look.
    fn clear(&mut self, i: usize, sent_ms: u64) {
        let iso = &mut self.isolates[i];
        if iso.refreshing != Some(sent_ms) {
            return;
        }
        iso.refreshing = None;
        for w in &iso.waiters {
            if w.on == sent_ms {
                self.queue.push(next_look(w.since, self.now), Ev::Look(w.call, w.gen));
            }
        }
        if iso.report_on == Some(sent_ms) {
            iso.report_on = None;
            let inc = iso.inc as u32;
            self.queue.push(self.now, Ev::Report(i as u32, inc));
        }
    }

    /// One round of the worker's `take` (the top of its loop).
    fn attempt(&mut self, c: usize) {
        let (i, need, now_ms) = (self.calls[c].iso, self.need(c), self.now_ms());
        let arrived_ms = EPOCH_MS + self.calls[c].arrived / 1000;
        if self.calls[c].own >= OWN_REFRESHES || now_ms - arrived_ms >= ADMIT_MS {
            self.decide(c, Outcome::Exhausted);
            return;
        }
        self.isolates[i].seen += 1;
        match self.isolates[i].view.take(need, now_ms) {
            Ok(taken) => self.admit(c, taken),
            Err(_) if self.dry(i, need).is_some() => {
                let refusal = self.dry(i, need).expect("dry");
                self.s.dry += 1;
                self.decide(c, refused(&refusal));
            }
            Err(short) => {
                self.calls[c].waited = true;
                self.calls[c].behind_dropped |= self.isolates[i].recovering;
                if self.calls[c].short.is_none() {
                    self.calls[c].short = Some((short, self.isolates[i].refreshing.is_some()));
                }
                match self.in_flight(i) {
                    Some(sent_ms) => self.wait(c, sent_ms),
                    None => {
                        self.calls[c].own += 1;
                        self.isolates[i].asking.push(c);
                        self.send(i, need, Owner::Hot(c));
                    }
                }
            }
        }
    }

    /// `LeaseView::dry`, as `leases::take` asks it.
    fn dry(&mut self, i: usize, need: Amounts) -> Option<Refusal> {
        let refreshing = self.in_flight(i).is_some();
        self.isolates[i].view.dry(need, self.now_ms(), refreshing)
    }

    /// `wait_for`: the call looks at the slot until the refresh sent at `sent_ms` ended (it is
    /// told then, in `clear`), or until it is older than `WAIT_MS`: only a refresh dropped with
    /// its call gets that old (any other ends within `ASK_TIMEOUT_MS`), and its waiters' looks
    /// past `WAIT_MS` are scheduled when it is dropped (`timeout_look`).
    fn wait(&mut self, c: usize, sent_ms: u64) {
        let call = &mut self.calls[c];
        let i = call.iso;
        call.gen += 1;
        call.wait = Some((sent_ms, self.now));
        call.wslot = self.isolates[i].waiters.len();
        let waiter = Waiter { call: c as u32, gen: call.gen, on: sent_ms, since: self.now };
        self.isolates[i].waiters.push(waiter);
        debug_assert!(!self.msgs[self.isolates[i].flight].abandoned, "a dropped refresh frees its slot at once");
    }

    fn look(&mut self, c: usize, gen: u32) {
        if self.calls[c].gen != gen || self.calls[c].outcome != Outcome::Pending {
            return;
        }
        let Some((sent_ms, _)) = self.calls[c].wait else { return };
        let i = self.calls[c].iso;
        let result = if self.isolates[i].refreshing != Some(sent_ms) {
            self.isolates[i].last.as_ref().filter(|(at, ..)| *at == sent_ms).map(|&(_, r, need)| (r, need))
        } else if self.now_ms() - sent_ms > WAIT_MS {
            self.s.stale += 1;
            self.isolates[i].recovering = true;
            self.clear(i, sent_ms);
            None
        } else {
            return; // still in flight: told when it ends
        };
        self.calls[c].wait = None;
        let (waiters, at) = (&mut self.isolates[i].waiters, self.calls[c].wslot);
        debug_assert_eq!(waiters[at].call as usize, c);
        waiters.swap_remove(at);
        if let Some(moved) = waiters.get(at) {
            self.calls[moved.call as usize].wslot = at;
        }
        match result {
            Some((Refreshed::Denied, _)) => self.decide(c, Outcome::Denied),
            Some((Refreshed::Failed, _)) => {
                // `leases::take`: asks itself if an ask of its own can still end within `ADMIT_MS`.
                let arrived_ms = EPOCH_MS + self.calls[c].arrived / 1000;
                if self.now_ms() - arrived_ms + ASK_TIMEOUT_MS > ADMIT_MS {
                    self.decide(c, Outcome::Unavailable);
                } else {
                    self.s.retried += 1;
                    self.attempt(c);
                }
            }
            Some((Refreshed::Granted(Some(refusal)), theirs)) if covers(self.need(c), theirs, &refusal) => {
                self.s.remembered += 1;
                self.decide(c, refused(&refusal));
            }
            _ => self.attempt(c),
        }
    }

    fn admit(&mut self, c: usize, taken: Taken) {
        let call = &mut self.calls[c];
        call.outcome = Outcome::Admitted;
        call.decided = self.now;
        call.taken = taken;
        call.running = true;
        let (i, est, actual, duration) = (call.iso, call.est, call.actual, call.duration);
        self.calls[c].slot = self.isolates[i].running.len();
        self.isolates[i].running.push(c);
        self.schedule(self.now + duration, Ev::End(c as u32));
        self.schedule_keep(c);
        self.s.exposure += est;
        self.s.max_exposure = self.s.max_exposure.max(self.s.exposure);
        let level = |rpm: f64, t: u64, admitted: usize| rpm + rpm * t as f64 / 60e6 - admitted as f64;
        let half_rpm = self.v.rpm < LOOSE_RPM
            && level(self.v.rpm as f64, self.now, self.s.admitted_at.len()) <= self.v.rpm as f64 / 2.0;
        if (self.s.exposure >= self.v.cap_usd / 2.0 || half_rpm) && self.s.half_limit_at.is_none() {
            self.s.half_limit_at = Some(self.now);
        }
        let n = self.isolates[i].lease;
        self.lease_billed[n] += actual;
        self.lease_admitted[n] += est;
        self.check_reserved(n);
        self.s.admitted_at.push(self.now);
        if self.s.revoked_at.is_some() {
            self.s.last_admitted_after_revoke = Some(self.now);
            self.s.admitted_after_revoke += 1;
        }
    }

    /// What a live lease's calls were admitted with (or cost, ended) is within what the ledger
    /// counted and reserved for it.
    fn check_reserved(&mut self, n: usize) {
        let Some(state) = self.ledger.leases.get(n).and_then(Option::as_ref) else { return };
        let over = self.lease_admitted[n] - state.counted_usd - state.reserved_usd;
        if !self.lease_dead[n] && over > 1e-6 {
            self.s.beyond_reserved.0 += 1;
            self.s.beyond_reserved.1 = self.s.beyond_reserved.1.max(over);
        }
    }

    fn decide(&mut self, c: usize, outcome: Outcome) {
        self.calls[c].outcome = outcome;
        self.calls[c].decided = self.now;
        if outcome == Outcome::Budget && self.s.first_budget_refusal.is_none() {
            self.s.first_budget_refusal = Some((self.now, self.s.exposure));
        }
    }

    /// `leases::refresh`: the ask (pre-taking `need`) goes out; its answer or its timeout
    /// comes back to `resolve`.
    fn send(&mut self, i: usize, need: Amounts, owner: Owner) -> usize {
        let now_ms = self.now_ms();
        let iso = &mut self.isolates[i];
        assert!(iso.refreshing.is_none(), "one refresh a slot at a time");
        if iso.running.is_empty() && iso.seen == 0 && !iso.view.unreported() && iso.view.used().held_usd > 0.0 {
            // Nothing runs, nothing was tried, nothing is unreported: only the float residue of
            // the settled holds (`used.held_usd`, > 0.0) keeps the lease "in use".
            assert!(iso.view.used().held_usd < 1e-9);
            self.s.idle += 1;
        }
        iso.seen = 0;
        iso.skipped = false;
        let ask = iso.view.ask(&self.base, need, now_ms);
        iso.refreshing = Some(now_ms);
        iso.flight = self.msgs.len();
        let (loc, inc, lease, seq) = (iso.loc, iso.inc, iso.lease, ask.seq);
        self.s.sent[match owner {
            Owner::Hot(_) => 0,
            Owner::Keep(_) => 1,
            Owner::Maintain(_) => 2,
            Owner::Report => 3,
        }] += 1;
        let draw = if self.v.faults { self.rng.unit() } else { 1.0 };
        let lost = match draw {
            d if d < LOSS / 2.0 => Lost::Answer,
            d if d < LOSS => Lost::Ask,
            _ => Lost::No,
        };
        if lost != Lost::No {
            self.s.lost += 1;
        }
        let m = self.msgs.len();
        self.msgs.push(Msg {
            iso: i,
            inc,
            lease,
            sent: self.now,
            sent_ms: now_ms,
            seq,
            need,
            owner,
            ask: Some(Box::new(ask)),
            answer: None,
            lost,
            done: false,
            abandoned: false,
        });
        if lost != Lost::Ask {
            let at = self.now + self.latency_us(loc);
            self.schedule(at, Ev::AtLedger(m as u32));
        }
        self.schedule(self.now + ASK_TIMEOUT_MS * 1000, Ev::AskTimeout(m as u32));
        m
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
        let mut ask = *self.msgs[m].ask.take().expect("an ask");
        let denied = ledger.record.revoked_at.is_some();
        if denied {
            ask.need = Amounts::default();
            ask.want = Amounts::default();
        }
        // The object's record wins: its caps and limits.
        ask.caps = ledger.record.policy.budgets.clone();
        ask.limits = ledger.record.policy.rate_limits;
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
        self.check_reserved(n);
        if self.msgs[m].lost != Lost::Answer {
            self.msgs[m].answer = Some(answer);
            let at = self.now + self.latency_us(self.isolates[self.msgs[m].iso].loc);
            self.schedule(at, Ev::Answer(m as u32));
        }
    }

    /// The refresh `m` came to `answer` (`None`: none within `ASK_TIMEOUT_MS`): the worker's
    /// `refresh` after its `ledger::lease`, then whoever sent it goes on.
    fn resolve(&mut self, m: usize, answer: Option<LeaseAnswer>) {
        self.msgs[m].done = true;
        let msg = &self.msgs[m];
        let (i, sent_ms, seq, need, owner) = (msg.iso, msg.sent_ms, msg.seq, msg.need, msg.owner);
        if self.isolates[i].inc != msg.inc {
            return;
        }
        let (answered, outcome) = match answer {
            Some(LeaseAnswer::Granted { grant, refused: None }) => {
                (Answered::Granted(*grant), Refreshed::Granted(None))
            }
            Some(LeaseAnswer::Granted { grant, refused }) => (Answered::Refused(*grant), Refreshed::Granted(refused)),
            Some(LeaseAnswer::Denied { .. }) => (Answered::Denied, Refreshed::Denied),
            None => (Answered::Failed, Refreshed::Failed),
        };
        let iso = &mut self.isolates[i];
        let taken = iso.view.answered(seq, answered, sent_ms);
        if let (Refreshed::Granted(_), Some(grant)) = (outcome, iso.view.grant()) {
            // What the lease's calls took since the ask beyond what the answer grants (the
            // ledger keeps it reserved: the ask's `acked`).
            let (used, limit) = (iso.view.used(), grant.limit);
            let over_usd = used.spent_usd + used.held_usd - limit.usd;
            if over_usd > EPS {
                self.s.beyond_grant.0 += 1;
                self.s.beyond_grant.1 += over_usd;
            }
            self.s.beyond_grant.2 += used.requests.saturating_sub(limit.requests);
        }
        iso.last = Some((sent_ms, outcome, need));
        if matches!(outcome, Refreshed::Granted(None)) {
            iso.recovering = false;
        }
        self.clear(i, sent_ms);
        match owner {
            Owner::Hot(c) => {
                let asking = &mut self.isolates[i].asking;
                let at = asking.iter().position(|&a| a == c).expect("an asker is listed");
                asking.swap_remove(at);
                match outcome {
                    Refreshed::Granted(Some(refusal)) => self.decide(c, refused(&refusal)),
                    Refreshed::Granted(None) => match taken {
                        Some(taken) => self.admit(c, taken),
                        None => self.attempt(c),
                    },
                    Refreshed::Denied => self.decide(c, Outcome::Denied),
                    Refreshed::Failed => self.decide(c, Outcome::Unavailable),
                }
            }
            Owner::Keep(c) => {
                self.calls[c].keep_msg = None;
                self.schedule_keep(c);
            }
            Owner::Maintain(started) => self.maintain(i, started),
            Owner::Report => self.report_round(i),
        }
    }

    /// `keep_while`: the call's next look at its lease, `REFRESH_AFTER_MS` from now, unless it
    /// ends first.
    fn schedule_keep(&mut self, c: usize) {
        let call = &self.calls[c];
        let at = self.now + REFRESH_AFTER_MS * 1000;
        if call.running && at < call.decided + call.duration {
            self.schedule(at, Ev::Keep(c as u32));
        }
    }

    /// `leases::keep`: a refresh when one is due and none is in flight.
    fn keep(&mut self, c: usize) {
        if !self.calls[c].running {
            return;
        }
        let (i, now_ms) = (self.calls[c].iso, self.now_ms());
        if self.isolates[i].view.due_in(now_ms) == Some(0) && self.in_flight(i).is_none() {
            let m = self.send(i, Amounts::default(), Owner::Keep(c));
            self.calls[c].keep_msg = Some(m);
        } else {
            self.schedule_keep(c);
        }
    }

    /// One round of `leases::maintain`'s loop.
    fn maintain(&mut self, i: usize, started: u64) {
        let now_ms = self.now_ms();
        let due_in = self.isolates[i].view.due_in(now_ms);
        if now_ms.saturating_sub(started) >= MAINTAIN_MS - REFRESH_AFTER_MS || due_in.is_none() {
            if self.isolates[i].maintaining == started {
                self.isolates[i].maintaining = 0;
            }
            return;
        }
        match due_in {
            Some(0) if self.in_flight(i).is_none() => {
                self.send(i, Amounts::default(), Owner::Maintain(started));
            }
            Some(ms) => {
                let at = self.now + ms.max(MAINTAIN_FLOOR_MS) * 1000;
                let (inc, started) = (self.isolates[i].inc as u32, (started - EPOCH_MS) as u32);
                self.schedule(at, Ev::Maintain(i as u32, inc, started));
            }
            None => unreachable!(),
        }
    }

    /// The outbox's flush: `leases::report`, whose rounds (at most `REPORT_ROUNDS`) wait for a
    /// refresh in flight or send one while use is unreported. A flush while one runs starts its
    /// count anew (the worker would run a second beside it, doing the same).
    fn flush(&mut self, i: usize) {
        self.isolates[i].sending = false;
        if !self.isolates[i].view.unreported() {
            return;
        }
        let running = self.isolates[i].reporting.is_some();
        self.isolates[i].reporting = Some(0);
        if !running {
            self.report_round(i);
        }
    }

    /// One round of `leases::report_one`.
    fn report_round(&mut self, i: usize) {
        let Some(rounds) = self.isolates[i].reporting else { return };
        if !self.isolates[i].view.unreported() {
            self.isolates[i].reporting = None;
            return;
        }
        if rounds >= REPORT_ROUNDS {
            self.isolates[i].reporting = None;
            self.isolates[i].skipped = true;
            return;
        }
        self.isolates[i].reporting = Some(rounds + 1);
        match self.in_flight(i) {
            Some(sent_ms) => self.isolates[i].report_on = Some(sent_ms),
            None => {
                self.send(i, Amounts::default(), Owner::Report);
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
        self.calls[c].running = false;
        if let Some(m) = self.calls[c].keep_msg.take() {
            // `keep_while` returns with the call: the refresh it was awaiting is dropped, which
            // counts it as failed at once (`leases::refresh`'s guard) and frees the slot; its
            // waiters go round (the slot's `last` is not its answer).
            self.msgs[m].done = true;
            self.msgs[m].abandoned = true;
            self.s.abandoned += 1;
            let (sent_ms, seq) = (self.msgs[m].sent_ms, self.msgs[m].seq);
            self.isolates[i].view.answered(seq, Answered::Failed, sent_ms);
            for k in 0..self.isolates[i].waiters.len() {
                let w = self.isolates[i].waiters[k];
                if w.on == sent_ms {
                    self.calls[w.call as usize].behind_dropped = true;
                }
            }
            self.clear(i, sent_ms);
        }
        self.s.exposure -= est - actual;
        self.lease_admitted[self.isolates[i].lease] -= est - actual;
        // After the response, in `wait_until`: the outbox's flush and `maintain`.
        let (now_ms, inc) = (self.now_ms(), self.isolates[i].inc);
        if !std::mem::replace(&mut self.isolates[i].sending, true) {
            self.schedule(self.now + FLUSH_MS * 1000, Ev::Flush(i as u32, inc as u32));
        }
        let running = self.isolates[i].maintaining;
        if running == 0 || now_ms.saturating_sub(running) >= MAINTAIN_MS {
            self.isolates[i].maintaining = now_ms;
            self.maintain(i, now_ms);
        }
    }

    fn death(&mut self) {
        let i = self.rng.below(self.v.isolates);
        self.s.deaths += 1;
        let old = std::mem::take(&mut self.isolates[i].running);
        for c in old {
            // Billed in full by the vendor; never reported.
            self.s.exposure -= self.calls[c].est - self.calls[c].actual;
            self.calls[c].running = false;
        }
        let waiting = std::mem::take(&mut self.isolates[i].waiters);
        let asking = std::mem::take(&mut self.isolates[i].asking);
        for c in waiting.into_iter().map(|w| w.call as usize).chain(asking) {
            self.decide(c, Outcome::Died);
        }
        self.lease_dead[self.isolates[i].lease] = true;
        let n = self.lease_billed.len();
        self.lease_billed.push(0.0);
        self.lease_admitted.push(0.0);
        self.lease_dead.push(false);
        let now_ms = self.now_ms();
        let iso = &mut self.isolates[i];
        iso.inc += 1;
        iso.lease = n;
        iso.view = LeaseView::new(lease_id(n), now_ms);
        iso.refreshing = None;
        iso.last = None;
        iso.maintaining = 0;
        iso.sending = false;
        iso.seen = 0;
        iso.skipped = false;
        iso.recovering = false;
        iso.reporting = None;
        iso.report_on = None;
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
    /// revocation) or until half the cap is exposed (half the request bucket used), and from
    /// 3 s after the first refusal to the end of arrivals: µs.
    steady: (u64, u64),
    limited: Option<(u64, u64)>,
    waited_steady: f64,
    /// Of them, behind a refresh dropped with its call.
    dropped_steady: f64,
    waited_admitted: f64,
    /// Of the calls that waited in the steady state: why (no lease, expired, too small), and
    /// how many found a refresh in flight.
    why_steady: [u64; 4],
    /// Added wait of admitted calls, ms: p50, p99, p99.9 in the steady state and over the run.
    wait_steady: [f64; 3],
    wait_run: [f64; 3],
    /// The wait before a refusal (429, 401, 503 with no room), ms.
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
    /// Of that, live isolates' whose outbox's last flush was skipped behind an older refresh.
    unreported_skipped_usd: f64,
    max_committed: f64,
    max_exposure: f64,
    late_usd: f64,
    beyond_grant: (u64, f64, u64),
    beyond_reserved: (u64, f64),
    /// Refreshes sent by calls, `keep_while`, `maintain`, the outbox.
    sent: [u64; 4],
    failed: u64,
    late: u64,
    abandoned: u64,
    stale: u64,
    remembered: u64,
    dry: u64,
    retried: u64,
    idle: u64,
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
    (Outcome::Exhausted, "503 no room"),
    (Outcome::Unavailable, "503 no answer"),
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
        .map(|c| c.decided)
        .min()
        .into_iter()
        .chain(s.revoked_at)
        .min();
    let end = first_refusal.map_or(run_us, |t| t.saturating_sub(3_000_000)).min(s.half_limit_at.unwrap_or(run_us));
    let steady = (1_000_000, end.max(2_000_000));
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
    let (mut dead, mut alive, mut skipped) = (0.0, 0.0, 0.0f64);
    for (n, billed) in sim.lease_billed.iter().enumerate() {
        if sim.lease_dead[n] {
            dead += billed - counted(n);
        }
    }
    for iso in &sim.isolates {
        let gap = sim.lease_billed[iso.lease] - counted(iso.lease);
        alive += gap;
        if iso.skipped {
            skipped += gap;
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
        dropped_steady: steady_admitted.iter().filter(|c| c.behind_dropped).count() as f64
            / steady_admitted.len().max(1) as f64,
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
        unreported_skipped_usd: skipped,
        max_committed: s.max_committed,
        max_exposure: s.max_exposure,
        late_usd: s.late_usd,
        beyond_grant: s.beyond_grant,
        beyond_reserved: s.beyond_reserved,
        sent: s.sent,
        failed: s.failed,
        late: s.late,
        abandoned: s.abandoned,
        stale: s.stale,
        remembered: s.remembered,
        dry: s.dry,
        retried: s.retried,
        idle: s.idle,
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
    row(&mut out, "admitted calls that waited: steady (behind a dropped refresh); whole run", &|r| {
        format!("{} ({}); {}", pct(r.waited_steady), pct(r.dropped_steady), pct(r.waited_admitted))
    });
    row(&mut out, "why, steady: no lease / expired / too small (behind a refresh in flight)", &|r| {
        let w = r.why_steady;
        format!("{} / {} / {} ({})", w[0], w[1], w[2], w[3])
    });
    row(&mut out, "added wait p50 / p99 / p99.9, steady", &|r| ms(r.wait_steady));
    row(&mut out, "added wait p50 / p99 / p99.9, whole run", &|r| ms(r.wait_run));
    row(&mut out, "wait before a refusal (429, 401, 503 no room) p50 / p99 / p99.9", &|r| ms(r.wait_refused));
    row(&mut out, "ledger messages per 1,000 calls: steady; after the limit; run", &|r| {
        format!("{}; {}; {}", num(r.msgs_per_1k[0]), num(r.msgs_per_1k[1]), num(r.msgs_per_1k[2]))
    });
    row(&mut out, "refreshes sent by: calls / keep_while / maintain / outbox", &|r| {
        let n = r.sent;
        format!("{} / {} / {} / {}", n[0], n[1], n[2], n[3])
    });
    row(
        &mut out,
        "asks failed (of them late answers); keep refreshes dropped with their call; slots cleared past WAIT_MS",
        &|r| format!("{} ({}); {}; {}", r.failed, r.late, r.abandoned, r.stale),
    );
    row(&mut out, "calls refused by the refusal they waited on (no ask)", &|r| r.remembered.to_string());
    row(&mut out, "calls refused at once by a lease told its bucket is dry", &|r| r.dry.to_string());
    row(&mut out, "calls that asked themselves after the refresh they waited on got no answer", &|r| {
        r.retried.to_string()
    });
    row(&mut out, "refreshes of idle leases (a float residue of their holds)", &|r| r.idle.to_string());
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
    row(&mut out, "billed, never reported: dead isolates'; live isolates' (a report gave up after its rounds)", &|r| {
        format!(
            "${:.2}; ${:.2} (${:.2})",
            r.unreported_dead_usd,
            r.unreported_alive_usd.max(0.0),
            r.unreported_skipped_usd.max(0.0)
        )
    });
    row(&mut out, "most committed in the ledger; most exposure (billed + held)", &|r| {
        if capped(r) {
            format!("${:.4}; ${:.4}", r.max_committed, r.max_exposure)
        } else {
            "-".into()
        }
    });
    row(&mut out, "answers granting less than already taken (kept reserved): count; $; requests", &|r| {
        format!("{}; ${:.2}; {}", r.beyond_grant.0, r.beyond_grant.1, r.beyond_grant.2)
    });
    row(&mut out, "a live lease's calls beyond what the ledger counted and reserved for it: times; most", &|r| {
        format!("{}; ${:.4}", r.beyond_reserved.0, r.beyond_reserved.1)
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
        calls_per_s: CALLS_PER_S,
    };
    let variants = [
        v("cap", 60, DAY_CAP_USD, LOOSE_RPM, false, true, RUN_MS),
        v("cap, no faults", 60, DAY_CAP_USD, LOOSE_RPM, false, false, 20_000),
        v("rpm", 60, LOOSE_CAP_USD, TIGHT_RPM, false, true, RUN_MS),
        v("revoke", 60, LOOSE_CAP_USD, LOOSE_RPM, true, true, REVOKE_AT_MS + 5_000),
        v("cap, 600", 600, DAY_CAP_USD, LOOSE_RPM, false, true, 30_000),
        v("revoke, 600", 600, LOOSE_CAP_USD, LOOSE_RPM, true, true, REVOKE_AT_MS + 5_000),
        v("free, 6000", 6000, LOOSE_CAP_USD, LOOSE_RPM, false, false, 10_000),
        // One shard of a hierarchical ledger: `SHARDS` of them share the 6,000 isolates and
        // their calls evenly (by a hash of the isolate), each leasing its slice from the root.
        Variant {
            name: "free, 6000, one of 8 shards",
            calls_per_s: CALLS_PER_S / SHARDS as f64,
            ..v("", 6000 / SHARDS, LOOSE_CAP_USD, LOOSE_RPM, false, false, 10_000)
        },
    ];
    // Two at a time (each run is deterministic on its own): the machine has two cores. The
    // longest first ("rpm": its calls queue for the refilling bucket, each refresh waking them).
    const LONGEST_FIRST: [usize; 8] = [2, 0, 4, 1, 5, 6, 3, 7];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut reports: Vec<(usize, Report)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&k) = LONGEST_FIRST.get(k) else { return done };
                        let v = variants[k];
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
    // (But for refreshes the end of the run cut short.)
    let end = (sim.v.run_ms + DRAIN_MS - ASK_TIMEOUT_MS) * 1000;
    assert!(sim.msgs.iter().all(|m| m.done || m.sent > end), "{}: a refresh still in flight", sim.v.name);
    assert!(sim.isolates.iter().all(|i| i.waiters.is_empty() && i.asking.is_empty()));
    assert!(sim.ledger.queue.is_empty());
}

/// The invariants, each as precisely as it holds.
fn check(r: &Report) {
    let name = r.v.name;
    // What a live lease's calls were admitted with is always counted or reserved in the ledger:
    // whatever the ledger answers, however late, lost or dropped.
    assert_eq!(r.beyond_reserved.0, 0, "{name}: a lease's calls beyond its reservation by ${}", r.beyond_reserved.1);
    // And every live isolate's spend is counted by the end, but where its outbox's last flush
    // found a refresh in flight (sent before the use) and skipped the report, and nothing asked
    // since (`maintain` had ended, or ended on that refresh's answer).
    let unexplained = r.unreported_alive_usd - r.unreported_skipped_usd;
    assert!(unexplained.abs() < 1e-6, "{name}: live isolates' spend unreported: {unexplained}");
    if r.v.cap_usd < LOOSE_CAP_USD {
        // No cap is overrun but by spend reported after its lease was freed, and by calls
        // billed but never reported (dead isolates', and live ones' whose report was skipped):
        // their reservations are freed `LEASE_GRACE_MS` after their leases' expiry.
        let explained = r.late_usd;
        let unreported = r.unreported_dead_usd + r.unreported_skipped_usd;
        assert!(r.max_committed <= r.v.cap_usd + explained + EPS, "{name}: committed {}", r.max_committed);
        assert!(r.max_exposure <= r.v.cap_usd + explained + unreported + EPS, "{name}: exposure {}", r.max_exposure);
        assert!(r.billed_usd <= r.v.cap_usd + explained + unreported + EPS, "{name}: billed {}", r.billed_usd);
        // The cap is used: less than 1% of it is left when the run ends, and refusals start at
        // 95% of it or more.
        assert!(r.counted_usd >= 0.99 * r.v.cap_usd, "{name}: only ${} of the cap used", r.counted_usd);
        let (_, exposure) = r.first_budget_refusal.expect("the cap was reached");
        assert!(exposure >= 0.95 * r.v.cap_usd, "{name}: refusals began at ${exposure}");
    }
    if r.v.rpm < LOOSE_RPM {
        // Requests: from the moment the bucket was made (full), no more were admitted than it
        // holds plus its refill (`rpm + rpm * t / 60 s`, for every t); hence in any 60 s window
        // no more than twice the limit.
        assert!(r.least_slack >= 0.0, "{name}: the bucket was overrun by {}", -r.least_slack);
        assert!(r.max_60s <= 2 * r.v.rpm, "{name}: {} in 60 s", r.max_60s);
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
    // Most calls in the steady state are admitted with no wait, while the ledger keeps up, but
    // for those that waited behind a refresh dropped with its call (`keep_while`). (The bounds
    // were 1% and 2% before the outbox reported leases: its reports ask for a quarter of the
    // headroom, `frequent_reports_do_not_shrink_the_headroom_asked_for`.)
    // (An isolate that sees fewer than two calls a lease's lifetime finds its lease lapsed
    // more often than not, whatever the ledger: "free, 6000" and its shard.)
    let per_lease = r.v.calls_per_s / r.v.isolates as f64 * LEASE_TTL_MS as f64 / 1000.0;
    if r.util[0] < 0.5 && per_lease >= 2.0 {
        let bound = if r.v.isolates > 100 { 0.13 } else { 0.03 };
        let waited = r.waited_steady - r.dropped_steady;
        assert!(waited <= bound, "{name}: {waited} of calls waited in the steady state");
    }
}

/// The worker's constants and loop, mirrored at the top of this file, are still the worker's.
#[test]
fn the_worker_is_modelled_with_its_own_constants() {
    let read = |path: &str| {
        let path = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let (leases, outbox) = (read("src/leases.rs"), read("src/outbox.rs"));
    for (source, text) in [
        (&leases, "const WAIT_MS: u64 = ASK_TIMEOUT_MS + 500;"),
        (&leases, "const ADMIT_MS: u64 = 3 * ASK_TIMEOUT_MS;"),
        (&leases, "while own < 3 && "),
        (&leases, "const MAINTAIN_MS: u64 = 10_000;"),
        (&leases, ".max(50)"),
        (&leases, "pause_ms = (pause_ms * 2).min(8);"),
        (&leases, "covers(need, theirs, &refusal)"),
        (&leases, "const REPORT_ROUNDS: u32 = 3;"),
        (&leases, "let refreshing = in_flight(&slot, now).is_some();"),
        (&leases, "if let Some(refusal) = slot.view.borrow().dry(need, now, refreshing) {"),
        (&leases, "if Date::now().as_millis().saturating_sub(started) + ASK_TIMEOUT_MS > ADMIT_MS {"),
        (&leases, "self.0.view.borrow_mut().answered(self.2, Answered::Failed, self.1);"),
        (&outbox, "const FLUSH_MS: u64 = 200;"),
    ] {
        assert!(source.contains(text), "the worker changed (`{text}` is gone): update the simulation's model of it");
    }
    let metering = read("src/metering.rs");
    assert!(
        metering.contains("if let Some(output) = crate::upstream::within(REFRESH_AFTER_MS, &mut call).await {"),
        "`keep_while` changed: update the simulation's model of it"
    );
}

// Scenarios the simulation found, reduced to the lease functions alone.

fn cap_of(limit_usd: f64) -> Vec<Cap> {
    vec![Cap { window: Window::Day, limit_usd, warn_at: None }]
}

fn usd(usd: f64) -> Amounts {
    Amounts { usd, requests: 1, tokens: 0 }
}

/// The ledger's answer to `ask` (from an isolate whose lease has `live` others beside it), and
/// what it hands the waiting call.
fn ask_ledger(
    scope: &mut Scope,
    state: Option<LeaseState>,
    view: &mut LeaseView,
    ask: &LeaseAsk,
    live: usize,
    now: u64,
) -> (LeaseState, Option<Taken>) {
    let (state, refused) = lease::refresh(scope, state, ask, live, now);
    let answer = match refused {
        None => Answered::Granted(state.grant.clone()),
        Some(_) => Answered::Refused(state.grant.clone()),
    };
    let taken = view.answered(ask.seq, answer, now);
    (state, taken)
}

/// An isolate goes on taking calls from its lease while its refresh is in flight (as the worker
/// does); the ledger, meanwhile short of headroom, answers with a smaller free part, sized on
/// the use the ask reported. What was taken since the ask beyond the new grant must stay
/// reserved (the ask's `acked`), not be handed out again.
#[test]
fn calls_taken_while_a_refresh_is_in_flight_stay_reserved() {
    let now = EPOCH_MS;
    let (cap, base) = (1.0, LeaseAsk { caps: cap_of(1.0), ..LeaseAsk::default() });
    let mut scope = Scope::default();
    // Isolate A: a first call of $0.1 gets a lease of $0.3 (three calls' worth) and holds $0.1.
    let mut a = LeaseView::new("a", now);
    assert_eq!(a.take(usd(0.1), now), Err(Short::NoLease));
    let ask = a.ask(&base, usd(0.1), now);
    let (state_a, taken) = ask_ledger(&mut scope, None, &mut a, &ask, 0, now);
    assert!(taken.is_some());
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
    let (_, taken) = ask_ledger(&mut scope, None, &mut b, &ask, 1, t1);
    assert!(taken.is_some());
    // Then A's refresh: $0.1 held by its account, so its lease shrinks.
    let _ = ask_ledger(&mut scope, Some(state_a), &mut a, &refresh_a, 1, t1 + 1);
    // Isolate C asks for $0.2: free only if A's calls taken meanwhile were given up.
    let mut c = LeaseView::new("c", t1);
    let ask = c.ask(&base, usd(0.2), t1 + 2);
    let _ = ask_ledger(&mut scope, None, &mut c, &ask, 2, t1 + 2);
    // The calls running now may cost what they hold.
    let held = a.used().held_usd + b.used().held_usd + c.used().held_usd;
    assert!(held <= cap + EPS, "calls running hold ${held:.3} against a ${cap} cap");
    assert!(scope.committed(Window::Day, t1 + 2) <= cap + EPS);
}

/// A refresh is lost on its way, as late as a lease in use is refreshed (at its expiry). The
/// worker gives up on it after `ASK_TIMEOUT_MS` and asks again at once; the ledger must not
/// have freed the lease meanwhile (`LEASE_GRACE_MS` past its expiry), or what its calls in
/// flight hold goes back to the cap and is handed out again.
#[test]
fn a_lost_refresh_does_not_free_what_calls_in_flight_hold() {
    let now = EPOCH_MS;
    let (cap, base) = (1.0, LeaseAsk { caps: cap_of(1.0), ..LeaseAsk::default() });
    let mut scope = Scope::default();
    // A call of $0.5 (a long stream) holds its estimate in isolate A's lease.
    let mut a = LeaseView::new("a", now);
    let ask = a.ask(&base, usd(0.5), now);
    let (state_a, taken) = ask_ledger(&mut scope, None, &mut a, &ask, 0, now);
    assert!(taken.is_some());
    // Its refresh is sent as late as the lease lasts; it never arrives.
    let t1 = now + LEASE_TTL_MS - 1;
    assert!(a.due(t1));
    let lost = a.ask(&base, Amounts::default(), t1);
    assert!(a.answered(lost.seq, Answered::Failed, t1).is_none());
    // Just before A's next ask reaches it (the farthest latency away), another isolate's ask
    // makes the ledger sweep its stale leases, and is granted what it needs.
    let again = t1 + ASK_TIMEOUT_MS;
    let arrives = again + LATENCY_MS.iter().copied().fold(0.0, f64::max) as u64;
    let mut state_a = state_a;
    if state_a.expired(arrives - 1) {
        lease::free(&mut scope, &mut state_a, arrives - 1);
    }
    let mut b = LeaseView::new("b", arrives - 1);
    let ask = b.ask(&base, usd(0.9), arrives - 1);
    let _ = ask_ledger(&mut scope, None, &mut b, &ask, 1, arrives - 1);
    // A asks again, with its call still running.
    assert!(a.due(again));
    let ask = a.ask(&base, Amounts::default(), again);
    let _ = ask_ledger(&mut scope, Some(state_a), &mut a, &ask, 1, arrives);
    let committed = scope.committed(Window::Day, arrives);
    assert!(committed <= cap + EPS, "the ledger has ${committed:.2} committed against a ${cap} cap");
}

/// A report whose ask got no answer (the ask or the answer lost) is sent again, and its spend
/// counts once.
#[test]
fn a_report_that_got_no_answer_is_sent_again() {
    let now = EPOCH_MS;
    let base = LeaseAsk { caps: cap_of(10.0), ..LeaseAsk::default() };
    let mut scope = Scope::default();
    let mut a = LeaseView::new("a", now);
    let ask = a.ask(&base, usd(0.5), now);
    let (state, taken) = ask_ledger(&mut scope, None, &mut a, &ask, 0, now);
    // The call ends, costing $0.4; its report reaches the ledger, but its answer is lost.
    a.settle(&taken.unwrap(), 0.4, 0);
    assert!(a.unreported());
    let report = a.ask(&base, Amounts::default(), now + 10);
    assert!(!a.unreported());
    let (state, _) = lease::refresh(&mut scope, Some(state), &report, 0, now + 10);
    a.answered(report.seq, Answered::Failed, now + 10);
    // The use is reported again (by the outbox's next flush, or `maintain` once it is due),
    // and counted once.
    let later = now + 10 + REFRESH_AFTER_MS;
    assert!(a.unreported() && a.due(later));
    let again = a.ask(&base, Amounts::default(), later);
    let (state, _) = ask_ledger(&mut scope, Some(state), &mut a, &again, 0, later);
    assert!(!a.unreported());
    assert!((state.counted_usd - 0.4).abs() < 1e-9, "{}", state.counted_usd);
}

/// A lease whose use is reported every `FLUSH_MS` or so (the outbox reports a lease with
/// unreported use `FLUSH_MS` after a call ends) asks for as much headroom as one refreshed every
/// `REFRESH_AFTER_MS` under the same traffic: what the traffic would use in `HEADROOM_LIFETIMES`
/// lifetimes. `LeaseView::want` measures the rate over `max(elapsed, REFRESH_AFTER_MS)`, so a
/// report after 250 ms asks for a quarter of it, and the lease runs short.
#[test]
fn frequent_reports_do_not_shrink_the_headroom_asked_for() {
    let base = LeaseAsk { caps: cap_of(1_000.0), ..LeaseAsk::default() };
    // 83 calls a second (one each 12 ms) of $0.005, at a lease asking every `every` ms: what it
    // wants.
    let wants = |every: u64| {
        let mut scope = Scope::default();
        let mut view = LeaseView::new("a", EPOCH_MS);
        let ask = view.ask(&base, usd(0.005), EPOCH_MS);
        let (mut state, taken) = ask_ledger(&mut scope, None, &mut view, &ask, 0, EPOCH_MS);
        view.settle(&taken.unwrap(), 0.004, 0);
        let mut want = 0.0;
        for tick in 1..=4_000u64 {
            let now = EPOCH_MS + tick;
            if tick % 12 == 0 {
                if let Ok(taken) = view.take(usd(0.005), now) {
                    view.settle(&taken, 0.004, 0);
                }
            }
            if tick % every == 0 {
                let ask = view.ask(&base, Amounts::default(), now);
                want = ask.want.usd;
                state = ask_ledger(&mut scope, Some(state), &mut view, &ask, 0, now).0;
            }
        }
        want
    };
    let (reported, refreshed) = (wants(250), wants(REFRESH_AFTER_MS));
    // 83 calls a second for 3 s: $1.25.
    assert!((refreshed - 1.25).abs() < 0.1, "refreshed every {REFRESH_AFTER_MS} ms: ${refreshed:.3}");
    assert!(reported >= 0.9 * refreshed, "reported every 250 ms: ${reported:.3}, against ${refreshed:.3}");
}

/// A lease whose calls all ended, and whose use is reported, is idle: it is left to lapse, and
/// `maintain` stops refreshing it. Holds are money, added and taken back in any order: their
/// float sum need not come back to 0.0 exactly, and `LeaseView::due_in` takes any positive
/// `held_usd` for a call in flight.
#[test]
fn a_lease_whose_calls_all_ended_is_idle() {
    let base = LeaseAsk { caps: cap_of(10.0), ..LeaseAsk::default() };
    let mut scope = Scope::default();
    let mut view = LeaseView::new("a", EPOCH_MS);
    let ask = view.ask(&base, usd(0.3), EPOCH_MS);
    let (state, first) = ask_ledger(&mut scope, None, &mut view, &ask, 0, EPOCH_MS);
    let (b, c) = (view.take(usd(0.1), EPOCH_MS).unwrap(), view.take(usd(0.2), EPOCH_MS).unwrap());
    for taken in [first.unwrap(), b, c] {
        view.settle(&taken, taken.usd / 2.0, 0);
    }
    let later = EPOCH_MS + REFRESH_AFTER_MS;
    let report = view.ask(&base, Amounts::default(), later);
    let _ = ask_ledger(&mut scope, Some(state), &mut view, &report, 0, later);
    assert!(!view.unreported());
    assert_eq!(view.due_in(later + 10), None, "held ${:e} after every call ended", view.used().held_usd);
}
