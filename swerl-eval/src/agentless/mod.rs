//! Agentless Mini, the SWE-RL paper's scaffold for SWE-bench: repository structure at
//! `base_commit`, file localization, repair by SEARCH/REPLACE samples, patch normalization and
//! reranking, each a pure typed stage, tied together per instance by [`run_agentless`].
//!
//! Stages (each usable alone):
//! 1. [`RepoStructure::read`]: the Python files at `base_commit` (git `ls-tree`/`cat-file` on
//!    the clone or mirror), test paths left out as upstream does, each with an
//!    [`outline_python`] of classes, methods and functions with line spans.
//! 2. Localization: [`localization_messages`] (issue + tree, drawn per sample by
//!    [`LocalizationVariant`]), [`parse_file_list`] (only real paths survive),
//!    [`merge_localizations`] (votes, then first appearance; top k).
//! 3. Repair: [`repair_prompt`] (swerl-reward's `build_messages` with the localized files within
//!    a character budget), [`apply_completion`] (swerl-reward's `parse_output` and `apply_edits`,
//!    a `git diff`, or the reason the sample is invalid).
//! 4. Regression tests: the test patch's existing test files run on the original code in a
//!    [`crate::Testbed`] (the harness's environment and sandbox); the passing tests minus those
//!    a greedy model call names ([`regression_messages`], [`parse_excluded_tests`]) are run
//!    with each distinct patch.
//! 5. Reproduction tests: scripts sampled with [`reproduction_messages`], read with
//!    [`extract_python_script`] and [`classify_reproduction`], kept by
//!    [`select_reproductions`] when they reproduce the issue, run with each distinct patch.
//! 6. The vote key: Python's `ast` ([`PythonAst`]: `ast.unparse` without docstrings, and a
//!    syntax check that drops samples leaving a file unparsable), or [`normalized_change`], a
//!    pure-Rust approximation (comments, docstrings, blank lines dropped).
//! 7. [`rerank`]: upstream's rules (fewest regression failures, reproduction consensus,
//!    majority vote, earliest sample on ties).
//!
//! Without tests (`run_tests: false`, `--no-tests`) the rerank is the majority vote over
//! normalized patches.
//!
//! ```
//! use swerl_eval::agentless::{RepoStructure, merge_localizations, parse_file_list};
//!
//! let repo = RepoStructure::from_files([("pkg/core.py", "def f():\n    pass\n"), ("setup.py", "")]);
//! let answers = ["```\npkg/core.py\nnot/real.py\n```", "1. setup.py\n2. pkg/core.py"];
//! let found: Vec<Vec<String>> = answers.iter().map(|a| parse_file_list(a, &repo)).collect();
//! assert_eq!(found, [vec!["pkg/core.py"], vec!["setup.py", "pkg/core.py"]]);
//! assert_eq!(merge_localizations(&found, 1), ["pkg/core.py"]);
//! ```

mod checks;
mod localize;
mod normalize;
mod pipeline;
mod pynorm;
mod repair;
mod rerank;
mod structure;
mod validate;

pub use checks::{
    ExclusionCall, PatchRegression, PatchReproduction, RegressionTrace, ReproductionSample,
    ReproductionTrace, ScriptRecord, TestsTrace,
};
pub use localize::{
    LocalizationVariant, answer_text, localization_messages, merge_localizations, parse_file_list,
};
pub use normalize::{normalize_source, normalized_change};
pub use pipeline::{
    AgentlessConfig, AgentlessProgress, AgentlessStage, AgentlessSummary, LocalizationSample,
    LocalizationTrace, PREDICTIONS_FILE, RepairSample, RepairTrace, RerankTrace, StageSeconds,
    TRAJECTORIES_DIR, Trajectory, run_agentless,
};
pub use pynorm::PythonAst;
pub use repair::{AnswerFormat, RepairOutcome, RepairPrompt, apply_completion, repair_prompt};
pub use rerank::{RerankCandidate, RerankChoice, RerankRule, rerank};
pub use structure::{ClassDef, FunctionDef, PythonOutline, RepoFile, RepoStructure, outline_python};
pub use validate::{
    ReproVerdict, SelectedReproduction, classify_reproduction, extract_python_script, parse_excluded_tests,
    regression_messages, reproduction_messages, select_reproductions,
};
