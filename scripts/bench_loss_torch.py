#!/usr/bin/env python3
"""The reference loss in PyTorch on the shapes of `sdpo-core/benches/loss.rs`.

    pip install torch
    python3 scripts/bench_loss_torch.py            # [8, 512, 49152], 2 threads
    SDPO_BENCH_BATCH=2 SDPO_BENCH_LEN=128 python3 scripts/bench_loss_torch.py

Same cases as the Rust bench: reading both logit tensors once (the floor),
top-k 100 + tail JSD (alpha 0.5, is_clip 2, token-mean) forward and
forward+backward, and full-vocabulary JSD. The formula is the reference's
(`compute_self_distillation_loss` in lasgroup/SDPO), including how its actor
computes the inputs: `torch.topk` on the student logits, `logsumexp` of both,
`log_softmax` for full vocabulary. Prints the median of N runs per case and
the peak extra memory of one forward+backward (as `benches/loss_memory.rs`).
Run it on an otherwise idle machine.
"""

import gc
import os
import statistics
import time

import torch
import torch.nn.functional as F

THREADS = int(os.environ.get("SDPO_BENCH_THREADS", "2"))
BATCH = int(os.environ.get("SDPO_BENCH_BATCH", "8"))
LEN = int(os.environ.get("SDPO_BENCH_LEN", "512"))
VOCAB = int(os.environ.get("SDPO_BENCH_VOCAB", "49152"))
RUNS = int(os.environ.get("SDPO_BENCH_RUNS", "5"))
ALPHA, TOPK, IS_CLIP = 0.5, 100, 2.0


def add_tail(lp):
    log_s = torch.logsumexp(lp, dim=-1, keepdim=True).clamp(max=-1e-7)
    return torch.cat([lp, torch.log(-torch.expm1(log_s))], dim=-1)


def jsd(s_lp, t_lp):
    a = torch.tensor(ALPHA, dtype=s_lp.dtype)
    mix = torch.logsumexp(torch.stack([s_lp + torch.log(1 - a), t_lp + torch.log(a)]), dim=0)
    kl_t = F.kl_div(mix, t_lp, reduction="none", log_target=True)
    kl_s = F.kl_div(mix, s_lp, reduction="none", log_target=True)
    return torch.lerp(kl_s, kl_t, a).sum(-1)


def loss(s, t, ids, mask, old, topk):
    t = t.detach()
    s_lse = torch.logsumexp(s, -1, keepdim=True)
    s_tok = (s.gather(-1, ids.unsqueeze(-1)) - s_lse).squeeze(-1)
    if topk:
        top, idx = torch.topk(s, TOPK, dim=-1)
        s_lp = add_tail(top - s_lse)
        t_lp = add_tail(t.gather(-1, idx) - torch.logsumexp(t, -1, keepdim=True))
    else:
        s_lp = torch.log_softmax(s, -1)
        t_lp = torch.log_softmax(t, -1)
    per = jsd(s_lp, t_lp.detach())
    ratio = torch.exp((s_tok - old).detach().clamp(-20.0, 20.0)).clamp(max=IS_CLIP)
    per = per * ratio
    return (per * mask).sum() / mask.sum().clamp(min=1.0)


def status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def peak_extra(fn):
    """Peak resident bytes above the current ones while `fn` runs (Linux)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    before = status_bytes("VmRSS")
    fn()
    return status_bytes("VmHWM") - before


def timed(fn):
    fn()  # warm-up
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    s = torch.randn(BATCH, LEN, VOCAB) * 3.0
    t = s + torch.randn(BATCH, LEN, VOCAB)
    ids = torch.randint(0, VOCAB, (BATCH, LEN))
    mask = torch.ones(BATCH, LEN)
    old = torch.randn(BATCH, LEN) - 3.0
    gb = 2 * s.numel() * 4 / 1e9

    def fwd(topk):
        with torch.no_grad():
            return loss(s, t, ids, mask, old, topk).item()

    def fwd_bwd(topk):
        x = s.clone().requires_grad_(True)
        loss(x, t, ids, mask, old, topk).backward()
        return x.grad[0, 0, 0].item()

    cases = [
        ("floor/read_both", lambda: (s.sum() + t.sum()).item()),
        ("topk100_tail_jsd/forward", lambda: fwd(True)),
        ("topk100_tail_jsd/forward_backward", lambda: fwd_bwd(True)),
        ("full_vocab_jsd/forward", lambda: fwd(False)),
        ("full_vocab_jsd/forward_backward", lambda: fwd_bwd(False)),
    ]
    print(f"torch {torch.__version__}, {THREADS} threads, shape [{BATCH}, {LEN}, {VOCAB}], median of {RUNS}")
    for name, fn in cases:
        sec = timed(fn)
        print(f"{name:<36} {sec * 1e3:10.1f} ms   {gb / sec:6.2f} GB/s of logits")
    tensor_mb = s.numel() * 4 / 1e6
    print(f"peak extra memory of forward+backward (one [B, T, V] f32 tensor is {tensor_mb:.0f} MB):")
    for name, topk in [("topk100_tail_jsd", True), ("full_vocab_jsd", False)]:
        x = s.clone().requires_grad_(True)

        def step():
            loss(x, t, ids, mask, old, topk).backward()

        mb = peak_extra(step) / 1e6
        print(f"{name + '/forward_backward':<36} {mb:10.0f} MB   {mb / tensor_mb:5.2f} x [B,T,V]")
        del x
    rows = max(BATCH * LEN // 8, 1)
    part = s.reshape(-1, VOCAB)[:rows]
    sec = timed(lambda: torch.topk(part, TOPK, dim=-1)[1][0, 0].item())
    print(f"{'topk_indices (torch.topk, ' + str(rows) + ' rows)':<36} {sec * 1e3:10.1f} ms")


if __name__ == "__main__":
    main()
