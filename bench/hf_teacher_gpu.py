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


def main():
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
