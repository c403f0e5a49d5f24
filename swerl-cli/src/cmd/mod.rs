//! One module per subcommand: argument struct plus a `run` function returning the exit code.

pub(crate) mod engine_thread;
pub(crate) mod eval;
pub(crate) mod generate;
pub(crate) mod heldout;
pub(crate) mod help;
pub(crate) mod io;
pub(crate) mod local_chat;
pub(crate) mod logprobs;
pub(crate) mod mine;
pub(crate) mod model_args;
pub(crate) mod plot;
pub(crate) mod repair;
pub(crate) mod reward;
pub(crate) mod sampling;
pub(crate) mod serve;
pub(crate) mod sft;
pub(crate) mod train;

/// Most worker threads `--jobs` accepts (more only spends time creating threads).
pub(crate) const MAX_JOBS: u64 = 1024;

/// A command line that parses but cannot be run (a missing flag combination, a bad value found
/// late): reported like clap's errors, exit status 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns a [`UsageError`] from the enclosing function.
macro_rules! usage {
    ($($t:tt)*) => {
        return Err(anyhow::Error::new($crate::cmd::UsageError(format!($($t)*))))
    };
}
pub(crate) use usage;
