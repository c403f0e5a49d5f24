//! The engine's thread (for `swerl serve` and the in-process chat model): it owns the [`Engine`], takes requests from an inbox, steps the engine
//! while there is work and sends each request's events back on that request's own channel. A
//! request whose channel is closed (its client went away) is aborted.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use anyhow::Context;
use swerl_model::{Engine, EngineEvent, EngineRequest, RequestId};
use tokio::sync::mpsc;

/// What the engine thread tells a request's handler.
pub(crate) enum Reply {
    /// The request is in the engine.
    Accepted,
    /// The engine refused the request (bad input).
    Rejected(String),
    /// A token or a finished sample.
    Event(EngineEvent),
    /// The engine failed; the request is over.
    Failed(String),
}

/// A request for the engine thread, with where to send its replies.
struct Submit {
    request: EngineRequest,
    replies: mpsc::UnboundedSender<Reply>,
}

/// The handlers' side of the engine thread.
pub(crate) struct EngineHandle {
    inbox: std_mpsc::Sender<Submit>,
}

impl EngineHandle {
    /// Sends `request` to the engine; its replies come on the returned channel (dropping it
    /// aborts the request). `None` when the engine thread has stopped.
    pub(crate) fn submit(&self, request: EngineRequest) -> Option<mpsc::UnboundedReceiver<Reply>> {
        let (replies, rx) = mpsc::unbounded_channel();
        self.inbox.send(Submit { request, replies }).ok()?;
        Some(rx)
    }
}

/// Starts the engine's thread; it ends when every [`EngineHandle`] is dropped and its work is
/// done.
pub(crate) fn spawn(engine: Engine<'static>) -> anyhow::Result<(EngineHandle, JoinHandle<()>)> {
    let (inbox, rx) = std_mpsc::channel::<Submit>();
    let thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || Worker { engine, clients: HashMap::new() }.run(rx))
        .context("starting the engine thread")?;
    Ok((EngineHandle { inbox }, thread))
}

/// A request's reply channel and how many of its samples are unfinished.
struct Client {
    replies: mpsc::UnboundedSender<Reply>,
    left: usize,
}

struct Worker {
    engine: Engine<'static>,
    clients: HashMap<RequestId, Client>,
}

impl Worker {
    fn run(mut self, inbox: std_mpsc::Receiver<Submit>) {
        loop {
            if !self.engine.has_work() {
                // Idle: block until a request comes, or every sender is gone.
                match inbox.recv() {
                    Ok(s) => self.accept(s),
                    Err(_) => return,
                }
            }
            while let Ok(s) = inbox.try_recv() {
                self.accept(s);
            }
            self.abort_abandoned();
            if self.engine.has_work() {
                self.step();
            }
        }
    }

    fn accept(&mut self, s: Submit) {
        let left = s.request.samples.len();
        match self.engine.add(s.request) {
            Ok(id) => {
                let _ = s.replies.send(Reply::Accepted);
                self.clients.insert(id, Client { replies: s.replies, left });
            }
            Err(e) => {
                let _ = s.replies.send(Reply::Rejected(e.to_string()));
            }
        }
    }

    /// Aborts the requests whose handler dropped its receiver (client disconnected).
    fn abort_abandoned(&mut self) {
        let gone: Vec<RequestId> =
            self.clients.iter().filter(|(_, c)| c.replies.is_closed()).map(|(id, _)| *id).collect();
        for id in gone {
            tracing::info!(request = id, "client went away; request aborted");
            self.clients.remove(&id);
            if let Err(e) = self.engine.abort(id) {
                self.fail_all(&e);
            }
        }
    }

    fn step(&mut self) {
        let events = match self.engine.step() {
            Ok(events) => events,
            Err(e) => return self.fail_all(&e),
        };
        for ev in events {
            let (id, finished) = match &ev {
                EngineEvent::Token { request, .. } => (*request, false),
                EngineEvent::Finished { request, .. } => (*request, true),
                _ => continue,
            };
            let Some(client) = self.clients.get_mut(&id) else { continue };
            let _ = client.replies.send(Reply::Event(ev));
            if finished {
                client.left -= 1;
                if client.left == 0 {
                    self.clients.remove(&id);
                }
            }
        }
    }

    /// The engine failed: every request in flight fails with its error.
    fn fail_all(&mut self, e: &swerl_model::Error) {
        tracing::error!(error = %e, requests = self.clients.len(), "engine step failed; failing the requests in flight");
        for (id, client) in self.clients.drain() {
            let _ = client.replies.send(Reply::Failed(e.to_string()));
            let _ = self.engine.abort(id);
        }
    }
}
