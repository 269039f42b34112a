//! OpenAI's Responses API, as the real API answers it: `POST /v1/responses` with a `response`
//! object, or (`stream: true`) the event stream `response.created`, `response.in_progress`,
//! each output item's `added` / deltas / `done` events, and `response.completed` (or
//! `response.incomplete`), every event as `event: <type>` + `data: <json>` with a
//! `sequence_number` counting from 0 and no `data: [DONE]`; `GET /v1/responses/{id}` and
//! `DELETE /v1/responses/{id}` for the responses it stored.
//!
//! What it answers, as `openai.rs` does: after a `function_call_output`, a text quoting it; with
//! function tools offered (and not refused with `tool_choice: none`), a `function_call` of the
//! forced or first one with arguments that fit its schema; with `text.format` `json_schema`, JSON
//! that fits the schema (`json_object`: `{"answer": <the canned words>}`); otherwise the canned
//! words (`--stream-chunks` or the fault's `stream_chunks` of them). With `reasoning.effort`
//! other than `none`, a `reasoning` item with the canned reasoning as its summary comes first,
//! counted in `output_tokens_details.reasoning_tokens`. A text longer than `max_output_tokens`
//! (one token a word) is cut there, the response `incomplete` for `max_output_tokens`.
//!
//! State is OpenAI's: unless `store: false`, the response is kept in memory (until
//! `POST /_mock/reset`) with the conversation it ends. A `previous_response_id` continues that
//! conversation: its items precede the new input, and a text answer (not JSON) then ends with
//! ` (continuing N items)`, N the items that preceded, so a test can see the mock knew them.
//! Ids are OpenAI's shape: `resp_`, `msg_`, `fc_` and `rs_` with 48 hex digits, `call_` with 24,
//! unique in the process and, with a nonce of its start, unlike another process's.

use crate::faults::Fault;
use crate::openai::{invalid, invalid_param, EFFORTS};
use crate::wire::{event_stream, example, json_answer, now, signature, text, thought, thought_tokens, word, THOUGHT};
use crate::{json, Body, Options};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What OpenAI counts a function call as, as `openai.rs` does.
const CALL_TOKENS: usize = 12;

/// A bijection of `u64`s that looks random (splitmix64's finalizer): distinct counters give
/// distinct ids.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number of this process's start, so that two mocks (or two runs) make different ids.
fn nonce() -> u64 {
    static NONCE: OnceLock<u64> = OnceLock::new();
    *NONCE.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        mix(nanos ^ u64::from(std::process::id()).rotate_left(32))
    })
}

/// A new id: `prefix_` and 48 hex digits (`call_`: 24), never the same twice in a process.
fn new_id(prefix: &str) -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if prefix == "call" {
        return format!("call_{:016x}{:08x}", mix(n), nonce() >> 32);
    }
    format!("{prefix}_{:016x}{:016x}{:016x}", mix(n), nonce(), mix(n ^ nonce()))
}

/// Whether a path is `.../responses/{id}`, and the id.
pub fn id_in(path: &str) -> Option<&str> {
    let (_, id) = path.rsplit_once("/responses/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// A stored response: the object as answered, and the conversation it ends (what preceded it,
/// its input, its output), which a response naming it as `previous_response_id` continues.
#[derive(Clone, Debug)]
struct Kept {
    response: Value,
    conversation: Vec<Value>,
}

/// The responses kept by id, as OpenAI keeps those created with `store` (the default).
#[derive(Default)]
pub struct Store(Mutex<HashMap<String, Kept>>);

impl Store {
    fn keep(&self, id: &str, kept: Kept) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), kept);
    }

    fn get(&self, id: &str) -> Option<Kept> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    fn remove(&self, id: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id).is_some()
    }

    /// Forget every response, for `POST /_mock/reset`.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// OpenAI's 404 for an id it does not hold.
fn not_found(id: &str) -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        &json!({"error": {"message": format!("No response found with id '{id}'."), "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

/// `GET /v1/responses/{id}`: the stored response.
pub fn retrieve(store: &Store, id: &str, fault: Option<&Fault>) -> Response<Body> {
    match store.get(id) {
        Some(kept) => json_answer(&kept.response, fault),
        None => not_found(id),
    }
}

/// `DELETE /v1/responses/{id}`: forget it, as OpenAI confirms.
pub fn delete(store: &Store, id: &str) -> Response<Body> {
    if !store.remove(id) {
        return not_found(id);
    }
    json(StatusCode::OK, &json!({"id": id, "object": "response", "deleted": true}))
}

/// A request as the mock reads it, checked once.
struct Ask {
    id: String,
    created_at: u64,
    model: String,
    /// The conversation of the `previous_response_id`, if the request names one.
    history: Option<Vec<Value>>,
    /// This request's input, as items (a string input is one user message).
    input: Vec<Value>,
    /// The `reasoning.effort` asked for, other than `none`.
    reasoning: bool,
    stream: bool,
    store: bool,
    max_output_tokens: Option<usize>,
    /// `include: ["reasoning.encrypted_content"]`: reasoning items carry it.
    encrypted: bool,
}

impl Ask {
    /// The items that precede the answer: the history, then the input.
    fn context(&self) -> Vec<Value> {
        self.history.iter().flatten().chain(&self.input).cloned().collect()
    }
}

/// OpenAI's 400 for a parameter the request lacks.
fn missing(param: &str) -> Box<Response<Body>> {
    Box::new(invalid_param(&format!("Missing required parameter: '{param}'."), param, "missing_required_parameter"))
}

/// The checks OpenAI makes of an input item (the few a mock needs): an object, a message of a
/// known role, calls and their outputs with the members they need.
fn check_item(i: usize, item: &Value) -> Result<(), Box<Response<Body>>> {
    let param = |name: &str| format!("input[{i}].{name}");
    if !item.is_object() {
        let message = format!("Invalid type for 'input[{i}]': expected an input item, but got {item} instead.");
        return Err(Box::new(invalid_param(&message, &format!("input[{i}]"), "invalid_type")));
    }
    let required: &[&str] = match item.get("type").and_then(Value::as_str) {
        None | Some("message") => {
            let role = item.get("role").and_then(Value::as_str);
            if !matches!(role, Some("user" | "assistant" | "system" | "developer")) {
                let message = format!(
                    "Invalid value: '{}'. Supported values are: 'assistant', 'system', 'developer', and 'user'.",
                    role.unwrap_or_default()
                );
                return Err(Box::new(invalid_param(&message, &param("role"), "invalid_value")));
            }
            &["content"]
        }
        Some("function_call") => &["call_id", "name", "arguments"],
        Some("function_call_output") => &["call_id", "output"],
        Some("item_reference") => &["id"],
        Some(_) => &[],
    };
    match required.iter().find(|name| item.get(**name).is_none_or(Value::is_null)) {
        Some(name) => Err(missing(&param(name))),
        None => Ok(()),
    }
}

/// The request's input as items: a string is one user message, an array is checked item by item.
fn input_items(request: &Value) -> Result<Vec<Value>, Box<Response<Body>>> {
    match request.get("input") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![json!({"type": "message", "role": "user", "content": text})]),
        Some(Value::Array(items)) => {
            items.iter().enumerate().try_for_each(|(i, item)| check_item(i, item))?;
            Ok(items.clone())
        }
        Some(other) => Err(Box::new(invalid_param(
            &format!(
                "Invalid type for 'input': expected one of a string or array of input items, but got {other} instead."
            ),
            "input",
            "invalid_type",
        ))),
    }
}

/// Whether the request asks for reasoning, refused as OpenAI refuses an unknown effort.
fn wants_reasoning(request: &Value) -> Result<bool, Box<Response<Body>>> {
    match request.pointer("/reasoning/effort") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(effort)) if EFFORTS.contains(&effort.as_str()) => Ok(effort != "none"),
        Some(effort) => Err(Box::new(invalid_param(
            &format!("Invalid value: {effort}. Supported values are: 'none', 'minimal', 'low', 'medium', 'high', and 'xhigh'."),
            "reasoning.effort",
            "invalid_value",
        ))),
    }
}

/// The conversation a `previous_response_id` continues, refused as OpenAI refuses an id it
/// does not hold.
fn history(request: &Value, store: &Store) -> Result<Option<Vec<Value>>, Box<Response<Body>>> {
    let Some(previous) = request.get("previous_response_id").and_then(Value::as_str) else { return Ok(None) };
    match store.get(previous) {
        Some(kept) => Ok(Some(kept.conversation)),
        None => Err(Box::new(json(
            StatusCode::NOT_FOUND,
            &json!({"error": {"message": format!("Previous response with id '{previous}' not found."), "type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}}),
        ))),
    }
}

fn read(request: &Value, store: &Store) -> Result<Ask, Box<Response<Body>>> {
    let Some(model) = request.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return Err(missing("model"));
    };
    let input = input_items(request)?;
    let reasoning = wants_reasoning(request)?;
    let history = history(request, store)?;
    let include = request.get("include").and_then(Value::as_array);
    Ok(Ask {
        id: new_id("resp"),
        created_at: now(),
        model,
        history,
        input,
        reasoning,
        stream: request.get("stream").and_then(Value::as_bool) == Some(true),
        store: request.get("store").and_then(Value::as_bool) != Some(false),
        max_output_tokens: request.get("max_output_tokens").and_then(Value::as_u64).map(|m| m as usize),
        encrypted: include.is_some_and(|i| i.iter().any(|v| v == "reasoning.encrypted_content")),
    })
}

/// `text` in pieces of one word each, a word's leading space with it (as `wire::word` makes
/// them): what a text counts as in tokens, and what its deltas are.
fn pieces(text: &str) -> Vec<String> {
    text.split(' ')
        .enumerate()
        .map(|(i, w)| if i == 0 { w.to_owned() } else { format!(" {w}") })
        .filter(|p| !p.is_empty())
        .collect()
}

/// What the mock answers with.
enum Answer {
    /// Prose: the canned words, or a tool's result quoted.
    Prose(Vec<String>),
    /// JSON for `text.format`, in two pieces as a vendor's deltas split it anywhere.
    Json(Vec<String>),
    Call {
        name: String,
        arguments: String,
    },
}

/// What a tool's output says, as text.
fn tool_output(item: &Value) -> String {
    match item.get("output") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The function tool a request has the model call, unless it refuses them all.
fn tool_to_call(request: &Value) -> Option<&Value> {
    let choice = request.get("tool_choice");
    if choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    let tools = request.get("tools").and_then(Value::as_array)?;
    let mut functions = tools.iter().filter(|t| t.get("type").and_then(Value::as_str) == Some("function"));
    let forced =
        choice.filter(|c| c.get("type").and_then(Value::as_str) == Some("function")).and_then(|c| c.get("name"));
    match forced {
        Some(name) => functions.clone().find(|t| t.get("name") == Some(name)).or_else(|| functions.next()),
        None => functions.next(),
    }
}

fn answer(request: &Value, context: &[Value], words: usize) -> Answer {
    let is_output = |item: &&Value| item.get("type").and_then(Value::as_str) == Some("function_call_output");
    if let Some(output) = context.last().filter(is_output) {
        return Answer::Prose(pieces(&format!("The tool answered: {}", tool_output(output))));
    }
    if let Some(tool) = tool_to_call(request) {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("tool").to_owned();
        let schema = tool.get("parameters").filter(|p| p.is_object()).cloned().unwrap_or(json!({"type": "object"}));
        return Answer::Call { name, arguments: example(&schema).to_string() };
    }
    let format = request.pointer("/text/format");
    let json_text = match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_schema") => Some(example(format.and_then(|f| f.get("schema")).unwrap_or(&Value::Null)).to_string()),
        Some("json_object") => Some(json!({"answer": text(words)}).to_string()),
        _ => None,
    };
    match json_text {
        Some(content) => {
            let middle = content.char_indices().nth(content.chars().count() / 2).map_or(0, |(i, _)| i);
            Answer::Json(
                [&content[..middle], &content[middle..]]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| p.to_string())
                    .collect(),
            )
        }
        None => Answer::Prose((0..words.max(1)).map(word).collect()),
    }
}

/// An output item as made, with what its stream events need.
enum Item {
    Reasoning {
        id: String,
        encrypted: bool,
    },
    /// The text's pieces; `complete` unless `max_output_tokens` cut it.
    Message {
        id: String,
        pieces: Vec<String>,
        complete: bool,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

impl Item {
    /// The item as `response.output_item.added` shows it: in progress, empty.
    fn added(&self) -> Value {
        match self {
            Item::Reasoning { id, .. } => {
                json!({"type": "reasoning", "id": id, "summary": [], "status": "in_progress"})
            }
            Item::Message { id, .. } => {
                json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []})
            }
            Item::Call { id, call_id, name, .. } => {
                json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": "", "status": "in_progress"})
            }
        }
    }

    /// The item done, as the response's `output` has it.
    fn done(&self) -> Value {
        match self {
            Item::Reasoning { id, encrypted } => {
                let summary = [json!({"type": "summary_text", "text": thought()})];
                let mut item = json!({"type": "reasoning", "id": id, "summary": summary, "status": "completed"});
                if *encrypted {
                    item["encrypted_content"] = json!(signature(&thought()));
                }
                item
            }
            Item::Message { id, pieces, complete } => json!({
                "type": "message", "id": id, "status": if *complete { "completed" } else { "incomplete" },
                "role": "assistant", "content": [output_text(&pieces.concat())]
            }),
            Item::Call { id, call_id, name, arguments } => {
                json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": "completed"})
            }
        }
    }
}

/// What the mock answers, as output items.
struct Reply {
    items: Vec<Item>,
    /// `completed`, or `incomplete` when `max_output_tokens` cut the text.
    status: &'static str,
    output_tokens: usize,
    reasoning_tokens: usize,
}

fn reply(request: &Value, ask: &Ask, words: usize) -> Reply {
    let mut items = Vec::new();
    if ask.reasoning {
        items.push(Item::Reasoning { id: new_id("rs"), encrypted: ask.encrypted });
    }
    let mut pieces = match answer(request, &ask.context(), words) {
        Answer::Call { name, arguments } => {
            items.push(Item::Call { id: new_id("fc"), call_id: new_id("call"), name, arguments });
            let reasoning_tokens = if ask.reasoning { thought_tokens() } else { 0 };
            return Reply {
                items,
                status: "completed",
                output_tokens: CALL_TOKENS + reasoning_tokens,
                reasoning_tokens,
            };
        }
        Answer::Json(pieces) => pieces,
        Answer::Prose(mut pieces) => {
            if let Some(history) = &ask.history {
                pieces.extend(self::pieces(&format!(" (continuing {} items)", history.len())));
            }
            pieces
        }
    };
    let complete = match ask.max_output_tokens {
        Some(max) if pieces.len() > max => {
            pieces.truncate(max);
            false
        }
        _ => true,
    };
    let reasoning_tokens = if ask.reasoning { thought_tokens() } else { 0 };
    let output_tokens = pieces.len() + reasoning_tokens;
    items.push(Item::Message { id: new_id("msg"), pieces, complete });
    Reply { items, status: if complete { "completed" } else { "incomplete" }, output_tokens, reasoning_tokens }
}

/// What OpenAI counts the context as: a token every four bytes of it, instructions included.
fn input_tokens(request: &Value, ask: &Ask) -> usize {
    let instructions = request.get("instructions").map_or(0, |i| i.to_string().len());
    (Value::Array(ask.context()).to_string().len() + instructions).div_ceil(4)
}

fn usage(request: &Value, ask: &Ask, reply: &Reply) -> Value {
    let input_tokens = input_tokens(request, ask);
    json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        "total_tokens": input_tokens + reply.output_tokens
    })
}

/// The function tools as OpenAI repeats them, with the members it fills in (`strict` defaults
/// to true in this API); other tools as sent.
fn tools(request: &Value) -> Value {
    let tools = request.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
    let tools = tools.into_iter().map(|mut tool| {
        let function = tool.get("type").and_then(Value::as_str) == Some("function");
        if let (Some(object), true) = (tool.as_object_mut(), function) {
            object.entry("description").or_insert(Value::Null);
            object.entry("parameters").or_insert(Value::Null);
            object.entry("strict").or_insert(json!(true));
        }
        tool
    });
    Value::Array(tools.collect())
}

/// A request's member, or OpenAI's default for it.
fn or(request: &Value, name: &str, default: Value) -> Value {
    request.get(name).filter(|v| !v.is_null()).cloned().unwrap_or(default)
}

/// The `response` object with `status`: the request's parameters repeated, every member the
/// schema requires. In progress it has no output nor usage yet; `completed_at` only once
/// completed; `user` only when the request names one (the schema has it a string, never null).
fn response_object(request: &Value, ask: &Ask, status: &str, output: Vec<Value>, usage: Option<Value>) -> Value {
    let effort = request.pointer("/reasoning/effort").cloned().unwrap_or(Value::Null);
    let summary = request.pointer("/reasoning/summary").cloned().unwrap_or(Value::Null);
    let text = json!({
        "format": request.pointer("/text/format").cloned().unwrap_or(json!({"type": "text"})),
        "verbosity": request.pointer("/text/verbosity").cloned().unwrap_or(json!("medium")),
    });
    let mut response = json!({
        "id": ask.id,
        "object": "response",
        "created_at": ask.created_at,
        "status": status,
        "background": false,
        "completed_at": if status == "completed" { json!(now()) } else { Value::Null },
        "error": null,
        "incomplete_details": if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": or(request, "instructions", Value::Null),
        "max_output_tokens": or(request, "max_output_tokens", Value::Null),
        "max_tool_calls": or(request, "max_tool_calls", Value::Null),
        "model": ask.model,
        "output": output,
        "parallel_tool_calls": or(request, "parallel_tool_calls", json!(true)),
        "previous_response_id": or(request, "previous_response_id", Value::Null),
        "prompt_cache_key": or(request, "prompt_cache_key", Value::Null),
        "reasoning": {"effort": effort, "summary": summary},
        "safety_identifier": or(request, "safety_identifier", Value::Null),
        "service_tier": "default",
        "store": ask.store,
        "temperature": or(request, "temperature", json!(1.0)),
        "text": text,
        "tool_choice": or(request, "tool_choice", json!("auto")),
        "tools": tools(request),
        "top_logprobs": or(request, "top_logprobs", json!(0)),
        "top_p": or(request, "top_p", json!(1.0)),
        "truncation": or(request, "truncation", json!("disabled")),
        "metadata": or(request, "metadata", json!({})),
    });
    if let Some(usage) = usage {
        response["usage"] = usage;
    }
    if let Some(user) = request.get("user").and_then(Value::as_str) {
        response["user"] = json!(user);
    }
    response
}

/// `POST /v1/responses`.
pub fn create(options: &Options, store: &Store, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("We could not parse the JSON body of your request.");
    };
    let ask = match read(&request, store) {
        Ok(ask) => ask,
        Err(refusal) => return *refusal,
    };
    let words = fault.and_then(|f| f.stream_chunks).unwrap_or(options.stream_chunks);
    let reply = reply(&request, &ask, words);
    let output: Vec<Value> = reply.items.iter().map(Item::done).collect();
    let usage = usage(&request, &ask, &reply);
    let response = response_object(&request, &ask, reply.status, output.clone(), Some(usage));
    if ask.store {
        let conversation = ask.context().into_iter().chain(output).collect();
        store.keep(&ask.id, Kept { response: response.clone(), conversation });
    }
    if ask.stream {
        return stream(&request, &ask, &reply, &response, fault);
    }
    json_answer(&response, fault)
}

/// The events of a stream, numbered as they are made.
#[derive(Default)]
struct Events {
    list: Vec<Bytes>,
    next: u64,
}

impl Events {
    /// An event of `kind` with these members, its `type` and `sequence_number` added.
    fn push(&mut self, kind: &str, mut event: Value) {
        event["type"] = json!(kind);
        event["sequence_number"] = json!(self.next);
        self.next += 1;
        self.list.push(Bytes::from(format!("event: {kind}\ndata: {event}\n\n")));
    }

    /// An item's events, from `response.output_item.added` to `response.output_item.done`.
    fn item(&mut self, index: usize, item: &Item) {
        self.push("response.output_item.added", json!({"output_index": index, "item": item.added()}));
        match item {
            Item::Reasoning { id, .. } => {
                let at = json!({"item_id": id, "output_index": index, "summary_index": 0});
                self.push(
                    "response.reasoning_summary_part.added",
                    with(&at, "part", json!({"type": "summary_text", "text": ""})),
                );
                for piece in THOUGHT {
                    self.push("response.reasoning_summary_text.delta", with(&at, "delta", json!(piece)));
                }
                self.push("response.reasoning_summary_text.done", with(&at, "text", json!(thought())));
                let part = json!({"type": "summary_text", "text": thought()});
                self.push("response.reasoning_summary_part.done", with(&at, "part", part));
            }
            Item::Message { id, pieces, .. } => {
                let at = json!({"item_id": id, "output_index": index, "content_index": 0});
                self.push("response.content_part.added", with(&at, "part", output_text("")));
                for piece in pieces {
                    self.push(
                        "response.output_text.delta",
                        with(&with(&at, "delta", json!(piece)), "logprobs", json!([])),
                    );
                }
                let text = pieces.concat();
                self.push("response.output_text.done", with(&with(&at, "text", json!(text)), "logprobs", json!([])));
                self.push("response.content_part.done", with(&at, "part", output_text(&text)));
            }
            Item::Call { id, name, arguments, .. } => {
                let at = json!({"item_id": id, "output_index": index});
                for piece in thirds(arguments) {
                    self.push("response.function_call_arguments.delta", with(&at, "delta", json!(piece)));
                }
                let done = with(&with(&at, "name", json!(name)), "arguments", json!(arguments));
                self.push("response.function_call_arguments.done", done);
            }
        }
        self.push("response.output_item.done", json!({"output_index": index, "item": item.done()}));
    }
}

/// `fields` with one more member.
fn with(fields: &Value, name: &str, value: Value) -> Value {
    let mut fields = fields.clone();
    fields[name] = value;
    fields
}

/// `text` in three pieces (fewer if it is shorter), cut at character boundaries.
fn thirds(text: &str) -> Vec<&str> {
    let count = text.chars().count();
    let at = |n: usize| text.char_indices().nth(count * n / 3).map_or(text.len(), |(i, _)| i);
    let (first, second) = (at(1), at(2));
    [&text[..first], &text[first..second], &text[second..]].into_iter().filter(|p| !p.is_empty()).collect()
}

fn stream(request: &Value, ask: &Ask, reply: &Reply, response: &Value, fault: Option<&Fault>) -> Response<Body> {
    let mut events = Events::default();
    let started = json!({"response": response_object(request, ask, "in_progress", Vec::new(), None)});
    events.push("response.created", started.clone());
    events.push("response.in_progress", started);
    if fault.is_some_and(|f| f.malformed) {
        let broken =
            "event: response.output_item.added\ndata: {\"type\": \"response.output_item.added\", \"item\": [\n\n";
        events.list.push(Bytes::from_static(broken.as_bytes()));
    }
    for (index, item) in reply.items.iter().enumerate() {
        events.item(index, item);
    }
    events.push(&format!("response.{}", reply.status), json!({"response": response}));
    event_stream(events.list, fault)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, OPTIONS};

    const WORDS: &str = "Hello from mock-upstream, the vendor stand-in of Switchyard.";

    fn weather() -> Value {
        json!({"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
    }

    async fn create_in(store: &Store, body: Value) -> (u16, Value) {
        testing::json(create(&OPTIONS, store, body.to_string().as_bytes(), None)).await
    }

    async fn create_new(body: Value) -> (u16, Value) {
        create_in(&Store::default(), body).await
    }

    /// The text of a response's message items (what the SDKs call `output_text`).
    fn text_of(response: &Value) -> String {
        let output = response["output"].as_array().unwrap();
        let messages = output.iter().filter(|o| o["type"] == "message");
        messages.flat_map(|m| m["content"].as_array().unwrap()).map(|c| c["text"].as_str().unwrap()).collect()
    }

    fn is_id(id: &Value, prefix: &str, digits: usize) -> bool {
        let id = id.as_str().unwrap_or_default();
        id.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('_')).is_some_and(|hex| {
            hex.len() == digits && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    }

    #[tokio::test]
    async fn a_text_answer_is_a_completed_response_with_every_member() {
        let (status, response) = create_new(json!({"model": "gpt-5", "input": "Hi", "metadata": {"k": "v"}})).await;
        assert_eq!(status, 200);
        assert!(is_id(&response["id"], "resp", 48), "{}", response["id"]);
        assert_eq!(response["object"], "response");
        assert_eq!(response["status"], "completed");
        assert!(response["completed_at"].as_u64().unwrap() >= response["created_at"].as_u64().unwrap());
        for null in ["error", "incomplete_details", "instructions", "max_output_tokens", "previous_response_id"] {
            assert!(response[null].is_null(), "{null}");
        }
        assert_eq!(response["model"], "gpt-5");
        assert_eq!(response["metadata"], json!({"k": "v"}));
        assert_eq!(response["text"]["format"], json!({"type": "text"}));
        assert_eq!(response["reasoning"], json!({"effort": null, "summary": null}));
        assert_eq!((response["store"].clone(), response["truncation"].clone()), (json!(true), json!("disabled")));
        assert_eq!((response["tool_choice"].clone(), response["tools"].clone()), (json!("auto"), json!([])));
        assert_eq!((response["temperature"].clone(), response["top_p"].clone()), (json!(1.0), json!(1.0)));
        assert_eq!(response["parallel_tool_calls"], true);
        assert!(response.get("user").is_none() && response.get("output_text").is_none());
        let output = response["output"].as_array().unwrap();
        assert_eq!(output.len(), 1);
        assert!(is_id(&output[0]["id"], "msg", 48));
        assert_eq!(output[0]["status"], "completed");
        assert_eq!(output[0]["role"], "assistant");
        assert_eq!(
            output[0]["content"],
            json!([{"type": "output_text", "text": WORDS, "annotations": [], "logprobs": []}])
        );
        let usage = &response["usage"];
        assert_eq!(usage["output_tokens"], 8);
        assert_eq!(usage["output_tokens_details"], json!({"reasoning_tokens": 0}));
        assert_eq!(usage["input_tokens_details"], json!({"cached_tokens": 0, "cache_write_tokens": 0}));
        assert_eq!(usage["total_tokens"], usage["input_tokens"].as_u64().unwrap() + 8);
    }

    #[tokio::test]
    async fn a_model_is_required_and_input_items_are_checked() {
        let (status, refusal) = create_new(json!({"input": "Hi"})).await;
        assert_eq!(status, 400);
        assert_eq!(refusal["error"]["param"], "model");
        assert_eq!(refusal["error"]["type"], "invalid_request_error");
        let (status, refusal) = create_new(json!({"model": "m", "input": [{"role": "robot", "content": "x"}]})).await;
        assert_eq!((status, refusal["error"]["param"].clone()), (400, json!("input[0].role")));
        let (status, refusal) =
            create_new(json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]})).await;
        assert_eq!((status, refusal["error"]["code"].clone()), (400, json!("missing_required_parameter")));
        let (status, refusal) =
            create_new(json!({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}})).await;
        assert_eq!((status, refusal["error"]["param"].clone()), (400, json!("reasoning.effort")));
    }

    #[tokio::test]
    async fn every_kind_of_input_item_is_taken() {
        let input = json!([
            {"role": "system", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}, {"type": "input_image", "image_url": "https://example.com/a.png"}, {"type": "input_file", "file_id": "file_1"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "item_reference", "id": "msg_1"},
            {"role": "user", "content": "Again"}
        ]);
        let (status, response) = create_new(json!({"model": "m", "input": input, "instructions": "Be kind."})).await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(text_of(&response), WORDS);
        assert_eq!(response["instructions"], "Be kind.");
    }

    #[tokio::test]
    async fn with_tools_the_answer_calls_the_forced_or_first_function() {
        let other = json!({"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC"]}}}});
        let body = json!({"model": "m", "input": "Weather?", "tools": [{"type": "web_search"}, weather(), other]});
        let (_, response) = create_new(body.clone()).await;
        let call = &response["output"][0];
        assert_eq!(call["type"], "function_call");
        assert!(is_id(&call["id"], "fc", 48) && is_id(&call["call_id"], "call", 24), "{call}");
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["arguments"], r#"{"city":"example"}"#);
        assert_eq!(call["status"], "completed");
        assert_eq!(response["usage"]["output_tokens"], 12);
        // The function tools repeated with the members OpenAI fills in; others as sent.
        assert_eq!(response["tools"][0], json!({"type": "web_search"}));
        assert_eq!(response["tools"][1]["strict"], true);
        assert!(response["tools"][1]["description"].is_null());

        let mut forced = body.clone();
        forced["tool_choice"] = json!({"type": "function", "name": "get_time"});
        let (_, response) = create_new(forced).await;
        assert_eq!(response["output"][0]["name"], "get_time");
        assert_eq!(response["output"][0]["arguments"], r#"{"zone":"UTC"}"#);
        assert_eq!(response["tool_choice"], json!({"type": "function", "name": "get_time"}));

        let mut refused = body;
        refused["tool_choice"] = json!("none");
        let (_, response) = create_new(refused).await;
        assert_eq!(text_of(&response), WORDS);
    }

    #[tokio::test]
    async fn after_a_tool_result_the_answer_quotes_it() {
        let input = json!([
            {"role": "user", "content": "Weather?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
        ]);
        let (_, response) = create_new(json!({"model": "m", "input": input, "tools": [weather()]})).await;
        assert_eq!(response["output"][0]["type"], "message");
        assert_eq!(text_of(&response), "The tool answered: sunny");
        assert_eq!(response["usage"]["output_tokens"], 4);
    }

    #[tokio::test]
    async fn a_json_schema_format_brings_json_that_fits_it() {
        let format = json!({"type": "json_schema", "name": "city", "schema": {"type": "object", "properties": {"name": {"type": "string"}, "people": {"type": "integer"}}}});
        let (_, response) = create_new(json!({"model": "m", "input": "x", "text": {"format": format}})).await;
        assert_eq!(
            serde_json::from_str::<Value>(&text_of(&response)).unwrap(),
            json!({"name": "example", "people": 42})
        );
        assert_eq!(response["text"]["format"], format);
        let (_, response) =
            create_new(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}})).await;
        assert_eq!(serde_json::from_str::<Value>(&text_of(&response)).unwrap(), json!({"answer": WORDS}));
    }

    #[tokio::test]
    async fn a_reasoning_effort_brings_a_reasoning_item_first() {
        let body = json!({"model": "m", "input": "x", "reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"]});
        let (_, response) = create_new(body).await;
        let reasoning = &response["output"][0];
        assert_eq!(reasoning["type"], "reasoning");
        assert!(is_id(&reasoning["id"], "rs", 48));
        assert_eq!(
            reasoning["summary"],
            json!([{"type": "summary_text", "text": "Let me think about what the user asks."}])
        );
        assert_eq!(reasoning["encrypted_content"], signature(&thought()));
        assert_eq!(response["output"][1]["type"], "message");
        assert_eq!(response["reasoning"], json!({"effort": "low", "summary": null}));
        assert_eq!(response["usage"]["output_tokens_details"]["reasoning_tokens"], 8);
        assert_eq!(response["usage"]["output_tokens"], 16);
        let (_, response) = create_new(json!({"model": "m", "input": "x", "reasoning": {"effort": "none"}})).await;
        assert_eq!(response["output"].as_array().unwrap().len(), 1);
        assert_eq!(response["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
    }

    #[tokio::test]
    async fn a_text_beyond_max_output_tokens_is_cut_and_incomplete() {
        let (_, response) = create_new(json!({"model": "m", "input": "x", "max_output_tokens": 3})).await;
        assert_eq!(response["status"], "incomplete");
        assert_eq!(response["incomplete_details"], json!({"reason": "max_output_tokens"}));
        assert!(response["completed_at"].is_null());
        assert_eq!(response["max_output_tokens"], 3);
        assert_eq!(response["output"][0]["status"], "incomplete");
        assert_eq!(text_of(&response), "Hello from mock-upstream,");
        assert_eq!(response["usage"]["output_tokens"], 3);
        // Enough room: complete.
        let (_, response) = create_new(json!({"model": "m", "input": "x", "max_output_tokens": 8})).await;
        assert_eq!(response["status"], "completed");
        assert_eq!(text_of(&response), WORDS);
    }

    #[tokio::test]
    async fn a_stored_response_is_retrieved_then_deleted() {
        let store = Store::default();
        let (_, created) = create_in(&store, json!({"model": "m", "input": "Hi"})).await;
        let id = created["id"].as_str().unwrap();
        let (status, kept) = testing::json(retrieve(&store, id, None)).await;
        assert_eq!((status, &kept), (200, &created));
        let (status, deleted) = testing::json(delete(&store, id)).await;
        assert_eq!((status, deleted), (200, json!({"id": id, "object": "response", "deleted": true})));
        let (status, missing) = testing::json(retrieve(&store, id, None)).await;
        assert_eq!(status, 404);
        let expected = json!({"error": {"message": format!("No response found with id '{id}'."), "type": "invalid_request_error", "param": null, "code": null}});
        assert_eq!(missing, expected);
        assert_eq!(testing::json(delete(&store, id)).await.0, 404);
    }

    #[tokio::test]
    async fn with_store_false_nothing_is_kept() {
        let store = Store::default();
        let (_, created) = create_in(&store, json!({"model": "m", "input": "Hi", "store": false})).await;
        assert_eq!(created["store"], false);
        let id = created["id"].as_str().unwrap();
        assert_eq!(testing::json(retrieve(&store, id, None)).await.0, 404);
        let (status, _) = create_in(&store, json!({"model": "m", "input": "Hi", "previous_response_id": id})).await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn a_previous_response_continues_its_conversation() {
        let store = Store::default();
        let (_, first) = create_in(&store, json!({"model": "m", "input": "Weather?", "tools": [weather()]})).await;
        let call_id = first["output"][0]["call_id"].clone();
        let input = json!([{"type": "function_call_output", "call_id": call_id, "output": "sunny"}]);
        let body = json!({"model": "m", "previous_response_id": first["id"], "input": input});
        let (status, second) = create_in(&store, body).await;
        assert_eq!(status, 200, "{second}");
        // The question and the call preceded.
        assert_eq!(text_of(&second), "The tool answered: sunny (continuing 2 items)");
        assert_eq!(second["previous_response_id"], first["id"]);
        let body = json!({"model": "m", "previous_response_id": second["id"], "input": "Thanks"});
        let (_, third) = create_in(&store, body).await;
        assert_eq!(text_of(&third), format!("{WORDS} (continuing 4 items)"));
        assert!(third["usage"]["input_tokens"].as_u64() > second["usage"]["input_tokens"].as_u64());
    }

    #[tokio::test]
    async fn an_unknown_previous_response_is_not_found() {
        let (status, refusal) =
            create_new(json!({"model": "m", "input": "Hi", "previous_response_id": "resp_nope"})).await;
        assert_eq!(status, 404);
        let expected = json!({"error": {"message": "Previous response with id 'resp_nope' not found.", "type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}});
        assert_eq!(refusal, expected);
    }

    #[test]
    fn ids_are_unique_and_responses_paths_name_theirs() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id("resp")).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(id_in("/v1/responses/resp_1"), Some("resp_1"));
        assert_eq!(id_in("/v1/responses"), None);
        assert_eq!(id_in("/v1/responses/"), None);
        assert_eq!(id_in("/v1/responses/resp_1/input_items"), None);
    }

    /// A response with its ids and times blanked, to compare two answers of the same request.
    fn shape(response: &Value) -> Value {
        let mut response = response.clone();
        for member in ["id", "created_at", "completed_at"] {
            response[member] = Value::Null;
        }
        for item in response["output"].as_array_mut().unwrap() {
            item["id"] = Value::Null;
            if item.get("call_id").is_some() {
                item["call_id"] = Value::Null;
            }
        }
        response
    }

    async fn streamed(store: &Store, mut body: Value) -> (String, Vec<Value>) {
        body["stream"] = json!(true);
        let response = create(&OPTIONS, store, body.to_string().as_bytes(), None);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let (status, text) = testing::text(response).await;
        assert_eq!(status, 200);
        let events = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).expect("JSON event"))
            .collect();
        (text, events)
    }

    #[tokio::test]
    async fn a_stream_sends_the_events_in_order_and_ends_with_the_response() {
        let store = Store::default();
        let body = json!({"model": "m", "input": "Hi", "reasoning": {"effort": "low"}});
        let (text, events) = streamed(&store, body.clone()).await;
        assert!(!text.contains("[DONE]"));
        // Every event is named after its type, numbered from 0.
        let names: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("event: ")).collect();
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(names, types);
        assert!(events.iter().enumerate().all(|(n, e)| e["sequence_number"] == n));
        let mut expected = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
        ];
        expected.extend(["response.reasoning_summary_text.delta"; 4]);
        expected.extend([
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
        ]);
        expected.extend(["response.output_text.delta"; 8]);
        expected.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(types, expected);
        for started in &events[..2] {
            assert_eq!(started["response"]["status"], "in_progress");
            assert_eq!(started["response"]["output"], json!([]));
            assert!(started["response"].get("usage").is_none());
        }
        let message_id = &events[11]["item"]["id"];
        assert_eq!(events[11]["item"]["content"], json!([]));
        let deltas: Vec<&Value> = events.iter().filter(|e| e["type"] == "response.output_text.delta").collect();
        assert!(deltas
            .iter()
            .all(|d| &d["item_id"] == message_id && d["output_index"] == 1 && d["logprobs"] == json!([])));
        let streamed: String = deltas.iter().map(|d| d["delta"].as_str().unwrap()).collect();
        assert_eq!(streamed, WORDS);
        let reasoning: String = events[4..8].iter().map(|d| d["delta"].as_str().unwrap()).collect();
        assert_eq!(reasoning, thought());
        // The final response is what an answer without a stream is, and is kept.
        let last = &events.last().unwrap()["response"];
        let done: Vec<Value> =
            events.iter().filter(|e| e["type"] == "response.output_item.done").map(|e| e["item"].clone()).collect();
        assert_eq!(last["output"], json!(done));
        let (_, unstreamed) = create_in(&store, body).await;
        assert_eq!(shape(last), shape(&unstreamed));
        let id = last["id"].as_str().unwrap();
        assert_eq!(&testing::json(retrieve(&store, id, None)).await.1, last);
    }

    #[tokio::test]
    async fn a_streamed_call_sends_its_arguments_in_pieces() {
        let (_, events) = streamed(&Store::default(), json!({"model": "m", "input": "Hi", "tools": [weather()]})).await;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types[2], "response.output_item.added");
        assert_eq!(events[2]["item"]["arguments"], "");
        assert_eq!(events[2]["item"]["status"], "in_progress");
        assert_eq!(&types[3..6], ["response.function_call_arguments.delta"; 3]);
        let arguments: String = events[3..6].iter().map(|e| e["delta"].as_str().unwrap()).collect();
        assert_eq!(arguments, r#"{"city":"example"}"#);
        assert_eq!(types[6], "response.function_call_arguments.done");
        assert_eq!(
            (events[6]["name"].clone(), events[6]["arguments"].clone()),
            (json!("get_weather"), json!(arguments))
        );
        assert_eq!(&types[7..], ["response.output_item.done", "response.completed"]);
        assert_eq!(events[7]["item"]["call_id"], events[2]["item"]["call_id"]);
    }

    #[tokio::test]
    async fn a_cut_stream_ends_incomplete() {
        let (_, events) =
            streamed(&Store::default(), json!({"model": "m", "input": "Hi", "max_output_tokens": 2})).await;
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(events.iter().filter(|e| e["type"] == "response.output_text.delta").count(), 2);
        assert_eq!(events[events.len() - 2]["item"]["status"], "incomplete");
    }

    #[tokio::test]
    async fn stream_faults_apply() {
        let fault = Fault { cut_after: Some(4), ..Fault::default() };
        let body = json!({"model": "m", "input": "Hi", "stream": true}).to_string();
        let response = create(&OPTIONS, &Store::default(), body.as_bytes(), Some(&fault));
        let collected = http_body_util::BodyExt::collect(response.into_body()).await;
        assert!(collected.is_err(), "a cut stream ends with an error");
        let fault = Fault { stream_chunks: Some(3), ..Fault::default() };
        let response = create(&OPTIONS, &Store::default(), body.as_bytes(), Some(&fault));
        let events = testing::events(response).await;
        assert_eq!(events.iter().filter(|e| e["type"] == "response.output_text.delta").count(), 3);
    }
}
