//! One module per subcommand: argument struct plus a `run` function returning the exit code.

pub(crate) mod generate;
pub(crate) mod logprobs;
pub(crate) mod mine;
pub(crate) mod model_args;
pub(crate) mod reward;
pub(crate) mod train;
