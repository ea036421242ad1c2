/* Register-resident attention forward for dqk = dv ∈ {64, 128} (the common shapes):
 * mma.sync m16n8k16 bf16 with f32 accumulation, FlashAttention-2 style. Each warp owns
 * 16 queries; scores, probabilities and the output accumulator stay in registers, only
 * the 64-key K/V tiles go through shared memory. Fragment layouts are those of the PTX
 * ISA for m16n8k16: lane = 4·g + t holds rows g and g+8, columns 2t and 2t+1. */
#include <math.h>

#include "kernels/cuda/attention_common.h"

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
    attn_load_rows(Qs, LD, q, b, q0, s.T, s.q_stride, h, D);
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
        attn_load_rows(Ks, LD, k, b, k0, s.T, s.k_stride, g, D);
        attn_load_rows(Vs, LD, v, b, k0, s.T, s.v_stride, g, D);
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
                float x = full || attn_visible(s, b, i_row[r], j) ? sc[nb][c] * sl2 : -INFINITY;
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

/* ---- backward, head dim 64: dq (query-parallel) and dk/dv (key-parallel) ---- */

/* acc[NB] += A · B where A (16×64, from four 16×8 score blocks per 16 columns) is
 * rounded to bf16 and B rows are `rows` ([64][LD] in shared, k = row index) */
template <int D>
__device__ __forceinline__ void fa_acc_ab(float (*acc)[4], float (*a)[4], const bf16 *rows, int gr, int tq) {
    constexpr int LD = D + 8, NB = D / 8;
#pragma unroll
    for (int kb = 0; kb < 4; kb++) {
        uint32_t pa[4] = {pack_bf16(a[2 * kb][0], a[2 * kb][1]), pack_bf16(a[2 * kb][2], a[2 * kb][3]),
                          pack_bf16(a[2 * kb + 1][0], a[2 * kb + 1][1]),
                          pack_bf16(a[2 * kb + 1][2], a[2 * kb + 1][3])};
        const bf16 *br = rows + (kb * 16 + 2 * tq) * LD + gr;
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            const bf16 *c = br + nb * 8;
            mma_bf16(acc[nb], pa[0], pa[1], pa[2], pa[3], pair16(c, c + LD), pair16(c + 8 * LD, c + 9 * LD));
        }
    }
}

/* c[8] = A_w(16×D, registers) · rows(64×D, shared)ᵀ */
template <int D>
__device__ __forceinline__ void fa_abt(float (*c)[4], const uint32_t (*af)[4], const bf16 *rows, int gr, int tq) {
    constexpr int LD = D + 8, KB = D / 16;
#pragma unroll
    for (int nb = 0; nb < 8; nb++) {
        c[nb][0] = c[nb][1] = c[nb][2] = c[nb][3] = 0.0f;
        const bf16 *r = rows + (nb * 8 + gr) * LD + 2 * tq;
#pragma unroll
        for (int kb = 0; kb < KB; kb++)
            mma_bf16(c[nb], af[kb][0], af[kb][1], af[kb][2], af[kb][3], ld32(r + kb * 16), ld32(r + kb * 16 + 8));
    }
}

/* A fragments of the 16 rows at `w` ([16][LD] in shared) */
template <int D>
__device__ __forceinline__ void fa_frags(uint32_t (*f)[4], const bf16 *w, int gr, int tq) {
    constexpr int LD = D + 8, KB = D / 16;
#pragma unroll
    for (int kb = 0; kb < KB; kb++) {
        f[kb][0] = ld32(w + gr * LD + kb * 16 + 2 * tq);
        f[kb][1] = ld32(w + (gr + 8) * LD + kb * 16 + 2 * tq);
        f[kb][2] = ld32(w + gr * LD + kb * 16 + 8 + 2 * tq);
        f[kb][3] = ld32(w + (gr + 8) * LD + kb * 16 + 8 + 2 * tq);
    }
}

template <int D>
__global__ void __launch_bounds__(FA_WARPS * 32)
attention_dq_fast_kernel(bf16 *dqo, const bf16 *dout, const float *lse, const float *delta,
                         const bf16 *q, const bf16 *k, const bf16 *v, struct attn_shape s) {
    constexpr int LD = D + 8, KB = D / 16, NB = D / 8;
    __shared__ __align__(16) bf16 Ks[FA_BK * LD], Vs[FA_BK * LD];
    const int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h * s.G / s.H;
    const int q0 = blockIdx.x * FA_BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gr = lane / 4, tq = lane % 4;
    attn_load_rows(Ks, LD, q, b, q0, s.T, s.q_stride, h, D);      /* Q and dO pass through the tiles */
    attn_load_rows(Vs, LD, dout, b, q0, s.T, s.o_stride, h, D);
    __syncthreads();
    uint32_t qf[KB][4], of[KB][4];
    fa_frags<D>(qf, Ks + warp * 16 * LD, gr, tq);
    fa_frags<D>(of, Vs + warp * 16 * LD, gr, tq);
    const int i_row[2] = {q0 + warp * 16 + gr, q0 + warp * 16 + gr + 8};
    float L2[2], Dl[2], acc[NB][4];
    for (int r = 0; r < 2; r++) {
        size_t li = ((size_t)b * s.H + h) * s.T + (i_row[r] < s.T ? i_row[r] : 0);
        L2[r] = lse[li] * 1.4426950408889634f;
        Dl[r] = delta[li];
    }
#pragma unroll
    for (int nb = 0; nb < NB; nb++) acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0.0f;
    const int q_last = min(q0 + FA_BQ, s.T) - 1;
    int k_first = s.window > 0 ? max(0, q0 - s.window + 1) : 0;
    const float sl2 = s.scale * 1.4426950408889634f;
    for (int k0 = (k_first / FA_BK) * FA_BK; k0 <= q_last; k0 += FA_BK) {
        __syncthreads();
        attn_load_rows(Ks, LD, k, b, k0, s.T, s.k_stride, g, D);
        attn_load_rows(Vs, LD, v, b, k0, s.T, s.v_stride, g, D);
        __syncthreads();
        float sc[8][4], dp[8][4];
        fa_abt<D>(sc, qf, Ks, gr, tq);
        fa_abt<D>(dp, of, Vs, gr, tq);
        const bool full = !s.doc_ids && k0 + FA_BK - 1 <= q0 && (s.window <= 0 || q_last - s.window < k0);
#pragma unroll
        for (int nb = 0; nb < 8; nb++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int r = c >> 1, j = k0 + nb * 8 + 2 * tq + (c & 1);
                float p = full || attn_visible(s, b, i_row[r], j) ? exp2f(sc[nb][c] * sl2 - L2[r]) : 0.0f;
                sc[nb][c] = p * (dp[nb][c] - Dl[r]) * s.scale;
            }
        fa_acc_ab<D>(acc, sc, Ks, gr, tq);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (i_row[r] >= s.T) continue;
        bf16 *row = dqo + ((size_t)b * s.T + i_row[r]) * s.q_stride + (size_t)h * D + 2 * tq;
#pragma unroll
        for (int nb = 0; nb < NB; nb++)
            *(__nv_bfloat162 *)(row + nb * 8) = __floats2bfloat162_rn(acc[nb][2 * r], acc[nb][2 * r + 1]);
    }
}

template <int D>
__global__ void __launch_bounds__(FA_WARPS * 32)
attention_dkv_fast_kernel(bf16 *dko, bf16 *dvo, const bf16 *dout, const float *lse, const float *delta,
                          const bf16 *q, const bf16 *k, const bf16 *v, struct attn_shape s) {
    constexpr int LD = D + 8, KB = D / 16, NB = D / 8;
    __shared__ __align__(16) bf16 Qs[FA_BK * LD], Os[FA_BK * LD];
    __shared__ float Ls[FA_BK], Ds[FA_BK];
    const int bg = blockIdx.y, b = bg / s.G, g = bg % s.G;
    const int j0 = blockIdx.x * FA_BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gr = lane / 4, tq = lane % 4;
    attn_load_rows(Qs, LD, k, b, j0, s.T, s.k_stride, g, D);      /* K and V pass through the tiles */
    attn_load_rows(Os, LD, v, b, j0, s.T, s.v_stride, g, D);
    __syncthreads();
    uint32_t kf[KB][4], vf[KB][4];
    fa_frags<D>(kf, Qs + warp * 16 * LD, gr, tq);
    fa_frags<D>(vf, Os + warp * 16 * LD, gr, tq);
    const int j_row[2] = {j0 + warp * 16 + gr, j0 + warp * 16 + gr + 8};
    float dk[NB][4], dv[NB][4];
#pragma unroll
    for (int nb = 0; nb < NB; nb++)
#pragma unroll
        for (int c = 0; c < 4; c++) dk[nb][c] = dv[nb][c] = 0.0f;
    const int h_first = (g * s.H + s.G - 1) / s.G, h_end = ((g + 1) * s.H + s.G - 1) / s.G;
    const int j_last = min(j0 + FA_BQ, s.T) - 1;
    const int i_end = s.window > 0 ? min(s.T, j_last + s.window) : s.T;
    const float sl2 = s.scale * 1.4426950408889634f;
    for (int h = h_first; h < h_end; h++) {
        for (int i0 = (j0 / FA_BK) * FA_BK; i0 < i_end; i0 += FA_BK) {
            __syncthreads();
            attn_load_rows(Qs, LD, q, b, i0, s.T, s.q_stride, h, D);
            attn_load_rows(Os, LD, dout, b, i0, s.T, s.o_stride, h, D);
            for (int r = threadIdx.x; r < FA_BK; r += blockDim.x) {
                size_t li = ((size_t)b * s.H + h) * s.T + (i0 + r < s.T ? i0 + r : 0);
                Ls[r] = lse[li] * 1.4426950408889634f;
                Ds[r] = delta[li];
            }
            __syncthreads();
            float st[8][4], dpt[8][4];   /* Sᵀ and dPᵀ: rows = keys, columns = queries */
            fa_abt<D>(st, kf, Qs, gr, tq);
            fa_abt<D>(dpt, vf, Os, gr, tq);
            const bool full = !s.doc_ids && i0 >= j0 + FA_BQ - 1 && i0 + FA_BK - 1 < s.T &&
                              (s.window <= 0 || i0 + FA_BK - 1 - s.window < j0);
#pragma unroll
            for (int nb = 0; nb < 8; nb++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    int ci = nb * 8 + 2 * tq + (c & 1), j = j_row[c >> 1];
                    float p = full || (j < s.T && attn_visible(s, b, i0 + ci, j)) ? exp2f(st[nb][c] * sl2 - Ls[ci]) : 0.0f;
                    st[nb][c] = p;
                    dpt[nb][c] = p * (dpt[nb][c] - Ds[ci]) * s.scale;
                }
            fa_acc_ab<D>(dv, st, Os, gr, tq);
            fa_acc_ab<D>(dk, dpt, Qs, gr, tq);
        }
    }
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

int cuda_attention_backward_fast(void *dq, void *dk, void *dv, const void *dout, const float *delta,
                                 const float *lse, const void *q, const void *k, const void *v,
                                 const struct attn_shape *s) {
    if (s->dqk != 64 || s->dv != 64) return 1;
    if (s->q_stride % 8 || s->k_stride % 8 || s->v_stride % 8 || s->o_stride % 8 ||
        ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)dout) & 15 ||
        ((uintptr_t)dq | (uintptr_t)dk | (uintptr_t)dv) & 3)
        return 1;
    dim3 grid_q((s->T + FA_BQ - 1) / FA_BQ, s->B * s->H), grid_kv((s->T + FA_BQ - 1) / FA_BQ, s->B * s->G);
    attention_dq_fast_kernel<64><<<grid_q, FA_WARPS * 32>>>((bf16 *)dq, (const bf16 *)dout, lse, delta,
                                                            (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, *s);
    CUDA_LAUNCHED("attention_backward dq (mma.sync)");
    attention_dkv_fast_kernel<64><<<grid_kv, FA_WARPS * 32>>>((bf16 *)dk, (bf16 *)dv, (const bf16 *)dout, lse,
                                                              delta, (const bf16 *)q, (const bf16 *)k,
                                                              (const bf16 *)v, *s);
    CUDA_LAUNCHED("attention_backward dk/dv (mma.sync)");
    return 0;
}
