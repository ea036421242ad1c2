#!/usr/bin/env python3
"""PyTorch reference for the op table (tests/unit/test_ops_cpu.c).

Usage: ops_ref.py DIR. DIR/manifest.json lists cases {"case": "cN", "op": ..., args};
DIR/cN.NAME.bin hold raw little-endian f32/i32 arrays (inputs, and the backend's results
as out_*). Every reference is computed in float64, backward ops by torch autograd.
Prints "ERR cN op tensor relerr" (‖a − b‖₂/‖b‖₂, or ‖a‖₂ when b = 0) per tensor, then
"DONE n"."""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


class Case:
    def __init__(self, root, spec):
        self.root, self.spec, self.name, self.op = root, spec, spec["case"], spec["op"]

    def __getitem__(self, key):
        return self.spec[key]

    def has(self, name):
        return os.path.exists(self.path(name))

    def path(self, name):
        return os.path.join(self.root, f"{self.name}.{name}.bin")

    def f32(self, name):
        return torch.from_numpy(np.fromfile(self.path(name), dtype="<f4").astype(np.float64))

    def i32(self, name):
        return torch.from_numpy(np.fromfile(self.path(name), dtype="<i4").astype(np.int64))

    def report(self, tensor, ref, got=None):
        got = self.f32("out_" + tensor) if got is None else got
        ref = ref.detach().reshape(-1)
        got = got.reshape(-1)
        if got.shape != ref.shape:
            err = float("inf")
        else:
            den = torch.linalg.norm(ref).item()
            num = torch.linalg.norm(got - ref).item()
            err = num / den if den > 0 else num
            if not torch.isfinite(got).all():
                err = float("inf")
        print(f"ERR {self.name} {self.op} {tensor} {err:.6e}")


def matmul(c):
    m, n, k = c["m"], c["n"], c["k"]
    a = c.f32("a").view(-1, c["lda"])
    b = c.f32("b").view(-1, c["ldb"])
    c0 = c.f32("c0").view(m, c["ldc"])
    A = a[:k, :m].t() if c["ta"] else a[:m, :k]
    B = b[:n, :k].t() if c["tb"] else b[:k, :n]
    ref = c0.clone()
    ref[:, :n] = c["alpha"] * (A @ B) + c["beta"] * c0[:, :n]
    c.report("c", ref)


def elementwise(c):
    a, b, al = c.f32("a"), c.f32("b"), c["alpha"]
    c.report("add", a + b)
    c.report("axpy", c.f32("y0") + al * a)
    c.report("scale", c.f32("s0") * al)
    c.report("fill", torch.full_like(a, c["fill"]))
    c.report("sumsq", (a * a).sum().reshape(1))


def embedding(c):
    V, N, C = c["V"], c["N"], c["C"]
    ids = c.i32("ids")
    table = c.f32("table").view(V, C).requires_grad_()
    out = F.embedding(ids, table)
    (g,) = torch.autograd.grad(out, table, c.f32("dout").view(N, C))
    c.report("out", out)
    c.report("dtable", c.f32("dtable0").view(V, C) + g)


def rmsnorm(c):
    N, C = c["N"], c["C"]
    x = c.f32("x").view(N, C).requires_grad_()
    w = c.f32("w").requires_grad_()
    rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["eps"])
    out = x * rstd * w
    dx, dw = torch.autograd.grad(out, (x, w), c.f32("dout").view(N, C))
    c.report("out", out)
    c.report("rstd", rstd)
    c.report("dx", dx)
    c.report("dw", c.f32("dw0") + dw)


def swiglu(c):
    N, Fh = c["N"], c["F"]
    h = c.f32("h").view(N, 2 * Fh).requires_grad_()
    out = F.silu(h[:, :Fh]) * h[:, Fh:]
    (dh,) = torch.autograd.grad(out, h, c.f32("dout").view(N, Fh))
    c.report("out", out)
    c.report("dh", dh)


def rope(c):
    N, R, nh, hs, off, rot = c["N"], c["row_stride"], c["nheads"], c["head_stride"], c["offset"], c["rot_dim"]
    half = rot // 2
    pos = c.i32("pos")
    cos = c.f32("cos").view(-1, half)[pos]   # [N, half]
    sin = c.f32("sin").view(-1, half)[pos]
    x = c.f32("x").view(N, R).requires_grad_()
    cols = []
    for h in range(nh):
        base = off + h * hs
        if c["interleaved"]:
            i0 = [base + 2 * i for i in range(half)]
            i1 = [base + 2 * i + 1 for i in range(half)]
        else:
            i0 = [base + i for i in range(half)]
            i1 = [base + half + i for i in range(half)]
        cols.append((i0, i1))
    y = x.clone()
    for i0, i1 in cols:
        a, b = x[:, i0], x[:, i1]
        y[:, i0] = a * cos - b * sin
        y[:, i1] = a * sin + b * cos
    (dx,) = torch.autograd.grad(y, x, c.f32("dy").view(N, R))
    c.report("y", y)
    c.report("dx", dx)


def attention(c):
    B, T, H, G, dqk, dv, pad = c["B"], c["T"], c["H"], c["G"], c["dqk"], c["dv"], c["pad"]
    N = B * T

    def heads(buf, nh, d):
        full = buf.view(N, nh * d + pad)
        return full, full[:, : nh * d].reshape(B, T, nh, d).transpose(1, 2)   # [B, nh, T, d]

    _, q = heads(c.f32("q"), H, dqk)
    _, k = heads(c.f32("k"), G, dqk)
    _, v = heads(c.f32("v"), G, dv)
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    rep = H // G
    kk, vv = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    i = torch.arange(T).view(T, 1)
    j = torch.arange(T).view(1, T)
    mask = (j <= i).view(1, 1, T, T).expand(B, 1, T, T)
    if c["window"] > 0:
        mask = mask & (j > i - c["window"]).view(1, 1, T, T)
    if c.has("doc"):
        doc = c.i32("doc").view(B, T)
        mask = mask & (doc.view(B, 1, T, 1) == doc.view(B, 1, 1, T))
    s = (q @ kk.transpose(-1, -2)) * c["scale"]
    s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, -1)                    # [B, H, T]
    out = torch.softmax(s, -1) @ vv                # [B, H, T, dv]
    dout = c.f32("dout").view(N, H * dv + pad)[:, : H * dv].reshape(B, T, H, dv).transpose(1, 2)
    dq, dk, dvv = torch.autograd.grad(out, (q, k, v), dout)

    def region(name, nh, d):
        full, h = heads(c.f32("out_" + name), nh, d)
        # padding columns are not the op's to write: they must still be zero
        padv = full[:, nh * d:]
        print(f"ERR {c.name} {c.op} {name}_padding {padv.abs().max().item() if pad else 0.0:.6e}")
        return h

    c.report("out", out, region("out", H, dv))
    c.report("lse", lse)
    c.report("dq", dq, region("dq", H, dqk))
    c.report("dk", dk, region("dk", G, dqk))
    c.report("dv", dvv, region("dv", G, dv))


def loss(c):
    N, V, Vp, K, T = c["N"], c["V"], c["Vp"], c["K"], c["T"]
    alpha, eps, beta = c["alpha"], c["eps"], c["beta"]
    logits = c.f32("logits").view(N, Vp).requires_grad_()
    y = c.i32("y")
    keep = (y >= 0).double()
    s = logits[:, :V]
    ce = F.cross_entropy(s, y.clamp(min=0), label_smoothing=eps, reduction="none") * keep
    kd = torch.zeros(N)
    if K:
        ids = c.i32("ids").view(N, K)
        lp = torch.cat([c.f32("lp").view(N, K), c.f32("tail").view(N, 1)], 1)
        st = s / T
        lse_all = torch.logsumexp(st, -1, keepdim=True)
        lq_top = st.gather(1, ids) - lse_all
        outside = st.scatter(1, ids, float("-inf"))
        lq_tail = torch.logsumexp(outside, -1, keepdim=True) - lse_all
        lq = torch.cat([lq_top, lq_tail], 1)
        p, q = lp.exp(), lq.exp()
        lps = torch.where(p > 0, lp, torch.zeros_like(lp))
        if c["mode"] == 0:
            terms = p * (lps - lq)
        elif c["mode"] == 1:
            terms = q * (lq - lp)
        else:
            m = beta * p + (1 - beta) * q
            lm = m.log()
            terms = beta * p * (lps - lm) + (1 - beta) * q * (lq - lm)
        kd = T * T * terms.sum(-1) * keep
    row = alpha * kd + (1 - alpha) * ce
    (dl,) = torch.autograd.grad(c["grad_scale"] * row.sum(), logits)
    c.report("loss", row)
    c.report("ce", ce)
    c.report("kd", kd)
    c.report("dlogits", dl)


def adamw(c):
    p = c.f32("master0").clone().requires_grad_()
    opt = torch.optim.AdamW([p], lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                            weight_decay=c["wd"])
    for t in range(1, c["steps"] + 1):
        p.grad = c.f32(f"g{t}") * c["grad_scale"]
        opt.step()
    st = opt.state[p]
    c.report("master", p)
    c.report("m", st["exp_avg"])
    c.report("v", st["exp_avg_sq"])


OPS = {"matmul": matmul, "elementwise": elementwise, "embedding": embedding, "rmsnorm": rmsnorm,
       "swiglu": swiglu, "rope": rope, "attention": attention, "loss": loss, "adamw": adamw}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ops_ref.py DIR")
    root = sys.argv[1]
    with open(os.path.join(root, "manifest.json")) as f:
        cases = json.load(f)
    for spec in cases:
        case = Case(root, spec)
        if case.op not in OPS:
            print(f"unknown op {case.op} in {case.name}")
            continue
        OPS[case.op](case)
    print(f"DONE {len(cases)}")


if __name__ == "__main__":
    main()
