// Turns bench/out/results.json into the generated part of BENCHMARKS.md: machine, method,
// every figure, the ratios, and the goals met or missed (by how much).

import { readFileSync, writeFileSync } from "node:fs";

export const BEGIN = "<!-- make bench: generated from here; edits are lost at the next run -->";
export const END = "<!-- make bench: generated up to here -->";

const ms = (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : x < 10 ? x.toFixed(2) : x.toFixed(1));
const ratio = (x) => (x === null || !Number.isFinite(x) ? "–" : `${x < 10 ? x.toFixed(2) : x.toFixed(0)}x`);
const pct = (x) => (x === null || !Number.isFinite(x) ? "–" : `${Math.round(x * 100)}%`);
const int = (x) => (x === null || x === undefined ? "–" : Math.round(x).toLocaleString("en-US"));
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
const mib = (bytes) => (bytes ? `${(bytes / 2 ** 20).toFixed(0)} MiB` : "–");
const calls = (x) => (x === null || x === undefined ? "–" : x.toFixed(2));
const table = (head, rows) => [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");

/** Helpers over the runs of one result set. */
function figures(results) {
  const run = (system, scenario, load) => results.runs.find((r) => r.system === system && r.scenario === scenario && r.load === load && !r.failed);
  const failed = (system, scenario) => results.runs.find((r) => r.system === system && r.scenario === scenario && r.failed);
  const overhead = (system, scenario, load, p) => {
    const a = run(system, scenario, load);
    const d = run("direct", scenario, load);
    return a && d ? a.latencyMs[p] - d.latencyMs[p] : null;
  };
  const div = (a, b) => (a === null || b === null || b <= 0 ? null : a / b);
  const counted = (system, scenario) => (results.calls ?? []).find((c) => c.system === system && c.scenario === scenario);
  return { run, failed, overhead, div, counted };
}

function method(results) {
  const { plan } = results;
  const loads = plan.loads.map((l) => `${l.concurrency} connection${l.concurrency > 1 ? "s" : ""} for ${l.seconds} s`).join(", ");
  const dos = results.bindings.durableObjects.map((d) => `\`${d.name}\` (\`${d.class_name}\`)`).join(", ");
  return [
    "- **Upstream**: `mock-upstream --no-record --stream-chunks 50` (native, canned answers, no delay, nothing kept), one process shared by every system.",
    "- **direct**: the load generator straight to the upstream, with the request the upstream receives in that scenario (OpenAI's format, or Anthropic's for the translated scenarios). Every overhead is a system's latency minus direct's at the same percentile, scenario and concurrency.",
    "- **floor**: `bench/floor.js`, a worker that forwards the request with `fetch` and returns the response, under plain `workerd serve` with the same set-up as the gateway (socket on 127.0.0.1, modules embedded, a network service allowing loopback as `globalOutbound`).",
    `- **Switchyard**: \`build/index.js\` and its wasm (release build) under plain \`workerd serve\`, with the bindings of \`wrangler.toml\`: Durable Objects ${dos} (SQLite storage on local disk), KV \`${results.bindings.kvNamespaces.join(", ")}\` (a stub answering 404 to every key), \`SWITCHYARD_CONFIG\` with an OpenAI-format provider and an Anthropic provider on the mock, vendor keys as secret text bindings, and auth on (a gateway key listed by its SHA-256). Two systems, each its own workerd: **metered**, the key with a daily budget and rate limits (rpm and tpm) and a gateway-wide daily budget, all far above what the run spends; **unmetered**, the same configuration without them. Not \`wrangler dev\`, whose proxy costs ms a request.`,
    "- **Peers**: Portkey's gateway from npm on Node (`x-portkey-provider` and `x-portkey-custom-host` headers), LiteLLM's proxy from PyPI (a `model_list` with `api_base` on the mock, master key on), installed by `make bench` only (`bench/peers/`, a venv in the user's cache).",
    `- **Load**: ${results.machine.oha ? `oha ${results.machine.oha} (crates.io), \`-z\`` : `${results.machine.loadGenerator ?? "bench/lib/nodeload.mjs"} (oha's method: keep-alive, percentiles of every request)`} for ${loads}, each run after ${plan.warmupSeconds} s of warm-up at the same concurrency; keep-alive connections; each scenario runs on all systems back to back, every system staying up meanwhile. Percentiles are computed from every request's own latency (full response read; no coordinated-omission correction). RPS counts 200 answers only; errors are failed requests plus non-200 answers. Before its runs, each system's answer in each scenario is checked (content present; streams: ${50} content chunks, usage, \`[DONE]\`): a system that answers wrongly is reported as failing the scenario, not timed.`,
    "- **CPU per request**: user + system CPU time of the system's processes (from /proc, all its workers) during the run, divided by the 200 answers. **Peak memory**: the high-water mark of resident memory of each process, summed over the system's processes, at the end of all runs.",
    `- **Start-up**: from spawning the runtime to the first good answer to a chat request, polled every 5 ms (median of ${plan.startupRepeats} starts for workerd, one for peers). **Instantiation**: a probe worker (\`bench/instantiate-probe.js\`) in a fresh workerd dynamically imports \`build/index.js\`, whose top level instantiates the wasm and runs \`__wbindgen_start\`; the first such request's latency minus a no-op request's (median of ${plan.startupRepeats} fresh processes). workerd freezes a worker's clocks, so it is timed from outside.`,
    "- **Bundle**: `build/index_bg.wasm` and `build/index.js`, raw and gzip -9.",
  ].join("\n");
}

export function renderReport(results) {
  const f = figures(results);
  const m = results.machine;
  const systems = Object.entries(results.systems);
  const loadNames = results.plan.loads.map((l) => l.name);
  const c1 = loadNames[0];
  const sat = loadNames.at(-1);
  const fixed = loadNames.length > 2 ? loadNames[1] : loadNames[0];
  const concurrency = (name) => results.plan.loads.find((l) => l.name === name).concurrency;
  const out = [];

  out.push(BEGIN, "", "## End to end in workerd, side by side (`make bench`)", "");
  out.push(
    `Every figure in this section is from one run of \`make bench\` (\`bench/run.mjs\`), taken ${m.date.slice(0, 16).replace("T", " ")} UTC at commit \`${m.commit}\`${m.dirty ? " (with uncommitted changes)" : ""}; rerun it with \`make bench\`. Compare rows of one run only: absolute figures on this machine drift 10-40% between runs.`,
    "",
    `Machine: ${m.cpu}, ${m.memoryGiB} GiB, ${m.os}; Node ${m.node}, workerd ${m.workerd}, ${m.rustc}. Everything on 127.0.0.1.`,
    "",
  );
  const unavailable = systems.filter(([, s]) => s.skipped || s.failed);
  for (const [id, s] of unavailable) out.push(`- **${s.label}** (${id}): not measured: ${s.skipped ?? s.failed}`);
  for (const r of results.runs.filter((x) => x.failed)) out.push(`- **${results.systems[r.system].label}** failed the \`${r.scenario}\` scenario: ${r.failed.replace(/\|/g, "/")}`);
  for (const [, s] of systems.filter(([, x]) => x.notes?.length)) out.push(`- ${s.label}: ${s.notes.join("; ")}.`);
  if (unavailable.length || systems.some(([, s]) => s.notes?.length)) out.push("");

  // Goals.
  const scenarioIds = results.scenarios.map((s) => s.id);
  const worst = (values, pick) => {
    const v = values.filter((x) => x.value !== null);
    return v.length ? v.reduce((a, b) => (pick(a.value, b.value) ? a : b)) : null;
  };
  const gwOverFloor = worst(
    scenarioIds.map((s) => ({ s, value: f.div(f.overhead("switchyard", s, c1, "p50"), f.overhead("floor", s, c1, "p50")) })),
    (a, b) => a > b,
  );
  const rpsShare = worst(
    scenarioIds.map((s) => ({ s, value: f.div(f.run("switchyard", s, sat)?.rps ?? null, f.run("floor", s, sat)?.rps ?? null) })),
    (a, b) => a < b,
  );
  const peerGoal = (peer) =>
    worst(
      scenarioIds.flatMap((s) => ["p50", "p99"].map((p) => ({ s: `${s}, ${p}`, value: f.div(f.overhead(peer, s, c1, p), f.overhead("switchyard", s, c1, p)) }))),
      (a, b) => a < b,
    );
  const verdict = (value, ok, goal, missedBy) => (value === null ? "not measured" : ok ? "met" : `**missed** by ${missedBy}`);
  const goalRows = [];
  goalRows.push([
    `Switchyard's p50 overhead within 1.3x the floor's (c=1, worst scenario)`,
    gwOverFloor ? `${ratio(gwOverFloor.value)} (${gwOverFloor.s})` : "–",
    verdict(gwOverFloor?.value ?? null, gwOverFloor?.value <= 1.3, 1.3, `${ratio(gwOverFloor?.value / 1.3)} (${ratio(gwOverFloor?.value)} vs 1.3x)`),
  ]);
  goalRows.push([
    `saturation RPS (c=${concurrency(sat)}) at least 75% of the floor's (worst scenario)`,
    rpsShare ? `${pct(rpsShare.value)} (${rpsShare.s})` : "–",
    verdict(rpsShare?.value ?? null, rpsShare?.value >= 0.75, 0.75, `${Math.round((0.75 - rpsShare?.value) * 100)} points (${pct(rpsShare?.value)} vs 75%)`),
  ]);
  for (const peer of ["portkey", "litellm"]) {
    const g = peerGoal(peer);
    goalRows.push([
      `overhead at least 10x lower than ${results.systems[peer].label.split(" (")[0]}'s, p50 and p99 (c=1, worst)`,
      g ? `${ratio(g.value)} (${g.s})` : results.systems[peer].skipped ?? results.systems[peer].failed ?? "–",
      verdict(g?.value ?? null, g?.value >= 10, 10, `a factor ${(10 / g?.value).toFixed(1)} (${ratio(g?.value)} vs 10x)`),
    ]);
  }
  const gz = results.bundle.total.gzip;
  goalRows.push(["bundle under 1 MiB gzip (wasm + JS)", kib(gz), verdict(gz, gz < 2 ** 20, 2 ** 20, kib(gz - 2 ** 20))]);
  const inst = results.instantiation.ms;
  goalRows.push(["instantiation under 10 ms", `${ms(inst)} ms`, verdict(inst, inst < 10, 10, `${ms(inst - 10)} ms`)]);
  out.push("### Goals (recorded, not asserted)", "", table(["goal", "figure", "verdict"], goalRows), "");

  // Ratios, per scenario.
  const ratioRows = results.scenarios.map((s) => {
    const row = [s.id];
    for (const p of ["p50", "p99"]) row.push(ratio(f.div(f.overhead("switchyard", s.id, c1, p), f.overhead("floor", s.id, c1, p))));
    for (const peer of ["portkey", "litellm"]) for (const p of ["p50", "p99"]) row.push(ratio(f.div(f.overhead(peer, s.id, c1, p), f.overhead("switchyard", s.id, c1, p))));
    row.push(pct(f.div(f.run("switchyard", s.id, fixed)?.rps ?? null, f.run("floor", s.id, fixed)?.rps ?? null)));
    row.push(pct(f.div(f.run("switchyard", s.id, sat)?.rps ?? null, f.run("floor", s.id, sat)?.rps ?? null)));
    return row;
  });
  out.push(
    "### Ratios",
    "",
    `Overheads at c=1. Gateway = Switchyard with budgets and rate limits on (the goals' gateway); a ratio over 1 in the peer columns means the peer adds that many times more than Switchyard.`,
    "",
    table(
      ["scenario", "gateway / floor overhead p50", "p99", "Portkey / gateway overhead p50", "p99", "LiteLLM / gateway overhead p50", "p99", `gateway / floor RPS c=${concurrency(fixed)}`, `c=${concurrency(sat)}`],
      ratioRows,
    ),
    "",
  );

  // What budgets and rate limits cost: the same gateway with and without them.
  const metered = "switchyard";
  const open = "switchyard-unmetered";
  if (results.systems[open] && !results.systems[open].skipped && !results.systems[open].failed) {
    const cpu = (id, s) => f.run(id, s, c1)?.cpuMsPerRequest ?? null;
    const rps = (id, s, load) => f.run(id, s, load)?.rps ?? null;
    const meterRows = results.scenarios.map((s) => [
      s.id,
      ratio(f.div(f.overhead(metered, s.id, c1, "p50"), f.overhead(open, s.id, c1, "p50"))),
      ratio(f.div(f.overhead(metered, s.id, c1, "p99"), f.overhead(open, s.id, c1, "p99"))),
      (() => {
        const a = f.overhead(metered, s.id, c1, "p50");
        const b = f.overhead(open, s.id, c1, "p50");
        return a === null || b === null ? "–" : `${a - b >= 0 ? "+" : ""}${ms(a - b)}`;
      })(),
      ratio(f.div(cpu(metered, s.id), cpu(open, s.id))),
      ...[fixed, sat].filter((l, i, all) => all.indexOf(l) === i).map((l) => pct(f.div(rps(metered, s.id, l), rps(open, s.id, l)))),
    ]);
    const rpsHeads = [fixed, sat].filter((l, i, all) => all.indexOf(l) === i).map((l, i) => (i === 0 ? `metered / unmetered RPS c=${concurrency(l)}` : `c=${concurrency(l)}`));
    out.push(
      "### What budgets and rate limits cost",
      "",
      `Metered: the gateway as above, its key with a budget and rate limits and the gateway with a budget ("${results.systems[metered].label}" in the tables below). Unmetered: the same build, key and providers without them ("${results.systems[open].label}"). Overheads over direct and CPU at c=1, RPS under load; a ratio over 1, or an RPS share under 100%, is what metering costs.`,
      "",
      table(["scenario", "metered / unmetered overhead p50", "p99", "added p50, ms", "CPU a request, metered / unmetered", ...rpsHeads], meterRows),
      "",
    );
  }

  // Durable Object and KV calls a client request, counted by the runtime.
  const countedIds = [metered, open].filter((id) => (results.calls ?? []).some((c) => c.system === id));
  if (countedIds.length) {
    const doCell = (c) => {
      if (!c) return "–";
      if (c.failed) return "failed";
      const parts = Object.entries(c.doPerRequestByClass)
        .sort((a, b) => b[1] - a[1])
        .map(([cls, n]) => `${cls} ${calls(n)}`);
      return `${calls(c.doPerRequest)}${parts.length ? ` (${parts.join(", ")})` : ""}`;
    };
    const callRows = results.scenarios.map((s) => [s.id, ...countedIds.flatMap((id) => [doCell(f.counted(id, s.id)), f.counted(id, s.id)?.failed ? "failed" : calls(f.counted(id, s.id)?.kvPerRequest)])]);
    const some = (results.calls ?? []).find((c) => !c.failed);
    const unsettled = (results.calls ?? []).filter((c) => !c.failed && !c.settled).map((c) => `${c.system} / ${c.scenario}`);
    const offWindow = (results.calls ?? []).filter((c) => !c.failed && c.traced !== c.answered + c.errors).map((c) => `${c.system} / ${c.scenario} (${c.traced} traced, ${c.answered + c.errors} sent)`);
    out.push(
      "### Durable Object and KV calls a client request",
      "",
      `Counted by the runtime, not by the gateway: a tail worker (\`bench/call-counter.js\`) receives workerd's trace event for every invocation of the gateway's Durable Objects (by class) and of the KV namespace's service, on a twin of each gateway instance (tracing costs CPU, so the timed instances are not traced). c=${some?.concurrency ?? 1} for ${results.plan.loads[0].seconds} s after ${results.plan.warmupSeconds} s of warm-up, counts read before and after, each once the runtime had reported every request sent so far (a request is reported when its response and its \`ctx.wait_until\` work are over, so the calls made after the response are in) and the counts had stopped moving; calls in the window divided by its 200 answers. Calls made off the hot path on a timer (the outbox's batches, lease refreshes) are shared by the requests of their period, so their share falls as the rate rises. KV: the benchmark's gateway key is listed in the configuration; a key made by the admin API would be read from KV.`,
      "",
      table(["scenario", ...countedIds.flatMap((id) => [`${id === metered ? "metered" : "unmetered"}: DO calls / request (by class)`, "KV calls / request"])], callRows),
      "",
    );
    if (unsettled.length) out.push(`Counts still moving when read (taken as they were): ${unsettled.join(", ")}.`, "");
    if (offWindow.length) out.push(`Invocations traced in the window differ from the requests sent: ${offWindow.join(", ")}.`, "");
  }

  // Latency per scenario at c=1, then throughput.
  const measured = systems.filter(([, s]) => !s.skipped && !s.failed).map(([id]) => id);
  for (const s of results.scenarios) {
    const rows = measured.map((id) => {
      const r = f.run(id, s.id, c1);
      if (!r) return [results.systems[id].label, ...Array(s.stream ? 8 : 7).fill(f.failed(id, s.id) ? "failed" : "–")];
      return [
        results.systems[id].label,
        ms(r.latencyMs.p50),
        ms(r.latencyMs.p90),
        ms(r.latencyMs.p99),
        id === "direct" ? "" : ms(f.overhead(id, s.id, c1, "p50")),
        id === "direct" ? "" : ms(f.overhead(id, s.id, c1, "p99")),
        ...(s.stream ? [ms(r.firstByteMs.p50)] : []),
        r.cpuMsPerRequest === null ? "–" : r.cpuMsPerRequest.toFixed(3),
        int(r.errors),
      ];
    });
    out.push(
      `### ${s.title}`,
      "",
      `c=1, ${results.plan.loads[0].seconds} s a system; latencies in ms.${s.stream ? " First byte: time to the response's first byte." : ""} CPU: ms of the system's own processes a request (direct: mock-upstream's).`,
      "",
      table(["system", "p50", "p90", "p99", "overhead p50", "overhead p99", ...(s.stream ? ["first byte p50"] : []), "CPU ms/req", "errors"], rows),
      "",
    );
  }
  if (loadNames.length > 1) {
    const head = ["system", "scenario"];
    for (const name of loadNames.slice(1)) head.push(`RPS c=${concurrency(name)}`, `p50 c=${concurrency(name)}`, `p99 c=${concurrency(name)}`, `errors c=${concurrency(name)}`);
    const rows = [];
    for (const s of results.scenarios) {
      for (const id of measured) {
        const row = [results.systems[id].label, s.id];
        for (const name of loadNames.slice(1)) {
          const r = f.run(id, s.id, name);
          row.push(...(r ? [int(r.rps), ms(r.latencyMs.p50), ms(r.latencyMs.p99), int(r.errors)] : ["–", "–", "–", "–"]));
        }
        rows.push(row);
      }
    }
    out.push("### Throughput under load", "", `Each for ${results.plan.loads[1].seconds} s; c=${concurrency(sat)} is the saturation point (all systems past their knee on 2 cores).`, "", table(head, rows), "");
  }

  // Start-up, memory, bundle.
  const med = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] : null);
  out.push(
    "### Start-up, memory, bundle",
    "",
    table(
      ["system", "start-up to first good answer", "peak memory (RSS)"],
      measured.map((id) => {
        const e = results.systems[id];
        return [id === "direct" ? "mock-upstream (serves every system)" : e.label, e.startupMs.length ? `${int(med(e.startupMs))} ms` : "–", mib(e.peakRssBytes)];
      }),
    ),
    "",
    `Instantiation of the gateway's module in workerd: ${ms(inst)} ms (median; samples ${results.instantiation.samples.map(ms).join(", ")} ms).`,
    "",
    table(
      ["file", "raw", "gzip -9"],
      [
        ["build/index_bg.wasm", kib(results.bundle.wasm.raw), kib(results.bundle.wasm.gzip)],
        ["build/index.js", kib(results.bundle.js.raw), kib(results.bundle.js.gzip)],
        ["total", kib(results.bundle.total.raw), kib(results.bundle.total.gzip)],
      ],
    ),
    "",
  );
  if (results.adapters) {
    out.push("### Native core, same run", "", "`cargo bench -p switchyard-core --bench adapters`, as printed (method in the section above):", "", "```", results.adapters, "```", "");
  }
  out.push("![Latency percentiles per system, each scenario, c=1](bench/latency.png)", "", method(results), "", END, "");
  return out.join("\n");
}

/** Replaces the generated section of BENCHMARKS.md (or appends it), keeping everything else. */
export function updateBenchmarksMd(path, section) {
  const text = readFileSync(path, "utf8");
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  const next =
    begin >= 0 && end > begin
      ? text.slice(0, begin) + section.trimEnd() + text.slice(end + END.length)
      : `${text.trimEnd()}\n\n${section}`;
  writeFileSync(path, next);
}
