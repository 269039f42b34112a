//! OpenAI's Responses API as a vendor, for an OpenAI-format provider that serves it
//! (`responses_api: true`): a Responses client's request passes through with only `model`
//! renamed, built-in tools and unknown members included, and the Response object or its event
//! stream comes back byte for byte. What makes it more than a copy:
//!
//! - Conversation state. A `previous_response_id` names the vendor's own response only if the
//!   vendor kept it (the provider forwards `store`, and the previous response came from this
//!   provider); otherwise the vendor is sent the gateway's stored history as input in its place
//!   ([`for_vendor`]). A provider that does not forward `store` is sent `store: false`: the
//!   Responses API stores by default, and a client must not write its prompts into the
//!   operator's vendor account unless the operator says so.
//! - The stream is read event by event (as [`super::openai::Stream`] reads Chat Completions):
//!   the usage and the final Response object come from `response.completed`, the vendor's
//!   `error` event before anything else is a failed attempt, and a stream that breaks off ends
//!   with `response.failed` and an `error` event instead of a silent truncation.

use super::{OutboundRequest, ParamReport, Prepared, StreamTranslator};
use crate::canonical::request::Source;
use crate::canonical::Request;
use crate::chat::{CompletionTokensDetails, PromptTokensDetails, Usage};
use crate::config::{Provider, ProviderKind};
use crate::error::GatewayError;
use crate::ingress::openai_responses::{failure_events, write_event};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;

/// The URL of the Responses endpoint: `{base}/responses`, and Azure's
/// `{base}/openai/responses?api-version=...` (its Responses API takes the deployment as
/// `model`).
pub fn url(provider: &Provider) -> String {
    match (provider.kind, &provider.api_version) {
        (ProviderKind::Azure, Some(version)) => format!("{}/openai/responses?api-version={version}", provider.base_url),
        _ => format!("{}/responses", provider.base_url),
    }
}

/// The vendor request: the client's bytes (as [`for_vendor`] made them) with `model` renamed.
pub fn chat_request(provider: &Provider, vendor_model: &str, request: &Request, api_key: Option<&str>) -> Prepared {
    let mut headers = Vec::with_capacity(3 + provider.headers.len());
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    let accept = if request.stream { "text/event-stream" } else { "application/json" };
    headers.push(("accept".to_owned(), accept.to_owned()));
    if let Some(key) = api_key {
        headers.push(super::openai::auth_header(provider, key));
    }
    headers.extend(provider.headers.iter().cloned());
    let body = request.source.with_model(vendor_model);
    let outbound = OutboundRequest { url: url(provider), headers, body };
    Prepared { outbound, report: ParamReport::default(), plan: super::ChatPlan::of(request) }
}

/// The request (sent as DELETE) that deletes the vendor's own copy of response `id`.
pub fn delete_request(provider: &Provider, id: &str, api_key: Option<&str>) -> OutboundRequest {
    let mut headers: Vec<(String, String)> =
        api_key.map(|key| super::openai::auth_header(provider, key)).into_iter().collect();
    headers.extend(provider.headers.iter().cloned());
    let url = match url(provider).split_once('?') {
        Some((path, query)) => format!("{path}/{id}?{query}"),
        None => format!("{}/{id}", url(provider)),
    };
    OutboundRequest { url, headers, body: Vec::new() }
}

/// What the vendor is to be sent of the conversation a request continues.
pub enum Chain<'a> {
    /// No `previous_response_id`, or one the vendor holds: the request as sent.
    AsSent,
    /// The vendor does not hold it: the stored conversation (`history`, oldest first) and the
    /// request's own input items go as its input, without `previous_response_id`.
    Replay { history: &'a [Value], input: &'a [Value] },
}

/// The client's request as this vendor is to get it: with `store: false` unless the vendor
/// keeps what the client stores (`vendor_stores`), and with the conversation replayed where
/// the vendor does not hold it. `None` when the client's bytes go as they are (the common
/// case: no copy).
pub fn for_vendor(
    source: &Source,
    stored: bool,
    vendor_stores: bool,
    chain: Chain,
) -> Result<Option<Source>, GatewayError> {
    let mut edits: Vec<(&str, Option<Value>)> = Vec::new();
    if stored && !vendor_stores {
        edits.push(("store", Some(Value::Bool(false))));
    }
    if let Chain::Replay { history, input } = chain {
        edits.push(("previous_response_id", None));
        let items = history.iter().chain(input).filter_map(replayable).collect();
        edits.push(("input", Some(Value::Array(items))));
    }
    if edits.is_empty() {
        return Ok(None);
    }
    source.edited(&edits).map(Some)
}

/// A stored item as input for a vendor that never saw it: without its id (which would name
/// an item the vendor does not have); a reasoning item only with its `encrypted_content`,
/// which is all another conversation can use of it.
fn replayable(item: &Value) -> Option<Value> {
    let Value::Object(members) = item else { return Some(item.clone()) };
    if members.get("type").and_then(Value::as_str) == Some("reasoning") {
        return members.get("encrypted_content").is_some_and(Value::is_string).then(|| item.clone());
    }
    let mut members = members.clone();
    members.remove("id");
    Some(Value::Object(members))
}

/// A Responses `usage` in the gateway's terms.
#[derive(Deserialize)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl From<ResponsesUsage> for Usage {
    fn from(u: ResponsesUsage) -> Usage {
        let mut usage = Usage::new(u.input_tokens, u.output_tokens);
        usage.prompt_tokens_details = u
            .input_tokens_details
            .map(|d| PromptTokensDetails { cached_tokens: d.cached_tokens, cache_creation_tokens: None });
        usage.completion_tokens_details =
            u.output_tokens_details.map(|d| CompletionTokensDetails { reasoning_tokens: d.reasoning_tokens });
        usage
    }
}

/// The usage a Response object reports, read without decoding the rest.
pub fn usage_of(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct UsageOnly {
        #[serde(default)]
        usage: Option<ResponsesUsage>,
    }
    serde_json::from_slice::<UsageOnly>(body).ok()?.usage.map(Usage::from)
}

/// The members of a stream event the gateway looks at, borrowed unparsed.
#[derive(Deserialize)]
struct EventProbe<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    sequence_number: Option<u64>,
    #[serde(default, borrow)]
    response: Option<&'a RawValue>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    item: Option<&'a RawValue>,
    #[serde(default, borrow)]
    part: Option<&'a RawValue>,
    #[serde(default, borrow)]
    delta: Option<Cow<'a, str>>,
}

/// The output item a stream has open, as its events have built it so far: what closing it
/// (should the vendor break off) must repeat.
struct OpenItem {
    /// As `response.output_item.added` had it.
    item: Value,
    output_index: u64,
    /// The text of the open content or summary part, if one is open.
    part: Option<String>,
    /// The parts done (a message's content, a reasoning item's summary).
    parts: Vec<Value>,
    /// A function call's arguments so far.
    arguments: String,
}

impl OpenItem {
    /// The events that close the item as far as it came, status `incomplete`; the item done.
    fn close(mut self, seq: &mut u64, out: &mut Vec<u8>) -> Value {
        let item_id = self.item["id"].clone();
        let output_index = self.output_index;
        let kind = self.item["type"].as_str().unwrap_or_default().to_owned();
        let index = self.parts.len();
        match (kind.as_str(), self.part.take()) {
            ("message", Some(text)) => {
                let at = json!({"item_id": item_id, "output_index": output_index, "content_index": index});
                let mut done = at.clone();
                done["text"] = json!(text);
                done["logprobs"] = json!([]);
                write_event(out, seq, "response.output_text.done", done);
                let part = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                let mut done = at;
                done["part"] = part.clone();
                write_event(out, seq, "response.content_part.done", done);
                self.parts.push(part);
            }
            ("reasoning", Some(text)) => {
                let at = json!({"item_id": item_id, "output_index": output_index, "summary_index": index});
                let mut done = at.clone();
                done["text"] = json!(text);
                write_event(out, seq, "response.reasoning_summary_text.done", done);
                let part = json!({"type": "summary_text", "text": text});
                let mut done = at;
                done["part"] = part.clone();
                write_event(out, seq, "response.reasoning_summary_part.done", done);
                self.parts.push(part);
            }
            _ => {}
        }
        match kind.as_str() {
            "message" => self.item["content"] = Value::Array(self.parts),
            "reasoning" => self.item["summary"] = Value::Array(self.parts),
            "function_call" => {
                let done = json!({
                    "item_id": item_id,
                    "output_index": output_index,
                    "name": self.item["name"],
                    "arguments": self.arguments,
                });
                write_event(out, seq, "response.function_call_arguments.done", done);
                self.item["arguments"] = json!(self.arguments);
            }
            _ => {}
        }
        self.item["status"] = json!("incomplete");
        write_event(out, seq, "response.output_item.done", json!({"output_index": output_index, "item": self.item}));
        self.item
    }
}

/// A Responses event stream passed through, event by event (see the module's doc).
pub struct Passthrough {
    provider: String,
    api_key: Option<String>,
    parser: crate::sse::SseParser,
    splitter: crate::sse::EventSplitter,
    /// The vendor's terminal event went by (or an error): nothing more is forwarded.
    ended: bool,
    error: Option<GatewayError>,
    usage: Option<Usage>,
    /// The next sequence number, for the events the gateway adds.
    seq: u64,
    /// The Response of `response.created`, for the `response.failed` of a broken stream.
    created: Option<Box<RawValue>>,
    /// The Response of `response.completed` or `response.incomplete`.
    last: Option<Vec<u8>>,
    /// The output items done, and the one open: what a broken stream's `response.failed` closes
    /// and lists, so that it ends in the API's grammar as a whole stream does.
    done_items: Vec<Value>,
    open: Option<OpenItem>,
}

/// What becomes of one of the vendor's events.
enum Verdict {
    Forward,
    /// Forwarded, and the last.
    End,
    Fail(GatewayError),
}

impl Passthrough {
    pub fn new(provider: &str, api_key: Option<&str>) -> Self {
        Self {
            provider: provider.to_owned(),
            api_key: api_key.map(str::to_owned),
            parser: crate::sse::SseParser::new(),
            splitter: crate::sse::EventSplitter::default(),
            ended: false,
            error: None,
            usage: None,
            seq: 0,
            created: None,
            last: None,
            done_items: Vec::new(),
            open: None,
        }
    }

    /// Ends the client's stream with `error` (without the vendor key).
    fn fail(&mut self, out: &mut Vec<u8>, error: GatewayError) {
        if self.ended {
            return;
        }
        let error = super::redacted(error, self.api_key.as_deref());
        let mut response = self
            .created
            .as_ref()
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"object": "response", "output": []}));
        if let Some(open) = self.open.take() {
            let item = open.close(&mut self.seq, out);
            self.done_items.push(item);
        }
        response["output"] = Value::Array(std::mem::take(&mut self.done_items));
        response["status"] = json!("failed");
        let code = if error.status == 429 { "rate_limit_exceeded" } else { "server_error" };
        response["error"] = json!({"code": code, "message": error.message});
        failure_events(response, &error, &mut self.seq, out);
        self.error = Some(error);
        self.ended = true;
    }

    /// One event, with the blank line that ends it.
    fn forward_event(&mut self, event: &[u8], out: &mut Vec<u8>) {
        let mut parser = std::mem::take(&mut self.parser);
        let mut verdict = None;
        let read = parser.push(event, &mut |_, data| {
            if !matches!(verdict, Some(Verdict::Fail(_))) {
                verdict = Some(self.judge(data));
            }
        });
        self.parser = parser;
        if let Err(too_large) = read {
            return self.fail(out, super::invalid_answer(&self.provider, too_large));
        }
        match verdict {
            // A comment or a keep-alive: as it came.
            None | Some(Verdict::Forward) => out.extend_from_slice(event),
            Some(Verdict::End) => {
                out.extend_from_slice(event);
                self.ended = true;
            }
            Some(Verdict::Fail(error)) => self.fail(out, error),
        }
    }

    fn judge(&mut self, data: &[u8]) -> Verdict {
        let invalid = |cause: String| Verdict::Fail(super::invalid_answer(&self.provider, cause));
        let text = match std::str::from_utf8(data) {
            Ok(text) => text,
            Err(e) => return invalid(format!("stream event: {e}")),
        };
        let probe = match serde_json::from_str::<EventProbe>(text) {
            Ok(probe) if text.trim_start().starts_with('{') => probe,
            Ok(_) => return invalid("a stream event that is no object".to_owned()),
            Err(e) => return invalid(format!("unreadable stream event: {}", super::decode_cause(&e))),
        };
        if let Some(seq) = probe.sequence_number {
            self.seq = seq.saturating_add(1);
        }
        match probe.kind.as_ref() {
            "error" => {
                let code = probe.code.as_deref().unwrap_or("upstream_error");
                let status = if code == "rate_limit_exceeded" { 429 } else { 502 };
                let kind = if status == 429 { "rate_limit_error" } else { "server_error" };
                let message = format!(
                    "Provider `{}` reported an error in its stream: {}",
                    self.provider,
                    probe.message.as_deref().unwrap_or(code)
                );
                let mut error = GatewayError::new(status, kind, "upstream_error", message);
                error.code = Some(Cow::Owned(code.to_owned()));
                Verdict::Fail(error)
            }
            "response.created" => {
                self.created = probe.response.map(RawValue::to_owned);
                Verdict::Forward
            }
            "response.output_item.added" => {
                let item = probe.item.and_then(|i| serde_json::from_str::<Value>(i.get()).ok());
                self.open = item.filter(Value::is_object).map(|item| OpenItem {
                    item,
                    output_index: self.done_items.len() as u64,
                    part: None,
                    parts: Vec::new(),
                    arguments: String::new(),
                });
                Verdict::Forward
            }
            "response.content_part.added" | "response.reasoning_summary_part.added" => {
                if let Some(open) = &mut self.open {
                    open.part = Some(String::new());
                }
                Verdict::Forward
            }
            "response.output_text.delta" | "response.reasoning_summary_text.delta" => {
                if let (Some(Some(text)), Some(delta)) = (self.open.as_mut().map(|o| o.part.as_mut()), &probe.delta) {
                    text.push_str(delta);
                }
                Verdict::Forward
            }
            "response.function_call_arguments.delta" => {
                if let (Some(open), Some(delta)) = (&mut self.open, &probe.delta) {
                    open.arguments.push_str(delta);
                }
                Verdict::Forward
            }
            "response.content_part.done" | "response.reasoning_summary_part.done" => {
                if let Some(open) = &mut self.open {
                    open.part = None;
                    open.parts.extend(probe.part.and_then(|p| serde_json::from_str(p.get()).ok()));
                }
                Verdict::Forward
            }
            "response.output_item.done" => {
                self.open = None;
                self.done_items.extend(probe.item.and_then(|i| serde_json::from_str(i.get()).ok()));
                Verdict::Forward
            }
            kind @ ("response.completed" | "response.incomplete" | "response.failed") => {
                if let Some(response) = probe.response {
                    self.usage = usage_of(response.get().as_bytes());
                    if kind != "response.failed" {
                        self.last = Some(response.get().as_bytes().to_vec());
                    }
                }
                Verdict::End
            }
            _ => Verdict::Forward,
        }
    }

    /// The final Response object (`response.completed` or `response.incomplete`), for a store.
    pub fn response(&self) -> Option<&[u8]> {
        self.last.as_deref()
    }
}

impl StreamTranslator for Passthrough {
    fn error(&self) -> Option<&GatewayError> {
        self.error.as_ref()
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn done(&self) -> bool {
        self.ended
    }

    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let mut splitter = std::mem::take(&mut self.splitter);
        let split = splitter.push(bytes, |event| {
            self.forward_event(event, out);
            !self.ended
        });
        self.splitter = splitter;
        if let Err(too_large) = split {
            self.fail(out, super::invalid_answer(&self.provider, too_large));
        }
    }

    /// The Responses API sends no `[DONE]`: the stream ends with its terminal event.
    fn finish(&mut self, error: Option<&str>, out: &mut Vec<u8>) {
        if let Some(event) = self.splitter.take_held().filter(|_| !self.ended) {
            self.forward_event(&event, out);
        }
        self.parser.finish();
        if !self.ended {
            let cause = error.unwrap_or("the stream ended before response.completed");
            self.fail(out, GatewayError::upstream_stream_broken(&self.provider, cause));
        }
    }

    fn final_answer(&self) -> Option<&[u8]> {
        self.response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::Dialect;

    const CREATED: &str =
        r#"{"id":"resp_1","object":"response","created_at":1,"status":"in_progress","model":"gpt-5","output":[]}"#;

    fn event(kind: &str, seq: u64, rest: &str) -> String {
        format!("event: {kind}\ndata: {{\"type\":\"{kind}\",\"sequence_number\":{seq}{rest}}}\n\n")
    }

    fn stream() -> String {
        let item = r#"{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}"#;
        let part = r#"{"type":"output_text","text":"","annotations":[],"logprobs":[]}"#;
        let done_part = r#"{"type":"output_text","text":"Hi there","annotations":[],"logprobs":[]}"#;
        let done_item = format!(
            r#"{{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{done_part}]}}"#
        );
        let completed = format!(
            r#"{{"id":"resp_1","object":"response","status":"completed","output":[{done_item}],"usage":{{"input_tokens":12,"input_tokens_details":{{"cached_tokens":4}},"output_tokens":7,"output_tokens_details":{{"reasoning_tokens":2}},"total_tokens":19}}}}"#
        );
        let at = r#","item_id":"msg_1","output_index":0,"content_index":0"#;
        [
            event("response.created", 0, &format!(",\"response\":{CREATED}")),
            event("response.output_item.added", 1, &format!(",\"output_index\":0,\"item\":{item}")),
            event("response.content_part.added", 2, &format!("{at},\"part\":{part}")),
            event("response.output_text.delta", 3, &format!("{at},\"delta\":\"Hi\",\"logprobs\":[]")),
            event("response.output_text.delta", 4, &format!("{at},\"delta\":\" there\",\"logprobs\":[]")),
            event("response.output_text.done", 5, &format!("{at},\"text\":\"Hi there\",\"logprobs\":[]")),
            event("response.content_part.done", 6, &format!("{at},\"part\":{done_part}")),
            event("response.output_item.done", 7, &format!(",\"output_index\":0,\"item\":{done_item}")),
            event("response.completed", 8, &format!(",\"response\":{completed}")),
        ]
        .concat()
    }

    /// Every event as (type, sequence number).
    fn events(sse: &[u8]) -> Vec<(String, u64)> {
        let mut parser = crate::sse::SseParser::new();
        let mut seen = Vec::new();
        parser
            .push(sse, &mut |_, data| {
                let v: Value = serde_json::from_slice(data).unwrap();
                seen.push((v["type"].as_str().unwrap().to_owned(), v["sequence_number"].as_u64().unwrap()));
            })
            .unwrap();
        seen
    }

    #[test]
    fn a_stream_passes_through_byte_for_byte_in_pieces_of_any_size() {
        let sse = stream();
        for size in [1, 2, 7, 64, sse.len()] {
            let mut p = Passthrough::new("openai", None);
            let mut out = Vec::new();
            for piece in sse.as_bytes().chunks(size) {
                p.push(piece, &mut out);
            }
            assert!(p.done());
            p.finish(None, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), sse, "pieces of {size}");
            let usage = p.usage().unwrap();
            assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (12, 7, 19));
            assert_eq!(usage.prompt_tokens_details.unwrap().cached_tokens, 4);
            assert_eq!(usage.completion_tokens_details.unwrap().reasoning_tokens, 2);
            let kept: Value = serde_json::from_slice(p.final_answer().unwrap()).unwrap();
            assert_eq!(kept["id"], "resp_1");
        }
    }

    #[test]
    fn a_broken_stream_ends_with_response_failed_and_an_error_event() {
        let sse = stream();
        let cut = sse.find("event: response.output_text.done").unwrap();
        let mut p = Passthrough::new("openai", Some("sk-secret"));
        let mut out = Vec::new();
        p.push(&sse.as_bytes()[..cut + 10], &mut out);
        p.finish(Some("connection reset by sk-secret"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(&sse[..cut]), "what came whole went as it came");
        assert!(!text.contains("sk-secret"), "{text}");
        let seen = events(text.as_bytes());
        let kinds: Vec<&str> = seen.iter().skip(5).map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.failed",
                "error"
            ],
            "the open item closed as far as it came, then the failure"
        );
        assert_eq!(
            seen.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>(),
            "sequence numbers go on"
        );
        let data: Vec<Value> =
            text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
        assert_eq!(data[5]["text"], "Hi there", "the deltas joined");
        let item = &data[7]["item"];
        assert_eq!(
            (item["status"].as_str(), item["content"][0]["text"].as_str()),
            (Some("incomplete"), Some("Hi there"))
        );
        let failed = &data[8]["response"];
        assert_eq!((failed["id"].as_str(), failed["status"].as_str()), (Some("resp_1"), Some("failed")));
        assert_eq!(failed["output"], json!([item]), "the response lists the items done");
        assert!(p.final_answer().is_none() && p.error().is_some());
    }

    #[test]
    fn a_function_call_cut_midway_is_closed_with_its_arguments_so_far() {
        let item = r#"{"id":"fc_1","type":"function_call","status":"in_progress","call_id":"call_1","name":"f","arguments":""}"#;
        let sse = [
            event("response.created", 0, &format!(",\"response\":{CREATED}")),
            event("response.output_item.added", 1, &format!(",\"output_index\":0,\"item\":{item}")),
            event(
                "response.function_call_arguments.delta",
                2,
                r#","item_id":"fc_1","output_index":0,"delta":"{\"a\":""#,
            ),
        ]
        .concat();
        let mut p = Passthrough::new("openai", None);
        let mut out = Vec::new();
        p.push(sse.as_bytes(), &mut out);
        p.finish(None, &mut out);
        let data: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: ").map(|d| serde_json::from_str(d).unwrap()))
            .collect();
        assert_eq!(data[3]["type"], "response.function_call_arguments.done");
        assert_eq!((data[3]["arguments"].as_str(), data[3]["name"].as_str()), (Some(r#"{"a":"#), Some("f")));
        assert_eq!(data[4]["item"]["status"], "incomplete");
        assert_eq!(data[5]["type"], "response.failed");
    }

    #[test]
    fn the_vendors_error_event_first_is_a_failed_attempt() {
        let sse = event("error", 0, r#","code":"rate_limit_exceeded","message":"slow down","param":null"#);
        let mut p = Passthrough::new("openai", None);
        let mut out = Vec::new();
        p.push(sse.as_bytes(), &mut out);
        let e = p.error().unwrap();
        assert_eq!((e.status, e.code.as_deref()), (429, Some("rate_limit_exceeded")));
        assert!(e.message.contains("slow down"));
        assert!(p.done());
    }

    #[test]
    fn an_unreadable_event_ends_the_stream() {
        let mut p = Passthrough::new("openai", None);
        let mut out = Vec::new();
        p.push(b"event: response.created\ndata: {not json\n\n", &mut out);
        assert_eq!(p.error().unwrap().code.as_deref(), Some("upstream_invalid_response"));
        let kinds: Vec<String> = events(&out).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, ["response.failed", "error"]);
    }

    fn source(body: &str) -> Source {
        let request = crate::ingress::openai_responses::decode(body.as_bytes().to_vec(), &[]).unwrap().0;
        assert_eq!(request.source.dialect, Dialect::OpenaiResponses);
        request.source
    }

    #[test]
    fn the_request_goes_as_sent_when_the_vendor_may_keep_it() {
        let s = source(r#"{"model":"m","input":"hi","previous_response_id":"resp_9","future":{"x":1}}"#);
        assert!(for_vendor(&s, true, true, Chain::AsSent).unwrap().is_none());
        // The client asked not to store: nothing to withhold.
        assert!(for_vendor(&s, false, false, Chain::AsSent).unwrap().is_none());
    }

    #[test]
    fn a_vendor_that_may_not_keep_it_is_told_not_to_store() {
        let s = source(r#"{"model":"m","input":"hi","store":true}"#);
        let sent = for_vendor(&s, true, false, Chain::AsSent).unwrap().unwrap();
        assert_eq!(std::str::from_utf8(&sent.bytes).unwrap(), r#"{"model":"m","input":"hi","store":false}"#);
        let s = source(r#"{"model":"m","input":"hi"}"#);
        let sent = for_vendor(&s, true, false, Chain::AsSent).unwrap().unwrap();
        assert_eq!(
            std::str::from_utf8(&sent.with_model("gpt-5")).unwrap(),
            r#"{"model":"gpt-5","input":"hi","store":false}"#
        );
    }

    #[test]
    fn a_chain_the_vendor_does_not_hold_is_replayed_without_ids() {
        let s = source(
            r#"{"model":"m","previous_response_id":"resp_9","input":"and then?","tools":[{"type":"web_search"}]}"#,
        );
        let history = [
            json!({"id": "msg_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}),
            json!({"id": "rs_1", "type": "reasoning", "summary": []}),
            json!({"id": "rs_2", "type": "reasoning", "summary": [], "encrypted_content": "e"}),
            json!({"id": "msg_2", "type": "message", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": "hello", "annotations": []}]}),
        ];
        let input = [
            json!({"id": "msg_3", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "and then?"}]}),
        ];
        let sent = for_vendor(&s, true, true, Chain::Replay { history: &history, input: &input }).unwrap().unwrap();
        let body: Value = serde_json::from_slice(&sent.bytes).unwrap();
        assert!(body.get("previous_response_id").is_none());
        assert_eq!(body["tools"], json!([{"type": "web_search"}]), "the rest as sent");
        let items = body["input"].as_array().unwrap();
        assert_eq!(items.len(), 4, "the reasoning without encrypted content is left out");
        assert_eq!(items[1]["id"], "rs_2");
        assert!(items.iter().filter(|i| i["type"] != "reasoning").all(|i| i.get("id").is_none()));
        assert_eq!(items[3]["content"][0]["text"], "and then?");
    }

    #[test]
    fn usage_of_a_response_object() {
        let u = usage_of(br#"{"id":"r","usage":{"input_tokens":3,"output_tokens":5,"total_tokens":8}}"#).unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (3, 5, 8));
        assert!(usage_of(br#"{"id":"r"}"#).is_none());
    }

    #[test]
    fn azure_serves_it_under_openai_with_its_api_version() {
        let p = Provider::new("az", ProviderKind::Azure, "https://r.openai.azure.com");
        assert!(url(&p).starts_with("https://r.openai.azure.com/openai/responses?api-version="));
        let delete = delete_request(&p, "resp_1", Some("k"));
        assert!(delete.url.starts_with("https://r.openai.azure.com/openai/responses/resp_1?api-version="));
        assert_eq!(delete.headers, [("api-key".to_owned(), "k".to_owned())]);
        let p = Provider::new("oa", ProviderKind::Openai, "https://api.openai.com/v1");
        assert_eq!(url(&p), "https://api.openai.com/v1/responses");
    }
}
