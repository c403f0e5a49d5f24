//! `swerl mine`: GH Archive events (+ git clones) -> `prs.jsonl`, `instances.jsonl`,
//! `summary.json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use swerl_data::{EventInputs, HourRange, MineConfig, Miner, Progress, Shard, Summary};

/// Arguments of `swerl mine`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Option<Action>,

    /// GH Archive hour files (`YYYY-MM-DD-H.json.gz`) or directories of them. Without it,
    /// `--repos` is mined in git-only mode (PRs from `refs/pull/*` and merge/squash commits).
    #[arg(long, num_args = 1.., value_name = "DIR_OR_FILES")]
    events: Vec<PathBuf>,

    /// Only hours in this inclusive range, `FROM..TO` with `YYYY-MM-DD[-H]` ends (either may be
    /// empty; FROM after TO is refused).
    #[arg(long, value_name = "FROM..TO", value_parser = parse_range)]
    range: Option<HourRange>,

    #[command(flatten)]
    common: Common,

    /// Scan only this worker's share `i/n` of the (sorted) archive files; then the scan's
    /// `threads.jsonl` and `summary.json` are written and `swerl mine merge` finishes the run.
    #[arg(long, value_name = "i/n", value_parser = parse_shard)]
    shard: Option<Shard>,

    /// Reuse the per-file checkpoints of an interrupted run in `--out`.
    #[arg(long)]
    resume: bool,

    /// Git-only mode for given PRs: a JSONL file of `{"repo", "number", "base_sha"}` (optional
    /// `head_sha`, `merge_commit_sha`, `commits`, `title`, `body`), mined from `--repos`.
    #[arg(long, value_name = "FILE", conflicts_with = "events", requires = "repos")]
    prs: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Directory of local clones (`owner/name`, `owner__name[.git]`, bare or not): enables
    /// `instances.jsonl`.
    #[arg(long, value_name = "DIR")]
    repos: Option<PathBuf>,

    /// Output directory (locked while a run uses it; never scanned as input).
    #[arg(long, value_name = "DIR", required_unless_present = "print_config")]
    out: Option<PathBuf>,

    /// JSON file of options (`MineConfig`: scan, filters, instance, relevant, git); missing
    /// fields keep their defaults, unknown keys are refused. `--print-config` shows them.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// SWE-bench instance files (JSON array or JSONL) whose repositories and gold patches are
    /// excluded (the shipped SWE-bench repository list is always excluded).
    #[arg(long, value_name = "FILE")]
    swebench: Vec<PathBuf>,

    /// Fully validate the JSON of events that are not parsed (slower).
    #[arg(long)]
    validate_all: bool,

    /// Worker threads (0: one per core; at most 1024).
    #[arg(long, short = 'j', default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=super::MAX_JOBS))]
    jobs: u64,

    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Merge the outputs of `--shard i/n` scans and build PR records and instances.
    Merge(MergeArgs),
    /// RL instances from SWE-bench rows (JSON array or JSON lines with instance_id,
    /// problem_statement and patch): the files as far as the gold patch's hunks show them, for
    /// held-out checks (`swerl eval repair --oracle-files`). No repository is needed.
    Swebench(SwebenchArgs),
}

#[derive(Debug, clap::Args)]
struct SwebenchArgs {
    /// SWE-bench rows (e.g. lite-dev.json).
    #[arg(long)]
    dataset: PathBuf,
    /// The RL instances (JSONL), written atomically.
    #[arg(long)]
    out: PathBuf,
}

/// `swerl mine swebench`.
fn swebench(a: &SwebenchArgs) -> anyhow::Result<ExitCode> {
    let text = fs_err::read_to_string(&a.dataset)?;
    let (instances, skipped) = swerl_data::swebench::rl_instances_from_swebench(&text, &a.dataset)?;
    for s in &skipped {
        eprintln!("warning: {}: skipped {s}", a.dataset.display());
    }
    let mut bytes = Vec::new();
    for inst in &instances {
        serde_json::to_writer(&mut bytes, inst)?;
        bytes.push(b'\n');
    }
    super::io::write_atomic(&a.out, &bytes)?;
    eprintln!("{} instances ({} rows skipped)", instances.len(), skipped.len());
    println!("wrote {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// Output directories of the shard scans.
    #[arg(required = true, value_name = "SHARD_DIR")]
    shards: Vec<PathBuf>,

    #[command(flatten)]
    common: Common,

    /// Build only the repositories of this share `i/n` (stable hash of the name), so that
    /// instance building is spread over workers too; concatenate their outputs.
    #[arg(long, value_name = "i/n", value_parser = parse_shard)]
    repo_shard: Option<Shard>,
}

struct Bars {
    scan: ProgressBar,
    build: ProgressBar,
    _multi: MultiProgress,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::new();
        let scan = multi.add(ProgressBar::hidden());
        let build = multi.add(ProgressBar::hidden());
        Bars { scan, build, _multi: multi }
    }
}

impl Progress for Bars {
    fn scan_started(&self, files: usize, bytes: u64) {
        self.scan.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.scan.set_length(bytes);
        self.scan.set_style(
            ProgressStyle::with_template(
                "scan  {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} files {msg}",
            )
            .expect("valid template"),
        );
        self.scan.set_message(format!("0/{files}"));
        self.scan.enable_steady_tick(Duration::from_millis(200));
    }
    fn scan_bytes(&self, bytes: u64) {
        self.scan.inc(bytes);
    }
    fn file_done(&self, _path: &Path) {
        let msg = self.scan.message();
        if let Some((done, total)) = msg.split_once('/') {
            let done: u64 = done.parse().unwrap_or(0) + 1;
            self.scan.set_message(format!("{done}/{total}"));
        }
    }
    fn build_started(&self, repos: Option<usize>) {
        self.scan.finish();
        self.build.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        let style = match repos {
            Some(n) => {
                self.build.set_length(n as u64);
                ProgressStyle::with_template("build {bar:30} {pos}/{len} repos {msg}")
            }
            None => ProgressStyle::with_template("build {spinner} {pos} repos {msg}"),
        };
        self.build.set_style(style.expect("valid template"));
        self.build.enable_steady_tick(Duration::from_millis(200));
    }
    fn repo_done(&self, _repo: &str, prs: u64, instances: u64) {
        self.build.inc(1);
        let msg = self.build.message();
        let mut it = msg.split_whitespace().filter_map(|w| w.parse::<u64>().ok());
        let (p, i) = (it.next().unwrap_or(0) + prs, it.next().unwrap_or(0) + instances);
        self.build.set_message(format!("{p} PRs {i} instances"));
    }
}

fn parse_shard(spec: &str) -> Result<Shard, String> {
    Shard::parse(spec).map_err(|e| e.to_string())
}

fn parse_range(spec: &str) -> Result<HourRange, String> {
    HourRange::parse(spec).map_err(|e| e.to_string())
}

fn load_config(common: &Common) -> anyhow::Result<MineConfig> {
    let mut config = match &common.config {
        Some(p) => MineConfig::from_json_file(p)?,
        None => MineConfig::default(),
    };
    config.scan.validate_all |= common.validate_all;
    Ok(config)
}

fn miner(common: &Common, config: MineConfig, repo_shard: Shard, bars: Arc<Bars>) -> anyhow::Result<Miner> {
    let mut b = Miner::builder().config(config).progress(bars).repo_shard(repo_shard);
    if let Some(r) = &common.repos {
        b = b.clones(r);
    }
    for s in &common.swebench {
        b = b.swebench(s);
    }
    Ok(b.build()?)
}

fn report(summary: &Summary, out: &Path) {
    let s = &summary.scan;
    println!(
        "scan: {} files ({} MiB compressed), {} events, {} malformed lines, {} truncated files, {} legacy files, {} trimmed PR events",
        s.files,
        s.compressed_bytes >> 20,
        s.events,
        s.malformed_lines,
        s.truncated_files,
        s.legacy_files,
        s.trimmed_pr_events
    );
    for p in s.problems.iter().take(10) {
        eprintln!("warning: {}:{}: {}", p.path.display(), p.line, p.message);
    }
    if s.problem_count > 10 {
        eprintln!("warning: {} more problems (see summary.json)", s.problem_count - 10);
    }
    let p = &summary.prs;
    println!(
        "prs: {} threads, {} PRs, {} merged, {} with linked issues ({} merged), {} completed from git",
        p.threads, p.prs, p.merged, p.with_linked_issue, p.merged_with_linked_issue, p.completed_from_git
    );
    if let Some(f) = &summary.instances {
        println!(
            "instances: {} merged PRs -> {} after filters -> {} selected (see summary.json for the funnel)",
            f.merged_prs, f.after_filters, f.selected
        );
        let no_issue = f.dropped_no_linked_issue + f.dropped_issue_text_missing;
        if f.selected == 0 && no_issue > 0 && s.files == 0 {
            eprintln!(
                "hint: {no_issue} PRs were dropped for want of issue text, which only GH Archive \
                 events give; without archives, set filters.require_linked_issue and \
                 filters.require_bug_fix to false, and instance.pr_text_as_problem to true (the \
                 PR's title and body as the problem statement) in --config"
            );
        }
    }
    println!("wrote {}", out.display());
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (common, repo_shard) = match &args.action {
        Some(Action::Merge(m)) => (&m.common, m.repo_shard),
        Some(Action::Swebench(a)) => return swebench(a),
        None => (&args.common, None),
    };
    let config = load_config(common)?;
    if common.print_config {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(out) = common.out.as_deref() else { super::usage!("--out is required") };
    if args.action.is_none() && args.prs.is_none() && args.events.is_empty() && common.repos.is_none() {
        super::usage!("give --events (archives) or --repos (git-only mode), or both");
    }
    if common.jobs > 0 {
        rayon::ThreadPoolBuilder::new().num_threads(common.jobs as usize).build_global()?;
    }
    let bars = Arc::new(Bars::new());
    let miner = miner(common, config, repo_shard.unwrap_or_default(), bars.clone())?;
    let summary = match &args.action {
        Some(Action::Merge(m)) => miner.merge(&m.shards, out)?,
        Some(Action::Swebench(_)) => unreachable!("handled above"),
        None => match &args.prs {
            Some(prs) => miner.run_pr_list(&swerl_data::read_pr_list(prs)?, out)?,
            None if args.events.is_empty() => miner.run_git_only(out)?,
            None => {
                let inputs = EventInputs {
                    paths: args.events.clone(),
                    range: args.range,
                    shard: args.shard.unwrap_or_default(),
                    resume: args.resume,
                };
                miner.run(&inputs, out)?
            }
        },
    };
    bars.build.finish_and_clear();
    report(&summary, out);
    Ok(ExitCode::SUCCESS)
}
