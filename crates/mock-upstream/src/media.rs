//! Images and audio, as the vendors answer them, each request checked against the vendor's
//! documented contract first (a request that breaks it gets the vendor's own 400):
//!
//! - OpenAI (and Azure, by the same paths): `POST .../images/generations` (JSON) and
//!   `.../images/edits` (multipart, `image` or `image[]`, `mask`): an `ImagesResponse`, `b64_json`
//!   with token `usage` for the GPT image models, a URL for DALL·E unless `b64_json` is asked
//!   for, or an `image_generation.completed` event with `stream`; `.../audio/speech`: the audio
//!   in the asked-for format (WAV is a real WAV, the others bytes of the format's signature),
//!   sent in chunks (a fault's `chunk_delay_ms` between them) with its content type, or
//!   `speech.audio.delta`/`done` events with `stream_format: sse`; `.../audio/transcriptions`
//!   and `.../audio/translations` (multipart): the transcript in every `response_format`, with
//!   `usage` by duration (`whisper-*`) or by tokens (the others), streamed events with `stream`.
//! - Gemini: `generateContent` with `responseModalities: ["IMAGE"]` (an image, checked
//!   `imageConfig`; more than one candidate refused, as the image models refuse it), with
//!   `["AUDIO"]` (16-bit PCM at 24 kHz, `audio/L16;codec=pcm;rate=24000`, for a prebuilt voice),
//!   and with inline audio (a transcript naming what it heard); Imagen's `:predict`
//!   (`sampleCount` images, four by default, as Imagen's own). A prompt containing `forbidden`
//!   is withheld by the filters (Gemini's `IMAGE_SAFETY`, Imagen's `raiFilteredReason`).
//!
//! Every answer's image is the same small PNG; what was asked for is in the headers
//! `x-mock-size` and `x-mock-quality` of image answers, for the tests.

use crate::faults::Fault;
use crate::wire::{event_stream, json_answer, now};
use crate::{json, Body};
use base64::Engine;
use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// A 16x16 PNG.
pub const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAFklEQVR42mOQqzhBEmIY1TCqYfhqAABoaV4QiY2AzgAAAABJRU5ErkJggg==";

/// Gemini's prebuilt voices.
const VOICES: &[&str] = &[
    "Zephyr",
    "Puck",
    "Charon",
    "Kore",
    "Fenrir",
    "Leda",
    "Orus",
    "Aoede",
    "Callirrhoe",
    "Autonoe",
    "Enceladus",
    "Iapetus",
    "Umbriel",
    "Algieba",
    "Despina",
    "Erinome",
    "Algenib",
    "Rasalgethi",
    "Laomedeia",
    "Achernar",
    "Alnilam",
    "Schedar",
    "Gacrux",
    "Pulcherrima",
    "Achird",
    "Zubenelgenubi",
    "Vindemiatrix",
    "Sadachbia",
    "Sadaltager",
    "Sulafat",
];

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn openai_error(status: StatusCode, message: &str, param: Option<&str>) -> Response<Body> {
    json(status, &json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}}))
}

fn invalid(message: &str, param: &str) -> Response<Body> {
    openai_error(StatusCode::BAD_REQUEST, message, Some(param))
}

/// OpenAI's media endpoints want a key, as `Authorization: Bearer` or (Azure) `api-key`.
fn unauthorized(parts: &Parts) -> Option<Response<Body>> {
    let has = |name: &str| parts.headers.get(name).is_some_and(|v| !v.is_empty());
    (!has("authorization") && !has("api-key"))
        .then(|| openai_error(StatusCode::UNAUTHORIZED, "You didn't provide an API key.", None))
}

// ---- Multipart, read for what the contract says (a lenient reading: the gateway's is strict) ----

/// One part of a form: its name, file name, content type and content.
pub struct FormPart {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub content: Vec<u8>,
}

/// The parts of a `multipart/form-data` body, or why it is not one.
pub fn form(parts: &Parts, body: &[u8]) -> Result<Vec<FormPart>, String> {
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(format!("Invalid Content-Type header ({content_type}), expected multipart/form-data."));
    }
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_owned())
        .ok_or("The multipart body has no boundary.")?;
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut out = Vec::new();
    let positions: Vec<usize> = find_all(text, delimiter.as_bytes());
    if positions.is_empty() {
        return Err("The multipart body holds no part.".into());
    }
    for window in positions.windows(2) {
        let start = window[0] + delimiter.len();
        let chunk = &text[start..window[1]];
        let chunk = chunk.strip_prefix(b"\r\n").ok_or("A part does not start with CRLF.")?;
        let split = find_all(chunk, b"\r\n\r\n").first().copied().ok_or("A part's headers do not end.")?;
        let headers = String::from_utf8_lossy(&chunk[..split]).into_owned();
        let mut content = chunk[split + 4..].to_vec();
        if content.ends_with(b"\r\n") {
            content.truncate(content.len() - 2);
        }
        let mut part = FormPart { name: String::new(), filename: None, content_type: None, content };
        for line in headers.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                part.name = param(line, "name").unwrap_or_default();
                part.filename = param(line, "filename");
            } else if let Some(value) = lower.strip_prefix("content-type:") {
                part.content_type = Some(value.trim().to_owned());
            }
        }
        if part.name.is_empty() {
            return Err("A part has no name.".into());
        }
        out.push(part);
    }
    if !text[positions[positions.len() - 1] + delimiter.len()..].starts_with(b"--") {
        return Err("The multipart body has no closing boundary.".into());
    }
    Ok(out)
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + needle.len() <= haystack.len() {
        if &haystack[at..at + needle.len()] == needle {
            found.push(at);
            at += needle.len();
        } else {
            at += 1;
        }
    }
    found
}

fn param(line: &str, name: &str) -> Option<String> {
    let key = format!("; {name}=\"");
    let start = line.find(&key)? + key.len();
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}

fn field<'a>(parts: &'a [FormPart], name: &str) -> Option<&'a str> {
    parts.iter().find(|p| p.name == name && p.filename.is_none()).and_then(|p| std::str::from_utf8(&p.content).ok())
}

/// The `model` of a multipart body, for matching faults.
pub fn form_model(parts: &Parts, body: &[u8]) -> Option<String> {
    form(parts, body).ok().and_then(|f| field(&f, "model").map(str::to_owned))
}

// ---- OpenAI's images ----

/// Checks the parameters every image request shares; the model decides what is allowed.
fn check_image_params(
    model: &str,
    get: &dyn Fn(&str) -> Option<String>,
    edit: bool,
) -> Result<u64, Box<Response<Body>>> {
    let gpt_image = model.contains("gpt-image");
    let prompt = get("prompt").unwrap_or_default();
    if prompt.trim().is_empty() {
        return Err(Box::new(invalid("Missing required parameter: 'prompt'.", "prompt")));
    }
    let n = match get("n") {
        None => 1,
        Some(n) => match n.parse::<u64>() {
            Ok(n) if (1..=10).contains(&n) => n,
            _ => return Err(Box::new(invalid("Invalid 'n': must be an integer between 1 and 10.", "n"))),
        },
    };
    if model.starts_with("dall-e-3") && n > 1 {
        return Err(Box::new(invalid("Invalid 'n': dall-e-3 supports only n=1.", "n")));
    }
    let sizes: &[&str] = if gpt_image {
        &["auto", "1024x1024", "1536x1024", "1024x1536"]
    } else if model.starts_with("dall-e-3") {
        &["1024x1024", "1792x1024", "1024x1792"]
    } else {
        &["256x256", "512x512", "1024x1024", "auto", "1536x1024", "1024x1536", "1792x1024", "1024x1792"]
    };
    if let Some(size) = get("size") {
        if !sizes.contains(&size.as_str()) {
            return Err(Box::new(invalid(
                &format!("Invalid size '{size}'. Supported sizes are {}.", sizes.join(", ")),
                "size",
            )));
        }
    }
    if gpt_image && get("response_format").is_some() {
        return Err(Box::new(invalid("Unknown parameter: 'response_format'.", "response_format")));
    }
    if !gpt_image && !edit {
        for name in ["output_format", "background", "moderation", "output_compression"] {
            if get(name).is_some() {
                return Err(Box::new(invalid(&format!("Unknown parameter: '{name}'."), name)));
            }
        }
    }
    Ok(n)
}

fn images_answer(model: &str, n: u64, get: &dyn Fn(&str) -> Option<String>, fault: Option<&Fault>) -> Response<Body> {
    let gpt_image = model.contains("gpt-image");
    let url = !gpt_image && get("response_format").as_deref() != Some("b64_json");
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if url {
                json!({"url": format!("https://mock-upstream.invalid/images/{i}.png"), "revised_prompt": get("prompt")})
            } else {
                json!({"b64_json": PNG_B64})
            }
        })
        .collect();
    let mut answer = json!({"created": now(), "data": data});
    if gpt_image {
        let prompt_tokens = get("prompt").map_or(1, |p| p.len().div_ceil(4)) as u64;
        let output = 4160 * n;
        answer["usage"] = json!({"total_tokens": prompt_tokens + output, "input_tokens": prompt_tokens, "output_tokens": output,
            "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0}});
        answer["output_format"] = json!(get("output_format").unwrap_or_else(|| "png".into()));
        answer["size"] = json!(get("size").filter(|s| s != "auto").unwrap_or_else(|| "1024x1024".into()));
        answer["quality"] = json!(get("quality").filter(|q| q != "auto").unwrap_or_else(|| "high".into()));
    }
    if get("stream").as_deref() == Some("true") {
        let event = json!({"type": "image_generation.completed", "b64_json": PNG_B64, "created_at": now(),
            "size": answer["size"], "quality": answer["quality"], "background": "opaque", "output_format": "png", "usage": answer["usage"]});
        let bytes = format!("event: image_generation.completed\ndata: {event}\n\n");
        return event_stream(vec![Bytes::from(bytes)], fault);
    }
    let mut response = json_answer(&answer, fault);
    for (name, value) in [("x-mock-size", get("size")), ("x-mock-quality", get("quality"))] {
        if let Some(value) = value.and_then(|v| v.parse().ok()) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

pub fn image_generations(parts: &Parts, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    if let Some(refused) = unauthorized(parts) {
        return refused;
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("We could not parse the JSON body of your request.", "");
    };
    let get = |name: &str| match request.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let model = get("model").unwrap_or_else(|| "dall-e-2".into());
    match check_image_params(&model, &get, false) {
        Ok(n) => images_answer(&model, n, &get, fault),
        Err(refused) => *refused,
    }
}

pub fn image_edits(parts: &Parts, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    if let Some(refused) = unauthorized(parts) {
        return refused;
    }
    let form = match form(parts, body) {
        Ok(form) => form,
        Err(why) => return invalid(&why, ""),
    };
    let images: Vec<&FormPart> = form.iter().filter(|p| p.name == "image" || p.name == "image[]").collect();
    if images.is_empty() || images.iter().any(|p| p.filename.is_none() || p.content.is_empty()) {
        return invalid("Missing required parameter: 'image' (one or more files).", "image");
    }
    if images.len() > 16 {
        return invalid("Too many images: at most 16.", "image");
    }
    if images.iter().any(|p| {
        !(p.content.starts_with(b"\x89PNG") || p.content.starts_with(b"\xff\xd8\xff") || p.content.starts_with(b"RIFF"))
    }) {
        return invalid("Invalid image file: use a png, webp or jpg file.", "image");
    }
    let get = |name: &str| field(&form, name).map(str::to_owned);
    let model = get("model").unwrap_or_else(|| "gpt-image-1".into());
    match check_image_params(&model, &get, true) {
        Ok(n) => images_answer(&model, n, &get, fault),
        Err(refused) => *refused,
    }
}

// ---- OpenAI's audio ----

/// 16-bit PCM at 24 kHz, a triangle tone, `seconds` long.
fn pcm(seconds: f64) -> Vec<u8> {
    let samples = (seconds * 24_000.0) as usize;
    let mut out = Vec::with_capacity(samples * 2);
    for i in 0..samples {
        let phase = (i % 54) as i16 * 100;
        out.extend_from_slice(&(phase - 2700).to_le_bytes());
    }
    out
}

fn wav(pcm: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pcm.len() + 44);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(pcm.len() as u32 + 36).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    for v in [16u32, 0x0001_0001, 24_000, 48_000, 0x0010_0002] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    out.extend_from_slice(pcm);
    out
}

/// The bytes of speech in `format`: a real WAV or PCM, else the format's signature and filler.
fn audio(format: &str, seconds: f64) -> Vec<u8> {
    let samples = pcm(seconds);
    let signature: &[u8] = match format {
        "wav" => return wav(&samples),
        "pcm" => return samples,
        "opus" => b"OggS\0\x02",
        "flac" => b"fLaC\0\0\0\x22",
        "aac" => b"\xff\xf1\x50\x80",
        _ => b"ID3\x04\0\0\0\0\0\0",
    };
    let mut out = signature.to_vec();
    out.resize(samples.len() / 8 + signature.len(), 0x55);
    out
}

pub fn speech(parts: &Parts, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    if let Some(refused) = unauthorized(parts) {
        return refused;
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("We could not parse the JSON body of your request.", "");
    };
    if request.get("model").and_then(Value::as_str).is_none() {
        return invalid("Missing required parameter: 'model'.", "model");
    }
    let input = request.get("input").and_then(Value::as_str).unwrap_or_default();
    if input.is_empty() || input.chars().count() > 4096 {
        return invalid("'input' is required, at most 4096 characters.", "input");
    }
    match request.get("voice") {
        Some(Value::String(v)) if !v.is_empty() => {}
        Some(Value::Object(o)) if o.get("id").is_some_and(Value::is_string) => {}
        _ => return invalid("Missing required parameter: 'voice'.", "voice"),
    }
    let format = request.get("response_format").and_then(Value::as_str).unwrap_or("mp3");
    let content_type = match format {
        "mp3" => "audio/mpeg",
        "opus" => "audio/opus",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        other => return invalid(&format!("Invalid value: '{other}'."), "response_format"),
    };
    let seconds = (input.chars().count() as f64 * 0.06).clamp(0.2, 10.0);
    let bytes = audio(format, seconds);
    let chunks = fault.and_then(|f| f.stream_chunks).unwrap_or(8).max(1);
    if request.get("stream_format").and_then(Value::as_str) == Some("sse") {
        let tokens = input.len().div_ceil(4);
        let mut events: Vec<Bytes> = bytes
            .chunks(bytes.len().div_ceil(chunks).max(1))
            .map(|c| {
                Bytes::from(format!("data: {}\n\n", json!({"type": "speech.audio.delta", "audio": b64().encode(c)})))
            })
            .collect();
        let done = json!({"type": "speech.audio.done", "usage": {"input_tokens": tokens, "output_tokens": tokens * 10, "total_tokens": tokens * 11}});
        events.push(Bytes::from(format!("data: {done}\n\n")));
        return event_stream(events, fault);
    }
    let pieces: Vec<Bytes> = bytes.chunks(bytes.len().div_ceil(chunks).max(1)).map(Bytes::copy_from_slice).collect();
    let mut response = event_stream(pieces, fault);
    response.headers_mut().insert("content-type", content_type.parse().expect("static"));
    response.headers_mut().remove("cache-control");
    response
}

/// The seconds of a WAV upload, or a second a 16,000 bytes of anything else.
fn seconds_of(bytes: &[u8]) -> f64 {
    if bytes.starts_with(b"RIFF") && bytes.len() >= 44 && &bytes[36..40] == b"data" {
        let rate = u32::from_le_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]).max(1);
        return (bytes.len() - 44) as f64 / f64::from(rate);
    }
    (bytes.len() as f64 / 16_000.0).max(0.1)
}

pub fn transcriptions(parts: &Parts, body: &[u8], fault: Option<&Fault>, translate: bool) -> Response<Body> {
    if let Some(refused) = unauthorized(parts) {
        return refused;
    }
    let form = match form(parts, body) {
        Ok(form) => form,
        Err(why) => return invalid(&why, ""),
    };
    let Some(file) = form.iter().find(|p| p.name == "file" && p.filename.is_some()) else {
        return invalid("Missing required parameter: 'file'.", "file");
    };
    let Some(model) = field(&form, "model") else {
        return invalid("Missing required parameter: 'model'.", "model");
    };
    let format = field(&form, "response_format").unwrap_or("json");
    let formats: &[&str] =
        if model.starts_with("whisper") { &["json", "text", "srt", "verbose_json", "vtt"] } else { &["json", "text"] };
    if !formats.contains(&format) {
        return invalid(
            &format!("response_format '{format}' is not compatible with model '{model}'."),
            "response_format",
        );
    }
    let seconds = seconds_of(&file.content);
    let what = if translate { "Translation" } else { "Transcript" };
    let text = format!(
        "{what} of {} ({} bytes) by mock-upstream.",
        file.filename.as_deref().unwrap_or(""),
        file.content.len()
    );
    if field(&form, "stream") == Some("true") && !translate && !model.starts_with("whisper") {
        let delta = json!({"type": "transcript.text.delta", "delta": text});
        let done = json!({"type": "transcript.text.done", "text": text,
            "usage": {"type": "tokens", "input_tokens": 10, "output_tokens": 5, "total_tokens": 15}});
        return event_stream(
            vec![Bytes::from(format!("data: {delta}\n\n")), Bytes::from(format!("data: {done}\n\n"))],
            fault,
        );
    }
    let stamp = |s: f64, sep: char| {
        let ms = (s * 1000.0).round() as u64;
        format!("{:02}:{:02}:{:02}{sep}{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
    };
    let plain = |body: String, content_type: &str| crate::full(StatusCode::OK, content_type, body);
    match format {
        "text" => plain(format!("{text}\n"), "text/plain; charset=utf-8"),
        "srt" => plain(
            format!("1\n{} --> {}\n{text}\n\n", stamp(0.0, ','), stamp(seconds, ',')),
            "text/plain; charset=utf-8",
        ),
        "vtt" => plain(
            format!("WEBVTT\n\n{} --> {}\n{text}\n\n", stamp(0.0, '.'), stamp(seconds, '.')),
            "text/vtt; charset=utf-8",
        ),
        "verbose_json" => json_answer(
            &json!({"task": if translate { "translate" } else { "transcribe" }, "language": "english", "duration": seconds, "text": text,
                "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text, "tokens": [1, 2], "temperature": 0.0,
                              "avg_logprob": -0.2, "compression_ratio": 1.2, "no_speech_prob": 0.01}],
                "usage": {"type": "duration", "seconds": seconds.ceil()}}),
            fault,
        ),
        _ => {
            let usage = if model.starts_with("whisper") {
                json!({"type": "duration", "seconds": seconds.ceil()})
            } else {
                json!({"type": "tokens", "input_tokens": 10, "input_token_details": {"text_tokens": 0, "audio_tokens": 10}, "output_tokens": 5, "total_tokens": 15})
            };
            json_answer(&json!({"text": text, "usage": usage}), fault)
        }
    }
}

// ---- Gemini ----

fn gemini_invalid(message: &str) -> Response<Body> {
    json(StatusCode::BAD_REQUEST, &crate::gemini::error(400, message))
}

/// What a `generateContent` request asks for when it is a media request.
pub enum GeminiMedia {
    Image,
    Speech,
    Transcription,
}

pub fn gemini_media(request: &Value) -> Option<GeminiMedia> {
    let modalities = request.pointer("/generationConfig/responseModalities").and_then(Value::as_array);
    let has =
        |m: &str| modalities.is_some_and(|ms| ms.iter().any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(m))));
    if has("IMAGE") {
        return Some(GeminiMedia::Image);
    }
    if has("AUDIO") {
        return Some(GeminiMedia::Speech);
    }
    let audio_in =
        request["contents"].as_array().into_iter().flatten().any(|c| {
            c["parts"].as_array().into_iter().flatten().any(|p| {
                p.pointer("/inlineData/mimeType").and_then(Value::as_str).is_some_and(|m| m.starts_with("audio/"))
            })
        });
    audio_in.then_some(GeminiMedia::Transcription)
}

/// Every part of the request's contents, checked: text, or inline data of a type in `types`
/// whose data is base64. Returns the text and the inline data's (type, byte length).
/// A request's text, and its inline data's (type, byte length).
type Read = (String, Vec<(String, usize)>);

fn contents(request: &Value, types: &[&str]) -> Result<Read, Box<Response<Body>>> {
    let mut text = String::new();
    let mut inline = Vec::new();
    let turns = request["contents"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Box::new(gemini_invalid("* GenerateContentRequest.contents: contents is not specified")))?;
    for part in turns.iter().flat_map(|t| t["parts"].as_array().cloned().unwrap_or_default()) {
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(data) = part.get("inlineData") {
            let mime = data["mimeType"].as_str().unwrap_or_default();
            if !types.contains(&mime) {
                return Err(Box::new(gemini_invalid(&format!("Unsupported MIME type: {mime}"))));
            }
            let bytes = b64().decode(data["data"].as_str().unwrap_or_default()).map_err(|_| {
                gemini_invalid(
                    "Invalid value at 'contents[0].parts[1].inline_data.data' (TYPE_BYTES), Base64 decoding failed",
                )
            })?;
            inline.push((mime.to_owned(), bytes.len()));
        } else {
            return Err(Box::new(gemini_invalid(
                "Invalid JSON payload received. A part has neither text nor inlineData.",
            )));
        }
    }
    Ok((text, inline))
}

fn gemini_answer(parts: Value, finish: &str, prompt: u64, candidates: u64, modality: &str, model: &str) -> Value {
    json!({"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": candidates, "totalTokenCount": prompt + candidates,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            "candidatesTokensDetails": [{"modality": modality, "tokenCount": candidates}]},
        "modelVersion": model, "responseId": format!("mock-{}", now())})
}

pub fn gemini_generate(kind: GeminiMedia, path: &str, request: &Value, fault: Option<&Fault>) -> Response<Body> {
    let model = path.rsplit('/').next().unwrap_or_default().split(':').next().unwrap_or_default();
    let config = &request["generationConfig"];
    match kind {
        GeminiMedia::Image => {
            if config["candidateCount"].as_u64().is_some_and(|c| c > 1) {
                return gemini_invalid(&format!("Multiple candidates is not enabled for models/{model}"));
            }
            let ratios = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"];
            if let Some(ratio) = config.pointer("/imageConfig/aspectRatio") {
                if !ratio.as_str().is_some_and(|r| ratios.contains(&r)) {
                    return gemini_invalid(&format!("Unsupported aspect ratio: {ratio}"));
                }
            }
            if let Some(size) = config.pointer("/imageConfig/imageSize") {
                if !model.starts_with("gemini-3") || !size.as_str().is_some_and(|s| ["1K", "2K", "4K"].contains(&s)) {
                    return gemini_invalid(&format!("imageSize {size} is not supported by models/{model}"));
                }
            }
            let (prompt, inline) =
                match contents(request, &["image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"]) {
                    Ok(read) => read,
                    Err(refused) => return *refused,
                };
            let tokens = (prompt.len() as u64).div_ceil(4) + 258 * inline.len() as u64;
            if prompt.contains("forbidden") {
                return json_answer(&gemini_answer(json!([]), "IMAGE_SAFETY", tokens, 0, "IMAGE", model), fault);
            }
            let parts = json!([{"text": "Here is the image you asked for."}, {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]);
            json_answer(&gemini_answer(parts, "STOP", tokens, 1290, "IMAGE", model), fault)
        }
        GeminiMedia::Speech => {
            let voice =
                config.pointer("/speechConfig/voiceConfig/prebuiltVoiceConfig/voiceName").and_then(Value::as_str);
            if !voice.is_some_and(|v| VOICES.contains(&v)) {
                return gemini_invalid(&format!("Voice name {} is not supported.", voice.unwrap_or("(none)")));
            }
            let (text, inline) = match contents(request, &[]) {
                Ok(read) => read,
                Err(refused) => return *refused,
            };
            if text.is_empty() || !inline.is_empty() {
                return gemini_invalid("A speech request is text alone.");
            }
            let seconds = (text.chars().count() as f64 * 0.06).clamp(0.2, 10.0);
            let samples = pcm(seconds);
            let parts =
                json!([{"inlineData": {"mimeType": "audio/L16;codec=pcm;rate=24000", "data": b64().encode(&samples)}}]);
            let tokens = (seconds * 25.0) as u64;
            json_answer(&gemini_answer(parts, "STOP", (text.len() as u64).div_ceil(4), tokens, "AUDIO", model), fault)
        }
        GeminiMedia::Transcription => {
            let types = ["audio/wav", "audio/mp3", "audio/aiff", "audio/aac", "audio/ogg", "audio/flac"];
            let (prompt, inline) = match contents(request, &types) {
                Ok(read) => read,
                Err(refused) => return *refused,
            };
            let Some((mime, bytes)) = inline.first() else { return gemini_invalid("No audio.") };
            let what = if prompt.starts_with("Translate") { "Translation" } else { "Transcript" };
            let text = format!("{what} of {bytes} bytes of {mime} by mock-upstream.");
            let audio_tokens = (*bytes as u64).div_ceil(1000);
            let parts = json!([{"text": text}]);
            json_answer(
                &gemini_answer(parts, "STOP", (prompt.len() as u64).div_ceil(4) + audio_tokens, 12, "TEXT", model),
                fault,
            )
        }
    }
}

/// Imagen's `:predict`.
pub fn imagen_predict(parts: &Parts, body: &[u8], fault: Option<&Fault>) -> Response<Body> {
    if parts.uri.query().unwrap_or_default().split('&').any(|p| p.starts_with("key="))
        || parts.headers.get("x-goog-api-key").is_none()
    {
        return json(StatusCode::FORBIDDEN, &crate::gemini::error(403, "Method doesn't allow unregistered callers."));
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return gemini_invalid("Invalid JSON payload received.");
    };
    let prompt = request.pointer("/instances/0/prompt").and_then(Value::as_str).unwrap_or_default();
    if prompt.is_empty() {
        return gemini_invalid("* PredictRequest.instances[0].prompt: prompt is required");
    }
    let parameters = &request["parameters"];
    let samples = match parameters.get("sampleCount") {
        None => 4,
        Some(n) => match n.as_u64() {
            Some(n @ 1..=4) => n,
            _ => return gemini_invalid("sampleCount must be between 1 and 4."),
        },
    };
    if let Some(ratio) = parameters.get("aspectRatio") {
        if !ratio.as_str().is_some_and(|r| ["1:1", "3:4", "4:3", "9:16", "16:9"].contains(&r)) {
            return gemini_invalid(&format!("Unsupported aspect ratio: {ratio}"));
        }
    }
    if let Some(size) = parameters.get("imageSize") {
        if !size.as_str().is_some_and(|s| ["1K", "2K"].contains(&s)) {
            return gemini_invalid(&format!("Unsupported image size: {size}"));
        }
    }
    let predictions: Vec<Value> = (0..samples)
        .map(|_| {
            if prompt.contains("forbidden") {
                json!({"raiFilteredReason": "Your current safety filter threshold filtered out the generated image."})
            } else {
                json!({"bytesBase64Encoded": PNG_B64, "mimeType": "image/png"})
            }
        })
        .collect();
    json_answer(&json!({"predictions": predictions}), fault)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    const FORM: &str = "multipart/form-data; boundary=BB";

    fn form_body(fields: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, filename, content) in fields {
            out.extend_from_slice(format!("--BB\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
            if let Some(f) = filename {
                out.extend_from_slice(
                    format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream").as_bytes(),
                );
            }
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(content);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--BB--\r\n");
        out
    }

    #[tokio::test]
    async fn openai_images_follow_the_contract() {
        let parts = testing::parts("/v1/images/generations", &[("authorization", "Bearer k")]);
        let (status, answer) =
            testing::json(image_generations(&parts, br#"{"model":"gpt-image-1","prompt":"otter","n":2}"#, None)).await;
        assert_eq!(status, 200);
        assert_eq!(answer["data"].as_array().unwrap().len(), 2);
        assert_eq!(answer["usage"]["output_tokens"], 8320);
        let (_, answer) =
            testing::json(image_generations(&parts, br#"{"model":"dall-e-3","prompt":"otter"}"#, None)).await;
        assert!(answer["data"][0]["url"].is_string());
        for body in [
            &br#"{"model":"gpt-image-1"}"#[..],
            br#"{"model":"gpt-image-1","prompt":"x","size":"1792x1024"}"#,
            br#"{"model":"gpt-image-1","prompt":"x","response_format":"url"}"#,
            br#"{"model":"dall-e-3","prompt":"x","n":2}"#,
        ] {
            let (status, _) = testing::json(image_generations(&parts, body, None)).await;
            assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
        }
        let anonymous = testing::parts("/v1/images/generations", &[]);
        assert_eq!(testing::json(image_generations(&anonymous, br#"{"prompt":"x"}"#, None)).await.0, 401);
    }

    #[tokio::test]
    async fn edits_and_transcriptions_read_their_forms() {
        let parts = testing::parts("/v1/images/edits", &[("authorization", "Bearer k"), ("content-type", FORM)]);
        let body = form_body(&[
            ("model", None, b"gpt-image-1"),
            ("prompt", None, b"hat"),
            ("image[]", Some("a.png"), b"\x89PNG.."),
        ]);
        assert_eq!(form_model(&parts, &body).as_deref(), Some("gpt-image-1"));
        assert_eq!(testing::json(image_edits(&parts, &body, None)).await.0, 200);
        let no_image = form_body(&[("model", None, b"gpt-image-1"), ("prompt", None, b"hat")]);
        assert_eq!(testing::json(image_edits(&parts, &no_image, None)).await.0, 400);
        let body = form_body(&[
            ("model", None, b"whisper-1"),
            ("file", Some("a.wav"), &wav(&pcm(1.0))),
            ("response_format", None, b"verbose_json"),
        ]);
        let (status, answer) = testing::json(transcriptions(&parts, &body, None, false)).await;
        assert_eq!((status, answer["duration"].as_f64()), (200, Some(1.0)));
        let body = form_body(&[
            ("model", None, b"gpt-4o-transcribe"),
            ("file", Some("a.wav"), b"RIFF"),
            ("response_format", None, b"srt"),
        ]);
        assert_eq!(testing::json(transcriptions(&parts, &body, None, false)).await.0, 400);
        let not_a_form = testing::parts(
            "/v1/audio/transcriptions",
            &[("authorization", "Bearer k"), ("content-type", "application/json")],
        );
        assert_eq!(testing::json(transcriptions(&not_a_form, b"{}", None, false)).await.0, 400);
    }

    #[tokio::test]
    async fn speech_comes_in_its_format() {
        let parts = testing::parts("/v1/audio/speech", &[("authorization", "Bearer k")]);
        let response =
            speech(&parts, br#"{"model":"tts-1","input":"Hello","voice":"alloy","response_format":"wav"}"#, None);
        assert_eq!(response.headers()["content-type"], "audio/wav");
        let (status, text) =
            testing::text(speech(&parts, br#"{"model":"tts-1","input":"Hello","voice":"alloy"}"#, None)).await;
        assert_eq!(status, 200);
        assert!(text.starts_with("ID3"));
        assert_eq!(testing::json(speech(&parts, br#"{"model":"tts-1","input":"Hello"}"#, None)).await.0, 400);
    }

    #[tokio::test]
    async fn gemini_media_answers_and_refusals() {
        let image = json!({"contents": [{"parts": [{"text": "otter"}]}], "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "3:2"}}});
        let Some(kind @ GeminiMedia::Image) = gemini_media(&image) else { panic!("an image request") };
        let (status, answer) =
            testing::json(gemini_generate(kind, "/v1beta/models/gemini-2.5-flash-image:generateContent", &image, None))
                .await;
        assert_eq!(status, 200);
        assert_eq!(answer["candidates"][0]["content"]["parts"][1]["inlineData"]["mimeType"], "image/png");
        let bad = json!({"contents": [{"parts": [{"text": "otter"}]}], "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "7:5"}}});
        assert_eq!(testing::json(gemini_generate(GeminiMedia::Image, "/m/g:generateContent", &bad, None)).await.0, 400);
        let speech = json!({"contents": [{"parts": [{"text": "Hello"}]}], "generationConfig": {"responseModalities": ["AUDIO"], "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}}}});
        let (status, answer) =
            testing::json(gemini_generate(GeminiMedia::Speech, "/m/tts:generateContent", &speech, None)).await;
        assert_eq!(
            (status, answer["candidates"][0]["content"]["parts"][0]["inlineData"]["mimeType"].as_str()),
            (200, Some("audio/L16;codec=pcm;rate=24000"))
        );
        let mut no_voice = speech.clone();
        no_voice["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] =
            json!("alloy");
        assert_eq!(
            testing::json(gemini_generate(GeminiMedia::Speech, "/m/tts:generateContent", &no_voice, None)).await.0,
            400
        );
        let listen = json!({"contents": [{"parts": [{"text": "Transcribe"}, {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}]}]});
        assert!(matches!(gemini_media(&listen), Some(GeminiMedia::Transcription)));
        let m4a = json!({"contents": [{"parts": [{"text": "Transcribe"}, {"inlineData": {"mimeType": "audio/mp4", "data": "AA=="}}]}]});
        assert_eq!(
            testing::json(gemini_generate(GeminiMedia::Transcription, "/m/g:generateContent", &m4a, None)).await.0,
            400
        );
    }

    #[tokio::test]
    async fn imagen_defaults_to_four_samples() {
        let parts = testing::parts("/v1beta/models/imagen-4.0-generate-001:predict", &[("x-goog-api-key", "k")]);
        let (status, answer) =
            testing::json(imagen_predict(&parts, br#"{"instances":[{"prompt":"otter"}]}"#, None)).await;
        assert_eq!((status, answer["predictions"].as_array().unwrap().len()), (200, 4));
        let (status, _) = testing::json(imagen_predict(
            &parts,
            br#"{"instances":[{"prompt":"otter"}],"parameters":{"sampleCount":5}}"#,
            None,
        ))
        .await;
        assert_eq!(status, 400);
        let keyless = testing::parts("/v1beta/models/imagen-4.0-generate-001:predict", &[]);
        assert_eq!(
            testing::json(imagen_predict(&keyless, br#"{"instances":[{"prompt":"otter"}]}"#, None)).await.0,
            403
        );
    }
}
