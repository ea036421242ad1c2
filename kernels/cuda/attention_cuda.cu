/* Flash-style attention on bf16 or f16 q/k/v with f32 arithmetic: the scores are never
 * stored; the forward keeps an online softmax per query and saves lse [B,H,T] (f32)
 * for the backward, which recomputes the probabilities tile by tile.
 *   forward   grid (query tiles, B·H): warp per query row, lane per key of a 32-key tile
 *   backward  delta = Σ dout⊙out; dq kernel (query-parallel, like the forward);
 *             dk/dv kernel (key-parallel, one kv head, looping over the heads of its
 *             group and the query tiles that can see it), so GQA sums need no atomics.
 * Key tiles that the causal/window mask hides entirely are skipped; document masks are
 * applied per element. dq/dk/dv use the strides of q/k/v, dout that of out.
 * Dispatch: the mma.sync kernels (attention_fast_cuda.cu: bf16 only, dqk = dv = 64/128
 * forward, 64 backward), else the WMMA kernels (attention_mma_cuda.cu: bf16 or f16, dims
 * multiple of 16),
 * else the plain f32 kernels here, which serve any dims ≤ 256 and are the reference
 * the others are checked against (SUSHI_ATTN_SIMPLE=1 forces them). */
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda/attention_common.h"

#define ATT_WARPS 4
#define ATT_ROWS 4                       /* rows per warp */
#define ATT_BQ (ATT_WARPS * ATT_ROWS)    /* 16 query (or key) rows per block */
#define ATT_BK 32                        /* keys (or queries) per tile: one per lane */
#define ATT_NC 8                         /* ≤ 8 chunks of 32: head dims up to 256 */
#define ATT_MAXD (ATT_NC * 32)

/* first key that query range [q0, q1) may see under the window */
__device__ __forceinline__ int att_first_key(const struct attn_shape &s, int q0) {
    if (s.window <= 0) return 0;
    int k = q0 - s.window + 1;
    return k > 0 ? (k / ATT_BK) * ATT_BK : 0;
}

template <typename T>
__global__ void __launch_bounds__(ATT_WARPS * 32)
attention_forward_kernel(T *out, float *lse, const T *q, const T *k, const T *v,
                         struct attn_shape s) {
    extern __shared__ float sm[];
    const int dq = s.dqk, dv = s.dv;
    float *Qs = sm;                          /* [BQ][dq] */
    float *Ks = Qs + ATT_BQ * dq;            /* [BK][dq+1] */
    float *Vs = Ks + ATT_BK * (dq + 1);      /* [BK][dv] */
    const int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h * s.G / s.H;
    const int q0 = blockIdx.x * ATT_BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int tid = threadIdx.x, nt = blockDim.x;

    for (int e = tid; e < ATT_BQ * dq; e += nt) {
        int r = e / dq, d = e % dq, i = q0 + r;
        Qs[e] = i < s.T ? ld(q + ((size_t)b * s.T + i) * s.q_stride + (size_t)h * dq + d) * s.scale : 0.0f;
    }
    float m[ATT_ROWS], l[ATT_ROWS], acc[ATT_ROWS][ATT_NC];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++) acc[r][c] = 0.0f;
    }
    const int q_last = min(q0 + ATT_BQ, s.T) - 1;
    for (int k0 = att_first_key(s, q0); k0 <= q_last; k0 += ATT_BK) {
        __syncthreads();
        for (int e = tid; e < ATT_BK * dq; e += nt) {
            int j = e / dq, d = e % dq, kj = k0 + j;
            Ks[j * (dq + 1) + d] = kj < s.T ? ld(k + ((size_t)b * s.T + kj) * s.k_stride + (size_t)g * dq + d) : 0.0f;
        }
        for (int e = tid; e < ATT_BK * dv; e += nt) {
            int j = e / dv, d = e % dv, kj = k0 + j;
            Vs[e] = kj < s.T ? ld(v + ((size_t)b * s.T + kj) * s.v_stride + (size_t)g * dv + d) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            int row = warp * ATT_ROWS + r, i = q0 + row;
            if (i >= s.T) continue;
            float sc = 0.0f;
            const float *qr = Qs + row * dq, *kr = Ks + lane * (dq + 1);
            for (int d = 0; d < dq; d++) sc += qr[d] * kr[d];
            if (!attn_visible(s, b, i, k0 + lane)) sc = -INFINITY;
            float mn = fmaxf(m[r], warp_max(sc));
            if (mn == -INFINITY) continue;
            float p = __expf(sc - mn), corr = __expf(m[r] - mn);
            l[r] = l[r] * corr + warp_sum(p);
            m[r] = mn;
#pragma unroll
            for (int c = 0; c < ATT_NC; c++) acc[r][c] *= corr;
            for (int jj = 0; jj < ATT_BK; jj++) {
                float pj = __shfl_sync(0xffffffffu, p, jj);
                const float *vr = Vs + jj * dv;
#pragma unroll
                for (int c = 0; c < ATT_NC; c++)
                    if (c * 32 + lane < dv) acc[r][c] += pj * vr[c * 32 + lane];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int i = q0 + warp * ATT_ROWS + r;
        if (i >= s.T) continue;
        float inv = 1.0f / l[r];
        T *o = out + ((size_t)b * s.T + i) * s.o_stride + (size_t)h * dv;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            if (c * 32 + lane < dv) st(o + c * 32 + lane, acc[r][c] * inv);
        if (lane == 0) lse[((size_t)b * s.H + h) * s.T + i] = m[r] + logf(l[r]);
    }
}

/* delta [B,H,T] = Σ_d dout·out; one warp per (b, t, h) */
template <typename T>
__global__ void attention_delta_kernel(float *delta, const T *dout, const T *out,
                                       struct attn_shape s) {
    size_t w = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (w >= (size_t)s.B * s.T * s.H) return;
    int h = (int)(w % s.H);
    size_t bt = w / s.H;
    const T *a = dout + bt * s.o_stride + (size_t)h * s.dv, *o = out + bt * s.o_stride + (size_t)h * s.dv;
    float acc = 0.0f;
    for (int d = lane; d < s.dv; d += 32) acc += ld(a + d) * ld(o + d);
    acc = warp_sum(acc);
    int b = (int)(bt / s.T), t = (int)(bt % s.T);
    if (lane == 0) delta[((size_t)b * s.H + h) * s.T + t] = acc;
}

/* dq_i = scale · Σ_j p_ij (dout_i·v_j − delta_i) k_j */
template <typename T>
__global__ void __launch_bounds__(ATT_WARPS * 32)
attention_dq_kernel(T *dqo, const T *dout, const float *lse, const float *delta,
                    const T *q, const T *k, const T *v, struct attn_shape s) {
    extern __shared__ float sm[];
    const int dq = s.dqk, dv = s.dv;
    float *Qs = sm;                          /* [BQ][dq] (scaled) */
    float *Os = Qs + ATT_BQ * dq;            /* [BQ][dv] dout rows */
    float *Ks = Os + ATT_BQ * dv;            /* [BK][dq+1] */
    float *Vs = Ks + ATT_BK * (dq + 1);      /* [BK][dv+1] */
    const int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h * s.G / s.H;
    const int q0 = blockIdx.x * ATT_BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int tid = threadIdx.x, nt = blockDim.x;
    for (int e = tid; e < ATT_BQ * dq; e += nt) {
        int r = e / dq, d = e % dq, i = q0 + r;
        Qs[e] = i < s.T ? ld(q + ((size_t)b * s.T + i) * s.q_stride + (size_t)h * dq + d) * s.scale : 0.0f;
    }
    for (int e = tid; e < ATT_BQ * dv; e += nt) {
        int r = e / dv, d = e % dv, i = q0 + r;
        Os[e] = i < s.T ? ld(dout + ((size_t)b * s.T + i) * s.o_stride + (size_t)h * dv + d) : 0.0f;
    }
    float L[ATT_ROWS], D[ATT_ROWS], acc[ATT_ROWS][ATT_NC];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int i = q0 + warp * ATT_ROWS + r;
        size_t idx = ((size_t)b * s.H + h) * s.T + (i < s.T ? i : 0);
        L[r] = lse[idx];
        D[r] = delta[idx];
#pragma unroll
        for (int c = 0; c < ATT_NC; c++) acc[r][c] = 0.0f;
    }
    const int q_last = min(q0 + ATT_BQ, s.T) - 1;
    for (int k0 = att_first_key(s, q0); k0 <= q_last; k0 += ATT_BK) {
        __syncthreads();
        for (int e = tid; e < ATT_BK * dq; e += nt) {
            int j = e / dq, d = e % dq, kj = k0 + j;
            Ks[j * (dq + 1) + d] = kj < s.T ? ld(k + ((size_t)b * s.T + kj) * s.k_stride + (size_t)g * dq + d) : 0.0f;
        }
        for (int e = tid; e < ATT_BK * dv; e += nt) {
            int j = e / dv, d = e % dv, kj = k0 + j;
            Vs[j * (dv + 1) + d] = kj < s.T ? ld(v + ((size_t)b * s.T + kj) * s.v_stride + (size_t)g * dv + d) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            int row = warp * ATT_ROWS + r, i = q0 + row;
            if (i >= s.T) continue;
            float ds = 0.0f;
            if (attn_visible(s, b, i, k0 + lane)) {
                const float *qr = Qs + row * dq, *kr = Ks + lane * (dq + 1);
                const float *orow = Os + row * dv, *vr = Vs + lane * (dv + 1);
                float sc = 0.0f, dp = 0.0f;
                for (int d = 0; d < dq; d++) sc += qr[d] * kr[d];
                for (int d = 0; d < dv; d++) dp += orow[d] * vr[d];
                ds = __expf(sc - L[r]) * (dp - D[r]);
            }
            for (int jj = 0; jj < ATT_BK; jj++) {
                float dj = __shfl_sync(0xffffffffu, ds, jj);
                const float *kr = Ks + jj * (dq + 1);
#pragma unroll
                for (int c = 0; c < ATT_NC; c++)
                    if (c * 32 + lane < dq) acc[r][c] += dj * kr[c * 32 + lane];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int i = q0 + warp * ATT_ROWS + r;
        if (i >= s.T) continue;
        T *o = dqo + ((size_t)b * s.T + i) * s.q_stride + (size_t)h * dq;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++)
            if (c * 32 + lane < dq) st(o + c * 32 + lane, acc[r][c] * s.scale);
    }
}

/* dv_j = Σ_{h in group, i} p_ij dout_i;  dk_j = scale · Σ p_ij (dout_i·v_j − delta_i) q_i */
template <typename T>
__global__ void __launch_bounds__(ATT_WARPS * 32)
attention_dkv_kernel(T *dko, T *dvo, const T *dout, const float *lse, const float *delta,
                     const T *q, const T *k, const T *v, struct attn_shape s) {
    extern __shared__ float sm[];
    const int dq = s.dqk, dv = s.dv;
    float *Kr = sm;                          /* [BQ][dq] this block's keys */
    float *Vr = Kr + ATT_BQ * dq;            /* [BQ][dv] */
    float *Qs = Vr + ATT_BQ * dv;            /* [BK][dq+1] query tile (scaled) */
    float *Os = Qs + ATT_BK * (dq + 1);      /* [BK][dv+1] dout tile */
    float *Ls = Os + ATT_BK * (dv + 1);      /* [BK] lse */
    float *Ds = Ls + ATT_BK;                 /* [BK] delta */
    const int bg = blockIdx.y, b = bg / s.G, g = bg % s.G;
    const int j0 = blockIdx.x * ATT_BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int tid = threadIdx.x, nt = blockDim.x;
    for (int e = tid; e < ATT_BQ * dq; e += nt) {
        int r = e / dq, d = e % dq, j = j0 + r;
        Kr[e] = j < s.T ? ld(k + ((size_t)b * s.T + j) * s.k_stride + (size_t)g * dq + d) : 0.0f;
    }
    for (int e = tid; e < ATT_BQ * dv; e += nt) {
        int r = e / dv, d = e % dv, j = j0 + r;
        Vr[e] = j < s.T ? ld(v + ((size_t)b * s.T + j) * s.v_stride + (size_t)g * dv + d) : 0.0f;
    }
    float ak[ATT_ROWS][ATT_NC], av[ATT_ROWS][ATT_NC];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++)
#pragma unroll
        for (int c = 0; c < ATT_NC; c++) ak[r][c] = av[r][c] = 0.0f;
    /* heads h with ⌊h·G/H⌋ = g */
    const int h_first = (g * s.H + s.G - 1) / s.G, h_end = ((g + 1) * s.H + s.G - 1) / s.G;
    const int j_last = min(j0 + ATT_BQ, s.T) - 1;
    const int i_end = s.window > 0 ? min(s.T, j_last + s.window) : s.T;
    for (int h = h_first; h < h_end; h++) {
        for (int i0 = (j0 / ATT_BK) * ATT_BK; i0 < i_end; i0 += ATT_BK) {
            __syncthreads();
            for (int e = tid; e < ATT_BK * dq; e += nt) {
                int r = e / dq, d = e % dq, i = i0 + r;
                Qs[r * (dq + 1) + d] = i < s.T ? ld(q + ((size_t)b * s.T + i) * s.q_stride + (size_t)h * dq + d) * s.scale : 0.0f;
            }
            for (int e = tid; e < ATT_BK * dv; e += nt) {
                int r = e / dv, d = e % dv, i = i0 + r;
                Os[r * (dv + 1) + d] = i < s.T ? ld(dout + ((size_t)b * s.T + i) * s.o_stride + (size_t)h * dv + d) : 0.0f;
            }
            for (int r = tid; r < ATT_BK; r += nt) {
                int i = i0 + r;
                size_t idx = ((size_t)b * s.H + h) * s.T + (i < s.T ? i : 0);
                Ls[r] = lse[idx];
                Ds[r] = delta[idx];
            }
            __syncthreads();
            const int i = i0 + lane;
#pragma unroll
            for (int r = 0; r < ATT_ROWS; r++) {
                int row = warp * ATT_ROWS + r, j = j0 + row;
                if (j >= s.T) continue;
                float p = 0.0f, ds = 0.0f;
                if (i < s.T && attn_visible(s, b, i, j)) {
                    const float *qr = Qs + lane * (dq + 1), *kr = Kr + row * dq;
                    const float *orow = Os + lane * (dv + 1), *vr = Vr + row * dv;
                    float sc = 0.0f, dp = 0.0f;
                    for (int d = 0; d < dq; d++) sc += qr[d] * kr[d];
                    for (int d = 0; d < dv; d++) dp += orow[d] * vr[d];
                    p = __expf(sc - Ls[lane]);
                    ds = p * (dp - Ds[lane]);
                }
                for (int ii = 0; ii < ATT_BK; ii++) {
                    float pi = __shfl_sync(0xffffffffu, p, ii), di = __shfl_sync(0xffffffffu, ds, ii);
                    const float *qr = Qs + ii * (dq + 1), *orow = Os + ii * (dv + 1);
#pragma unroll
                    for (int c = 0; c < ATT_NC; c++) {
                        if (c * 32 + lane < dv) av[r][c] += pi * orow[c * 32 + lane];
                        if (c * 32 + lane < dq) ak[r][c] += di * qr[c * 32 + lane];
                    }
                }
            }
        }
    }
    /* Qs was pre-scaled, so Σ ds·(scale·q) is already dk */
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int j = j0 + warp * ATT_ROWS + r;
        if (j >= s.T) continue;
        T *ko = dko + ((size_t)b * s.T + j) * s.k_stride + (size_t)g * dq;
        T *vo = dvo + ((size_t)b * s.T + j) * s.v_stride + (size_t)g * dv;
#pragma unroll
        for (int c = 0; c < ATT_NC; c++) {
            if (c * 32 + lane < dq) st(ko + c * 32 + lane, ak[r][c]);
            if (c * 32 + lane < dv) st(vo + c * 32 + lane, av[r][c]);
        }
    }
}

static int attention_check(const struct attn_shape *s, const char *what) {
    CUDA_REQUIRE(s, "cuda: %s: NULL shape", what);
    CUDA_REQUIRE(s->B > 0 && s->T > 0 && s->H > 0 && s->G > 0 && s->H % s->G == 0,
                 "cuda: %s: bad shape B=%d T=%d H=%d G=%d (G must divide H)", what, s->B, s->T, s->H, s->G);
    CUDA_REQUIRE(s->dqk > 0 && s->dqk <= ATT_MAXD && s->dv > 0 && s->dv <= ATT_MAXD,
                 "cuda: %s: head dims dqk=%d dv=%d outside [1, %d]", what, s->dqk, s->dv, ATT_MAXD);
    CUDA_REQUIRE(s->q_stride >= s->H * s->dqk && s->k_stride >= s->G * s->dqk &&
                     s->v_stride >= s->G * s->dv && s->o_stride >= s->H * s->dv,
                 "cuda: %s: token strides q=%d k=%d v=%d o=%d smaller than the heads they hold", what,
                 s->q_stride, s->k_stride, s->v_stride, s->o_stride);
    CUDA_REQUIRE(s->window >= 0, "cuda: %s: window %d < 0", what, s->window);
    return 0;
}

/* sets the kernel's dynamic shared-memory limit once it exceeds the default 48 KB */
template <typename K>
static int attention_smem(K kernel, size_t bytes, const char *what) {
    if (bytes > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), what);
    return 0;
}

int cuda_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                           const struct attn_shape *s) {
    int rc = attention_check(s, "attention_forward");
    if (rc) return rc;
    CUDA_REQUIRE(out && lse && q && k && v, "cuda: attention_forward: NULL pointer");
    if (!getenv("SUSHI_ATTN_SIMPLE")) {
        if ((rc = cuda_attention_forward_fast(out, lse, q, k, v, s)) <= 0) return rc;
        if ((rc = cuda_attention_forward_mma(out, lse, q, k, v, s)) <= 0) return rc;
    }
    size_t smem = sizeof(float) * ((size_t)ATT_BQ * s->dqk + ATT_BK * (s->dqk + 1) + ATT_BK * s->dv);
    dim3 grid((s->T + ATT_BQ - 1) / ATT_BQ, s->B * s->H);
    CUDA_ACT(T, rc = attention_smem(attention_forward_kernel<T>, smem, "attention_forward smem");
             if (!rc) attention_forward_kernel<T><<<grid, ATT_WARPS * 32, smem>>>(
                 (T *)out, lse, (const T *)q, (const T *)k, (const T *)v, *s));
    if (rc) return rc;
    CUDA_LAUNCHED("attention_forward");
    return 0;
}

int cuda_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v,
                            const struct attn_shape *s) {
    int rc = attention_check(s, "attention_backward");
    if (rc) return rc;
    CUDA_REQUIRE(dq && dk && dv && dout && out && lse && q && k && v, "cuda: attention_backward: NULL pointer");
    size_t rows = (size_t)s->B * s->H * s->T;
    void *delta;
    if ((rc = cuda_workspace(&delta, rows * sizeof(float), 1))) return rc;
    CUDA_ACT(T, attention_delta_kernel<T><<<cuda_blocks(rows * 32, 256), 256>>>((float *)delta, (const T *)dout,
                                                                                (const T *)out, *s));
    CUDA_LAUNCHED("attention_backward delta");

    if (!getenv("SUSHI_ATTN_SIMPLE")) {
        const char *fa_bwd = getenv("SUSHI_FA_BWD"); /* "fused": attention_bwd2_cuda.cu first */
        if (fa_bwd && !strcmp(fa_bwd, "fused") &&
            (rc = cuda_attention_backward_fused(dq, dk, dv, dout, (const float *)delta, lse, q, k, v, s)) <= 0)
            return rc;
        if ((rc = cuda_attention_backward_fast(dq, dk, dv, dout, (const float *)delta, lse, q, k, v, s)) <= 0)
            return rc;
        if ((rc = cuda_attention_backward_mma(dq, dk, dv, dout, (const float *)delta, lse, q, k, v, s)) <= 0)
            return rc;
    }
    size_t smem_q = sizeof(float) * ((size_t)ATT_BQ * (s->dqk + s->dv) + ATT_BK * (s->dqk + 1) +
                                     ATT_BK * (s->dv + 1));
    dim3 grid_q((s->T + ATT_BQ - 1) / ATT_BQ, s->B * s->H);
    CUDA_ACT(T, rc = attention_smem(attention_dq_kernel<T>, smem_q, "attention_backward dq smem");
             if (!rc) attention_dq_kernel<T><<<grid_q, ATT_WARPS * 32, smem_q>>>(
                 (T *)dq, (const T *)dout, lse, (const float *)delta, (const T *)q, (const T *)k, (const T *)v, *s));
    if (rc) return rc;
    CUDA_LAUNCHED("attention_backward dq");

    size_t smem_kv = sizeof(float) * ((size_t)ATT_BQ * (s->dqk + s->dv) + ATT_BK * (s->dqk + 1) +
                                      ATT_BK * (s->dv + 1) + 2 * ATT_BK);
    dim3 grid_kv((s->T + ATT_BQ - 1) / ATT_BQ, s->B * s->G);
    CUDA_ACT(T, rc = attention_smem(attention_dkv_kernel<T>, smem_kv, "attention_backward dkv smem");
             if (!rc) attention_dkv_kernel<T><<<grid_kv, ATT_WARPS * 32, smem_kv>>>(
                 (T *)dk, (T *)dv, (const T *)dout, lse, (const float *)delta, (const T *)q, (const T *)k,
                 (const T *)v, *s));
    if (rc) return rc;
    CUDA_LAUNCHED("attention_backward dkv");
    return 0;
}
