#!/usr/bin/env bash
# GRPO step time of the SmolLM2 example at several commits (default: before the rollout engine,
# the engine commit, HEAD), same defaults and seeds, release builds, REPS runs each.
#
#   swerl-grpo/experiments/step_time.sh [COMMIT ...]
#
# Needs MODEL (an HF-layout SmolLM2-135M-Instruct; default: ../shared/tools/smollm2-hf.sh) and
# writes OUT (default /tmp/swerl-step-time)/<commit>-<rep>/{metrics,completions}.jsonl, then prints
# per-step seconds and whether the logged completions equal the first commit's.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
MODEL=${MODEL:-$(../shared/tools/smollm2-hf.sh)}
OUT=${OUT:-/tmp/swerl-step-time}
REPS=${REPS:-2}
commits=("$@")
[ ${#commits[@]} -gt 0 ] || commits=(40d4844 0d60e9e HEAD)
mkdir -p "$OUT/bin"
for c in "${commits[@]}"; do
  wt="$OUT/worktree-$c"
  rm -rf "$wt"
  git worktree prune
  git worktree add -f --detach "$wt" "$c" >/dev/null
  # Its own target directory: worktrees sharing one confuse cargo's freshness checks.
  (cd "$wt" && CARGO_TARGET_DIR="$OUT/target-$c" cargo build -q --release -p swerl-grpo --example swebench_smollm2)
  cp "$OUT/target-$c/release/examples/swebench_smollm2" "$OUT/bin/$c"
  git worktree remove --force "$wt"
done
for rep in $(seq 1 "$REPS"); do
  for c in "${commits[@]}"; do
    run="$OUT/$c-$rep"
    rm -rf "$run"
    "$OUT/bin/$c" --model "$MODEL" --swebench tests/data/swebench/lite-dev.json --steps 3 --out "$run" >/dev/null
  done
done
first=${commits[0]}
for rep in $(seq 1 "$REPS"); do
  for c in "${commits[@]}"; do
    run="$OUT/$c-$rep"
    same=$(cmp -s "$OUT/$first-1/completions.jsonl" "$run/completions.jsonl" && echo same || echo differ)
    python3 - "$run" "$c" "$rep" "$same" <<'PY'
import json, sys
run, c, rep, same = sys.argv[1:]
m = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
step = [round(x["step_time"], 1) for x in m]
gen = [round(x["time/generation"], 1) for x in m]
print(f"{c:10} run {rep}: step {step} s, sampling {gen} s, completions {same} vs the first commit's run 1")
PY
  done
done
