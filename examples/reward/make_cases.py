#!/usr/bin/env python3
"""Writes examples/reward/cases.jsonl: a few dozen realistic cases for `swerl reward`, taken from
swerl-reward's golden vectors (SWE-bench Lite edits and the spec's rules), one per line with the
expected reward kept under `expected_reward` for comparison."""

import gzip
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
golden = os.path.join(here, "..", "..", "swerl-reward", "tests", "golden", "reward_cases.jsonl.gz")
wanted = ["exact", "minimal", "partial", "mutated", "unindented", "reversed_tags", "extra_new_file", "crlf"]
rows = []
with gzip.open(golden, "rt", encoding="utf-8") as f:
    for k, line in enumerate(f):
        task = json.loads(line)
        if k % 40 != 0 and not task["id"].startswith(("format", "worked")):
            continue
        for case in task["cases"]:
            if task["id"].startswith(("format", "worked")) or case["name"] in wanted[k % 3 :: 3]:
                rows.append({"instance_id": f'{task["id"]}/{case["name"]}', "code_context": task["code_context"],
                             "oracle_new_content": task["oracle_new_content"], "output": case["output"],
                             "expected_reward": case["reward"]})
with open(os.path.join(here, "cases.jsonl"), "w", encoding="utf-8") as f:
    for row in rows:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
print(len(rows), "cases")
