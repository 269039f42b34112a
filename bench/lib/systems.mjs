// The systems measured side by side, all on the same mock-upstream: how each is started, how
// long it takes to give its first good answer, and what each scenario's request looks like.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startProcess, waitReady, freePort } from "./processes.mjs";
import { writeWorkerdConfig, gatewayModules } from "./workerd.mjs";
import { openaiBody, anthropicBody, responsesBody, checkAnswer } from "./scenarios.mjs";

// Keys: the gateway's own (checked against the sha256 in its configuration) and the ones the
// upstream is given (mock-upstream only checks they are present).
const GATEWAY_KEY = "sk-switchyard-bench";
const VENDOR_KEY = "sk-vendor-bench";
const OPENAI_MODEL = "gpt-4o-mini";
const ANTHROPIC_MODEL = "claude-sonnet-4-5";
// The public model names the gateways route (to the OpenAI-format and the Anthropic provider).
const PASS_MODEL = "gpt-4o-mini";
const TRANSLATED_MODEL = "claude-sonnet";
// The public model name routed to the provider that serves OpenAI's Responses API.
const RESPONSES_MODEL = "gpt-4o-mini-responses";

export const LITELLM_VERSION = "1.102.4";
export const PORTKEY_VERSION = "1.15.2";

const jsonHeaders = { "content-type": "application/json" };
const anthropicHeaders = { ...jsonHeaders, "x-api-key": VENDOR_KEY, "anthropic-version": "2023-06-01" };

/** A POST to `url` and whether its answer is a good one for the scenario. */
export async function probe(request, scenario, wire = "openai") {
  const res = await fetch(request.url, { method: "POST", headers: request.headers, body: request.body });
  const text = await res.text();
  if (res.status === 500 && text.includes("config_invalid")) {
    throw Object.assign(new Error(`config_invalid: ${text.slice(0, 300)}`), { fatal: true });
  }
  return checkAnswer(wire, scenario.stream, res.status, text) ?? true;
}

/** What the upstream itself is sent: the baseline for each scenario, and what the floor forwards. */
function upstreamRequest(base, scenario) {
  if (scenario.wire === "responses") {
    return { url: `${base}/v1/responses`, headers: { ...jsonHeaders, authorization: `Bearer ${VENDOR_KEY}` }, body: responsesBody(OPENAI_MODEL, scenario.stream) };
  }
  return scenario.wire === "openai"
    ? { url: `${base}/v1/chat/completions`, headers: { ...jsonHeaders, authorization: `Bearer ${VENDOR_KEY}` }, body: openaiBody(OPENAI_MODEL, scenario.stream) }
    : { url: `${base}/v1/messages`, headers: anthropicHeaders, body: anthropicBody(ANTHROPIC_MODEL, scenario.stream) };
}

/** What a client sends a gateway: OpenAI's format, or Anthropic's where the scenario says; the model picks the provider. */
function gatewayRequest(base, scenario, headers, translatedModel = TRANSLATED_MODEL) {
  const model = scenario.wire === "openai" ? PASS_MODEL : translatedModel;
  if (scenario.client === "responses") {
    return { url: `${base}/v1/responses`, headers: { ...jsonHeaders, ...headers }, body: responsesBody(RESPONSES_MODEL, scenario.stream) };
  }
  if (scenario.client === "anthropic") {
    const anthropic = { ...jsonHeaders, "anthropic-version": "2023-06-01", ...headers };
    return { url: `${base}/v1/messages`, headers: anthropic, body: anthropicBody(model, scenario.stream) };
  }
  return { url: `${base}/v1/chat/completions`, headers: { ...jsonHeaders, ...headers }, body: openaiBody(model, scenario.stream) };
}

/** The wire format of a system's answers: the baseline and the floor answer in the upstream's, a gateway in its client's. */
export const answerWire = (system, scenario) => (system.speaksUpstream ? scenario.wire : (scenario.client ?? "openai"));

// Switchyard's configuration: one OpenAI-format provider and one Anthropic provider on the
// mock, auth on (a key listed by its sha256), health on (it always is: the HEALTH Durable
// Object), and the budget ledger and rate limits on as in production when the build knows them.
function switchyardConfig(mockUrl, withLimits) {
  const key = { name: "bench", sha256: createHash("sha256").update(GATEWAY_KEY).digest("hex") };
  const config = {
    providers: {
      openai: { kind: "openai", base_url: `${mockUrl}/v1`, api_key_secret: "OPENAI_API_KEY" },
      anthropic: { kind: "anthropic", base_url: `${mockUrl}/v1`, api_key_secret: "ANTHROPIC_API_KEY" },
      "openai-responses": { kind: "openai", base_url: `${mockUrl}/v1`, api_key_secret: "OPENAI_API_KEY", responses_api: true },
    },
    models: [
      { name: PASS_MODEL, targets: [{ provider: "openai", model: OPENAI_MODEL }] },
      { name: TRANSLATED_MODEL, targets: [{ provider: "anthropic", model: ANTHROPIC_MODEL }] },
      { name: RESPONSES_MODEL, targets: [{ provider: "openai-responses", model: OPENAI_MODEL }] },
    ],
    keys: [key],
  };
  if (withLimits) {
    // Budgets (the ledger) and rate limits, high enough never to refuse a benchmark request.
    key.budgets = [{ window: "day", limit_usd: 1000 }];
    key.rate_limits = { rpm: 1_000_000, tpm: 1_000_000_000 };
    config.budgets = [{ window: "day", limit_usd: 100_000 }];
  }
  return config;
}

/**
 * Starts a worker under plain `workerd serve`; resolves when `probeRequest` is answered well.
 * With `count`, the runtime's own count of its invocations (bench/call-counter.js, a tail
 * worker) answers at `counterUrl`, and `answered` says how many requests of the start-up got an
 * answer (each an invocation the runtime will report).
 */
async function startWorkerd(ctx, name, { modules, bindings, durableObjects = [] }, probeRequest, scenario, { count = false } = {}) {
  const port = await freePort();
  const counter = count ? { port: await freePort(), path: join(ctx.root, "bench", "call-counter.js") } : undefined;
  const dir = join(ctx.work, `${name}-${port}`);
  mkdirSync(join(dir, "do"), { recursive: true });
  const file = writeWorkerdConfig({
    file: join(dir, "config.capnp"),
    port,
    modules,
    compatibilityDate: ctx.wrangler.compatibilityDate,
    bindings,
    durableObjects,
    stateDir: join(dir, "do"),
    counter,
  });
  const url = `http://127.0.0.1:${port}`;
  const proc = startProcess(name, ctx.workerd, ["serve", file], { logPath: join(dir, "workerd.log") });
  let answered = 0;
  const startupMs = await waitReady(
    proc,
    async () => {
      const verdict = await probe(probeRequest(url), scenario); // throws when there is no answer
      answered++;
      return verdict;
    },
    30_000,
  );
  return { proc, url, startupMs, ...(counter ? { counterUrl: `http://127.0.0.1:${counter.port}/`, answered } : {}) };
}

/** The counts of a system started with `count`: { "do <class> <kind>": n, "kv <kind>": n, "worker default fetch": n }. */
export async function readCounts(counterUrl) {
  const res = await fetch(counterUrl);
  if (!res.ok) throw new Error(`call counter: status ${res.status}`);
  return res.json();
}

export function makeSystems(ctx) {
  const floorRun = () => ({
    modules: [{ name: "floor.js", path: join(ctx.root, "bench", "floor.js"), kind: "esModule" }],
    bindings: [{ name: "UPSTREAM", text: ctx.mockUrl }],
  });
  const gatewayRun = (withLimits) => ({
    modules: gatewayModules(ctx.buildDir),
    bindings: [
      { name: "SWITCHYARD_CONFIG", text: JSON.stringify(switchyardConfig(ctx.mockUrl, withLimits)) },
      { name: "OPENAI_API_KEY", text: VENDOR_KEY },
      { name: "ANTHROPIC_API_KEY", text: VENDOR_KEY },
      ...ctx.wrangler.kvNamespaces.map((kv) => ({ name: kv.binding, kvNamespace: true })),
      ...ctx.wrangler.durableObjects.map((d) => ({ name: d.name, durableObjectNamespace: d.class_name })),
    ],
    durableObjects: ctx.wrangler.durableObjects.map((d) => ({ className: d.class_name, enableSql: ctx.wrangler.sqliteClasses.has(d.class_name) })),
  });
  const gatewayAuth = { authorization: `Bearer ${GATEWAY_KEY}` };
  // With `count`, a twin for counting the runtime's calls (see bench/call-counter.js), never timed.
  const startGateway = (name, withLimits, scenario, count) =>
    startWorkerd(ctx, count ? `${name}-counted` : name, gatewayRun(withLimits), (url) => gatewayRequest(url, scenario, gatewayAuth), scenario, { count });

  return [
    {
      id: "direct",
      label: "direct to mock-upstream",
      role: "baseline",
      speaksUpstream: true,
      // mock-upstream is already running; its CPU and memory are reported with it.
      start: async () => ({ proc: ctx.mockProc, url: ctx.mockUrl, startupMs: null }),
      request: (url, scenario) => upstreamRequest(url, scenario),
    },
    {
      id: "floor",
      label: "bare pass-through worker (workerd)",
      role: "floor",
      speaksUpstream: true,
      start: (scenario) => startWorkerd(ctx, "floor", floorRun(), (url) => upstreamRequest(url, scenario), scenario),
      request: (url, scenario) => upstreamRequest(url, scenario),
    },
    {
      // The gateway as it runs in production: budgets and rate limits on. Goals and ratios are its.
      id: "switchyard",
      label: "Switchyard (workerd)",
      role: "gateway",
      // Its Durable Object and KV calls are counted, on a twin instance (`start` with `count`).
      countable: true,
      async start(scenario, { count = false } = {}) {
        try {
          const started = await startGateway("switchyard", true, scenario, count);
          return { ...started, notes: ["budgets (ledger) and per-key rate limits configured"] };
        } catch (e) {
          // A build without the ledger refuses those configuration fields (GET /health and
          // every request answer config_invalid): measure it without them, and say so.
          if (!/config_invalid|unknown field/.test(e.message)) throw e;
          const reason = /unknown field `[^`]+`/.exec(e.message)?.[0] ?? "config_invalid";
          const started = await startGateway("switchyard", false, scenario, count);
          return { ...started, notes: [`budgets and rate limits left out: this build refuses them (${reason})`] };
        }
      },
      request: (url, scenario) => gatewayRequest(url, scenario, gatewayAuth),
    },
    {
      // The same build and configuration without budgets or rate limits (no ledger call for
      // admission, no settlement): the difference with the row above is what metering costs.
      id: "switchyard-unmetered",
      label: "Switchyard, no budgets or rate limits (workerd)",
      role: "gateway",
      // Its Durable Object and KV calls are counted, on a twin instance (`start` with `count`).
      countable: true,
      async start(scenario, { count = false } = {}) {
        const started = await startGateway("switchyard-unmetered", false, scenario, count);
        return { ...started, notes: ["the same key and providers, neither budgets nor rate limits configured"] };
      },
      request: (url, scenario) => gatewayRequest(url, scenario, gatewayAuth),
    },
    {
      id: "portkey",
      label: `Portkey gateway ${PORTKEY_VERSION} (Node ${process.versions.node})`,
      role: "peer",
      peer: true,
      async start(scenario) {
        const entry = join(ctx.root, "bench", "peers", "node_modules", "@portkey-ai", "gateway", "build", "start-server.js");
        if (!existsSync(entry)) throw new Error("not installed (bench/peers: npm ci)");
        const port = await freePort();
        const proc = startProcess("portkey", process.execPath, [entry, `--port=${port}`, "--headless"], {
          logPath: join(ctx.work, "portkey.log"),
          env: { NODE_ENV: "production" },
        });
        const url = `http://127.0.0.1:${port}`;
        const startupMs = await waitReady(proc, () => probe(this.request(url, scenario), scenario), 60_000);
        return { proc, url, startupMs, notes: ["@hono/node-server pinned to 1.13.8 (npm overrides) so that it streams"] };
      },
      request: (url, scenario) =>
        gatewayRequest(
          url,
          scenario,
          {
            authorization: `Bearer ${VENDOR_KEY}`,
            "x-portkey-provider": scenario.wire === "openai" ? "openai" : "anthropic",
            "x-portkey-custom-host": `${ctx.mockUrl}/v1`,
          },
          ANTHROPIC_MODEL, // Portkey routes by header, passing the vendor's model name through.
        ),
    },
    {
      id: "litellm",
      label: `LiteLLM proxy ${LITELLM_VERSION} (2 workers, no database)`,
      role: "peer",
      peer: true,
      async start(scenario) {
        const bin = join(ctx.litellmVenv, "bin", "litellm");
        if (!existsSync(bin)) throw new Error(`not installed (${ctx.litellmInstallError ?? "no venv"})`);
        const port = await freePort();
        const configPath = join(ctx.work, "litellm.yaml"); // absolute: its workers re-read it
        writeFileSync(
          configPath,
          [
            "model_list:",
            `  - model_name: ${PASS_MODEL}`,
            `    litellm_params: {model: "openai/${OPENAI_MODEL}", api_base: "${ctx.mockUrl}/v1", api_key: "${VENDOR_KEY}"}`,
            `  - model_name: ${TRANSLATED_MODEL}`,
            `    litellm_params: {model: "anthropic/${ANTHROPIC_MODEL}", api_base: "${ctx.mockUrl}", api_key: "${VENDOR_KEY}"}`,
            "general_settings:",
            `  master_key: "${GATEWAY_KEY}"`,
            "litellm_settings:",
            "  telemetry: false",
            "",
          ].join("\n"),
        );
        const proc = startProcess("litellm", bin, ["--config", configPath, "--host", "127.0.0.1", "--port", String(port), "--num_workers", "2"], {
          logPath: join(ctx.work, "litellm.log"),
          // The model price map is bundled; without this it is fetched from the internet.
          env: { LITELLM_LOCAL_MODEL_COST_MAP: "True", LITELLM_LOG: "ERROR" },
        });
        const url = `http://127.0.0.1:${port}`;
        const startupMs = await waitReady(proc, () => probe(this.request(url, scenario), scenario), 180_000);
        return { proc, url, startupMs, notes: ["master key auth on; no database, so no spend tracking"] };
      },
      request: (url, scenario) => gatewayRequest(url, scenario, gatewayAuth),
    },
  ];
}
