// The grammar of a Responses API event stream (`POST /v1/responses` with `stream: true`), as
// the gateway writes it and the official SDKs' stream helpers need it: SSE events
// `event: <type>` + `data: <json>`; every event with its `type` and a `sequence_number`
// counting from 0; `response.created` and `response.in_progress` first (the response in
// progress, output empty); each output item added, its own events in order, then done, one at
// a time; a terminal `response.completed`, `response.incomplete` or `response.failed` whose
// output is the items done; after `response.failed`, and only there, an `error` event (with
// its members also under `error`, which is what the SDKs raise an `APIError` on).
//
// `checkResponsesStream(text, validate)` throws, naming the event and the rule, unless `text`
// follows it. With `validate(schemaName, value)` (openapi.mjs's `assertSchema`), every event
// is also validated against its schema in OpenAI's OpenAPI document.

/** The OpenAPI schema of each event type the gateway writes. */
export const EVENT_SCHEMAS = {
  "response.created": "ResponseCreatedEvent",
  "response.in_progress": "ResponseInProgressEvent",
  "response.completed": "ResponseCompletedEvent",
  "response.incomplete": "ResponseIncompleteEvent",
  "response.failed": "ResponseFailedEvent",
  "response.output_item.added": "ResponseOutputItemAddedEvent",
  "response.output_item.done": "ResponseOutputItemDoneEvent",
  "response.content_part.added": "ResponseContentPartAddedEvent",
  "response.content_part.done": "ResponseContentPartDoneEvent",
  "response.output_text.delta": "ResponseTextDeltaEvent",
  "response.output_text.done": "ResponseTextDoneEvent",
  "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
  "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
  "response.reasoning_summary_part.added": "ResponseReasoningSummaryPartAddedEvent",
  "response.reasoning_summary_part.done": "ResponseReasoningSummaryPartDoneEvent",
  "response.reasoning_summary_text.delta": "ResponseReasoningSummaryTextDeltaEvent",
  "response.reasoning_summary_text.done": "ResponseReasoningSummaryTextDoneEvent",
  error: "ResponseErrorEvent",
};

const TERMINAL = ["response.completed", "response.incomplete", "response.failed"];

const same = (a, b) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));

// Key order does not matter in JSON: compare with sorted keys.
function canonical(value) {
  if (Array.isArray(value)) return value.map(canonical);
  if (!value || typeof value !== "object") return value;
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical(value[k])]));
}

const outputTextPart = (text) => ({ type: "output_text", text, annotations: [], logprobs: [] });
const summaryPart = (text) => ({ type: "summary_text", text });

/** Splits raw SSE text into `{event, data}` pairs (comments skipped, CRLF accepted). */
export function parseSse(text) {
  const events = [];
  const normalized = text.replace(/\r\n?/g, "\n");
  if (normalized.length && !normalized.endsWith("\n\n")) throw new Error("the stream does not end with a blank line");
  for (const chunk of normalized.split("\n\n")) {
    if (!chunk) continue;
    let event = null;
    const data = [];
    for (const line of chunk.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length) events.push({ event, data: data.join("\n") });
  }
  return events;
}

/**
 * Checks a Responses event stream. Returns `{events, items, response, terminal, error}`: the
 * parsed events, the output items done, the terminal event's response and type, and the
 * `error` event if any.
 */
export function checkResponsesStream(text, validate) {
  const events = parseSse(text).map(({ event, data }, n) => {
    let value;
    try {
      value = JSON.parse(data);
    } catch (e) {
      throw new Error(`event ${n}: data is not JSON (${e.message}): ${data.slice(0, 200)}`);
    }
    if (event !== value?.type) throw new Error(`event ${n}: named '${event}' but typed '${value?.type}'`);
    if (value.sequence_number !== n) {
      throw new Error(`event ${n} (${value.type}): sequence_number ${value.sequence_number}, expected ${n}`);
    }
    if (validate) {
      const schema = EVENT_SCHEMAS[value.type];
      if (!schema) throw new Error(`event ${n}: '${value.type}' is not an event this gateway writes`);
      validate(schema, value);
    }
    return value;
  });
  const types = events.map((e) => e.type);
  if (types[0] !== "response.created" || types[1] !== "response.in_progress") {
    throw new Error(`the stream must begin with response.created, response.in_progress; it begins ${types.slice(0, 2)}`);
  }
  const id = events[0].response?.id;
  for (const e of events.slice(0, 2)) {
    const r = e.response;
    if (r?.id !== id || r.object !== "response" || r.status !== "in_progress" || !same(r.output, [])) {
      throw new Error(`${e.type}: not the response ${id} in_progress with an empty output`);
    }
  }

  const items = [];
  let open = null;
  let terminal = null;
  let error = null;
  events.slice(2).forEach((e, k) => {
    const n = k + 2;
    const fail = (why) => {
      throw new Error(`event ${n} (${e.type}): ${why}\n${JSON.stringify(e).slice(0, 1000)}`);
    };
    if (error) fail("after the error event");
    if (terminal && e.type !== "error") fail(`after the terminal ${terminal.type}`);
    if ("item_id" in e) {
      if (!open) fail("no output item is open");
      if (e.item_id !== open.item.id || e.output_index !== open.index) fail("not the open item's item_id and output_index");
    }
    const itemType = open?.item.type;
    switch (e.type) {
      case "response.output_item.added": {
        if (open) fail(`item ${open.index} is still open`);
        if (e.output_index !== items.length) fail(`output_index ${e.output_index}, expected ${items.length}`);
        const item = e.item;
        if (item?.status !== "in_progress" || typeof item.id !== "string" || !item.id) fail("the item is not in_progress with an id");
        const empty =
          (item.type === "message" && item.role === "assistant" && same(item.content, [])) ||
          (item.type === "function_call" && item.arguments === "" && typeof item.call_id === "string" && typeof item.name === "string") ||
          (item.type === "reasoning" && same(item.summary, []));
        if (!empty) fail("not an empty message, function_call or reasoning item");
        if (items.some((i) => i.id === item.id)) fail(`the id ${item.id} is an earlier item's`);
        if (item.type === "function_call" && items.some((i) => i.call_id === item.call_id)) {
          fail(`the call_id ${item.call_id} is an earlier call's (the SDKs tell calls apart by it)`);
        }
        open = { index: items.length, item, parts: [], part: null, arguments: "", argumentsDone: false, summary: [] };
        break;
      }
      case "response.content_part.added":
      case "response.reasoning_summary_part.added": {
        const message = e.type === "response.content_part.added";
        if (itemType !== (message ? "message" : "reasoning")) fail(`the open item is a ${itemType}`);
        if (open.part) fail("a part is still open");
        const index = message ? open.parts.length : open.summary.length;
        if ((message ? e.content_index : e.summary_index) !== index) fail(`not the next part (${index})`);
        if (!same(e.part, message ? outputTextPart("") : summaryPart(""))) fail("the part added is not empty");
        open.part = { text: "", done: false };
        break;
      }
      case "response.output_text.delta":
      case "response.reasoning_summary_text.delta": {
        const message = e.type === "response.output_text.delta";
        if (itemType !== (message ? "message" : "reasoning")) fail(`the open item is a ${itemType}`);
        if (!open.part || open.part.done) fail("no part is open");
        const index = message ? open.parts.length : open.summary.length;
        if ((message ? e.content_index : e.summary_index) !== index) fail("not the open part's index");
        if (typeof e.delta !== "string") fail("no delta");
        if (message && !Array.isArray(e.logprobs)) fail("no logprobs");
        open.part.text += e.delta;
        break;
      }
      case "response.output_text.done":
      case "response.reasoning_summary_text.done": {
        if (!open?.part || open.part.done) fail("no part is open");
        if (e.text !== open.part.text) fail("the text is not the deltas joined");
        open.part.done = true;
        break;
      }
      case "response.content_part.done":
      case "response.reasoning_summary_part.done": {
        const message = e.type === "response.content_part.done";
        if (!open?.part?.done) fail("the part's text is not done");
        const part = message ? outputTextPart(open.part.text) : summaryPart(open.part.text);
        if (!same(e.part, part)) fail("the part is not its text's");
        (message ? open.parts : open.summary).push(part);
        open.part = null;
        break;
      }
      case "response.function_call_arguments.delta":
        if (itemType !== "function_call" || open.argumentsDone) fail("no function call is open");
        if (typeof e.delta !== "string") fail("no delta");
        open.arguments += e.delta;
        break;
      case "response.function_call_arguments.done":
        if (itemType !== "function_call") fail("no function call is open");
        if (e.arguments !== open.arguments || e.name !== open.item.name) fail("not the call's arguments and name");
        open.argumentsDone = true;
        break;
      case "response.output_item.done": {
        if (!open) fail("no item is open");
        const item = e.item;
        if (e.output_index !== open.index || item?.id !== open.item.id || item.type !== open.item.type) fail("not the open item");
        if (!["completed", "incomplete"].includes(item.status)) fail(`status ${item.status}`);
        if (open.part) fail("a part is still open");
        const agrees =
          itemType === "message"
            ? open.parts.length > 0 && same(item.content, open.parts)
            : itemType === "function_call"
              ? open.argumentsDone && item.arguments === open.arguments && item.call_id === open.item.call_id && item.name === open.item.name
              : same(item.summary, open.summary);
        if (!agrees) fail("the item is not what its events said");
        items.push(item);
        open = null;
        break;
      }
      case "response.completed":
      case "response.incomplete":
      case "response.failed": {
        if (open) fail(`item ${open.index} is still open`);
        const r = e.response;
        if (r?.id !== id) fail(`the response ${r?.id} is not the stream's ${id}`);
        if (!same(r.output, items)) fail("the response's output is not the items done");
        const status = e.type.slice("response.".length);
        if (r.status !== status) fail(`status ${r.status}`);
        if (status === "completed" && (r.error !== null || r.incomplete_details !== null)) fail("an error or incomplete_details");
        if (status === "incomplete" && (r.error !== null || typeof r.incomplete_details?.reason !== "string")) fail("no incomplete_details.reason");
        if (status === "failed" && (typeof r.error?.code !== "string" || typeof r.error?.message !== "string")) fail("no error code and message");
        terminal = e;
        break;
      }
      case "error":
        if (terminal?.type !== "response.failed") fail("an error event must follow response.failed");
        if (typeof e.code !== "string" || typeof e.message !== "string") fail("no code and message");
        // The SDKs raise an APIError for an event whose data has an `error`.
        if (e.error?.message !== e.message) fail("no nested error the SDKs raise");
        error = e;
        break;
      default:
        fail("an event this gateway never writes");
    }
  });
  if (!terminal) throw new Error(`the stream has no terminal event (${TERMINAL.join(", ")}); it ends with ${types.at(-1)}`);
  if (terminal.type === "response.failed" && !error) {
    throw new Error("response.failed is not followed by the error event the SDKs raise an APIError on");
  }
  return { events, items, response: terminal.response, terminal: terminal.type, error };
}
