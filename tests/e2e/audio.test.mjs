// Audio through the gateway with the official `openai` SDK, unmodified: speech streamed through
// from OpenAI-format vendors (to a file, as it arrives), made by Gemini's TTS models (PCM as WAV
// or PCM) and by the built-in mock; transcriptions and translations passed through (the upload
// with its model replaced) or sent to Gemini with the audio inline; failover, cost, budgets and
// bad input. Every JSON answer is checked against OpenAI's published schema.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import OpenAI, { toFile } from "openai";
import { startMock, startGateway, call, openaiError, sseEvents, GATEWAY_KEY, VENDOR_KEY } from "./harness.mjs";
import { closedPort } from "./config.mjs";
import { assertSchema, specAvailable } from "./openapi.mjs";
import { mediaConfig, SECRETS, TIGHT_KEY, MAX_BODY_BYTES, MAX_UPLOAD_BYTES, received, wav } from "./media-config.mjs";

let mock, gateway, client, dir;

before(async () => {
  mock = await startMock();
  gateway = await startGateway({ config: mediaConfig(mock, await closedPort()), secrets: SECRETS });
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: GATEWAY_KEY, maxRetries: 0, timeout: 15_000 });
  dir = mkdtempSync(join(tmpdir(), "switchyard-audio-"));
});

after(async () => {
  await gateway?.stop();
  await mock?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const conforms = (schema, value) => {
  if (specAvailable) assertSchema(schema, value);
};

// ---- Speech ----

test("audio.speech.create streams OpenAI's audio through to a file, as it arrives", async () => {
  await mock.reset();
  await mock.fault({ match: { model: "tts-1-slow" }, chunk_delay_ms: 120, stream_chunks: 6 });
  const started = Date.now();
  const response = await client.audio.speech.create({ model: "tts-slow", input: "Hello from the gateway", voice: "alloy" });
  assert.equal(response.headers.get("content-type"), "audio/mpeg");
  assert.equal(response.headers.get("x-switchyard-model"), "tts-1-slow");
  // 22 characters of tts-1 at $15 a million.
  assert.equal(Number(response.headers.get("x-switchyard-cost-usd")), (22 * 15) / 1e6);
  const arrivals = [];
  const path = join(dir, "speech.mp3");
  const timed = Readable.fromWeb(response.body).map((chunk) => {
    arrivals.push(Date.now() - started);
    return chunk;
  });
  await pipeline(timed, createWriteStream(path));
  const file = readFileSync(path);
  assert.equal(file.subarray(0, 3).toString(), "ID3");
  // Five gaps of 120 ms between the vendor's six chunks: the first came long before the last.
  assert.ok(arrivals.length >= 2, `${arrivals.length} chunks`);
  assert.ok(arrivals.at(-1) - arrivals[0] >= 400, `arrived at ${arrivals.join(", ")} ms`);
  const [sent] = await received(mock, "/audio/speech");
  assert.deepEqual(sent.json, { model: "tts-1-slow", input: "Hello from the gateway", voice: "alloy" });
  assert.equal(sent.headers.authorization, `Bearer ${VENDOR_KEY}`);
  await mock.reset();
});

test("the route's total timeout cuts off audio still streaming through", async () => {
  const speak = () => call(gateway, "/v1/audio/speech", { body: { model: "tts-total", input: "Hi", voice: "alloy" } });
  await mock.fault({ match: { model: "tts-1-total" }, times: 1, stream_chunks: 12 });
  const whole = (await (await speak()).arrayBuffer()).byteLength;
  await mock.fault({ match: { model: "tts-1-total" }, chunk_delay_ms: 300, stream_chunks: 12 });
  const started = Date.now();
  const res = await speak();
  assert.equal(res.status, 200);
  // The vendor's pipe is aborted at the deadline: the body ends there (here, under Miniflare,
  // as an early end; the client cannot be sent an error event in audio).
  const cut = await res.arrayBuffer().then((b) => b.byteLength, () => 0);
  const took = Date.now() - started;
  assert.ok(took < 2500, `cut after ${took} ms (the vendor would have taken 3.3 s)`);
  assert.ok(cut < whole, `${cut} of ${whole} bytes`);
  // The isolate serves on.
  const next = await client.audio.speech.create({ model: "tts", input: "Hi", voice: "nova", response_format: "wav" });
  assert.ok((await next.arrayBuffer()).byteLength > 44);
  await mock.reset();
});

test("every format comes with its content type; speech events pass through", async () => {
  for (const [format, type] of [["wav", "audio/wav"], ["opus", "audio/opus"], ["flac", "audio/flac"], ["pcm", "audio/pcm"]]) {
    const response = await client.audio.speech.create({ model: "tts", input: "Hi", voice: "nova", response_format: format });
    assert.equal(response.headers.get("content-type"), type, format);
    const bytes = Buffer.from(await response.arrayBuffer());
    if (format === "wav") assert.equal(bytes.subarray(0, 4).toString(), "RIFF");
  }
  const res = await call(gateway, "/v1/audio/speech", { body: { model: "tts", input: "Hi", voice: "nova", stream_format: "sse" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/event-stream/);
  const events = sseEvents(await res.text());
  assert.equal(events.at(-1).type, "speech.audio.done");
  for (const event of events) conforms(event.type === "speech.audio.done" ? "SpeechAudioDoneEvent" : "SpeechAudioDeltaEvent", event);
});

test("Azure speech: the deployment's URL and its api-key", async () => {
  await mock.reset();
  const response = await client.audio.speech.create({ model: "azure-tts", input: "Hi", voice: "echo" });
  assert.equal(response.status, 200);
  await response.arrayBuffer();
  const [sent] = await received(mock, "/audio/speech");
  assert.equal(sent.path, "/openai/deployments/tts-1/audio/speech");
  assert.equal(sent.headers["api-key"], SECRETS.AZURE_KEY);
});

test("Gemini TTS: its PCM as WAV by default, OpenAI's voice given a Gemini one, named", async () => {
  await mock.reset();
  const response = await client.audio.speech.create({
    model: "gemini-tts",
    input: "Hello there",
    voice: "alloy",
    instructions: "Say cheerfully",
  });
  assert.equal(response.headers.get("content-type"), "audio/wav");
  assert.equal(response.headers.get("x-switchyard-adjusted-params"), "response_format=wav, voice=Kore");
  const bytes = Buffer.from(await response.arrayBuffer());
  assert.equal(bytes.subarray(0, 4).toString(), "RIFF");
  assert.equal(bytes.subarray(8, 12).toString(), "WAVE");
  assert.equal(bytes.readUInt32LE(24), 24000, "Gemini's sample rate");
  assert.equal(bytes.readUInt32LE(40), bytes.length - 44, "the data chunk holds the rest");
  // The 27 characters sent ("Say cheerfully: Hello there") read at 60 ms each, 24 kHz, 16-bit.
  assert.equal(bytes.length - 44, Math.floor(27 * 0.06 * 24000) * 2);
  const [sent] = await received(mock, ":generateContent");
  assert.equal(sent.path, "/v1beta/models/gemini-2.5-flash-preview-tts:generateContent");
  assert.deepEqual(sent.json, {
    contents: [{ role: "user", parts: [{ text: "Say cheerfully: Hello there" }] }],
    generationConfig: { responseModalities: ["AUDIO"], speechConfig: { voiceConfig: { prebuiltVoiceConfig: { voiceName: "Kore" } } } },
  });
  // Gemini's tokens at $0.50 and $10 a million: 7 in, 40 audio tokens out.
  assert.equal(Number(response.headers.get("x-switchyard-cost-usd")), Number(((7 * 0.5 + 40 * 10) / 1e6).toFixed(8)));
});

test("Gemini TTS as raw PCM and as speech events; a format the gateway cannot make is a 400", async () => {
  const pcm = await client.audio.speech.create({ model: "gemini-tts", input: "Hi", voice: "Puck", response_format: "pcm" });
  assert.equal(pcm.headers.get("content-type"), "audio/pcm");
  assert.equal(pcm.headers.get("x-switchyard-adjusted-params"), null, "Puck is Gemini's own voice");
  assert.equal((await pcm.arrayBuffer()).byteLength, Math.floor(0.2 * 24000) * 2);
  const res = await call(gateway, "/v1/audio/speech", {
    body: { model: "gemini-tts", input: "Hi", voice: "Puck", response_format: "wav", stream_format: "sse" },
  });
  const events = sseEvents(await res.text());
  assert.deepEqual(events.map((e) => e.type), ["speech.audio.delta", "speech.audio.done"]);
  assert.equal(Buffer.from(events[0].audio, "base64").subarray(0, 4).toString(), "RIFF");
  for (const event of events) conforms(event.type === "speech.audio.done" ? "SpeechAudioDoneEvent" : "SpeechAudioDeltaEvent", event);
  const error = await client.audio.speech.create({ model: "gemini-tts", input: "Hi", voice: "alloy", response_format: "mp3" }).catch((e) => e);
  assert.ok(error instanceof OpenAI.BadRequestError, String(error));
  assert.equal(error.code, "unsupported_parameter");
  assert.equal(error.param, "response_format");
  const strict = await call(gateway, "/v1/audio/speech", {
    body: { model: "gemini-tts", input: "Hi", voice: "alloy", response_format: "wav" },
    headers: { "x-switchyard-strict": "1" },
  });
  assert.equal(strict.status, 400);
  assert.equal((await openaiError(strict)).param, "voice");
});

test("speech fails over: an unreachable vendor, a vendor's 503 to Gemini", async () => {
  const response = await client.audio.speech.create({ model: "tts-failover", input: "Hi", voice: "alloy" }).asResponse();
  assert.equal(response.headers.get("x-switchyard-model"), "tts-1-hd");
  assert.match(response.headers.get("x-switchyard-fallbacks"), /^down\/tts-1=upstream_unreachable/);
  await response.arrayBuffer();
  await mock.fault({ match: { model: "tts-1-failing" }, status: 503 });
  const gemini = await client.audio.speech.create({ model: "tts-to-gemini", input: "Hi", voice: "alloy", response_format: "wav" });
  assert.equal(gemini.headers.get("x-switchyard-provider"), "google");
  assert.equal(gemini.headers.get("x-switchyard-fallbacks"), "openai/tts-1-failing=http_503");
  await gemini.arrayBuffer();
  await mock.reset();
});

test("the built-in mock speaks with no vendor", async () => {
  const response = await client.audio.speech.create({ model: "demo-tts", input: "Hello", voice: "alloy", response_format: "wav" });
  assert.equal(response.headers.get("content-type"), "audio/wav");
  const bytes = Buffer.from(await response.arrayBuffer());
  assert.equal(bytes.subarray(0, 4).toString(), "RIFF");
});

test("bad speech requests are 4xx in OpenAI's shape", async () => {
  await mock.reset();
  const cases = [
    [{ model: "tts", voice: "alloy" }, ""],
    [{ model: "tts", input: "", voice: "alloy" }, "input"],
    [{ model: "tts", input: "x".repeat(4097), voice: "alloy" }, "input"],
    [{ model: "tts", input: "Hi" }, ""],
    [{ model: "tts", input: "Hi", voice: 3 }, "voice"],
    [{ model: "tts", input: "Hi", voice: "alloy", response_format: "ogg" }, "response_format"],
    [{ model: "tts", input: "Hi", voice: "alloy", speed: 9 }, "speed"],
    [{ input: "Hi", voice: "alloy" }, "model"],
    [{ model: "words", input: "Hi", voice: "alloy" }, "model"],
  ];
  for (const [body, param] of cases) {
    const res = await call(gateway, "/v1/audio/speech", { body });
    assert.equal(res.status, 400, JSON.stringify(body).slice(0, 80));
    assert.equal((await openaiError(res)).param ?? "", param, JSON.stringify(body).slice(0, 80));
  }
  const large = await call(gateway, "/v1/audio/speech", { body: { model: "tts", input: "x", voice: "a", pad: "x".repeat(MAX_BODY_BYTES) } });
  assert.equal(large.status, 413);
  assert.equal((await received(mock, "/audio")).length, 0);
});

// ---- Transcriptions and translations ----

const audioFile = (seconds = 2, name = "hello.wav") => toFile(wav(seconds), name, { type: "audio/wav" });

test("audio.transcriptions.create passes the upload through with only the model replaced", async () => {
  await mock.reset();
  const { data: transcript, response } = await client.audio.transcriptions
    .create({ file: await audioFile(), model: "whisper", language: "en" })
    .withResponse();
  conforms("CreateTranscriptionResponseJson", transcript);
  assert.match(transcript.text, /Transcript of hello\.wav \(64044 bytes\)/);
  assert.deepEqual(transcript.usage, { type: "duration", seconds: 2 });
  assert.equal(response.headers.get("x-switchyard-model"), "whisper-1");
  // Two seconds of whisper-1 at $0.006 a minute.
  assert.equal(Number(response.headers.get("x-switchyard-cost-usd")), Number((2 / 60 * 0.006).toFixed(8)));
  const [sent] = await received(mock, "/audio/transcriptions");
  assert.match(sent.body, /name="model"\r\n\r\nwhisper-1\r\n/);
  assert.match(sent.body, /name="language"\r\n\r\nen\r\n/);
  assert.match(sent.body, /name="file"; filename="hello.wav"\r\nContent-Type: audio\/wav\r\n\r\nRIFF/);
  assert.equal(sent.headers.authorization, `Bearer ${VENDOR_KEY}`);
});

test("every response format of a transcription, and a translation", async () => {
  const text = await client.audio.transcriptions.create({ file: await audioFile(), model: "whisper", response_format: "text" });
  assert.match(text, /^Transcript of hello\.wav/);
  const srt = await client.audio.transcriptions.create({ file: await audioFile(), model: "whisper", response_format: "srt" });
  assert.match(srt, /^1\n00:00:00,000 --> 00:00:02,000\n/);
  const vtt = await client.audio.transcriptions.create({ file: await audioFile(), model: "whisper", response_format: "vtt" });
  assert.match(vtt, /^WEBVTT/);
  const verbose = await client.audio.transcriptions.create({ file: await audioFile(), model: "whisper", response_format: "verbose_json" });
  conforms("CreateTranscriptionResponseVerboseJson", verbose);
  assert.equal(verbose.duration, 2);
  const tokens = await client.audio.transcriptions.create({ file: await audioFile(), model: "transcribe" });
  conforms("CreateTranscriptionResponseJson", tokens);
  assert.equal(tokens.usage.type, "tokens");
  const translation = await client.audio.translations.create({ file: await audioFile(), model: "whisper" });
  conforms("CreateTranslationResponseJson", translation);
  assert.match(translation.text, /^Translation of/);
  const verboseTranslation = await client.audio.translations.create({ file: await audioFile(), model: "whisper", response_format: "verbose_json" });
  conforms("CreateTranslationResponseVerboseJson", verboseTranslation);
});

test("a streamed transcription passes through as the vendor's events", async () => {
  const stream = await client.audio.transcriptions.create({ file: await audioFile(), model: "transcribe", stream: true });
  const types = [];
  for await (const event of stream) types.push(event.type);
  assert.deepEqual(types, ["transcript.text.delta", "transcript.text.done"]);
});

test("Azure transcriptions: the deployment's URL", async () => {
  await mock.reset();
  const transcript = await client.audio.transcriptions.create({ file: await audioFile(), model: "azure-whisper" });
  conforms("CreateTranscriptionResponseJson", transcript);
  const [sent] = await received(mock, "/audio/transcriptions");
  assert.equal(sent.path, "/openai/deployments/whisper-1/audio/transcriptions");
  assert.equal(sent.headers["api-key"], SECRETS.AZURE_KEY);
});

test("Gemini transcribes with the audio inline and the task as the prompt", async () => {
  await mock.reset();
  const { data: transcript, response } = await client.audio.transcriptions
    .create({ file: await audioFile(1), model: "gemini-listen", prompt: "Switchyard", timestamp_granularities: ["word"] })
    .withResponse();
  conforms("CreateTranscriptionResponseJson", transcript);
  assert.equal(transcript.text, "Transcript of 32044 bytes of audio/wav by mock-upstream.");
  assert.equal(transcript.usage.type, "tokens");
  assert.equal(response.headers.get("x-switchyard-dropped-params"), "timestamp_granularities");
  const [sent] = await received(mock, ":generateContent");
  assert.equal(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
  const [task, audio] = sent.json.contents[0].parts;
  assert.match(task.text, /^Transcribe the speech in this audio verbatim\./);
  assert.match(task.text, /Switchyard$/);
  assert.equal(audio.inlineData.mimeType, "audio/wav");
  assert.equal(audio.inlineData.data, wav(1).toString("base64"));
  const text = await client.audio.transcriptions.create({ file: await audioFile(1), model: "gemini-listen", response_format: "text" });
  assert.equal(text, "Transcript of 32044 bytes of audio/wav by mock-upstream.\n");
  const translation = await client.audio.translations.create({ file: await audioFile(1), model: "gemini-listen" });
  assert.match(translation.text, /^Translation of/);
});

test("what Gemini cannot transcribe to is a 400", async () => {
  for (const [extra, param] of [[{ response_format: "srt" }, "response_format"], [{ stream: true }, "stream"]]) {
    const error = await client.audio.transcriptions.create({ file: await audioFile(1), model: "gemini-listen", ...extra }).catch((e) => e);
    assert.ok(error instanceof OpenAI.BadRequestError, String(error));
    assert.equal(error.param, param);
  }
  const m4a = await client.audio.transcriptions
    .create({ file: await toFile(Buffer.from("....ftypM4A "), "a.m4a", { type: "audio/mp4" }), model: "gemini-listen" })
    .catch((e) => e);
  assert.ok(m4a instanceof OpenAI.BadRequestError);
  assert.equal(m4a.param, "file");
});

test("a failing transcription vendor fails over to Gemini", async () => {
  await mock.reset();
  await mock.fault({ match: { model: "whisper-1-failing" }, status: 500 });
  const { data: transcript, response } = await client.audio.transcriptions
    .create({ file: await audioFile(1), model: "listen-failover" })
    .withResponse();
  conforms("CreateTranscriptionResponseJson", transcript);
  assert.equal(response.headers.get("x-switchyard-provider"), "google");
  assert.equal(response.headers.get("x-switchyard-fallbacks"), "openai/whisper-1-failing=http_500");
  await mock.reset();
});

test("the built-in mock transcribes in every format", async () => {
  const json = await client.audio.transcriptions.create({ file: await audioFile(3), model: "demo-listen" });
  conforms("CreateTranscriptionResponseJson", json);
  assert.match(json.text, /^Mock transcript of hello\.wav/);
  const srt = await client.audio.transcriptions.create({ file: await audioFile(3), model: "demo-listen", response_format: "srt" });
  assert.match(srt, /00:00:03,000/);
});

test("bad uploads are 4xx before any vendor is called", async () => {
  await mock.reset();
  const post = (path, body, headers = {}) =>
    fetch(`${gateway.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${GATEWAY_KEY}`, ...headers }, body });
  const form = (fields) => {
    const data = new FormData();
    for (const [name, value, filename] of fields) {
      if (filename) data.append(name, new Blob([value]), filename);
      else data.append(name, value);
    }
    return data;
  };
  const cases = [
    [form([["model", "whisper"]]), "file"],
    [form([["file", wav(1), "a.wav"]]), "model"],
    [form([["model", "whisper"], ["file", "text, not a file"]]), "file"],
    [form([["model", "whisper"], ["file", Buffer.alloc(0), "a.wav"]]), "file"],
    [form([["model", "whisper"], ["file", wav(1), "a.wav"], ["response_format", "mp3"]]), "response_format"],
    [form([["model", "whisper"], ["file", wav(1), "a.wav"], ["temperature", "hot"]]), "temperature"],
  ];
  for (const [body, param] of cases) {
    const res = await post("/v1/audio/transcriptions", body);
    assert.equal(res.status, 400, param);
    assert.equal((await openaiError(res)).param, param);
  }
  const diarized = await post("/v1/audio/translations", form([["model", "whisper"], ["file", wav(1), "a.wav"], ["response_format", "diarized_json"]]));
  assert.equal(diarized.status, 400);
  const json = await post("/v1/audio/transcriptions", JSON.stringify({ model: "whisper" }), { "content-type": "application/json" });
  assert.equal(json.status, 400);
  assert.match((await openaiError(json)).message, /multipart\/form-data/);
  const large = await post("/v1/audio/transcriptions", form([["model", "whisper"], ["file", wav(MAX_UPLOAD_BYTES / 32000 + 1), "a.wav"]]));
  assert.equal(large.status, 413);
  assert.equal((await openaiError(large)).code, "request_too_large");
  const words = await client.audio.transcriptions.create({ file: await audioFile(1), model: "words" }).catch((e) => e);
  assert.equal(words.code, "unsupported_model");
  assert.equal((await received(mock, "/audio")).length, 0);
});

test("a budget holds the most a transcription can cost and refuses speech past it", async () => {
  const tight = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: TIGHT_KEY, maxRetries: 0 });
  const transcript = await tight.audio.transcriptions.create({ file: await audioFile(1), model: "whisper" });
  assert.match(transcript.text, /^Transcript/);
  // 4,096 characters of tts-1: $0.06, within the $0.10 a day; a second is over what is left.
  const first = await tight.audio.speech.create({ model: "tts", input: "x".repeat(4096), voice: "alloy" });
  await first.arrayBuffer();
  const second = await tight.audio.speech.create({ model: "tts", input: "x".repeat(4096), voice: "alloy" }).catch((e) => e);
  assert.ok(second instanceof OpenAI.RateLimitError, String(second));
  assert.equal(second.code, "budget_exceeded");
});
