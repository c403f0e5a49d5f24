#!/usr/bin/env python3
"""Which training instances an SFT run has seen, recomputed from its seeded sampler.

usage: seen_examples.py DATA.jsonl SFT_LOG TOKENIZER.json STEPS [BATCH] [SEED] [MAX_ANSWER_TOKENS]

`swerl sft` builds one example per instance of DATA.jsonl, in file order, leaving out the
instances whose prompt is over budget (named in SFT_LOG, the run's stderr) and those whose
oracle answer is over MAX_ANSWER_TOKENS tokens (384). Epoch 0 visits the examples in a
SplitMix64 Fisher-Yates order seeded from SEED (42), BATCH (4) per step. This script rebuilds
the oracle answers (the rules of swerl-reward's `oracle.rs`, with Python's difflib), counts
their tokens with the model's tokenizer (`tokenizers` package), prints the example count and
answer tokens to compare with the log's `examples:` line, and writes {"seen": [...],
"unseen": [...]} (instance ids) as JSON to stdout. Epoch 0 only: STEPS x BATCH must not pass
the example count.
"""
import json
import re
import sys
import difflib

from tokenizers import Tokenizer

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def scramble(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def mix64(z):
    return scramble((z + GOLDEN) & MASK)


def derive_seed(seed, path):
    acc = mix64(seed)
    for x in path:
        acc = mix64(acc ^ mix64(x))
    return acc


def epoch_order(n, seed, epoch):
    order = list(range(n))
    state = derive_seed(seed, [0x53485546, epoch])
    for i in range(n - 1, 0, -1):
        state = (state + GOLDEN) & MASK
        j = (scramble(state) * (i + 1)) >> 64
        order[i], order[j] = order[j], order[i]
    return order


def apply(text, edits):
    t = "\n" + text
    for s, r in edits:
        if s == r:
            return None
        s, r = "\n" + s, "\n" + r
        if s not in t:
            return None
        t = t.replace(s, r)
    return t[1:]


def minimal_edit(running, target, kept, removed, added, after):
    for total in range(len(kept) + len(after) + 1):
        for before in range(min(total, len(kept)), -1, -1):
            rest = total - before
            if rest > len(after):
                continue
            head, tail = "".join(kept[len(kept) - before:]), "".join(after[:rest])
            s, r = head + "".join(removed) + tail, head + "".join(added) + tail
            if s.endswith("\n") and r.endswith("\n"):
                s, r = s[:-1], r[:-1]
            if s and s != r and apply(running, [(s, r)]) == target:
                return (s, r)
    return None


def file_edits(old, new):
    if not old:
        return [("", new)]
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    edits = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        running = "".join(b[:j1] + a[i1:])
        target = "".join(b[:j2] + a[i2:])
        edits.append(minimal_edit(running, target, b[:j1], a[i1:i2], b[j1:j2], a[i2:]) or (running, target))
    return edits if apply(old, edits) == new else [(old, new)]


def oracle_answer(inst):
    files = []
    for path in sorted(inst["oracle_new_content"]):
        new, old = inst["oracle_new_content"][path], inst["code_context"].get(path)
        if old != new:
            files.append((path, file_edits(old, new)))
    n = sum(len(e) for _, e in files)
    names = ", ".join(f"`{p}`" for p, _ in files)
    out = f"<think>\nThe issue is fixed by changing {names}: {n} edit{'' if n == 1 else 's'}.\n</think>\n<solution>\n"
    for path, edits in files:
        fence = "python" if path.endswith(".py") else ""
        for s, r in edits:
            out += f"```{fence}\n### {path}\n<<<<<<< SEARCH\n{s}\n=======\n{r}\n>>>>>>> REPLACE\n```\n"
    return out + "</solution>"


def main():
    if not 5 <= len(sys.argv) <= 8:
        sys.exit(__doc__)
    data, log, tokenizer, steps = sys.argv[1:5]
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else 42
    max_answer = int(sys.argv[7]) if len(sys.argv) > 7 else 384
    with open(log, encoding="utf-8") as f:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", f.read())
    over_budget = set(re.findall(r"prompt over budget: skipped instance=(\S+)", plain))
    tok = Tokenizer.from_file(tokenizer)
    examples, answer_tokens = [], 0
    with open(data, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                inst = json.loads(line)
            except ValueError as e:
                sys.exit(f"{data}:{n}: {e}")
            if inst["instance_id"] in over_budget:
                continue
            count = len(tok.encode(oracle_answer(inst), add_special_tokens=False).ids) + 1
            if count <= max_answer:
                examples.append(inst["instance_id"])
                answer_tokens += count
    print(f"examples: {len(examples)} ({answer_tokens} answer tokens)", file=sys.stderr)
    visited = int(steps) * batch
    if visited > len(examples):
        sys.exit(f"{steps} steps of {batch} pass the {len(examples)} examples of epoch 0")
    order = epoch_order(len(examples), seed, 0)
    json.dump({"seen": [examples[k] for k in order[:visited]],
               "unseen": [examples[k] for k in order[visited:]]}, sys.stdout)


if __name__ == "__main__":
    main()
