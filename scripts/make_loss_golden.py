#!/usr/bin/env python3
"""Golden data for sdpo-core's losses, computed with the reference formulas.

Run from the repository root (PyTorch, numpy and safetensors from pip):

    pip install torch numpy safetensors
    python3 scripts/make_loss_golden.py

It writes `tests/golden/loss_cases.safetensors` (inputs, expected per-token
losses and gradients) and `tests/golden/loss_cases.json` (each case's config and
expected scalar loss). `tests/backends/loss.rs` checks sdpo-core against them (on every backend);
the Rust tests never run Python.

The formulas are the reference's (lasgroup/SDPO, verl/trainer/ppo/core_algos.py:
`compute_self_distillation_loss`, `agg_loss`, `compute_policy_loss_vanilla`,
`compute_grpo_outcome_advantage`), written out here independently. Expected
values are computed in float64 from the float32 inputs, so they are the exact
reference semantics; the Rust side runs in float32 and is compared with a
relative tolerance. Top-k cases avoid ties straddling the k-th entry (where
`torch.topk` may pick either token) unless teacher logits tie there as well.
"""

import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")


# ---------------------------------------------------------------- reference math
def agg_loss(loss_mat, loss_mask, mode):
    if mode == "token-mean":
        return (loss_mat * loss_mask).sum() / loss_mask.sum().clamp(min=1.0)
    if mode == "seq-mean-token-sum":
        seq = (loss_mat * loss_mask).sum(-1)
        seq_mask = (loss_mask.sum(-1) > 0).to(loss_mat.dtype)
        return (seq * seq_mask).sum() / seq_mask.sum()
    if mode == "seq-mean-token-mean":
        counts = loss_mask.sum(-1)
        seq = (loss_mat * loss_mask).sum(-1) / (counts + 1e-8)
        seq_mask = (counts > 0).to(loss_mat.dtype)
        return (seq * seq_mask).sum() / seq_mask.sum()
    if mode == "seq-mean-token-sum-norm":
        return (loss_mat * loss_mask).sum() / loss_mask.shape[-1]
    raise ValueError(mode)


def add_tail(lp):
    log_s = torch.logsumexp(lp, dim=-1, keepdim=True).clamp(max=-1e-7)
    return torch.cat([lp, torch.log(-torch.expm1(log_s))], dim=-1)


def renorm(lp):
    return lp - torch.logsumexp(lp, dim=-1, keepdim=True)


def kl_div_log_target(inp, target):
    # F.kl_div(inp, target, reduction="none", log_target=True)
    return F.kl_div(inp, target, reduction="none", log_target=True)


def distillation_loss(s_logits, t_logits, ids, mask, old, sdm, rw, cfg):
    t_logits = t_logits.detach()
    s_all = torch.log_softmax(s_logits, -1)
    t_all = torch.log_softmax(t_logits, -1)
    s_tok = s_all.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    t_tok = t_all.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    loss_mask = mask if sdm is None else mask * sdm.unsqueeze(1)
    alpha = cfg["alpha"]
    if cfg["full_logit_distillation"]:
        k = cfg["distillation_topk"]
        if k is not None:
            top, idx = torch.topk(s_logits, k, dim=-1)
            s_lp = top - torch.logsumexp(s_logits, -1, keepdim=True)
            t_lp = t_logits.gather(-1, idx) - torch.logsumexp(t_logits, -1, keepdim=True)
            if cfg["distillation_add_tail"]:
                s_lp, t_lp = add_tail(s_lp), add_tail(t_lp)
            else:
                s_lp, t_lp = renorm(s_lp), renorm(t_lp)
        else:
            s_lp, t_lp = s_all, t_all
        t_lp = t_lp.detach()
        if alpha == 0.0:
            kl = kl_div_log_target(s_lp, t_lp)
        elif alpha == 1.0:
            kl = kl_div_log_target(t_lp, s_lp)
        else:
            a = torch.tensor(alpha, dtype=s_lp.dtype)
            mix = torch.logsumexp(torch.stack([s_lp + torch.log(1 - a), t_lp + torch.log(a)]), dim=0)
            kl_t = kl_div_log_target(mix, t_lp)
            kl_s = kl_div_log_target(mix, s_lp)
            kl = torch.lerp(kl_s, kl_t, a)
        per = kl.sum(-1)
    else:
        assert alpha == 1.0
        per = (s_tok - t_tok.detach()).detach() * s_tok
    if cfg["is_clip"] is not None:
        ratio = torch.exp((s_tok - old).detach().clamp(-20.0, 20.0)).clamp(max=cfg["is_clip"])
        per = per * ratio
    if rw is not None:
        per = per * rw
    return agg_loss(per, loss_mask, cfg["loss_agg_mode"]), per


def grpo_advantages(scores, groups, norm):
    out = []
    for i, g in enumerate(groups):
        members = [scores[j] for j in range(len(groups)) if groups[j] == g]
        if len(members) == 1:
            mean, std = 0.0, 1.0
        else:
            t = torch.tensor(members, dtype=torch.float64)
            mean, std = t.mean().item(), t.std().item()
        out.append((scores[i] - mean) / (std + 1e-6) if norm else scores[i] - mean)
    return out


def policy_loss(logp, old, adv, mask, low, high, c, mode):
    nkl = (logp - old).clamp(-20.0, 20.0)
    ratio = torch.exp(nkl)
    l1 = -adv * ratio
    l2 = -adv * torch.clamp(ratio, 1 - low, 1 + high)
    clip1 = torch.maximum(l1, l2)
    l3 = -adv * c
    clip2 = torch.min(l3, clip1)
    per = torch.where(adv < 0, clip2, clip1)
    return agg_loss(per, mask, mode), per


# ---------------------------------------------------------------- case inputs
def make_inputs(rng, kind, b, t, v):
    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    s = torch.randn(b, t, v, generator=g) * 2.0
    te = s + torch.randn(b, t, v, generator=g) * 1.5
    if kind == "one_hot":  # top-k holds ~all the mass: the tail clamp
        peak = torch.randint(0, v, (b, t), generator=g)
        s.scatter_(-1, peak.unsqueeze(-1), 60.0)
        te.scatter_(-1, peak.unsqueeze(-1), 55.0)
    elif kind == "huge":  # logits of +-1e4
        s = (torch.rand(b, t, v, generator=g) * 2 - 1) * 1e4
        te = (torch.rand(b, t, v, generator=g) * 2 - 1) * 1e4
        s[..., :3] = torch.tensor([1e4, 1e4 - 0.5, 1e4 - 2.0])
        te[..., 1:4] = torch.tensor([1e4, 1e4 - 1.0, 1e4 - 0.25])
    elif kind == "identical":
        te = s.clone()
    elif kind == "ties":  # ties inside the top entries and in the flat tail
        # A 4-way exact tie at the top (inside every k used, k >= 4) and pairs of
        # tied values inside the top-k; the rest is distinct so no tie straddles k.
        s = torch.round(s) + torch.arange(v) * 1e-3
        s[..., :4] = 20.0  # inside every k (k >= 4)
        s[..., -2:] = -30.0  # a tie far below every k
        te = torch.round(te)  # the teacher ties freely
    elif kind == "sharp_teacher":
        te = te * 6.0
    ids = torch.randint(0, v, (b, t), generator=g)
    if kind == "huge":
        # Sampled tokens are likely ones (as in a real rollout): a token with
        # log-prob -1e4 would make the importance ratio exp(logp - old) depend on
        # the last float32 bit of a 1e4-sized number.
        ids = torch.randint(0, 3, (b, t), generator=g)
    return s.float(), te.float(), ids


def ragged_mask(rng, b, t, kind):
    if kind == "full":
        return torch.ones(b, t)
    m = torch.zeros(b, t)
    for i in range(b):
        n = int(rng.integers(1, t + 1))
        m[i, :n] = 1.0
    if kind == "with_empty_row" and b > 1:
        m[-1] = 0.0
    return m


def main():
    rng = np.random.default_rng(20260120)
    supports = [
        ("topk_tail", dict(full_logit_distillation=True, distillation_add_tail=True)),
        ("topk_renorm", dict(full_logit_distillation=True, distillation_add_tail=False)),
        ("full", dict(full_logit_distillation=True, distillation_topk=None)),
        ("sampled", dict(full_logit_distillation=False, alpha=1.0)),
    ]
    alphas = [0.0, 0.5, 1.0, 0.3, 0.9]
    modes = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
    kinds = ["random", "one_hot", "huge", "identical", "ties", "sharp_teacher"]
    vocab_sizes = [16, 50, 128, 257]

    tensors = {}
    cases = []
    n_cases = 48
    for c in range(n_cases):
        # Every (support, input kind) pair twice; the other knobs rotate with
        # different periods so each support meets every alpha and mode.
        sup_name, sup = supports[c % len(supports)]
        kind = kinds[(c // len(supports)) % len(kinds)]
        mode = modes[(c // 2 + c // 9) % len(modes)]
        v = vocab_sizes[(c // 3) % len(vocab_sizes)]
        b, t = 3, 6
        cfg = {
            "alpha": alphas[(c // 4) % len(alphas)],
            "full_logit_distillation": True,
            "distillation_topk": min(v - 1, [5, 10, 4, 20][(c // 5) % 4]),
            "distillation_add_tail": True,
            "is_clip": [None, 2.0, 0.5][(c // 7) % 3],
            "loss_agg_mode": mode,
        }
        cfg.update(sup)
        if not cfg["full_logit_distillation"]:
            cfg["alpha"] = 1.0
        mask_kind = ["full", "ragged", "with_empty_row"][(c // 2) % 3]
        if mode != "token-mean" and mask_kind == "with_empty_row" and c % 2 == 0:
            mask_kind = "ragged"
        s, te, ids = make_inputs(rng, kind, b, t, v)
        mask = ragged_mask(rng, b, t, mask_kind)
        old = None
        if cfg["is_clip"] is not None:
            with torch.no_grad():
                lp = torch.log_softmax(s.double(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
            old = (lp + torch.randn(b, t, dtype=torch.float64) * 0.7).float()
        sdm = None
        if c % 3 == 1:
            sdm = torch.tensor([1.0, 0.0, 1.0])
        rw = None
        if c % 5 == 2:
            rw = (torch.rand(b, t) * 1.5 + 0.25).float()

        s64 = s.double().requires_grad_(True)
        loss64, per64 = distillation_loss(
            s64, te.double(), ids, mask.double(),
            None if old is None else old.double(),
            None if sdm is None else sdm.double(),
            None if rw is None else rw.double(), cfg,
        )
        loss64.backward()
        # The reference evaluated in float32, as it runs in practice: its own
        # rounding error is the yardstick for ill-conditioned cases.
        s32 = s.clone().requires_grad_(True)
        loss32, per32 = distillation_loss(s32, te, ids, mask, old, sdm, rw, cfg)
        loss32.backward()
        assert math.isfinite(loss64.item()), (c, cfg, kind)
        name = f"case{c:02}"
        tensors[f"{name}/student_logits"] = s.contiguous()
        tensors[f"{name}/teacher_logits"] = te.contiguous()
        tensors[f"{name}/response_ids"] = ids.to(torch.int64).contiguous()
        tensors[f"{name}/response_mask"] = mask.contiguous()
        if old is not None:
            tensors[f"{name}/old_log_probs"] = old.contiguous()
        if sdm is not None:
            tensors[f"{name}/self_distillation_mask"] = sdm.contiguous()
        if rw is not None:
            tensors[f"{name}/rollout_is_weights"] = rw.contiguous()
        tensors[f"{name}/expected_per_token_loss"] = per64.detach().contiguous()
        tensors[f"{name}/expected_grad_student_logits"] = s64.grad.detach().float().contiguous()
        tensors[f"{name}/torch_f32_per_token_loss"] = per32.detach().contiguous()
        tensors[f"{name}/torch_f32_grad_student_logits"] = s32.grad.detach().contiguous()
        cases.append({
            "name": name,
            "kind": kind,
            "mask": mask_kind,
            "config": cfg,
            "expected_loss": loss64.item(),
            "torch_float32_loss": loss32.item(),
        })

    # GRPO policy-loss cases.
    policy_cases = []
    for c in range(8):
        b, t = 6, 5
        g = torch.Generator().manual_seed(1000 + c)
        groups = [0, 0, 0, 1, 1, 2] if c % 2 == 0 else [0, 1, 0, 1, 0, 1]
        scores = [float(x) for x in torch.randint(0, 3, (b,), generator=g)]
        norm = c % 3 != 2
        adv = torch.tensor(grpo_advantages(scores, groups, norm), dtype=torch.float64)
        logp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
        old = logp + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.4
        logp, old = logp.float(), old.float()
        mask = ragged_mask(rng, b, t, "ragged")
        mode = modes[c % 4]
        low, high, clip_c = 0.2, [0.2, 0.28][c % 2], 3.0
        lp64 = logp.double().requires_grad_(True)
        loss, per = policy_loss(lp64, old.double(), adv.unsqueeze(1) * mask.double(), mask.double(), low, high, clip_c, mode)
        loss.backward()
        name = f"policy{c:02}"
        tensors[f"{name}/log_probs"] = logp.contiguous()
        tensors[f"{name}/old_log_probs"] = old.contiguous()
        tensors[f"{name}/response_mask"] = mask.contiguous()
        tensors[f"{name}/expected_per_token_loss"] = per.detach().contiguous()
        tensors[f"{name}/expected_grad_log_probs"] = lp64.grad.detach().contiguous()
        policy_cases.append({
            "name": name,
            "scores": scores,
            "groups": groups,
            "norm_adv_by_std_in_grpo": norm,
            "expected_advantages": adv.tolist(),
            "config": {
                "clip_ratio_low": low, "clip_ratio_high": high, "clip_ratio_c": clip_c,
                "loss_agg_mode": mode, "norm_adv_by_std_in_grpo": norm,
            },
            "expected_loss": loss.item(),
        })

    os.makedirs(OUT_DIR, exist_ok=True)
    save_file(tensors, os.path.join(OUT_DIR, "loss_cases.safetensors"))
    with open(os.path.join(OUT_DIR, "loss_cases.json"), "w") as f:
        json.dump({
            "generator": "scripts/make_loss_golden.py",
            "torch_version": torch.__version__,
            "distillation": cases,
            "policy": policy_cases,
        }, f, indent=1)
    print(f"wrote {len(cases)} distillation and {len(policy_cases)} policy cases to {OUT_DIR}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
