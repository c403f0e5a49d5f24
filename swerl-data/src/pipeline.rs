//! The mining pipeline: scan archives (sharded by file, resumable per file), merge thread
//! fragments, then per repository build PR records and RL instances (shardable by repository).
//!
//! Output directory layout:
//! - `parts/` per-file checkpoints (`<hour file>-<hash>.threads.jsonl` + `.stats.json`);
//! - `threads.jsonl` every issue/PR thread of the shard, sorted by (repo, number);
//! - `prs.jsonl` one aggregated PR per line, sorted by (repo, number);
//! - `instances.jsonl` RL instances (when clones are given), sorted the same way;
//! - `summary.json` per-stage counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use swerl_reward::RlInstance;

use crate::archive::{HourRange, ScanConfig, Shard, discover_excluding, scan_file};
use crate::error::{Error, Result};
use crate::filter::{Decontamination, FilterConfig, is_noise_only};
use crate::git::clones::CloneIndex;
use crate::git::history::co_changes;
use crate::git::mine::{MinedPr, PrSpec, Unmined, list_files, mine_pr, read_file_at};
use crate::git::pullindex::{PullIndex, rfc3339};
use crate::instance::{
    Assembled, Instance, InstanceConfig, PrRecord, assemble, hints, instance_id, problem_statement,
};
use crate::links::linked_issues;
use crate::relevant::{HeuristicPredictor, RelevanceQuery, RelevantConfig, RelevantFilesPredictor};
use crate::stats::{Funnel, PrStats, ScanStats, Summary};
use crate::store::{
    ByRepo, JsonlWriter, MergedThreads, merge_thread_files, tmp_path, write_json_atomic, write_threads,
};
use crate::thread::{PullRequest, Thread};

/// Options of the git side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GitConfig {
    /// First-parent commits of the default branch searched for merge/squash commits when
    /// completing trimmed events or in git-only mode.
    pub max_index_commits: usize,
}

impl Default for GitConfig {
    fn default() -> Self {
        Self { max_index_commits: 1_000_000 }
    }
}

/// Every option of a mining run (loadable from JSON; missing fields take their defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MineConfig {
    /// Event scanning.
    pub scan: ScanConfig,
    /// Filters and seed selection.
    pub filters: FilterConfig,
    /// Instance construction.
    pub instance: InstanceConfig,
    /// Relevant-file prediction.
    pub relevant: RelevantConfig,
    /// Git.
    pub git: GitConfig,
}

impl MineConfig {
    /// Reads a JSON configuration file: missing keys keep their defaults, an unknown key is an
    /// error naming it and the valid keys beside it.
    pub fn from_json_file(path: &Path) -> Result<MineConfig> {
        let text = fs_err::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// [`MineConfig::from_json_file`] on text; `path` names the source in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<MineConfig> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Json { path: path.to_path_buf(), source: e })?;
        let known = serde_json::to_value(MineConfig::default())
            .map_err(|e| Error::Json { path: path.to_path_buf(), source: e })?;
        check_keys(&value, &known, "", path)?;
        serde_json::from_value(value).map_err(|e| Error::Json { path: path.to_path_buf(), source: e })
    }
}

/// Every key of `value`'s objects must be a key of `known` at the same place.
fn check_keys(value: &serde_json::Value, known: &serde_json::Value, at: &str, path: &Path) -> Result<()> {
    let (Some(value), Some(known)) = (value.as_object(), known.as_object()) else { return Ok(()) };
    for (key, v) in value {
        let dotted = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
        match known.get(key) {
            Some(k) => check_keys(v, k, &dotted, path)?,
            None => {
                return Err(Error::UnknownKey {
                    path: path.to_path_buf(),
                    key: dotted,
                    valid: known.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
                });
            }
        }
    }
    Ok(())
}

/// Progress notifications (called from worker threads).
pub trait Progress: Send + Sync {
    /// Scanning starts: number of files and their compressed size.
    fn scan_started(&self, _files: usize, _bytes: u64) {}
    /// Compressed bytes consumed.
    fn scan_bytes(&self, _bytes: u64) {}
    /// One archive file is done (or was resumed from its checkpoint).
    fn file_done(&self, _path: &Path) {}
    /// Building PR records and instances starts (`repos` when known, e.g. git-only mode).
    fn build_started(&self, _repos: Option<usize>) {}
    /// One repository is done.
    fn repo_done(&self, _repo: &str, _prs: u64, _instances: u64) {}
}

/// Ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Which archive files to scan.
#[derive(Debug, Clone, Default)]
pub struct EventInputs {
    /// Files and directories.
    pub paths: Vec<PathBuf>,
    /// Optional hour range.
    pub range: Option<HourRange>,
    /// This worker's share of the files.
    pub shard: Shard,
    /// Reuse per-file checkpoints found in the output directory.
    pub resume: bool,
}

/// One PR to mine in [`Miner::run_pr_list`] (a line of the `--prs` JSONL file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrListEntry {
    /// `owner/name`.
    pub repo: String,
    /// PR number.
    pub number: u64,
    /// Base commit (the base branch tip when the PR was merged, or any commit of it before the
    /// PR's first commit).
    #[serde(default)]
    pub base_sha: String,
    /// Head commit; `refs/pull/N/head` is used when empty.
    #[serde(default)]
    pub head_sha: String,
    /// Merge, squash or last rebased commit, when the head is not in the clone.
    #[serde(default)]
    pub merge_commit_sha: String,
    /// Number of commits (rebase merges without the head).
    #[serde(default)]
    pub commits: Option<u64>,
    /// Title (searched for issue links).
    #[serde(default)]
    pub title: String,
    /// Description (searched for issue links).
    #[serde(default)]
    pub body: String,
}

/// Reads a JSONL file of [`PrListEntry`]; a malformed line is an error naming it.
pub fn read_pr_list(path: &Path) -> Result<Vec<PrListEntry>> {
    let text = fs_err::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(line).map_err(|e| Error::InvalidRecord {
            path: path.to_path_buf(),
            line: i as u64 + 1,
            message: e.to_string(),
        })?);
    }
    Ok(out)
}

/// Builds a [`Miner`].
pub struct MinerBuilder {
    config: MineConfig,
    clones: Option<PathBuf>,
    swebench: Vec<PathBuf>,
    predictor: Option<Arc<dyn RelevantFilesPredictor>>,
    progress: Arc<dyn Progress>,
    repo_shard: Shard,
}

impl Default for MinerBuilder {
    fn default() -> Self {
        Self {
            config: MineConfig::default(),
            clones: None,
            swebench: Vec::new(),
            predictor: None,
            progress: Arc::new(NoProgress),
            repo_shard: Shard::default(),
        }
    }
}

impl MinerBuilder {
    /// Options.
    pub fn config(mut self, config: MineConfig) -> Self {
        self.config = config;
        self
    }
    /// Directory of local clones (enables instances).
    pub fn clones(mut self, dir: impl Into<PathBuf>) -> Self {
        self.clones = Some(dir.into());
        self
    }
    /// SWE-bench files (JSON or JSONL) whose repositories and gold patches are excluded.
    pub fn swebench(mut self, file: impl Into<PathBuf>) -> Self {
        self.swebench.push(file.into());
        self
    }
    /// Relevant-file predictor (default: [`HeuristicPredictor`]).
    pub fn predictor(mut self, p: Arc<dyn RelevantFilesPredictor>) -> Self {
        self.predictor = Some(p);
        self
    }
    /// Progress sink.
    pub fn progress(mut self, p: Arc<dyn Progress>) -> Self {
        self.progress = p;
        self
    }
    /// Only build repositories owned by this shard (stable hash of the name).
    pub fn repo_shard(mut self, shard: Shard) -> Self {
        self.repo_shard = shard;
        self
    }
    /// Indexes the clones and loads decontamination data.
    pub fn build(self) -> Result<Miner> {
        let clones = self.clones.as_deref().map(CloneIndex::scan).transpose()?;
        let mut decontam = Decontamination::with_shipped(&self.config.filters.excluded_repos);
        for f in &self.swebench {
            decontam.load_swebench(f)?;
        }
        let predictor = self
            .predictor
            .unwrap_or_else(|| Arc::new(HeuristicPredictor { config: self.config.relevant.clone() }));
        Ok(Miner {
            config: self.config,
            clones,
            decontam,
            predictor,
            progress: self.progress,
            repo_shard: self.repo_shard,
        })
    }
}

/// Runs the pipeline. Cheap to share across threads.
pub struct Miner {
    config: MineConfig,
    clones: Option<CloneIndex>,
    decontam: Decontamination,
    predictor: Arc<dyn RelevantFilesPredictor>,
    progress: Arc<dyn Progress>,
    repo_shard: Shard,
}

/// What one repository produced.
#[derive(Debug, Default)]
pub struct RepoOutput {
    /// PR records.
    pub prs: Vec<PrRecord>,
    /// Instances.
    pub instances: Vec<Instance>,
    /// Counts.
    pub pr_stats: PrStats,
    /// Funnel counts.
    pub funnel: Funnel,
}

/// The checkpoint name of an archive file: its name and a hash of what its scan depends on,
/// the canonical path, size, modification time and the scan options. A file replaced since (or
/// scanned with other options) gets a new name, so its old checkpoint is never reused.
fn part_name(path: &Path, config: &ScanConfig) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let canonical = fs_err::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let (size, mtime) = std::fs::metadata(path)
        .map(|m| {
            let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            (m.len(), mtime.map_or(0, |d| d.as_nanos()))
        })
        .unwrap_or_default();
    let options = serde_json::to_string(config).unwrap_or_default();
    let key = format!("v2\0{}\0{size}\0{mtime}\0{options}", canonical.to_string_lossy());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}-{h:016x}", name.trim_end_matches(".json.gz"))
}

/// File shards merged together must be each shard of one `n` exactly once (else events would be
/// lost or counted twice).
fn check_shards(shards: &[(Shard, &Path)]) -> Result<()> {
    let Some((first, _)) = shards.first() else { return Ok(()) };
    let bad = |message: String| {
        let value =
            shards.iter().map(|(s, d)| format!("{s} ({})", d.display())).collect::<Vec<_>>().join(", ");
        Err(Error::InvalidSpec { what: "set of shards", value, message })
    };
    if let Some((s, _)) = shards.iter().find(|(s, _)| s.count != first.count) {
        return bad(format!("shards of different counts ({first} and {s})"));
    }
    let mut seen = vec![false; first.count as usize];
    for (s, _) in shards {
        if std::mem::replace(&mut seen[s.index as usize], true) {
            return bad(format!("shard {s} appears twice"));
        }
    }
    let missing: Vec<String> =
        (0..first.count).filter(|i| !seen[*i as usize]).map(|i| format!("{i}/{}", first.count)).collect();
    if !missing.is_empty() {
        return bad(format!("missing {}", missing.join(", ")));
    }
    Ok(())
}

/// The exclusive lock of an output directory, held while a run writes it (released on drop).
#[derive(Debug)]
pub struct OutputLock {
    _file: std::fs::File,
}

/// Creates `out` and takes its lock (`out/.lock`); fails with [`Error::Locked`] when another
/// run holds it.
pub fn lock_output(out: &Path) -> Result<OutputLock> {
    mkdir(out)?;
    let path = out.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(OutputLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path: out.to_path_buf() }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn mkdir(dir: &Path) -> Result<()> {
    fs_err::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

impl Miner {
    /// A builder with default options.
    pub fn builder() -> MinerBuilder {
        MinerBuilder::default()
    }

    /// The options in use.
    pub fn config(&self) -> &MineConfig {
        &self.config
    }

    /// Scans the files of `inputs` (this shard's share) into per-file checkpoints under
    /// `out/parts`, in parallel, then merges them into `out/threads.jsonl`.
    pub fn scan(&self, inputs: &EventInputs, out: &Path) -> Result<ScanStats> {
        mkdir(out)?;
        let own = fs_err::canonicalize(out).map_err(|e| Error::io(out, e))?;
        let all = discover_excluding(&inputs.paths, inputs.range.as_ref(), &[own])?;
        if all.is_empty() {
            let paths: Vec<String> = inputs.paths.iter().map(|p| p.display().to_string()).collect();
            let what = if inputs.range.is_some() { " in the --range" } else { "" };
            return Err(Error::NoInput {
                message: format!(
                    "no GH Archive files (*.json.gz, *.json){what} under {} (the output directory is never read)",
                    paths.join(", ")
                ),
            });
        }
        let files: Vec<PathBuf> = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| inputs.shard.owns_position(*i))
            .map(|(_, p)| p)
            .collect();
        let parts_dir = out.join("parts");
        mkdir(&parts_dir)?;
        let total: u64 = files.iter().map(|p| fs_err::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
        self.progress.scan_started(files.len(), total);
        let on_bytes = |n: u64| self.progress.scan_bytes(n);
        let results: Vec<Result<(PathBuf, ScanStats)>> = files
            .par_iter()
            .map(|path| {
                let stem = parts_dir.join(part_name(path, &self.config.scan));
                let threads_path = stem.with_extension("threads.jsonl");
                let stats_path = stem.with_extension("stats.json");
                if inputs.resume && stats_path.is_file() && threads_path.is_file() {
                    let text = fs_err::read_to_string(&stats_path).map_err(|e| Error::io(&stats_path, e))?;
                    if let Ok(stats) = serde_json::from_str::<ScanStats>(&text) {
                        self.progress.scan_bytes(stats.compressed_bytes);
                        self.progress.file_done(path);
                        return Ok((threads_path, stats));
                    }
                }
                let scan = scan_file(path, &self.config.scan, &on_bytes)?;
                write_threads(&threads_path, scan.threads.values())?;
                // The statistics mark a checkpoint complete: a file that ended early is scanned
                // again by the next resume (it may have been completed or replaced).
                if scan.stats.truncated_files == 0 {
                    write_json_atomic(&stats_path, &scan.stats)?;
                } else if stats_path.exists() {
                    fs_err::remove_file(&stats_path).map_err(|e| Error::io(&stats_path, e))?;
                }
                self.progress.file_done(path);
                Ok((threads_path, scan.stats))
            })
            .collect();
        let mut stats = ScanStats::default();
        let mut parts = Vec::new();
        for r in results {
            let (p, s) = r?;
            stats.add(&s);
            parts.push(p);
        }
        merge_thread_files(&parts, &out.join("threads.jsonl"))?;
        Ok(stats)
    }

    /// The whole run over archives: scan, and unless the files are sharded (`n > 1`, where
    /// [`Miner::merge`] finishes), build `prs.jsonl`, `instances.jsonl` and `summary.json`.
    pub fn run(&self, inputs: &EventInputs, out: &Path) -> Result<Summary> {
        let _lock = lock_output(out)?;
        let scan = self.scan(inputs, out)?;
        let mut summary = Summary { scan, ..Summary::default() };
        if !inputs.shard.is_whole() {
            summary.shard = Some(inputs.shard.to_string());
            write_json_atomic(&out.join("summary.json"), &summary)?;
            return Ok(summary);
        }
        let groups = ByRepo::new(MergedThreads::open(&[out.join("threads.jsonl")])?);
        self.build(groups, out, summary, false)
    }

    /// Merges the `threads.jsonl` and scan statistics of shard output directories into `out`
    /// and builds the PR records and instances (of this miner's repository shard).
    pub fn merge(&self, shard_dirs: &[PathBuf], out: &Path) -> Result<Summary> {
        let _lock = lock_output(out)?;
        let mut summary = Summary::default();
        let mut inputs = Vec::new();
        let mut shards: Vec<(Shard, &Path)> = Vec::new();
        for d in shard_dirs {
            let s = d.join("summary.json");
            let text = fs_err::read_to_string(&s).map_err(|e| Error::io(&s, e))?;
            let shard: Summary =
                serde_json::from_str(&text).map_err(|e| Error::Json { path: s.clone(), source: e })?;
            summary.scan.add(&shard.scan);
            if let Some(spec) = shard.shard.as_deref().and_then(|s| Shard::parse(s).ok()) {
                shards.push((spec, d.as_path()));
            }
            inputs.push(d.join("threads.jsonl"));
        }
        check_shards(&shards)?;
        let merged = out.join("threads.jsonl");
        let same = inputs.len() == 1 && inputs[0] == merged;
        if !same {
            merge_thread_files(&inputs, &merged)?;
        }
        let groups = ByRepo::new(MergedThreads::open(&[merged])?);
        self.build(groups, out, summary, false)
    }

    /// Git-only mode: mines the PRs of every clone from `refs/pull/*` and the merge/squash
    /// commits of its default branch, without archives.
    pub fn run_git_only(&self, out: &Path) -> Result<Summary> {
        let _lock = lock_output(out)?;
        let clones = self
            .clones
            .as_ref()
            .map(|c| c.iter().map(|(n, _)| n.to_owned()).collect::<Vec<_>>())
            .unwrap_or_default();
        let groups = clones.into_iter().map(|r| Ok((r, BTreeMap::new())));
        self.build(groups, out, Summary::default(), true)
    }

    /// Git-only mode for given PRs: each [`PrListEntry`] (repository, number, base sha and
    /// optionally head, merge commit, title and body) is mined from its clone as a merged PR.
    /// Records naming the same PR are combined.
    pub fn run_pr_list(&self, entries: &[PrListEntry], out: &Path) -> Result<Summary> {
        let _lock = lock_output(out)?;
        let mut groups: BTreeMap<String, BTreeMap<u64, Thread>> = BTreeMap::new();
        for e in entries {
            let mut t = Thread::new(&e.repo, e.number);
            t.is_pull_request = true;
            t.pr = Some(PullRequest {
                title: e.title.clone(),
                body: e.body.clone(),
                merged: true,
                closed: true,
                base_sha: e.base_sha.clone(),
                head_sha: e.head_sha.clone(),
                merge_commit_sha: e.merge_commit_sha.clone(),
                commits: e.commits,
                ..PullRequest::default()
            });
            let group = groups.entry(e.repo.clone()).or_default();
            match group.get_mut(&e.number) {
                Some(g) => g.absorb(t),
                None => {
                    group.insert(e.number, t);
                }
            }
        }
        self.build(groups.into_iter().map(Ok), out, Summary::default(), false)
    }

    fn build(
        &self,
        groups: impl Iterator<Item = Result<(String, BTreeMap<u64, Thread>)>>,
        out: &Path,
        mut summary: Summary,
        git_only: bool,
    ) -> Result<Summary> {
        let prs_path = out.join("prs.jsonl");
        let inst_path = out.join("instances.jsonl");
        let (prs_tmp, inst_tmp) = (tmp_path(&prs_path), tmp_path(&inst_path));
        let mut prs_out = JsonlWriter::create(&prs_tmp)?;
        let mut inst_out = if self.clones.is_some() { Some(JsonlWriter::create(&inst_tmp)?) } else { None };
        let mut funnel = Funnel::default();
        self.progress.build_started(git_only.then(|| self.clones.as_ref().map_or(0, CloneIndex::len)));
        if !self.repo_shard.is_whole() {
            summary.shard = Some(format!("repos {}", self.repo_shard));
        }
        let mut batch: Vec<(String, BTreeMap<u64, Thread>)> = Vec::new();
        let mut groups = groups.peekable();
        loop {
            let done = groups.peek().is_none();
            if let Some(g) = groups.next() {
                let (repo, threads) = g?;
                if self.repo_shard.owns_repo(&repo) {
                    batch.push((repo, threads));
                }
            }
            if batch.len() >= 64 || (done && !batch.is_empty()) {
                let outputs: Vec<RepoOutput> = batch
                    .par_drain(..)
                    .map(|(repo, threads)| self.process_repo(&repo, threads, git_only))
                    .collect();
                for o in outputs {
                    for p in &o.prs {
                        prs_out.write(p)?;
                    }
                    if let Some(w) = inst_out.as_mut() {
                        for i in &o.instances {
                            w.write(i)?;
                        }
                    }
                    summary.prs.add(&o.pr_stats);
                    funnel.add(&o.funnel);
                }
            }
            if done {
                break;
            }
        }
        prs_out.finish()?;
        fs_err::rename(&prs_tmp, &prs_path).map_err(|e| Error::io(&prs_path, e))?;
        if let Some(w) = inst_out {
            w.finish()?;
            fs_err::rename(&inst_tmp, &inst_path).map_err(|e| Error::io(&inst_path, e))?;
            summary.instances = Some(funnel);
        }
        write_json_atomic(&out.join("summary.json"), &summary)?;
        Ok(summary)
    }

    /// Builds the PR records and instances of one repository from its threads (and its clone,
    /// when there is one). Deterministic.
    pub fn process_repo(&self, repo: &str, mut threads: BTreeMap<u64, Thread>, git_only: bool) -> RepoOutput {
        let mut out = RepoOutput::default();
        let clone_path = self.clones.as_ref().and_then(|c| c.get(repo));
        let git = clone_path.and_then(|p| match git2::Repository::open(p) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(repo, path = %p.display(), error = %e, "cannot open clone");
                out.funnel.git_errors += 1;
                None
            }
        });
        let needs_index = git_only || threads.values().any(|t| t.pr.as_ref().is_some_and(|p| p.trimmed));
        let index = match (&git, needs_index) {
            (Some(g), true) => match PullIndex::build(g, repo, self.config.git.max_index_commits) {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::warn!(repo, error = %e, "cannot index pull requests");
                    out.funnel.git_errors += 1;
                    None
                }
            },
            _ => None,
        };
        let mut from_git: Vec<u64> = Vec::new();
        if let (Some(g), Some(index)) = (&git, &index) {
            if git_only {
                let numbers: std::collections::BTreeSet<u64> =
                    index.heads.keys().chain(index.merges.keys()).copied().collect();
                for n in numbers {
                    let t = threads.entry(n).or_insert_with(|| Thread::new(repo, n));
                    t.is_pull_request = true;
                    if t.pr.is_none() {
                        t.pr = Some(PullRequest {
                            head_sha: index.heads.get(&n).cloned().unwrap_or_default(),
                            trimmed: true,
                            ..PullRequest::default()
                        });
                    }
                }
            }
            for (n, t) in threads.iter_mut() {
                let Some(pr) = t.pr.as_mut() else { continue };
                if !pr.trimmed {
                    continue;
                }
                if complete_from_git(g, index, *n, pr) {
                    from_git.push(*n);
                }
            }
        }
        out.pr_stats.threads = threads.len() as u64;
        for t in threads.values() {
            if t.pr.is_none() && t.issue.is_some() && !t.is_pull_request {
                out.pr_stats.issues += 1;
            }
        }
        let mut merged: Vec<u64> = Vec::new();
        for (n, t) in &threads {
            let Some(pr) = &t.pr else { continue };
            let title = if pr.title.is_empty() { t.title() } else { &pr.title };
            let body = if pr.body.is_empty() { t.body() } else { &pr.body };
            let links = linked_issues([title, body], repo, *n);
            out.pr_stats.prs += 1;
            out.pr_stats.trimmed += u64::from(pr.trimmed);
            out.pr_stats.with_linked_issue += u64::from(!links.is_empty());
            if pr.merged {
                out.pr_stats.merged += 1;
                out.pr_stats.merged_with_linked_issue += u64::from(!links.is_empty());
                merged.push(*n);
            }
            out.prs.push(PrRecord {
                repo: repo.to_owned(),
                number: *n,
                merged: pr.merged,
                title: title.to_owned(),
                body: body.to_owned(),
                author: pr.author.clone(),
                labels: t.labels().to_vec(),
                created_at: pr.created_at.clone(),
                merged_at: pr.merged_at.clone(),
                base_ref: pr.base_ref.clone(),
                base_sha: pr.base_sha.clone(),
                head_ref: pr.head_ref.clone(),
                head_sha: pr.head_sha.clone(),
                merge_commit_sha: pr.merge_commit_sha.clone(),
                linked_issues: links,
                comments: t.comments.clone(),
                commits: pr.commits,
                additions: pr.additions,
                deletions: pr.deletions,
                changed_files: pr.changed_files,
                trimmed: pr.trimmed && !from_git.contains(n),
                from_git: from_git.contains(n),
                events: t.events,
            });
        }
        out.pr_stats.completed_from_git = from_git.len() as u64;
        if self.clones.is_some() {
            for n in merged {
                if let Some(i) = self.instance_for(repo, n, &threads, git.as_ref(), &mut out.funnel) {
                    out.instances.push(i);
                }
            }
        }
        self.progress.repo_done(repo, out.prs.len() as u64, out.instances.len() as u64);
        out
    }

    /// The instance of merged PR `number`, or `None` when a filter drops it (counted in
    /// `funnel`).
    fn instance_for(
        &self,
        repo: &str,
        number: u64,
        threads: &BTreeMap<u64, Thread>,
        git: Option<&git2::Repository>,
        funnel: &mut Funnel,
    ) -> Option<Instance> {
        let thread = threads.get(&number)?;
        let pr = thread.pr.as_ref()?;
        funnel.merged_prs += 1;
        match self.build_instance(repo, number, thread, pr, threads, git) {
            Ok(instance) => {
                funnel.after_filters += 1;
                funnel.selected += 1;
                Some(instance)
            }
            Err(dropped) => {
                dropped.count(funnel);
                None
            }
        }
    }

    /// The paper's funnel for one PR as named steps: the PR itself, its changes in git, the
    /// general filters, its linked issues, then the instance with its relevant files.
    fn build_instance(
        &self,
        repo: &str,
        number: u64,
        thread: &Thread,
        pr: &PullRequest,
        threads: &BTreeMap<u64, Thread>,
        git: Option<&git2::Repository>,
    ) -> std::result::Result<Instance, Dropped> {
        let (title, body) = (thread.title(), thread.body());
        let git = self.check_pr(repo, pr, title, body, git)?;
        let mined = self.mine_changes(git, repo, number, pr)?;
        let assembled = self.check_changes(&mined)?;
        let messages: Vec<&str> = mined.commits.iter().map(|c| c.message.as_str()).collect();
        let links = linked_issues([title, body].into_iter().chain(messages.iter().copied()), repo, number);
        let issues = self.linked_issue_threads(&links, threads, &assembled)?;
        let id = instance_id(repo, number);
        let first_commit = mined.commits.iter().map(|c| c.time).min();
        let mut code_context = assembled.code_context;
        let relevant_files =
            self.add_relevant_files(git, &id, title, body, &mined, &assembled.code_paths, &mut code_context);
        Ok(Instance {
            rl: RlInstance {
                instance_id: id,
                problem_statement: if issues.is_empty() && self.config.instance.pr_text_as_problem {
                    format!("{title}\n{body}\n")
                } else {
                    problem_statement(issues.iter().copied())
                },
                code_context,
                oracle_new_content: assembled.oracle_new_content,
            },
            repo: repo.to_owned(),
            pr_number: number,
            base_commit: mined.base_commit.clone(),
            hints: hints(issues.iter().copied(), first_commit),
            patch: assembled.patch,
            test_patch: assembled.test_patch,
            doc_patch: assembled.doc_patch,
            relevant_files,
            languages: assembled.languages,
            // Trimmed events carry no creation time: the first commit's time stands in.
            created_at: if pr.created_at.is_empty() {
                first_commit.map(rfc3339).unwrap_or_default()
            } else {
                pr.created_at.clone()
            },
            title: title.to_owned(),
            linked_issues: links,
            merge_kind: mined.merge_kind,
            commits: mined.commits.iter().map(|c| c.sha.clone()).collect(),
        })
    }

    /// The PR-level filters (SWE-bench repository, bot) and the clone to read it from.
    fn check_pr<'g>(
        &self,
        repo: &str,
        pr: &PullRequest,
        title: &str,
        body: &str,
        git: Option<&'g git2::Repository>,
    ) -> std::result::Result<&'g git2::Repository, Dropped> {
        let f = &self.config.filters;
        if f.decontaminate && self.decontam.is_excluded_repo(repo) {
            return Err(Dropped::SweBenchRepo);
        }
        if f.is_bot(&pr.author, title, body) {
            return Err(Dropped::Bot);
        }
        git.ok_or(Dropped::NoClone)
    }

    /// The PR's commits and changed files, read from the clone.
    fn mine_changes(
        &self,
        git: &git2::Repository,
        repo: &str,
        number: u64,
        pr: &PullRequest,
    ) -> std::result::Result<MinedPr, Dropped> {
        let spec = PrSpec {
            number,
            base_sha: pr.base_sha.clone(),
            head_sha: pr.head_sha.clone(),
            merge_commit_sha: pr.merge_commit_sha.clone(),
            commits: pr.commits,
        };
        mine_pr(git, repo, &spec, self.config.filters.max_changed_files).map_err(|unmined| match unmined {
            Unmined::TooManyFiles(_) => Dropped::Oversized,
            Unmined::CommitsMissing(why) => {
                tracing::debug!(repo, number, why, "commits missing");
                Dropped::CommitsMissing
            }
            other => {
                tracing::warn!(repo, number, error = %other, "git failed");
                Dropped::GitError
            }
        })
    }

    /// The paper's general filters on the change (empty, oversized, noise only, a SWE-bench gold
    /// patch), and the change split into code, test and documentation parts.
    fn check_changes(&self, mined: &MinedPr) -> std::result::Result<Assembled, Dropped> {
        let f = &self.config.filters;
        if f.is_empty(&mined.files) {
            return Err(Dropped::Empty);
        }
        if f.is_oversized(&mined.files) {
            return Err(Dropped::Oversized);
        }
        if is_noise_only(&mined.files) {
            return Err(Dropped::NoiseOnly);
        }
        let assembled = assemble(mined, &self.config.instance);
        if f.decontaminate && self.decontam.matches_gold_patch(&assembled.patch) {
            return Err(Dropped::SweBenchPatch);
        }
        Ok(assembled)
    }

    /// The linked issues with text in the archives, under the seed filters (a linked issue, a
    /// bug report, code files changed).
    fn linked_issue_threads<'t>(
        &self,
        links: &[u64],
        threads: &'t BTreeMap<u64, Thread>,
        assembled: &Assembled,
    ) -> std::result::Result<Vec<&'t Thread>, Dropped> {
        let f = &self.config.filters;
        if links.is_empty() && f.require_linked_issue {
            return Err(Dropped::NoLinkedIssue);
        }
        let issues: Vec<&Thread> = links
            .iter()
            .filter_map(|n| threads.get(n))
            .filter(|t| !t.title().is_empty() || !t.body().is_empty())
            .collect();
        if issues.is_empty() && f.require_linked_issue {
            return Err(Dropped::IssueTextMissing);
        }
        if f.require_bug_fix && !issues.iter().any(|t| f.is_bug_report(t.title(), t.body(), t.labels())) {
            return Err(Dropped::NotBugFix);
        }
        if f.require_code_files && assembled.languages.is_empty() {
            return Err(Dropped::NoCodeFiles);
        }
        Ok(issues)
    }

    /// Adds the predicted relevant files (unchanged files at the base) to the code context and
    /// returns their paths. A failing predictor adds none.
    #[allow(clippy::too_many_arguments)]
    fn add_relevant_files(
        &self,
        git: &git2::Repository,
        id: &str,
        title: &str,
        body: &str,
        mined: &MinedPr,
        code_paths: &[String],
        code_context: &mut BTreeMap<String, String>,
    ) -> Vec<String> {
        let files = list_files(git, &mined.base_commit);
        let co = co_changes(git, &mined.base_commit, code_paths, self.config.relevant.co_change_commits);
        let query = RelevanceQuery {
            instance_id: id,
            title,
            body,
            changed_paths: code_paths,
            changed_contents: code_context,
            repo_files: &files,
            co_changes: &co,
        };
        let relevant = match self.predictor.predict(&query) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(instance = %id, error = %e, "relevant-file prediction failed");
                Vec::new()
            }
        };
        let mut added = Vec::new();
        for p in relevant {
            if code_context.contains_key(&p) {
                continue;
            }
            if let Some(text) = read_file_at(git, &mined.base_commit, &p) {
                code_context.insert(p.clone(), text);
                added.push(p);
            }
        }
        added
    }
}

/// Why the funnel dropped a PR (each a counter of [`Funnel`]).
#[derive(Debug, Clone, Copy)]
enum Dropped {
    SweBenchRepo,
    Bot,
    NoClone,
    CommitsMissing,
    GitError,
    Empty,
    Oversized,
    NoiseOnly,
    SweBenchPatch,
    NoLinkedIssue,
    IssueTextMissing,
    NotBugFix,
    NoCodeFiles,
}

impl Dropped {
    /// Counts the drop, and the general filters passed for drops after them.
    fn count(self, funnel: &mut Funnel) {
        let counter = match self {
            Self::SweBenchRepo => &mut funnel.dropped_swebench_repo,
            Self::Bot => &mut funnel.dropped_bot,
            Self::NoClone => &mut funnel.dropped_no_clone,
            Self::CommitsMissing => &mut funnel.dropped_commits_missing,
            Self::GitError => {
                funnel.git_errors += 1;
                &mut funnel.dropped_commits_missing
            }
            Self::Empty => &mut funnel.dropped_empty,
            Self::Oversized => &mut funnel.dropped_oversized,
            Self::NoiseOnly => &mut funnel.dropped_noise_only,
            Self::SweBenchPatch => &mut funnel.dropped_swebench_patch,
            Self::NoLinkedIssue => &mut funnel.dropped_no_linked_issue,
            Self::IssueTextMissing => &mut funnel.dropped_issue_text_missing,
            Self::NotBugFix => &mut funnel.dropped_not_bug_fix,
            Self::NoCodeFiles => &mut funnel.dropped_no_code_files,
        };
        *counter += 1;
        if matches!(self, Self::NoLinkedIssue | Self::IssueTextMissing | Self::NotBugFix | Self::NoCodeFiles)
        {
            funnel.after_filters += 1;
        }
    }
}

/// Completes a trimmed PR from the clone: merge state, merge commit, title, body and merge
/// time from GitHub's merge or squash commit on the default branch, or merge state alone when
/// the head is contained in the default branch. Returns whether anything was learned.
pub fn complete_from_git(
    repo: &git2::Repository,
    index: &PullIndex,
    number: u64,
    pr: &mut PullRequest,
) -> bool {
    if pr.head_sha.is_empty()
        && let Some(h) = index.heads.get(&number)
    {
        pr.head_sha = h.clone();
    }
    if let Some(m) = index.merges.get(&number) {
        pr.merged = true;
        pr.closed = true;
        if pr.merge_commit_sha.is_empty() {
            pr.merge_commit_sha = m.sha.clone();
        }
        if pr.title.is_empty() {
            pr.title = m.title.clone();
        }
        if pr.body.is_empty() {
            pr.body = m.body.clone();
        }
        if pr.merged_at.is_empty() {
            pr.merged_at = rfc3339(m.time);
        }
        return true;
    }
    if !pr.head_sha.is_empty() && index.on_default_branch(repo, &pr.head_sha) {
        pr.merged = true;
        pr.closed = true;
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_refuse_unknown_keys_and_name_the_valid_ones() {
        let path = Path::new("mine.json");
        let c = MineConfig::from_json_str(r#"{"filters": {"max_changed_files": 7}}"#, path).expect("valid");
        assert_eq!(c.filters.max_changed_files, 7);
        assert_eq!(c.scan, ScanConfig::default());
        let err =
            MineConfig::from_json_str(r#"{"filters": {"max_changed_filez": 7}}"#, path).expect_err("unknown");
        let text = err.to_string();
        assert!(text.contains("`filters.max_changed_filez`") && text.contains("max_changed_files"), "{text}");
        let err = MineConfig::from_json_str(r#"{"scna": {}}"#, path).expect_err("unknown");
        assert!(matches!(err, Error::UnknownKey { ref key, .. } if key == "scna"), "{err}");
    }

    #[test]
    fn an_output_directory_has_one_writer() {
        let dir = tempfile::tempdir().expect("tmp");
        let lock = lock_output(dir.path()).expect("first lock");
        assert!(matches!(lock_output(dir.path()), Err(Error::Locked { .. })));
        drop(lock);
        lock_output(dir.path()).expect("released");
    }

    #[test]
    fn checkpoint_names_follow_content_and_options_not_spelling() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("2021-07-21-6.json.gz");
        std::fs::write(&file, b"one").expect("write");
        let config = ScanConfig::default();
        let name = part_name(&file, &config);
        assert_eq!(name, part_name(&dir.path().join(".").join("2021-07-21-6.json.gz"), &config));
        assert_ne!(name, part_name(&file, &ScanConfig { validate_all: true, ..config.clone() }));
        std::fs::write(&file, b"longer").expect("write");
        assert_ne!(name, part_name(&file, &config));
    }

    #[test]
    fn merged_shards_must_be_each_shard_once() {
        let d = Path::new("d");
        let s = |index, count| (Shard { index, count }, d);
        assert!(check_shards(&[s(0, 2), s(1, 2)]).is_ok());
        assert!(check_shards(&[]).is_ok());
        assert!(check_shards(&[s(0, 2)]).expect_err("missing").to_string().contains("missing 1/2"));
        assert!(check_shards(&[s(0, 2), s(0, 2), s(1, 2)]).expect_err("twice").to_string().contains("twice"));
        assert!(check_shards(&[s(0, 2), s(1, 3)]).is_err());
    }
}
