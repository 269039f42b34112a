//! The test-facing side: the record of received requests and the queue of faults, under
//! `/_mock/`:
//!
//! - `GET /_mock/requests`: every recorded request, oldest first, as
//!   `[{"method","path","query","headers":{name: value},"body","json"}]`;
//! - `DELETE /_mock/requests`: forget them;
//! - `POST /_mock/faults` with a fault (see `faults.rs`) or an array of them: apply to the next
//!   matching requests; `DELETE /_mock/faults`: remove every fault;
//! - `POST /_mock/reset`: both deletes at once, and forget the stored Responses (`responses.rs`);
//! - `GET /_mock/health`: 200 once the server accepts requests;
//! - `POST /_mock/shutdown`: stop the server.

use crate::faults::Fault;
use crate::{json, Body, Server};
use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::Mutex;

#[derive(Default)]
pub struct State {
    requests: Mutex<Vec<Value>>,
    faults: Mutex<Vec<Fault>>,
    /// The Responses API's stored responses, for retrieval and `previous_response_id`.
    pub responses: crate::responses::Store,
}

impl State {
    pub fn record(&self, parts: &Parts, body: &Bytes) {
        let headers: Map<String, Value> = parts
            .headers
            .iter()
            .map(|(name, value)| {
                (name.as_str().to_owned(), Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()))
            })
            .collect();
        let entry = json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body": String::from_utf8_lossy(body),
            "json": serde_json::from_slice::<Value>(body).ok(),
        });
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }

    /// The first fault matching this request, used up by one if it is counted.
    pub fn take_fault(&self, path: &str, model: Option<&str>) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let mut i = None;
        for (j, f) in faults.iter_mut().enumerate() {
            if !f.matches(path, model) {
                continue;
            }
            if let Some(ratio) = f.ratio {
                f.seen += 1;
                let due = (f.seen as f64 * ratio).floor() > ((f.seen - 1) as f64 * ratio).floor();
                if !due {
                    continue;
                }
            }
            i = Some(j);
            break;
        }
        let i = i?;
        let fault = faults[i].clone();
        if let Some(times) = faults[i].times.as_mut() {
            *times = times.saturating_sub(1);
            if *times == 0 {
                faults.remove(i);
            }
        }
        Some(fault)
    }
}

pub fn handle(server: &Server, method: &Method, path: &str, body: &Bytes) -> Response<Body> {
    let state = &server.state;
    match (method, path) {
        (&Method::GET, "health") => json(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "requests") => {
            let requests = state.requests.lock().unwrap_or_else(|p| p.into_inner());
            json(StatusCode::OK, &Value::Array(requests.clone()))
        }
        (&Method::DELETE, "requests") => {
            state.requests.lock().unwrap_or_else(|p| p.into_inner()).clear();
            json(StatusCode::OK, &json!({"cleared": "requests"}))
        }
        (&Method::POST, "faults") => {
            let parsed = serde_json::from_slice::<Value>(body).and_then(|v| match v {
                Value::Array(_) => serde_json::from_value::<Vec<Fault>>(v),
                other => serde_json::from_value::<Fault>(other).map(|f| vec![f]),
            });
            match parsed {
                Ok(new) => {
                    let count = new.len();
                    state.faults.lock().unwrap_or_else(|p| p.into_inner()).extend(new);
                    json(StatusCode::OK, &json!({"added": count}))
                }
                Err(e) => json(StatusCode::BAD_REQUEST, &json!({"error": format!("invalid fault: {e}")})),
            }
        }
        (&Method::DELETE, "faults") => {
            state.faults.lock().unwrap_or_else(|p| p.into_inner()).clear();
            json(StatusCode::OK, &json!({"cleared": "faults"}))
        }
        (&Method::POST, "reset") => {
            state.faults.lock().unwrap_or_else(|p| p.into_inner()).clear();
            state.requests.lock().unwrap_or_else(|p| p.into_inner()).clear();
            state.responses.clear();
            json(StatusCode::OK, &json!({"reset": true}))
        }
        (&Method::POST, "shutdown") => {
            server.shutdown.notify_one();
            json(StatusCode::OK, &json!({"stopping": true}))
        }
        _ => json(StatusCode::NOT_FOUND, &json!({"error": format!("no control endpoint {method} /_mock/{path}")})),
    }
}
