#!/usr/bin/python3
"""PyTorch reference for the multimodal student encoders and the modality prefix
(SPEC §4 "Multimodal student"), written from the SPEC and models/student/encoders.h with
plain torch ops and autograd, in float64.

Usage: encoder_ref.py DIR
DIR/case.json: {"mode", "enc": encoder config, "B", "params": [[name, shape], ...] (the
order of DIR/params.bin, float32), ...}; DIR/inputs.bin float32/int32 as read below.
mode "encoder" (key "modality": image|video|audio|mesh): inputs = x, dout (upstream
  gradient of the encoder output); out.bin = float64 [out..., grads of every parameter
  in order..., dx...] of the scalar Σ out·dout.
mode "student": the encoders' prefix [begin | modalities | end] then the text through
  the student (tests/oracle/student_ref.py's pieces); "student_params" lists the
  student's tensors (they follow the encoder tensors in params.bin); inputs = image
  patches, ids, targets (and the teacher's top-K); out.bin = float64 [loss, student
  grads..., encoder grads...].
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from student_ref import attn_mask, kd_loss, rmsnorm, rope  # noqa: E402

torch.set_default_dtype(torch.float64)


def morton_pool(points, M):
    """(M, P) mean-pooling matrix over groups of the Morton-sorted points (encoders.h)."""
    P = points.shape[0]
    xyz = points[:, :3].astype(np.float64)
    lo, hi = xyz.min(0), xyz.max(0)
    code = np.zeros(P, dtype=np.int64)
    q = np.zeros((P, 3), dtype=np.int64)
    for d in range(3):
        if hi[d] > lo[d]:
            u = (xyz[:, d] - lo[d]) / (hi[d] - lo[d])
            q[:, d] = np.clip(np.floor(u * 1023.0), 0, 1023).astype(np.int64)
    for bit in range(10):
        for d in range(3):
            code |= ((q[:, d] >> bit) & 1) << (3 * bit + (2 - d))
    order = np.lexsort((np.arange(P), code))  # by code, ties by index
    pool = np.zeros((M, P))
    for g in range(M):
        j0, j1 = g * P // M, (g + 1) * P // M
        pool[g, order[j0:j1]] = 1.0 / (j1 - j0)
    return torch.tensor(pool)


def proj(x, w, b):
    return x @ w.T + b


def image_fwd(W, x, e):
    # x (B, R·Cc, PD)
    R, Cc = e["grid_rows"], e["grid_cols"]
    n = torch.arange(R * Cc)
    return proj(x, W["model.vision.patch_proj.weight"], W["model.vision.patch_proj.bias"]) \
        + W["model.vision.row_embed.weight"][n // Cc] + W["model.vision.col_embed.weight"][n % Cc]


def video_fwd(W, x, e):
    # x (B, F, R·Cc, PD): the image path per frame + temporal embedding
    B, Fr = x.shape[0], x.shape[1]
    y = image_fwd(W, x.reshape(B * Fr, x.shape[2], x.shape[3]), e).reshape(B, Fr, x.shape[2], -1)
    y = y + W["model.video.temporal_embed.weight"][:, None, :]
    return y.reshape(B, Fr * x.shape[2], -1)


def audio_fwd(W, x, e):
    # x (B, A·S, mel) → windows of S frames, stride S (an explicit unfold, not a reshape)
    S, A = e["audio_stride"], e["audio_tokens"]
    win = x.unfold(1, S, S)                      # (B, A, mel, S)
    win = win.permute(0, 1, 3, 2).reshape(x.shape[0], A, S * x.shape[2])
    return proj(win, W["model.audio.proj.weight"], W["model.audio.proj.bias"]) \
        + W["model.audio.pos_embed.weight"]


def mesh_fwd(W, x, e):
    # x (B, P, 6) → SiLU MLP per point → mean over Morton groups → + token embedding
    M = e["mesh_tokens"]
    h = F.silu(proj(x, W["model.mesh.fc1.weight"], W["model.mesh.fc1.bias"]))
    y = proj(h, W["model.mesh.fc2.weight"], W["model.mesh.fc2.bias"])
    pools = torch.stack([morton_pool(x[b].detach().numpy(), M) for b in range(x.shape[0])])
    return pools @ y + W["model.mesh.token_embed.weight"]


FWD = {"image": image_fwd, "video": video_fwd, "audio": audio_fwd, "mesh": mesh_fwd}


def input_shape(mod, e, B):
    np_ = e["grid_rows"] * e["grid_cols"]
    return {"image": (B, np_, e["patch_dim"]),
            "video": (B, e["video_frames"], np_, e["patch_dim"]),
            "audio": (B, e["audio_tokens"] * e["audio_stride"], e["mel_bins"]),
            "mesh": (B, e["mesh_points"], 6)}[mod]


def prefix_fwd(W, xs, e):
    """[begin | image | video | audio | mesh | end] per sample, (B, P, C)."""
    parts = [FWD[m](W, xs[m], e) for m in ("image", "video", "audio", "mesh") if m in xs]
    B = parts[0].shape[0]
    bnd = W["model.prefix.boundary.weight"]
    return torch.cat([bnd[0].expand(B, 1, -1)] + parts + [bnd[1].expand(B, 1, -1)], 1)


def student_logits(S, c, prefix, ids):
    """The student over [prefix | text]; logits of the text rows only (B, T, Vp)."""
    B, T = ids.shape
    P = prefix.shape[1]
    L = T + P
    H, G, D = c["n_heads"], c["n_kv_heads"], c["d_head"]
    pos = torch.arange(L)[None].expand(B, L)
    mask = attn_mask(B, L, c["window"], None)[:, None]
    x = torch.cat([prefix, S["model.embed_tokens.weight"][ids]], 1)
    for l in range(c["n_layers"]):
        pre = f"model.layers.{l}."
        h = rmsnorm(x, S[pre + "input_layernorm.weight"], c["norm_eps"])
        q = (h @ S[pre + "self_attn.q_proj.weight"].T).view(B, L, H, D)
        k = (h @ S[pre + "self_attn.k_proj.weight"].T).view(B, L, G, D)
        v = (h @ S[pre + "self_attn.v_proj.weight"].T).view(B, L, G, D)
        q, k = rope(q, pos, c["rope_theta"]), rope(k, pos, c["rope_theta"])
        k = k.repeat_interleave(H // G, dim=2)
        v = v.repeat_interleave(H // G, dim=2)
        s = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(D)
        s = s.masked_fill(~mask, float("-inf"))
        y = torch.einsum("bhij,bjhd->bihd", s.softmax(-1), v).reshape(B, L, H * D)
        x = x + y @ S[pre + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, S[pre + "post_attention_layernorm.weight"], c["norm_eps"])
        x = x + (F.silu(h @ S[pre + "mlp.gate_proj.weight"].T) * (h @ S[pre + "mlp.up_proj.weight"].T)) \
            @ S[pre + "mlp.down_proj.weight"].T
    x = rmsnorm(x, S["model.norm.weight"], c["norm_eps"])[:, P:]
    lm = S["model.embed_tokens.weight"] if c["tied"] else S["lm_head.weight"]
    return x @ lm.T


def read_params(d, specs):
    flat = np.fromfile(os.path.join(d, "params.bin"), dtype=np.float32).astype(np.float64)
    out, off = {}, 0
    for name, shape in specs:
        n = int(np.prod(shape))
        out[name] = torch.tensor(flat[off:off + n]).view(*shape).requires_grad_(True)
        off += n
    return out


class Reader:
    def __init__(self, path):
        self.raw = open(path, "rb").read()
        self.off = 0

    def take(self, shape, dt):
        n = int(np.prod(shape))
        a = np.frombuffer(self.raw, dtype=dt, count=n, offset=self.off)
        self.off += n * 4
        t = torch.tensor(a.astype(np.float64 if dt == np.float32 else np.int64))
        return t.view(*shape)


def main():
    d = sys.argv[1]
    case = json.load(open(os.path.join(d, "case.json")))
    e, B = case["enc"], case["B"]
    specs = case["params"] + case.get("student_params", [])
    W = read_params(d, specs)
    r = Reader(os.path.join(d, "inputs.bin"))
    out = []
    if case["mode"] == "encoder":
        mod = case["modality"]
        x = r.take(input_shape(mod, e, B), np.float32).requires_grad_(True)
        y = FWD[mod](W, x, e)
        dout = r.take(tuple(y.shape), np.float32)
        (y * dout).sum().backward()
        out = y.detach().reshape(-1).tolist()
        for name, _ in case["params"]:
            g = W[name].grad
            out.extend((g if g is not None else torch.zeros_like(W[name])).reshape(-1).tolist())
        out.extend(x.grad.reshape(-1).tolist())
    else:
        c = case["config"]
        xs = {m: r.take(input_shape(m, e, B), np.float32) for m in case["modalities"]}
        T = c["T"]
        ids = r.take((B, T), np.int32)
        y = r.take((B * T,), np.int32)
        logits = student_logits(W, c, prefix_fwd(W, xs, e), ids)
        z = logits.reshape(B * T, -1)[:, :c["vocab"]]
        valid = y >= 0
        row = F.cross_entropy(z, y.clamp(min=0), label_smoothing=c["smoothing"], reduction="none")
        K = c["k"]
        if K > 0:
            tk = r.take((B * T, K), np.int32)
            lp = r.take((B * T, K), np.float32)
            tail = r.take((B * T,), np.float32)
            row = c["alpha"] * kd_loss(z, tk, lp, tail, c) + (1 - c["alpha"]) * row
        loss = (row * valid).sum() / valid.sum()
        loss.backward()
        out = [loss.item()]
        for name, _ in case["student_params"] + case["params"]:
            g = W[name].grad
            out.extend((g if g is not None else torch.zeros_like(W[name])).reshape(-1).tolist())
    np.array(out, dtype=np.float64).tofile(os.path.join(d, "out.bin"))


if __name__ == "__main__":
    main()
