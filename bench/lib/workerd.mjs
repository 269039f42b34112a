// Plain `workerd serve` for the gateway and for the floor, from one config builder, so both run
// the same way: one socket on 127.0.0.1, modules embedded, outbound through a network service
// that allows loopback (workerd's default outbound refuses it). Not `wrangler dev`, whose proxy
// worker and devtools bridge cost several ms a request (see the benchmarking notes).

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";

/**
 * The bindings the gateway declares in wrangler.toml: compatibility date, Durable Object
 * classes (with whether a migration made them SQLite-backed) and KV namespaces. Read rather than
 * copied here, so a binding added to wrangler.toml (the `LEDGER` Durable Object, say) is
 * benchmarked without touching the harness. Understands just the TOML wrangler.toml uses.
 */
export function readWranglerToml(path) {
  const out = { compatibilityDate: undefined, durableObjects: [], kvNamespaces: [], sqliteClasses: new Set() };
  let table = "";
  let entry = null;
  for (const raw of readFileSync(path, "utf8").split("\n")) {
    const line = raw.replace(/\s+#.*$/, "").trim();
    if (!line || line.startsWith("#")) continue;
    const header = /^\[\[?([^\]]+)\]\]?$/.exec(line);
    if (header) {
      table = header[1].trim();
      entry = {};
      if (table === "durable_objects.bindings") out.durableObjects.push(entry);
      if (table === "kv_namespaces") out.kvNamespaces.push(entry);
      continue;
    }
    const kv = /^([A-Za-z_]+)\s*=\s*(.+)$/.exec(line);
    if (!kv) continue;
    const [, key, value] = kv;
    if (table === "" && key === "compatibility_date") out.compatibilityDate = JSON.parse(value);
    else if (table === "migrations" && key === "new_sqlite_classes") JSON.parse(value).forEach((c) => out.sqliteClasses.add(c));
    else if (entry && /^".*"$/.test(value)) entry[key] = JSON.parse(value);
  }
  return out;
}

const capnpString = (s) => JSON.stringify(String(s));

/**
 * Writes a workerd config serving one worker on 127.0.0.1:`port` and returns its path.
 * `modules`: [{ name, path, kind: "esModule" | "wasm" }]; `bindings`: [{ name, text } |
 * { name, kvNamespace } | { name, durableObjectNamespace }]; `durableObjects`: [{ className,
 * enableSql }] (their storage goes to `stateDir`). `counter`: { port, path } to count the worker's
 * invocations and its Durable Objects' and KV's from the runtime: the tail worker at `path`
 * (bench/call-counter.js) tails the worker and the KV stub, and answers its counts on 127.0.0.1:`port`.
 */
export function writeWorkerdConfig({ file, port, modules, compatibilityDate, bindings = [], durableObjects = [], stateDir, counter }) {
  const dir = dirname(file);
  const moduleLines = modules.map((m) => `(name = ${capnpString(m.name)}, ${m.kind} = embed ${capnpString(relative(dir, m.path))})`);
  const bindingLines = bindings.map((b) => {
    if ("text" in b) return `(name = ${capnpString(b.name)}, text = ${capnpString(b.text)})`;
    if ("kvNamespace" in b) return `(name = ${capnpString(b.name)}, kvNamespace = "kv")`;
    return `(name = ${capnpString(b.name)}, durableObjectNamespace = ${capnpString(b.durableObjectNamespace)})`;
  });
  const doLines = durableObjects.map(
    (d) => `(className = ${capnpString(d.className)}, uniqueKey = ${capnpString(`bench-${d.className}`)}, enableSql = ${d.enableSql ? "true" : "false"})`,
  );
  const usesKv = bindings.some((b) => "kvNamespace" in b);
  const counterService = counter
    ? `    (name = "counter", worker = (modules = [(name = "call-counter.js", esModule = embed ${capnpString(relative(dir, counter.path))})], compatibilityDate = ${capnpString(compatibilityDate)})),\n`
    : "";
  const counterSocket = counter ? `,\n    (name = "counter", address = "127.0.0.1:${counter.port}", http = (), service = "counter")` : "";
  const config = `# Written by bench/lib/workerd.mjs for one benchmark run.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .mainWorker),
    (name = "internet", network = (allow = ["public", "local"])),
${usesKv ? `    (name = "kv", worker = .kvStub),\n` : ""}${doLines.length ? `    (name = "do-storage", disk = (path = ${capnpString(stateDir)}, writable = true)),\n` : ""}${counterService}  ],
  sockets = [
    (name = "http", address = "127.0.0.1:${port}", http = (), service = "main")${counterSocket}
  ],
);

const mainWorker :Workerd.Worker = (
  modules = [
    ${moduleLines.join(",\n    ")}
  ],
  compatibilityDate = ${capnpString(compatibilityDate)},
  bindings = [
    ${bindingLines.join(",\n    ")}
  ],
  globalOutbound = "internet",
${counter ? `  tails = ["counter"],\n` : ""}${doLines.length ? `  durableObjectNamespaces = [\n    ${doLines.join(",\n    ")}\n  ],\n  durableObjectStorage = (localDisk = "do-storage"),\n` : ""});

# KV's HTTP protocol, as far as the gateway needs it today: every key is absent (gateway keys
# listed in the configuration are matched without KV).
const kvStub :Workerd.Worker = (
  modules = [(name = "kv.js", esModule = "export default { fetch() { return new Response(null, { status: 404 }); } };")],
  compatibilityDate = ${capnpString(compatibilityDate)},
${counter ? `  tails = [(name = "counter", entrypoint = "KvTail")],\n` : ""});
`;
  writeFileSync(file, config);
  return file;
}

/** The gateway's workerd modules: build/index.js imports its wasm as "./index_bg.wasm". */
export function gatewayModules(buildDir) {
  return [
    { name: "index.js", path: join(buildDir, "index.js"), kind: "esModule" },
    { name: "index_bg.wasm", path: join(buildDir, "index_bg.wasm"), kind: "wasm" },
  ];
}
