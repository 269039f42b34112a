// An invalid configuration is reported with its path and reason, never as a crash.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway, call, openaiError, GATEWAY_KEY_SHA256 } from "./harness.mjs";

let gateway;

before(async () => {
  gateway = await startGateway({
    config: {
      providers: { p: { kind: "openai", base_url: "https://api.example.com/v1" } },
      models: [{ name: "m", targets: [{ provider: "q", model: "x" }] }],
      keys: [{ name: "k", sha256: GATEWAY_KEY_SHA256 }],
    },
  });
});

after(async () => gateway?.stop());

test("/health reports the invalid configuration with its path", async () => {
  const res = await fetch(`${gateway.url}/health`);
  assert.equal(res.status, 503);
  const body = await res.json();
  assert.equal(body.status, "error");
  assert.match(body.config, /models\[0\]\.targets\[0\]\.provider: unknown provider "q"/);
});

test("requests get a 500 config_invalid naming the problem", async () => {
  const res = await call(gateway, "/v1/chat/completions", { body: { model: "m", messages: [{ role: "user", content: "hi" }] } });
  assert.equal(res.status, 500);
  const error = await openaiError(res);
  assert.equal(error.code, "config_invalid");
  assert.match(error.message, /models\[0\]\.targets\[0\]\.provider/);
});
