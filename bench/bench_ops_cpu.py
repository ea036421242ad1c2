#!/usr/bin/env python3
"""PyTorch CPU side of bench/bench_ops_cpu.c: the same ops on the same dev-tier shapes,
forward and backward through autograd as a PyTorch training step would run them.
Prints "NAME ms" per op (mean over repetitions after one warm-up).
Usage: bench_ops_cpu.py THREADS"""
import sys
import time

import torch
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
torch.manual_seed(0)
B, T, C, H, G, D, FF, V, K = 4, 512, 512, 8, 4, 64, 1408, 32000, 32
N = B * T


def timed(name, fn, min_s=0.5, min_reps=3):
    fn()
    reps, t0 = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - t0 < min_s:
        fn()
        reps += 1
    print(f"{name} {(time.perf_counter() - t0) / reps * 1e3:.3f}", flush=True)


x = torch.randn(N, C)
wqkv = torch.randn((H + 2 * G) * D, C) * 0.02
wfc = torch.randn(2 * FF, C) * 0.02
wte = torch.randn(V, C) * 0.02
dfc = torch.randn(N, 2 * FF)
timed("matmul_qkv", lambda: F.linear(x, wqkv))
timed("matmul_fc", lambda: F.linear(x, wfc))
timed("matmul_lmhead", lambda: F.linear(x, wte))
timed("matmul_dW_fc", lambda: dfc.t() @ x)

q = torch.randn(B, H, T, D, requires_grad=True)
k = torch.randn(B, G, T, D, requires_grad=True)
v = torch.randn(B, G, T, D, requires_grad=True)
mask = torch.ones(T, T, dtype=torch.bool).tril()


def attn():
    kk, vv = k.repeat_interleave(H // G, 1), v.repeat_interleave(H // G, 1)
    s = (q @ kk.transpose(-1, -2)) * D ** -0.5
    return torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ vv


do = torch.randn(B, H, T, D)
timed("attention_forward", lambda: attn())
timed("attention_fwd+bwd", lambda: torch.autograd.grad(attn(), (q, k, v), do))

xn = torch.randn(N, C, requires_grad=True)
wn = torch.ones(C, requires_grad=True)
dn = torch.randn(N, C)


def rms():
    return xn * torch.rsqrt(xn.pow(2).mean(-1, keepdim=True) + 1e-5) * wn


timed("rmsnorm_forward", lambda: rms())
timed("rmsnorm_fwd+bwd", lambda: torch.autograd.grad(rms(), (xn, wn), dn))

h = torch.randn(N, 2 * FF, requires_grad=True)
dsw = torch.randn(N, FF)
timed("swiglu_forward", lambda: F.silu(h[:, :FF]) * h[:, FF:])
timed("swiglu_fwd+bwd", lambda: torch.autograd.grad(F.silu(h[:, :FF]) * h[:, FF:], h, dsw))

logits = torch.randn(N, V, requires_grad=True)
y = torch.randint(0, V, (N,))
timed("loss_ce_fwd+bwd", lambda: torch.autograd.grad(
    F.cross_entropy(logits, y, label_smoothing=0.1, reduction="sum"), logits))
ids = torch.randint(0, V, (N, K))
tlp = torch.log_softmax(torch.randn(N, K), -1) - 0.1


def kd():
    lq = torch.log_softmax(logits / 2.0, -1)
    lq_top = lq.gather(1, ids)
    lq_tail = torch.logsumexp(lq.scatter(1, ids, float("-inf")), -1, keepdim=True)
    p = torch.cat([tlp, torch.full((N, 1), -0.1)], 1)
    kl = (p.exp() * (p - torch.cat([lq_top, lq_tail], 1))).sum() * 4.0
    ce = F.cross_entropy(logits, y, label_smoothing=0.1, reduction="sum")
    return 0.5 * kl + 0.5 * ce


timed("loss_kd_fwd+bwd", lambda: torch.autograd.grad(kd(), logits))

n = 16 * 1024 * 1024
p = torch.nn.Parameter(torch.randn(n))
p.grad = torch.randn(n)
opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.1)
timed("adamw_16M", lambda: opt.step())
