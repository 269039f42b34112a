//! `POST /v1/images/generations` and `POST /v1/images/edits`: the first target that answers,
//! in OpenAI's `ImagesResponse` (passed through from OpenAI-format vendors, translated from
//! Gemini's image models and Imagen), priced by the image (size and quality) or by the tokens
//! the vendor reports.

use crate::attempts::{self, read_answer, vendor_key, Answer, Budget, Completed, Failed};
use crate::http::Rejection;
use crate::media;
use crate::metering::Admission;
use switchyard_core::chat::Usage;
use switchyard_core::config::{Config, Provider, Target};
use switchyard_core::keys::KeyRecord;
use switchyard_core::media::images::{self as wire, ImageAsk};
use switchyard_core::media::{gemini, mock, multipart::Form, openai, price, route, Route, Task};
use switchyard_core::providers::{ParamPolicy, ParamReport};
use worker::{Date, Env};

pub async fn generate(
    config: &Config,
    env: &Env,
    key: &KeyRecord,
    body: Vec<u8>,
    strict: bool,
) -> Result<(Completed, Admission), Rejection> {
    let ask = ImageAsk::generation(body)?;
    run(config, env, key, ask, Task::Images, strict).await
}

pub async fn edit(
    config: &Config,
    env: &Env,
    key: &KeyRecord,
    form: Form,
    strict: bool,
) -> Result<(Completed, Admission), Rejection> {
    let ask = ImageAsk::edit(form)?;
    run(config, env, key, ask, Task::ImageEdits, strict).await
}

async fn run(
    config: &Config,
    env: &Env,
    key: &KeyRecord,
    ask: ImageAsk,
    task: Task,
    strict: bool,
) -> Result<(Completed, Admission), Rejection> {
    let (model, strict) = media::plan(config, key, &ask.model, task, strict)?;
    let (size, quality) = (ask.size.as_deref(), ask.quality.as_deref());
    let hold = model
        .targets
        .iter()
        .map(|t| {
            price::image_hold(
                &price::image_price(config, &t.model, size, quality),
                ask.n,
                ask.prompt_tokens(),
                ask.images.len(),
            )
        })
        .fold(0.0, f64::max);
    let ask = &ask;
    media::admit_and_run(env, config, key, &model, &ask.model, hold, ask.prompt_tokens(), |provider, target, budget| {
        attempt(config, env, provider, target, ask, task, strict, budget)
    })
    .await
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    config: &Config,
    env: &Env,
    provider: &Provider,
    target: &Target,
    ask: &ImageAsk,
    task: Task,
    strict: bool,
    budget: Budget,
) -> Result<Answer, Failed> {
    let price = price::image_price(config, &target.model, ask.size.as_deref(), ask.quality.as_deref());
    let created = Date::now().as_millis() / 1000;
    let name = attempts::describe(config, target);
    let translated = |images: wire::Images, report: &ParamReport| {
        let cost = price::image_cost(&price, images.made.len() as u64, images.usage.as_ref());
        let usage = images.usage.map(|u| Usage::new(u.input_tokens, u.output_tokens));
        // A client that asked for a stream gets one, of whole images: the target makes no
        // partial ones.
        let body = if ask.stream {
            media::bytes(images.encode_stream(created, task == Task::ImageEdits, ask), "text/event-stream")
        } else {
            media::bytes(images.encode(created), "application/json")
        };
        media::answer(body, Some(cost), usage, report)
    };
    let route = route(provider, &target.model, task).unwrap_or(Route::PassThrough);
    if route == Route::Mock {
        return Ok(translated(mock::images(ask), &ParamReport::default()));
    }
    let key = vendor_key(provider, env)?;
    match route {
        Route::Gemini | Route::Imagen => {
            let mut policy = ParamPolicy::new(if route == Route::Imagen { "Imagen" } else { "Gemini" }, strict);
            let calls = match route {
                Route::Imagen => gemini::imagen_requests(provider, &target.model, ask, key.as_deref(), &mut policy),
                _ => gemini::image_requests(provider, &target.model, ask, key.as_deref(), &mut policy),
            }
            .map_err(Failed::final_)?;
            let bodies = media::call_all(provider, &name, &calls, key.as_deref(), budget).await?;
            let images = match route {
                Route::Imagen => gemini::imagen_answer(&provider.name, &bodies),
                _ => gemini::images_answer(&provider.name, &bodies),
            }
            .map_err(media::decode_failed)?;
            Ok(translated(images, &policy.report))
        }
        // OpenAI-format vendors get the client's bytes with their model, and answer in OpenAI's
        // shape: byte for byte to the client (a stream as it arrives).
        _ => {
            let (body, content_type) = ask.body.with_model(&target.model);
            let outbound = openai::request(provider, &target.model, task, body, content_type, key.as_deref());
            let mut response = attempts::call_vendor(provider, &outbound, key.as_deref(), budget).await?;
            if ask.stream {
                let streamed = media::stream_through(provider, &response, "text/event-stream", &budget)?;
                return Ok(media::answer(streamed, None, None, &ParamReport::default()));
            }
            let content_type = response.headers().get("content-type").ok().flatten();
            let body = read_answer(provider, &name, &mut response, budget).await?;
            let (made, usage) = wire::summary(&body);
            let made = made.unwrap_or(u64::from(ask.n));
            let cost = price::image_cost(&price, made, usage.as_ref());
            let response = media::bytes(body, content_type.as_deref().unwrap_or("application/json"));
            let usage = usage.map(|u| Usage::new(u.input_tokens, u.output_tokens));
            Ok(media::answer(response, Some(cost), usage, &ParamReport::default()))
        }
    }
}
