#!/usr/bin/python3
"""RoPE cos/sin tables as HF transformers builds them (rope_type default or yarn,
modeling_rope_utils._compute_yarn_parameters), in numpy float64.

usage: student_rope.py D THETA MAX_POS [FACTOR ORIG_MAX BETA_FAST BETA_SLOW MSCALE MSCALE_ALL]
Writes float64 cos then sin, each [MAX_POS, D/2] (already × attention factor), to stdout.
"""
import math
import sys

import numpy as np


def yarn_inv_freq(dim, base, factor, orig, beta_fast, beta_slow, mscale, mscale_all):
    def get_mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if mscale and mscale_all:
        attn = get_mscale(factor, mscale) / get_mscale(factor, mscale_all)
    else:
        attn = get_mscale(factor)

    def corr_dim(rot):
        return dim * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(corr_dim(beta_fast)), 0)
    high = min(math.ceil(corr_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2) - low) / (high - low), 0, 1)
    extra = 1 - ramp
    pos_freqs = base ** (np.arange(0, dim, 2) / dim)
    inv = (1 / (factor * pos_freqs)) * (1 - extra) + (1 / pos_freqs) * extra
    return inv, attn


def main():
    a = sys.argv[1:]
    dim, base, max_pos = int(a[0]), float(a[1]), int(a[2])
    if len(a) > 3:
        f, orig, bf, bs, ms, msa = float(a[3]), int(a[4]), float(a[5]), float(a[6]), float(a[7]), float(a[8])
        inv, attn = yarn_inv_freq(dim, base, f, orig, bf, bs, ms, msa)
    else:
        inv, attn = 1.0 / base ** (np.arange(0, dim, 2) / dim), 1.0
    ang = np.arange(max_pos)[:, None] * inv[None, :]
    sys.stdout.buffer.write((np.cos(ang) * attn).astype(np.float64).tobytes())
    sys.stdout.buffer.write((np.sin(ang) * attn).astype(np.float64).tobytes())


if __name__ == "__main__":
    main()
