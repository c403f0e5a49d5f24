//! The pipeline: per instance, structure -> localization -> repair -> rerank -> one prediction,
//! with a readable trajectory per instance, resumable, instances in parallel.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use swerl_reward::ChatMessage;

use super::checks::{Ask, TestScores, TestsTrace, run_checks};
use super::localize::{LocalizationVariant, localization_messages, merge_localizations, parse_file_list};
use super::normalize::{change_key, normalize_source};
use super::pynorm::PythonAst;
use super::repair::{AnswerFormat, RepairOutcome, RepairPrompt, apply_completion, repair_prompt};
use super::rerank::{RerankCandidate, RerankChoice, rerank};
use super::structure::RepoStructure;
use crate::chat::{ChatModel, Completion, SampleParams, Usage};
use crate::checkout::find_clone;
use crate::dataset::{Instance, load_dataset};
use crate::error::{Error, Result};
use crate::harness::{HarnessConfig, Testbed};
use crate::predictions::Prediction;

/// Everything an Agentless run needs; `Default` gives small but complete settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentlessConfig {
    /// The SWE-bench dataset file.
    pub dataset: PathBuf,
    /// The directory of clones or bare mirrors (as the harness finds them).
    pub repos_dir: PathBuf,
    /// Where `predictions.jsonl` and `trajectories/` go.
    pub out_dir: PathBuf,
    /// Only these instances (all when empty).
    pub instance_ids: Vec<String>,
    /// `model_name_or_path` of the predictions (the model's own name when `None`).
    pub model_name: Option<String>,
    /// Localization samples (1: the greedy prompt at temperature 0).
    pub localization_samples: usize,
    /// Files kept after merging the localization samples.
    pub top_files: usize,
    /// Repair samples.
    pub repair_samples: usize,
    /// Sampling temperature of repair (and of localization when it has several samples).
    pub temperature: f64,
    /// Most new tokens per completion.
    pub max_new_tokens: usize,
    /// How repair completions are read (the paper's `<think>`/`<solution>` by default).
    pub answer_format: AnswerFormat,
    /// Budget of the file blocks in the repair prompt, characters (about 4 per token; 240k is
    /// upstream's 60k tokens).
    pub max_file_chars: usize,
    /// Instances processed at once.
    pub max_workers: usize,
    /// Seed of the localization prompts' variations and of the servers' sampling.
    pub seed: u64,
    /// Run regression and reproduction tests for the rerank (in the harness's sandbox and
    /// environments, configured by `harness`); without tests the rerank is a majority vote over
    /// normalized patches.
    pub run_tests: bool,
    /// With `run_tests`: run regression tests (the test patch's existing test files).
    pub regression_tests: bool,
    /// With `run_tests`: reproduction scripts sampled (one greedy, the rest at
    /// `reproduction_temperature`; upstream Agentless: 40); 0 turns reproduction off.
    pub reproduction_samples: usize,
    /// Reproduction tests kept for the rerank: the largest groups of identical (normalized)
    /// scripts that reproduce the issue (upstream Agentless: 1; the paper: up to 30).
    pub reproduction_tests: usize,
    /// Temperature of the reproduction samples after the greedy one (upstream: 0.8).
    pub reproduction_temperature: f64,
    /// Seconds a reproduction script may run.
    pub script_timeout_secs: u64,
    /// Environments, sandbox limits and test timeout for the tests (`repos_dir` is taken from
    /// this configuration; the dataset and predictions fields are not used).
    pub harness: HarnessConfig,
    /// Check and normalize Python files with Python's `ast` (3.9 or newer, found on this
    /// machine): samples whose edited files do not parse become invalid, and the vote key is
    /// built from `ast.unparse` without docstrings, as upstream. Without it (or without such an
    /// interpreter) the pure-Rust approximation is the key and nothing is parsed.
    pub python_ast: bool,
    /// Diagnostic: the instance's gold patch is the only repair sample (no repair request), so
    /// the tests, the rerank and the harness can be checked from repair to report. Its vote key
    /// is the patch's changed lines.
    pub inject_gold_patch: bool,
    /// Redo instances whose trajectory is complete.
    pub force: bool,
}

impl Default for AgentlessConfig {
    fn default() -> Self {
        Self {
            dataset: PathBuf::new(),
            repos_dir: PathBuf::from("repos"),
            out_dir: PathBuf::from("agentless"),
            instance_ids: Vec::new(),
            model_name: None,
            localization_samples: 4,
            top_files: 3,
            repair_samples: 8,
            temperature: 1.0,
            max_new_tokens: 4096,
            answer_format: AnswerFormat::Thinking,
            max_file_chars: 240_000,
            max_workers: 4,
            seed: 0,
            run_tests: true,
            regression_tests: true,
            reproduction_samples: 40,
            reproduction_tests: 1,
            reproduction_temperature: 0.8,
            script_timeout_secs: 120,
            harness: HarnessConfig::default(),
            python_ast: true,
            inject_gold_patch: false,
            force: false,
        }
    }
}

/// The file of predictions in `out_dir`.
pub const PREDICTIONS_FILE: &str = "predictions.jsonl";
/// The directory of trajectories in `out_dir`.
pub const TRAJECTORIES_DIR: &str = "trajectories";

/// A pipeline stage, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentlessStage {
    /// Reading the repository at `base_commit`.
    Structure,
    /// Asking for the files to edit.
    Localize,
    /// Sampling and applying edits.
    Repair,
    /// Preparing the environment and checkout, then running regression tests.
    Regression,
    /// Sampling and running reproduction tests.
    Reproduction,
    /// Choosing one patch.
    Rerank,
}

/// What the progress callback hears.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AgentlessProgress {
    /// `total` instances will run; `skipped` have a complete trajectory already.
    Planned {
        /// Instances to run.
        total: usize,
        /// Instances reused.
        skipped: usize,
    },
    /// An instance entered a stage.
    Stage {
        /// The instance.
        instance_id: String,
        /// The stage.
        stage: AgentlessStage,
    },
    /// An instance finished.
    Finished {
        /// The instance.
        instance_id: String,
        /// True when it has a non-empty patch.
        has_patch: bool,
        /// Why it stopped early, if it did.
        error: Option<String>,
    },
}

/// One localization sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalizationSample {
    /// How its prompt was drawn.
    pub variant: LocalizationVariant,
    /// The prompt.
    pub messages: Vec<ChatMessage>,
    /// The model's answer.
    pub completion: Completion,
    /// The real repository paths it names, in order.
    pub found: Vec<String>,
}

/// Localization's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalizationTrace {
    /// Sampling settings.
    pub params: SampleParams,
    /// Each sample.
    pub samples: Vec<LocalizationSample>,
    /// The merged files (votes, then first appearance; top k).
    pub files: Vec<String>,
}

/// One repair sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairSample {
    /// Its index (the rerank's tie-break order).
    pub index: usize,
    /// The model's answer.
    pub completion: Completion,
    /// The edits and patch, or why there are none.
    pub outcome: RepairOutcome,
}

/// Repair's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairTrace {
    /// The prompt (shared by every sample).
    pub prompt: RepairPrompt,
    /// Sampling settings.
    pub params: SampleParams,
    /// Each sample.
    pub samples: Vec<RepairSample>,
    /// How Python files were checked and normalized (`python ast (<interpreter>)` or
    /// `rust approximation`).
    #[serde(default)]
    pub normalizer: String,
}

/// The rerank's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankTrace {
    /// What the rerank knew about tests.
    pub tests: String,
    /// The candidates (samples with a patch).
    pub candidates: Vec<RerankCandidate>,
    /// The choice, when any candidate has a non-empty normalized patch.
    pub choice: Option<RerankChoice>,
    /// The choice in words.
    pub reason: String,
}

/// Everything that happened to one instance: `trajectories/<instance_id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// The instance.
    pub instance_id: String,
    /// The predictions' model name.
    pub model_name_or_path: String,
    /// True when every stage ran (a rerun skips the instance).
    pub complete: bool,
    /// Why the instance stopped early.
    pub error: Option<String>,
    /// Localization, once it ran.
    pub localization: Option<LocalizationTrace>,
    /// Repair, once it ran.
    pub repair: Option<RepairTrace>,
    /// Regression and reproduction tests, when they ran.
    pub tests: Option<TestsTrace>,
    /// The rerank, once it ran.
    pub rerank: Option<RerankTrace>,
    /// The prediction (`""` when there is none).
    pub model_patch: String,
    /// Requests and tokens spent on this instance.
    pub usage: Usage,
    /// Wall time per stage.
    pub seconds: StageSeconds,
}

/// Wall time per stage of one instance, seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageSeconds {
    /// Reading the repository.
    pub structure: f64,
    /// Localization.
    pub localize: f64,
    /// Repair.
    pub repair: f64,
    /// Environment and checkout for the tests.
    pub test_setup: f64,
    /// Regression tests.
    pub regression: f64,
    /// Reproduction tests.
    pub reproduction: f64,
    /// Everything.
    pub total: f64,
}

impl StageSeconds {
    /// Adds `other` to this, stage by stage.
    pub fn add(&mut self, other: &StageSeconds) {
        self.structure += other.structure;
        self.localize += other.localize;
        self.repair += other.repair;
        self.test_setup += other.test_setup;
        self.regression += other.regression;
        self.reproduction += other.reproduction;
        self.total += other.total;
    }
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentlessSummary {
    /// `out_dir/predictions.jsonl`.
    pub predictions_path: PathBuf,
    /// Instances selected.
    pub instances: usize,
    /// Instances whose complete trajectory was reused.
    pub skipped: usize,
    /// Instances with a non-empty patch.
    pub with_patch: usize,
    /// Instances that stopped with an error (their prediction is empty; a rerun retries them).
    pub errors: usize,
    /// Requests and tokens spent by this run (reused instances not counted).
    pub usage: Usage,
    /// Wall time per stage summed over the instances this run processed.
    pub seconds: StageSeconds,
}

/// Runs Agentless Mini over the dataset and writes `predictions.jsonl` (SWE-bench's format) and
/// one trajectory per instance. Errors only for usage or infrastructure problems; an instance's
/// own failure (a missing clone, a model error) is recorded in its trajectory.
pub fn run_agentless(
    cfg: &AgentlessConfig,
    model: &dyn ChatModel,
    progress: &(dyn Fn(AgentlessProgress) + Sync),
) -> Result<AgentlessSummary> {
    if cfg.run_tests {
        crate::sandbox::check_available().map_err(|e| match e {
            Error::Sandbox(m) => Error::Sandbox(format!(
                "{m} (the regression and reproduction tests need it; run_tests: false skips them)"
            )),
            other => other,
        })?;
    }
    if cfg.max_workers == 0 || cfg.repair_samples == 0 || cfg.localization_samples == 0 || cfg.top_files == 0
    {
        return Err(Error::Config(
            "max_workers, repair_samples, localization_samples and top_files must be at least 1".into(),
        ));
    }
    let mut dataset = load_dataset(&cfg.dataset)?;
    if !cfg.instance_ids.is_empty() {
        if let Some(id) = cfg.instance_ids.iter().find(|id| !dataset.iter().any(|i| &i.instance_id == *id)) {
            return Err(Error::UnknownInstance(id.clone()));
        }
        dataset.retain(|i| cfg.instance_ids.contains(&i.instance_id));
    }
    let model_name = cfg.model_name.clone().unwrap_or_else(|| model.name().to_owned());
    let traj_dir = cfg.out_dir.join(TRAJECTORIES_DIR);
    fs_err::create_dir_all(&traj_dir)?;
    let mut done: BTreeMap<String, Trajectory> = BTreeMap::new();
    let mut todo = Vec::new();
    for instance in &dataset {
        match read_trajectory(&traj_dir, &instance.instance_id) {
            Some(t) if t.complete && !cfg.force => {
                done.insert(instance.instance_id.clone(), t);
            }
            _ => todo.push(instance),
        }
    }
    let skipped = done.len();
    progress(AgentlessProgress::Planned { total: todo.len(), skipped });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.max_workers)
        .build()
        .map_err(|e| Error::Config(format!("thread pool: {e}")))?;
    let ran: Vec<Result<Trajectory>> = pool.install(|| {
        todo.par_iter()
            .map(|instance| {
                let t = run_instance(cfg, model, &model_name, instance, progress);
                write_json_atomic(&trajectory_path(&traj_dir, &t.instance_id), &t)?;
                progress(AgentlessProgress::Finished {
                    instance_id: t.instance_id.clone(),
                    has_patch: !t.model_patch.is_empty(),
                    error: t.error.clone(),
                });
                Ok(t)
            })
            .collect()
    });
    let mut usage = Usage::default();
    let mut seconds = StageSeconds::default();
    for t in ran {
        let t = t?;
        usage.add(&t.usage);
        seconds.add(&t.seconds);
        done.insert(t.instance_id.clone(), t);
    }
    let mut lines = String::new();
    for instance in &dataset {
        let t = &done[&instance.instance_id];
        let p = Prediction {
            instance_id: t.instance_id.clone(),
            model_name_or_path: t.model_name_or_path.clone(),
            model_patch: Some(t.model_patch.clone()),
        };
        lines.push_str(&serde_json::to_string(&p).expect("plain data serialises"));
        lines.push('\n');
    }
    let predictions_path = cfg.out_dir.join(PREDICTIONS_FILE);
    write_atomic(&predictions_path, lines.as_bytes())?;
    Ok(AgentlessSummary {
        predictions_path,
        instances: dataset.len(),
        skipped,
        with_patch: done.values().filter(|t| !t.model_patch.is_empty()).count(),
        errors: done.values().filter(|t| t.error.is_some()).count(),
        usage,
        seconds,
    })
}

fn trajectory_path(dir: &Path, instance_id: &str) -> PathBuf {
    dir.join(format!("{}.json", instance_id.replace('/', "__")))
}

fn read_trajectory(dir: &Path, instance_id: &str) -> Option<Trajectory> {
    let text = fs_err::read_to_string(trajectory_path(dir, instance_id)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes through a temporary file in the same directory and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    fs_err::write(&tmp, bytes)?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}

fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("plain data serialises");
    write_atomic(path, (text + "\n").as_bytes())
}

/// One instance through every stage; a failure stops it with the reason recorded.
fn run_instance(
    cfg: &AgentlessConfig,
    model: &dyn ChatModel,
    model_name: &str,
    instance: &Instance,
    progress: &(dyn Fn(AgentlessProgress) + Sync),
) -> Trajectory {
    let mut t = Trajectory {
        instance_id: instance.instance_id.clone(),
        model_name_or_path: model_name.to_owned(),
        complete: false,
        error: None,
        localization: None,
        repair: None,
        tests: None,
        rerank: None,
        model_patch: String::new(),
        usage: Usage::default(),
        seconds: StageSeconds::default(),
    };
    let start = Instant::now();
    let stage =
        |stage| progress(AgentlessProgress::Stage { instance_id: instance.instance_id.clone(), stage });
    let result = (|| -> Result<()> {
        stage(AgentlessStage::Structure);
        let clock = Instant::now();
        let clone = find_clone(&cfg.repos_dir, &instance.repo)?;
        let keep_tests = instance.repo == "pytest-dev/pytest";
        let structure = RepoStructure::read(&clone, &instance.base_commit, keep_tests)?;
        t.seconds.structure = clock.elapsed().as_secs_f64();
        stage(AgentlessStage::Localize);
        let clock = Instant::now();
        let localization = localize(cfg, model, instance, &structure, &mut t.usage)?;
        let files = localization.files.clone();
        t.localization = Some(localization);
        t.seconds.localize = clock.elapsed().as_secs_f64();
        stage(AgentlessStage::Repair);
        let clock = Instant::now();
        let repair = repair(cfg, model, instance, &structure, &files, &mut t.usage)?;
        t.seconds.repair = clock.elapsed().as_secs_f64();
        let scores = if !cfg.run_tests {
            None
        } else if !repair.samples.iter().any(|s| s.outcome.patch().is_some_and(|p| !p.trim().is_empty())) {
            t.tests = Some(TestsTrace {
                note: Some("not run: no repair sample has a patch".into()),
                ..TestsTrace::default()
            });
            None
        } else {
            stage(AgentlessStage::Regression);
            let clock = Instant::now();
            let work = work_dir(cfg, &instance.instance_id)?;
            match Testbed::prepare(&harness_config(cfg), instance, &work) {
                Err(e) => {
                    t.seconds.test_setup = clock.elapsed().as_secs_f64();
                    t.tests = Some(TestsTrace {
                        note: Some(format!("not run: {e}")),
                        setup_seconds: t.seconds.test_setup,
                        ..TestsTrace::default()
                    });
                    None
                }
                Ok(mut testbed) => {
                    t.seconds.test_setup = clock.elapsed().as_secs_f64();
                    let seed = instance_seed(cfg, &instance.instance_id);
                    let ask = Ask { cfg, model, instance, seed };
                    let checked =
                        run_checks(&ask, &mut testbed, &repair, &mut t.usage, &mut t.seconds, &|| {
                            stage(AgentlessStage::Reproduction)
                        });
                    if !cfg.harness.keep_worktrees {
                        let _ = testbed.remove();
                    }
                    let (mut trace, scores) = checked?;
                    trace.setup_seconds = t.seconds.test_setup;
                    t.tests = Some(trace);
                    Some(scores)
                }
            }
        };
        stage(AgentlessStage::Rerank);
        let (rerank, patch) = choose(&repair, scores.as_ref(), t.tests.as_ref());
        t.repair = Some(repair);
        t.rerank = Some(rerank);
        t.model_patch = patch;
        Ok(())
    })();
    t.seconds.total = start.elapsed().as_secs_f64();
    match result {
        Ok(()) => t.complete = true,
        Err(e) => {
            tracing::warn!(instance = %instance.instance_id, "agentless stopped: {e}");
            t.error = Some(e.to_string());
        }
    }
    t
}

fn instance_seed(cfg: &AgentlessConfig, instance_id: &str) -> u64 {
    // FNV-1a of the id, mixed with the run's seed: stable across runs and platforms.
    fnv1a(instance_id.as_bytes()) ^ cfg.seed
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn localize(
    cfg: &AgentlessConfig,
    model: &dyn ChatModel,
    instance: &Instance,
    structure: &RepoStructure,
    usage: &mut Usage,
) -> Result<LocalizationTrace> {
    let n = cfg.localization_samples;
    let seed = instance_seed(cfg, &instance.instance_id);
    let params = SampleParams {
        temperature: if n == 1 { 0.0 } else { cfg.temperature },
        max_new_tokens: cfg.max_new_tokens,
        seed: Some(seed),
        ..SampleParams::default()
    };
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let variant = LocalizationVariant::for_sample(i, n, seed);
        let messages = localization_messages(&instance.problem_statement, structure, &variant);
        let sample_params = SampleParams { seed: Some(seed.wrapping_add(i as u64)), ..params.clone() };
        let response = model.chat(&messages, &sample_params, 1)?;
        usage.add(&response.usage);
        let completion = response
            .completions
            .into_iter()
            .next()
            .unwrap_or(Completion { text: String::new(), finish_reason: None });
        let found = parse_file_list(&completion.text, structure);
        samples.push(LocalizationSample { variant, messages, completion, found });
    }
    let found: Vec<Vec<String>> = samples.iter().map(|s| s.found.clone()).collect();
    let files = merge_localizations(&found, cfg.top_files);
    Ok(LocalizationTrace { params, samples, files })
}

fn repair(
    cfg: &AgentlessConfig,
    model: &dyn ChatModel,
    instance: &Instance,
    structure: &RepoStructure,
    files: &[String],
    usage: &mut Usage,
) -> Result<RepairTrace> {
    let contents: Vec<(String, String)> =
        files.iter().filter_map(|p| structure.get(p).map(|f| (p.clone(), f.content.clone()))).collect();
    let prompt =
        repair_prompt(&instance.instance_id, &instance.problem_statement, &contents, cfg.max_file_chars);
    let code_context: BTreeMap<String, String> =
        contents.into_iter().filter(|(p, _)| prompt.shown.contains(p)).collect();
    let params = SampleParams {
        temperature: cfg.temperature,
        max_new_tokens: cfg.max_new_tokens,
        seed: Some(instance_seed(cfg, &instance.instance_id)),
        ..SampleParams::default()
    };
    if cfg.inject_gold_patch {
        let normalized: String = instance
            .patch
            .lines()
            .filter(|l| {
                (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---")
            })
            .map(|l| format!("{}\n", l.trim_end()))
            .collect();
        let outcome = RepairOutcome::Patch { edits: Vec::new(), patch: instance.patch.clone(), normalized };
        let completion = Completion { text: "(the gold patch, injected)".into(), finish_reason: None };
        let samples = vec![RepairSample { index: 0, completion, outcome }];
        return Ok(RepairTrace {
            prompt,
            params,
            samples,
            normalizer: "changed lines (injected patch)".into(),
        });
    }
    let response = model.chat(&prompt.messages, &params, cfg.repair_samples)?;
    usage.add(&response.usage);
    let mut samples: Vec<RepairSample> = response
        .completions
        .into_iter()
        .enumerate()
        .map(|(index, completion)| {
            let outcome = apply_completion(&completion.text, &code_context, cfg.answer_format);
            RepairSample { index, completion, outcome }
        })
        .collect();
    let normalizer = match cfg.python_ast.then(PythonAst::find).flatten() {
        Some(ast) => {
            python_recheck(&mut samples, &code_context, &ast)?;
            format!("python ast ({})", ast.interpreter().display())
        }
        None => "rust approximation".into(),
    };
    Ok(RepairTrace { prompt, params, samples, normalizer })
}

/// The harness settings the tests use: the run's repositories directory.
fn harness_config(cfg: &AgentlessConfig) -> HarnessConfig {
    HarnessConfig { repos_dir: cfg.repos_dir.clone(), ..cfg.harness.clone() }
}

/// Where an instance's checkout for the tests goes: under the harness cache, in a directory
/// named after the output directory (two runs with different outputs never share one).
fn work_dir(cfg: &AgentlessConfig, instance_id: &str) -> Result<PathBuf> {
    let h = fnv1a(std::path::absolute(&cfg.out_dir)?.as_os_str().as_encoded_bytes());
    Ok(std::path::absolute(&cfg.harness.cache_dir)?
        .join("work")
        .join(format!("agentless-{h:016x}"))
        .join(instance_id.replace('/', "__")))
}

/// The rerank over the repair samples, with the tests' scores when they ran.
fn choose(
    repair: &RepairTrace,
    scores: Option<&TestScores>,
    tests: Option<&TestsTrace>,
) -> (RerankTrace, String) {
    let candidates: Vec<RerankCandidate> = repair
        .samples
        .iter()
        .filter_map(|s| match &s.outcome {
            RepairOutcome::Patch { normalized, .. } => Some(RerankCandidate {
                sample: s.index,
                normalized: normalized.clone(),
                regression_failures: scores.and_then(|sc| sc.regression.get(&s.index).copied()),
                reproduction_passed: scores.and_then(|sc| sc.reproduction.get(&s.index).cloned()),
            }),
            RepairOutcome::Invalid { .. } => None,
        })
        .collect();
    let choice = rerank(&candidates);
    let (reason, patch) = match &choice {
        Some(c) => (
            format!(
                "sample {} by {:?}: {} of {} samples in the pool share its normalized patch (earliest wins ties)",
                c.sample,
                c.rule,
                c.votes,
                c.pool.len()
            ),
            repair.samples[c.sample].outcome.patch().unwrap_or_default().to_owned(),
        ),
        None => (
            format!(
                "no sample has a non-empty normalized patch ({} of {} samples applied)",
                candidates.len(),
                repair.samples.len()
            ),
            String::new(),
        ),
    };
    let tests = describe_tests(tests);
    (RerankTrace { tests, candidates, choice, reason }, patch)
}

/// The tests the rerank knew about, in words.
fn describe_tests(tests: Option<&TestsTrace>) -> String {
    let Some(t) = tests else { return "not run (--no-tests): majority vote only".into() };
    let mut parts = Vec::new();
    match &t.regression {
        Some(r) => parts.push(format!(
            "{} regression tests ({} passing on the original code, {} excluded by the model) on {} distinct patches",
            r.tests.len(),
            r.original.passed().len(),
            r.exclusion.as_ref().map_or(0, |e| e.excluded.len()),
            r.runs.len()
        )),
        None => parts.push("no regression tests".into()),
    }
    match &t.reproduction {
        Some(r) => parts.push(format!(
            "{} reproduction tests kept of {} samples ({} reproduce the issue on the original code)",
            r.selected.len(),
            r.samples.len(),
            r.samples
                .iter()
                .filter(|s| s
                    .original
                    .as_ref()
                    .is_some_and(|o| o.verdict == super::validate::ReproVerdict::Reproduced))
                .count()
        )),
        None => parts.push("no reproduction tests".into()),
    }
    if let Some(note) = &t.note {
        parts.push(note.clone());
    }
    parts.join("; ")
}

/// Parses every Python file the samples' edits produce with Python's `ast`: a sample whose edit
/// leaves a file that no longer parses (when the original did) becomes invalid; the others get
/// their vote key from the normalized texts (files Python cannot parse, e.g. Python 2 code, keep
/// the Rust approximation).
fn python_recheck(
    samples: &mut [RepairSample],
    code_context: &BTreeMap<String, String>,
    ast: &PythonAst,
) -> Result<()> {
    let mut edited: Vec<(usize, Vec<(String, String)>)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        if let RepairOutcome::Patch { edits, .. } = &s.outcome
            && let Ok(new) = swerl_reward::apply_edits(code_context, edits)
        {
            edited.push((i, new));
        }
    }
    let mut texts: Vec<&str> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    for (_, files) in &edited {
        for (path, new) in files.iter().filter(|(p, _)| p.ends_with(".py")) {
            for text in [code_context.get(path).map_or("", String::as_str), new.as_str()] {
                slot.entry(text).or_insert_with(|| {
                    texts.push(text);
                    texts.len() - 1
                });
            }
        }
    }
    if texts.is_empty() {
        return Ok(());
    }
    let parsed = ast.normalize(&texts)?;
    let read = |text: &str| &parsed[slot[text]];
    let mut updates = Vec::new();
    for (i, files) in &edited {
        let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
        let mut broken = None;
        for (path, new) in files {
            let old = code_context.get(path).map_or("", String::as_str);
            let python = path.ends_with(".py").then(|| (read(old), read(new)));
            match python {
                Some((Ok(o), Ok(n))) => {
                    before.insert(path.clone(), format!("{o}\n"));
                    after.insert(path.clone(), format!("{n}\n"));
                }
                Some((Ok(_), Err(why))) => {
                    broken = Some(format!("the edit leaves {path} unparsable ({why})"));
                    break;
                }
                _ => {
                    before.insert(path.clone(), normalize_source(path, old));
                    after.insert(path.clone(), normalize_source(path, new));
                }
            }
        }
        updates.push((*i, broken, change_key(&before, &after)));
    }
    for (i, broken, key) in updates {
        match broken {
            Some(reason) => samples[i].outcome = RepairOutcome::Invalid { reason },
            None => {
                if let RepairOutcome::Patch { normalized, .. } = &mut samples[i].outcome {
                    *normalized = key;
                }
            }
        }
    }
    Ok(())
}
