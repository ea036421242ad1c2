/* Per-token layer kernels on bf16 or f16 activations with f32 arithmetic: embedding,
 * RMSNorm, rotary embedding and SwiGLU, forward and backward. Out-of-range ids or
 * positions are skipped and raise the backend's bad-input flag (reported by sync()). */
#include "kernels/cuda/cuda_common.h"

/* ---- embedding ---- */

/* out [N,C] = table[ids[n], :]; one block per row */
template <typename T>
__global__ void embedding_forward_kernel(T *out, const int32_t *ids, const T *table,
                                         int N, int C, int V, int *bad) {
    int n = blockIdx.x;
    int id = ids[n];
    if (id < 0 || id >= V) {
        if (threadIdx.x == 0) cuda_flag_bad(bad, 1);
        for (int c = threadIdx.x; c < C; c += blockDim.x) st(out + (size_t)n * C + c, 0.0f);
        return;
    }
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        out[(size_t)n * C + c] = table[(size_t)id * C + c];
}

/* dtable[ids[n], :] += dout[n, :] with bf16/f16 atomics (f16 sm_70+, bf16 sm_80+) */
template <typename T>
__global__ void embedding_backward_kernel(T *dtable, const int32_t *ids, const T *dout,
                                          int N, int C, int V, int *bad) {
    int n = blockIdx.x;
    int id = ids[n];
    if (id < 0 || id >= V) {
        if (threadIdx.x == 0) cuda_flag_bad(bad, 1);
        return;
    }
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        atomicAdd(dtable + (size_t)id * C + c, dout[(size_t)n * C + c]);
}

/* The table's row count is not part of the op's signature; ids are trusted to be
 * non-negative and below INT32_MAX / C here (checked against V = INT32_MAX / C). */
int cuda_embedding_forward(void *out, const int32_t *ids, const void *table, int N, int C) {
    CUDA_REQUIRE(out && ids && table, "cuda: embedding_forward: NULL pointer");
    CUDA_REQUIRE(N >= 0 && C > 0, "cuda: embedding_forward: bad shape N=%d C=%d", N, C);
    if (N == 0) return 0;
    CUDA_ACT(T, embedding_forward_kernel<T><<<N, 128>>>((T *)out, ids, (const T *)table, N, C, INT32_MAX / C,
                                                        cuda_bad_input_flag()));
    CUDA_LAUNCHED("embedding_forward");
    return 0;
}

int cuda_embedding_backward(void *dtable, const int32_t *ids, const void *dout, int N, int C) {
    CUDA_REQUIRE(dtable && ids && dout, "cuda: embedding_backward: NULL pointer");
    CUDA_REQUIRE(N >= 0 && C > 0, "cuda: embedding_backward: bad shape N=%d C=%d", N, C);
    if (N == 0) return 0;
    CUDA_ACT(T, embedding_backward_kernel<T><<<N, 128>>>((T *)dtable, ids, (const T *)dout, N, C, INT32_MAX / C,
                                                         cuda_bad_input_flag()));
    CUDA_LAUNCHED("embedding_backward");
    return 0;
}

/* ---- RMSNorm ---- */

/* one warp per row: rstd = 1/sqrt(mean(x²) + eps), out = x·rstd·w */
template <typename T>
__global__ void rmsnorm_forward_kernel(T *out, float *rstd, const T *x, const T *w,
                                       int N, int C, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const T *xr = x + (size_t)row * C;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float v = ld(xr + c);
        ss += v * v;
    }
    float r = rsqrtf(warp_sum(ss) / (float)C + eps);
    for (int c = lane; c < C; c += 32) st(out + (size_t)row * C + c, ld(xr + c) * r * ld(w + c));
    if (lane == 0) rstd[row] = r;
}

/* dx = rstd·(dout⊙w) − x·rstd³/C · Σ(dout⊙w⊙x); dw partial sums (f32) into dw_acc */
template <typename T>
__global__ void rmsnorm_backward_kernel(T *dx, float *dw_acc, const T *dout, const T *x,
                                        const T *w, const float *rstd, int N, int C) {
    extern __shared__ float dw_sh[]; /* [C] */
    for (int c = threadIdx.x; c < C; c += blockDim.x) dw_sh[c] = 0.0f;
    __syncthreads();
    int warps = blockDim.x / 32, lane = threadIdx.x % 32;
    for (int row = blockIdx.x * warps + threadIdx.x / 32; row < N; row += gridDim.x * warps) {
        const T *xr = x + (size_t)row * C, *gr = dout + (size_t)row * C;
        float r = rstd[row], dot = 0.0f;
        for (int c = lane; c < C; c += 32) dot += ld(gr + c) * ld(w + c) * ld(xr + c);
        dot = warp_sum(dot);
        float k = dot * r * r * r / (float)C;
        for (int c = lane; c < C; c += 32) {
            float g = ld(gr + c), xv = ld(xr + c);
            st(dx + (size_t)row * C + c, r * g * ld(w + c) - xv * k);
            atomicAdd(&dw_sh[c], g * xv * r);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(&dw_acc[c], dw_sh[c]);
}

template <typename T>
__global__ void accumulate_f32_kernel(T *dst, const float *src, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) st(dst + i, ld(dst + i) + src[i]);
}

int cuda_rmsnorm_forward(void *out, float *rstd, const void *x, const void *w, int N, int C,
                         float eps) {
    CUDA_REQUIRE(out && rstd && x && w, "cuda: rmsnorm_forward: NULL pointer");
    CUDA_REQUIRE(N >= 0 && C > 0, "cuda: rmsnorm_forward: bad shape N=%d C=%d", N, C);
    if (N == 0) return 0;
    CUDA_ACT(T, rmsnorm_forward_kernel<T><<<(N + 7) / 8, 256>>>((T *)out, rstd, (const T *)x, (const T *)w, N, C,
                                                                eps));
    CUDA_LAUNCHED("rmsnorm_forward");
    return 0;
}

int cuda_rmsnorm_backward(void *dx, void *dw, const void *dout, const void *x, const void *w,
                          const float *rstd, int N, int C) {
    CUDA_REQUIRE(dx && dw && dout && x && w && rstd, "cuda: rmsnorm_backward: NULL pointer");
    CUDA_REQUIRE(N >= 0 && C > 0 && C <= 12288, "cuda: rmsnorm_backward: bad shape N=%d C=%d (C ≤ 12288)", N, C);
    if (N == 0) return 0;
    void *acc;
    int rc = cuda_workspace(&acc, (size_t)C * sizeof(float), 1);
    if (rc) return rc;
    CUDA_CHECK(cudaMemset(acc, 0, (size_t)C * sizeof(float)), "rmsnorm_backward memset");
    int blocks = (N + 7) / 8 < 264 ? (N + 7) / 8 : 264;
    CUDA_ACT(T, rmsnorm_backward_kernel<T><<<blocks, 256, (size_t)C * sizeof(float)>>>(
                    (T *)dx, (float *)acc, (const T *)dout, (const T *)x, (const T *)w, rstd, N, C));
    CUDA_LAUNCHED("rmsnorm_backward");
    CUDA_ACT(T, accumulate_f32_kernel<T><<<(C + 255) / 256, 256>>>((T *)dw, (const float *)acc, C));
    CUDA_LAUNCHED("rmsnorm_backward dw");
    return 0;
}

/* ---- RoPE ---- */

/* one thread per (row, head, pair); sign = +1 forward, −1 backward (rotation by −θ) */
template <typename T>
__global__ void rope_kernel(T *x, struct rope_shape s, float sign, int *bad) {
    int half = s.rot_dim / 2;
    size_t total = (size_t)s.N * s.nheads * half;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(t % half);
        int h = (int)((t / half) % s.nheads);
        int n = (int)(t / ((size_t)half * s.nheads));
        int p = s.pos[n];
        if (p < 0 || p >= s.max_pos) {
            cuda_flag_bad(bad, 2);
            continue;
        }
        float c = s.cos[(size_t)p * half + i], sn = sign * s.sin[(size_t)p * half + i];
        T *base = x + (size_t)n * s.row_stride + (size_t)h * s.head_stride + s.offset;
        int i0 = s.interleaved ? 2 * i : i, i1 = s.interleaved ? 2 * i + 1 : i + half;
        float a = ld(base + i0), b = ld(base + i1);
        st(base + i0, a * c - b * sn);
        st(base + i1, a * sn + b * c);
    }
}

static int rope_run(void *x, const struct rope_shape *s, float sign, const char *what) {
    CUDA_REQUIRE(x && s && s->pos && s->cos && s->sin, "cuda: %s: NULL pointer", what);
    CUDA_REQUIRE(s->N >= 0 && s->nheads > 0 && s->rot_dim > 0 && s->rot_dim % 2 == 0 &&
                     s->offset >= 0 && s->head_stride >= 0 && s->row_stride >= 0 && s->max_pos > 0,
                 "cuda: %s: bad shape N=%d nheads=%d rot_dim=%d offset=%d max_pos=%d", what, s->N,
                 s->nheads, s->rot_dim, s->offset, s->max_pos);
    if (s->N == 0) return 0;
    size_t total = (size_t)s->N * s->nheads * (s->rot_dim / 2);
    CUDA_ACT(T, rope_kernel<T><<<cuda_blocks(total, 256), 256>>>((T *)x, *s, sign, cuda_bad_input_flag()));
    CUDA_LAUNCHED(what);
    return 0;
}

int cuda_rope_forward(void *x, const struct rope_shape *s) { return rope_run(x, s, 1.0f, "rope_forward"); }
int cuda_rope_backward(void *dx, const struct rope_shape *s) { return rope_run(dx, s, -1.0f, "rope_backward"); }

/* ---- SwiGLU ---- */

template <typename T>
__global__ void swiglu_forward_kernel(T *out, const T *h, int N, int F) {
    size_t total = (size_t)N * F;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        size_t n = t / F, f = t % F;
        float g = ld(h + n * 2 * F + f), u = ld(h + n * 2 * F + F + f);
        st(out + t, g / (1.0f + __expf(-g)) * u);
    }
}

/* d gate = dout·u·σ(g)(1 + g(1 − σ(g))), d up = dout·silu(g) */
template <typename T>
__global__ void swiglu_backward_kernel(T *dh, const T *dout, const T *h, int N, int F) {
    size_t total = (size_t)N * F;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        size_t n = t / F, f = t % F;
        float g = ld(h + n * 2 * F + f), u = ld(h + n * 2 * F + F + f), d = ld(dout + t);
        float sg = 1.0f / (1.0f + __expf(-g));
        st(dh + n * 2 * F + f, d * u * sg * (1.0f + g * (1.0f - sg)));
        st(dh + n * 2 * F + F + f, d * g * sg);
    }
}

int cuda_swiglu_forward(void *out, const void *h, int N, int F) {
    CUDA_REQUIRE(out && h, "cuda: swiglu_forward: NULL pointer");
    CUDA_REQUIRE(N >= 0 && F > 0, "cuda: swiglu_forward: bad shape N=%d F=%d", N, F);
    if (N == 0) return 0;
    CUDA_ACT(T, swiglu_forward_kernel<T><<<cuda_blocks((size_t)N * F, 256), 256>>>((T *)out, (const T *)h, N, F));
    CUDA_LAUNCHED("swiglu_forward");
    return 0;
}

int cuda_swiglu_backward(void *dh, const void *dout, const void *h, int N, int F) {
    CUDA_REQUIRE(dh && dout && h, "cuda: swiglu_backward: NULL pointer");
    CUDA_REQUIRE(N >= 0 && F > 0, "cuda: swiglu_backward: bad shape N=%d F=%d", N, F);
    if (N == 0) return 0;
    CUDA_ACT(T, swiglu_backward_kernel<T><<<cuda_blocks((size_t)N * F, 256), 256>>>((T *)dh, (const T *)dout,
                                                                                    (const T *)h, N, F));
    CUDA_LAUNCHED("swiglu_backward");
    return 0;
}
