#!/usr/bin/env python3
"""Checkpoints written by swerl load in transformers with the same numbers.

    ~/.cache/swerl/pyenv/bin/python swerl-model/benches/check_hf_save.py [MODEL]

MODEL (default: SmolLM2's GGUF from ../shared/tools/smollm2.sh) is converted to a Hugging Face
directory by `examples/convert.rs` (f32 and bf16); transformers then loads each directory
(`AutoModelForCausalLM`, `AutoTokenizer`, chat template, generation config) and its log-probs
are compared with `swerl logprobs` on the same directory.
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(os.path.dirname(ROOT), "shared", "tools")
TEXTS = ["Hello, world! 12345 apples.", "def f(x):\n    return x * 2\n"]


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else subprocess.run(
        [os.path.join(TOOLS, "smollm2.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    rel = os.path.join(ROOT, "target", "release")
    ok = True
    for dtype in ("f32", "bf16"):
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([os.path.join(rel, "examples", "convert"), model, out, dtype], check=True)
            hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
            tok = AutoTokenizer.from_pretrained(out)
            gen = GenerationConfig.from_pretrained(out)
            inp = os.path.join(out, "texts.jsonl")
            with open(inp, "w") as f:
                f.writelines(json.dumps({"text": t}) + "\n" for t in TEXTS)
            res = subprocess.run([os.path.join(rel, "swerl"), "logprobs", "--model", out,
                                  "--input", inp], capture_output=True, text=True, check=True)
            worst = 0.0
            for t, line in zip(TEXTS, res.stdout.splitlines()):
                r = json.loads(line)
                assert tok.encode(t) == r["tokens"], f"token ids differ for {t!r}"
                with torch.no_grad():
                    logits = hf(torch.tensor([r["tokens"]])).logits[0].float()
                lp = torch.log_softmax(logits[:-1], -1).gather(
                    -1, torch.tensor(r["tokens"][1:])[:, None])[:, 0]
                worst = max(worst, max(abs(a - b) for a, b in zip(lp.tolist(), r["logprobs"])))
            chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                           add_generation_prompt=True)
            good = worst < 1e-3
            ok &= good
            print(f"{'PASS' if good else 'FAIL'}  {dtype}: transformers loads it; log-probs max "
                  f"|diff| {worst:.2e}; eos {gen.eos_token_id}; chat template -> {chat!r}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
