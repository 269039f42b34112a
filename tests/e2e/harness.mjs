// End-to-end harness: mock-upstream (the native vendor stand-in) and the built worker running in
// workerd through Miniflare, both on free loopback ports, both stopped when the test file ends,
// passes or fails.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { Miniflare } from "miniflare";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, "target");
export const MOCK_BIN = process.env.MOCK_UPSTREAM_BIN ?? join(targetDir, "debug", "mock-upstream");

// The gateway key every test uses, and its SHA-256 as the configuration stores it.
export const GATEWAY_KEY = "sk-switchyard-test-key";
export const GATEWAY_KEY_SHA256 = "2a1cbd0e9daf7b72e55989db62de201a88d4eb0a0ec7432150b025f45b90dc67";
export const VENDOR_KEY = "sk-vendor-secret-do-not-leak-1234";
export const ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef";

const running = new Set();
// If the test process dies another way, the child must not outlive it.
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts mock-upstream on a free port; resolves to { url, port, stop, ...control }. */
export async function startMock(args = []) {
  const child = spawn(MOCK_BIN, ["--port", "0", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  running.add(child);
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("mock-upstream did not start within 10 s")), 10_000);
    child.once("exit", (code) => reject(new Error(`mock-upstream exited with ${code} (built? ${MOCK_BIN})`)));
    lines.on("line", (line) => {
      const match = /listening on (http:\/\/\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  const control = async (method, path, body) => {
    const res = await fetch(`${url}/_mock/${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`mock control ${method} ${path}: ${res.status} ${await res.text()}`);
    return res.json();
  };
  return {
    url,
    port: Number(new URL(url).port),
    requests: () => control("GET", "requests"),
    fault: (fault) => control("POST", "faults", fault),
    reset: () => control("POST", "reset"),
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await Promise.race([once(child, "exit"), new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      running.delete(child);
    },
  };
}

/**
 * Starts the built worker (build/index.js) in workerd with the bindings of wrangler.toml.
 * `config` is the configuration document (an object), `secrets` the Workers secrets;
 * `miniflare` more Miniflare options (the fuzz stage's `handleRuntimeStdio`, say).
 */
export async function startGateway({ config, secrets = {}, persistDir, miniflare = {} } = {}) {
  const stateDir = persistDir ?? mkdtempSync(join(tmpdir(), "switchyard-e2e-"));
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    scriptPath: join(root, "build", "index.js"),
    compatibilityDate: "2026-04-20",
    bindings: { ...(config ? { SWITCHYARD_CONFIG: JSON.stringify(config) } : {}), ...secrets },
    kvNamespaces: ["SWITCHYARD_KV"],
    durableObjects: {
      HEALTH: { className: "ProviderHealth", useSQLite: true },
      LEDGER: { className: "Ledger", useSQLite: true },
      RESPONSES: { className: "ResponseStore", useSQLite: true },
    },
    kvPersist: join(stateDir, "kv"),
    durableObjectsPersist: join(stateDir, "do"),
    ...miniflare,
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return {
    url,
    /** The KV namespace as the worker sees it, to look at what it stored. */
    kv: () => mf.getKVNamespace("SWITCHYARD_KV"),
    async stop() {
      await mf.dispose();
      if (!persistDir) rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** fetch against the gateway with the test key, JSON in. */
export async function call(gateway, path, { method = "POST", body, key = GATEWAY_KEY, headers = {} } = {}) {
  const send = () =>
    fetch(`${gateway.url}${path}`, {
      method,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
  try {
    return await send();
  } catch (e) {
    // A kept-alive connection the runtime closed just as the client reused it fails before the
    // request is sent; undici retries that only for idempotent methods. Once, said aloud.
    const code = e.cause?.code;
    if (!["UND_ERR_SOCKET", "ECONNRESET", "EPIPE"].includes(code)) throw e;
    console.error(`# call ${method} ${path}: connection closed under the request (${code}); sent again`);
    return send();
  }
}

/** Asserts an OpenAI-shaped error body and returns its `error` object. */
export async function openaiError(res) {
  const body = await res.json();
  const error = body.error;
  if (!error || typeof error.message !== "string" || !("type" in error) || !("param" in error) || !("code" in error)) {
    throw new Error(`not an OpenAI-shaped error: ${JSON.stringify(body)}`);
  }
  return error;
}

/** The data events of an SSE body, in order, `[DONE]` included as the string. */
export function sseEvents(text) {
  return text
    .split(/\r?\n\r?\n/)
    .map((block) => block.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n"))
    .filter((data) => data.length > 0)
    .map((data) => (data === "[DONE]" ? data : JSON.parse(data)));
}
