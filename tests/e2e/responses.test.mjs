// OpenAI's Responses API as a client dialect (`/v1/responses`): the official `openai` SDK's
// `responses.create` / `responses.stream` against the gateway, answered by an OpenAI-format
// target, an Anthropic target, a Gemini target and the built-in mock; every answer and event
// validated against the Responses schemas of OpenAI's OpenAPI document, every stream against
// the event grammar (responses-grammar.mjs); state kept by the gateway (`store`,
// `previous_response_id`, retrieve, delete, input items), owned by the key that made it.

import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMock, startGateway, call, GATEWAY_KEY, VENDOR_KEY, ADMIN_TOKEN } from "./harness.mjs";
import { testConfig, closedPort } from "./config.mjs";
import { assertSchema, specAvailable } from "./openapi.mjs";
import { checkResponsesStream } from "./responses-grammar.mjs";

let mock;
let gateway;
let client;

const TARGETS = [
  { model: "gpt-test", vendor: "openai" },
  { model: "claude-sonnet", vendor: "anthropic" },
  { model: "gemini-flash", vendor: "gemini" },
  { model: "echo", vendor: "mock" },
];

const validate = specAvailable ? assertSchema : undefined;

/** The text of a Response's message items (the SDK's stream helper does not add `output_text`). */
const textOf = (response) =>
  response.output
    .filter((o) => o.type === "message")
    .flatMap((o) => o.content)
    .filter((c) => c.type === "output_text")
    .map((c) => c.text)
    .join("");

before(async () => {
  // The OpenAPI document takes seconds to load: before any connection is open, not between a
  // kept-alive connection's requests.
  if (validate) assert.throws(() => validate("Response", {}));
  mock = await startMock();
  gateway = await startGateway({
    config: testConfig(mock, await closedPort()),
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY: "sk-ant-vendor-secret-5678", GEMINI_KEY: "AIza-gemini-vendor-key-0000", ADMIN_TOKEN },
  });
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: GATEWAY_KEY, maxRetries: 0, timeout: 10_000 });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

beforeEach(() => mock.reset());

const weather = {
  type: "function",
  name: "get_weather",
  description: "Current weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
  strict: true,
};

async function rawStream(body) {
  const res = await call(gateway, "/v1/responses", { body: { ...body, stream: true } });
  assert.equal(res.status, 200, await res.clone().text());
  const text = await res.text();
  return checkResponsesStream(text, validate);
}

for (const { model, vendor } of TARGETS) {
  test(`${vendor}: responses.create answers a valid Response, kept and retrievable`, async () => {
    const response = await client.responses.create({ model, instructions: "Be brief.", input: "Hi there" });
    validate?.("Response", response);
    assert.equal(response.object, "response");
    assert.equal(response.status, "completed");
    assert.match(response.id, /^resp_/);
    assert.ok(response.output_text.length > 0, JSON.stringify(response.output));
    assert.ok(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
    const again = await client.responses.retrieve(response.id);
    assert.equal(again.id, response.id);
    assert.equal(again.output_text, response.output_text);
  });

  test(`${vendor}: responses.stream: the event grammar, schemas, and the SDK's final response`, async () => {
    const body = { model, input: [{ role: "user", content: [{ type: "input_text", text: "Tell me something" }] }] };
    const { response, terminal } = await rawStream(body);
    assert.equal(terminal, "response.completed");
    assert.equal(response.status, "completed");
    const stream = client.responses.stream(body);
    let deltas = "";
    stream.on("response.output_text.delta", (e) => (deltas += e.delta));
    const final = await stream.finalResponse();
    assert.equal(final.status, "completed");
    assert.ok(textOf(final).length > 0);
    assert.equal(deltas, textOf(final));
    // A streamed response is kept once its stream has ended.
    let kept;
    for (let i = 0; i < 40 && !kept; i++) {
      kept = await client.responses.retrieve(final.id).catch(() => undefined);
      if (!kept) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(kept, "the streamed response was stored");
    assert.equal(kept.output_text, textOf(final));
  });

  if (vendor !== "mock") {
    test(`${vendor}: function tools round trip, streamed and not`, async () => {
      const first = await client.responses.create({ model, tools: [weather], input: "Weather in Paris?" });
      validate?.("Response", first);
      const call1 = first.output.find((o) => o.type === "function_call");
      assert.ok(call1, JSON.stringify(first.output));
      assert.equal(call1.name, "get_weather");
      assert.equal(typeof JSON.parse(call1.arguments).city, "string");
      const { response: streamed, events } = await rawStream({ model, tools: [weather], input: "Weather in Paris?" });
      const streamedCall = streamed.output.find((o) => o.type === "function_call");
      assert.deepEqual(JSON.parse(streamedCall.arguments), JSON.parse(call1.arguments));
      assert.ok(events.some((e) => e.type === "response.function_call_arguments.done"));
      // The result goes back as a function_call_output, continuing the stored response.
      const second = await client.responses.create({
        model,
        tools: [weather],
        previous_response_id: first.id,
        input: [{ type: "function_call_output", call_id: call1.call_id, output: "18 degrees" }],
      });
      validate?.("Response", second);
      assert.match(second.output_text, /18 degrees/);
      assert.equal(second.previous_response_id, first.id);
    });
  }
}

test("previous_response_id continues the conversation the gateway kept", async () => {
  const first = await client.responses.create({ model: "gpt-test", input: "My name is Ada." });
  await client.responses.create({ model: "gpt-test", previous_response_id: first.id, input: "What is my name?" });
  const sent = (await mock.requests()).filter((r) => r.path.endsWith("/chat/completions")).at(-1).json;
  const texts = sent.messages.map((m) => (typeof m.content === "string" ? m.content : JSON.stringify(m.content)));
  assert.ok(texts.some((t) => t.includes("My name is Ada.")), JSON.stringify(sent.messages));
  assert.equal(sent.messages.at(-1).role, "user");
  assert.match(texts.at(-1), /What is my name/);
  assert.ok(sent.messages.some((m) => m.role === "assistant"), "the earlier answer is in the history");
  const items = await client.responses.inputItems.list(first.id);
  assert.equal(items.data.length, 1);
  assert.equal(items.data[0].role, "user");
  const unknown = await call(gateway, "/v1/responses", { body: { model: "gpt-test", previous_response_id: "resp_nope", input: "x" } });
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).error.param, "previous_response_id");
});

test("store: false keeps nothing; DELETE forgets; another key sees nothing", async () => {
  const unstored = await client.responses.create({ model: "echo", input: "x", store: false });
  await assert.rejects(client.responses.retrieve(unstored.id), (e) => e.status === 404);
  const kept = await client.responses.create({ model: "echo", input: "y" });
  // Another gateway key, made by the admin API.
  const made = await call(gateway, "/admin/keys", { body: { name: "other" }, key: ADMIN_TOKEN });
  assert.equal(made.status, 201, await made.clone().text());
  const other = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: (await made.json()).key, maxRetries: 0 });
  await assert.rejects(other.responses.retrieve(kept.id), (e) => e.status === 404);
  await assert.rejects(other.responses.delete(kept.id), (e) => e.status === 404);
  const chained = await call(gateway, "/v1/responses", {
    body: { model: "echo", previous_response_id: kept.id, input: "z" },
    key: other.apiKey,
  });
  assert.equal(chained.status, 404);
  await client.responses.delete(kept.id);
  await assert.rejects(client.responses.retrieve(kept.id), (e) => e.status === 404);
});

test("text.format json_schema and reasoning.effort reach the vendor in its terms", async () => {
  const response = await client.responses.create({
    model: "gpt-test",
    input: "A person",
    reasoning: { effort: "low" },
    max_output_tokens: 64,
    text: { format: { type: "json_schema", name: "person", schema: { type: "object", properties: { name: { type: "string" } }, required: ["name"], additionalProperties: false }, strict: true } },
  });
  validate?.("Response", response);
  const sent = (await mock.requests()).at(-1).json;
  assert.equal(sent.response_format.type, "json_schema");
  assert.equal(sent.response_format.json_schema.name, "person");
  assert.equal(sent.reasoning_effort, "low");
  assert.equal(sent.max_completion_tokens, 64);
});

test("a built-in tool is refused clearly; bad input is a 400 naming the parameter", async () => {
  const res = await call(gateway, "/v1/responses", { body: { model: "gpt-test", input: "x", tools: [{ type: "web_search" }] } });
  assert.equal(res.status, 400);
  const error = (await res.json()).error;
  assert.match(error.message, /web_search/);
  assert.equal((await mock.requests()).length, 0);
  await assert.rejects(client.responses.create({ model: "gpt-test", input: "x", temperature: 5 }), (e) => e.status === 400 && e.param === "temperature");
  await assert.rejects(client.responses.create({ model: "nope", input: "x" }), (e) => e.status === 404);
});

test("a vendor stream broken after the commit ends with response.failed and an error the SDK raises", async () => {
  await mock.fault({ match: { model: "vendor-gpt" }, cut_after: 3 });
  const res = await call(gateway, "/v1/responses", { body: { model: "gpt-test", input: "Hi", stream: true } });
  const { terminal, error } = checkResponsesStream(await res.text(), validate);
  assert.equal(terminal, "response.failed");
  assert.ok(error);
  await mock.fault({ match: { model: "vendor-gpt" }, cut_after: 3 });
  await assert.rejects(client.responses.stream({ model: "gpt-test", input: "Hi" }).finalResponse());
});

test("review: ids that are not the gateway's are not looked up; an item is referenced once at most", async () => {
  for (const id of ["resp_nope", "../x", "resp_" + "z".repeat(48), "x".repeat(5000)]) {
    const res = await call(gateway, `/v1/responses/${encodeURIComponent(id)}`, { method: "GET" });
    assert.equal(res.status, 404, id);
    assert.ok((await res.text()).length < 400);
  }
  const twice = await call(gateway, "/v1/responses", {
    body: { model: "echo", input: [{ type: "message", role: "user", id: "a", content: "x" }, { type: "item_reference", id: "a" }, { type: "item_reference", id: "a" }] },
  });
  assert.equal(twice.status, 400);
  assert.equal((await twice.json()).error.param, "input[2].id");
});

test("a key at its quota of stored responses is refused in OpenAI's shape before any vendor is called; store: false and a deletion free it", async () => {
  const limited = await startGateway({
    config: testConfig(mock, await closedPort()),
    secrets: { UPSTREAM_KEY: VENDOR_KEY, STORED_RESPONSES_PER_KEY: "2" },
  });
  try {
    // maxRetries 2: the refusal says not to retry (x-should-retry: false), and the SDK does not.
    const sdk = new OpenAI({ baseURL: `${limited.url}/v1`, apiKey: GATEWAY_KEY, maxRetries: 2, timeout: 10_000 });
    const kept = [];
    for (const input of ["one", "two"]) {
      const response = await sdk.responses.create({ model: "gpt-test", input });
      await sdk.responses.retrieve(response.id); // stored (and counted) before the next call
      kept.push(response.id);
    }
    const calls = (await mock.requests()).length;
    const refused = await call(limited, "/v1/responses", { body: { model: "gpt-test", input: "three" } });
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get("x-should-retry"), "false");
    const { error } = await refused.json();
    assert.deepEqual(
      [error.type, error.code, error.param],
      ["insufficient_quota", "stored_responses_quota_exceeded", "store"],
    );
    assert.match(error.message, /2 stored responses/);
    assert.equal((await mock.requests()).length, calls, "no vendor call for a refused request");
    await assert.rejects(sdk.responses.create({ model: "gpt-test", input: "three" }), (e) => {
      assert.equal(e.status, 429);
      assert.equal(e.code, "stored_responses_quota_exceeded");
      return true;
    });
    // Not stored: not counted, not refused.
    const unstored = await sdk.responses.create({ model: "gpt-test", input: "three", store: false });
    assert.equal(unstored.status, "completed");
    // A deletion frees its place at once.
    await sdk.responses.delete(kept[0]);
    const again = await sdk.responses.create({ model: "gpt-test", input: "four" });
    assert.equal(again.status, "completed");
  } finally {
    await limited.stop();
  }
});
