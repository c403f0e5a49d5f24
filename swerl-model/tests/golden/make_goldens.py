#!/usr/bin/env python3
"""Reference values for swerl-model's tests, computed with PyTorch and transformers.

Run with the project's Python env (torch, transformers):

    ~/.cache/swerl/pyenv/bin/python swerl-model/tests/golden/make_goldens.py

Writes `tiny_llama.json` (logits, per-token log-probs/entropies and gradients of two tiny Llama
models whose weights follow a closed formula that the Rust tests reproduce) and `adamw.json`
(torch.optim.AdamW trajectories, gradient clipping and transformers' LR schedules).
"""
import json
import math
import os

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)

CONFIGS = {
    # Untied embeddings, Llama 3 RoPE scaling in the transformers 4.x spelling.
    "untied_llama3_rope": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "vocab_size": 96, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
        "rms_norm_eps": 1e-5, "max_position_embeddings": 128, "tie_word_embeddings": False,
        "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
        "attention_bias": False, "mlp_bias": False,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    },
    # Tied embeddings, biases, default RoPE in the transformers 5.x spelling.
    "tied_bias_rope_parameters": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "vocab_size": 96, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 8,
        "rms_norm_eps": 1e-6, "max_position_embeddings": 128, "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500.0},
        "attention_bias": True, "mlp_bias": True,
        "bos_token_id": 1, "eos_token_id": [2, 3], "pad_token_id": 0,
    },
}


def param_shapes(c):
    """Hugging Face names and shapes, in the order of swerl_model::parameter_shapes."""
    d, f, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", (c["vocab_size"], d))]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        out.append((f"{p}.input_layernorm.weight", (d,)))
        for proj, shape, bias in [("q_proj", (q, d), q), ("k_proj", (kv, d), kv),
                                  ("v_proj", (kv, d), kv), ("o_proj", (d, q), d)]:
            out.append((f"{p}.self_attn.{proj}.weight", shape))
            if c["attention_bias"]:
                out.append((f"{p}.self_attn.{proj}.bias", (bias,)))
        out.append((f"{p}.post_attention_layernorm.weight", (d,)))
        for proj, shape, bias in [("gate_proj", (f, d), f), ("up_proj", (f, d), f),
                                  ("down_proj", (d, f), d)]:
            out.append((f"{p}.mlp.{proj}.weight", shape))
            if c["mlp_bias"]:
                out.append((f"{p}.mlp.{proj}.bias", (bias,)))
    out.append(("model.norm.weight", (d,)))
    if not c["tie_word_embeddings"]:
        out.append(("lm_head.weight", (c["vocab_size"], d)))
    return out


def formula_weight(k, name, shape):
    """Parameter k's values: a closed formula the Rust tests reproduce (glibc `sin`, f64 -> f32)."""
    n = math.prod(shape)
    if name.endswith("norm.weight"):
        vals = [1.0 + 0.1 * math.sin(0.7 * i + k) for i in range(n)]
    elif name.endswith(".bias"):
        vals = [0.05 * math.sin(0.9 * i + 0.5 * k) for i in range(n)]
    else:
        vals = [0.15 * math.sin(0.37 * i + 1.3 * k) for i in range(n)]
    return torch.tensor(vals, dtype=torch.float64).to(torch.float32).reshape(shape)


def build(c):
    cfg = LlamaConfig(**{k: v for k, v in c.items() if k not in ("architectures", "model_type")})
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    sd = {name: formula_weight(k, name, shape) for k, (name, shape) in enumerate(param_shapes(c))}
    if c["tie_word_embeddings"]:
        model.load_state_dict(sd, strict=False)
        model.tie_weights()
    else:
        model.load_state_dict(sd, strict=True)
    return model


SEQUENCES = [[1, 17, 42, 5, 88, 23, 9, 64, 31], [1, 70, 12, 55, 3, 40]]
# Prompt/completion pairs laid out as swerl's TokenBatch: prompts left-padded, completions
# right-padded; position ids count real tokens.
PROMPTS = [[1, 17, 42, 5], [1, 9], [1, 33, 34, 35, 36]]
COMPLETIONS = [[88, 23, 9], [64, 31, 30, 29, 2], [7]]


def layout(prompts, completions, pad=0):
    p_len = max(map(len, prompts))
    c_len = max(map(len, completions))
    ids, att, cmask = [], [], []
    for p, c in zip(prompts, completions):
        ids.append([pad] * (p_len - len(p)) + p + c + [pad] * (c_len - len(c)))
        att.append([0] * (p_len - len(p)) + [1] * (len(p) + len(c)) + [0] * (c_len - len(c)))
        cmask.append([1] * len(c) + [0] * (c_len - len(c)))
    ids, att, cmask = torch.tensor(ids), torch.tensor(att), torch.tensor(cmask)
    pos = (att.cumsum(-1) - 1).clamp(min=0) * att
    return ids, att, cmask, pos, c_len


def token_scores(model, ids, att, pos, c_len, temperature=1.0):
    logits = model(input_ids=ids, attention_mask=att, position_ids=pos).logits.float()
    logits = logits[:, -c_len - 1:-1, :] / temperature
    logp = torch.log_softmax(logits, -1)
    targets = ids[:, -c_len:]
    lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ent = -(logp.exp() * logp).sum(-1)
    return lp, ent


def r(t, nd=7):
    return [round(float(x), nd) for x in t.reshape(-1).tolist()]


def model_goldens(name, c):
    model = build(c)
    out = {"config": c}
    with torch.no_grad():
        out["sequences"] = [
            {"ids": s, "logits": r(model(input_ids=torch.tensor([s])).logits[0])}
            for s in SEQUENCES
        ]
        ids, att, cmask, pos, c_len = layout(PROMPTS, COMPLETIONS)
        lp, ent = token_scores(model, ids, att, pos, c_len)
        lp7, _ = token_scores(model, ids, att, pos, c_len, temperature=0.7)
    m = cmask.float()
    out["batch"] = {
        "prompts": PROMPTS, "completions": COMPLETIONS,
        "logprobs": r(lp * m), "entropies": r(ent * m), "logprobs_t07": r(lp7 * m),
    }
    # Gradients of loss = -sum(lp * w) / n + 0.1 * sum(ent) / n over scored tokens, with
    # per-position weights (advantage-like) so every parameter gets a distinct gradient.
    model.zero_grad()
    lp, ent = token_scores(model, ids, att, pos, c_len)
    n = m.sum()
    w = torch.tensor([[1.0, -0.5, 2.0, 0.3, -1.2][: c_len]] * len(PROMPTS))
    loss = -(lp * w * m).sum() / n + 0.1 * (ent * m).sum() / n
    loss.backward()
    out["loss"] = loss.item()
    out["loss_weights"] = r(w)
    grads = {}
    for pname, p in model.named_parameters():
        g = p.grad.reshape(-1)
        # A spread of entries plus the norm.
        idx = sorted({(i * 7919) % g.numel() for i in range(8)})
        grads[pname] = {"norm": float(g.norm()), "index": idx, "values": r(g[idx], 9)}
    out["grads"] = grads
    return out


def adamw_goldens():
    torch.manual_seed(0)
    p0 = torch.linspace(-1.0, 1.0, 6).reshape(2, 3)
    b0 = torch.tensor([0.5, -0.25, 0.125])
    params = [torch.nn.Parameter(p0.clone()), torch.nn.Parameter(b0.clone())]
    cfg = dict(lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    opt = torch.optim.AdamW([{"params": [params[0]]},
                             {"params": [params[1]], "weight_decay": 0.0}], **cfg)
    steps = []
    for t in range(5):
        g0 = torch.tensor([[math.sin(t + i + 3 * j) for i in range(3)] for j in range(2)])
        g1 = torch.tensor([math.cos(2 * t + i) * 3.0 for i in range(3)])
        params[0].grad, params[1].grad = g0.clone(), g1.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.5)
        lr = 0.01 * [0.5, 1.0, 1.0, 0.75, 0.25][t]
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        steps.append({
            "grad_weight": r(g0, 9), "grad_bias": r(g1, 9), "lr": lr,
            "grad_norm": float(norm),
            "weight": r(params[0].detach(), 9), "bias": r(params[1].detach(), 9),
        })
    opt_sched = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedules = {}
    for kind, fn in [
        ("linear", transformers.get_linear_schedule_with_warmup(opt_sched, 3, 12)),
        ("cosine", transformers.get_cosine_schedule_with_warmup(opt_sched, 3, 12)),
        ("constant", transformers.get_constant_schedule_with_warmup(opt_sched, 3)),
    ]:
        schedules[kind] = [fn.lr_lambdas[0](s) for s in range(14)]
    sched_min = transformers.get_cosine_with_min_lr_schedule_with_warmup(
        opt_sched, 3, 12, min_lr_rate=0.1)
    schedules["cosine_min_lr_0.1"] = [sched_min.lr_lambdas[0](s) for s in range(14)]
    return {"config": {"lr": 0.01, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8,
                       "weight_decay": 0.1, "max_grad_norm": 1.5},
            "weight0": r(p0, 9), "bias0": r(b0, 9), "steps": steps, "schedules": schedules}


def main():
    meta = {"torch": torch.__version__, "transformers": transformers.__version__}
    tiny = {"versions": meta, "models": {n: model_goldens(n, c) for n, c in CONFIGS.items()}}
    with open(os.path.join(HERE, "tiny_llama.json"), "w") as f:
        json.dump(tiny, f)
    with open(os.path.join(HERE, "adamw.json"), "w") as f:
        json.dump({"versions": meta, **adamw_goldens()}, f, indent=1)


if __name__ == "__main__":
    main()
