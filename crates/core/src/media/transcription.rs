//! `POST /v1/audio/transcriptions` and `/v1/audio/translations` (multipart): the request,
//! checked against OpenAI's contract; what an OpenAI-format answer says of the audio's length
//! and the tokens used (for its cost); and a transcript in each `response_format`, for targets
//! that answer with text alone.

use super::multipart::{Form, Part};
use super::one_of;
use crate::error::GatewayError;
use serde::Deserialize;

/// The formats of transcriptions, and of translations (which have no `diarized_json`).
pub const TRANSCRIPTION_FORMATS: &[&str] = &["json", "text", "srt", "verbose_json", "vtt", "diarized_json"];
pub const TRANSLATION_FORMATS: &[&str] = &["json", "text", "srt", "verbose_json", "vtt"];

#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionRequest {
    pub model: String,
    /// The audio file's part.
    pub file: Part,
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub response_format: Option<String>,
    pub temperature: Option<f64>,
    pub stream: bool,
    /// A translation (to English) rather than a transcription.
    pub translate: bool,
    /// Other parameters the client sent, by name.
    pub extra: Vec<String>,
    pub form: Form,
}

const MODELLED: &[&str] = &["model", "file", "language", "prompt", "response_format", "temperature", "stream"];

impl TranscriptionRequest {
    pub fn parse(form: Form, translate: bool) -> Result<TranscriptionRequest, GatewayError> {
        let files: Vec<&Part> = form.parts.iter().filter(|p| p.name == "file").collect();
        let file = match files.as_slice() {
            [] => return Err(GatewayError::invalid_request("file", "'file' is required: the audio to transcribe.")),
            [file] if file.is_file() => (*file).clone(),
            [_] => return Err(GatewayError::invalid_request("file", "'file' must be a file, not a text field.")),
            _ => return Err(GatewayError::invalid_request("file", "'file' is one file.")),
        };
        if file.is_empty() {
            return Err(GatewayError::invalid_request("file", "The audio file is empty."));
        }
        let text = |name: &str| form.text(name).map(|v| v.map(str::to_owned));
        let model = text("model")?
            .filter(|m| !m.is_empty())
            .ok_or_else(|| GatewayError::invalid_request("model", "'model' is required."))?;
        let formats = if translate { TRANSLATION_FORMATS } else { TRANSCRIPTION_FORMATS };
        let response_format = text("response_format")?;
        one_of("response_format", response_format.as_deref(), formats)?;
        let temperature =
            match form.text("temperature")? {
                None => None,
                Some(t) => Some(t.trim().parse::<f64>().ok().filter(|t| (0.0..=1.0).contains(t)).ok_or_else(|| {
                    GatewayError::invalid_request("temperature", "'temperature' is between 0 and 1.")
                })?),
            };
        let stream = match form.text("stream")? {
            None | Some("false") => false,
            Some("true") if !translate => true,
            Some(other) => {
                return Err(GatewayError::invalid_request("stream", format!("Invalid value for 'stream': '{other}'.")))
            }
        };
        let mut extra: Vec<String> = Vec::new();
        for part in &form.parts {
            let base = part.name.strip_suffix("[]").unwrap_or(&part.name);
            let base = base.split('[').next().unwrap_or(base);
            if !MODELLED.contains(&base) && !extra.iter().any(|e| e == base) {
                extra.push(base.to_owned());
            }
        }
        Ok(TranscriptionRequest {
            model,
            file,
            language: text("language")?,
            prompt: text("prompt")?,
            response_format,
            temperature,
            stream,
            translate,
            extra,
            form,
        })
    }

    pub fn audio(&self) -> &[u8] {
        self.form.content(&self.file)
    }

    pub fn format(&self) -> &str {
        self.response_format.as_deref().unwrap_or("json")
    }

    /// The audio's media type, as declared or recognised.
    pub fn media_type(&self) -> Option<String> {
        super::media_type(self.file.content_type.as_deref(), self.file.filename.as_deref(), self.audio())
    }

    /// The audio's length: exact for a WAV file, else the most it can be (at 16 kbit/s, below
    /// what any speech codec vendors take is encoded at), for a budget's hold.
    pub fn seconds_bound(&self) -> (f64, bool) {
        match super::wav::duration_s(self.audio()) {
            Some(seconds) => (seconds, true),
            None => (self.audio().len() as f64 / 2_000.0, false),
        }
    }
}

/// What an OpenAI-format answer says it measured: the audio's seconds, and tokens for the models
/// billed by them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measured {
    pub seconds: Option<f64>,
    /// Input and output tokens.
    pub tokens: Option<(u64, u64)>,
}

/// Reads an OpenAI transcription answer in `format` for what it measured: `usage` (seconds or
/// tokens) and `duration` of the JSON formats, the last cue's end of SRT and VTT.
pub fn measured(format: &str, body: &[u8]) -> Measured {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        duration: Option<f64>,
        #[serde(default)]
        usage: Option<Usage>,
    }
    #[derive(Deserialize)]
    struct Usage {
        #[serde(default)]
        seconds: Option<f64>,
        #[serde(default)]
        input_tokens: Option<u64>,
        #[serde(default)]
        output_tokens: Option<u64>,
    }
    match format {
        "srt" | "vtt" => Measured { seconds: last_cue_end(body), tokens: None },
        "text" => Measured::default(),
        _ => match serde_json::from_slice::<Answer>(body) {
            Ok(answer) => {
                let usage = answer.usage;
                let tokens =
                    usage.as_ref().and_then(|u| u.input_tokens.map(|input| (input, u.output_tokens.unwrap_or(0))));
                Measured { seconds: usage.and_then(|u| u.seconds).or(answer.duration), tokens }
            }
            Err(_) => Measured::default(),
        },
    }
}

/// The end of the last cue of an SRT or VTT transcript, in seconds.
fn last_cue_end(body: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().rev().find(|l| l.contains("-->"))?;
    let end = line.split("-->").nth(1)?.split_whitespace().next()?;
    let mut seconds = 0.0;
    for piece in end.replace(',', ".").split(':') {
        seconds = seconds * 60.0 + piece.parse::<f64>().ok()?;
    }
    Some(seconds)
}

/// A transcript as the client asked for it: `json` (`{"text", "usage"}`), `text`, and, given the
/// audio's length, `verbose_json`, `srt` and `vtt` as one segment spanning it. The content type
/// goes with it. `None` for a format this cannot make (a segment needs the length).
pub fn encode(
    format: &str,
    text: &str,
    seconds: Option<f64>,
    language: Option<&str>,
    translate: bool,
    usage: Option<(u64, u64)>,
) -> Option<(Vec<u8>, &'static str)> {
    let usage_json = |(input, output): (u64, u64)| serde_json::json!({"type": "tokens", "input_tokens": input, "output_tokens": output, "total_tokens": input + output});
    let stamp = |s: f64, comma: bool| {
        let ms = (s.max(0.0) * 1000.0).round() as u64;
        let sep = if comma { ',' } else { '.' };
        format!("{:02}:{:02}:{:02}{sep}{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
    };
    match format {
        "json" => {
            let mut doc = serde_json::json!({"text": text});
            if let Some(usage) = usage {
                doc["usage"] = usage_json(usage);
            }
            Some((doc.to_string().into_bytes(), "application/json"))
        }
        "text" => Some((format!("{text}\n").into_bytes(), "text/plain; charset=utf-8")),
        "verbose_json" => {
            let seconds = seconds?;
            let language = if translate { "english" } else { language.unwrap_or("english") };
            let doc = serde_json::json!({
                "task": if translate { "translate" } else { "transcribe" },
                "language": language, "duration": seconds, "text": text,
                "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text, "tokens": [],
                              "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}],
                "usage": {"type": "duration", "seconds": seconds.ceil()},
            });
            Some((doc.to_string().into_bytes(), "application/json"))
        }
        "srt" => {
            let seconds = seconds?;
            let body = format!("1\n{} --> {}\n{text}\n\n", stamp(0.0, true), stamp(seconds, true));
            Some((body.into_bytes(), "text/plain; charset=utf-8"))
        }
        "vtt" => {
            let seconds = seconds?;
            let body = format!("WEBVTT\n\n{} --> {}\n{text}\n\n", stamp(0.0, false), stamp(seconds, false));
            Some((body.into_bytes(), "text/vtt; charset=utf-8"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::multipart::encode as form_body;

    fn request(fields: &[(&str, Option<&str>, &[u8])], translate: bool) -> Result<TranscriptionRequest, GatewayError> {
        let form = Form::parse("multipart/form-data; boundary=bb", form_body("bb", fields)).unwrap();
        TranscriptionRequest::parse(form, translate)
    }

    use crate::media::multipart::Field;

    #[test]
    fn a_request_parses() {
        let r = request(
            &[
                ("model", None, b"whisper"),
                ("file", Some("a.wav"), b"RIFF\0\0\0\0WAVE"),
                ("response_format", None, b"srt"),
                ("temperature", None, b"0.2"),
                ("timestamp_granularities[]", None, b"word"),
            ],
            false,
        )
        .unwrap();
        assert_eq!((r.model.as_str(), r.format(), r.temperature), ("whisper", "srt", Some(0.2)));
        assert_eq!(r.media_type().as_deref(), Some("audio/wav"));
        assert_eq!(r.extra, ["timestamp_granularities"]);
    }

    #[test]
    fn bad_requests_name_their_parameter() {
        let file: (&str, Option<&str>, &[u8]) = ("file", Some("a.mp3"), b"ID3");
        let model: (&str, Option<&str>, &[u8]) = ("model", None, b"m");
        let cases: Vec<(Vec<Field>, bool, &str)> = vec![
            (vec![model], false, "file"),
            (vec![model, ("file", None, b"text")], false, "file"),
            (vec![model, ("file", Some("a.mp3"), b"")], false, "file"),
            (vec![model, file, file], false, "file"),
            (vec![file], false, "model"),
            (vec![model, file, ("response_format", None, b"mp3")], false, "response_format"),
            (vec![model, file, ("response_format", None, b"diarized_json")], true, "response_format"),
            (vec![model, file, ("temperature", None, b"2")], false, "temperature"),
            (vec![model, file, ("temperature", None, b"warm")], false, "temperature"),
            (vec![model, file, ("stream", None, b"true")], true, "stream"),
            (vec![model, file, ("stream", None, b"1")], false, "stream"),
        ];
        for (fields, translate, param) in cases {
            let e = request(&fields, translate).unwrap_err();
            assert_eq!((e.status, e.param.as_deref().unwrap_or("")), (400, param), "{}", e.message);
        }
    }

    #[test]
    fn answers_say_how_long_the_audio_was() {
        assert_eq!(measured("json", br#"{"text":"x","usage":{"type":"duration","seconds":9}}"#).seconds, Some(9.0));
        let tokens = measured(
            "json",
            br#"{"text":"x","usage":{"type":"tokens","input_tokens":14,"output_tokens":101,"total_tokens":115}}"#,
        );
        assert_eq!(tokens.tokens, Some((14, 101)));
        assert_eq!(
            measured("verbose_json", br#"{"text":"x","duration":8.47,"language":"english"}"#).seconds,
            Some(8.47)
        );
        assert_eq!(
            measured("srt", b"1\n00:00:00,000 --> 00:00:03,320\nHi\n\n2\n00:00:03,320 --> 00:01:02,500\nthere\n")
                .seconds,
            Some(62.5)
        );
        assert_eq!(measured("vtt", b"WEBVTT\n\n00:00.000 --> 00:04.250\nHi\n").seconds, Some(4.25));
        assert_eq!(measured("text", b"Hi"), Measured::default());
        assert_eq!(measured("json", b"not json"), Measured::default());
    }

    #[test]
    fn transcripts_come_in_every_format() {
        let (json, ct) = encode("json", "Hi", None, None, false, Some((3, 1))).unwrap();
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["text"], "Hi");
        assert_eq!(v["usage"]["total_tokens"], 4);
        assert_eq!(encode("text", "Hi", None, None, false, None).unwrap().0, b"Hi\n");
        assert_eq!(
            String::from_utf8(encode("srt", "Hi", Some(62.5), None, false, None).unwrap().0).unwrap(),
            "1\n00:00:00,000 --> 00:01:02,500\nHi\n\n"
        );
        let (vtt, _) = encode("vtt", "Hi", Some(1.0), None, false, None).unwrap();
        assert!(String::from_utf8(vtt).unwrap().starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.000"));
        let (verbose, _) = encode("verbose_json", "Hi", Some(2.0), Some("en"), true, None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&verbose).unwrap();
        assert_eq!((v["language"].as_str(), v["duration"].as_f64()), (Some("english"), Some(2.0)));
        assert!(encode("srt", "Hi", None, None, false, None).is_none());
        assert!(encode("diarized_json", "Hi", Some(1.0), None, false, None).is_none());
    }
}
