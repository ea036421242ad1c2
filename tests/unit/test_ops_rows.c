// libs: cuda kernels core
/* The row-permutation ops of mixture-of-experts routing (kernels/ops.h: gather_rows,
 * scatter_add_rows, rows_dot, gather_sum_rows) and the grouped matmul. CPU backend
 * against naive loops over guarded host buffers: gather exact, scatter-add and row dots
 * within 1e-6 relative, gather_sum_rows bit-identical to the naive sum in order of j
 * (K = 1..4, entries < 0 adding nothing, w = NULL, onto nonzero outputs), matmul_grouped
 * bit-identical to one matmul per problem (m = 0 and k = 0 problems skipped, both trans
 * flags, beta 0 and 1); w = NULL, n = 0 (nothing written), a row outside [0, M) or a bad
 * shape refused with an error naming the op and nothing written. CUDA backend, when a
 * GPU is usable (skipped otherwise), against the CPU results on bf16-representable
 * inputs between device guard bytes: gather exact, scatter-add, gather_sum_rows and
 * matmul_grouped (act outputs) within 1e-2 and row dots (f32) within 1e-3 relative, and
 * an out-of-range row reported by sync(). With SUSHI_TEST_GPU=1 (scripts/run-tests.sh
 * --gpu) a missing GPU fails the CUDA tests instead of skipping them.
 * SUSHI_TEST_SEED fixes the otherwise time-based seed (printed). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include "common/core/dtype.h"
#include "common/core/log.h"
#include "kernels/ops.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function" /* the case-directory helpers */
#include "tests/unit/ops_case.h"
#pragma GCC diagnostic pop

static const struct ops *cpu, *gpu;
static char no_gpu[256]; /* why ops_cuda() gave NULL */

/* one case: x [M,C] (gather, scatter's y, rows_dot's a), v [n,C] (scatter's x, rows_dot's b) */
struct rcase {
    int M, n, C;
};
static const struct rcase cases[] = {{1, 1, 1}, {9, 6, 5}, {40, 40, 33}, {300, 200, 257}, {1000, 999, 64}};
#define NCASES (sizeof cases / sizeof cases[0])

/* n row indices in [0, M), all distinct when `distinct` (n ≤ M), with 0 and M − 1 among them */
static int32_t *rnd_rows(int n, int M, int distinct) {
    int32_t *rows = malloc((size_t)(n ? n : 1) * sizeof(int32_t)), *all = malloc((size_t)M * sizeof(int32_t));
    assert_non_null(rows);
    assert_non_null(all);
    for (int i = 0; i < M; i++) all[i] = i;
    for (int i = 0; i < M; i++) {   /* shuffle */
        int j = i + oc_int(M - i);
        int32_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    for (int r = 0; r < n; r++) rows[r] = distinct ? all[r] : (int32_t)oc_int(M);
    if (n > 0 && !distinct) rows[0] = M - 1;
    if (n > 1 && !distinct) rows[n - 1] = 0;
    free(all);
    return rows;
}

/* values rounded to bf16, so both backends see the same numbers */
static float *rnd_act(struct oc_buf *b, size_t n, float scale) {
    float *p = oc_randn(b, n, scale);
    assert_non_null(p);
    /* representable in the CUDA backend's act dtype (bf16 or f16), so a gather is exact there */
    int f16 = gpu && gpu->act_dtype == DT_F16;
    for (size_t i = 0; i < n; i++) p[i] = f16 ? f16_to_f32(f32_to_f16(p[i])) : bf16_to_f32(f32_to_bf16(p[i]));
    return p;
}

static float *copy_of(struct oc_buf *b, const float *src, size_t n) {
    float *p = oc_alloc(b, n);
    assert_non_null(p);
    memcpy(p, src, n * sizeof(float));
    return p;
}

/* max |got − ref| ≤ tol · max(1, |ref|) elementwise */
static void expect_near(const char *what, const float *got, const float *ref, size_t n, double tol) {
    for (size_t i = 0; i < n; i++) {
        double lim = tol * fmax(1.0, fabs((double)ref[i]));
        if (!(fabs((double)got[i] - ref[i]) <= lim))
            fail_msg("%s: element %zu is %.9g, expected %.9g", what, i, got[i], ref[i]);
    }
}

static void expect_error_names(int rc, const char *op) {
    assert_int_equal(rc, SUSHI_EINVAL);
    if (!strstr(sushi_last_error(), op)) fail_msg("error \"%s\" does not name %s", sushi_last_error(), op);
}

static int setup(void **st) {
    (void)st;
    const char *seed = getenv("SUSHI_TEST_SEED");
    oc_state = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL);
    print_message("seed %llu (SUSHI_TEST_SEED)\n", (unsigned long long)oc_state);
    cpu = ops_cpu();
    gpu = ops_cuda();
    if (!gpu) {
        snprintf(no_gpu, sizeof no_gpu, "%s", sushi_last_error());
        print_message("no GPU: %s\n", no_gpu);
    }
    return 0;
}

/* ---- CPU against naive loops ---- */

static void test_cpu_gather(void **st) {
    (void)st;
    for (size_t k = 0; k < NCASES; k++) {
        int M = cases[k].M, n = cases[k].n, C = cases[k].C;
        struct oc_buf bx, bo;
        float *x = rnd_act(&bx, (size_t)M * C, 1.0f), *out = oc_alloc(&bo, (size_t)n * C);
        assert_non_null(out);
        int32_t *rows = rnd_rows(n, M, 0);
        assert_int_equal(cpu->gather_rows(out, x, rows, n, M, C), 0);
        for (int r = 0; r < n; r++)
            for (int c = 0; c < C; c++)
                if (memcmp(&out[(size_t)r * C + c], &x[(size_t)rows[r] * C + c], sizeof(float)))
                    fail_msg("gather M=%d n=%d C=%d: out[%d,%d] is not x[%d,%d]", M, n, C, r, c, rows[r], c);
        free(rows);
        assert_int_equal(oc_release_all(), 0);
    }
}

static void test_cpu_scatter_add(void **st) {
    (void)st;
    for (size_t k = 0; k < NCASES; k++) {
        int M = cases[k].M, n = cases[k].n, C = cases[k].C;
        struct oc_buf by, bx, bw, br, bu;
        float *y = rnd_act(&by, (size_t)M * C, 1.0f), *x = rnd_act(&bx, (size_t)n * C, 1.0f);
        float *w = rnd_act(&bw, (size_t)n, 0.5f), *ref = copy_of(&br, y, (size_t)M * C);
        float *ref1 = copy_of(&bu, y, (size_t)M * C);
        int32_t *rows = rnd_rows(n, M, 1);
        for (int r = 0; r < n; r++)
            for (int c = 0; c < C; c++) {
                ref[(size_t)rows[r] * C + c] += w[r] * x[(size_t)r * C + c];
                ref1[(size_t)rows[r] * C + c] += x[(size_t)r * C + c];
            }
        struct oc_buf by1;
        float *y1 = copy_of(&by1, y, (size_t)M * C);
        assert_int_equal(cpu->scatter_add_rows(y, x, rows, w, n, M, C), 0);
        expect_near("scatter_add_rows", y, ref, (size_t)M * C, 1e-6);
        assert_int_equal(cpu->scatter_add_rows(y1, x, rows, NULL, n, M, C), 0);
        expect_near("scatter_add_rows w=NULL", y1, ref1, (size_t)M * C, 1e-6);
        free(rows);
        assert_int_equal(oc_release_all(), 0);
    }
}

static void test_cpu_rows_dot(void **st) {
    (void)st;
    for (size_t k = 0; k < NCASES; k++) {
        int M = cases[k].M, n = cases[k].n, C = cases[k].C;
        struct oc_buf ba, bb, bo, br;
        float *a = rnd_act(&ba, (size_t)M * C, 1.0f), *b = rnd_act(&bb, (size_t)n * C, 1.0f);
        float *out = oc_alloc(&bo, (size_t)n), *ref = oc_alloc(&br, (size_t)n);
        assert_non_null(out);
        assert_non_null(ref);
        int32_t *rows = rnd_rows(n, M, 0);
        for (int r = 0; r < n; r++) {
            double s = 0;
            for (int c = 0; c < C; c++) s += (double)a[(size_t)rows[r] * C + c] * b[(size_t)r * C + c];
            ref[r] = (float)s;
        }
        assert_int_equal(cpu->rows_dot(out, a, rows, b, n, M, C), 0);
        expect_near("rows_dot", out, ref, (size_t)n, 1e-6);
        free(rows);
        assert_int_equal(oc_release_all(), 0);
    }
}

/* n = 0 writes nothing; a row outside [0, M) or a bad shape is refused, naming the op,
 * before anything is written */
static void test_cpu_edges(void **st) {
    (void)st;
    enum { M = 4, C = 3, N = 2 };
    struct oc_buf bx, bv, bo, bk;
    float *x = rnd_act(&bx, M * C, 1.0f), *v = rnd_act(&bv, N * C, 1.0f), *o = oc_alloc(&bo, M * C);
    float *keep = oc_alloc(&bk, M * C);
    float w[N] = {0.5f, -2.0f};
    for (int i = 0; i < M * C; i++) o[i] = keep[i] = 7.0f + (float)i;
    int32_t ok[N] = {1, 3};
    assert_int_equal(cpu->gather_rows(o, x, ok, 0, M, C), 0);
    assert_int_equal(cpu->scatter_add_rows(o, v, ok, w, 0, M, C), 0);
    assert_int_equal(cpu->rows_dot(o, x, ok, v, 0, M, C), 0);
    assert_memory_equal(o, keep, sizeof(float) * M * C);

    const int32_t bad[][N] = {{1, M}, {-1, 0}};
    for (int i = 0; i < 2; i++) {
        expect_error_names(cpu->gather_rows(o, x, bad[i], N, M, C), "gather_rows");
        expect_error_names(cpu->scatter_add_rows(o, v, bad[i], w, N, M, C), "scatter_add_rows");
        expect_error_names(cpu->scatter_add_rows(o, v, bad[i], NULL, N, M, C), "scatter_add_rows");
        expect_error_names(cpu->rows_dot(o, x, bad[i], v, N, M, C), "rows_dot");
        assert_memory_equal(o, keep, sizeof(float) * M * C);
    }
    expect_error_names(cpu->gather_rows(o, x, ok, N, M, 0), "gather_rows");
    expect_error_names(cpu->scatter_add_rows(o, v, ok, w, -1, M, C), "scatter_add_rows");
    expect_error_names(cpu->rows_dot(o, x, NULL, v, N, M, C), "rows_dot");
    assert_memory_equal(o, keep, sizeof(float) * M * C);
    assert_int_equal(oc_release_all(), 0);
}

/* ---- gather_sum_rows and matmul_grouped on the CPU ---- */

/* idx [n,K]: entries in [0, M), about one in five −1 (adds nothing) */
static int32_t *rnd_idx(int n, int K, int M) {
    size_t nk = (size_t)n * K;
    int32_t *idx = malloc((nk ? nk : 1) * sizeof(int32_t));
    assert_non_null(idx);
    for (size_t i = 0; i < nk; i++) idx[i] = oc_int(5) == 0 ? -1 : (int32_t)oc_int(M);
    if (nk > 1) idx[0] = M - 1, idx[nk - 1] = 0;
    return idx;
}

/* out[t] += Σ_j w[t,j]·x[idx[t,j]] one term after the other, j ascending */
static void naive_gather_sum(float *out, const float *x, const int32_t *idx, const float *w, int n, int K, int C) {
    for (int t = 0; t < n; t++)
        for (int j = 0; j < K; j++) {
            size_t i = (size_t)t * K + j;
            if (idx[i] < 0) continue;
            float a = w ? w[i] : 1.0f;
            for (int c = 0; c < C; c++) out[(size_t)t * C + c] += a * x[(size_t)idx[i] * C + c];
        }
}

static void test_cpu_gather_sum(void **st) {
    (void)st;
    for (size_t k = 0; k < NCASES; k++)
        for (int K = 1; K <= 4; K++) {
            int M = cases[k].M, n = cases[k].n, C = cases[k].C;
            size_t nc = (size_t)n * C;
            struct oc_buf bx, bo, bw, br, bo1, br1;
            float *x = rnd_act(&bx, (size_t)M * C, 1.0f), *out = rnd_act(&bo, nc, 1.0f);
            float *w = rnd_act(&bw, (size_t)n * K, 0.5f), *ref = copy_of(&br, out, nc);
            float *out1 = copy_of(&bo1, out, nc), *ref1 = copy_of(&br1, out, nc);
            int32_t *idx = rnd_idx(n, K, M);
            naive_gather_sum(ref, x, idx, w, n, K, C);
            naive_gather_sum(ref1, x, idx, NULL, n, K, C);
            assert_int_equal(cpu->gather_sum_rows(out, x, idx, w, n, K, M, C), 0);
            assert_int_equal(cpu->gather_sum_rows(out1, x, idx, NULL, n, K, M, C), 0);
            for (size_t i = 0; i < nc; i++)
                if (memcmp(&out[i], &ref[i], sizeof(float)) || memcmp(&out1[i], &ref1[i], sizeof(float)))
                    fail_msg("gather_sum_rows M=%d n=%d C=%d K=%d: element %zu is %.9g / %.9g (w NULL), expected "
                             "%.9g / %.9g", M, n, C, K, i, out[i], out1[i], ref[i], ref1[i]);
            free(idx);
            assert_int_equal(oc_release_all(), 0);
        }
}

/* the terms are added in order of j: with x rows 1, 2^30, −2^30 the sum (1 + 2^30) − 2^30
 * is 0 in f32, while any order that adds the two large rows first gives 1; n = 0 and a
 * bad index or shape write nothing */
static void test_cpu_gather_sum_edges(void **st) {
    (void)st;
    enum { M = 3, C = 2, N = 2, K = 3 };
    const float x[M * C] = {1.0f, 1.0f, 0x1p30f, 0x1p30f, -0x1p30f, -0x1p30f};
    const int32_t fwd[N * K] = {0, 1, 2, 1, 2, 0}, bad[N * K] = {0, 1, 2, 0, M, 1};
    float out[N * C] = {0}, keep[N * C];
    assert_int_equal(cpu->gather_sum_rows(out, x, fwd, NULL, N, K, M, C), 0);
    const float want[N * C] = {0.0f, 0.0f, 1.0f, 1.0f};
    assert_memory_equal(out, want, sizeof want);
    for (int i = 0; i < N * C; i++) out[i] = keep[i] = 3.0f + (float)i;
    assert_int_equal(cpu->gather_sum_rows(out, x, fwd, NULL, 0, K, M, C), 0);
    expect_error_names(cpu->gather_sum_rows(out, x, bad, NULL, N, K, M, C), "gather_sum_rows");
    expect_error_names(cpu->gather_sum_rows(out, x, fwd, NULL, N, 0, M, C), "gather_sum_rows");
    expect_error_names(cpu->gather_sum_rows(out, x, NULL, NULL, N, K, M, C), "gather_sum_rows");
    expect_error_names(cpu->gather_sum_rows(out, x, fwd, NULL, -1, K, M, C), "gather_sum_rows");
    assert_memory_equal(out, keep, sizeof keep);
}

/* problems of mixed shapes: m = 0, n = 0 and k = 0 among them (skipped), one large
 * enough to run on several threads */
struct mg_shape {
    int m, n, k;
};
static const struct mg_shape mg_shapes[] = {{3, 4, 5},   {0, 4, 5},     {7, 1, 9},    {2, 3, 0},
                                            {1, 1, 1},   {40, 33, 70},  {5, 0, 3},    {200, 64, 200}};
#define MG_COUNT ((int)(sizeof mg_shapes / sizeof mg_shapes[0]))

/* host operands of the problems: a, b random, c random (so skipped and beta = 1 problems show) */
struct mg_host {
    float *a[MG_COUNT], *b[MG_COUNT], *c[MG_COUNT], *ref[MG_COUNT];
    struct oc_buf ba[MG_COUNT], bb[MG_COUNT], bc[MG_COUNT], br[MG_COUNT];
};

/* random operands and the reference: one cpu matmul per problem with m, n, k > 0 */
static void mg_host_make(struct mg_host *h, int ta, int tb, float alpha, float beta) {
    for (int i = 0; i < MG_COUNT; i++) {
        const struct mg_shape *s = &mg_shapes[i];
        h->a[i] = rnd_act(&h->ba[i], (size_t)s->m * s->k, 1.0f);
        h->b[i] = rnd_act(&h->bb[i], (size_t)s->k * s->n, 1.0f);
        h->c[i] = rnd_act(&h->bc[i], (size_t)s->m * s->n, 1.0f);
        h->ref[i] = copy_of(&h->br[i], h->c[i], (size_t)s->m * s->n);
        if (s->m && s->n && s->k)
            assert_int_equal(cpu->matmul(h->ref[i], h->a[i], h->b[i], s->m, s->n, s->k, ta, tb, alpha, beta, 0, 0, 0), 0);
    }
}

static void test_cpu_matmul_grouped(void **st) {
    (void)st;
    for (int v = 0; v < 8; v++) {
        int ta = v & 1, tb = (v >> 1) & 1;
        float beta = (float)(v >> 2), alpha = beta ? 0.5f : 1.0f;
        struct mg_host h;
        mg_host_make(&h, ta, tb, alpha, beta);
        struct matmul_problem p[MG_COUNT];
        for (int i = 0; i < MG_COUNT; i++)
            p[i] = (struct matmul_problem){h.c[i], h.a[i], h.b[i], mg_shapes[i].m, mg_shapes[i].n, mg_shapes[i].k};
        assert_int_equal(cpu->matmul_grouped(p, MG_COUNT, ta, tb, alpha, beta), 0);
        for (int i = 0; i < MG_COUNT; i++) {
            size_t mn = (size_t)mg_shapes[i].m * mg_shapes[i].n;
            if (mn && memcmp(h.c[i], h.ref[i], mn * sizeof(float)))
                fail_msg("matmul_grouped ta=%d tb=%d beta=%g: problem %d (m=%d n=%d k=%d) differs from matmul", ta, tb,
                         beta, i, mg_shapes[i].m, mg_shapes[i].n, mg_shapes[i].k);
        }
        assert_int_equal(oc_release_all(), 0);
    }
    /* count 0; a negative shape or count refused, naming the op and the problem, nothing written */
    assert_int_equal(cpu->matmul_grouped(NULL, 0, 0, 0, 1.0f, 0.0f), 0);
    float a[6] = {1, 2, 3, 4, 5, 6}, c[4] = {9, 9, 9, 9};
    struct matmul_problem ok = {c, a, a, 2, 2, 3}, neg = {c, a, a, 2, -1, 3};
    struct matmul_problem two[2] = {neg, ok};
    expect_error_names(cpu->matmul_grouped(two, 2, 0, 1, 1.0f, 0.0f), "matmul_grouped");
    if (!strstr(sushi_last_error(), "problem 0")) fail_msg("\"%s\" does not name problem 0", sushi_last_error());
    expect_error_names(cpu->matmul_grouped(&ok, -1, 0, 1, 1.0f, 0.0f), "matmul_grouped");
    const float nine[4] = {9, 9, 9, 9};
    assert_memory_equal(c, nine, sizeof nine);
}

/* ---- CUDA against the CPU ---- */

#define DEV_GUARD 256
#define DEV_GUARD_BYTE 0xA5

/* device buffer between guard bytes */
struct dbuf {
    uint8_t *base;
    void *p;
    size_t bytes;
};

static struct dbuf dbuf_new(const void *host, size_t bytes) {
    struct dbuf d = {gpu->alloc(bytes + 2 * DEV_GUARD), NULL, bytes};
    assert_non_null(d.base);
    d.p = d.base + DEV_GUARD;
    uint8_t *h = malloc(bytes + 2 * DEV_GUARD);
    assert_non_null(h);
    memset(h, DEV_GUARD_BYTE, bytes + 2 * DEV_GUARD);
    if (host) memcpy(h + DEV_GUARD, host, bytes);
    assert_int_equal(gpu->to_device(d.base, h, bytes + 2 * DEV_GUARD), 0);
    free(h);
    return d;
}

/* act buffer of n values: x (host f32), or guard-byte garbage when x is NULL */
static struct dbuf dbuf_act(const float *x, size_t n) {
    struct dbuf d = dbuf_new(NULL, (n ? n : 1) * dtype_size(gpu->act_dtype));
    if (x && n) assert_int_equal(gpu->f32_to_act(d.p, x, n), 0);
    return d;
}

static void dbuf_free(struct dbuf *d) {
    uint8_t *h = malloc(d->bytes + 2 * DEV_GUARD);
    assert_non_null(h);
    assert_int_equal(gpu->to_host(h, d->base, d->bytes + 2 * DEV_GUARD), 0);
    for (size_t i = 0; i < DEV_GUARD; i++)
        if (h[i] != DEV_GUARD_BYTE || h[DEV_GUARD + d->bytes + i] != DEV_GUARD_BYTE)
            fail_msg("device guard byte %zu %s a buffer of %zu bytes was overwritten", i,
                     h[i] != DEV_GUARD_BYTE ? "before" : "after", d->bytes);
    free(h);
    gpu->free(d->base);
}

static float *act_host(const struct dbuf *d, size_t n) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(x);
    assert_int_equal(gpu->sync(), 0);
    if (n) assert_int_equal(gpu->act_to_f32(x, d->p, n), 0);
    return x;
}

/* ‖got − ref‖/‖ref‖ ≤ tol, no NaN/Inf; frees got; `what` names the case */
static void rel_check(const char *what, float *got, const float *ref, size_t n, double tol) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) fail_msg("%s: element %zu is %g (reference %g)", what, i, got[i], ref[i]);
        num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    print_message("%s rel err %.2e (tol %.0e)\n", what, err, tol);
    if (!(err <= tol)) fail_msg("%s: relative error %.3e above %.0e", what, err, tol);
    free(got);
}

static void expect_rel(const char *what, const struct rcase *k, float *got, const float *ref, size_t n, double tol) {
    char label[128];
    snprintf(label, sizeof label, "%-18s M=%-5d n=%-5d C=%-4d", what, k->M, k->n, k->C);
    rel_check(label, got, ref, n, tol);
}

/* skips the CUDA tests without a GPU, unless one is required */
static void need_gpu(void) {
    if (gpu) return;
    const char *req = getenv("SUSHI_TEST_GPU");
    if (req && !strcmp(req, "1")) fail_msg("SUSHI_TEST_GPU=1 but no usable GPU: %s", no_gpu);
    skip();
}

static void test_cuda_against_cpu(void **st) {
    (void)st;
    need_gpu();
    for (size_t i = 0; i < NCASES; i++) {
        const struct rcase *k = &cases[i];
        int M = k->M, n = k->n, C = k->C;
        size_t mc = (size_t)M * C, nc = (size_t)n * C;
        struct oc_buf bx, bv, bw, bg, by, by1, bd;
        float *x = rnd_act(&bx, mc, 1.0f), *v = rnd_act(&bv, nc, 1.0f), *w = rnd_act(&bw, (size_t)n, 0.5f);
        float *gref = oc_alloc(&bg, nc), *yref = copy_of(&by, x, mc), *y1ref = copy_of(&by1, x, mc);
        float *dref = oc_alloc(&bd, (size_t)n);
        int32_t *grows = rnd_rows(n, M, 0), *srows = rnd_rows(n, M, 1);
        assert_int_equal(cpu->gather_rows(gref, x, grows, n, M, C), 0);
        assert_int_equal(cpu->scatter_add_rows(yref, v, srows, w, n, M, C), 0);
        assert_int_equal(cpu->scatter_add_rows(y1ref, v, srows, NULL, n, M, C), 0);
        assert_int_equal(cpu->rows_dot(dref, x, grows, v, n, M, C), 0);

        struct dbuf dx = dbuf_act(x, mc), dv = dbuf_act(v, nc), dgo = dbuf_act(NULL, nc);
        struct dbuf dy = dbuf_act(x, mc), dy1 = dbuf_act(x, mc);
        struct dbuf dw = dbuf_new(w, (size_t)n * sizeof(float)), ddot = dbuf_new(NULL, (size_t)n * sizeof(float));
        struct dbuf dgr = dbuf_new(grows, (size_t)n * sizeof(int32_t)), dsr = dbuf_new(srows, (size_t)n * sizeof(int32_t));
        assert_int_equal(gpu->gather_rows(dgo.p, dx.p, dgr.p, n, M, C), 0);
        assert_int_equal(gpu->scatter_add_rows(dy.p, dv.p, dsr.p, dw.p, n, M, C), 0);
        assert_int_equal(gpu->scatter_add_rows(dy1.p, dv.p, dsr.p, NULL, n, M, C), 0);
        assert_int_equal(gpu->rows_dot(ddot.p, dx.p, dgr.p, dv.p, n, M, C), 0);
        expect_rel("gather_rows", k, act_host(&dgo, nc), gref, nc, 0.0);
        expect_rel("scatter_add_rows", k, act_host(&dy, mc), yref, mc, 1e-2);
        expect_rel("scatter w=NULL", k, act_host(&dy1, mc), y1ref, mc, 1e-2);
        float *dot = malloc((size_t)n * sizeof(float));
        assert_non_null(dot);
        assert_int_equal(gpu->to_host(dot, ddot.p, (size_t)n * sizeof(float)), 0);
        expect_rel("rows_dot", k, dot, dref, (size_t)n, 1e-3);
        struct dbuf all[] = {dx, dv, dgo, dy, dy1, dw, ddot, dgr, dsr};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) dbuf_free(&all[j]);
        free(grows);
        free(srows);
        assert_int_equal(oc_release_all(), 0);
    }
}

/* n = 0 leaves the output alone; a row outside [0, M) is skipped and reported by sync() */
static void test_cuda_edges(void **st) {
    (void)st;
    need_gpu();
    enum { M = 4, C = 3, N = 2 };
    struct oc_buf bx, bv;
    float *x = rnd_act(&bx, M * C, 1.0f), *v = rnd_act(&bv, N * C, 1.0f), w[N] = {0.5f, -2.0f};
    const int32_t ok[N] = {1, 3}, bad[N] = {1, M};
    struct dbuf dx = dbuf_act(x, M * C), dv = dbuf_act(v, N * C), dout = dbuf_act(x, M * C);
    struct dbuf dw = dbuf_new(w, sizeof w), dok = dbuf_new(ok, sizeof ok), dbad = dbuf_new(bad, sizeof bad);
    assert_int_equal(gpu->gather_rows(dout.p, dv.p, dok.p, 0, M, C), 0);
    assert_int_equal(gpu->scatter_add_rows(dout.p, dv.p, dok.p, dw.p, 0, M, C), 0);
    assert_int_equal(gpu->rows_dot(dw.p, dx.p, dok.p, dv.p, 0, M, C), 0);
    expect_rel("n=0 untouched", &(struct rcase){M, 0, C}, act_host(&dout, M * C), x, M * C, 0.0);

    for (int i = 0; i < 3; i++) {
        int rc = i == 0   ? gpu->gather_rows(dout.p, dx.p, dbad.p, N, M, C)
                 : i == 1 ? gpu->scatter_add_rows(dout.p, dv.p, dbad.p, dw.p, N, M, C)
                          : gpu->rows_dot(dw.p, dx.p, dbad.p, dv.p, N, M, C);
        if (rc == 0) rc = gpu->sync();   /* launched: the skipped row is reported at sync */
        assert_int_equal(rc, SUSHI_EINVAL);
        if (!strstr(sushi_last_error(), "row index"))
            fail_msg("op %d with a bad row: \"%s\" does not say so", i, sushi_last_error());
        assert_int_equal(gpu->sync(), 0);   /* the flag is cleared */
    }
    struct dbuf all[] = {dx, dv, dout, dw, dok, dbad};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) dbuf_free(&all[j]);
    assert_int_equal(oc_release_all(), 0);
}

/* gather_sum_rows (w and w = NULL, K = 1 and 3, entries < 0) onto nonzero outputs */
static void test_cuda_gather_sum(void **st) {
    (void)st;
    need_gpu();
    for (size_t i = 0; i < NCASES; i++)
        for (int K = 1; K <= 3; K += 2) {
            const struct rcase *k = &cases[i];
            int M = k->M, n = k->n, C = k->C;
            size_t mc = (size_t)M * C, nc = (size_t)n * C, nk = (size_t)n * K;
            struct oc_buf bx, bo, bw, br, br1;
            float *x = rnd_act(&bx, mc, 1.0f), *out = rnd_act(&bo, nc, 1.0f), *w = rnd_act(&bw, nk, 0.5f);
            float *ref = copy_of(&br, out, nc), *ref1 = copy_of(&br1, out, nc);
            int32_t *idx = rnd_idx(n, K, M);
            assert_int_equal(cpu->gather_sum_rows(ref, x, idx, w, n, K, M, C), 0);
            assert_int_equal(cpu->gather_sum_rows(ref1, x, idx, NULL, n, K, M, C), 0);
            struct dbuf dx = dbuf_act(x, mc), dout = dbuf_act(out, nc), dout1 = dbuf_act(out, nc);
            struct dbuf dw = dbuf_new(w, nk * sizeof(float)), didx = dbuf_new(idx, nk * sizeof(int32_t));
            assert_int_equal(gpu->gather_sum_rows(dout.p, dx.p, didx.p, dw.p, n, K, M, C), 0);
            assert_int_equal(gpu->gather_sum_rows(dout1.p, dx.p, didx.p, NULL, n, K, M, C), 0);
            char label[128];
            snprintf(label, sizeof label, "gather_sum_rows K=%d M=%-5d n=%-5d C=%-4d", K, M, n, C);
            rel_check(label, act_host(&dout, nc), ref, nc, 1e-2);
            snprintf(label, sizeof label, "gather_sum w=NULL K=%d M=%-5d n=%-5d C=%-4d", K, M, n, C);
            rel_check(label, act_host(&dout1, nc), ref1, nc, 1e-2);
            struct dbuf all[] = {dx, dout, dout1, dw, didx};
            for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) dbuf_free(&all[j]);
            free(idx);
            assert_int_equal(oc_release_all(), 0);
        }
    /* n = 0 leaves the output alone; an index ≥ M is skipped and reported by sync() */
    enum { M = 4, C = 3, N = 2, K = 2 };
    struct oc_buf bx;
    float *x = rnd_act(&bx, M * C, 1.0f);
    const int32_t bad[N * K] = {1, -1, M, 0};
    struct dbuf dx = dbuf_act(x, M * C), dout = dbuf_act(x, M * C), dbad = dbuf_new(bad, sizeof bad);
    assert_int_equal(gpu->gather_sum_rows(dout.p, dx.p, dbad.p, NULL, 0, K, M, C), 0);
    rel_check("gather_sum n=0 untouched", act_host(&dout, M * C), x, M * C, 0.0);
    int rc = gpu->gather_sum_rows(dout.p, dx.p, dbad.p, NULL, N, K, M, C);
    if (rc == 0) rc = gpu->sync();
    assert_int_equal(rc, SUSHI_EINVAL);
    if (!strstr(sushi_last_error(), "row index"))
        fail_msg("gather_sum_rows with a bad index: \"%s\" does not say so", sushi_last_error());
    assert_int_equal(gpu->sync(), 0);
    struct dbuf all[] = {dx, dout, dbad};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) dbuf_free(&all[j]);
    assert_int_equal(oc_release_all(), 0);
}

/* matmul_grouped (one cuBLAS grouped launch) against one CPU matmul per problem */
static void test_cuda_matmul_grouped(void **st) {
    (void)st;
    need_gpu();
    for (int v = 0; v < 8; v++) {
        int ta = v & 1, tb = (v >> 1) & 1;
        float beta = (float)(v >> 2), alpha = beta ? 0.5f : 1.0f;
        struct mg_host h;
        mg_host_make(&h, ta, tb, alpha, beta);
        struct dbuf da[MG_COUNT], db[MG_COUNT], dc[MG_COUNT];
        struct matmul_problem p[MG_COUNT];
        for (int i = 0; i < MG_COUNT; i++) {
            const struct mg_shape *s = &mg_shapes[i];
            da[i] = dbuf_act(h.a[i], (size_t)s->m * s->k);
            db[i] = dbuf_act(h.b[i], (size_t)s->k * s->n);
            dc[i] = dbuf_act(h.c[i], (size_t)s->m * s->n);
            p[i] = (struct matmul_problem){dc[i].p, da[i].p, db[i].p, s->m, s->n, s->k};
        }
        assert_int_equal(gpu->matmul_grouped(p, MG_COUNT, ta, tb, alpha, beta), 0);
        for (int i = 0; i < MG_COUNT; i++) {
            const struct mg_shape *s = &mg_shapes[i];
            char label[128];
            snprintf(label, sizeof label, "matmul_grouped ta=%d tb=%d beta=%g m=%-3d n=%-3d k=%-3d", ta, tb, beta, s->m,
                     s->n, s->k);
            rel_check(label, act_host(&dc[i], (size_t)s->m * s->n), h.ref[i], (size_t)s->m * s->n,
                      s->k ? 1e-2 : 0.0);
            dbuf_free(&da[i]);
            dbuf_free(&db[i]);
            dbuf_free(&dc[i]);
        }
        assert_int_equal(oc_release_all(), 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_gather),
        cmocka_unit_test(test_cpu_scatter_add),
        cmocka_unit_test(test_cpu_rows_dot),
        cmocka_unit_test(test_cpu_edges),
        cmocka_unit_test(test_cpu_gather_sum),
        cmocka_unit_test(test_cpu_gather_sum_edges),
        cmocka_unit_test(test_cpu_matmul_grouped),
        cmocka_unit_test(test_cuda_against_cpu),
        cmocka_unit_test(test_cuda_edges),
        cmocka_unit_test(test_cuda_gather_sum),
        cmocka_unit_test(test_cuda_matmul_grouped),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
