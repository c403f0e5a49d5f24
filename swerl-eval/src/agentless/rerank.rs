//! Reranking repair samples into one prediction (upstream's `majority_voting`): the fewest
//! regression failures, then the reproduction consensus, then a majority vote over normalized
//! patches, ties to the earliest sample.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// One repair sample as the reranker sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerankCandidate {
    /// The sample's index (its order of generation).
    pub sample: usize,
    /// The normalized patch (the vote key); empty means no usable change.
    pub normalized: String,
    /// Regression tests that failed with the patch; `None` when they were not run (ranks last).
    pub regression_failures: Option<usize>,
    /// Ids of the reproduction tests the patch resolved; `None` when none were run.
    pub reproduction_passed: Option<BTreeSet<String>>,
}

/// Which filter chose the pool the vote ran over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RerankRule {
    /// Fewest regression failures, then the best reproduction group.
    RegressionThenReproduction,
    /// Best reproduction group, then fewest regression failures.
    ReproductionThenRegression,
    /// Best reproduction group only.
    Reproduction,
    /// Fewest regression failures only.
    Regression,
    /// No filter separated the candidates: the vote ran over all of them.
    MajorityVote,
}

/// The chosen sample and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerankChoice {
    /// The chosen sample's index.
    pub sample: usize,
    /// The filter that made the pool.
    pub rule: RerankRule,
    /// The samples in the pool.
    pub pool: Vec<usize>,
    /// Samples in the pool with the winner's normalized patch.
    pub votes: usize,
}

/// Chooses one sample, or `None` when no candidate has a non-empty normalized patch.
///
/// Candidates with an empty key are left out. Four filtered pools are tried in upstream's
/// order (regression then reproduction, reproduction then regression, reproduction alone,
/// regression alone); the first that is neither empty nor all candidates is used, else all
/// candidates. Regression keeps the fewest failures; reproduction groups candidates by the exact
/// set of tests they pass and keeps the groups with the best `|tests|^2 * |group|`. The vote
/// counts candidates per normalized patch; ties go to the patch that appeared first.
pub fn rerank(candidates: &[RerankCandidate]) -> Option<RerankChoice> {
    let all: Vec<&RerankCandidate> = candidates.iter().filter(|c| !c.normalized.trim().is_empty()).collect();
    if all.is_empty() {
        return None;
    }
    let regression = by_regression(&all);
    let reproduction = by_reproduction(&all);
    let tries = [
        (RerankRule::RegressionThenReproduction, by_reproduction(&regression)),
        (RerankRule::ReproductionThenRegression, by_regression(&reproduction)),
        (RerankRule::Reproduction, reproduction),
        (RerankRule::Regression, regression),
    ];
    let (rule, pool) = tries
        .into_iter()
        .find(|(_, pool)| !pool.is_empty() && pool.len() != all.len())
        .unwrap_or((RerankRule::MajorityVote, all));
    let (sample, votes) = majority(&pool);
    Some(RerankChoice { sample, rule, pool: pool.iter().map(|c| c.sample).collect(), votes })
}

fn by_regression<'a>(pool: &[&'a RerankCandidate]) -> Vec<&'a RerankCandidate> {
    let score = |c: &RerankCandidate| c.regression_failures.unwrap_or(usize::MAX);
    let Some(best) = pool.iter().map(|c| score(c)).min() else { return Vec::new() };
    pool.iter().copied().filter(|c| score(c) == best).collect()
}

fn by_reproduction<'a>(pool: &[&'a RerankCandidate]) -> Vec<&'a RerankCandidate> {
    let empty = BTreeSet::new();
    let mut groups: BTreeMap<&BTreeSet<String>, usize> = BTreeMap::new();
    for c in pool {
        *groups.entry(c.reproduction_passed.as_ref().unwrap_or(&empty)).or_default() += 1;
    }
    let score = |tests: &BTreeSet<String>, size: usize| tests.len() * tests.len() * size;
    let Some(best) = groups.iter().map(|(t, n)| score(t, *n)).max() else { return Vec::new() };
    pool.iter()
        .copied()
        .filter(|c| {
            let tests = c.reproduction_passed.as_ref().unwrap_or(&empty);
            score(tests, groups[tests]) == best
        })
        .collect()
}

/// The most frequent normalized patch in the pool (ties: the one whose first sample is
/// earliest), as (that first sample, votes).
fn majority(pool: &[&RerankCandidate]) -> (usize, usize) {
    let mut tally: HashMap<&str, (usize, usize)> = HashMap::new();
    for c in pool {
        let entry = tally.entry(c.normalized.trim()).or_insert((0, c.sample));
        entry.0 += 1;
        entry.1 = entry.1.min(c.sample);
    }
    let (_, (votes, sample)) =
        tally.into_iter().max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1))).expect("a non-empty pool");
    (sample, votes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(sample: usize, key: &str, regression: Option<usize>, repro: Option<&[&str]>) -> RerankCandidate {
        RerankCandidate {
            sample,
            normalized: key.into(),
            regression_failures: regression,
            reproduction_passed: repro.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    /// (name, candidates, (sample, rule, votes)).
    type Case = (&'static str, Vec<RerankCandidate>, Option<(usize, RerankRule, usize)>);

    #[test]
    fn tie_break_table() {
        use RerankRule::*;
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("nothing usable", vec![c(0, "", None, None), c(1, "  \n", None, None)], None),
            ("majority wins", vec![c(0, "a", None, None), c(1, "b", None, None), c(2, "b", None, None)], Some((1, MajorityVote, 2))),
            ("vote tie -> earliest first appearance", vec![c(0, "b", None, None), c(1, "a", None, None), c(2, "a", None, None), c(3, "b", None, None)], Some((0, MajorityVote, 2))),
            ("empty keys never vote", vec![c(0, "", None, None), c(1, "", None, None), c(2, "x", None, None)], Some((2, MajorityVote, 1))),
            ("keys compare trimmed", vec![c(0, "a\n", None, None), c(1, "a", None, None), c(2, "b", None, None)], Some((0, MajorityVote, 2))),
            ("fewest regression failures beat the majority", vec![c(0, "a", Some(2), None), c(1, "a", Some(2), None), c(2, "b", Some(0), None)], Some((2, RegressionThenReproduction, 1))),
            ("tests not run rank after any count", vec![c(0, "a", None, None), c(1, "a", None, None), c(2, "b", Some(7), None)], Some((2, RegressionThenReproduction, 1))),
            ("reproduction score |tests|^2 * |patches|", vec![c(0, "a", Some(0), Some(&["t1"])), c(1, "a", Some(0), Some(&["t1"])), c(2, "a", Some(0), Some(&["t1"])), c(3, "b", Some(0), Some(&["t1", "t2"]))], Some((3, RegressionThenReproduction, 1))),
            ("bigger group wins equal test counts", vec![c(0, "a", Some(0), Some(&["t1"])), c(1, "b", Some(0), Some(&["t2"])), c(2, "b", Some(0), Some(&["t2"]))], Some((1, RegressionThenReproduction, 2))),
            ("regression before reproduction", vec![c(0, "a", Some(1), Some(&["t1", "t2"])), c(1, "b", Some(0), Some(&[])), c(2, "c", Some(0), Some(&["t1"]))], Some((2, RegressionThenReproduction, 1))),
            ("all equal scores -> vote over all", vec![c(0, "a", Some(0), Some(&["t"])), c(1, "b", Some(0), Some(&["t"])), c(2, "b", Some(0), Some(&["t"]))], Some((1, MajorityVote, 2))),
            ("tied groups are kept together", vec![c(0, "a", Some(0), Some(&["t1"])), c(1, "b", Some(0), Some(&["t2"])), c(2, "c", Some(0), Some(&[]))], Some((0, RegressionThenReproduction, 1))),
        ];
        for (name, candidates, want) in cases {
            let got = rerank(&candidates).map(|r| (r.sample, r.rule, r.votes));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn fallback_order_when_the_first_pool_is_everything() {
        // Regression alone separates nothing (all 0 failures) and reproduction separates: the
        // regression-then-reproduction pool is that group.
        let cands = [c(0, "a", Some(0), Some(&[])), c(1, "b", Some(0), Some(&["t"]))];
        let r = rerank(&cands).unwrap();
        assert_eq!((r.sample, r.rule, r.pool), (1, RerankRule::RegressionThenReproduction, vec![1]));
        // The reproduction winners have more regression failures than others: the first pool
        // (regression then reproduction) is the low-failure sample.
        let cands = [c(0, "a", Some(3), Some(&["t"])), c(1, "b", Some(0), Some(&[]))];
        let r = rerank(&cands).unwrap();
        assert_eq!((r.sample, r.rule), (1, RerankRule::RegressionThenReproduction));
    }
}
