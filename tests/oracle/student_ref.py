#!/usr/bin/python3
"""PyTorch reference for the student transformer (SPEC §2-3), written from the SPEC
with plain torch modules and autograd, in float64.

Usage: student_ref.py DIR
DIR/case.json describes the config, the parameter tensors (HF names, shapes, in the
order of DIR/params.bin, float32) and the inputs (DIR/inputs.bin, see read_inputs).
mode "grad": writes DIR/out.bin = float64 [loss, grads of every parameter in order].
mode "train": runs `steps` AdamW steps (torch.optim.AdamW, clip_grad_norm_, warmup +
cosine/linear schedule) on the same batch; writes DIR/out.bin = float64 losses.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta):
    # x (B, T, heads, D); half-split pairs (i, i + D/2) as in HF Llama
    D = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = pos[..., None].double() * inv            # (B, T, D/2)
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, :, None, :]
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    rot = torch.cat([-x2, x1], -1)
    return x * cos + rot * sin


def attn_mask(B, T, window, doc):
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    m = (j <= i)
    if window > 0:
        m = m & (i - window < j)
    m = m[None].expand(B, T, T)
    if doc is not None:
        m = m & (doc[:, :, None] == doc[:, None, :])
    return m  # (B, T, T) True = visible


class Student(torch.nn.Module):
    def __init__(self, cfg, tensors):
        super().__init__()
        self.cfg = cfg
        self.p = torch.nn.ParameterDict(
            {k.replace(".", "/"): torch.nn.Parameter(v) for k, v in tensors.items()})

    def w(self, name):
        return self.p[name.replace(".", "/")]

    def forward(self, ids, doc):
        c = self.cfg
        B, T = ids.shape
        H, G, D = c["n_heads"], c["n_kv_heads"], c["d_head"]
        if doc is not None:
            pos = torch.zeros(B, T, dtype=torch.long)
            for b in range(B):
                for t in range(1, T):
                    pos[b, t] = pos[b, t - 1] + 1 if doc[b, t] == doc[b, t - 1] else 0
        else:
            pos = torch.arange(T)[None].expand(B, T)
        mask = attn_mask(B, T, c["window"], doc)[:, None]  # (B, 1, T, T)
        x = self.w("model.embed_tokens.weight")[ids]
        for l in range(c["n_layers"]):
            pre = f"model.layers.{l}."
            h = rmsnorm(x, self.w(pre + "input_layernorm.weight"), c["norm_eps"])
            q = (h @ self.w(pre + "self_attn.q_proj.weight").T).view(B, T, H, D)
            k = (h @ self.w(pre + "self_attn.k_proj.weight").T).view(B, T, G, D)
            v = (h @ self.w(pre + "self_attn.v_proj.weight").T).view(B, T, G, D)
            q, k = rope(q, pos, c["rope_theta"]), rope(k, pos, c["rope_theta"])
            k = k.repeat_interleave(H // G, dim=2)
            v = v.repeat_interleave(H // G, dim=2)
            s = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(D)
            s = s.masked_fill(~mask, float("-inf"))
            y = torch.einsum("bhij,bjhd->bihd", s.softmax(-1), v).reshape(B, T, H * D)
            x = x + y @ self.w(pre + "self_attn.o_proj.weight").T
            h = rmsnorm(x, self.w(pre + "post_attention_layernorm.weight"), c["norm_eps"])
            g = h @ self.w(pre + "mlp.gate_proj.weight").T
            u = h @ self.w(pre + "mlp.up_proj.weight").T
            x = x + (F.silu(g) * u) @ self.w(pre + "mlp.down_proj.weight").T
        x = rmsnorm(x, self.w("model.norm.weight"), c["norm_eps"])
        lm = self.w("model.embed_tokens.weight") if c["tied"] else self.w("lm_head.weight")
        return x @ lm.T


def kd_loss(z, tk_ids, tk_lp, tail, c):
    """(K+1)-bucket divergence per row; z (N, V) real-vocabulary logits."""
    T = c["temperature"]
    lq = torch.log_softmax(z / T, -1)
    lq_k = lq.gather(1, tk_ids)
    others = lq.scatter(1, tk_ids, float("-inf"))
    lq_tail = torch.logsumexp(others, -1, keepdim=True)
    lq_b = torch.cat([lq_k, lq_tail], 1)
    lp_b = torch.cat([tk_lp, tail[:, None]], 1)
    p, q = lp_b.exp(), lq_b.exp()
    mode = c["mode"]
    if mode == 0:
        kd = (p * (lp_b - lq_b)).sum(-1)
    elif mode == 1:
        kd = (q * (lq_b - lp_b)).sum(-1)
    else:
        beta = c["jsd_beta"]
        lm = torch.log(beta * p + (1 - beta) * q)
        kd = beta * (p * (lp_b - lm)).sum(-1) + (1 - beta) * (q * (lq_b - lm)).sum(-1)
    return T * T * kd


def loss_fn(model, inp, c):
    logits = model(inp["ids"], inp["doc"])
    V = c["vocab"]
    z = logits.reshape(-1, logits.shape[-1])[:, :V]
    y = inp["targets"].reshape(-1)
    valid = y >= 0
    ce = F.cross_entropy(z, y.clamp(min=0), label_smoothing=c["smoothing"], reduction="none")
    row = ce
    if c["k"] > 0:
        kd = kd_loss(z, inp["topk_ids"], inp["topk_lp"], inp["tail"], c)
        row = c["alpha"] * kd + (1 - c["alpha"]) * ce
    return (row * valid).sum() / valid.sum()


def read_inputs(d, c):
    raw = open(os.path.join(d, "inputs.bin"), "rb").read()
    B, T, K = c["B"], c["T"], c["k"]
    N = B * T
    off = 0

    def take(n, dt):
        nonlocal off
        a = np.frombuffer(raw, dtype=dt, count=n, offset=off)
        off += n * 4
        return a

    inp = {"ids": torch.tensor(take(N, np.int32).astype(np.int64)).view(B, T),
           "targets": torch.tensor(take(N, np.int32).astype(np.int64)),
           "doc": None}
    if c["doc_mask"]:
        inp["doc"] = torch.tensor(take(N, np.int32).astype(np.int64)).view(B, T)
    if K > 0:
        inp["topk_ids"] = torch.tensor(take(N * K, np.int32).astype(np.int64)).view(N, K)
        inp["topk_lp"] = torch.tensor(take(N * K, np.float32).astype(np.float64)).view(N, K)
        inp["tail"] = torch.tensor(take(N, np.float32).astype(np.float64))
    return inp


def lr_at(o, s):
    if s < o["warmup_steps"]:
        return o["lr"] * (s + 1) / o["warmup_steps"]
    p = min(1.0, (s - o["warmup_steps"]) / max(1, o["total_steps"] - o["warmup_steps"]))
    f = 0.5 * (1 + math.cos(math.pi * p)) if o["schedule"] == "cosine" else 1 - p
    return o["min_lr"] + (o["lr"] - o["min_lr"]) * f


def main():
    d = sys.argv[1]
    case = json.load(open(os.path.join(d, "case.json")))
    c = case["config"]
    flat = np.fromfile(os.path.join(d, "params.bin"), dtype=np.float32).astype(np.float64)
    tensors, off = {}, 0
    for name, shape in case["params"]:
        n = int(np.prod(shape))
        tensors[name] = torch.tensor(flat[off:off + n]).view(*shape)
        off += n
    model = Student(c, tensors)
    inp = read_inputs(d, c)
    names = [n for n, _ in case["params"]]
    out = []
    if case["mode"] == "grad":
        loss = loss_fn(model, inp, c)
        loss.backward()
        out = [loss.item()]
        for n in names:
            out.extend(model.w(n).grad.reshape(-1).tolist())
    else:
        o = case["optim"]
        decay = [model.w(n) for n in names if model.w(n).dim() == 2]
        no_decay = [model.w(n) for n in names if model.w(n).dim() == 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])
        for s in range(case["steps"]):
            for g in opt.param_groups:
                g["lr"] = lr_at(o, s)
            opt.zero_grad()
            loss = loss_fn(model, inp, c)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), o["clip_norm"])
            opt.step()
            out.append(loss.item())
    np.asarray(out, dtype=np.float64).tofile(os.path.join(d, "out.bin"))


if __name__ == "__main__":
    main()
