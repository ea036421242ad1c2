/* The op table wrapped for benchmarks: live/peak accounting of ops->alloc, and with
 * `sync_each` set a timer around every compute op (synchronised before and after, so
 * on the GPU the sum exceeds the step time by the launch gaps it exposes), summed per
 * kind in p_time[] and, for matmul, per shape in mm[]; and the runner of the PyTorch
 * side of a comparison. Included by the training
 * benchmarks only (static state, one wrapped table per program). */
#ifndef SUSHI_BENCH_OPS_PROFILE_H
#define SUSHI_BENCH_OPS_PROFILE_H

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kernels/ops.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the op table with allocation accounting and optional per-op timers ---- */
static const struct ops *base;
static struct ops profiled;
static int sync_each;

#define MEM_SLOTS 4096
static void *mem_ptr[MEM_SLOTS];
static size_t mem_size[MEM_SLOTS];
static size_t mem_live, mem_peak;

static void *w_alloc(size_t bytes) {
    void *p = base->alloc(bytes);
    if (!p) return NULL;
    for (int i = 0; i < MEM_SLOTS; i++)
        if (!mem_ptr[i]) {
            mem_ptr[i] = p;
            mem_size[i] = bytes;
            break;
        }
    mem_live += bytes;
    if (mem_live > mem_peak) mem_peak = mem_live;
    return p;
}

static void w_free(void *p) {
    for (int i = 0; i < MEM_SLOTS && p; i++)
        if (mem_ptr[i] == p) {
            mem_live -= mem_size[i];
            mem_ptr[i] = NULL;
            break;
        }
    base->free(p);
}

enum { P_MATMUL, P_ATTN_F, P_ATTN_B, P_NORM_F, P_NORM_B, P_ROPE, P_SWIGLU_F, P_SWIGLU_B,
       P_LOSS, P_ADAMW, P_EMB, P_ELTWISE, P_COUNT };
static const char *p_names[P_COUNT] = {"matmul", "attention_forward", "attention_backward",
    "rmsnorm_forward", "rmsnorm_backward", "rope", "swiglu_forward", "swiglu_backward",
    "loss", "adamw+sumsq", "embedding", "copy/axpy/fill"};
static double p_time[P_COUNT];

/* rc = call, timed (synchronised before and after) into p_time[slot] when sync_each is set */
#define TIMED_BODY(slot, rc, call) do {                                               \
        if (!sync_each) { rc = (call); break; }                                       \
        rc = base->sync();                                                            \
        double t0_ = now_s();                                                         \
        if (!rc) rc = (call);                                                         \
        if (!rc) rc = base->sync();                                                   \
        p_time[slot] += now_s() - t0_;                                                \
    } while (0)
/* returns `call`, timed as TIMED_BODY */
#define TIMED(slot, call) do { int rc_; TIMED_BODY(slot, rc_, call); return rc_; } while (0)

/* matmul time by shape (m, n, k, trans_a, trans_b) */
struct mm_shape { int m, n, k, ta, tb, calls; double t; };
static struct mm_shape mm[64];
static int n_mm;

static void mm_note(int m, int n, int k, int ta, int tb, double t) {
    for (int i = 0; i < n_mm; i++)
        if (mm[i].m == m && mm[i].n == n && mm[i].k == k && mm[i].ta == ta && mm[i].tb == tb) {
            mm[i].calls++;
            mm[i].t += t;
            return;
        }
    if (n_mm < 64) mm[n_mm++] = (struct mm_shape){m, n, k, ta, tb, 1, t};
}

static int t_matmul(void *c, const void *a, const void *b, int m, int n, int k, int ta, int tb,
                    float al, float be, int lda, int ldb, int ldc) {
    double before = p_time[P_MATMUL];
    int rc = 0;
    do { TIMED_BODY(P_MATMUL, rc, base->matmul(c, a, b, m, n, k, ta, tb, al, be, lda, ldb, ldc)); } while (0);
    if (sync_each) mm_note(m, n, k, ta, tb, p_time[P_MATMUL] - before);
    return rc;
}
static int t_attn_f(void *o, float *l, const void *q, const void *k, const void *v, const struct attn_shape *s) {
    TIMED(P_ATTN_F, base->attention_forward(o, l, q, k, v, s));
}
static int t_attn_b(void *dq, void *dk, void *dv, const void *d, const void *o, const float *l,
                    const void *q, const void *k, const void *v, const struct attn_shape *s) {
    TIMED(P_ATTN_B, base->attention_backward(dq, dk, dv, d, o, l, q, k, v, s));
}
static int t_norm_f(void *o, float *r, const void *x, const void *w, int N, int C, float e) {
    TIMED(P_NORM_F, base->rmsnorm_forward(o, r, x, w, N, C, e));
}
static int t_norm_b(void *dx, void *dw, const void *d, const void *x, const void *w, const float *r, int N, int C) {
    TIMED(P_NORM_B, base->rmsnorm_backward(dx, dw, d, x, w, r, N, C));
}
static int t_rope_f(void *x, const struct rope_shape *s) { TIMED(P_ROPE, base->rope_forward(x, s)); }
static int t_rope_b(void *x, const struct rope_shape *s) { TIMED(P_ROPE, base->rope_backward(x, s)); }
static int t_sw_f(void *o, const void *h, int N, int F) { TIMED(P_SWIGLU_F, base->swiglu_forward(o, h, N, F)); }
static int t_sw_b(void *dh, const void *d, const void *h, int N, int F) {
    TIMED(P_SWIGLU_B, base->swiglu_backward(dh, d, h, N, F));
}
static int t_loss(float *l, float *ce, float *kd, void *dl, const void *lg, const int32_t *t,
                  const struct loss_args *a) {
    TIMED(P_LOSS, base->loss_forward_backward(l, ce, kd, dl, lg, t, a));
}
static int t_adamw(float *m, void *p, const void *g, float *mm, float *v, const struct adamw_args *a) {
    TIMED(P_ADAMW, base->adamw(m, p, g, mm, v, a));
}
static int t_sumsq(float *o, const void *x, size_t n) { TIMED(P_ADAMW, base->sumsq(o, x, n)); }
static int t_emb_f(void *o, const int32_t *i, const void *t, int N, int C) {
    TIMED(P_EMB, base->embedding_forward(o, i, t, N, C));
}
static int t_emb_b(void *d, const int32_t *i, const void *o, int N, int C) {
    TIMED(P_EMB, base->embedding_backward(d, i, o, N, C));
}
static int t_copy(void *d, const void *s, size_t n) { TIMED(P_ELTWISE, base->copy(d, s, n)); }
static int t_axpy(void *y, float a, const void *x, size_t n) { TIMED(P_ELTWISE, base->axpy(y, a, x, n)); }
static int t_fill(void *x, float v, size_t n) { TIMED(P_ELTWISE, base->fill(x, v, n)); }

static const struct ops *profile_ops(const struct ops *b) {
    base = b;
    profiled = *b;
    profiled.alloc = w_alloc;
    profiled.free = w_free;
    profiled.matmul = t_matmul;
    profiled.attention_forward = t_attn_f;
    profiled.attention_backward = t_attn_b;
    profiled.rmsnorm_forward = t_norm_f;
    profiled.rmsnorm_backward = t_norm_b;
    profiled.rope_forward = t_rope_f;
    profiled.rope_backward = t_rope_b;
    profiled.swiglu_forward = t_sw_f;
    profiled.swiglu_backward = t_sw_b;
    profiled.loss_forward_backward = t_loss;
    profiled.adamw = t_adamw;
    profiled.sumsq = t_sumsq;
    profiled.embedding_forward = t_emb_f;
    profiled.embedding_backward = t_emb_b;
    profiled.copy = t_copy;
    profiled.axpy = t_axpy;
    profiled.fill = t_fill;
    return &profiled;
}

/* Runs the comparison command (a PyTorch script printing "torch tokens/s X"), echoes
 * its output, and returns X (0 when the command failed or printed none). */
static double bench_run_torch(const char *cmd) {
    char line[256];
    FILE *p = popen(cmd, "r");
    double tps = 0;
    if (!p) return 0;
    while (fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        sscanf(line, "torch tokens/s %lf", &tps);
    }
    pclose(p);
    return tps;
}

#endif
