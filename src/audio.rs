//! `POST /v1/audio/speech`, `/v1/audio/transcriptions` and `/v1/audio/translations`: the first
//! target that answers. Speech from OpenAI-format vendors streams through to the client as it
//! arrives (never read here), with the vendor's content type; Gemini's speech (16-bit PCM) comes
//! back as WAV or PCM. Transcriptions pass through (the upload with its model replaced) or go to
//! Gemini with the audio inline.

use crate::attempts::{self, read_answer, vendor_key, Answer, Budget, Completed, Failed};
use crate::http::Rejection;
use crate::media;
use crate::metering::Admission;
use switchyard_core::chat::Usage;
use switchyard_core::config::{Config, Provider, Target};
use switchyard_core::keys::KeyRecord;
use switchyard_core::media::speech::{self, SpeechRequest};
use switchyard_core::media::transcription::{self, TranscriptionRequest};
use switchyard_core::media::{gemini, mock, multipart::Form, openai, price, route, Route, Task};
use switchyard_core::providers::{ParamPolicy, ParamReport};
use worker::Env;

pub async fn speech(
    config: &Config,
    env: &Env,
    key: &KeyRecord,
    body: Vec<u8>,
    strict: bool,
) -> Result<(Completed, Admission), Rejection> {
    let request = SpeechRequest::parse(body)?;
    let (model, strict) = media::plan(config, key, &request.model, Task::Speech, strict)?;
    let characters = request.characters();
    let prompt_chars = characters + request.instructions.as_deref().map_or(0, |i| i.chars().count() as u64);
    let hold = model
        .targets
        .iter()
        .map(|t| price::speech_hold(&config.model_info(&t.model), characters, prompt_chars))
        .fold(0.0, f64::max);
    let tokens = prompt_chars.div_ceil(4);
    let request = &request;
    media::admit_and_run(env, config, key, &model, &request.model, hold, tokens, |provider, target, budget| {
        speak(config, env, provider, target, request, strict, budget)
    })
    .await
}

async fn speak(
    config: &Config,
    env: &Env,
    provider: &Provider,
    target: &Target,
    request: &SpeechRequest,
    strict: bool,
    budget: Budget,
) -> Result<Answer, Failed> {
    let info = config.model_info(&target.model);
    let characters = request.characters();
    let pcm_answer = |pcm: &[u8], rate: u32, format: &str, tokens: Option<(u64, u64)>, report: &ParamReport| {
        let (body, content_type) = speech::pcm_answer(pcm, rate, format, request.sse, tokens);
        let usage = tokens.map(|(input, output)| Usage::new(input, output));
        media::answer(media::bytes(body, content_type), price::speech_cost(&info, characters, tokens), usage, report)
    };
    match route(provider, &target.model, Task::Speech).unwrap_or(Route::PassThrough) {
        Route::Mock => {
            let mut policy = ParamPolicy::new("The mock's", strict);
            let format = speech::pcm_format(request, &mut policy, "The mock's").map_err(Failed::final_)?;
            Ok(pcm_answer(&mock::speech_pcm(request), mock::SAMPLE_RATE, format, None, &policy.report))
        }
        Route::Gemini | Route::Imagen => {
            let key = vendor_key(provider, env)?;
            let mut policy = ParamPolicy::new("Gemini", strict);
            let format = speech::pcm_format(request, &mut policy, "Gemini").map_err(Failed::final_)?;
            let outbound = gemini::speech_request(provider, &target.model, request, key.as_deref(), &mut policy)
                .map_err(Failed::final_)?;
            let name = attempts::describe(config, target);
            let mut response = attempts::call_vendor(provider, &outbound, key.as_deref(), budget).await?;
            let body = read_answer(provider, &name, &mut response, budget).await?;
            let spoken = gemini::speech_answer(&provider.name, &body).map_err(media::decode_failed)?;
            Ok(pcm_answer(&spoken.pcm, spoken.sample_rate, format, spoken.tokens, &policy.report))
        }
        // The vendor's audio, streamed through as it comes.
        Route::PassThrough => {
            let key = vendor_key(provider, env)?;
            let body = request.source.with_model(&target.model);
            let outbound =
                openai::request(provider, &target.model, Task::Speech, body, "application/json".into(), key.as_deref());
            let response = attempts::call_vendor(provider, &outbound, key.as_deref(), budget).await?;
            let fallback = if request.sse { "text/event-stream" } else { speech::content_type(request.format()) };
            let streamed = media::stream_through(provider, &response, fallback, &budget)?;
            let cost = price::speech_cost(&info, characters, None);
            Ok(media::answer(streamed, cost, None, &ParamReport::default()))
        }
    }
}

pub async fn transcribe(
    config: &Config,
    env: &Env,
    key: &KeyRecord,
    form: Form,
    translate: bool,
    strict: bool,
) -> Result<(Completed, Admission), Rejection> {
    let request = TranscriptionRequest::parse(form, translate)?;
    let task = if translate { Task::Translation } else { Task::Transcription };
    let (model, strict) = media::plan(config, key, &request.model, task, strict)?;
    let (seconds, _) = request.seconds_bound();
    let hold = model
        .targets
        .iter()
        .map(|t| price::transcription_hold(&config.model_info(&t.model), seconds))
        .fold(0.0, f64::max);
    // Gemini's count of the audio, for a target's per-minute token limit.
    let tokens = (seconds * 32.0) as u64;
    let request = &request;
    media::admit_and_run(env, config, key, &model, &request.model, hold, tokens, |provider, target, budget| {
        listen(config, env, provider, target, request, task, strict, budget)
    })
    .await
}

#[allow(clippy::too_many_arguments)]
async fn listen(
    config: &Config,
    env: &Env,
    provider: &Provider,
    target: &Target,
    request: &TranscriptionRequest,
    task: Task,
    strict: bool,
    budget: Budget,
) -> Result<Answer, Failed> {
    let info = config.model_info(&target.model);
    // A WAV file's length is known exactly; other audio's only from the vendor's answer.
    let known_seconds = match request.seconds_bound() {
        (seconds, true) => Some(seconds),
        _ => None,
    };
    let tokens_usage = |tokens: Option<(u64, u64)>| tokens.map(|(input, output)| Usage::new(input, output));
    match route(provider, &target.model, task).unwrap_or(Route::PassThrough) {
        Route::Mock => {
            let (body, content_type) = mock::transcription(request).map_err(Failed::final_)?;
            Ok(media::answer(media::bytes(body, content_type), Some(0.0), None, &ParamReport::default()))
        }
        Route::Gemini | Route::Imagen => {
            let key = vendor_key(provider, env)?;
            let mut policy = ParamPolicy::new("Gemini", strict);
            let outbound = gemini::transcription_request(provider, &target.model, request, key.as_deref(), &mut policy)
                .map_err(Failed::final_)?;
            let name = attempts::describe(config, target);
            let mut response = attempts::call_vendor(provider, &outbound, key.as_deref(), budget).await?;
            let body = read_answer(provider, &name, &mut response, budget).await?;
            let (text, tokens) = gemini::transcription_answer(&provider.name, &body).map_err(media::decode_failed)?;
            let (body, content_type) = transcription::encode(
                request.format(),
                &text,
                known_seconds,
                request.language.as_deref(),
                request.translate,
                tokens,
            )
            .ok_or_else(|| {
                let message = format!("A Gemini transcript cannot be given as '{}'.", request.format());
                Failed::final_(switchyard_core::GatewayError::invalid_request("response_format", message))
            })?;
            let cost = price::transcription_cost(&info, known_seconds, tokens);
            Ok(media::answer(media::bytes(body, content_type), cost, tokens_usage(tokens), &policy.report))
        }
        Route::PassThrough => {
            let key = vendor_key(provider, env)?;
            let body = request.form.with_value("model", &target.model);
            let outbound =
                openai::request(provider, &target.model, task, body, request.form.content_type(), key.as_deref());
            let mut response = attempts::call_vendor(provider, &outbound, key.as_deref(), budget).await?;
            if request.stream {
                let streamed = media::stream_through(provider, &response, "text/event-stream", &budget)?;
                let cost = price::transcription_cost(&info, known_seconds, None);
                return Ok(media::answer(streamed, cost, None, &ParamReport::default()));
            }
            let content_type = response.headers().get("content-type").ok().flatten();
            let name = attempts::describe(config, target);
            let body = read_answer(provider, &name, &mut response, budget).await?;
            let measured = transcription::measured(request.format(), &body);
            let cost = price::transcription_cost(&info, measured.seconds.or(known_seconds), measured.tokens);
            let response = media::bytes(body, content_type.as_deref().unwrap_or("application/json"));
            Ok(media::answer(response, cost, tokens_usage(measured.tokens), &ParamReport::default()))
        }
    }
}
