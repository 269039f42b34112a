// Routing strategies, deadlines, retries and the client's own fallback list, end to end.

import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { startMock, startGateway, call, openaiError, sseEvents, VENDOR_KEY } from "./harness.mjs";
import { testConfig, closedPort } from "./config.mjs";

let mock;
let gateway;
const chat = (model, extra = {}) => ({ model, messages: [{ role: "user", content: "Hi" }], ...extra });
const answeredBy = async (model, extra) => {
  const res = await call(gateway, "/v1/chat/completions", { body: chat(model, extra) });
  assert.equal(res.status, 200, await res.clone().text());
  await res.text();
  return res.headers.get("x-switchyard-model");
};

before(async () => {
  mock = await startMock();
  gateway = await startGateway({ config: testConfig(mock, await closedPort()), secrets: { UPSTREAM_KEY: VENDOR_KEY } });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

beforeEach(() => mock.reset());

test("weighted: first attempts follow the weights; the route is named", async () => {
  const counts = { "vendor-w1": 0, "vendor-w3": 0 };
  for (let i = 0; i < 200; i++) counts[await answeredBy("weighted")]++;
  assert.ok(counts["vendor-w3"] > 120 && counts["vendor-w3"] < 180, JSON.stringify(counts));
  const res = await call(gateway, "/v1/chat/completions", { body: chat("weighted") });
  assert.equal(res.headers.get("x-switchyard-route"), "weighted; strategy=weighted");
});

test("latency: once measured, the faster target answers first", async () => {
  await mock.fault({ match: { model: "vendor-lat-slow" }, first_byte_delay_ms: 150 });
  for (let i = 0; i < 3; i++) await answeredBy("latency-routed");
  for (let i = 0; i < 5; i++) assert.equal(await answeredBy("latency-routed"), "vendor-lat-fast");
});

test("a deadline across attempts: no attempt outlives it", async () => {
  await mock.fault({ match: { path: "/chat/completions" }, first_byte_delay_ms: 1300 });
  const started = Date.now();
  const res = await call(gateway, "/v1/chat/completions", { body: chat("deadline") });
  const elapsed = Date.now() - started;
  assert.equal(res.status, 504);
  assert.equal((await openaiError(res)).code, "deadline_exceeded");
  assert.ok(elapsed >= 950 && elapsed < 1400, `answered after ${elapsed} ms`);
});

test("max_attempts above the targets retries the same target, with backoff", async () => {
  await mock.fault({ match: { model: "vendor-retry" }, times: 2, status: 502 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("retrying") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-attempts"), "3");
  assert.equal((await mock.requests()).length, 3);
});

test("the client's own fallback list (`models`) is tried after the model, and never sent on", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: chat("down-model", { models: ["gpt-test"] }) });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-gpt");
  assert.equal(res.headers.get("x-switchyard-attempts"), "2");
  const [sent] = await mock.requests();
  assert.equal(sent.json.models, undefined);
  const unknown = await call(gateway, "/v1/chat/completions", { body: chat("gpt-test", { models: ["nope"] }) });
  assert.equal(unknown.status, 404);
  assert.equal((await openaiError(unknown)).param, "models[0]");
});

test("cost: the cheapest target able to serve the request answers", async () => {
  assert.equal(await answeredBy("cost-routed"), "vendor-cheap");
  const image = { messages: [{ role: "user", content: [{ type: "text", text: "What is this?" }, { type: "image_url", image_url: { url: "https://x/cat.png" } }] }] };
  const res = await call(gateway, "/v1/chat/completions", { body: { model: "cost-routed", ...image } });
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-pricey", "the cheap model has no vision: skipped, not failed");
  assert.equal(res.headers.get("x-switchyard-attempts"), "1");
});

test("cascade: simple requests to the cheap tier, complex ones to the premium tier, named in a header", async () => {
  let res = await call(gateway, "/v1/chat/completions", { body: chat("cascade") });
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-small");
  assert.equal(res.headers.get("x-switchyard-cascade"), "simple; short prompt");
  const tools = [{ type: "function", function: { name: "f", parameters: { type: "object", properties: {} } } }];
  res = await call(gateway, "/v1/chat/completions", { body: chat("cascade", { tools }) });
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-large");
  assert.equal(res.headers.get("x-switchyard-cascade"), "complex; tools");
  res = await call(gateway, "/v1/chat/completions", { body: { model: "cascade", messages: [{ role: "user", content: "x".repeat(4000) }] } });
  assert.equal(res.headers.get("x-switchyard-cascade"), "complex; long prompt");
  res = await call(gateway, "/v1/chat/completions", { body: chat("cascade"), headers: { "x-switchyard-tier": "complex" } });
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-large");
  assert.equal(res.headers.get("x-switchyard-cascade"), "complex; hint");
  // A simple request whose cheap tier fails is answered by the premium tier.
  await mock.fault({ match: { model: "vendor-small" }, times: 1, status: 500 });
  res = await call(gateway, "/v1/chat/completions", { body: chat("cascade") });
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-large");
});

test("a context longer than a target's window skips it; none able is a 400", async () => {
  const long = { messages: [{ role: "user", content: "word ".repeat(400) }] };
  let res = await call(gateway, "/v1/chat/completions", { body: { model: "small-context", ...long } });
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup");
  assert.equal(res.headers.get("x-switchyard-attempts"), "1");
  res = await call(gateway, "/v1/chat/completions", { body: { model: "only-small-context", ...long } });
  assert.equal(res.status, 400);
  const error = await openaiError(res);
  assert.equal(error.code, "unsupported_model");
  assert.match(error.message, /a context this long/);
  assert.ok(!(await mock.requests()).some((r) => r.json?.model === "vendor-tiny-context"));
});

test("hedging: a slow first target is raced by the next after hedge_after_ms; the first answer wins", async () => {
  await mock.fault({ match: { model: "vendor-hedge-slow" }, times: 1, first_byte_delay_ms: 1200 });
  const started = Date.now();
  const res = await call(gateway, "/v1/chat/completions", { body: chat("hedged") });
  const elapsed = Date.now() - started;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-hedge-fast");
  assert.ok(elapsed >= 180 && elapsed < 900, `answered after ${elapsed} ms`);
  const sent = (await mock.requests()).map((r) => r.json.model);
  assert.deepEqual(sent, ["vendor-hedge-slow", "vendor-hedge-fast"]);
  // A fast first target answers alone.
  await mock.reset();
  assert.equal(await answeredBy("hedged"), "vendor-hedge-slow");
  assert.deepEqual((await mock.requests()).map((r) => r.json.model), ["vendor-hedge-slow"]);
});

test("answers slower than slow_ms count as failures: the breaker opens on a slow target", async () => {
  await mock.fault({ match: { model: "vendor-slowish" }, first_byte_delay_ms: 200 });
  for (let i = 0; i < 3; i++) assert.equal(await answeredBy("slow-counted"), "vendor-slowish", "slow answers still reach the client");
  assert.equal(await answeredBy("slow-counted"), "vendor-backup", "then the slow target's breaker is open");
});

test("per-route deadlines: first byte, and the whole of a streamed answer", async () => {
  await mock.fault({ match: { model: "vendor-fb" }, times: 1, first_byte_delay_ms: 700 });
  const started = Date.now();
  assert.equal(await answeredBy("first-byte-route"), "vendor-backup");
  assert.ok(Date.now() - started < 650, "the route's 300 ms, not the provider's 1,500");

  await mock.fault({ match: { model: "vendor-total" }, times: 1, chunk_delay_ms: 150, stream_chunks: 10 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("total-route", { stream: true }) });
  const events = sseEvents(await res.text());
  assert.equal(events.at(-1), "[DONE]");
  assert.equal(events.at(-2).error.code, "upstream_stream_broken");
  assert.match(events.at(-2).error.message, /total timeout/);
});

test("the cost header is the catalog's price times the usage the vendor reported", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: chat("cost-routed") });
  const { usage } = await res.json();
  const expected = (usage.prompt_tokens * 0.1 + usage.completion_tokens * 0.2) / 1e6;
  assert.ok(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
  assert.equal(Number(res.headers.get("x-switchyard-cost-usd")), Number(expected.toFixed(8)));
});
