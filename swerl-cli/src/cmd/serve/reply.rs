//! Responses: a whole OpenAI completion object, or server-sent chunks as the engine produces
//! tokens; usage counts and log-probs.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use swerl_model::{Completion, EngineEvent, FinishReason, Tokenizer};
use tokio::sync::mpsc;

use super::api::{self, Job, Kind, bad_request, error};
use super::{AppState, Slot, Streamed, Usage, log_request, now};
use crate::cmd::engine_thread::Reply;

/// `POST /v1/completions`.
pub(super) async fn completions(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match api::completion_job(&st, body) {
        Ok(job) => respond(st, job).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/chat/completions`.
pub(super) async fn chat_completions(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match api::chat_job(&st, body) {
        Ok(job) => respond(st, job).await,
        Err(e) => e.into_response(),
    }
}

/// Submits `job` and answers with the whole result or a stream of chunks.
async fn respond(st: Arc<AppState>, job: Job) -> Response {
    let start = Instant::now();
    let slot = match st.admit() {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let Some(mut rx) = st.engine.submit(job.engine_request()) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "server_overloaded", "the engine has stopped");
    };
    match rx.recv().await {
        Some(Reply::Accepted) => {}
        Some(Reply::Rejected(m)) => return bad_request(m).into_response(),
        Some(Reply::Failed(m)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", m),
        _ => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the engine stopped"),
    }
    if job.stream {
        return stream(st, job, rx, slot, start);
    }
    let n = job.samples.len();
    let mut done: Vec<Option<Completion>> = vec![None; n];
    let mut left = n;
    while left > 0 {
        match rx.recv().await {
            Some(Reply::Event(EngineEvent::Finished { sample, completion, .. })) => {
                done[sample] = Some(completion);
                left -= 1;
            }
            Some(Reply::Event(_)) => {}
            Some(Reply::Failed(m)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", m),
            _ => {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the engine stopped");
            }
        }
    }
    drop(slot);
    let completions: Vec<Completion> = done.into_iter().map(|c| c.unwrap_or_else(empty_completion)).collect();
    let generated: usize = completions.iter().map(|c| c.token_ids.len()).sum();
    let choices: Vec<Value> = completions
        .iter()
        .enumerate()
        .map(|(i, c)| match job.kind {
            Kind::Completion => {
                let text = format!("{}{}", job.echo.as_deref().unwrap_or(""), c.text);
                let lp = job.logprobs.then(|| completion_logprobs(&st.tokenizer, &c.token_ids, &c.logprobs));
                json!({"index": i, "text": text, "logprobs": lp, "finish_reason": finish_reason(c)})
            }
            Kind::Chat => {
                let lp = job
                    .logprobs
                    .then(|| json!({"content": chat_logprobs(&st.tokenizer, &c.token_ids, &c.logprobs)}));
                json!({"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": lp,
                       "finish_reason": finish_reason(c)})
            }
        })
        .collect();
    let object = if job.kind == Kind::Chat { "chat.completion" } else { "text_completion" };
    let mut resp = axum::Json(json!({
        "id": job.id, "object": object, "created": now(), "model": st.limits.model_name,
        "choices": choices, "usage": usage(job.prompt.len(), generated),
    }))
    .into_response();
    resp.extensions_mut().insert(Usage { prompt: job.prompt.len(), completion: generated });
    resp
}

fn empty_completion() -> Completion {
    Completion {
        token_ids: Vec::new(),
        text: String::new(),
        logprobs: Vec::new(),
        finish_reason: FinishReason::Length,
        stop: None,
    }
}

fn finish_reason(c: &Completion) -> &'static str {
    match c.finish_reason {
        FinishReason::Stop => "stop",
        _ => "length",
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn token_text(tok: &Tokenizer, id: u32) -> String {
    tok.decode(&[id], false).unwrap_or_default()
}

/// The legacy completions `logprobs` object (only the sampled token among the alternatives).
fn completion_logprobs(tok: &Tokenizer, ids: &[u32], lps: &[f32]) -> Value {
    let tokens: Vec<String> = ids.iter().map(|&t| token_text(tok, t)).collect();
    let mut offset = 0;
    let offsets: Vec<usize> = tokens
        .iter()
        .map(|t| {
            let o = offset;
            offset += t.len();
            o
        })
        .collect();
    let top: Vec<Value> = tokens.iter().zip(lps).map(|(t, l)| json!({ t.clone(): l })).collect();
    json!({"tokens": tokens, "token_logprobs": lps, "top_logprobs": top, "text_offset": offsets})
}

/// The chat `logprobs.content` list.
fn chat_logprobs(tok: &Tokenizer, ids: &[u32], lps: &[f32]) -> Vec<Value> {
    ids.iter()
        .zip(lps)
        .map(|(&t, l)| {
            let text = token_text(tok, t);
            json!({"token": text, "logprob": l, "bytes": text.as_bytes(), "top_logprobs": []})
        })
        .collect()
}

/// State of a streamed response.
struct Streaming {
    st: Arc<AppState>,
    job: Job,
    rx: mpsc::UnboundedReceiver<Reply>,
    queue: VecDeque<Event>,
    left: usize,
    generated: usize,
    over: bool,
    /// When the request came (for the request log, written when the stream is dropped).
    start: Instant,
    _slot: Slot,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let usage = Usage { prompt: self.job.prompt.len(), completion: self.generated };
        if !self.over {
            tracing::info!(id = %self.job.id, "stream closed before its end (client went away?)");
        }
        log_request("POST", self.job.path(), StatusCode::OK, Some(usage), self.start);
    }
}

impl Streaming {
    fn chunk(&self, choices: Vec<Value>, usage: Option<Value>) -> Event {
        let object = if self.job.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" };
        let mut v = json!({"id": self.job.id, "object": object, "created": now(), "model": self.st.limits.model_name,
                           "choices": choices});
        if self.job.include_usage {
            v["usage"] = usage.unwrap_or(Value::Null);
        }
        Event::default().data(v.to_string())
    }

    fn choice(&self, index: usize, text: &str, ids: &[u32], lps: &[f32], finish: Option<&str>) -> Value {
        let tok = &self.st.tokenizer;
        match self.job.kind {
            Kind::Completion => {
                let lp = (self.job.logprobs && !ids.is_empty()).then(|| completion_logprobs(tok, ids, lps));
                json!({"index": index, "text": text, "logprobs": lp, "finish_reason": finish})
            }
            Kind::Chat => {
                let lp = (self.job.logprobs && !ids.is_empty())
                    .then(|| json!({"content": chat_logprobs(tok, ids, lps)}));
                let delta =
                    if finish.is_some() && text.is_empty() { json!({}) } else { json!({"content": text}) };
                json!({"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish})
            }
        }
    }

    /// Turns the next reply into events; `false` once the stream is over.
    fn handle(&mut self, reply: Option<Reply>) {
        match reply {
            Some(Reply::Event(EngineEvent::Token { sample, token_id, logprob, text, .. })) => {
                if !text.is_empty() || self.job.logprobs {
                    let c = self.choice(sample, &text, &[token_id], &[logprob], None);
                    let e = self.chunk(vec![c], None);
                    self.queue.push_back(e);
                }
            }
            Some(Reply::Event(EngineEvent::Finished { sample, completion, .. })) => {
                self.generated += completion.token_ids.len();
                let c = self.choice(sample, "", &[], &[], Some(finish_reason(&completion)));
                let e = self.chunk(vec![c], None);
                self.queue.push_back(e);
                self.left -= 1;
                if self.left == 0 {
                    if self.job.include_usage {
                        let e = self.chunk(Vec::new(), Some(usage(self.job.prompt.len(), self.generated)));
                        self.queue.push_back(e);
                    }
                    self.queue.push_back(Event::default().data("[DONE]"));
                    self.over = true;
                }
            }
            Some(Reply::Event(_) | Reply::Accepted) => {}
            Some(Reply::Failed(m) | Reply::Rejected(m)) => {
                let body =
                    json!({"error": {"message": m, "type": "server_error", "param": null, "code": null}});
                self.queue.push_back(Event::default().data(body.to_string()));
                self.over = true;
            }
            None => self.over = true,
        }
    }
}

fn stream(
    st: Arc<AppState>,
    job: Job,
    rx: mpsc::UnboundedReceiver<Reply>,
    slot: Slot,
    start: Instant,
) -> Response {
    let mut s = Streaming {
        st,
        left: job.samples.len(),
        job,
        rx,
        queue: VecDeque::new(),
        generated: 0,
        over: false,
        start,
        _slot: slot,
    };
    if s.job.kind == Kind::Chat {
        for i in 0..s.job.samples.len() {
            let c = json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null,
                           "finish_reason": null});
            let e = s.chunk(vec![c], None);
            s.queue.push_back(e);
        }
    }
    let events = futures_util::stream::unfold(s, |mut s| async move {
        loop {
            if let Some(e) = s.queue.pop_front() {
                return Some((Ok::<Event, Infallible>(e), s));
            }
            if s.over {
                return None;
            }
            let reply = s.rx.recv().await;
            s.handle(reply);
        }
    });
    let mut resp = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    resp.extensions_mut().insert(Streamed);
    resp
}
