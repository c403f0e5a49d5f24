//! Chat models for Agentless: the [`ChatModel`] trait and an OpenAI-compatible HTTP backend
//! ([`OpenAiClient`]: vLLM, SGLang, `swerl serve`, hosted APIs) with bounded concurrency,
//! retries with backoff on 429 and 5xx, timeouts and usage counting.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swerl_reward::ChatMessage;

use crate::error::{Error, Result};

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SampleParams {
    /// Softmax temperature (0: greedy).
    pub temperature: f64,
    /// Nucleus sampling mass.
    pub top_p: f64,
    /// Most new tokens per completion.
    pub max_new_tokens: usize,
    /// A seed for servers that accept one (sent as its low 63 bits: the API's seed is an
    /// `int64`).
    pub seed: Option<u64>,
}

impl SampleParams {
    /// The seed as every backend uses it: its low 63 bits, since the OpenAI API's seed is an
    /// `int64` (servers reject larger values). In-process backends use the same value, so a
    /// served and an in-process model draw the same samples.
    pub fn api_seed(&self) -> Option<u64> {
        self.seed.map(|s| s & i64::MAX as u64)
    }
}

impl Default for SampleParams {
    fn default() -> Self {
        Self { temperature: 0.0, top_p: 1.0, max_new_tokens: 4096, seed: None }
    }
}

/// Requests and tokens spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// HTTP requests that returned completions (retries not counted).
    pub requests: u64,
    /// Prompt tokens, as the server reports them.
    pub prompt_tokens: u64,
    /// Completion tokens, as the server reports them.
    pub completion_tokens: u64,
}

impl Usage {
    /// Adds `other` to this.
    pub fn add(&mut self, other: &Usage) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// One completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The text (`""` when the server sent none).
    pub text: String,
    /// Why generation stopped (`stop`, `length`), when the server says.
    pub finish_reason: Option<String>,
}

/// The completions of one call and what they cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// `n` completions, in the server's order.
    pub completions: Vec<Completion>,
    /// What the call cost.
    pub usage: Usage,
}

/// A chat model: `n` completions of a conversation. Implementations are shared by worker
/// threads.
pub trait ChatModel: Sync {
    /// The name predictions carry as `model_name_or_path`.
    fn name(&self) -> &str;

    /// Samples `n` completions of `messages`.
    fn chat(&self, messages: &[ChatMessage], params: &SampleParams, n: usize) -> Result<ChatResponse>;
}

/// Settings of [`OpenAiClient`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenAiConfig {
    /// The API root, `/chat/completions` is appended (`http://localhost:8000/v1`).
    pub base_url: String,
    /// The served model's name.
    pub model: String,
    /// Sent as `Authorization: Bearer` when set (read it from an environment variable).
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Requests in flight at once, over all threads.
    pub max_concurrency: usize,
    /// Retries of a request after a 429, a 5xx or a transport error.
    pub max_retries: u32,
    /// First backoff; doubled per retry, capped at 60 s. A `Retry-After` header in seconds
    /// replaces it when longer.
    pub initial_backoff_ms: u64,
    /// Whole-request timeout, seconds.
    pub timeout_secs: u64,
    /// Most completions asked for in one request (`n`); larger calls are split.
    pub max_n_per_request: usize,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: "http://localhost:8000/v1".into(),
            model: "default".into(),
            api_key: None,
            max_concurrency: 8,
            max_retries: 6,
            initial_backoff_ms: 500,
            timeout_secs: 1800,
            max_n_per_request: 64,
        }
    }
}

/// A counting semaphore: at most `limit` holders.
#[derive(Debug)]
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

impl Slots {
    fn acquire(&self) -> SlotGuard<'_> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= self.limit {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.used.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

/// An OpenAI-compatible `/chat/completions` client (blocking).
#[derive(Debug)]
pub struct OpenAiClient {
    cfg: OpenAiConfig,
    url: String,
    agent: ureq::Agent,
    slots: Slots,
    usage: Mutex<Usage>,
}

impl OpenAiClient {
    /// A client for `cfg`.
    pub fn new(cfg: OpenAiConfig) -> Result<Self> {
        if cfg.max_concurrency == 0 || cfg.max_n_per_request == 0 {
            return Err(Error::Config("max_concurrency and max_n_per_request must be at least 1".into()));
        }
        if cfg!(not(feature = "tls")) && cfg.base_url.to_ascii_lowercase().starts_with("https://") {
            return Err(Error::Config(format!(
                "{} needs TLS: build with the `tls` feature (swerl-cli: `--features tls`)",
                cfg.base_url
            )));
        }
        let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(cfg.timeout_secs)))
            .http_status_as_error(false)
            .build();
        let agent = ureq::Agent::new_with_config(config);
        let slots = Slots { used: Mutex::new(0), freed: Condvar::new(), limit: cfg.max_concurrency };
        Ok(Self { cfg, url, agent, slots, usage: Mutex::new(Usage::default()) })
    }

    /// Everything this client has spent so far.
    pub fn usage(&self) -> Usage {
        *self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One request for `n` completions, retried on 429, 5xx and transport errors.
    fn request(&self, messages: &[ChatMessage], params: &SampleParams, n: usize) -> Result<ChatResponse> {
        let mut body = serde_json::json!({
            "model": self.cfg.model,
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "n": n,
        });
        if let Some(seed) = params.api_seed() {
            body["seed"] = seed.into();
        }
        let body = body.to_string();
        let mut attempt = 0;
        loop {
            let (status, retry_after, message) = match self.send_once(&body) {
                Ok(Sent::Done(text)) => return self.parse(&text),
                Ok(Sent::Status { status, retry_after, text }) => (Some(status), retry_after, text),
                Err(e) => (None, None, e.to_string()),
            };
            let retryable = status.is_none_or(|s| s == 429 || s >= 500);
            if !retryable || attempt >= self.cfg.max_retries {
                let message =
                    if retryable { format!("{message} (after {attempt} retries)") } else { message };
                return Err(Error::Model { url: self.url.clone(), status, message });
            }
            let backoff = self.cfg.initial_backoff_ms.saturating_mul(1 << attempt.min(16)).min(60_000);
            let wait = retry_after.map_or(backoff, |s| backoff.max(s.saturating_mul(1000)).min(60_000));
            tracing::warn!(url = %self.url, ?status, attempt, wait_ms = wait, "model request failed; retrying: {message}");
            std::thread::sleep(Duration::from_millis(wait));
            attempt += 1;
        }
    }

    fn send_once(&self, body: &str) -> std::result::Result<Sent, ureq::Error> {
        let _slot = self.slots.acquire();
        let mut req = self.agent.post(&self.url).header("Content-Type", "application/json");
        if let Some(key) = &self.cfg.api_key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        let mut resp = req.send(body)?;
        let status = resp.status().as_u16();
        let retry_after =
            resp.headers().get("retry-after").and_then(|v| v.to_str().ok()?.trim().parse().ok());
        let text = resp.body_mut().read_to_string()?;
        if status == 200 {
            Ok(Sent::Done(text))
        } else {
            let text: String = text.chars().take(2000).collect();
            Ok(Sent::Status { status, retry_after, text })
        }
    }

    fn parse(&self, text: &str) -> Result<ChatResponse> {
        let bad = |message: String| Error::Model { url: self.url.clone(), status: Some(200), message };
        let reply: Reply =
            serde_json::from_str(text).map_err(|e| bad(format!("unexpected response: {e}")))?;
        let usage = Usage {
            requests: 1,
            prompt_tokens: reply.usage.as_ref().map_or(0, |u| u.prompt_tokens),
            completion_tokens: reply.usage.as_ref().map_or(0, |u| u.completion_tokens),
        };
        self.usage.lock().unwrap_or_else(|e| e.into_inner()).add(&usage);
        let mut choices = reply.choices;
        choices.sort_by_key(|c| c.index);
        let completions = choices
            .into_iter()
            .map(|c| Completion {
                text: c.message.content.unwrap_or_default(),
                finish_reason: c.finish_reason,
            })
            .collect();
        Ok(ChatResponse { completions, usage })
    }
}

enum Sent {
    Done(String),
    Status { status: u16, retry_after: Option<u64>, text: String },
}

#[derive(Deserialize)]
struct Reply {
    choices: Vec<ReplyChoice>,
    #[serde(default)]
    usage: Option<ReplyUsage>,
}

#[derive(Deserialize)]
struct ReplyChoice {
    #[serde(default)]
    index: usize,
    message: ReplyMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ReplyMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct ReplyUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl ChatModel for OpenAiClient {
    fn name(&self) -> &str {
        &self.cfg.model
    }

    fn chat(&self, messages: &[ChatMessage], params: &SampleParams, n: usize) -> Result<ChatResponse> {
        let mut out = ChatResponse::default();
        while out.completions.len() < n {
            let want = (n - out.completions.len()).min(self.cfg.max_n_per_request);
            let part = self.request(messages, params, want)?;
            if part.completions.is_empty() {
                return Err(Error::Model {
                    url: self.url.clone(),
                    status: Some(200),
                    message: format!("asked for {want} completions, got none"),
                });
            }
            out.usage.add(&part.usage);
            out.completions.extend(part.completions);
        }
        out.completions.truncate(n);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    use super::*;

    /// A one-thread HTTP/1.1 server on loopback answering each request with the next canned
    /// (status, body); it records the request bodies.
    fn serve(replies: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for (status, body) in replies {
                let Ok((stream, _)) = listener.accept() else { return };
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut req = vec![0; length];
                reader.read_exact(&mut req).unwrap();
                log.lock().unwrap().push(String::from_utf8(req).unwrap());
                let extra = if status == 429 { "Retry-After: 0\r\n" } else { "" };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                reader.get_mut().write_all(reply.as_bytes()).unwrap();
            }
        });
        (format!("http://{addr}/v1"), seen)
    }

    fn ok_body(texts: &[&str]) -> String {
        let choices: Vec<serde_json::Value> = texts
            .iter()
            .enumerate()
            .rev()
            .map(|(i, t)| serde_json::json!({"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}))
            .collect();
        serde_json::json!({"id": "x", "object": "chat.completion", "choices": choices,
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}})
        .to_string()
    }

    fn client(url: String) -> OpenAiClient {
        OpenAiClient::new(OpenAiConfig {
            base_url: url,
            model: "m".into(),
            api_key: Some("k".into()),
            initial_backoff_ms: 1,
            max_retries: 3,
            timeout_secs: 10,
            ..OpenAiConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn retries_429_and_500_then_returns_choices_in_order() {
        let (url, seen) =
            serve(vec![(429, "{}".into()), (500, "oops".into()), (200, ok_body(&["first", "second"]))]);
        let c = client(url);
        let params = SampleParams { temperature: 0.7, seed: Some(3), ..SampleParams::default() };
        let r = c.chat(&[ChatMessage::user("hi")], &params, 2).unwrap();
        let texts: Vec<&str> = r.completions.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["first", "second"]);
        assert_eq!(r.usage, Usage { requests: 1, prompt_tokens: 10, completion_tokens: 3 });
        assert_eq!(c.usage(), r.usage);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        let body: serde_json::Value = serde_json::from_str(&seen[2]).unwrap();
        assert_eq!(body["model"], "m");
        assert_eq!(body["n"], 2);
        assert_eq!(body["seed"], 3);
        assert_eq!(body["messages"][0]["content"], "hi");
    }

    #[test]
    fn client_errors_are_not_retried_and_retries_are_bounded() {
        let (url, seen) = serve(vec![(400, "bad request".into())]);
        let err = client(url).chat(&[ChatMessage::user("hi")], &SampleParams::default(), 1).unwrap_err();
        assert!(
            matches!(&err, Error::Model { status: Some(400), message, .. } if message.contains("bad request")),
            "{err}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
        let (url, seen) = serve(vec![(503, "busy".into()); 4]);
        let err = client(url).chat(&[ChatMessage::user("hi")], &SampleParams::default(), 1).unwrap_err();
        assert!(err.to_string().contains("after 3 retries"), "{err}");
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[test]
    #[cfg(not(feature = "tls"))]
    fn https_without_tls_is_a_configuration_error() {
        let cfg = OpenAiConfig { base_url: "https://api.example.com/v1".into(), ..OpenAiConfig::default() };
        assert!(matches!(OpenAiClient::new(cfg), Err(Error::Config(m)) if m.contains("tls")));
    }

    #[test]
    fn large_n_is_split() {
        let (url, seen) = serve(vec![(200, ok_body(&["a", "b"])), (200, ok_body(&["c"]))]);
        let c = OpenAiClient::new(OpenAiConfig { max_n_per_request: 2, ..client(url).cfg }).unwrap();
        let r = c.chat(&[ChatMessage::user("hi")], &SampleParams::default(), 3).unwrap();
        assert_eq!(r.completions.len(), 3);
        assert_eq!(r.usage.requests, 2);
        let ns: Vec<u64> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()["n"].as_u64().unwrap())
            .collect();
        assert_eq!(ns, [2, 1]);
    }
}
