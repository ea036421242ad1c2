#!/usr/bin/python3
"""PyTorch reference for the DeepSeek teacher (SPEC §1), independent of the C code.

  deepseek_ref.py write DIR FLAVOUR SEED [--fp8] [--shards N] [--drop NAME] [--extra]
                        [--reshape NAME] [--fused] [--vocab V]
      writes a random checkpoint: config.json + model.safetensors (or shards with
      model.safetensors.index.json). FLAVOUR: v3 (q_lora, sigmoid, noaux_tc with groups,
      YaRN with mscale, rope_parameters dialect), v2 (no q_lora, softmax, greedy,
      top-level rope_scaling dialect, tied), v2g (v2 with group_limited_greedy).
      --vocab V overrides the vocabulary size.
      --fused stores the experts as transformers 5.x does (gate_up_proj, down_proj 3-D).
      --fp8 stores the matrices as float8_e4m3fn bytes with 128x128 weight_scale_inv.
  deepseek_ref.py bench DIR T REPS K [THREADS]
      prints the reference's scoring throughput in tokens/s (float32, top-K output).
  deepseek_ref.py tokenizer PATH
      writes a byte-level tokenizer.json (ids 0-255 bytes, 256 </s>) for generation tests.
  deepseek_ref.py grad DIR LAYER mla|ffn N IN OUT
      autograd of one layer's MLA or FFN on rows x (N, C) with upstream gradient dout, both
      read from IN (f32); writes dx and the block's weight gradients (f32) to OUT.
  deepseek_ref.py logits DIR IDS OUT
      reads DIR back (its own safetensors reader and FP8 decoder from the bit layout),
      runs the HF-style math in float64 and writes float32 logits, line after line.
"""
import json
import math
import os
import struct
import sys

import torch

DT = {"F32": (torch.float32, 4), "BF16": (torch.bfloat16, 2), "F16": (torch.float16, 2), "F8_E4M3": (None, 1)}


def flavour_config(name):
    c = dict(vocab_size=97, hidden_size=48, intermediate_size=40, moe_intermediate_size=24,
             num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=24,
             qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12, rms_norm_eps=1e-6,
             max_position_embeddings=256, hidden_act="silu", attention_bias=False)
    if name in ("v3", "v3bench"):
        c.update(model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"], q_lora_rank=32,
                 n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=3, n_group=4, topk_group=2,
                 routed_scaling_factor=2.5, norm_topk_prob=True, first_k_dense_replace=1,
                 tie_word_embeddings=False, rope_interleave=True, head_dim=8, qk_head_dim=24,
                 rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                      original_max_position_embeddings=64, beta_fast=32, beta_slow=1,
                                      mscale=1.0, mscale_all_dim=1.0))
    else:
        c.update(model_type="deepseek_v2", architectures=["DeepseekV2ForCausalLM"], q_lora_rank=None,
                 n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2, n_group=1, topk_group=1,
                 routed_scaling_factor=1.0, norm_topk_prob=False, first_k_dense_replace=1,
                 tie_word_embeddings=True, topk_method="greedy", scoring_func="softmax", rope_theta=10000.0,
                 rope_scaling=dict(type="yarn", factor=2.0, original_max_position_embeddings=128,
                                   beta_fast=32, beta_slow=1, mscale=0.707, mscale_all_dim=0.707))
        if name == "v2g":
            c.update(topk_method="group_limited_greedy", n_group=4, topk_group=2, num_experts_per_tok=3,
                     routed_scaling_factor=1.5)
    if name == "v3bench":  # a larger V3-flavour config for bench/bench_teacher_cpu
        c.update(vocab_size=8000, hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
                 num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8, q_lora_rank=128,
                 kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
                 n_routed_experts=16, num_experts_per_tok=4, max_position_embeddings=4096, head_dim=16,
                 qk_head_dim=48, rope_parameters=dict(c["rope_parameters"], original_max_position_embeddings=1024))
    return c


def tensor_shapes(c):
    C, H = c["hidden_size"], c["num_attention_heads"]
    dqk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    out = [("model.embed_tokens.weight", (c["vocab_size"], C)), ("model.norm.weight", (C,))]
    if not c.get("tie_word_embeddings"):
        out.append(("lm_head.weight", (c["vocab_size"], C)))
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}"
        out += [(p + ".input_layernorm.weight", (C,)), (p + ".post_attention_layernorm.weight", (C,))]
        a = p + ".self_attn"
        if c["q_lora_rank"]:
            out += [(a + ".q_a_proj.weight", (c["q_lora_rank"], C)), (a + ".q_a_layernorm.weight", (c["q_lora_rank"],)),
                    (a + ".q_b_proj.weight", (H * dqk, c["q_lora_rank"]))]
        else:
            out.append((a + ".q_proj.weight", (H * dqk, C)))
        out += [(a + ".kv_a_proj_with_mqa.weight", (c["kv_lora_rank"] + c["qk_rope_head_dim"], C)),
                (a + ".kv_a_layernorm.weight", (c["kv_lora_rank"],)),
                (a + ".kv_b_proj.weight", (H * (c["qk_nope_head_dim"] + c["v_head_dim"]), c["kv_lora_rank"])),
                (a + ".o_proj.weight", (C, H * c["v_head_dim"]))]
        m = p + ".mlp"

        def mlp(q, F):
            return [(q + ".gate_proj.weight", (F, C)), (q + ".up_proj.weight", (F, C)), (q + ".down_proj.weight", (C, F))]
        if l < c["first_k_dense_replace"]:
            out += mlp(m, c["intermediate_size"])
        else:
            out.append((m + ".gate.weight", (c["n_routed_experts"], C)))
            if c["model_type"] == "deepseek_v3":
                out.append((m + ".gate.e_score_correction_bias", (c["n_routed_experts"],)))
            for e in range(c["n_routed_experts"]):
                out += mlp(f"{m}.experts.{e}", c["moe_intermediate_size"])
            out += mlp(m + ".shared_experts", c["moe_intermediate_size"] * c["n_shared_experts"])
    return out


def fp8_decode(codes):
    """float8_e4m3fn from the bit layout: 1 sign, 4 exponent (bias 7), 3 mantissa bits."""
    b = codes.to(torch.int64)
    s = torch.where((b >> 7) == 1, -1.0, 1.0).double()
    e = (b >> 3) & 15
    mnt = (b & 7).double()
    normal = (1 + mnt / 8) * torch.pow(2.0, (e - 7).double())
    sub = mnt / 8 * 2.0 ** -6
    return s * torch.where(e == 0, sub, normal)


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def cmd_write(d, flavour, seed, opts):
    c = flavour_config(flavour)
    if opts.get("vocab"):
        c["vocab_size"] = opts["vocab"]
    g = torch.Generator().manual_seed(seed)
    os.makedirs(d, exist_ok=True)
    tensors = {}
    for name, shape in tensor_shapes(c):
        if name in opts["drop"]:
            continue
        if name in opts["reshape"]:
            shape = (shape[0] + 1,) + tuple(shape[1:])
        if name.endswith("norm.weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("e_score_correction_bias"):
            t = 0.1 * torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(shape[-1])
        fp8_ok = opts["fp8"] and len(shape) == 2 and "embed" not in name and "lm_head" not in name and ".gate.weight" not in name
        if fp8_ok:
            codes = torch.randint(0, 256, shape, generator=g, dtype=torch.int64)
            codes = torch.where((codes & 0x7f) == 0x7f, codes - 1, codes).to(torch.uint8)  # no NaN codes
            sb = (math.ceil(shape[0] / 128), math.ceil(shape[1] / 128))
            sc = (0.5 + torch.rand(sb, generator=g)) / 64 / math.sqrt(shape[-1])
            tensors[name] = ("F8_E4M3", shape, codes.numpy().tobytes())
            tensors[name + "_scale_inv"] = ("F32", sb, sc.float().numpy().tobytes())
        elif "layers.1." in name and name.endswith("proj.weight"):
            tensors[name] = ("BF16", shape, t.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
        elif "layers.2." in name and name.endswith("proj.weight"):
            tensors[name] = ("F16", shape, t.half().numpy().tobytes())
        else:
            tensors[name] = ("F32", shape, t.float().numpy().tobytes())
    if opts["fused"]:  # transformers 5.x layout: experts.gate_up_proj (E, 2F, C), experts.down_proj (E, C, F)
        for l in range(c["first_k_dense_replace"], c["num_hidden_layers"]):
            m, E = f"model.layers.{l}.mlp.experts", c["n_routed_experts"]
            F, C = c["moe_intermediate_size"], c["hidden_size"]

            def take(k):
                dt, shape, raw = tensors.pop(k)
                assert dt == "F32" or dt == "BF16" or dt == "F16"
                tt = {"F32": torch.float32, "F16": torch.float16}.get(dt)
                x = torch.frombuffer(bytearray(raw), dtype=tt or torch.int16)
                return (x if tt else x.view(torch.bfloat16)).float().reshape(shape)
            gu = torch.stack([torch.cat([take(f"{m}.{e}.gate_proj.weight"), take(f"{m}.{e}.up_proj.weight")]) for e in range(E)])
            dn = torch.stack([take(f"{m}.{e}.down_proj.weight") for e in range(E)])
            tensors[m + ".gate_up_proj"] = ("F32", (E, 2 * F, C), gu.numpy().tobytes())
            tensors[m + ".down_proj"] = ("F32", (E, C, F), dn.numpy().tobytes())
    for name in opts["drop"]:
        tensors.pop(name, None)
    if opts["extra"]:
        tensors["model.layers.0.self_attn.unexpected.weight"] = ("F32", (2,), b"\0" * 8)
        tensors[f"model.layers.{c['num_hidden_layers']}.eh_proj.weight"] = ("F32", (2,), b"\0" * 8)  # MTP: skipped
    if opts["fp8"]:
        c["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                    "weight_block_size": [128, 128]}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    n = opts["shards"]
    if n <= 1:
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        return
    names = list(tensors)
    wm = {}
    for i in range(n):
        fn = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        part = {k: tensors[k] for k in names[i::n]}
        for k in part:
            wm[k] = fn
        write_safetensors(os.path.join(d, fn), part)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wm}, f)


def read_checkpoint(d):
    files = [os.path.join(d, "model.safetensors")]
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted({os.path.join(d, v) for v in json.load(open(idx))["weight_map"].values()})
    raw = {}
    for fn in files:
        data = open(fn, "rb").read()
        (hl,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + hl])
        for k, v in header.items():
            if k == "__metadata__":
                continue
            b, e = v["data_offsets"]
            raw[k] = (v["dtype"], v["shape"], data[8 + hl + b:8 + hl + e])
    out = {}
    for k, (dt, shape, b) in raw.items():
        if k.endswith("_scale_inv"):
            continue
        if dt == "F8_E4M3":
            codes = torch.frombuffer(bytearray(b), dtype=torch.uint8).reshape(shape)
            s_dt, s_shape, s_b = raw[k + "_scale_inv"]
            sc = torch.frombuffer(bytearray(s_b), dtype=torch.float32).reshape(s_shape).double()
            full = sc.repeat_interleave(128, 0)[:shape[0]].repeat_interleave(128, 1)[:, :shape[1]]
            out[k] = fp8_decode(codes) * full
        elif dt == "BF16":
            out[k] = torch.frombuffer(bytearray(b), dtype=torch.int16).view(torch.bfloat16).reshape(shape).double()
        else:
            out[k] = torch.frombuffer(bytearray(b), dtype=DT[dt][0]).reshape(shape).double()
    for k in [k for k in out if k.endswith("experts.gate_up_proj")]:
        m, gu, dn = k[:-len(".gate_up_proj")], out.pop(k), out.pop(k[:-len("gate_up_proj")] + "down_proj")
        F = gu.shape[1] // 2
        for e in range(gu.shape[0]):
            out[f"{m}.{e}.gate_proj.weight"], out[f"{m}.{e}.up_proj.weight"] = gu[e, :F], gu[e, F:]
            out[f"{m}.{e}.down_proj.weight"] = dn[e]
    return out


def yarn_inv_freq(c, dim):
    rp = c.get("rope_parameters") or dict(c.get("rope_scaling") or {}, rope_theta=c.get("rope_theta", 10000.0))
    base = rp.get("rope_theta", 10000.0)
    inv = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    rtype = rp.get("rope_type", rp.get("type", "default"))
    if rtype != "yarn":
        return inv, 1.0, rp
    factor = rp["factor"]
    ompe = rp.get("original_max_position_embeddings")
    if ompe:
        factor = c["max_position_embeddings"] / ompe
    else:
        ompe = c["max_position_embeddings"]

    def ms(s, m=1.0):
        return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0
    af = rp.get("attention_factor")
    if af is None:
        af = ms(factor, rp["mscale"]) / ms(factor, rp["mscale_all_dim"]) if rp.get("mscale") and rp.get("mscale_all_dim") else ms(factor)

    def corr(rot):
        return dim * math.log(ompe / (rot * 2 * math.pi)) / (2 * math.log(base))
    lo = max(math.floor(corr(rp.get("beta_fast", 32))), 0)
    hi = min(math.ceil(corr(rp.get("beta_slow", 1))), dim - 1)
    if lo == hi:
        hi += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - lo) / (hi - lo)).clamp(0, 1)
    extra = 1 - ramp
    inv = inv / factor * (1 - extra) + inv * extra
    return inv, af, rp


def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope_interleaved(x, cos, sin):
    """HF V3 with rope_interleave: de-interleave the pairs (2i, 2i+1), then rotate_half."""
    *b, d = x.shape
    x = x.reshape(*b, d // 2, 2).transpose(-1, -2).reshape(*b, d)
    c2, s2 = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    rot = torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * c2 + rot * s2


def mla_block(c, W, l, h, T, cos, sin, ang, af, scale, mask):
    """MLA of layer l on normalised rows h (T, C), HF style"""
    H, nope, rope, dv = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    v3 = c["model_type"] == "deepseek_v3"
    p = f"model.layers.{l}."
    a = p + "self_attn."
    if c["q_lora_rank"]:
        q = rmsnorm(h @ W[a + "q_a_proj.weight"].T, W[a + "q_a_layernorm.weight"], 1e-6) @ W[a + "q_b_proj.weight"].T
    else:
        q = h @ W[a + "q_proj.weight"].T
    q = q.view(T, H, nope + rope).transpose(0, 1)
    q_nope, q_pe = q[..., :nope], q[..., nope:]
    kv = h @ W[a + "kv_a_proj_with_mqa.weight"].T
    ckv, k_pe = kv[:, :c["kv_lora_rank"]], kv[:, c["kv_lora_rank"]:]
    kvb = (rmsnorm(ckv, W[a + "kv_a_layernorm.weight"], 1e-6) @ W[a + "kv_b_proj.weight"].T).view(T, H, nope + dv).transpose(0, 1)
    k_nope, v = kvb[..., :nope], kvb[..., nope:]
    k_pe = k_pe.view(1, T, rope)
    if v3:
        q_pe, k_pe = rope_interleaved(q_pe, cos, sin), rope_interleaved(k_pe, cos, sin)
    else:  # HF V2: complex multiplication on pairs (2i, 2i+1)
        fc = torch.polar(torch.ones_like(ang), ang) * af
        q_pe = torch.view_as_real(torch.view_as_complex(q_pe.reshape(H, T, -1, 2).contiguous()) * fc).flatten(2)
        k_pe = torch.view_as_real(torch.view_as_complex(k_pe.reshape(1, T, -1, 2).contiguous()) * fc).flatten(2)
    qs = torch.cat([q_nope, q_pe], -1)
    ks = torch.cat([k_nope, k_pe.expand(H, T, rope)], -1)
    att = torch.softmax(qs @ ks.transpose(1, 2) * scale + mask, -1) @ v
    return att.transpose(0, 1).reshape(T, H * dv) @ W[a + "o_proj.weight"].T


def ffn_block(c, W, l, h, T):
    """dense SwiGLU or DeepSeekMoE of layer l on normalised rows h (T, C), HF routing"""
    v3 = c["model_type"] == "deepseek_v3"
    p = f"model.layers.{l}."
    m = p + "mlp."

    def mlp(q, z):
        return (torch.nn.functional.silu(z @ W[q + "gate_proj.weight"].T) * (z @ W[q + "up_proj.weight"].T)) @ W[q + "down_proj.weight"].T
    if l < c["first_k_dense_replace"]:
        return mlp(m, h)
    E, K = c["n_routed_experts"], c["num_experts_per_tok"]
    logits = h @ W[m + "gate.weight"].T
    G, TG = c["n_group"], c["topk_group"]
    if v3:
        s = logits.sigmoid()
        sc = s + W[m + "gate.e_score_correction_bias"]
        gs = sc.view(T, G, -1).topk(2, -1)[0].sum(-1)
        gi = gs.topk(TG, -1)[1]
        gm = torch.zeros_like(gs).scatter_(1, gi, 1)
        sm = gm.unsqueeze(-1).expand(T, G, E // G).reshape(T, E)
        idx = sc.masked_fill(~sm.bool(), 0.0).topk(K, -1)[1]
        w = s.gather(1, idx)
        if c["norm_topk_prob"]:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        w = w * c["routed_scaling_factor"]
    else:
        s = logits.softmax(-1)
        if c["topk_method"] == "greedy":
            w, idx = s.topk(K, -1)
        else:
            gs = s.view(T, G, -1).max(-1).values
            gi = gs.topk(TG, -1)[1]
            gm = torch.zeros_like(gs).scatter_(1, gi, 1)
            sm = gm.unsqueeze(-1).expand(T, G, E // G).reshape(T, E)
            w, idx = s.masked_fill(~sm.bool(), 0.0).topk(K, -1)
        w = w * c["routed_scaling_factor"]
    y = mlp(m + "shared_experts.", h)
    for e in idx.unique().tolist():
        tok, pos = (idx == e).nonzero(as_tuple=True)
        y.index_add_(0, tok, w[tok, pos, None] * mlp(f"{m}experts.{e}.", h[tok]))
    return y


def rope_tables(c, T, dt):
    """cos, sin, angles, YaRN attention factor, softmax scale and causal mask for T positions"""
    nope, rope = c["qk_nope_head_dim"], c["qk_rope_head_dim"]
    inv, af, rp = yarn_inv_freq(c, rope)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None]
    cos, sin = ang.cos() * af, ang.sin() * af
    scale = (nope + rope) ** -0.5
    if rp.get("rope_type", rp.get("type")) == "yarn" and rp.get("mscale_all_dim"):  # HF 5.17: V3 and V2
        m = 0.1 * rp["mscale_all_dim"] * math.log(rp["factor"]) + 1.0 if rp["factor"] > 1 else 1.0
        scale *= m * m
    mask = torch.full((T, T), float("-inf"), dtype=dt).triu(1)
    return cos.to(dt), sin.to(dt), ang.to(dt), af, scale, mask


def forward(c, W, ids):
    T = len(ids)
    eps = c["rms_norm_eps"]
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    cos, sin, ang, af, scale, mask = rope_tables(c, T, W["model.norm.weight"].dtype)
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        x = x + mla_block(c, W, l, h, T, cos, sin, ang, af, scale, mask)
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        x = x + ffn_block(c, W, l, h, T)
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else W["lm_head.weight"]
    return x @ head.T


def block_params(c, l, block):
    """the parameters of one block in the order sushi lays out their gradients"""
    a, m = f"model.layers.{l}.self_attn.", f"model.layers.{l}.mlp."
    if block == "mla":
        q = ["q_a_proj", "q_a_layernorm", "q_b_proj"] if c["q_lora_rank"] else ["q_proj"]
        return [a + n + ".weight" for n in q + ["kv_a_proj_with_mqa", "kv_a_layernorm", "kv_b_proj", "o_proj"]]

    def mlp(q):
        return [q + n + "_proj.weight" for n in ("gate", "up", "down")]
    if l < c["first_k_dense_replace"]:
        return mlp(m)
    out = [m + "gate.weight"]
    for e in range(c["n_routed_experts"]):
        out += mlp(f"{m}experts.{e}.")
    return out + mlp(m + "shared_experts.")


def cmd_grad(d, l, block, n, inp, out):
    """x and dout (n, C) f32 from INP; writes dx then the block's parameter gradients (f32)"""
    c = json.load(open(os.path.join(d, "config.json")))
    W = read_checkpoint(d)
    C = c["hidden_size"]
    raw = torch.from_numpy(__import__("numpy").fromfile(inp, dtype="<f4")).double()
    x, dout = raw[:n * C].reshape(n, C).clone().requires_grad_(True), raw[n * C:].reshape(n, C)
    names = block_params(c, l, block)
    for k in names:
        W[k].requires_grad_(True)
    with torch.enable_grad():
        if block == "mla":
            y = mla_block(c, W, l, x, n, *rope_tables(c, n, torch.float64))
        else:
            y = ffn_block(c, W, l, x, n)
        (y * dout).sum().backward()
    with open(out, "wb") as f:
        for t in [x.grad] + [W[k].grad if W[k].grad is not None else torch.zeros_like(W[k]) for k in names]:
            f.write(t.float().numpy().tobytes())


def cmd_logits(d, ids_file, out):
    c = json.load(open(os.path.join(d, "config.json")))
    W = read_checkpoint(d)
    with open(out, "wb") as f:
        for line in open(ids_file):
            ids = [int(v) for v in line.split()]
            if ids:
                f.write(forward(c, W, ids).float().numpy().tobytes())


def cmd_bench(d, T, reps, K):
    """tokens/s of the float32 reference: forward + top-K log-probabilities + tail, all positions"""
    import time
    c = json.load(open(os.path.join(d, "config.json")))
    W = {k: v.float() for k, v in read_checkpoint(d).items()}
    ids = [(i * 7919) % c["vocab_size"] for i in range(T)]
    forward(c, W, ids[:8])  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        z = forward(c, W, ids)
        lp = torch.log_softmax(z, -1)
        top, ti = lp.topk(K, -1)
        tail = torch.logsumexp(lp.scatter(1, ti, float("-inf")), -1)
    dt = time.perf_counter() - t0
    print(f"{reps * T / dt:.1f}")


def cmd_tokenizer(path):
    """a byte-level BPE tokenizer.json without merges: ids 0-255 are bytes, 256 is </s>"""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = {chr(c): b for b, c in zip(bs, cs)}
    vocab["</s>"] = 256
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {"version": "1.0", "normalizer": None, "pre_tokenizer": bl, "post_processor": None, "decoder": bl,
           "added_tokens": [{"id": 256, "content": "</s>", "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True}],
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                     "merges": []}}
    with open(path, "w") as f:
        json.dump(tok, f)


def main():
    a = sys.argv[1:]
    if a and a[0] == "write":
        opts = {"fp8": "--fp8" in a, "extra": "--extra" in a, "fused": "--fused" in a, "shards": 1, "drop": [], "reshape": []}
        for i, v in enumerate(a):
            if v == "--shards":
                opts["shards"] = int(a[i + 1])
            if v == "--drop":
                opts["drop"].append(a[i + 1])
            if v == "--reshape":
                opts["reshape"].append(a[i + 1])
            if v == "--vocab":
                opts["vocab"] = int(a[i + 1])
        cmd_write(a[1], a[2], int(a[3]), opts)
    elif a and a[0] == "bench":
        torch.set_num_threads(int(a[5]) if len(a) > 5 else torch.get_num_threads())
        cmd_bench(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif a and a[0] == "tokenizer":
        cmd_tokenizer(a[1])
    elif a and a[0] == "grad":
        cmd_grad(a[1], int(a[2]), a[3], int(a[4]), a[5], a[6])
    elif a and a[0] == "logits":
        cmd_logits(a[1], a[2], a[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
