#!/usr/bin/env python3
"""sushi score against HF transformers (run on the GPU machine, transformers 5.x installed).

Creates tiny random DeepseekV3ForCausalLM / DeepseekV2ForCausalLM models, saves them with
save_pretrained (fp32 safetensors), runs `sushi-teacher score --logits-out` on a few id
sequences and compares with HF's logits (eager attention, fp32, CPU):
‖sushi − hf‖₂/‖hf‖₂ ≤ 1e-4 per model. Prints one JSON line per model; exit 1 on a miss.

    python3 tests/hf/deepseek_hf.py [--bin build/bin/sushi-teacher] [--work /tmp/sushi-hf] [--diag]
"""
import argparse
import json
import os
import subprocess
import sys

import torch
import transformers
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM

COMMON = dict(vocab_size=211, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32, qk_nope_head_dim=16,
              qk_rope_head_dim=8, v_head_dim=24, max_position_embeddings=256, rms_norm_eps=1e-6)

YARN = dict(rope_type="yarn", rope_theta=10000.0, factor=4.0, original_max_position_embeddings=64,
            beta_fast=32, beta_slow=1, mscale=1.0, mscale_all_dim=1.0)

MODELS = {
    "v3_yarn_q_lora_groups": (DeepseekV3Config, DeepseekV3ForCausalLM, dict(
        q_lora_rank=24, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=3, n_group=4, topk_group=2,
        routed_scaling_factor=2.5, norm_topk_prob=True, first_k_dense_replace=1, tie_word_embeddings=False,
        rope_parameters=YARN)),
    "v3_plain_rope_tied": (DeepseekV3Config, DeepseekV3ForCausalLM, dict(
        q_lora_rank=24, n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2, n_group=2, topk_group=1,
        routed_scaling_factor=1.5, norm_topk_prob=False, first_k_dense_replace=2, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="default", rope_theta=50000.0))),
    "v2_lite_greedy": (DeepseekV2Config, DeepseekV2ForCausalLM, dict(
        q_lora_rank=None, n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2, n_group=1, topk_group=1,
        routed_scaling_factor=1.0, topk_method="greedy", first_k_dense_replace=1, tie_word_embeddings=False,
        rope_parameters=dict(YARN, mscale=0.707, mscale_all_dim=0.707, factor=2.0,
                             original_max_position_embeddings=128))),
    "v2_group_limited": (DeepseekV2Config, DeepseekV2ForCausalLM, dict(
        q_lora_rank=24, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=3, n_group=4, topk_group=2,
        routed_scaling_factor=2.0, topk_method="group_limited_greedy", first_k_dense_replace=1,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0))),
    "v2_no_q_lora_plain_rope": (DeepseekV2Config, DeepseekV2ForCausalLM, dict(
        q_lora_rank=None, n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2, n_group=1, topk_group=1,
        routed_scaling_factor=1.0, topk_method="greedy", first_k_dense_replace=1,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0))),
    "v2_yarn_q_lora": (DeepseekV2Config, DeepseekV2ForCausalLM, dict(
        q_lora_rank=24, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=1, topk_group=1,
        routed_scaling_factor=1.0, topk_method="greedy", first_k_dense_replace=1,
        rope_parameters=dict(YARN, mscale=0.707, mscale_all_dim=0.707, factor=2.0,
                             original_max_position_embeddings=128))),
    "v2_yarn_mscale_1": (DeepseekV2Config, DeepseekV2ForCausalLM, dict(
        q_lora_rank=24, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=1, topk_group=1,
        routed_scaling_factor=1.0, topk_method="greedy", first_k_dense_replace=1, rope_parameters=YARN)),
}

SEQS = [[1, 5, 9, 13, 2, 96, 0, 44, 7, 7, 31, 60, 3, 200, 150, 101, 17],
        [17, 4, 88, 2, 59],
        [3] * 9]


def build(name, cfg_cls, model_cls, extra, seed, d):
    kw = dict(COMMON, **extra)
    try:
        cfg = cfg_cls(**kw)
    except TypeError:  # an older config class without rope_parameters
        rp = kw.pop("rope_parameters")
        kw["rope_theta"] = rp.pop("rope_theta")
        if rp.get("rope_type") != "default":
            kw["rope_scaling"] = rp
        cfg = cfg_cls(**kw)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(cfg).float().eval()
    with torch.no_grad():  # weights large enough that routing and attention matter
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)
        for bname, b in model.named_buffers():
            if "e_score_correction_bias" in bname:
                b.copy_(0.1 * torch.randn_like(b))
    model.save_pretrained(d, safe_serialization=True)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin/sushi-teacher")
    ap.add_argument("--work", default="/tmp/sushi-hf")
    ap.add_argument("--diag", action="store_true", help="also print HF's RoPE frequencies and softmax scale")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    ids_path = os.path.join(a.work, "ids.txt")
    with open(ids_path, "w") as f:
        for s in SEQS:
            f.write(" ".join(map(str, s)) + "\n")
    worst = 0.0
    failed = False
    for i, (name, (cfg_cls, model_cls, extra)) in enumerate(MODELS.items()):
        d = os.path.join(a.work, name)
        res = {"model": name, "transformers": transformers.__version__}
        try:
            model = build(name, cfg_cls, model_cls, extra, 100 + i, d)
            out = os.path.join(d, "sushi_logits.bin")
            p = subprocess.run([a.bin, "score", "--model", d, "--ids-file", ids_path, "--logits-out", out, "--topk", "8"],
                               capture_output=True, text=True)
            if p.returncode:
                raise RuntimeError("sushi-teacher failed: " + p.stderr.strip()[-800:])
            got = torch.from_numpy(__import__("numpy").fromfile(out, dtype="<f4")).double()
            with torch.no_grad():
                ref = torch.cat([model(torch.tensor([s])).logits[0].double().reshape(-1) for s in SEQS])
            err = float((got - ref).norm() / ref.norm()) if got.numel() == ref.numel() else float("inf")
            res.update(rel_l2=err, positions=sum(map(len, SEQS)), ok=err <= 1e-4)
            if a.diag:  # what HF computes for RoPE and the softmax scale
                rot = model.model.rotary_emb
                res.update(attn_scaling=float(model.model.layers[0].self_attn.scaling),
                           rope_attention_scaling=float(rot.attention_scaling),
                           inv_freq=[float(v) for v in rot.inv_freq])
            worst = max(worst, err)
            failed |= not err <= 1e-4
        except Exception as e:  # report and continue with the next model
            res.update(ok=False, error=repr(e)[-1500:])
            failed = True
        print(json.dumps(res), flush=True)
    print(json.dumps({"worst_rel_l2": worst, "ok": not failed}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
