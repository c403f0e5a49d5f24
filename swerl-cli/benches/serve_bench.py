#!/usr/bin/env python3
"""`swerl serve` against llama.cpp (llama-cpp-python) and Hugging Face `generate`, in one run on
one machine and one model (SmolLM2-135M-Instruct), three workloads, >= 3 repetitions each:

  single  one stream: one request, `--single-tokens` new tokens, tokens/s
  group   16 samples of one ~1k-token prompt (a GRPO group), `--group-tokens` new tokens each
  http16  16 concurrent HTTP clients with 16 different prompts, `--group-tokens` new tokens each

Who runs what:
  swerl      `swerl serve --model GGUF` (release build), every workload over HTTP with the
             official openai client (group: one request with n=16)
  llama.cpp  the same GGUF; single and group in-process (`llama_cpp.Llama`; no `n`, so the group
             is 16 calls, and 0.3.36 processed the prompt again for each), http16 through
             `python -m llama_cpp.server`
  HF         transformers `generate` on the HF-layout model in float32 (group:
             num_return_sequences=16); no server, so no http16

Same precision on every side: give `--gguf` an F32 or BF16 GGUF (swerl-model's
`benches/requant_gguf.py` writes them) and the matching `--dtype`; swerl then samples in that
precision (`swerl serve --dtype`), llama.cpp computes in the GGUF's, and HF loads the model in
`torch.float32` or `torch.bfloat16`. The load average is printed at the start and the end: a busy
machine makes every figure, llama.cpp's spinning threads most of all, unreliable.

Tokens/s = generated tokens (as each system reports them) / wall seconds, prompt processing
included. Ratios are swerl / peer per repetition; printed as median [min, max] over repetitions.

Setup (PyPI only):
  python3 -m venv bench && bench/bin/pip install 'llama-cpp-python[server]==0.3.36' openai==3.51.0 gguf numpy
  cargo build --release -p swerl-cli
  bench/bin/python swerl-model/benches/requant_gguf.py "$(../shared/tools/smollm2.sh)" smollm2-f32.gguf f32
  bench/bin/python swerl-cli/benches/serve_bench.py --gguf smollm2-f32.gguf --dtype f32 \\
      --hf-dir "$(../shared/tools/smollm2-hf.sh)" \\
      --hf-python ~/.cache/swerl/pyenv/bin/python   # a Python with torch and transformers
  (and the same with bf16)
"""

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import openai

# Plain sampling everywhere: temperature 1, no top-k/top-p/min-p truncation, no repetition penalty
# (llama.cpp's defaults truncate; swerl ignores the fields it does not know).
PLAIN = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}

TOPICS = ["a lighthouse keeper", "a lost robot", "the first snow", "a chess match", "a desert city",
          "an old violin", "a night train", "a garden on Mars", "a stubborn cat", "a deep-sea diver",
          "a forgotten library", "a storm at sea", "a baker's secret", "a mountain rescue",
          "a time traveller", "a street musician"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, proc, what, timeout=300):
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"{what} did not answer at {url}")


def story(topic):
    return f"Write a long, detailed story about {topic}. Once upon a time,"


def long_prompt(llm, n_tokens):
    """About `n_tokens` tokens of Python source (the stdlib's json and textwrap modules)."""
    import json as j
    import textwrap as t
    text = "".join(open(m.__file__).read() for m in (j.decoder, j.encoder, t))
    ids = llm.tokenize(text.encode(), add_bos=False)[:n_tokens]
    return llm.detokenize(ids).decode(errors="ignore") + "\n# Summary of the code above:\n"


def timed(f):
    start = time.perf_counter()
    tokens = f()
    return tokens, time.perf_counter() - start


# ---- swerl serve and llama.cpp's server (OpenAI API) ----

def http_single(client, model, tokens, seed):
    r = client.completions.create(model=model, prompt=story(TOPICS[0]), max_tokens=tokens, temperature=1.0,
                                  top_p=1.0, seed=seed, extra_body=PLAIN)
    return r.usage.completion_tokens


def http_group(client, model, prompt, tokens, seed):
    r = client.completions.create(model=model, prompt=prompt, max_tokens=tokens, temperature=1.0, n=16,
                                  top_p=1.0, seed=seed, extra_body=PLAIN)
    assert len(r.choices) == 16
    return r.usage.completion_tokens


def http16(client, model, tokens, seed):
    def one(i):
        r = client.completions.create(model=model, prompt=story(TOPICS[i]), max_tokens=tokens, temperature=1.0,
                                      top_p=1.0, seed=seed + i, extra_body=PLAIN)
        return r.usage.completion_tokens
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return sum(pool.map(one, range(16)))


# ---- Hugging Face generate, in a Python that has torch ----

HF_SCRIPT = r"""
import json, sys, time, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
cfg = json.load(sys.stdin)
torch.set_num_threads(cfg["threads"])
tok = AutoTokenizer.from_pretrained(cfg["dir"])
model = AutoModelForCausalLM.from_pretrained(cfg["dir"], dtype=getattr(torch, cfg["dtype"])).eval()
def gen(prompt, n, tokens, seed):
    ids = tok(prompt, return_tensors="pt").input_ids
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=tokens,
                             num_return_sequences=n, pad_token_id=tok.eos_token_id)
    secs = time.perf_counter() - start
    new = out[:, ids.shape[1]:]
    count = 0
    for row in new.tolist():
        count += next((i + 1 for i, t in enumerate(row) if t == tok.eos_token_id), len(row))
    return count, secs
gen(cfg["single_prompt"], 1, 8, 0)  # warm-up
res = {"single": [], "group": []}
for r in range(cfg["reps"]):
    res["single"].append(gen(cfg["single_prompt"], 1, cfg["single_tokens"], r))
    res["group"].append(gen(cfg["group_prompt"], 16, cfg["group_tokens"], r))
print(json.dumps(res))
"""


def run_hf(args, group_prompt):
    cfg = {"dir": args.hf_dir, "dtype": {"f32": "float32", "bf16": "bfloat16"}[args.dtype], "threads": args.threads,
           "reps": args.reps, "single_prompt": story(TOPICS[0]),
           "single_tokens": args.single_tokens, "group_prompt": group_prompt, "group_tokens": args.group_tokens}
    out = subprocess.run([args.hf_python, "-c", HF_SCRIPT], input=json.dumps(cfg), capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"HF generate failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: [tuple(x) for x in v] for k, v in res.items()}


def summary(xs):
    xs = sorted(xs)
    return f"{statistics.median(xs):8.1f} [{xs[0]:.1f}, {xs[-1]:.1f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--swerl", default="target/release/swerl")
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--hf-dir", required=True)
    ap.add_argument("--hf-python", required=True)
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32",
                    help="swerl's sampling precision (`swerl serve --dtype`) and HF's; match it to the GGUF's")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--single-tokens", type=int, default=128)
    ap.add_argument("--group-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=1000)
    ap.add_argument("--skip", default="", help="comma-separated systems to leave out: hf,llama")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"load average at start: {os.getloadavg()}; dtype {args.dtype}; gguf {args.gguf}", flush=True)
    from llama_cpp import Llama

    results = {}  # (system, workload) -> [(tokens, seconds)] per repetition
    llm = Llama(model_path=args.gguf, n_ctx=4096, n_threads=args.threads, n_batch=512, verbose=False, seed=0)
    group_prompt = long_prompt(llm, args.prompt_tokens)
    print(f"group prompt: {len(llm.tokenize(group_prompt.encode()))} llama.cpp tokens", flush=True)

    # swerl serve
    port = free_port()
    log = open("serve_bench.swerl.log", "w")
    proc = subprocess.Popen([args.swerl, "serve", "--model", args.gguf, "--port", str(port), "--max-batch", "32",
                             "--dtype", args.dtype, "--served-model-name", "smollm2"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc, "swerl serve")
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=600)
        http_single(c, "smollm2", 8, 0)  # warm-up
        for r in range(args.reps):
            results.setdefault(("swerl", "single"), []).append(timed(lambda: http_single(c, "smollm2", args.single_tokens, r)))
            results.setdefault(("swerl", "group"), []).append(timed(lambda: http_group(c, "smollm2", group_prompt, args.group_tokens, r)))
            results.setdefault(("swerl", "http16"), []).append(timed(lambda: http16(c, "smollm2", args.group_tokens, 100 * r)))
            print(f"swerl rep {r}: " + ", ".join(f"{w} {results[('swerl', w)][-1]}" for w in ("single", "group", "http16")), flush=True)
    finally:
        proc.terminate()
        proc.wait()

    # llama.cpp in-process, then its server
    if "llama" not in skip:
        def ll_single(r):
            out = llm.create_completion(story(TOPICS[0]), max_tokens=args.single_tokens, temperature=1.0, seed=r,
                                      top_p=1.0, **PLAIN)
            return out["usage"]["completion_tokens"]

        def ll_group(r):
            llm.reset()  # no `n`: 16 calls (llama-cpp-python may reuse a matching prefix)
            return sum(llm.create_completion(group_prompt, max_tokens=args.group_tokens, temperature=1.0,
                                             seed=1000 * r + i, top_p=1.0, **PLAIN)["usage"]["completion_tokens"] for i in range(16))
        ll_single(0)
        for r in range(args.reps):
            results.setdefault(("llama.cpp", "single"), []).append(timed(lambda: ll_single(r)))
            results.setdefault(("llama.cpp", "group"), []).append(timed(lambda: ll_group(r)))
            print(f"llama.cpp rep {r}: single {results[('llama.cpp', 'single')][-1]}, group {results[('llama.cpp', 'group')][-1]}", flush=True)
        del llm
        port = free_port()
        slog = open("serve_bench.llama-server.log", "w")
        srv = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", args.gguf, "--port", str(port),
                                "--n_ctx", "4096", "--n_threads", str(args.threads), "--model_alias", "smollm2",
                                "--interrupt_requests", "False"],
                               stdout=slog, stderr=slog)
        try:
            wait_http(f"http://127.0.0.1:{port}/v1/models", srv, "llama_cpp.server")
            c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=600)
            http_single(c, "smollm2", 8, 0)
            for r in range(args.reps):
                results.setdefault(("llama.cpp", "http16"), []).append(timed(lambda: http16(c, "smollm2", args.group_tokens, 100 * r)))
                print(f"llama.cpp server rep {r}: http16 {results[('llama.cpp', 'http16')][-1]}", flush=True)
        finally:
            srv.terminate()
            srv.wait()

    if "hf" not in skip:
        hf = run_hf(args, group_prompt)
        results[("HF", "single")] = hf["single"]
        results[("HF", "group")] = hf["group"]
        print(f"HF: {hf}", flush=True)

    print(f"\nmachine: {os.cpu_count()} cores; threads {args.threads}; {args.reps} repetitions; "
          f"dtype {args.dtype}; median [min, max]; load average at end: {os.getloadavg()}")
    print(f"{'workload':8} {'system':10} {'tokens/s':>24}   swerl / system")
    for w in ("single", "group", "http16"):
        base = [t / s for t, s in results[("swerl", w)]]
        for system in ("swerl", "llama.cpp", "HF"):
            if (system, w) not in results:
                continue
            tps = [t / s for t, s in results[(system, w)]]
            ratio = "" if system == "swerl" else summary([b / p for b, p in zip(base, tps)])
            print(f"{w:8} {system:10} {summary(tps):>24}   {ratio}")


if __name__ == "__main__":
    main()
