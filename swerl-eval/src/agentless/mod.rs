//! Agentless Mini, the paper's scaffold for SWE-bench: repository structure at `base_commit`,
//! file localization, repair by SEARCH/REPLACE samples, patch normalization and reranking, each
//! a pure typed stage, tied together per instance by the pipeline.

mod localize;
mod normalize;
mod pipeline;
mod repair;
mod rerank;
mod structure;

pub use localize::{
    LocalizationVariant, answer_text, localization_messages, merge_localizations, parse_file_list,
};
pub use normalize::{normalize_source, normalized_change};
pub use pipeline::{
    AgentlessConfig, AgentlessProgress, AgentlessStage, AgentlessSummary, LocalizationSample,
    LocalizationTrace, PREDICTIONS_FILE, RepairSample, RepairTrace, RerankTrace, TRAJECTORIES_DIR,
    Trajectory, run_agentless,
};
pub use repair::{RepairOutcome, RepairPrompt, apply_completion, repair_prompt};
pub use rerank::{RerankCandidate, RerankChoice, RerankRule, rerank};
pub use structure::{ClassDef, FunctionDef, PythonOutline, RepoFile, RepoStructure, outline_python};
