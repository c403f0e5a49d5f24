//! Request bodies of the OpenAI API, their validation into a [`Job`] for the engine, and
//! OpenAI-shaped errors. Nothing here reaches the engine: a bad request is answered here.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use swerl_model::{ChatMessage, EngineRequest, SamplingParams};

use super::{AppState, now};

/// Most stop strings a request may give.
const MAX_STOP: usize = 16;

/// Most `logprobs` (alternatives per token) a completions request may ask for.
const MAX_LOGPROBS: u32 = 20;

/// `max_tokens` of a completions request that gives none (OpenAI's default).
const DEFAULT_COMPLETION_TOKENS: usize = 16;

/// An OpenAI-shaped error: `{"error": {"message", "type", "param", "code"}}` with a status.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), param: None, code: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "param": self.param,
                                    "code": self.code}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// An OpenAI-shaped error response.
pub(super) fn error(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Response {
    ApiError::new(status, kind, message).into_response()
}

/// A 400 `invalid_request_error`.
pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}
/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Fields common to both endpoints.
#[derive(Debug, Deserialize)]
struct Common {
    model: Option<String>,
    n: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    max_tokens: Option<usize>,
    stop: Option<OneOrMany>,
    seed: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

/// A completions prompt: text, a list of one text, or token ids.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    #[serde(flatten)]
    common: Common,
    prompt: Prompt,
    logprobs: Option<u32>,
    echo: Option<bool>,
}

/// Chat content: text, or a list of parts of which the text ones are used.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    #[serde(flatten)]
    common: Common,
    messages: Vec<Message>,
    max_completion_tokens: Option<usize>,
    logprobs: Option<bool>,
}

/// Which endpoint a response is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Completion,
    Chat,
}

/// A validated request, ready for the engine.
pub(super) struct Job {
    pub(super) kind: Kind,
    /// The response's id (`cmpl-…`, `chatcmpl-…`).
    pub(super) id: String,
    pub(super) prompt: Vec<u32>,
    /// One entry per choice (`n`).
    pub(super) samples: Vec<SamplingParams>,
    /// Report the sampled tokens' log-probabilities.
    pub(super) logprobs: bool,
    pub(super) stream: bool,
    /// Streamed: end with a chunk holding the usage counts.
    pub(super) include_usage: bool,
    /// Completions with `echo`: the prompt text put before each choice's text.
    pub(super) echo: Option<String>,
}

impl Job {
    /// The request for the engine.
    pub(super) fn engine_request(&self) -> EngineRequest {
        EngineRequest { prompt_ids: self.prompt.clone(), samples: self.samples.clone() }
    }

    /// The path it came on (for the request log).
    pub(super) fn path(&self) -> &'static str {
        match self.kind {
            Kind::Completion => "/v1/completions",
            Kind::Chat => "/v1/chat/completions",
        }
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request_too_large"
        } else {
            "invalid_request_error"
        };
        ApiError::new(status, kind, r.body_text())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

/// What a request may ask for of this server.
#[derive(Clone, Debug)]
pub(super) struct Limits {
    /// The model name clients use.
    pub(super) model_name: String,
    /// The model's context length in tokens.
    pub(super) context: usize,
    /// Largest `n`.
    pub(super) max_n: usize,
}

impl Limits {
    /// Checks the fields both endpoints share and builds each sample's parameters.
    fn sampling(
        &self,
        c: &Common,
        prompt_len: usize,
        max_tokens: Option<usize>,
        default_max: usize,
    ) -> Result<Vec<SamplingParams>, ApiError> {
        if let Some(m) = &c.model
            && *m != self.model_name
        {
            let message = format!("the model `{m}` does not exist; this server serves `{}`", self.model_name);
            return Err(ApiError {
                param: Some("model"),
                code: Some("model_not_found"),
                ..ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
            });
        }
        let n = c.n.unwrap_or(1);
        if n == 0 || n > self.max_n {
            return Err(bad_request(format!("n must be between 1 and {}", self.max_n)));
        }
        let temperature = c.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(bad_request(format!("temperature {temperature} must be between 0 and 2")));
        }
        let top_p = c.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(bad_request(format!("top_p {top_p} must be in (0, 1]")));
        }
        let top_k = match c.top_k {
            None | Some(-1) | Some(0) => 0,
            Some(k) if k > 0 => k as usize,
            Some(k) => return Err(bad_request(format!("top_k {k} must be -1, 0 or positive"))),
        };
        if prompt_len == 0 {
            return Err(bad_request("the prompt is empty"));
        }
        if prompt_len >= self.context {
            return Err(bad_request(format!(
                "the prompt has {prompt_len} tokens; this model's maximum context length is {}",
                self.context
            )));
        }
        let room = self.context - prompt_len;
        let max_new = match max_tokens {
            Some(0) => return Err(bad_request("max_tokens must be at least 1")),
            Some(m) if m > room => {
                return Err(bad_request(format!(
                    "this model's maximum context length is {} tokens; the prompt has {prompt_len} and \
                     max_tokens is {m}",
                    self.context
                )));
            }
            Some(m) => m,
            None => default_max.min(room),
        };
        let stop = match &c.stop {
            None => Vec::new(),
            Some(OneOrMany::One(s)) => vec![s.clone()],
            Some(OneOrMany::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOP || stop.iter().any(String::is_empty) {
            return Err(bad_request(format!("stop must hold at most {MAX_STOP} non-empty strings")));
        }
        let params = SamplingParams {
            temperature,
            top_p,
            top_k,
            max_new_tokens: max_new,
            stop_token_ids: Vec::new(),
            stop_strings: stop,
            seed: c.seed.map(|s| s as u64),
        };
        Ok(EngineRequest::repeated(Vec::new(), &params, n).samples)
    }
}

fn request_id(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{:x}{:06x}", now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Validates a `/v1/completions` body.
pub(super) fn completion_job(st: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Job, ApiError> {
    let body: CompletionBody = parse_body(body)?;
    let prompt = match &body.prompt {
        Prompt::Text(t) => st.tokenizer.encode(t, true),
        Prompt::Texts(v) if v.len() == 1 => st.tokenizer.encode(&v[0], true),
        Prompt::Ids(ids) => Ok(ids.clone()),
        Prompt::IdLists(v) if v.len() == 1 => Ok(v[0].clone()),
        _ => return Err(bad_request("one prompt per request is supported")),
    };
    let prompt = prompt.map_err(|e| bad_request(format!("cannot tokenize the prompt: {e}")))?;
    if body.logprobs.is_some_and(|k| k > MAX_LOGPROBS) {
        return Err(bad_request(format!("logprobs must be at most {MAX_LOGPROBS}")));
    }
    let samples =
        st.limits.sampling(&body.common, prompt.len(), body.common.max_tokens, DEFAULT_COMPLETION_TOKENS)?;
    let echo = match (&body.prompt, body.echo.unwrap_or(false)) {
        (Prompt::Text(t), true) => Some(t.clone()),
        (Prompt::Texts(v), true) => Some(v[0].clone()),
        (_, true) => Some(st.tokenizer.decode(&prompt, false).unwrap_or_default()),
        _ => None,
    };
    Ok(Job {
        kind: Kind::Completion,
        id: request_id("cmpl"),
        prompt,
        samples,
        logprobs: body.logprobs.is_some(),
        stream: body.common.stream.unwrap_or(false),
        include_usage: body.common.stream_options.as_ref().is_some_and(|o| o.include_usage),
        echo,
    })
}

/// Validates a `/v1/chat/completions` body.
pub(super) fn chat_job(st: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Job, ApiError> {
    let body: ChatBody = parse_body(body)?;
    if body.messages.is_empty() {
        return Err(bad_request("messages must not be empty"));
    }
    let mut messages = Vec::with_capacity(body.messages.len());
    for m in &body.messages {
        let text = match &m.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                if let Some(p) = parts.iter().find(|p| p.kind != "text") {
                    return Err(bad_request(format!("content parts of type `{}` are not supported", p.kind)));
                }
                parts.iter().filter_map(|p| p.text.as_deref()).collect::<Vec<_>>().join("")
            }
        };
        messages.push(ChatMessage::new(m.role.clone(), text));
    }
    let prompt = st
        .tokenizer
        .encode_chat(&messages, true)
        .map_err(|e| bad_request(format!("cannot apply the chat template: {e}")))?;
    let max_tokens = body.max_completion_tokens.or(body.common.max_tokens);
    let samples = st.limits.sampling(&body.common, prompt.len(), max_tokens, usize::MAX)?;
    Ok(Job {
        kind: Kind::Chat,
        id: request_id("chatcmpl"),
        prompt,
        samples,
        logprobs: body.logprobs.unwrap_or(false),
        stream: body.common.stream.unwrap_or(false),
        include_usage: body.common.stream_options.as_ref().is_some_and(|o| o.include_usage),
        echo: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { model_name: "m".into(), context: 100, max_n: 4 }
    }

    fn common(body: &str) -> Common {
        parse_body::<Common>(Ok(Bytes::from(body.to_owned()))).expect("parses")
    }

    fn status(r: Result<Vec<SamplingParams>, ApiError>) -> u16 {
        r.err().map(|e| e.status.as_u16()).unwrap_or(200)
    }

    #[test]
    fn sampling_defaults_and_seeds_per_choice() {
        let s =
            limits().sampling(&common(r#"{"n": 3, "seed": 7, "stop": "x"}"#), 10, None, 16).expect("valid");
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().map(|p| p.seed).collect::<Vec<_>>(), [Some(7), Some(8), Some(9)]);
        assert_eq!((s[0].temperature, s[0].top_p, s[0].top_k, s[0].max_new_tokens), (1.0, 1.0, 0, 16));
        assert_eq!(s[0].stop_strings, ["x"]);
        let room = limits().sampling(&common("{}"), 90, None, usize::MAX).expect("valid");
        assert_eq!(room[0].max_new_tokens, 10, "chat default: the rest of the context");
    }

    #[test]
    fn bad_values_are_400_and_another_model_404() {
        let l = limits();
        for (body, prompt, max, want) in [
            (r#"{"n": 0}"#, 10, None, 400),
            (r#"{"n": 5}"#, 10, None, 400),
            (r#"{"temperature": 2.5}"#, 10, None, 400),
            (r#"{"top_p": 0}"#, 10, None, 400),
            (r#"{"top_k": -2}"#, 10, None, 400),
            (r#"{"stop": ["a", ""]}"#, 10, None, 400),
            ("{}", 0, None, 400),
            ("{}", 100, None, 400),
            ("{}", 10, Some(0), 400),
            ("{}", 10, Some(91), 400),
            ("{}", 10, Some(90), 200),
            (r#"{"model": "other"}"#, 10, None, 404),
            (r#"{"model": "m", "top_k": -1}"#, 10, None, 200),
        ] {
            assert_eq!(status(l.sampling(&common(body), prompt, max, 16)), want, "{body} {prompt} {max:?}");
        }
    }

    #[test]
    fn malformed_bodies_are_400_with_a_message() {
        for body in ["{", "[1]", r#"{"n": "two"}"#, r#"{"stream": 1}"#] {
            let e = parse_body::<Common>(Ok(Bytes::from(body))).expect_err(body);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.message.starts_with("invalid JSON body"), "{body}: {}", e.message);
        }
        let ok = parse_body::<Common>(Ok(Bytes::from(r#"{"stream": null, "stop": null}"#))).expect("nulls");
        assert_eq!(ok.stream, None);
    }
}
