// A small load generator in Node, for the smoke run: no oha to compile (`cargo install oha`
// takes about 9 minutes on a fresh machine), no dependency beyond Node's own `http`. It returns
// what `runLoad` (oha, bench/lib/load.mjs) returns, computed the way oha computes it:
// `concurrency` keep-alive connections, each sending its next request when the previous answer
// has been read in full; no new request after `seconds`, and the ones under way are waited for
// (oha's `-w`); latency from sending the request to its answer's last byte, first byte at the
// answer's first body chunk; percentiles from every request's own latency, value at index
// floor(p/100 * n) of the sorted samples (oha's `percentile_iter`). Its figures are not
// comparable with oha's (this client costs more CPU, on the same cores as the system measured),
// which is why the full run keeps oha.

import { Agent, request as httpRequest } from "node:http";

const PERCENTILES = [10, 25, 50, 75, 90, 95, 99, 99.9, 99.99];

/** oha's percentile keys and values (ms), or null where there are no samples. */
function percentiles(samples) {
  const sorted = Float64Array.from(samples).sort();
  return Object.fromEntries(PERCENTILES.map((p) => [`p${p}`, sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : null]));
}

/** One request on `agent`: its status, latency and first-byte time (ms), or the error's code. */
function send(agent, url, headers, body) {
  return new Promise((resolve) => {
    const start = performance.now();
    let firstByte = null;
    const req = httpRequest(url, { method: "POST", agent, headers: { ...headers, "content-length": Buffer.byteLength(body) } }, (res) => {
      res.on("data", () => {
        if (firstByte === null) firstByte = performance.now() - start;
      });
      res.on("end", () => resolve({ status: res.statusCode, latency: performance.now() - start, firstByte }));
      res.on("error", (e) => resolve({ error: e.code ?? e.message, latency: performance.now() - start, firstByte }));
    });
    req.on("error", (e) => resolve({ error: e.code ?? e.message, latency: performance.now() - start, firstByte }));
    req.end(body);
  });
}

/**
 * Sends `request` ({ url, headers, body }) for `seconds` over `concurrency` connections; the
 * result has runLoad's shape: latency and first-byte percentiles (ms), 200 answers per second,
 * errors (failed requests plus non-200 answers, by kind) and `proc`'s CPU ms a 200 answer.
 */
export async function runNodeLoad({ request, concurrency, seconds, proc }) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const url = new URL(request.url);
  const latencies = [];
  const firstBytes = [];
  const errorKinds = {};
  let ok = 0;
  const cpuBefore = proc?.cpuSeconds();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const client = async () => {
    while (performance.now() < deadline) {
      const r = await send(agent, url, request.headers, request.body);
      latencies.push(r.latency);
      if (r.firstByte !== null) firstBytes.push(r.firstByte);
      if (r.status === 200) ok++;
      else {
        const kind = r.error ?? `status ${r.status}`;
        errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
        // A refused connection fails at once: do not spin on it.
        if (r.error) await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, client));
  } finally {
    agent.destroy();
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpu = proc ? proc.cpuSeconds() - cpuBefore : null;
  return {
    concurrency,
    seconds: elapsed,
    ok,
    errors: Object.values(errorKinds).reduce((a, b) => a + b, 0),
    errorKinds,
    rps: ok / elapsed,
    latencyMs: percentiles(latencies),
    firstByteMs: percentiles(firstBytes),
    cpuMsPerRequest: cpu === null || ok === 0 ? null : (cpu * 1000) / ok,
  };
}
