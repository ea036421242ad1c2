#!/usr/bin/env python3
"""PyTorch GPU training step of the student bench_train_gpu measures (pre-norm decoder,
RoPE, SwiGLU, RMSNorm, tied head), the strong baseline: bf16 autocast, SDPA (flash)
attention, fused AdamW, gradient clipping, torch.compile. Prints `torch tokens/s X`
(median of the timed steps), the step time and the peak allocated memory.

usage: torch_train_gpu.py [--steps 10] [--layers 12] [--C 768] [--H 12] [--G 12]
                          [--F 2048] [--V 50304] [--B 16] [--T 1024] [--no-compile]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def rmsnorm(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) * w


class Block(torch.nn.Module):
    def __init__(self, C, H, G, Fh):
        super().__init__()
        D = C // H
        self.H, self.G, self.D = H, G, D
        self.ln1 = torch.nn.Parameter(torch.ones(C))
        self.ln2 = torch.nn.Parameter(torch.ones(C))
        self.qkv = torch.nn.Linear(C, (H + 2 * G) * D, bias=False)
        self.o = torch.nn.Linear(H * D, C, bias=False)
        self.fc = torch.nn.Linear(C, 2 * Fh, bias=False)
        self.down = torch.nn.Linear(Fh, C, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        H, G, D = self.H, self.G, self.D
        q, k, v = self.qkv(rmsnorm(x, self.ln1)).split([H * D, G * D, G * D], -1)
        q = q.view(B, T, H, D).transpose(1, 2)
        k = k.view(B, T, G, D).transpose(1, 2)
        v = v.view(B, T, G, D).transpose(1, 2)

        def rope(t):
            t1, t2 = t[..., : D // 2], t[..., D // 2:]
            return (t * cos + torch.cat([-t2, t1], -1) * sin).type_as(t)
        q, k = rope(q), rope(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=G != H)
        x = x + self.o(y.transpose(1, 2).reshape(B, T, H * D))
        g, u = self.fc(rmsnorm(x, self.ln2)).chunk(2, -1)
        return x + self.down(F.silu(g) * u)


class Student(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.emb = torch.nn.Embedding(a.V, a.C)
        self.blocks = torch.nn.ModuleList(Block(a.C, a.H, a.G, a.F) for _ in range(a.layers))
        self.lnf = torch.nn.Parameter(torch.ones(a.C))
        D = a.C // a.H
        inv = 1.0 / 10000 ** (torch.arange(0, D, 2).float() / D)
        ang = torch.arange(a.T).float()[:, None] * inv
        self.register_buffer("cos", torch.cat([ang.cos(), ang.cos()], -1), persistent=False)
        self.register_buffer("sin", torch.cat([ang.sin(), ang.sin()], -1), persistent=False)
        for p in self.parameters():  # sushi's init: matrices N(0, 0.02), norms 1
            if p.dim() == 2:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids, targets):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x, self.cos, self.sin)
        logits = rmsnorm(x, self.lnf) @ self.emb.weight.T
        return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.view(-1))


def main():
    p = argparse.ArgumentParser()
    for k, v in dict(steps=10, layers=12, C=768, H=12, G=12, F=2048, V=50304, B=16,
                     T=1024).items():
        p.add_argument("--" + k, type=int, default=v)
    p.add_argument("--no-compile", action="store_true")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device("cuda")
    model = Student(a).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95),
                            fused=True)
    fwd = model if a.no_compile else torch.compile(model)
    ids = torch.randint(0, a.V, (a.B, a.T), device=dev)
    targets = torch.randint(0, a.V, (a.B, a.T), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    t0 = time.perf_counter()
    for _ in range(3):  # compiles, then warms up
        step()
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(f"torch {torch.__version__} params {n_params} compile {'off' if a.no_compile else 'on'} "
          f"(warm-up {warm:.1f} s)")
    print(f"torch loss {loss.item():.4f}")
    print(f"torch step ms {med * 1e3:.1f}")
    print(f"torch peak memory GiB {torch.cuda.max_memory_allocated() / 2**30:.2f}")
    print(f"torch tokens/s {a.B * a.T / med:.1f}")


if __name__ == "__main__":
    main()
