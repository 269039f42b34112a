// Anthropic's Messages API as a client dialect (`/v1/messages`): the official
// `@anthropic-ai/sdk` against the gateway, answered by an Anthropic target (passed through),
// an OpenAI-format target, a Gemini target and the built-in mock (translated). Every stream is
// checked against Anthropic's event grammar (anthropic-grammar.mjs).

import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { startMock, startGateway, call, sseEvents, GATEWAY_KEY, VENDOR_KEY } from "./harness.mjs";
import { testConfig, closedPort } from "./config.mjs";
import { checkAnthropicStream } from "./anthropic-grammar.mjs";

const ANTHROPIC_KEY = "sk-ant-vendor-secret-5678";
let mock;
let gateway;
let client;

// Each target kind behind the same client: the public model name, and whether the gateway
// passes the client's bytes through (an Anthropic target) or translates.
const TARGETS = [
  { model: "claude-sonnet", vendor: "anthropic", passthrough: true },
  { model: "gpt-test", vendor: "openai", passthrough: false },
  { model: "gemini-flash", vendor: "gemini", passthrough: false },
  { model: "echo", vendor: "mock", passthrough: false },
];

before(async () => {
  mock = await startMock();
  gateway = await startGateway({
    config: testConfig(mock, await closedPort()),
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY, GEMINI_KEY: "AIza-gemini-vendor-key-0000" },
  });
  client = new Anthropic({ baseURL: gateway.url, apiKey: GATEWAY_KEY, maxRetries: 0, timeout: 10_000 });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

beforeEach(() => mock.reset());

const weather = {
  name: "get_weather",
  description: "Current weather in a city",
  input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

/** A raw streamed call, its text checked against the grammar. */
async function rawStream(body, headers = {}, strict = true) {
  const res = await call(gateway, "/v1/messages", {
    body: { ...body, stream: true },
    headers: { "anthropic-version": "2023-06-01", ...headers },
  });
  assert.equal(res.status, 200, await res.clone().text());
  assert.match(res.headers.get("content-type"), /^text\/event-stream/);
  const text = await res.text();
  return { res, text, ...checkAnthropicStream(text, { strict }) };
}

for (const { model, vendor, passthrough } of TARGETS) {
  test(`${vendor}: a message comes back in Anthropic's shape, through the SDK`, async () => {
    const { data: message, response } = await client.messages
      .create({
        model,
        max_tokens: 200,
        system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
        messages: [{ role: "user", content: "Hi there" }],
      })
      .withResponse();
    // A cache marker a vendor cannot take is reported, in the client's terms.
    const dropped = (response.headers.get("x-switchyard-dropped-params") ?? "").split(", ");
    assert.equal(dropped.includes("cache_control"), vendor === "openai" || vendor === "gemini", dropped.join());
    assert.equal(message.type, "message");
    assert.equal(message.role, "assistant");
    assert.ok(message.content.length >= 1, JSON.stringify(message));
    assert.equal(message.content[0].type, "text");
    assert.ok(message.content[0].text.length > 0);
    assert.equal(message.stop_reason, "end_turn");
    assert.ok(Number.isInteger(message.usage.input_tokens) && message.usage.input_tokens > 0, JSON.stringify(message.usage));
    assert.ok(Number.isInteger(message.usage.output_tokens) && message.usage.output_tokens > 0);
  });

  test(`${vendor}: a stream obeys Anthropic's grammar and the SDK accumulates it`, async () => {
    const body = { model, max_tokens: 200, messages: [{ role: "user", content: "Tell me something" }] };
    // Anthropic's own streams (passed through) need not follow the gateway's stricter habits.
    const { message, text } = await rawStream(body, {}, !passthrough);
    assert.equal(message.stop_reason, "end_turn");
    // A translated stream's input tokens: in message_start where the vendor told them by then,
    // and always in message_delta, whose figures the SDKs take as the message's (an OpenAI
    // vendor tells them at the end only). Anthropic's own stream passes through as it came.
    const delta = sseEvents(text).find((e) => e.type === "message_delta");
    if (!passthrough) assert.ok(delta.usage.input_tokens > 0, JSON.stringify(delta));
    const stream = client.messages.stream(body);
    const final = await stream.finalMessage();
    assert.equal(final.content[0].type, "text");
    assert.ok(final.content[0].text.length > 0);
    assert.equal(final.stop_reason, "end_turn");
    assert.ok(final.usage.output_tokens > 0);
    assert.ok(final.usage.input_tokens > 0, JSON.stringify(final.usage));
  });

  if (vendor !== "mock") {
    test(`${vendor}: tools: a tool_use with input, then the tool_result answered, streamed and not`, async () => {
      const ask = { model, max_tokens: 300, tools: [weather], messages: [{ role: "user", content: "Weather in Paris?" }] };
      const first = await client.messages.create(ask);
      assert.equal(first.stop_reason, "tool_use", JSON.stringify(first));
      const use = first.content.find((b) => b.type === "tool_use");
      assert.ok(use && use.id && use.name === "get_weather", JSON.stringify(first.content));
      assert.equal(typeof use.input, "object");
      assert.equal(typeof use.input.city, "string");

      const streamed = await client.messages.stream(ask).finalMessage();
      const streamedUse = streamed.content.find((b) => b.type === "tool_use");
      assert.deepEqual(streamedUse.input, use.input, "the streamed arguments add up to the same input");
      const raw = await rawStream(ask, {}, !passthrough);
      const rawUse = raw.message.content.find((b) => b.type === "tool_use");
      assert.ok(rawUse, "the raw stream has the tool_use block");

      const second = await client.messages.create({
        ...ask,
        messages: [
          ...ask.messages,
          { role: "assistant", content: first.content },
          {
            role: "user",
            content: [{ type: "tool_result", tool_use_id: use.id, content: [{ type: "text", text: "18 degrees" }] }],
          },
        ],
      });
      assert.equal(second.stop_reason, "end_turn");
      assert.match(second.content[0].text, /18 degrees/);
    });
  }
}

test("anthropic: the client's bytes pass through with only the model renamed, anthropic-beta forwarded", async () => {
  const body = {
    model: "claude-sonnet",
    max_tokens: 100,
    system: [{ type: "text", text: "Cached prefix", cache_control: { type: "ephemeral", ttl: "1h" } }],
    messages: [{ role: "user", content: [{ type: "text", text: "Hi", cache_control: { type: "ephemeral" } }] }],
    future_field: { kept: true },
  };
  const raw = JSON.stringify(body, null, 1);
  const res = await call(gateway, "/v1/messages?beta=true", {
    body: raw,
    key: null,
    headers: { "x-api-key": GATEWAY_KEY, "anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14" },
  });
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(res.headers.get("x-switchyard-provider"), "claude");
  const [sent] = (await mock.requests()).filter((r) => r.path === "/v1/messages");
  assert.equal(sent.body, raw.replace('"claude-sonnet"', '"claude-sonnet-4-5"'), "byte for byte but the model");
  assert.equal(sent.headers["anthropic-beta"], "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14");
  assert.equal(sent.headers["x-api-key"], ANTHROPIC_KEY);
  assert.ok(!JSON.stringify(sent).includes(GATEWAY_KEY));
});

test("openai target: Anthropic's request is translated; the beta header is named as dropped", async () => {
  const res = await call(gateway, "/v1/messages", {
    body: {
      model: "gpt-test",
      max_tokens: 50,
      stop_sequences: ["END"],
      temperature: 0.5,
      system: "Be brief.",
      messages: [
        { role: "user", content: [{ type: "text", text: "Look" }, { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } }] },
      ],
      tools: [weather],
      tool_choice: { type: "auto", disable_parallel_tool_use: true },
    },
    headers: { "anthropic-version": "2023-06-01", "anthropic-beta": "fine-grained-tool-streaming-2025-05-14" },
  });
  assert.equal(res.status, 200, await res.clone().text());
  assert.match(res.headers.get("x-switchyard-dropped-params") ?? "", /anthropic-beta: fine-grained-tool-streaming/);
  const [sent] = (await mock.requests()).filter((r) => r.path.endsWith("/chat/completions"));
  assert.equal(sent.json.model, "vendor-gpt");
  assert.equal(sent.json.messages[0].role, "system");
  assert.equal(sent.json.messages[0].content, "Be brief.");
  assert.equal(sent.json.messages[1].content[1].image_url.url, "data:image/png;base64,iVBORw0KGgo=");
  assert.deepEqual(sent.json.stop, ["END"]);
  assert.equal(sent.json.max_completion_tokens, 50);
  assert.equal(sent.json.parallel_tool_calls, false);
  assert.equal(sent.json.tools[0].function.name, "get_weather");
});

test("auth: x-api-key or a bearer token; a wrong key is Anthropic's authentication_error", async () => {
  const bearer = new Anthropic({ baseURL: gateway.url, authToken: GATEWAY_KEY, apiKey: null, maxRetries: 0 });
  const message = await bearer.messages.create({ model: "echo", max_tokens: 20, messages: [{ role: "user", content: "Hi" }] });
  assert.equal(message.type, "message");
  const wrong = new Anthropic({ baseURL: gateway.url, apiKey: "sk-wrong", maxRetries: 0 });
  await assert.rejects(
    wrong.messages.create({ model: "echo", max_tokens: 20, messages: [{ role: "user", content: "Hi" }] }),
    (e) => e instanceof Anthropic.AuthenticationError && e.status === 401 && e.error?.error?.type === "authentication_error",
  );
});

test("errors come back in Anthropic's shape with its statuses", async () => {
  const res = await call(gateway, "/v1/messages", { body: { model: "echo", messages: [{ role: "user", content: "Hi" }] } });
  assert.equal(res.status, 400);
  const body = await res.json();
  assert.equal(body.type, "error");
  assert.equal(body.error.type, "invalid_request_error");
  assert.match(body.error.message, /max_tokens/);
  await assert.rejects(
    client.messages.create({ model: "no-such-model", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] }),
    (e) => e instanceof Anthropic.NotFoundError && e.error?.error?.type === "not_found_error",
  );
  const bad = await call(gateway, "/v1/messages", { body: "{not json" });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).type, "error");
  // Every target failing: Anthropic's "overloaded".
  await mock.fault([{ match: { model: "vendor-primary" }, status: 503 }, { match: { model: "vendor-backup" }, status: 503 }]);
  const down = await call(gateway, "/v1/messages", { body: { model: "failover", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] } });
  assert.equal(down.status, 529, await down.clone().text());
  assert.equal((await down.json()).error.type, "overloaded_error");
});

test("a server tool goes only to an Anthropic target; elsewhere a clear 400", async () => {
  const body = {
    model: "gpt-test",
    max_tokens: 50,
    tools: [{ type: "web_search_20250305", name: "web_search", max_uses: 1 }],
    messages: [{ role: "user", content: "Search" }],
  };
  const res = await call(gateway, "/v1/messages", { body });
  assert.equal(res.status, 400, await res.clone().text());
  const error = await res.json();
  assert.equal(error.error.type, "invalid_request_error");
  assert.match(error.error.message, /web_search_20250305/);
  const sent = await mock.requests();
  assert.equal(sent.length, 0, "nothing went to the vendor");
});

test("a vendor stream broken after the commit ends with an Anthropic error event", async () => {
  await mock.fault({ match: { model: "vendor-gpt" }, cut_after: 3 });
  const { error, text } = await rawStream({ model: "gpt-test", max_tokens: 100, messages: [{ role: "user", content: "Hi" }] });
  assert.ok(error, `an error event ends the stream: ${text}`);
  assert.ok(!text.includes(VENDOR_KEY));
});

test("count_tokens: an estimate, said so, for a target that is not Anthropic's", async () => {
  const counted = await client.messages.countTokens({ model: "gpt-test", messages: [{ role: "user", content: "Hello there, how are you?" }] });
  assert.ok(Number.isInteger(counted.input_tokens) && counted.input_tokens > 0);
  const res = await call(gateway, "/v1/messages/count_tokens", { body: { model: "gpt-test", messages: [{ role: "user", content: "Hi" }] } });
  assert.equal(res.headers.get("x-switchyard-token-count"), "estimate");
});

test("GET /v1/models answers in Anthropic's shape to Anthropic's SDK", async () => {
  const page = await client.models.list();
  const ids = page.data.map((m) => m.id);
  assert.ok(ids.includes("claude-sonnet") && ids.includes("gpt-test"), JSON.stringify(ids));
  assert.equal(page.data[0].type, "model");
  const one = await client.models.retrieve("gpt-test");
  assert.equal(one.id, "gpt-test");
  // OpenAI's clients keep OpenAI's shape.
  const openai = await (await call(gateway, "/v1/models", { method: "GET" })).json();
  assert.equal(openai.object, "list");
});

const THINK = { type: "enabled", budget_tokens: 2048 };

test("anthropic: thinking with its signature, streamed and not, and sent back in a tool loop", async () => {
  const ask = { model: "claude-sonnet", max_tokens: 4096, thinking: THINK, tools: [weather], messages: [{ role: "user", content: "Weather in Paris?" }] };
  const first = await client.messages.create(ask);
  assert.deepEqual(first.content.map((b) => b.type), ["thinking", "tool_use"]);
  assert.ok(first.content[0].signature.length > 0);
  const streamed = await client.messages.stream(ask).finalMessage();
  assert.deepEqual(streamed.content.map((b) => b.type), ["thinking", "tool_use"]);
  assert.equal(streamed.content[0].signature, first.content[0].signature, "the signature_delta arrived whole");
  const raw = await rawStream(ask, {}, false);
  assert.ok(raw.events.some((e) => e.json?.delta?.type === "signature_delta"));
  // Claude Code's pattern: the thinking block goes back, signed, before the tool result.
  const use = first.content[1];
  const second = await client.messages.create({
    ...ask,
    messages: [
      ...ask.messages,
      { role: "assistant", content: first.content },
      { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "18 degrees" }] },
    ],
  });
  assert.equal(second.stop_reason, "end_turn", JSON.stringify(second));
  const [, sent] = (await mock.requests()).filter((r) => r.path === "/v1/messages").slice(-2);
  assert.equal(sent.json.messages[1].content[0].signature, first.content[0].signature);
});

for (const { model, vendor } of TARGETS.filter((t) => t.vendor === "openai" || t.vendor === "gemini")) {
  test(`${vendor}: thinking asked in Anthropic's terms comes back as thinking blocks`, async () => {
    const ask = { model, max_tokens: 4096, thinking: THINK, messages: [{ role: "user", content: "Think first" }] };
    const message = await client.messages.create(ask);
    assert.equal(message.content[0].type, "thinking", JSON.stringify(message.content));
    assert.match(message.content[0].thinking, /think/);
    assert.equal(message.content.at(-1).type, "text");
    const { message: streamed, events } = await rawStream(ask);
    assert.equal(streamed.content[0].type, "thinking");
    assert.ok(events.some((e) => e.json?.delta?.type === "thinking_delta"));
    const final = await client.messages.stream(ask).finalMessage();
    assert.deepEqual(final.content.map((b) => b.type), ["thinking", "text"]);
    const sent = (await mock.requests()).at(-1).json;
    if (vendor === "openai") assert.equal(sent.reasoning_effort, "medium");
    else assert.deepEqual(sent.generationConfig.thinkingConfig, { thinkingBudget: 2048, includeThoughts: true });
    // A thinking block from another vendor (no signature) can go back: it is left out.
    const again = await client.messages.create({
      ...ask,
      messages: [...ask.messages, { role: "assistant", content: message.content }, { role: "user", content: "And?" }],
    });
    assert.equal(again.type, "message");
  });
}

test("count_tokens: Anthropic's own count for an Anthropic target", async () => {
  const counted = await client.messages.countTokens({ model: "claude-sonnet", system: "Be brief.", messages: [{ role: "user", content: "Hello" }] });
  assert.ok(Number.isInteger(counted.input_tokens) && counted.input_tokens > 0);
  const res = await call(gateway, "/v1/messages/count_tokens", { body: { model: "claude-sonnet", messages: [{ role: "user", content: "Hi" }] } });
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(res.headers.get("x-switchyard-token-count"), "exact");
  const [sent] = (await mock.requests()).filter((r) => r.path.endsWith("/count_tokens")).slice(-1);
  assert.equal(sent.json.max_tokens, undefined);
  assert.equal(sent.json.model, "claude-sonnet-4-5");
});

test("a translated stream the vendor is silent on gets keep-alives: Anthropic's ping, an SSE comment elsewhere", async () => {
  const quiet = await startGateway({
    config: { ...testConfig(mock, await closedPort()), limits: { stream_keepalive_ms: 150 } },
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY },
  });
  try {
    await mock.fault({ match: { model: "vendor-gpt" }, chunk_delay_ms: 400, stream_chunks: 3 });
    const res = await call(quiet, "/v1/messages", {
      body: { model: "gpt-test", max_tokens: 50, stream: true, messages: [{ role: "user", content: "Hi" }] },
    });
    const text = await res.text();
    const { events } = checkAnthropicStream(text, { strict: true });
    const pings = events.filter((e) => e.event === "ping").length;
    assert.ok(pings >= 3, `pings while the vendor was silent: ${pings}\n${text}`);
    // An OpenAI client's translated stream: SSE comments, which its SDK skips.
    await mock.fault({ match: { model: "claude-sonnet-4-5" }, chunk_delay_ms: 400, stream_chunks: 3 });
    const chat = await call(quiet, "/v1/chat/completions", {
      body: { model: "claude-sonnet", stream: true, messages: [{ role: "user", content: "Hi" }] },
    });
    assert.equal(chat.status, 200);
    const chatText = await chat.text();
    assert.match(chatText, /\n: keep-alive\n\n/);
    assert.ok(chatText.endsWith("data: [DONE]\n\n"));
    // An OpenAI client's pass-through gets the vendor's bytes only.
    await mock.fault({ match: { model: "vendor-gpt" }, chunk_delay_ms: 400, stream_chunks: 3 });
    const passed = await call(quiet, "/v1/chat/completions", {
      body: { model: "gpt-test", stream: true, messages: [{ role: "user", content: "Hi" }] },
    });
    assert.ok(!(await passed.text()).includes(": keep-alive"));
  } finally {
    await quiet.stop();
  }
});

test("review: a server tool is billed per use: refused on an Anthropic target unless the model allows it", async () => {
  const res = await call(gateway, "/v1/messages", {
    body: { model: "claude-sonnet", max_tokens: 50, tools: [{ type: "web_search_20250305", name: "web_search", max_uses: 50 }], messages: [{ role: "user", content: "Search" }] },
  });
  assert.equal(res.status, 400, await res.clone().text());
  assert.match((await res.json()).error.message, /allow_params/);
  assert.equal((await mock.requests()).length, 0);
});

test("review: a 405 is in Anthropic's shape; answers carry request-id", async () => {
  const res = await call(gateway, "/v1/messages", { method: "GET" });
  assert.equal(res.status, 405);
  assert.equal((await res.json()).type, "error");
  const ok = await call(gateway, "/v1/messages", { body: { model: "echo", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] } });
  assert.match(ok.headers.get("request-id") ?? "", /^req_/);
  await ok.text();
});
