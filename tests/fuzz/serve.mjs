// The gateway the fuzz stage runs against: mock-upstream (the vendor stand-in) and the built
// worker in workerd, through tests/e2e/harness.mjs, with a configuration that serves the model
// names OpenAI's document uses in its examples, on every provider kind.
//
// Prints one JSON line on stdout once both answer:
//   {"url", "workerd_pid", "mock_pid", "baseline_fds", "chat_models", "embedding_models", "workerd_log"}
// then reads commands on stdin, one a line:
//   fds      -> {"fds": N}                     the workerd process's open descriptors now
//   settle   -> {"baseline", "peak", "after"}  after waiting for the count to stop falling
// and stops both processes (by their own handles, so by PID) on stdin's end, SIGTERM or SIGINT.
// workerd's stdout and stderr go to a log file, of which only the first LOG_CAP bytes are kept:
// a run that makes the worker log on every request cannot fill the disk or the terminal.

import { closeSync, openSync, readdirSync, readFileSync, writeSync } from "node:fs";
import { createInterface } from "node:readline";
import { GATEWAY_KEY_SHA256, VENDOR_KEY, call, startGateway, startMock } from "../e2e/harness.mjs";

const LOG_CAP = Number(process.env.FUZZ_LOG_CAP ?? 256 * 1024);
const logPath = process.env.FUZZ_WORKERD_LOG ?? "/dev/null";
const TIMEOUT_MS = 10_000;

// Public name -> [provider, vendor model]. The names are the ones OpenAI's document gives as
// examples and enum values, so that generated requests reach the providers.
const CHAT = {
  "gpt-4o": ["openai", "gpt-4o"],
  "gpt-4o-mini": ["builtin", "mock-1"],
  "gpt-5.4": ["openai", "gpt-5.4"],
  "gpt-4.1": ["azure", "gpt41-prod"],
  "o3-mini": ["claude", "claude-sonnet-4-5"],
  "gpt-5": ["google", "gemini-2.5-flash"],
  "gpt-5-mini": [["claude", "claude-haiku-4-5"], ["openai", "gpt-5-mini"]],
};
const EMBEDDINGS = {
  "text-embedding-3-small": ["openai", "text-embedding-3-small"],
  "text-embedding-3-large": ["azure", "embed-prod"],
  "text-embedding-ada-002": ["google", "gemini-embedding-001"],
};

// The image and speech models, on every kind that serves the task.
const IMAGES = {
  "gpt-image-1": ["openai", "gpt-image-1"],
  "dall-e-3": ["azure", "gpt-image-1"],
  "dall-e-2": ["google", "gemini-2.5-flash-image"],
  "gpt-image-1-mini": ["google", "imagen-4.0-generate-001"],
  "gpt-image-1.5": ["builtin", "mock-image"],
};
const SPEECH = {
  "tts-1": ["openai", "tts-1"],
  "tts-1-hd": ["google", "gemini-2.5-flash-preview-tts"],
  "gpt-4o-mini-tts": ["builtin", "mock-speech"],
};

function targets(spec) {
  const list = Array.isArray(spec[0]) ? spec : [spec];
  return list.map(([provider, model]) => ({ provider, model }));
}

export function fuzzConfig(mock) {
  return {
    providers: {
      openai: { kind: "openai", base_url: `${mock.url}/v1`, api_key_secret: "UPSTREAM_KEY", timeout_ms: TIMEOUT_MS },
      builtin: { kind: "mock" },
      claude: { kind: "anthropic", base_url: `${mock.url}/v1`, api_key_secret: "ANTHROPIC_KEY", timeout_ms: TIMEOUT_MS },
      azure: { kind: "azure", base_url: mock.url, api_version: "2024-10-21", api_key_secret: "AZURE_KEY", timeout_ms: TIMEOUT_MS },
      google: { kind: "gemini", base_url: `${mock.url}/v1beta`, api_key_secret: "GEMINI_KEY", timeout_ms: TIMEOUT_MS },
    },
    models: Object.entries({ ...CHAT, ...EMBEDDINGS, ...IMAGES, ...SPEECH }).map(([name, spec]) => ({ name, targets: targets(spec) })),
    keys: [{ name: "fuzz", sha256: GATEWAY_KEY_SHA256 }],
  };
}

/** The child of this process whose program is `name` (Miniflare spawns workerd directly). */
function childPid(name) {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== process.pid) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmdline.split("\0")[0].endsWith(`/${name}`)) return Number(entry);
    } catch {
      // The process ended while it was looked at.
    }
  }
  return null;
}

const fds = (pid) => readdirSync(`/proc/${pid}/fd`).length;

// workerd's output, capped.
const logFd = openSync(logPath, "w");
const logged = { bytes: 0, kept: 0 };
function keep(chunk) {
  logged.bytes += chunk.length;
  const room = LOG_CAP - logged.kept;
  if (room <= 0) return;
  const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
  writeSync(logFd, part);
  logged.kept += part.length;
  if (logged.kept >= LOG_CAP) writeSync(logFd, `\n[fuzz: workerd log cut at ${LOG_CAP} bytes]\n`);
}
const handleRuntimeStdio = (stdout, stderr) => {
  stdout.on("data", keep);
  stderr.on("data", keep);
};

const mock = await startMock(["--no-record"]);
let gateway;
let sampler;
let stopping = false;
async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  clearInterval(sampler);
  try {
    await gateway?.stop();
  } finally {
    await mock.stop();
    process.stderr.write(`serve: workerd wrote ${logged.bytes} bytes of log, ${logged.kept} kept (${logPath})\n`);
    closeSync(logFd);
    process.exit(code);
  }
}
process.on("SIGTERM", () => stop(0));
process.on("SIGINT", () => stop(0));

try {
  gateway = await startGateway({
    config: fuzzConfig(mock),
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY: VENDOR_KEY, AZURE_KEY: VENDOR_KEY, GEMINI_KEY: VENDOR_KEY },
    miniflare: { handleRuntimeStdio },
  });
} catch (e) {
  process.stderr.write(`serve: the gateway did not start: ${e.stack ?? e}\n`);
  await stop(1);
}
const pid = childPid("workerd");
if (!pid) {
  process.stderr.write("serve: no workerd process among this process's children\n");
  await stop(1);
}

// Warm up every path once (the isolate, the Durable Objects, a connection to the mock), so
// that the baseline counts what a serving gateway holds, not what a cold one does.
for (const [path, body] of [
  ["/v1/models", undefined],
  ["/v1/chat/completions", { model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }],
  ["/v1/chat/completions", { model: "o3-mini", messages: [{ role: "user", content: "hi" }] }],
  ["/v1/embeddings", { model: "text-embedding-3-small", input: "hi" }],
]) {
  const res = await call(gateway, path, { method: body ? "POST" : "GET", body });
  await res.arrayBuffer();
  if (res.status !== 200) {
    process.stderr.write(`serve: warm-up ${path} answered ${res.status}\n`);
    await stop(1);
  }
}
await new Promise((r) => setTimeout(r, 1000));
const baseline = fds(pid);
let peak = baseline;
sampler = setInterval(() => {
  try {
    peak = Math.max(peak, fds(pid));
  } catch {
    // workerd is gone: the next command says so.
  }
}, 200);

console.log(
  JSON.stringify({
    url: gateway.url,
    workerd_pid: pid,
    mock_pid: childPid("mock-upstream"),
    baseline_fds: baseline,
    chat_models: Object.keys(CHAT),
    embedding_models: Object.keys(EMBEDDINGS),
    image_models: Object.keys(IMAGES),
    speech_models: Object.keys(SPEECH),
    workerd_log: logPath,
  }),
);

/** Waits until the count has not fallen for 3 s (at most 20 s): kept-alive sockets close late. */
async function settle() {
  let last = fds(pid);
  let steady = 0;
  for (let waited = 0; waited < 20_000 && steady < 3_000; waited += 500) {
    await new Promise((r) => setTimeout(r, 500));
    const now = fds(pid);
    steady = now < last ? 0 : steady + 500;
    last = Math.min(last, now);
  }
  return fds(pid);
}

const commands = createInterface({ input: process.stdin });
commands.on("line", async (line) => {
  try {
    const command = line.trim();
    if (command === "fds") console.log(JSON.stringify({ fds: fds(pid) }));
    else if (command === "settle") console.log(JSON.stringify({ baseline, peak, after: await settle() }));
  } catch (e) {
    console.log(JSON.stringify({ error: String(e) }));
  }
});
commands.on("close", () => stop(0));
