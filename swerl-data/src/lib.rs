//! # swerl-data
//!
//! Mines software evolution into SWE-RL training instances, as the SWE-RL paper describes (its
//! pipeline was never released): GitHub events from [GH Archive](https://www.gharchive.org)
//! are aggregated per pull request with their linked issues and discussions, the PRs' changes
//! are read from local git clones, and filtered, decontaminated and selected PRs become RL
//! instances (`problem_statement`, `code_context`, `oracle_new_content`, patches) that the
//! reward (`swerl-reward`) and the trainer read as they are.
//!
//! ```no_run
//! use swerl_data::{EventInputs, Miner};
//!
//! # fn main() -> swerl_data::Result<()> {
//! let miner = Miner::builder().clones("clones/").build()?;
//! let inputs = EventInputs { paths: vec!["gharchive/".into()], ..EventInputs::default() };
//! let summary = miner.run(&inputs, "out/".as_ref())?;
//! println!("{} merged PRs, {:?} instances", summary.prs.merged, summary.instances.map(|f| f.selected));
//! # Ok(())
//! # }
//! ```
//!
//! The pieces are usable alone; for example, finding the issues a PR links to:
//!
//! ```
//! let links = swerl_data::linked_issues(["Fixes #12 <!-- closes #3 -->", "see o/r#4"], "o/r", 99);
//! assert_eq!(links, vec![12]);
//! ```
//!
//! ## Map
//! Most items are at the crate root (their modules are private: one path per item):
//!
//! | items | what they do |
//! | --- | --- |
//! | [`discover`], [`scan_file`], [`HourRange`], [`Shard`] | finding hour files, date ranges, shards; streaming one file into thread fragments |
//! | [`Thread`], [`PullRequest`], [`Issue`] | the per-(repo, number) aggregate and its order-independent merge |
//! | [`linked_issues`], [`find_links`] | issue references (keyword convention, URLs, same-repository references) |
//! | [`FilterConfig`], [`Decontamination`] | bots, empty/oversized, noise-only, decontamination, seed selection |
//! | [`HeuristicPredictor`], [`LlmPredictor`] | relevant-file prediction: fast heuristic and an LLM interface |
//! | [`Instance`], [`PrRecord`], [`assemble`] | PR records and RL instances |
//! | [`Miner`] | scan, merge, build; sharding, resuming, statistics |
//! | [`Summary`], [`Funnel`] | counters written to `summary.json` |
//!
//! Public modules, for the lower-level pieces:
//!
//! | module | what it does |
//! | --- | --- |
//! | [`event`] | parsing one GH Archive line (current, trimmed and legacy schemas) |
//! | [`store`] | sorted thread JSONL files and their streaming k-way merge |
//! | [`git`] | clones, locating a PR (merge/squash/rebase), its files, contents and diff |
//! | [`lang`] | languages, SWE-bench's test-file rule, docs, lock and generated files |
//! | [`swebench`] | SWE-bench records as RL instances |

mod archive;
mod error;
pub mod event;
mod filter;
pub mod git;
mod instance;
pub mod lang;
mod links;
mod pipeline;
mod relevant;
mod stats;
pub mod store;
pub mod swebench;
mod thread;

pub use archive::{FileScan, Hour, HourRange, ScanConfig, Shard, discover, discover_excluding, scan_file};
pub use error::{Error, Result};
pub use filter::{Decontamination, FilterConfig, SWEBENCH_REPOS, patch_fingerprint};
pub use git::clones::CloneIndex;
pub use git::mine::{ChangeStatus, CommitInfo, FileChange, MergeKind, MinedPr, PrSpec, Unmined, mine_pr};
pub use git::pullindex::PullIndex;
pub use instance::{
    Assembled, Instance, InstanceConfig, PrRecord, assemble, hints, instance_id, problem_statement,
};
pub use links::{IssueRef, find_links, linked_issues};
pub use pipeline::{
    EventInputs, GitConfig, MineConfig, Miner, MinerBuilder, NoProgress, OutputLock, PrListEntry, Progress,
    RepoOutput, complete_from_git, lock_output, read_pr_list,
};
pub use relevant::{
    Completion, HeuristicPredictor, LlmPredictor, RelevanceQuery, RelevantConfig, RelevantFilesPredictor,
};
pub use stats::{Funnel, MAX_REPORTED_PROBLEMS, PrStats, Problem, ScanStats, Summary};
pub use thread::{Comment, CommentKind, EventStamp, Issue, PullRequest, Thread, ThreadKey};

/// The README's Rust examples, compiled and run as doctests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
