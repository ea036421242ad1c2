/* Register-resident attention forward for dqk = dv ∈ {64, 128} (the common shapes):
 * mma.sync m16n8k16 bf16 with f32 accumulation, FlashAttention-2 style. Each warp owns
 * 16 queries; scores, probabilities and the output accumulator stay in registers, only
 * the 64-key K/V tiles go through shared memory. Fragment layouts are those of the PTX
 * ISA for m16n8k16: lane = 4·g + t holds rows g and g+8, columns 2t and 2t+1. */
#include <math.h>

#include "kernels/cuda/cuda_common.h"

#define FA_WARPS 4
#define FA_BQ (FA_WARPS * 16)
#define FA_BK 64

__device__ __forceinline__ void mma_bf16(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                 "{%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

__device__ __forceinline__ uint32_t ld32(const bf16 *p) { return *(const uint32_t *)p; }

__device__ __forceinline__ uint32_t pair16(const bf16 *lo, const bf16 *hi) {
    return (uint32_t)*(const uint16_t *)lo | ((uint32_t)*(const uint16_t *)hi << 16);
}

__device__ __forceinline__ bool fa_visible(const struct attn_shape &s, int b, int i, int j) {
    if (i >= s.T || j > i) return false;
    if (s.window > 0 && i - s.window >= j) return false;
    if (s.doc_ids && s.doc_ids[(size_t)b * s.T + i] != s.doc_ids[(size_t)b * s.T + j]) return false;
    return true;
}

/* 64 rows of a [B,T,heads,D] tensor into shared [64][D+8], zero beyond T */
template <int D>
__device__ void fa_load(bf16 *dst, const bf16 *src, int b, int r0, int T, int ts, int hh) {
    const int ld = D + 8, chunks = D / 8;
    for (int e = threadIdx.x; e < 64 * chunks; e += blockDim.x) {
        int r = e / chunks, c = (e % chunks) * 8, t = r0 + r;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (t < T) v = *(const uint4 *)(src + ((size_t)b * T + t) * ts + (size_t)hh * D + c);
        *(uint4 *)(dst + r * ld + c) = v;
    }
}

template <int D>
__global__ void __launch_bounds__(FA_WARPS * 32)
attention_forward_fast_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                              struct attn_shape s) {
    constexpr int LD = D + 8, KB = D / 16, NB = D / 8;
    __shared__ __align__(16) bf16 Ks[FA_BK * LD], Vs[FA_BK * LD];
    bf16 *Qs = Ks; /* Q passes through the K tile on its way into registers */
    const int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h * s.G / s.H;
    const int q0 = blockIdx.x * FA_BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gr = lane / 4, tq = lane % 4;
    fa_load<D>(Qs, q, b, q0, s.T, s.q_stride, h);
    __syncthreads();
    uint32_t qf[KB][4];
    const bf16 *qw = Qs + warp * 16 * LD;
#pragma unroll
    for (int kb = 0; kb < KB; kb++) {
        qf[kb][0] = ld32(qw + gr * LD + kb * 16 + 2 * tq);
        qf[kb][1] = ld32(qw + (gr + 8) * LD + kb * 16 + 2 * tq);
        qf[kb][2] = ld32(qw + gr * LD + kb * 16 + 8 + 2 * tq);
        qf[kb][3] = ld32(qw + (gr + 8) * LD + kb * 16 + 8 + 2 * tq);
    }
    float o[NB][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nb = 0; nb < NB; nb++) o[nb][0] = o[nb][1] = o[nb][2] = o[nb][3] = 0.0f;
    const int i_row[2] = {q0 + warp * 16 + gr, q0 + warp * 16 + gr + 8};
    const int q_last = min(q0 + FA_BQ, s.T) - 1;
    int k_first = s.window > 0 ? max(0, q0 - s.window + 1) : 0;
    const float sl2 = s.scale * 1.4426950408889634f; /* exp(x) = exp2(x·log2 e) */
    for (int k0 = (k_first / FA_BK) * FA_BK; k0 <= q_last; k0 += FA_BK) {
        __syncthreads();
        fa_load<D>(Ks, k, b, k0, s.T, s.k_stride, g);
        fa_load<D>(Vs, v, b, k0, s.T, s.v_stride, g);
        __syncthreads();
        float sc[FA_BK / 8][4];
#pragma unroll
        for (int nb = 0; nb < FA_BK / 8; nb++) {
            sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0.0f;
            const bf16 *kr = Ks + (nb * 8 + gr) * LD + 2 * tq;
#pragma unroll
            for (int kb = 0; kb < KB; kb++)
                mma_bf16(sc[nb], qf[kb][0], qf[kb][1], qf[kb][2], qf[kb][3], ld32(kr + kb * 16),
                         ld32(kr + kb * 16 + 8));
        }
        const bool full = !s.doc_ids && k0 + FA_BK - 1 <= q0 && (s.window <= 0 || q_last - s.window < k0);
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nb = 0; nb < FA_BK / 8; nb++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int r = c >> 1, j = k0 + nb * 8 + 2 * tq + (c & 1);
                float x = full || fa_visible(s, b, i_row[r], j) ? sc[nb][c] * sl2 : -INFINITY;
                sc[nb][c] = x;
                mx[r] = fmaxf(mx[r], x);
            }
        float corr[2], mu[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            float mn = fmaxf(m[r], mx[r]);
            mu[r] = mn == -INFINITY ? 0.0f : mn;
            corr[r] = exp2f(m[r] - mu[r]);
            m[r] = mn;
            l[r] *= corr[r];
        }
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            o[nb][0] *= corr[0];
            o[nb][1] *= corr[0];
            o[nb][2] *= corr[1];
            o[nb][3] *= corr[1];
        }
        /* P·V, 16 keys at a time; P rounded to bf16 once and summed as rounded */
#pragma unroll
        for (int kb = 0; kb < FA_BK / 16; kb++) {
            uint32_t pa[4];
#pragma unroll
            for (int half = 0; half < 2; half++) {
                float *p = sc[2 * kb + half];
                __nv_bfloat162 lo = __floats2bfloat162_rn(exp2f(p[0] - mu[0]), exp2f(p[1] - mu[0]));
                __nv_bfloat162 hi = __floats2bfloat162_rn(exp2f(p[2] - mu[1]), exp2f(p[3] - mu[1]));
                l[0] += __low2float(lo) + __high2float(lo);
                l[1] += __low2float(hi) + __high2float(hi);
                pa[2 * half] = *(uint32_t *)&lo;
                pa[2 * half + 1] = *(uint32_t *)&hi;
            }
            const bf16 *vr = Vs + (kb * 16 + 2 * tq) * LD + gr;
#pragma unroll
            for (int nb = 0; nb < NB; nb++) {
                const bf16 *vc = vr + nb * 8;
                mma_bf16(o[nb], pa[0], pa[1], pa[2], pa[3], pair16(vc, vc + LD),
                         pair16(vc + 8 * LD, vc + 9 * LD));
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int i = i_row[r];
        if (i >= s.T) continue;
        float inv = 1.0f / l[r];
        bf16 *orow = out + ((size_t)b * s.T + i) * s.o_stride + (size_t)h * D + 2 * tq;
#pragma unroll
        for (int nb = 0; nb < NB; nb++)
            *(__nv_bfloat162 *)(orow + nb * 8) = __floats2bfloat162_rn(o[nb][2 * r] * inv, o[nb][2 * r + 1] * inv);
        if (tq == 0) lse[((size_t)b * s.H + h) * s.T + i] = (m[r] + log2f(l[r])) * 0.6931471805599453f;
    }
}

int cuda_attention_forward_fast(void *out, float *lse, const void *q, const void *k, const void *v,
                                const struct attn_shape *s) {
    if (s->dqk != s->dv || (s->dqk != 64 && s->dqk != 128)) return 1;
    if (s->q_stride % 8 || s->k_stride % 8 || s->v_stride % 8 || s->o_stride % 2 ||
        ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) & 15 || (uintptr_t)out & 3)
        return 1;
    dim3 grid((s->T + FA_BQ - 1) / FA_BQ, s->B * s->H);
    if (s->dqk == 64)
        attention_forward_fast_kernel<64><<<grid, FA_WARPS * 32>>>((bf16 *)out, lse, (const bf16 *)q,
                                                                   (const bf16 *)k, (const bf16 *)v, *s);
    else
        attention_forward_fast_kernel<128><<<grid, FA_WARPS * 32>>>((bf16 *)out, lse, (const bf16 *)q,
                                                                    (const bf16 *)k, (const bf16 *)v, *s);
    CUDA_LAUNCHED("attention_forward (mma.sync)");
    return 0;
}
