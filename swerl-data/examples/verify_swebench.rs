//! Checks the miner against real SWE-bench instances, given local clones of their repositories.
//!
//! For each instance whose repository is in the clones directory, the PR is located from the
//! clone alone (git-only: `refs/pull/N/head` and GitHub's merge or squash commit on the default
//! branch), mined, and its base commit, code patch and test patch are compared with the
//! instance's. The problem statement is checked by feeding the issue text back as archive
//! events and comparing what the miner assembles.
//!
//! ```sh
//! cargo run --release -p swerl-data --example verify_swebench -- CLONES_DIR SWEBENCH.json [...]
//! ```
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;

use anyhow::Context;
use swerl_data::git::pullindex::PullIndex;
use swerl_data::{CloneIndex, InstanceConfig, Issue, PrSpec, PullRequest, Thread, mine_pr};
use swerl_data::{assemble, complete_from_git, problem_statement};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 2, "usage: verify_swebench CLONES_DIR SWEBENCH.json [...]");
    let clones = CloneIndex::scan(args[0].as_ref())?;
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for f in &args[1..] {
        let text = std::fs::read_to_string(f).with_context(|| f.clone())?;
        rows.extend(serde_json::from_str::<Vec<serde_json::Value>>(&text).with_context(|| f.clone())?);
    }
    let mut indexes: BTreeMap<String, (git2::Repository, PullIndex)> = BTreeMap::new();
    let (mut checked, mut base_ok, mut patch_ok, mut test_ok, mut ps_ok) = (0, 0, 0, 0, 0);
    for row in &rows {
        let get = |k: &str| row[k].as_str().unwrap_or("").to_owned();
        let (repo, id) = (get("repo"), get("instance_id"));
        let Some(path) = clones.get(&repo) else {
            continue;
        };
        let number: u64 = id.rsplit('-').next().and_then(|n| n.parse().ok()).context("instance number")?;
        if !indexes.contains_key(&repo) {
            let g = git2::Repository::open(path)?;
            let idx = PullIndex::build(&g, &repo, 1_000_000)?;
            indexes.insert(repo.clone(), (g, idx));
        }
        let (git, index) = &indexes[&repo];
        let mut pr = PullRequest { trimmed: true, ..PullRequest::default() };
        complete_from_git(git, index, number, &mut pr);
        let spec = PrSpec {
            number,
            base_sha: pr.base_sha.clone(),
            head_sha: pr.head_sha.clone(),
            merge_commit_sha: pr.merge_commit_sha.clone(),
            commits: None,
        };
        checked += 1;
        let mined = match mine_pr(git, &repo, &spec, 1000) {
            Ok(m) => m,
            Err(why) => {
                println!("{id}: not mined: {why:?}");
                continue;
            }
        };
        let a = assemble(&mined, &InstanceConfig::default());
        let base = mined.base_commit == get("base_commit");
        let patch = a.patch == get("patch");
        let test = a.test_patch == get("test_patch");
        // Problem statement: the issue's title and body as archive events would carry them.
        let ps = get("problem_statement");
        let (title, body) = ps.split_once('\n').unwrap_or((&ps, ""));
        let mut issue = Thread::new(&repo, 0);
        issue.issue = Some(Issue {
            title: title.to_owned(),
            body: body.strip_suffix('\n').unwrap_or(body).to_owned(),
            ..Issue::default()
        });
        let psm = problem_statement([&issue]) == ps;
        base_ok += usize::from(base);
        patch_ok += usize::from(patch);
        test_ok += usize::from(test);
        ps_ok += usize::from(psm);
        println!(
            "{id}: {:?} via {:?}; base_commit {} patch {} test_patch {} problem_statement {}",
            &mined.base_commit[..10],
            mined.merge_kind,
            ok(base),
            ok(patch),
            ok(test),
            ok(psm)
        );
        if !patch && std::env::var_os("VERBOSE").is_some() {
            println!("--- ours\n{}--- swe-bench\n{}", a.patch, get("patch"));
        }
        if !test && std::env::var_os("VERBOSE").is_some() {
            println!("--- ours\n{}--- swe-bench\n{}", a.test_patch, get("test_patch"));
        }
    }
    println!(
        "{checked} instances with a clone: base_commit {base_ok}/{checked}, patch {patch_ok}/{checked}, test_patch {test_ok}/{checked}, problem_statement {ps_ok}/{checked}"
    );
    Ok(())
}

fn ok(b: bool) -> &'static str {
    if b { "ok" } else { "DIFFERS" }
}
