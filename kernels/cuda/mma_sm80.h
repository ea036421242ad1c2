/* Device helpers of the register-resident attention kernels (attention_fast_cuda.cu,
 * attention_bwd2_cuda.cu), sm_80+: mma.sync m16n8k16 bf16 with f32 accumulation, bf16
 * packing, ldmatrix (plain and transposed) and cp.async with commit/wait groups. Fragment
 * layouts are the PTX ISA's for m16n8k16: lane = 4·g + t holds rows g and g+8, columns 2t
 * and 2t+1. Include after cuda_common.h; only device code compiled for sm_80+ may call them. */
#ifndef SUSHI_MMA_SM80_H
#define SUSHI_MMA_SM80_H

#include "kernels/cuda/cuda_common.h"

static __device__ __forceinline__ void mma_bf16(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                 "{%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

static __device__ __forceinline__ uint32_t ld32(const bf16 *p) { return *(const uint32_t *)p; }

/* four 8×8 bf16 matrices from shared; lanes 8m..8m+7 give the row addresses of matrix m */
static __device__ __forceinline__ void ldsm4(uint32_t *r, const bf16 *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* the same, transposed: lane 4g+t gets column g, rows 2t and 2t+1 */
static __device__ __forceinline__ void ldsm4t(uint32_t *r, const bf16 *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ void cp_async16(void *dst, const void *src, int bytes) {
    uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
}

static __device__ __forceinline__ void cp_async4(void *dst, const void *src) {
    uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d), "l"(src));
}

static __device__ __forceinline__ void cp_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
static __device__ __forceinline__ void cp_wait(void) { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

/* starts copying 64 rows [r0, r0+64) of a [B,T,heads,D] bf16 tensor (head hh, token
 * stride ts; ts % 8 == 0, 16-byte aligned) into shared [64][D+8]; zeros beyond T */
template <int D>
static __device__ __forceinline__ void fa_async_rows(bf16 *dst, const bf16 *src, int b, int r0, int T, int ts, int hh) {
    constexpr int LD = D + 8, CH = D / 8;
    for (int e = threadIdx.x; e < 64 * CH; e += blockDim.x) {
        int r = e / CH, c = (e % CH) * 8, t = r0 + r;
        const bf16 *g = t < T ? src + ((size_t)b * T + t) * ts + (size_t)hh * D + c : src;
        cp_async16(dst + r * LD + c, g, t < T ? 16 : 0);
    }
}

/* A warp's dK and dV accumulators (C fragments: rows j_row[0] = g and j_row[1] = g+8 of its
 * 16 keys, columns nb·8 + 2t, +1) stored as bf16 at k's and v's strides for kv head g */
template <int D, int NB>
static __device__ __forceinline__ void fa_store_kv_grads(bf16 *dko, bf16 *dvo, const float (*dk)[4],
                                                         const float (*dv)[4], const int *j_row, int b, int g,
                                                         int tq, const struct attn_shape &s) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int j = j_row[r];
        if (j >= s.T) continue;
        bf16 *kr = dko + ((size_t)b * s.T + j) * s.k_stride + (size_t)g * D + 2 * tq;
        bf16 *vr = dvo + ((size_t)b * s.T + j) * s.v_stride + (size_t)g * D + 2 * tq;
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            *(__nv_bfloat162 *)(kr + nb * 8) = __floats2bfloat162_rn(dk[nb][2 * r], dk[nb][2 * r + 1]);
            *(__nv_bfloat162 *)(vr + nb * 8) = __floats2bfloat162_rn(dv[nb][2 * r], dv[nb][2 * r + 1]);
        }
    }
}

#endif
