//! Integration tests of swerl-grpo (one binary; one module per concern).
#![allow(unreachable_pub)]

mod dynamic;
mod golden;
mod learning;
mod llama;
mod parallel;
mod resume;
mod sft;
mod toy;
