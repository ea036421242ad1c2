#!/usr/bin/python3
"""A minimal HF-Llama (LlamaForCausalLM semantics, transformers >= 4.36) in PyTorch that
loads a checkpoint directory as transformers would: config.json fields + the
safetensors state dict with strict name/shape checking. Used by test_checkpoint to show
that sushi's checkpoints open in the HF layout and give the same outputs.

  ckpt_llama.py DIR B T IDS TARGETS OUT
IDS, TARGETS: raw int32 [B, T]. OUT receives raw float32: row losses [B*T] (cross
entropy over the real vocabulary, config["sushi"]["vocab"]), then dlogits [B*T, Vp] =
(softmax - onehot) / (B*T) with zeros in the padding columns, matching the C loss.
The safetensors file is parsed with struct + json (no safetensors package here).
"""
import json
import math
import struct
import sys

import numpy as np
import torch

DT = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32}


def read_safetensors(path):
    raw = open(path, "rb").read()
    (hl,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hl])
    header.pop("__metadata__", None)
    base, out = 8 + hl, {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        buf = raw[base + b:base + e]
        if t["dtype"] == "BF16":
            u = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=DT[t["dtype"]])
        out[name] = torch.from_numpy(arr.astype(np.float64).reshape(t["shape"]))
    return out


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Llama(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"]
        assert cfg.get("rope_scaling") is None and not cfg.get("attention_bias") and cfg["hidden_act"] == "silu"
        C, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
        self.H, self.G = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.D = cfg.get("head_dim") or C // self.H
        self.eps, self.theta, self.tied = cfg["rms_norm_eps"], cfg["rope_theta"], cfg["tie_word_embeddings"]
        F, D, H, G = cfg["intermediate_size"], self.D, self.H, self.G
        P = lambda *s: torch.nn.Parameter(torch.zeros(*s, dtype=torch.float64))
        sd = {"model.embed_tokens.weight": P(V, C), "model.norm.weight": P(C)}
        for l in range(L):
            p = "model.layers.%d." % l
            sd.update({p + "self_attn.q_proj.weight": P(H * D, C), p + "self_attn.k_proj.weight": P(G * D, C),
                       p + "self_attn.v_proj.weight": P(G * D, C), p + "self_attn.o_proj.weight": P(C, H * D),
                       p + "mlp.gate_proj.weight": P(F, C), p + "mlp.up_proj.weight": P(F, C),
                       p + "mlp.down_proj.weight": P(C, F), p + "input_layernorm.weight": P(C),
                       p + "post_attention_layernorm.weight": P(C)})
        if not self.tied:
            sd["lm_head.weight"] = P(V, C)
        self.p = torch.nn.ParameterDict({k.replace(".", "/"): v for k, v in sd.items()})
        self.L = L

    def load(self, tensors):
        want = {k.replace("/", "."): v for k, v in self.p.items()}
        missing, extra = set(want) - set(tensors), set(tensors) - set(want)
        assert not missing and not extra, "missing %s extra %s" % (sorted(missing), sorted(extra))
        for k, v in tensors.items():
            assert tuple(v.shape) == tuple(want[k].shape), "%s: %s vs %s" % (k, v.shape, want[k].shape)
            want[k].data.copy_(v)

    def w(self, name):
        return self.p[name.replace(".", "/")]

    def forward(self, ids):
        B, T = ids.shape
        H, G, D = self.H, self.G, self.D
        x = self.w("model.embed_tokens.weight")[ids]
        inv = 1.0 / (self.theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
        fr = torch.outer(torch.arange(T, dtype=torch.float64), inv)
        emb = torch.cat((fr, fr), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((T, T), -math.inf, dtype=torch.float64).triu(1)
        for l in range(self.L):
            p = "model.layers.%d." % l
            h = rms_norm(x, self.w(p + "input_layernorm.weight"), self.eps)
            q = (h @ self.w(p + "self_attn.q_proj.weight").T).view(B, T, H, D).transpose(1, 2)
            k = (h @ self.w(p + "self_attn.k_proj.weight").T).view(B, T, G, D).transpose(1, 2)
            v = (h @ self.w(p + "self_attn.v_proj.weight").T).view(B, T, G, D).transpose(1, 2)
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            k, v = k.repeat_interleave(H // G, dim=1), v.repeat_interleave(H // G, dim=1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + mask, dim=-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, H * D)
            x = x + y @ self.w(p + "self_attn.o_proj.weight").T
            h = rms_norm(x, self.w(p + "post_attention_layernorm.weight"), self.eps)
            g = torch.nn.functional.silu(h @ self.w(p + "mlp.gate_proj.weight").T)
            x = x + (g * (h @ self.w(p + "mlp.up_proj.weight").T)) @ self.w(p + "mlp.down_proj.weight").T
        x = rms_norm(x, self.w("model.norm.weight"), self.eps)
        head = self.w("model.embed_tokens.weight") if self.tied else self.w("lm_head.weight")
        return x @ head.T


def main():
    d, B, T, ids_path, tg_path, out = sys.argv[1:7]
    B, T = int(B), int(T)
    cfg = json.load(open(d + "/config.json"))
    model = Llama(cfg)
    with torch.no_grad():
        model.load(read_safetensors(d + "/model.safetensors"))
        vocab = cfg.get("sushi", {}).get("vocab", cfg["vocab_size"])
        ids = np.fromfile(ids_path, dtype=np.int32)
        tg = torch.from_numpy(np.fromfile(tg_path, dtype=np.int32).astype(np.int64))
        assert ids.size == B * T and tg.numel() == B * T, "ids/targets size"
        z = model(torch.from_numpy(ids.astype(np.int64)).view(B, T)).reshape(B * T, -1)
        zr = z[:, :vocab]
        lse = torch.logsumexp(zr, dim=-1)
        loss = lse - zr.gather(1, tg.view(-1, 1)).squeeze(1)
        dl = torch.zeros_like(z)
        dl[:, :vocab] = torch.softmax(zr, dim=-1)
        dl[torch.arange(ids.size), tg] -= 1.0
        dl /= ids.size
    with open(out, "wb") as f:
        f.write(loss.numpy().astype(np.float32).tobytes())
        f.write(dl.numpy().astype(np.float32).tobytes())


if __name__ == "__main__":
    main()
