// Hand-made hostile requests. Each is refused with a clear 4xx in OpenAI's error shape (never a
// 5xx, never a hang, never a dead isolate), except where a case says why the vendor's answer is
// the right one; after the whole list the gateway still answers a normal request.
//
// Duplicate keys (`{"model":"a","model":"b"}`): refused with 400 `invalid_request`. The gateway
// routes by the `model` it reads and an OpenAI-format vendor reads the bytes it is sent; were a
// body with two `model`s let through, the two could disagree, so it is never sent on.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startMock, startGateway, call, openaiError, GATEWAY_KEY, GATEWAY_KEY_SHA256, VENDOR_KEY } from "./harness.mjs";

const TIMEOUT_MS = 5000;
// A request that has not been answered by then is a hang.
const ANSWER_WITHIN_MS = 20_000;

let mock;
let gateway;

before(async () => {
  mock = await startMock();
  gateway = await startGateway({
    config: {
      providers: {
        upstream: { kind: "openai", base_url: `${mock.url}/v1`, api_key_secret: "UPSTREAM_KEY", timeout_ms: TIMEOUT_MS },
        claude: { kind: "anthropic", base_url: `${mock.url}/v1`, api_key_secret: "ANTHROPIC_KEY", timeout_ms: TIMEOUT_MS },
        google: { kind: "gemini", base_url: `${mock.url}/v1beta`, api_key_secret: "GEMINI_KEY", timeout_ms: TIMEOUT_MS },
        builtin: { kind: "mock" },
      },
      models: [
        { name: "gpt-test", targets: [{ provider: "upstream", model: "vendor-gpt" }] },
        { name: "claude-test", targets: [{ provider: "claude", model: "claude-sonnet-4-5" }] },
        { name: "gemini-test", targets: [{ provider: "google", model: "gemini-2.5-flash" }] },
        { name: "echo", targets: [{ provider: "builtin", model: "mock-1" }] },
        { name: "embed-openai", targets: [{ provider: "upstream", model: "text-embedding-3-small" }] },
        { name: "embed-gemini", targets: [{ provider: "google", model: "gemini-embedding-001" }] },
      ],
      keys: [{ name: "test", sha256: GATEWAY_KEY_SHA256 }],
    },
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY: VENDOR_KEY, GEMINI_KEY: VENDOR_KEY },
  });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

const CHAT_MODELS = ["gpt-test", "claude-test", "gemini-test", "echo"];
const user = (content) => [{ role: "user", content }];
const chat = (model, extra = {}) => ({ model, messages: user("Say hello"), ...extra });

/** `promise`, or a failure naming `label` once `ms` have passed. */
function within(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: no answer within ${ms} ms (a hang)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Sends `body` (an object, a string, or bytes) and returns { status, text, headers }. */
async function send(path, body, { label = path, ms = ANSWER_WITHIN_MS, headers = {} } = {}) {
  const sent =
    body instanceof Uint8Array
      ? fetch(`${gateway.url}${path}`, {
          method: "POST",
          headers: { authorization: `Bearer ${GATEWAY_KEY}`, "content-type": "application/json", ...headers },
          body,
        })
      : call(gateway, path, { body, headers });
  return within(
    sent.then(async (res) => ({ status: res.status, headers: res.headers, text: await res.text() })),
    ms,
    label,
  );
}

/** Asserts a 4xx (`status` if given) in OpenAI's shape, with `code` and `param` if given. */
async function refused(path, body, { status, code, param, label = path, ...options } = {}) {
  const res = await send(path, body, { label, ...options });
  const shown = `${label} -> ${res.status} ${res.text.slice(0, 300)}`;
  assert.ok(res.status >= 400 && res.status < 500, `want a 4xx: ${shown}`);
  if (status !== undefined) assert.equal(res.status, status, shown);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/, shown);
  const error = await openaiError(new Response(res.text));
  assert.equal(typeof error.type, "string", shown);
  if (code !== undefined) assert.equal(error.code, code, shown);
  if (param !== undefined) assert.equal(error.param, param, shown);
  return { ...res, error };
}

/**
 * For a request the gateway may rightly pass on: never a 5xx; a 200 in OpenAI's shape (the
 * vendor's answer) or a 4xx in OpenAI's error shape.
 */
async function handled(path, body, { label = path, ...options } = {}) {
  const res = await send(path, body, { label, ...options });
  const shown = `${label} -> ${res.status} ${res.text.slice(0, 300)}`;
  assert.ok(res.status < 500, `a 5xx: ${shown}`);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/, shown);
  if (res.status >= 400) {
    await openaiError(new Response(res.text));
  } else {
    const body = JSON.parse(res.text);
    assert.ok(body.object === "chat.completion" || body.object === "list", shown);
  }
  return res;
}

const nested = (depth, open, close, inner = "1") => open.repeat(depth) + inner + close.repeat(depth);

test("10,000 levels of nesting in message content and in a tool schema: 400", async () => {
  const deepArray = nested(10_000, "[", "]");
  const deepObject = nested(10_000, '{"a":', "}");
  const deepSchema = nested(10_000, '{"type":"object","properties":{"a":', "}}", '{"type":"string"}');
  for (const model of CHAT_MODELS) {
    await refused(
      "/v1/chat/completions",
      `{"model":"${model}","messages":[{"role":"user","content":${deepArray}}]}`,
      { status: 400, label: `${model}: content nested 10,000 deep` },
    );
    await refused(
      "/v1/chat/completions",
      `{"model":"${model}","messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":${deepObject}}]}]}`,
      { status: 400, label: `${model}: a content part's member nested 10,000 deep` },
    );
    await refused(
      "/v1/chat/completions",
      `{"model":"${model}","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":${deepSchema}}}]}`,
      { status: 400, label: `${model}: tool schema nested 10,000 deep` },
    );
  }
});

const utf8 = (s) => new TextEncoder().encode(s);
const splice = (before, bytes, after) => new Uint8Array([...utf8(before), ...bytes, ...utf8(after)]);

test("invalid UTF-8 and lone surrogates where the gateway reads: 400", async () => {
  const cases = (model) => [
    ["an invalid byte in content", splice(`{"model":"${model}","messages":[{"role":"user","content":"a`, [0xff, 0xfe], 'b"}]}')],
    ["a truncated sequence in the model", splice(`{"model":"${model}`, [0xe2, 0x82], '","messages":[{"role":"user","content":"x"}]}')],
    ["an overlong encoding of '/'", splice(`{"model":"${model}","messages":[{"role":"user","content":"`, [0xc0, 0xaf], '"}]}')],
    ["an encoded surrogate", splice(`{"model":"${model}","messages":[{"role":"user","content":"`, [0xed, 0xa0, 0x80], '"}]}')],
    ["an invalid byte in an unknown member's key", splice(`{"model":"${model}","messages":[{"role":"user","content":"x"}],"`, [0xff], '":1}')],
    ["an invalid byte outside any string", splice(`{"model":"${model}",`, [0xff], '"messages":[]}')],
  ];
  for (const model of CHAT_MODELS) {
    for (const [what, body] of cases(model)) {
      await refused("/v1/chat/completions", body, { status: 400, label: `${model}: ${what}` });
    }
    await refused("/v1/chat/completions", `{"model":"${model}","messages":[{"role":"user","content":"\\ud800"}]}`, {
      status: 400,
      label: `${model}: a lone surrogate escape in content`,
    });
  }
  for (const body of [
    splice('{"model":"embed-openai","input":"', [0xff], '"}'),
    splice('{"model":"embed-openai","input":"x","user":"', [0xff], '"}'),
    splice('{"model":"embed-openai","input":"x","extra":{"k":"', [0xff], '"}}'),
  ]) {
    await refused("/v1/embeddings", body, { status: 400, label: `embeddings: ${new TextDecoder().decode(body)}` });
  }
});

test("invalid UTF-8 in members the gateway does not model: 400, and nothing reaches a vendor", async () => {
  // A body that is not UTF-8 is not JSON (RFC 8259 section 8.1), wherever the bad byte is.
  await mock.reset();
  const cases = (model) => [
    ["an unknown member's value", splice(`{"model":"${model}","messages":[{"role":"user","content":"x"}],"metadata":{"k":"`, [0xff], '"}}')],
    ["an unknown member of a message", splice(`{"model":"${model}","messages":[{"role":"user","content":"x","extra":"`, [0xff], '"}]}')],
  ];
  for (const model of CHAT_MODELS) {
    for (const [what, body] of cases(model)) {
      await refused("/v1/chat/completions", body, { status: 400, label: `${model}: an invalid byte in ${what}` });
    }
  }
  const received = await mock.requests();
  assert.equal(received.length, 0, `sent on: ${JSON.stringify(received.map((r) => r.body)).slice(0, 600)}`);
});

test("NUL bytes in the model name and in message names", async () => {
  for (const model of CHAT_MODELS) {
    // A raw NUL is a control character, which JSON does not allow inside a string.
    await refused("/v1/chat/completions", `{"model":"${model}\u0000","messages":[{"role":"user","content":"x"}]}`, {
      status: 400,
      code: "invalid_json",
      label: `${model}: a raw NUL in the model name`,
    });
    await refused(
      "/v1/chat/completions",
      `{"model":"${model}","messages":[{"role":"user","name":"a\u0000b","content":"x"}]}`,
      { status: 400, code: "invalid_json", label: `${model}: a raw NUL in a message name` },
    );
    // Escaped, it is a name no model has.
    await refused("/v1/chat/completions", chat(`${model}\u0000`), {
      status: 404,
      code: "model_not_found",
      param: "model",
      label: `${model}: an escaped NUL in the model name`,
    });
    // An escaped NUL in a message's name is a valid string: it is the vendor's to judge, and
    // goes to it still escaped.
    await handled("/v1/chat/completions", { model, messages: [{ role: "user", name: "a\u0000b", content: "x" }] }, {
      label: `${model}: an escaped NUL in a message name`,
    });
  }
  await refused("/v1/embeddings", { model: "embed-openai\u0000", input: "x" }, {
    status: 404,
    code: "model_not_found",
    label: "embeddings: an escaped NUL in the model name",
  });
});

test("numbers out of range: temperature 1e400, max_tokens negative or 2^64, a huge n: 400 naming the parameter", async () => {
  await mock.reset();
  const base = (model) => `"model":"${model}","messages":[{"role":"user","content":"x"}]`;
  for (const model of CHAT_MODELS) {
    const cases = [
      ["temperature", "1e400"],
      ["temperature", "-1e400"],
      ["temperature", "3"],
      ["top_p", "1e400"],
      ["max_tokens", "-1"],
      ["max_tokens", "18446744073709551616"],
      ["max_tokens", "4294967296"],
      ["max_completion_tokens", "-5"],
      ["max_completion_tokens", "18446744073709551616"],
      ["n", "1000000"],
      ["n", "18446744073709551616"],
      ["n", "1e400"],
      ["n", "0"],
      ["seed", "1e400"],
    ];
    for (const [name, value] of cases) {
      const res = await refused("/v1/chat/completions", `{${base(model)},"${name}":${value}}`, {
        status: 400,
        label: `${model}: ${name}=${value}`,
      });
      // A number JSON cannot hold as a double is a syntax error (no parameter); others name theirs.
      if (res.error.code !== "invalid_json") assert.equal(res.error.param, name, `${model}: ${name}=${value}`);
    }
  }
  assert.equal((await mock.requests()).length, 0, "nothing reached a vendor");
});

test("duplicate keys: 400 invalid_request, and nothing reaches a vendor", async () => {
  await mock.reset();
  const messages = '[{"role":"user","content":"x"}]';
  const cases = [
    ["model twice", `{"model":"claude-test","model":"gpt-test","messages":${messages}}`],
    ["model twice, same value", `{"model":"gpt-test","model":"gpt-test","messages":${messages}}`],
    ["messages twice", `{"model":"gpt-test","messages":${messages},"messages":[]}`],
    ["stream twice", `{"model":"gpt-test","messages":${messages},"stream":true,"stream":false}`],
    ["a message's role twice", `{"model":"gpt-test","messages":[{"role":"system","role":"user","content":"x"}]}`],
  ];
  for (const [what, body] of cases) {
    const res = await refused("/v1/chat/completions", body, { status: 400, code: "invalid_request", label: what });
    assert.match(res.error.message, /duplicate/i, what);
  }
  for (const [what, body] of [
    ["embeddings: model twice", '{"model":"embed-gemini","model":"embed-openai","input":"x"}'],
    ["embeddings: input twice", '{"model":"embed-openai","input":"x","input":[1,2]}'],
  ]) {
    const res = await refused("/v1/embeddings", body, { status: 400, code: "invalid_request", label: what });
    assert.match(res.error.message, /duplicate/i, what);
  }
  assert.equal((await mock.requests()).length, 0, "nothing reached a vendor");
});

test("wrong shapes: messages as an object, unknown content part types, empty body, an array as body", async () => {
  await mock.reset();
  for (const model of CHAT_MODELS) {
    await refused("/v1/chat/completions", { model, messages: { role: "user", content: "x" } }, {
      status: 400,
      param: "messages",
      label: `${model}: messages as an object`,
    });
    await refused("/v1/chat/completions", { model, messages: user([{ type: "hologram", hologram: {} }]) }, {
      status: 400,
      label: `${model}: an unknown content part type`,
    });
    await refused("/v1/chat/completions", { model, messages: user([{ type: "text" }]) }, {
      status: 400,
      label: `${model}: a text part without text`,
    });
    await refused("/v1/chat/completions", { model, messages: user([{ text: "no type" }]) }, {
      status: 400,
      label: `${model}: a content part without type`,
    });
    await refused("/v1/chat/completions", { model, messages: [{ role: "wizard", content: "x" }] }, {
      status: 400,
      label: `${model}: an unknown role`,
    });
    await refused("/v1/chat/completions", { model, messages: user("x"), tools: [{ type: "spell", function: { name: "f" } }] }, {
      status: 400,
      label: `${model}: an unknown tool type`,
    });
  }
  for (const path of ["/v1/chat/completions", "/v1/embeddings"]) {
    await refused(path, "", { status: 400, label: `${path}: empty body` });
    await refused(path, "[]", { status: 400, label: `${path}: []` });
    await refused(path, '[{"model":"gpt-test","messages":[{"role":"user","content":"x"}]}]', {
      status: 400,
      label: `${path}: a request inside an array`,
    });
    await refused(path, "null", { status: 400, label: `${path}: null` });
    await refused(path, '"text"', { status: 400, label: `${path}: a string` });
  }
  assert.equal((await mock.requests()).length, 0, "nothing reached a vendor");
});

test("a 100 KB model name: 404 model_not_found, with a bounded answer", async () => {
  const long = "m".repeat(100 * 1024);
  let res = await refused("/v1/chat/completions", chat(long), { status: 404, code: "model_not_found", label: "chat" });
  assert.ok(res.text.length < 512 * 1024, `answer of ${res.text.length} bytes`);
  res = await refused("/v1/embeddings", { model: long, input: "x" }, { status: 404, code: "model_not_found", label: "embeddings" });
  assert.ok(res.text.length < 512 * 1024, `answer of ${res.text.length} bytes`);
  await refused("/v1/chat/completions", chat("gpt-test", { models: [long] }), {
    status: 404,
    code: "model_not_found",
    label: "a 100 KB name among the fallback models",
  });
});

test("CR/LF in model names and parameter names: no header injection", async () => {
  const evil = "gpt-test\r\nx-injected: yes\r\n\r\n{}";
  const checkNoInjection = (res, what) => {
    assert.equal(res.headers.get("x-injected"), null, what);
    for (const [name, value] of res.headers) assert.ok(!/injected/i.test(`${name}: ${value}`), `${what}: ${name}: ${value}`);
  };
  for (const path of ["/v1/chat/completions", "/v1/embeddings"]) {
    const body = path.endsWith("embeddings") ? { model: evil, input: "x" } : chat(evil);
    checkNoInjection(await refused(path, body, { status: 404, code: "model_not_found", label: `${path}: CR/LF in model` }), path);
  }
  checkNoInjection(
    await refused("/v1/chat/completions", chat("gpt-test", { models: [evil] }), {
      status: 404,
      label: "CR/LF in a fallback model",
    }),
    "fallback",
  );
  // The retrieve path, percent-encoded.
  const res = await within(
    call(gateway, `/v1/models/${encodeURIComponent(evil)}`, { method: "GET" }).then(async (r) => ({
      status: r.status,
      headers: r.headers,
      text: await r.text(),
    })),
    ANSWER_WITHIN_MS,
    "GET /v1/models/<CR/LF>",
  );
  assert.equal(res.status, 404, res.text);
  await openaiError(new Response(res.text));
  checkNoInjection(res, "retrieve");
  // Unknown parameters are dropped for Anthropic and Gemini and named in
  // x-switchyard-dropped-params: a CR/LF in their names must not make a header of its own.
  for (const model of CHAT_MODELS) {
    const r = await handled("/v1/chat/completions", { ...chat(model), "evil\r\nx-injected: yes": 1 }, {
      label: `${model}: CR/LF in a parameter name`,
    });
    checkNoInjection(r, `${model}: parameter name`);
  }
});

test("tool schemas with $ref cycles, to every provider kind: answered in time, never a 5xx", async () => {
  // A recursive schema is valid JSON Schema (OpenAI's structured outputs take `{"$ref": "#"}`):
  // the vendor's to judge. What the gateway must not do is loop, blow up or fail.
  const tool = (parameters) => [{ type: "function", function: { name: "walk", parameters } }];
  const schemas = {
    "a self-reference": { type: "object", properties: { next: { $ref: "#" } } },
    "two definitions referring to each other": {
      type: "object",
      properties: { a: { $ref: "#/$defs/A" } },
      $defs: { A: { type: "object", properties: { b: { $ref: "#/$defs/B" } } }, B: { type: "object", properties: { a: { $ref: "#/$defs/A" } } } },
    },
    "a definition referring to itself": { $ref: "#/$defs/Node", $defs: { Node: { type: "object", properties: { next: { $ref: "#/$defs/Node" } } } } },
    "a reference to a missing definition": { type: "object", properties: { x: { $ref: "#/$defs/Nowhere" } } },
    "definitions under 'definitions'": { $ref: "#/definitions/T", definitions: { T: { anyOf: [{ type: "string" }, { $ref: "#/definitions/T" }] } } },
  };
  for (const model of CHAT_MODELS) {
    for (const [what, schema] of Object.entries(schemas)) {
      await handled("/v1/chat/completions", chat(model, { tools: tool(schema) }), { label: `${model}: ${what}` });
      await handled(
        "/v1/chat/completions",
        chat(model, { response_format: { type: "json_schema", json_schema: { name: "out", schema } } }),
        { label: `${model}: ${what}, as response_format` },
      );
    }
  }
});

test("embeddings: nested arrays, huge token arrays, wrong types: 400", async () => {
  await mock.reset();
  const cases = [
    ["input nested three deep", { input: [[[1, 2]]] }, "input"],
    ["input as arrays of strings", { input: [["a"]] }, "input"],
    ["input nested 10,000 deep", `{"model":"embed-openai","input":${nested(10_000, "[", "]")}}`, undefined],
    ["input as a number", { input: 42 }, "input"],
    ["input as an object", { input: { text: "x" } }, "input"],
    ["input null", { input: null }, "input"],
    ["input booleans", { input: [true] }, "input"],
    ["input strings and numbers mixed", { input: ["a", 1] }, "input"],
    ["input numbers and strings mixed", { input: [1, "a"] }, "input"],
    ["a negative token id", { input: [-1] }, "input"],
    ["a token id past 2^32", { input: [4294967296] }, "input"],
    ["a token id 1e400", '{"model":"embed-openai","input":[1e400]}', undefined],
    ["a fractional token id", { input: [1.5] }, "input"],
    ["an empty input list", { input: [] }, "input"],
    ["an empty token list in a list", { input: [[1], []] }, "input"],
    ["3,000 token lists", { input: Array.from({ length: 3000 }, () => [1]) }, "input"],
    ["3,000 strings", { input: Array.from({ length: 3000 }, () => "a") }, "input"],
    ["no input", {}, undefined],
    ["the model as a number", { model: 42, input: "x" }, "model"],
    ["dimensions negative", { input: "x", dimensions: -1 }, "dimensions"],
    ["dimensions zero", { input: "x", dimensions: 0 }, "dimensions"],
    ["dimensions 2^64", { input: "x", dimensions: 18446744073709551616 }, undefined],
    ["dimensions as a string", { input: "x", dimensions: "64" }, "dimensions"],
    ["an unknown encoding_format", { input: "x", encoding_format: "hex" }, "encoding_format"],
  ];
  for (const model of ["embed-openai", "embed-gemini"]) {
    for (const [what, shape, param] of cases) {
      const body = typeof shape === "string" ? shape.replace("embed-openai", model) : { model, ...shape };
      const res = await refused("/v1/embeddings", body, { status: 400, label: `${model}: ${what}` });
      if (param !== undefined && res.error.code !== "invalid_json") assert.equal(res.error.param, param, `${model}: ${what}`);
    }
  }
  assert.equal((await mock.requests()).length, 0, "nothing reached a vendor");
  // Token ids to Gemini, which embeds only text: refused before the call.
  await refused("/v1/embeddings", { model: "embed-gemini", input: Array.from({ length: 100_000 }, (_, i) => i) }, {
    status: 400,
    label: "embed-gemini: 100,000 token ids",
  });
  // 400,000 token ids (8 lists of 50,000, about 3 MB, under the body limit) to an OpenAI-format
  // vendor: its to judge (OpenAI refuses more than 8,192 tokens an input); the gateway passes
  // them on.
  const lists = Array.from({ length: 8 }, () => Array.from({ length: 50_000 }, (_, i) => i));
  await handled("/v1/embeddings", { model: "embed-openai", input: lists }, { label: "embed-openai: 400,000 token ids" });
  // A chat model asked for embeddings.
  await refused("/v1/embeddings", { model: "echo", input: "x" }, { status: 400, param: "model", label: "a chat-only model" });
});

test("a $ref cycle that fans out (each level refers to itself four times): answered in time, never a 5xx", async () => {
  // Inlined to a fixed depth, four references a level make billions of nodes out of 300 bytes.
  // One such request to a Gemini target only (it is the one that inlines): it can take the
  // worker's memory to its 4 GB limit.
  const fan = {
    type: "object",
    properties: { root: { $ref: "#/$defs/T" } },
    $defs: { T: { type: "object", properties: { a: { $ref: "#/$defs/T" }, b: { $ref: "#/$defs/T" }, c: { $ref: "#/$defs/T" }, d: { $ref: "#/$defs/T" } } } },
  };
  // Gemini last: a worker stuck on it holds up the requests after it.
  for (const model of ["gpt-test", "claude-test", "echo", "gemini-test"]) {
    await handled("/v1/chat/completions", chat(model, { tools: [{ type: "function", function: { name: "f", parameters: fan } }] }), {
      label: `${model}: a fanning $ref cycle in a tool schema`,
      ms: 10_000,
    });
  }
});

test("after all of it, the gateway still answers normal requests", async () => {
  for (const model of CHAT_MODELS) {
    const res = await send("/v1/chat/completions", chat(model), { label: `${model}: a normal chat` });
    assert.equal(res.status, 200, `${model}: ${res.text.slice(0, 300)}`);
    assert.equal(JSON.parse(res.text).object, "chat.completion");
  }
  for (const model of ["embed-openai", "embed-gemini"]) {
    const res = await send("/v1/embeddings", { model, input: "hello" }, { label: `${model}: a normal embedding` });
    assert.equal(res.status, 200, `${model}: ${res.text.slice(0, 300)}`);
    assert.equal(JSON.parse(res.text).object, "list");
  }
  const health = await within(fetch(`${gateway.url}/health`), ANSWER_WITHIN_MS, "GET /health");
  assert.equal(health.status, 200);
});
