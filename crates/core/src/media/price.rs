//! What media calls cost, from the catalog's media prices: images by size and quality where
//! the vendor prices them so (OpenAI's GPT image models and DALL·E, Gemini 3's image model by
//! resolution), or by the token usage the GPT image models report; speech by the character, or
//! by tokens for models priced by them (Gemini's TTS); transcription by the minute, or by
//! tokens. Each comes with the most a call can cost, held before it is made.
//!
//! An entry for the vendor model in the configuration's `catalog` replaces the published
//! prices: its `per_image` is the price of every image, whatever its size.

use super::images::ImageUsage;
use crate::catalog::ModelInfo;
use crate::config::Config;

/// Token prices of an image model, USD per million: text in, image in, out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenPrices {
    pub text_in: f64,
    pub image_in: f64,
    pub out: f64,
}

/// What one image costs at a request's size and quality, and the model's token prices when it
/// reports token usage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePrice {
    pub per_image: f64,
    pub tokens: Option<TokenPrices>,
}

/// The most image tokens one input image of an edit is counted as (OpenAI counts a 1024x1536
/// image at high input fidelity at about 4,200).
const TOKENS_AN_INPUT_IMAGE: u64 = 6_000;

/// OpenAI's published prices of a GPT image or DALL·E model: per image by quality (low,
/// medium, high; or standard, hd) for a square and for a larger size, and per token.
fn listed(model: &str, size: Option<(u32, u32)>, quality: Option<&str>) -> Option<ImagePrice> {
    // A size not given (or `auto`) may be the larger one; a quality not given (or `auto`), the
    // highest: the most it can cost.
    let square = size.is_some_and(|(w, h)| w == h);
    let pick = |by_quality: &[(&str, f64, f64)]| {
        let (_, sq, other) = by_quality
            .iter()
            .find(|(q, _, _)| Some(*q) == quality)
            .or(by_quality.last())
            .copied()
            .unwrap_or(("", 0.0, 0.0));
        if square {
            sq
        } else {
            other
        }
    };
    let tokens = |text_in, image_in, out| Some(TokenPrices { text_in, image_in, out });
    Some(if model.starts_with("gpt-image-1-mini") {
        let per_image = pick(&[("low", 0.005, 0.006), ("medium", 0.011, 0.015), ("high", 0.036, 0.052)]);
        ImagePrice { per_image, tokens: tokens(2.0, 2.5, 8.0) }
    } else if model.starts_with("gpt-image-1") {
        let per_image = pick(&[("low", 0.011, 0.016), ("medium", 0.042, 0.063), ("high", 0.167, 0.25)]);
        ImagePrice { per_image, tokens: tokens(5.0, 10.0, 40.0) }
    } else if model.starts_with("dall-e-3") {
        ImagePrice { per_image: pick(&[("standard", 0.04, 0.08), ("hd", 0.08, 0.12)]), tokens: None }
    } else if model.starts_with("dall-e-2") {
        let per_image = match size.map(|(w, h)| w.max(h)) {
            Some(0..=256) => 0.016,
            Some(257..=512) => 0.018,
            _ => 0.02,
        };
        ImagePrice { per_image, tokens: None }
    } else if model.starts_with("gemini-3-pro-image") {
        let per_image = if size.is_some_and(|(w, h)| w.max(h) <= 2048) { 0.134 } else { 0.24 };
        ImagePrice { per_image, tokens: None }
    } else {
        return None;
    })
}

/// What one image of `vendor_model` costs at `size` and `quality` (as the request names them).
pub fn image_price(config: &Config, vendor_model: &str, size: Option<&str>, quality: Option<&str>) -> ImagePrice {
    let flat = |info: &ModelInfo| ImagePrice {
        per_image: info.per_image,
        tokens: (info.input > 0.0 || info.output > 0.0).then_some(TokenPrices {
            text_in: info.input,
            image_in: info.input,
            out: info.output,
        }),
    };
    if let Some(info) = config.catalog.get(vendor_model) {
        return flat(info);
    }
    let name = vendor_model.rsplit('/').next().unwrap_or(vendor_model);
    let quality = quality.filter(|q| *q != "auto");
    listed(name, size.and_then(super::parse_size), quality).unwrap_or_else(|| flat(&config.model_info(vendor_model)))
}

/// The most an image call can cost: every image at its price, the prompt, and each input image
/// at the most tokens it can count for.
pub fn image_hold(price: &ImagePrice, n: u32, prompt_tokens: u64, input_images: usize) -> f64 {
    let tokens = price.tokens.map_or(0.0, |t| {
        (prompt_tokens as f64 * t.text_in + (input_images as u64 * TOKENS_AN_INPUT_IMAGE) as f64 * t.image_in) / 1e6
    });
    f64::from(n) * price.per_image + tokens
}

/// What an image call cost: by the tokens the vendor reports, for a model priced by them; else
/// each image made at its price.
pub fn image_cost(price: &ImagePrice, images: u64, usage: Option<&ImageUsage>) -> f64 {
    match (price.tokens, usage) {
        (Some(t), Some(u)) => {
            let image = u.input_tokens_details.image_tokens.min(u.input_tokens);
            let text = u.input_tokens - image;
            (text as f64 * t.text_in + image as f64 * t.image_in + u.output_tokens as f64 * t.out) / 1e6
        }
        _ => images as f64 * price.per_image,
    }
}

/// The most speech of `characters` (with `prompt_chars` of text sent in all) can cost: by the
/// character, or for a model priced by tokens the prompt and four audio tokens a character
/// (Gemini's speech is about 25 tokens a second, of about 15 characters read; four covers the
/// slowest reading).
pub fn speech_hold(info: &ModelInfo, characters: u64, prompt_chars: u64) -> f64 {
    if info.per_million_characters > 0.0 {
        return characters as f64 * info.per_million_characters / 1e6;
    }
    (prompt_chars.div_ceil(4) as f64 * info.input + (characters * 4) as f64 * info.output) / 1e6
}

/// What speech cost: by the character, or by the tokens the vendor reported; `None` when it is
/// priced by tokens and reported none (it is charged what was held).
pub fn speech_cost(info: &ModelInfo, characters: u64, tokens: Option<(u64, u64)>) -> Option<f64> {
    if info.per_million_characters > 0.0 {
        return Some(characters as f64 * info.per_million_characters / 1e6);
    }
    if info.input == 0.0 && info.output == 0.0 {
        return Some(0.0);
    }
    tokens.map(|(input, output)| (input as f64 * info.input + output as f64 * info.output) / 1e6)
}

/// Gemini counts audio at 32 tokens a second.
const AUDIO_TOKENS_A_SECOND: f64 = 32.0;

/// The most a transcription of at most `seconds` of audio can cost: by the minute, and for a
/// model priced by tokens the audio's tokens and the most output it may write.
pub fn transcription_hold(info: &ModelInfo, seconds: f64) -> f64 {
    let by_minute = seconds / 60.0 * info.per_audio_minute;
    let max_output = if info.max_output > 0 { info.max_output } else { 8_192 };
    let by_tokens = ((seconds * AUDIO_TOKENS_A_SECOND + 512.0) * info.input + max_output as f64 * info.output) / 1e6;
    by_minute + by_tokens
}

/// What a transcription cost: by the tokens reported, for a model priced by tokens; else by
/// the minute, from the seconds the answer (or the WAV file) says; `None` when neither is known
/// (it is charged what was held).
pub fn transcription_cost(info: &ModelInfo, seconds: Option<f64>, tokens: Option<(u64, u64)>) -> Option<f64> {
    let by_tokens = info.input > 0.0 || info.output > 0.0;
    match (tokens, seconds) {
        (Some((input, output)), _) if by_tokens => {
            Some((input as f64 * info.input + output as f64 * info.output) / 1e6)
        }
        (_, Some(seconds)) if info.per_audio_minute > 0.0 => Some(seconds / 60.0 * info.per_audio_minute),
        _ if !by_tokens && info.per_audio_minute == 0.0 => Some(0.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(r#"{"catalog": {"my-painter": {"per_image": 0.5}, "my-tokens": {"input": 1, "output": 2, "per_image": 0.1}}}"#)
            .unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn images_are_priced_by_size_and_quality_where_the_vendor_prices_so() {
        let c = config();
        let price = |model, size, quality| image_price(&c, model, size, quality).per_image;
        assert!(close(price("gpt-image-1", Some("1024x1024"), Some("low")), 0.011));
        assert!(close(price("gpt-image-1", Some("1536x1024"), Some("medium")), 0.063));
        // Not said: the most it can be.
        assert!(close(price("gpt-image-1", None, None), 0.25));
        assert!(close(price("gpt-image-1", Some("1024x1024"), Some("auto")), 0.167));
        assert!(close(price("gpt-image-1-mini", Some("1024x1024"), Some("high")), 0.036));
        assert!(close(price("dall-e-3", Some("1792x1024"), Some("hd")), 0.12));
        assert!(close(price("dall-e-3", Some("1024x1024"), Some("standard")), 0.04));
        assert!(close(price("dall-e-2", Some("256x256"), None), 0.016));
        assert!(close(price("gemini-3-pro-image-preview", Some("2048x2048"), None), 0.134));
        assert!(close(price("gemini-3-pro-image-preview", Some("4096x4096"), None), 0.24));
        // The catalog's flat price for the rest, the operator's above all.
        assert!(close(price("gemini-2.5-flash-image", Some("1536x1024"), None), 0.039));
        assert!(close(price("imagen-4.0-fast-generate-001", None, None), 0.02));
        assert!(close(price("my-painter", Some("4096x4096"), Some("high")), 0.5));
    }

    #[test]
    fn token_usage_prices_gpt_image_calls() {
        let price = image_price(&config(), "gpt-image-1", Some("1024x1024"), Some("high"));
        let usage = ImageUsage {
            input_tokens: 50,
            output_tokens: 4160,
            total_tokens: 4210,
            input_tokens_details: super::super::images::InputDetails { text_tokens: 10, image_tokens: 40 },
        };
        assert!(close(image_cost(&price, 1, Some(&usage)), (10.0 * 5.0 + 40.0 * 10.0 + 4160.0 * 40.0) / 1e6));
        assert!(close(image_cost(&price, 2, None), 0.334));
        // The hold covers the images, the prompt and the input images.
        assert!(close(image_hold(&price, 2, 100, 1), 0.334 + (100.0 * 5.0 + 6000.0 * 10.0) / 1e6));
        let flat = image_price(&config(), "gemini-2.5-flash-image", None, None);
        assert!(close(image_cost(&flat, 3, Some(&usage)), 0.117));
        assert!(close(image_hold(&flat, 3, 10_000, 0), 0.117));
    }

    #[test]
    fn speech_by_the_character_or_by_tokens() {
        let tts = crate::catalog::embedded("tts-1").unwrap();
        assert!(close(speech_hold(&tts, 1000, 1000), 0.015));
        assert_eq!(speech_cost(&tts, 1000, None), Some(0.015));
        let gemini = crate::catalog::embedded("gemini-2.5-flash-preview-tts").unwrap();
        assert!(close(speech_hold(&gemini, 100, 120), (30.0 * 0.5 + 400.0 * 10.0) / 1e6));
        assert!(close(speech_cost(&gemini, 100, Some((30, 250))).unwrap(), (30.0 * 0.5 + 250.0 * 10.0) / 1e6));
        assert_eq!(speech_cost(&gemini, 100, None), None);
        assert_eq!(speech_cost(&ModelInfo::default(), 100, None), Some(0.0));
    }

    #[test]
    fn transcription_by_the_minute_or_by_tokens() {
        let whisper = crate::catalog::embedded("whisper-1").unwrap();
        assert!(close(transcription_hold(&whisper, 120.0), 0.012));
        assert_eq!(transcription_cost(&whisper, Some(30.0), None), Some(0.003));
        assert_eq!(transcription_cost(&whisper, None, Some((5, 5))), None);
        let flash = crate::catalog::embedded("gemini-2.5-flash").unwrap();
        assert!(close(
            transcription_cost(&flash, Some(60.0), Some((1920, 100))).unwrap(),
            (1920.0 * 0.3 + 100.0 * 2.5) / 1e6
        ));
        assert!(transcription_hold(&flash, 60.0) >= (1920.0 * 0.3 + 65_536.0 * 2.5) / 1e6);
    }
}
