// The first request path end to end: mock-upstream <- worker in workerd <- plain HTTP.

import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import {
  startMock, startGateway, call, openaiError, sseEvents,
  GATEWAY_KEY, VENDOR_KEY, ADMIN_TOKEN,
} from "./harness.mjs";
import { testConfig, closedPort, MAX_BODY_BYTES, TIMEOUT_MS } from "./config.mjs";

let mock;
let gateway;
const chat = (model, extra = {}) => ({ model, messages: [{ role: "user", content: "Say hello" }], ...extra });

before(async () => {
  mock = await startMock();
  gateway = await startGateway({
    config: testConfig(mock, await closedPort()),
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ADMIN_TOKEN },
  });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

beforeEach(async () => {
  await mock.reset();
});

/** Every header and the body of a response, as one string to search for secrets. */
async function everything(res) {
  return [...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n") + "\n" + (await res.text());
}

test("GET /health answers without a key", async () => {
  const res = await fetch(`${gateway.url}/health`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: "ok" });
});

test("non-streamed chat reaches the vendor with the vendor's key and model, and comes back", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: chat("gpt-test", { temperature: 0.2, logit_bias: { 50256: -100 } }) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /application\/json/);
  assert.equal(res.headers.get("x-switchyard-provider"), "upstream");
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-gpt");
  assert.equal(res.headers.get("x-switchyard-attempts"), "1");
  assert.match(res.headers.get("x-request-id"), /^req_[0-9a-f]{24}$/);
  const body = await res.json();
  assert.equal(body.object, "chat.completion");
  assert.equal(body.choices[0].message.role, "assistant");
  assert.ok(body.choices[0].message.content.length > 0);
  assert.equal(body.usage.total_tokens, body.usage.prompt_tokens + body.usage.completion_tokens);

  const [received] = await mock.requests();
  assert.equal(received.path, "/v1/chat/completions");
  assert.equal(received.headers.authorization, `Bearer ${VENDOR_KEY}`);
  assert.ok(!JSON.stringify(received).includes(GATEWAY_KEY), "the client's key must never reach the vendor");
  assert.equal(received.json.model, "vendor-gpt");
  assert.equal(received.json.temperature, 0.2);
  assert.deepEqual(received.json.logit_bias, { 50256: -100 }, "parameters the gateway does not model pass through");
  assert.deepEqual(received.json.messages, [{ role: "user", content: "Say hello" }]);
});

test("an alias resolves to its model", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: chat("test-alias") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-gpt");
});

test("streamed chat arrives as OpenAI's event stream, ending with [DONE]", async () => {
  const res = await call(gateway, "/v1/chat/completions", {
    body: chat("gpt-test", { stream: true, stream_options: { include_usage: true } }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /text\/event-stream/);
  const events = sseEvents(await res.text());
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1);
  assert.ok(chunks.length >= 3);
  for (const c of chunks) assert.equal(c.object, "chat.completion.chunk");
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
  assert.match(text, /Hello from mock-upstream/);
  assert.ok(chunks.at(-1).usage.total_tokens > 0);
  const [received] = await mock.requests();
  assert.equal(received.json.stream, true);
  assert.equal(received.headers.accept, "text/event-stream");
});

test("a keyless provider gets no Authorization header, and its configured headers", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: chat("local-llama") });
  assert.equal(res.status, 200);
  const [received] = await mock.requests();
  assert.equal(received.headers.authorization, undefined);
  assert.equal(received.headers["x-extra-header"], "configured");
  assert.equal(received.json.model, "llama3");
});

test("the built-in mock provider answers without a vendor", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: chat("echo") });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.match(body.choices[0].message.content, /You said: Say hello/);
  assert.equal((await mock.requests()).length, 0);
});

test("401 without a key, with a wrong key; x-api-key is accepted", async () => {
  let res = await call(gateway, "/v1/chat/completions", { body: chat("gpt-test"), key: null });
  assert.equal(res.status, 401);
  assert.equal((await openaiError(res)).code, "invalid_api_key");
  res = await call(gateway, "/v1/chat/completions", { body: chat("gpt-test"), key: "sk-wrong" });
  assert.equal(res.status, 401);
  await openaiError(res);
  res = await call(gateway, "/v1/models", { method: "GET", key: "sk-wrong" });
  assert.equal(res.status, 401);
  res = await call(gateway, "/v1/models", { method: "GET", key: null, headers: { "x-api-key": GATEWAY_KEY } });
  assert.equal(res.status, 200);
  assert.equal((await mock.requests()).length, 0, "an unauthenticated request never reaches a vendor");
});

test("GET /v1/models lists names and aliases in OpenAI's list shape", async () => {
  const res = await call(gateway, "/v1/models", { method: "GET" });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.object, "list");
  const ids = body.data.map((m) => m.id);
  for (const id of ["gpt-test", "test-alias", "echo", "fallback-model"]) assert.ok(ids.includes(id), id);
  for (const m of body.data) {
    assert.equal(m.object, "model");
    assert.equal(typeof m.created, "number");
    assert.equal(typeof m.owned_by, "string");
  }
  const one = await call(gateway, "/v1/models/test-alias", { method: "GET" });
  assert.equal((await one.json()).id, "test-alias");
  const missing = await call(gateway, "/v1/models/nope", { method: "GET" });
  assert.equal(missing.status, 404);
});

test("404 model_not_found for an unknown model, 404 for an unknown path", async () => {
  let res = await call(gateway, "/v1/chat/completions", { body: chat("gpt-nonexistent") });
  assert.equal(res.status, 404);
  const error = await openaiError(res);
  assert.equal(error.code, "model_not_found");
  assert.equal(error.param, "model");
  res = await call(gateway, "/v1/nothing-here", { body: {} });
  assert.equal(res.status, 404);
  await openaiError(res);
});

test("400 for a body that is not JSON, and for one that breaks the schema", async () => {
  let res = await call(gateway, "/v1/chat/completions", { body: '{"model": "gpt-test", "messages": [' });
  assert.equal(res.status, 400);
  assert.equal((await openaiError(res)).code, "invalid_json");
  res = await call(gateway, "/v1/chat/completions", { body: { model: "gpt-test" } });
  assert.equal(res.status, 400);
  assert.match((await openaiError(res)).message, /messages/);
  res = await call(gateway, "/v1/chat/completions", { body: chat("gpt-test", { temperature: "hot" }) });
  assert.equal(res.status, 400);
  assert.equal((await openaiError(res)).param, "temperature");
  assert.equal((await mock.requests()).length, 0);
});

test("no input makes the gateway fail: every odd body is a 4xx in OpenAI's shape", async () => {
  const deep = "[".repeat(100_000);
  const bodies = [
    "", "null", "42", '"text"', "[]", "{}", deep, '{"model": null, "messages": null}',
    '{"model": "gpt-test", "messages": [{"role": "user", "content": 12}]}',
    '{"model": "gpt-test", "messages": [{"role": "user", "content": [{"type": "hologram"}]}]}',
    '{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
    '{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "n": 1e309}',
    '{"model": "\u0000", "messages": [{"role": "user", "content": "x"}]}',
    Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]),
  ];
  for (const body of bodies) {
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${GATEWAY_KEY}`, "content-type": "application/json" },
      body,
    });
    assert.ok(res.status >= 400 && res.status < 500, `${String(body).slice(0, 40)} -> ${res.status}`);
    await openaiError(res);
  }
  const health = await fetch(`${gateway.url}/health`);
  assert.equal(health.status, 200, "the worker is still up");
});

test("405 for the wrong method, with Allow", async () => {
  const res = await call(gateway, "/v1/chat/completions", { method: "GET" });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("allow"), "POST, OPTIONS");
  assert.equal((await openaiError(res)).code, "method_not_allowed");
  const put = await call(gateway, "/v1/models", { method: "PUT", body: {} });
  assert.equal(put.status, 405);
});

test("413 for a body over the limit, declared or streamed", async () => {
  const big = JSON.stringify(chat("gpt-test", { padding: "x".repeat(MAX_BODY_BYTES) }));
  let res = await call(gateway, "/v1/chat/completions", { body: big });
  assert.equal(res.status, 413);
  assert.equal((await openaiError(res)).code, "request_too_large");
  // Without Content-Length (chunked): the gateway counts while the body streams in, and may
  // answer before the client has finished sending, so the answer is read as soon as it comes.
  const { status, body } = await new Promise((resolve, reject) => {
    const req = http.request(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${GATEWAY_KEY}`, "content-type": "application/json", "transfer-encoding": "chunked" },
    });
    req.on("response", (response) => {
      let text = "";
      response.on("data", (d) => (text += d));
      response.on("end", () => resolve({ status: response.statusCode, body: text }));
      response.on("error", () => resolve({ status: response.statusCode, body: text }));
    });
    req.on("error", (e) => setTimeout(() => reject(e), 500));
    for (let i = 0; i < 8; i++) req.write("x".repeat(MAX_BODY_BYTES / 4));
    req.end();
  });
  assert.equal(status, 413);
  assert.equal(JSON.parse(body).error.code, "request_too_large");
  assert.equal((await mock.requests()).length, 0);
});

test("502 when the vendor cannot be reached", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: chat("down-model") });
  assert.equal(res.status, 502);
  assert.equal((await openaiError(res)).code, "upstream_unreachable");
});

test("504 when the vendor does not answer within the provider's timeout", async () => {
  await mock.fault({ match: { model: "vendor-slow" }, first_byte_delay_ms: TIMEOUT_MS * 4 });
  const started = Date.now();
  const res = await call(gateway, "/v1/chat/completions", { body: chat("slow-model") });
  const elapsed = Date.now() - started;
  assert.equal(res.status, 504);
  assert.equal((await openaiError(res)).code, "upstream_timeout");
  assert.ok(elapsed >= TIMEOUT_MS - 100 && elapsed < TIMEOUT_MS * 3, `answered after ${elapsed} ms`);
});

test("a vendor's 400 comes back as is, after a single attempt", async () => {
  await mock.fault({
    match: { model: "vendor-gpt" },
    status: 400,
    body: { error: { message: "Invalid 'messages[0]': bad.", type: "invalid_request_error", param: "messages[0]", code: "invalid_value" } },
  });
  const res = await call(gateway, "/v1/chat/completions", { body: chat("gpt-test") });
  assert.equal(res.status, 400);
  const error = await openaiError(res);
  assert.equal(error.code, "invalid_value");
  assert.equal(error.param, "messages[0]");
  assert.equal((await mock.requests()).length, 1);
});

test("an unreachable first target falls over to the next", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: chat("fallback-model") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-attempts"), "2");
  assert.equal(res.headers.get("x-switchyard-model"), "vendor-fallback");
  assert.match(res.headers.get("x-switchyard-fallbacks"), /down\/vendor-down=upstream_unreachable/);
});

test("the vendor key never appears in an answer, even when the vendor echoes it", async () => {
  await mock.fault({
    match: { model: "vendor-gpt" },
    times: 1,
    status: 401,
    body: { error: { message: `Incorrect API key provided: ${VENDOR_KEY}.`, type: "invalid_request_error", code: "invalid_api_key" } },
  });
  let res = await call(gateway, "/v1/chat/completions", { body: chat("gpt-test") });
  assert.equal(res.status, 502);
  assert.ok(!(await everything(res)).includes(VENDOR_KEY.slice(0, 12)));
  await mock.fault({ match: { model: "vendor-gpt" }, times: 1, status: 403, body: `forbidden for key ${VENDOR_KEY}` });
  res = await call(gateway, "/v1/chat/completions", { body: chat("gpt-test") });
  assert.equal(res.status, 502, "a vendor's 403 on the gateway's key is the operator's problem");
  assert.equal((await openaiError(res.clone())).code, "upstream_auth_failed");
  assert.ok(!(await everything(res)).includes(VENDOR_KEY));
  res = await call(gateway, "/v1/chat/completions", { body: chat("gpt-test") });
  assert.ok(!(await everything(res)).includes(VENDOR_KEY));
});

test("GET /admin/health shows each target's record, behind the admin token", async () => {
  await call(gateway, "/v1/chat/completions", { body: chat("gpt-test") }).then((r) => r.text());
  let res = await call(gateway, "/admin/health", { method: "GET" });
  assert.equal(res.status, 401, "a gateway key is not an admin token");
  // Outcomes are reported after the response; give the report a moment to land.
  let record;
  for (let i = 0; i < 40 && !record; i++) {
    res = await call(gateway, "/admin/health", { method: "GET", key: ADMIN_TOKEN });
    assert.equal(res.status, 200);
    record = (await res.json()).find((r) => r.target === "upstream/vendor-gpt" && r.successes > 0);
    if (!record) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(record, "upstream/vendor-gpt has a record");
  assert.equal(typeof record.latency_ewma_ms, "number");
  const down = await call(gateway, "/admin/health", { method: "GET", key: ADMIN_TOKEN }).then((r) => r.json());
  const unreachable = down.find((r) => r.target === "down/vendor-down");
  assert.ok(unreachable.failures > 0 && unreachable.last_error === "upstream_unreachable");
});

test("CORS preflight is answered", async () => {
  const res = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: "OPTIONS",
    headers: { origin: "https://app.example", "access-control-request-method": "POST" },
  });
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.match(res.headers.get("access-control-allow-headers"), /authorization/);
});
