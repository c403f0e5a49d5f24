#!/usr/bin/env python3
"""swerl-model against PyTorch/transformers and llama.cpp on this machine, in one run.

    python swerl-model/benches/vs_engines.py [--quick] [--skip-memory] [--skip-decode] [--repeat N]
        [--gguf SmolLM2-135M-Instruct.Q4_1.gguf]

- Training forward+backward tokens/s against PyTorch (same architectures, `tiny` and
  SmolLM2-135M's, random weights, f32, same token counts), and sampling tokens/s.
- Decoding against llama.cpp (`llama-cpp-python` from PyPI builds it): the real SmolLM2-135M
  weights (`--gguf`, default: `../shared/tools/smollm2.sh`), which swerl loads dequantized to f32;
  llama.cpp gets that dequantization written as F32 and BF16 GGUFs (`requant_gguf.py`), so both
  compute with the same numbers. Decode tokens/s at 1 and 8 sequences (prefill timed apart) and
  prefill tokens/s of a 1,000-token prompt, in f32 and bf16 weights.
- The machine's memory bandwidth (STREAM-style copy and read, `bench_model bandwidth`), and the
  weight bandwidth each decoding run reaches.
- Peak memory of a training step against sequence length.

Every measurement runs in a fresh process; `--repeat N` alternates the implementations N times
per workload and reports medians with their ranges, and the load average is printed before and
after. Python side: `pip install torch transformers gguf llama-cpp-python`.
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

# --- PyTorch side (runs in a child process: `vs_engines.py torch <json args>`) -------------


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


# --- llama.cpp side (child process: `vs_engines.py llama <json args>`) ----------------------


def llama_main(spec):
    """Decoding through llama.cpp's C API: `batch` different prompts as separate sequences of one
    context, each step one batch of `batch` tokens, sampled at temperature 1 from the logits
    (numpy), as swerl's engine does."""
    import numpy as np
    import llama_cpp as L

    L.llama_backend_init()
    quiet = L.llama_log_callback(lambda level, text, data: None)  # kept alive: C holds it
    L.llama_log_set(quiet, None)
    model = L.llama_model_load_from_file(spec["gguf"].encode(), L.llama_model_default_params())
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    b, plen, new = spec["batch"], spec["prompt_len"], spec["new"]
    threads = os.cpu_count()
    cp = L.llama_context_default_params()
    cp.n_ctx = b * (plen + new + 16)
    cp.n_batch = cp.n_ubatch = max(512, b * plen)
    cp.n_seq_max = b
    cp.n_threads = cp.n_threads_batch = threads
    ctx = L.llama_init_from_model(model, cp)
    batch = L.llama_batch_init(cp.n_batch, 0, b)
    rng = np.random.default_rng(0)

    def token(i):
        return (i * 7919 + 13) % n_vocab

    def decode(items):
        batch.n_tokens = len(items)
        for i, (tok, pos, seq, logits) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, logits
        if L.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")

    def sample(i):
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,))
        p = np.exp(logits - logits.max())
        return int(rng.choice(n_vocab, p=p / p.sum()))

    def run(n_new):
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        start = time.perf_counter()
        decode([(token(i * 3 + s), i, s, i == plen - 1) for s in range(b) for i in range(plen)])
        last = [sample((s + 1) * plen - 1) for s in range(b)]
        prefill = time.perf_counter() - start
        for step in range(n_new):
            decode([(last[s], plen + step, s, True) for s in range(b)])
            last = [sample(s) for s in range(b)]
        return prefill, time.perf_counter() - start - prefill

    run(4)  # warm-up
    prefill, secs = run(new)
    out = dict(spec)
    out.update({"impl": "llama.cpp", "decode_tokens_per_s": b * new / secs,
                "prefill_tokens_per_s": b * plen / prefill, "threads": threads,
                "peak_rss_mib": peak_rss_mib()})
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
    for k in ("seq", "batch", "iters", "prompt_len", "new", "recompute", "weights"):
        if k in spec:
            cmd += ["--" + k.replace("_", "-"), str(spec[k])]
    return run(cmd)


def torch_run(spec):
    return run([sys.executable, os.path.abspath(__file__), "torch", json.dumps(spec)])


def llama_run(spec):
    return run([sys.executable, os.path.abspath(__file__), "llama", json.dumps(spec)])


def spread(values):
    return f"{min(values):.1f}-{max(values):.1f}"


def decode_section(binary, args):
    """Decoding and prefill: swerl's engine against llama.cpp on the same SmolLM2 weights."""
    gguf = args.gguf or subprocess.run(
        [os.path.join(ROOT, "..", "shared", "tools", "smollm2.sh")], capture_output=True,
        text=True, check=True).stdout.strip()
    work = os.path.join(ROOT, "target", "bench-gguf")
    os.makedirs(work, exist_ok=True)
    copies = {}
    for kind in ("f32", "bf16"):
        copies[kind] = os.path.join(work, f"smollm2-{kind}.gguf")
        if not os.path.exists(copies[kind]):
            subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "requant_gguf.py"),
                            gguf, copies[kind], kind], check=True)
    bw = run([binary, "bandwidth"])
    print(f"\nmemory bandwidth ({bw['threads']} threads, best of 5): copy {bw['copy_gb_per_s']:.1f} GB/s, "
          f"read {bw['read_gb_per_s']:.1f} GB/s")
    workloads = [(w, b, 32, 64) for w in ("f32", "bf16") for b in (1, 8)]
    workloads += [(w, 1, 1000, 1) for w in ("f32", "bf16")]
    print(f"{'decode (SmolLM2-135M)':34} {'swerl tok/s':>12} {'llama.cpp':>10} {'ratio':>6}"
          f" {'swerl range':>13} {'llama range':>13} {'weights GB/s':>13}")
    for weights, b, plen, new in workloads:
        ours, theirs, gbs = [], [], []
        prefill_only = new == 1
        key = "prefill_tokens_per_s" if prefill_only else "decode_tokens_per_s"
        for _ in range(max(1, args.repeat)):
            r = swerl(binary, dict(mode="decode", config=gguf, batch=b, prompt_len=plen, new=new,
                                   weights=weights))
            ours.append(r[key])
            gbs.append(r["weight_gb_per_s"])
            theirs.append(llama_run(dict(gguf=copies[weights], batch=b, prompt_len=plen,
                                         new=new))[key])
        a, c = statistics.median(ours), statistics.median(theirs)
        what = (f"prefill {plen} tokens, {weights}" if prefill_only
                else f"{b} seq, {weights}, {plen}+{new} tokens")
        frac = "" if prefill_only else (f"{statistics.median(gbs):6.1f} "
                                        f"({statistics.median(gbs) / bw['read_gb_per_s']:.0%})")
        print(f"{what:34} {a:12.1f} {c:10.1f} {a / c:6.2f} {spread(ours):>13} {spread(theirs):>13} "
              f"{frac:>13}", flush=True)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "torch":
        return torch_main(json.loads(sys.argv[2]))
    if len(sys.argv) > 2 and sys.argv[1] == "llama":
        return llama_main(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny config only")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-decode", action="store_true", help="no llama.cpp decoding section")
    ap.add_argument("--skip-train", action="store_true", help="no training/sampling section")
    ap.add_argument("--gguf", help="SmolLM2-135M GGUF for the decoding section")
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
    if args.skip_speed or args.skip_train:
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

    if not (args.skip_speed or args.skip_decode or args.quick):
        decode_section(binary, args)
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
