#!/usr/bin/env python3
"""Benchmark: `swerl mine` event scanning against plain decompression (`zcat > /dev/null`).

Builds a synthetic-but-realistic archive once (the real GH Archive sample in shared/data,
replicated into larger hour files with distinct repository names and event ids, gzip level 6
like GH Archive), then in the same run times
  1. zcat FILES > /dev/null                        (the peer: decompression alone, one core)
  2. swerl mine --events DIR --out TMP -j 1        (one worker thread)
  3. swerl mine --events DIR --out TMP             (all cores)
and prints events/s, compressed MB/s and the ratio of each swerl run to zcat (goal: <= 2x).

Usage: python3 swerl-data/benches/scan_vs_zcat.py [--files 8] [--events-per-file 25000]
       [--swerl target/release/swerl] [--work /tmp/swerl-bench] [--repeat 3]
Build first: cargo build --release -p swerl-cli
"""
import argparse
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def make_archive(src_dir, dst_dir, files, per_file):
    stamp = os.path.join(dst_dir, f".done-{files}-{per_file}")
    if os.path.exists(stamp):
        return
    shutil.rmtree(dst_dir, ignore_errors=True)
    os.makedirs(dst_dir)
    base = []
    for p in sorted(glob.glob(os.path.join(src_dir, "*.json.gz"))):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            base.extend(json.loads(l) for l in f)
    if not base:
        sys.exit(f"no events in {src_dir}")
    next_id = 30_000_000_000
    copy = 0
    for h in range(files):
        lines = []
        while len(lines) < per_file:
            copy += 1
            for e in base:
                if len(lines) == per_file:
                    break
                e = dict(e)
                next_id += 1
                e["id"] = str(next_id)
                e["repo"] = dict(e["repo"], name=f"{e['repo']['name']}-{copy}")
                lines.append(json.dumps(e, separators=(",", ":"), ensure_ascii=False))
        data = ("\n".join(lines) + "\n").encode()
        with open(os.path.join(dst_dir, f"2021-07-22-{h}.json.gz"), "wb") as f:
            f.write(gzip.compress(data, compresslevel=6))
    open(stamp, "w").close()


def timed(cmd, **kw):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--events-per-file", type=int, default=25_000)
    ap.add_argument("--swerl", default=os.path.join(ROOT, "target", "release", "swerl"))
    ap.add_argument("--work", default="/tmp/swerl-bench")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--source", default=os.path.join(ROOT, "..", "shared", "data", "gharchive"))
    a = ap.parse_args()
    if not os.path.exists(a.swerl):
        sys.exit(f"{a.swerl} not found: cargo build --release -p swerl-cli")
    archive = os.path.join(a.work, "archive")
    make_archive(a.source, archive, a.files, a.events_per_file)
    files = sorted(glob.glob(os.path.join(archive, "*.json.gz")))
    size = sum(os.path.getsize(f) for f in files)
    events = a.files * a.events_per_file
    out = os.path.join(a.work, "out")
    runs = {
        "zcat > /dev/null": lambda: timed(["zcat", *files], stdout=subprocess.DEVNULL),
        "swerl mine -j 1": lambda: timed([a.swerl, "mine", "--events", archive, "--out", out, "-j", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        f"swerl mine (-j {os.cpu_count()})": lambda: timed([a.swerl, "mine", "--events", archive, "--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    best = {}
    for _ in range(a.repeat):  # interleaved, best of N
        for name, run in runs.items():
            shutil.rmtree(out, ignore_errors=True)
            best[name] = min(best.get(name, float("inf")), run())
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["scan"]["events"] == events, summary["scan"]
    print(f"archive: {len(files)} files, {size / 1e6:.1f} MB compressed, {events} events")
    print(f"{'run':<22} {'seconds':>8} {'events/s':>12} {'MB/s':>8} {'vs zcat':>8}")
    z = best["zcat > /dev/null"]
    for name, t in best.items():
        print(f"{name:<22} {t:>8.2f} {events / t:>12,.0f} {size / 1e6 / t:>8.1f} {t / z:>7.2f}x")


if __name__ == "__main__":
    main()
