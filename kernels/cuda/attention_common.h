/* Device helpers shared by the attention kernels (attention_cuda.cu, attention_mma_cuda.cu,
 * attention_fast_cuda.cu): the visibility rule and the tile loader. */
#ifndef SUSHI_ATTENTION_COMMON_H
#define SUSHI_ATTENTION_COMMON_H

#include "kernels/cuda/cuda_common.h"

/* key j visible from query i of batch row b: causal, window, same document */
__device__ __forceinline__ bool attn_visible(const struct attn_shape &s, int b, int i, int j) {
    if (i >= s.T || j > i || j < 0) return false;
    if (s.window > 0 && i - s.window >= j) return false;
    if (s.doc_ids && s.doc_ids[(size_t)b * s.T + i] != s.doc_ids[(size_t)b * s.T + j]) return false;
    return true;
}

/* 64 rows [r0, r0+64) of a [B,T,heads,d] act tensor (T = bf16 or f16; head hh, token
 * stride ts) into shared [64][ld] of the same type, zeros beyond T; 16-byte loads when d,
 * ts and src allow it */
template <typename E>
__device__ __forceinline__ void attn_load_rows(E *dst, int ld, const E *src, int b, int r0, int T,
                                               int ts, int hh, int d) {
    if (d % 8 == 0 && ts % 8 == 0 && ld % 8 == 0 && ((uintptr_t)src & 15) == 0) {
        const int chunks = d / 8;
        for (int e = threadIdx.x; e < 64 * chunks; e += blockDim.x) {
            int r = e / chunks, c = (e % chunks) * 8, t = r0 + r;
            uint4 val = make_uint4(0, 0, 0, 0);
            if (t < T) val = *(const uint4 *)(src + ((size_t)b * T + t) * ts + (size_t)hh * d + c);
            *(uint4 *)(dst + r * ld + c) = val;
        }
        return;
    }
    for (int e = threadIdx.x; e < 64 * d; e += blockDim.x) {
        int r = e / d, c = e % d, t = r0 + r;
        dst[r * ld + c] = t < T ? src[((size_t)b * T + t) * ts + (size_t)hh * d + c] : act_from<E>(0.0f);
    }
}

#endif
