//! Damaged archives, trimmed events, merge styles, sharding, resuming and git-only mining.

use std::path::Path;

use swerl_data::{EventInputs, Instance, MergeKind, MineConfig, Miner, PrRecord, Shard};

use crate::fixtures::{TestRepo, event, issue_event, pr_event, write_gz};

fn read_jsonl<T: serde::de::DeserializeOwned>(p: &Path) -> anyhow::Result<Vec<T>> {
    std::fs::read_to_string(p)?.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

#[test]
fn damaged_archives_are_reported_never_fatal() -> anyhow::Result<()> {
    let d = tempfile::tempdir()?;
    let good = issue_event(1, "o/r", "2021-01-01T00:00:00Z", 1, "Crash", "boom", &[]);
    let push =
        event(2, "PushEvent", "o/r", "2021-01-01T00:00:01Z", serde_json::json!({"ref": "refs/heads/main"}));
    let legacy = r#"{"created_at":"2013-01-01T00:00:00-08:00","payload":{},"type":"PushEvent","actor":"me","repository":{"name":"r"}}"#;
    // Multi-member file with a malformed line 3 and a legacy-schema line 5.
    let lines = vec![good.clone(), push.clone(), "{not json".to_string(), push.clone(), legacy.to_string()];
    write_gz(&d.path().join("2021-01-01-0.json.gz"), &lines, 2)?;
    // Truncated file: the second member is cut in half.
    let mut bytes = Vec::new();
    write_gz(&d.path().join("t.json.gz"), &[good.clone(), push.clone()], 1)?;
    bytes.extend(std::fs::read(d.path().join("t.json.gz"))?);
    std::fs::remove_file(d.path().join("t.json.gz"))?;
    bytes.truncate(bytes.len() - 20);
    std::fs::write(d.path().join("2021-01-01-1.json.gz"), &bytes)?;
    // Not gzip at all, and a 2013 file (skipped by name).
    std::fs::write(d.path().join("2021-01-01-2.json.gz"), b"plain text")?;
    write_gz(&d.path().join("2013-01-01-0.json.gz"), &[legacy.to_string()], 1)?;
    // An already decompressed hour is read as plain lines.
    std::fs::write(d.path().join("2021-01-01-3.json"), format!("{push}\n"))?;

    let out = d.path().join("out");
    let s = Miner::builder()
        .build()?
        .run(&EventInputs { paths: vec![d.path().to_path_buf()], ..Default::default() }, &out)?;
    let scan = &s.scan;
    assert_eq!((scan.files, scan.legacy_files), (4, 1));
    assert_eq!(scan.truncated_files, 2, "{scan:?}");
    assert_eq!(scan.malformed_lines, 1);
    assert_eq!(scan.legacy_events, 1);
    assert_eq!(scan.events, 5, "{scan:?}"); // 3 in the first file, 1 before the cut, 1 plain
    let p = &scan.problems;
    assert!(p.iter().any(|p| p.path.ends_with("2021-01-01-0.json.gz") && p.line == 3));
    assert!(
        p.iter()
            .any(|p| p.path.ends_with("2021-01-01-1.json.gz") && p.line == 2 && p.message.contains("gzip"))
    );
    assert!(p.iter().any(|p| p.path.ends_with("2021-01-01-2.json.gz") && p.line == 1));
    // Still produced outputs.
    assert!(out.join("prs.jsonl").is_file() && out.join("summary.json").is_file());
    Ok(())
}

/// A repository with a merge-commit PR (#7, with rename, delete, binary and test changes), a
/// rebase-merged PR (#9, head not in the clone) and a squash-merged PR (#11) known only from a
/// trimmed (October 2025+) event.
struct Scenario {
    _tmp: tempfile::TempDir,
    clones: std::path::PathBuf,
    archive: std::path::PathBuf,
    base0: String,
    m7: String,
    r2: String,
    s1: String,
}

fn scenario() -> anyhow::Result<Scenario> {
    let tmp = tempfile::tempdir()?;
    let clones = tmp.path().join("clones");
    let archive = tmp.path().join("archive");
    std::fs::create_dir_all(&archive)?;
    let r = TestRepo::init(&clones.join("acme").join("widget"))?;
    let t = 1_700_000_000;
    let parser_v0 = "from src.util import helper\n\n\ndef parse(text):\n    return helper(text)\n";
    let parser_v1 = "from src.util import helper\n\n\ndef parse(text):\n    if text is None:\n        return None\n    return helper(text)\n";
    let util_v0 = "def helper(x):\n    return x.strip()\n";
    let old_name =
        "def legacy():\n    return 1\n\n\ndef other():\n    return 2\n\n\ndef third():\n    return 3\n";
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0binary";
    let base0 = r.commit(
        Some("refs/heads/main"),
        &[],
        &[
            ("src/parser.py", Some(parser_v0.as_bytes())),
            ("src/util.py", Some(util_v0.as_bytes())),
            ("src/old_name.py", Some(old_name.as_bytes())),
            ("src/dead.py", Some(b"x = 1\n")),
            ("logo.png", Some(png)),
            ("tests/test_parser.py", Some(b"def test_parse():\n    assert True\n")),
        ],
        "initial",
        t,
    )?;
    r.set_head("refs/heads/main")?;
    let c1 = r.commit(
        None,
        &[base0],
        &[("src/parser.py", Some(parser_v1.as_bytes()))],
        "Handle None\n\nFixes #6",
        t + 10,
    )?;
    let c2 = r.commit(
        Some("refs/pull/7/head"),
        &[c1],
        &[
            ("src/old_name.py", None),
            ("src/new_name.py", Some(old_name.replace("return 3", "return 33").as_bytes())),
            ("src/dead.py", None),
            ("logo.png", Some(b"\x89PNG\r\n\x1a\n\0\0\0other")),
            ("tests/test_parser.py", Some(b"def test_parse():\n    assert parse(None) is None\n")),
        ],
        "Rename, clean up, test",
        t + 20,
    )?;
    let m1 =
        r.commit(Some("refs/heads/main"), &[base0], &[("README.md", Some(b"hello\n"))], "docs", t + 15)?;
    let mut tree_files: Vec<(&str, Option<&[u8]>)> = vec![("README.md", Some(b"hello\n"))];
    let renamed = old_name.replace("return 3", "return 33");
    tree_files.extend([
        ("src/parser.py", Some(parser_v1.as_bytes())),
        ("src/old_name.py", None),
        ("src/new_name.py", Some(renamed.as_bytes())),
        ("src/dead.py", None),
        ("logo.png", Some(b"\x89PNG\r\n\x1a\n\0\0\0other".as_slice())),
        ("tests/test_parser.py", Some(b"def test_parse():\n    assert parse(None) is None\n".as_slice())),
    ]);
    let m7 = r.commit(
        Some("refs/heads/main"),
        &[m1, c2],
        &tree_files,
        "Merge pull request #7 from dev/fix\n\nHandle None in parse",
        t + 30,
    )?;
    let r1 = r.commit(
        Some("refs/heads/main"),
        &[m7],
        &[("src/util.py", Some(b"def helper(x):\n    return x.strip().lower()\n"))],
        "Lower-case",
        t + 40,
    )?;
    let r2 = r.commit(
        Some("refs/heads/main"),
        &[r1],
        &[("src/util.py", Some(b"def helper(x):\n    return (x or '').strip().lower()\n"))],
        "Accept None",
        t + 41,
    )?;
    let s1 = r.commit(
        Some("refs/heads/main"),
        &[r2],
        &[("src/parser.py", Some(parser_v1.replace("return None", "return ''").as_bytes()))],
        "Return empty string (#11)\n\nFixes #10",
        t + 50,
    )?;
    // PR #13: merged by a plain `git merge` (no GitHub message), only visible in git-only mode.
    let h13 = r.commit(
        Some("refs/pull/13/head"),
        &[s1],
        &[("src/extra.py", Some(b"def extra():\n    return 13\n"))],
        "Add extra",
        t + 60,
    )?;
    let x1 =
        r.commit(Some("refs/heads/main"), &[s1], &[("README.md", Some(b"hello again\n"))], "docs", t + 61)?;
    let mut merged13: Vec<(&str, Option<&[u8]>)> =
        vec![("src/extra.py", Some(b"def extra():\n    return 13\n"))];
    merged13.push(("README.md", Some(b"hello again\n")));
    r.commit(Some("refs/heads/main"), &[x1, h13], &merged13, "Merge branch 'feature'", t + 62)?;
    let at = |s: i64| swerl_data::git::pullindex::rfc3339(s);
    let repo = "acme/widget";
    let (b0, m1s, c2s, m7s, r2s) =
        (base0.to_string(), m1.to_string(), c2.to_string(), m7.to_string(), r2.to_string());
    let missing = "1111111111111111111111111111111111111111";
    let trimmed = event(
        9005,
        "PullRequestEvent",
        repo,
        &at(t + 50),
        serde_json::json!({"action": "closed", "number": 11, "pull_request": {
            "url": "u", "id": 11, "number": 11,
            "head": {"ref": "f", "sha": missing, "repo": {"name": "fork/widget"}},
            "base": {"ref": "main", "sha": r2s, "repo": {"name": repo}}}}),
    );
    let events = vec![
        issue_event(9001, repo, &at(t - 100), 6, "parse(None) crashes", "TypeError: NoneType", &[]),
        issue_event(9002, repo, &at(t - 90), 8, "helper fails on upper case", "wrong result", &[]),
        issue_event(
            9003,
            repo,
            &at(t - 80),
            10,
            "Return value for None",
            "returns None, breaks callers",
            &["bug"],
        ),
        pr_event(
            9004,
            repo,
            &at(t + 30),
            "closed",
            7,
            "Handle None in parse",
            "See discussion.",
            &m1s,
            &c2s,
            Some(&m7s),
        ),
        trimmed,
        // PR #9 was rebase-merged: its head is not in the clone and the event's `commits` (2)
        // gives the depth.
        pr_event(
            9006,
            repo,
            &at(t + 41),
            "closed",
            9,
            "Lower-case helper",
            "Closes #8",
            &m7s,
            missing,
            Some(&r2s),
        ),
    ];
    let _ = b0;
    write_gz(&archive.join("2025-11-01-0.json.gz"), &events, 2)?;
    Ok(Scenario {
        _tmp: tmp,
        clones,
        archive,
        base0: base0.to_string(),
        m7: m7.to_string(),
        r2: r2.to_string(),
        s1: s1.to_string(),
    })
}

#[test]
fn merge_rebase_squash_and_trimmed_prs_become_instances() -> anyhow::Result<()> {
    let s = scenario()?;
    let out = s.clones.parent().expect("tmp").join("out");
    let summary = Miner::builder()
        .clones(&s.clones)
        .build()?
        .run(&EventInputs { paths: vec![s.archive.clone()], ..Default::default() }, &out)?;
    assert_eq!(summary.scan.trimmed_pr_events, 1);
    assert_eq!(summary.prs.completed_from_git, 1, "{:?}", summary.prs);
    let prs: Vec<PrRecord> = read_jsonl(&out.join("prs.jsonl"))?;
    let p11 = prs.iter().find(|p| p.number == 11).expect("pr 11");
    assert!(p11.merged && p11.from_git && !p11.trimmed);
    assert_eq!(p11.title, "Return empty string");
    assert_eq!(p11.body, "Fixes #10");
    let insts: Vec<Instance> = read_jsonl(&out.join("instances.jsonl"))?;
    let ids: Vec<&str> = insts.iter().map(|i| i.rl.instance_id.as_str()).collect();
    // Sorted by repository, then PR number.
    assert_eq!(ids, ["acme__widget-7", "acme__widget-9", "acme__widget-11"], "{:?}", summary.instances);

    let i7 = &insts[0];
    assert_eq!(i7.merge_kind, MergeKind::Head);
    assert_eq!(i7.base_commit, s.base0);
    assert_eq!(i7.linked_issues, vec![6]); // from a commit message
    assert_eq!(i7.rl.problem_statement, "parse(None) crashes\nTypeError: NoneType\n");
    assert!(i7.patch.contains("rename from src/old_name.py\nrename to src/new_name.py\n"), "{}", i7.patch);
    assert!(i7.patch.contains("diff --git a/src/dead.py b/src/dead.py\ndeleted file mode 100644\n"));
    assert!(i7.patch.contains("Binary files a/logo.png and b/logo.png differ"), "{}", i7.patch);
    assert!(i7.test_patch.starts_with("diff --git a/tests/test_parser.py b/tests/test_parser.py\n"));
    assert!(!i7.patch.contains("\nindex "));
    let ctx: Vec<&str> = i7.rl.code_context.keys().map(String::as_str).collect();
    assert_eq!(ctx, ["src/dead.py", "src/old_name.py", "src/parser.py", "src/util.py"]);
    assert_eq!(i7.relevant_files, ["src/util.py"]); // imported by the changed parser
    assert_eq!(i7.rl.oracle_new_content["src/dead.py"], "");
    assert_eq!(i7.rl.oracle_new_content["src/old_name.py"], "");
    assert!(i7.rl.oracle_new_content["src/new_name.py"].contains("return 33"));
    assert!(
        !i7.rl.oracle_new_content.contains_key("logo.png") && !i7.rl.code_context.contains_key("logo.png")
    );
    assert_eq!(i7.commits.len(), 2);

    let i9 = &insts[1];
    assert_eq!(i9.merge_kind, MergeKind::Rebase);
    assert_eq!(i9.base_commit, s.m7);
    assert!(i9.patch.contains("+    return (x or '').strip().lower()"));
    assert_eq!(i9.commits.len(), 2);

    let i11 = &insts[2];
    assert_eq!(i11.merge_kind, MergeKind::Squash);
    assert_eq!(i11.base_commit, s.r2);
    assert_eq!(i11.title, "Return empty string");
    assert_eq!(i11.linked_issues, vec![10]);
    assert_eq!(i11.created_at, "2023-11-14T22:14:10Z"); // trimmed: the commit's time
    Ok(())
}

#[test]
fn shards_merge_to_the_unsharded_result_and_runs_resume() -> anyhow::Result<()> {
    let s = scenario()?;
    // Spread the events over several hour files so file sharding matters.
    let extra = s.archive.join("2025-11-01-1.json.gz");
    write_gz(
        &extra,
        &[issue_event(
            9100,
            "acme/widget",
            "2025-11-01T01:00:00Z",
            6,
            "parse(None) crashes",
            "TypeError: NoneType",
            &["bug"],
        )],
        1,
    )?;
    let more = s.archive.join("2025-11-01-2.json.gz");
    write_gz(&more, &[issue_event(9101, "other/repo", "2025-11-01T02:00:00Z", 3, "x", "y", &[])], 1)?;
    let root = s.clones.parent().expect("tmp").to_path_buf();
    let miner = Miner::builder().clones(&s.clones).build()?;
    let whole = root.join("whole");
    miner.run(&EventInputs { paths: vec![s.archive.clone()], ..Default::default() }, &whole)?;

    // One worker thread gives the same bytes as all of them.
    let single = root.join("single");
    rayon::ThreadPoolBuilder::new().num_threads(1).build()?.install(|| {
        miner.run(&EventInputs { paths: vec![s.archive.clone()], ..Default::default() }, &single)
    })?;
    for f in ["prs.jsonl", "instances.jsonl", "threads.jsonl", "summary.json"] {
        assert_eq!(std::fs::read(whole.join(f))?, std::fs::read(single.join(f))?, "{f}");
    }

    let mut shard_dirs = Vec::new();
    for i in 0..2 {
        let d = root.join(format!("shard{i}"));
        let inputs = EventInputs {
            paths: vec![s.archive.clone()],
            shard: Shard { index: i, count: 2 },
            ..Default::default()
        };
        let sum = miner.run(&inputs, &d)?;
        assert_eq!(sum.shard.as_deref(), Some(format!("{i}/2").as_str()));
        assert!(!d.join("prs.jsonl").exists());
        shard_dirs.push(d);
    }
    let merged = root.join("merged");
    let summary = miner.merge(&shard_dirs, &merged)?;
    for f in ["prs.jsonl", "instances.jsonl", "threads.jsonl"] {
        assert_eq!(std::fs::read(whole.join(f))?, std::fs::read(merged.join(f))?, "{f}");
    }
    assert_eq!(summary.scan.files, 3);
    // Repository shards of the build step partition the instances.
    let mut parts = Vec::new();
    for i in 0..2 {
        let d = root.join(format!("repos{i}"));
        Miner::builder()
            .clones(&s.clones)
            .repo_shard(Shard { index: i, count: 2 })
            .build()?
            .merge(std::slice::from_ref(&merged), &d)?;
        parts.push(std::fs::read_to_string(d.join("instances.jsonl"))?);
    }
    let mut a: Vec<String> = parts.concat().lines().map(str::to_owned).collect();
    let mut b: Vec<String> =
        std::fs::read_to_string(whole.join("instances.jsonl"))?.lines().map(str::to_owned).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // Resume: the checkpoints of unchanged files are reused; a file replaced since is scanned
    // again (its old checkpoint never stands in for it).
    let resumed = miner
        .run(&EventInputs { paths: vec![s.archive.clone()], resume: true, ..Default::default() }, &whole)?;
    assert_eq!(
        resumed.scan,
        miner
            .run(&EventInputs { paths: vec![s.archive.clone()], ..Default::default() }, &root.join("again"))?
            .scan
    );
    std::fs::write(&more, b"garbage")?;
    let resumed = miner
        .run(&EventInputs { paths: vec![s.archive.clone()], resume: true, ..Default::default() }, &whole)?;
    assert_eq!(resumed.scan.truncated_files, 1);
    let fresh = miner
        .run(&EventInputs { paths: vec![s.archive.clone()], ..Default::default() }, &root.join("fresh"))?;
    assert_eq!(fresh.scan.truncated_files, 1);
    Ok(())
}

#[test]
fn git_only_mode_mines_refs_pull_and_merge_commits() -> anyhow::Result<()> {
    let s = scenario()?;
    let out = s.clones.parent().expect("tmp").join("gitonly");
    let mut config = MineConfig::default();
    config.filters.require_linked_issue = false;
    config.filters.require_bug_fix = false;
    let summary = Miner::builder().config(config).clones(&s.clones).build()?.run_git_only(&out)?;
    let prs: Vec<PrRecord> = read_jsonl(&out.join("prs.jsonl"))?;
    let numbers: Vec<(u64, bool)> = prs.iter().map(|p| (p.number, p.merged)).collect();
    assert_eq!(numbers, [(7, true), (11, true), (13, true)]);
    assert!(prs.iter().all(|p| p.from_git));
    assert_eq!(prs[0].title, "Handle None in parse");
    let insts: Vec<Instance> = read_jsonl(&out.join("instances.jsonl"))?;
    assert_eq!(insts.len(), 3, "{:?}", summary.instances);
    assert!(insts.iter().all(|i| i.rl.problem_statement.is_empty()), "no issue text in git-only mode");
    assert_eq!(insts[0].base_commit, s.base0);
    assert_eq!(insts[0].merge_kind, MergeKind::Head);
    assert_eq!((insts[1].merge_kind, insts[1].base_commit.as_str()), (MergeKind::Squash, s.r2.as_str()));
    // With the PR's own text as the problem statement.
    let mut config = MineConfig::default();
    config.filters.require_linked_issue = false;
    config.filters.require_bug_fix = false;
    config.instance.pr_text_as_problem = true;
    let with_text = out.with_file_name("gitonly-text");
    Miner::builder().config(config).clones(&s.clones).build()?.run_git_only(&with_text)?;
    let insts: Vec<Instance> = read_jsonl(&with_text.join("instances.jsonl"))?;
    assert!(insts[0].rl.problem_statement.starts_with("Handle None in parse\n"), "{:?}", insts[0].rl);
    // Given PR numbers and base shas instead (`--prs`).
    let list = s.clones.parent().expect("tmp").join("prs.jsonl");
    let lines = [
        format!(r#"{{"repo": "acme/widget", "number": 7, "base_sha": "{}", "title": "t"}}"#, s.base0),
        r#"{"repo": "acme/widget", "number": 404, "base_sha": ""}"#.to_string(),
    ];
    std::fs::write(&list, lines.join("\n"))?;
    let mut config = MineConfig::default();
    config.filters.require_linked_issue = false;
    config.filters.require_bug_fix = false;
    let listed = Miner::builder().config(config).clones(&s.clones).build()?;
    let sum = listed.run_pr_list(&swerl_data::read_pr_list(&list)?, &out.join("list"))?;
    let f = sum.instances.expect("funnel");
    assert_eq!((f.merged_prs, f.selected, f.dropped_commits_missing), (2, 1, 1));
    let listed_insts: Vec<Instance> = read_jsonl(&out.join("list").join("instances.jsonl"))?;
    assert_eq!(listed_insts[0].patch, insts[0].patch);
    std::fs::write(&list, "{not json")?;
    let err = swerl_data::read_pr_list(&list).expect_err("malformed");
    assert!(err.to_string().contains("prs.jsonl:1:"), "{err}");
    // Found through the plain merge that brought its head into the default branch.
    assert_eq!((insts[2].merge_kind, insts[2].base_commit.as_str()), (MergeKind::MergeCommit, s.s1.as_str()));
    assert!(insts[2].patch.contains("+    return 13") && !insts[2].patch.contains("README"));
    Ok(())
}
