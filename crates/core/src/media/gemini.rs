//! Media on Google's Gemini API: images from Gemini's image models (`generateContent` with
//! `responseModalities: ["IMAGE"]` and an `imageConfig`, input images inline for edits), from
//! Imagen (`:predict`, `sampleCount` and `aspectRatio`), speech from its TTS models
//! (`responseModalities: ["AUDIO"]`, 16-bit PCM back), and transcription or translation by any
//! model that takes audio (the audio inline, the task as the prompt). The key goes in
//! `x-goog-api-key`, never in the URL.
//!
//! What OpenAI's parameters cannot mean here is dropped or adjusted and reported (or refused in
//! strict mode), by the same `ParamPolicy` the chat adapter uses.

use super::images::{ImageAsk, ImageUsage, Images, InputDetails, Made};
use super::speech::SpeechRequest;
use super::transcription::TranscriptionRequest;
use crate::config::Provider;
use crate::error::GatewayError;
use crate::providers::gemini::model_path;
use crate::providers::{OutboundRequest, ParamPolicy};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Gemini's limit on a request with inline data: 20 MB, the base64 of the data included.
pub const INLINE_REQUEST_LIMIT: usize = 20 * 1000 * 1000;
/// Imagen's most images a call.
pub const IMAGEN_MAX_SAMPLES: u32 = 4;
/// The sample rate of Gemini's speech when its media type does not say.
pub const SPEECH_SAMPLE_RATE: u32 = 24_000;

const GEMINI_RATIOS: &[(u32, u32)] =
    &[(1, 1), (2, 3), (3, 2), (3, 4), (4, 3), (4, 5), (5, 4), (9, 16), (16, 9), (21, 9)];
const IMAGEN_RATIOS: &[(u32, u32)] = &[(1, 1), (3, 4), (4, 3), (9, 16), (16, 9)];

/// Gemini's prebuilt voices.
pub const VOICES: &[&str] = &[
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

/// OpenAI's built-in voices, each given a Gemini voice of its own, so that clients that tell
/// voices apart still hear different ones.
const OPENAI_VOICES: &[(&str, &str)] = &[
    ("alloy", "Kore"),
    ("ash", "Orus"),
    ("ballad", "Algieba"),
    ("coral", "Aoede"),
    ("echo", "Charon"),
    ("fable", "Fenrir"),
    ("onyx", "Alnilam"),
    ("nova", "Leda"),
    ("sage", "Sulafat"),
    ("shimmer", "Zephyr"),
    ("verse", "Puck"),
    ("marin", "Achernar"),
    ("cedar", "Iapetus"),
];

// ---- Requests ----

#[derive(Serialize)]
struct GenerateBody<'a> {
    contents: [Turn<'a>; 1],
    #[serde(rename = "generationConfig")]
    generation_config: Value,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    parts: Vec<PartOut<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum PartOut<'a> {
    Text {
        text: &'a str,
    },
    Inline {
        #[serde(rename = "inlineData")]
        inline_data: Blob<'a>,
    },
}

#[derive(Serialize)]
struct Blob<'a> {
    #[serde(rename = "mimeType")]
    mime_type: &'a str,
    data: String,
}

fn inline<'a>(mime_type: &'a str, bytes: &[u8]) -> PartOut<'a> {
    PartOut::Inline { inline_data: Blob { mime_type, data: super::b64().encode(bytes) } }
}

fn outbound(
    provider: &Provider,
    vendor_model: &str,
    method: &str,
    body: Vec<u8>,
    api_key: Option<&str>,
) -> OutboundRequest {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(key) = api_key {
        headers.push(("x-goog-api-key".to_owned(), key.to_owned()));
    }
    headers.extend(provider.headers.iter().cloned());
    let url = format!("{}/models/{}:{method}", provider.base_url, model_path(vendor_model));
    OutboundRequest { url, headers, body }
}

fn too_large(what: &str) -> GatewayError {
    GatewayError::new(
        413,
        "invalid_request_error",
        "request_too_large",
        format!("{what} too large to send to Gemini inline (its limit is 20 MB a request, base64 included)."),
    )
}

fn unsupported(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::new(400, "invalid_request_error", "unsupported_parameter", message).with_param(param)
}

/// The supported ratio nearest to `w`:`h` (by the logarithm of the ratio), and whether it is
/// exact.
fn nearest_ratio(w: u32, h: u32, ratios: &[(u32, u32)]) -> ((u32, u32), bool) {
    let want = (f64::from(w) / f64::from(h)).ln();
    let best = ratios
        .iter()
        .copied()
        .min_by(|a, b| {
            let d = |(rw, rh): (u32, u32)| ((f64::from(rw) / f64::from(rh)).ln() - want).abs();
            d(*a).total_cmp(&d(*b))
        })
        .unwrap_or((1, 1));
    (best, u64::from(w) * u64::from(best.1) == u64::from(h) * u64::from(best.0))
}

/// The image options every image route shares: `imageConfig` (Gemini) or Imagen's
/// `aspectRatio`/`imageSize`, from `size`; the parameters with no equivalent, dropped.
fn image_options(
    ask: &ImageAsk,
    policy: &mut ParamPolicy,
    ratios: &[(u32, u32)],
    tiers: &[&'static str],
) -> Result<serde_json::Map<String, Value>, GatewayError> {
    // `stream` is served whole (see `Images::encode_stream`): no partial images.
    if ask.partial_images.is_some_and(|p| p > 0) {
        policy.drop_extra("partial_images")?;
    }
    let mut config = serde_json::Map::new();
    if let Some((w, h)) = ask.size.as_deref().and_then(super::parse_size) {
        let ((rw, rh), exact) = nearest_ratio(w, h, ratios);
        let long = w.max(h);
        let tier = match long {
            0..=1024 => "1K",
            1025..=2048 => "2K",
            _ => "4K",
        };
        // The largest tier the model has at or below what was asked (1K by default).
        let sent = tiers.iter().rev().find(|t| t.as_bytes()[0] <= tier.as_bytes()[0]).copied().unwrap_or("1K");
        config.insert("aspectRatio".into(), format!("{rw}:{rh}").into());
        if sent != "1K" {
            config.insert("imageSize".into(), sent.into());
        }
        // A square of the tier's own edge is made as asked; anything else at the model's size
        // for that ratio.
        let honoured = exact && w == h && long == 1024 * u32::from(sent.as_bytes()[0] - b'0');
        if !honoured {
            policy.adjust("size", format!("{rw}:{rh} {sent}"))?;
        }
    }
    if ask.quality.as_deref().is_some_and(|q| q != "auto") {
        policy.drop("quality")?;
    }
    if ask.response_format.as_deref() == Some("url") {
        policy.adjust("response_format", "b64_json")?;
    }
    if ask.output_format.as_deref().is_some_and(|f| f != "png") {
        policy.drop("output_format")?;
    }
    if ask.output_compression.is_some() {
        policy.drop("output_compression")?;
    }
    if ask.background.as_deref() == Some("transparent") {
        policy.drop("background")?;
    }
    if ask.moderation.as_deref() == Some("low") {
        policy.drop("moderation")?;
    }
    for (name, present) in [("style", ask.style.is_some()), ("user", ask.user.is_some()), ("mask", ask.mask.is_some())]
    {
        if present {
            policy.drop(name)?;
        }
    }
    for name in &ask.extra {
        policy.drop(name)?;
    }
    Ok(config)
}

/// The image sizes a Gemini model makes beyond 1K, by name.
fn gemini_tiers(vendor_model: &str) -> &'static [&'static str] {
    if model_path(vendor_model).starts_with("gemini-3") {
        &["1K", "2K", "4K"]
    } else {
        &["1K"]
    }
}

/// The vendor requests for an image generation or edit with a Gemini image model: one a
/// requested image (the models make one an answer), the input images inline.
pub fn image_requests(
    provider: &Provider,
    vendor_model: &str,
    ask: &ImageAsk,
    api_key: Option<&str>,
    policy: &mut ParamPolicy,
) -> Result<Vec<OutboundRequest>, GatewayError> {
    let image_config = image_options(ask, policy, GEMINI_RATIOS, gemini_tiers(vendor_model))?;
    let mut parts = vec![PartOut::Text { text: &ask.prompt }];
    let mut types = Vec::with_capacity(ask.images.len());
    for (part, bytes) in ask.input_images() {
        let kind = super::media_type(part.content_type.as_deref(), part.filename.as_deref(), bytes)
            .filter(|t| matches!(t.as_str(), "image/png" | "image/jpeg" | "image/webp" | "image/heic" | "image/heif"))
            .ok_or_else(|| {
                GatewayError::invalid_request(&part.name, "Gemini edits PNG, JPEG, WebP, HEIC or HEIF images.")
            })?;
        types.push((kind, bytes));
    }
    for (kind, bytes) in &types {
        parts.push(inline(kind, bytes));
    }
    let mut generation_config = json!({"responseModalities": ["IMAGE"]});
    if !image_config.is_empty() {
        generation_config["imageConfig"] = Value::Object(image_config);
    }
    let body = GenerateBody { contents: [Turn { role: "user", parts }], generation_config };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    if body.len() > INLINE_REQUEST_LIMIT {
        return Err(too_large("These images are"));
    }
    let call = outbound(provider, vendor_model, "generateContent", body, api_key);
    Ok(vec![call; ask.n as usize])
}

/// The vendor requests for an image generation with Imagen: `sampleCount` images a call, at
/// most four, as many calls as `n` needs (Imagen's own default is four; an OpenAI client's, one).
pub fn imagen_requests(
    provider: &Provider,
    vendor_model: &str,
    ask: &ImageAsk,
    api_key: Option<&str>,
    policy: &mut ParamPolicy,
) -> Result<Vec<OutboundRequest>, GatewayError> {
    let model = model_path(vendor_model);
    let tiers: &[&str] = if model.starts_with("imagen-4.0-generate") || model.starts_with("imagen-4.0-ultra") {
        &["1K", "2K"]
    } else {
        &["1K"]
    };
    let options = image_options(ask, policy, IMAGEN_RATIOS, tiers)?;
    let mut calls = Vec::new();
    let mut left = ask.n;
    while left > 0 {
        let samples = left.min(IMAGEN_MAX_SAMPLES);
        left -= samples;
        let mut parameters = options.clone();
        parameters.insert("sampleCount".into(), samples.into());
        let body = json!({"instances": [{"prompt": ask.prompt}], "parameters": parameters});
        calls.push(outbound(provider, vendor_model, "predict", body.to_string().into_bytes(), api_key));
    }
    Ok(calls)
}

/// The vendor request for speech with a Gemini TTS model. OpenAI's voices are given Gemini
/// voices (adjusted, and named); `instructions` direct the reading, as Gemini's speech is
/// directed, ahead of the text.
pub fn speech_request(
    provider: &Provider,
    vendor_model: &str,
    request: &SpeechRequest,
    api_key: Option<&str>,
    policy: &mut ParamPolicy,
) -> Result<OutboundRequest, GatewayError> {
    let asked = request.voice.as_str();
    let voice = match VOICES.iter().find(|v| v.eq_ignore_ascii_case(asked)) {
        Some(voice) if !request.custom_voice => *voice,
        _ => {
            let mapped =
                OPENAI_VOICES.iter().find(|(openai, _)| openai.eq_ignore_ascii_case(asked) && !request.custom_voice);
            let voice = mapped.map_or("Kore", |(_, gemini)| *gemini);
            policy.adjust("voice", voice)?;
            voice
        }
    };
    if request.speed.is_some_and(|s| s != 1.0) {
        policy.drop("speed")?;
    }
    for name in &request.extra {
        policy.drop(name)?;
    }
    let text = match request.instructions.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
        Some(instructions) => format!("{instructions}: {}", request.input),
        None => request.input.clone(),
    };
    let generation_config = json!({"responseModalities": ["AUDIO"],
        "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}}});
    let body = GenerateBody {
        contents: [Turn { role: "user", parts: vec![PartOut::Text { text: &text }] }],
        generation_config,
    };
    Ok(outbound(provider, vendor_model, "generateContent", serde_json::to_vec(&body).unwrap_or_default(), api_key))
}

/// The audio types Gemini takes inline, by the name it gives them.
fn gemini_audio_type(media_type: &str) -> Option<&'static str> {
    Some(match media_type {
        "audio/wav" | "audio/x-wav" | "audio/wave" => "audio/wav",
        "audio/mpeg" | "audio/mp3" => "audio/mp3",
        "audio/aiff" | "audio/x-aiff" => "audio/aiff",
        "audio/aac" => "audio/aac",
        "audio/ogg" => "audio/ogg",
        "audio/flac" | "audio/x-flac" => "audio/flac",
        _ => return None,
    })
}

/// The vendor request for a transcription (or a translation into English) by a Gemini model:
/// the audio inline, the task as the prompt (the client's `prompt` as context, `language` as a
/// hint), `temperature` as it is. Gemini answers with text alone: `json` and `text` are made of
/// it; the timed formats are refused.
pub fn transcription_request(
    provider: &Provider,
    vendor_model: &str,
    request: &TranscriptionRequest,
    api_key: Option<&str>,
    policy: &mut ParamPolicy,
) -> Result<OutboundRequest, GatewayError> {
    if request.stream {
        return Err(unsupported("stream", "Streamed transcription is served only by OpenAI-format targets."));
    }
    if !matches!(request.format(), "json" | "text") {
        return Err(unsupported(
            "response_format",
            format!(
                "Gemini transcribes to text without timestamps: 'response_format' '{}' cannot be made from it; ask for 'json' or 'text'.",
                request.format()
            ),
        ));
    }
    let media_type =
        request.media_type().as_deref().and_then(gemini_audio_type).ok_or_else(|| {
            GatewayError::invalid_request("file", "Gemini takes WAV, MP3, AIFF, AAC, OGG or FLAC audio.")
        })?;
    if request.audio().len().div_ceil(3) * 4 + 4096 > INLINE_REQUEST_LIMIT {
        return Err(too_large("This audio is"));
    }
    for name in &request.extra {
        policy.drop(name)?;
    }
    let mut task = if request.translate {
        "Translate the speech in this audio into English. Answer with the English translation alone, without commentary."
            .to_owned()
    } else {
        let language = request.language.as_deref().map(|l| format!(" (spoken in the language with code `{l}`)"));
        format!(
            "Transcribe the speech in this audio{} verbatim. Answer with the transcript alone, without timestamps or commentary.",
            language.unwrap_or_default()
        )
    };
    if let Some(prompt) = request.prompt.as_deref().filter(|p| !p.trim().is_empty()) {
        task.push_str("\nContext and spellings to follow (not to be transcribed): ");
        task.push_str(prompt);
    }
    let mut generation_config = json!({});
    if let Some(t) = request.temperature {
        generation_config["temperature"] = json!(t);
    }
    let parts = vec![PartOut::Text { text: &task }, inline(media_type, request.audio())];
    let body = GenerateBody { contents: [Turn { role: "user", parts }], generation_config };
    Ok(outbound(provider, vendor_model, "generateContent", serde_json::to_vec(&body).unwrap_or_default(), api_key))
}

// ---- Answers ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<Feedback>,
    #[serde(default)]
    usage_metadata: Option<UsageDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Content {
    #[serde(default)]
    parts: Vec<PartIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartIn {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    inline_data: Option<BlobIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlobIn {
    #[serde(default)]
    mime_type: String,
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Feedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct UsageDoc {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    prompt_tokens_details: Vec<ModalityCount>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct ModalityCount {
    #[serde(default)]
    modality: String,
    #[serde(default)]
    token_count: u64,
}

impl UsageDoc {
    /// Input and output tokens, thinking billed as output.
    fn tokens(&self) -> (u64, u64) {
        (self.prompt_token_count, self.candidates_token_count + self.thoughts_token_count)
    }

    /// The prompt's image tokens (an edit's input images).
    fn image_tokens(&self) -> u64 {
        let images =
            self.prompt_tokens_details.iter().filter(|d| d.modality == "IMAGE").map(|d| d.token_count).sum::<u64>();
        images.min(self.prompt_token_count)
    }
}

/// Finish reasons that mean the vendor's filters withheld the output.
const FILTERED: &[&str] = &[
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "IMAGE_PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_RECITATION",
];

fn filtered(provider: &str, reason: &str) -> GatewayError {
    // Reasons are names; anything else is not repeated.
    let named = !reason.is_empty() && reason.len() <= 64 && reason.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    let reason = if named { reason } else { "a reason it did not name" };
    GatewayError::new(
        400,
        "invalid_request_error",
        "content_filter",
        format!("Provider `{provider}` withheld the output: it was blocked for {reason}."),
    )
}

fn decode(provider: &str, body: &[u8]) -> Result<Response, GatewayError> {
    serde_json::from_slice(body).map_err(|e| super::invalid_answer(provider, crate::providers::decode_cause(&e)))
}

/// What a Gemini answer holds, its inline data of `prefix` (`image/`, `audio/`) apart.
struct Output {
    inline: Vec<BlobIn>,
    text: String,
    usage: Option<UsageDoc>,
}

fn output(provider: &str, body: &[u8], prefix: &str) -> Result<Output, GatewayError> {
    let answer = decode(provider, body)?;
    if let Some(reason) = answer.prompt_feedback.as_ref().and_then(|f| f.block_reason.as_deref()) {
        return Err(filtered(provider, reason));
    }
    let mut out = Output { inline: Vec::new(), text: String::new(), usage: answer.usage_metadata };
    let mut finish = None;
    for candidate in answer.candidates {
        finish = finish.or(candidate.finish_reason);
        for part in candidate.content.unwrap_or_default().parts {
            match (part.inline_data, part.text) {
                (Some(blob), _) if blob.mime_type.starts_with(prefix) => out.inline.push(blob),
                (None, Some(text)) if !part.thought => out.text.push_str(&text),
                _ => {}
            }
        }
    }
    if out.inline.is_empty() && prefix != "text" {
        return Err(match finish.as_deref() {
            Some(reason) if FILTERED.contains(&reason) => filtered(provider, reason),
            reason => super::invalid_answer(
                provider,
                format!("the answer holds no {prefix} data (finish reason {})", reason.unwrap_or("none")),
            ),
        });
    }
    Ok(out)
}

/// The images of Gemini answers (one answer a call), with their usage summed.
pub fn images_answer(provider: &str, bodies: &[Vec<u8>]) -> Result<Images, GatewayError> {
    let mut images = Images::default();
    for body in bodies {
        let out = output(provider, body, "image/")?;
        for blob in out.inline {
            images.made.push(Made { b64: blob.data, mime_type: blob.mime_type });
        }
        if let Some(usage) = out.usage {
            let (input, output) = usage.tokens();
            let image_tokens = usage.image_tokens();
            let this = ImageUsage {
                input_tokens: input,
                output_tokens: output,
                total_tokens: input + output,
                input_tokens_details: InputDetails { text_tokens: input - image_tokens, image_tokens },
            };
            images.usage.get_or_insert_with(ImageUsage::default).add(&this);
        }
    }
    Ok(images)
}

/// The images of Imagen answers (`predictions[].bytesBase64Encoded`); predictions its filters
/// withheld (`raiFilteredReason`) are left out, and an answer left with none is a 400.
pub fn imagen_answer(provider: &str, bodies: &[Vec<u8>]) -> Result<Images, GatewayError> {
    #[derive(Deserialize)]
    struct Predict {
        #[serde(default)]
        predictions: Vec<Prediction>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Prediction {
        #[serde(default)]
        bytes_base64_encoded: Option<String>,
        #[serde(default)]
        mime_type: Option<String>,
        #[serde(default)]
        rai_filtered_reason: Option<String>,
    }
    let mut images = Images::default();
    let mut withheld = false;
    for body in bodies {
        let answer: Predict = serde_json::from_slice(body)
            .map_err(|e| super::invalid_answer(provider, crate::providers::decode_cause(&e)))?;
        for p in answer.predictions {
            match p.bytes_base64_encoded {
                Some(b64) => {
                    images.made.push(Made { b64, mime_type: p.mime_type.unwrap_or_else(|| "image/png".into()) })
                }
                None => withheld |= p.rai_filtered_reason.is_some(),
            }
        }
    }
    if images.made.is_empty() {
        return Err(if withheld {
            filtered(provider, "SAFETY")
        } else {
            super::invalid_answer(provider, "the answer holds no predictions")
        });
    }
    Ok(images)
}

/// Gemini's speech: the 16-bit PCM of its audio parts, their sample rate, and the tokens used
/// (input, output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speech {
    pub pcm: Vec<u8>,
    pub sample_rate: u32,
    pub tokens: Option<(u64, u64)>,
}

pub fn speech_answer(provider: &str, body: &[u8]) -> Result<Speech, GatewayError> {
    let out = output(provider, body, "audio/")?;
    let mut pcm = Vec::new();
    let mut rate = SPEECH_SAMPLE_RATE;
    for blob in &out.inline {
        let mime = blob.mime_type.to_ascii_lowercase();
        if !(mime.starts_with("audio/l16") || mime.contains("pcm")) {
            return Err(super::invalid_answer(provider, format!("its audio is {mime}, not 16-bit PCM")));
        }
        if let Some(r) = mime.split(';').find_map(|p| p.trim().strip_prefix("rate=")).and_then(|r| r.parse().ok()) {
            rate = r;
        }
        let bytes = super::b64()
            .decode(blob.data.as_bytes())
            .map_err(|_| super::invalid_answer(provider, "its audio is not base64"))?;
        pcm.extend_from_slice(&bytes);
    }
    Ok(Speech { pcm, sample_rate: rate, tokens: out.usage.as_ref().map(UsageDoc::tokens) })
}

/// A Gemini transcription's text and the tokens used.
pub fn transcription_answer(provider: &str, body: &[u8]) -> Result<(String, Option<(u64, u64)>), GatewayError> {
    let out = output(provider, body, "text")?;
    Ok((out.text.trim().to_owned(), out.usage.as_ref().map(UsageDoc::tokens)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::media::multipart::{encode, Form};

    fn provider() -> Provider {
        Provider::new("google", ProviderKind::Gemini, "https://generativelanguage.googleapis.com/v1beta")
    }

    fn ask(json: &str) -> ImageAsk {
        ImageAsk::generation(json.as_bytes().to_vec()).unwrap()
    }

    fn sent(call: &OutboundRequest) -> Value {
        serde_json::from_slice(&call.body).unwrap()
    }

    #[test]
    fn sizes_become_aspect_ratios_and_tiers() {
        assert_eq!(nearest_ratio(1536, 1024, GEMINI_RATIOS), ((3, 2), true));
        assert_eq!(nearest_ratio(1792, 1024, GEMINI_RATIOS), ((16, 9), false));
        assert_eq!(nearest_ratio(1024, 1792, IMAGEN_RATIOS), ((9, 16), false));
        assert_eq!(nearest_ratio(1536, 1024, IMAGEN_RATIOS), ((4, 3), false));
        let mut policy = ParamPolicy::new("Gemini", false);
        let calls = image_requests(
            &provider(),
            "gemini-3-pro-image-preview",
            &ask(r#"{"model":"m","prompt":"p","size":"2048x2048"}"#),
            None,
            &mut policy,
        )
        .unwrap();
        assert_eq!(
            sent(&calls[0])["generationConfig"]["imageConfig"],
            json!({"aspectRatio": "1:1", "imageSize": "2K"})
        );
        assert!(policy.report.adjusted.is_empty());
        let mut policy = ParamPolicy::new("Gemini", false);
        let calls = image_requests(
            &provider(),
            "gemini-2.5-flash-image",
            &ask(r#"{"model":"m","prompt":"p","size":"2048x2048"}"#),
            None,
            &mut policy,
        )
        .unwrap();
        assert_eq!(sent(&calls[0])["generationConfig"]["imageConfig"], json!({"aspectRatio": "1:1"}));
        assert_eq!(policy.report.adjusted, ["size=1:1 1K"]);
    }

    #[test]
    fn a_gemini_image_request_is_one_call_an_image_with_the_key_in_a_header() {
        let mut policy = ParamPolicy::new("Gemini", false);
        let a = ask(
            r#"{"model":"m","prompt":"an otter","n":3,"size":"1024x1024","quality":"high","style":"vivid","user":"u","response_format":"url","seed":1}"#,
        );
        let calls =
            image_requests(&provider(), "models/gemini-2.5-flash-image", &a, Some("AIza-key"), &mut policy).unwrap();
        assert_eq!(calls.len(), 3);
        assert_eq!(
            calls[0].url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash-image:generateContent"
        );
        assert!(!calls[0].url.contains("key="));
        assert!(calls[0].headers.contains(&("x-goog-api-key".to_owned(), "AIza-key".to_owned())));
        assert_eq!(
            sent(&calls[0]),
            json!({"contents": [{"role": "user", "parts": [{"text": "an otter"}]}],
                   "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "1:1"}}})
        );
        assert_eq!(policy.report.dropped, ["quality", "style", "user", "seed"]);
        assert_eq!(policy.report.adjusted, ["response_format=b64_json"]);
        let mut strict = ParamPolicy::new("Gemini", true);
        let e = image_requests(&provider(), "gemini-2.5-flash-image", &a, None, &mut strict).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("quality")));
        // A stream is served whole by the worker; partial images are dropped and named.
        let mut lenient = ParamPolicy::new("Gemini", false);
        let calls = image_requests(
            &provider(),
            "gemini-2.5-flash-image",
            &ask(r#"{"model":"m","prompt":"p","stream":true,"partial_images":2}"#),
            None,
            &mut lenient,
        )
        .unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(lenient.report.dropped, ["partial_images"]);
    }

    #[test]
    fn an_edit_sends_its_images_inline() {
        let body = encode(
            "bb",
            &[
                ("model", None, b"m"),
                ("prompt", None, b"hat"),
                ("image", Some("a.png"), b"\x89PNG\r\n\x1a\nxx"),
                ("mask", Some("m.png"), b"\x89PNG\r\n\x1a\n"),
            ],
        );
        let a = ImageAsk::edit(Form::parse("multipart/form-data; boundary=bb", body).unwrap()).unwrap();
        let mut policy = ParamPolicy::new("Gemini", false);
        let calls = image_requests(&provider(), "gemini-2.5-flash-image", &a, None, &mut policy).unwrap();
        let parts = &sent(&calls[0])["contents"][0]["parts"];
        assert_eq!(parts[0], json!({"text": "hat"}));
        assert_eq!(parts[1]["inlineData"]["mimeType"], "image/png");
        assert_eq!(parts[1]["inlineData"]["data"], super::super::b64().encode(b"\x89PNG\r\n\x1a\nxx"));
        assert_eq!(policy.report.dropped, ["mask"]);
        let body =
            encode("bb", &[("model", None, b"m"), ("prompt", None, b"hat"), ("image", Some("a.gif"), b"GIF89a")]);
        let a = ImageAsk::edit(Form::parse("multipart/form-data; boundary=bb", body).unwrap()).unwrap();
        assert_eq!(
            image_requests(&provider(), "g-image", &a, None, &mut policy).unwrap_err().param.as_deref(),
            Some("image")
        );
    }

    #[test]
    fn imagen_takes_four_samples_a_call() {
        let mut policy = ParamPolicy::new("Imagen", false);
        let calls = imagen_requests(
            &provider(),
            "imagen-4.0-generate-001",
            &ask(r#"{"model":"m","prompt":"p","n":6,"size":"1792x1024"}"#),
            None,
            &mut policy,
        )
        .unwrap();
        assert_eq!(calls.len(), 2);
        assert!(calls[0].url.ends_with("/models/imagen-4.0-generate-001:predict"));
        assert_eq!(
            sent(&calls[0]),
            json!({"instances": [{"prompt": "p"}], "parameters": {"sampleCount": 4, "aspectRatio": "16:9", "imageSize": "2K"}})
        );
        assert_eq!(sent(&calls[1])["parameters"]["sampleCount"], 2);
        assert_eq!(policy.report.adjusted, ["size=16:9 2K"]);
    }

    #[test]
    fn image_answers_are_decoded_and_filters_are_400s() {
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"Here it is"},{"inlineData":{"mimeType":"image/png","data":"iVBO"}}]},"finishReason":"STOP"}],
                        "usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1290,"totalTokenCount":1295}}"#;
        let images = images_answer("google", &[body.to_vec(), body.to_vec()]).unwrap();
        assert_eq!(images.made.len(), 2);
        assert_eq!(images.made[0], Made { b64: "iVBO".into(), mime_type: "image/png".into() });
        assert_eq!(images.usage.unwrap().output_tokens, 2580);
        let edit = br#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"iVBO"}}]}}],
                        "usageMetadata":{"promptTokenCount":268,"candidatesTokenCount":1290,
                                         "promptTokensDetails":[{"modality":"TEXT","tokenCount":10},{"modality":"IMAGE","tokenCount":258}]}}"#;
        let details = images_answer("google", &[edit.to_vec()]).unwrap().usage.unwrap().input_tokens_details;
        assert_eq!((details.text_tokens, details.image_tokens), (10, 258));
        let blocked = br#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}"#;
        assert_eq!(images_answer("google", &[blocked.to_vec()]).unwrap_err().code.as_deref(), Some("content_filter"));
        let safety = br#"{"candidates":[{"content":{"parts":[]},"finishReason":"IMAGE_SAFETY"}]}"#;
        assert_eq!(images_answer("google", &[safety.to_vec()]).unwrap_err().code.as_deref(), Some("content_filter"));
        let text_only = br#"{"candidates":[{"content":{"parts":[{"text":"no"}]},"finishReason":"STOP"}]}"#;
        assert_eq!(images_answer("google", &[text_only.to_vec()]).unwrap_err().status, 502);
        assert_eq!(images_answer("google", &[b"{".to_vec()]).unwrap_err().status, 502);
        let predict =
            br#"{"predictions":[{"bytesBase64Encoded":"AAAA","mimeType":"image/png"},{"raiFilteredReason":"x"}]}"#;
        assert_eq!(imagen_answer("google", &[predict.to_vec()]).unwrap().made.len(), 1);
        let none = br#"{"predictions":[{"raiFilteredReason":"x"}]}"#;
        assert_eq!(imagen_answer("google", &[none.to_vec()]).unwrap_err().code.as_deref(), Some("content_filter"));
        assert_eq!(imagen_answer("google", &[b"{}".to_vec()]).unwrap_err().status, 502);
    }

    fn speech(json: &str) -> SpeechRequest {
        SpeechRequest::parse(json.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn speech_maps_voices_and_directs_the_reading() {
        let mut policy = ParamPolicy::new("Gemini", false);
        let r = speech(r#"{"model":"m","input":"Hello","voice":"nova","instructions":"Say cheerfully","speed":1.5}"#);
        let call = speech_request(&provider(), "gemini-2.5-flash-preview-tts", &r, None, &mut policy).unwrap();
        assert_eq!(
            sent(&call),
            json!({"contents": [{"role": "user", "parts": [{"text": "Say cheerfully: Hello"}]}],
                   "generationConfig": {"responseModalities": ["AUDIO"], "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Leda"}}}}})
        );
        assert_eq!(
            (policy.report.adjusted.as_slice(), policy.report.dropped.as_slice()),
            (&["voice=Leda".to_owned()][..], &["speed".to_owned()][..])
        );
        let mut policy = ParamPolicy::new("Gemini", true);
        let call = speech_request(
            &provider(),
            "gemini-2.5-flash-preview-tts",
            &speech(r#"{"model":"m","input":"Hi","voice":"puck"}"#),
            None,
            &mut policy,
        )
        .unwrap();
        assert_eq!(
            sent(&call)["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
            "Puck"
        );
        let e = speech_request(
            &provider(),
            "t",
            &speech(r#"{"model":"m","input":"Hi","voice":{"id":"voice_1"}}"#),
            None,
            &mut policy,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("voice"));
    }

    #[test]
    fn speech_answers_are_pcm_with_their_rate() {
        let body = br#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"audio/L16;codec=pcm;rate=16000","data":"AQACAA=="}}]},"finishReason":"STOP"}],
                        "usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":50}}"#;
        assert_eq!(
            speech_answer("google", body).unwrap(),
            Speech { pcm: vec![1, 0, 2, 0], sample_rate: 16_000, tokens: Some((4, 50)) }
        );
        let mp3 = br#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"audio/mpeg","data":"AA=="}}]}}]}"#;
        assert_eq!(speech_answer("google", mp3).unwrap_err().status, 502);
    }

    fn transcription(fields: &[(&str, Option<&str>, &[u8])], translate: bool) -> TranscriptionRequest {
        TranscriptionRequest::parse(
            Form::parse("multipart/form-data; boundary=bb", encode("bb", fields)).unwrap(),
            translate,
        )
        .unwrap()
    }

    #[test]
    fn transcription_sends_the_audio_inline_with_the_task() {
        let wav = crate::media::wav::wrap(&[0; 8], 16_000, 1);
        let r = transcription(
            &[
                ("model", None, b"m"),
                ("file", Some("a.wav"), &wav),
                ("language", None, b"de"),
                ("prompt", None, b"Switchyard"),
                ("temperature", None, b"0"),
            ],
            false,
        );
        let mut policy = ParamPolicy::new("Gemini", false);
        let call = transcription_request(&provider(), "gemini-2.5-flash", &r, None, &mut policy).unwrap();
        let body = sent(&call);
        let task = body["contents"][0]["parts"][0]["text"].as_str().unwrap();
        assert!(
            task.starts_with("Transcribe the speech in this audio (spoken in the language with code `de`) verbatim.")
        );
        assert!(task.ends_with("Switchyard"));
        assert_eq!(body["contents"][0]["parts"][1]["inlineData"]["mimeType"], "audio/wav");
        assert_eq!(body["generationConfig"], json!({"temperature": 0.0}));
        let r = transcription(
            &[("model", None, b"m"), ("file", Some("a.mp3"), b"ID3"), ("response_format", None, b"srt")],
            false,
        );
        let e = transcription_request(&provider(), "g", &r, None, &mut policy).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("response_format")));
        let r = transcription(&[("model", None, b"m"), ("file", Some("a.m4a"), b"....ftyp")], true);
        assert_eq!(
            transcription_request(&provider(), "g", &r, None, &mut policy).unwrap_err().param.as_deref(),
            Some("file")
        );
        let r = transcription(&[("model", None, b"m"), ("file", Some("a.mp3"), b"ID3")], true);
        let call = transcription_request(&provider(), "g", &r, None, &mut policy).unwrap();
        assert!(sent(&call)["contents"][0]["parts"][0]["text"].as_str().unwrap().starts_with("Translate"));
        let answer = br#"{"candidates":[{"content":{"parts":[{"text":"thinking","thought":true},{"text":" Hallo Welt. "}]}}],"usageMetadata":{"promptTokenCount":40,"candidatesTokenCount":3,"thoughtsTokenCount":7}}"#;
        assert_eq!(transcription_answer("google", answer).unwrap(), ("Hallo Welt.".to_owned(), Some((40, 10))));
    }
}
