// Anthropic's Messages stream grammar, checked on raw SSE text: what the gateway writes to an
// Anthropic client (`POST /v1/messages` with `stream: true`) must be a stream the official SDKs
// accumulate without surprise, whichever vendor answered.
//
//   stream  := ping* message_start ping* (block ping*)* (message_delta ping* message_stop | error)
//            | ping* error
//   block   := content_block_start (content_block_delta | ping)* content_block_stop
//
// Blocks are numbered 0, 1, 2... in order, one open at a time; a delta's kind is its block's
// (text_delta in text, input_json_delta in tool_use, thinking_delta then at most a
// signature_delta in thinking, none in redacted_thinking); every event's name is its data's
// `type`; nothing follows message_stop or error. `strict` adds what the gateway's own encoder
// promises beyond Anthropic's contract: a ping right after message_start, no empty delta, blocks
// that start empty (`text: ""`, `thinking: ""` with `signature: ""`, `input: {}`), and
// message_start before an error.

/** The events of an SSE text, in order: `{ event, data, json }` (`event` is null when the event
 * has no `event:` field, `json` is the parsed data or undefined when it is not JSON). */
export function parseSse(text) {
  const events = [];
  let event = null;
  let data = [];
  let hasData = false;
  const lines = text.split(/\r\n|\r|\n/);
  // A text that ends without a blank line leaves its last event undispatched, as the SSE
  // specification says; the final split element is what follows the last line end.
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === "") {
      if (hasData || event !== null) {
        const raw = data.join("\n");
        let json;
        try {
          json = JSON.parse(raw);
        } catch {
          json = undefined;
        }
        events.push({ event, data: raw, json });
      }
      event = null;
      data = [];
      hasData = false;
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") {
      data.push(value);
      hasData = true;
    }
  }
  return events;
}

const STOP_REASONS = new Set([
  "end_turn",
  "max_tokens",
  "stop_sequence",
  "tool_use",
  "pause_turn",
  "refusal",
  "model_context_window_exceeded",
]);

/** The delta types each block type takes. */
const DELTAS = {
  text: new Set(["text_delta", "citations_delta"]),
  thinking: new Set(["thinking_delta", "signature_delta"]),
  redacted_thinking: new Set(),
  tool_use: new Set(["input_json_delta"]),
  server_tool_use: new Set(["input_json_delta"]),
  mcp_tool_use: new Set(["input_json_delta"]),
  compaction: new Set(["compaction_delta"]),
};

function deltasOf(type) {
  if (type in DELTAS) return DELTAS[type];
  // Server tools' results, container uploads, MCP results: whole at their start.
  if (type.endsWith("_tool_result") || type === "container_upload") return new Set();
  return null;
}

const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v) => Number.isInteger(v) && v >= 0;

/**
 * Throws an Error saying which event breaks Anthropic's stream grammar, and how, when `text`
 * (a raw SSE body) is not a well-formed Messages stream. Returns what it accumulates to:
 * `{ message, error, events }`, `message` as the SDK's accumulator would build it (null for a
 * lone error), `error` the error event's `error` object (or null).
 *
 * Options: `strict` adds the gateway encoder's own promises (see above); `toolJson` (on by
 * default) requires a tool_use block's input_json_delta pieces to add up to a JSON object, as
 * the SDKs do when they parse it at the block's stop.
 */
export function checkAnthropicStream(text, { strict = false, toolJson = true } = {}) {
  if (typeof text !== "string") throw new TypeError("checkAnthropicStream takes the raw SSE text (a string)");
  const events = parseSse(text);
  const fail = (i, why) => {
    const from = Math.max(0, i - 3);
    const context = events
      .slice(from, i + 1)
      .map((e, k) => `  #${from + k} ${e.event}: ${e.data.length > 300 ? e.data.slice(0, 300) + "…" : e.data}`)
      .join("\n");
    const at = i < 0 ? "the stream" : `event #${i} (${events[i]?.event ?? "end of stream"})`;
    throw new Error(`Anthropic stream grammar: ${at}: ${why}\n${context}`);
  };
  if (!/(\r\n|\r|\n)(\r\n|\r|\n)$/.test(text) && text.length > 0) {
    fail(events.length - 1, "the text does not end with a blank line (its last event is never dispatched)");
  }
  if (events.length === 0) fail(-1, "no events at all");

  let message = null;
  let error = null;
  let open = null; // { index, type, signed }
  let sawDelta = false;
  let ended = false;
  let previous = null;

  for (let i = 0; i < events.length; i++) {
    const { event: name, json: data } = events[i];
    if (ended) fail(i, `nothing may follow ${previous}`);
    if (name === null) fail(i, "an event without an `event:` field");
    if (!isObject(data)) fail(i, "its data is not a JSON object");
    if (data.type !== name) fail(i, `its data's type is ${JSON.stringify(data.type)}, not the event's name`);
    if (message === null && name !== "message_start" && name !== "ping" && name !== "error") {
      fail(i, "the first event (pings aside) must be message_start");
    }
    if (strict && previous === "message_start" && name !== "ping") fail(i, "a ping must follow message_start");
    switch (name) {
      case "ping":
        break;
      case "message_start": {
        if (message !== null) fail(i, "a second message_start");
        const m = data.message;
        if (!isObject(m)) fail(i, "message_start without its message");
        if (typeof m.id !== "string" || m.id === "") fail(i, "the message has no id");
        if (m.type !== "message") fail(i, `message.type is ${JSON.stringify(m.type)}, not "message"`);
        if (m.role !== "assistant") fail(i, `message.role is ${JSON.stringify(m.role)}, not "assistant"`);
        if (typeof m.model !== "string") fail(i, "message.model is not a string");
        if (!Array.isArray(m.content) || m.content.length !== 0) fail(i, "message.content must be an empty array");
        if (m.stop_reason !== null) fail(i, "message.stop_reason must be null in message_start");
        if (m.stop_sequence !== null && m.stop_sequence !== undefined) fail(i, "message.stop_sequence must be null");
        if (!isObject(m.usage) || !isCount(m.usage.input_tokens) || !isCount(m.usage.output_tokens)) {
          fail(i, "message.usage needs input_tokens and output_tokens (counts)");
        }
        message = structuredClone(m);
        break;
      }
      case "content_block_start": {
        if (open) fail(i, `a block starts while block ${open.index} is open`);
        if (sawDelta) fail(i, "a block starts after message_delta");
        if (data.index !== message.content.length) {
          fail(i, `block index ${data.index}; the next block is ${message.content.length} (blocks are numbered in order)`);
        }
        const block = data.content_block;
        if (!isObject(block) || typeof block.type !== "string") fail(i, "content_block without a type");
        if (deltasOf(block.type) === null) fail(i, `unknown block type ${JSON.stringify(block.type)}`);
        switch (block.type) {
          case "text":
            if (typeof block.text !== "string") fail(i, "a text block without its text");
            if (strict && block.text !== "") fail(i, "a text block starts empty");
            break;
          case "thinking":
            if (typeof block.thinking !== "string") fail(i, "a thinking block without its thinking");
            if (strict && (block.thinking !== "" || block.signature !== "")) {
              fail(i, 'a thinking block starts with thinking "" and signature ""');
            }
            break;
          case "redacted_thinking":
            if (typeof block.data !== "string") fail(i, "a redacted_thinking block without its data");
            break;
          case "tool_use":
          case "server_tool_use":
          case "mcp_tool_use":
            if (typeof block.id !== "string" || block.id === "") fail(i, `a ${block.type} block without an id`);
            if (typeof block.name !== "string") fail(i, `a ${block.type} block without a name`);
            if (!isObject(block.input)) fail(i, `a ${block.type} block's input must be an object`);
            if (strict && Object.keys(block.input).length !== 0) fail(i, `a ${block.type} block starts with input {}`);
            break;
        }
        const copy = structuredClone(block);
        if (deltasOf(block.type).has("input_json_delta")) copy._json = "";
        message.content.push(copy);
        open = { index: data.index, type: block.type, signed: false };
        break;
      }
      case "content_block_delta": {
        if (!open) fail(i, `a delta for block ${data.index}, which is not open`);
        if (data.index !== open.index) fail(i, `a delta for block ${data.index} while block ${open.index} is open`);
        const delta = data.delta;
        if (!isObject(delta) || typeof delta.type !== "string") fail(i, "a delta without a type");
        if (!deltasOf(open.type).has(delta.type)) fail(i, `a ${delta.type} in a ${open.type} block`);
        if (open.signed) fail(i, "a thinking block's signature_delta comes just before its stop");
        const block = message.content[open.index];
        const piece = (field) => {
          if (typeof delta[field] !== "string") fail(i, `a ${delta.type} without its ${field} (a string)`);
          if (strict && delta[field] === "") fail(i, `an empty ${delta.type}`);
          return delta[field];
        };
        switch (delta.type) {
          case "text_delta":
            block.text += piece("text");
            break;
          case "citations_delta":
            if (!isObject(delta.citation)) fail(i, "a citations_delta without its citation");
            (block.citations ??= []).push(delta.citation);
            break;
          case "thinking_delta":
            block.thinking += piece("thinking");
            break;
          case "signature_delta":
            block.signature = piece("signature");
            open.signed = true;
            break;
          case "input_json_delta":
            block._json += piece("partial_json");
            break;
          case "compaction_delta":
            break;
        }
        break;
      }
      case "content_block_stop": {
        if (!open) fail(i, `a stop for block ${data.index}, which is not open`);
        if (data.index !== open.index) fail(i, `a stop for block ${data.index} while block ${open.index} is open`);
        const block = message.content[open.index];
        if ("_json" in block) {
          const json = block._json;
          delete block._json;
          if (json !== "" && toolJson) {
            try {
              block.input = JSON.parse(json);
            } catch (e) {
              fail(i, `the ${block.type} block's input_json_delta pieces are not JSON: ${e.message}: ${json}`);
            }
            if (!isObject(block.input)) fail(i, `the ${block.type} block's input is not an object: ${json}`);
          }
        }
        open = null;
        break;
      }
      case "message_delta": {
        if (open) fail(i, `message_delta while block ${open.index} is open`);
        if (sawDelta) fail(i, "a second message_delta");
        sawDelta = true;
        const delta = data.delta;
        if (!isObject(delta) || !STOP_REASONS.has(delta.stop_reason)) {
          fail(i, `stop_reason ${JSON.stringify(delta?.stop_reason)} is not one of Anthropic's`);
        }
        if (delta.stop_sequence !== null && delta.stop_sequence !== undefined && typeof delta.stop_sequence !== "string") {
          fail(i, "stop_sequence must be a string or null");
        }
        if (!isObject(data.usage) || !isCount(data.usage.output_tokens)) fail(i, "message_delta.usage.output_tokens must be a count");
        for (const field of ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]) {
          const v = data.usage[field];
          if (v !== undefined && v !== null && !isCount(v)) fail(i, `message_delta.usage.${field} must be a count or null`);
        }
        message.stop_reason = delta.stop_reason;
        message.stop_sequence = delta.stop_sequence ?? null;
        message.usage.output_tokens = data.usage.output_tokens;
        for (const field of ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]) {
          if (data.usage[field] != null) message.usage[field] = data.usage[field];
        }
        break;
      }
      case "message_stop":
        if (!sawDelta) fail(i, "message_stop without message_delta before it");
        ended = true;
        break;
      case "error": {
        if (sawDelta) fail(i, "an error after message_delta");
        if (strict && message === null) fail(i, "the gateway writes message_start before an error");
        const e = data.error;
        if (!isObject(e) || typeof e.type !== "string" || typeof e.message !== "string") {
          fail(i, 'an error event is {"type":"error","error":{"type":string,"message":string}}');
        }
        error = e;
        ended = true;
        break;
      }
      default:
        fail(i, `an event type Anthropic's stream does not have: ${JSON.stringify(name)}`);
    }
    previous = name;
  }
  if (!ended) fail(events.length - 1, "the stream ends without message_stop or an error event");
  return { message, error, events };
}
