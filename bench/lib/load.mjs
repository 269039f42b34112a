// The load generator, the same for every system: oha (crates.io), one connection per concurrent
// client, kept alive. Its percentiles are computed from every request's own latency (no
// coordinated-omission correction, which would invent samples), which is what we want.

import { execFileSync, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { once } from "node:events";
import { join } from "node:path";

export const OHA_VERSION = "1.16.0";

/** oha's path, installed into the project's tools cache on first use (a few minutes, once). */
export function ensureOha(toolsDir) {
  const bin = join(toolsDir, "bin", "oha");
  const version = () => {
    try {
      return execFileSync(bin, ["--version"]).toString().trim().split(" ").at(-1);
    } catch {
      return null;
    }
  };
  if (version() !== OHA_VERSION) {
    console.error(`bench: installing oha ${OHA_VERSION} into ${toolsDir} (a few minutes, once)`);
    // --locked: without it, cargo picks dependency versions newer than the toolchain here.
    execFileSync("cargo", ["install", "-q", "--locked", "--root", toolsDir, "--version", OHA_VERSION, "oha"], { stdio: "inherit" });
  }
  return bin;
}

const ms = (seconds) => (seconds === undefined || seconds === null ? null : seconds * 1000);

/**
 * Sends `request` ({ url, headers, body }) for `seconds` over `concurrency` connections, and
 * returns latency percentiles (ms, from every request), successful requests per second, errors
 * (non-200 answers and failed requests) and the CPU seconds `proc` used meanwhile.
 */
export async function runLoad({ oha, request, concurrency, seconds, proc, workDir, tag }) {
  const bodyPath = join(workDir, `${tag}.body.json`);
  writeFileSync(bodyPath, request.body);
  const args = ["-z", `${seconds}s`, "-c", String(concurrency), "-w", "--no-tui", "--output-format", "json", "-m", "POST", "-D", bodyPath];
  for (const [name, value] of Object.entries(request.headers)) args.push("-H", `${name}: ${value}`);
  args.push(request.url);
  const cpuBefore = proc?.cpuSeconds();
  const child = spawn(oha, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const [code] = await once(child, "exit");
  const cpu = proc ? proc.cpuSeconds() - cpuBefore : null;
  if (code !== 0) throw new Error(`oha exited with ${code}: ${err.slice(0, 500)}`);
  const report = JSON.parse(out);
  const statuses = report.statusCodeDistribution ?? {};
  const ok = statuses["200"] ?? 0;
  const failed = Object.values(report.errorDistribution ?? {}).reduce((a, b) => a + b, 0);
  const non200 = Object.entries(statuses).reduce((a, [status, n]) => a + (status === "200" ? 0 : n), 0);
  const p = report.latencyPercentiles ?? {};
  const f = report.firstBytePercentiles ?? {};
  return {
    concurrency,
    seconds: report.summary.total,
    ok,
    errors: failed + non200,
    errorKinds: { ...report.errorDistribution, ...Object.fromEntries(Object.entries(statuses).filter(([s]) => s !== "200").map(([s, n]) => [`status ${s}`, n])) },
    rps: ok / report.summary.total,
    latencyMs: Object.fromEntries(Object.entries(p).map(([k, v]) => [k, ms(v)])),
    firstByteMs: Object.fromEntries(Object.entries(f).map(([k, v]) => [k, ms(v)])),
    cpuMsPerRequest: cpu === null || ok === 0 ? null : (cpu * 1000) / ok,
  };
}

