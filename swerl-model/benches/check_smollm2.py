#!/usr/bin/env python3
"""SmolLM2-135M-Instruct through swerl (`swerl logprobs`) against Python `tokenizers` and
transformers, on the real checkpoint (not in CI: CI has no model).

    ~/.cache/swerl/pyenv/bin/python swerl-model/benches/check_smollm2.py [--swerl PATH]

Checks, each printed with its figure:
1. GGUF tokenizer ids == SmolLM2's original tokenizer (byte-level BPE with digits split one by
   one: `Digits(individual_digits=True)` + `ByteLevel`) run by Python `tokenizers`.
2. HF-directory tokenizer ids == transformers' `AutoTokenizer` on that directory.
3. HF-directory log-probs == transformers (f32) on the same bf16 weights.
4. GGUF log-probs == transformers loading the same GGUF (dequantized to f32).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from tokenizers import Tokenizer, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(os.path.dirname(ROOT), "shared", "tools")

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "In 2024, 1234567 people paid $3.50 each; pi ~ 3.14159.",
    "def add(a, b):\n    return a + b  # 42\n\n\tprint(add(1, 2))",
    "<|im_start|>user\nFix the bug in foo.py line 17<|im_end|>\n<|im_start|>assistant\n",
    "Ünïcödé — naïve café, 日本語のテキスト, emoji 😀🚀 and   multiple   spaces",
    "diff --git a/x.py b/x.py\n@@ -10,7 +10,7 @@\n-    x = 1\n+    x = 2\n",
]


def tool(name):
    return subprocess.run([os.path.join(TOOLS, name)], capture_output=True, text=True,
                          check=True).stdout.strip()


def swerl_logprobs(swerl, model, texts):
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "in.jsonl")
        with open(inp, "w") as f:
            for t in texts:
                f.write(json.dumps({"text": t}) + "\n")
        out = subprocess.run([swerl, "logprobs", "--model", model, "--input", inp],
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(out.stderr)
        return [json.loads(l) for l in out.stdout.splitlines()]


def torch_logprobs(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])
    return lp[:, 0].tolist()


def report(name, ok, detail):
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--swerl", default=os.path.join(ROOT, "target", "release", "swerl"))
    args = ap.parse_args()
    gguf, hf = tool("smollm2.sh"), tool("smollm2-hf.sh")
    torch.set_num_threads(os.cpu_count())
    ok = True

    # 1. GGUF tokenizer vs the original SmolLM2 tokenizer (digits split individually).
    ref = Tokenizer.from_file(os.path.join(hf, "tokenizer.json"))
    ref.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    g = swerl_logprobs(args.swerl, gguf, TEXTS)
    mism = [i for i, (t, r) in enumerate(zip(TEXTS, g)) if ref.encode(t).ids != r["tokens"]]
    ok &= report("GGUF tokenizer == tokenizers(Digits+ByteLevel)", not mism,
                 f"{len(TEXTS) - len(mism)}/{len(TEXTS)} texts identical")
    hf_gguf_tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf),
                                                gguf_file=os.path.basename(gguf))
    diff = sum(hf_gguf_tok.encode(t) != r["tokens"] for t, r in zip(TEXTS, g))
    print(f"info  transformers' own GGUF tokenizer agrees on {len(TEXTS) - diff}/{len(TEXTS)} texts")

    # 2. HF directory tokenizer vs transformers.
    h = swerl_logprobs(args.swerl, hf, TEXTS)
    tok = AutoTokenizer.from_pretrained(hf)
    mism = [i for i, (t, r) in enumerate(zip(TEXTS, h)) if tok.encode(t) != r["tokens"]]
    ok &= report("HF tokenizer == transformers AutoTokenizer", not mism,
                 f"{len(TEXTS) - len(mism)}/{len(TEXTS)} texts identical")

    # 3. HF directory log-probs vs transformers (f32 compute on the bf16 checkpoint).
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    worst = max(max(abs(a - b) for a, b in zip(r["logprobs"], torch_logprobs(model, r["tokens"])))
                for r in h)
    ok &= report("HF log-probs == transformers", worst < 1e-3, f"max |diff| = {worst:.2e}")

    # 4. GGUF log-probs vs transformers on the same dequantized GGUF.
    gmodel = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf),
                                                  gguf_file=os.path.basename(gguf),
                                                  dtype=torch.float32).eval()
    worst = max(max(abs(a - b) for a, b in zip(r["logprobs"], torch_logprobs(gmodel, r["tokens"])))
                for r in g)
    ok &= report("GGUF log-probs == transformers(GGUF)", worst < 1e-3, f"max |diff| = {worst:.2e}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
