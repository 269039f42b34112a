// Every answer the gateway gives, from every vendor, validated against OpenAI's published
// OpenAPI document: completions, stream chunks, embeddings, model lists and errors.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startMock, startGateway, call, sseEvents, VENDOR_KEY } from "./harness.mjs";
import { testConfig, closedPort } from "./config.mjs";
import { assertSchema, specAvailable, SPEC_PATH } from "./openapi.mjs";

const skip = specAvailable ? false : `OpenAI's OpenAPI document is not at ${SPEC_PATH}; conformance checks skipped`;
if (skip) console.log(`# ${skip}`);

let mock;
let gateway;

before(async () => {
  if (skip) return;
  mock = await startMock();
  gateway = await startGateway({
    config: testConfig(mock, await closedPort()),
    secrets: { UPSTREAM_KEY: VENDOR_KEY, ANTHROPIC_KEY: "sk-ant-x", GEMINI_KEY: "AIza-x", AZURE_KEY: "az-x" },
  });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

const MODELS = ["gpt-test", "azure-gpt", "claude-sonnet", "gemini-flash", "echo"];
const weather = {
  type: "function",
  function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
};
const cases = {
  text: { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }] },
  tools: { messages: [{ role: "user", content: "Weather?" }], tools: [weather] },
  json: {
    messages: [{ role: "user", content: "Jane is 54" }],
    response_format: { type: "json_schema", json_schema: { name: "p", schema: { type: "object", properties: { name: { type: "string" } } } } },
  },
};

for (const model of MODELS) {
  for (const [name, body] of Object.entries(cases)) {
    test(`${model}, ${name}: the completion is a CreateChatCompletionResponse`, { skip }, async () => {
      const res = await call(gateway, "/v1/chat/completions", { body: { model, ...body } });
      assert.equal(res.status, 200, await res.clone().text());
      assertSchema("CreateChatCompletionResponse", await res.json());
    });

    test(`${model}, ${name}: every stream chunk is a CreateChatCompletionStreamResponse`, { skip }, async () => {
      const res = await call(gateway, "/v1/chat/completions", {
        body: { model, ...body, stream: true, stream_options: { include_usage: true } },
      });
      assert.equal(res.status, 200);
      const events = sseEvents(await res.text());
      assert.equal(events.at(-1), "[DONE]");
      for (const chunk of events.slice(0, -1)) assertSchema("CreateChatCompletionStreamResponse", chunk);
    });
  }
}

test("embeddings are a CreateEmbeddingResponse, floats and base64", { skip }, async () => {
  for (const model of ["embed-openai", "embed-gemini"]) {
    for (const encoding_format of ["float", "base64"]) {
      const res = await call(gateway, "/v1/embeddings", { body: { model, input: ["a", "b"], encoding_format } });
      assert.equal(res.status, 200);
      const body = await res.json();
      if (encoding_format === "float") assertSchema("CreateEmbeddingResponse", body);
      else for (const d of body.data) assert.equal(typeof d.embedding, "string");
    }
  }
});

test("the model list is a ListModelsResponse, one model a Model", { skip }, async () => {
  assertSchema("ListModelsResponse", await (await call(gateway, "/v1/models", { method: "GET" })).json());
  assertSchema("Model", await (await call(gateway, "/v1/models/echo", { method: "GET" })).json());
});

test("errors are an ErrorResponse, whatever produced them", { skip }, async () => {
  const bad = [
    call(gateway, "/v1/chat/completions", { body: "{" }),
    call(gateway, "/v1/chat/completions", { body: { model: "gpt-test" } }),
    call(gateway, "/v1/chat/completions", { body: { model: "nope", messages: [{ role: "user", content: "x" }] } }),
    call(gateway, "/v1/chat/completions", { body: { model: "gpt-test", messages: [] }, key: "sk-wrong" }),
    call(gateway, "/v1/chat/completions", { method: "GET" }),
    call(gateway, "/v1/chat/completions", { body: { model: "down-model", messages: [{ role: "user", content: "x" }] } }),
    call(gateway, "/v1/embeddings", { body: { model: "claude-sonnet", input: "x" } }),
  ];
  for (const res of await Promise.all(bad)) {
    assert.ok(res.status >= 400);
    assertSchema("ErrorResponse", await res.json());
  }
});
