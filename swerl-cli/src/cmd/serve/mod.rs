//! `swerl serve`: an OpenAI-compatible HTTP server (`/v1/models`, `/v1/completions`,
//! `/v1/chat/completions`, streaming with server-sent events) over the rollout engine.
//!
//! The engine runs on an OS thread of its own ([`super::engine_thread`]) and batches every request in flight
//! continuously; HTTP handlers (tokio + axum) parse and validate requests ([`api`]), submit
//! them over a channel and turn the engine's events into OpenAI responses ([`reply`]).
//!
//! - `engine_thread` (shared with the in-process model of `eval agentless`): the engine's
//!   thread, its inbox, routing events back, aborting requests whose client went away.
//! - `api`: request bodies, their validation, OpenAI-shaped errors.
//! - `reply`: whole responses, streamed chunks, usage and log-probs.

mod api;
mod reply;

use super::engine_thread as worker;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use swerl_model::{Engine, EngineConfig, Tokenizer};

use super::model_args::ModelArgs;
use api::{ApiError, Limits, error};

/// Arguments of `swerl serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    model: ModelArgs,

    /// Address to listen on (loopback by default; `0.0.0.0` exposes the server).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// Port to listen on (`0`: any free port, logged at start).
    #[arg(long, default_value_t = 8000)]
    port: u16,

    /// Most sequences decoded together (the samples of all requests in flight).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_batch: u64,

    /// Most prompt tokens prefilled per decoding step.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    prefill_chunk: u64,

    /// Most requests in flight (decoding or waiting); more are answered 503.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    max_queue: u64,

    /// Largest `n` a request may ask for.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_n: u64,

    /// Largest request body in bytes (larger: 413).
    #[arg(long, default_value_t = 4 << 20)]
    max_body_bytes: usize,

    /// Seconds to let requests in flight finish after SIGINT/SIGTERM before aborting them.
    #[arg(long, default_value_t = 30)]
    shutdown_timeout: u64,

    /// The model name clients use (`model` field); default: the `--model` argument.
    #[arg(long)]
    served_model_name: Option<String>,
}

/// What the handlers share.
struct AppState {
    engine: worker::EngineHandle,
    tokenizer: Tokenizer,
    limits: Limits,
    in_flight: AtomicUsize,
    max_queue: usize,
    created: u64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = args.model.load()?;
    let config = EngineConfig {
        max_batch: args.max_batch as usize,
        prefill_chunk: args.prefill_chunk as usize,
        share_prefix: true,
        eos_ids: loaded.eos_ids(),
        ..EngineConfig::default()
    };
    let engine = Engine::new_owned(&loaded.model, loaded.tokenizer.clone(), config)?;
    let (handle, engine_thread) = worker::spawn(engine)?;
    let state = Arc::new(AppState {
        engine: handle,
        tokenizer: loaded.tokenizer.clone(),
        limits: Limits {
            model_name: args.served_model_name.clone().unwrap_or_else(|| args.model.model.clone()),
            context: loaded.model.config().max_position_embeddings,
            max_n: args.max_n as usize,
        },
        in_flight: AtomicUsize::new(0),
        max_queue: args.max_queue as usize,
        created: now(),
    });
    drop(loaded);
    let app = router(state, args.max_body_bytes);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let grace = Duration::from_secs(args.shutdown_timeout);
    runtime.block_on(serve(app, &args.host, args.port, args.max_batch, grace))?;
    // Dropping the runtime drops every handler, and with them the engine's inbox: its thread ends.
    drop(runtime);
    if engine_thread.join().is_err() {
        anyhow::bail!("the engine thread panicked");
    }
    tracing::info!("server stopped");
    Ok(ExitCode::SUCCESS)
}

/// Listens until a shutdown signal, then lets requests in flight finish for up to `grace`.
async fn serve(app: Router, host: &str, port: u16, max_batch: u64, grace: Duration) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("binding {host}:{port}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(address = %format!("http://{addr}/v1"), max_batch, "serving");
    let signalled = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&signalled);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        notify.notify_one();
    });
    let deadline = async {
        signalled.notified().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = server => r.context("serving HTTP")?,
        () = deadline => tracing::warn!(seconds = grace.as_secs(), "requests still in flight after the \
                                        shutdown timeout: aborting them"),
    }
    Ok(())
}

fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(reply::completions))
        .route("/v1/chat/completions", post(reply::chat_completions))
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found_error", "no such endpoint") })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(log_requests))
        .with_state(state)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: no new connections; finishing the requests in flight");
}

/// Token counts of a finished response, attached to it for the request log.
#[derive(Clone, Copy, Debug)]
struct Usage {
    prompt: usize,
    completion: usize,
}

/// Marks a streamed response: its stream logs the request when it ends.
#[derive(Clone, Copy, Debug)]
struct Streamed;

/// One line per request on stderr: method, path, status, tokens, milliseconds.
async fn log_requests(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let start = Instant::now();
    let resp = next.run(req).await;
    if resp.extensions().get::<Streamed>().is_none() {
        let usage = resp.extensions().get::<Usage>().copied();
        log_request(method.as_str(), &path, resp.status(), usage, start);
    }
    resp
}

fn log_request(method: &str, path: &str, status: StatusCode, usage: Option<Usage>, start: Instant) {
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let status = status.as_u16();
    match usage {
        Some(u) => tracing::info!(
            "{method} {path} {status} prompt_tokens={} completion_tokens={} {ms:.1}ms",
            u.prompt,
            u.completion
        ),
        None => tracing::info!("{method} {path} {status} {ms:.1}ms"),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": st.limits.model_name, "object": "model", "created": st.created, "owned_by": "swerl",
                  "max_model_len": st.limits.context}],
    }))
    .into_response()
}

impl AppState {
    /// Takes a place in the request queue, or answers 503 when it is full.
    fn admit(self: &Arc<Self>) -> Result<Slot, ApiError> {
        let prev = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(Arc::clone(self));
        if prev >= self.max_queue {
            drop(slot);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_overloaded",
                format!("the server is busy ({} requests in flight); retry later", self.max_queue),
            ));
        }
        Ok(slot)
    }
}

/// A place in the request queue, given back on drop (a stream holds it until it ends).
struct Slot(Arc<AppState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
