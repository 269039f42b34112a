// The official `openai` npm SDK, unmodified, pointed at the gateway: it must parse every answer
// and raise the exception its users expect for each error.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMock, startGateway, GATEWAY_KEY, VENDOR_KEY } from "./harness.mjs";
import { testConfig, closedPort } from "./config.mjs";

let mock;
let gateway;
let client;

before(async () => {
  mock = await startMock();
  gateway = await startGateway({ config: testConfig(mock, await closedPort()), secrets: { UPSTREAM_KEY: VENDOR_KEY, AZURE_KEY: "azure-vendor-key-3456" } });
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: GATEWAY_KEY, maxRetries: 0, timeout: 10_000 });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

test("chat.completions.create", async () => {
  const { data: completion, response } = await client.chat.completions
    .create({ model: "gpt-test", messages: [{ role: "user", content: "Hello" }] })
    .withResponse();
  assert.equal(response.headers.get("x-switchyard-provider"), "upstream");
  assert.equal(completion.object, "chat.completion");
  assert.match(completion.choices[0].message.content, /Hello from mock-upstream/);
  assert.equal(completion.choices[0].finish_reason, "stop");
  assert.ok(completion.usage.total_tokens > 0);
});

test("streamed chat.completions.create", async () => {
  const stream = await client.chat.completions.create({
    model: "gpt-test",
    messages: [{ role: "user", content: "Hello" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage;
  let finish;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
    usage = chunk.usage ?? usage;
  }
  assert.match(text, /Hello from mock-upstream/);
  assert.equal(finish, "stop");
  assert.ok(usage.total_tokens > 0);
});

test("the stream helper assembles the final message", async () => {
  const runner = client.chat.completions.stream({ model: "echo", messages: [{ role: "user", content: "ping" }] });
  const final = await runner.finalChatCompletion();
  assert.match(final.choices[0].message.content, /You said: ping/);
});

test("models.list and models.retrieve", async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert.ok(ids.includes("gpt-test") && ids.includes("echo"));
  const one = await client.models.retrieve("test-alias");
  assert.equal(one.id, "test-alias");
});

test("errors raise the SDK's typed exceptions", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found",
  );
  const stranger = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: "sk-unknown", maxRetries: 0 });
  await assert.rejects(stranger.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
  await assert.rejects(
    client.chat.completions.create({ model: "gpt-test", messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "messages",
  );
});

test("embeddings.create passes through an OpenAI-format vendor", async () => {
  const { data: list, response } = await client.embeddings
    .create({ model: "embed-openai", input: ["one", "two"], dimensions: 12 })
    .withResponse();
  assert.equal(response.headers.get("x-switchyard-model"), "text-embedding-3-small");
  assert.equal(list.data.length, 2);
  assert.equal(list.data[0].embedding.length, 12);
  assert.ok(list.usage.total_tokens > 0);
  const floats = await client.embeddings.create({ model: "embed-openai", input: "one", dimensions: 12, encoding_format: "float" });
  floats.data[0].embedding.forEach((v, j) => assert.ok(Math.abs(v - list.data[0].embedding[j]) < 1e-6));
  await assert.rejects(
    client.embeddings.create({ model: "claude-sonnet", input: "x" }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === "unsupported_model",
  );
});

test("Azure OpenAI: deployment URL, api-version and the api-key header", async () => {
  const reply = await client.chat.completions.create({ model: "azure-gpt", messages: [{ role: "user", content: "Hi" }] });
  assert.match(reply.choices[0].message.content, /Hello from mock-upstream/);
  const sent = (await mock.requests()).at(-1);
  assert.equal(sent.path, "/openai/deployments/gpt4o-prod/chat/completions");
  assert.equal(sent.query, "api-version=2024-10-21");
  assert.equal(sent.headers["api-key"], "azure-vendor-key-3456");
  assert.equal(sent.headers.authorization, undefined);
});
