// OpenAI clients reaching an Anthropic target: the official `openai` SDK against the gateway,
// mock-upstream speaking Anthropic's Messages API, and what mock-upstream received checked
// against what Anthropic's documentation requires.

import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMock, startGateway, call, openaiError, sseEvents, GATEWAY_KEY, VENDOR_KEY } from "./harness.mjs";
import { testConfig, closedPort } from "./config.mjs";

const ANTHROPIC_KEY = "sk-ant-vendor-secret-5678";
let mock;
let gateway;
let client;

before(async () => {
  mock = await startMock();
  gateway = await startGateway({
    config: testConfig(mock, await closedPort()),
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY },
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
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

async function lastMessagesRequest() {
  const requests = (await mock.requests()).filter((r) => r.path === "/v1/messages");
  assert.ok(requests.length > 0, "mock-upstream received a Messages request");
  const last = requests.at(-1);
  assert.equal(last.headers["x-api-key"], ANTHROPIC_KEY);
  assert.equal(last.headers["anthropic-version"], "2023-06-01");
  assert.equal(last.headers.authorization, undefined, "no bearer token goes to Anthropic");
  assert.ok(!JSON.stringify(last).includes(GATEWAY_KEY));
  return last.json;
}

test("text: system prompts go to `system`, the answer comes back as a chat completion", async () => {
  const { data, response } = await client.chat.completions
    .create({
      model: "claude-sonnet",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
        { role: "user", content: "How are you?" },
        { role: "system", content: "Answer in English." },
      ],
      max_tokens: 200,
      temperature: 0.5,
      stop: "END",
      user: "user-7",
    })
    .withResponse();
  assert.equal(response.headers.get("x-switchyard-provider"), "claude");
  // claude-sonnet-4-5 at the embedded catalog's $3 / $15 per million tokens.
  const cost = (data.usage.prompt_tokens * 3 + data.usage.completion_tokens * 15) / 1e6;
  assert.equal(Number(response.headers.get("x-switchyard-cost-usd")), Number(cost.toFixed(8)));
  assert.equal(data.object, "chat.completion");
  assert.match(data.choices[0].message.content, /Hello from mock-upstream/);
  assert.equal(data.choices[0].finish_reason, "stop");
  assert.ok(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
  const sent = await lastMessagesRequest();
  assert.equal(sent.model, "claude-sonnet-4-5");
  assert.deepEqual(sent.system, [
    { type: "text", text: "Be brief." },
    { type: "text", text: "Answer in English." },
  ]);
  assert.deepEqual(sent.messages, [{ role: "user", content: [{ type: "text", text: "Hi" }, { type: "text", text: "How are you?" }] }]);
  assert.equal(sent.max_tokens, 200);
  assert.deepEqual(sent.stop_sequences, ["END"]);
  assert.deepEqual(sent.metadata, { user_id: "user-7" });
});

test("max_tokens defaults to the model's documented maximum", async () => {
  await client.chat.completions.create({ model: "claude-sonnet", messages: [{ role: "user", content: "Hi" }] });
  assert.equal((await lastMessagesRequest()).max_tokens, 64000);
});

test("streaming with usage: chunks, finish reason, one usage chunk, [DONE]", async () => {
  const stream = await client.chat.completions.create({
    model: "claude-sonnet",
    messages: [{ role: "user", content: "Hi" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let finish;
  const usages = [];
  const ids = new Set();
  for await (const chunk of stream) {
    ids.add(chunk.id);
    text += chunk.choices[0]?.delta?.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (chunk.usage) usages.push(chunk.usage);
  }
  assert.match(text, /Hello from mock-upstream/);
  assert.equal(finish, "stop");
  assert.equal(usages.length, 1);
  assert.ok(usages[0].prompt_tokens > 0);
  assert.equal(usages[0].total_tokens, usages[0].prompt_tokens + usages[0].completion_tokens);
  assert.equal(ids.size, 1, "every chunk has the same id");
});

test("a full tool round trip", async () => {
  const first = await client.chat.completions.create({
    model: "claude-sonnet",
    messages: [{ role: "user", content: "Weather in Paris?" }],
    tools: [weather],
    tool_choice: "required",
    parallel_tool_calls: false,
  });
  const call0 = first.choices[0].message.tool_calls[0];
  assert.equal(first.choices[0].finish_reason, "tool_calls");
  assert.equal(call0.function.name, "get_weather");
  assert.deepEqual(JSON.parse(call0.function.arguments), { city: "example" });
  let sent = await lastMessagesRequest();
  assert.deepEqual(sent.tools, [
    { name: "get_weather", description: "Current weather in a city", input_schema: weather.function.parameters },
  ]);
  assert.deepEqual(sent.tool_choice, { type: "any", disable_parallel_tool_use: true });

  const second = await client.chat.completions.create({
    model: "claude-sonnet",
    tools: [weather],
    messages: [
      { role: "user", content: "Weather in Paris?" },
      first.choices[0].message,
      { role: "tool", tool_call_id: call0.id, content: "18°C and cloudy" },
    ],
  });
  assert.equal(second.choices[0].message.content, "The tool answered: 18°C and cloudy");
  sent = await lastMessagesRequest();
  assert.equal(sent.messages[1].role, "assistant");
  assert.deepEqual(sent.messages[1].content, [{ type: "tool_use", id: call0.id, name: "get_weather", input: { city: "example" } }]);
  assert.deepEqual(sent.messages[2], {
    role: "user",
    content: [{ type: "tool_result", tool_use_id: call0.id, content: [{ type: "text", text: "18°C and cloudy" }] }],
  });
});

test("streamed tool calls carry index, id and name first, then the arguments", async () => {
  const stream = await client.chat.completions.create({
    model: "claude-sonnet",
    messages: [{ role: "user", content: "Weather in Paris?" }],
    tools: [weather],
    stream: true,
  });
  const calls = [];
  let finish;
  for await (const chunk of stream) {
    for (const d of chunk.choices[0]?.delta?.tool_calls ?? []) {
      calls[d.index] ??= { id: d.id, name: d.function?.name, arguments: "" };
      calls[d.index].arguments += d.function?.arguments ?? "";
    }
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, "tool_calls");
  assert.equal(calls.length, 1);
  assert.equal(calls[0].id, "toolu_mock01");
  assert.equal(calls[0].name, "get_weather");
  assert.deepEqual(JSON.parse(calls[0].arguments), { city: "example" });
});

test("images by data URL and by URL become Anthropic image sources", async () => {
  await client.chat.completions.create({
    model: "claude-sonnet",
    messages: [
      {
        role: "user",
        content: [
          { type: "text", text: "Compare" },
          { type: "image_url", image_url: { url: "data:image/jpeg;base64,/9j/4AAQSkZJRg==" } },
          { type: "image_url", image_url: { url: "https://example.com/cat.png" } },
        ],
      },
    ],
  });
  const sent = await lastMessagesRequest();
  assert.deepEqual(sent.messages[0].content.slice(1), [
    { type: "image", source: { type: "base64", media_type: "image/jpeg", data: "/9j/4AAQSkZJRg==" } },
    { type: "image", source: { type: "url", url: "https://example.com/cat.png" } },
  ]);
});

test("JSON schema output comes back as the message content", async () => {
  const schema = { type: "object", properties: { name: { type: "string" }, age: { type: "integer" } }, required: ["name", "age"] };
  const reply = await client.chat.completions.create({
    model: "claude-sonnet",
    messages: [{ role: "user", content: "Jane is 54" }],
    response_format: { type: "json_schema", json_schema: { name: "person", schema } },
  });
  assert.equal(reply.choices[0].finish_reason, "stop");
  assert.deepEqual(JSON.parse(reply.choices[0].message.content), { name: "example", age: 42 });
  assert.equal(reply.choices[0].message.tool_calls, undefined);
});

test("unsupported parameters are dropped and named, or refused in strict mode", async () => {
  const body = { model: "claude-sonnet", messages: [{ role: "user", content: "Hi" }], seed: 3, logprobs: true, temperature: 1.6 };
  let res = await call(gateway, "/v1/chat/completions", { body });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-switchyard-dropped-params"), "seed, logprobs");
  assert.equal(res.headers.get("x-switchyard-adjusted-params"), "temperature=1");
  const sent = await lastMessagesRequest();
  assert.equal(sent.temperature, 1);
  assert.equal(sent.seed, undefined);

  res = await call(gateway, "/v1/chat/completions", { body, headers: { "x-switchyard-strict": "true" } });
  assert.equal(res.status, 400);
  const error = await openaiError(res);
  assert.equal(error.code, "unsupported_parameter");
  assert.equal(error.param, "temperature", "the first parameter the target cannot honour");

  res = await call(gateway, "/v1/chat/completions", { body: { ...body, model: "claude-strict" } });
  assert.equal(res.status, 400, "a route configured strict refuses too");

  res = await call(gateway, "/v1/chat/completions", { body: { model: "claude-sonnet", n: 2, messages: body.messages } });
  assert.equal(res.status, 400);
  assert.equal((await openaiError(res)).param, "n");
});

test("Anthropic's errors come back in OpenAI's shape; 529 overloaded is a 503", async () => {
  await mock.fault({ match: { model: "claude-sonnet-4-5-errors" }, times: 1, status: 529 });
  await assert.rejects(
    client.chat.completions.create({ model: "claude-errors", messages: [{ role: "user", content: "Hi" }] }),
    (e) => e instanceof OpenAI.InternalServerError && e.status === 503 && e.code === "upstream_overloaded",
  );
  await mock.fault({ match: { model: "claude-sonnet-4-5-errors" }, times: 1, status: 400 });
  await assert.rejects(
    client.chat.completions.create({ model: "claude-errors", messages: [{ role: "user", content: "Hi" }] }),
    (e) => e instanceof OpenAI.BadRequestError && /mock-upstream injected status 400/.test(e.message),
  );
  await mock.fault({ match: { model: "claude-sonnet-4-5-errors" }, times: 1, status: 429, retry_after: "7" });
  const res = await call(gateway, "/v1/chat/completions", { body: { model: "claude-errors", messages: [{ role: "user", content: "Hi" }] } });
  assert.equal(res.status, 429);
  assert.equal(res.headers.get("retry-after"), "7");
  assert.equal((await openaiError(res)).type, "rate_limit_error");
});

test("a stream cut in the middle ends with an error event and [DONE]", async () => {
  await mock.fault({ match: { path: "/v1/messages" }, times: 1, cut_after: 4 });
  const res = await call(gateway, "/v1/chat/completions", {
    body: { model: "claude-sonnet", stream: true, messages: [{ role: "user", content: "Hi" }] },
  });
  assert.equal(res.status, 200);
  const events = sseEvents(await res.text());
  assert.equal(events.at(-1), "[DONE]");
  const error = events.at(-2).error;
  assert.equal(error.code, "upstream_stream_broken");
  assert.ok(events.slice(0, -2).every((e) => e.object === "chat.completion.chunk"));
});

test("an OpenAI stream cut in the middle also ends with an error event and [DONE]", async () => {
  await mock.fault({ match: { model: "vendor-gpt" }, times: 1, cut_after: 3 });
  const res = await call(gateway, "/v1/chat/completions", {
    body: { model: "gpt-test", stream: true, messages: [{ role: "user", content: "Hi" }] },
  });
  const events = sseEvents(await res.text());
  assert.equal(events.at(-1), "[DONE]");
  assert.equal(events.at(-2).error.code, "upstream_stream_broken");
  assert.equal(events.length, 5, "the three events sent, the error, [DONE]");
});
