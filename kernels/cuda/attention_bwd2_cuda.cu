/* Fused attention backward, FlashAttention-2 style, for bf16 and dqk = dv ∈ {64, 128}: one kernel
 * instead of attention_fast_cuda.cu's separate dq and dk/dv kernels, so S and dP are
 * computed once per (query tile, key tile) pair: 5 matrix products instead of 7.
 *   grid (key blocks of 64, B·G): a CTA owns 64 keys of kv head g (16 per warp; K in shared
 *   memory, and for D = 64 K and V as A fragments in registers) and loops over the query heads
 *   of the group and the query tiles of 64 that can see its keys (causal, window; document
 *   masks per element). Q, dO, lse and delta tiles are double-buffered with cp.async.
 *   Per tile: Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ (rows = keys), P = exp(S·scale − lse),
 *   dS = P ⊙ (dP − delta)·scale, dV += Pᵀ·dO, dK += dSᵀ·Q (registers, no atomics: the
 *   CTA sums the whole group), and dSᵀ goes to shared memory (bf16) so that each warp
 *   then computes dQ for 16 of the tile's queries, dQ += dS·K, added with f32 atomics
 *   into a zeroed workspace [B,T,H,D] (cuda_workspace slot 5); a last kernel converts
 *   it to bf16 at q's stride (only the heads' columns are written).
 * Fragment layouts are the PTX ISA's for mma.sync m16n8k16 (as in attention_fast_cuda.cu):
 * lane = 4·g + t; an accumulator/C fragment c[4] holds rows g (c0, c1) and g+8 (c2, c3),
 * columns 2t, 2t+1; an A fragment a[4] holds (row g, cols 2t..), (g+8, 2t..), (g, 8+2t..),
 * (g+8, 8+2t..); a B fragment b[2] holds rows (k) 2t, 2t+1 and 8+2t, 8+2t+1 of column g.
 * Head dim 128: K and V stay in shared memory and their A fragments are read per product
 * (K, V, dK and dV fragments together would take 256 registers).
 * Selected by SUSHI_FA_BWD=fused (attention_cuda.cu); the mma/ldmatrix/cp.async helpers
 * are mma_sm80.h's, shared with attention_fast_cuda.cu. */
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda/attention_common.h"
#include "kernels/cuda/mma_sm80.h"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define SUSHI_FB_ARCH_OK 1
#else
#define SUSHI_FB_ARCH_OK 0
#endif

#define FB_WARPS 4
#define FB_BK 64 /* keys per CTA, 16 per warp */
#define FB_BQ 64 /* queries per tile */
#define FB_LDS (FB_BQ + 8) /* row stride of the dSᵀ tile [64 keys][72] */

#if SUSHI_FB_ARCH_OK /* device helpers: only the sm_80+ kernel bodies use them */
namespace {

__device__ __forceinline__ void fb_mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    mma_bf16(c, a[0], a[1], a[2], a[3], b0, b1);
}

/* c[8] = A_w(16×D, registers) · rows(64×D, shared [64][D+8])ᵀ: 16×64 */
template <int D>
__device__ __forceinline__ void fb_abt(float (*c)[4], const uint32_t (*af)[4], const bf16 *rows) {
    constexpr int LD = D + 8, KB = D / 16;
    const int lane = threadIdx.x % 32;
    const bf16 *base = rows + (lane & 7) * LD + (lane >> 3) * 8;
#pragma unroll
    for (int nb = 0; nb < 8; nb++) {
        c[nb][0] = c[nb][1] = c[nb][2] = c[nb][3] = 0.0f;
#pragma unroll
        for (int kb = 0; kb < KB; kb += 2) {
            uint32_t bf[4]; /* rows nb·8.. (n), columns kb·16 .. kb·16+32 (k) */
            ldsm4(bf, base + nb * 8 * LD + kb * 16);
            fb_mma(c[nb], af[kb], bf[0], bf[1]);
            fb_mma(c[nb], af[kb + 1], bf[2], bf[3]);
        }
    }
}

/* the same with the A rows (16×D) in shared [16][D+8], read per 32 columns by ldmatrix
 * (matrix m = lane/8: rows 8(m%2).., columns 16kb + 8(m/2).., i.e. a0..a3 of kb): head
 * dim 128, where K and V fragments would not fit in registers next to dK and dV */
template <int D>
__device__ __forceinline__ void fb_abt_s(float (*c)[4], const bf16 *arows, const bf16 *rows) {
    constexpr int LD = D + 8, KB = D / 16;
    const int lane = threadIdx.x % 32;
    const bf16 *base = rows + (lane & 7) * LD + (lane >> 3) * 8;
    const bf16 *abase = arows + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
    for (int nb = 0; nb < 8; nb++) c[nb][0] = c[nb][1] = c[nb][2] = c[nb][3] = 0.0f;
#pragma unroll
    for (int kb = 0; kb < KB; kb += 2) {
        uint32_t a0[4], a1[4];
        ldsm4(a0, abase + kb * 16);
        ldsm4(a1, abase + (kb + 1) * 16);
#pragma unroll
        for (int nb = 0; nb < 8; nb++) {
            uint32_t bf[4];
            ldsm4(bf, base + nb * 8 * LD + kb * 16);
            fb_mma(c[nb], a0, bf[0], bf[1]);
            fb_mma(c[nb], a1, bf[2], bf[3]);
        }
    }
}

/* acc[D/8] += pa(16×16 A fragment) · rows[kb·16, kb·16+16)(16×D, shared [..][D+8], k = row) */
template <int D>
__device__ __forceinline__ void fb_mma_rows(float (*acc)[4], const uint32_t *pa, const bf16 *rows, int kb) {
    constexpr int LD = D + 8, NB = D / 8;
    const int lane = threadIdx.x % 32;
    const bf16 *base = rows + (kb * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
    for (int nb = 0; nb < NB; nb += 2) {
        uint32_t bf[4];
        ldsm4t(bf, base + nb * 8);
        fb_mma(acc[nb], pa, bf[0], bf[1]);
        fb_mma(acc[nb + 1], pa, bf[2], bf[3]);
    }
}

/* acc += A · rows where A (16×64) is four pairs of 16×8 C fragments rounded to bf16 (a C
 * fragment pair 2kb, 2kb+1 is exactly the A fragment of columns [16kb, 16kb+16)) */
template <int D>
__device__ __forceinline__ void fb_acc_ab(float (*acc)[4], float (*a)[4], const bf16 *rows) {
#pragma unroll
    for (int kb = 0; kb < 4; kb++) {
        uint32_t pa[4] = {pack_bf16(a[2 * kb][0], a[2 * kb][1]), pack_bf16(a[2 * kb][2], a[2 * kb][3]),
                          pack_bf16(a[2 * kb + 1][0], a[2 * kb + 1][1]), pack_bf16(a[2 * kb + 1][2], a[2 * kb + 1][3])};
        fb_mma_rows<D>(acc, pa, rows, kb);
    }
}

/* A fragments of the 16 rows at w ([16][D+8] in shared) */
template <int D>
__device__ __forceinline__ void fb_frags(uint32_t (*f)[4], const bf16 *w, int gr, int tq) {
    constexpr int LD = D + 8, KB = D / 16;
#pragma unroll
    for (int kb = 0; kb < KB; kb++) {
        f[kb][0] = *(const uint32_t *)(w + gr * LD + kb * 16 + 2 * tq);
        f[kb][1] = *(const uint32_t *)(w + (gr + 8) * LD + kb * 16 + 2 * tq);
        f[kb][2] = *(const uint32_t *)(w + gr * LD + kb * 16 + 8 + 2 * tq);
        f[kb][3] = *(const uint32_t *)(w + (gr + 8) * LD + kb * 16 + 8 + 2 * tq);
    }
}

/* starts copying the Q and dO tiles of head h at queries [i0, i0+64) and their lse/delta */
template <int D>
__device__ __forceinline__ void fb_issue(bf16 *tiles, float *ls, const bf16 *q, const bf16 *dout, const float *lse,
                                         const float *delta, const struct attn_shape &s, int b, int h, int i0) {
    fa_async_rows<D>(tiles, q, b, i0, s.T, s.q_stride, h);
    fa_async_rows<D>(tiles + 64 * (D + 8), dout, b, i0, s.T, s.o_stride, h);
    for (int r = threadIdx.x; r < FB_BQ; r += blockDim.x) {
        size_t li = ((size_t)b * s.H + h) * s.T + (i0 + r < s.T ? i0 + r : 0);
        cp_async4(ls + r, lse + li);
        cp_async4(ls + FB_BQ + r, delta + li);
    }
    cp_commit();
}

/* ws[c], ws[c+1] += x, y (one vector reduction on sm_90, two below) */
__device__ __forceinline__ void fb_red2(float *ws, float x, float y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd((float2 *)ws, make_float2(x, y));
#else
    atomicAdd(ws, x);
    atomicAdd(ws + 1, y);
#endif
}

} // namespace
#endif

extern __shared__ __align__(16) unsigned char fb_smem[];

/* K and V A fragments in registers (D = 64) or read from shared per product (D = 128) */
#define FB_KREG(D) ((D) == 64)

/* shared memory: [stage 2][Q, dO][64][D+8] bf16, K [64][D+8], V [64][D+8] (D = 128 only),
 * dSᵀ [64][72] bf16, then [stage 2][lse, delta][64] f32: 56 KB for D = 64, 113 KB for
 * D = 128 (2 CTAs per SM on sm_90, 1 on sm_80) */
template <int D>
static constexpr int fb_smem_bytes() {
    return ((FB_KREG(D) ? 5 : 6) * 64 * (D + 8) + 64 * FB_LDS) * (int)sizeof(bf16) +
           2 * 2 * FB_BQ * (int)sizeof(float);
}

template <int D>
__global__ void __launch_bounds__(FB_WARPS * 32, 2)
attention_bwd_fused_kernel(float *dq_ws, bf16 *dko, bf16 *dvo, const bf16 *dout, const float *lse,
                           const float *delta, const bf16 *q, const bf16 *k, const bf16 *v, struct attn_shape s) {
#if SUSHI_FB_ARCH_OK
    constexpr int LD = D + 8, KB = D / 16, NB = D / 8, TILE = 64 * LD;
    constexpr bool KREG = FB_KREG(D);
    bf16 *sm = (bf16 *)fb_smem, *Ks = sm + 4 * TILE, *Vs = KREG ? sm + 2 * TILE : Ks + TILE;
    bf16 *dsT = Ks + (KREG ? 1 : 2) * TILE;
    float *lsm = (float *)(dsT + 64 * FB_LDS);
    const int bg = blockIdx.y, b = bg / s.G, g = bg % s.G;
    const int j0 = blockIdx.x * FB_BK, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gr = lane / 4, tq = lane % 4;
    const int h_first = (g * s.H + s.G - 1) / s.G, h_end = ((g + 1) * s.H + s.G - 1) / s.G;
    const int j_last = min(j0 + FB_BK, s.T) - 1;
    const int i_start = j0, i_end = s.window > 0 ? min(s.T, j_last + s.window) : s.T;
    /* K stays in shared (dQ's B operand); with KREG, V passes through stage 1's Q slot,
     * which the first prefetch overwrites only after the loop's first barrier */
    attn_load_rows(Ks, LD, k, b, j0, s.T, s.k_stride, g, D);
    attn_load_rows(Vs, LD, v, b, j0, s.T, s.v_stride, g, D);
    int h = h_first, i0 = i_start;
    fb_issue<D>(sm, lsm, q, dout, lse, delta, s, b, h, i0);
    __syncthreads();
    uint32_t kf[KREG ? KB : 1][4], vf[KREG ? KB : 1][4]; /* warp w: keys [j0 + 16w, +16) */
    if constexpr (KREG) {
        fb_frags<D>(kf, Ks + warp * 16 * LD, gr, tq);
        fb_frags<D>(vf, Vs + warp * 16 * LD, gr, tq);
    }
    const int j_row[2] = {j0 + warp * 16 + gr, j0 + warp * 16 + gr + 8};
    float dk[NB][4], dv[NB][4];
#pragma unroll
    for (int nb = 0; nb < NB; nb++)
#pragma unroll
        for (int c = 0; c < 4; c++) dk[nb][c] = dv[nb][c] = 0.0f;
    const float sl2 = s.scale * 1.4426950408889634f;
    for (int st = 0; h < h_end; st ^= 1) {
        int hn = h, in = i0 + FB_BQ;
        if (in >= i_end) {
            hn++;
            in = i_start;
        }
        __syncthreads(); /* everyone is done with the other stage, dSᵀ and vf's source */
        if (hn < h_end) {
            fb_issue<D>(sm + (st ^ 1) * 2 * TILE, lsm + (st ^ 1) * 2 * FB_BQ, q, dout, lse, delta, s, b, hn, in);
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        const bf16 *Qs = sm + st * 2 * TILE, *Os = Qs + TILE;
        const float *Ls = lsm + st * 2 * FB_BQ, *Ds = Ls + FB_BQ;
        float sT[8][4], dpt[8][4]; /* Sᵀ and dPᵀ: rows = the warp's 16 keys, columns = 64 queries */
        if constexpr (KREG) {
            fb_abt<D>(sT, kf, Qs);
            fb_abt<D>(dpt, vf, Os);
        } else {
            fb_abt_s<D>(sT, Ks + warp * 16 * LD, Qs);
            fb_abt_s<D>(dpt, Vs + warp * 16 * LD, Os);
        }
        const bool full = !s.doc_ids && i0 >= j0 + FB_BK - 1 && i0 + FB_BQ - 1 < s.T &&
                          (s.window <= 0 || i0 + FB_BQ - 1 - s.window < j0);
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
        /* dSᵀ (bf16, the values the dK product rounds to) at [key 16w + g (+8)][query 8nb + 2t] */
#pragma unroll
        for (int nb = 0; nb < 8; nb++)
#pragma unroll
            for (int r = 0; r < 2; r++)
                *(uint32_t *)(dsT + (warp * 16 + gr + 8 * r) * FB_LDS + nb * 8 + 2 * tq) =
                    pack_bf16(dpt[nb][2 * r], dpt[nb][2 * r + 1]);
        fb_acc_ab<D>(dv, sT, Os);
        fb_acc_ab<D>(dk, dpt, Qs);
        __syncthreads(); /* dSᵀ complete */
        /* dQ of queries [i0 + 16w, +16): A = dS (16 queries × 16 keys per kb) read from the
         * stored dSᵀ with ldmatrix.trans: matrix m = lane/8 covers keys 16kb + 8(m/2) and
         * queries 16w + 8(m%2), i.e. a0..a3 = (q g, k 2t), (q g+8, k 2t), (q g, k 8+2t),
         * (q g+8, k 8+2t) */
        float dqa[NB][4];
#pragma unroll
        for (int nb = 0; nb < NB; nb++) dqa[nb][0] = dqa[nb][1] = dqa[nb][2] = dqa[nb][3] = 0.0f;
        const bf16 *abase = dsT + ((lane & 7) + (lane >> 4) * 8) * FB_LDS + warp * 16 + ((lane >> 3) & 1) * 8;
#pragma unroll
        for (int kb = 0; kb < FB_BK / 16; kb++) {
            uint32_t a[4];
            ldsm4t(a, abase + kb * 16 * FB_LDS);
            fb_mma_rows<D>(dqa, a, Ks, kb);
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
            int i = i0 + warp * 16 + gr + 8 * r;
            if (i >= s.T) continue;
            float *row = dq_ws + (((size_t)b * s.T + i) * s.H + h) * D + 2 * tq;
#pragma unroll
            for (int nb = 0; nb < NB; nb++) fb_red2(row + nb * 8, dqa[nb][2 * r], dqa[nb][2 * r + 1]);
        }
        h = hn;
        i0 = in;
    }
    fa_store_kv_grads<D, NB>(dko, dvo, dk, dv, j_row, b, g, tq, s);
#endif
}

/* dq[b, t, h·D + d] (q's stride) = ws[b, t, h, d], two columns per thread */
__global__ void attention_dq_ws_convert_kernel(bf16 *dq, const float *ws, struct attn_shape s) {
    const size_t pairs = (size_t)s.B * s.T * s.H * s.dqk / 2;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < pairs; e += (size_t)gridDim.x * blockDim.x) {
        size_t idx = 2 * e, bth = idx / s.dqk, bt = bth / s.H;
        int d = (int)(idx % s.dqk), h = (int)(bth % s.H);
        float2 x = *(const float2 *)(ws + idx);
        *(__nv_bfloat162 *)(dq + bt * s.q_stride + (size_t)h * s.dqk + d) = __floats2bfloat162_rn(x.x, x.y);
    }
}

/* 1 when the device cannot give a CTA `smem` bytes of shared memory (sm_86/89: 99 KB) */
template <int D>
static int fb_launch(float *ws, bf16 *dk, bf16 *dv, const bf16 *dout, const float *lse, const float *delta,
                     const bf16 *q, const bf16 *k, const bf16 *v, const struct attn_shape *s) {
    constexpr int smem = fb_smem_bytes<D>();
    int dev = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev), "attention_backward (fused): device");
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
               "attention_backward (fused): shared memory limit");
    if (optin < smem) return 1;
    CUDA_CHECK(cudaFuncSetAttribute(attention_bwd_fused_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
               "attention_backward (fused): shared memory");
    dim3 grid((s->T + FB_BK - 1) / FB_BK, s->B * s->G);
    attention_bwd_fused_kernel<D><<<grid, FB_WARPS * 32, smem>>>(ws, dk, dv, dout, lse, delta, q, k, v, *s);
    CUDA_LAUNCHED("attention_backward (fused) dq/dk/dv");
    return 0;
}

int cuda_attention_backward_fused(void *dq, void *dk, void *dv, const void *dout, const float *delta,
                                  const float *lse, const void *q, const void *k, const void *v,
                                  const struct attn_shape *s) {
    if (!s || cuda_act_dtype() != DT_BF16 || s->dqk != s->dv || (s->dqk != 64 && s->dqk != 128)) return 1;
    if (s->q_stride % 8 || s->k_stride % 8 || s->v_stride % 8 || s->o_stride % 8 ||
        ((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)dout) & 15 ||
        ((uintptr_t)dq | (uintptr_t)dk | (uintptr_t)dv) & 3)
        return 1;
    const size_t n = (size_t)s->B * s->T * s->H * s->dqk;
    void *ws;
    int rc = cuda_workspace(&ws, n * sizeof(float), 5);
    if (rc) return rc;
    CUDA_CHECK(cudaMemsetAsync(ws, 0, n * sizeof(float)), "attention_backward (fused): zeroing the dq workspace");
    rc = (s->dqk == 64 ? fb_launch<64> : fb_launch<128>)((float *)ws, (bf16 *)dk, (bf16 *)dv, (const bf16 *)dout,
                                                          lse, delta, (const bf16 *)q, (const bf16 *)k,
                                                          (const bf16 *)v, s);
    if (rc) return rc;
    attention_dq_ws_convert_kernel<<<cuda_blocks(n / 2, 256), 256>>>((bf16 *)dq, (const float *)ws, *s);
    CUDA_LAUNCHED("attention_backward (fused) dq conversion");
    return 0;
}
