#!/usr/bin/env python3
"""Per-instance, per-stage table of an Agentless run (run.sh's OUT): seconds per stage, what each
stage found, the rerank's choice and the harness's verdict. Standard library only.

    python3 summarize.py OUT [gold|model ...]
"""
import json
import pathlib
import sys


def verdict(run_dir, run_id, iid):
    for f in run_dir.glob(f"*.{run_id}.json"):
        if f.name.endswith(".swerl.json"):
            continue
        s = json.loads(f.read_text())
        for key in ("resolved_ids", "unresolved_ids", "empty_patch_ids", "error_ids"):
            if iid in s.get(key, []):
                return key.replace("_ids", "")
    return "-"


def main():
    out = pathlib.Path(sys.argv[1])
    runs = sys.argv[2:] or ["gold", "model"]
    for run in runs:
        d = out / run
        trajs = sorted((d / "trajectories").glob("*.json"))
        if not trajs:
            continue
        print(f"\n### {run}: {len(trajs)} instances\n")
        print("| instance | structure | localize | repair | test setup | regression | reproduction | total "
              "| files found | valid repairs | regression tests (fail/total) | test runs s (original/patches) "
              "| repro kept/reproducing/sampled | script runs s | rerank | harness |")
        print("|" + " --- |" * 16)
        totals = {}
        for f in trajs:
            t = json.loads(f.read_text())
            s = t.get("seconds", {})
            for k, v in s.items():
                totals[k] = totals.get(k, 0.0) + v
            loc = t.get("localization") or {}
            rep = t.get("repair") or {}
            samples = rep.get("samples", [])
            valid = sum(1 for x in samples if x["outcome"].get("status") == "patch")
            tests = t.get("tests") or {}
            reg = tests.get("regression")
            if reg:
                fails = [len(r["failures"]) for r in reg["runs"]]
                regs = f"{'/'.join(map(str, fails)) or '-'} of {len(reg['tests'])}"
                runs_s = f"{reg['original']['seconds']:.1f}/{sum(r['seconds'] for r in reg['runs']):.1f}"
            else:
                regs = tests.get("note") or "-"
                runs_s = "-"
            rp = tests.get("reproduction")
            if rp:
                repro = sum(1 for x in rp["samples"] if (x.get("original") or {}).get("verdict") == "reproduced")
                rps = f"{len(rp['selected'])}/{repro}/{len(rp['samples'])}"
                script_s = sum((x.get("original") or {}).get("seconds", 0) for x in rp["samples"])
                script_s += sum(r["seconds"] for p in rp["runs"] for r in p["runs"].values())
                script_s = f"{script_s:.1f}"
            else:
                rps = script_s = "-"
            choice = ((t.get("rerank") or {}).get("choice") or {})
            rr = f"sample {choice['sample']} ({choice['rule']})" if choice else "no patch"
            if t.get("error"):
                rr = "error: " + t["error"][:60]
            print(f"| {t['instance_id']} | {s.get('structure', 0):.1f} | {s.get('localize', 0):.0f} "
                  f"| {s.get('repair', 0):.0f} | {s.get('test_setup', 0):.0f} | {s.get('regression', 0):.0f} "
                  f"| {s.get('reproduction', 0):.0f} | {s.get('total', 0):.0f} | {len(loc.get('files', []))} "
                  f"| {valid}/{len(samples)} | {regs} | {runs_s} | {rps} | {script_s} | {rr} "
                  f"| {verdict(d, run, t['instance_id'])} |")
        n = len(trajs)
        print("\nmean seconds per instance: " + ", ".join(f"{k} {v / n:.1f}" for k, v in totals.items()))


if __name__ == "__main__":
    main()
