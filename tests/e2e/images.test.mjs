// Images through the gateway with the official `openai` SDK, unmodified: generations and edits
// to OpenAI and Azure (passed through), Gemini's image models and Imagen (translated) and the
// built-in mock; parameters a target cannot honour named or refused; failover; cost and
// budgets; bad input, each a 4xx in OpenAI's shape. Every answer is checked against OpenAI's
// published schema.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";
import { startMock, startGateway, call, openaiError, GATEWAY_KEY, VENDOR_KEY } from "./harness.mjs";
import { closedPort } from "./config.mjs";
import { assertSchema, specAvailable } from "./openapi.mjs";
import { mediaConfig, SECRETS, TIGHT_KEY, PNG, MAX_BODY_BYTES, MAX_UPLOAD_BYTES, received } from "./media-config.mjs";

let mock, gateway, client;

before(async () => {
  mock = await startMock();
  gateway = await startGateway({ config: mediaConfig(mock, await closedPort()), secrets: SECRETS });
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: GATEWAY_KEY, maxRetries: 0, timeout: 15_000 });
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
});

const conforms = (value) => {
  if (specAvailable) assertSchema("ImagesResponse", value);
};

const isPng = (b64) => Buffer.from(b64, "base64").subarray(0, 8).equals(Buffer.from("\x89PNG\r\n\x1a\n", "latin1"));

test("images.generate passes through to OpenAI with only the model renamed, priced by its token usage", async () => {
  await mock.reset();
  const { data: images, response } = await client.images
    .generate({ model: "gpt-image", prompt: "A cute baby sea otter", n: 2, size: "1024x1024", quality: "high", moderation: "low" })
    .withResponse();
  conforms(images);
  assert.equal(images.data.length, 2);
  assert.ok(isPng(images.data[0].b64_json));
  assert.equal(images.usage.output_tokens, 8320);
  assert.equal(response.headers.get("x-switchyard-provider"), "openai");
  assert.equal(response.headers.get("x-switchyard-model"), "gpt-image-1");
  // gpt-image-1: 6 prompt tokens at $5, 8,320 image tokens at $40 a million.
  assert.equal(Number(response.headers.get("x-switchyard-cost-usd")), (6 * 5 + 8320 * 40) / 1e6);
  const [sent] = await received(mock, "/images/generations");
  assert.equal(sent.path, "/v1/images/generations");
  assert.equal(sent.headers.authorization, `Bearer ${VENDOR_KEY}`);
  assert.deepEqual(sent.json, { model: "gpt-image-1", prompt: "A cute baby sea otter", n: 2, size: "1024x1024", quality: "high", moderation: "low" });
});

test("DALL·E's URLs and the vendor's own 400 come back as the vendor sent them", async () => {
  const images = await client.images.generate({ model: "dalle", prompt: "otter", size: "1792x1024" });
  conforms(images);
  assert.match(images.data[0].url, /^https:\/\//);
  const error = await client.images.generate({ model: "dalle", prompt: "otter", n: 2 }).catch((e) => e);
  assert.ok(error instanceof OpenAI.BadRequestError, String(error));
  assert.equal(error.param, "n");
  assert.match(error.message, /dall-e-3 supports only n=1/);
});

test("Azure OpenAI: the deployment's URL, its api-version and its api-key header", async () => {
  await mock.reset();
  const { data: images, response } = await client.images.generate({ model: "azure-image", prompt: "otter" }).withResponse();
  conforms(images);
  assert.equal(response.headers.get("x-switchyard-provider"), "azure");
  const [sent] = await received(mock, "/images/generations");
  assert.equal(sent.path, "/openai/deployments/gpt-image-1/images/generations");
  assert.equal(sent.query, "api-version=2025-04-01-preview");
  assert.equal(sent.headers["api-key"], SECRETS.AZURE_KEY);
  assert.equal(sent.headers.authorization, undefined);
  const edited = await client.images.edit({ model: "azure-image", image: await toFile(PNG, "a.png"), prompt: "hat" });
  conforms(edited);
  const [edit] = await received(mock, "/images/edits");
  assert.equal(edit.path, "/openai/deployments/gpt-image-1/images/edits");
  assert.equal(edit.query, "api-version=2025-04-01-preview");
});

test("Gemini's image model: one generateContent call an image, imageConfig from size, what it cannot do named", async () => {
  await mock.reset();
  const { data: images, response } = await client.images
    .generate({ model: "gemini-image", prompt: "otter", n: 2, size: "1536x1024", quality: "high", response_format: "url", user: "u-1" })
    .withResponse();
  conforms(images);
  assert.equal(images.data.length, 2);
  assert.ok(images.data.every((d) => isPng(d.b64_json)));
  assert.equal(images.output_format, "png");
  assert.equal(images.usage.output_tokens, 2 * 1290);
  assert.equal(response.headers.get("x-switchyard-adjusted-params"), "size=3:2 1K, response_format=b64_json");
  assert.equal(response.headers.get("x-switchyard-dropped-params"), "quality, user");
  // Two images at the catalog's $0.039.
  assert.equal(Number(response.headers.get("x-switchyard-cost-usd")), 0.078);
  const sent = await received(mock, ":generateContent");
  assert.equal(sent.length, 2);
  assert.equal(sent[0].path, "/v1beta/models/gemini-2.5-flash-image:generateContent");
  assert.equal(sent[0].headers["x-goog-api-key"], SECRETS.GEMINI_KEY);
  assert.equal(sent[0].query, null, "the key never travels in the URL");
  assert.deepEqual(sent[0].json, {
    contents: [{ role: "user", parts: [{ text: "otter" }] }],
    generationConfig: { responseModalities: ["IMAGE"], imageConfig: { aspectRatio: "3:2" } },
  });
});

test("Gemini 3's image model takes a resolution; a square of it is made as asked", async () => {
  await mock.reset();
  const { data: images, response } = await client.images
    .generate({ model: "gemini-3-image", prompt: "otter", size: "2048x2048" })
    .withResponse();
  conforms(images);
  assert.equal(response.headers.get("x-switchyard-adjusted-params"), null);
  const [sent] = await received(mock, ":generateContent");
  assert.deepEqual(sent.json.generationConfig.imageConfig, { aspectRatio: "1:1", imageSize: "2K" });
  assert.equal(Number(response.headers.get("x-switchyard-cost-usd")), 0.134);
});

test("Imagen: sampleCount from n, four a call, aspectRatio from size", async () => {
  await mock.reset();
  const { data: images, response } = await client.images
    .generate({ model: "imagen", prompt: "otter", n: 6, size: "1024x1792" })
    .withResponse();
  conforms(images);
  assert.equal(images.data.length, 6);
  // Made at once: the mock may have received them in either order.
  const sent = (await received(mock, ":predict")).sort((a, b) => b.json.parameters.sampleCount - a.json.parameters.sampleCount);
  assert.deepEqual(
    sent.map((r) => r.json),
    [
      { instances: [{ prompt: "otter" }], parameters: { aspectRatio: "9:16", imageSize: "2K", sampleCount: 4 } },
      { instances: [{ prompt: "otter" }], parameters: { aspectRatio: "9:16", imageSize: "2K", sampleCount: 2 } },
    ],
  );
  assert.equal(response.headers.get("x-switchyard-adjusted-params"), "size=9:16 2K");
  assert.equal(Number(response.headers.get("x-switchyard-cost-usd")), 0.24);
});

test("a client's n of one is one Imagen image, not Imagen's default four", async () => {
  await mock.reset();
  const images = await client.images.generate({ model: "imagen", prompt: "otter" });
  assert.equal(images.data.length, 1);
  const [sent] = await received(mock, ":predict");
  assert.equal(sent.json.parameters.sampleCount, 1);
});

test("strict mode refuses what a target cannot honour, by the model's setting or the client's header", async () => {
  await mock.reset();
  const error = await client.images.generate({ model: "image-strict", prompt: "otter", quality: "high" }).catch((e) => e);
  assert.ok(error instanceof OpenAI.BadRequestError);
  assert.equal(error.code, "unsupported_parameter");
  assert.equal(error.param, "quality");
  const res = await call(gateway, "/v1/images/generations", {
    body: { model: "gemini-image", prompt: "otter", size: "1792x1024" },
    headers: { "x-switchyard-strict": "true" },
  });
  assert.equal(res.status, 400);
  assert.equal((await openaiError(res)).param, "size");
  assert.equal((await received(mock, ":generateContent")).length, 0, "nothing was sent");
  // What the target honours passes in strict mode too.
  const ok = await client.images.generate({ model: "image-strict", prompt: "otter", size: "1024x1024" });
  conforms(ok);
});

test("a failing image vendor fails over to the next target before the client sees anything", async () => {
  await mock.reset();
  await mock.fault({ match: { model: "gpt-image-1-failing" }, status: 503 });
  const { data: images, response } = await client.images.generate({ model: "image-failover", prompt: "otter" }).withResponse();
  conforms(images);
  assert.equal(response.headers.get("x-switchyard-provider"), "google");
  assert.equal(response.headers.get("x-switchyard-attempts"), "2");
  assert.equal(response.headers.get("x-switchyard-fallbacks"), "openai/gpt-image-1-failing=http_503");
  const down = await client.images.generate({ model: "image-down", prompt: "otter" }).withResponse();
  assert.equal(down.response.headers.get("x-switchyard-provider"), "azure");
  assert.match(down.response.headers.get("x-switchyard-fallbacks"), /^down\/gpt-image-1=upstream_unreachable/);
  await mock.reset();
});

test("a target that cannot make images is skipped; a model with none is a 400", async () => {
  const { data: images, response } = await client.images.generate({ model: "image-mixed", prompt: "otter" }).withResponse();
  conforms(images);
  assert.equal(response.headers.get("x-switchyard-attempts"), "1");
  const error = await client.images.generate({ model: "words", prompt: "otter" }).catch((e) => e);
  assert.ok(error instanceof OpenAI.BadRequestError);
  assert.equal(error.code, "unsupported_model");
  assert.match(error.message, /image generation/);
});

test("the vendor's filters are a 400 content_filter, not an empty answer", async () => {
  for (const model of ["gemini-image", "imagen"]) {
    const error = await client.images.generate({ model, prompt: "something forbidden" }).catch((e) => e);
    assert.ok(error instanceof OpenAI.BadRequestError, `${model}: ${error}`);
    assert.equal(error.code, "content_filter", model);
  }
});

test("bad requests are 4xx in OpenAI's shape, never sent to a vendor", async () => {
  await mock.reset();
  const cases = [
    [{ model: "gpt-image" }, 400, ""],
    [{ prompt: "otter" }, 400, "model"],
    [{ model: "gpt-image", prompt: "otter", n: 11 }, 400, "n"],
    [{ model: "gpt-image", prompt: "otter", n: 0 }, 400, "n"],
    [{ model: "gpt-image", prompt: "otter", size: "huge" }, 400, "size"],
    [{ model: "gpt-image", prompt: "otter", quality: "ultra" }, 400, "quality"],
    [{ model: "gpt-image", prompt: "otter", output_compression: 500 }, 400, "output_compression"],
    [{ model: "gpt-image", prompt: 7 }, 400, "prompt"],
    [{ model: "nope", prompt: "otter" }, 404, "model"],
  ];
  for (const [body, status, param] of cases) {
    const res = await call(gateway, "/v1/images/generations", { body });
    assert.equal(res.status, status, JSON.stringify(body));
    const error = await openaiError(res);
    assert.equal(error.param ?? "", param, JSON.stringify(body));
  }
  for (const body of ["not json", "{\"model\":\"gpt-image\",\"prompt\":\"\\ud800\"", "[]"]) {
    const res = await call(gateway, "/v1/images/generations", { body });
    assert.equal(res.status, 400, body);
    await openaiError(res);
  }
  const large = await call(gateway, "/v1/images/generations", { body: { model: "gpt-image", prompt: "x".repeat(MAX_BODY_BYTES) } });
  assert.equal(large.status, 413);
  assert.equal((await openaiError(large)).code, "request_too_large");
  const get = await call(gateway, "/v1/images/generations", { method: "GET" });
  assert.equal(get.status, 405);
  assert.equal(get.headers.get("allow"), "POST, OPTIONS");
  assert.equal((await received(mock, "/images")).length, 0);
});

test("a budget refuses an image call whose worst case exceeds it", async () => {
  const tight = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: TIGHT_KEY, maxRetries: 0 });
  // Four gpt-image-1 images at high quality and an unstated size: up to $1.00, over the $0.10 cap.
  const error = await tight.images.generate({ model: "gpt-image", prompt: "otter", n: 4 }).catch((e) => e);
  assert.ok(error instanceof OpenAI.RateLimitError, String(error));
  assert.equal(error.code, "budget_exceeded");
  assert.equal(error.headers.get("x-should-retry"), "false");
  // One low-quality square fits ($0.011), and is charged what it used.
  const { response } = await tight.images.generate({ model: "gpt-image", prompt: "otter", size: "1024x1024", quality: "low" }).withResponse();
  assert.equal(response.status, 200);
});

test("streamed generations pass through from OpenAI; Gemini, Imagen and the mock stream whole images", async () => {
  const stream = await client.images.generate({ model: "gpt-image", prompt: "otter", stream: true });
  const events = [];
  for await (const event of stream) events.push(event);
  assert.deepEqual(events.map((e) => e.type), ["image_generation.completed"]);
  assert.ok(isPng(events[0].b64_json));
  for (const model of ["gemini-image", "imagen", "demo-image"]) {
    const { data: stream, response } = await client.images
      .generate({ model, prompt: "otter", n: 2, size: "1024x1024", stream: true, partial_images: 2 })
      .withResponse();
    assert.match(response.headers.get("content-type"), /^text\/event-stream/);
    const events = [];
    for await (const event of stream) events.push(event);
    assert.deepEqual(events.map((e) => e.type), ["image_generation.completed", "image_generation.completed"], model);
    for (const event of events) {
      if (specAvailable) assertSchema("ImageGenCompletedEvent", event);
      assert.ok(isPng(event.b64_json), model);
      assert.equal(event.size, "1024x1024");
    }
    if (model !== "demo-image") assert.match(response.headers.get("x-switchyard-dropped-params") ?? "", /partial_images/, model);
  }
});

test("the built-in mock makes images with no vendor", async () => {
  const { data: images, response } = await client.images.generate({ model: "demo-image", prompt: "otter", n: 3 }).withResponse();
  conforms(images);
  assert.equal(images.data.length, 3);
  assert.ok(isPng(images.data[0].b64_json));
  assert.equal(response.headers.get("x-switchyard-provider"), "builtin");
});

// ---- Edits ----

test("images.edit passes the form through to OpenAI with only the model replaced", async () => {
  await mock.reset();
  const { data: images, response } = await client.images
    .edit({ model: "gpt-image", image: await toFile(PNG, "otter.png", { type: "image/png" }), prompt: "Add a hat", size: "1024x1024" })
    .withResponse();
  conforms(images);
  assert.equal(response.headers.get("x-switchyard-model"), "gpt-image-1");
  const [sent] = await received(mock, "/images/edits");
  assert.match(sent.headers["content-type"], /^multipart\/form-data; boundary=/);
  assert.match(sent.body, /name="model"\r\n\r\ngpt-image-1\r\n/);
  assert.match(sent.body, /name="prompt"\r\n\r\nAdd a hat\r\n/);
  assert.match(sent.body, /name="image"; filename="otter.png"\r\nContent-Type: image\/png\r\n\r\n/);
  assert.ok(sent.body.includes("IHDR"), "the image's bytes went along");
});

test("several images and a mask go to OpenAI as image[] and to Gemini inline", async () => {
  await mock.reset();
  const files = [await toFile(PNG, "a.png", { type: "image/png" }), await toFile(PNG, "b.png", { type: "image/png" })];
  const openai = await client.images.edit({ model: "gpt-image", image: files, prompt: "Merge them" });
  conforms(openai);
  const [sent] = await received(mock, "/images/edits");
  assert.equal(sent.body.match(/name="image\[\]"/g).length, 2);
  const { data: gemini, response } = await client.images
    .edit({ model: "gemini-image", image: files, mask: await toFile(PNG, "mask.png", { type: "image/png" }), prompt: "Merge them" })
    .withResponse();
  conforms(gemini);
  assert.equal(response.headers.get("x-switchyard-dropped-params"), "mask");
  const [generate] = await received(mock, ":generateContent");
  const parts = generate.json.contents[0].parts;
  assert.deepEqual(parts[0], { text: "Merge them" });
  assert.deepEqual(parts.slice(1).map((p) => p.inlineData.mimeType), ["image/png", "image/png"]);
  assert.equal(parts[1].inlineData.data, PNG.toString("base64"));
});

test("bad edits are 4xx before any vendor is called", async () => {
  await mock.reset();
  const form = (fields) => {
    const data = new FormData();
    for (const [name, value, filename] of fields) {
      if (filename) data.append(name, new Blob([value]), filename);
      else data.append(name, value);
    }
    return data;
  };
  const post = (body, headers = {}) =>
    fetch(`${gateway.url}/v1/images/edits`, { method: "POST", headers: { authorization: `Bearer ${GATEWAY_KEY}`, ...headers }, body });
  const cases = [
    [form([["model", "gpt-image"], ["prompt", "hat"]]), "image"],
    [form([["model", "gpt-image"], ["image", PNG, "a.png"]]), "prompt"],
    [form([["prompt", "hat"], ["image", PNG, "a.png"]]), "model"],
    [form([["model", "gpt-image"], ["prompt", "hat"], ["image", "not a file"]]), "image"],
    [form([["model", "gpt-image"], ["prompt", "hat"], ["image", PNG, "a.png"], ["n", "many"]]), "n"],
  ];
  for (const [body, param] of cases) {
    const res = await post(body);
    assert.equal(res.status, 400, param);
    assert.equal((await openaiError(res)).param, param);
  }
  const json = await post(JSON.stringify({ model: "gpt-image", prompt: "hat" }), { "content-type": "application/json" });
  assert.equal(json.status, 400);
  assert.match((await openaiError(json)).message, /multipart\/form-data/);
  const broken = await post("--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-image", {
    "content-type": "multipart/form-data; boundary=x",
  });
  assert.equal(broken.status, 400);
  assert.match((await openaiError(broken)).message, /malformed/);
  const large = await post(form([["model", "gpt-image"], ["prompt", "hat"], ["image", Buffer.alloc(MAX_UPLOAD_BYTES), "a.png"]]));
  assert.equal(large.status, 413);
  assert.equal((await openaiError(large)).code, "request_too_large");
  const tooMany = await client.images
    .edit({ model: "gpt-image", image: await Promise.all(Array.from({ length: 17 }, (_, i) => toFile(PNG, `${i}.png`))), prompt: "x" })
    .catch((e) => e);
  assert.ok(tooMany instanceof OpenAI.BadRequestError);
  assert.equal((await received(mock, "/images")).length, 0);
});

test("the built-in mock edits images too", async () => {
  const images = await client.images.edit({ model: "demo-image", image: await toFile(PNG, "a.png"), prompt: "hat" });
  conforms(images);
  assert.equal(images.data.length, 1);
});

test("hostile bodies are 400s in OpenAI's shape, never a 5xx or a hang", async () => {
  await mock.reset();
  const post = (path, body, contentType) =>
    fetch(`${gateway.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${GATEWAY_KEY}`, "content-type": contentType },
      body,
    });
  const json = "application/json";
  const deep = `{"model":"gpt-image","prompt":"x","extra":${"[".repeat(10_000)}${"]".repeat(10_000)}}`;
  for (const body of [deep, '{"model":"gpt-image","prompt":"x","n":1e400}', '{"model":"gpt-image","prompt":"x\u0000","n":-1}']) {
    const res = await post("/v1/images/generations", body, json);
    assert.equal(res.status, 400, body.slice(0, 60));
    await openaiError(res);
  }
  const boundary = "hostile";
  const part = (name, value) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const many = Array.from({ length: 200 }, (_, i) => part(`f${i}`, "x")).join("") + `--${boundary}--\r\n`;
  const endless = `--${boundary}\r\nContent-Disposition: form-data; name="a"${"x".repeat(20_000)}`;
  const badUtf8 = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n`),
    Buffer.from([0xff, 0xfe]),
    Buffer.from(`\r\n${part("prompt", "x")}--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\x89PNG\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n--${boundary}--`),
  ]);
  const type = `multipart/form-data; boundary=${boundary}`;
  for (const [body, expected] of [[many, /more than 128 parts/], [endless, /headers/], [badUtf8, /'model' is not valid UTF-8/]]) {
    for (const path of ["/v1/images/edits", "/v1/audio/transcriptions"]) {
      const res = await post(path, body, type);
      assert.equal(res.status, 400, path);
      assert.match((await openaiError(res)).message, expected, path);
    }
  }
  const noBoundary = await post("/v1/audio/translations", "x", "multipart/form-data");
  assert.equal(noBoundary.status, 400);
  assert.match((await openaiError(noBoundary)).message, /boundary/);
  assert.equal((await mock.requests()).length, 0);
});
