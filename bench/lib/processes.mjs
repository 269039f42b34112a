// Every process the benchmark starts: each in its own process group (so a server's workers go
// with it), stopped at the end, on failure and on Ctrl-C. Its CPU time and peak memory come
// from /proc, summed over the group.

import { spawn, execFileSync } from "node:child_process";
import { readFileSync, readdirSync, createWriteStream } from "node:fs";
import { once } from "node:events";

const started = new Set();
const CLOCK_TICKS = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

// The harness must not leave anything running, however it ends.
process.on("exit", () => started.forEach((c) => killGroup(c, "SIGKILL")));
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    console.error(`bench: ${signal}, stopping every process it started`);
    process.exit(130);
  });
}

/** Pids of the process group `pgid` (the server and any workers it forked). */
function groupPids(pgid) {
  const pids = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the command name (which may hold spaces): state ppid pgrp ...
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid) pids.push(Number(entry));
    } catch {
      // Exited meanwhile.
    }
  }
  return pids;
}

export class Proc {
  constructor(name, child, logPath) {
    this.name = name;
    this.child = child;
    this.logPath = logPath;
    this.startedAt = performance.now();
  }

  /** CPU seconds (user + system) used so far by the live processes of the group. */
  cpuSeconds() {
    let ticks = 0;
    for (const pid of groupPids(this.child.pid)) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
      } catch {
        // Exited meanwhile.
      }
    }
    return ticks / CLOCK_TICKS;
  }

  /** Peak resident memory in bytes: each process's high-water mark, summed over the group. */
  peakRssBytes() {
    let kb = 0;
    for (const pid of groupPids(this.child.pid)) {
      try {
        const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
        if (hwm) kb += Number(hwm[1]);
      } catch {
        // Exited meanwhile.
      }
    }
    return kb * 1024;
  }

  get exited() {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** The end of its log, to say why it failed. */
  logTail(lines = 15) {
    try {
      return readFileSync(this.logPath, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  async stop() {
    if (!started.has(this.child)) return;
    if (!this.exited) {
      killGroup(this.child, "SIGTERM");
      const exited = once(this.child, "exit");
      const late = new Promise((resolve) => setTimeout(resolve, 5000, "late"));
      if ((await Promise.race([exited, late])) === "late") killGroup(this.child, "SIGKILL");
    }
    // Workers that outlived their parent.
    for (const pid of groupPids(this.child.pid)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Gone.
      }
    }
    started.delete(this.child);
  }
}

/** Starts `command` in its own process group, its output to `logPath`. */
export function startProcess(name, command, args, { env = {}, cwd, logPath }) {
  const log = createWriteStream(logPath);
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, ...env },
    detached: true, // its own process group
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  child.on("error", (e) => log.write(`bench: cannot start ${command}: ${e.message}\n`));
  started.add(child);
  return new Proc(name, child, logPath);
}

/**
 * Polls `probe` (an async function: true once the server answers as it should; it throws an
 * error marked `fatal` when waiting longer cannot help) until it succeeds; resolves to the
 * milliseconds from the process's start to that first success. Stops the process if it fails.
 */
export async function waitReady(proc, probe, timeoutMs) {
  const deadline = proc.startedAt + timeoutMs;
  let last = "no answer";
  try {
    while (performance.now() < deadline) {
      if (proc.exited) throw new Error(`${proc.name} exited (${proc.child.exitCode ?? proc.child.signalCode}):\n${proc.logTail()}`);
      try {
        const ok = await probe();
        if (ok === true) return performance.now() - proc.startedAt;
        last = String(ok);
      } catch (e) {
        if (e.fatal) throw e;
        last = e.cause?.code ?? e.message;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    throw new Error(`${proc.name} gave no good answer within ${timeoutMs / 1000} s (last: ${last}):\n${proc.logTail()}`);
  } catch (e) {
    await proc.stop();
    throw e;
  }
}

/** A free TCP port on 127.0.0.1. */
export async function freePort() {
  const { createServer } = await import("node:net");
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}
