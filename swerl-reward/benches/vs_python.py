#!/usr/bin/env python3
"""Throughput of swerl's reward against the Python reference, in one run, on the same cases.

    python3 swerl-reward/benches/vs_python.py [--swerl target/release/swerl] [--limit N] [--swe-rl PATH]

Cases: the ~6,000 search/replace cases of swerl-reward's golden vectors (realistic edits built
from SWE-bench Lite patches, plus long files, exotic line breaks and non-ASCII text). The Python
side scores them in-process with tests/golden/reference.py (the spec on CPython's difflib), and
with the paper's own reward.py too when --swe-rl points at a checkout of facebookresearch/swe-rl.
The swerl side runs the `swerl reward` binary end to end (process start, JSON parsing and output
included) with one thread and with every core. Prints cases/s and the ratios, and checks that
every reward agrees within 1e-9.
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "swerl-reward", "tests", "golden"))
import reference  # noqa: E402


def load_cases(limit):
    cases = []
    with gzip.open(os.path.join(ROOT, "swerl-reward", "tests", "golden", "reward_cases.jsonl.gz"), "rt") as f:
        for line in f:
            task = json.loads(line)
            for c in task["cases"]:
                cases.append((task["code_context"], task["oracle_new_content"], c["output"]))
    return cases[:limit] if limit else cases


def time_python(fn, cases):
    start = time.perf_counter()
    rewards = [fn(ctx, oracle, out) for ctx, oracle, out in cases]
    return time.perf_counter() - start, rewards


def time_swerl(binary, path, jobs, runs=3):
    best, rewards = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([binary, "reward", "--jobs", str(jobs), "--input", path], check=True,
                             capture_output=True, text=True).stdout
        best = min(best, time.perf_counter() - start)
        rewards = [json.loads(line)["reward"] for line in out.splitlines()]
    return best, rewards


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swerl", default=os.path.join(ROOT, "target", "release", "swerl"))
    parser.add_argument("--limit", type=int, default=0, help="score only the first N cases")
    parser.add_argument("--swe-rl", help="checkout of facebookresearch/swe-rl: also time the paper's reward.py")
    args = parser.parse_args()
    if not os.path.exists(args.swerl):
        subprocess.run(["cargo", "build", "--release", "-p", "swerl-cli"], cwd=ROOT, check=True)
    cases = load_cases(args.limit)
    n = len(cases)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cases.jsonl")
        with open(path, "w") as f:
            for ctx, oracle, out in cases:
                f.write(json.dumps({"code_context": ctx, "oracle_new_content": oracle, "output": out}) + "\n")
        rows = []
        py_time, py_rewards = time_python(lambda c, o, x: reference.search_replace_reward(c, o, x)["reward"], cases)
        rows.append(("python reference.py (difflib)", py_time, py_rewards))
        if args.swe_rl:
            sys.path.insert(0, os.path.join(args.swe_rl, "src"))
            # reward.py imports unidiff; make_golden.py keeps a copy here
            sys.path.append(os.path.join(os.path.expanduser("~"), ".cache", "swerl", "unidiff", "1.0.1"))
            from swerl.core.reward import calculate_search_replace_reward
            t, r = time_python(lambda c, o, x: calculate_search_replace_reward(c, o, x)[0], cases)
            rows.append(("python swe-rl reward.py", t, r))
        t1, r1 = time_swerl(args.swerl, path, 1)
        rows.append(("swerl reward --jobs 1", t1, r1))
        cores = os.cpu_count() or 1
        tn, rn = time_swerl(args.swerl, path, 0)
        rows.append((f"swerl reward --jobs {cores} (all cores)", tn, rn))
    print(f"{n} cases")
    print(f"{'scorer':40} {'seconds':>9} {'cases/s':>10} {'vs python':>10} {'max |diff|':>11}")
    for name, t, rewards in rows:
        diff = max(abs(a - b) for a, b in zip(rewards, py_rewards))
        print(f"{name:40} {t:9.3f} {n / t:10.0f} {py_time / t:9.1f}x {diff:11.1e}")
        assert diff <= 1e-9, name


if __name__ == "__main__":
    main()
