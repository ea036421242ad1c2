/* The CPU op table: memory (64-byte aligned, zeroed host memory), conversions (act is
 * f32, so they are copies), elementwise ops, matmul through OpenBLAS, and the table
 * that gathers the ops of the other files in kernels/cpu/. */
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "common/core/log.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/mem_track.h"

/* ---- memory ---- */

static struct mem_track cpu_mem = MEM_TRACK_INIT;

static void *cpu_alloc(size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0) rounded = 64;
    if (rounded < bytes) {
        sushi_error(SUSHI_ENOMEM, "cpu: alloc of %zu bytes: size overflow", bytes);
        return NULL;
    }
    void *p = aligned_alloc(64, rounded);
    if (!p) {
        sushi_error(SUSHI_ENOMEM, "cpu: alloc of %zu bytes: out of memory", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    mem_track_add(&cpu_mem, p, rounded);
    return p;
}

static void cpu_free(void *p) {
    mem_track_remove(&cpu_mem, p);
    free(p);
}

static int cpu_mem_stats(struct ops_mem *out) {
    if (!out) return sushi_error(SUSHI_EINVAL, "cpu: mem_stats: NULL");
    memset(out, 0, sizeof *out);
    mem_track_counts(&cpu_mem, &out->allocated, &out->peak);
    return 0;
}

static int cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return 0;
    if (!dst || !src) return sushi_error(SUSHI_EINVAL, "cpu: copy of %zu bytes: NULL pointer", bytes);
    if (dst != src) memmove(dst, src, bytes);
    return 0;
}

static int cpu_sync(void) { return 0; }

static int cpu_f32_copy(void *dst, const float *src, size_t n) {
    return cpu_copy(dst, src, n * sizeof(float));
}

static int cpu_act_to_f32(float *dst, const void *src, size_t n) {
    return cpu_copy(dst, src, n * sizeof(float));
}

/* ---- elementwise ---- */

struct ew_ctx {
    float *y;
    const float *a, *b;
    float alpha;
    int kind; /* 0 fill, 1 add, 2 axpy, 3 scale */
};

static void ew_range(void *p, size_t i0, size_t i1, int thread) {
    const struct ew_ctx *c = p;
    (void)thread;
    float *y = c->y;
    switch (c->kind) {
    case 0: for (size_t i = i0; i < i1; i++) y[i] = c->alpha; break;
    case 1: for (size_t i = i0; i < i1; i++) y[i] = c->a[i] + c->b[i]; break;
    case 2: for (size_t i = i0; i < i1; i++) y[i] += c->alpha * c->a[i]; break;
    default: for (size_t i = i0; i < i1; i++) y[i] *= c->alpha; break;
    }
}

static int ew_run(const char *op, float *y, const float *a, const float *b, float alpha,
                  int kind, size_t n) {
    if (n == 0) return 0;
    if (!y || (kind >= 1 && kind <= 2 && !a) || (kind == 1 && !b))
        return sushi_error(SUSHI_EINVAL, "cpu: %s over %zu values: NULL pointer", op, n);
    struct ew_ctx c = {y, a, b, alpha, kind};
    cpu_parallel_for(n, 1 << 16, ew_range, &c);
    return 0;
}

static int cpu_fill(void *x, float value, size_t n) { return ew_run("fill", x, NULL, NULL, value, 0, n); }
static int cpu_add(void *out, const void *a, const void *b, size_t n) {
    return ew_run("add", out, a, b, 0.0f, 1, n);
}
static int cpu_axpy(void *y, float alpha, const void *x, size_t n) {
    return ew_run("axpy", y, x, NULL, alpha, 2, n);
}
static int cpu_scale(void *x, float alpha, size_t n) { return ew_run("scale", x, NULL, NULL, alpha, 3, n); }

/* ---- matmul ---- */

#define MM_SPLIT_FLOPS (1 << 22)   /* below this a matmul runs on one thread */
#define MM_MIN_ROWS 32             /* rows (or columns) of C per thread at least */

struct mm_ctx {
    float *c;
    const float *a, *b;
    int m, n, k, ta, tb, lda, ldb, ldc, split_rows;
    float alpha, beta;
};

/* C rows [r0, r1) (or columns, when split_rows is 0) on this thread, OpenBLAS single-threaded */
static void mm_range(void *p, size_t r0, size_t r1, int thread) {
    const struct mm_ctx *x = p;
    const int i0 = (int)r0, cnt = (int)(r1 - r0);
    (void)thread;
    if (x->split_rows) {
        const float *a = x->ta ? x->a + i0 : x->a + (size_t)i0 * x->lda;
        cblas_sgemm(CblasRowMajor, x->ta ? CblasTrans : CblasNoTrans, x->tb ? CblasTrans : CblasNoTrans, cnt,
                    x->n, x->k, x->alpha, a, x->lda, x->b, x->ldb, x->beta, x->c + (size_t)i0 * x->ldc, x->ldc);
    } else {
        const float *b = x->tb ? x->b + (size_t)i0 * x->ldb : x->b + i0;
        cblas_sgemm(CblasRowMajor, x->ta ? CblasTrans : CblasNoTrans, x->tb ? CblasTrans : CblasNoTrans, x->m,
                    cnt, x->k, x->alpha, x->a, x->lda, b, x->ldb, x->beta, x->c + i0, x->ldc);
    }
}

int cpu_matmul(void *c, const void *a, const void *b, int m, int n, int k, int trans_a,
               int trans_b, float alpha, float beta, int lda, int ldb, int ldc) {
    if (m < 0 || n < 0 || k < 0)
        return sushi_error(SUSHI_ESHAPE, "cpu: matmul: negative shape m=%d n=%d k=%d", m, n, k);
    if (m == 0 || n == 0) return 0;
    if (!c || (k > 0 && (!a || !b))) return sushi_error(SUSHI_EINVAL, "cpu: matmul: NULL pointer");
    int dense_a = trans_a ? m : k, dense_b = trans_b ? k : n;
    if (lda == 0) lda = dense_a;
    if (ldb == 0) ldb = dense_b;
    if (ldc == 0) ldc = n;
    if (lda < dense_a || ldb < dense_b || ldc < n || lda < 1 || ldb < 1)
        return sushi_error(SUSHI_ESHAPE,
                           "cpu: matmul: row stride too small (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d)",
                           m, n, k, lda, ldb, ldc);
    if (k == 0) {
        /* C = beta·C (BLAS would too; done here so a/b may be NULL) */
        for (int i = 0; i < m; i++) {
            float *row = (float *)c + (size_t)i * ldc;
            for (int j = 0; j < n; j++) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
        }
        return 0;
    }
    /* The pool splits C into slabs, one single-threaded OpenBLAS call each: on few cores
     * this beats OpenBLAS's own threading, whose idle workers spin between calls. */
    struct mm_ctx x = {c, a, b, m, n, k, trans_a, trans_b, lda, ldb, ldc, m >= n, alpha, beta};
    if (2.0 * m * n * k < MM_SPLIT_FLOPS) {
        x.split_rows = 1;
        mm_range(&x, 0, (size_t)m, 0);
    } else {
        cpu_parallel_for((size_t)(x.split_rows ? m : n), MM_MIN_ROWS, mm_range, &x);
    }
    return 0;
}

int cpu_matmul_grouped(const struct matmul_problem *p, int count, int trans_a, int trans_b, float alpha,
                       float beta) {
    if (count < 0 || (count > 0 && !p)) return sushi_error(SUSHI_EINVAL, "cpu: matmul_grouped: bad argument");
    for (int i = 0; i < count; i++) {
        if (p[i].m < 0 || p[i].n < 0 || p[i].k < 0)
            return sushi_error(SUSHI_EINVAL, "cpu: matmul_grouped: problem %d: bad shape m=%d n=%d k=%d", i, p[i].m,
                               p[i].n, p[i].k);
        if (!p[i].m || !p[i].n || !p[i].k) continue;
        int rc = cpu_matmul(p[i].c, p[i].a, p[i].b, p[i].m, p[i].n, p[i].k, trans_a, trans_b, alpha, beta, 0, 0, 0);
        if (rc) return rc;
    }
    return 0;
}

/* ---- the table ---- */

static const struct ops cpu_table = {
    .name = "cpu",
    .act_dtype = DT_F32,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .f32_to_act = cpu_f32_copy,
    .act_to_f32 = cpu_act_to_f32,
    .sync = cpu_sync,
    .mem_stats = cpu_mem_stats,
    .matmul = cpu_matmul,
    .add = cpu_add,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .loss_forward_backward = cpu_loss_forward_backward,
    .adamw = cpu_adamw,
    .sumsq = cpu_sumsq,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .rows_dot = cpu_rows_dot,
    .softmax_causal = cpu_softmax_causal,
    .topk = cpu_topk,
    .gather_sum_rows = cpu_gather_sum_rows,
    .matmul_grouped = cpu_matmul_grouped,
};

const struct ops *ops_cpu(void) { return &cpu_table; }
