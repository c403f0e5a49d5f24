//! `swerl` end to end: one test binary, one module per subcommand, shared helpers.

mod agentless;
mod eval;
mod generate;
mod help;
mod helpers;
mod logprobs;
mod mine;
mod reward;
mod serve;
mod sft;
mod train;
