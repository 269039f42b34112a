// The official Python SDKs (PyPI `openai` and `anthropic`, pinned, in a venv made by
// scripts/sdk-venv.sh) against the gateway, unmodified: Anthropic's Messages and OpenAI's
// Responses and Chat Completions, streamed and not, with tools, on every vendor kind, and images
// and audio
// (tests/sdk/clients.py). Each check the script makes is one assertion here.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import { startMock, startGateway, root, GATEWAY_KEY, VENDOR_KEY } from "./harness.mjs";
import { testConfig, closedPort } from "./config.mjs";

let mock;
let gateway;
let results = [];

before(async () => {
  const python = execFileSync("bash", [join(root, "scripts", "sdk-venv.sh")], { encoding: "utf8", timeout: 600_000 }).trim();
  mock = await startMock();
  gateway = await startGateway({
    config: testConfig(mock, await closedPort()),
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY: "sk-ant-vendor-secret-5678", GEMINI_KEY: "AIza-gemini-vendor-key-0000" },
  });
  const child = spawn(python, [join(root, "tests", "sdk", "clients.py"), gateway.url, GATEWAY_KEY], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  const killer = setTimeout(() => child.kill("SIGKILL"), 180_000);
  await new Promise((resolve) => child.on("exit", resolve));
  clearTimeout(killer);
  results = out.split("\n").filter(Boolean).map((line) => JSON.parse(line));
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

test("the Python SDKs ran every check", () => {
  // 5 checks a model on 5 models (gpt-native: Responses passed through), 2 tool checks on 4, 2
  // of images and audio, and 2 more.
  assert.equal(results.length, 5 * 5 + 4 * 2 + 2 + 2, results.map((r) => r.check).join("\n"));
});

test("every check of the Python SDKs passes", () => {
  const failed = results.filter((r) => !r.ok);
  assert.deepEqual(failed.map((r) => `${r.check}: ${r.detail}`), []);
});
