// An invalid configuration is reported with its path and reason, never as a crash.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway, call, openaiError, GATEWAY_KEY_SHA256, ADMIN_TOKEN } from "./harness.mjs";

let gateway;

before(async () => {
  gateway = await startGateway({
    config: {
      providers: { p: { kind: "openai", base_url: "https://api.example.com/v1" } },
      models: [{ name: "m", targets: [{ provider: "q", model: "x" }] }],
      keys: [{ name: "k", sha256: GATEWAY_KEY_SHA256 }],
    },
    secrets: { ADMIN_TOKEN },
  });
});

after(async () => gateway?.stop());

test("/health says only that the configuration is invalid, with an error id; the reason needs the admin token", async () => {
  const res = await fetch(`${gateway.url}/health`);
  assert.equal(res.status, 503);
  const body = await res.json();
  assert.equal(body.status, "error");
  assert.match(body.error_id, /^cfg_[0-9a-f]{12}$/);
  assert.equal(body.config, undefined, "no detail of the configuration in public");
  assert.doesNotMatch(JSON.stringify(body), /targets|provider/);

  for (const path of ["/health", "/admin/health"]) {
    const detailed = await fetch(`${gateway.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(detailed.status, 503, path);
    const detail = await detailed.json();
    assert.equal(detail.error_id, body.error_id, "the same problem, the same id");
    assert.match(detail.config, /models\[0\]\.targets\[0\]\.provider: unknown provider "q"/, path);
  }
});

test("requests get a 500 config_invalid with the error id, not the reason", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: { model: "m", messages: [{ role: "user", content: "hi" }] } });
  assert.equal(res.status, 500);
  const error = await openaiError(res);
  assert.equal(error.code, "config_invalid");
  assert.match(error.message, /error id cfg_[0-9a-f]{12}/);
  assert.doesNotMatch(error.message, /targets|unknown provider/);
});
