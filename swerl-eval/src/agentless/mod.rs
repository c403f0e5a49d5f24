//! Agentless Mini, the paper's scaffold for SWE-bench: repository structure at `base_commit`,
//! file localization, repair by SEARCH/REPLACE samples, patch normalization and reranking, each
//! a pure typed stage, tied together per instance by the pipeline.

mod structure;

pub use structure::{ClassDef, FunctionDef, PythonOutline, RepoFile, RepoStructure, outline_python};
