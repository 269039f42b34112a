//! `POST /v1/images/generations` (JSON) and `POST /v1/images/edits` (multipart): the request
//! as one `ImageAsk` whatever it came as, checked against OpenAI's contract, and the answer in
//! OpenAI's `ImagesResponse` shape for targets that do not speak it.

use super::multipart::{Form, Part};
use super::one_of;
use crate::canonical::Source;
use crate::error::GatewayError;
use serde::{Deserialize, Serialize};

/// The longest prompt OpenAI's image models take (the GPT image models'; DALL·E's are shorter,
/// and their vendor says so).
pub const MAX_PROMPT_CHARS: usize = 32_000;
/// The most images one request may ask for, and the most an edit may take.
pub const MAX_IMAGES: u32 = 10;
pub const MAX_INPUT_IMAGES: usize = 16;

/// What the client sent, for a pass-through.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Source),
    Form(Form),
}

impl Body {
    /// The client's bytes with `model` set to the vendor's, and their content type.
    pub fn with_model(&self, model: &str) -> (Vec<u8>, String) {
        match self {
            Body::Json(source) => (source.with_model(model), "application/json".to_owned()),
            Body::Form(form) => (form.with_value("model", model), form.content_type()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Body::Json(source) => source.bytes.len(),
            Body::Form(form) => form.body.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An image request: a generation, or an edit with its input images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageAsk {
    pub model: String,
    pub prompt: String,
    pub n: u32,
    pub size: Option<String>,
    pub quality: Option<String>,
    pub response_format: Option<String>,
    pub output_format: Option<String>,
    pub output_compression: Option<u32>,
    pub background: Option<String>,
    pub moderation: Option<String>,
    pub style: Option<String>,
    pub user: Option<String>,
    pub stream: bool,
    /// Partial images asked of a stream (0 to 3).
    pub partial_images: Option<u32>,
    /// The edit's images, in order (empty for a generation), and its mask.
    pub images: Vec<Part>,
    pub mask: Option<Part>,
    /// Other parameters the client sent, by name (passed through; named when dropped).
    pub extra: Vec<String>,
    pub body: Body,
}

#[derive(Deserialize)]
struct GenerationDoc {
    #[serde(default)]
    model: Option<String>,
    prompt: String,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    quality: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    output_format: Option<String>,
    #[serde(default)]
    output_compression: Option<u32>,
    #[serde(default)]
    background: Option<String>,
    #[serde(default)]
    moderation: Option<String>,
    #[serde(default)]
    style: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    partial_images: Option<u32>,
}

/// The parameters `ImageAsk` models; any other is `extra`.
const MODELLED: &[&str] = &[
    "model",
    "prompt",
    "n",
    "size",
    "quality",
    "response_format",
    "output_format",
    "output_compression",
    "background",
    "moderation",
    "style",
    "user",
    "stream",
    "partial_images",
    "image",
    "mask",
];

fn missing_model() -> GatewayError {
    GatewayError::invalid_request("model", "'model' is required: the gateway routes by it.")
}

impl ImageAsk {
    /// `POST /v1/images/generations`'s JSON body.
    pub fn generation(body: Vec<u8>) -> Result<ImageAsk, GatewayError> {
        let doc: GenerationDoc = crate::error::parse_body(&body)?;
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
        let model = doc.model.filter(|m| !m.is_empty()).ok_or_else(missing_model)?;
        let model_span = model_span.ok_or_else(missing_model)?;
        let partial_images = doc.partial_images;
        if partial_images.is_some_and(|p| p > 3) {
            return Err(GatewayError::invalid_request("partial_images", "'partial_images' is between 0 and 3."));
        }
        let ask = ImageAsk {
            model,
            prompt: doc.prompt,
            n: doc.n.unwrap_or(1),
            size: doc.size,
            quality: doc.quality,
            response_format: doc.response_format,
            output_format: doc.output_format,
            output_compression: doc.output_compression,
            background: doc.background,
            moderation: doc.moderation,
            style: doc.style,
            user: doc.user,
            stream: doc.stream.unwrap_or(false),
            partial_images,
            images: Vec::new(),
            mask: None,
            extra,
            body: Body::Json(Source { bytes: body, model_span, ..Source::default() }),
        };
        ask.validate(&["standard", "hd", "low", "medium", "high", "auto"])?;
        Ok(ask)
    }

    /// `POST /v1/images/edits`'s form.
    pub fn edit(form: Form) -> Result<ImageAsk, GatewayError> {
        let text = |name: &str| form.text(name).map(|v| v.map(str::to_owned));
        let number = |name: &str| -> Result<Option<u32>, GatewayError> {
            match form.text(name)? {
                None => Ok(None),
                Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| {
                    GatewayError::invalid_request(name, format!("'{name}' must be a whole number, not '{v}'."))
                }),
            }
        };
        let images: Vec<Part> = form.all("image").cloned().collect();
        if images.is_empty() {
            return Err(GatewayError::invalid_request("image", "'image' is required: the image (or images) to edit."));
        }
        if let Some(part) = images.iter().find(|p| !p.is_file()) {
            return Err(GatewayError::invalid_request(&part.name, "'image' must be a file."));
        }
        if images.len() > MAX_INPUT_IMAGES {
            return Err(GatewayError::invalid_request(
                "image",
                format!("At most {MAX_INPUT_IMAGES} images can be edited at once."),
            ));
        }
        if let Some(part) = images.iter().find(|p| p.is_empty()) {
            return Err(GatewayError::invalid_request(&part.name, "An 'image' file is empty."));
        }
        let mask = match form.all("mask").collect::<Vec<_>>().as_slice() {
            [] => None,
            [mask] if mask.is_file() => Some((*mask).clone()),
            _ => return Err(GatewayError::invalid_request("mask", "'mask' is one file.")),
        };
        let stream = match form.text("stream")? {
            None => false,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(GatewayError::invalid_request(
                    "stream",
                    format!("'stream' is true or false, not '{other}'."),
                ))
            }
        };
        let partial_images = number("partial_images")?;
        if partial_images.is_some_and(|p| p > 3) {
            return Err(GatewayError::invalid_request("partial_images", "'partial_images' is between 0 and 3."));
        }
        let prompt = text("prompt")?.ok_or_else(|| GatewayError::invalid_request("prompt", "'prompt' is required."))?;
        let model = text("model")?.filter(|m| !m.is_empty()).ok_or_else(missing_model)?;
        let mut extra: Vec<String> = Vec::new();
        for part in &form.parts {
            let base = part.name.strip_suffix("[]").unwrap_or(&part.name);
            let base = base.split('[').next().unwrap_or(base);
            if !MODELLED.contains(&base) && !extra.iter().any(|e| e == base) {
                extra.push(base.to_owned());
            }
        }
        let ask = ImageAsk {
            model,
            prompt,
            n: number("n")?.unwrap_or(1),
            size: text("size")?,
            quality: text("quality")?,
            response_format: text("response_format")?,
            output_format: text("output_format")?,
            output_compression: number("output_compression")?,
            background: text("background")?,
            moderation: text("moderation")?,
            style: text("style")?,
            user: text("user")?,
            stream,
            partial_images,
            images,
            mask,
            extra,
            body: Body::Form(form),
        };
        ask.validate(&["standard", "low", "medium", "high", "auto"])?;
        Ok(ask)
    }

    fn validate(&self, qualities: &[&str]) -> Result<(), GatewayError> {
        if self.prompt.trim().is_empty() {
            return Err(GatewayError::invalid_request("prompt", "'prompt' must not be empty."));
        }
        if self.prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(GatewayError::invalid_request(
                "prompt",
                format!("'prompt' is at most {MAX_PROMPT_CHARS} characters."),
            ));
        }
        if !(1..=MAX_IMAGES).contains(&self.n) {
            return Err(GatewayError::invalid_request("n", format!("'n' is between 1 and {MAX_IMAGES}.")));
        }
        if let Some(size) = self.size.as_deref() {
            if size != "auto" && super::parse_size(size).is_none() {
                return Err(GatewayError::invalid_request(
                    "size",
                    format!(
                        "Invalid value for 'size': '{size}'. A size is WIDTHxHEIGHT in pixels (1024x1024), or auto."
                    ),
                ));
            }
        }
        one_of("quality", self.quality.as_deref(), qualities)?;
        one_of("response_format", self.response_format.as_deref(), &["url", "b64_json"])?;
        one_of("output_format", self.output_format.as_deref(), &["png", "jpeg", "webp"])?;
        one_of("background", self.background.as_deref(), &["transparent", "opaque", "auto"])?;
        one_of("moderation", self.moderation.as_deref(), &["low", "auto"])?;
        one_of("style", self.style.as_deref(), &["vivid", "natural"])?;
        if self.output_compression.is_some_and(|c| c > 100) {
            return Err(GatewayError::invalid_request("output_compression", "'output_compression' is 0 to 100."));
        }
        Ok(())
    }

    /// The prompt's tokens, estimated at four characters a token.
    pub fn prompt_tokens(&self) -> u64 {
        (self.prompt.len() as u64).div_ceil(4)
    }

    /// The edit's input image bytes, in order.
    pub fn input_images<'a>(&'a self) -> impl Iterator<Item = (&'a Part, &'a [u8])> + 'a {
        let form = match &self.body {
            Body::Form(form) => Some(form),
            Body::Json(_) => None,
        };
        self.images.iter().filter_map(move |p| form.map(|f| (p, f.content(p))))
    }
}

/// One image made by a vendor that is not OpenAI's: its bytes in base64 and their media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub b64: String,
    pub mime_type: String,
}

/// What an answer reports using, in OpenAI's `ImageGenUsage` terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub input_tokens_details: InputDetails,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDetails {
    #[serde(default)]
    pub text_tokens: u64,
    #[serde(default)]
    pub image_tokens: u64,
}

impl ImageUsage {
    pub fn add(&mut self, other: &ImageUsage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
        self.input_tokens_details.text_tokens += other.input_tokens_details.text_tokens;
        self.input_tokens_details.image_tokens += other.input_tokens_details.image_tokens;
    }
}

/// A translated answer: the images, and the usage when the vendor reports one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Images {
    pub made: Vec<Made>,
    pub usage: Option<ImageUsage>,
}

#[derive(Serialize)]
struct ResponseDoc<'a> {
    created: u64,
    data: Vec<Datum<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a ImageUsage>,
}

#[derive(Serialize)]
struct Datum<'a> {
    b64_json: &'a str,
}

impl Images {
    /// OpenAI's `ImagesResponse`, every image as `b64_json`.
    pub fn encode(&self, created: u64) -> Vec<u8> {
        let format = |m: &Made| match m.mime_type.as_str() {
            "image/png" => Some("png"),
            "image/jpeg" => Some("jpeg"),
            "image/webp" => Some("webp"),
            _ => None,
        };
        // One format for the whole answer, when all images share it.
        let first = self.made.first().and_then(format);
        let output_format = first.filter(|f| self.made.iter().all(|m| format(m) == Some(f)));
        let doc = ResponseDoc {
            created,
            data: self.made.iter().map(|m| Datum { b64_json: &m.b64 }).collect(),
            output_format,
            usage: self.usage.as_ref(),
        };
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

/// One event of an image stream (`ImageGenCompletedEvent`, `ImageEditCompletedEvent`).
#[derive(Serialize)]
struct CompletedEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    b64_json: &'a str,
    created_at: u64,
    size: &'a str,
    quality: &'a str,
    background: &'a str,
    output_format: &'a str,
    usage: ImageUsage,
}

impl Images {
    /// The answer as the stream a client that asked for one (`stream: true`) reads, from a
    /// target that makes whole images only: one `image_generation.completed` event an image
    /// (`image_edit.completed` for an edit), no partial images. The answer's usage is on the
    /// last event, zeros on the others (so that their sum is the answer's); the settings the
    /// events must name are the request's where OpenAI's enums have them, else `auto`.
    pub fn encode_stream(&self, created: u64, edit: bool, ask: &ImageAsk) -> Vec<u8> {
        let kind = if edit { "image_edit.completed" } else { "image_generation.completed" };
        let pick = |value: Option<&str>, allowed: &[&'static str]| -> &'static str {
            value.and_then(|v| allowed.iter().find(|a| **a == v).copied()).unwrap_or("auto")
        };
        let size = pick(ask.size.as_deref(), &["1024x1024", "1024x1536", "1536x1024", "auto"]);
        let quality = pick(ask.quality.as_deref(), &["low", "medium", "high", "auto"]);
        let background = pick(ask.background.as_deref(), &["transparent", "opaque", "auto"]);
        let mut out = Vec::new();
        for (i, made) in self.made.iter().enumerate() {
            let output_format = match made.mime_type.as_str() {
                "image/jpeg" => "jpeg",
                "image/webp" => "webp",
                _ => "png",
            };
            let last = i + 1 == self.made.len();
            let event = CompletedEvent {
                kind,
                b64_json: &made.b64,
                created_at: created,
                size,
                quality,
                background,
                output_format,
                usage: if last { self.usage.unwrap_or_default() } else { ImageUsage::default() },
            };
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(kind.as_bytes());
            out.extend_from_slice(b"\ndata: ");
            out.extend_from_slice(&serde_json::to_vec(&event).unwrap_or_default());
            out.extend_from_slice(b"\n\n");
        }
        out
    }
}

/// What an OpenAI `ImagesResponse` holds for its cost, read in one pass without keeping the
/// images: how many there are, and the usage the GPT image models report.
pub fn summary(body: &[u8]) -> (Option<u64>, Option<ImageUsage>) {
    #[derive(Deserialize)]
    struct Summary {
        #[serde(default)]
        data: Option<Vec<serde::de::IgnoredAny>>,
        #[serde(default)]
        usage: Option<ImageUsage>,
    }
    match serde_json::from_slice::<Summary>(body) {
        Ok(s) => (s.data.map(|d| d.len() as u64), s.usage),
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn whole_images_stream_as_completed_events_with_the_usage_on_the_last() {
        let made = |mime: &str| Made { b64: "AAAA".to_owned(), mime_type: mime.to_owned() };
        let usage = ImageUsage { input_tokens: 3, output_tokens: 5, total_tokens: 8, ..ImageUsage::default() };
        let images = Images { made: vec![made("image/png"), made("image/webp")], usage: Some(usage) };
        let ask = ImageAsk::generation(
            br#"{"model":"m","prompt":"x","size":"1024x1024","quality":"standard","stream":true}"#.to_vec(),
        )
        .unwrap();
        let text = String::from_utf8(images.encode_stream(7, false, &ask)).unwrap();
        let events: Vec<serde_json::Value> =
            text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
        assert!(text.starts_with("event: image_generation.completed\ndata: {"), "{text}");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["type"], "image_generation.completed");
        assert_eq!((events[0]["size"].as_str(), events[0]["quality"].as_str()), (Some("1024x1024"), Some("auto")));
        assert_eq!(
            (events[0]["output_format"].as_str(), events[1]["output_format"].as_str()),
            (Some("png"), Some("webp"))
        );
        assert_eq!(
            (events[0]["usage"]["total_tokens"].as_u64(), events[1]["usage"]["total_tokens"].as_u64()),
            (Some(0), Some(8))
        );
        assert_eq!(events[1]["created_at"], 7);
        let edit = String::from_utf8(images.encode_stream(7, true, &ask)).unwrap();
        assert!(edit.starts_with("event: image_edit.completed\n"));
    }

    use super::*;

    fn generation(json: &str) -> Result<ImageAsk, GatewayError> {
        ImageAsk::generation(json.as_bytes().to_vec())
    }

    use crate::media::multipart::Field;

    #[test]
    fn a_generation_parses_and_keeps_its_bytes() {
        let ask =
            generation(r#"{"model":"pics","prompt":"an otter","n":2,"size":"1536x1024","quality":"high","seed":7}"#)
                .unwrap();
        assert_eq!((ask.n, ask.size.as_deref(), ask.quality.as_deref()), (2, Some("1536x1024"), Some("high")));
        assert_eq!(ask.extra, ["seed"]);
        let (bytes, content_type) = ask.body.with_model("gpt-image-1");
        assert_eq!(content_type, "application/json");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"model":"gpt-image-1","prompt":"an otter","n":2,"size":"1536x1024","quality":"high","seed":7}"#
        );
        // Nulls are defaults, as the contract's nullable fields are.
        let ask = generation(r#"{"model":"pics","prompt":"x","n":null,"size":null}"#).unwrap();
        assert_eq!((ask.n, ask.size), (1, None));
    }

    #[test]
    fn bad_generations_name_their_parameter() {
        let cases = [
            (r#"{"prompt":"x"}"#, "model"),
            (r#"{"model":"","prompt":"x"}"#, "model"),
            (r#"{"model":"m"}"#, ""),
            (r#"{"model":"m","prompt":"  "}"#, "prompt"),
            (r#"{"model":"m","prompt":"x","n":0}"#, "n"),
            (r#"{"model":"m","prompt":"x","n":11}"#, "n"),
            (r#"{"model":"m","prompt":"x","n":"2"}"#, "n"),
            (r#"{"model":"m","prompt":"x","size":"big"}"#, "size"),
            (r#"{"model":"m","prompt":"x","quality":"best"}"#, "quality"),
            (r#"{"model":"m","prompt":"x","response_format":"png"}"#, "response_format"),
            (r#"{"model":"m","prompt":"x","output_format":"gif"}"#, "output_format"),
            (r#"{"model":"m","prompt":"x","output_compression":101}"#, "output_compression"),
            (r#"{"model":"m","prompt":"x","background":"clear"}"#, "background"),
            (r#"{"model":"m","prompt":"x","partial_images":4}"#, "partial_images"),
        ];
        for (body, param) in cases {
            let e = generation(body).unwrap_err();
            assert_eq!((e.status, e.param.as_deref().unwrap_or("")), (400, param), "{body}: {}", e.message);
        }
        let long = format!(r#"{{"model":"m","prompt":"{}"}}"#, "a".repeat(MAX_PROMPT_CHARS + 1));
        assert_eq!(generation(&long).unwrap_err().param.as_deref(), Some("prompt"));
        assert_eq!(generation("not json").unwrap_err().code.as_deref(), Some("invalid_json"));
    }

    fn edit_form(fields: &[(&str, Option<&str>, &[u8])]) -> Form {
        let body = super::super::multipart::encode("b0undary", fields);
        Form::parse("multipart/form-data; boundary=b0undary", body).unwrap()
    }

    #[test]
    fn an_edit_parses_its_images_and_fields() {
        let form = edit_form(&[
            ("model", None, b"pics"),
            ("prompt", None, b"add a hat"),
            ("image[]", Some("a.png"), b"\x89PNG1"),
            ("image[]", Some("b.png"), b"\x89PNG2"),
            ("mask", Some("m.png"), b"\x89PNGm"),
            ("n", None, b"2"),
            ("input_fidelity", None, b"high"),
        ]);
        let ask = ImageAsk::edit(form).unwrap();
        assert_eq!(ask.images.len(), 2);
        assert!(ask.mask.is_some());
        assert_eq!(ask.n, 2);
        assert_eq!(ask.extra, ["input_fidelity"]);
        let bytes: Vec<&[u8]> = ask.input_images().map(|(_, b)| b).collect();
        assert_eq!(bytes, [&b"\x89PNG1"[..], b"\x89PNG2"]);
        let (body, content_type) = ask.body.with_model("gpt-image-1");
        let again = Form::parse(&content_type, body).unwrap();
        assert_eq!(again.text("model").unwrap(), Some("gpt-image-1"));
    }

    #[test]
    fn bad_edits_name_their_parameter() {
        let png: &[u8] = b"\x89PNG";
        let cases: Vec<(Vec<Field>, &str)> = vec![
            (vec![("model", None, b"m"), ("prompt", None, b"x")], "image"),
            (vec![("model", None, b"m"), ("prompt", None, b"x"), ("image", None, png)], "image"),
            (vec![("model", None, b"m"), ("prompt", None, b"x"), ("image", Some("a.png"), b"")], "image"),
            (vec![("model", None, b"m"), ("image", Some("a.png"), png)], "prompt"),
            (vec![("prompt", None, b"x"), ("image", Some("a.png"), png)], "model"),
            (
                vec![("model", None, b"m"), ("prompt", None, b"x"), ("image", Some("a.png"), png), ("n", None, b"two")],
                "n",
            ),
            (
                vec![
                    ("model", None, b"m"),
                    ("prompt", None, b"x"),
                    ("image", Some("a.png"), png),
                    ("stream", None, b"yes"),
                ],
                "stream",
            ),
            (
                vec![
                    ("model", None, b"m"),
                    ("prompt", None, b"x"),
                    ("image", Some("a.png"), png),
                    ("quality", None, b"hd"),
                ],
                "quality",
            ),
            (
                vec![
                    ("model", None, b"m"),
                    ("prompt", None, b"x"),
                    ("image", Some("a.png"), png),
                    ("mask", None, b"x"),
                ],
                "mask",
            ),
        ];
        for (fields, param) in cases {
            let e = ImageAsk::edit(edit_form(&fields)).unwrap_err();
            assert_eq!((e.status, e.param.as_deref().unwrap_or("")), (400, param), "{}", e.message);
        }
        let many: Vec<(&str, Option<&str>, &[u8])> = std::iter::repeat_n(("image[]", Some("a.png"), png), 17)
            .chain([("model", None, &b"m"[..]), ("prompt", None, &b"x"[..])])
            .collect();
        assert_eq!(ImageAsk::edit(edit_form(&many)).unwrap_err().param.as_deref(), Some("image"));
    }

    #[test]
    fn the_answer_is_openais_shape() {
        let images = Images {
            made: vec![Made { b64: "AAAA".into(), mime_type: "image/png".into() }],
            usage: Some(ImageUsage {
                input_tokens: 3,
                output_tokens: 1290,
                total_tokens: 1293,
                ..ImageUsage::default()
            }),
        };
        let value: serde_json::Value = serde_json::from_slice(&images.encode(1_700_000_000)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"created": 1_700_000_000u64, "data": [{"b64_json": "AAAA"}], "output_format": "png",
                "usage": {"input_tokens": 3, "output_tokens": 1290, "total_tokens": 1293,
                          "input_tokens_details": {"text_tokens": 0, "image_tokens": 0}}})
        );
        let body = br#"{"created":1,"data":[{"b64_json":"x"},{"b64_json":"y"}],"usage":{"input_tokens":10,"output_tokens":4160,"total_tokens":4170,"input_tokens_details":{"text_tokens":10,"image_tokens":0}}}"#;
        let (count, usage) = summary(body);
        assert_eq!((count, usage.unwrap().output_tokens), (Some(2), 4160));
        assert_eq!(summary(br#"{"created":1,"data":[]}"#), (Some(0), None));
        assert_eq!(summary(b"{"), (None, None));
    }
}
