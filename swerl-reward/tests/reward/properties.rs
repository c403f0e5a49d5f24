//! Property tests: invariants that must hold on any input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use swerl_reward::difflib::SequenceMatcher;
use swerl_reward::unidiff::{Dialect, unidiff_reward};
use swerl_reward::{Scorer, git_diff, score};

/// Lines drawn from a small set so files share lines (and popular lines appear in long files),
/// without the block syntax (`=======`, `>>>>>>> REPLACE`) that would end a block early.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("    pass".to_owned()),
        Just("}".to_owned()),
        "[a-d ]{0,6}",
        "    [a-z]{1,4} = [0-9]{1,2}",
        "[éß😀\t\r]{1,3}",
    ]
}

fn file() -> impl Strategy<Value = String> {
    (prop::collection::vec(line(), 0..40), any::<bool>()).prop_map(|(lines, newline)| {
        let mut text = lines.join("\n");
        if newline && !text.is_empty() {
            text.push('\n');
        }
        text
    })
}

fn completion(path: &str, search: &str, replace: &str) -> String {
    format!(
        "<think>t</think>\n<solution>\n```python\n### {path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n</solution>"
    )
}

/// The `(start, len)` of the old and the new side of a hunk header line `@@ -a,b +c,d @@`.
fn hunk_header(line: &str) -> Option<((usize, usize), (usize, usize))> {
    let mut ranges = line.strip_prefix("@@ -")?.split(' ');
    let range = |r: &str| {
        let mut parts = r.split(',');
        let start: usize = parts.next().unwrap().parse().unwrap();
        (start, parts.next().map_or(1, |l| l.parse().unwrap()))
    };
    let old = range(ranges.next().unwrap());
    Some((old, range(ranges.next().unwrap().strip_prefix('+').unwrap())))
}

/// Applies a `git diff` made by [`git_diff`] to `old` (one file), the way `git apply` would.
fn apply_git_patch(old: &str, patch: &str) -> String {
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let mut out = String::new();
    let mut pos = 0; // next old line to copy
    let mut lines = patch.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let Some(((start, len), _)) = hunk_header(line) else { continue };
        let first = if len == 0 { start } else { start - 1 };
        while pos < first {
            out.push_str(old_lines[pos]);
            pos += 1;
        }
        while let Some(body) = lines.next_if(|l| !l.starts_with("@@ ")) {
            let mut text = body[1..].to_owned();
            if lines.next_if(|l| l.starts_with("\\ No newline")).is_some() {
                text.pop();
            }
            match body.as_bytes()[0] {
                b' ' => {
                    assert_eq!(old_lines[pos], text, "context line {pos}");
                    out.push_str(&text);
                    pos += 1;
                }
                b'-' => {
                    assert_eq!(old_lines[pos], text, "deleted line {pos}");
                    pos += 1;
                }
                b'+' => out.push_str(&text),
                other => panic!("unexpected diff line {:?}", other as char),
            }
        }
    }
    while pos < old_lines.len() {
        out.push_str(old_lines[pos]);
        pos += 1;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn reward_is_minus_one_or_a_fraction(
        context in file(),
        oracle in file(),
        search_line in 0usize..40,
        replace in file(),
        noise in "[<>/a-z=#` \n]{0,40}",
    ) {
        let lines: Vec<&str> = context.lines().collect();
        let search = lines.get(search_line).copied().unwrap_or("");
        let out = completion("f.py", search, &replace) + &noise;
        let ctx = BTreeMap::from([("f.py", context.as_str())]);
        let orc = BTreeMap::from([("f.py", oracle.as_str())]);
        let r = swerl_reward::reward(&ctx, &orc, &out);
        prop_assert!(r == -1.0 || (0.0..=1.0).contains(&r), "reward {r}");
    }

    #[test]
    fn the_oracle_edit_scores_one(old in file(), new in file()) {
        prop_assume!(old != new);
        let ctx = BTreeMap::from([("f.py", old.as_str())]);
        let orc = BTreeMap::from([("f.py", new.as_str())]);
        // SEARCH the whole file, REPLACE with the oracle's: exactly the oracle's change.
        let scored = score(&ctx, &orc, &completion("f.py", &old, &new)).expect("well formatted");
        prop_assert_eq!(scored.reward, 1.0);
        prop_assert_eq!(&scored.new_content[0].1, &new);
    }

    #[test]
    fn matching_blocks_are_real_increasing_and_disjoint(
        a in prop::collection::vec(0u8..4, 0..80),
        b in prop::collection::vec(0u8..4, 0..300),
        autojunk in any::<bool>(),
    ) {
        let m = SequenceMatcher::with_autojunk(&a, &b, autojunk);
        let blocks = m.matching_blocks();
        let last = blocks.last().copied().unwrap();
        prop_assert_eq!((last.a, last.b, last.size), (a.len(), b.len(), 0));
        for w in blocks.windows(2) {
            prop_assert!(w[0].a + w[0].size <= w[1].a && w[0].b + w[0].size <= w[1].b, "{:?}", w);
            // adjacent blocks are merged
            prop_assert!(w[0].a + w[0].size < w[1].a || w[0].b + w[0].size < w[1].b || w[1].size == 0);
        }
        for blk in &blocks {
            prop_assert_eq!(&a[blk.a..blk.a + blk.size], &b[blk.b..blk.b + blk.size]);
        }
        let ratio = m.ratio();
        prop_assert!(ratio <= m.quick_ratio() && m.quick_ratio() <= m.real_quick_ratio());
        // opcodes tile both sequences
        let ops = m.opcodes();
        let (mut i, mut j) = (0, 0);
        for op in &ops {
            prop_assert_eq!((op.i1, op.j1), (i, j));
            i = op.i2;
            j = op.j2;
        }
        prop_assert_eq!((i, j), (a.len(), b.len()));
    }

    #[test]
    fn git_patches_apply_back(old in file(), new in file(), new_file in any::<bool>()) {
        let ctx: BTreeMap<&str, &str> = if new_file { BTreeMap::new() } else { BTreeMap::from([("f.py", old.as_str())]) };
        let base = if new_file { "" } else { old.as_str() };
        let patch = git_diff(&ctx, &BTreeMap::from([("f.py", new.as_str())]));
        if !new_file && old == new {
            prop_assert!(patch.is_empty());
        } else {
            prop_assert_eq!(apply_git_patch(base, &patch), new);
        }
    }

    #[test]
    fn no_input_panics(output in "\\PC{0,300}", context in "\\PC{0,200}", oracle in "\\PC{0,200}", path in "\\PC{0,8}") {
        let ctx = BTreeMap::from([(path.clone(), context.clone())]);
        let orc = BTreeMap::from([(path.clone(), oracle)]);
        let scorer = Scorer::new(&ctx, &orc);
        let _ = scorer.score(&output);
        let wrapped = completion(&path, &context, &output);
        if let Ok(s) = scorer.score(&wrapped) {
            let _ = s.git_patch(&ctx);
        }
        for dialect in [Dialect::V1, Dialect::V0_7] {
            let r = unidiff_reward(&[output.as_str()], &[context.as_str()], dialect).reward;
            prop_assert!((0.0..=1.0).contains(&r));
        }
    }
}

/// The lines of `text` that a diff's hunk headers name: for each `@@ -a,b +c,d @@`, lines
/// `a..a+b` (`old`) or `c..c+d` (new), in order, each with its own line ending.
fn hunk_lines(patch: &str, text: &str, old: bool) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::new();
    for (old_range, new_range) in patch.lines().filter_map(hunk_header) {
        let (start, len) = if old { old_range } else { new_range };
        if len > 0 {
            out.extend(lines[start - 1..start - 1 + len].iter().copied());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `unidiff::partial_files` (SWE-bench patches -> RL instances) rebuilds exactly the lines
    /// the hunk headers of a git diff name, from the old file and from the new one.
    ///
    /// (Diffing the partial files again is no test: the diff is difflib's, which is not minimal,
    /// so on a shorter file it may align equal lines differently.)
    #[test]
    fn partial_files_are_the_lines_the_hunks_name(old in file(), new in file(), new_file in any::<bool>()) {
        prop_assume!(old != new);
        let before = if new_file { BTreeMap::new() } else { BTreeMap::from([("m/f.py", old.as_str())]) };
        let after = BTreeMap::from([("m/f.py", new.as_str())]);
        let patch = git_diff(&before, &after);
        let (pb, pa) = swerl_reward::unidiff::partial_files(&patch).unwrap();
        prop_assert_eq!(pb.contains_key("m/f.py"), !new_file);
        if !new_file {
            prop_assert_eq!(&pb["m/f.py"], &hunk_lines(&patch, &old, true));
        }
        prop_assert_eq!(&pa["m/f.py"], &hunk_lines(&patch, &new, false));
        let partial_old = pb.get("m/f.py").map_or("", String::as_str);
        prop_assert_eq!(apply_git_patch_at_one(partial_old, &patch), pa["m/f.py"].clone());
    }
}

/// CI found this case: diffing the partial files again aligns the `}` lines differently from
/// the diff of the whole files. The partial files themselves are right.
#[test]
fn partial_files_of_a_diff_that_difflib_aligns_differently_when_shorter() {
    let (old, new) = ("\n\n\n\n    pass\n}\n\n}\n}\n}\n}", "}\n}\n}\n}\n}");
    let patch = git_diff(&BTreeMap::from([("m/f.py", old)]), &BTreeMap::from([("m/f.py", new)]));
    let (pb, pa) = swerl_reward::unidiff::partial_files(&patch).unwrap();
    assert_eq!(pb["m/f.py"], "\n\n\n\n    pass\n}\n\n}\n}\n}\n");
    assert_eq!(pa["m/f.py"], "}\n}\n}\n}\n");
}

/// Applies `patch` to the partial file its hunks form: every hunk moved to start right after the
/// previous one, so the result must be the partial "after" file.
fn apply_git_patch_at_one(partial_old: &str, patch: &str) -> String {
    let mut shifted = String::new();
    let (mut old_at, mut new_at) = (1, 1);
    for line in patch.split_inclusive('\n') {
        let Some(((_, old_len), (_, new_len))) = hunk_header(line) else {
            shifted.push_str(line);
            continue;
        };
        let start = |at: usize, len: usize| if len == 0 { at - 1 } else { at };
        shifted.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            start(old_at, old_len),
            start(new_at, new_len)
        ));
        old_at += old_len;
        new_at += new_len;
    }
    apply_git_patch(partial_old, &shifted)
}

#[test]
fn git_apply_accepts_the_patches() {
    // The real tool, on a file with a missing final newline, CRLF lines and a new file.
    let dir = std::env::temp_dir().join(format!("swerl-reward-git-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let old = "line 1\r\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\nlast";
    let new = "line 1\r\nline two\nline 3\nline 4\nline 5\nline 6\nline 7\nlast\n";
    std::fs::write(dir.join("src/a b.py"), old).unwrap();
    let ctx = BTreeMap::from([("src/a b.py", old)]);
    let pred = BTreeMap::from([("src/a b.py", new), ("new_é.txt", "hello\n")]);
    let patch = git_diff(&ctx, &pred);
    std::fs::write(dir.join("fix.patch"), &patch).unwrap();
    let status = std::process::Command::new("git")
        .args(["apply", "--unsafe-paths", "fix.patch"])
        .current_dir(&dir)
        .status()
        .expect("git is installed");
    assert!(status.success(), "git apply rejected:\n{patch}");
    assert_eq!(std::fs::read_to_string(dir.join("src/a b.py")).unwrap(), new);
    assert_eq!(std::fs::read_to_string(dir.join("new_é.txt")).unwrap(), "hello\n");
    std::fs::remove_dir_all(&dir).unwrap();
}
