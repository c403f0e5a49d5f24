//! # swerl
//!
//! SWE-RL in Rust: reinforcement learning that teaches language models to fix real software
//! issues, by mining the history of open-source projects and rewarding patches that resemble the
//! real fix.
//!
//! This crate is a facade: it re-exports the workspace's library crates under short names so a
//! single `cargo add swerl` gives the whole system. Each crate is also usable on its own.
//!
//! | module | crate | what it does |
//! | --- | --- | --- |
//! | [`reward`] | `swerl-reward` | the paper's rule-based reward, equal to the Python reference |
//! | [`model`] | `swerl-model` | trainable Llama in candle: HF/GGUF loading, log-probs with gradients, sampling, AdamW |
//! | [`grpo`] | `swerl-grpo` | the GRPO trainer: objective, loop, checkpoints, data parallelism |
//!

pub use swerl_grpo as grpo;
pub use swerl_model as model;
pub use swerl_reward as reward;
