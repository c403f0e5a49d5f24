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
//! | [`data`] | `swerl-data` | mining GH Archive events and git clones into RL instances |
//! | [`reward`] | `swerl-reward` | the paper's rule-based reward, equal to the Python reference |
//! | [`model`] | `swerl-model` | trainable Llama in candle: HF/GGUF loading, log-probs with gradients, sampling, AdamW |
//! | [`grpo`] | `swerl-grpo` | the GRPO trainer: objective, loop, checkpoints, data parallelism |
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! let context = BTreeMap::from([("a.py", "x = 1\n")]);
//! let oracle = BTreeMap::from([("a.py", "x = 2\n")]);
//! let output = "<think>x should be 2</think>\n<solution>\n```python\n### a.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```\n</solution>";
//! assert_eq!(swerl::reward::reward(&context, &oracle, output), 1.0);
//! ```

pub use swerl_data as data;
pub use swerl_grpo as grpo;
pub use swerl_model as model;
pub use swerl_reward as reward;

/// The README's Rust examples, compiled and run as doctests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
