/* Fused distillation loss (SPEC §2) over bf16 or f16 logits [N, vocab_padded]: one block per
 * row streams the vocabulary twice and never stores a softmax.
 *   pass 1: online log-sum-exp of s (CE) and of s/T over the ids outside the teacher's
 *           top-K (the student's tail bucket, taken directly, not as 1 − Σ), and Σ s;
 *   middle: per-row CE, the (K+1)-bucket divergence and its bucket weights g_b;
 *   pass 2: dlogits = grad_scale·((1−α)(softmax − y′) + α·(q_v/T)(g_b(v) − Σ_b q_b g_b)),
 * where g_b = ∂kd/∂q_b: −T²p_b/q_b (forward KL), T²(log q_b − log p_b + 1) (reverse),
 * T²(1−β)·log(q_b/m_b) (JSD). Membership in the top-K is a shared-memory bitmap. */
#include <math.h>

#include "kernels/cuda/cuda_common.h"

#define LOSS_THREADS 256
#define LOSS_MAX_K 256

struct lse_acc { float m, s; };

__device__ __forceinline__ void lse_push(lse_acc &a, float x) {
    if (x > a.m) {
        a.s = a.s * expf(a.m - x) + 1.0f;
        a.m = x;
    } else {
        a.s += expf(x - a.m);
    }
}

__device__ __forceinline__ lse_acc lse_merge(lse_acc a, lse_acc b) {
    if (a.m == -INFINITY) return b;
    if (b.m == -INFINITY) return a;
    float m = fmaxf(a.m, b.m);
    lse_acc r = {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
    return r;
}

__device__ lse_acc block_lse(lse_acc a, lse_acc *sh) {
    for (int o = 16; o > 0; o >>= 1) {
        lse_acc b = {__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o)};
        a = lse_merge(a, b);
    }
    __syncthreads();
    if (threadIdx.x % 32 == 0) sh[threadIdx.x / 32] = a;
    __syncthreads();
    lse_acc r = {-INFINITY, 0.0f};
    for (int w = 0; w < (int)blockDim.x / 32; w++) r = lse_merge(r, sh[w]);
    return r;
}

__device__ __forceinline__ float lse_value(lse_acc a) { return a.m == -INFINITY ? -INFINITY : a.m + logf(a.s); }

/* bucket weight g_b from log q_b (student) and log p_b (teacher) */
__device__ float kd_bucket_grad(int mode, float T2, float beta, float lq, float lp) {
    if (mode == KD_FORWARD) return lp == -INFINITY ? 0.0f : -T2 * expf(lp - lq);
    if (mode == KD_REVERSE) return T2 * (lq - lp + 1.0f);
    float q = expf(lq), mb = beta * expf(lp) + (1.0f - beta) * q;
    return T2 * (1.0f - beta) * (lq - logf(mb));
}

/* this bucket's term of the divergence (0·log 0 = 0) */
__device__ float kd_bucket_term(int mode, float beta, float lq, float lp) {
    float p = expf(lp), q = expf(lq);
    if (mode == KD_FORWARD) return p > 0.0f ? p * (lp - lq) : 0.0f;
    if (mode == KD_REVERSE) return q > 0.0f ? q * (lq - lp) : 0.0f;
    float mb = beta * p + (1.0f - beta) * q, lm = logf(mb);
    return (p > 0.0f ? beta * p * (lp - lm) : 0.0f) + (q > 0.0f ? (1.0f - beta) * q * (lq - lm) : 0.0f);
}

template <typename T>
__global__ void loss_kernel(float *loss, float *ce_out, float *kd_out, T *dlogits,
                            const T *logits, const int32_t *targets, struct loss_args a, int *bad) {
    extern __shared__ uint32_t topk_bits[];       /* [ceil(vocab/32)] */
    __shared__ lse_acc sh_lse[LOSS_THREADS / 32];
    __shared__ float sh_sum[LOSS_THREADS / 32];
    __shared__ float g[LOSS_MAX_K + 1], gbar_sh, lse1_sh, lseT_sh;
    __shared__ int row_ok;
    const int n = blockIdx.x, V = a.vocab, K = a.k;
    const T *s = logits + (size_t)n * a.vocab_padded;
    T *d = dlogits + (size_t)n * a.vocab_padded;
    const int y = targets[n];
    const int32_t *ids = K ? a.topk_ids + (size_t)n * K : NULL;
    const float invT = 1.0f / a.temperature, T2 = a.temperature * a.temperature;

    int words = (V + 31) / 32;
    for (int i = threadIdx.x; i < words; i += blockDim.x) topk_bits[i] = 0u;
    if (threadIdx.x == 0) {
        int ok = y >= 0 && y < V;
        if (y >= V) cuda_flag_bad(bad, 3);
        for (int b = 0; ok && b < K; b++)
            if (ids[b] < 0 || ids[b] >= V) {
                cuda_flag_bad(bad, 3);
                ok = 0;
            }
        row_ok = ok;
    }
    __syncthreads();
    if (!row_ok) {
        for (int v = threadIdx.x; v < a.vocab_padded; v += blockDim.x) st(d + v, 0.0f);
        if (threadIdx.x == 0) {
            if (loss) loss[n] = 0.0f;
            if (ce_out) ce_out[n] = 0.0f;
            if (kd_out) kd_out[n] = 0.0f;
        }
        return;
    }
    for (int b = threadIdx.x; b < K; b += blockDim.x) atomicOr(&topk_bits[ids[b] / 32], 1u << (ids[b] % 32));
    __syncthreads();

    /* pass 1 */
    lse_acc all1 = {-INFINITY, 0.0f}, tailT = {-INFINITY, 0.0f};
    float sum = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float x = ld(s + v);
        sum += x;
        lse_push(all1, x);
        if (K && !(topk_bits[v / 32] & (1u << (v % 32)))) lse_push(tailT, x * invT);
    }
    all1 = block_lse(all1, sh_lse);
    float lse1 = lse_value(all1);
    sum = block_sum(sum, sh_sum);
    if (K) tailT = block_lse(tailT, sh_lse);

    if (threadIdx.x == 0) {
        float ce = lse1 - (1.0f - a.smoothing) * ld(s + y) - a.smoothing / (float)V * sum;
        float kd = 0.0f, gbar = 0.0f, lseT = 0.0f, lq_tail = -INFINITY;
        if (K) {
            /* log q_tail from the ratio of the top-K and tail masses (both taken directly),
             * which stays exact when either bucket is tiny; lseT over all ids */
            float mref = tailT.m;
            for (int b = 0; b < K; b++) mref = fmaxf(mref, ld(s + ids[b]) * invT);
            float s_tail = tailT.m == -INFINITY ? 0.0f : tailT.s * expf(tailT.m - mref), s_top = 0.0f;
            for (int b = 0; b < K; b++) s_top += expf(ld(s + ids[b]) * invT - mref);
            lseT = mref + logf(s_tail + s_top);
            if (s_tail > 0.0f)
                lq_tail = s_top < s_tail ? -log1pf(s_top / s_tail) : logf(s_tail / (s_tail + s_top));
        }
        for (int b = 0; b <= K && K; b++) {
            float lq = b < K ? ld(s + ids[b]) * invT - lseT : lq_tail;
            float lp = b < K ? a.topk_logprobs[(size_t)n * K + b] : a.tail_logprob[n];
            kd += kd_bucket_term(a.mode, a.jsd_beta, lq, lp);
            g[b] = kd_bucket_grad(a.mode, T2, a.jsd_beta, lq, lp);
            float q = expf(lq);
            if (q > 0.0f) gbar += q * g[b];
        }
        kd *= T2;
        gbar_sh = gbar;
        lse1_sh = lse1;
        lseT_sh = lseT;
        if (loss) loss[n] = a.alpha * kd + (1.0f - a.alpha) * ce;
        if (ce_out) ce_out[n] = ce;
        if (kd_out) kd_out[n] = kd;
    }
    __syncthreads();

    /* pass 2 (same element read then written by one thread, so dlogits may alias) */
    const float wce = a.grad_scale * (1.0f - a.alpha), wkd = a.grad_scale * a.alpha;
    const float eps_v = a.smoothing / (float)V;
    for (int v = threadIdx.x; v < a.vocab_padded; v += blockDim.x) {
        if (v >= V) {
            st(d + v, 0.0f);
            continue;
        }
        float x = ld(s + v);
        float grad = wce * (expf(x - lse1_sh) - eps_v - (v == y ? 1.0f - a.smoothing : 0.0f));
        if (K) {
            int b = K;
            if (topk_bits[v / 32] & (1u << (v % 32)))
                for (b = 0; b < K && ids[b] != v; b++) {}
            float q = expf(x * invT - lseT_sh);
            grad += wkd * q * invT * (g[b] - gbar_sh);
        }
        st(d + v, grad);
    }
}

/* the dynamic shared memory (top-K bitmap) above 48 KB needs the kernel's opt-in */
template <typename T>
static int loss_launch(float *loss, float *ce, float *kd, T *dlogits, const T *logits, const int32_t *targets,
                       const struct loss_args *a, size_t bits) {
    if (bits > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(loss_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bits),
                   "loss: shared memory size");
    loss_kernel<T><<<a->N, LOSS_THREADS, bits>>>(loss, ce, kd, dlogits, logits, targets, *a, cuda_bad_input_flag());
    CUDA_LAUNCHED("loss_forward_backward");
    return 0;
}

int cuda_loss_forward_backward(float *loss, float *ce, float *kd, void *dlogits,
                               const void *logits, const int32_t *targets,
                               const struct loss_args *a) {
    CUDA_REQUIRE(a && dlogits && logits && targets, "cuda: loss: NULL pointer");
    CUDA_REQUIRE(a->N >= 0 && a->vocab > 0 && a->vocab_padded >= a->vocab,
                 "cuda: loss: bad shape N=%d vocab=%d vocab_padded=%d", a->N, a->vocab, a->vocab_padded);
    CUDA_REQUIRE(a->k >= 0 && a->k <= LOSS_MAX_K && a->k < a->vocab,
                 "cuda: loss: top-K width %d outside [0, min(%d, vocab))", a->k, LOSS_MAX_K);
    CUDA_REQUIRE(a->k == 0 || (a->topk_ids && a->topk_logprobs && a->tail_logprob),
                 "cuda: loss: top-K %d without teacher ids/logprobs/tail", a->k);
    CUDA_REQUIRE(a->k == 0 || a->temperature > 0, "cuda: loss: temperature %g must be > 0", a->temperature);
    CUDA_REQUIRE(a->smoothing >= 0 && a->smoothing < 1, "cuda: loss: smoothing %g outside [0, 1)", a->smoothing);
    CUDA_REQUIRE(a->alpha >= 0 && a->alpha <= 1, "cuda: loss: alpha %g outside [0, 1]", a->alpha);
    CUDA_REQUIRE(a->mode == KD_FORWARD || a->mode == KD_REVERSE || a->mode == KD_JSD,
                 "cuda: loss: unknown kd mode %d", (int)a->mode);
    if (a->N == 0) return 0;
    size_t bits = (size_t)((a->vocab + 31) / 32) * sizeof(uint32_t);
    CUDA_REQUIRE(bits <= 160 * 1024, "cuda: loss: vocab %d too large for the top-K bitmap", a->vocab);
    int rc = 0;
    CUDA_ACT(T, rc = loss_launch<T>(loss, ce, kd, (T *)dlogits, (const T *)logits, targets, a, bits));
    return rc;
}
