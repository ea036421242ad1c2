#!/usr/bin/env python3
"""The HF transformers side of bench_teacher_gpu: teacher scoring of a DeepSeek checkpoint
(DeepseekV3ForCausalLM.from_pretrained in bf16 with the given attention implementation)
on the same [B,T] int32 tokens sushi scored: forward under torch.no_grad, log_softmax
of the logits (f32) at temperature 1 and top-K, timed with CUDA events (median of the
reps after one warm-up). Prints `torch tokens/s X` (the line bench_teacher_gpu reads),
the batch time and the mean top-1 log-probability. Without transformers (or torch) it
says so and exits 0 without a tokens/s line. Without a GPU it runs on the CPU in f32.

usage: hf_teacher_gpu.py DIR --tokens FILE [--B 8] [--T 1024] [--K 64] [--reps 5]
                         [--attn eager|sdpa]
       hf_teacher_gpu.py --create DIR --config FILE [--seed N]
The second form writes the random checkpoint itself (bench_teacher_gpu tries it first, as
it is much faster than sushi's single-threaded initialisation and f32 write): a
DeepseekV3ForCausalLM of the config.json fields in FILE, HF's own initialisation, on the
GPU when there is one, saved in bf16 (f32 without a GPU) with save_pretrained. Exit 0
only when DIR/config.json was written; 3 when transformers is missing.
"""
import argparse
import statistics
import sys
import time


def load(cls, d, dtype, attn, dev):
    """from_pretrained straight onto the device where this transformers can (device_map),
    else onto the host and then moved; transformers 4.x spells dtype torch_dtype"""
    last = None
    for kw in (dict(dtype=dtype, device_map=dev), dict(dtype=dtype), dict(torch_dtype=dtype)):
        try:
            return cls.from_pretrained(d, attn_implementation=attn, **kw).to(dev).eval()
        except (TypeError, ValueError, ImportError) as e:
            last = e
    raise last


def create(a):
    """the random checkpoint of --config's fields in --create (see the module text)"""
    import json
    import os
    try:
        import torch
        from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
    except ImportError as e:
        print(f"hf create: skipped: {e}", flush=True)
        return 3
    with open(a.config) as f:
        kw = json.load(f)
    theta = kw.pop("rope_theta", 10000.0)
    try:  # transformers 5 spells RoPE settings as rope_parameters
        cfg = DeepseekV3Config(**dict(kw, rope_parameters=dict(rope_type="default", rope_theta=theta)))
    except TypeError:
        cfg = DeepseekV3Config(**dict(kw, rope_theta=theta))
    torch.manual_seed(a.seed)
    cuda = torch.cuda.is_available()
    t0 = time.perf_counter()
    with torch.device("cuda" if cuda else "cpu"):
        model = DeepseekV3ForCausalLM(cfg)
    model = model.to(torch.bfloat16 if cuda else torch.float32)
    t1 = time.perf_counter()
    model.save_pretrained(a.create, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(f"hf create: {n} parameters, initialised in {t1 - t0:.1f} s, saved in {time.perf_counter() - t1:.1f} s "
          f"({'bf16' if cuda else 'f32'}) to {a.create}", flush=True)
    return 0 if os.path.exists(os.path.join(a.create, "config.json")) else 1


def main():
    if "--create" in sys.argv:
        cp = argparse.ArgumentParser()
        cp.add_argument("--create", required=True)
        cp.add_argument("--config", required=True, help="JSON object of config.json fields")
        cp.add_argument("--seed", type=int, default=1234)
        return create(cp.parse_args())
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tokens", required=True, help="int32 [B,T] little-endian")
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--K", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--attn", default="sdpa", choices=["eager", "sdpa"])
    a = ap.parse_args()
    try:
        import numpy as np
        import torch
        import transformers
        from transformers import DeepseekV3ForCausalLM
    except ImportError as e:
        print(f"hf {a.attn}: skipped: {e} (HF transformers with PyTorch is needed)", flush=True)
        return 0
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    t0 = time.perf_counter()
    model = load(DeepseekV3ForCausalLM, a.dir, dtype, a.attn, dev)
    load_s = time.perf_counter() - t0
    ids = np.fromfile(a.tokens, dtype="<i4")
    if ids.size != a.B * a.T:
        print(f"hf {a.attn}: {a.tokens} holds {ids.size} ids, not B·T = {a.B * a.T}", file=sys.stderr)
        return 1
    x = torch.from_numpy(ids.astype(np.int64).reshape(a.B, a.T)).to(dev)

    def score():
        with torch.no_grad():
            logits = model(input_ids=x).logits
            lp = torch.log_softmax(logits.float(), dim=-1)
            return torch.topk(lp, a.K, dim=-1)

    times = []
    for r in range(a.reps + 1):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            top = score()
            end.record()
            torch.cuda.synchronize()
            dt = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            top = score()
            dt = time.perf_counter() - t0
        if r > 0:  # the first is the warm-up
            times.append(dt)
    med = statistics.median(times)
    top1 = float(top.values[..., 0].float().mean())
    print(f"hf {a.attn} ({transformers.__version__}, {dev}, {str(dtype).replace('torch.', '')}): loaded in "
          f"{load_s:.1f} s, batch {med * 1e3:.1f} ms (median of {a.reps}), mean top-1 logprob {top1:.4f}", flush=True)
    print(f"torch tokens/s {a.B * a.T / med:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
