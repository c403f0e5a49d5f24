//! The in-process chat model of `swerl eval agentless`: the rollout engine on its own thread
//! (as `swerl serve` runs it), behind swerl-eval's [`ChatModel`]. Concurrent calls from the
//! pipeline's workers are batched together by the engine.

use std::sync::Mutex;
use std::thread::JoinHandle;

use swerl_eval::{ChatModel, ChatResponse, Completion, SampleParams, Usage};
use swerl_model::{
    Engine, EngineConfig, EngineEvent, EngineRequest, FinishReason, SamplingParams, Tokenizer,
};
use swerl_reward::ChatMessage;

use super::engine_thread::{EngineHandle, Reply, spawn};
use super::model_args::ModelArgs;

/// A model loaded in this process, answering chats through the engine.
pub(crate) struct LocalChat {
    name: String,
    engine: Mutex<Option<EngineHandle>>,
    tokenizer: Tokenizer,
    context: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LocalChat {
    /// Loads `args.model` and starts its engine (`max_batch` sequences decode at once).
    pub(crate) fn load(args: &ModelArgs, max_batch: usize) -> anyhow::Result<Self> {
        let loaded = args.load()?;
        let config = EngineConfig {
            max_batch,
            prefill_chunk: EngineConfig::default().prefill_chunk,
            share_prefix: true,
            eos_ids: loaded.eos_ids(),
            ..EngineConfig::default()
        };
        let engine = Engine::new_owned(&loaded.model, loaded.tokenizer.clone(), config)?;
        let (handle, thread) = spawn(engine)?;
        Ok(Self {
            name: args.model.clone(),
            engine: Mutex::new(Some(handle)),
            tokenizer: loaded.tokenizer.clone(),
            context: loaded.model.config().max_position_embeddings,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn error(&self, message: impl Into<String>) -> swerl_eval::Error {
        swerl_eval::Error::Model {
            url: format!("in-process model {}", self.name),
            status: None,
            message: message.into(),
        }
    }
}

impl Drop for LocalChat {
    fn drop(&mut self) {
        // Dropping the handle closes the engine's inbox; its thread then ends.
        self.engine.lock().map(|mut e| e.take()).ok();
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl ChatModel for LocalChat {
    fn name(&self) -> &str {
        &self.name
    }

    /// Like an OpenAI server, except that `max_new_tokens` is cut to the room the context leaves
    /// (a server would refuse the request).
    fn chat(
        &self,
        messages: &[ChatMessage],
        params: &SampleParams,
        n: usize,
    ) -> swerl_eval::Result<ChatResponse> {
        let prompt = self
            .tokenizer
            .encode_chat(messages, true)
            .map_err(|e| self.error(format!("cannot apply the chat template: {e}")))?;
        if prompt.len() >= self.context {
            return Err(self.error(format!(
                "the prompt has {} tokens; the model's context is {}",
                prompt.len(),
                self.context
            )));
        }
        let sampling = SamplingParams {
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: 0,
            max_new_tokens: params.max_new_tokens.min(self.context - prompt.len()).max(1),
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            seed: params.api_seed(),
        };
        let request = EngineRequest::repeated(prompt.clone(), &sampling, n);
        let rx = self.engine.lock().expect("poisoned").as_ref().and_then(|e| e.submit(request));
        let mut rx = rx.ok_or_else(|| self.error("the engine has stopped"))?;
        let mut done: Vec<Option<Completion>> = vec![None; n];
        let mut generated = 0;
        let mut left = n;
        while left > 0 {
            match rx.blocking_recv() {
                Some(Reply::Accepted) | Some(Reply::Event(EngineEvent::Token { .. })) => {}
                Some(Reply::Event(EngineEvent::Finished { sample, completion, .. })) => {
                    generated += completion.token_ids.len();
                    let finish = match completion.finish_reason {
                        FinishReason::Stop => "stop",
                        _ => "length",
                    };
                    done[sample] =
                        Some(Completion { text: completion.text, finish_reason: Some(finish.into()) });
                    left -= 1;
                }
                Some(Reply::Event(_)) => {}
                Some(Reply::Rejected(m)) | Some(Reply::Failed(m)) => return Err(self.error(m)),
                None => return Err(self.error("the engine stopped")),
            }
        }
        Ok(ChatResponse {
            completions: done
                .into_iter()
                .map(|c| c.unwrap_or(Completion { text: String::new(), finish_reason: None }))
                .collect(),
            usage: Usage {
                requests: 1,
                prompt_tokens: prompt.len() as u64,
                completion_tokens: generated as u64,
            },
        })
    }
}
