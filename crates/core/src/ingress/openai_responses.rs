//! OpenAI's Responses API (`POST /v1/responses`): its request into the canonical one, with the
//! parameters the gateway acts on itself ([`Params`]); canonical answers into `Response`
//! objects ([`encode_answer`]); canonical stream events into the Responses event stream
//! ([`Stream`]). The contract is OpenAI's OpenAPI document (`CreateResponse`, `Response`,
//! `ResponseStreamEvent`), as the official SDKs read it.
//!
//! Conversation state is kept in the Responses format itself: the gateway stores each
//! response's input items ([`Params::input_items`], normalized, each with an id) and its output
//! items ([`output_items`]), and replays a `previous_response_id` chain through [`decode`] as
//! `history`, the same decoder as a client's own items.
//!
//! No randomness here: ids are derived by [`new_id`] from bytes the caller gives (the worker's
//! random bytes for a response id; a response's item ids from its id and their index).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::{
    Answer, Block, BlockKind, Delta, Dialect, Egress, Event, Finish, Media, OutputFormat, Part, Reasoning, Request,
    Role, Source, ToolChoice, ToolDef, Turn, Usage,
};
use crate::error::GatewayError;

/// What a Responses request has beyond the canonical request: what the gateway itself acts on
/// (storage, the conversation chain, metadata) and what a `Response` object repeats of the
/// request (as sent, or the API's default).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Whether the response is stored, for `GET /v1/responses/{id}` and to be continued with
    /// `previous_response_id` (default true).
    pub store: bool,
    /// The stored response this one continues: its chain is the `history` [`decode`] was given.
    pub previous_response_id: Option<String>,
    /// At most 16 pairs of strings (keys up to 64 characters, values up to 512).
    pub metadata: Map<String, Value>,
    /// The request's `instructions` (also the head of `Request::system`). A continued
    /// response does not inherit its predecessor's.
    pub instructions: Option<String>,
    /// The request's input as input items, in the shape `GET /v1/responses/{id}/input_items`
    /// lists them (`ItemResource`): a string input as a user message, string contents as
    /// parts, each item with an `id` (the client's, or `msg_...`, `fc_...`, `fco_...`, `rs_...`),
    /// item references replaced by the items they name.
    pub input_items: Vec<Value>,
    /// The tools as sent, function tools with the members a `Response` requires (`parameters`,
    /// `strict`: null when not sent).
    pub tools: Vec<Value>,
    /// As sent, or `"auto"`.
    pub tool_choice: Value,
    /// As sent, or `{"format": {"type": "text"}}`.
    pub text: Value,
    /// As sent, or null.
    pub reasoning: Value,
    /// As sent, or `"disabled"`.
    pub truncation: Value,
    /// As sent, or `"default"`.
    pub service_tier: Value,
    pub parallel_tool_calls: bool,
    pub temperature: f64,
    pub top_p: f64,
    pub top_logprobs: u32,
    pub max_output_tokens: Option<u32>,
    pub max_tool_calls: Option<u64>,
    pub background: bool,
    pub user: Option<String>,
    pub safety_identifier: Option<String>,
    pub prompt_cache_key: Option<String>,
    /// The indexes in `input_items` of the items whose id the decoder made (for
    /// [`Params::assign_ids`]).
    generated_ids: Vec<usize>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            store: true,
            previous_response_id: None,
            metadata: Map::new(),
            instructions: None,
            input_items: Vec::new(),
            tools: Vec::new(),
            tool_choice: json!("auto"),
            text: json!({"format": {"type": "text"}}),
            reasoning: Value::Null,
            truncation: json!("disabled"),
            service_tier: json!("default"),
            parallel_tool_calls: true,
            temperature: 1.0,
            top_p: 1.0,
            top_logprobs: 0,
            max_output_tokens: None,
            max_tool_calls: None,
            background: false,
            user: None,
            safety_identifier: None,
            prompt_cache_key: None,
            generated_ids: Vec::new(),
        }
    }
}

impl Params {
    /// Gives the input items whose id the decoder made new ids from `entropy` (the worker's
    /// random bytes). The decoder derives them from the body's digest and the item's index,
    /// so two identical requests have the same ones: a store keyed by item id wants these.
    pub fn assign_ids(&mut self, entropy: &[u8]) {
        for &index in &self.generated_ids {
            let Some(Value::Object(item)) = self.input_items.get_mut(index) else { continue };
            let prefix = id_prefix(item.get("type").and_then(Value::as_str).unwrap_or("message"));
            let mut seed = entropy.to_vec();
            seed.extend_from_slice(&(index as u64).to_le_bytes());
            item.insert("id".to_owned(), Value::String(new_id(prefix, &seed)));
        }
    }
}

impl Params {
    /// A copy of what a `Response` repeats: all but the input items (which may be large).
    fn echo(&self) -> Params {
        Params {
            store: self.store,
            previous_response_id: self.previous_response_id.clone(),
            metadata: self.metadata.clone(),
            instructions: self.instructions.clone(),
            input_items: Vec::new(),
            tools: self.tools.clone(),
            tool_choice: self.tool_choice.clone(),
            text: self.text.clone(),
            reasoning: self.reasoning.clone(),
            truncation: self.truncation.clone(),
            service_tier: self.service_tier.clone(),
            parallel_tool_calls: self.parallel_tool_calls,
            temperature: self.temperature,
            top_p: self.top_p,
            top_logprobs: self.top_logprobs,
            max_output_tokens: self.max_output_tokens,
            max_tool_calls: self.max_tool_calls,
            background: self.background,
            user: self.user.clone(),
            safety_identifier: self.safety_identifier.clone(),
            prompt_cache_key: self.prompt_cache_key.clone(),
            generated_ids: Vec::new(),
        }
    }
}

/// An id as OpenAI writes them: `prefix_` and 48 hex digits, from the SHA-256 of `entropy`
/// (random bytes for a response; a response's id and an index for its items).
pub fn new_id(prefix: &str, entropy: &[u8]) -> String {
    let digest = Sha256::digest(entropy);
    let mut id = String::with_capacity(prefix.len() + 49);
    id.push_str(prefix);
    id.push('_');
    for byte in &digest[..24] {
        let _ = write!(id, "{byte:02x}");
    }
    id
}

/// The output items of a stored `Response`, to replay as `history` after its input items.
pub fn output_items(response: &Value) -> Vec<Value> {
    response.get("output").and_then(Value::as_array).cloned().unwrap_or_default()
}

// ---- The request ----

/// Top-level members the canonical request or [`Params`] hold; any other goes in `extra`.
/// (`stream_options` is the encoder's: its one option, `include_obfuscation`, asks for padding
/// the gateway's stream does not need to leave out, since it never adds it.)
const MODELLED: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "reasoning",
    "max_output_tokens",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "stream",
    "stream_options",
    "store",
    "previous_response_id",
    "metadata",
];

/// The typed pass over a request: the scalars, with serde naming a wrong one by its path; the
/// structured members as JSON values, read by hand below (each error naming its path too).
#[derive(Deserialize)]
struct Body {
    model: String,
    #[serde(default)]
    input: Option<Input>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    text: Option<Map<String, Value>>,
    #[serde(default)]
    reasoning: Option<Map<String, Value>>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    safety_identifier: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    /// Read for its type only.
    #[serde(default, rename = "stream_options")]
    _stream_options: Option<Map<String, Value>>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    // In `extra` (for the adapters), and echoed.
    #[serde(default)]
    top_logprobs: Option<u32>,
    #[serde(default)]
    truncation: Option<String>,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    max_tool_calls: Option<u64>,
    #[serde(default)]
    prompt_cache_key: Option<String>,
    #[serde(default)]
    conversation: Option<Value>,
}

/// `input`: a string (one user message) or a list of input items.
enum Input {
    Text(String),
    Items(Vec<Value>),
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = Input;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of input items")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Input, E> {
                Ok(Input::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Input, E> {
                Ok(Input::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Input, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Input::Items(items))
            }
        }
        deserializer.deserialize_any(InputVisitor)
    }
}

/// The `previous_response_id` a request continues, read before it is decoded (the decoder
/// needs the stored conversation); a body that does not name one is not parsed here. A value
/// that is not a string is left for the decoder to refuse.
pub fn previous_response_id(body: &[u8]) -> Result<Option<String>, GatewayError> {
    #[derive(Deserialize)]
    struct Chained {
        #[serde(default)]
        previous_response_id: Option<Value>,
    }
    if memchr::memmem::find(body, b"previous_response_id").is_none() {
        return Ok(None);
    }
    let chained: Chained = crate::error::parse_body(body)?;
    Ok(chained.previous_response_id.and_then(|v| v.as_str().map(str::to_owned)))
}

/// Parses, validates and maps a Responses request. `history` is the stored input and output
/// items of the `previous_response_id` chain, oldest first (empty without one): they become
/// the first turns, decoded as the request's own items are.
pub fn decode(body: Vec<u8>, history: &[Value]) -> Result<(Request, Params), GatewayError> {
    let parsed: Body = crate::error::parse_body(&body)?;
    validate(&parsed)?;

    // The shallow pass: where `model` lies, and the members not modelled, as sent (a null asks
    // for nothing and is left out).
    let mut extra = Map::new();
    let mut model_span = (0, 0);
    for (key, value) in crate::error::top_level(&body)? {
        if key == "model" {
            let start = value.get().as_ptr() as usize - body.as_ptr() as usize;
            model_span = (start, start + value.get().len());
        } else if !MODELLED.contains(&key.as_ref()) {
            let value: Value = serde_json::from_str(value.get())
                .map_err(|e| GatewayError::invalid_request(key.as_ref(), format!("Invalid value for '{key}': {e}")))?;
            if !value.is_null() {
                extra.insert(key.into_owned(), value);
            }
        }
    }

    let mut conversation = Conversation::default();
    for (i, item) in history.iter().enumerate() {
        conversation.item(item, &format!("history[{i}]")).map_err(|e| {
            GatewayError::invalid_request(
                "previous_response_id",
                format!("The stored conversation of 'previous_response_id' could not be replayed: {}", e.message),
            )
        })?;
    }

    let digest = Sha256::digest(&body);
    let mut input_items: Vec<Value> = Vec::new();
    let mut generated_ids = Vec::new();
    let assign = |item: &Value, index: usize, generated: &mut Vec<usize>| {
        normalize(item, |prefix| {
            generated.push(index);
            let mut seed = digest.to_vec();
            seed.extend_from_slice(&(index as u64).to_le_bytes());
            new_id(prefix, &seed)
        })
    };
    match &parsed.input {
        None => {}
        Some(Input::Text(text)) => {
            let item = json!({"type": "message", "role": "user", "content": text});
            conversation.item(&item, "input")?;
            input_items.push(assign(&item, 0, &mut generated_ids));
        }
        Some(Input::Items(items)) => {
            // Each item may be named by one reference at most: references copy what they name,
            // and must not make a small request a large one.
            let mut referenced: std::collections::HashSet<String> = std::collections::HashSet::new();
            // Where each id is: in the history (true) or this input (false), at which index.
            let mut ids: std::collections::HashMap<String, (bool, usize)> = history
                .iter()
                .enumerate()
                .filter_map(|(n, v)| v["id"].as_str().map(|id| (id.to_owned(), (true, n))))
                .collect();
            for (i, item) in items.iter().enumerate() {
                let path = format!("input[{i}]");
                let normalized = match reference(item, &path)? {
                    Some(id) => {
                        if !referenced.insert(id.to_string()) {
                            return Err(GatewayError::invalid_request(
                                format!("{path}.id"),
                                format!("Invalid value for '{path}.id': the item '{id}' is referenced more than once."),
                            ));
                        }
                        let found =
                            ids.get(id).and_then(|&(past, n)| if past { history.get(n) } else { input_items.get(n) });
                        let Some(target) = found else {
                            return Err(GatewayError::invalid_request(
                                format!("{path}.id"),
                                format!(
                                    "Invalid value for '{path}.id': no item with id '{id}'. An item reference can \
                                     name only an item of the 'previous_response_id' chain (or an earlier item of \
                                     this input); send the item itself instead."
                                ),
                            ));
                        };
                        let target = target.clone();
                        conversation.item(&target, &path)?;
                        target
                    }
                    None => {
                        conversation.item(item, &path)?;
                        assign(item, i, &mut generated_ids)
                    }
                };
                if let Some(id) = normalized["id"].as_str() {
                    ids.entry(id.to_owned()).or_insert((false, input_items.len()));
                }
                input_items.push(normalized);
            }
        }
    }

    let Conversation { system: item_system, turns, mut server_tools, call_names: _ } = conversation;
    if turns.is_empty() {
        return Err(GatewayError::invalid_request(
            "input",
            "'input' must hold at least one message or item with content (or 'previous_response_id' name a \
             conversation to continue).",
        ));
    }
    let mut system = Vec::new();
    if let Some(instructions) = parsed.instructions.as_deref().filter(|i| !i.is_empty()) {
        system.push(Part::text(instructions));
    }
    system.extend(item_system);

    // Tools: functions are the canonical ones; every other type runs on its vendor's servers.
    let mut tools = Vec::new();
    let mut tools_echo = Vec::new();
    for (i, tool) in parsed.tools.iter().flatten().enumerate() {
        let path = format!("tools[{i}]");
        let obj = object(tool, &path)?;
        let kind = required_str(obj, "type", &path)?;
        if kind == "function" {
            let name = required_str(obj, "name", &path)?;
            if name.is_empty() {
                return Err(invalid(&format!("{path}.name"), "a function's name must not be empty."));
            }
            let parameters = match obj.get("parameters") {
                None | Some(Value::Null) => None,
                Some(v @ Value::Object(_)) => Some(v.clone()),
                Some(other) => return Err(wrong_type(&format!("{path}.parameters"), "an object", other)),
            };
            tools.push(ToolDef {
                name: name.to_owned(),
                description: optional_str(obj, "description", &path)?.map(str::to_owned),
                parameters,
                strict: optional_bool(obj, "strict", &path)?,
                cache: None,
            });
            let mut echo = obj.clone();
            echo.entry("parameters").or_insert(Value::Null);
            echo.entry("strict").or_insert(Value::Null);
            tools_echo.push(Value::Object(echo));
        } else {
            add_unique(&mut server_tools, kind);
            tools_echo.push(tool.clone());
        }
    }

    let tool_choice = match &parsed.tool_choice {
        None | Some(Value::Null) => None,
        Some(choice) => tool_choice(choice, &mut tools, &mut server_tools, &mut extra)?,
    };

    let mut output = OutputFormat::Text;
    let mut text_echo = json!({"format": {"type": "text"}});
    if let Some(text) = &parsed.text {
        for (key, value) in text {
            match key.as_str() {
                "format" => output = format(value)?,
                _ if value.is_null() => {}
                _ => {
                    extra.insert(format!("text.{key}"), value.clone());
                }
            }
        }
        let mut echo = text.clone();
        if echo.get("format").is_none_or(Value::is_null) {
            echo.insert("format".to_owned(), json!({"type": "text"}));
        }
        text_echo = Value::Object(echo);
    }

    let mut reasoning = None;
    if let Some(options) = &parsed.reasoning {
        for (key, value) in options {
            let path = format!("reasoning.{key}");
            match key.as_str() {
                "effort" => match value {
                    Value::Null => {}
                    Value::String(effort) => reasoning = Some(Reasoning::Effort(effort.clone())),
                    other => return Err(wrong_type(&path, "a string", other)),
                },
                // Summaries: a vendor's thinking comes back as the reasoning item's summary.
                "summary" | "generate_summary" => {
                    if !(value.is_null() || value.is_string()) {
                        return Err(wrong_type(&path, "a string", value));
                    }
                }
                _ if value.is_null() => {}
                _ => {
                    extra.insert(path, value.clone());
                }
            }
        }
    }

    let params = Params {
        store: parsed.store.unwrap_or(true),
        previous_response_id: parsed.previous_response_id.clone(),
        metadata: parsed.metadata.clone().unwrap_or_default(),
        instructions: parsed.instructions.clone(),
        input_items,
        tools: tools_echo,
        tool_choice: parsed.tool_choice.clone().filter(|c| !c.is_null()).unwrap_or_else(|| json!("auto")),
        text: text_echo,
        reasoning: parsed.reasoning.clone().map(Value::Object).unwrap_or(Value::Null),
        truncation: json!(parsed.truncation.as_deref().unwrap_or("disabled")),
        service_tier: json!(parsed.service_tier.as_deref().unwrap_or("default")),
        parallel_tool_calls: parsed.parallel_tool_calls.unwrap_or(true),
        temperature: parsed.temperature.unwrap_or(1.0),
        top_p: parsed.top_p.unwrap_or(1.0),
        top_logprobs: parsed.top_logprobs.unwrap_or(0),
        max_output_tokens: parsed.max_output_tokens,
        max_tool_calls: parsed.max_tool_calls,
        background: parsed.background.unwrap_or(false),
        user: parsed.user.clone(),
        safety_identifier: parsed.safety_identifier.clone(),
        prompt_cache_key: parsed.prompt_cache_key.clone(),
        generated_ids,
    };

    let mut source = Source { dialect: Dialect::OpenaiResponses, ..Source::default() };
    source.model_span = model_span;
    source.bytes = body;
    let request = Request {
        model: parsed.model,
        system,
        turns,
        tools,
        tool_choice,
        parallel_tool_calls: parsed.parallel_tool_calls,
        output,
        max_output_tokens: parsed.max_output_tokens,
        temperature: parsed.temperature,
        top_p: parsed.top_p,
        choices: 1,
        // `safety_identifier` replaces `user` as the end user's id for abuse monitoring.
        user: parsed.safety_identifier.or(parsed.user),
        reasoning,
        stream: parsed.stream == Some(true),
        include_usage: true,
        extra,
        server_tools,
        source,
        ..Request::default()
    };
    Ok((request, params))
}

fn validate(body: &Body) -> Result<(), GatewayError> {
    if body.model.is_empty() {
        return Err(GatewayError::invalid_request("model", "'model' must be a non-empty string."));
    }
    in_range("temperature", body.temperature, 0.0, 2.0)?;
    in_range("top_p", body.top_p, 0.0, 1.0)?;
    if let Some(n) = body.max_output_tokens.filter(|&n| n < 16) {
        return Err(GatewayError::invalid_request(
            "max_output_tokens",
            format!("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {n} instead."),
        ));
    }
    if let Some(n) = body.top_logprobs.filter(|&n| n > 20) {
        return Err(GatewayError::invalid_request(
            "top_logprobs",
            format!(
                "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got {n} instead."
            ),
        ));
    }
    if let Some(id) = body.safety_identifier.as_deref().filter(|id| id.chars().count() > 64) {
        return Err(GatewayError::invalid_request(
            "safety_identifier",
            format!(
                "Invalid 'safety_identifier': string too long. Expected a string with maximum length 64, but got a \
                 string with length {} instead.",
                id.chars().count()
            ),
        ));
    }
    if let Some(truncation) = body.truncation.as_deref().filter(|t| !matches!(*t, "auto" | "disabled")) {
        return Err(invalid("truncation", format!("'{truncation}'. Supported values are: 'auto' and 'disabled'.")));
    }
    if body.previous_response_id.is_some() && body.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(GatewayError::invalid_request(
            "previous_response_id",
            "'previous_response_id' cannot be used together with 'conversation'.",
        ));
    }
    if let Some(metadata) = &body.metadata {
        if metadata.len() > 16 {
            return Err(GatewayError::invalid_request(
                "metadata",
                format!(
                    "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got \
                     an object with {} properties instead.",
                    metadata.len()
                ),
            ));
        }
        for (key, value) in metadata {
            if key.chars().count() > 64 {
                return Err(GatewayError::invalid_request(
                    "metadata",
                    format!("Invalid 'metadata': the key '{key}' is longer than 64 characters."),
                ));
            }
            let path = format!("metadata.{key}");
            match value {
                Value::String(s) if s.chars().count() > 512 => {
                    return Err(GatewayError::invalid_request(
                        path.clone(),
                        format!(
                            "Invalid '{path}': string too long. Expected a string with maximum length 512, but got a \
                             string with length {} instead.",
                            s.chars().count()
                        ),
                    ))
                }
                Value::String(_) => {}
                other => return Err(wrong_type(&path, "a string", other)),
            }
        }
    }
    Ok(())
}

fn in_range(name: &str, value: Option<f64>, min: f64, max: f64) -> Result<(), GatewayError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => {
            Err(GatewayError::invalid_request(name, format!("'{name}' must be between {min} and {max}; got {v}.")))
        }
        _ => Ok(()),
    }
}

/// `tool_choice`: the modes and a named function map; `allowed_tools` keeps only the functions
/// it allows (with its mode); a built-in tool's type is a server tool (only its vendor can
/// serve the request) and the choice is kept in `extra`.
fn tool_choice(
    choice: &Value,
    tools: &mut Vec<ToolDef>,
    server_tools: &mut Vec<String>,
    extra: &mut Map<String, Value>,
) -> Result<Option<ToolChoice>, GatewayError> {
    let mode = |mode: &str, path: &str| match mode {
        "auto" => Ok(ToolChoice::Auto),
        "none" => Ok(ToolChoice::None),
        "required" => Ok(ToolChoice::Required),
        other => Err(invalid(path, format!("'{other}'. Supported values are: 'none', 'auto' and 'required'."))),
    };
    let obj = match choice {
        Value::String(m) => return mode(m, "tool_choice").map(Some),
        Value::Object(obj) => obj,
        other => return Err(wrong_type("tool_choice", "a string or an object", other)),
    };
    match required_str(obj, "type", "tool_choice")? {
        "function" => {
            let name = required_str(obj, "name", "tool_choice")?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(GatewayError::invalid_request(
                    "tool_choice.name",
                    format!("Invalid value for 'tool_choice.name': '{name}' is not a function in 'tools'."),
                ));
            }
            Ok(Some(ToolChoice::Named(name.to_owned())))
        }
        "allowed_tools" => {
            let choice = match required_str(obj, "mode", "tool_choice")? {
                "none" => {
                    return Err(invalid("tool_choice.mode", "'none'. Supported values are: 'auto' and 'required'."))
                }
                m => mode(m, "tool_choice.mode")?,
            };
            let Some(allowed) = obj.get("tools").and_then(Value::as_array) else {
                return Err(missing("tool_choice.tools"));
            };
            let mut names = HashSet::new();
            for (i, tool) in allowed.iter().enumerate() {
                let path = format!("tool_choice.tools[{i}]");
                let entry = object(tool, &path)?;
                if required_str(entry, "type", &path)? == "function" {
                    names.insert(required_str(entry, "name", &path)?);
                }
            }
            tools.retain(|t| names.contains(t.name.as_str()));
            Ok(Some(choice))
        }
        kind => {
            add_unique(server_tools, kind);
            extra.insert("tool_choice".to_owned(), choice.clone());
            Ok(None)
        }
    }
}

/// `text.format`.
fn format(value: &Value) -> Result<OutputFormat, GatewayError> {
    const PATH: &str = "text.format";
    let obj = match value {
        Value::Null => return Ok(OutputFormat::Text),
        other => object(other, PATH)?,
    };
    match required_str(obj, "type", PATH)? {
        "text" => Ok(OutputFormat::Text),
        "json_object" => Ok(OutputFormat::JsonObject),
        "json_schema" => {
            let name = required_str(obj, "name", PATH)?;
            let schema = match obj.get("schema") {
                None | Some(Value::Null) => return Err(missing("text.format.schema")),
                Some(v @ Value::Object(_)) => v.clone(),
                Some(other) => return Err(wrong_type("text.format.schema", "an object", other)),
            };
            Ok(OutputFormat::JsonSchema {
                name: name.to_owned(),
                description: optional_str(obj, "description", PATH)?.map(str::to_owned),
                schema: Some(schema),
                strict: optional_bool(obj, "strict", PATH)?,
            })
        }
        other => Err(invalid(
            "text.format.type",
            format!("'{other}'. Supported values are: 'text', 'json_object' and 'json_schema'."),
        )),
    }
}

/// Item types that are calls of (or answers to) tools the vendor runs, or state only the
/// vendor keeps: none maps to the canonical request, and only their vendor can serve it.
const VENDOR_ITEMS: &[&str] = &[
    "file_search_call",
    "web_search_call",
    "computer_call",
    "computer_call_output",
    "code_interpreter_call",
    "image_generation_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "custom_tool_call",
    "custom_tool_call_output",
    "tool_search_call",
    "tool_search_output",
    "additional_tools",
    "compaction",
    "compaction_trigger",
    "program",
    "program_output",
];

/// Whether an item type is a vendor's: those listed, and any later `*_call` / `*_output`.
fn is_vendor_item(kind: &str) -> bool {
    VENDOR_ITEMS.contains(&kind) || kind.ends_with("_call") || kind.ends_with("_output") || kind.starts_with("mcp_")
}

/// The id an item reference names: `{"type": "item_reference", "id"}`, or an object with an
/// `id` and neither `type` nor `role` (the reference's `type` is optional).
fn reference<'v>(item: &'v Value, path: &str) -> Result<Option<&'v str>, GatewayError> {
    let Some(obj) = item.as_object() else { return Ok(None) };
    let is_reference = match obj.get("type") {
        Some(Value::String(t)) => t == "item_reference",
        None | Some(Value::Null) => !obj.contains_key("role") && obj.contains_key("id"),
        _ => false,
    };
    if !is_reference {
        return Ok(None);
    }
    required_str(obj, "id", path).map(Some)
}

/// The turns, system parts and vendor tools of a list of items, as they are decoded.
#[derive(Default)]
struct Conversation {
    system: Vec<Part>,
    turns: Vec<Turn>,
    server_tools: Vec<String>,
    /// The function calls so far, by call id: a result gets its call's name.
    call_names: HashMap<String, String>,
}

impl Conversation {
    fn item(&mut self, item: &Value, path: &str) -> Result<(), GatewayError> {
        let obj = object(item, path)?;
        let kind = match obj.get("type") {
            None | Some(Value::Null) if obj.contains_key("role") => "message",
            None | Some(Value::Null) => return Err(missing(&format!("{path}.type"))),
            Some(Value::String(kind)) => kind.as_str(),
            Some(other) => return Err(wrong_type(&format!("{path}.type"), "a string", other)),
        };
        match kind {
            "message" => {
                let role = required_str(obj, "role", path)?;
                let assistant = match role {
                    "user" | "system" | "developer" => false,
                    "assistant" => true,
                    other => {
                        return Err(invalid(
                            &format!("{path}.role"),
                            format!("'{other}'. Supported values are: 'user', 'assistant', 'system', and 'developer'."),
                        ))
                    }
                };
                let parts = content(obj.get("content"), &format!("{path}.content"))?;
                match role {
                    "system" | "developer" => self.system.extend(parts),
                    _ if assistant => push(&mut self.turns, Role::Assistant, parts),
                    _ => push(&mut self.turns, Role::User, parts),
                }
            }
            "function_call" => {
                let (call_id, signature) = crate::canonical::signature::unfold(required_str(obj, "call_id", path)?);
                let name = required_str(obj, "name", path)?;
                let arguments = required_str(obj, "arguments", path)?;
                self.call_names.insert(call_id.to_owned(), name.to_owned());
                let call = Part::ToolCall {
                    id: call_id.to_owned(),
                    name: name.to_owned(),
                    arguments: arguments.to_owned(),
                    signature,
                    cache: None,
                };
                push(&mut self.turns, Role::Assistant, vec![call]);
            }
            "function_call_output" => {
                let call_id = crate::canonical::signature::call_id(required_str(obj, "call_id", path)?);
                let output_path = format!("{path}.output");
                let content = match obj.get("output") {
                    None | Some(Value::Null) => return Err(missing(&output_path)),
                    Some(Value::String(s)) if s.is_empty() => vec![],
                    Some(Value::String(s)) => vec![Part::text(s.as_str())],
                    Some(Value::Array(parts)) => parts_of(parts, &output_path)?,
                    Some(other) => return Err(wrong_type(&output_path, "a string or an array of input parts", other)),
                };
                let result = Part::ToolResult {
                    id: call_id.to_owned(),
                    name: self.call_names.get(call_id).cloned(),
                    content,
                    is_error: false,
                    cache: None,
                };
                push(&mut self.turns, Role::User, vec![result]);
            }
            "reasoning" => {
                // The thinking is the reasoning text where the item has it, else its summary.
                let content = texts(obj, "content", path)?;
                let text =
                    if content.is_empty() { texts(obj, "summary", path)?.join("\n\n") } else { content.concat() };
                let encrypted = optional_str(obj, "encrypted_content", path)?.filter(|e| !e.is_empty());
                let part = match (text.is_empty(), encrypted) {
                    (false, signature) => Part::Thinking { text, signature: signature.map(str::to_owned) },
                    (true, Some(data)) => Part::RedactedThinking { data: data.to_owned() },
                    (true, None) => return Ok(()),
                };
                push(&mut self.turns, Role::Assistant, vec![part]);
            }
            "item_reference" => {
                return Err(GatewayError::invalid_request(
                    path,
                    format!("{path} is an item reference, which stored items cannot hold."),
                ))
            }
            kind if is_vendor_item(kind) => add_unique(&mut self.server_tools, kind),
            other => {
                return Err(invalid(
                    &format!("{path}.type"),
                    format!("'{other}' is not an input item type of the Responses API."),
                ))
            }
        }
        Ok(())
    }
}

/// A message's content: a string, or a list of content parts.
fn content(content: Option<&Value>, path: &str) -> Result<Vec<Part>, GatewayError> {
    match content {
        None | Some(Value::Null) => Err(missing(path)),
        Some(Value::String(s)) if s.is_empty() => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![Part::text(s.as_str())]),
        Some(Value::Array(parts)) => parts_of(parts, path),
        Some(other) => Err(wrong_type(path, "a string or an array of content parts", other)),
    }
}

fn parts_of(parts: &[Value], path: &str) -> Result<Vec<Part>, GatewayError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        if let Some(part) = content_part(part, &format!("{path}[{j}]"))? {
            out.push(part);
        }
    }
    Ok(out)
}

/// One content part; `None` for an empty text.
fn content_part(part: &Value, path: &str) -> Result<Option<Part>, GatewayError> {
    let obj = object(part, path)?;
    match required_str(obj, "type", path)? {
        "input_text" | "output_text" => {
            let text = required_str(obj, "text", path)?;
            Ok((!text.is_empty()).then(|| Part::text(text)))
        }
        "refusal" => {
            let refusal = required_str(obj, "refusal", path)?;
            Ok((!refusal.is_empty()).then(|| Part::text(refusal)))
        }
        "input_image" => {
            let media = match (optional_str(obj, "image_url", path)?, optional_str(obj, "file_id", path)?) {
                (Some(url), _) => media_of_url(url),
                (None, Some(id)) => Media::FileId(id.to_owned()),
                (None, None) => {
                    return Err(GatewayError::invalid_request(
                        format!("{path}.image_url"),
                        format!("Missing required parameter: '{path}.image_url' (an input_image needs 'image_url' or 'file_id')."),
                    ))
                }
            };
            let detail = optional_str(obj, "detail", path)?.map(str::to_owned);
            Ok(Some(Part::Image { media, detail, cache: None }))
        }
        "input_file" => {
            let filename = optional_str(obj, "filename", path)?;
            let media = match (
                optional_str(obj, "file_data", path)?,
                optional_str(obj, "file_url", path)?,
                optional_str(obj, "file_id", path)?,
            ) {
                (Some(data), _, _) => match crate::providers::parse_data_url(data) {
                    Some((media_type, data)) => {
                        Media::Base64 { media_type: media_type.to_owned(), data: data.to_owned() }
                    }
                    // Bare base64: the file's type by its name.
                    None => Media::Base64 { media_type: media_type_of(filename).to_owned(), data: data.to_owned() },
                },
                (None, Some(url), _) => Media::Url(url.to_owned()),
                (None, None, Some(id)) => Media::FileId(id.to_owned()),
                (None, None, None) => {
                    return Err(GatewayError::invalid_request(
                        format!("{path}.file_data"),
                        format!(
                        "Missing required parameter: '{path}.file_data' (an input_file needs 'file_data', 'file_url' \
                             or 'file_id')."
                    ),
                    ))
                }
            };
            Ok(Some(Part::Document { media, title: filename.map(str::to_owned), cache: None }))
        }
        other => Err(invalid(
            &format!("{path}.type"),
            format!(
                "'{other}'. Supported values are: 'input_text', 'input_image', 'input_file', 'output_text' and \
                 'refusal'."
            ),
        )),
    }
}

fn media_of_url(url: &str) -> Media {
    match crate::providers::parse_data_url(url) {
        Some((media_type, data)) => Media::Base64 { media_type: media_type.to_owned(), data: data.to_owned() },
        None => Media::Url(url.to_owned()),
    }
}

fn media_type_of(filename: Option<&str>) -> &'static str {
    let extension = filename.and_then(|f| f.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("md") => "text/markdown",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("html") | Some("htm") => "text/html",
        _ => "application/octet-stream",
    }
}

/// The texts of a reasoning item's `summary` or `content` parts.
fn texts<'v>(obj: &'v Map<String, Value>, key: &str, path: &str) -> Result<Vec<&'v str>, GatewayError> {
    let path = format!("{path}.{key}");
    match obj.get(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| {
                let part_path = format!("{path}[{j}]");
                required_str(object(part, &part_path)?, "text", &part_path)
            })
            .collect(),
        Some(other) => Err(wrong_type(&path, "an array", other)),
    }
}

/// Appends a turn, merged into the previous one when it has the same role (an assistant's
/// reasoning, text and calls are one turn; several results in a row are one user turn).
fn push(turns: &mut Vec<Turn>, role: Role, parts: Vec<Part>) {
    if parts.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.parts.extend(parts),
        _ => turns.push(Turn { role, parts }),
    }
}

fn add_unique(list: &mut Vec<String>, kind: &str) {
    if !list.iter().any(|k| k == kind) {
        list.push(kind.to_owned());
    }
}

fn id_prefix(kind: &str) -> &'static str {
    match kind {
        "message" => "msg",
        "function_call" => "fc",
        "function_call_output" => "fco",
        "reasoning" => "rs",
        _ => "item",
    }
}

/// An input item as `input_items` lists it (`ItemResource`): with its `type` and an `id`
/// (`id` makes one when it has none), string contents as parts, a status where the item type
/// has one, an image's `detail` and an output text's `annotations` and `logprobs`.
fn normalize(item: &Value, id: impl FnOnce(&'static str) -> String) -> Value {
    let mut obj = item.as_object().cloned().unwrap_or_default();
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("message").to_owned();
    if !matches!(obj.get("id"), Some(Value::String(s)) if !s.is_empty()) {
        obj.insert("id".to_owned(), Value::String(id(id_prefix(&kind))));
    }
    match kind.as_str() {
        "message" => {
            let assistant = obj.get("role").and_then(Value::as_str) == Some("assistant");
            let parts = match obj.remove("content") {
                Some(Value::String(text)) if assistant => vec![output_text_part(&text)],
                Some(Value::String(text)) => vec![json!({"type": "input_text", "text": text})],
                Some(Value::Array(parts)) => parts,
                _ => vec![],
            };
            let parts = parts
                .into_iter()
                .map(|mut part| {
                    if let Value::Object(p) = &mut part {
                        match p.get("type").and_then(Value::as_str) {
                            Some("input_image") if p.get("detail").is_none_or(Value::is_null) => {
                                p.insert("detail".to_owned(), json!("auto"));
                            }
                            Some("output_text") => {
                                p.entry("annotations").or_insert_with(|| json!([]));
                                p.entry("logprobs").or_insert_with(|| json!([]));
                            }
                            _ => {}
                        }
                    }
                    part
                })
                .collect();
            obj.insert("content".to_owned(), Value::Array(parts));
            obj.entry("status").or_insert_with(|| json!("completed"));
        }
        "function_call" | "function_call_output" => {
            obj.entry("status").or_insert_with(|| json!("completed"));
        }
        "reasoning" => {
            obj.entry("summary").or_insert_with(|| json!([]));
        }
        _ => {}
    }
    obj.insert("type".to_owned(), Value::String(kind));
    Value::Object(obj)
}

// ---- Field access, with errors naming the parameter ----

fn object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, GatewayError> {
    value.as_object().ok_or_else(|| wrong_type(path, "an object", value))
}

fn required_str<'v>(obj: &'v Map<String, Value>, key: &str, path: &str) -> Result<&'v str, GatewayError> {
    let path = if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match obj.get(key) {
        None | Some(Value::Null) => Err(missing(&path)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(wrong_type(&path, "a string", other)),
    }
}

fn optional_str<'v>(obj: &'v Map<String, Value>, key: &str, path: &str) -> Result<Option<&'v str>, GatewayError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(&format!("{path}.{key}"), "a string", other)),
    }
}

fn optional_bool(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, GatewayError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(&format!("{path}.{key}"), "a boolean", other)),
    }
}

fn missing(path: &str) -> GatewayError {
    GatewayError::invalid_request(path, format!("Missing required parameter: '{path}'."))
}

fn invalid(path: &str, why: impl std::fmt::Display) -> GatewayError {
    GatewayError::invalid_request(path, format!("Invalid value for '{path}': {why}"))
}

fn wrong_type(path: &str, expected: &str, got: &Value) -> GatewayError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    GatewayError::invalid_request(
        path,
        format!("Invalid type for '{path}': expected {expected}, but got {got} instead."),
    )
}

// ---- The answer ----

/// A canonical answer as a `Response` object: `completed`, or `incomplete` with its reason
/// when the output was cut (`max_output_tokens`) or filtered (`content_filter`); the output
/// items of choice 0 (the only one this API has); the request's parameters repeated.
pub fn encode_answer(answer: &Answer, request: &Request, params: &Params, id: &str, created_at: u64) -> Value {
    let output = answer.outputs.iter().find(|o| o.index == 0).or(answer.outputs.first());
    let (blocks, finish) = match output {
        Some(output) => (&output.blocks[..], output.finish.clone()),
        None => (&[][..], Finish::Stop),
    };
    let model = if answer.model.is_empty() { &request.model } else { &answer.model };
    final_response(params, id, created_at, model, blocks, &finish, answer.usage.as_ref())
}

fn final_response(
    params: &Params,
    id: &str,
    created_at: u64,
    model: &str,
    blocks: &[Block],
    finish: &Finish,
    usage: Option<&Usage>,
) -> Value {
    let incomplete = incomplete_reason(finish);
    let status = if incomplete.is_some() { "incomplete" } else { "completed" };
    let output = items_of(blocks, incomplete.is_some(), id);
    let details = incomplete.map(|reason| json!({"reason": reason}));
    response_object(params, id, created_at, model, status, details, None, output, usage)
}

fn incomplete_reason(finish: &Finish) -> Option<&'static str> {
    match finish {
        Finish::Length => Some("max_output_tokens"),
        Finish::ContentFilter => Some("content_filter"),
        Finish::Stop | Finish::StopSequence(_) | Finish::ToolCalls => None,
    }
}

/// The output items of an output's blocks: each run of text and refusal blocks one message
/// (a run of texts one `output_text` part), each thinking block one reasoning item (its text
/// the summary, its signature the `encrypted_content`), each redacted thinking a reasoning
/// item with only `encrypted_content`, each tool call a function call. Empty blocks make
/// nothing. When the answer was cut, a message that ends it is `incomplete`.
fn items_of(blocks: &[Block], cut: bool, response_id: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut message: Vec<Value> = Vec::new();
    let mut call_ids = HashSet::new();
    let flush = |items: &mut Vec<Value>, message: &mut Vec<Value>, status: &str| {
        if !message.is_empty() {
            let id = item_id("msg", response_id, items.len());
            items.push(message_item(&id, status, std::mem::take(message)));
        }
    };
    for block in blocks {
        match block {
            Block::Text(text) | Block::Refusal(text) if text.is_empty() => {}
            Block::Text(text) => match message.last_mut() {
                Some(Value::Object(part)) if part["type"] == "output_text" => {
                    if let Some(Value::String(joined)) = part.get_mut("text") {
                        joined.push_str(text);
                    }
                }
                _ => message.push(output_text_part(text)),
            },
            Block::Refusal(refusal) => match message.last_mut() {
                Some(Value::Object(part)) if part["type"] == "refusal" => {
                    if let Some(Value::String(joined)) = part.get_mut("refusal") {
                        joined.push_str(refusal);
                    }
                }
                _ => message.push(json!({"type": "refusal", "refusal": refusal})),
            },
            Block::Thinking { text, signature } => {
                let signature = signature.as_deref().filter(|s| !s.is_empty());
                if text.is_empty() && signature.is_none() {
                    continue;
                }
                flush(&mut items, &mut message, "completed");
                let id = item_id("rs", response_id, items.len());
                items.push(reasoning_item(&id, text, signature, "completed"));
            }
            Block::RedactedThinking(data) if data.is_empty() => {}
            Block::RedactedThinking(data) => {
                flush(&mut items, &mut message, "completed");
                let id = item_id("rs", response_id, items.len());
                items.push(reasoning_item(&id, "", Some(data), "completed"));
            }
            Block::ToolCall { id, name, arguments, signature } => {
                flush(&mut items, &mut message, "completed");
                let index = items.len();
                let call_id = unique_call_id(id, &mut call_ids, response_id, index);
                let call_id = crate::canonical::signature::fold(&call_id, signature.as_deref());
                items.push(function_call_item(
                    &item_id("fc", response_id, index),
                    &call_id,
                    name,
                    arguments,
                    "completed",
                ));
            }
        }
    }
    flush(&mut items, &mut message, if cut { "incomplete" } else { "completed" });
    items
}

/// A function call's `call_id`: the vendor's, unless it is empty or an earlier call's in the
/// same output (the SDKs tell calls apart by it), then one made from the response's id.
fn unique_call_id(id: &str, seen: &mut HashSet<String>, response_id: &str, index: usize) -> String {
    let call_id = if id.is_empty() || seen.contains(id) {
        new_id("call", format!("{response_id}/call/{index}").as_bytes())
    } else {
        id.to_owned()
    };
    seen.insert(call_id.clone());
    call_id
}

/// An output item's id: from the response's id and the item's index, so that an answer and
/// its stream give the same.
fn item_id(prefix: &str, response_id: &str, index: usize) -> String {
    new_id(prefix, format!("{response_id}/{prefix}/{index}").as_bytes())
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

fn reasoning_item(id: &str, text: &str, encrypted: Option<&str>, status: &str) -> Value {
    let summary = if text.is_empty() { json!([]) } else { json!([{"type": "summary_text", "text": text}]) };
    let mut item = json!({"type": "reasoning", "id": id, "summary": summary, "status": status});
    if let Some(encrypted) = encrypted {
        item["encrypted_content"] = json!(encrypted);
    }
    item
}

fn function_call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}

fn usage_object(usage: &Usage) -> Value {
    let cached = usage.prompt_tokens_details.map(|d| d.cached_tokens).unwrap_or(0);
    let written = usage.prompt_tokens_details.and_then(|d| d.cache_creation_tokens).unwrap_or(0);
    let reasoning = usage.completion_tokens_details.map(|d| d.reasoning_tokens).unwrap_or(0);
    let total = match usage.total_tokens {
        0 => usage.prompt_tokens.saturating_add(usage.completion_tokens),
        total => total,
    };
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total,
    })
}

/// A `Response` object: every member the schema requires, the request's parameters repeated.
/// `completed_at` is null: the core has no clock (the worker may set it before storing).
#[allow(clippy::too_many_arguments)]
fn response_object(
    params: &Params,
    id: &str,
    created_at: u64,
    model: &str,
    status: &str,
    incomplete_details: Option<Value>,
    error: Option<Value>,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    let mut response = json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": params.background,
        "completed_at": null,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": params.instructions,
        "max_output_tokens": params.max_output_tokens,
        "max_tool_calls": params.max_tool_calls,
        "model": model,
        "output": output,
        "parallel_tool_calls": params.parallel_tool_calls,
        "previous_response_id": params.previous_response_id,
        "prompt_cache_key": params.prompt_cache_key,
        "reasoning": params.reasoning,
        "safety_identifier": params.safety_identifier,
        "service_tier": params.service_tier,
        "store": params.store,
        "temperature": params.temperature,
        "text": params.text,
        "tool_choice": params.tool_choice,
        "tools": params.tools,
        "top_logprobs": params.top_logprobs,
        "top_p": params.top_p,
        "truncation": params.truncation,
        "metadata": params.metadata,
    });
    if let Some(usage) = usage {
        response["usage"] = usage_object(usage);
    }
    // `user` is a string, never null, in the schema.
    if let Some(user) = &params.user {
        response["user"] = json!(user);
    }
    response
}

// ---- The stream ----

/// Canonical stream events as the Responses event stream: SSE events `event: <type>` with
/// `data: <json>`, every event with its `type` and a `sequence_number` counting from 0, and no
/// `[DONE]` (the API sends none).
///
/// The sequence: `response.created` and `response.in_progress` (the response `in_progress`,
/// output empty) before anything else; for each output item, `response.output_item.added`,
/// its own events, `response.output_item.done` with the whole item; then
/// `response.completed` (or `response.incomplete`) with the same `Response` object
/// [`encode_answer`] gives for the same blocks; or, when the stream breaks, `response.failed`
/// (status `failed`, `error` with its code and message) and then an `error` event, which makes
/// both SDKs raise an `APIError`. Items never overlap: one is done before the next is added.
///
/// Whatever the events, the grammar holds. Only choice 0 is written (the API has one); events
/// of other choices are ignored. An item is added when it has something: a message at its
/// first non-empty text, a reasoning item at its first thinking text or signature, a function
/// call and a redacted thinking at their block's start. Text deltas join the open message
/// whatever their block (consecutive text blocks are one message); a thinking delta of
/// another block than the open reasoning item's starts a new item; a delta of another kind
/// than the open item's closes it and opens one of its own kind, except tool arguments, which
/// are dropped unless their call is open (a call needs its name). A message stays open until
/// another item starts or the output ends; a call or reasoning item closes at its block's
/// stop. After choice 0's finish its blocks are ignored. `complete` before any event writes a
/// complete response without output; a second `complete` or `fail`, or an event after either,
/// writes nothing.
pub struct Stream {
    id: String,
    created_at: u64,
    params: Params,
    /// The request's model until the vendor's start names its own.
    model: String,
    seq: u64,
    phase: Phase,
    /// The output items done, in order.
    items: Vec<Value>,
    /// The blocks of those items, as the final object is made of them.
    blocks: Vec<Block>,
    current: Option<Current>,
    finish: Option<Finish>,
    usage: Option<Usage>,
    call_ids: HashSet<String>,
    response: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing written yet.
    Waiting,
    Open,
    Done,
}

/// The output item being written.
enum Current {
    Message { id: String, index: usize, text: String },
    Reasoning { id: String, index: usize, block: u32, text: String, signature: String },
    Redacted { id: String, index: usize, block: u32, data: String },
    Call { id: String, index: usize, block: u32, call_id: String, name: String, arguments: String },
}

impl Stream {
    pub fn new(request: &Request, params: &Params, id: String, created_at: u64) -> Self {
        Self {
            id,
            created_at,
            params: params.echo(),
            model: request.model.clone(),
            seq: 0,
            phase: Phase::Waiting,
            items: Vec::new(),
            blocks: Vec::new(),
            current: None,
            finish: None,
            usage: None,
            call_ids: HashSet::new(),
            response: None,
        }
    }

    /// The final `Response` once the stream has ended: completed or incomplete (as
    /// [`encode_answer`] gives it), or failed.
    pub fn response(&self) -> Option<&Value> {
        self.response.as_ref()
    }

    /// Writes one event: `fields` are the event's members beyond `type` and `sequence_number`.
    fn write(&mut self, out: &mut Vec<u8>, kind: &str, fields: Value) {
        write_event(out, &mut self.seq, kind, fields);
    }

    /// A delta event, written without building a JSON value (the stream's most frequent).
    #[allow(clippy::too_many_arguments)]
    fn write_delta(
        seq: &mut u64,
        out: &mut Vec<u8>,
        kind: &str,
        item_id: &str,
        output_index: usize,
        part_index: Option<(&str, usize)>,
        delta: &str,
        logprobs: bool,
    ) {
        let _ = write!(Bytes(out), "event: {kind}\ndata: {{\"type\":\"{kind}\",\"sequence_number\":{seq},\"item_id\":");
        let _ = serde_json::to_writer(&mut *out, item_id);
        let _ = write!(Bytes(out), ",\"output_index\":{output_index}");
        if let Some((name, index)) = part_index {
            let _ = write!(Bytes(out), ",\"{name}\":{index}");
        }
        out.extend_from_slice(b",\"delta\":");
        let _ = serde_json::to_writer(&mut *out, delta);
        if logprobs {
            out.extend_from_slice(b",\"logprobs\":[]");
        }
        out.extend_from_slice(b"}\n\n");
        *seq += 1;
    }

    /// `response.created` and `response.in_progress`, once, before anything else.
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.phase != Phase::Waiting {
            return;
        }
        self.phase = Phase::Open;
        let response = response_object(
            &self.params,
            &self.id,
            self.created_at,
            &self.model,
            "in_progress",
            None,
            None,
            vec![],
            None,
        );
        self.write(out, "response.created", json!({"response": response}));
        self.write(out, "response.in_progress", json!({"response": response}));
    }

    /// Ends the open item: its closing events and `response.output_item.done`. A message
    /// closes with `message_status`, any other item with `other_status`.
    fn close(&mut self, out: &mut Vec<u8>, message_status: &str, other_status: &str) {
        let Some(current) = self.current.take() else { return };
        let (index, item, block) = match current {
            Current::Message { id, index, text } => {
                let fields =
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []});
                self.write(out, "response.output_text.done", fields);
                let part = output_text_part(&text);
                let fields = json!({"item_id": id, "output_index": index, "content_index": 0, "part": part});
                self.write(out, "response.content_part.done", fields);
                (index, message_item(&id, message_status, vec![part]), Block::Text(text))
            }
            Current::Reasoning { id, index, text, signature, .. } => {
                if !text.is_empty() {
                    let fields = json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text});
                    self.write(out, "response.reasoning_summary_text.done", fields);
                    let part = json!({"type": "summary_text", "text": text});
                    let fields = json!({"item_id": id, "output_index": index, "summary_index": 0, "part": part});
                    self.write(out, "response.reasoning_summary_part.done", fields);
                }
                let signature = (!signature.is_empty()).then_some(signature);
                let item = reasoning_item(&id, &text, signature.as_deref(), other_status);
                (index, item, Block::Thinking { text, signature })
            }
            Current::Redacted { id, index, data, .. } => {
                (index, reasoning_item(&id, "", Some(&data), other_status), Block::RedactedThinking(data))
            }
            Current::Call { id, index, call_id, name, arguments, .. } => {
                let fields = json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments});
                self.write(out, "response.function_call_arguments.done", fields);
                let item = function_call_item(&id, &call_id, &name, &arguments, other_status);
                let (call_id, signature) = crate::canonical::signature::unfold(&call_id);
                (index, item, Block::ToolCall { id: call_id.to_owned(), name, arguments, signature })
            }
        };
        self.write(out, "response.output_item.done", json!({"output_index": index, "item": item}));
        self.items.push(item);
        self.blocks.push(block);
    }

    /// Adds `item` as the next output item (the open one closed before).
    fn add(&mut self, out: &mut Vec<u8>, item: Value) {
        let index = self.items.len();
        self.write(out, "response.output_item.added", json!({"output_index": index, "item": item}));
    }

    fn text(&mut self, out: &mut Vec<u8>, text: &str) {
        if text.is_empty() {
            return;
        }
        if !matches!(self.current, Some(Current::Message { .. })) {
            self.close(out, "completed", "completed");
            let index = self.items.len();
            let id = item_id("msg", &self.id, index);
            self.add(out, message_item(&id, "in_progress", vec![]));
            let fields =
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text_part("")});
            self.write(out, "response.content_part.added", fields);
            self.current = Some(Current::Message { id, index, text: String::new() });
        }
        if let Some(Current::Message { id, index, text: joined }) = &mut self.current {
            joined.push_str(text);
            let part = Some(("content_index", 0));
            Self::write_delta(&mut self.seq, out, "response.output_text.delta", id, *index, part, text, true);
        }
    }

    /// The open reasoning item of `block`, opened (with nothing in it yet) if it is not.
    fn reasoning(&mut self, out: &mut Vec<u8>, block: u32) {
        if matches!(self.current, Some(Current::Reasoning { block: b, .. }) if b == block) {
            return;
        }
        self.close(out, "completed", "completed");
        let index = self.items.len();
        let id = item_id("rs", &self.id, index);
        self.add(out, json!({"type": "reasoning", "id": id, "summary": [], "status": "in_progress"}));
        self.current = Some(Current::Reasoning { id, index, block, text: String::new(), signature: String::new() });
    }

    fn thinking(&mut self, out: &mut Vec<u8>, block: u32, delta: &str) {
        if delta.is_empty() {
            return;
        }
        self.reasoning(out, block);
        let Some(Current::Reasoning { id, index, text, .. }) = &mut self.current else { return };
        let (id, index, first) = (id.clone(), *index, text.is_empty());
        text.push_str(delta);
        if first {
            let part = json!({"type": "summary_text", "text": ""});
            let fields = json!({"item_id": id, "output_index": index, "summary_index": 0, "part": part});
            self.write(out, "response.reasoning_summary_part.added", fields);
        }
        let part = Some(("summary_index", 0));
        Self::write_delta(&mut self.seq, out, "response.reasoning_summary_text.delta", &id, index, part, delta, false);
    }

    fn signature(&mut self, out: &mut Vec<u8>, block: u32, delta: &str) {
        if delta.is_empty() {
            return;
        }
        self.reasoning(out, block);
        if let Some(Current::Reasoning { signature, .. }) = &mut self.current {
            signature.push_str(delta);
        }
    }

    fn arguments(&mut self, out: &mut Vec<u8>, block: u32, delta: &str) {
        let Some(Current::Call { id, index, block: b, arguments, .. }) = &mut self.current else { return };
        if *b != block || delta.is_empty() {
            return;
        }
        arguments.push_str(delta);
        Self::write_delta(&mut self.seq, out, "response.function_call_arguments.delta", id, *index, None, delta, false);
    }

    fn block_start(&mut self, out: &mut Vec<u8>, block: u32, kind: BlockKind<'_>) {
        match kind {
            // Opened at their first content.
            BlockKind::Text | BlockKind::Thinking => {}
            BlockKind::RedactedThinking { data } => {
                if data.is_empty() {
                    return;
                }
                self.close(out, "completed", "completed");
                let index = self.items.len();
                let id = item_id("rs", &self.id, index);
                self.add(out, reasoning_item(&id, "", Some(data), "in_progress"));
                self.current = Some(Current::Redacted { id, index, block, data: data.to_owned() });
            }
            BlockKind::ToolCall { id: vendor_id, name, signature } => {
                self.close(out, "completed", "completed");
                let index = self.items.len();
                let call_id = unique_call_id(vendor_id, &mut self.call_ids, &self.id, index);
                let call_id = crate::canonical::signature::fold(&call_id, signature);
                let id = item_id("fc", &self.id, index);
                self.add(out, function_call_item(&id, &call_id, name, "", "in_progress"));
                self.current =
                    Some(Current::Call { id, index, block, call_id, name: name.to_owned(), arguments: String::new() });
            }
        }
    }

    fn block_stop(&mut self, out: &mut Vec<u8>, block: u32) {
        let stops = match &self.current {
            Some(
                Current::Reasoning { block: b, .. }
                | Current::Redacted { block: b, .. }
                | Current::Call { block: b, .. },
            ) => *b == block,
            _ => false,
        };
        if stops {
            self.close(out, "completed", "completed");
        }
    }

    /// The status a message ending the output closes with.
    fn final_message_status(&self) -> &'static str {
        match self.finish.as_ref().and_then(incomplete_reason) {
            Some(_) => "incomplete",
            None => "completed",
        }
    }
}

impl Egress for Stream {
    fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>) {
        if self.phase == Phase::Done {
            return;
        }
        let choice = match &event {
            Event::Start { model, .. } => {
                if self.phase == Phase::Waiting && !model.is_empty() {
                    self.model = (*model).to_owned();
                }
                None
            }
            Event::Usage(usage) => {
                self.usage = Some(*usage);
                return;
            }
            Event::BlockStart { choice, .. }
            | Event::Delta { choice, .. }
            | Event::BlockStop { choice, .. }
            | Event::Finish { choice, .. } => Some(*choice),
        };
        if choice.is_some_and(|c| c != 0) {
            return;
        }
        self.start(out);
        if self.finish.is_some() {
            return;
        }
        match event {
            Event::Start { .. } | Event::Usage(_) => {}
            Event::BlockStart { block, kind, .. } => self.block_start(out, block, kind),
            Event::Delta { block, delta, .. } => match delta {
                Delta::Text(text) => self.text(out, text),
                Delta::Thinking(text) => self.thinking(out, block, text),
                Delta::Signature(signature) => self.signature(out, block, signature),
                Delta::ToolArguments(json) => self.arguments(out, block, json),
            },
            Event::BlockStop { block, .. } => self.block_stop(out, block),
            Event::Finish { finish, .. } => {
                self.finish = Some(finish);
                let status = self.final_message_status();
                self.close(out, status, "completed");
            }
        }
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        if self.phase == Phase::Done {
            return;
        }
        self.start(out);
        let status = self.final_message_status();
        self.close(out, status, "completed");
        let finish = self.finish.clone().unwrap_or_default();
        let response = final_response(
            &self.params,
            &self.id,
            self.created_at,
            &self.model,
            &self.blocks,
            &finish,
            self.usage.as_ref(),
        );
        let kind = if response["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
        self.write(out, kind, json!({"response": response}));
        self.response = Some(response);
        self.phase = Phase::Done;
    }

    fn fail(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
        if self.phase == Phase::Done {
            return;
        }
        self.start(out);
        self.close(out, "incomplete", "incomplete");
        // `Response.error.code` is one of the API's codes; the gateway's own goes in the
        // `error` event.
        let code = if error.status == 429 { "rate_limit_exceeded" } else { "server_error" };
        let response = response_object(
            &self.params,
            &self.id,
            self.created_at,
            &self.model,
            "failed",
            None,
            Some(json!({"code": code, "message": error.message})),
            self.items.clone(),
            self.usage.as_ref(),
        );
        failure_events(response.clone(), error, &mut self.seq, out);
        self.response = Some(response);
        self.phase = Phase::Done;
    }
}

/// One event of a Responses stream, `type` and `sequence_number` (then counted up) first.
pub fn write_event(out: &mut Vec<u8>, seq: &mut u64, kind: &str, fields: Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":");
    let _ = serde_json::to_writer(&mut *out, kind);
    let _ = write!(Bytes(out), ",\"sequence_number\":{seq}");
    if let Value::Object(fields) = fields {
        for (key, value) in &fields {
            out.push(b',');
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            let _ = serde_json::to_writer(&mut *out, value);
        }
    }
    out.extend_from_slice(b"}\n\n");
    *seq += 1;
}

/// How a Responses stream ends that broke off: `response.failed` with the failed `response`,
/// then an `error` event, with the schema's members at the top and the same under `error`,
/// which is what the SDKs raise an `APIError` on (and what OpenAI itself sends).
pub fn failure_events(response: Value, error: &GatewayError, seq: &mut u64, out: &mut Vec<u8>) {
    write_event(out, seq, "response.failed", json!({"response": response}));
    let code = error.code.as_deref().unwrap_or(error.kind);
    let fields = json!({
        "code": code,
        "message": error.message,
        "param": error.param,
        "error": {"type": error.kind, "code": code, "message": error.message, "param": error.param},
    });
    write_event(out, seq, "error", fields);
}

/// `write!` into a byte buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::Output;
    use crate::chat::{CompletionTokensDetails, PromptTokensDetails};
    use proptest::prelude::*;
    use std::path::Path;

    /// A request fixture: the bytes an SDK sent.
    macro_rules! request {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/ingress/responses/requests/",
                $name,
                ".json"
            ))
        };
    }

    const FIXTURES: &str = "tests/fixtures/ingress/responses";
    const ID: &str = "resp_0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778";
    const CREATED: u64 = 1_750_000_000;

    /// Compares `actual` with the expected file; `BLESS=1` writes it when it is missing.
    fn golden(name: &str, actual: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURES).join(name);
        match std::fs::read_to_string(&path) {
            Ok(expected) => assert!(actual == expected, "{name} differs from its fixture:\n{actual}"),
            Err(_) if std::env::var_os("BLESS").is_some() => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, actual).unwrap();
            }
            Err(e) => panic!("{}: {e} (BLESS=1 writes it)", path.display()),
        }
    }

    fn golden_json(name: &str, value: &Value) {
        golden(name, &(serde_json::to_string_pretty(value).unwrap() + "\n"));
    }

    fn decoded(body: &str) -> (Request, Params) {
        decode(body.as_bytes().to_vec(), &[]).unwrap()
    }

    fn texts_of(parts: &[Part]) -> Vec<&str> {
        parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    // ---- Requests as the SDKs send them ----

    #[test]
    fn a_string_input_is_one_user_message() {
        let body = request!("string-input");
        let (r, p) = decoded(body);
        assert_eq!(r.model, "gpt-4.1");
        assert_eq!(r.turns.len(), 1);
        assert_eq!(r.turns[0].role, Role::User);
        assert_eq!(texts_of(&r.turns[0].parts), ["Tell me a three sentence bedtime story about a unicorn."]);
        assert!(r.system.is_empty() && r.tools.is_empty() && r.extra.is_empty() && r.server_tools.is_empty());
        assert!(!r.stream && r.include_usage);
        assert_eq!(r.choices, 1);
        assert_eq!(r.source.dialect, Dialect::OpenaiResponses);
        assert_eq!(r.source.bytes, body.as_bytes());
        assert_eq!(
            String::from_utf8(r.source.with_model("vendor")).unwrap(),
            body.replace("\"gpt-4.1\"", "\"vendor\"")
        );
        assert!(p.store && p.previous_response_id.is_none() && p.metadata.is_empty());
        assert_eq!(p.tool_choice, "auto");
        assert_eq!(p.text, json!({"format": {"type": "text"}}));
        assert_eq!(p.input_items.len(), 1);
        let item = &p.input_items[0];
        assert!(item["id"].as_str().unwrap().starts_with("msg_") && item["id"].as_str().unwrap().len() == 52);
        assert_eq!(item["role"], "user");
        assert_eq!(item["status"], "completed");
        assert_eq!(
            item["content"],
            json!([{"type": "input_text", "text": "Tell me a three sentence bedtime story about a unicorn."}])
        );
        golden_json("input-items/string-input.json", &Value::Array(p.input_items));
    }

    #[test]
    fn instructions_lead_the_system_prompt_and_the_gateways_parameters_are_params() {
        let (r, p) = decoded(request!("instructions"));
        assert_eq!(texts_of(&r.system), ["You are a coding assistant that talks like a pirate."]);
        assert_eq!(texts_of(&r.turns[0].parts), ["Are semicolons optional in JavaScript?"]);
        assert_eq!((r.temperature, r.max_output_tokens), (Some(0.2), Some(256)));
        assert_eq!(r.user.as_deref(), Some("user-7f3a"));
        let mut extra: Vec<&str> = r.extra.keys().map(String::as_str).collect();
        extra.sort();
        assert_eq!(extra, ["prompt_cache_key", "service_tier", "truncation"]);
        assert!(!p.store);
        assert_eq!(p.instructions.as_deref(), Some("You are a coding assistant that talks like a pirate."));
        assert_eq!(p.metadata["session"], "abc-123");
        assert_eq!((p.truncation.as_str(), p.service_tier.as_str()), (Some("auto"), Some("flex")));
        assert_eq!(p.safety_identifier.as_deref(), Some("user-7f3a"));
        assert_eq!(p.prompt_cache_key.as_deref(), Some("pirate-coding"));
        assert_eq!((p.temperature, p.max_output_tokens), (0.2, Some(256)));
    }

    #[test]
    fn images_are_urls_data_or_files_and_developer_messages_are_system() {
        let (r, p) = decoded(request!("images"));
        assert_eq!(texts_of(&r.system), ["Describe images in one line."]);
        let parts = &r.turns[0].parts;
        assert_eq!(parts.len(), 4);
        assert!(matches!(&parts[1], Part::Image { media: Media::Url(u), detail: Some(d), .. }
            if u.starts_with("https://upload.wikimedia.org/") && d == "high"));
        assert!(matches!(&parts[2], Part::Image { media: Media::Base64 { media_type, data }, detail: Some(d), .. }
            if media_type == "image/png" && data.starts_with("iVBOR") && d == "auto"));
        assert!(matches!(&parts[3], Part::Image { media: Media::FileId(id), detail: Some(d), .. }
            if id == "file-abc123" && d == "low"));
        assert_eq!(p.input_items[0]["role"], "developer");
        assert_eq!(
            p.input_items[0]["content"],
            json!([{"type": "input_text", "text": "Describe images in one line."}])
        );
        golden_json("input-items/images.json", &Value::Array(p.input_items));
    }

    #[test]
    fn files_are_data_urls_file_ids_or_urls() {
        let (r, p) = decoded(request!("files"));
        let parts = &r.turns[0].parts;
        assert!(matches!(&parts[0], Part::Document { media: Media::Base64 { media_type, data }, title: Some(t), .. }
            if media_type == "application/pdf" && data == "JVBERi0xLjQKJeLjz9MK" && t == "draconomicon.pdf"));
        assert!(matches!(&parts[1], Part::Document { media: Media::FileId(id), title: None, .. }
            if id == "file-6F2ksmvXxt4VdoqmHRw6kL"));
        assert!(matches!(&parts[2], Part::Document { media: Media::Url(u), .. } if u.ends_with("2024ltr.pdf")));
        assert_eq!(texts_of(parts), ["What is the first dragon in the book?"]);
        golden_json("input-items/files.json", &Value::Array(p.input_items));
    }

    #[test]
    fn a_function_call_round_trip_keeps_its_ids_reasoning_and_names() {
        let (r, p) = decoded(request!("function-round-trip"));
        assert_eq!(r.tools.len(), 1);
        let tool = &r.tools[0];
        assert_eq!((tool.name.as_str(), tool.strict), ("get_weather", Some(true)));
        assert_eq!(tool.description.as_deref(), Some("Get current temperature for a given location."));
        assert_eq!(tool.parameters.as_ref().unwrap()["required"], json!(["location"]));
        assert_eq!(r.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(r.parallel_tool_calls, Some(false));
        assert_eq!(r.effort(), Some("low"));
        assert_eq!(r.extra["include"], json!(["reasoning.encrypted_content"]));
        let roles: Vec<Role> = r.turns.iter().map(|t| t.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
        assert_eq!(
            r.turns[1].parts,
            [
                Part::Thinking {
                    text: "The user wants the weather; call get_weather.".into(),
                    signature: Some("gAAAAB-opaque".into())
                },
                Part::ToolCall {
                    signature: None,
                    id: "call_12345xyz".into(),
                    name: "get_weather".into(),
                    arguments: "{\"location\":\"Paris, France\"}".into(),
                    cache: None
                },
            ]
        );
        assert_eq!(
            r.turns[2].parts,
            [Part::ToolResult {
                id: "call_12345xyz".into(),
                name: Some("get_weather".into()),
                content: vec![Part::text("{\"temperature_c\":14}")],
                is_error: false,
                cache: None
            }]
        );
        // The client's ids stay; the output item gets one.
        let ids: Vec<&str> = p.input_items.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(&ids[1..3], ["rs_68af1", "fc_68af2"]);
        assert!(ids[3].starts_with("fco_"));
        assert_eq!(p.input_items[3]["status"], "completed");
        assert_eq!(p.tools[0], serde_json::from_str::<Value>(request!("function-round-trip")).unwrap()["tools"][0]);
        golden_json("input-items/function-round-trip.json", &Value::Array(p.input_items));
    }

    #[test]
    fn a_json_schema_format_is_the_output_format() {
        let (r, p) = decoded(request!("json-schema"));
        let OutputFormat::JsonSchema { name, description, schema, strict } = &r.output else {
            panic!("{:?}", r.output)
        };
        assert_eq!(
            (name.as_str(), description.as_deref(), *strict),
            ("calendar_event", Some("An event on a calendar"), Some(true))
        );
        assert_eq!(schema.as_ref().unwrap()["required"], json!(["name", "date", "participants"]));
        assert_eq!(texts_of(&r.system), ["Extract the event information."]);
        // The verbosity has no canonical place.
        assert_eq!(r.extra.keys().collect::<Vec<_>>(), ["text.verbosity"]);
        assert_eq!(p.text["verbosity"], "low");
        assert_eq!(p.text["format"]["type"], "json_schema");
    }

    #[test]
    fn reasoning_effort_and_the_previous_response_are_taken() {
        let (r, p) = decoded(request!("reasoning-effort"));
        assert_eq!(r.reasoning, Some(Reasoning::Effort("high".into())));
        assert_eq!(r.max_output_tokens, Some(4096));
        assert!(r.extra.is_empty(), "{:?}", r.extra);
        assert_eq!(p.previous_response_id.as_deref(), Some("resp_0123456789abcdef"));
        assert_eq!(p.reasoning, json!({"effort": "high", "summary": "auto"}));
    }

    #[test]
    fn vendor_tools_are_server_tools_and_a_named_choice_maps() {
        let (r, p) = decoded(request!("stream-server-tool"));
        assert!(r.stream);
        assert_eq!(r.server_tools, ["web_search_preview"]);
        assert_eq!(r.tools.len(), 1);
        assert_eq!(r.tool_choice, Some(ToolChoice::Named("get_weather".into())));
        assert_eq!(p.tools.len(), 2);
        assert_eq!(p.tools[0], json!({"type": "web_search_preview"}));
    }

    #[test]
    fn python_sdk_multi_turn_with_allowed_tools() {
        let (r, p) = decoded(request!("python-multi-turn"));
        assert_eq!(texts_of(&r.system), ["Answer in French."]);
        let roles: Vec<Role> = r.turns.iter().map(|t| t.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
        assert_eq!(texts_of(&r.turns[1].parts), ["Bonjour ! Je suis un assistant.", "Comment puis-je aider ?"]);
        assert_eq!(r.server_tools, ["web_search"]);
        assert_eq!(r.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["lookup"]);
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        assert_eq!((r.top_p, r.user.as_deref()), (Some(0.9), Some("legacy-user-id")));
        // The function tool is echoed with the members a Response requires.
        assert_eq!(
            p.tools[1],
            json!({"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}, "strict": null})
        );
        assert_eq!(p.user.as_deref(), Some("legacy-user-id"));
        assert_eq!(p.input_items[1]["content"][0]["type"], "output_text");
        assert_eq!(p.input_items[2]["content"][0]["logprobs"], json!([]));
        golden_json("input-items/python-multi-turn.json", &Value::Array(p.input_items));
    }

    #[test]
    fn the_same_body_gives_the_same_ids_and_assign_ids_makes_new_ones() {
        let (_, a) = decoded(request!("function-round-trip"));
        let (_, mut b) = decoded(request!("function-round-trip"));
        assert_eq!(a.input_items, b.input_items);
        b.assign_ids(b"random bytes");
        assert_ne!(a.input_items[0]["id"], b.input_items[0]["id"]);
        assert!(b.input_items[0]["id"].as_str().unwrap().starts_with("msg_"));
        assert!(b.input_items[3]["id"].as_str().unwrap().starts_with("fco_"));
        // The client's own ids are never replaced.
        assert_eq!(b.input_items[1]["id"], "rs_68af1");
        assert_eq!(b.input_items[2]["id"], "fc_68af2");
    }

    // ---- History: a conversation replayed from its stored items ----

    fn tool_answer() -> Answer {
        Answer {
            id: "msg_vendor".into(),
            model: "claude-sonnet-4-5".into(),
            outputs: vec![Output {
                index: 0,
                blocks: vec![
                    Block::Thinking { text: "I should look it up.".into(), signature: Some("EqQBCkYIBx".into()) },
                    Block::Text("Let me check.".into()),
                    Block::ToolCall {
                        signature: None,
                        id: "toolu_01".into(),
                        name: "get_weather".into(),
                        arguments: "{\"location\":\"Paris\"}".into(),
                    },
                ],
                finish: Finish::ToolCalls,
            }],
            usage: Some(Usage::new(100, 40)),
        }
    }

    #[test]
    fn a_stored_response_replays_as_history() {
        let first = r#"{"model":"m","instructions":"Be brief.","input":"Weather in Paris?","tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}]}"#;
        let (request, params) = decoded(first);
        let response = encode_answer(&tool_answer(), &request, &params, ID, CREATED);
        let mut history = params.input_items.clone();
        history.extend(output_items(&response));
        let call_id = history[3]["call_id"].as_str().unwrap().to_owned();
        assert_eq!(call_id, "toolu_01");
        let next = json!({
            "model": "m",
            "previous_response_id": ID,
            "input": [{"type": "function_call_output", "call_id": call_id, "output": [{"type": "input_text", "text": "14°C"}]}],
        });
        let (r, p) = decode(serde_json::to_vec(&next).unwrap(), &history).unwrap();
        // Instructions are not carried over.
        assert!(r.system.is_empty());
        let roles: Vec<Role> = r.turns.iter().map(|t| t.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
        assert_eq!(
            r.turns[1].parts,
            [
                Part::Thinking { text: "I should look it up.".into(), signature: Some("EqQBCkYIBx".into()) },
                Part::text("Let me check."),
                Part::ToolCall {
                    signature: None,
                    id: "toolu_01".into(),
                    name: "get_weather".into(),
                    arguments: "{\"location\":\"Paris\"}".into(),
                    cache: None
                },
            ]
        );
        assert!(matches!(&r.turns[2].parts[0], Part::ToolResult { name: Some(n), content, .. }
            if n == "get_weather" && content == &[Part::text("14°C")]));
        assert_eq!(p.previous_response_id.as_deref(), Some(ID));
        assert_eq!(p.input_items.len(), 1);
        assert_eq!(p.input_items[0]["output"], json!([{"type": "input_text", "text": "14°C"}]));
    }

    #[test]
    fn an_item_reference_resolves_from_history_or_is_refused() {
        let history = vec![
            json!({"type": "message", "id": "msg_1", "role": "user", "status": "completed", "content": [{"type": "input_text", "text": "old"}]}),
        ];
        let body = br#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"},{"role":"user","content":"new"}]}"#;
        let (r, p) = decode(body.to_vec(), &history).unwrap();
        assert_eq!(texts_of(&r.turns[0].parts), ["old", "old", "new"]);
        assert_eq!(p.input_items[0], history[0]);
        // An item named twice would be copied twice: a small request must stay small.
        let twice = br#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"},{"id":"msg_1"}]}"#;
        let e = decode(twice.to_vec(), &history).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("input[1].id")));
        let e = decode(br#"{"model":"m","input":[{"type":"item_reference","id":"msg_9"}]}"#.to_vec(), &history)
            .unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("input[0].id")));
        assert!(e.message.contains("msg_9"), "{e}");
    }

    #[test]
    fn built_in_tool_items_are_server_tools_and_empty_reasoning_is_skipped() {
        let body = br#"{"model":"m","input":[
            {"role":"user","content":"search"},
            {"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"q"}},
            {"type":"reasoning","id":"rs_1","summary":[]},
            {"type":"reasoning","id":"rs_2","summary":[],"encrypted_content":"opaque"},
            {"type":"mcp_call","id":"mcp_1","server_label":"s","name":"n","arguments":"{}"},
            {"type":"some_future_call","id":"x_1"}
        ]}"#;
        let (r, p) = decode(body.to_vec(), &[]).unwrap();
        assert_eq!(r.server_tools, ["web_search_call", "mcp_call", "some_future_call"]);
        assert_eq!(r.turns[1].parts, [Part::RedactedThinking { data: "opaque".into() }]);
        assert_eq!(p.input_items.len(), 6);
    }

    #[test]
    fn reasoning_text_is_preferred_over_the_summary() {
        let body = br#"{"model":"m","input":[{"role":"user","content":"q"},{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"short"}],"content":[{"type":"reasoning_text","text":"long "},{"type":"reasoning_text","text":"thought"}]}]}"#;
        let (r, _) = decode(body.to_vec(), &[]).unwrap();
        assert_eq!(r.turns[1].parts, [Part::Thinking { text: "long thought".into(), signature: None }]);
    }

    // ---- Validation ----

    #[test]
    fn every_invalid_request_is_a_400_naming_its_parameter() {
        let long = "x".repeat(513);
        let many: Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
        let cases: Vec<(String, &str)> = vec![
            (r#"{"input":"hi"}"#.into(), ""),
            (r#"{"model":"","input":"hi"}"#.into(), "model"),
            (r#"{"model":1,"input":"hi"}"#.into(), "model"),
            (r#"{"model":"m"}"#.into(), "input"),
            (r#"{"model":"m","input":[]}"#.into(), "input"),
            (r#"{"model":"m","input":5}"#.into(), "input"),
            (r#"{"model":"m","input":[5]}"#.into(), "input[0]"),
            (r#"{"model":"m","input":[{"content":"x"}]}"#.into(), "input[0].type"),
            (r#"{"model":"m","input":[{"role":"wizard","content":"x"}]}"#.into(), "input[0].role"),
            (r#"{"model":"m","input":[{"role":"user"}]}"#.into(), "input[0].content"),
            (r#"{"model":"m","input":[{"role":"user","content":7}]}"#.into(), "input[0].content"),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_audio"}]}]}"#.into(),
                "input[0].content[0].type",
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text"}]}]}"#.into(),
                "input[0].content[0].text",
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","detail":"auto"}]}]}"#.into(),
                "input[0].content[0].image_url",
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":3}]}]}"#.into(),
                "input[0].content[0].image_url",
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","filename":"a.pdf"}]}]}"#
                    .into(),
                "input[0].content[0].file_data",
            ),
            (
                r#"{"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}"#.into(),
                "input[0].call_id",
            ),
            (
                r#"{"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":{}}]}"#.into(),
                "input[0].arguments",
            ),
            (r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c"}]}"#.into(), "input[0].output"),
            (
                r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":[{"type":"nope"}]}]}"#
                    .into(),
                "input[0].output[0].type",
            ),
            (
                r#"{"model":"m","input":[{"type":"reasoning","summary":[{"type":"summary_text"}]}]}"#.into(),
                "input[0].summary[0].text",
            ),
            (r#"{"model":"m","input":[{"type":"reasoning","summary":"x"}]}"#.into(), "input[0].summary"),
            (r#"{"model":"m","input":[{"type":"item_reference","id":"msg_x"}]}"#.into(), "input[0].id"),
            (r#"{"model":"m","input":[{"type":"wizardry"}]}"#.into(), "input[0].type"),
            (r#"{"model":"m","input":"x","temperature":2.5}"#.into(), "temperature"),
            (r#"{"model":"m","input":"x","temperature":"hot"}"#.into(), "temperature"),
            (r#"{"model":"m","input":"x","top_p":1.5}"#.into(), "top_p"),
            (r#"{"model":"m","input":"x","max_output_tokens":15}"#.into(), "max_output_tokens"),
            (r#"{"model":"m","input":"x","max_output_tokens":-1}"#.into(), "max_output_tokens"),
            (r#"{"model":"m","input":"x","top_logprobs":21}"#.into(), "top_logprobs"),
            (r#"{"model":"m","input":"x","stream":"yes"}"#.into(), "stream"),
            (r#"{"model":"m","input":"x","store":1}"#.into(), "store"),
            (r#"{"model":"m","input":"x","instructions":["a"]}"#.into(), "instructions"),
            (r#"{"model":"m","input":"x","parallel_tool_calls":"no"}"#.into(), "parallel_tool_calls"),
            (r#"{"model":"m","input":"x","truncation":"sometimes"}"#.into(), "truncation"),
            (format!(r#"{{"model":"m","input":"x","safety_identifier":"{}"}}"#, "s".repeat(65)), "safety_identifier"),
            (
                r#"{"model":"m","input":"x","previous_response_id":"resp_1","conversation":"conv_1"}"#.into(),
                "previous_response_id",
            ),
            (r#"{"model":"m","input":"x","metadata":[]}"#.into(), "metadata"),
            (format!(r#"{{"model":"m","input":"x","metadata":{}}}"#, Value::Object(many)), "metadata"),
            (format!(r#"{{"model":"m","input":"x","metadata":{{"{}":"v"}}}}"#, "k".repeat(65)), "metadata"),
            (format!(r#"{{"model":"m","input":"x","metadata":{{"k":"{long}"}}}}"#), "metadata.k"),
            (r#"{"model":"m","input":"x","metadata":{"k":1}}"#.into(), "metadata.k"),
            (r#"{"model":"m","input":"x","tools":{}}"#.into(), "tools"),
            (r#"{"model":"m","input":"x","tools":[{"name":"f"}]}"#.into(), "tools[0].type"),
            (r#"{"model":"m","input":"x","tools":[{"type":"function"}]}"#.into(), "tools[0].name"),
            (r#"{"model":"m","input":"x","tools":[{"type":"function","name":""}]}"#.into(), "tools[0].name"),
            (
                r#"{"model":"m","input":"x","tools":[{"type":"function","name":"f","parameters":"{}"}]}"#.into(),
                "tools[0].parameters",
            ),
            (
                r#"{"model":"m","input":"x","tools":[{"type":"function","name":"f","strict":"yes"}]}"#.into(),
                "tools[0].strict",
            ),
            (r#"{"model":"m","input":"x","tool_choice":"always"}"#.into(), "tool_choice"),
            (r#"{"model":"m","input":"x","tool_choice":3}"#.into(), "tool_choice"),
            (r#"{"model":"m","input":"x","tool_choice":{"name":"f"}}"#.into(), "tool_choice.type"),
            (r#"{"model":"m","input":"x","tool_choice":{"type":"function"}}"#.into(), "tool_choice.name"),
            (r#"{"model":"m","input":"x","tool_choice":{"type":"function","name":"g"}}"#.into(), "tool_choice.name"),
            (
                r#"{"model":"m","input":"x","tool_choice":{"type":"allowed_tools","mode":"sometimes","tools":[]}}"#
                    .into(),
                "tool_choice.mode",
            ),
            (
                r#"{"model":"m","input":"x","tool_choice":{"type":"allowed_tools","mode":"auto"}}"#.into(),
                "tool_choice.tools",
            ),
            (r#"{"model":"m","input":"x","text":"json"}"#.into(), "text"),
            (r#"{"model":"m","input":"x","text":{"format":{"type":"yaml"}}}"#.into(), "text.format.type"),
            (
                r#"{"model":"m","input":"x","text":{"format":{"type":"json_schema","schema":{}}}}"#.into(),
                "text.format.name",
            ),
            (
                r#"{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"n"}}}"#.into(),
                "text.format.schema",
            ),
            (
                r#"{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"n","schema":[]}}}"#.into(),
                "text.format.schema",
            ),
            (r#"{"model":"m","input":"x","reasoning":{"effort":3}}"#.into(), "reasoning.effort"),
            (r#"{"model":"m","input":"x","reasoning":{"summary":true}}"#.into(), "reasoning.summary"),
            (r#"{"model":"m","input":"x","stream_options":true}"#.into(), "stream_options"),
        ];
        let mut wrong = Vec::new();
        for (body, param) in &cases {
            match decode(body.clone().into_bytes(), &[]) {
                Ok(_) => wrong.push(format!("{body}: accepted")),
                Err(e) => {
                    let named = e.param.as_deref() == Some(*param) && (param.is_empty() || e.message.contains(param));
                    if e.status != 400 || e.kind != "invalid_request_error" || !named {
                        wrong.push(format!("{body}: {e} (param {:?}, expected {param:?})", e.param));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // Not JSON at all, or not UTF-8.
        for body in [&b"{\"model\":"[..], b"", b"{\"model\":\"m\",\"input\":\"\xff\"}"] {
            let e = decode(body.to_vec(), &[]).unwrap_err();
            assert_eq!((e.status, e.code.as_deref()), (400, Some("invalid_json")));
        }
    }

    #[test]
    fn a_broken_history_is_the_previous_responses_fault() {
        let e = decode(br#"{"model":"m","input":"x"}"#.to_vec(), &[json!({"type":"function_call"})]).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("previous_response_id")));
        assert!(e.message.contains("history[0].call_id"), "{e}");
    }

    #[test]
    fn unmodelled_members_go_to_extra_and_nulls_ask_for_nothing() {
        let body = br#"{"model":"m","input":"x","background":true,"top_logprobs":3,"max_tool_calls":2,"include":null,"prompt":{"id":"p"},"user":null,"tool_choice":{"type":"file_search"},"reasoning":{"effort":null,"mode":"pro"}}"#;
        let (r, p) = decode(body.to_vec(), &[]).unwrap();
        let mut keys: Vec<&str> = r.extra.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["background", "max_tool_calls", "prompt", "reasoning.mode", "tool_choice", "top_logprobs"]);
        assert_eq!(r.server_tools, ["file_search"]);
        assert_eq!((r.tool_choice.clone(), r.reasoning.clone(), r.user.clone()), (None, None, None));
        assert!(p.background);
        assert_eq!((p.top_logprobs, p.max_tool_calls), (3, Some(2)));
        assert_eq!(p.tool_choice, json!({"type": "file_search"}));
    }

    // ---- Answers ----

    fn usage() -> Usage {
        Usage {
            prompt_tokens: 1200,
            completion_tokens: 300,
            total_tokens: 1500,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: 1000, cache_creation_tokens: Some(100) }),
            completion_tokens_details: Some(CompletionTokensDetails { reasoning_tokens: 120 }),
            billed: Default::default(),
        }
    }

    fn answer(blocks: Vec<Block>, finish: Finish, usage: Option<Usage>) -> Answer {
        Answer {
            id: "vendor-id".into(),
            model: "vendor-model".into(),
            outputs: vec![Output { index: 0, blocks, finish }],
            usage,
        }
    }

    fn answer_cases() -> Vec<(&'static str, &'static str, Answer)> {
        vec![
            (
                "text",
                request!("instructions"),
                answer(
                    vec![Block::Text("Arr, ".into()), Block::Text("matey!".into())],
                    Finish::Stop,
                    Some(Usage::new(20, 5)),
                ),
            ),
            (
                "refusal",
                request!("string-input"),
                answer(
                    vec![Block::Text("Well".into()), Block::Refusal("I can't help with that.".into())],
                    Finish::Stop,
                    None,
                ),
            ),
            (
                "reasoning",
                request!("reasoning-effort"),
                answer(
                    vec![
                        Block::Thinking {
                            text: "A woodchuck is a groundhog.".into(),
                            signature: Some("sig-123".into()),
                        },
                        Block::Text("About 700 pounds.".into()),
                    ],
                    Finish::Stop,
                    Some(usage()),
                ),
            ),
            (
                "tool-calls",
                request!("function-round-trip"),
                answer(
                    vec![
                        Block::RedactedThinking("EmwKAhgBEgy3va3pzix".into()),
                        Block::ToolCall {
                            signature: None,
                            id: "toolu_01".into(),
                            name: "get_weather".into(),
                            arguments: "{\"location\":\"Paris\"}".into(),
                        },
                        Block::ToolCall {
                            signature: None,
                            id: "toolu_01".into(),
                            name: "get_weather".into(),
                            arguments: "{\"location\":\"Lyon\"}".into(),
                        },
                        Block::ToolCall {
                            signature: None,
                            id: String::new(),
                            name: "get_weather".into(),
                            arguments: "{}".into(),
                        },
                    ],
                    Finish::ToolCalls,
                    Some(Usage::new(80, 60)),
                ),
            ),
            (
                "length",
                request!("json-schema"),
                answer(vec![Block::Text("{\"name\": \"Science".into())], Finish::Length, Some(Usage::new(50, 16))),
            ),
            ("content-filter", request!("string-input"), answer(vec![], Finish::ContentFilter, None)),
            (
                "empty",
                request!("python-multi-turn"),
                Answer { id: String::new(), model: String::new(), outputs: vec![], usage: None },
            ),
        ]
    }

    #[test]
    fn answers_are_response_objects() {
        for (name, body, answer) in answer_cases() {
            let (request, params) = decoded(body);
            let response = encode_answer(&answer, &request, &params, ID, CREATED);
            golden_json(&format!("answers/{name}.json"), &response);
            assert_eq!(response["id"], ID);
            assert_eq!(response["object"], "response");
            assert_eq!(response["created_at"], CREATED);
            for key in [
                "error",
                "incomplete_details",
                "instructions",
                "model",
                "tools",
                "output",
                "parallel_tool_calls",
                "metadata",
                "tool_choice",
                "temperature",
                "top_p",
            ] {
                assert!(response.get(key).is_some(), "{name}: no {key}");
            }
        }
    }

    #[test]
    fn the_finish_decides_the_status() {
        let (request, params) = decoded(request!("string-input"));
        let status = |finish: Finish| {
            let r = encode_answer(&answer(vec![Block::Text("x".into())], finish, None), &request, &params, ID, 1);
            (r["status"].clone(), r["incomplete_details"].clone(), r["output"][0]["status"].clone())
        };
        assert_eq!(status(Finish::Stop), (json!("completed"), Value::Null, json!("completed")));
        assert_eq!(status(Finish::StopSequence(Some("\n".into()))).0, "completed");
        assert_eq!(status(Finish::ToolCalls).0, "completed");
        assert_eq!(
            status(Finish::Length),
            (json!("incomplete"), json!({"reason": "max_output_tokens"}), json!("incomplete"))
        );
        assert_eq!(
            status(Finish::ContentFilter),
            (json!("incomplete"), json!({"reason": "content_filter"}), json!("incomplete"))
        );
    }

    #[test]
    fn usage_has_every_detail_the_schema_requires() {
        let (request, params) = decoded(request!("string-input"));
        let r = encode_answer(&answer(vec![], Finish::Stop, Some(usage())), &request, &params, ID, 1);
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 100},
                   "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 120}, "total_tokens": 1500})
        );
        let r = encode_answer(
            &answer(vec![], Finish::Stop, Some(Usage { total_tokens: 0, ..Usage::new(3, 4) })),
            &request,
            &params,
            ID,
            1,
        );
        assert_eq!(r["usage"]["total_tokens"], 7);
        assert_eq!(r["usage"]["input_tokens_details"], json!({"cached_tokens": 0, "cache_write_tokens": 0}));
        let r = encode_answer(&answer(vec![], Finish::Stop, None), &request, &params, ID, 1);
        assert!(r.get("usage").is_none());
    }

    #[test]
    fn only_choice_zero_is_answered() {
        let (request, params) = decoded(request!("string-input"));
        let mut a = answer(vec![Block::Text("zero".into())], Finish::Stop, None);
        a.outputs.insert(0, Output { index: 1, blocks: vec![Block::Text("one".into())], finish: Finish::Stop });
        let r = encode_answer(&a, &request, &params, ID, 1);
        assert_eq!(r["output"].as_array().unwrap().len(), 1);
        assert_eq!(r["output"][0]["content"][0]["text"], "zero");
    }

    #[test]
    fn ids_are_prefixed_hex_from_their_entropy() {
        let a = new_id("resp", b"one");
        assert_eq!(a.len(), 53);
        assert!(a.starts_with("resp_") && a[5..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, new_id("resp", b"one"));
        assert_ne!(a, new_id("resp", b"two"));
    }

    // ---- The stream's grammar ----

    /// What a stream said, once checked.
    #[derive(Debug)]
    struct Checked {
        /// The output items, as each `response.output_item.done` gave it.
        items: Vec<Value>,
        /// The terminal event's response.
        response: Value,
        terminal: String,
        error: Option<Value>,
    }

    #[derive(Default)]
    struct OpenItem {
        index: usize,
        item: Value,
        parts: Vec<Value>,
        /// The open content or summary part's text, and whether its text is done.
        part: Option<(String, bool)>,
        arguments: String,
        arguments_done: bool,
        summary: Vec<Value>,
    }

    /// Checks a Responses event stream: SSE framing, sequence numbers, the lifecycle, every
    /// item's events in order and in agreement with the item, and the terminal response's
    /// output being the items done.
    fn check(sse: &[u8]) -> Result<Checked, String> {
        let text = std::str::from_utf8(sse).map_err(|e| format!("not UTF-8: {e}"))?;
        if !text.ends_with("\n\n") {
            return Err("the stream does not end with a blank line".into());
        }
        let mut events = Vec::new();
        for (n, chunk) in text[..text.len() - 2].split("\n\n").enumerate() {
            let mut lines = chunk.split('\n');
            let name =
                lines.next().and_then(|l| l.strip_prefix("event: ")).ok_or(format!("event {n}: no event line"))?;
            let data = lines.next().and_then(|l| l.strip_prefix("data: ")).ok_or(format!("event {n}: no data line"))?;
            if lines.next().is_some() {
                return Err(format!("event {n}: more than two lines"));
            }
            let value: Value = serde_json::from_str(data).map_err(|e| format!("event {n}: {e}"))?;
            if value["type"] != name {
                return Err(format!("event {n}: named {name}, typed {}", value["type"]));
            }
            if value["sequence_number"] != n {
                return Err(format!("event {n} ({name}): sequence_number {}", value["sequence_number"]));
            }
            events.push(value);
        }
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
        if kinds.len() < 3 || kinds[0] != "response.created" || kinds[1] != "response.in_progress" {
            return Err(format!("the stream must start with response.created, response.in_progress: {kinds:?}"));
        }
        let id = events[0]["response"]["id"].clone();
        for e in &events[..2] {
            let r = &e["response"];
            if r["id"] != id || r["status"] != "in_progress" || r["output"] != json!([]) || r["object"] != "response" {
                return Err(format!("{}: not an empty in_progress response {id}", e["type"]));
            }
        }
        let mut items: Vec<Value> = Vec::new();
        let mut open: Option<OpenItem> = None;
        let mut terminal: Option<(String, Value)> = None;
        let mut error = None;
        for (n, e) in events.iter().enumerate().skip(2) {
            let kind = kinds[n];
            let fail = |why: &str| Err(format!("event {n} ({kind}): {why}"));
            if error.is_some() {
                return fail("after the error event");
            }
            if terminal.is_some() && kind != "error" {
                return fail("after the terminal event");
            }
            // Every item event names the open item.
            if kind.starts_with("response.") && e.get("item_id").is_some() {
                let Some(o) = &open else { return fail("no item is open") };
                if e["item_id"] != o.item["id"] || e["output_index"] != o.index {
                    return fail("not the open item's id and index");
                }
            }
            let item_type = open.as_ref().map(|o| o.item["type"].as_str().unwrap_or("").to_owned()).unwrap_or_default();
            match kind {
                "response.output_item.added" => {
                    if open.is_some() {
                        return fail("an item is already open");
                    }
                    if e["output_index"] != items.len() {
                        return fail("output_index is not the next index");
                    }
                    let item = &e["item"];
                    if item["status"] != "in_progress" || item["id"].as_str().is_none_or(str::is_empty) {
                        return fail("the item is not in_progress with an id");
                    }
                    match item["type"].as_str() {
                        Some("message") if item["content"] == json!([]) && item["role"] == "assistant" => {}
                        Some("function_call")
                            if item["arguments"] == "" && item["call_id"].is_string() && item["name"].is_string() => {}
                        Some("reasoning") if item["summary"] == json!([]) => {}
                        _ => return fail("not an empty message, function call or reasoning item"),
                    }
                    if items.iter().any(|i| i["id"] == item["id"])
                        || (item["type"] == "function_call" && items.iter().any(|i| i["call_id"] == item["call_id"]))
                    {
                        return fail("the item's id (or call_id) is an earlier item's");
                    }
                    open = Some(OpenItem { index: items.len(), item: item.clone(), ..OpenItem::default() });
                }
                "response.content_part.added" | "response.reasoning_summary_part.added" => {
                    let o = open.as_mut().unwrap();
                    let (want, index_key, done) = if kind == "response.content_part.added" {
                        ("message", "content_index", o.parts.len())
                    } else {
                        ("reasoning", "summary_index", o.summary.len())
                    };
                    if item_type != want || o.part.is_some() || e[index_key] != done {
                        return fail("not the next part of the open item");
                    }
                    let expected = if want == "message" {
                        output_text_part("")
                    } else {
                        json!({"type": "summary_text", "text": ""})
                    };
                    if e["part"] != expected {
                        return fail("the part is not empty");
                    }
                    o.part = Some((String::new(), false));
                }
                "response.output_text.delta" | "response.reasoning_summary_text.delta" => {
                    let o = open.as_mut().unwrap();
                    let index = if kind == "response.output_text.delta" { o.parts.len() } else { o.summary.len() };
                    let (Some((text, false)), Some(delta)) = (&mut o.part, e["delta"].as_str()) else {
                        return fail("no open part, or no delta");
                    };
                    if e.get("content_index").or(e.get("summary_index")) != Some(&json!(index)) {
                        return fail("not the open part's index");
                    }
                    if kind == "response.output_text.delta" && e["logprobs"] != json!([]) {
                        return fail("no logprobs");
                    }
                    text.push_str(delta);
                }
                "response.output_text.done" | "response.reasoning_summary_text.done" => {
                    let o = open.as_mut().unwrap();
                    let Some((text, done @ false)) = &mut o.part else { return fail("no open part") };
                    if e["text"] != text.as_str() {
                        return fail("the text is not the deltas'");
                    }
                    *done = true;
                }
                "response.content_part.done" | "response.reasoning_summary_part.done" => {
                    let o = open.as_mut().unwrap();
                    let Some((text, true)) = &o.part else { return fail("the part's text is not done") };
                    let part = if kind == "response.content_part.done" {
                        output_text_part(text)
                    } else {
                        json!({"type": "summary_text", "text": text})
                    };
                    if e["part"] != part {
                        return fail("the part is not its text's");
                    }
                    if kind == "response.content_part.done" {
                        o.parts.push(part)
                    } else {
                        o.summary.push(part)
                    }
                    o.part = None;
                }
                "response.function_call_arguments.delta" => {
                    let o = open.as_mut().unwrap();
                    if item_type != "function_call" || o.arguments_done {
                        return fail("not an open function call");
                    }
                    o.arguments.push_str(e["delta"].as_str().ok_or("no delta")?);
                }
                "response.function_call_arguments.done" => {
                    let o = open.as_mut().unwrap();
                    if item_type != "function_call"
                        || e["arguments"] != o.arguments.as_str()
                        || e["name"] != o.item["name"]
                    {
                        return fail("not the call's arguments and name");
                    }
                    o.arguments_done = true;
                }
                "response.output_item.done" => {
                    let Some(o) = open.take() else { return fail("no item is open") };
                    let item = &e["item"];
                    if e["output_index"] != o.index || item["id"] != o.item["id"] || item["type"] != o.item["type"] {
                        return fail("not the open item");
                    }
                    if !matches!(item["status"].as_str(), Some("completed" | "incomplete")) || o.part.is_some() {
                        return fail("the item or one of its parts is not done");
                    }
                    let agrees = match item_type.as_str() {
                        "message" => !o.parts.is_empty() && item["content"] == Value::Array(o.parts.clone()),
                        "function_call" => {
                            o.arguments_done
                                && item["arguments"] == o.arguments.as_str()
                                && item["call_id"] == o.item["call_id"]
                                && item["name"] == o.item["name"]
                        }
                        _ => {
                            item["summary"] == Value::Array(o.summary.clone())
                                && (o.item.get("encrypted_content").is_none()
                                    || item["encrypted_content"] == o.item["encrypted_content"])
                        }
                    };
                    if !agrees {
                        return fail("the item is not what its events said");
                    }
                    items.push(item.clone());
                }
                "response.completed" | "response.incomplete" | "response.failed" => {
                    if open.is_some() {
                        return fail("an item is still open");
                    }
                    let r = &e["response"];
                    if r["id"] != id || r["output"] != Value::Array(items.clone()) {
                        return fail("not the stream's response, or its output is not the items done");
                    }
                    let status = &kind["response.".len()..];
                    let consistent = r["status"] == status
                        && match status {
                            "completed" => r["error"].is_null() && r["incomplete_details"].is_null(),
                            "incomplete" => r["error"].is_null() && r["incomplete_details"]["reason"].is_string(),
                            _ => r["error"]["code"].is_string() && r["error"]["message"].is_string(),
                        };
                    if !consistent {
                        return fail("the status, error and incomplete_details disagree");
                    }
                    terminal = Some((kind.to_owned(), r.clone()));
                }
                "error" => {
                    if terminal.as_ref().map(|t| t.0.as_str()) != Some("response.failed") {
                        return fail("an error event that does not follow response.failed");
                    }
                    if !e["code"].is_string() || !e["message"].is_string() || e["error"]["message"] != e["message"] {
                        return fail("no code and message (at the top and under error)");
                    }
                    error = Some(e.clone());
                }
                _ => return fail("an event this encoder never writes"),
            }
        }
        let Some((terminal, response)) = terminal else { return Err("no terminal event".into()) };
        if terminal == "response.failed" && error.is_none() {
            return Err("response.failed is not followed by the error event the SDKs raise".into());
        }
        Ok(Checked { items, response, terminal, error })
    }

    /// Events written back as a stream, their sequence numbers counted afresh.
    fn reframe(events: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, event) in events.iter().enumerate() {
            let mut event = event.clone();
            event["sequence_number"] = json!(n);
            out.extend_from_slice(format!("event: {}\ndata: {event}\n\n", event["type"].as_str().unwrap()).as_bytes());
        }
        out
    }

    #[test]
    fn the_checker_refuses_what_breaks_the_grammar() {
        for name in ["tool-calls", "reasoning", "failed"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURES).join(format!("streams/{name}.sse"));
            let text = std::fs::read_to_string(path).unwrap();
            let events: Vec<Value> = text
                .split_terminator("\n\n")
                .map(|e| serde_json::from_str(e.split_once("\ndata: ").unwrap().1).unwrap())
                .collect();
            assert!(check(&reframe(&events)).is_ok(), "{name}");
            // Without any one of its events, the stream is refused.
            for i in 0..events.len() {
                let mut fewer = events.clone();
                fewer.remove(i);
                assert!(check(&reframe(&fewer)).is_err(), "{name} without event {i} ({})", events[i]["type"]);
            }
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURES).join("streams/tool-calls.sse");
        let text = std::fs::read_to_string(path).unwrap();
        let sequence_gap = text.replacen("\"sequence_number\":3,", "\"sequence_number\":4,", 1);
        let call_ids: Vec<&str> = text
            .split("\"call_id\":\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap())
            .filter(|id| id.starts_with("call_"))
            .collect();
        let repeated_call_id = text.replace(call_ids[call_ids.len() - 1], call_ids[0]);
        let other_delta = text.replacen("\"delta\":\"{\\\"l", "\"delta\":\"{\\\"x", 1);
        let no_blank_line = text.trim_end().to_owned();
        for (what, broken) in [
            ("a gap", sequence_gap),
            ("a repeated call_id", repeated_call_id),
            ("another delta", other_delta),
            ("no end", no_blank_line),
        ] {
            assert_ne!(broken, text, "{what}");
            assert!(check(broken.as_bytes()).is_err(), "{what}");
        }
    }

    /// Feeds events to a stream and ends it; the bytes written and the stream.
    fn run(params: &Params, events: &[Event<'_>], end: Option<&GatewayError>) -> (Vec<u8>, Stream) {
        let request = Request { model: "public-model".into(), ..Request::default() };
        let mut stream = Stream::new(&request, params, ID.to_owned(), CREATED);
        let mut out = Vec::new();
        for event in events {
            stream.event(event.clone(), &mut out);
        }
        match end {
            None => stream.complete(&mut out),
            Some(error) => stream.fail(error, &mut out),
        }
        (out, stream)
    }

    /// The canonical events of an answer's choice 0, each text cut in pieces of `piece` chars.
    fn events_of(answer: &Answer, piece: usize) -> Vec<Event<'_>> {
        let mut events = vec![Event::Start { id: &answer.id, model: &answer.model }];
        let output = &answer.outputs[0];
        for (b, block) in output.blocks.iter().enumerate() {
            let b = b as u32;
            let cut = |s: &str| -> Vec<(usize, usize)> {
                let bounds: Vec<usize> =
                    s.char_indices().map(|(i, _)| i).step_by(piece.max(1)).chain([s.len()]).collect();
                bounds.windows(2).map(|w| (w[0], w[1])).collect()
            };
            let (kind, deltas): (BlockKind<'_>, Vec<Delta<'_>>) = match block {
                Block::Text(t) => (BlockKind::Text, cut(t).into_iter().map(|(i, j)| Delta::Text(&t[i..j])).collect()),
                Block::Refusal(_) => continue,
                Block::Thinking { text, signature } => {
                    let mut d: Vec<Delta<'_>> =
                        cut(text).into_iter().map(|(i, j)| Delta::Thinking(&text[i..j])).collect();
                    d.extend(signature.as_deref().map(Delta::Signature));
                    (BlockKind::Thinking, d)
                }
                Block::RedactedThinking(data) => (BlockKind::RedactedThinking { data }, vec![]),
                Block::ToolCall { id, name, arguments, signature } => (
                    BlockKind::ToolCall { id, name, signature: signature.as_deref() },
                    cut(arguments).into_iter().map(|(i, j)| Delta::ToolArguments(&arguments[i..j])).collect(),
                ),
            };
            events.push(Event::BlockStart { choice: 0, block: b, kind });
            events.extend(deltas.into_iter().map(|delta| Event::Delta { choice: 0, block: b, delta }));
            events.push(Event::BlockStop { choice: 0, block: b });
        }
        events.push(Event::Finish { choice: 0, finish: output.finish.clone() });
        if let Some(usage) = answer.usage {
            events.push(Event::Usage(usage));
        }
        events
    }

    fn stream_cases() -> Vec<(&'static str, &'static str, Answer)> {
        answer_cases().into_iter().filter(|(name, ..)| !matches!(*name, "refusal" | "empty")).collect()
    }

    #[test]
    fn streams_follow_the_grammar_and_end_with_the_answers_response() {
        for (name, body, answer) in stream_cases() {
            let (request, params) = decoded(body);
            for piece in [1, 3, 1000] {
                let (out, stream) = run(&params, &events_of(&answer, piece), None);
                let checked = check(&out).unwrap_or_else(|e| panic!("{name}: {e}\n{}", String::from_utf8_lossy(&out)));
                let expected = encode_answer(&answer, &request, &params, ID, CREATED);
                assert_eq!(checked.response, expected, "{name}");
                assert_eq!(stream.response(), Some(&expected), "{name}");
                let incomplete = expected["status"] == "incomplete";
                assert_eq!(checked.terminal, if incomplete { "response.incomplete" } else { "response.completed" });
                if piece == 3 {
                    golden(&format!("streams/{name}.sse"), std::str::from_utf8(&out).unwrap());
                }
            }
        }
    }

    #[test]
    fn a_broken_stream_fails_with_an_error_the_sdks_raise() {
        let (_, params) = decoded(request!("string-input"));
        let events = [
            Event::Start { id: "x", model: "vendor-model" },
            Event::BlockStart { choice: 0, block: 0, kind: BlockKind::Text },
            Event::Delta { choice: 0, block: 0, delta: Delta::Text("Once upon") },
            Event::Usage(Usage::new(10, 2)),
        ];
        let error = GatewayError::upstream_stream_broken("anthropic", "connection reset");
        let (out, stream) = run(&params, &events, Some(&error));
        golden("streams/failed.sse", std::str::from_utf8(&out).unwrap());
        let checked = check(&out).unwrap();
        assert_eq!(checked.terminal, "response.failed");
        let response = stream.response().unwrap();
        assert_eq!(response, &checked.response);
        assert_eq!(response["status"], "failed");
        assert_eq!(response["error"], json!({"code": "server_error", "message": error.message}));
        assert_eq!(response["output"][0]["status"], "incomplete");
        assert_eq!(response["output"][0]["content"][0]["text"], "Once upon");
        assert_eq!(response["usage"]["input_tokens"], 10);
        let e = checked.error.unwrap();
        assert_eq!(
            (e["code"].as_str(), e["error"]["code"].as_str()),
            (Some("upstream_stream_broken"), Some("upstream_stream_broken"))
        );
        assert_eq!(e["error"]["type"], "server_error");
        // A rate limit keeps its code in the response.
        let (out, _) =
            run(&params, &[], Some(&GatewayError::new(429, "rate_limit_error", "rate_limited", "slow down")));
        assert_eq!(check(&out).unwrap().response["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn a_stream_without_events_still_has_its_lifecycle() {
        let (_, params) = decoded(request!("string-input"));
        let (out, stream) = run(&params, &[], None);
        let checked = check(&out).unwrap();
        assert_eq!(checked.terminal, "response.completed");
        assert_eq!(checked.response["output"], json!([]));
        assert_eq!(checked.response["model"], "public-model");
        assert_eq!(stream.response(), Some(&checked.response));
        // Nothing more once ended.
        let mut stream = stream;
        let mut more = Vec::new();
        stream.event(Event::Delta { choice: 0, block: 0, delta: Delta::Text("late") }, &mut more);
        stream.complete(&mut more);
        stream.fail(&GatewayError::upstream_timeout("p", 1), &mut more);
        assert!(more.is_empty());
    }

    #[test]
    fn malformed_sequences_keep_the_grammar() {
        let (_, params) = decoded(request!("string-input"));
        let cases: Vec<Vec<Event<'_>>> = vec![
            // Deltas with no block start, of kinds that do not match their blocks.
            vec![
                Event::Delta { choice: 0, block: 4, delta: Delta::Text("a") },
                Event::BlockStart {
                    choice: 0,
                    block: 0,
                    kind: BlockKind::ToolCall { signature: None, id: "c", name: "f" },
                },
                Event::Delta { choice: 0, block: 0, delta: Delta::Text("b") },
                Event::Delta { choice: 0, block: 0, delta: Delta::ToolArguments("{}") },
                Event::Delta { choice: 0, block: 1, delta: Delta::Signature("s") },
                Event::Delta { choice: 0, block: 1, delta: Delta::Thinking("t") },
                Event::BlockStop { choice: 0, block: 7 },
            ],
            // Blocks never stopped, a second choice, events after the finish, a late start.
            vec![
                Event::BlockStart { choice: 1, block: 0, kind: BlockKind::Text },
                Event::Delta { choice: 1, block: 0, delta: Delta::Text("other choice") },
                Event::BlockStart {
                    choice: 0,
                    block: 0,
                    kind: BlockKind::ToolCall { signature: None, id: "c", name: "f" },
                },
                Event::BlockStart {
                    choice: 0,
                    block: 1,
                    kind: BlockKind::ToolCall { signature: None, id: "c", name: "f" },
                },
                Event::Delta { choice: 0, block: 1, delta: Delta::ToolArguments("{\"a\":1}") },
                Event::Finish { choice: 0, finish: Finish::Length },
                Event::Delta { choice: 0, block: 2, delta: Delta::Text("after the finish") },
                Event::Finish { choice: 0, finish: Finish::Stop },
                Event::Start { id: "late", model: "late-model" },
            ],
        ];
        for events in cases {
            let (out, stream) = run(&params, &events, None);
            let checked = check(&out).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));
            assert_eq!(stream.response(), Some(&checked.response));
            assert!(!String::from_utf8_lossy(&out).contains("other choice"));
            assert!(!String::from_utf8_lossy(&out).contains("after the finish"));
            assert_eq!(checked.response, from_items(&checked, &params));
        }
    }

    /// The `Response` `encode_answer` gives for the blocks a stream's items stand for: what a
    /// stream's final object must equal, whatever events made it.
    fn from_items(checked: &Checked, params: &Params) -> Value {
        let blocks = checked
            .items
            .iter()
            .map(|item| match item["type"].as_str().unwrap() {
                "message" => Block::Text(
                    item["content"].as_array().unwrap().iter().map(|p| p["text"].as_str().unwrap()).collect(),
                ),
                "function_call" => Block::ToolCall {
                    signature: None,
                    id: item["call_id"].as_str().unwrap().into(),
                    name: item["name"].as_str().unwrap().into(),
                    arguments: item["arguments"].as_str().unwrap().into(),
                },
                _ => {
                    let text: String =
                        item["summary"].as_array().unwrap().iter().map(|p| p["text"].as_str().unwrap()).collect();
                    let encrypted = item["encrypted_content"].as_str().map(str::to_owned);
                    match (text.is_empty(), encrypted) {
                        (true, Some(data)) => Block::RedactedThinking(data),
                        (_, signature) => Block::Thinking { text, signature },
                    }
                }
            })
            .collect();
        let r = &checked.response;
        let finish = match r["incomplete_details"]["reason"].as_str() {
            Some("max_output_tokens") => Finish::Length,
            Some(_) => Finish::ContentFilter,
            None => Finish::Stop,
        };
        let usage = r.get("usage").map(|u| Usage {
            prompt_tokens: u["input_tokens"].as_u64().unwrap(),
            completion_tokens: u["output_tokens"].as_u64().unwrap(),
            total_tokens: u["total_tokens"].as_u64().unwrap(),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: u["input_tokens_details"]["cached_tokens"].as_u64().unwrap(),
                cache_creation_tokens: u["input_tokens_details"]["cache_write_tokens"].as_u64(),
            }),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: u["output_tokens_details"]["reasoning_tokens"].as_u64().unwrap(),
            }),
            billed: Default::default(),
        });
        let model = r["model"].as_str().unwrap().to_owned();
        let answer = Answer { id: String::new(), model, outputs: vec![Output { index: 0, blocks, finish }], usage };
        encode_answer(&answer, &Request::default(), params, ID, CREATED)
    }

    // ---- Properties ----

    fn small_text() -> impl Strategy<Value = String> {
        "[a-zé😀 \n\"]{0,10}"
    }

    fn finish() -> impl Strategy<Value = Finish> {
        prop_oneof![
            Just(Finish::Stop),
            Just(Finish::StopSequence(None)),
            Just(Finish::Length),
            Just(Finish::ToolCalls),
            Just(Finish::ContentFilter),
        ]
    }

    fn streamable_block() -> impl Strategy<Value = Block> {
        prop_oneof![
            small_text().prop_map(Block::Text),
            (small_text(), proptest::option::of("[A-Za-z0-9+/]{0,8}"))
                .prop_map(|(text, signature)| Block::Thinking { text, signature }),
            "[A-Za-z0-9]{0,6}".prop_map(Block::RedactedThinking),
            (prop::sample::select(vec!["", "call_1", "call_2", "toolu_x"]), "[a-z_]{1,6}", "[{}a-z\":,0-9]{0,12}")
                .prop_map(|(id, name, arguments)| Block::ToolCall { signature: None, id: id.into(), name, arguments }),
        ]
    }

    fn any_answer() -> impl Strategy<Value = Answer> {
        (proptest::collection::vec(streamable_block(), 0..8), finish(), proptest::option::of((0u64..1000, 0u64..1000)))
            .prop_map(|(blocks, finish, usage)| answer(blocks, finish, usage.map(|(i, o)| Usage::new(i, o))))
    }

    /// An arbitrary event, of any choice, block and kind, in no order.
    #[derive(Debug, Clone)]
    enum Op {
        Start,
        BlockStart(u32, u32, u8),
        Delta(u32, u32, u8, String),
        Stop(u32, u32),
        Finish(u32, Finish),
        Usage(u64),
    }

    fn any_op() -> impl Strategy<Value = Op> {
        let choice = prop_oneof![4 => Just(0u32), 1 => Just(1u32)];
        prop_oneof![
            1 => Just(Op::Start),
            3 => (choice.clone(), 0u32..3, 0u8..4).prop_map(|(c, b, k)| Op::BlockStart(c, b, k)),
            6 => (choice.clone(), 0u32..3, 0u8..4, small_text()).prop_map(|(c, b, k, t)| Op::Delta(c, b, k, t)),
            2 => (choice.clone(), 0u32..3).prop_map(|(c, b)| Op::Stop(c, b)),
            1 => (choice, finish()).prop_map(|(c, f)| Op::Finish(c, f)),
            1 => (0u64..100).prop_map(Op::Usage),
        ]
    }

    fn event_of(op: &Op) -> Event<'_> {
        match op {
            Op::Start => Event::Start { id: "vendor", model: "vendor-model" },
            Op::BlockStart(choice, block, kind) => Event::BlockStart {
                choice: *choice,
                block: *block,
                kind: match kind {
                    0 => BlockKind::Text,
                    1 => BlockKind::Thinking,
                    2 => BlockKind::RedactedThinking { data: "opaque" },
                    _ => {
                        BlockKind::ToolCall { signature: None, id: if *block == 0 { "" } else { "call_1" }, name: "f" }
                    }
                },
            },
            Op::Delta(choice, block, kind, text) => Event::Delta {
                choice: *choice,
                block: *block,
                delta: match kind {
                    0 => Delta::Text(text),
                    1 => Delta::Thinking(text),
                    2 => Delta::Signature(text),
                    _ => Delta::ToolArguments(text),
                },
            },
            Op::Stop(choice, block) => Event::BlockStop { choice: *choice, block: *block },
            Op::Finish(choice, finish) => Event::Finish { choice: *choice, finish: finish.clone() },
            Op::Usage(n) => Event::Usage(Usage::new(*n, *n)),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_answers_stream_ends_with_its_encoded_response(answer in any_answer(), piece in 1usize..5) {
            let (request, params) = decoded(request!("function-round-trip"));
            let (out, stream) = run(&params, &events_of(&answer, piece), None);
            let checked = check(&out).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&out))))?;
            let expected = encode_answer(&answer, &request, &params, ID, CREATED);
            prop_assert_eq!(&checked.response, &expected);
            prop_assert_eq!(stream.response(), Some(&expected));
        }

        #[test]
        fn any_event_sequence_keeps_the_grammar(ops in proptest::collection::vec(any_op(), 0..40), end in 0u8..3) {
            let (_, params) = decoded(request!("string-input"));
            let events: Vec<Event<'_>> = ops.iter().map(event_of).collect();
            let error = GatewayError::upstream_stream_broken("vendor", "reset");
            let (mut out, mut stream) = run(&params, &events, (end == 1).then_some(&error));
            if end == 2 {
                // A second end writes nothing.
                let before = out.len();
                stream.fail(&error, &mut out);
                stream.complete(&mut out);
                prop_assert_eq!(out.len(), before);
            }
            let checked = check(&out).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&out))))?;
            prop_assert_eq!(stream.response(), Some(&checked.response));
            if end == 1 {
                prop_assert_eq!(checked.terminal.as_str(), "response.failed");
                prop_assert!(checked.error.is_some());
            } else {
                prop_assert_eq!(&checked.response, &from_items(&checked, &params));
            }
        }
    }
}
