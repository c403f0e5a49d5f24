#!/usr/bin/env bash
# SmolLM2-135M-Instruct on CPU: base -> SFT -> GRPO from the SFT model (without, then with
# dynamic sampling), and GRPO from the base model with dynamic sampling (GRPO_FROM_BASE=1), each
# checked on the same held-out set (greedy answers with the
# oracle files; format-correct rate and mean reward with 95% bootstrap intervals). The base model
# and each stage's final model are also checked on SWE-bench Lite dev (LITEDEV, the second held-out
# set: the files as far as the gold patches' hunks show them).
#
#   DATA=dir/with/train.jsonl+heldout.jsonl OUT=runs/smollm2 swerl-grpo/experiments/smollm2/run.sh
#
# DATA comes from `swerl mine` in git-only mode over real clones and `select_rl.py` (see the
# README beside this script). Every stage resumes: rerunning the script continues where it
# stopped. Sizes are chosen for a 2-core CPU; scale them with the variables below on a GPU.
set -euo pipefail
cd "$(dirname "$0")/../../.."

SWERL=${SWERL:-target/release/swerl}
# A Hub id (through the local Hugging Face cache) or a directory; in the development sandbox,
# MODEL=$(../shared/tools/smollm2-hf.sh).
MODEL=${MODEL:-HuggingFaceTB/SmolLM2-135M-Instruct}
DATA=${DATA:?set DATA to a directory with train.jsonl and heldout.jsonl}
OUT=${OUT:-runs/smollm2}
HELDOUT_PER_REPO=${HELDOUT_PER_REPO:-8}   # held-out instances per repository
PROMPT=${PROMPT:-1536}                    # prompt budget (tokens)
ANSWER=${ANSWER:-384}                     # generated tokens per answer
SFT_EPOCHS=${SFT_EPOCHS:-2}
SFT_STEPS=${SFT_STEPS:-0}                 # 0: SFT_EPOCHS over the data (262 examples: 66 steps each)
SFT_BATCH=${SFT_BATCH:-4}
SFT_LR=${SFT_LR:-1e-4}
SFT_EVAL=${SFT_EVAL:-33}                  # SFT steps between held-out checks (and checkpoints)
GRPO_STEPS=${GRPO_STEPS:-2}
GRPO_EVAL=${GRPO_EVAL:-2}
GRPO_PROMPTS=${GRPO_PROMPTS:-2}
GRPO_GROUP=${GRPO_GROUP:-4}
GRPO_ANSWER=${GRPO_ANSWER:-256}           # sampled tokens per GRPO completion
GRPO_LR=${GRPO_LR:-5e-6}
DS_STEPS=${DS_STEPS:-4}                   # GRPO with dynamic sampling (from the SFT model)
DS_PROMPTS=${DS_PROMPTS:-4}               # its prompts per step
DS_ROUNDS=${DS_ROUNDS:-4}                 # its extra sampling rounds at most
DS_EVAL=${DS_EVAL:-4}                     # its steps between held-out checks (and checkpoints)
DS_ROLLOUT=${DS_ROLLOUT:-bf16}            # its rollout weights (and held-out checks): model, bf16, f16
GRPO_FROM_BASE=${GRPO_FROM_BASE:-0}       # 1 adds GRPO from the base model (dynamic sampling)
DEVICE=${DEVICE:-cpu}
LITEDEV=${LITEDEV:-tests/data/swebench/lite-dev.json}   # second held-out set; empty: skip it

mkdir -p "$OUT"
# The held-out set: the first HELDOUT_PER_REPO instances of each held-out repository.
python3 - "$DATA/heldout.jsonl" "$OUT/heldout.jsonl" "$HELDOUT_PER_REPO" <<'PY'
import json, sys, collections
src, dst, per = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = collections.Counter()
with open(src) as f, open(dst + ".tmp", "w") as out:
    for line in f:
        repo = json.loads(line)["instance_id"].rsplit("-", 1)[0]
        if seen[repo] < per:
            seen[repo] += 1
            out.write(line)
import os; os.replace(dst + ".tmp", dst)
print(f"held-out: {sum(seen.values())} instances from {len(seen)} repositories", file=sys.stderr)
PY

common=(--device "$DEVICE")
check=(--eval-data "$OUT/heldout.jsonl" --eval-max-new-tokens "$ANSWER")
t0=$(date +%s)
stamp() { echo "=== $* ($(( $(date +%s) - t0 )) s)"; }
# litedev NAME MODEL: the second held-out check (greedy, oracle files), once per NAME.
litedev() {
    [ -n "$LITEDEV" ] || return 0
    [ -f "$OUT/litedev/$1/summary.json" ] && return 0
    stamp "Lite dev check: $1"
    "$SWERL" eval repair --model "$2" "${common[@]}" --data "$LITEDEV" --oracle-files \
        --max-prompt-tokens "$PROMPT" --max-new-tokens "$ANSWER" --out "$OUT/litedev/$1"
}

# The SFT run's check at step 0 is the base model's.
stamp "SFT"
"$SWERL" sft --model "$MODEL" "${common[@]}" --data "$DATA/train.jsonl" --out "$OUT/sft" --resume \
    --epochs "$SFT_EPOCHS" --max-steps "$SFT_STEPS" --batch-size "$SFT_BATCH" --learning-rate "$SFT_LR" --warmup-steps 3 \
    --max-prompt-tokens "$PROMPT" --max-answer-tokens "$ANSWER" --save-steps "$SFT_EVAL" \
    --save-total-limit 2 --eval-steps "$SFT_EVAL" "${check[@]}"
litedev sft "$OUT/sft/final"

grpo=(--data "$DATA/train.jsonl" --group-size "$GRPO_GROUP"
      --max-new-tokens "$GRPO_ANSWER" --max-prompt-tokens "$PROMPT" --learning-rate "$GRPO_LR"
      --generation-batch-size 16 --micro-batch-size 2 --resume "${check[@]}")
plain=(--prompts-per-step "$GRPO_PROMPTS" --steps "$GRPO_STEPS" --eval-steps "$GRPO_EVAL" --save-steps "$GRPO_EVAL")

stamp "GRPO from the SFT model"
"$SWERL" train --model "$OUT/sft/final" "${common[@]}" --out "$OUT/grpo_sft" "${grpo[@]}" "${plain[@]}"

stamp "GRPO from the SFT model, dynamic sampling"
"$SWERL" train --model "$OUT/sft/final" "${common[@]}" --out "$OUT/grpo_sft_ds" "${grpo[@]}" \
    --prompts-per-step "$DS_PROMPTS" --steps "$DS_STEPS" --eval-steps "$DS_EVAL" --save-steps "$DS_EVAL" \
    --max-sampling-rounds "$DS_ROUNDS" --rollout-dtype "$DS_ROLLOUT"
litedev grpo_sft_ds "$OUT/grpo_sft_ds/checkpoint-$DS_STEPS"

runs=("$OUT/sft" "$OUT/grpo_sft" "$OUT/grpo_sft_ds")
if [ "$GRPO_FROM_BASE" != 0 ]; then
    stamp "GRPO from the base model, dynamic sampling"
    "$SWERL" train --model "$MODEL" "${common[@]}" --out "$OUT/grpo_base" "${grpo[@]}" "${plain[@]}" \
        --max-sampling-rounds "$DS_ROUNDS"
    runs+=("$OUT/grpo_base")
fi

litedev base "$MODEL"

stamp "curves"
"$SWERL" plot "${runs[@]}" --out "$OUT/curves.png"
"$SWERL" plot "${runs[@]}" --out "$OUT/curves.svg"
stamp "done"
