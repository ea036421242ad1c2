#!/usr/bin/python3
"""PyTorch CPU training step of the same student sushi trains (pre-norm GQA decoder,
RoPE, SwiGLU, RMSNorm, tied head), f32, AdamW: the alternative bench_train_cpu compares
with. Prints `torch tokens/s X` (median of the timed steps).

usage: torch_train_cpu.py [--threads 2] [--steps 3] [--layers 12] [--C 512] [--H 8]
                          [--G 4] [--F 1408] [--V 32000] [--B 4] [--T 512]
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


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

    @staticmethod
    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        H, G, D = self.H, self.G, self.D
        q, k, v = self.qkv(self.norm(x, self.ln1)).split([H * D, G * D, G * D], -1)
        q = q.view(B, T, H, D).transpose(1, 2)
        k = k.view(B, T, G, D).transpose(1, 2)
        v = v.view(B, T, G, D).transpose(1, 2)

        def rope(t):
            t1, t2 = t[..., : D // 2], t[..., D // 2:]
            return t * cos + torch.cat([-t2, t1], -1) * sin
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(H // G, 1)
        v = v.repeat_interleave(H // G, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * D)
        x = x + self.o(y)
        g, u = self.fc(self.norm(x, self.ln2)).chunk(2, -1)
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
        self.cos = torch.cat([ang.cos(), ang.cos()], -1)
        self.sin = torch.cat([ang.sin(), ang.sin()], -1)
        self.mask = torch.full((a.T, a.T), float("-inf")).triu(1)
        for p in self.parameters():  # sushi's init: matrices N(0, 0.02), norms 1
            if p.dim() == 2:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids, targets):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        logits = Block.norm(x, self.lnf) @ self.emb.weight.T
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    p = argparse.ArgumentParser()
    for k, v in dict(threads=2, steps=3, layers=12, C=512, H=8, G=4, F=1408, V=32000, B=4,
                     T=512).items():
        p.add_argument("--" + k, type=int, default=v)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Student(a)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    ids = torch.randint(0, a.V, (a.B, a.T))
    targets = torch.randint(0, a.V, (a.B, a.T))
    times = []
    for s in range(a.steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = model(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s:
            times.append(time.perf_counter() - t0)
    times.sort()
    print(f"torch loss {loss.item():.4f}")
    print(f"torch tokens/s {a.B * a.T / times[len(times) // 2]:.1f}")


if __name__ == "__main__":
    main()
