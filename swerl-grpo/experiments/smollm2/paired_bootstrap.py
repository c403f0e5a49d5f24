#!/usr/bin/env python3
"""Paired bootstrap of the held-out reward change between two checks of one run (standard library).

usage: paired_bootstrap.py RUN_DIR STEP_A STEP_B [RESAMPLES]

Reads RUN_DIR/eval_answers.jsonl (one line per held-out answer: step, id, reward), pairs the
answers of STEP_A and STEP_B by instance, and prints the mean change of reward with a 95%
percentile interval over instances resampled with replacement (fixed seed), and the share of
resamples whose mean change is <= 0.
"""
import json
import random
import sys


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    run, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    resamples = int(sys.argv[4]) if len(sys.argv) == 5 else 10000
    rewards = {}
    path = f"{run}/eval_answers.jsonl"
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                r = json.loads(line)
                rewards.setdefault(r["id"], {})[r["step"]] = r["reward"]
            except (ValueError, KeyError) as e:
                sys.exit(f"{path}:{n}: {e}")
    ids = sorted(k for k, v in rewards.items() if a in v and b in v)
    if not ids:
        sys.exit(f"{path}: no instance answered at both step {a} and step {b}")
    diff = [rewards[k][b] - rewards[k][a] for k in ids]
    rng = random.Random(0)
    means = sorted(
        sum(diff[rng.randrange(len(diff))] for _ in diff) / len(diff) for _ in range(resamples)
    )
    lo, hi = means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
    changed = sum(1 for d in diff if d)
    print(
        f"{len(ids)} instances, {changed} changed: mean reward change {sum(diff) / len(diff):+.3f} "
        f"[{lo:+.3f}, {hi:+.3f}], P(change <= 0) {sum(m <= 0 for m in means) / resamples:.4f}"
    )


if __name__ == "__main__":
    main()
