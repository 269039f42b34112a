// The configuration the images and audio tests run the gateway with: every target kind of each
// media task around one mock-upstream, failover pairs, a strict model, and a key with a tight
// budget.

import { createHash } from "node:crypto";
import { GATEWAY_KEY_SHA256, VENDOR_KEY } from "./harness.mjs";

export const TIGHT_KEY = "sk-switchyard-media-tight-budget";
export const MAX_BODY_BYTES = 65536;
export const MAX_UPLOAD_BYTES = 262144;
export const SECRETS = { UPSTREAM_KEY: VENDOR_KEY, AZURE_KEY: "azure-vendor-key-3456", GEMINI_KEY: "gemini-vendor-key-7890" };

const sha256 = (text) => createHash("sha256").update(text).digest("hex");

export function mediaConfig(mock, deadPort) {
  const t = (provider, model) => ({ provider, model });
  return {
    providers: {
      openai: { kind: "openai", base_url: `${mock.url}/v1`, api_key_secret: "UPSTREAM_KEY", timeout_ms: 3000 },
      azure: { kind: "azure", base_url: mock.url, api_version: "2025-04-01-preview", api_key_secret: "AZURE_KEY", timeout_ms: 3000 },
      google: { kind: "gemini", base_url: `${mock.url}/v1beta`, api_key_secret: "GEMINI_KEY", timeout_ms: 3000 },
      down: { kind: "openai", base_url: `http://127.0.0.1:${deadPort}/v1`, api_key_secret: "UPSTREAM_KEY" },
      claude: { kind: "anthropic", base_url: `${mock.url}/v1`, api_key_secret: "UPSTREAM_KEY" },
      builtin: { kind: "mock" },
    },
    models: [
      { name: "gpt-image", targets: [t("openai", "gpt-image-1")] },
      { name: "dalle", targets: [t("openai", "dall-e-3")] },
      { name: "azure-image", targets: [t("azure", "gpt-image-1")] },
      { name: "gemini-image", targets: [t("google", "gemini-2.5-flash-image")] },
      { name: "gemini-3-image", targets: [t("google", "gemini-3-pro-image-preview")] },
      { name: "imagen", targets: [t("google", "imagen-4.0-generate-001")] },
      { name: "image-strict", strict: true, targets: [t("google", "gemini-2.5-flash-image")] },
      { name: "image-failover", targets: [t("openai", "gpt-image-1-failing"), t("google", "gemini-2.5-flash-image")] },
      { name: "image-down", targets: [t("down", "gpt-image-1"), t("azure", "gpt-image-1")] },
      { name: "image-mixed", targets: [t("claude", "claude-sonnet-4-5"), t("google", "imagen-4.0-fast-generate-001")] },
      { name: "demo-image", targets: [t("builtin", "mock-image")] },
      { name: "words", targets: [t("claude", "claude-sonnet-4-5")] },
      { name: "tts", targets: [t("openai", "tts-1")] },
      { name: "azure-tts", targets: [t("azure", "tts-1")] },
      { name: "gemini-tts", targets: [t("google", "gemini-2.5-flash-preview-tts")] },
      { name: "tts-slow", targets: [t("openai", "tts-1-slow")] },
      { name: "tts-total", total_timeout_ms: 600, targets: [t("openai", "tts-1-total")] },
      { name: "tts-failover", targets: [t("down", "tts-1"), t("openai", "tts-1-hd")] },
      { name: "tts-to-gemini", targets: [t("openai", "tts-1-failing"), t("google", "gemini-2.5-flash-preview-tts")] },
      { name: "demo-tts", targets: [t("builtin", "mock-speech")] },
      { name: "whisper", targets: [t("openai", "whisper-1")] },
      { name: "transcribe", targets: [t("openai", "gpt-4o-transcribe")] },
      { name: "azure-whisper", targets: [t("azure", "whisper-1")] },
      { name: "gemini-listen", targets: [t("google", "gemini-2.5-flash")] },
      { name: "listen-failover", targets: [t("openai", "whisper-1-failing"), t("google", "gemini-2.5-flash")] },
      { name: "demo-listen", targets: [t("builtin", "mock-transcribe")] },
    ],
    keys: [
      { name: "test", sha256: GATEWAY_KEY_SHA256 },
      { name: "tight", sha256: sha256(TIGHT_KEY), models: ["gpt-image", "tts", "whisper"], budgets: [{ window: "day", limit_usd: 0.1 }] },
    ],
    limits: { max_body_bytes: MAX_BODY_BYTES, max_upload_bytes: MAX_UPLOAD_BYTES },
    health: { breaker: { consecutive_failures: 50, min_volume: 100000 } },
  };
}

/** A 16x16 PNG, for edits. */
export const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAFklEQVR42mOQqzhBEmIY1TCqYfhqAABoaV4QiY2AzgAAAABJRU5ErkJggg==",
  "base64",
);

/** `seconds` of silence as a 16 kHz mono 16-bit WAV file. */
export function wav(seconds) {
  const data = Math.round(seconds * 16000) * 2;
  const out = Buffer.alloc(44 + data);
  out.write("RIFF", 0);
  out.writeUInt32LE(36 + data, 4);
  out.write("WAVEfmt ", 8);
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(1, 20);
  out.writeUInt16LE(1, 22);
  out.writeUInt32LE(16000, 24);
  out.writeUInt32LE(32000, 28);
  out.writeUInt16LE(2, 32);
  out.writeUInt16LE(16, 34);
  out.write("data", 36);
  out.writeUInt32LE(data, 40);
  return out;
}

/** The requests mock-upstream received whose path contains `fragment`. */
export async function received(mock, fragment) {
  return (await mock.requests()).filter((r) => r.path.includes(fragment));
}
