//! Golden tests of the media adapters, both directions, from fixtures of wire bytes.
//!
//! Each case is a folder `fixtures/media/<case>/` named after its route (`gemini-image*`,
//! `imagen*`, `gemini-tts*`, `gemini-transcription*`), holding:
//! - `openai-request.json`: the client's request (a transcription's form as
//!   `{"fields": {...}, "file": {"name", "type", "base64"}}`);
//! - `vendor-request.json`: the bodies the vendor must receive, in order, and `report.json`
//!   the parameters dropped and adjusted;
//! - `vendor-response.json`: the vendor's answer; `openai-response.json` the client's (for
//!   speech, the audio as `{"content_type", "base64", "tokens"}`), or `openai-error.json` the
//!   error the client gets for it.
//!
//! `BLESS=1 cargo test --test media` writes the expected files that are missing.

use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use switchyard_core::config::{Provider, ProviderKind};
use switchyard_core::media::gemini;
use switchyard_core::media::images::ImageAsk;
use switchyard_core::media::multipart::{self, Form};
use switchyard_core::media::speech::{self, SpeechRequest};
use switchyard_core::media::transcription::{self, TranscriptionRequest};
use switchyard_core::providers::{OutboundRequest, ParamPolicy};
use switchyard_core::GatewayError;

const CREATED: u64 = 1_750_000_000;
const KEY: &str = "gemini-fixture-key";

fn provider() -> Provider {
    Provider {
        api_key_secret: Some("KEY".into()),
        ..Provider::new("google", ProviderKind::Gemini, "https://generativelanguage.googleapis.com/v1beta")
    }
}

fn read(dir: &Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display())))
}

/// Compares `actual` with the fixture `name`, or writes it under `BLESS=1` when it is missing.
fn expect(dir: &Path, name: &str, actual: &Value) {
    match read(dir, name) {
        Some(expected) => assert_eq!(actual, &expected, "{}/{name}", dir.display()),
        None if std::env::var_os("BLESS").is_some() => {
            std::fs::write(dir.join(name), serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        }
        None => panic!("{}/{name} is missing (BLESS=1 writes it)", dir.display()),
    }
}

fn bodies(calls: &[OutboundRequest]) -> Value {
    for call in calls {
        assert!(call.headers.contains(&("x-goog-api-key".to_owned(), KEY.to_owned())));
        assert!(!call.url.contains(KEY), "the key never travels in the URL");
    }
    Value::Array(
        calls
            .iter()
            .map(|c| json!({"url": c.url, "body": serde_json::from_slice::<Value>(&c.body).unwrap()}))
            .collect(),
    )
}

fn error_json(e: &GatewayError) -> Value {
    serde_json::from_slice(&e.to_json())
        .map(|mut v: Value| {
            v["status"] = json!(e.status);
            v
        })
        .unwrap()
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    dirs
}

fn image_case(dir: &Path, imagen: bool) {
    let request = read(dir, "openai-request.json").unwrap();
    let ask = ImageAsk::generation(serde_json::to_vec(&request).unwrap()).unwrap();
    let mut policy = ParamPolicy::new("Gemini", false);
    let calls = if imagen {
        gemini::imagen_requests(&provider(), "imagen-4.0-generate-001", &ask, Some(KEY), &mut policy)
    } else {
        gemini::image_requests(&provider(), "gemini-2.5-flash-image", &ask, Some(KEY), &mut policy)
    }
    .unwrap();
    expect(dir, "vendor-request.json", &bodies(&calls));
    expect(dir, "report.json", &json!({"dropped": policy.report.dropped, "adjusted": policy.report.adjusted}));
    // One call in each case: the vendor's one answer.
    assert_eq!(calls.len(), 1, "{}", dir.display());
    let answers = [std::fs::read(dir.join("vendor-response.json")).unwrap()];
    let decoded =
        if imagen { gemini::imagen_answer("google", &answers) } else { gemini::images_answer("google", &answers) };
    match decoded {
        Ok(images) => expect(dir, "openai-response.json", &serde_json::from_slice(&images.encode(CREATED)).unwrap()),
        Err(e) => expect(dir, "openai-error.json", &error_json(&e)),
    }
}

fn speech_case(dir: &Path) {
    let request = read(dir, "openai-request.json").unwrap();
    let request = SpeechRequest::parse(serde_json::to_vec(&request).unwrap()).unwrap();
    let mut policy = ParamPolicy::new("Gemini", false);
    let format = speech::pcm_format(&request, &mut policy, "Gemini").unwrap();
    let call =
        gemini::speech_request(&provider(), "gemini-2.5-flash-preview-tts", &request, Some(KEY), &mut policy).unwrap();
    expect(dir, "vendor-request.json", &bodies(&[call]));
    expect(dir, "report.json", &json!({"dropped": policy.report.dropped, "adjusted": policy.report.adjusted}));
    let answer = std::fs::read(dir.join("vendor-response.json")).unwrap();
    let spoken = gemini::speech_answer("google", &answer).unwrap();
    let (audio, content_type) = speech::pcm_answer(&spoken.pcm, spoken.sample_rate, format, request.sse, spoken.tokens);
    let b64 = base64::engine::general_purpose::STANDARD.encode(audio);
    expect(dir, "openai-response.json", &json!({"content_type": content_type, "base64": b64, "tokens": spoken.tokens}));
}

fn transcription_case(dir: &Path) {
    let request = read(dir, "openai-request.json").unwrap();
    let audio = base64::engine::general_purpose::STANDARD.decode(request["file"]["base64"].as_str().unwrap()).unwrap();
    let fields: Vec<(String, String)> = request["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let mut parts: Vec<multipart::Field> = fields.iter().map(|(k, v)| (k.as_str(), None, v.as_bytes())).collect();
    parts.push(("file", request["file"]["name"].as_str(), &audio));
    let form = Form::parse("multipart/form-data; boundary=fixture", multipart::encode("fixture", &parts)).unwrap();
    let request = TranscriptionRequest::parse(form, false).unwrap();
    let mut policy = ParamPolicy::new("Gemini", false);
    let call =
        gemini::transcription_request(&provider(), "gemini-2.5-flash", &request, Some(KEY), &mut policy).unwrap();
    expect(dir, "vendor-request.json", &bodies(&[call]));
    expect(dir, "report.json", &json!({"dropped": policy.report.dropped, "adjusted": policy.report.adjusted}));
    let answer = std::fs::read(dir.join("vendor-response.json")).unwrap();
    let (text, tokens) = gemini::transcription_answer("google", &answer).unwrap();
    let (body, _) = transcription::encode(request.format(), &text, None, None, false, tokens).unwrap();
    expect(dir, "openai-response.json", &serde_json::from_slice(&body).unwrap());
}

#[test]
fn media_fixtures() {
    let cases = cases();
    assert!(cases.len() >= 6, "the fixtures are there");
    for dir in cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("gemini-image") {
            image_case(&dir, false);
        } else if name.starts_with("imagen") {
            image_case(&dir, true);
        } else if name.starts_with("gemini-tts") {
            speech_case(&dir);
        } else if name.starts_with("gemini-transcription") {
            transcription_case(&dir);
        } else {
            panic!("no route for the fixture {name}");
        }
    }
}
