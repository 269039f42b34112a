#!/usr/bin/env node
// `make bench`: what Switchyard adds to every call, measured side by side in one run, on one
// mock upstream, against a bare pass-through worker (the floor) and other gateways.
//
//   node bench/run.mjs           full run: also runs the native core benchmark, installs the
//                                peers (Portkey, LiteLLM), writes BENCHMARKS.md and bench/latency.png
//   node bench/run.mjs --smoke   the harness on tiny counts, peers skipped, Node's load
//                                generator instead of oha (nothing to install); writes only bench/out/
//
// Expects the worker built (`make build`, release) and mock-upstream built (`cargo build
// --release -p mock-upstream`; the smoke run takes the debug build `make test` already has).
// Everything runs on 127.0.0.1 with bounded counts and durations, and every process it starts
// is stopped when it ends, however it ends. Figures land in bench/out/results.json first.

import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { cpus, totalmem, tmpdir, release, homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startProcess, waitReady, freePort } from "./lib/processes.mjs";
import { readWranglerToml, writeWorkerdConfig, gatewayModules } from "./lib/workerd.mjs";
import { ensureOha, runLoad, OHA_VERSION } from "./lib/load.mjs";
import { runNodeLoad } from "./lib/nodeload.mjs";
import { settledCounts, callsPerRequest } from "./lib/calls.mjs";
import { SCENARIOS, STREAM_CHUNKS } from "./lib/scenarios.mjs";
import { makeSystems, probe, answerWire, LITELLM_VERSION } from "./lib/systems.mjs";
import { renderReport, updateBenchmarksMd } from "./lib/report.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const smoke = process.argv.includes("--smoke");

// Counts and durations. Full: about 10 minutes of load in all (with the counted runs); smoke:
// seconds. The smoke run's load generator is bench/lib/nodeload.mjs (nothing to install), the
// full run's oha.
const PLAN = smoke
  ? { loads: [{ name: "c1", concurrency: 1, seconds: 0.3 }], warmupSeconds: 0.1, startupRepeats: 1, peers: false, loadGenerator: "node" }
  : {
      loads: [
        { name: "c1", concurrency: 1, seconds: 4 }, // latency and overhead, unloaded
        { name: "c8", concurrency: 8, seconds: 4 }, // a fixed concurrency
        { name: "c64", concurrency: 64, seconds: 4 }, // saturation: past every system's knee here
      ],
      warmupSeconds: 1,
      startupRepeats: 5,
      peers: true,
      loadGenerator: "oha",
    };

const log = (...args) => console.error("bench:", ...args);
const cacheDir = process.env.SWITCHYARD_CACHE ?? join(homedir(), ".cache", "switchyard");
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, "target");
const outDir = join(root, "bench", "out");
mkdirSync(outDir, { recursive: true });
const work = mkdtempSync(join(tmpdir(), "switchyard-bench-"));
process.on("exit", () => rmSync(work, { recursive: true, force: true }));

const sh = (cmd, args, opts = {}) => (execFileSync(cmd, args, { cwd: root, encoding: "utf8", ...opts }) ?? "").trim();
const trySh = (cmd, args) => {
  try {
    return sh(cmd, args, { stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return null;
  }
};
const median = (xs) => {
  const s = xs.filter((x) => x !== null).sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : null;
};

// ---------------------------------------------------------------------------------------------
// Tools and peers. Peers are installed only by the full run, each from its registry.

function installPeers() {
  const peers = { portkey: null, litellm: null };
  try {
    log("installing Portkey into bench/peers (npm ci)");
    sh("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: join(root, "bench", "peers"), stdio: ["ignore", "ignore", "inherit"] });
  } catch (e) {
    peers.portkey = `npm ci failed: ${e.message.split("\n")[0]}`;
  }
  const venv = join(cacheDir, "bench", "litellm-venv");
  const pip = join(venv, "bin", "pip");
  const installed = trySh(join(venv, "bin", "python"), ["-c", "import importlib.metadata as m; print(m.version('litellm'))"]);
  if (installed !== LITELLM_VERSION) {
    log(`installing LiteLLM ${LITELLM_VERSION} into a venv under ${cacheDir} (a few minutes, once)`);
    // Newer releases require a certifi newer than the registry serves here; this one resolves.
    const result = spawnSync("bash", ["-c", `python3 -m venv "${venv}" && "${pip}" install -q "litellm[proxy]==${LITELLM_VERSION}"`], { encoding: "utf8", timeout: 900_000 });
    if (result.status !== 0) peers.litellm = `pip install litellm[proxy]==${LITELLM_VERSION} failed: ${(result.stderr || "timed out").trim().split("\n").at(-1)}`;
  }
  return { venv, errors: peers };
}

function plotVenv() {
  const venv = join(cacheDir, "bench", "plot-venv");
  const python = join(venv, "bin", "python");
  if (trySh(python, ["-c", "import matplotlib"]) === null) {
    log("installing matplotlib into a venv (once)");
    sh("bash", ["-c", `python3 -m venv "${venv}" && "${venv}/bin/pip" install -q matplotlib==3.10.8`], { stdio: "inherit" });
  }
  return python;
}

// ---------------------------------------------------------------------------------------------
// Machine, bundle, start-up.

function machine() {
  const cpu = cpus();
  return {
    date: new Date().toISOString(),
    cpu: `${cpu.length} x ${cpu[0]?.model ?? "unknown CPU"}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: `${trySh("sh", ["-c", ". /etc/os-release && echo $PRETTY_NAME"]) ?? "Linux"} (kernel ${release()})`,
    node: process.versions.node,
    workerd: trySh(join(root, "node_modules", ".bin", "workerd"), ["--version"]),
    rustc: trySh("rustc", ["--version"]),
    loadGenerator: PLAN.loadGenerator === "oha" ? `oha ${OHA_VERSION}` : `bench/lib/nodeload.mjs (Node ${process.versions.node} http)`,
    oha: PLAN.loadGenerator === "oha" ? OHA_VERSION : null,
    commit: trySh("git", ["rev-parse", "--short", "HEAD"]),
    dirty: (trySh("git", ["status", "--porcelain", "--untracked-files=no"]) ?? "") !== "",
  };
}

function bundle(buildDir) {
  const size = (file) => {
    const bytes = readFileSync(join(buildDir, file));
    return { raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  };
  const wasm = size("index_bg.wasm");
  const js = size("index.js");
  return { wasm, js, total: { raw: wasm.raw + js.raw, gzip: wasm.gzip + js.gzip } };
}

/** Instantiation inside workerd: first /load minus the median /noop, on fresh processes. */
async function measureInstantiation(ctx, repeats) {
  const samples = [];
  for (let i = 0; i < repeats; i++) {
    const port = await freePort();
    const dir = join(work, `instantiate-${i}`);
    mkdirSync(dir);
    const file = writeWorkerdConfig({
      file: join(dir, "config.capnp"),
      port,
      modules: [{ name: "probe.js", path: join(root, "bench", "instantiate-probe.js"), kind: "esModule" }, ...gatewayModules(ctx.buildDir)],
      compatibilityDate: ctx.wrangler.compatibilityDate,
    });
    const proc = startProcess("instantiate-probe", ctx.workerd, ["serve", file], { logPath: join(dir, "workerd.log") });
    try {
      const url = `http://127.0.0.1:${port}`;
      const timed = async (path) => {
        const t = performance.now();
        const res = await fetch(url + path);
        await res.text();
        if (!res.ok) throw new Error(`instantiate probe ${path}: ${res.status}`);
        return performance.now() - t;
      };
      await waitReady(proc, async () => (await fetch(`${url}/noop`)).ok, 10_000);
      const noop = [];
      for (let j = 0; j < 20; j++) noop.push(await timed("/noop"));
      samples.push(Math.max(0, (await timed("/load")) - median(noop)));
    } finally {
      await proc.stop();
    }
  }
  return { ms: median(samples), samples };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const buildDir = process.env.BENCH_BUILD_DIR ?? join(root, "build");
  const mockBin = join(targetDir, smoke ? "debug" : "release", "mock-upstream");
  for (const [what, path] of [["the built worker (make build)", join(buildDir, "index_bg.wasm")], ["mock-upstream", mockBin]]) {
    if (!existsSync(path)) throw new Error(`${what} is missing: ${path}`);
  }
  const results = { mode: smoke ? "smoke" : "full", plan: PLAN, machine: machine(), scenarios: SCENARIOS, systems: {}, runs: [], calls: [] };
  log(`${results.mode} run on ${results.machine.cpu}, commit ${results.machine.commit}${results.machine.dirty ? " (uncommitted changes)" : ""}`);

  if (!smoke) {
    log("native core benchmark: cargo bench -p switchyard-core --bench adapters");
    results.adapters = sh("cargo", ["bench", "-q", "-p", "switchyard-core", "--bench", "adapters"], { stdio: ["ignore", "pipe", "inherit"] });
  }
  const oha = PLAN.loadGenerator === "oha" ? ensureOha(join(cacheDir, "tools")) : null;
  const load = (args) => (oha ? runLoad({ oha, ...args }) : runNodeLoad(args));
  const peers = PLAN.peers ? installPeers() : { venv: join(cacheDir, "bench", "litellm-venv"), errors: {} };
  results.bundle = bundle(buildDir);

  const ctx = {
    root,
    work,
    buildDir,
    workerd: join(root, "node_modules", ".bin", "workerd"),
    wrangler: readWranglerToml(join(root, "wrangler.toml")),
    litellmVenv: peers.venv,
    litellmInstallError: peers.errors.litellm,
  };
  results.bindings = { durableObjects: ctx.wrangler.durableObjects, kvNamespaces: ctx.wrangler.kvNamespaces.map((k) => k.binding) };

  // One mock upstream for everyone: canned answers, no delay, nothing recorded.
  const mockPort = await freePort();
  ctx.mockUrl = `http://127.0.0.1:${mockPort}`;
  ctx.mockProc = startProcess("mock-upstream", mockBin, ["--port", String(mockPort), "--stream-chunks", String(STREAM_CHUNKS), "--no-record"], { logPath: join(work, "mock.log") });
  await waitReady(ctx.mockProc, async () => (await fetch(`${ctx.mockUrl}/_mock/health`)).ok, 10_000);

  log("instantiation in workerd");
  results.instantiation = await measureInstantiation(ctx, PLAN.startupRepeats);

  // Start every system (one at a time, so start-up times do not disturb each other); they then
  // stay up, idle but for their own turn, so each scenario runs on all of them within seconds.
  const systems = makeSystems(ctx);
  const running = [];
  const firstScenario = SCENARIOS[0];
  for (const system of systems) {
    const entry = { label: system.label, role: system.role, startupMs: [], notes: [] };
    results.systems[system.id] = entry;
    if (system.peer && !PLAN.peers) {
      entry.skipped = "skipped in the smoke run";
      continue;
    }
    if (system.peer && peers.errors[system.id]) {
      entry.failed = peers.errors[system.id];
      continue;
    }
    log(`starting ${system.label}`);
    try {
      const repeats = system.role === "floor" || system.role === "gateway" ? PLAN.startupRepeats : 1;
      let started;
      for (let i = 0; i < repeats; i++) {
        if (started) await started.proc.stop();
        started = await system.start(firstScenario);
        if (started.startupMs !== null) entry.startupMs.push(started.startupMs);
      }
      entry.notes.push(...(started.notes ?? []));
      running.push({ system, ...started });
    } catch (e) {
      entry.failed = `could not be started: ${e.message.split("\n").slice(0, 6).join(" / ")}`;
      log(`${system.id}: ${entry.failed}`);
    }
  }

  // A twin of each counted system (the gateways), its invocations counted by the runtime (a tail
  // worker, bench/call-counter.js). Not the timed instance: tracing costs about 0.1 ms of CPU an
  // invocation traced, on the thread that serves the requests.
  const twins = [];
  for (const r of running.filter((x) => x.system.countable)) {
    try {
      const twin = { system: r.system, ...(await r.system.start(firstScenario, { count: true })) };
      twin.sent = twin.answered; // requests that reached it: the runtime reports each once done
      twins.push(twin);
    } catch (e) {
      results.systems[r.system.id].notes.push(`calls not counted: its counted twin could not be started (${e.message.split("\n")[0]})`);
    }
  }

  for (const scenario of SCENARIOS) {
    // A system whose answer is wrong in this scenario is reported as failing it, not measured.
    const live = [];
    for (const r of running) {
      const request = r.system.request(r.url, scenario);
      let verdict;
      try {
        verdict = await probe(request, scenario, answerWire(r.system, scenario));
      } catch (e) {
        verdict = e.message;
      }
      if (verdict === true) live.push({ ...r, request });
      else {
        results.runs.push({ system: r.system.id, scenario: scenario.id, failed: String(verdict).slice(0, 300) });
        log(`${r.system.id} / ${scenario.id}: bad answer: ${String(verdict).slice(0, 200)}`);
      }
    }
    for (const step of PLAN.loads) {
      for (const r of live) {
        const tag = `${r.system.id}-${scenario.id}-${step.name}`;
        await load({ request: r.request, concurrency: step.concurrency, seconds: PLAN.warmupSeconds, workDir: work, tag });
        const run = await load({ request: r.request, concurrency: step.concurrency, seconds: step.seconds, proc: r.proc, workDir: work, tag });
        results.runs.push({ system: r.system.id, scenario: scenario.id, load: step.name, ...run });
        log(`${tag}: p50 ${run.latencyMs.p50?.toFixed(2)} ms, ${Math.round(run.rps)} rps, ${run.errors} errors`);
      }
    }
    // Then the runtime's count of Durable Object and KV calls, on each counted twin: the first
    // load's concurrency and duration after the same warm-up, the counts read once settled.
    const c1 = PLAN.loads[0];
    for (const t of twins) {
      if (!live.some((r) => r.system.id === t.system.id)) continue;
      const request = t.system.request(t.url, scenario);
      const tag = `${t.system.id}-${scenario.id}-counted`;
      try {
        const verdict = await probe(request, scenario, answerWire(t.system, scenario));
        t.sent++;
        if (verdict !== true) throw new Error(`bad answer: ${verdict}`);
        const warm = await load({ request, concurrency: c1.concurrency, seconds: PLAN.warmupSeconds, workDir: work, tag });
        t.sent += warm.ok + warm.errors;
        const before = await settledCounts(t.counterUrl, t.sent);
        const run = await load({ request, concurrency: c1.concurrency, seconds: c1.seconds, workDir: work, tag });
        t.sent += run.ok + run.errors;
        const calls = callsPerRequest(before, await settledCounts(t.counterUrl, t.sent), run.ok);
        results.calls.push({ system: t.system.id, scenario: scenario.id, concurrency: c1.concurrency, seconds: run.seconds, rps: run.rps, errors: run.errors, ...calls });
        log(`${tag}: ${calls.doPerRequest?.toFixed(2)} DO calls and ${calls.kvPerRequest?.toFixed(2)} KV calls a request (${JSON.stringify(calls.counts)})`);
      } catch (e) {
        results.calls.push({ system: t.system.id, scenario: scenario.id, failed: String(e.message).slice(0, 300) });
        log(`${tag}: ${e.message.slice(0, 200)}`);
      }
    }
  }

  for (const t of twins) await t.proc.stop();
  for (const r of running) {
    results.systems[r.system.id].peakRssBytes = r.proc.peakRssBytes();
    if (r.system.id !== "direct") await r.proc.stop();
  }
  results.systems.direct.peakRssBytes = ctx.mockProc.peakRssBytes();
  await ctx.mockProc.stop();

  writeFileSync(join(outDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
  const report = renderReport(results);
  writeFileSync(join(outDir, "report.md"), report);
  if (smoke) {
    const bad = results.runs.filter((r) => r.failed || r.errors > 0);
    const gateways = ["switchyard", "switchyard-unmetered"];
    const gatewayRuns = results.runs.filter((r) => gateways.includes(r.system) && !r.failed);
    log(`smoke: ${results.runs.length} runs, report in bench/out/report.md (BENCHMARKS.md untouched)`);
    for (const s of Object.entries(results.systems).filter(([, e]) => e.skipped || e.failed)) log(`${s[0]}: ${s[1].skipped ?? s[1].failed}`);
    // A count's window holds its run's requests (each traced by the runtime), else it is off.
    const counts = results.calls.filter((c) => !c.failed);
    for (const c of counts.filter((x) => x.traced !== x.answered + x.errors)) log(`${c.system} / ${c.scenario}: ${c.traced} invocations traced for ${c.answered + c.errors} requests`);
    // No timing is asserted; only that every system that should run did, answered well, and had its calls counted.
    const uncounted = gateways.flatMap((g) => SCENARIOS.filter((s) => !counts.some((c) => c.system === g && c.scenario === s.id && c.traced > 0)).map((s) => ({ system: g, scenario: s.id, calls: "not counted" })));
    bad.push(...uncounted, ...results.calls.filter((c) => c.failed || c.errors > 0));
    if (bad.length || results.systems.floor.failed || gateways.some((g) => results.systems[g].failed) || gatewayRuns.length !== gateways.length * SCENARIOS.length) {
      throw new Error(`smoke run failed: ${JSON.stringify(bad.length ? bad : results.systems).slice(0, 1500)}`);
    }
    return;
  }
  const plot = join(root, "bench", "latency.png");
  execFileSync(plotVenv(), [join(root, "bench", "plot.py"), join(outDir, "results.json"), plot], { stdio: "inherit" });
  updateBenchmarksMd(join(root, "BENCHMARKS.md"), report);
  log(`wrote BENCHMARKS.md and bench/latency.png (${Math.round(statSync(plot).size / 1024)} KiB)`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`bench: ${e.stack ?? e}`);
    process.exit(1);
  },
);
