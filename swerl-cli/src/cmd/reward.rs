//! `swerl reward` (work in progress: see issue 2).

use std::process::ExitCode;

/// Arguments of `swerl reward`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet available")
}
