#!/usr/bin/env python3
"""Reference numbers for swerl-grpo's advantages and policy loss, from TRL's own code.

The loss cases call `trl.GRPOTrainer._compute_loss` itself (TRL 1.16) on a stand-in trainer whose
model forward returns given per-token log-probs, then record the loss, its gradient with respect
to those log-probs and the metrics TRL logs. The advantage cases reproduce TRL's advantage block
(`_generate_and_score_completions`) with the same torch operations in float64.

Run with the project's Python env (torch + trl):
    ~/.cache/swerl/pyenv/bin/python swerl-grpo/tests/golden/make_loss_golden.py
It rewrites `loss_golden.json` beside this script.
"""

import json
import os
import types
from collections import defaultdict

import torch
import trl
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loss_golden.json")


def trl_advantages(rewards, group, scale):
    # TRL 1.16, multi_objective_aggregation="sum_then_normalize", one reward function.
    rewards = torch.tensor(rewards, dtype=torch.float64)
    mean = torch.nanmean(rewards.view(-1, group), dim=1).repeat_interleave(group, dim=0)
    if scale in ("group", "none"):
        std = nanstd(rewards.view(-1, group), dim=1).repeat_interleave(group, dim=0)
    else:
        std = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean
    if scale != "none":
        adv = adv / (std + 1e-4)
    return {
        "rewards": rewards.tolist(),
        "group_size": group,
        "scale_rewards": scale,
        "advantages": adv.tolist(),
        "reward": torch.nanmean(rewards).item(),
        "reward_std": nanstd(rewards).item(),
    }


def fake_trainer(cfg, logp):
    t = object.__new__(GRPOTrainer)
    t.beta = cfg["beta"]
    t.epsilon_low = cfg["epsilon_low"]
    t.epsilon_high = cfg["epsilon_high"]
    t.importance_sampling_level = cfg["importance_sampling_level"]
    t.loss_type = cfg["loss_type"]
    t.max_completion_length = cfg["max_completion_length"]
    t.top_entropy_quantile = 1.0
    t.aux_loss_enabled = False
    t.off_policy_mask_threshold = None
    t.use_vllm = False
    t.vllm_importance_sampling_correction = False
    t._entropy_bonus_enabled = False
    t.current_gradient_accumulation_steps = 1
    t.args = types.SimpleNamespace(use_bias_correction_kl=False, delta=cfg.get("delta"), steps_per_generation=1)
    t.accelerator = types.SimpleNamespace(
        num_processes=1, reduce=lambda x, reduction="sum": x, gather=lambda x: x
    )
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    # `self.model.training` selects the metrics mode; `model` is a read-only attribute on Trainer.
    object.__setattr__(t, "model", types.SimpleNamespace(training=True))
    entropies = torch.full_like(logp, 0.5)
    t._get_per_token_logps_and_entropies = lambda *a, **k: (logp, entropies, None)
    return t


def loss_case(name, cfg, logp, old, ref, adv, mask):
    logp_t = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    mask_t = torch.tensor(mask, dtype=torch.float64)
    b, t = logp_t.shape
    inputs = {
        "prompt_ids": torch.zeros((b, 1), dtype=torch.long),
        "prompt_mask": torch.ones((b, 1), dtype=torch.long),
        "completion_ids": torch.zeros((b, t), dtype=torch.long),
        "completion_mask": mask_t,
        "advantages": torch.tensor(adv, dtype=torch.float64),
        "num_items_in_batch": mask_t.sum(),
    }
    if old is not None:
        inputs["old_per_token_logps"] = torch.tensor(old, dtype=torch.float64)
    if ref is not None:
        inputs["ref_per_token_logps"] = torch.tensor(ref, dtype=torch.float64)
    trainer = fake_trainer(cfg, logp_t)
    loss = GRPOTrainer._compute_loss(trainer, None, inputs)
    loss.backward()
    m = trainer._metrics["train"]
    return {
        "name": name,
        "config": cfg,
        "off_policy": old is not None,
        "loss": loss.item(),
        "grad": logp_t.grad.tolist(),
        "kl": m["kl"][0] if "kl" in m else 0.0,
        "clip_low_mean": m["clip_ratio/low_mean"][0],
        "clip_high_mean": m["clip_ratio/high_mean"][0],
        "clip_region_mean": m["clip_ratio/region_mean"][0],
    }


def main():
    g = torch.Generator().manual_seed(1234)
    b, t = 6, 7
    logp = (-torch.rand((b, t), generator=g, dtype=torch.float64) * 3.0).tolist()
    # Old policy: log-ratios spread over +-0.6 so both clip sides trigger.
    delta = (torch.rand((b, t), generator=g, dtype=torch.float64) - 0.5) * 1.2
    old = (torch.tensor(logp, dtype=torch.float64) - delta).tolist()
    ref = (torch.tensor(logp, dtype=torch.float64) + (torch.rand((b, t), generator=g, dtype=torch.float64) - 0.5)).tolist()
    lengths = [7, 5, 1, 3, 6, 2]
    mask = [[1.0 if j < n else 0.0 for j in range(t)] for n in lengths]
    adv = [0.9, -1.3, 0.0, 0.4, -0.2, 1.7]

    cases = []
    for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
        for level in ("token", "sequence"):
            for beta in (0.0, 0.04):
                for eps_high in (0.2, 0.28):
                    for off in (False, True):
                        cfg = {
                            "loss_type": loss_type,
                            "importance_sampling_level": level,
                            "beta": beta,
                            "epsilon_low": 0.2,
                            "epsilon_high": eps_high,
                            "max_completion_length": 9,
                        }
                        name = f"{loss_type}-{level}-beta{beta}-eh{eps_high}-{'off' if off else 'on'}"
                        cases.append(
                            loss_case(
                                name, cfg, logp, old if off else None, ref if beta else None, adv, mask
                            )
                        )

    # Two-sided clipping (delta) on the off-policy inputs.
    for loss_type in ("grpo", "dapo"):
        for level in ("token", "sequence"):
            cfg = {"loss_type": loss_type, "importance_sampling_level": level, "beta": 0.0, "epsilon_low": 0.2,
                   "epsilon_high": 0.2, "max_completion_length": 9, "delta": 1.3}
            cases.append(loss_case(f"{loss_type}-{level}-delta1.3-off", cfg, logp, old, None, adv, mask))

    rewards = [1.0, 0.0, 0.25, -1.0, 0.5, 0.5, 0.5, 0.5, -1.0, 0.9, 0.1, 0.3, 0.0, 0.0, 1.0, -1.0]
    adv_cases = [trl_advantages(rewards, 4, s) for s in ("group", "batch", "none")]
    adv_cases.append(trl_advantages(rewards, 8, "group"))
    adv_cases.append(trl_advantages(rewards, 2, "batch"))

    with open(OUT, "w") as f:
        json.dump(
            {
                "generator": "make_loss_golden.py",
                "trl_version": trl.__version__,
                "torch_version": torch.__version__,
                "inputs": {"logp": logp, "old_logp": old, "ref_logp": ref, "advantages": adv, "mask": mask},
                "loss_cases": cases,
                "advantage_cases": adv_cases,
            },
            f,
        )
    print(f"wrote {len(cases)} loss cases and {len(adv_cases)} advantage cases to {OUT}")


if __name__ == "__main__":
    main()
