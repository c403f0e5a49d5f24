#!/usr/bin/env bash
# Agentless Mini on real SWE-bench Lite instances with SmolLM2-135M-Instruct served by
# `swerl serve`, every stage run (structure, localization, repair, regression and reproduction
# tests, rerank), predictions graded by `swerl eval harness`; then the same instances with the
# gold patch injected as the only repair sample (the plumbing from repair to report).
#
#   REPOS=dir/of/mirrors DATASET=lite-test.json OUT=runs/agentless-lite \
#     swerl-eval/experiments/agentless-lite/run.sh
#
# REPOS holds bare mirrors or clones of the repositories (owner__name.git, owner/name or
# owner+name/repo). Every step resumes: rerunning skips finished instances. Then
# `summarize.py OUT` prints the per-stage, per-instance table of the README.
set -euo pipefail
cd "$(dirname "$0")/../../.."

SWERL=${SWERL:-target/release/swerl}
# A Hub id (through the local Hugging Face cache) or a directory; in the development sandbox,
# MODEL=$(../shared/tools/smollm2-hf.sh).
MODEL=${MODEL:-HuggingFaceTB/SmolLM2-135M-Instruct}
DATASET=${DATASET:?set DATASET to SWE-bench Lite (json, jsonl or parquet)}
REPOS=${REPOS:?set REPOS to the directory of clones or mirrors}
OUT=${OUT:-runs/agentless-lite}
CACHE=${CACHE:-$OUT/cache}                 # environments (shared with eval harness runs)
PORT=${PORT:-18431}
IDS=${IDS:-pytest-dev__pytest-7168 pytest-dev__pytest-7220 pytest-dev__pytest-9359 pytest-dev__pytest-8365 pytest-dev__pytest-5227 pallets__flask-4992 pallets__flask-5063 sphinx-doc__sphinx-8627 pylint-dev__pylint-5859 pylint-dev__pylint-6506}
SAMPLES=${SAMPLES:-4}                      # repair samples (the paper: 500)
LOC_SAMPLES=${LOC_SAMPLES:-2}
REPRO_SAMPLES=${REPRO_SAMPLES:-4}          # upstream Agentless: 40
NEW_TOKENS=${NEW_TOKENS:-768}
FILE_CHARS=${FILE_CHARS:-12000}            # repair prompt's file budget (SmolLM2: 8k context)
WORKERS=${WORKERS:-2}

mkdir -p "$OUT"
"$SWERL" serve --model "$MODEL" --port "$PORT" --served-model-name smollm2 --max-batch 16 \
  2> "$OUT/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" > /dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$OUT/serve.log"; exit 1; }
  sleep 1
done

# shellcheck disable=SC2086
common=(--dataset "$DATASET" --repos "$REPOS" --base-url "http://127.0.0.1:$PORT/v1" --model smollm2
  --instance-ids $IDS --localization-samples "$LOC_SAMPLES" --samples "$SAMPLES"
  --repro-samples "$REPRO_SAMPLES" --max-new-tokens "$NEW_TOKENS" --max-file-chars "$FILE_CHARS"
  --max-workers "$WORKERS" --cache-dir "$CACHE" --request-timeout 3600)
grade() {
  "$SWERL" eval harness --dataset "$DATASET" --repos "$REPOS" --predictions "$OUT/$1/predictions.jsonl" \
    --run-id "$1" --cache-dir "$CACHE" --report-dir "$OUT/$1" --log-root "$OUT/logs" \
    --max-workers "$WORKERS"
}

echo "== the gold patch injected as the repair ($(date -u +%T))"
"$SWERL" eval agentless "${common[@]}" --out "$OUT/gold" --inject-gold-patch
grade gold
echo "== the model repairs ($(date -u +%T))"
"$SWERL" eval agentless "${common[@]}" --out "$OUT/model"
grade model
echo "== done ($(date -u +%T))"
