//! # swerl-eval
//!
//! A SWE-bench evaluation harness without Docker that grades the way the official `swebench`
//! harness does (swebench 4.1 by default, swebench 5 on request), running each model patch in a
//! bubblewrap sandbox.
//!
//! ```
//! use swerl_eval::{GradingMode, Instance, LogParser, Prediction, eval_report};
//!
//! let mut instance = Instance::new("o__r-1", "pallets/flask", "abc", "2.3");
//! instance.fail_to_pass = vec!["tests/test_a.py::test_fix".into()];
//! instance.pass_to_pass = vec!["tests/test_a.py::test_old".into()];
//! let prediction = Prediction {
//!     instance_id: "o__r-1".into(),
//!     model_name_or_path: "m".into(),
//!     model_patch: Some("diff --git a/x b/x".into()),
//! };
//! let log = ">>>>> Start Test Output\n\
//!            PASSED tests/test_a.py::test_fix\n\
//!            PASSED tests/test_a.py::test_old\n\
//!            >>>>> End Test Output\n";
//! let report = eval_report(&instance, &prediction, log, LogParser::Pytest, GradingMode::V4).unwrap();
//! assert!(report.resolved);
//! ```
//!
//! ## Map
//! The main items are at the crate root (their modules are private: one path per item):
//! - Inputs: [`load_dataset`] -> [`Instance`], [`load_predictions`] -> [`Prediction`] (JSON,
//!   JSON lines, gzip, parquet; gold and empty).
//! - Parsing and grading: [`LogParser`] (upstream's log parsers, 4.1 and 5 flavours, quirks
//!   included), [`get_logs_eval`], [`GradingMode`], [`eval_report`] -> [`InstanceReport`].
//! - Reports: [`report_json`], [`make_run_summary`] and [`summary_json`], byte-compatible with
//!   upstream ([`pyjson`] writes JSON as Python's `json.dumps` does).
//! - The harness: [`run_evaluation`] with [`HarnessConfig`] ties it together, in parallel, with a
//!   [`Progress`] callback -> [`RunResult`].
//! - Models: [`ChatModel`] (`n` completions of a conversation, with [`Usage`]) and its
//!   OpenAI-compatible HTTP backend [`OpenAiClient`] ([`OpenAiConfig`]: base URL, API key, bounded
//!   concurrency, retries with backoff on 429 and 5xx, timeouts).
//!
//! The lower-level pieces are public modules:
//! - [`specs`], [`directives`], [`script`]: the spec table, test directives from a test patch,
//!   eval scripts (upstream's, and their translation for a virtual environment).
//! - [`python`], [`env`](mod@env): interpreter discovery (never another version) and environments (one
//!   venv per content key, built once under a file lock with uv or pip; a light per-instance venv
//!   on top).
//! - [`checkout`], [`patch`]: fresh checkouts at `base_commit`, the patch policy and upstream's
//!   apply chain.
//! - [`agentless`]: Agentless Mini, the paper's scaffold: repository structure at `base_commit`,
//!   file localization, repair by SEARCH/REPLACE samples (swerl-reward's prompt, parser and
//!   rules), normalized patches and the rerank, tied together by [`agentless::run_agentless`],
//!   which writes `predictions.jsonl` for the harness and a trajectory per instance.
//! - [`sandbox`]: bubblewrap (no network, read-only host, private `/tmp` and PID namespace),
//!   rlimits, a wall clock that kills the whole tree, bounded lossy capture.
//!
//! ## Running a harness
//! ```no_run
//! use swerl_eval::{HarnessConfig, Progress, run_evaluation};
//!
//! let cfg = HarnessConfig {
//!     dataset: "lite-test-v5.jsonl.gz".into(),
//!     predictions: "gold".into(),
//!     repos_dir: "/work/.mirror".into(),
//!     run_id: "gold1".into(),
//!     ..HarnessConfig::default()
//! };
//! let result = run_evaluation(&cfg, &|p: Progress| {
//!     if let Progress::Finished(o) = p {
//!         tracing::info!(id = %o.instance_id, bucket = ?o.bucket, "done");
//!     }
//! })?;
//! assert_eq!(result.summary.schema_version, 2);
//! # Ok::<(), swerl_eval::Error>(())
//! ```

pub mod agentless;
mod chat;
pub mod checkout;
mod dataset;
pub mod directives;
pub mod env;
mod grading;
mod harness;
pub mod oracle;
mod parsers;
pub mod patch;
mod predictions;
pub mod pyjson;
pub mod python;
mod report;
pub mod sandbox;
pub mod script;
pub mod specs;

mod error;
mod parquet_rows;

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use chat::{ChatModel, ChatResponse, Completion, OpenAiClient, OpenAiConfig, SampleParams, Usage};
pub use dataset::{Instance, load_dataset};
pub use error::{Error, Result};
pub use grading::{EvalType, GradingMode, LogEval, ResolvedStatus, TestsStatus, get_logs_eval};
pub use harness::{
    Bucket, EXTRAS_FILE, HarnessConfig, InstanceOutcome, Progress, RunResult, ScriptRun, Stage, TESTBED_LOG,
    TestRun, Testbed, run_evaluation,
};
pub use parsers::{LogParser, ParserCrash, StatusMap};
pub use predictions::{Prediction, PredictionSource, load_predictions};
pub use report::{InstanceReport, RunSummary, eval_report, make_run_summary, report_json, summary_json};
