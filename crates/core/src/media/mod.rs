//! Images and audio through OpenAI's endpoints (`/v1/images/generations`, `/v1/images/edits`,
//! `/v1/audio/speech`, `/v1/audio/transcriptions`, `/v1/audio/translations`): the requests as
//! clients send them, which targets can serve each task and how, the vendor requests and the
//! answers in OpenAI's shapes, and what each costs. Pure, as the chat adapters are: the worker
//! makes the calls.
//!
//! OpenAI-format targets (OpenAI, Azure OpenAI, every vendor that speaks its API) get the
//! client's bytes with only `model` replaced, and their answer goes back as it came (audio
//! streamed through). Gemini targets get `generateContent` (image output, speech output, audio
//! input) or Imagen's `:predict`, and their answers are translated. The built-in mock answers
//! every task in the worker.

pub mod gemini;
pub mod images;
pub mod mock;
pub mod multipart;
pub mod openai;
pub mod price;
pub mod speech;
pub mod transcription;
pub mod wav;

use crate::config::{Config, Model, Provider, ProviderKind};
use crate::error::GatewayError;
use std::borrow::Cow;

/// What a client asks of a media model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Images,
    ImageEdits,
    Speech,
    Transcription,
    Translation,
}

impl Task {
    /// The task in words, for errors.
    pub fn describe(self) -> &'static str {
        match self {
            Task::Images => "image generation",
            Task::ImageEdits => "image edits",
            Task::Speech => "speech",
            Task::Transcription => "transcription",
            Task::Translation => "translation",
        }
    }

    /// The path of the task's endpoint below an OpenAI-format vendor's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Task::Images => "images/generations",
            Task::ImageEdits => "images/edits",
            Task::Speech => "audio/speech",
            Task::Transcription => "audio/transcriptions",
            Task::Translation => "audio/translations",
        }
    }
}

/// How a target serves a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An OpenAI-format vendor: the client's request with its model, the answer as it came.
    PassThrough,
    /// Gemini's `generateContent`: image or speech output, audio input.
    Gemini,
    /// Imagen's `:predict` (at a Gemini API endpoint that still serves it).
    Imagen,
    /// The built-in mock, in the worker.
    Mock,
}

/// How `provider` serves `task` with `vendor_model`, if it can. Gemini's models are told apart
/// by name, as Google names them: `imagen-*` generate images through `:predict`, `*-image*`
/// make and edit images, `*-tts` speak, and the others (which take audio) transcribe.
pub fn route(provider: &Provider, vendor_model: &str, task: Task) -> Option<Route> {
    match provider.kind {
        ProviderKind::Openai | ProviderKind::Azure => Some(Route::PassThrough),
        ProviderKind::Mock => Some(Route::Mock),
        ProviderKind::Anthropic => None,
        ProviderKind::Gemini => {
            let name = vendor_model.strip_prefix("models/").unwrap_or(vendor_model).to_ascii_lowercase();
            let imagen = name.starts_with("imagen");
            let image = !imagen && name.contains("image");
            let tts = name.contains("tts");
            let other = !(imagen || image || tts || name.contains("embedding") || name.starts_with("veo"));
            match task {
                Task::Images if imagen => Some(Route::Imagen),
                Task::Images | Task::ImageEdits if image => Some(Route::Gemini),
                Task::Speech if tts => Some(Route::Gemini),
                Task::Transcription | Task::Translation if other => Some(Route::Gemini),
                _ => None,
            }
        }
    }
}

/// `model` with only the targets that can serve `task` (the model itself when all can), or a
/// 400 `unsupported_model` when none can.
pub fn servable<'m>(config: &Config, model: &'m Model, task: Task) -> Result<Cow<'m, Model>, GatewayError> {
    let serves = |t: &crate::config::Target| route(config.provider(t), &t.model, task).is_some();
    let count = model.targets.iter().filter(|t| serves(t)).count();
    if count == model.targets.len() {
        return Ok(Cow::Borrowed(model));
    }
    if count == 0 {
        return Err(GatewayError::new(
            400,
            "invalid_request_error",
            "unsupported_model",
            format!("No target of the model `{}` can serve {}.", model.name, task.describe()),
        )
        .with_param("model"));
    }
    let mut kept = model.clone();
    kept.targets.retain(|t| serves(t));
    kept.max_attempts = crate::route::attempt_count(model.max_attempts, model.targets.len(), count).max(1);
    Ok(Cow::Owned(kept))
}

/// A `WIDTHxHEIGHT` size.
pub fn parse_size(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once('x')?;
    let dimension = |s: &str| s.parse::<u32>().ok().filter(|&d| (1..=16_384).contains(&d) && !s.starts_with('+'));
    Some((dimension(w)?, dimension(h)?))
}

/// One of `allowed`, or a 400 naming the parameter and the values it takes.
pub(crate) fn one_of(param: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), GatewayError> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(GatewayError::invalid_request(
            param,
            format!("Invalid value for '{param}': '{v}'. Supported values are: {}.", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// The error for an answer of a vendor that is not its API's.
pub(crate) fn invalid_answer(provider: &str, cause: impl std::fmt::Display) -> GatewayError {
    GatewayError::upstream_invalid(provider, cause)
}

/// Base64, standard alphabet with padding, as every vendor here writes it.
pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The media type of uploaded bytes: the part's own when it names a specific one, else from
/// the file name's extension, else from the bytes' signature.
pub fn media_type(declared: Option<&str>, filename: Option<&str>, bytes: &[u8]) -> Option<String> {
    let declared = declared.map(|t| t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase());
    if let Some(t) = declared.filter(|t| !t.is_empty() && t != "application/octet-stream") {
        return Some(t);
    }
    let extension = filename.and_then(|f| f.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    let by_extension = match extension.as_deref() {
        Some("wav") => Some("audio/wav"),
        Some("mp3" | "mpga" | "mpeg") => Some("audio/mpeg"),
        Some("flac") => Some("audio/flac"),
        Some("ogg" | "oga") => Some("audio/ogg"),
        Some("aac") => Some("audio/aac"),
        Some("aif" | "aiff") => Some("audio/aiff"),
        Some("m4a" | "mp4") => Some("audio/mp4"),
        Some("webm") => Some("audio/webm"),
        Some("png") => Some("image/png"),
        Some("jpg" | "jpeg") => Some("image/jpeg"),
        Some("webp") => Some("image/webp"),
        _ => None,
    };
    let by_signature = || {
        let starts = |prefix: &[u8]| bytes.starts_with(prefix);
        if starts(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
            Some("audio/wav")
        } else if starts(b"ID3") || (bytes.len() > 1 && bytes[0] == 0xff && bytes[1] & 0xe0 == 0xe0) {
            Some("audio/mpeg")
        } else if starts(b"fLaC") {
            Some("audio/flac")
        } else if starts(b"OggS") {
            Some("audio/ogg")
        } else if starts(b"\x89PNG\r\n\x1a\n") {
            Some("image/png")
        } else if starts(b"\xff\xd8\xff") {
            Some("image/jpeg")
        } else if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
            Some("image/webp")
        } else {
            None
        }
    };
    by_extension.or_else(by_signature).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"{"providers": {"o": {"kind": "openai", "base_url": "http://x"}, "g": {"kind": "gemini", "base_url": "http://x"},
                              "a": {"kind": "anthropic", "base_url": "http://x"}, "m": {"kind": "mock"}},
                "models": [{"name": "pics", "targets": [{"provider": "a", "model": "claude-sonnet-4-5"},
                                                         {"provider": "g", "model": "gemini-2.5-flash-image"},
                                                         {"provider": "g", "model": "imagen-4.0-generate-001"},
                                                         {"provider": "o", "model": "gpt-image-1"}]},
                           {"name": "words", "targets": [{"provider": "a", "model": "claude-sonnet-4-5"}]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn gemini_models_serve_by_their_names() {
        let config = config();
        let g = &config.providers.iter().find(|p| p.name == "g").unwrap().clone();
        assert_eq!(route(g, "imagen-4.0-generate-001", Task::Images), Some(Route::Imagen));
        assert_eq!(route(g, "imagen-4.0-generate-001", Task::ImageEdits), None);
        assert_eq!(route(g, "models/gemini-2.5-flash-image", Task::ImageEdits), Some(Route::Gemini));
        assert_eq!(route(g, "gemini-2.5-flash-preview-tts", Task::Speech), Some(Route::Gemini));
        assert_eq!(route(g, "gemini-2.5-flash", Task::Speech), None);
        assert_eq!(route(g, "gemini-2.5-flash", Task::Transcription), Some(Route::Gemini));
        assert_eq!(route(g, "gemini-2.5-flash-preview-tts", Task::Transcription), None);
        assert_eq!(route(g, "gemini-2.5-flash", Task::Images), None);
    }

    #[test]
    fn targets_that_cannot_serve_are_left_out_and_none_is_a_400() {
        let config = config();
        let kept = servable(&config, config.model("pics").unwrap(), Task::Images).unwrap();
        let names: Vec<&str> = kept.targets.iter().map(|t| t.model.as_str()).collect();
        assert_eq!(names, ["gemini-2.5-flash-image", "imagen-4.0-generate-001", "gpt-image-1"]);
        assert_eq!(kept.max_attempts, 3);
        let edits = servable(&config, config.model("pics").unwrap(), Task::ImageEdits).unwrap();
        assert_eq!(edits.targets.len(), 2);
        let e = servable(&config, config.model("words").unwrap(), Task::Speech).unwrap_err();
        assert_eq!((e.status, e.code.as_deref(), e.param.as_deref()), (400, Some("unsupported_model"), Some("model")));
        assert!(e.message.contains("speech"));
    }

    #[test]
    fn sizes_and_media_types() {
        assert_eq!(parse_size("1536x1024"), Some((1536, 1024)));
        for bad in ["auto", "1024", "x1024", "0x10", "10x", "-1x5", "+1x5", "99999x1"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(media_type(Some("audio/wav; x=1"), None, b"").as_deref(), Some("audio/wav"));
        assert_eq!(media_type(Some("application/octet-stream"), Some("a.MP3"), b"").as_deref(), Some("audio/mpeg"));
        assert_eq!(media_type(None, Some("blob"), b"RIFF\0\0\0\0WAVEfmt ").as_deref(), Some("audio/wav"));
        assert_eq!(media_type(None, None, b"\x89PNG\r\n\x1a\n").as_deref(), Some("image/png"));
        assert_eq!(media_type(None, None, b"what"), None);
    }
}
