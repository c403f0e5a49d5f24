//! The `swerl` binary end to end, one test binary with a module per subcommand.

mod generate;
mod logprobs;
mod mine;
mod reward;
mod train;
