// OpenAI clients reaching a Gemini target: the official `openai` SDK against the gateway,
// mock-upstream speaking Gemini's generateContent, and what it received checked against
// Gemini's documented request format.

import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMock, startGateway, call, openaiError, sseEvents, GATEWAY_KEY, VENDOR_KEY } from "./harness.mjs";
import { testConfig, closedPort } from "./config.mjs";

const GEMINI_KEY = "AIza-vendor-secret-9012";
let mock;
let gateway;
let client;

before(async () => {
  mock = await startMock();
  gateway = await startGateway({ config: testConfig(mock, await closedPort()), secrets: { UPSTREAM_KEY: VENDOR_KEY, GEMINI_KEY } });
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: GATEWAY_KEY, maxRetries: 0, timeout: 10_000 });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

beforeEach(() => mock.reset());

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: {
      $schema: "http://json-schema.org/draft-07/schema#",
      type: "object",
      properties: { city: { type: "string" }, unit: { type: ["string", "null"], enum: ["c", "f"] } },
      required: ["city"],
      additionalProperties: false,
    },
  },
};

async function lastGenerateRequest(method) {
  const requests = (await mock.requests()).filter((r) => r.path.includes(":"));
  assert.ok(requests.length > 0, "mock-upstream received a Gemini request");
  const last = requests.at(-1);
  assert.equal(last.path, `/v1beta/models/gemini-2.5-flash:${method}`);
  assert.equal(last.headers["x-goog-api-key"], GEMINI_KEY);
  assert.ok(!(last.query ?? "").includes("key="), "the key never travels in the URL");
  assert.equal(last.headers.authorization, undefined);
  assert.ok(!JSON.stringify(last).includes(GATEWAY_KEY));
  return last;
}

test("text: system messages to systemInstruction, roles user/model, generation config", async () => {
  const reply = await client.chat.completions.create({
    model: "gemini-flash",
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello!" },
      { role: "user", content: "Bye" },
    ],
    temperature: 0.4,
    max_tokens: 50,
    seed: 9,
    stop: ["END"],
  });
  assert.equal(reply.object, "chat.completion");
  assert.match(reply.choices[0].message.content, /Hello from mock-upstream/);
  assert.equal(reply.choices[0].finish_reason, "stop");
  assert.ok(reply.usage.prompt_tokens > 0);
  const sent = (await lastGenerateRequest("generateContent")).json;
  assert.deepEqual(sent.systemInstruction, { parts: [{ text: "Be brief." }] });
  assert.deepEqual(sent.contents.map((c) => c.role), ["user", "model", "user"]);
  assert.deepEqual(sent.generationConfig, { temperature: 0.4, maxOutputTokens: 50, seed: 9, stopSequences: ["END"] });
});

test("n > 1 asks for several candidates and returns several choices", async () => {
  const reply = await client.chat.completions.create({ model: "gemini-flash", n: 2, messages: [{ role: "user", content: "Hi" }] });
  assert.deepEqual(reply.choices.map((c) => c.index), [0, 1]);
  assert.equal((await lastGenerateRequest("generateContent")).json.generationConfig.candidateCount, 2);
});

test("streaming with usage", async () => {
  const stream = await client.chat.completions.create({
    model: "gemini-flash",
    messages: [{ role: "user", content: "Hi" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let finish;
  let usage;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
    usage = chunk.usage ?? usage;
  }
  assert.match(text, /Hello from mock-upstream/);
  assert.equal(finish, "stop");
  assert.ok(usage.total_tokens > 0);
  const sent = await lastGenerateRequest("streamGenerateContent");
  assert.equal(sent.query, "alt=sse");
});

test("a full tool round trip: schema reduced, tool result named after its call", async () => {
  const first = await client.chat.completions.create({
    model: "gemini-flash",
    messages: [{ role: "user", content: "Weather in Rome?" }],
    tools: [weather],
    tool_choice: { type: "function", function: { name: "get_weather" } },
  });
  assert.equal(first.choices[0].finish_reason, "tool_calls");
  const toolCall = first.choices[0].message.tool_calls[0];
  assert.match(toolCall.id, /^call_[0-9a-f]{16}$/);
  assert.equal(toolCall.function.name, "get_weather");
  assert.deepEqual(JSON.parse(toolCall.function.arguments), { city: "example", unit: "c" });
  let sent = (await lastGenerateRequest("generateContent")).json;
  assert.deepEqual(sent.tools[0].functionDeclarations[0].parameters, {
    type: "object",
    properties: { city: { type: "string" }, unit: { type: "string", nullable: true, enum: ["c", "f"] } },
    required: ["city"],
  });
  assert.deepEqual(sent.toolConfig, { functionCallingConfig: { mode: "ANY", allowedFunctionNames: ["get_weather"] } });

  const second = await client.chat.completions.create({
    model: "gemini-flash",
    tools: [weather],
    messages: [
      { role: "user", content: "Weather in Rome?" },
      first.choices[0].message,
      { role: "tool", tool_call_id: toolCall.id, content: '{"temp_c": 21}' },
    ],
  });
  assert.match(second.choices[0].message.content, /The tool answered: \{"temp_c":21\}/);
  sent = (await lastGenerateRequest("generateContent")).json;
  assert.deepEqual(sent.contents[1], { role: "model", parts: [{ functionCall: { name: "get_weather", args: { city: "example", unit: "c" } } }] });
  assert.deepEqual(sent.contents[2], { role: "user", parts: [{ functionResponse: { name: "get_weather", response: { temp_c: 21 } } }] });
});

test("streamed tool calls arrive whole, with index, id and name", async () => {
  const stream = await client.chat.completions.create({
    model: "gemini-flash",
    messages: [{ role: "user", content: "Weather in Rome?" }],
    tools: [weather],
    stream: true,
  });
  const deltas = [];
  let finish;
  for await (const chunk of stream) {
    deltas.push(...(chunk.choices[0]?.delta?.tool_calls ?? []));
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, "tool_calls");
  assert.equal(deltas.length, 1);
  assert.equal(deltas[0].index, 0);
  assert.equal(deltas[0].function.name, "get_weather");
  assert.ok(deltas[0].id);
});

test("images inline and by URI; JSON schema output", async () => {
  const reply = await client.chat.completions.create({
    model: "gemini-flash",
    messages: [
      {
        role: "user",
        content: [
          { type: "text", text: "Describe" },
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
          { type: "image_url", image_url: { url: "https://example.com/a.jpg" } },
        ],
      },
    ],
    response_format: {
      type: "json_schema",
      json_schema: { name: "d", schema: { type: "object", properties: { caption: { type: "string" } }, additionalProperties: false } },
    },
  });
  assert.deepEqual(JSON.parse(reply.choices[0].message.content), { caption: "example" });
  const sent = (await lastGenerateRequest("generateContent")).json;
  assert.deepEqual(sent.contents[0].parts.slice(1), [
    { inlineData: { mimeType: "image/png", data: "iVBORw0KGgo=" } },
    { fileData: { mimeType: "image/jpeg", fileUri: "https://example.com/a.jpg" } },
  ]);
  assert.deepEqual(sent.generationConfig, {
    responseMimeType: "application/json",
    responseSchema: { type: "object", properties: { caption: { type: "string" } } },
  });
});

test("Gemini errors come back in OpenAI's shape", async () => {
  await mock.fault({ match: { path: ":generateContent" }, times: 1, status: 429 });
  await assert.rejects(
    client.chat.completions.create({ model: "gemini-flash", messages: [{ role: "user", content: "Hi" }] }),
    (e) => e instanceof OpenAI.RateLimitError,
  );
  await mock.fault({
    match: { path: ":generateContent" },
    times: 1,
    status: 400,
    body: { error: { code: 400, message: `API key not valid: ${GEMINI_KEY}`, status: "INVALID_ARGUMENT" } },
  });
  const res = await call(gateway, "/v1/chat/completions", { body: { model: "gemini-flash", messages: [{ role: "user", content: "Hi" }] } });
  assert.equal(res.status, 502);
  const text = await res.text();
  assert.ok(!text.includes(GEMINI_KEY));
  assert.equal(JSON.parse(text).error.code, "upstream_auth_failed");
});

test("a Gemini stream cut in the middle ends with an error event and [DONE]", async () => {
  await mock.fault({ match: { path: ":streamGenerateContent" }, times: 1, cut_after: 2 });
  const res = await call(gateway, "/v1/chat/completions", {
    body: { model: "gemini-flash", stream: true, messages: [{ role: "user", content: "Hi" }] },
  });
  const events = sseEvents(await res.text());
  assert.equal(events.at(-1), "[DONE]");
  assert.equal(events.at(-2).error.code, "upstream_stream_broken");
});

test("embeddings through batchEmbedContents: one vector per input, in order, floats or base64", async () => {
  const floats = await client.embeddings.create({ model: "embed-gemini", input: ["alpha", "beta", "gamma"], dimensions: 16, encoding_format: "float" });
  assert.equal(floats.object, "list");
  assert.deepEqual(floats.data.map((d) => d.index), [0, 1, 2]);
  for (const d of floats.data) {
    assert.equal(d.object, "embedding");
    assert.equal(d.embedding.length, 16);
  }
  assert.ok(floats.usage.prompt_tokens > 0);
  const last = (await mock.requests()).at(-1);
  assert.equal(last.path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
  assert.equal(last.headers["x-goog-api-key"], GEMINI_KEY);
  assert.deepEqual(last.json.requests[1], { model: "models/gemini-embedding-001", content: { parts: [{ text: "beta" }] }, outputDimensionality: 16 });

  // The SDK asks for base64 by default and decodes it: the same vectors must come out.
  const decoded = await client.embeddings.create({ model: "embed-gemini", input: ["alpha", "beta", "gamma"], dimensions: 16 });
  decoded.data.forEach((d, i) =>
    d.embedding.forEach((v, j) => assert.ok(Math.abs(v - floats.data[i].embedding[j]) < 1e-6, `vector ${i}[${j}]`)),
  );
  const raw = await call(gateway, "/v1/embeddings", { body: { model: "embed-gemini", input: "alpha", encoding_format: "base64" } });
  assert.equal(typeof (await raw.json()).data[0].embedding, "string");

  const tokens = await call(gateway, "/v1/embeddings", { body: { model: "embed-gemini", input: [1, 2, 3] } });
  assert.equal(tokens.status, 400);
  assert.equal((await openaiError(tokens)).param, "input");
});
