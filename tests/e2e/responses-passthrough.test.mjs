// OpenAI Responses clients passed through to a provider that serves the Responses API
// (`responses_api: true`): the client's bytes reach the vendor with only `model` renamed, the
// vendor's Response object and event stream come back as the vendor sent them (its own id),
// the gateway keeps them for retrieve / delete / `previous_response_id`, and the conversation
// state is the vendor's own exactly when the vendor holds it (`forward_store`, same provider),
// else the gateway's stored history. Every answer and event is validated against OpenAI's
// schemas and the stream grammar, through the official SDK as well as raw.

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

const validate = specAvailable ? assertSchema : undefined;

before(async () => {
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

/** The requests the vendor got at its Responses endpoint. */
const responsesCalls = async () => (await mock.requests()).filter((r) => /\/responses(\/|$)/.test(r.path));

const weather = {
  type: "function",
  name: "get_weather",
  description: "Current weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
  strict: true,
};

test("the client's bytes reach the vendor with only the model renamed; the answer is the vendor's", async () => {
  const body = `{"model":"gpt-native","input":"Hi there","store":true,"include":["reasoning.encrypted_content"],"metadata":{"k":"v"},"a_future_field":{"x":[1,2]}}`;
  const res = await call(gateway, "/v1/responses", { body });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.equal(res.headers.get("x-switchyard-provider"), "native");
  assert.ok(res.headers.get("x-switchyard-cost-usd"), "priced from the Response's usage");
  const [sent] = await responsesCalls();
  assert.equal(sent.path, "/v1/responses");
  assert.equal(sent.body, body.replace('"gpt-native"', '"vendor-native"'), "byte for byte");
  assert.equal(sent.headers.authorization, `Bearer ${VENDOR_KEY}`);
  const response = JSON.parse(text);
  validate?.("Response", response);
  assert.equal(response.model, "vendor-native", "the vendor's object, untouched");
  assert.match(response.id, /^resp_/);
  // Kept by the gateway under the vendor's id, for this key only.
  const kept = await client.responses.retrieve(response.id);
  assert.equal(kept.id, response.id);
  assert.deepEqual(kept.output, response.output);
  const made = await call(gateway, "/admin/keys", { body: { name: "other-native" }, key: ADMIN_TOKEN });
  const other = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: (await made.json()).key, maxRetries: 0 });
  await assert.rejects(other.responses.retrieve(response.id), (e) => e.status === 404);
});

test("a chain on the provider that holds it goes as sent: the vendor continues its own conversation", async () => {
  const first = await client.responses.create({ model: "gpt-native", input: "My name is Ada.", tools: [weather] });
  validate?.("Response", first);
  const call0 = first.output.find((o) => o.type === "function_call");
  assert.ok(call0, JSON.stringify(first.output));
  const second = await client.responses.create({
    model: "gpt-native",
    previous_response_id: first.id,
    input: [{ type: "function_call_output", call_id: call0.call_id, output: "sunny" }],
  });
  validate?.("Response", second);
  assert.match(second.output_text, /The tool answered: sunny/);
  assert.match(second.output_text, /continuing/, "the vendor knew the conversation");
  const sent = (await responsesCalls()).at(-1).json;
  assert.equal(sent.previous_response_id, first.id, "sent as is: the vendor holds it");
  assert.equal(sent.input.length, 1, "and no history replayed");
  assert.equal(second.previous_response_id, first.id);
});

test("a provider that may not keep prompts is told not to store, and is sent the gateway's history", async () => {
  const first = await client.responses.create({ model: "gpt-native-private", input: "My name is Ada." });
  validate?.("Response", first);
  let sent = (await responsesCalls()).at(-1).json;
  assert.equal(sent.store, false, "the vendor stores nothing");
  // The gateway did: retrievable, and continued by replaying the conversation.
  assert.equal((await client.responses.retrieve(first.id)).id, first.id);
  const second = await client.responses.create({ model: "gpt-native-private", previous_response_id: first.id, input: "What is my name?" });
  validate?.("Response", second);
  sent = (await responsesCalls()).at(-1).json;
  assert.equal(sent.previous_response_id, undefined, "the vendor does not hold it");
  assert.equal(sent.store, false);
  const texts = JSON.stringify(sent.input);
  assert.match(texts, /My name is Ada\./);
  assert.match(texts, /What is my name\?/);
  assert.ok(sent.input.some((i) => i.role === "assistant"), "the earlier answer is replayed");
  assert.ok(sent.input.every((i) => i.id === undefined), "without ids the vendor never gave");
  assert.doesNotMatch(second.output_text, /continuing/, "the vendor saw no chain of its own");
});

test("a chain moves between vendors: translated to Anthropic, then passed through, with the gateway's history", async () => {
  const first = await client.responses.create({ model: "claude-sonnet", input: "My name is Ada." });
  const second = await client.responses.create({ model: "gpt-native", previous_response_id: first.id, input: "What is my name?" });
  validate?.("Response", second);
  let sent = (await responsesCalls()).at(-1).json;
  assert.equal(sent.previous_response_id, undefined);
  assert.match(JSON.stringify(sent.input), /My name is Ada\./);
  // And back: the passed-through answer is part of the history Anthropic is sent.
  await client.responses.create({ model: "claude-sonnet", previous_response_id: second.id, input: "Again?" });
  sent = (await mock.requests()).filter((r) => r.path.endsWith("/messages")).at(-1).json;
  const history = JSON.stringify(sent.messages);
  assert.match(history, /My name is Ada\./);
  assert.match(history, /What is my name\?/);
  assert.match(history, /Again\?/);
  assert.equal(sent.messages.filter((m) => m.role === "assistant").length, 2);
});

test("streamed: the vendor's events pass through, valid and in grammar, and the final response is kept", async () => {
  const res = await call(gateway, "/v1/responses", { body: { model: "gpt-native", input: "Hi", stream: true, tools: [weather], tool_choice: "auto" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /text\/event-stream/);
  const text = await res.text();
  assert.doesNotMatch(text, /\[DONE\]/, "the Responses API sends no [DONE]");
  const { terminal, response } = checkResponsesStream(text, validate);
  assert.equal(terminal, "response.completed");
  assert.equal(response.model, "vendor-native");
  assert.ok(response.output.some((o) => o.type === "function_call"));
  const kept = await client.responses.retrieve(response.id);
  assert.deepEqual(kept.output, response.output);

  const stream = client.responses.stream({ model: "gpt-native", input: "Hello", reasoning: { effort: "low" } });
  let deltas = "";
  for await (const event of stream) if (event.type === "response.output_text.delta") deltas += event.delta;
  const final = await stream.finalResponse();
  validate?.("Response", final);
  assert.equal(textOf(final), deltas);
  assert.ok(final.output.some((o) => o.type === "reasoning"));
  assert.ok(final.usage.output_tokens_details.reasoning_tokens > 0);
});

test("a vendor stream cut after the commit ends with response.failed and an error the SDK raises", async () => {
  await mock.fault({ match: { model: "vendor-native" }, cut_after: 4 });
  const res = await call(gateway, "/v1/responses", { body: { model: "gpt-native", input: "Hi", stream: true } });
  const text = await res.text();
  const { terminal, error } = checkResponsesStream(text, validate);
  assert.equal(terminal, "response.failed");
  assert.ok(error);
  assert.ok(!text.includes(VENDOR_KEY));
  await mock.fault({ match: { model: "vendor-native" }, cut_after: 4 });
  await assert.rejects(client.responses.stream({ model: "gpt-native", input: "Hi" }).finalResponse());
});

test("a vendor failing before its answer fails over to a translated target, in the same dialect", async () => {
  await mock.fault({ match: { model: "vendor-native-flaky" }, status: 503, times: 2 });
  const response = await client.responses.create({ model: "native-failover", input: "Hi there" });
  validate?.("Response", response);
  assert.equal(response.status, "completed");
  assert.ok(response.output_text.length > 0);
  const stream = client.responses.stream({ model: "native-failover", input: "Hi there" });
  const final = await stream.finalResponse();
  validate?.("Response", final);
  assert.ok((await mock.requests()).some((r) => r.path.endsWith("/messages")), "Anthropic answered");
});

test("built-in tools pass through only where the model allows them", async () => {
  const tools = [{ type: "web_search" }, weather];
  const refused = await call(gateway, "/v1/responses", { body: { model: "gpt-native", input: "x", tools } });
  assert.equal(refused.status, 400);
  assert.equal((await refused.json()).error.code, "unsupported_tool");
  assert.equal((await responsesCalls()).length, 0);
  const allowed = await call(gateway, "/v1/responses", { body: { model: "gpt-native-tools", input: "x", tools } });
  assert.equal(allowed.status, 200, await allowed.clone().text());
  const sent = (await responsesCalls()).at(-1).json;
  assert.deepEqual(sent.tools[0], { type: "web_search" });
});

test("DELETE removes the gateway's record and the vendor's copy", async () => {
  const kept = await client.responses.create({ model: "gpt-native", input: "forget me" });
  const deleted = await client.responses.delete(kept.id);
  assert.equal(deleted?.deleted ?? true, true);
  const calls = await responsesCalls();
  assert.ok(calls.some((r) => r.method === "DELETE" && r.path === `/v1/responses/${kept.id}`), JSON.stringify(calls.map((r) => [r.method, r.path])));
  assert.equal(calls.find((r) => r.method === "DELETE").headers.authorization, `Bearer ${VENDOR_KEY}`);
  await assert.rejects(client.responses.retrieve(kept.id), (e) => e.status === 404);
  // The vendor forgot it too.
  const atVendor = await fetch(`${mock.url}/v1/responses/${kept.id}`);
  assert.equal(atVendor.status, 404);
  // A private provider's responses are not at the vendor: nothing to delete there.
  const privately = await client.responses.create({ model: "gpt-native-private", input: "x" });
  await mock.reset();
  await client.responses.delete(privately.id);
  assert.equal((await responsesCalls()).length, 0);
});

/** The text of a Response's message items. */
function textOf(response) {
  return response.output
    .filter((o) => o.type === "message")
    .flatMap((o) => o.content)
    .filter((c) => c.type === "output_text")
    .map((c) => c.text)
    .join("");
}
