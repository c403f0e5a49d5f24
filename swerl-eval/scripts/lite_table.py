"""Per-repository table of gold runs from the harness's extras files (`<model>.<run>.swerl.json`).

    python lite_table.py RUN1.swerl.json [RUN1b.swerl.json ...] -- RUN2.swerl.json [...]

Files before `--` are the first run (several files are merged), after it the second; an
instance is flaky when it ran in both and landed in different buckets.
"""

import json
import statistics
import sys
from collections import defaultdict


def load(paths):
    out = {}
    for p in paths:
        out.update(json.load(open(p))["instances"])
    return out


args = sys.argv[1:]
split = args.index("--") if "--" in args else len(args)
first, second = load(args[:split]), load(args[split + 1 :])
rows = defaultdict(lambda: defaultdict(int))
times = defaultdict(lambda: defaultdict(list))
reasons = []
for iid, o in sorted(first.items()):
    repo = iid.rsplit("-", 1)[0].replace("__", "/")
    r = rows[repo]
    b = o["bucket"]
    if b == "environment_unavailable":
        r["env unavailable"] += 1
    else:
        r["ran"] += 1
        r["resolved"] += b == "resolved"
    if b != "resolved":
        reasons.append(f"| {iid} | {b} | {(o['reason'] or '').splitlines()[0][:160]} |")
    if iid in second:
        r["rerun"] += 1
        r["flaky"] += second[iid]["bucket"] != b
    t = o["timings"]
    if b != "environment_unavailable":
        key = "env cached" if o.get("environment_cached") else "env cold"
        times[repo][key].append(t["environment"])
        times[repo]["prepare"].append(t["prepare"])
        times[repo]["test"].append(t["test"])
        times[repo]["total"].append(t["total"])
    if iid in second and second[iid]["bucket"] != "environment_unavailable":
        t2 = second[iid]["timings"]
        times[repo]["env cached"].append(t2["environment"])
        times[repo]["total (rerun)"].append(t2["total"])

print("| repo | ran | gold resolved | env unavailable | rerun | flaky |")
print("|---|---|---|---|---|---|")
tot = defaultdict(int)
for repo, r in sorted(rows.items()):
    print(f"| {repo} | {r['ran']} | {r['resolved']} | {r['env unavailable']} | {r['rerun']} | {r['flaky']} |")
    for k, v in r.items():
        tot[k] += v
print(f"| total | {tot['ran']} | {tot['resolved']} | {tot['env unavailable']} | {tot['rerun']} | {tot['flaky']} |")
print()
cols = ["env cold", "env cached", "prepare", "test", "total", "total (rerun)"]
print("| repo (median s) | " + " | ".join(cols) + " |")
print("|---|" + "---|" * len(cols))
for repo in sorted(times):
    cells = [f"{statistics.median(times[repo][c]):.1f}" if times[repo][c] else "-" for c in cols]
    print(f"| {repo} | " + " | ".join(cells) + " |")
allt = [x for repo in times for x in times[repo]["total"]]
if allt:
    print(f"\nmean total per instance (first run): {statistics.mean(allt):.1f} s over {len(allt)} instances")
    work = [o["timings"]["total"] - o["timings"]["environment"] for o in first.values()
            if o["bucket"] != "environment_unavailable"]
    print(f"mean per instance without the environment stage: {statistics.mean(work):.1f} s")
    if second:
        again = [o["timings"]["total"] for o in second.values() if o["bucket"] != "environment_unavailable"]
        print(f"mean total per instance in the second run (environments cached): {statistics.mean(again):.1f} s "
              f"over {len(again)} instances ({statistics.mean(again) / 60:.2f} worker-minutes)")
        ran = [o["timings"] for o in second.values() if o["bucket"] != "environment_unavailable"]
        stages = ", ".join(f"{k} {statistics.mean(t[k] for t in ran):.1f}"
                           for k in ("environment", "prepare", "apply", "test"))
        print(f"  of which, mean s per stage: {stages}")
print("\n| instance | bucket | reason |\n|---|---|---|")
print("\n".join(reasons))
