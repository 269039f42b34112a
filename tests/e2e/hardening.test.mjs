// Hardening, end to end in workerd: what a failing or hostile vendor, a careless client and a
// misconfigured operator must not be able to do to the gateway (issue 10). Each test pins one
// promise: budgets that hold for every request shape, failover that judges the vendor's trouble
// as the vendor's, secrets that stay where they are.

import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { startMock, startGateway, call, openaiError, sseEvents, VENDOR_KEY, ADMIN_TOKEN, GATEWAY_KEY_SHA256 } from "./harness.mjs";

const EXPIRED_KEY = "sk-switchyard-expired-key";
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const COOLDOWN_MS = 1500;
// $1,000 per million output tokens: a thousand tokens of output cost $1.
const PRICE = { input: 1, output: 1000 };

let mock, elsewhere, gateway;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const chat = (model, extra = {}) => ({ model, messages: [{ role: "user", content: "Hi" }], ...extra });
const received = async (m = mock) => (await m.requests()).map((r) => r.json?.model);

function config() {
  const upstream = (extra = {}) => ({ kind: "openai", base_url: `${mock.url}/v1`, api_key_secret: "UPSTREAM_KEY", timeout_ms: 1500, ...extra });
  return {
    providers: {
      upstream: upstream(),
      storing: upstream({ forward_store: true }),
      claude: { kind: "anthropic", base_url: `${mock.url}/v1`, api_key_secret: "ANTHROPIC_KEY", timeout_ms: 1500 },
      google: { kind: "gemini", base_url: `${mock.url}/v1beta`, api_key_secret: "GEMINI_KEY", timeout_ms: 1500 },
      keyless: { kind: "openai", base_url: `${mock.url}/v1`, api_key_secret: "NOT_SET_ANYWHERE" },
    },
    models: [
      { name: "redirected", targets: [{ provider: "claude", model: "claude-redirect" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "trickle", deadline_ms: 3000, targets: [{ provider: "upstream", model: "vendor-trickle" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "auth", targets: [{ provider: "upstream", model: "vendor-auth" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "auth-only", targets: [{ provider: "upstream", model: "vendor-auth-only" }] },
      { name: "out", targets: [{ provider: "upstream", model: "vendor-out" }] },
      { name: "hedge-b", targets: [{ provider: "upstream", model: "vendor-hedge-b" }] },
      {
        name: "hedged",
        hedge_after_ms: 100,
        targets: [{ provider: "upstream", model: "vendor-hedge-a" }, { provider: "upstream", model: "vendor-hedge-b" }],
      },
      { name: "hedge-limited-b", targets: [{ provider: "upstream", model: "vendor-hl-b", rpm: 1 }] },
      {
        name: "hedge-limited",
        hedge_after_ms: 100,
        targets: [{ provider: "upstream", model: "vendor-hl-a" }, { provider: "upstream", model: "vendor-hl-b", rpm: 1 }],
      },
      { name: "keepalive", targets: [{ provider: "upstream", model: "vendor-keepalive" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "endless", targets: [{ provider: "upstream", model: "vendor-endless" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "priced", targets: [{ provider: "upstream", model: "vendor-priced" }] },
      { name: "priced-claude", targets: [{ provider: "claude", model: "claude-priced" }] },
      { name: "priced-gemini", targets: [{ provider: "google", model: "gemini-priced" }] },
      { name: "unpriced", targets: [{ provider: "upstream", model: "vendor-unpriced" }] },
      { name: "billed", allow_params: ["service_tier"], targets: [{ provider: "upstream", model: "vendor-billed" }] },
      { name: "plain", targets: [{ provider: "upstream", model: "vendor-plain" }] },
      { name: "plain-strict", strict: true, targets: [{ provider: "upstream", model: "vendor-plain" }] },
      { name: "storing", targets: [{ provider: "storing", model: "vendor-storing" }] },
      { name: "no-key", targets: [{ provider: "keyless", model: "vendor-no-key" }] },
    ],
    keys: [
      { name: "test", sha256: GATEWAY_KEY_SHA256 },
      { name: "expired", sha256: sha256(EXPIRED_KEY), expires_at: 1 },
    ],
    catalog: { "vendor-priced": PRICE, "claude-priced": PRICE, "gemini-priced": PRICE },
    pricing: { unpriced: "refuse" },
    health: { breaker: { consecutive_failures: 3, cooldown_ms: COOLDOWN_MS, min_volume: 100000 } },
  };
}

before(async () => {
  mock = await startMock();
  elsewhere = await startMock();
  gateway = await startGateway({
    config: config(),
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY: VENDOR_KEY, GEMINI_KEY: VENDOR_KEY, ADMIN_TOKEN },
  });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
  await elsewhere?.stop();
});

beforeEach(async () => {
  await mock.reset();
  await elsewhere.reset();
});

const admin = (path, { method = "GET", body } = {}) => call(gateway, path, { method, body, key: ADMIN_TOKEN });

async function createKey(policy) {
  const res = await admin("/admin/keys", { method: "POST", body: policy });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()).key;
}

async function healthOf(target) {
  for (let i = 0; i < 40; i++) {
    const records = await admin("/admin/health").then((r) => r.json());
    const record = records.find((h) => h.target === target);
    if (record) return record;
    await sleep(50);
  }
  throw new Error(`no health record for ${target}`);
}

// ---- Secrets ----

test("a vendor's redirect is never followed: the key stays home and the next target answers", async () => {
  await mock.fault({ match: { model: "claude-redirect" }, status: 307, location: `${elsewhere.url}/v1/messages` });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("redirected") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup");
  assert.equal(res.headers.get("x-switchyard-fallbacks"), "claude/claude-redirect=upstream_redirect");
  assert.deepEqual(await elsewhere.requests(), [], "nothing, and no x-api-key, reached the redirect's host");
});

test("a vendor key echoed in any field of a vendor's error is redacted", async () => {
  await mock.fault({
    match: { model: "vendor-plain" },
    times: 1,
    status: 400,
    body: { error: { message: `bad key ${VENDOR_KEY}`, type: "invalid_request_error", param: VENDOR_KEY, code: `c-${VENDOR_KEY}` } },
  });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("plain") });
  assert.equal(res.status, 400);
  const text = await res.text();
  assert.ok(!text.includes(VENDOR_KEY), text);
});

test("a missing vendor secret is named to the client by its provider, never by the secret", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: chat("no-key") });
  assert.equal(res.status, 503);
  const error = await openaiError(res);
  assert.equal(error.code, "provider_key_missing");
  assert.match(error.message, /keyless/);
  assert.doesNotMatch(error.message, /NOT_SET_ANYWHERE/);
});

test("an expired configured key is refused everywhere, /v1/models too", async () => {
  for (const [method, path, body] of [["GET", "/v1/models"], ["GET", "/v1/models/plain"], ["POST", "/v1/chat/completions", chat("plain")]]) {
    const res = await call(gateway, path, { method, body, key: EXPIRED_KEY });
    assert.equal(res.status, 401, path);
    assert.equal((await openaiError(res)).code, "key_expired", path);
  }
});

test("CORS preflight lets browser clients of both SDKs send their headers", async () => {
  const res = await fetch(`${gateway.url}/v1/messages`, { method: "OPTIONS" }).catch(() => null);
  const preflight = res && res.status === 204 ? res : await fetch(`${gateway.url}/v1/chat/completions`, { method: "OPTIONS" });
  assert.equal(preflight.status, 204);
  const allowed = preflight.headers.get("access-control-allow-headers").split(/,\s*/);
  for (const header of ["authorization", "content-type", "x-api-key", "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access"]) {
    assert.ok(allowed.includes(header), header);
  }
});

test("a short ADMIN_TOKEN turns the admin API off, and /health says so", async () => {
  const weak = await startGateway({ config: config(), secrets: { UPSTREAM_KEY: VENDOR_KEY, ADMIN_TOKEN: "short-token" } });
  try {
    const health = await fetch(`${weak.url}/health`).then((r) => r.json());
    assert.equal(health.status, "ok");
    assert.match(health.warnings.join(" "), /ADMIN_TOKEN is shorter than 32 characters/);
    const res = await call(weak, "/admin/keys", { method: "GET", key: "short-token" });
    assert.equal(res.status, 403);
    assert.equal((await openaiError(res)).code, "admin_disabled");
  } finally {
    await weak.stop();
  }
  const healthy = await fetch(`${gateway.url}/health`).then((r) => r.json());
  assert.deepEqual(healthy, { status: "ok" }, "a long enough token: nothing to warn of");
});

// ---- Failover and health ----

test("a vendor's error body that trickles in cannot hold the client past the attempt's time", async () => {
  await mock.fault({ match: { model: "vendor-trickle" }, status: 500, body: "x".repeat(16000), trickle_ms: 10 });
  const started = Date.now();
  const res = await call(gateway, "/v1/chat/completions", { body: chat("trickle") });
  const elapsed = Date.now() - started;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup", "the fallback got its turn");
  assert.ok(elapsed < 3000, `answered in ${elapsed} ms, within the model's deadline`);
});

test("a vendor's 401 or 403 fails over, counts against the target, and never shows the vendor's text", async () => {
  for (const status of [401, 403]) {
    await mock.fault({
      match: { model: "vendor-auth" },
      times: 1,
      status,
      body: { error: { message: `Your key ${VENDOR_KEY} lacks access`, type: "invalid_request_error", param: null, code: "no_access" } },
    });
    const res = await call(gateway, "/v1/chat/completions", { body: chat("auth") });
    assert.equal(res.status, 200, `HTTP ${status}`);
    assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup");
    assert.equal(res.headers.get("x-switchyard-fallbacks"), "upstream/vendor-auth=upstream_auth_failed");
  }
  const record = await healthOf("upstream/vendor-auth");
  assert.ok(record.failures >= 2 || record.breaker.consecutive_failures >= 2, JSON.stringify(record));

  await mock.fault({ match: { model: "vendor-auth-only" }, times: 1, status: 403, body: { error: { message: "region not allowed for org-123", type: "permission_error" } } });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("auth-only") });
  assert.equal(res.status, 502);
  const error = await openaiError(res);
  assert.equal(error.code, "upstream_auth_failed");
  assert.doesNotMatch(error.message, /org-123/);
});

test("a model whose every target is out sends nothing but the probe, and says when to come back", async () => {
  await mock.fault({ match: { model: "vendor-out" }, times: 3, status: 503 });
  for (let i = 0; i < 3; i++) {
    assert.equal((await call(gateway, "/v1/chat/completions", { body: chat("out") })).status, 503);
  }
  await mock.reset();
  for (let i = 0; i < 5; i++) {
    const res = await call(gateway, "/v1/chat/completions", { body: chat("out") });
    assert.equal(res.status, 503);
    assert.equal((await openaiError(res)).code, "no_target_available");
    assert.ok(Number(res.headers.get("retry-after")) >= 1);
  }
  assert.deepEqual(await received(), [], "no call reached the vendor while its breaker was open");
  await sleep(COOLDOWN_MS + 100);
  const probe = await call(gateway, "/v1/chat/completions", { body: chat("out") });
  assert.equal(probe.status, 200, "after the cooldown the probe goes, and succeeds");
  assert.equal((await call(gateway, "/v1/chat/completions", { body: chat("out") })).status, 200);
});

test("a hedge is not sent to a target whose breaker is open", async () => {
  await mock.fault({ match: { model: "vendor-hedge-b" }, times: 3, status: 503 });
  for (let i = 0; i < 3; i++) await call(gateway, "/v1/chat/completions", { body: chat("hedge-b") });
  await mock.reset();
  await mock.fault({ match: { model: "vendor-hedge-a" }, times: 1, first_byte_delay_ms: 400 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("hedged") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-hedge-a");
  assert.deepEqual(await received(), ["vendor-hedge-a"], "the open target got no hedge");
});

test("a hedge respects its target's rate limit", async () => {
  assert.equal((await call(gateway, "/v1/chat/completions", { body: chat("hedge-limited-b") })).status, 200);
  await mock.reset();
  await mock.fault({ match: { model: "vendor-hl-a" }, times: 1, first_byte_delay_ms: 400 });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("hedge-limited") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-hl-a");
  assert.deepEqual(await received(), ["vendor-hl-a"], "the target at its limit got no hedge");
});

// ---- Input that must not exhaust an isolate ----

test("a vendor stream that never sends a line break is cut off, and the next target answers", async () => {
  await mock.fault({ match: { model: "vendor-endless" }, times: 1, endless_line_bytes: 64 * 1024 * 1024 });
  const started = Date.now();
  const res = await call(gateway, "/v1/chat/completions", { body: chat("endless", { stream: true }) });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup");
  const events = sseEvents(await res.text());
  assert.equal(events.at(-1), "[DONE]");
  assert.ok(Date.now() - started < 10_000);
  const after = await call(gateway, "/v1/chat/completions", { body: chat("plain") });
  assert.equal(after.status, 200, "the isolate is still serving");
});

test("keep-alive comments do not restart the first-byte timer of a stream", async () => {
  // 200 with nothing but comments, a few bytes every 50 ms, for half a minute.
  await mock.fault({ match: { model: "vendor-keepalive" }, times: 1, status: 200, body: ": keep-alive\n\n".repeat(400), trickle_ms: 50 });
  const started = Date.now();
  const res = await call(gateway, "/v1/chat/completions", { body: chat("keepalive", { stream: true }) });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-backup");
  assert.match(res.headers.get("x-switchyard-fallbacks"), /upstream\/vendor-keepalive=upstream_timeout/);
  assert.equal(sseEvents(await res.text()).at(-1), "[DONE]");
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 5000, `the provider's 1.5 s to the first event held: ${elapsed} ms`);
});

// ---- Budgets hold for every request shape ----

test("the hold covers every choice: a key whose cap affords one choice is refused n: 8 before the vendor is called", async () => {
  const key = await createKey({ name: "one-choice", budgets: [{ window: "day", limit_usd: 2 }] });
  const one = await call(gateway, "/v1/chat/completions", { key, body: chat("priced", { max_tokens: 1000 }) });
  assert.equal(one.status, 200, await one.clone().text());
  await mock.reset();
  const eight = await call(gateway, "/v1/chat/completions", { key, body: chat("priced", { max_tokens: 1000, n: 8 }) });
  assert.equal(eight.status, 429);
  assert.equal((await openaiError(eight)).code, "budget_exceeded");
  // Gemini's candidateCount is the same multiplier.
  const gemini = await call(gateway, "/v1/chat/completions", { key, body: chat("priced-gemini", { max_tokens: 1000, n: 8 }) });
  assert.equal(gemini.status, 429);
  assert.deepEqual(await received(), [], "the vendor was never called");
});

test("the hold covers the thinking budget a translation adds", async () => {
  const key = await createKey({ name: "thinking", budgets: [{ window: "day", limit_usd: 2 }] });
  const plain = await call(gateway, "/v1/chat/completions", { key, body: chat("priced-claude", { max_tokens: 100 }) });
  assert.equal(plain.status, 200, await plain.clone().text());
  await mock.reset();
  // high effort: a 16,384-token thinking budget on top of the 100 asked, $16 at most.
  const thinking = await call(gateway, "/v1/chat/completions", {
    key,
    body: chat("priced-claude", { max_tokens: 100, reasoning_effort: "high" }),
  });
  assert.equal(thinking.status, 429);
  assert.equal((await openaiError(thinking)).code, "budget_exceeded");
  assert.deepEqual(await received(), []);
});

test("a model the catalog does not price is refused under a budget, not served free", async () => {
  const key = await createKey({ name: "budgeted", budgets: [{ window: "day", limit_usd: 100 }] });
  const res = await call(gateway, "/v1/chat/completions", { key, body: chat("unpriced") });
  assert.equal(res.status, 400);
  const error = await openaiError(res);
  assert.equal(error.code, "model_unpriced");
  assert.deepEqual(await received(), []);
  const free = await call(gateway, "/v1/chat/completions", { body: chat("unpriced") });
  assert.equal(free.status, 200, "without a budget the model is served");
});

test("billed parameters and store reach the vendor only where the configuration allows them", async () => {
  const extra = { service_tier: "priority", store: true, web_search_options: {}, prediction: { type: "content", content: "x" } };
  let res = await call(gateway, "/v1/chat/completions", { body: chat("plain", extra) });
  assert.equal(res.status, 200);
  assert.deepEqual(res.headers.get("x-switchyard-dropped-params").split(", ").sort(), ["prediction", "service_tier", "store", "web_search_options"]);
  let [sent] = await mock.requests();
  for (const name of Object.keys(extra)) assert.ok(!(name in sent.json), name);

  await mock.reset();
  res = await call(gateway, "/v1/chat/completions", { body: chat("billed", { service_tier: "priority" }) });
  assert.equal(res.status, 200);
  [sent] = await mock.requests();
  assert.equal(sent.json.service_tier, "priority", "allowed by the model's configuration");

  await mock.reset();
  res = await call(gateway, "/v1/chat/completions", { body: chat("storing", { store: true }) });
  [sent] = await mock.requests();
  assert.equal(sent.json.store, true, "forwarded where the provider's configuration says so");

  res = await call(gateway, "/v1/chat/completions", { body: chat("plain-strict", { service_tier: "flex" }) });
  assert.equal(res.status, 400);
  const error = await openaiError(res);
  assert.equal(error.code, "unsupported_parameter");
  assert.equal(error.param, "service_tier");
});
