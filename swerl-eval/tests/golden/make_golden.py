"""Expected outputs of upstream's log parsers, grading and run summary, for swerl-eval's tests.

Run it once per upstream release, each in its own virtual environment:

    python -m venv /tmp/swb4 && /tmp/swb4/bin/pip install swebench==4.1.0
    python -m venv /tmp/swb5 && /tmp/swb5/bin/pip install swebench==5.0.1
    /tmp/swb4/bin/python make_golden.py   # writes expected-v4.json
    /tmp/swb5/bin/python make_golden.py   # writes expected-v5.json

Inputs: the logs under logs/ and the cases in cases.json (read by the Rust tests too).
"""

import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import swebench.harness.log_parsers.python as parsers
from swebench.harness.grading import get_eval_report
from swebench.harness.reporting import make_run_report

HERE = Path(__file__).resolve().parent
MAJOR = version("swebench").split(".")[0]
FAMILIES = {
    "pytest": parsers.parse_log_pytest,
    "pytest-options": parsers.parse_log_pytest_options,
    "pytest-v2": parsers.parse_log_pytest_v2,
    "django": parsers.parse_log_django,
    "sympy": parsers.parse_log_sympy,
    "seaborn": parsers.parse_log_seaborn,
    "matplotlib": parsers.parse_log_matplotlib,
}


def read_log(path):
    return path.read_bytes().decode("utf-8")


def run_parsers():
    out = {}
    for log in sorted((HERE / "logs").glob("*.log")):
        text = read_log(log)
        out[log.name] = {}
        for family, parse in FAMILIES.items():
            try:
                out[log.name][family] = parse(text, None)
            except Exception as e:  # upstream raises; the harness then errors the instance
                out[log.name][family] = {"__crash__": type(e).__name__}
    return out


def run_reports(cases, tmp):
    out = {}
    for case in cases:
        text = read_log(HERE / "logs" / case["log_file"]) if "log_file" in case else case["log"]
        log_path = Path(tmp) / "test_output.txt"
        log_path.write_bytes(text.encode("utf-8"))
        iid = "inst__" + case["name"]
        spec = SimpleNamespace(
            instance_id=iid,
            repo=case["repo"],
            version=case["version"],
            log_parser=case["log_parser"],
            eval_type=case.get("eval_type", "pass_and_fail"),
            FAIL_TO_PASS=case["FAIL_TO_PASS"],
            PASS_TO_PASS=case["PASS_TO_PASS"],
        )
        pred = {
            "instance_id": iid,
            "model_name_or_path": "m",
            "model_patch": case.get("patch", "diff"),
        }
        try:
            report = get_eval_report(spec, pred, str(log_path), include_tests_status=True)
            out[case["name"]] = json.dumps(report, indent=4)
        except Exception as e:
            out[case["name"]] = {"__crash__": type(e).__name__}
    return out


def run_summary(s, tmp):
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        model_dir = s["model"].replace("/", "__")
        for rel, content in s["files"].items():
            p = Path("logs/run_evaluation") / s["run_id"] / model_dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
        preds = {
            iid: {"instance_id": iid, "model_name_or_path": s["model"], "model_patch": patch}
            for iid, patch in s["predictions"].items()
        }
        dataset = [{"instance_id": iid} for iid in s["dataset"]]
        if MAJOR == "4":
            path = make_run_report(preds, dataset, s["run_id"])
        else:
            path = make_run_report(preds, dataset, s["run_id"], report_dir=".")
        return Path(path).read_text()
    finally:
        os.chdir(cwd)


def run_scripts():
    """v4 only: test directives, modified files and the eval script upstream generates."""
    if MAJOR != "4":
        return None
    from swebench.harness.constants import MAP_REPO_VERSION_TO_SPECS
    from swebench.harness.test_spec.python import get_test_directives, make_eval_script_list_py
    from swebench.harness.utils import get_modified_files

    out = {}
    for line in (HERE.parent / "fixtures" / "lite-sample.jsonl").read_text().splitlines():
        inst = json.loads(line)
        specs = MAP_REPO_VERSION_TO_SPECS[inst["repo"]][inst["version"]]
        script = make_eval_script_list_py(
            inst, specs, "testbed", "/testbed", inst["base_commit"], inst["test_patch"]
        )
        out[inst["instance_id"]] = {
            "directives": get_test_directives(inst),
            "modified_files": get_modified_files(inst["test_patch"]),
            "eval_script": "\n".join(["#!/bin/bash", "set -uxo pipefail"] + script) + "\n",
        }
    return out


def main():
    cases = json.loads((HERE / "cases.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        expected = {
            "swebench": version("swebench"),
            "parsers": run_parsers(),
            "reports": run_reports(cases["reports"], tmp),
            "summary": run_summary(cases["summary"], tmp),
        }
        if MAJOR == "4":
            expected["scripts"] = run_scripts()
    target = HERE / f"expected-v{MAJOR}.json"
    target.write_text(json.dumps(expected, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
