//! The real GH Archive sample: merged PRs and issue links against the independent count of
//! `tests/golden/make_gharchive.py`.

use std::collections::{BTreeMap, BTreeSet};

use swerl_data::{EventInputs, Miner, PrRecord};

use crate::fixtures::vendored_data;

#[derive(serde::Deserialize)]
struct Golden {
    events: u64,
    by_type: BTreeMap<String, u64>,
    prs_with_pr_events: usize,
    pull_request_events_with_links: usize,
    merged: Vec<(String, u64)>,
    links: BTreeMap<String, Vec<u64>>,
    merged_with_links: Vec<String>,
}

#[test]
fn real_events_give_the_independently_counted_prs_and_links() -> anyhow::Result<()> {
    let golden: Golden = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/gharchive_2021-07-21.json"
    )))?;
    let dir = vendored_data().join("gharchive");
    anyhow::ensure!(dir.is_dir(), "{} missing", dir.display());
    let out = tempfile::tempdir()?;
    let summary =
        Miner::builder().build()?.run(&EventInputs { paths: vec![dir], ..Default::default() }, out.path())?;
    // What `summary.json` says of the sample (a change of its fields or counts shows here).
    insta::assert_snapshot!(std::fs::read_to_string(out.path().join("summary.json"))?);

    assert_eq!(summary.scan.files, 4);
    assert_eq!(summary.scan.events, golden.events);
    assert_eq!(summary.scan.by_type, golden.by_type);
    assert_eq!(summary.scan.malformed_lines, 0);
    // The spec's description of the sample.
    assert_eq!(golden.by_type["PullRequestEvent"], 64);
    assert_eq!(golden.merged.len(), 25);
    assert_eq!(golden.pull_request_events_with_links, 4);

    let prs: Vec<PrRecord> = std::fs::read_to_string(out.path().join("prs.jsonl"))?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(prs.len(), golden.prs_with_pr_events);
    assert_eq!(summary.prs.prs as usize, prs.len());
    let merged: BTreeSet<(String, u64)> =
        prs.iter().filter(|p| p.merged).map(|p| (p.repo.clone(), p.number)).collect();
    assert_eq!(merged, golden.merged.iter().cloned().collect());
    assert_eq!(summary.prs.merged, 25);
    for p in prs.iter().filter(|p| p.merged) {
        assert_eq!(p.merge_commit_sha.len(), 40, "{}#{}", p.repo, p.number);
        assert_eq!((p.base_sha.len(), p.head_sha.len()), (40, 40));
        assert!(!p.title.is_empty() && !p.merged_at.is_empty());
    }
    let links: BTreeMap<String, Vec<u64>> = prs
        .iter()
        .filter(|p| !p.linked_issues.is_empty())
        .map(|p| (format!("{}#{}", p.repo, p.number), p.linked_issues.clone()))
        .collect();
    assert_eq!(links, golden.links);
    assert_eq!(summary.prs.merged_with_linked_issue as usize, golden.merged_with_links.len());
    // Output is sorted by (repo, number) and every line names its PR.
    let keys: Vec<_> = prs.iter().map(|p| (p.repo.clone(), p.number)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // Review comments were aggregated in time order.
    let with_comments = prs.iter().filter(|p| !p.comments.is_empty()).count();
    assert!(with_comments > 0);
    for p in &prs {
        assert!(p.comments.windows(2).all(|w| w[0].created_at <= w[1].created_at));
    }
    Ok(())
}
