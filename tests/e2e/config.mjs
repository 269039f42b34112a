// The configuration the end-to-end tests run the gateway with, around one mock-upstream.

import { createServer } from "node:net";
import { GATEWAY_KEY_SHA256 } from "./harness.mjs";

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export const MAX_BODY_BYTES = 65536;
export const TIMEOUT_MS = 1500;
export const BREAKER_COOLDOWN_MS = 1500;

export function testConfig(mock, deadPort) {
  return {
    providers: {
      upstream: { kind: "openai", base_url: `${mock.url}/v1`, api_key_secret: "UPSTREAM_KEY", timeout_ms: TIMEOUT_MS },
      keyless: { kind: "openai", base_url: `${mock.url}/v1`, headers: { "x-extra-header": "configured" } },
      down: { kind: "openai", base_url: `http://127.0.0.1:${deadPort}/v1`, api_key_secret: "UPSTREAM_KEY" },
      builtin: { kind: "mock" },
      claude: { kind: "anthropic", base_url: `${mock.url}/v1`, api_key_secret: "ANTHROPIC_KEY", timeout_ms: TIMEOUT_MS },
      azure: { kind: "azure", base_url: mock.url, api_version: "2024-10-21", api_key_secret: "AZURE_KEY", timeout_ms: TIMEOUT_MS },
      google: { kind: "gemini", base_url: `${mock.url}/v1beta`, api_key_secret: "GEMINI_KEY", timeout_ms: TIMEOUT_MS },
      // OpenAI's Responses API served by the vendor: Responses clients pass through; one keeps
      // what the client stores at the vendor, the other is told not to.
      native: { kind: "openai", base_url: `${mock.url}/v1`, api_key_secret: "UPSTREAM_KEY", timeout_ms: TIMEOUT_MS, responses_api: true, forward_store: true },
      "native-private": { kind: "openai", base_url: `${mock.url}/v1`, api_key_secret: "UPSTREAM_KEY", timeout_ms: TIMEOUT_MS, responses_api: true },
    },
    models: [
      { name: "gpt-test", aliases: ["test-alias"], targets: [{ provider: "upstream", model: "vendor-gpt" }] },
      { name: "slow-model", targets: [{ provider: "upstream", model: "vendor-slow" }] },
      { name: "down-model", targets: [{ provider: "down", model: "vendor-down" }] },
      {
        name: "fallback-model",
        targets: [
          { provider: "down", model: "vendor-down" },
          { provider: "upstream", model: "vendor-fallback" },
        ],
      },
      { name: "local-llama", targets: [{ provider: "keyless", model: "llama3" }] },
      { name: "echo", targets: [{ provider: "builtin", model: "mock-1" }] },
      { name: "claude-sonnet", targets: [{ provider: "claude", model: "claude-sonnet-4-5" }] },
      // Its own target, so that the errors injected for it keep no other test's target out.
      { name: "claude-errors", targets: [{ provider: "claude", model: "claude-sonnet-4-5-errors" }] },
      { name: "gemini-flash", targets: [{ provider: "google", model: "gemini-2.5-flash" }] },
      { name: "azure-gpt", targets: [{ provider: "azure", model: "gpt4o-prod" }] },
      { name: "failover", targets: [{ provider: "upstream", model: "vendor-primary" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "rate-limited", targets: [{ provider: "upstream", model: "vendor-limited" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "slow-primary", targets: [{ provider: "upstream", model: "vendor-sluggish" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "stream-failover", targets: [{ provider: "upstream", model: "vendor-stream-primary" }, { provider: "claude", model: "claude-haiku-4-5" }] },
      { name: "breaker", targets: [{ provider: "upstream", model: "vendor-flaky" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "all-down", targets: [{ provider: "down", model: "vendor-gone" }, { provider: "upstream", model: "vendor-broken" }] },
      { name: "load", targets: [{ provider: "upstream", model: "vendor-load-primary" }, { provider: "upstream", model: "vendor-load-backup" }] },
      {
        name: "weighted",
        strategy: "weighted",
        targets: [{ provider: "upstream", model: "vendor-w1", weight: 1 }, { provider: "upstream", model: "vendor-w3", weight: 3 }],
      },
      { name: "latency-routed", strategy: "latency", targets: [{ provider: "upstream", model: "vendor-lat-slow" }, { provider: "upstream", model: "vendor-lat-fast" }] },
      { name: "deadline", deadline_ms: 1000, targets: [{ provider: "upstream", model: "vendor-dl1" }, { provider: "upstream", model: "vendor-dl2" }] },
      { name: "retrying", max_attempts: 3, targets: [{ provider: "upstream", model: "vendor-retry" }] },
      { name: "cost-routed", strategy: "cost", targets: [{ provider: "upstream", model: "vendor-pricey" }, { provider: "upstream", model: "vendor-cheap" }] },
      {
        name: "cascade",
        strategy: "cascade",
        max_simple_tokens: 500,
        targets: [{ provider: "upstream", model: "vendor-small", tier: "simple" }, { provider: "upstream", model: "vendor-large", tier: "complex" }],
      },
      { name: "small-context", targets: [{ provider: "upstream", model: "vendor-tiny-context" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "only-small-context", targets: [{ provider: "upstream", model: "vendor-tiny-context" }] },
      { name: "hedged", hedge_after_ms: 200, targets: [{ provider: "upstream", model: "vendor-hedge-slow" }, { provider: "upstream", model: "vendor-hedge-fast" }] },
      { name: "slow-counted", slow_ms: 100, targets: [{ provider: "upstream", model: "vendor-slowish" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "first-byte-route", first_byte_timeout_ms: 300, targets: [{ provider: "upstream", model: "vendor-fb" }, { provider: "upstream", model: "vendor-backup" }] },
      { name: "total-route", total_timeout_ms: 600, targets: [{ provider: "upstream", model: "vendor-total" }] },
      { name: "embed-openai", targets: [{ provider: "upstream", model: "text-embedding-3-small" }] },
      { name: "embed-gemini", targets: [{ provider: "google", model: "gemini-embedding-001" }] },
      { name: "claude-strict", strict: true, targets: [{ provider: "claude", model: "claude-haiku-4-5" }] },
      { name: "gpt-native", targets: [{ provider: "native", model: "vendor-native" }] },
      { name: "gpt-native-private", targets: [{ provider: "native-private", model: "vendor-native-private" }] },
      { name: "gpt-native-tools", allow_params: ["server_tools"], targets: [{ provider: "native", model: "vendor-native-tools" }] },
      { name: "native-failover", targets: [{ provider: "native", model: "vendor-native-flaky" }, { provider: "claude", model: "claude-haiku-4-5" }] },
      // Images and audio, for the Python SDKs' checks (the media tests have their own configuration).
      { name: "py-image", targets: [{ provider: "google", model: "gemini-2.5-flash-image" }] },
      { name: "py-tts", targets: [{ provider: "upstream", model: "tts-1" }] },
      { name: "py-whisper", targets: [{ provider: "upstream", model: "whisper-1" }] },
    ],
    keys: [{ name: "test", sha256: GATEWAY_KEY_SHA256 }],
    limits: { max_body_bytes: MAX_BODY_BYTES },
    // Small and fast, so that tests see breakers open and close; no rate trips (min_volume).
    catalog: {
      "vendor-cheap": { input: 0.1, output: 0.2, vision: false },
      "vendor-pricey": { input: 5, output: 15 },
      "vendor-tiny-context": { context_window: 200 },
    },
    health: { breaker: { consecutive_failures: 3, cooldown_ms: BREAKER_COOLDOWN_MS, min_volume: 100000 } },
  };
}
