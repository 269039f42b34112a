//! What requests leave for the Durable Objects after their responses (attempt outcomes and
//! stream times for the health record; settlements, releases and usage for the ledgers) is
//! gathered in the isolate and sent in one batch per object every `FLUSH_MS`, not in a call per
//! request: a Durable Object call costs far more CPU than the request's own work.
//!
//! The first request to add something while no send is under way sends, `FLUSH_MS` later, all
//! that was gathered by then, inside its own `ctx.wait_until`. Nothing waits longer than that;
//! an isolate that dies in between loses at most that much (a hold it held is freed by its
//! ledger at the hold's expiry).
//!
//! A batch a ledger did not take (an error, no answer in time) is sent again with the next one:
//! the ledger applies each settlement and usage row once, by its call's id, so a batch it had
//! applied before its answer was lost changes nothing the second time. It does so for
//! `settlement::RESEND_WINDOW_MS` after the call ended; what is older is dropped (the ledger
//! would refuse it as too late to tell; a hold it would have settled is freed at its expiry).

use crate::ledger::{self, Batch};
use crate::provider_health;
use std::cell::RefCell;
use std::collections::BTreeMap;
use switchyard_core::health::Report;
use switchyard_core::ledger::UsageRow;
use switchyard_core::settlement::RESEND_WINDOW_MS;
use worker::{Date, Env};

const FLUSH_MS: u64 = 200;

#[derive(Default)]
struct Outbox {
    report: Option<Report>,
    batches: BTreeMap<String, Batch>,
    sending: bool,
}

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
}

/// Attempt outcomes and stream times for the health record.
pub fn report(report: Report) {
    if report.outcomes.is_empty() && report.completions.is_empty() {
        return;
    }
    OUTBOX.with(|outbox| match &mut outbox.borrow_mut().report {
        Some(gathered) => {
            gathered.policy = report.policy;
            gathered.outcomes.extend(report.outcomes);
            gathered.completions.extend(report.completions);
        }
        empty => *empty = Some(report),
    });
}

/// A call's usage row, for the ledger instance that keeps its key's usage (one of
/// `USAGE_SHARDS`). Rows are sent one a call (the ledger adds them up by minute, key, model and
/// provider), each under its call's id, so that one sent twice counts once.
pub fn usage(row: UsageRow) {
    let instance = switchyard_core::ledger_protocol::usage_instance(&row.key_id);
    OUTBOX.with(|outbox| outbox.borrow_mut().batches.entry(instance).or_default().usage.push(row));
}

/// Whether anything waits to be sent.
pub fn pending() -> bool {
    OUTBOX.with(|outbox| {
        let outbox = outbox.borrow();
        outbox.report.is_some() || !outbox.batches.is_empty()
    })
}

/// Sends what was gathered, `FLUSH_MS` from now, unless a send is already under way (which
/// takes this too). To be awaited inside `ctx.wait_until`.
pub async fn deliver(env: &Env) {
    let already = OUTBOX.with(|outbox| std::mem::replace(&mut outbox.borrow_mut().sending, true));
    if already {
        return;
    }
    // Whatever happens to this future (even dropped while it waits), the next request may send.
    struct Sending;
    impl Drop for Sending {
        fn drop(&mut self) {
            OUTBOX.with(|outbox| outbox.borrow_mut().sending = false);
        }
    }
    let sending = Sending;
    worker::Delay::from(std::time::Duration::from_millis(FLUSH_MS)).await;
    drop(sending);
    let report = OUTBOX.with(|outbox| outbox.borrow_mut().report.take());
    let health = async {
        if let Some(report) = report {
            provider_health::report(env, report).await;
        }
    };
    let ledgers = async {
        // The leases' use first (after a refresh in flight, if it left use unreported): a
        // call's cost counts against its caps before its usage shows.
        crate::leases::report(env).await;
        let batches = OUTBOX.with(|outbox| std::mem::take(&mut outbox.borrow_mut().batches));
        futures::future::join_all(batches.into_iter().map(|(instance, batch)| async move {
            if let Err(e) = ledger::settle(env, &instance, &batch).await {
                worker::console_error!("ledger {instance}: settlement failed, kept for the next batch: {e}");
                requeue(instance, batch);
            }
        }))
        .await;
    };
    futures::join!(health, ledgers);
}

/// A batch that could not be sent goes back into the outbox, as long as it is young enough to
/// be sent again (`RESEND_WINDOW_MS`) and the outbox stays small (a ledger that stays
/// unreachable must not grow it without bound).
fn requeue(instance: String, mut batch: Batch) {
    const MAX_KEPT: usize = 10_000;
    let dropped = batch.drop_older_than(Date::now().as_millis().saturating_sub(RESEND_WINDOW_MS));
    if dropped > 0 {
        worker::console_error!(
            "ledger {instance}: {dropped} settlements and usage rows too old to send again, dropped"
        );
    }
    if batch.is_empty() {
        return;
    }
    OUTBOX.with(|outbox| {
        let mut outbox = outbox.borrow_mut();
        let kept: usize = outbox.batches.values().map(Batch::len).sum();
        if kept + batch.len() > MAX_KEPT {
            worker::console_error!("ledger {instance}: outbox full, {} settlements dropped", batch.settles.len());
            return;
        }
        let queued = outbox.batches.entry(instance).or_default();
        queued.settles.extend(batch.settles);
        queued.usage.extend(batch.usage);
    });
}
