//! The built-in mock's media, made in the worker with no vendor and no key (the demo
//! configuration's, so that `make dev` shows every endpoint): a small PNG an image, a tone for
//! speech (as long as the text would take to say, up to ten seconds), and a transcript that
//! says what it was given.

use super::images::{ImageAsk, Images, Made};
use super::speech::SpeechRequest;
use super::transcription::{self, TranscriptionRequest};
use crate::error::GatewayError;

/// A 16x16 PNG, a colour gradient.
pub const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAABlklEQVR42g3LQQEAIQgAQSMQwQhEIIIRjEAEIhjBCETguU8jGMEId/Of1hrS6A1tWGM0ZsMb0ViN3chGNU7jNl6jNUGELqhgwhCm4EIIS9hCCiUc4QpP/tCRTu9oxzqjMzveic7q7E52qnM6t/P6HxRRuqKKKUOZiiuhLGUrqZRylKs8/YMhRjfUMGMY03AjjGVsI40yjnGNZ38YyKAPdGCDMZgDH8RgDfYgBzU4gzt44w8TmfSJTmwyJnPik5isyZ7kpCZncidv/sERpzvqmDOc6bgTznK2k045x7nO8z8EEvRAAwtGMAMPIljBDjKo4AQ3ePGHhSz6Qhe2GIu58EUs1mIvclGLs7iLt/6wkU3f6MY2YzM3vonN2uxNbmpzNnfz9h8SSXqiiSUjmYknkaxkJ5lUcpKbvPxDIUUvtLBiFLPwIopV7CKLKk5xi1d/OMihH/Rgh3GYBz/EYR32IQ91OId7eOcPF7n0i17sMi7z4pe4rMu+5KUu53Iv7/7hIY/+0Ic9xmM+/BGP9diPfNTjPO7jPT6GdLgQ8hjYogAAAABJRU5ErkJggg==";

/// The mock's speech: 16-bit PCM at this rate.
pub const SAMPLE_RATE: u32 = 24_000;

/// `n` images.
pub fn images(ask: &ImageAsk) -> Images {
    let made = Made { b64: PNG_B64.to_owned(), mime_type: "image/png".to_owned() };
    Images { made: vec![made; ask.n as usize], usage: None }
}

/// A 440 Hz triangle tone, 60 ms a character of the input, at most ten seconds.
pub fn speech_pcm(request: &SpeechRequest) -> Vec<u8> {
    let seconds = (request.characters() as f64 * 0.06).clamp(0.2, 10.0);
    let samples = (seconds * f64::from(SAMPLE_RATE)) as usize;
    let period = (SAMPLE_RATE / 440) as usize;
    let mut pcm = Vec::with_capacity(samples * 2);
    for i in 0..samples {
        let phase = (i % period) as i32 * 4 * 3000 / period as i32; // 0 ..= 12000
        let value = if phase < 6000 { phase - 3000 } else { 9000 - phase } as i16;
        pcm.extend_from_slice(&value.to_le_bytes());
    }
    pcm
}

/// What the mock heard: the file's name, size and type, in the asked-for format (the timed
/// formats with the WAV's length, or a second for other audio).
pub fn transcription(request: &TranscriptionRequest) -> Result<(Vec<u8>, &'static str), GatewayError> {
    let name = request.file.filename.as_deref().filter(|n| !n.is_empty()).unwrap_or("audio");
    let kind = request.media_type().unwrap_or_else(|| "audio of an unknown type".to_owned());
    let verb = if request.translate { "translation" } else { "transcript" };
    let text = format!("Mock {verb} of {name} ({} bytes of {kind}).", request.audio().len());
    let seconds = super::wav::duration_s(request.audio()).unwrap_or(1.0);
    let tokens = Some(((request.audio().len() as u64).div_ceil(1000), (text.len() as u64).div_ceil(4)));
    transcription::encode(
        request.format(),
        &text,
        Some(seconds),
        request.language.as_deref(),
        request.translate,
        tokens,
    )
    .ok_or_else(|| {
        GatewayError::new(
            400,
            "invalid_request_error",
            "unsupported_parameter",
            format!("The mock does not make '{}' transcripts.", request.format()),
        )
        .with_param("response_format")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn the_png_is_a_png() {
        let bytes = super::super::b64().decode(PNG_B64).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&bytes[12..16], b"IHDR");
    }

    #[test]
    fn speech_lasts_as_long_as_the_text() {
        let request = SpeechRequest::parse(br#"{"model":"m","input":"Hello there","voice":"alloy"}"#.to_vec()).unwrap();
        let pcm = speech_pcm(&request);
        assert_eq!(pcm.len(), (11.0 * 0.06 * 24_000.0) as usize * 2);
        let samples: Vec<i16> = pcm.chunks(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
        assert!(samples.iter().all(|s| (-3000..=3000).contains(s)));
        assert!(samples.iter().any(|&s| s > 2000) && samples.iter().any(|&s| s < -2000));
    }
}
