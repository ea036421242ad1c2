/* Register-resident attention forward for dqk = dv ∈ {64, 128} (the common shapes):
 * mma.sync m16n8k16 bf16 with f32 accumulation, FlashAttention-2 style. Each warp owns
 * 16 queries; scores, probabilities and the output accumulator stay in registers, only
 * the 64-key K/V tiles go through shared memory, double-buffered with cp.async (the next
 * tile loads while this one is used) and read into fragments with ldmatrix. Fragment
 * layouts are those of the PTX ISA for m16n8k16: lane = 4·g + t holds rows g and g+8,
 * columns 2t and 2t+1. Causal query blocks run heaviest first (shorter tail).
 * bf16 activations only: with f16 (GPUs below sm_80, which lack cp.async and the
 * m16n8k16 shape too, or SUSHI_CUDA_DTYPE=f16) both entry points return 1 and the WMMA
 * kernels of attention_mma_cuda.cu, templated over the act type, take the shapes. */
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda/attention_common.h"
#include "kernels/cuda/mma_sm80.h"

/* the device code needs sm_80 (cp.async, bf16 mma.sync): for older targets the kernels
 * compile empty, and they are never launched there (bf16 is refused below 8.0) */
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define SUSHI_FA_ARCH_OK 1
#else
#define SUSHI_FA_ARCH_OK 0
#endif

#define FA_WARPS 4
#define FA_BQ (FA_WARPS * 16)
#define FA_BK 64

/* c[mt][8] = A_w[mt](16×D, registers) · rows(64×D, shared)ᵀ for MT row tiles of 16:
 * each B fragment loaded once serves all MT tiles (shared-memory traffic / MT) */
template <int D, int MT>
__device__ __forceinline__ void fa_abt_m(float (*c)[8][4], const uint32_t (*af)[D / 16][4], const bf16 *rows) {
    constexpr int LD = D + 8, KB = D / 16;
    const int lane = threadIdx.x % 32;
    const bf16 *base = rows + (lane & 7) * LD + (lane >> 3) * 8;
#pragma unroll
    for (int nb = 0; nb < 8; nb++) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++) c[mt][nb][0] = c[mt][nb][1] = c[mt][nb][2] = c[mt][nb][3] = 0.0f;
#pragma unroll
        for (int kb = 0; kb < KB; kb += 2) {
            uint32_t bf[4];
            ldsm4(bf, base + nb * 8 * LD + kb * 16);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const uint32_t *a0 = af[mt][kb], *a1 = af[mt][kb + 1];
                mma_bf16(c[mt][nb], a0[0], a0[1], a0[2], a0[3], bf[0], bf[1]);
                mma_bf16(c[mt][nb], a1[0], a1[1], a1[2], a1[3], bf[2], bf[3]);
            }
        }
    }
}

/* c[8] = A_w(16×D, registers) · rows(64×D, shared)ᵀ */
template <int D>
__device__ __forceinline__ void fa_abt(float (*c)[4], const uint32_t (*af)[4], const bf16 *rows) {
    fa_abt_m<D, 1>((float (*)[8][4])c, (const uint32_t (*)[D / 16][4])af, rows);
}

/* acc[mt][NB] += pa[mt](16×16 A fragment) · rows[kb·16, kb·16+16)(16×D, shared, k = row index) */
template <int D, int MT>
__device__ __forceinline__ void fa_mma_rows_m(float (*acc)[D / 8][4], const uint32_t (*pa)[4], const bf16 *rows,
                                              int kb) {
    constexpr int LD = D + 8, NB = D / 8;
    const int lane = threadIdx.x % 32;
    const bf16 *base = rows + (kb * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
    for (int nb = 0; nb < NB; nb += 2) {
        uint32_t bf[4];
        ldsm4t(bf, base + nb * 8);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            mma_bf16(acc[mt][nb], pa[mt][0], pa[mt][1], pa[mt][2], pa[mt][3], bf[0], bf[1]);
            mma_bf16(acc[mt][nb + 1], pa[mt][0], pa[mt][1], pa[mt][2], pa[mt][3], bf[2], bf[3]);
        }
    }
}

template <int D>
__device__ __forceinline__ void fa_mma_rows(float (*acc)[4], const uint32_t *pa, const bf16 *rows, int kb) {
    fa_mma_rows_m<D, 1>((float (*)[D / 8][4])acc, (const uint32_t (*)[4])pa, rows, kb);
}

/* acc[NB] += A · B where A (16×64, from four 16×8 score blocks per 16 columns) is
 * rounded to bf16 and B rows are `rows` ([64][LD] in shared, k = row index) */
template <int D>
__device__ __forceinline__ void fa_acc_ab(float (*acc)[4], float (*a)[4], const bf16 *rows) {
#pragma unroll
    for (int kb = 0; kb < 4; kb++) {
        uint32_t pa[4] = {pack_bf16(a[2 * kb][0], a[2 * kb][1]), pack_bf16(a[2 * kb][2], a[2 * kb][3]),
                          pack_bf16(a[2 * kb + 1][0], a[2 * kb + 1][1]),
                          pack_bf16(a[2 * kb + 1][2], a[2 * kb + 1][3])};
        fa_mma_rows<D>(acc, pa, rows, kb);
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

extern __shared__ __align__(16) unsigned char fa_smem[];

template <int D, int MT, int MINB>
__global__ void __launch_bounds__(FA_WARPS * 32, MINB)
attention_forward_fast_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                              struct attn_shape s) {
#if SUSHI_FA_ARCH_OK
    constexpr int LD = D + 8, KB = D / 16, NB = D / 8, TILE = FA_BK * LD, BQ = FA_BQ * MT;
    bf16 *sm = (bf16 *)fa_smem; /* [stage 2][K, V][64][LD] */
    const int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h * s.G / s.H;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gr = lane / 4, tq = lane % 4;
    const int q_last = min(q0 + BQ, s.T) - 1;
    const int k_first = s.window > 0 ? max(0, q0 - s.window + 1) : 0;
    int k0 = (k_first / FA_BK) * FA_BK;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) /* Q (64·MT ≤ 128 rows) through stage 1 */
        attn_load_rows(sm + (2 + mt) * TILE, LD, q, b, q0 + mt * FA_BK, s.T, s.q_stride, h, D);
    fa_async_rows<D>(sm, k, b, k0, s.T, s.k_stride, g);
    fa_async_rows<D>(sm + TILE, v, b, k0, s.T, s.v_stride, g);
    cp_commit();
    __syncthreads();
    /* warp w owns the query rows [q0 + 16·MT·w, +16·MT), MT tiles of 16 */
    uint32_t qf[MT][KB][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) fa_frags<D>(qf[mt], sm + 2 * TILE + (warp * MT + mt) * 16 * LD, gr, tq);
    float o[MT][NB][4], m[MT][2], l[MT][2];
    int i_row[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int nb = 0; nb < NB; nb++) o[mt][nb][0] = o[mt][nb][1] = o[mt][nb][2] = o[mt][nb][3] = 0.0f;
#pragma unroll
        for (int r = 0; r < 2; r++) {
            m[mt][r] = -INFINITY;
            l[mt][r] = 0.0f;
            i_row[mt][r] = q0 + (warp * MT + mt) * 16 + gr + 8 * r;
        }
    }
    const float sl2 = s.scale * 1.4426950408889634f; /* exp(x) = exp2(x·log2 e) */
    for (int st = 0; k0 <= q_last; k0 += FA_BK, st ^= 1) {
        __syncthreads(); /* everyone is done with the other stage */
        if (k0 + FA_BK <= q_last) {
            bf16 *nx = sm + (st ^ 1) * 2 * TILE;
            fa_async_rows<D>(nx, k, b, k0 + FA_BK, s.T, s.k_stride, g);
            fa_async_rows<D>(nx + TILE, v, b, k0 + FA_BK, s.T, s.v_stride, g);
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        const bf16 *Ks = sm + st * 2 * TILE, *Vs = Ks + TILE;
        float sc[MT][FA_BK / 8][4];
        fa_abt_m<D, MT>(sc, qf, Ks);
        const bool full = !s.doc_ids && k0 + FA_BK - 1 <= q0 && (s.window <= 0 || q_last - s.window < k0);
        float mu[MT][2];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nb = 0; nb < FA_BK / 8; nb++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    int r = c >> 1, j = k0 + nb * 8 + 2 * tq + (c & 1);
                    float x = full || attn_visible(s, b, i_row[mt][r], j) ? sc[mt][nb][c] * sl2 : -INFINITY;
                    sc[mt][nb][c] = x;
                    mx[r] = fmaxf(mx[r], x);
                }
            float corr[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                float mn = fmaxf(m[mt][r], mx[r]);
                mu[mt][r] = mn == -INFINITY ? 0.0f : mn;
                corr[r] = exp2f(m[mt][r] - mu[mt][r]);
                m[mt][r] = mn;
                l[mt][r] *= corr[r];
            }
#pragma unroll
            for (int nb = 0; nb < NB; nb++) {
                o[mt][nb][0] *= corr[0];
                o[mt][nb][1] *= corr[0];
                o[mt][nb][2] *= corr[1];
                o[mt][nb][3] *= corr[1];
            }
        }
        /* P·V, 16 keys at a time; P rounded to bf16 once and summed as rounded */
#pragma unroll
        for (int kb = 0; kb < FA_BK / 16; kb++) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int half = 0; half < 2; half++) {
                    float *p = sc[mt][2 * kb + half];
                    __nv_bfloat162 lo = __floats2bfloat162_rn(exp2f(p[0] - mu[mt][0]), exp2f(p[1] - mu[mt][0]));
                    __nv_bfloat162 hi = __floats2bfloat162_rn(exp2f(p[2] - mu[mt][1]), exp2f(p[3] - mu[mt][1]));
                    l[mt][0] += __low2float(lo) + __high2float(lo);
                    l[mt][1] += __low2float(hi) + __high2float(hi);
                    pa[mt][2 * half] = *(uint32_t *)&lo;
                    pa[mt][2 * half + 1] = *(uint32_t *)&hi;
                }
            fa_mma_rows_m<D, MT>(o, pa, Vs, kb);
        }
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float lr = l[mt][r];
            lr += __shfl_xor_sync(0xffffffffu, lr, 1);
            lr += __shfl_xor_sync(0xffffffffu, lr, 2);
            int i = i_row[mt][r];
            if (i >= s.T) continue;
            float inv = 1.0f / lr;
            bf16 *orow = out + ((size_t)b * s.T + i) * s.o_stride + (size_t)h * D + 2 * tq;
#pragma unroll
            for (int nb = 0; nb < NB; nb++)
                *(__nv_bfloat162 *)(orow + nb * 8) =
                    __floats2bfloat162_rn(o[mt][nb][2 * r] * inv, o[mt][nb][2 * r + 1] * inv);
            if (tq == 0) lse[((size_t)b * s.H + h) * s.T + i] = (m[mt][r] + log2f(lr)) * 0.6931471805599453f;
        }
#endif
}

/* Dynamic shared memory: two stages of K and V tiles. D = 64 runs 16 query rows per warp
 * (registers capped for 4 resident blocks per SM); SUSHI_FA_FWD32=1 selects 32 rows per
 * warp (each K/V fragment read once for two row tiles, 252 registers, 2 blocks per SM),
 * correct but 10-20% slower on the H100 (bench/RESULTS.md). */
template <int D>
static int fa_forward_launch(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                             const struct attn_shape *s) {
    static int rows32 = -1;
    if (rows32 < 0) rows32 = getenv("SUSHI_FA_FWD32") && getenv("SUSHI_FA_FWD32")[0] == '1';
    const int mt = D == 64 && rows32 ? 2 : 1, smem = 4 * FA_BK * (D + 8) * (int)sizeof(bf16);
    void (*kern)(bf16 *, float *, const bf16 *, const bf16 *, const bf16 *, struct attn_shape) =
        mt == 2 ? attention_forward_fast_kernel<D, D == 64 ? 2 : 1, 2>
                : attention_forward_fast_kernel<D, 1, D == 64 ? 4 : 2>;
    CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
               "attention_forward (mma.sync) shared memory");
    dim3 grid((s->T + FA_BQ * mt - 1) / (FA_BQ * mt), s->B * s->H);
    kern<<<grid, FA_WARPS * 32, smem>>>(out, lse, q, k, v, *s);
    CUDA_LAUNCHED("attention_forward (mma.sync)");
    return 0;
}

int cuda_attention_forward_fast(void *out, float *lse, const void *q, const void *k, const void *v,
                                const struct attn_shape *s) {
    if (cuda_act_dtype() != DT_BF16 || s->dqk != s->dv || (s->dqk != 64 && s->dqk != 128)) return 1;
    if (s->q_stride % 8 || s->k_stride % 8 || s->v_stride % 8 || s->o_stride % 2 ||
        ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) & 15 || (uintptr_t)out & 3)
        return 1;
    if (s->dqk == 64)
        return fa_forward_launch<64>((bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, s);
    return fa_forward_launch<128>((bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, s);
}

/* ---- backward, head dim 64: dq (query-parallel) and dk/dv (key-parallel) ---- */

template <int D, int MINB>
__global__ void __launch_bounds__(FA_WARPS * 32, MINB)
attention_dq_fast_kernel(bf16 *dqo, const bf16 *dout, const float *lse, const float *delta,
                         const bf16 *q, const bf16 *k, const bf16 *v, struct attn_shape s) {
#if SUSHI_FA_ARCH_OK
    constexpr int LD = D + 8, KB = D / 16, NB = D / 8, TILE = FA_BK * LD;
    __shared__ __align__(16) bf16 sm[4 * TILE]; /* [stage 2][K, V][64][LD] */
    const int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h * s.G / s.H;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * FA_BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gr = lane / 4, tq = lane % 4;
    const int q_last = min(q0 + FA_BQ, s.T) - 1;
    const int k_first = s.window > 0 ? max(0, q0 - s.window + 1) : 0;
    int k0 = (k_first / FA_BK) * FA_BK;
    attn_load_rows(sm + 2 * TILE, LD, q, b, q0, s.T, s.q_stride, h, D); /* Q and dO through stage 1 */
    attn_load_rows(sm + 3 * TILE, LD, dout, b, q0, s.T, s.o_stride, h, D);
    fa_async_rows<D>(sm, k, b, k0, s.T, s.k_stride, g);
    fa_async_rows<D>(sm + TILE, v, b, k0, s.T, s.v_stride, g);
    cp_commit();
    __syncthreads();
    uint32_t qf[KB][4], of[KB][4];
    fa_frags<D>(qf, sm + 2 * TILE + warp * 16 * LD, gr, tq);
    fa_frags<D>(of, sm + 3 * TILE + warp * 16 * LD, gr, tq);
    const int i_row[2] = {q0 + warp * 16 + gr, q0 + warp * 16 + gr + 8};
    float L2[2], Dl[2], acc[NB][4];
    for (int r = 0; r < 2; r++) {
        size_t li = ((size_t)b * s.H + h) * s.T + (i_row[r] < s.T ? i_row[r] : 0);
        L2[r] = lse[li] * 1.4426950408889634f;
        Dl[r] = delta[li];
    }
#pragma unroll
    for (int nb = 0; nb < NB; nb++) acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0.0f;
    const float sl2 = s.scale * 1.4426950408889634f;
    for (int st = 0; k0 <= q_last; k0 += FA_BK, st ^= 1) {
        __syncthreads();
        if (k0 + FA_BK <= q_last) {
            bf16 *nx = sm + (st ^ 1) * 2 * TILE;
            fa_async_rows<D>(nx, k, b, k0 + FA_BK, s.T, s.k_stride, g);
            fa_async_rows<D>(nx + TILE, v, b, k0 + FA_BK, s.T, s.v_stride, g);
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        const bf16 *Ks = sm + st * 2 * TILE, *Vs = Ks + TILE;
        float sc[8][4], dp[8][4];
        fa_abt<D>(sc, qf, Ks);
        fa_abt<D>(dp, of, Vs);
        const bool full = !s.doc_ids && k0 + FA_BK - 1 <= q0 && (s.window <= 0 || q_last - s.window < k0);
#pragma unroll
        for (int nb = 0; nb < 8; nb++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int r = c >> 1, j = k0 + nb * 8 + 2 * tq + (c & 1);
                float p = full || attn_visible(s, b, i_row[r], j) ? exp2f(sc[nb][c] * sl2 - L2[r]) : 0.0f;
                sc[nb][c] = p * (dp[nb][c] - Dl[r]) * s.scale;
            }
        fa_acc_ab<D>(acc, sc, Ks);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (i_row[r] >= s.T) continue;
        bf16 *row = dqo + ((size_t)b * s.T + i_row[r]) * s.q_stride + (size_t)h * D + 2 * tq;
#pragma unroll
        for (int nb = 0; nb < NB; nb++)
            *(__nv_bfloat162 *)(row + nb * 8) = __floats2bfloat162_rn(acc[nb][2 * r], acc[nb][2 * r + 1]);
    }
#endif
}

/* starts copying the Q and dO tiles of head h at queries [i0, i0+64) and their lse/delta */
template <int D>
__device__ __forceinline__ void fa_dkv_issue(bf16 *tiles, float *ls, const bf16 *q, const bf16 *dout,
                                             const float *lse, const float *delta, const struct attn_shape &s,
                                             int b, int h, int i0) {
    fa_async_rows<D>(tiles, q, b, i0, s.T, s.q_stride, h);
    fa_async_rows<D>(tiles + FA_BK * (D + 8), dout, b, i0, s.T, s.o_stride, h);
    for (int r = threadIdx.x; r < FA_BK; r += blockDim.x) {
        size_t li = ((size_t)b * s.H + h) * s.T + (i0 + r < s.T ? i0 + r : 0);
        cp_async4(ls + r, lse + li);
        cp_async4(ls + FA_BK + r, delta + li);
    }
    cp_commit();
}

template <int D, int MINB>
__global__ void __launch_bounds__(FA_WARPS * 32, MINB)
attention_dkv_fast_kernel(bf16 *dko, bf16 *dvo, const bf16 *dout, const float *lse, const float *delta,
                          const bf16 *q, const bf16 *k, const bf16 *v, struct attn_shape s) {
#if SUSHI_FA_ARCH_OK
    constexpr int LD = D + 8, KB = D / 16, NB = D / 8, TILE = FA_BK * LD;
    __shared__ __align__(16) bf16 sm[4 * TILE]; /* [stage 2][Q, dO][64][LD] */
    __shared__ float lsm[2][2 * FA_BK];          /* [stage 2][lse, delta][64] */
    const int bg = blockIdx.y, b = bg / s.G, g = bg % s.G;
    const int j0 = blockIdx.x * FA_BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gr = lane / 4, tq = lane % 4;
    const int h_first = (g * s.H + s.G - 1) / s.G, h_end = ((g + 1) * s.H + s.G - 1) / s.G;
    const int j_last = min(j0 + FA_BQ, s.T) - 1;
    const int i_start = (j0 / FA_BK) * FA_BK, i_end = s.window > 0 ? min(s.T, j_last + s.window) : s.T;
    attn_load_rows(sm + 2 * TILE, LD, k, b, j0, s.T, s.k_stride, g, D); /* K and V through stage 1 */
    attn_load_rows(sm + 3 * TILE, LD, v, b, j0, s.T, s.v_stride, g, D);
    int h = h_first, i0 = i_start;
    fa_dkv_issue<D>(sm, lsm[0], q, dout, lse, delta, s, b, h, i0);
    __syncthreads();
    uint32_t kf[KB][4], vf[KB][4];
    fa_frags<D>(kf, sm + 2 * TILE + warp * 16 * LD, gr, tq);
    fa_frags<D>(vf, sm + 3 * TILE + warp * 16 * LD, gr, tq);
    const int j_row[2] = {j0 + warp * 16 + gr, j0 + warp * 16 + gr + 8};
    float dk[NB][4], dv[NB][4];
#pragma unroll
    for (int nb = 0; nb < NB; nb++)
#pragma unroll
        for (int c = 0; c < 4; c++) dk[nb][c] = dv[nb][c] = 0.0f;
    const float sl2 = s.scale * 1.4426950408889634f;
    for (int st = 0; h < h_end; st ^= 1) {
        int hn = h, in = i0 + FA_BK;
        if (in >= i_end) {
            hn++;
            in = i_start;
        }
        __syncthreads();
        if (hn < h_end) {
            fa_dkv_issue<D>(sm + (st ^ 1) * 2 * TILE, lsm[st ^ 1], q, dout, lse, delta, s, b, hn, in);
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        const bf16 *Qs = sm + st * 2 * TILE, *Os = Qs + TILE;
        const float *Ls = lsm[st], *Ds = lsm[st] + FA_BK;
        float sT[8][4], dpt[8][4]; /* Sᵀ and dPᵀ: rows = keys, columns = queries */
        fa_abt<D>(sT, kf, Qs);
        fa_abt<D>(dpt, vf, Os);
        const bool full = !s.doc_ids && i0 >= j0 + FA_BQ - 1 && i0 + FA_BK - 1 < s.T &&
                          (s.window <= 0 || i0 + FA_BK - 1 - s.window < j0);
#pragma unroll
        for (int nb = 0; nb < 8; nb++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int ci = nb * 8 + 2 * tq + (c & 1), j = j_row[c >> 1];
                float p = full || (j < s.T && attn_visible(s, b, i0 + ci, j))
                              ? exp2f(sT[nb][c] * sl2 - Ls[ci] * 1.4426950408889634f)
                              : 0.0f;
                sT[nb][c] = p;
                dpt[nb][c] = p * (dpt[nb][c] - Ds[ci]) * s.scale;
            }
        fa_acc_ab<D>(dv, sT, Os);
        fa_acc_ab<D>(dk, dpt, Qs);
        h = hn;
        i0 = in;
    }
    fa_store_kv_grads<D, NB>(dko, dvo, dk, dv, j_row, b, g, tq, s);
#endif
}

int cuda_attention_backward_fast(void *dq, void *dk, void *dv, const void *dout, const float *delta,
                                 const float *lse, const void *q, const void *k, const void *v,
                                 const struct attn_shape *s) {
    if (cuda_act_dtype() != DT_BF16 || s->dqk != 64 || s->dv != 64) return 1;
    if (s->q_stride % 8 || s->k_stride % 8 || s->v_stride % 8 || s->o_stride % 8 ||
        ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)dout) & 15 ||
        ((uintptr_t)dq | (uintptr_t)dk | (uintptr_t)dv) & 3)
        return 1;
    dim3 grid_q((s->T + FA_BQ - 1) / FA_BQ, s->B * s->H), grid_kv((s->T + FA_BQ - 1) / FA_BQ, s->B * s->G);
    /* dq capped at 168 registers: 3 resident blocks instead of 2 */
    attention_dq_fast_kernel<64, 3><<<grid_q, FA_WARPS * 32>>>((bf16 *)dq, (const bf16 *)dout, lse, delta,
                                                               (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, *s);
    CUDA_LAUNCHED("attention_backward dq (mma.sync)");
    attention_dkv_fast_kernel<64, 2><<<grid_kv, FA_WARPS * 32>>>((bf16 *)dk, (bf16 *)dv, (const bf16 *)dout, lse,
                                                                 delta, (const bf16 *)q, (const bf16 *)k,
                                                                 (const bf16 *)v, *s);
    CUDA_LAUNCHED("attention_backward dk/dv (mma.sync)");
    return 0;
}
