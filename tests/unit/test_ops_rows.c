// libs: cuda kernels core
/* The row-permutation ops of mixture-of-experts routing (kernels/ops.h: gather_rows,
 * scatter_add_rows, rows_dot). CPU backend against naive loops over guarded host
 * buffers: gather exact, scatter-add and row dots within 1e-6 relative; w = NULL, n = 0
 * (nothing written), a row outside [0, M) refused with an error naming the op and
 * nothing written. CUDA backend, when a GPU is usable (skipped otherwise), against the
 * CPU results on bf16-representable inputs between device guard bytes: gather exact,
 * scatter-add (bf16 output) within 1e-2 and row dots (f32) within 1e-3 relative, and
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
    for (size_t i = 0; i < n; i++) p[i] = bf16_to_f32(f32_to_bf16(p[i]));
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

/* ‖got − ref‖/‖ref‖ ≤ tol, no NaN/Inf; frees got */
static void expect_rel(const char *what, const struct rcase *k, float *got, const float *ref, size_t n, double tol) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) fail_msg("%s: element %zu is %g (reference %g)", what, i, got[i], ref[i]);
        num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    print_message("%-18s M=%-5d n=%-5d C=%-4d rel err %.2e (tol %.0e)\n", what, k->M, k->n, k->C, err, tol);
    if (!(err <= tol)) fail_msg("%s M=%d n=%d C=%d: relative error %.3e above %.0e", what, k->M, k->n, k->C, err, tol);
    free(got);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_gather),
        cmocka_unit_test(test_cpu_scatter_add),
        cmocka_unit_test(test_cpu_rows_dot),
        cmocka_unit_test(test_cpu_edges),
        cmocka_unit_test(test_cuda_against_cpu),
        cmocka_unit_test(test_cuda_edges),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
