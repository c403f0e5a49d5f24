#!/usr/bin/env python3
"""The held-out checks of one run as a Markdown table (standard library).

usage: checks_table.py RUN_DIR

Reads RUN_DIR/eval.jsonl (one line per check, written by `swerl sft` and `swerl train`) and
RUN_DIR/eval_answers.jsonl (one line per held-out answer), and prints per check: format-correct
rate and mean reward with the run's 95% bootstrap intervals, mean answer length, the share of
answers cut at the token limit, the check's time, and what the answers did: scored (not a
format error), SEARCH copied unchanged into REPLACE, SEARCH not found in the file, a tag
missing or repeated, or another format error.
"""
import json
import sys
from collections import Counter, defaultdict


def read_jsonl(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                sys.exit(f"{path}:{n}: {e}")
    return rows


def kind(answer):
    if not answer.get("format_error"):
        return "scored"
    reason = answer.get("reason", "")
    if "SEARCH and REPLACE are identical" in reason:
        return "copied"
    if "SEARCH block not found" in reason:
        return "not found"
    if "tag" in reason:
        return "tag"
    return "other"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    run = sys.argv[1]
    checks = read_jsonl(f"{run}/eval.jsonl")
    kinds = defaultdict(Counter)
    for a in read_jsonl(f"{run}/eval_answers.jsonl"):
        kinds[a["step"]][kind(a)] += 1
    print("| step | format-correct | mean reward | answer length | cut at limit | check time "
          "| scored / copied / not found / tag / other |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for c in checks:
        s = c["step"]
        k = kinds[s]
        print(
            f"| {s} | {c['eval/format_rate']:.3f} [{c['eval/format_rate_low']:.3f}, "
            f"{c['eval/format_rate_high']:.3f}] | {c['eval/reward']:.3f} [{c['eval/reward_low']:.3f}, "
            f"{c['eval/reward_high']:.3f}] | {c['eval/mean_length']:.0f} | {c['eval/clipped_ratio']:.0%} "
            f"| {c['eval/time']:.0f} s | {k['scored']} / {k['copied']} / {k['not found']} / {k['tag']} "
            f"/ {k['other']} |"
        )


if __name__ == "__main__":
    main()
