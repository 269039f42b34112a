// What is sent in each scenario, and how a good answer looks. Every system gets the same
// conversation; only the wire format (OpenAI Chat, OpenAI Responses or Anthropic), the model name and the headers a
// system needs differ.

// With `mock-upstream --stream-chunks 50`: 50 content chunks a streamed answer (and 50 words
// in a non-streamed one).
export const STREAM_CHUNKS = 50;

const SYSTEM = "You are a careful assistant. Answer in plain English, in at most three sentences.";
const QUESTION =
  "Here are my notes from this week's planning meeting. We agreed to move the billing export to " +
  "the new queue, to keep the old cron job for one more release as a fallback, and to page the " +
  "on-call engineer only when both paths fail. Open questions: who owns the retry policy, whether " +
  "the export must be idempotent across regions, and how long we keep the raw files (legal asked " +
  "for at least ninety days, finance for a year). Risks: the queue's visibility timeout is shorter " +
  "than the slowest export we saw last month, and the dashboards still read from the old tables. " +
  "Action items: draft the retry policy, measure the export's duration over a week, and list the " +
  "dashboards to move. Please summarise the decisions, the open questions and the next steps, and " +
  "tell me which risk to look at first and why.";

/**
 * The scenarios, in report order. `wire`: what the upstream speaks; `client`: what the client
 * speaks to a gateway (OpenAI's Chat Completions unless it says `anthropic`, the Messages API,
 * or `responses`, OpenAI's Responses API).
 */
export const SCENARIOS = [
  { id: "chat", wire: "openai", stream: false, title: "non-streamed chat, 1 KB prompt, passed through (OpenAI in, OpenAI out)" },
  { id: "stream", wire: "openai", stream: true, title: `streamed chat, ${STREAM_CHUNKS} chunks, passed through (OpenAI in, OpenAI out)` },
  { id: "translated", wire: "anthropic", stream: false, title: "non-streamed chat, 1 KB prompt, translated (OpenAI in, Anthropic out)" },
  { id: "translated-stream", wire: "anthropic", stream: true, title: `streamed chat, ${STREAM_CHUNKS} chunks, translated (OpenAI in, Anthropic out)` },
  { id: "messages-stream", client: "anthropic", wire: "anthropic", stream: true, title: `streamed chat, ${STREAM_CHUNKS} chunks, passed through (Anthropic in, Anthropic out)` },
  { id: "messages-translated-stream", client: "anthropic", wire: "openai", stream: true, title: `streamed chat, ${STREAM_CHUNKS} chunks, translated (Anthropic in, OpenAI out)` },
  { id: "responses-stream", client: "responses", wire: "responses", stream: true, title: `streamed Responses call, ${STREAM_CHUNKS} chunks, store: false, passed through (Responses in, OpenAI Responses out)` },
];

/** An OpenAI Chat Completions request (about 1 KB) for `model`. */
export function openaiBody(model, stream) {
  return JSON.stringify({
    model,
    messages: [
      { role: "system", content: SYSTEM },
      { role: "user", content: QUESTION },
    ],
    max_tokens: 256,
    temperature: 0.2,
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  });
}

/** The same conversation as an Anthropic Messages request: what the gateway sends upstream when it translates. */
export function anthropicBody(model, stream) {
  return JSON.stringify({
    model,
    system: SYSTEM,
    messages: [{ role: "user", content: QUESTION }],
    max_tokens: 256,
    temperature: 0.2,
    ...(stream ? { stream: true } : {}),
  });
}

/** The same conversation as an OpenAI Responses request; `store: false`, so that what is measured is the call, not the store. */
export function responsesBody(model, stream) {
  return JSON.stringify({
    model,
    instructions: SYSTEM,
    input: QUESTION,
    max_output_tokens: 256,
    temperature: 0.2,
    store: false,
    ...(stream ? { stream: true } : {}),
  });
}

const dataEvents = (text) =>
  text
    .split(/\r?\n\r?\n/)
    .flatMap((block) => block.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()))
    .filter(Boolean);

/**
 * Checks one answer before a system is put under load, so a system that answers errors fast is
 * not mistaken for a fast system. Returns null when the answer is good, else what is wrong.
 */
export function checkAnswer(wire, stream, status, text) {
  if (status !== 200) return `status ${status}: ${text.slice(0, 300)}`;
  try {
    if (!stream) {
      const body = JSON.parse(text);
      const content =
        wire === "openai"
          ? body.choices?.[0]?.message?.content
          : wire === "responses"
            ? body.output?.find((o) => o.type === "message")?.content?.[0]?.text
            : body.content?.[0]?.text;
      return typeof content === "string" && content.length > 0 ? null : `no content in ${text.slice(0, 300)}`;
    }
    const events = dataEvents(text);
    if (wire === "openai") {
      if (events.at(-1) !== "[DONE]") return `stream does not end with [DONE]: ...${text.slice(-200)}`;
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
      const content = chunks.filter((c) => c.choices?.[0]?.delta?.content);
      if (content.length !== STREAM_CHUNKS) return `${content.length} content chunks, expected ${STREAM_CHUNKS}`;
      return chunks.some((c) => c.usage) ? null : "no usage chunk (stream_options.include_usage)";
    }
    if (wire === "responses") {
      const parsed = events.map((e) => JSON.parse(e));
      const deltas = parsed.filter((e) => e.type === "response.output_text.delta");
      if (deltas.length !== STREAM_CHUNKS) return `${deltas.length} output_text deltas, expected ${STREAM_CHUNKS}`;
      return parsed.at(-1)?.type === "response.completed" ? null : `stream does not end with response.completed: ...${text.slice(-200)}`;
    }
    const deltas = events.map((e) => JSON.parse(e)).filter((e) => e.type === "content_block_delta");
    return deltas.length === STREAM_CHUNKS ? null : `${deltas.length} content deltas, expected ${STREAM_CHUNKS}`;
  } catch (e) {
    return `unreadable answer (${e.message}): ${text.slice(0, 300)}`;
  }
}
