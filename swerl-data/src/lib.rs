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
//! ## Modules
//! | module | what it does |
//! | --- | --- |
//! | [`archive`] | finding hour files, date ranges, shards; streaming one file into thread fragments |
//! | [`event`] | parsing one GH Archive line (current, trimmed and legacy schemas) |
//! | [`thread`] | the per-(repo, number) aggregate and its order-independent merge |
//! | [`store`] | sorted thread JSONL files and their streaming k-way merge |
//! | [`links`] | issue references (keyword convention, URLs, same-repository references) |
//! | [`git`] | clones, locating a PR (merge/squash/rebase), its files, contents and diff |
//! | [`lang`] | languages, SWE-bench's test-file rule, docs, lock and generated files |
//! | [`filter`] | bots, empty/oversized, noise-only, decontamination, seed selection |
//! | [`relevant`] | relevant-file prediction: fast heuristic and an LLM interface |
//! | [`instance`] | PR records and RL instances |
//! | [`pipeline`] | the [`Miner`]: scan, merge, build; sharding, resuming, statistics |
//! | [`stats`] | counters written to `summary.json` |

pub mod archive;
pub mod error;
pub mod event;
pub mod filter;
pub mod git;
pub mod instance;
pub mod lang;
pub mod links;
pub mod pipeline;
pub mod relevant;
pub mod stats;
pub mod store;
pub mod swebench;
pub mod thread;

pub use archive::{FileScan, Hour, HourRange, ScanConfig, Shard, discover, discover_excluding, scan_file};
pub use error::{Error, Result};
pub use filter::{Decontamination, FilterConfig, patch_fingerprint};
pub use git::clones::CloneIndex;
pub use git::mine::{ChangeStatus, CommitInfo, FileChange, MergeKind, MinedPr, PrSpec, Unmined, mine_pr};
pub use git::pullindex::PullIndex;
pub use instance::{Instance, InstanceConfig, PrRecord, instance_id};
pub use links::{IssueRef, find_links, linked_issues};
pub use pipeline::{
    EventInputs, GitConfig, MineConfig, Miner, MinerBuilder, NoProgress, OutputLock, PrListEntry, Progress,
    RepoOutput, lock_output, read_pr_list,
};
pub use relevant::{
    Completion, HeuristicPredictor, LlmPredictor, RelevanceQuery, RelevantConfig, RelevantFilesPredictor,
};
pub use stats::{Funnel, PrStats, Problem, ScanStats, Summary};
pub use thread::{Comment, CommentKind, EventStamp, Issue, PullRequest, Thread};

/// The README's Rust examples, compiled and run as doctests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
