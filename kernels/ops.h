/* The op table: every piece of math the models need, as function pointers, with one
 * CPU implementation (kernels/cpu/, the reference) and one CUDA implementation
 * (kernels/cuda/). Code above kernels/ calls ops only, never a backend directly.
 *
 * Conventions
 * - Row-major. B batch, T tokens, N = B·T rows, C width, H query heads, G key/value
 *   heads, V vocabulary.
 * - `act` buffers (activations, weights used in compute, gradients) hold the backend's
 *   activation dtype `ops->act_dtype`: f32 on the CPU, bf16 on the GPU (f16 on GPUs
 *   without bf16, chosen at start-up; SUSHI_CUDA_DTYPE=bf16|f16 overrides). Master weights
 *   and optimizer moments are always f32. Pointers are device pointers for CUDA.
 * - Index buffers (ids, targets, positions, doc ids, top-k ids) are int32 in the
 *   backend's memory.
 * - Parameter gradients accumulate (+=). Activation gradients overwrite (=) unless a
 *   function says otherwise.
 * - Every op returns 0 or a negative SUSHI_E* code (common/core/log.h) after recording
 *   a message; ops never abort.
 */
#ifndef SUSHI_OPS_H
#define SUSHI_OPS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/core/dtype.h"


/* Attention shape and masking, shared by forward and backward.
 * q [B,T,H,dqk] (row stride q_stride elements between tokens), k [B,T,G,dqk],
 * v [B,T,G,dv], out [B,T,H,dv], lse [B,H,T] (f32, log-sum-exp of the scaled scores).
 * Head h uses key/value head h·G/H. Causal always; key j is visible from query i iff
 * j ≤ i, and (window > 0) i − window < j, and (doc_ids != NULL) doc_ids[b,i] ==
 * doc_ids[b,j]. */
struct attn_shape {
    int B, T, H, G;
    int dqk, dv;
    int q_stride, k_stride, v_stride, o_stride; /* elements between consecutive tokens */
    float scale;                                /* usually dqk^-0.5 */
    int window;                                 /* 0 = full causal */
    const int32_t *doc_ids;                     /* [B,T] or NULL */
};

/* Rotary embedding applied in place to `nheads` heads of each of N rows:
 * element (n, h, offset + i) for i < rot_dim, at x[n·row_stride + h·head_stride + ...].
 * Position of row n is pos[n]. cos/sin tables are f32 [max_pos, rot_dim/2] (already
 * scaled by any YaRN attention factor). interleaved=0: pairs (i, i + rot_dim/2) as in
 * HF Llama; interleaved=1: pairs (2i, 2i+1) as in DeepSeek checkpoints. */
struct rope_shape {
    int N, nheads, row_stride, head_stride, offset, rot_dim;
    int interleaved;
    int max_pos;
    const int32_t *pos;   /* [N] */
    const float *cos, *sin;
};

/* Loss mix (SPEC §2). Per row (position) n with target y and optional teacher top-K:
 *   ce  = label-smoothed cross-entropy of softmax(logits) over the first `vocab` ids
 *   kd  = the top-K (K+1-bucket) divergence at temperature T, mode KD_FORWARD (T²·KL(p‖q)),
 *         KD_REVERSE (T²·KL(q‖p)) or KD_JSD (T²·JSD_β)
 *   loss = alpha·kd + (1 − alpha)·ce
 * Rows with target < 0 contribute to neither (and get zero gradient); a target ≥ vocab
 * or a top-K id outside [0, vocab) is an error. Per-row values are not averaged. */
enum kd_mode { KD_FORWARD = 0, KD_REVERSE = 1, KD_JSD = 2 };
struct loss_args {
    int N;             /* rows */
    int vocab;         /* real vocabulary: ids ≥ vocab are padding, excluded */
    int vocab_padded;  /* row stride of logits */
    float smoothing;   /* label smoothing ε */
    float alpha;       /* weight of kd; 0 when no teacher outputs */
    enum kd_mode mode;
    float temperature;
    float jsd_beta;
    int k;                        /* top-K width (0 = no teacher) */
    const int32_t *topk_ids;      /* [N,K] */
    const float *topk_logprobs;   /* [N,K] teacher log p_T at those ids */
    const float *tail_logprob;    /* [N] teacher log of mass outside the K ids */
    float grad_scale;  /* dlogits is d(grad_scale · Σ_rows loss)/dlogits */
};

struct adamw_args {
    size_t n;
    float lr, beta1, beta2, eps, weight_decay;
    int step;          /* 1-based, for bias correction */
    float grad_scale;  /* gradients are multiplied by this first (clipping, accumulation) */
    int stochastic_rounding; /* round the act-dtype weights stochastically from master (bf16/f16
                              * backends; f32 ignores it), with a hash of (seed, step, index) */
    uint32_t seed;
};

/* one problem of ops->matmul_grouped */
struct matmul_problem {
    void *c;
    const void *a, *b;
    int m, n, k;
};

/* Backend memory in bytes: allocated through ops->alloc now and at the peak; free and
 * total of the device (cudaMemGetInfo; 0 on the CPU, where they are not tracked). */
struct ops_mem {
    size_t allocated, peak, free, total;
};

struct ops {
    const char *name;       /* "cpu", "cuda" */
    enum dtype act_dtype;   /* dtype of `act` buffers */

    /* memory */
    void *(*alloc)(size_t bytes);                  /* zeroed; NULL on failure */
    void (*free)(void *p);
    int (*to_device)(void *dst, const void *src_host, size_t bytes);
    int (*to_host)(void *dst_host, const void *src, size_t bytes);
    int (*copy)(void *dst, const void *src, size_t bytes);
    int (*fill)(void *x, float value, size_t n);   /* act dtype */
    /* f32 host-or-device array <-> act dtype conversions */
    int (*f32_to_act)(void *dst, const float *src, size_t n);
    int (*act_to_f32)(float *dst, const void *src, size_t n);
    int (*sync)(void);
    int (*mem_stats)(struct ops_mem *out);

    /* C[m,n] = alpha · op(A) · op(B) + beta · C, op(X) = X or Xᵀ; A is [m,k] ([k,m] when
     * trans_a), B is [k,n] ([n,k] when trans_b); lda/ldb/ldc are row strides (0 = dense). */
    int (*matmul)(void *c, const void *a, const void *b, int m, int n, int k, int trans_a,
                  int trans_b, float alpha, float beta, int lda, int ldb, int ldc);

    /* elementwise over n act values */
    int (*add)(void *out, const void *a, const void *b, size_t n);      /* out = a + b */
    int (*axpy)(void *y, float alpha, const void *x, size_t n);         /* y += alpha·x */
    int (*scale)(void *x, float alpha, size_t n);

    /* out[n,:] = table[ids[n],:];  dtable[ids[n],:] += dout[n,:] */
    int (*embedding_forward)(void *out, const int32_t *ids, const void *table, int N, int C);
    int (*embedding_backward)(void *dtable, const int32_t *ids, const void *dout, int N, int C);

    /* out = x · rstd · w, rstd [N] f32 saved for backward */
    int (*rmsnorm_forward)(void *out, float *rstd, const void *x, const void *w, int N, int C,
                           float eps);
    /* dx = (overwrite), dw += */
    int (*rmsnorm_backward)(void *dx, void *dw, const void *dout, const void *x, const void *w,
                            const float *rstd, int N, int C);

    /* in place; backward rotates by −θ */
    int (*rope_forward)(void *x, const struct rope_shape *s);
    int (*rope_backward)(void *dx, const struct rope_shape *s);

    int (*attention_forward)(void *out, float *lse, const void *q, const void *k, const void *v,
                             const struct attn_shape *s);
    /* dq, dk, dv overwrite; they use the strides of q, k, v, and only the heads' columns
     * are written (other columns of a packed row are left alone) */
    int (*attention_backward)(void *dq, void *dk, void *dv, const void *dout, const void *out,
                              const float *lse, const void *q, const void *k, const void *v,
                              const struct attn_shape *s);

    /* h [N, 2F]: gate = h[:, :F], up = h[:, F:]; out [N,F] = silu(gate) ⊙ up */
    int (*swiglu_forward)(void *out, const void *h, int N, int F);
    /* dh [N,2F] overwrite */
    int (*swiglu_backward)(void *dh, const void *dout, const void *h, int N, int F);

    /* Fused softmax loss over logits [N, vocab_padded]: writes per-row loss, ce and kd
     * (f32 [N], any may be NULL) and dlogits (act, may alias logits; padding columns get 0). */
    int (*loss_forward_backward)(float *loss, float *ce, float *kd, void *dlogits,
                                 const void *logits, const int32_t *targets,
                                 const struct loss_args *a);

    /* Grouped matmul (e.g. one problem per expert): for each of the count problems,
     * C = alpha·op(A)·op(B) + beta·C with dense row-major operands of that problem's m, n,
     * k (as in matmul with lda = ldb = ldc = 0); trans_a/trans_b, alpha and beta shared.
     * A problem with m, n or k = 0 is skipped (its C is left unchanged). The pointer array
     * is host memory; the operands are backend memory. */
    int (*matmul_grouped)(const struct matmul_problem *p, int count, int trans_a, int trans_b, float alpha,
                          float beta);

    /* Row permutation for mixture-of-experts token routing; rows are int32 in backend
     * memory, each in [0, M) (M = rows of the full matrix), C act values per row.
     *   gather_rows:      out[r,:] = x[rows[r],:]                    (out [n,C], x [M,C])
     *   scatter_add_rows: y[rows[r],:] += w[r]·x[r,:]                 (y [M,C], x [n,C])
     *     w f32 [n] in backend memory or NULL (= 1); rows must be distinct within a call.
     *   rows_dot:         out[r] = Σ_c a[rows[r],c]·b[r,c]            (a [M,C], b [n,C], out f32 [n])
     * A row outside [0, M) is an error (the CUDA backend skips it and reports it at sync). */
    int (*gather_rows)(void *out, const void *x, const int32_t *rows, int n, int M, int C);
    int (*scatter_add_rows)(void *y, const void *x, const int32_t *rows, const float *w, int n, int M,
                            int C);
    int (*rows_dot)(float *out, const void *a, const int32_t *rows, const void *b, int n, int M, int C);
    /* out[t,:] += Σ_{j<K} w[t·K+j]·x[idx[t·K+j],:] for t < n, added in order of j (x [M,C],
     * out [n,C]; idx int32 [n,K], an entry < 0 adds nothing; w f32 [n,K] or NULL = 1) */
    int (*gather_sum_rows)(void *out, const void *x, const int32_t *idx, const float *w, int n, int K, int M,
                           int C);

    /* Causal softmax over the rows of scores s [R,S] (act), written to p (may alias s):
     * rows come in groups of `group` (the heads of one query position; R divisible by group),
     * and row r sees columns c ≤ S − R/group + r/group, i.e. the R/group queries are the last
     * positions of the S keys. p = softmax(scale·s) over the visible columns, 0 elsewhere. */
    int (*softmax_causal)(void *p, const void *s, int R, int S, int group, float scale);

    /* The teacher's top-K (SPEC §1) of N logit rows (act [N, Vp], the first V columns real) at
     * temperature T: ids [N,K] int32 by descending logit (the lower id first on ties),
     * logprobs [N,K] f32 = log_softmax(z/T) at those ids, tail [N] f32 = log of the
     * probability mass outside them (−inf when K == V). Outputs in backend memory. */
    int (*topk)(int32_t *ids, float *logprobs, float *tail, const void *logits, int N, int V, int Vp, int K,
                float T);

    /* AdamW, decoupled weight decay, bias correction. master/m/v f32 [n]; grad act [n];
     * param (act, may be NULL or == master on the CPU) receives the updated weights. */
    int (*adamw)(float *master, void *param, const void *grad, float *m, float *v,
                 const struct adamw_args *a);
    /* *out (host f32) = Σ x² over n act values */
    int (*sumsq)(float *out, const void *x, size_t n);
};

/* The CPU backend (always available). */
const struct ops *ops_cpu(void);
/* The CUDA backend, or NULL with a message (sushi_last_error) when no GPU is usable. */
const struct ops *ops_cuda(void);
/* "cpu", "cuda" or "auto" (CUDA when usable, else CPU). NULL on an unknown name. */
const struct ops *ops_by_name(const char *name);
/* Adds the backend's memory (mem_allocated_bytes, mem_peak_bytes, device_mem_free/total_bytes)
 * and, on a GPU with NVML, utilisation (gpu_util_pct, gpu_mem_used_bytes, ...) to meta. */
int ops_device_metrics(const struct ops *ops, json_t *meta);

/* Threads the CPU backend uses (default: online cores, or SUSHI_THREADS). */
void ops_cpu_set_threads(int n);
int ops_cpu_threads(void);

#endif
