#!/usr/bin/env python3
"""swerl-model vs PyTorch/transformers on this machine, in one run: training forward+backward
tokens/s, sampling tokens/s, and peak memory against sequence length.

    ~/.cache/swerl/pyenv/bin/python swerl-model/benches/vs_pytorch.py [--quick] [--skip-memory] [--repeat N]

Both sides use the same architectures (`tiny` and SmolLM2-135M's), random weights, f32, the
same token counts, and all CPU cores. The Rust side is `examples/bench_model.rs` (built
--release); each measurement runs in a fresh process so peak memory is clean.
"""
import argparse
import statistics
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = {
    "tiny": dict(vocab_size=4096, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=32),
    "smollm2": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    head_dim=64, rope_theta=100000.0, tie_word_embeddings=True),
}

# --- PyTorch side (runs in a child process: `vs_pytorch.py torch <json args>`) -------------


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def torch_main(spec):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = dict(rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=8192,
                tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    base.update(CONFIGS[spec["config"]])
    model = LlamaForCausalLM(LlamaConfig(**base)).to(torch.float32)
    vocab = base["vocab_size"]

    def token(i):
        return (i * 7919 + 13) % vocab

    if spec["mode"] == "train":
        seq, batch, iters = spec["seq"], spec["batch"], spec["iters"]
        if spec.get("recompute") == "always":
            model.gradient_checkpointing_enable()
        model.train()
        ids = torch.tensor([[token(i + b) for i in range(seq)] for b in range(batch)])
        half = seq // 2

        def step():
            logits = model(input_ids=ids).logits[:, half - 1:-1].float()
            lp = torch.log_softmax(logits, -1).gather(-1, ids[:, half:, None]).squeeze(-1)
            loss = -lp.mean()
            loss.backward()
            model.zero_grad(set_to_none=True)

        reset_peak()
        step()
        start = time.perf_counter()
        for _ in range(iters):
            step()
        secs = time.perf_counter() - start
        # iters = 0: one warm-up step only (peak-memory runs); no speed to report.
        out = {"tokens_per_s": iters * batch * seq / secs if iters else None,
               "seconds_per_step": secs / iters if iters else None}
    else:
        batch, plen, new = spec["batch"], spec["prompt_len"], spec["new"]
        model.eval()
        ids = torch.tensor([[token(i * 3 + b) for i in range(plen)] for b in range(batch)])
        kwargs = dict(do_sample=True, temperature=1.0, top_p=0.95, top_k=0, max_new_tokens=new,
                      min_new_tokens=new, pad_token_id=2)
        reset_peak()
        with torch.no_grad():
            model.generate(ids[:1], attention_mask=torch.ones_like(ids[:1]), **kwargs)
            start = time.perf_counter()
            out_ids = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            secs = time.perf_counter() - start
        out = {"tokens_per_s": (out_ids.shape[1] - plen) * batch / secs}
    out.update(spec)
    out.update({"impl": "torch", "peak_rss_mib": peak_rss_mib(), "threads": torch.get_num_threads()})
    print(json.dumps(out))


# --- Driver ---------------------------------------------------------------------------------


def run(cmd):
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def swerl(binary, spec):
    cmd = [binary, spec["mode"], "--config", spec["config"]]
    for k in ("seq", "batch", "iters", "prompt_len", "new", "recompute"):
        if k in spec:
            cmd += ["--" + k.replace("_", "-"), str(spec[k])]
    return run(cmd)


def torch_run(spec):
    return run([sys.executable, os.path.abspath(__file__), "torch", json.dumps(spec)])


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "torch":
        return torch_main(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny config only")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--no-build", action="store_true", help="use the existing release build")
    ap.add_argument("--repeat", type=int, default=1,
                    help="alternate the two implementations N times per workload and report "
                         "medians (this machine's timings move by 10-20%% between runs)")
    args = ap.parse_args()
    if not args.no_build:
        # One build for the binary and the examples (same feature set: nothing built twice).
        subprocess.run(["cargo", "build", "--release", "-q", "--workspace", "--bins",
                        "--examples"], cwd=ROOT, check=True)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    binary = os.path.join(ROOT, "target", "release", "examples", "bench_model")

    speed = [
        dict(mode="train", config="tiny", seq=512, batch=4, iters=5, recompute="never"),
        dict(mode="sample", config="tiny", batch=8, prompt_len=32, new=64),
        dict(mode="sample", config="tiny", batch=1, prompt_len=32, new=64),
    ]
    if not args.quick:
        speed += [
            dict(mode="train", config="smollm2", seq=512, batch=1, iters=2, recompute="never"),
            dict(mode="train", config="smollm2", seq=512, batch=1, iters=2, recompute="always"),
            dict(mode="train", config="smollm2", seq=2048, batch=1, iters=1, recompute="never"),
            dict(mode="sample", config="smollm2", batch=8, prompt_len=32, new=32),
            dict(mode="sample", config="smollm2", batch=1, prompt_len=32, new=32),
        ]
    if args.skip_speed:
        speed = []
    else:
        print(f"{'workload':58} {'swerl tok/s':>12} {'torch tok/s':>12} {'ratio':>7}"
              + ("   swerl range    torch range" if args.repeat > 1 else ""))
    for spec in speed:
        ours, theirs = [], []
        for _ in range(max(1, args.repeat)):
            ours.append(swerl(binary, spec)["tokens_per_s"])
            theirs.append(torch_run(spec)["tokens_per_s"])
        a, b = statistics.median(ours), statistics.median(theirs)
        label = " ".join(f"{k}={v}" for k, v in spec.items() if k != "iters")
        line = f"{label:58} {a:12.1f} {b:12.1f} {a / b:7.2f}"
        if args.repeat > 1:
            line += f"  {min(ours):6.0f}-{max(ours):<6.0f} {min(theirs):6.0f}-{max(theirs):<6.0f}"
        print(line, flush=True)

    print(f"load average after speed runs: {os.getloadavg()[0]:.1f}")
    if args.skip_memory:
        return
    config = "tiny" if args.quick else "smollm2"
    print(f"\npeak RSS (MiB) of one training step, {config}, batch 1")
    print(f"{'seq':>6} {'swerl recompute':>16} {'swerl keep':>11} {'torch ckpt':>11} {'torch':>9}")
    for seq in ([512, 2048, 8192] if args.quick else [256, 1024, 4096]):
        row = []
        for impl, rc in (("swerl", "always"), ("swerl", "never"), ("torch", "always"),
                         ("torch", "never")):
            spec = dict(mode="train", config=config, seq=seq, batch=1, iters=0, recompute=rc)
            res = swerl(binary, spec) if impl == "swerl" else torch_run(spec)
            row.append(res["peak_rss_mib"])
        print(f"{seq:6d} {row[0]:16.0f} {row[1]:11.0f} {row[2]:11.0f} {row[3]:9.0f}", flush=True)


if __name__ == "__main__":
    main()
