/* Shared between the files of the CPU backend: the thread pool, per-thread scratch and
 * the op functions gathered into the table by cpu_ops.c. Act dtype is f32. */
#ifndef SUSHI_CPU_INTERNAL_H
#define SUSHI_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

/* ---- thread pool (cpu_pool.c) ---- */

#define CPU_MAX_THREADS 64

/* fn(ctx, begin, end, thread), thread < CPU_MAX_THREADS, over [0, n) split into contiguous ranges, one per pool
 * thread (the caller runs one of them). Runs inline when n is small or the pool has a
 * single thread. Not reentrant: fn must not call cpu_parallel_for. */
typedef void (*cpu_range_fn)(void *ctx, size_t begin, size_t end, int thread);
void cpu_parallel_for(size_t n, size_t min_per_thread, cpu_range_fn fn, void *ctx);
int cpu_pool_threads(void);
void cpu_pool_set_threads(int n);

/* Per-thread scratch that grows and is kept (no allocation in the steady state).
 * `slot` (0..3) distinguishes buffers needed at the same time by one thread; slots 0-2
 * are free for any op, slot 3 belongs to the loss. Newly grown memory is zeroed; the
 * contents otherwise persist between calls. NULL on failure. */
float *cpu_scratch(int thread, int slot, size_t floats);

/* ---- ops ---- */

int cpu_matmul(void *c, const void *a, const void *b, int m, int n, int k, int trans_a,
               int trans_b, float alpha, float beta, int lda, int ldb, int ldc);

int cpu_embedding_forward(void *out, const int32_t *ids, const void *table, int N, int C);
int cpu_embedding_backward(void *dtable, const int32_t *ids, const void *dout, int N, int C);
int cpu_rmsnorm_forward(void *out, float *rstd, const void *x, const void *w, int N, int C,
                        float eps);
int cpu_rmsnorm_backward(void *dx, void *dw, const void *dout, const void *x, const void *w,
                         const float *rstd, int N, int C);
int cpu_swiglu_forward(void *out, const void *h, int N, int F);
int cpu_swiglu_backward(void *dh, const void *dout, const void *h, int N, int F);

int cpu_rope_forward(void *x, const struct rope_shape *s);
int cpu_rope_backward(void *dx, const struct rope_shape *s);

int cpu_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                          const struct attn_shape *s);
int cpu_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                           const float *lse, const void *q, const void *k, const void *v,
                           const struct attn_shape *s);

int cpu_loss_forward_backward(float *loss, float *ce, float *kd, void *dlogits,
                              const void *logits, const int32_t *targets,
                              const struct loss_args *a);

int cpu_adamw(float *master, void *param, const void *grad, float *m, float *v,
              const struct adamw_args *a);
int cpu_sumsq(float *out, const void *x, size_t n);

int cpu_gather_rows(void *out, const void *x, const int32_t *rows, int n, int M, int C);
int cpu_scatter_add_rows(void *y, const void *x, const int32_t *rows, const float *w, int n, int M, int C);
int cpu_rows_dot(float *out, const void *a, const int32_t *rows, const void *b, int n, int M, int C);
int cpu_gather_sum_rows(void *out, const void *x, const int32_t *idx, const float *w, int n, int K, int M, int C);
int cpu_matmul_grouped(const struct matmul_problem *p, int count, int trans_a, int trans_b, float alpha, float beta);
int cpu_topk(int32_t *ids, float *logprobs, float *tail, const void *logits, int N, int V, int Vp, int K, float T);
int cpu_softmax_causal(void *p, const void *s, int R, int S, int group, float scale);

#endif
