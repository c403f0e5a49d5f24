"""Rebuilds the vendored SWE-bench samples from the full Lite files.

    python3 tests/data/make_samples.py ../shared/data
"""
import json
import sys
from pathlib import Path

KEYS = ["repo", "instance_id", "base_commit", "patch", "test_patch", "problem_statement",
        "hints_text", "created_at", "version", "FAIL_TO_PASS", "PASS_TO_PASS",
        "environment_setup_commit"]
src = Path(sys.argv[1]) / "swebench"
out = Path(__file__).parent / "swebench"
dev = json.loads((src / "lite-dev.json").read_text())
test = json.loads((src / "lite-test.json").read_text())[::3]
for name, rows in [("lite-dev.json", dev), ("lite-test-sample.json", test)]:
    with open(out / name, "w") as f:
        json.dump([{k: r[k] for k in KEYS} for r in rows], f, indent=1)
