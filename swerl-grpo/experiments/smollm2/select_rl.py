#!/usr/bin/env python3
"""Selects small RL instances (usage: select_rl.py DATA_DIR) from `swerl mine` git-only outputs (standard library only).

Inputs:  mined/<owner>__<name>/{instances,prs}.jsonl and summary.json (one swerl run per repo),
         clones/<owner>__<name>.git (for commit messages).
Outputs: rl/train.jsonl, rl/heldout.jsonl, rl/FUNNEL.md, rl/select_stats.json; bias report on stdout.
         (CAP_TRAIN=N and RL_OUT=DIR in the environment: another training cap, another folder.)

Git-only mining has no issue text (issues only come from GH Archive), so swerl's
`problem_statement` is empty.  We fill it, SWE-bench style ("title\\nbody\\n"), from the PR
title and body that swerl recovered from the merge/squash commit (prs.jsonl); when that body is
empty, from the PR's commit messages (minus lines equal to the title).  Each line gets
`problem_statement_source` so the trainer/report can tell.

Filters (in order, each counted):
  python      the code patch changes at least one .py file
  text        problem text has >= MIN_TEXT non-space characters
  prompt      len(problem_statement) + sum(len(code_context files)) <= MAX_PROMPT_CHARS
  oracle      1 <= changed lines of the code patch (the oracle diff) <= MAX_CHANGED_LINES
Then per repository at most CAP_TRAIN (train) / CAP_HELDOUT (held-out) instances, chosen by
sha256(instance_id) order (fixed, seedless; not biased towards old or new PRs), written sorted
by (repo, PR number).
"""
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
from collections import Counter

# The data directory (clones/, mined/; rl/ is written): the first argument, else the current one.
ROOT = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.getcwd()
TRAIN = [
    "agronholm/anyio", "encode/httpx", "jd/tenacity", "jpadilla/pyjwt",
    "more-itertools/more-itertools", "pallets/click", "pypa/packaging",
    "python-attrs/attrs", "python-poetry/tomlkit", "tqdm/tqdm", "hukkin/tomli",
]
HELDOUT = ["encode/starlette", "pytest-dev/pluggy", "pyparsing/pyparsing"]
MAX_PROMPT_CHARS = 5000
MAX_CHANGED_LINES = 60
MIN_TEXT = 15
# Per-repository caps; CAP_TRAIN in the environment overrides the training one. The order is
# fixed, so a larger cap selects a superset of a smaller one's training set, and the held-out
# set does not change.
CAP_TRAIN = int(os.environ.get("CAP_TRAIN", "36"))
CAP_HELDOUT = 18
# The output folder under DATA_DIR (RL_OUT in the environment; default rl).
OUT_DIR = os.environ.get("RL_OUT", "rl")


def key(repo):
    return repo.replace("/", "__")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def changed_lines(patch):
    n = 0
    for line in patch.splitlines():
        if line.startswith(("+++ ", "--- ")):
            continue
        if line.startswith(("+", "-")):
            n += 1
    return n


def patch_paths(patch):
    return [l.split(" b/", 1)[1] for l in patch.splitlines() if l.startswith("diff --git ")]


HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def file_patches(patch):
    """path -> list of (old_start, old_len, new_start, new_len) hunks, plus per-file header info."""
    files, cur = {}, None
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            cur = line.split(" b/", 1)[1]
            files[cur] = {"hunks": [], "header": []}
        elif cur is not None:
            m = HUNK.match(line)
            if m:
                os_, ol, ns, nl = (int(g) if g is not None else 1 for g in m.groups())
                files[cur]["hunks"].append((os_, ol, ns, nl))
            elif not files[cur]["hunks"]:
                files[cur]["header"].append(line)
    return files


def excerpt(inst, margins=(20, 10, 5, 3)):
    """Cuts each changed file to one window of lines around all its hunks (same window in the
    old and new content, so their diff is exactly the oracle diff).  Unchanged relevant files are
    dropped.  Returns (code_context, oracle_new_content, margin) or None when not possible
    (a deleted, renamed or binary file)."""
    fp = file_patches(inst["patch"])
    if set(fp) != set(inst["oracle_new_content"]):
        return None
    budget = MAX_PROMPT_CHARS - len(inst["problem_statement"])
    best = None
    for margin in margins:
        ctx, new_ctx = {}, {}
        for path, info in fp.items():
            if any(h.startswith(("rename ", "deleted file", "Binary", "similarity")) for h in info["header"]):
                return None
            new = inst["oracle_new_content"][path]
            if any(h.startswith("new file") for h in info["header"]):
                new_ctx[path] = new  # an added file: nothing to show, the oracle is the file
                continue
            if path not in inst["code_context"] or not info["hunks"]:
                return None
            old_l = inst["code_context"][path].splitlines(keepends=True)
            new_l = new.splitlines(keepends=True)
            first, last = info["hunks"][0], info["hunks"][-1]
            a = max(0, first[0] - 1 - margin)                 # old window [a, b)
            b = min(len(old_l), last[0] - 1 + last[1] + margin)
            delta = len(new_l) - len(old_l)
            a2, b2 = a, b + delta                             # new window: same prefix, same suffix
            if old_l[:a] != new_l[:a2] or old_l[b:] != new_l[b2:]:
                return None
            ctx[path] = "".join(old_l[a:b])
            new_ctx[path] = "".join(new_l[a2:b2])
        size = sum(len(v) for v in ctx.values())
        best = (ctx, new_ctx, margin)
        if size <= budget:
            return best
    return best


def commit_messages(repo, shas, title):
    git_dir = os.path.join(ROOT, "clones", key(repo) + ".git")
    out = []
    for sha in shas:
        try:
            msg = subprocess.run(["git", "--git-dir", git_dir, "log", "-1", "--format=%B", sha],
                                 capture_output=True, text=True, check=True).stdout
        except subprocess.CalledProcessError:
            continue
        lines = [l for l in msg.strip().splitlines() if l.strip() != title.strip()]
        lines = [l for l in lines if not l.startswith(("Signed-off-by:", "Co-authored-by:", "Merge branch ",
                                                       "Merge remote-tracking branch ", "Merge pull request #"))]
        text = "\n".join(lines).strip()
        if text and text not in out:
            out.append(text)
    return "\n\n".join(out)


def problem(inst, pr):
    if inst["problem_statement"].strip():
        return inst["problem_statement"], "issue"
    title = (pr or {}).get("title") or inst["title"]
    body = ((pr or {}).get("body") or "").replace("\r\n", "\n").strip()
    source = "pr_title_body"
    if not body:
        body = commit_messages(inst["repo"], inst["commits"], title)
        source = "pr_title_commit_messages" if body else "pr_title"
    return f"{title}\n{body}\n" if body else f"{title}\n", source


def med(xs):
    return statistics.median(xs) if xs else 0


def main():
    report = {}
    kept = {}
    kept_full = {}
    for repo in TRAIN + HELDOUT:
        d = os.path.join(ROOT, "mined", key(repo))
        if not os.path.exists(os.path.join(d, "summary.json")):
            print(f"warning: {repo} not mined, skipped", file=sys.stderr)
            kept[repo] = []
            kept_full[repo] = []
            continue
        prs = {p["number"]: p for p in read_jsonl(os.path.join(d, "prs.jsonl"))}
        insts = read_jsonl(os.path.join(d, "instances.jsonl"))
        summary = json.load(open(os.path.join(d, "summary.json")))
        rows = []
        counts = Counter()
        for inst in sorted(insts, key=lambda i: i["pr_number"]):
            ps, src = problem(inst, prs.get(inst["pr_number"]))
            inst["problem_statement"] = ps
            inst["problem_statement_source"] = src
            m = {
                "id": inst["instance_id"],
                "prompt": len(ps) + sum(len(v) for v in inst["code_context"].values()),
                "lines": changed_lines(inst["patch"]),
                "files": len(inst["oracle_new_content"]),
                "ctx_files": len(inst["code_context"]),
                "text": len(ps),
                "year": inst["created_at"][:4],
                "linked": bool(inst["linked_issues"]),
            }
            m["full_prompt"] = m["prompt"]
            # jd/tenacity is a fork of rholder/retrying: its history holds retrying's
            # "Merge pull request #N" commits (2014-2016), which swerl takes for tenacity PRs.
            upstream = repo == "jd/tenacity" and inst["created_at"] < "2016-08-15"
            m["full_ctx_files"] = m["ctx_files"]
            if upstream:
                m["stage"] = "dropped_upstream_fork_pr"
            elif not any(p.endswith(".py") for p in patch_paths(inst["patch"])):
                m["stage"] = "dropped_no_python"
            elif any(v == "" for v in inst["oracle_new_content"].values()):
                # "" = deleted, renamed away or an empty new file: no SEARCH/REPLACE edit reaches it
                m["stage"] = "dropped_oracle_empty_file"
            elif len("".join(ps.split())) < MIN_TEXT:
                m["stage"] = "dropped_short_text"
            elif not 1 <= m["lines"] <= MAX_CHANGED_LINES:
                m["stage"] = "dropped_oracle_too_large"
            elif m["prompt"] <= MAX_PROMPT_CHARS:
                m["stage"] = "kept_full_files"
                inst["context_mode"] = "full"
            else:
                ex = excerpt(inst)
                if ex is None:
                    m["stage"] = "dropped_prompt_too_long_not_excerptable"
                else:
                    ctx, new_ctx, margin = ex
                    size = len(ps) + sum(len(v) for v in ctx.values())
                    if size > MAX_PROMPT_CHARS:
                        m["stage"] = "dropped_prompt_too_long_even_excerpted"
                    else:
                        assert all(ctx.get(k) != v for k, v in new_ctx.items()), inst["instance_id"]
                        m["stage"] = "kept_excerpt"
                        m["prompt"] = size
                        m["ctx_files"] = len(ctx)
                        inst["code_context"] = ctx
                        inst["oracle_new_content"] = new_ctx
                        inst["context_mode"] = f"excerpt (changed files cut to the lines around the change, margin {margin}; relevant files dropped)"
                        inst["relevant_files"] = []
            counts[m["stage"]] += 1
            if m["stage"].startswith("kept"):
                counts["kept_by_filter"] += 1
            rows.append((inst, m))
        cap = CAP_TRAIN if repo in TRAIN else CAP_HELDOUT
        passing = [(i, m) for i, m in rows if m["stage"].startswith("kept")]
        passing.sort(key=lambda r: hashlib.sha256(r[0]["instance_id"].encode()).hexdigest())
        chosen = sorted(passing[:cap], key=lambda r: r[0]["pr_number"])
        for _, m in chosen:
            m["chosen"] = True
        kept[repo] = [i for i, _ in chosen]
        full = [(i, m) for i, m in rows if m["stage"] == "kept_full_files"]
        full.sort(key=lambda r: hashlib.sha256(r[0]["instance_id"].encode()).hexdigest())
        kept_full[repo] = [i for i, _ in sorted(full[:cap], key=lambda r: r[0]["pr_number"])]
        report[repo] = {
            "split": "train" if repo in TRAIN else "heldout",
            "prs_found": summary["prs"]["prs"],
            "merged_prs": summary["prs"]["merged"],
            "instances_produced": len(insts),
            "funnel": summary["instances"],
            "filter": dict(counts),
            "kept_after_size_filter": counts["kept_by_filter"],
            "written": len(chosen),
            "rows": [m for _, m in rows],
        }

    os.makedirs(os.path.join(ROOT, OUT_DIR), exist_ok=True)
    for (split, repos), (suffix, which) in [(s_, w_) for s_ in (("train", TRAIN), ("heldout", HELDOUT))
                                             for w_ in (("", kept), ("_fullfile", kept_full))]:
        with open(os.path.join(ROOT, OUT_DIR, f"{split}{suffix}.jsonl"), "w", encoding="utf-8") as f:
            for repo in repos:
                for inst in which[repo]:
                    f.write(json.dumps(inst, ensure_ascii=False, sort_keys=False) + "\n")

    # Bias report.
    allrows = [m for r in report.values() for m in r["rows"]]
    passed = [m for m in allrows if m["stage"].startswith("kept")]
    chosen = [m for m in allrows if m.get("chosen")]
    out = []
    p = out.append
    p("## How the size filter biases the data\n")
    p("| statistic | all produced | passed filters | written |")
    p("| --- | --- | --- | --- |")
    for name, f in [
        ("instances", len),
        ("median prompt chars as mined (problem + full code_context)", lambda s: med([m["full_prompt"] for m in s])),
        ("median prompt chars as written (after excerpting)", lambda s: med([m["prompt"] for m in s if m["stage"].startswith("kept")])),
        ("share written with full files (no excerpt)", lambda s: f"{sum(m['stage'] == 'kept_full_files' for m in s) / max(len(s), 1):.0%}"),
        ("median oracle changed lines", lambda s: med([m["lines"] for m in s])),
        ("median problem text chars", lambda s: med([m["text"] for m in s])),
        ("median files changed (oracle)", lambda s: med([m["files"] for m in s])),
        ("mean files changed (oracle)", lambda s: round(statistics.mean([m["files"] for m in s]), 2) if s else 0),
        ("median code_context files as mined", lambda s: med([m["full_ctx_files"] for m in s])),
        ("share with >1 file changed", lambda s: f"{sum(m['files'] > 1 for m in s) / max(len(s), 1):.0%}"),
        ("share with a linked issue (`Fixes #N`)", lambda s: f"{sum(m['linked'] for m in s) / max(len(s), 1):.0%}"),
        ("median PR year", lambda s: med(sorted(int(m["year"]) for m in s if m["year"]))),
    ]:
        p(f"| {name} | {f(allrows)} | {f(passed)} | {f(chosen)} |")
    p("")
    p("| repository | split | produced | kept by filter | fraction kept | median prompt chars (all) | median changed lines (all) | written |")
    p("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for repo, r in report.items():
        rows = r["rows"]
        p(f"| {repo} | {r['split']} | {r['instances_produced']} | {r['kept_after_size_filter']} | "
          f"{r['kept_after_size_filter'] / max(r['instances_produced'], 1):.0%} | "
          f"{med([m['full_prompt'] for m in rows])} | {med([m['lines'] for m in rows])} | {r['written']} |")
    bias = "\n".join(out)
    print(bias)

    src = Counter()
    for repo in report:
        for inst in kept[repo]:
            src[(report[repo]["split"], inst["problem_statement_source"])] += 1
    stats = {repo: {k: v for k, v in r.items() if k != "rows"} for repo, r in report.items()}
    with open(os.path.join(ROOT, OUT_DIR, "select_stats.json"), "w") as f:
        json.dump({"repos": stats, "problem_statement_sources": {f"{a}/{b}": n for (a, b), n in src.items()},
                   "params": {"max_prompt_chars": MAX_PROMPT_CHARS, "max_changed_lines": MAX_CHANGED_LINES,
                              "min_text": MIN_TEXT, "cap_train": CAP_TRAIN, "cap_heldout": CAP_HELDOUT}},
                  f, indent=1)
    with open(os.path.join(ROOT, OUT_DIR, "bias.md"), "w") as f:
        f.write(bias + "\n")
    write_funnel(report, bias, src, kept, kept_full)
    for split in ("train", "heldout"):
        n = sum(r["written"] for r in report.values() if r["split"] == split)
        print(f"{split}: {n} instances from {sum(1 for r in report.values() if r['split'] == split and r['written'])} repos")
    print("problem_statement sources:", dict(src))


FUNNEL_KEYS = ["merged_prs", "dropped_swebench_repo", "dropped_bot", "dropped_no_clone",
               "dropped_commits_missing", "dropped_empty", "dropped_oversized", "dropped_noise_only",
               "dropped_swebench_patch", "after_filters", "dropped_no_linked_issue",
               "dropped_issue_text_missing", "dropped_not_bug_fix", "dropped_no_code_files",
               "selected", "git_errors"]
STAGES = ["dropped_upstream_fork_pr", "dropped_no_python", "dropped_oracle_empty_file", "dropped_short_text", "dropped_oracle_too_large",
          "dropped_prompt_too_long_not_excerptable", "dropped_prompt_too_long_even_excerpted",
          "kept_full_files", "kept_excerpt"]


def write_funnel(report, bias, src, kept, kept_full):
    L = []
    p = L.append
    p("# RL data funnel (git-only mining of real Python repositories)\n")
    notes = os.path.join(ROOT, "FUNNEL_NOTES.md")
    if os.path.exists(notes):
        p(open(notes).read().rstrip() + "\n")
    p("## Per repository\n")
    p("PRs found = PR numbers swerl found in the clone (`refs/pull/*/head` and merge/squash "
      "commits); merged = those it could show merged; produced = lines of swerl's "
      "`instances.jsonl`; kept = passed `select_rl.py`'s filters; written = in train/heldout "
      "after the per-repository cap.\n")
    p("| repository | split | PRs found | merged | instances produced | kept after size filter "
      "(full files + excerpted) | written | written full-file only (`*_fullfile.jsonl`) |")
    p("| --- | --- | --- | --- | --- | --- | --- | --- |")
    tot = Counter()
    for repo, r in report.items():
        f = r["filter"]
        row = [r["prs_found"], r["merged_prs"], r["instances_produced"],
               r["kept_after_size_filter"], r["written"], len(kept_full[repo])]
        p(f"| {repo} | {r['split']} | {row[0]} | {row[1]} | {row[2]} | {row[3]} "
          f"({f.get('kept_full_files', 0)} + {f.get('kept_excerpt', 0)}) | {row[4]} | {row[5]} |")
        for k, v in zip(["prs", "merged", "produced", "kept", "written", "full"], row):
            tot[(r["split"], k)] += v
    for split in ("train", "heldout"):
        p(f"| **{split} total** | | {tot[(split, 'prs')]} | {tot[(split, 'merged')]} | "
          f"{tot[(split, 'produced')]} | {tot[(split, 'kept')]} | {tot[(split, 'written')]} | "
          f"{tot[(split, 'full')]} |")
    p("\n## swerl `summary.json` funnel (`instances`)\n")
    p("| repository | " + " | ".join(FUNNEL_KEYS) + " |")
    p("| --- |" + " --- |" * len(FUNNEL_KEYS))
    for repo, r in report.items():
        p(f"| {repo} | " + " | ".join(str(r["funnel"].get(k, "")) for k in FUNNEL_KEYS) + " |")
    p("\n## select_rl.py stages\n")
    p("| repository | " + " | ".join(STAGES) + " |")
    p("| --- |" + " --- |" * len(STAGES))
    for repo, r in report.items():
        p(f"| {repo} | " + " | ".join(str(r["filter"].get(k, 0)) for k in STAGES) + " |")
    p("\nproblem_statement sources of written instances: " +
      ", ".join(f"{a}/{b}: {n}" for (a, b), n in sorted(src.items())) + "\n")
    p(bias)
    with open(os.path.join(ROOT, OUT_DIR, "FUNNEL.md"), "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    sys.exit(main())
