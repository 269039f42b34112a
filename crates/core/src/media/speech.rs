//! `POST /v1/audio/speech`: the request, checked against OpenAI's contract, the audio formats
//! and their content types, and the answer of a target that makes raw PCM (Gemini's speech, the
//! mock): wrapped as WAV or sent as PCM, in one piece or as OpenAI's speech events.

use super::one_of;
use crate::canonical::Source;
use crate::error::GatewayError;
use base64::Engine;
use serde::Deserialize;

/// The longest input OpenAI's speech models take, and the longest instructions.
pub const MAX_INPUT_CHARS: usize = 4_096;

/// The audio formats OpenAI's contract names.
pub const FORMATS: &[&str] = &["mp3", "opus", "aac", "flac", "wav", "pcm"];

/// The content type of each of OpenAI's speech formats.
pub fn content_type(format: &str) -> &'static str {
    match format {
        "opus" => "audio/opus",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        _ => "audio/mpeg",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpeechRequest {
    pub model: String,
    pub input: String,
    /// A built-in voice's name, or a custom voice's id.
    pub voice: String,
    pub custom_voice: bool,
    pub instructions: Option<String>,
    pub response_format: Option<String>,
    pub speed: Option<f64>,
    /// `sse`: OpenAI's speech events instead of the audio's bytes.
    pub sse: bool,
    pub extra: Vec<String>,
    pub source: Source,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VoiceDoc {
    Name(String),
    Custom { id: String },
}

#[derive(Deserialize)]
struct SpeechDoc {
    #[serde(default)]
    model: Option<String>,
    input: String,
    voice: VoiceDoc,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    speed: Option<f64>,
    #[serde(default)]
    stream_format: Option<String>,
}

const MODELLED: &[&str] = &["model", "input", "voice", "instructions", "response_format", "speed", "stream_format"];

impl SpeechRequest {
    pub fn parse(body: Vec<u8>) -> Result<SpeechRequest, GatewayError> {
        let doc: SpeechDoc = crate::error::parse_body(&body).map_err(|e| {
            // `voice`'s untagged form says nothing useful when it fails.
            if e.param.as_deref() == Some("voice") {
                GatewayError::invalid_request("voice", "'voice' is a voice's name, or {\"id\": \"voice_...\"}.")
            } else {
                e
            }
        })?;
        let mut model_span = None;
        let mut extra = Vec::new();
        for (key, value) in crate::error::top_level(&body)? {
            if key == "model" {
                let start = value.get().as_ptr() as usize - body.as_ptr() as usize;
                model_span = Some((start, start + value.get().len()));
            } else if !MODELLED.contains(&key.as_ref()) {
                extra.push(key.into_owned());
            }
        }
        let missing = || GatewayError::invalid_request("model", "'model' is required.");
        let model = doc.model.filter(|m| !m.is_empty()).ok_or_else(missing)?;
        let model_span = model_span.ok_or_else(missing)?;
        if doc.input.trim().is_empty() {
            return Err(GatewayError::invalid_request("input", "'input' must not be empty."));
        }
        if doc.input.chars().count() > MAX_INPUT_CHARS {
            return Err(GatewayError::invalid_request(
                "input",
                format!("'input' is at most {MAX_INPUT_CHARS} characters."),
            ));
        }
        if doc.instructions.as_ref().is_some_and(|i| i.chars().count() > MAX_INPUT_CHARS) {
            return Err(GatewayError::invalid_request(
                "instructions",
                format!("'instructions' is at most {MAX_INPUT_CHARS} characters."),
            ));
        }
        let (voice, custom_voice) = match doc.voice {
            VoiceDoc::Name(name) => (name, false),
            VoiceDoc::Custom { id } => (id, true),
        };
        if voice.is_empty() {
            return Err(GatewayError::invalid_request("voice", "'voice' must not be empty."));
        }
        one_of("response_format", doc.response_format.as_deref(), FORMATS)?;
        one_of("stream_format", doc.stream_format.as_deref(), &["sse", "audio"])?;
        if doc.speed.is_some_and(|s| !(0.25..=4.0).contains(&s)) {
            return Err(GatewayError::invalid_request("speed", "'speed' is between 0.25 and 4.0."));
        }
        Ok(SpeechRequest {
            model,
            input: doc.input,
            voice,
            custom_voice,
            instructions: doc.instructions,
            response_format: doc.response_format,
            speed: doc.speed,
            sse: doc.stream_format.as_deref() == Some("sse"),
            extra,
            source: Source { bytes: body, model_span, ..Source::default() },
        })
    }

    /// The characters spoken, which speech is priced by.
    pub fn characters(&self) -> u64 {
        self.input.chars().count() as u64
    }

    /// The format the client gets: the one asked for, else OpenAI's default, mp3.
    pub fn format(&self) -> &str {
        self.response_format.as_deref().unwrap_or("mp3")
    }
}

/// The formats a target that makes 16-bit PCM can answer in, and what it answers when the
/// client names none (OpenAI's default, mp3, it cannot make): WAV, reported as adjusted.
pub fn pcm_format(
    request: &SpeechRequest,
    policy: &mut crate::providers::ParamPolicy,
    vendor: &str,
) -> Result<&'static str, GatewayError> {
    match request.response_format.as_deref() {
        Some("wav") => Ok("wav"),
        Some("pcm") => Ok("pcm"),
        None => {
            policy.adjust("response_format", "wav")?;
            Ok("wav")
        }
        Some(other) => Err(GatewayError::new(
            400,
            "invalid_request_error",
            "unsupported_parameter",
            format!(
                "{vendor} speech comes as 16-bit PCM, which the gateway can send as 'wav' or 'pcm' but not as '{other}'; \
                 ask for one of those."
            ),
        )
        .with_param("response_format")),
    }
}

/// Speech as raw PCM answers it: `format` (`wav` or `pcm`), in one piece, or as OpenAI's speech
/// events (`speech.audio.delta` then `speech.audio.done` with the usage) when `sse`.
pub fn pcm_answer(
    pcm: &[u8],
    sample_rate: u32,
    format: &str,
    sse: bool,
    usage: Option<(u64, u64)>,
) -> (Vec<u8>, &'static str) {
    let audio = if format == "wav" { super::wav::wrap(pcm, sample_rate, 1) } else { pcm.to_vec() };
    if !sse {
        return (audio, content_type(format));
    }
    let (input, output) = usage.unwrap_or_default();
    let mut out = Vec::with_capacity(audio.len() * 4 / 3 + 256);
    out.extend_from_slice(b"data: {\"type\":\"speech.audio.delta\",\"audio\":\"");
    out.extend_from_slice(super::b64().encode(&audio).as_bytes());
    out.extend_from_slice(b"\"}\n\n");
    let done = serde_json::json!({"type": "speech.audio.done",
        "usage": {"input_tokens": input, "output_tokens": output, "total_tokens": input + output}});
    out.extend_from_slice(format!("data: {done}\n\n").as_bytes());
    (out, "text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ParamPolicy;

    fn parse(json: &str) -> Result<SpeechRequest, GatewayError> {
        SpeechRequest::parse(json.as_bytes().to_vec())
    }

    #[test]
    fn a_request_parses_with_either_kind_of_voice() {
        let r = parse(r#"{"model":"tts","input":"Hello","voice":"alloy","speed":1.5,"stream_format":"sse"}"#).unwrap();
        assert_eq!((r.voice.as_str(), r.custom_voice, r.sse, r.format()), ("alloy", false, true, "mp3"));
        assert_eq!(String::from_utf8(r.source.with_model("tts-1")).unwrap().get(..17), Some(r#"{"model":"tts-1","#));
        let r = parse(r#"{"model":"tts","input":"Hi","voice":{"id":"voice_123"},"response_format":"wav"}"#).unwrap();
        assert_eq!((r.voice.as_str(), r.custom_voice, r.format()), ("voice_123", true, "wav"));
        assert_eq!(r.characters(), 2);
    }

    #[test]
    fn bad_requests_name_their_parameter() {
        for (body, param) in [
            (r#"{"input":"x","voice":"alloy"}"#, "model"),
            (r#"{"model":"m","voice":"alloy"}"#, ""),
            (r#"{"model":"m","input":"","voice":"alloy"}"#, "input"),
            (r#"{"model":"m","input":"x"}"#, ""),
            (r#"{"model":"m","input":"x","voice":5}"#, "voice"),
            (r#"{"model":"m","input":"x","voice":""}"#, "voice"),
            (r#"{"model":"m","input":"x","voice":"a","response_format":"ogg"}"#, "response_format"),
            (r#"{"model":"m","input":"x","voice":"a","speed":5}"#, "speed"),
            (r#"{"model":"m","input":"x","voice":"a","stream_format":"chunks"}"#, "stream_format"),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!((e.status, e.param.as_deref().unwrap_or("")), (400, param), "{body}: {}", e.message);
        }
        let long = format!(r#"{{"model":"m","input":"{}","voice":"a"}}"#, "a".repeat(MAX_INPUT_CHARS + 1));
        assert_eq!(parse(&long).unwrap_err().param.as_deref(), Some("input"));
    }

    #[test]
    fn pcm_targets_answer_wav_by_default_and_refuse_what_they_cannot_make() {
        let request = parse(r#"{"model":"m","input":"x","voice":"a"}"#).unwrap();
        let mut lenient = ParamPolicy::new("Gemini", false);
        assert_eq!(pcm_format(&request, &mut lenient, "Gemini").unwrap(), "wav");
        assert_eq!(lenient.report.adjusted, ["response_format=wav"]);
        let mut strict = ParamPolicy::new("Gemini", true);
        assert_eq!(
            pcm_format(&request, &mut strict, "Gemini").unwrap_err().code.as_deref(),
            Some("unsupported_parameter")
        );
        let mp3 = parse(r#"{"model":"m","input":"x","voice":"a","response_format":"mp3"}"#).unwrap();
        let e = pcm_format(&mp3, &mut ParamPolicy::new("Gemini", false), "Gemini").unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("response_format")));
    }

    #[test]
    fn pcm_answers_as_wav_pcm_or_events() {
        let (wav, ct) = pcm_answer(&[1, 0, 2, 0], 24_000, "wav", false, None);
        assert_eq!((wav.len(), ct), (48, "audio/wav"));
        let (pcm, ct) = pcm_answer(&[1, 0, 2, 0], 24_000, "pcm", false, None);
        assert_eq!((pcm, ct), (vec![1, 0, 2, 0], "audio/pcm"));
        let (events, ct) = pcm_answer(&[1, 0], 24_000, "pcm", true, Some((3, 5)));
        assert_eq!(ct, "text/event-stream");
        let text = String::from_utf8(events).unwrap();
        assert_eq!(
            text,
            "data: {\"type\":\"speech.audio.delta\",\"audio\":\"AQA=\"}\n\n\
             data: {\"type\":\"speech.audio.done\",\"usage\":{\"input_tokens\":3,\"output_tokens\":5,\"total_tokens\":8}}\n\n"
        );
    }
}
