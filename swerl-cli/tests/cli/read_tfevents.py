#!/usr/bin/env python3
"""Print the scalars of a TensorBoard event file (or log directory) as JSON.

Usage: read_tfevents.py PATH

Reads PATH with TensorBoard's own EventAccumulator (all scalar events are kept) and
prints one JSON object {tag: [[step, value], ...], ...}, steps in file order.
Non-finite values are written as the strings "NaN", "Infinity" and "-Infinity" so that
the output is strict JSON. Finite values are the float32 values TensorBoard read,
printed exactly (as Python floats).
Exits 2 on bad usage, 1 if PATH does not exist.
"""
import json
import math
import os
import sys


def _value(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[1]
    if not os.path.exists(path):
        print(f"no such file or directory: {path}", file=sys.stderr)
        return 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(path, size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in sorted(acc.Tags().get("scalars", [])):
        out[tag] = [[e.step, _value(e.value)] for e in acc.Scalars(tag)]
    json.dump(out, sys.stdout, allow_nan=False, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
