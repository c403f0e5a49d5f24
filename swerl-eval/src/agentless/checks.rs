//! Stages 4 and 5 against a prepared [`Testbed`]: regression and reproduction tests, run on the
//! original code and on each distinct candidate patch, with everything recorded for the
//! trajectory.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use swerl_reward::ChatMessage;

use super::pipeline::{AgentlessConfig, RepairTrace, StageSeconds};
use super::validate::{
    ReproVerdict, SelectedReproduction, classify_reproduction, extract_python_script, parse_excluded_tests,
    regression_messages, reproduction_messages, select_reproductions,
};
use crate::chat::{ChatModel, Completion, SampleParams, Usage};
use crate::dataset::Instance;
use crate::error::Result;
use crate::harness::{ScriptRun, TestRun, Testbed};

/// Characters of a script's output kept in the trajectory (the end of it).
const OUTPUT_TAIL: usize = 2000;

/// The greedy call that names regression tests a fix may change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExclusionCall {
    /// The prompt.
    pub messages: Vec<ChatMessage>,
    /// Tests offered (the first of the passing ones, within the prompt budget).
    pub offered: usize,
    /// The answer.
    pub completion: Completion,
    /// The offered tests it names (left out of the regression tests).
    pub excluded: Vec<String>,
}

/// One distinct patch's regression run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchRegression {
    /// The repair samples with this patch.
    pub samples: Vec<usize>,
    /// False when it did not apply (every regression test counts as failed).
    pub applied: bool,
    /// The run timed out.
    pub timed_out: bool,
    /// The log was invalid (no markers or an error marker).
    pub invalid_log: bool,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Regression tests that did not pass.
    pub failures: Vec<String>,
}

/// Regression's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionTrace {
    /// The test directives run (the test patch's files that exist at `base_commit`).
    pub directives: Vec<String>,
    /// The run on the original code.
    pub original: TestRun,
    /// The exclusion call (none when no test passed on the original code).
    pub exclusion: Option<ExclusionCall>,
    /// The regression tests: passing on the original code, not excluded.
    pub tests: Vec<String>,
    /// Per distinct patch.
    pub runs: Vec<PatchRegression>,
}

/// A script run, as the trajectory keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptRecord {
    /// What it reported.
    pub verdict: ReproVerdict,
    /// False when the patch did not apply (the script did not run).
    pub applied: bool,
    /// Exit code.
    pub code: Option<i32>,
    /// The run timed out.
    pub timed_out: bool,
    /// Wall time, seconds.
    pub seconds: f64,
    /// The end of its output.
    pub output_tail: String,
}

impl ScriptRecord {
    fn from_run(run: &ScriptRun) -> Self {
        let cut = run.output.len().saturating_sub(OUTPUT_TAIL);
        let cut = (cut..=run.output.len()).find(|&i| run.output.is_char_boundary(i)).unwrap_or(0);
        Self {
            verdict: if run.applied {
                classify_reproduction(&run.output, run.timed_out)
            } else {
                ReproVerdict::Other
            },
            applied: run.applied,
            code: run.code,
            timed_out: run.timed_out,
            seconds: run.seconds,
            output_tail: run.output[cut..].to_owned(),
        }
    }
}

/// One sampled reproduction script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReproductionSample {
    /// Its index (0 is the greedy one).
    pub index: usize,
    /// The model's answer.
    pub completion: Completion,
    /// The script, when the answer has one.
    pub script: Option<String>,
    /// Its run on the original code.
    pub original: Option<ScriptRecord>,
}

/// One distinct patch's reproduction runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchReproduction {
    /// The repair samples with this patch.
    pub samples: Vec<usize>,
    /// Per selected test.
    pub runs: BTreeMap<String, ScriptRecord>,
    /// The selected tests that printed `Issue resolved`.
    pub passed: Vec<String>,
}

/// Reproduction's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReproductionTrace {
    /// The prompt.
    pub messages: Vec<ChatMessage>,
    /// The greedy sample's settings, then the others'.
    pub params: Vec<SampleParams>,
    /// Each sample.
    pub samples: Vec<ReproductionSample>,
    /// The kept tests.
    pub selected: Vec<SelectedReproduction>,
    /// Per distinct patch (none when no test was kept).
    pub runs: Vec<PatchReproduction>,
}

/// What the tests did for one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestsTrace {
    /// Why tests were not (or only partly) used, when they were not.
    pub note: Option<String>,
    /// Seconds to build or reuse the environment and prepare the checkout.
    pub setup_seconds: f64,
    /// Regression tests.
    pub regression: Option<RegressionTrace>,
    /// Reproduction tests.
    pub reproduction: Option<ReproductionTrace>,
}

/// Scores per repair sample for the rerank.
#[derive(Debug, Default)]
pub(super) struct TestScores {
    pub(super) regression: BTreeMap<usize, usize>,
    pub(super) reproduction: BTreeMap<usize, BTreeSet<String>>,
}

/// Distinct patches of the samples that have one, in order of first appearance.
fn distinct_patches(repair: &RepairTrace) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for s in &repair.samples {
        let Some(patch) = s.outcome.patch().filter(|p| !p.trim().is_empty()) else { continue };
        match out.iter_mut().find(|(p, _)| p == patch) {
            Some((_, samples)) => samples.push(s.index),
            None => out.push((patch.to_owned(), vec![s.index])),
        }
    }
    out
}

/// The completions of one request, its usage added to `usage`.
fn ask_model(
    model: &dyn ChatModel,
    messages: &[ChatMessage],
    params: &SampleParams,
    n: usize,
    usage: &mut Usage,
) -> Result<Vec<Completion>> {
    let response = model.chat(messages, params, n)?;
    usage.add(&response.usage);
    Ok(response.completions)
}

/// Who the tests ask and about what.
pub(super) struct Ask<'a> {
    pub(super) cfg: &'a AgentlessConfig,
    pub(super) model: &'a dyn ChatModel,
    pub(super) instance: &'a Instance,
    /// The instance's seed (reproduction samples).
    pub(super) seed: u64,
}

/// Runs regression then reproduction tests for the repair's candidates on `testbed`.
pub(super) fn run_checks(
    ask: &Ask<'_>,
    testbed: &mut Testbed,
    repair: &RepairTrace,
    usage: &mut Usage,
    seconds: &mut StageSeconds,
    on_reproduction: &dyn Fn(),
) -> Result<(TestsTrace, TestScores)> {
    let cfg = ask.cfg;
    let patches = distinct_patches(repair);
    let mut trace = TestsTrace::default();
    let mut scores = TestScores::default();
    let t = Instant::now();
    if cfg.regression_tests {
        let directives = testbed.existing_test_directives();
        if directives.is_empty() {
            trace.note =
                Some("no regression tests: the test patch changes no file that exists at base_commit".into());
        } else {
            let r = regression(ask, testbed, &directives, &patches, usage)?;
            for run in &r.runs {
                for &s in &run.samples {
                    scores.regression.insert(s, run.failures.len());
                }
            }
            trace.regression = Some(r);
        }
    }
    seconds.regression = t.elapsed().as_secs_f64();
    let t = Instant::now();
    if cfg.reproduction_samples > 0 {
        on_reproduction();
        let r = reproduction(ask, testbed, &patches, usage)?;
        for run in &r.runs {
            for &s in &run.samples {
                scores.reproduction.insert(s, run.passed.iter().cloned().collect());
            }
        }
        trace.reproduction = Some(r);
    }
    seconds.reproduction = t.elapsed().as_secs_f64();
    Ok((trace, scores))
}

fn regression(
    ask: &Ask<'_>,
    testbed: &mut Testbed,
    directives: &[String],
    patches: &[(String, Vec<usize>)],
    usage: &mut Usage,
) -> Result<RegressionTrace> {
    let Ask { cfg, model, instance, .. } = *ask;
    let original = testbed.run_tests("", directives)?;
    let passing: Vec<String> = original.passed().into_iter().collect();
    let exclusion = if passing.is_empty() {
        None
    } else {
        let (messages, offered) =
            regression_messages(&instance.problem_statement, &passing, cfg.max_file_chars);
        let params =
            SampleParams { temperature: 0.0, max_new_tokens: cfg.max_new_tokens, ..SampleParams::default() };
        let completion = ask_model(model, &messages, &params, 1, usage)?
            .into_iter()
            .next()
            .unwrap_or(Completion { text: String::new(), finish_reason: None });
        let excluded = parse_excluded_tests(&completion.text, &passing[..offered]);
        Some(ExclusionCall { messages, offered, completion, excluded })
    };
    let excluded: BTreeSet<&str> =
        exclusion.iter().flat_map(|e| e.excluded.iter().map(String::as_str)).collect();
    let tests: Vec<String> = passing.iter().filter(|t| !excluded.contains(t.as_str())).cloned().collect();
    let mut runs = Vec::with_capacity(patches.len());
    // Without regression tests (none passed on the original code, or all were excluded) the
    // patches' runs could not fail any: they are not run.
    for (patch, samples) in patches.iter().filter(|_| !tests.is_empty()) {
        let run = testbed.run_tests(patch, directives)?;
        let passed = run.passed();
        let failures = tests.iter().filter(|t| !passed.contains(*t)).cloned().collect();
        runs.push(PatchRegression {
            samples: samples.clone(),
            applied: run.applied,
            timed_out: run.timed_out,
            invalid_log: run.invalid_log,
            seconds: run.seconds,
            failures,
        });
    }
    Ok(RegressionTrace { directives: directives.to_vec(), original, exclusion, tests, runs })
}

fn reproduction(
    ask: &Ask<'_>,
    testbed: &mut Testbed,
    patches: &[(String, Vec<usize>)],
    usage: &mut Usage,
) -> Result<ReproductionTrace> {
    let Ask { cfg, model, instance, seed } = *ask;
    let messages = reproduction_messages(&instance.problem_statement);
    let greedy = SampleParams {
        temperature: 0.0,
        max_new_tokens: cfg.max_new_tokens,
        seed: Some(seed),
        ..SampleParams::default()
    };
    let sampled = SampleParams {
        temperature: cfg.reproduction_temperature,
        seed: Some(seed.wrapping_add(1)),
        ..greedy.clone()
    };
    let mut completions = ask_model(model, &messages, &greedy, 1, usage)?;
    completions.truncate(1);
    let mut params = vec![greedy];
    if cfg.reproduction_samples > 1 {
        completions.extend(ask_model(model, &messages, &sampled, cfg.reproduction_samples - 1, usage)?);
        params.push(sampled);
    }
    let timeout = Duration::from_secs(cfg.script_timeout_secs);
    let mut seen: BTreeMap<String, ScriptRecord> = BTreeMap::new();
    let mut samples = Vec::with_capacity(completions.len());
    for (index, completion) in completions.into_iter().enumerate() {
        let script = extract_python_script(&completion.text);
        let original = match &script {
            Some(code) => Some(match seen.get(code) {
                Some(r) => r.clone(),
                None => {
                    let r = ScriptRecord::from_run(&testbed.run_script("", code, timeout)?);
                    seen.insert(code.clone(), r.clone());
                    r
                }
            }),
            None => None,
        };
        samples.push(ReproductionSample { index, completion, script, original });
    }
    let votes: Vec<(usize, Option<String>, bool)> = samples
        .iter()
        .map(|s| {
            let reproduces = s.original.as_ref().is_some_and(|r| r.verdict == ReproVerdict::Reproduced);
            (s.index, s.script.clone(), reproduces)
        })
        .collect();
    let selected = select_reproductions(&votes, cfg.reproduction_tests);
    let mut runs = Vec::new();
    if !selected.is_empty() {
        for (patch, patch_samples) in patches {
            let mut by_test = BTreeMap::new();
            for test in &selected {
                let code = samples[test.sample].script.as_deref().unwrap_or_default();
                by_test.insert(
                    test.id.clone(),
                    ScriptRecord::from_run(&testbed.run_script(patch, code, timeout)?),
                );
            }
            let passed = by_test
                .iter()
                .filter(|(_, r)| r.verdict == ReproVerdict::Resolved)
                .map(|(id, _)| id.clone())
                .collect();
            runs.push(PatchReproduction { samples: patch_samples.clone(), runs: by_test, passed });
        }
    }
    Ok(ReproductionTrace { messages, params, samples, selected, runs })
}
