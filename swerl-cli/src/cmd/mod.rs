//! One module per subcommand: argument struct plus a `run` function returning the exit code.

pub(crate) mod reward;
pub(crate) mod train;
