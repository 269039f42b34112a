// Counts the gateway's invocations as the runtime reports them: a tail worker (workerd's
// `tails`), which receives one trace event per invocation of the worker it tails, once that
// invocation (and its `waitUntil` work) is over. The gateway's worker is tailed by the default
// entrypoint: its own invocations (client requests, stateless) and each of its Durable Objects'
// (`executionModel: "durableObject"`, the class in `entrypoint`), by the kind of event (a fetch,
// an RPC call, an alarm). The KV namespace's stub service is tailed by `KvTail`: one invocation
// a KV operation the gateway makes. GET / on this worker's own socket answers the counts so far.
import { WorkerEntrypoint } from "cloudflare:workers";

const counts = {};
const add = (key) => (counts[key] = (counts[key] ?? 0) + 1);
const kind = (event) => {
  if (event?.request) return "fetch";
  if (event?.rpcMethod !== undefined) return "rpc";
  if (event?.scheduledTime !== undefined) return "alarm";
  return Object.keys(event ?? {}).join("+") || "other";
};

export class KvTail extends WorkerEntrypoint {
  tail(events) {
    for (const e of events) add(`kv ${kind(e.event)}`);
  }
}

export default {
  tail(events) {
    for (const e of events) {
      if (e.executionModel === "durableObject") add(`do ${e.entrypoint} ${kind(e.event)}`);
      else add(`worker ${e.entrypoint ?? "default"} ${kind(e.event)}`);
    }
  },
  fetch() {
    return Response.json(counts);
  },
};
