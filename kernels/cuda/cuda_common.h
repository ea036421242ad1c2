/* Shared pieces of the CUDA backend: error checking that turns a CUDA/cuBLAS failure
 * into a sushi_error (never an abort), the activation-type dispatch (bf16 or f16), their
 * load/store helpers (round to nearest, or stochastic from a counter-based hash), launch
 * sizes, the device-side bad-input flag and a grow-only scratch workspace. C++ (nvcc)
 * only. */
#ifndef SUSHI_CUDA_COMMON_H
#define SUSHI_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "common/core/log.h"
#include "kernels/mem_track.h"
#include "kernels/ops.h"
}

typedef __nv_bfloat16 bf16;
typedef __half f16;

/* The activation dtype chosen when the backend starts (ops_cuda): DT_BF16 where the GPU
 * supports it, else DT_F16. Kernels are templates over the element type T (bf16 or f16,
 * read and written through ld/st with f32 arithmetic); host wrappers launch the one that
 * matches with CUDA_ACT:  CUDA_ACT(T, my_kernel<T><<<g, b>>>((T *)out, ...));  */
enum dtype cuda_act_dtype(void);
#define CUDA_ACT(T, ...)                                                                  \
    do {                                                                                  \
        if (cuda_act_dtype() == DT_F16) {                                                 \
            typedef f16 T;                                                                \
            __VA_ARGS__;                                                                  \
        } else {                                                                          \
            typedef bf16 T;                                                               \
            __VA_ARGS__;                                                                  \
        }                                                                                 \
    } while (0)

/* Returns SUSHI_EBACKEND with the CUDA message when `call` fails. */
#define CUDA_CHECK(call, what)                                                            \
    do {                                                                                  \
        cudaError_t err_ = (call);                                                        \
        if (err_ != cudaSuccess)                                                          \
            return sushi_error(SUSHI_EBACKEND, "cuda: %s: %s", (what),                    \
                               cudaGetErrorString(err_));                                 \
    } while (0)

/* After a kernel launch: launch-configuration errors and earlier asynchronous faults. */
#define CUDA_LAUNCHED(what) CUDA_CHECK(cudaGetLastError(), (what))

#define CUDA_REQUIRE(cond, ...)                                                           \
    do {                                                                                  \
        if (!(cond)) return sushi_error(SUSHI_EINVAL, __VA_ARGS__);                       \
    } while (0)

static inline unsigned cuda_blocks(size_t n, int threads) {
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    return (unsigned)(b > 65535u * 16u ? 65535u * 16u : (b ? b : 1));
}

__device__ __forceinline__ float ld(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(bf16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ float ld(const f16 *p) { return __half2float(*p); }
__device__ __forceinline__ void st(f16 *p, float v) { *p = __float2half_rn(v); }

/* v as T, round to nearest even (f16 saturates to ±inf beyond 65504, as IEEE says:
 * that is what dynamic loss scaling looks for) */
template <typename T> __device__ __forceinline__ T act_from(float v);
template <> __device__ __forceinline__ bf16 act_from<bf16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ f16 act_from<f16>(float v) { return __float2half_rn(v); }

/* 32 random bits from (seed, step, i): a counter-based hash (splitmix64's finaliser over
 * the three words), so a rounding decision depends on nothing but its coordinates */
__host__ __device__ __forceinline__ uint32_t cuda_hash32(uint32_t seed, uint32_t step, uint64_t i) {
    uint64_t x = i * 0x9E3779B97F4A7C15ull ^ (((uint64_t)seed << 32) | step);
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    x += (uint64_t)seed * 0xD6E8FEB86659FD93ull;
    x ^= x >> 32;
    return (uint32_t)x;
}

__host__ __device__ __forceinline__ uint32_t f32_bits(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* Stochastic rounding of v to the neighbours a ≤ |v| < b (toward zero, away from zero)
 * with P(b) = (|v| − a)/(b − a), so E[result] = v; r is 32 random bits.
 * bf16 keeps the top 16 bits of the f32 pattern: adding a uniform integer below 2^16 to
 * the pattern carries into bit 16 with exactly that probability, then truncation drops
 * the low half (sign-magnitude, so negative values round symmetrically). inf/NaN take
 * the round-to-nearest path. Host-callable too, so the rule can be checked without a GPU. */
__host__ __device__ __forceinline__ void st_sr(bf16 *p, float v, uint32_t r) {
    uint32_t u = f32_bits(v);
    if ((u & 0x7F800000u) == 0x7F800000u) {
        *p = __float2bfloat16_rn(v);
        return;
    }
    u = (u + (r >> 16)) & 0xFFFF0000u;
    float t;
    memcpy(&t, &u, sizeof t);
    *p = __float2bfloat16_rz(t);  /* exact: the low half is zero */
}

/* f16: the number of dropped f32 mantissa bits varies (13 for normal f16 values, more in
 * f16's subnormal range, where the spacing is a fixed 2⁻²⁴), so instead of the bit trick
 * the noise is scaled to the f16 spacing at the value: a = v rounded toward zero, ulp =
 * the gap from a to the next f16 away from zero, frac = (|v| − |a|)/ulp (exact in f32),
 * round away when a uniform u = k·2⁻²⁴ (24 bits of r) is below frac. Beyond 65504 the
 * next value is 65536, which the conversion turns into inf, as round-to-nearest would. */
__host__ __device__ __forceinline__ void st_sr(f16 *p, float v, uint32_t r) {
    if (!isfinite(v)) {
        *p = __float2half_rn(v);
        return;
    }
    float av = fabsf(v), a = __half2float(__float2half_rz(av));
    int e;
    (void)frexpf(a, &e);                               /* a = m·2^e, m ∈ [0.5, 1) */
    float ulp = a < 6.103515625e-05f ? 5.9604644775390625e-08f : ldexpf(1.0f, e - 11);
    float frac = (av - a) / ulp, un = (float)(r >> 8) * 5.9604644775390625e-08f;
    float out = un < frac ? a + ulp : a;
    *p = __float2half_rn(copysignf(out, v));           /* exact, or inf past 65504 */
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* the sum (or max) of v over the block, returned to every thread; red is 32 floats of
 * shared memory; every thread of the block must call it (it synchronises) */
__device__ __forceinline__ float block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    return warp_sum(lane < nw ? red[lane] : 0.0f);
}
__device__ __forceinline__ float block_max(float v, float *red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    return warp_max(lane < nw ? red[lane] : -INFINITY);
}

/* Raised by kernels that meet an out-of-range index (ids, positions, targets); the
 * element is skipped and sync() reports the first reason (1 embedding id, 2 rope
 * position, 3 loss target or top-k id, 4 row index of a gather/scatter). */
int *cuda_bad_input_flag(void);   /* device int, allocated by ops_cuda() */
__device__ __forceinline__ void cuda_flag_bad(int *flag, int why) { atomicCAS(flag, 0, why); }

/* Device scratch that grows on demand (single stream, so reuse is ordered). slot
 * chooses one of a few independent buffers. */
int cuda_workspace(void **p, size_t bytes, int slot);

/* per-file op groups, filled into the table by ops_cuda() */
int cuda_matmul(void *c, const void *a, const void *b, int m, int n, int k, int trans_a,
                int trans_b, float alpha, float beta, int lda, int ldb, int ldc);
int cuda_embedding_forward(void *out, const int32_t *ids, const void *table, int N, int C);
int cuda_embedding_backward(void *dtable, const int32_t *ids, const void *dout, int N, int C);
int cuda_rmsnorm_forward(void *out, float *rstd, const void *x, const void *w, int N, int C,
                         float eps);
int cuda_rmsnorm_backward(void *dx, void *dw, const void *dout, const void *x, const void *w,
                          const float *rstd, int N, int C);
int cuda_rope_forward(void *x, const struct rope_shape *s);
int cuda_rope_backward(void *dx, const struct rope_shape *s);
int cuda_swiglu_forward(void *out, const void *h, int N, int F);
int cuda_swiglu_backward(void *dh, const void *dout, const void *h, int N, int F);
int cuda_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                           const struct attn_shape *s);
/* register-resident mma.sync forward for dqk = dv ∈ {64, 128}; 1 when it does not apply */
int cuda_attention_forward_fast(void *out, float *lse, const void *q, const void *k, const void *v,
                                const struct attn_shape *s);
/* tensor-core (WMMA) forward; 1 when the head dims do not suit it */
int cuda_attention_forward_mma(void *out, float *lse, const void *q, const void *k, const void *v,
                               const struct attn_shape *s);
/* register-resident mma.sync backward for dqk = dv = 64; 1 when it does not apply */
int cuda_attention_backward_fast(void *dq, void *dk, void *dv, const void *dout, const float *delta,
                                 const float *lse, const void *q, const void *k, const void *v,
                                 const struct attn_shape *s);
/* fused FlashAttention-2-style backward (attention_bwd2_cuda.cu: one kernel, dq through an
 * f32 workspace, slot 5) for bf16, dqk = dv = 64; 1 when it does not apply */
int cuda_attention_backward_fused(void *dq, void *dk, void *dv, const void *dout, const float *delta,
                                  const float *lse, const void *q, const void *k, const void *v,
                                  const struct attn_shape *s);
/* tensor-core dq/dk/dv given delta = Σ dout⊙out [B,H,T]; 1 when the dims do not suit it */
int cuda_attention_backward_mma(void *dq, void *dk, void *dv, const void *dout, const float *delta,
                                const float *lse, const void *q, const void *k, const void *v,
                                const struct attn_shape *s);
int cuda_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v,
                            const struct attn_shape *s);
int cuda_loss_forward_backward(float *loss, float *ce, float *kd, void *dlogits,
                               const void *logits, const int32_t *targets,
                               const struct loss_args *a);
int cuda_adamw(float *master, void *param, const void *grad, float *m, float *v,
               const struct adamw_args *a);
int cuda_sumsq(float *out, const void *x, size_t n);
int cuda_gather_rows(void *out, const void *x, const int32_t *rows, int n, int M, int C);
int cuda_scatter_add_rows(void *y, const void *x, const int32_t *rows, const float *w, int n, int M, int C);
int cuda_rows_dot(float *out, const void *a, const int32_t *rows, const void *b, int n, int M, int C);
int cuda_gather_sum_rows(void *out, const void *x, const int32_t *idx, const float *w, int n, int K, int M, int C);
int cuda_matmul_grouped(const struct matmul_problem *p, int count, int trans_a, int trans_b, float alpha, float beta);
int cuda_topk(int32_t *ids, float *logprobs, float *tail, const void *logits, int N, int V, int Vp, int K, float T);
int cuda_softmax_causal(void *p, const void *s, int R, int S, int group, float scale);

#endif
