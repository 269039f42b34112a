// Failover, end to end: mock-upstream injects each kind of vendor trouble, and the gateway must
// answer from the next target, skip what the vendor asked it to skip, keep a breaker's target
// out while it is open, and never lose or duplicate a request.

import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { startMock, startGateway, call, openaiError, sseEvents, VENDOR_KEY, ADMIN_TOKEN } from "./harness.mjs";
import { testConfig, closedPort, TIMEOUT_MS, BREAKER_COOLDOWN_MS } from "./config.mjs";

let mock;
let gateway;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const chat = (model, content = "Hi", extra = {}) => ({ model, messages: [{ role: "user", content }], ...extra });
const modelsReceived = async () => (await mock.requests()).map((r) => r.json?.model);

before(async () => {
  mock = await startMock();
  gateway = await startGateway({
    config: testConfig(mock, await closedPort()),
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY: "sk-ant-x", ADMIN_TOKEN },
  });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

beforeEach(() => mock.reset());

test("primary 500: answered by the fallback, which the headers name", async () => {
  await mock.fault({ match: { model: "vendor-primary" }, times: 1, status: 500 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("failover") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup");
  assert.equal(res.headers.get("x-switchyard-attempts"), "2");
  assert.equal(res.headers.get("x-switchyard-fallbacks"), "upstream/vendor-primary=http_500");
  assert.deepEqual(await modelsReceived(), ["vendor-primary", "vendor-backup"]);
});

test("429 with Retry-After: the fallback answers, and the primary is skipped until then", async () => {
  await mock.fault({ match: { model: "vendor-limited" }, times: 1, status: 429, retry_after: "2" });
  let res = await call(gateway, "/v1/chat/completions", { body: chat("rate-limited") });
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup");
  res = await call(gateway, "/v1/chat/completions", { body: chat("rate-limited") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-attempts"), "1", "the primary is not tried while it asked for time");
  assert.deepEqual(await modelsReceived(), ["vendor-limited", "vendor-backup", "vendor-backup"]);
  await sleep(2100);
  res = await call(gateway, "/v1/chat/completions", { body: chat("rate-limited") });
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-limited", "after Retry-After the primary is back");
});

test("a vendor's 400 comes back at once: no second attempt", async () => {
  await mock.fault({ match: { model: "vendor-primary" }, times: 1, status: 400 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("failover") });
  assert.equal(res.status, 400);
  await openaiError(res);
  assert.deepEqual(await modelsReceived(), ["vendor-primary"]);
});

test("a first byte slower than the provider's timeout: the fallback answers", async () => {
  await mock.fault({ match: { model: "vendor-sluggish" }, times: 1, first_byte_delay_ms: TIMEOUT_MS * 3 });
  const started = Date.now();
  const res = await call(gateway, "/v1/chat/completions", { body: chat("slow-primary") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup");
  assert.match(res.headers.get("x-switchyard-fallbacks"), /vendor-sluggish=upstream_timeout/);
  assert.ok(Date.now() - started < TIMEOUT_MS * 2.5);
});

test("a stream that fails before its first event fails over invisibly, even to another vendor", async () => {
  await mock.fault({ match: { model: "vendor-stream-primary" }, times: 1, cut_after: 0 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("stream-failover", "Hi", { stream: true }) });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-provider"), "claude");
  const events = sseEvents(await res.text());
  assert.equal(events.at(-1), "[DONE]");
  assert.ok(events.slice(0, -1).every((e) => e.object === "chat.completion.chunk"), "no error reaches the client");
  assert.equal(res.headers.get("x-switchyard-attempts"), "2");
});

test("a non-streamed answer cut in the middle fails over invisibly", async () => {
  await mock.fault({ match: { model: "vendor-primary" }, times: 1, cut_after: 40 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("failover") });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).object, "chat.completion");
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup");
  assert.match(res.headers.get("x-switchyard-fallbacks"), /vendor-primary=upstream_stream_broken/);
});

test("the health record keeps total time apart from time to first byte", async () => {
  await mock.fault({ match: { model: "vendor-primary" }, times: 1, chunk_delay_ms: 40, stream_chunks: 5 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("failover", "Hi", { stream: true }) });
  await res.text();
  // The stream's total is reported with the next request's report.
  await call(gateway, "/v1/chat/completions", { body: chat("failover") }).then((r) => r.text());
  let record;
  for (let i = 0; i < 40; i++) {
    const health = await call(gateway, "/admin/health", { method: "GET", key: ADMIN_TOKEN }).then((r) => r.json());
    record = health.find((h) => h.target === "upstream/vendor-primary");
    if (record?.total_p95_ms >= 150) break;
    await sleep(50);
  }
  assert.ok(record.total_p95_ms >= 150, JSON.stringify(record));
  assert.ok(record.latency_p95_ms < record.total_p95_ms);
});

test("a stream cut after the commit ends with an error event and [DONE]", async () => {
  await mock.fault({ match: { model: "vendor-stream-primary" }, times: 1, cut_after: 3 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("stream-failover", "Hi", { stream: true }) });
  assert.equal(res.headers.get("x-switchyard-provider"), "upstream");
  const events = sseEvents(await res.text());
  assert.equal(events.at(-1), "[DONE]");
  assert.equal(events.at(-2).error.code, "upstream_stream_broken");
});

test("repeated failures open the breaker; after the cooldown a probe closes it", async () => {
  await mock.fault({ match: { model: "vendor-flaky" }, status: 503 });
  for (let i = 0; i < 3; i++) {
    const res = await call(gateway, "/v1/chat/completions", { body: chat("breaker") });
    assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup");
  }
  await mock.reset();
  for (let i = 0; i < 3; i++) {
    const res = await call(gateway, "/v1/chat/completions", { body: chat("breaker") });
    assert.equal(res.headers.get("x-switchyard-attempts"), "1");
  }
  assert.ok(!(await modelsReceived()).includes("vendor-flaky"), "no request reaches a target whose breaker is open");

  // The shared record hears of the outcomes shortly after the answers (they are sent in batches).
  const flaky = (health) => health.find((h) => h.target === "upstream/vendor-flaky");
  let health;
  for (let i = 0; i < 40; i++) {
    health = await call(gateway, "/admin/health", { method: "GET", key: ADMIN_TOKEN }).then((r) => r.json());
    if (flaky(health)?.breaker.state.state === "open") break;
    await sleep(50);
  }
  assert.equal(flaky(health).breaker.state.state, "open");

  await sleep(BREAKER_COOLDOWN_MS + 100);
  const probe = await call(gateway, "/v1/chat/completions", { body: chat("breaker") });
  assert.equal(probe.headers.get("x-switchyard-model"), "vendor-flaky", "the probe goes to the recovered target");
  const next = await call(gateway, "/v1/chat/completions", { body: chat("breaker") });
  assert.equal(next.headers.get("x-switchyard-model"), "vendor-flaky");
  for (let i = 0; i < 40; i++) {
    health = await call(gateway, "/admin/health", { method: "GET", key: ADMIN_TOKEN }).then((r) => r.json());
    if (health.find((h) => h.target === "upstream/vendor-flaky").breaker.state.state === "closed") break;
    await sleep(50);
  }
  assert.equal(health.find((h) => h.target === "upstream/vendor-flaky").breaker.state.state, "closed");
});

test("every target down: an OpenAI-shaped 503 naming each attempt", async () => {
  await mock.fault({ match: { model: "vendor-broken" }, times: 1, status: 500 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("all-down") });
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("x-switchyard-attempts"), "2");
  const error = await openaiError(res);
  assert.equal(error.code, "all_targets_failed");
  assert.match(error.message, /down\/vendor-gone: .*could not be reached/);
  assert.match(error.message, /upstream\/vendor-broken: /);
});

test("500 requests, 50 at a time, 30% of the primary's answers failing: every one answered, once", async () => {
  await mock.fault({ match: { model: "vendor-load-primary" }, ratio: 0.3, status: 500 });
  const total = 500;
  const results = new Array(total);
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const res = await call(gateway, "/v1/chat/completions", { body: chat("load", `request ${i}`) });
      results[i] = { status: res.status, model: res.headers.get("x-switchyard-model"), body: await res.json() };
    }
  };
  await Promise.all(Array.from({ length: 50 }, worker));
  assert.ok(results.every((r) => r.status === 200 && r.body.object === "chat.completion"), "every request succeeded");
  const received = await mock.requests();
  const count = (model) => {
    const seen = new Map();
    for (const r of received.filter((r) => r.json?.model === model)) {
      const text = r.json.messages[0].content;
      seen.set(text, (seen.get(text) ?? 0) + 1);
    }
    return seen;
  };
  const primary = count("vendor-load-primary");
  const backup = count("vendor-load-backup");
  // Under concurrency the failures may come in runs and open the primary's breaker for a while:
  // then the fallback answers without trying the primary. Either way each request reaches each
  // target at most once, and exactly the one that answered it gave the answer.
  for (let i = 0; i < total; i++) {
    const text = `request ${i}`;
    assert.ok((primary.get(text) ?? 0) <= 1 && (backup.get(text) ?? 0) <= 1, `${text} was sent at most once to each`);
    if (results[i].model === "vendor-load-primary") assert.equal(backup.get(text), undefined, `${text} answered once`);
    else assert.equal(backup.get(text), 1, `${text} answered by the fallback`);
  }
  const failedAtPrimary = [...primary.keys()].filter((k) => backup.has(k)).length;
  assert.ok(failedAtPrimary > 0, "some of the primary's answers failed over");
});

// The shard a target's record lives in: FNV-1a of `provider/model`, modulo 16, as the gateway
// computes it (`health::shard_of`), written again here so that the test checks it.
const shardOf = (target) => {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(target)) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return `targets:${h % 16n}`;
};

test("two targets' records live in different health shards, and the admin snapshot shows both", async () => {
  const targets = ["upstream/vendor-gpt", "upstream/vendor-limited"];
  assert.notEqual(shardOf(targets[0]), shardOf(targets[1]), "the test needs targets of two shards");
  for (const model of ["gpt-test", "rate-limited"]) {
    const res = await call(gateway, "/v1/chat/completions", { body: chat(model) });
    assert.equal(res.status, 200);
    await res.text();
  }
  let records = [];
  for (let i = 0; i < 60; i++) {
    const res = await call(gateway, "/admin/health", { method: "GET", key: ADMIN_TOKEN });
    assert.equal(res.status, 200);
    records = (await res.json()).filter((h) => targets.includes(h.target) && h.successes > 0);
    if (records.length === 2) break;
    await sleep(50);
  }
  assert.equal(records.length, 2, JSON.stringify(records));
  for (const record of records) {
    assert.equal(record.shard, shardOf(record.target), `${record.target} is kept by its own shard`);
  }
  assert.notEqual(records[0].shard, records[1].shard);
});
