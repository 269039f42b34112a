// Durable Object and KV calls a client request, counted by the runtime (bench/call-counter.js,
// a tail worker on the gateway and on the KV stub) around one timed run: the counts once the
// warm-up's deferred work has settled, then once the run's has. The gateway sends some Durable
// Object calls after the answer (its outbox flushes every 200 ms inside `ctx.wait_until`), and a
// tail event arrives only once its invocation and its `waitUntil` work are over, so a reading
// is taken only once every request sent has been reported, and the counts have stopped moving.

import { readCounts } from "./systems.mjs";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * The counts once they have settled: when the runtime has reported `sent` invocations of the
 * gateway (every request sent to it so far, each reported once its response and its
 * `waitUntil` work are over, so every call it made after its response is done too), and
 * nothing has moved over `stableMs` since (the last Durable Object events on their way). At most
 * `maxMs` (longer than the gateway's longest `waitUntil`, its leases' upkeep, 10 s): counts still
 * short then are taken as they are, and said so.
 */
export async function settledCounts(counterUrl, sent, { stableMs = 100, maxMs = 15_000 } = {}) {
  const start = performance.now();
  let last = await readCounts(counterUrl);
  for (;;) {
    const traced = last["worker default fetch"] ?? 0;
    await sleep(traced >= sent ? stableMs : 50);
    const next = await readCounts(counterUrl);
    if (traced >= sent && same(next, last)) return { counts: next, settled: true, ms: performance.now() - start };
    if (performance.now() - start > maxMs) return { counts: next, settled: false, ms: performance.now() - start };
    last = next;
  }
}

/**
 * What happened between two readings, a client request: `answered` is the run's 200 answers
 * (the divisor); `traced` the gateway invocations the runtime reported meanwhile (the run's
 * requests, 200 or not: a check of the window).
 */
export function callsPerRequest(before, after, answered) {
  const delta = {};
  for (const key of new Set([...Object.keys(before.counts), ...Object.keys(after.counts)])) {
    const n = (after.counts[key] ?? 0) - (before.counts[key] ?? 0);
    if (n) delta[key] = n;
  }
  const sum = (prefix) => Object.entries(delta).reduce((a, [k, n]) => a + (k.startsWith(prefix) ? n : 0), 0);
  const doByClass = {};
  for (const [key, n] of Object.entries(delta)) {
    if (!key.startsWith("do ")) continue;
    const cls = key.split(" ")[1];
    doByClass[cls] = (doByClass[cls] ?? 0) + n;
  }
  const per = (n) => (answered > 0 ? n / answered : null);
  return {
    answered,
    traced: sum("worker "),
    settled: before.settled && after.settled,
    settleMs: [before.ms, after.ms].map(Math.round),
    counts: delta,
    doCalls: sum("do "),
    kvCalls: sum("kv "),
    doPerRequest: per(sum("do ")),
    kvPerRequest: per(sum("kv ")),
    doPerRequestByClass: Object.fromEntries(Object.entries(doByClass).map(([cls, n]) => [cls, per(n)])),
  };
}
