// Gateway keys, budgets, rate limits and cost, end to end in workerd: keys made through the admin
// API and used; caps that hold under concurrency; limits with their 429s; usage that survives a
// restart of the local runtime.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { startMock, startGateway, call, openaiError, sseEvents, VENDOR_KEY, ADMIN_TOKEN } from "./harness.mjs";
import { testConfig, closedPort } from "./config.mjs";

// USD per million tokens: a call of ~10 prompt and 8 completion tokens costs ~$0.026.
const PRICE = { input: 1000, output: 2000 };

function config(mock, deadPort) {
  const base = testConfig(mock, deadPort);
  return {
    ...base,
    // The priced models' own provider, with room for 200 calls at once on a slow machine.
    providers: {
      ...base.providers,
      priced: { kind: "openai", base_url: `${mock.url}/v1`, api_key_secret: "UPSTREAM_KEY", timeout_ms: 30000 },
    },
    models: [
      ...base.models,
      { name: "priced", aliases: ["priced-alias"], targets: [{ provider: "priced", model: "vendor-priced" }] },
      { name: "priced-2", targets: [{ provider: "priced", model: "vendor-priced-2" }] },
      { name: "target-limited-only", targets: [{ provider: "upstream", model: "vendor-tl-only", rpm: 2 }] },
      {
        name: "target-limited",
        targets: [
          { provider: "upstream", model: "vendor-tl-primary", rpm: 2 },
          { provider: "upstream", model: "vendor-tl-backup" },
        ],
      },
    ],
    catalog: { ...base.catalog, "vendor-priced": PRICE, "vendor-priced-2": PRICE },
  };
}

let mock, gateway, stateDir, deadPort;
const secrets = { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY: "sk-ant-x", ADMIN_TOKEN };

before(async () => {
  mock = await startMock();
  deadPort = await closedPort();
  stateDir = mkdtempSync(join(tmpdir(), "switchyard-budgets-"));
  gateway = await startGateway({ config: config(mock, deadPort), secrets, persistDir: stateDir });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

const admin = (path, { method = "GET", body } = {}) => call(gateway, path, { method, body, key: ADMIN_TOKEN });

async function createKey(policy) {
  const res = await admin("/admin/keys", { method: "POST", body: policy });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

const chat = (key, model = "priced", extra = {}) =>
  call(gateway, "/v1/chat/completions", {
    key,
    body: { model, max_tokens: 16, messages: [{ role: "user", content: "Say hello" }], ...extra },
  });

/** The catalog price of a usage object. */
const costOf = (usage) => (usage.prompt_tokens * PRICE.input + usage.completion_tokens * PRICE.output) / 1e6;

/** Polls the usage report until `done(report)` (settlement runs after the response). */
async function usageReport(query, done) {
  let report;
  for (let i = 0; i < 100; i++) {
    report = await admin(`/admin/usage?${query}`).then((r) => r.json());
    if (done(report)) return report;
    await new Promise((r) => setTimeout(r, 50));
  }
  return report;
}

test("a key made by the admin API is shown once, works, and is stored only as its hash", async () => {
  const created = await createKey({ name: "app", tags: { team: "search" } });
  assert.match(created.key, /^sy-[A-Za-z0-9_-]{43}$/);
  assert.match(created.id, /^key_[0-9a-f]{24}$/);
  assert.equal(created.redacted_key, `sy-...${created.key.slice(-4)}`);

  const res = await chat(created.key);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).object, "chat.completion");

  // Listing and showing never give the key back.
  const listed = await admin("/admin/keys").then((r) => r.json());
  const entry = listed.data.find((k) => k.id === created.id);
  assert.equal(entry.name, "app");
  assert.ok(!JSON.stringify(listed).includes(created.key));
  const shown = await admin(`/admin/keys/${created.id}`).then((r) => r.json());
  assert.equal(shown.key, undefined);
  assert.equal(shown.sha256, undefined, "the API does not show the key's hash either");
  assert.equal(created.sha256, undefined);
  assert.deepEqual(shown.tags, { team: "search" });

  // What KV holds: the record under the key's id, its hash, never the key.
  const kv = await gateway.kv();
  const stored = await kv.get(`key/${created.id}`);
  assert.ok(stored.includes(created.id));
  assert.ok(!stored.includes(created.key));
  const { keys } = await kv.list();
  for (const { name } of keys) assert.ok(!(await kv.get(name)).includes(created.key));

  // The admin API wants the admin token, never a gateway key.
  assert.equal((await call(gateway, "/admin/keys", { method: "GET", key: created.key })).status, 401);
});

test("a revoked key is refused at once; an expired key too", async () => {
  const { key, id } = await createKey({ name: "to-revoke" });
  assert.equal((await chat(key)).status, 200);
  const revoked = await admin(`/admin/keys/${id}`, { method: "DELETE" }).then((r) => r.json());
  assert.ok(revoked.revoked_at > 0);
  const res = await chat(key);
  assert.equal(res.status, 401);
  assert.equal((await openaiError(res)).code, "key_revoked");
  assert.equal((await call(gateway, "/v1/models", { method: "GET", key })).status, 401);
  // Even where KV still holds the key unrevoked (another edge, before KV caught up), the
  // key's ledger refuses it: here KV is set back to the record from before the revocation.
  const kv = await gateway.kv();
  const stale = JSON.parse(await kv.get(`key/${id}`));
  stale.revoked_at = null;
  await kv.put(`key/${id}`, JSON.stringify(stale));
  const edge = await chat(key);
  assert.equal(edge.status, 401);
  assert.equal((await openaiError(edge)).code, "key_revoked");
  assert.equal((await call(gateway, "/v1/models", { method: "GET", key })).status, 401);

  const expired = await createKey({ name: "expired", expires_at: Math.floor(Date.now() / 1000) - 1 });
  const refused = await chat(expired.key);
  assert.equal(refused.status, 401);
  assert.equal((await openaiError(refused)).code, "key_expired");
  // Unknown keys of the same shape are plain 401s.
  assert.equal((await chat(`sy-${"A".repeat(43)}`)).status, 401);
});

test("a key limited to some models gets 403 on the others, its fallbacks included", async () => {
  const { key, id } = await createKey({ name: "narrow", models: ["priced-alias"] });
  assert.equal((await chat(key, "priced")).status, 200, "allowed by its alias");
  const other = await chat(key, "priced-2");
  assert.equal(other.status, 403);
  const error = await openaiError(other);
  assert.equal(error.code, "model_not_allowed");
  assert.equal(error.type, "permission_error");
  // The client's own fallback list is bounded by the key's models too.
  const fallbacks = await chat(key, "priced", { models: ["priced-2"] });
  assert.equal(fallbacks.status, 403);
  // It sees only its models.
  const models = await call(gateway, "/v1/models", { method: "GET", key }).then((r) => r.json());
  assert.deepEqual(models.data.map((m) => m.id).sort(), ["priced", "priced-alias"]);
  assert.equal((await call(gateway, "/v1/models/priced-2", { method: "GET", key })).status, 404);

  // A change of policy is in force at once.
  const patched = await admin(`/admin/keys/${id}`, { method: "PATCH", body: { models: [] } });
  assert.equal(patched.status, 200);
  assert.equal((await chat(key, "priced-2")).status, 200);
  // A bad change is refused whole, naming the field.
  const bad = await admin(`/admin/keys/${id}`, { method: "PATCH", body: { models: ["no-such-model"] } });
  assert.equal(bad.status, 400);
  assert.equal((await openaiError(bad)).param, "models[0]");
});

test("the cost header and the stream's cost are the catalog price times the reported usage", async () => {
  const { key, id } = await createKey({ name: "costs" });
  const res = await chat(key);
  const body = await res.json();
  assert.equal(Number(res.headers.get("x-switchyard-cost-usd")), Number(costOf(body.usage).toFixed(8)));

  // Streamed, usage asked for: the usage chunk is there, and the cost before [DONE].
  const asked = await chat(key, "priced", { stream: true, stream_options: { include_usage: true } });
  const askedText = await asked.text();
  const usage = sseEvents(askedText).find((e) => e !== "[DONE]" && e.usage)?.usage;
  assert.ok(usage, askedText);
  const comment = /^: x-switchyard-cost-usd=([0-9.]+)$/m.exec(askedText);
  assert.ok(comment, askedText);
  assert.equal(Number(comment[1]), Number(costOf(usage).toFixed(8)));
  assert.ok(askedText.indexOf(comment[0]) < askedText.indexOf("data: [DONE]"));

  // Streamed, usage not asked for: the gateway asked the vendor anyway, and hid the chunk.
  const plain = await chat(key, "priced", { stream: true });
  const plainText = await plain.text();
  assert.ok(!sseEvents(plainText).some((e) => e !== "[DONE]" && e.usage), plainText);
  assert.match(plainText, /^: x-switchyard-cost-usd=[0-9.]+$/m);
  const sent = (await mock.requests()).filter((r) => r.json?.model === "vendor-priced" && r.json.stream);
  assert.ok(sent.length >= 2 && sent.every((r) => r.json.stream_options?.include_usage === true));

  // A translated stream (Anthropic's events in) is costed the same way, at Anthropic's prices.
  const claude = await chat(key, "claude-sonnet", { stream: true, stream_options: { include_usage: true } });
  const claudeText = await claude.text();
  const claudeUsage = sseEvents(claudeText).find((e) => e !== "[DONE]" && e.usage)?.usage;
  const claudeCost = /^: x-switchyard-cost-usd=([0-9.]+)$/m.exec(claudeText);
  assert.ok(claudeUsage && claudeCost, claudeText);
  const sonnet = (claudeUsage.prompt_tokens * 3 + claudeUsage.completion_tokens * 15) / 1e6;
  assert.equal(Number(claudeCost[1]), Number(sonnet.toFixed(8)));

  // Every one of them is in the usage report, costed.
  const report = await usageReport(`group_by=key`, (r) => r.data.some((g) => g.key === id && g.requests === 4));
  const mine = report.data.find((g) => g.key === id);
  assert.equal(mine.requests, 4);
  assert.equal(mine.key_name, "costs");
  assert.ok(Math.abs(mine.cost_usd - 3 * costOf(usage) - sonnet) < 1e-9, JSON.stringify(mine));
});

test("200 concurrent calls against a tiny cap: the settled spend never exceeds it, the rest get budget_exceeded", async () => {
  const cap = 0.3;
  const { key, id } = await createKey({ name: "tiny", budgets: [{ window: "day", limit_usd: cap }] });
  const results = await Promise.all(Array.from({ length: 200 }, () => chat(key, "priced-2")));
  const statuses = await Promise.all(
    results.map(async (res) => {
      if (res.status === 200) {
        await res.json();
        return 200;
      }
      const error = await openaiError(res);
      assert.equal(res.status, 429);
      assert.equal(error.code, "budget_exceeded");
      assert.match(error.message, /^The daily budget of key `tiny` \(\$0\.30\) (is spent|cannot take this call)/);
      assert.equal(res.headers.get("x-switchyard-budget-window"), "daily");
      assert.match(res.headers.get("x-switchyard-budget-reset"), /^\d{4}-\d\d-\d\dT00:00:00Z$/);
      assert.equal(res.headers.get("x-should-retry"), "false");
      return 429;
    }),
  );
  const ok = statuses.filter((s) => s === 200).length;
  assert.ok(ok >= 1 && ok < 200, `answered: ${ok}`);
  const report = await usageReport(`group_by=key`, (r) => r.data.find((g) => g.key === id)?.requests === ok);
  const spent = report.data.find((g) => g.key === id);
  assert.equal(spent.requests, ok);
  assert.ok(spent.cost_usd <= cap, `settled ${spent.cost_usd} > cap ${cap}`);
  // Once the holds are settled, what the cap still allows can be used, and no more.
  let more = 0;
  for (let i = 0; i < 20; i++) {
    const res = await chat(key, "priced-2");
    await res.arrayBuffer();
    if (res.status !== 200) break;
    more++;
  }
  const final = await usageReport(`group_by=key`, (r) => r.data.find((g) => g.key === id)?.requests === ok + more);
  assert.ok(final.data.find((g) => g.key === id).cost_usd <= cap);
});

test("a budget's soft threshold warns before the cap is reached", async () => {
  const { key } = await createKey({ name: "warned", budgets: [{ window: "month", limit_usd: 100, warn_at: 0.0001 }] });
  const res = await chat(key);
  await res.arrayBuffer();
  assert.match(res.headers.get("x-switchyard-budget-warning"), /^monthly budget \d+% used \(\$[0-9.]+ of \$100\.00\), resets /);
});

test("past a key's requests per minute: 429 with Retry-After and the x-ratelimit headers", async () => {
  const { key } = await createKey({ name: "rpm", rate_limits: { rpm: 3 } });
  for (let i = 0; i < 3; i++) {
    const res = await chat(key);
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-ratelimit-limit-requests"), "3");
    assert.equal(res.headers.get("x-ratelimit-remaining-requests"), String(2 - i));
  }
  const res = await chat(key);
  assert.equal(res.status, 429);
  const error = await openaiError(res);
  assert.equal(error.code, "rate_limit_exceeded");
  assert.equal(error.type, "requests");
  assert.ok(Number(res.headers.get("retry-after")) >= 1);
  assert.equal(res.headers.get("x-ratelimit-remaining-requests"), "0");

  // OpenAI's SDK reads it as a RateLimitError.
  const client = new OpenAI({ apiKey: key, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
  await assert.rejects(client.chat.completions.create({ model: "priced", messages: [{ role: "user", content: "hi" }] }), (e) => {
    assert.equal(e.status, 429);
    assert.equal(e.constructor.name, "RateLimitError");
    return true;
  });
});

test("a burst past a key's requests per minute: exactly the limit admitted, the rest a prompt 429, no 503", async () => {
  // 30 a minute: one request each 2 s refills. Once the ledger has said the bucket is dry, the
  // lease refuses the rest at once (`LeaseView::dry`), with the time its part of the refill
  // takes; a call it wrongly refused would show as fewer than 30 admitted.
  const { key } = await createKey({ name: "rpm-burst", rate_limits: { rpm: 30 } });
  const started = Date.now();
  const results = await Promise.all(
    Array.from({ length: 45 }, async () => {
      const res = await chat(key);
      if (res.status === 429) {
        const error = await openaiError(res);
        assert.equal(error.code, "rate_limit_exceeded");
        const retryMs = Number(res.headers.get("retry-after-ms"));
        assert.ok(retryMs >= 1 && retryMs <= 2_000, `retry-after-ms ${retryMs}: one request refills in 2 s`);
        assert.ok(Number(res.headers.get("retry-after")) >= 1);
        assert.equal(res.headers.get("x-ratelimit-remaining-requests"), "0");
      } else await res.arrayBuffer();
      return res.status;
    }),
  );
  const elapsed = Date.now() - started;
  const admitted = results.filter((s) => s === 200).length;
  assert.deepEqual([...new Set(results)].sort(), [200, 429], `statuses: ${results}`);
  // The bucket's 30, and what refilled meanwhile (one each 2 s).
  assert.ok(admitted >= 30 && admitted <= 30 + Math.ceil(elapsed / 2_000), `${admitted} admitted in ${elapsed} ms`);
  // And a call right after is refused at once too.
  const t = Date.now();
  const res = await chat(key);
  await res.arrayBuffer();
  if (res.status === 429) assert.ok(Date.now() - t < 1_000, `refused after ${Date.now() - t} ms`);
});

test("tokens per minute count the prompt and the allowed output, corrected by the real usage", async () => {
  const { key } = await createKey({ name: "tpm", rate_limits: { tpm: 100 } });
  // Two at once, each allowed 90 tokens of output: the second does not fit.
  const [a, b] = await Promise.all([chat(key, "priced", { max_tokens: 90 }), chat(key, "priced", { max_tokens: 90 })]);
  const [ok, refused] = a.status === 200 ? [a, b] : [b, a];
  await ok.arrayBuffer();
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("x-ratelimit-limit-tokens"), "100");
  assert.equal(refused.status, 429);
  assert.equal((await openaiError(refused)).type, "tokens");
  // The answered call used ~17 tokens, not 90: once settled, the rest is given back at once
  // (the refill alone, 100 a minute, would take half a minute).
  let status;
  for (let i = 0; i < 40 && status !== 200; i++) {
    const res = await chat(key, "priced", { max_tokens: 60 });
    await res.arrayBuffer();
    status = res.status;
    if (status !== 200) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, 200);
});

test("a vendor target at its configured limit is skipped for the next target, not sent a call", async () => {
  await mock.reset();
  const answered = [];
  for (let i = 0; i < 3; i++) {
    const res = await chat(undefined, "target-limited");
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    answered.push(res.headers.get("x-switchyard-model"));
    if (i === 2) assert.match(res.headers.get("x-switchyard-fallbacks"), /upstream\/vendor-tl-primary=target_rate_limited/);
  }
  assert.deepEqual(answered, ["vendor-tl-primary", "vendor-tl-primary", "vendor-tl-backup"]);
  const sent = (await mock.requests()).filter((r) => r.json?.model === "vendor-tl-primary");
  assert.equal(sent.length, 2);
  // A model whose only target is at its limit answers 429 with Retry-After, without a call.
  const only = [];
  for (let i = 0; i < 3; i++) {
    const res = await chat(undefined, "target-limited-only");
    only.push(res.status);
    if (res.status === 429) {
      assert.equal((await openaiError(res)).code, "target_rate_limited");
      assert.ok(Number(res.headers.get("retry-after")) >= 1);
    } else await res.arrayBuffer();
  }
  assert.deepEqual(only, [200, 200, 429]);
});

test("keys listed in the configuration cannot be changed through the API; bad requests are 400s", async () => {
  const listed = await admin("/admin/keys").then((r) => r.json());
  const configured = listed.data.find((k) => k.source === "config");
  assert.equal(configured.name, "test");
  const res = await admin(`/admin/keys/${configured.id}`, { method: "DELETE" });
  assert.equal(res.status, 400);
  assert.equal((await openaiError(res)).code, "key_in_configuration");
  assert.equal((await admin("/admin/keys", { method: "POST", body: { models: ["priced"] } })).status, 400);
  assert.equal((await admin("/admin/keys", { method: "POST", body: { name: "x", budget: 1 } })).status, 400);
  const badCap = await admin("/admin/keys", { method: "POST", body: { name: "x", budgets: [{ window: "week", limit_usd: 1 }] } });
  assert.equal(badCap.status, 400);
  assert.equal((await admin("/admin/keys/key_000000000000000000000000")).status, 404);
  assert.equal((await admin("/admin/usage?group_by=colour")).status, 400);
  assert.equal((await admin("/admin/usage?from=yesterday")).status, 400);
});

test("usage is reported by model, provider and tag over a time range", async () => {
  const a = await createKey({ name: "tagged-a", tags: { team: "red" } });
  const b = await createKey({ name: "tagged-b", tags: { team: "blue", env: "prod" } });
  for (const key of [a.key, b.key, b.key]) await (await chat(key, "priced")).arrayBuffer();
  const byTag = await usageReport("group_by=tag", (r) => r.data.find((g) => g.tag === "team:blue")?.requests === 2);
  assert.equal(byTag.data.find((g) => g.tag === "team:blue").requests, 2);
  assert.equal(byTag.data.find((g) => g.tag === "team:red").requests, 1);
  assert.equal(byTag.data.find((g) => g.tag === "env:prod").requests, 2);
  const byModel = await admin("/admin/usage?group_by=model").then((r) => r.json());
  assert.ok(byModel.data.find((g) => g.model === "vendor-priced").cost_usd > 0);
  const byProvider = await admin("/admin/usage?group_by=provider").then((r) => r.json());
  assert.ok(byProvider.data.find((g) => g.provider === "priced").requests >= 3);
  // A range before any call holds nothing.
  const empty = await admin("/admin/usage?from=2020-01-01&to=2020-01-02").then((r) => r.json());
  assert.equal(empty.total.requests, 0);
  assert.equal(empty.from, "2020-01-01T00:00:00Z");
});

test("spend, keys and usage survive a restart of the local runtime", async () => {
  const { key, id } = await createKey({ name: "durable", budgets: [{ window: "day", limit_usd: 0.1 }] });
  const res = await chat(key);
  await res.arrayBuffer();
  assert.equal(res.status, 200);
  const before = await usageReport("group_by=key", (r) => r.data.find((g) => g.key === id)?.requests === 1);
  const spent = before.data.find((g) => g.key === id).cost_usd;

  await gateway.stop();
  gateway = await startGateway({ config: config(mock, deadPort), secrets, persistDir: stateDir });

  const after = await admin("/admin/usage?group_by=key").then((r) => r.json());
  assert.equal(after.data.find((g) => g.key === id).cost_usd, spent);
  // The key still works, and the day's spend still counts against its cap: two more calls
  // would pass $0.10, so one of the next ones is refused.
  // The stopped runtime's lease keeps its slice of the cap until the ledger frees it, at most
  // 7 s after its last refresh (the README's bound): until then the first call may be refused.
  let first;
  for (let i = 0; i < 48; i++) {
    first = await chat(key);
    await first.arrayBuffer();
    if (first.status === 200) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const statuses = [first.status];
  for (let i = 0; i < 3; i++) {
    const r = await chat(key);
    await r.arrayBuffer();
    statuses.push(r.status);
  }
  assert.equal(statuses[0], 200);
  assert.ok(statuses.includes(429), statuses.join());
});

test("the gateway's own budget caps every key together", async () => {
  const capped = await startGateway({
    config: { ...config(mock, deadPort), pricing: { unpriced: "refuse" }, budgets: [{ window: "hour", limit_usd: 0.1 }] },
    secrets,
  });
  try {
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const res = await call(capped, "/v1/chat/completions", {
        body: { model: "priced", max_tokens: 16, messages: [{ role: "user", content: "Say hello" }] },
      });
      statuses.push(res.status);
      if (res.status !== 200) {
        const error = await openaiError(res);
        assert.equal(error.code, "budget_exceeded");
        assert.match(error.message, /^The hourly budget of the gateway \(\$0\.10\) (is spent|cannot take this call)/);
        break;
      }
      await res.arrayBuffer();
      // Settlement comes after the answer: wait for it before the next call.
      for (let j = 0; j < 100; j++) {
        const report = await call(capped, "/admin/usage", { method: "GET", key: ADMIN_TOKEN }).then((r) => r.json());
        if (report.total.requests === i + 1) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.deepEqual(statuses, [200, 200, 429]);
  } finally {
    await capped.stop();
  }
});

test("a call one ledger refuses holds nothing in the other: a rate-limited key cannot pin the gateway's budget", async () => {
  const capped = await startGateway({
    config: { ...config(mock, deadPort), pricing: { unpriced: "refuse" }, budgets: [{ window: "day", limit_usd: 0.2 }] },
    secrets,
  });
  try {
    const limited = await call(capped, "/admin/keys", {
      method: "POST",
      key: ADMIN_TOKEN,
      body: { name: "limited", rate_limits: { rpm: 1 } },
    }).then((r) => r.json());
    const ask = (key) =>
      call(capped, "/v1/chat/completions", {
        key,
        body: { model: "priced", max_tokens: 16, messages: [{ role: "user", content: "Say hello" }] },
      });
    const first = await ask(limited.key);
    await first.arrayBuffer();
    assert.equal(first.status, 200);
    // Twenty calls refused by the key's rate limit: each was also taken on by the gateway's
    // ledger (asked at the same time), which must free it at once.
    for (let i = 0; i < 20; i++) {
      const res = await ask(limited.key);
      assert.equal(res.status, 429);
      assert.equal((await openaiError(res)).code, "rate_limit_exceeded");
    }
    // Had they kept their holds (~$0.06 each), the $0.20 budget would refuse this one.
    const other = await ask(undefined);
    await other.arrayBuffer();
    assert.equal(other.status, 200);
  } finally {
    await capped.stop();
  }
});
