//! The model catalog: prices and capabilities of the common models, embedded, and overridable
//! (or extended) by the configuration's `catalog`. Used to skip targets that cannot serve a
//! request, to order targets by cost, and (later) to price usage.

use serde::{Deserialize, Serialize};

/// What a vendor model costs and can do. Token prices in USD per million tokens; media prices
/// per unit (an image, a second of video, a minute of audio, a million characters of speech).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelInfo {
    pub input: f64,
    pub cached_input: f64,
    pub output: f64,
    pub per_image: f64,
    pub per_video_second: f64,
    pub per_audio_minute: f64,
    pub per_million_characters: f64,
    /// A web search a server tool made (Anthropic's `web_search`: $10 a thousand).
    pub per_web_search: f64,
    pub context_window: u64,
    /// The most tokens one answer can hold (0: not limited beyond the context window).
    pub max_output: u64,
    pub vision: bool,
    pub tools: bool,
    pub json: bool,
}

/// No price, no capability: what the constructors below start from.
const NOTHING: ModelInfo = ModelInfo {
    input: 0.0,
    cached_input: 0.0,
    output: 0.0,
    per_image: 0.0,
    per_video_second: 0.0,
    per_audio_minute: 0.0,
    per_million_characters: 0.0,
    per_web_search: 0.0,
    context_window: 0,
    max_output: 0,
    vision: false,
    tools: false,
    json: false,
};

impl Default for ModelInfo {
    /// A model the catalog does not know: free, large, able; nothing is skipped for it.
    fn default() -> Self {
        Self { context_window: u64::MAX, vision: true, tools: true, json: true, ..NOTHING }
    }
}

const fn chat(
    input: f64,
    cached_input: f64,
    output: f64,
    context_window: u64,
    max_output: u64,
    vision: bool,
) -> ModelInfo {
    ModelInfo { input, cached_input, output, context_window, max_output, vision, tools: true, json: true, ..NOTHING }
}

/// An Anthropic model: a chat model whose server tools bill web searches ($10 a thousand).
const fn claude(input: f64, cached_input: f64, output: f64, context_window: u64, max_output: u64) -> ModelInfo {
    ModelInfo { per_web_search: 0.01, ..chat(input, cached_input, output, context_window, max_output, true) }
}

const fn embedding(input: f64) -> ModelInfo {
    ModelInfo { input, cached_input: input, context_window: 8_192, ..NOTHING }
}

const fn image(per_image: f64) -> ModelInfo {
    ModelInfo { per_image, context_window: 32_000, ..NOTHING }
}

const fn video(per_video_second: f64) -> ModelInfo {
    ModelInfo { per_video_second, context_window: 32_000, ..NOTHING }
}

const fn transcription(per_audio_minute: f64) -> ModelInfo {
    ModelInfo { per_audio_minute, ..NOTHING }
}

const fn speech(per_million_characters: f64) -> ModelInfo {
    ModelInfo { per_million_characters, context_window: 4_096, ..NOTHING }
}

/// Speech priced by tokens: text in, audio out.
const fn speech_tokens(input: f64, output: f64) -> ModelInfo {
    ModelInfo { input, cached_input: input, output, context_window: 32_000, ..NOTHING }
}

/// Vendor model names by prefix (the longest matching prefix wins), published list prices.
const EMBEDDED: &[(&str, ModelInfo)] = &[
    ("gpt-5-nano", chat(0.05, 0.005, 0.40, 400_000, 128_000, true)),
    ("gpt-5-mini", chat(0.25, 0.025, 2.00, 400_000, 128_000, true)),
    ("gpt-5", chat(1.25, 0.125, 10.00, 400_000, 128_000, true)),
    ("gpt-4.1-nano", chat(0.10, 0.025, 0.40, 1_047_576, 32_768, true)),
    ("gpt-4.1-mini", chat(0.40, 0.10, 1.60, 1_047_576, 32_768, true)),
    ("gpt-4.1", chat(2.00, 0.50, 8.00, 1_047_576, 32_768, true)),
    ("gpt-4o-mini", chat(0.15, 0.075, 0.60, 128_000, 16_384, true)),
    ("gpt-4o", chat(2.50, 1.25, 10.00, 128_000, 16_384, true)),
    ("o4-mini", chat(1.10, 0.275, 4.40, 200_000, 100_000, true)),
    ("o3-mini", chat(1.10, 0.55, 4.40, 200_000, 100_000, false)),
    ("o3", chat(2.00, 0.50, 8.00, 200_000, 100_000, true)),
    ("text-embedding-3-small", embedding(0.02)),
    ("text-embedding-3-large", embedding(0.13)),
    ("claude-opus-4", claude(15.00, 1.50, 75.00, 200_000, 32_000)),
    ("claude-sonnet-4", claude(3.00, 0.30, 15.00, 200_000, 64_000)),
    ("claude-3-7-sonnet", claude(3.00, 0.30, 15.00, 200_000, 64_000)),
    ("claude-3-5-sonnet", claude(3.00, 0.30, 15.00, 200_000, 8_192)),
    ("claude-haiku-4", claude(1.00, 0.10, 5.00, 200_000, 64_000)),
    ("claude-3-5-haiku", claude(0.80, 0.08, 4.00, 200_000, 8_192)),
    ("claude-3-haiku", claude(0.25, 0.03, 1.25, 200_000, 4_096)),
    ("gemini-2.5-pro", chat(1.25, 0.31, 10.00, 1_048_576, 65_536, true)),
    ("gemini-2.5-flash-lite", chat(0.10, 0.025, 0.40, 1_048_576, 65_536, true)),
    ("gemini-2.5-flash", chat(0.30, 0.075, 2.50, 1_048_576, 65_536, true)),
    ("gemini-2.0-flash", chat(0.10, 0.025, 0.40, 1_048_576, 8_192, true)),
    ("gemini-embedding-001", embedding(0.15)),
    ("llama-3.1-8b-instant", chat(0.05, 0.05, 0.08, 131_072, 131_072, false)),
    ("llama-3.3-70b-versatile", chat(0.59, 0.59, 0.79, 131_072, 32_768, false)),
    ("deepseek-chat", chat(0.27, 0.07, 1.10, 64_000, 8_192, false)),
    ("deepseek-reasoner", chat(0.55, 0.14, 2.19, 64_000, 65_536, false)),
    ("mistral-large", chat(2.00, 2.00, 6.00, 128_000, 128_000, false)),
    ("mistral-small", chat(0.20, 0.20, 0.60, 128_000, 128_000, false)),
    // Images (standard quality, 1024x1024), video per second, audio by minute or character.
    ("dall-e-3", image(0.04)),
    ("dall-e-2", image(0.02)),
    ("gpt-image-1", image(0.042)),
    ("gpt-image-1-mini", image(0.011)),
    ("gemini-2.5-flash-image", image(0.039)),
    ("gemini-3-pro-image", image(0.134)),
    ("imagen-4", image(0.04)),
    ("imagen-4.0-fast", image(0.02)),
    ("imagen-4.0-ultra", image(0.06)),
    ("imagen-3", image(0.03)),
    ("sora-2-pro", video(0.30)),
    ("sora-2", video(0.10)),
    ("veo-3", video(0.40)),
    ("whisper-1", transcription(0.006)),
    ("gpt-4o-transcribe", transcription(0.006)),
    ("gpt-4o-mini-transcribe", transcription(0.003)),
    ("tts-1-hd", speech(30.0)),
    ("tts-1", speech(15.0)),
    // OpenAI's estimate of $0.015 a minute, at about 1,000 characters a minute.
    ("gpt-4o-mini-tts", speech(15.0)),
    ("gemini-2.5-flash-preview-tts", speech_tokens(0.50, 10.0)),
    ("gemini-2.5-pro-preview-tts", speech_tokens(1.00, 20.0)),
];

/// The embedded entry for a vendor model, by its longest matching prefix.
pub fn embedded(vendor_model: &str) -> Option<ModelInfo> {
    let name = vendor_model.rsplit('/').next().unwrap_or(vendor_model);
    EMBEDDED
        .iter()
        .filter(|(prefix, _)| name.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, info)| *info)
}

/// Media a call produced or consumed, for the units the catalog prices beyond tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Media {
    pub images: u64,
    pub video_seconds: f64,
    pub audio_minutes: f64,
    pub characters: u64,
}

/// What a request needs of the model that serves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub vision: bool,
    pub tools: bool,
    pub json: bool,
    /// The prompt, estimated at four characters a token (and a flat 1,000 an image).
    pub prompt_tokens: u64,
    /// The most output the request allows (0: not limited by the client).
    pub max_output: u64,
}

impl ModelInfo {
    /// The first price that is negative or not a finite number, by its field's name.
    pub fn invalid_price(&self) -> Option<&'static str> {
        [
            ("input", self.input),
            ("cached_input", self.cached_input),
            ("output", self.output),
            ("per_image", self.per_image),
            ("per_video_second", self.per_video_second),
            ("per_audio_minute", self.per_audio_minute),
            ("per_million_characters", self.per_million_characters),
            ("per_web_search", self.per_web_search),
        ]
        .into_iter()
        .find(|(_, price)| !price.is_finite() || *price < 0.0)
        .map(|(field, _)| field)
    }

    /// The first need this model cannot meet, named for the client.
    pub fn unmet(&self, needs: &Needs) -> Option<&'static str> {
        if needs.vision && !self.vision {
            Some("images")
        } else if needs.tools && !self.tools {
            Some("tools")
        } else if needs.json && !self.json {
            Some("JSON output")
        } else if needs.prompt_tokens + needs.max_output > self.context_window {
            Some("a context this long")
        } else {
            None
        }
    }

    /// What a call cost, in USD, from the usage the vendor reported: cached prompt tokens at
    /// the cached price, prompt tokens written to a prompt cache at 1.25 times the input price
    /// (Anthropic's rate for its five-minute cache) or twice it (its one-hour cache), the rest
    /// of the prompt at the input price, completion (reasoning included) at the output price,
    /// and each web search a server tool made at `per_web_search`.
    pub fn cost(&self, usage: &crate::chat::Usage) -> f64 {
        let details = usage.prompt_tokens_details.unwrap_or_default();
        let cached = details.cached_tokens.min(usage.prompt_tokens);
        let written = details.cache_creation_tokens.unwrap_or(0).min(usage.prompt_tokens - cached);
        let written_1h = usage.billed.cache_write_1h_tokens.min(written);
        let plain = usage.prompt_tokens - cached - written;
        (plain as f64 * self.input
            + cached as f64 * self.cached_input
            + (written - written_1h) as f64 * self.input * 1.25
            + written_1h as f64 * self.input * 2.0
            + usage.completion_tokens as f64 * self.output)
            / 1e6
            + usage.billed.web_search_requests as f64 * self.per_web_search
    }

    /// The most a request of `prompt_tokens` and up to `max_output` tokens can cost, in USD.
    pub fn max_cost(&self, prompt_tokens: u64, max_output: u64) -> f64 {
        (prompt_tokens as f64 * self.input + max_output as f64 * self.output) / 1e6
    }

    /// The most output an answer to `needs` can hold: the client's limit, else the model's,
    /// and never more than the context window leaves after the prompt.
    pub fn output_limit(&self, needs: &Needs) -> u64 {
        let room = self.context_window.saturating_sub(needs.prompt_tokens);
        let limit = if needs.max_output > 0 {
            needs.max_output
        } else if self.max_output > 0 {
            self.max_output
        } else {
            room
        };
        limit.min(room)
    }

    /// What media cost, in USD: images made, seconds of video, minutes of audio transcribed,
    /// characters spoken.
    pub fn media_cost(&self, media: &Media) -> f64 {
        media.images as f64 * self.per_image
            + media.video_seconds * self.per_video_second
            + media.audio_minutes * self.per_audio_minute
            + media.characters as f64 * self.per_million_characters / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_and_provider_prefixes_are_ignored() {
        assert_eq!(embedded("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(embedded("gpt-4o-2024-08-06").unwrap().input, 2.50);
        assert_eq!(embedded("gemini-2.5-flash-lite").unwrap().output, 0.40);
        assert_eq!(embedded("openai/gpt-4.1-mini").unwrap().input, 0.40);
        assert!(embedded("my-finetune").is_none());
    }

    #[test]
    fn needs_are_checked_in_order() {
        let text_only = chat(1.0, 1.0, 1.0, 1_000, 500, false);
        assert_eq!(text_only.unmet(&Needs { vision: true, ..Needs::default() }), Some("images"));
        let long = Needs { prompt_tokens: 900, max_output: 101, ..Needs::default() };
        assert_eq!(text_only.unmet(&long), Some("a context this long"));
        assert_eq!(text_only.unmet(&Needs { tools: true, prompt_tokens: 10, ..Needs::default() }), None);
        assert_eq!(
            ModelInfo::default().unmet(&Needs { vision: true, prompt_tokens: 1 << 40, ..Needs::default() }),
            None
        );
    }

    #[test]
    fn cost_prices_every_kind_of_token() {
        use crate::chat::{PromptTokensDetails, Usage};
        let m = chat(3.0, 0.3, 15.0, 200_000, 64_000, true);
        let mut usage = Usage::new(1_000_000, 100_000);
        assert!((m.cost(&usage) - (3.0 + 1.5)).abs() < 1e-9);
        usage.prompt_tokens_details =
            Some(PromptTokensDetails { cached_tokens: 400_000, cache_creation_tokens: Some(100_000) });
        // 500k plain at 3, 400k cached at 0.3, 100k written at 3.75, 100k out at 15.
        assert!((m.cost(&usage) - (1.5 + 0.12 + 0.375 + 1.5)).abs() < 1e-9);
    }

    #[test]
    fn one_hour_cache_writes_and_web_searches_are_priced() {
        // An Anthropic message's usage as its API sends it: 100k written to the cache, 40k of
        // them to the one-hour cache, and three web searches.
        let body = br#"{"id":"msg_01","type":"message","role":"assistant","content":[],"usage":{
            "input_tokens":500000,"cache_creation_input_tokens":100000,"cache_read_input_tokens":400000,
            "cache_creation":{"ephemeral_5m_input_tokens":60000,"ephemeral_1h_input_tokens":40000},
            "output_tokens":100000,"server_tool_use":{"web_search_requests":3},"service_tier":"standard"}}"#;
        let usage = crate::providers::anthropic::usage_of(body).unwrap();
        let m = embedded("claude-sonnet-4-5").unwrap();
        // 500k plain at 3, 400k cached at 0.3, 60k at 3.75 (5 min), 40k at 6 (1 h), 100k out at
        // 15, 3 searches at $0.01.
        let expected = 1.5 + 0.12 + 0.225 + 0.24 + 1.5 + 0.03;
        assert!((m.cost(&usage) - expected).abs() < 1e-9, "{} != {expected}", m.cost(&usage));
        // A stream's usage comes in pieces (message_start, then message_delta): the same cost.
        let mut stream = crate::providers::anthropic::Passthrough::new("a", None);
        let mut out = Vec::new();
        crate::providers::StreamTranslator::push(
            &mut stream,
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":500000,\"cache_creation_input_tokens\":100000,\"cache_read_input_tokens\":400000,\"cache_creation\":{\"ephemeral_5m_input_tokens\":60000,\"ephemeral_1h_input_tokens\":40000},\"output_tokens\":1}}}\n\n\
              event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":100000,\"server_tool_use\":{\"web_search_requests\":3}}}\n\n",
            &mut out,
        );
        let streamed = crate::providers::StreamTranslator::usage(&stream).unwrap();
        assert!((m.cost(&streamed) - expected).abs() < 1e-9, "{} != {expected}", m.cost(&streamed));
    }

    #[test]
    fn max_cost_is_prompt_times_input_plus_output_times_output() {
        let m = chat(2.0, 1.0, 10.0, 1_000, 500, true);
        assert!((m.max_cost(1_000_000, 100_000) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_output_limit_is_the_clients_else_the_models_within_the_context() {
        let m = chat(2.0, 1.0, 10.0, 1_000, 500, true);
        let needs = |prompt_tokens, max_output| Needs { prompt_tokens, max_output, ..Needs::default() };
        assert_eq!(m.output_limit(&needs(100, 50)), 50);
        assert_eq!(m.output_limit(&needs(100, 0)), 500);
        assert_eq!(m.output_limit(&needs(800, 0)), 200);
        assert_eq!(m.output_limit(&needs(800, 900)), 200);
        let unknown = ModelInfo { context_window: 1_000, ..ModelInfo::default() };
        assert_eq!(unknown.output_limit(&needs(100, 0)), 900);
        // The most a call to gpt-4o with a 1,000-token prompt and no limit can cost.
        let gpt4o = embedded("gpt-4o").unwrap();
        let worst = gpt4o.max_cost(1_000, gpt4o.output_limit(&needs(1_000, 0)));
        assert!((worst - (1_000.0 * 2.5 + 16_384.0 * 10.0) / 1e6).abs() < 1e-12);
    }

    #[test]
    fn media_are_priced_per_unit() {
        let media = |images, video_seconds, audio_minutes, characters| Media {
            images,
            video_seconds,
            audio_minutes,
            characters,
        };
        assert!((embedded("dall-e-3").unwrap().media_cost(&media(3, 0.0, 0.0, 0)) - 0.12).abs() < 1e-12);
        assert!((embedded("sora-2").unwrap().media_cost(&media(0, 8.0, 0.0, 0)) - 0.8).abs() < 1e-12);
        assert!((embedded("whisper-1").unwrap().media_cost(&media(0, 0.0, 2.5, 0)) - 0.015).abs() < 1e-12);
        assert!((embedded("tts-1").unwrap().media_cost(&media(0, 0.0, 0.0, 10_000)) - 0.15).abs() < 1e-12);
        assert!((embedded("tts-1-hd").unwrap().media_cost(&media(0, 0.0, 0.0, 10_000)) - 0.3).abs() < 1e-12);
        // Token prices stay apart from media prices.
        assert_eq!(embedded("gpt-4o").unwrap().media_cost(&media(1, 1.0, 1.0, 1)), 0.0);
    }
}
