#!/usr/bin/env python3
"""One GRPO step, swerl vs TRL's GRPOTrainer, same tiny model, prompts, batch and lengths, in one
run on this machine's CPU. Prints both median step times and the ratio.

    ~/.cache/swerl/pyenv/bin/python swerl-grpo/benches/grpo_step_vs_trl.py [--steps 4] [--prompts 2]
        [--group 4] [--new-tokens 32] [--max-prompt-tokens 768] [--beta 0] [--reward letters|swerl]

It needs the Python env with torch, transformers and trl (~/.cache/swerl/pyenv), the SmolLM2 HF
directory (../shared/tools/smollm2-hf.sh, for its tokenizer and chat template) and SWE-bench Lite
dev (../shared/data/swebench/lite-dev.json). It builds `target/release/swerl` and the
`swebench_smollm2` example with cargo, writes everything under `bench-out/grpo-vs-trl/`.

What is compared: wall-clock time of a full training step (sampling P x G completions of exactly
`--new-tokens` tokens, scoring, log-probs, backward, AdamW), median over the steps after the
first. The tiny model is a randomly initialised Llama with SmolLM2's tokenizer (vocabulary
49152), so end-of-sequence is practically never sampled and both trainers generate the same
number of tokens. Both use float32 on the CPU, one micro-batch per step (TRL: batch P*G,
gradient_accumulation_steps 1), loss `dapo`, temperature 1, `--beta` (0 by default; 0.04 adds
the reference model's forward pass on both sides).

The reward (`--reward`, default `letters`) is the same function on both sides: the share of
ASCII letters in the completion's text. It varies within every group even for this untrained
model, so both trainers compute the full update on every completion (`frac_reward_zero_std` 0).
With `--reward swerl`, swerl scores with the real SWE-RL reward and TRL with a Python format
check: an untrained model breaks the format every time, every advantage is 0, and swerl (with
beta 0) skips the training pass of such groups while TRL still runs it, which is not a
like-for-like comparison.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "bench-out", "grpo-vs-trl")


def sh(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def make_tiny_model(smol_dir, path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if os.path.exists(os.path.join(path, "model.safetensors")):
        return
    tok = AutoTokenizer.from_pretrained(smol_dir)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    # Generation defaults: sample, no length penalties (both trainers pass their own settings).
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                   "pad_token_id": tok.pad_token_id, "do_sample": True}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--max-prompt-tokens", type=int, default=768)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--reward", choices=["letters", "swerl"], default="letters")
    ap.add_argument("--swebench", default=os.path.join(ROOT, "..", "shared", "data", "swebench", "lite-dev.json"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)

    smol = subprocess.run([os.path.join(ROOT, "..", "shared", "tools", "smollm2-hf.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()
    tiny = os.path.join(OUT, "tiny-llama")
    make_tiny_model(smol, tiny)

    # Build swerl (release) and the prompts through swerl's own prompt builder.
    # One cargo invocation: the same feature set as the example build, so nothing is rebuilt twice.
    sh(["cargo", "build", "--release", "-q", "-p", "swerl-cli", "-p", "swerl-grpo", "--bin", "swerl",
        "--example", "swebench_smollm2"], cwd=ROOT)
    prompts_file = os.path.join(OUT, "prompts.jsonl")
    sh([os.path.join(ROOT, "target", "release", "examples", "swebench_smollm2"), "--model", tiny,
        "--swebench", args.swebench, "--out", os.path.join(OUT, "instances"), "--steps", "0",
        "--write-prompts", prompts_file], cwd=ROOT, stdout=subprocess.DEVNULL)

    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    rows = [json.loads(l) for l in open(prompts_file)]
    keep = []
    for r in rows:
        text = tok.apply_chat_template(r["messages"], add_generation_prompt=True, tokenize=False)
        n = len(tok(text, add_special_tokens=False)["input_ids"])
        if n <= args.max_prompt_tokens:
            keep.append((r, n))
    keep = keep[: args.prompts]
    if len(keep) < args.prompts:
        sys.exit(f"only {len(keep)} prompts fit in {args.max_prompt_tokens} tokens")
    ids = {r["instance_id"] for r, _ in keep}
    print(f"prompts: {[n for _, n in keep]} tokens", file=sys.stderr)
    data = os.path.join(OUT, "rl.jsonl")
    with open(os.path.join(OUT, "instances", "rl_instances.jsonl")) as src, open(data, "w") as dst:
        for line in src:
            if json.loads(line)["instance_id"] in ids:
                dst.write(line)

    P, G, T, S = args.prompts, args.group, args.new_tokens, args.steps

    # swerl.
    run_dir = os.path.join(OUT, "swerl-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.time()
    if args.reward == "swerl":
        sh([os.path.join(ROOT, "target", "release", "swerl"), "--log", "warn", "train", "--model", tiny,
            "--data", data, "--out", run_dir, "--steps", str(S), "--prompts-per-step", str(P),
            "--group-size", str(G), "--max-new-tokens", str(T),
            "--max-prompt-tokens", str(args.max_prompt_tokens + 64), "--micro-batch-size", str(P * G),
            "--generation-batch-size", str(P * G), "--shuffle", "false", "--learning-rate", "1e-6",
            "--save-steps", "0", "--loss-type", "dapo", "--beta", str(args.beta)], cwd=ROOT,
           stdout=subprocess.DEVNULL)
    else:
        # The same trainer through the example, whose environment scores with the letter share.
        toml = os.path.join(OUT, "letters.toml")
        with open(toml, "w") as f:
            f.write(f"steps = {S}\nprompts_per_step = {P}\ngroup_size = {G}\nmax_new_tokens = {T}\n"
                    f"max_prompt_tokens = {args.max_prompt_tokens + 64}\nprompt_overflow = \"skip\"\n"
                    f"micro_batch_size = {P * G}\ngeneration_batch_size = {P * G}\nshuffle = false\n"
                    f"learning_rate = 1e-6\nsave_steps = 0\nlog_completions = 0\n"
                    f"loss_type = \"dapo\"\nbeta = {args.beta}\n")
        sh([os.path.join(ROOT, "target", "release", "examples", "swebench_smollm2"), "--model", tiny,
            "--swebench", args.swebench, "--out", run_dir, "--data", data, "--config", toml,
            "--steps", str(S), "--reward", "letters"], cwd=ROOT, stdout=subprocess.DEVNULL)
    swerl_total = time.time() - t0
    metrics = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    swerl_steps = [m["step_time"] for m in metrics]
    swerl_len = statistics.mean(m["completions/mean_length"] for m in metrics)
    swerl_zero = statistics.mean(m["frac_reward_zero_std"] for m in metrics)

    # TRL.
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    ds = Dataset.from_list([{"prompt": r["messages"]} for r, _ in keep])

    def format_reward(completions, **kw):
        out = []
        for c in completions:
            text = c[0]["content"] if isinstance(c, list) else c
            ok = all(text.count(t) == 1 for t in ("<think>", "</think>", "<solution>", "</solution>"))
            out.append(0.0 if ok else -1.0)
        return out

    def letter_reward(completions, **kw):
        out = []
        for c in completions:
            text = c[0]["content"] if isinstance(c, list) else c
            out.append(sum(ch.isascii() and ch.isalpha() for ch in text) / len(text) if text else 0.0)
        return out

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.lengths, self.zero, self.start = [], [], [], None

        def on_step_begin(self, a, state, control, **kw):
            self.start = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            self.times.append(time.perf_counter() - self.start)

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(logs["completions/mean_length"])
            if logs and "frac_reward_zero_std" in logs:
                self.zero.append(logs["frac_reward_zero_std"])

    cfg = GRPOConfig(
        output_dir=os.path.join(OUT, "trl-run"), per_device_train_batch_size=P * G, num_generations=G,
        gradient_accumulation_steps=1, max_completion_length=T, max_steps=S, learning_rate=1e-6,
        logging_steps=1, report_to=[], use_cpu=True, bf16=False, beta=args.beta, loss_type="dapo",
        temperature=1.0, save_strategy="no", seed=0, dataloader_num_workers=0,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    timer = Timer()
    reward = letter_reward if args.reward == "letters" else format_reward
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds,
                          processing_class=tok, callbacks=[timer])
    t0 = time.time()
    trainer.train()
    trl_total = time.time() - t0
    trl_steps = timer.times
    trl_len = statistics.mean(timer.lengths) if timer.lengths else float("nan")

    med = lambda xs: statistics.median(xs[1:] if len(xs) > 1 else xs)
    s_med, t_med = med(swerl_steps), med(trl_steps)
    print(f"GRPO step, tiny Llama (4 layers, hidden 256, vocab {len(tok)}), P={P} G={G} new_tokens={T}, "
          f"prompts {[n for _, n in keep]} tokens, {torch.get_num_threads()} CPU threads, "
          f"reward {args.reward}, beta {args.beta}")
    print(f"  swerl: steps {[round(x, 2) for x in swerl_steps]} s, median after first {s_med:.2f} s, "
          f"mean completion {swerl_len:.1f} tokens, frac_reward_zero_std {swerl_zero:.2f}, "
          f"whole run {swerl_total:.1f} s")
    print(f"  TRL {__import__('trl').__version__}: steps {[round(x, 2) for x in trl_steps]} s, median after first "
          f"{t_med:.2f} s, mean completion {trl_len:.1f} tokens, frac_reward_zero_std "
          f"{statistics.mean(timer.zero) if timer.zero else float('nan'):.2f}, whole run {trl_total:.1f} s")
    print(f"  ratio TRL / swerl: {t_med / s_med:.2f}x")


if __name__ == "__main__":
    main()
