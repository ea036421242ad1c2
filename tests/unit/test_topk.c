// libs: kernels cuda core
/* The teacher's top-K op (ops.h `topk`, SPEC §1). The CPU op against a naive reference
 * (sort every id by (logit desc, id asc), log-sum-exp in double): heavy ties (the lower
 * id first, −0 equal to +0), K = V (tail −inf), temperatures ≠ 1, padded rows (Vp > V,
 * the padding holding huge values that must be ignored); ids identical, logprobs and
 * tail within 1e-5; bad arguments refused. When a GPU is usable (ops_cuda()), the CUDA
 * op against the CPU op on the same logits rounded to the GPU's activation dtype, at
 * vocabularies up to 160K and K up to 256: ids identical, logprobs and tail within
 * 1e-4; K above the kernel's 256 and bad arguments refused. Without a GPU that part is
 * skipped. SUSHI_TEST_SEED fixes the otherwise time-based seed (printed). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/dtype.h"
#include "common/core/log.h"
#include "kernels/ops.h"

static uint64_t rng_state;

static uint32_t rnd_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rnd_unit(void) { return (float)rnd_u32() / 4294967296.0f * 2.0f - 1.0f; }

/* kinds of rows */
enum row_kind { ROW_RANDOM, ROW_TIES, ROW_EQUAL };

/* N rows of Vp logits: V real ones of the kind, scaled, and padding 1e30 */
static float *make_logits(int N, int V, int Vp, enum row_kind kind, float scale) {
    float *z = malloc((size_t)N * Vp * sizeof(float));
    assert_non_null(z);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < Vp; i++) {
            float v = 1e30f;
            if (i < V && kind == ROW_RANDOM) v = scale * rnd_unit();
            if (i < V && kind == ROW_TIES) { /* 7 levels, zeros of both signs among them */
                int q = (int)(rnd_u32() % 7) - 3;
                v = q == 0 ? ((rnd_u32() & 1) ? -0.0f : 0.0f) : scale * 0.5f * (float)q;
            }
            if (i < V && kind == ROW_EQUAL) v = 0.25f;
            z[(size_t)n * Vp + i] = v;
        }
    return z;
}

/* rounds to the activation dtype dt (f32: unchanged) */
static void round_to(float *z, size_t n, enum dtype dt) {
    for (size_t i = 0; i < n; i++) {
        if (dt == DT_BF16) z[i] = bf16_to_f32(f32_to_bf16(z[i]));
        else if (dt == DT_F16 && fabsf(z[i]) < 60000.0f) z[i] = f16_to_f32(f32_to_f16(z[i]));
        else if (dt == DT_F16) z[i] = z[i] > 0 ? 60000.0f : -60000.0f;
    }
}

/* ---- the naive reference ---- */

static const float *cmp_z;
static int cmp_ids(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (cmp_z[x] != cmp_z[y]) return cmp_z[x] > cmp_z[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static void naive_row(const float *z, int V, int K, float T, int32_t *ids, float *lp, float *tail) {
    int32_t *all = malloc((size_t)V * sizeof(int32_t));
    assert_non_null(all);
    for (int i = 0; i < V; i++) all[i] = i;
    cmp_z = z;
    qsort(all, (size_t)V, sizeof *all, cmp_ids);
    double mx = z[all[0]] / (double)T, s_all = 0, s_tail = 0;
    for (int j = 0; j < V; j++) {
        double e = exp(z[all[j]] / (double)T - mx);
        s_all += e;
        if (j >= K) s_tail += e;
    }
    double lse = mx + log(s_all);
    for (int j = 0; j < K; j++) {
        ids[j] = all[j];
        lp[j] = (float)(z[all[j]] / (double)T - lse);
    }
    *tail = K == V ? -INFINITY : (float)(mx + log(s_tail) - lse);
    free(all);
}

/* ids identical, logprobs and tails within tol (tails: both −inf, or close) */
static void expect_same(const int32_t *ids_a, const float *lp_a, const float *tail_a, const int32_t *ids_b,
                        const float *lp_b, const float *tail_b, int N, int K, double tol, const char *what) {
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < K; j++) {
            size_t i = (size_t)n * K + j;
            if (ids_a[i] != ids_b[i] || !(fabs((double)lp_a[i] - lp_b[i]) <= tol))
                fail_msg("%s: row %d, rank %d: id %d vs %d, logprob %.7g vs %.7g", what, n, j, ids_a[i], ids_b[i],
                         (double)lp_a[i], (double)lp_b[i]);
        }
        int both_inf = isinf(tail_a[n]) && isinf(tail_b[n]) && tail_a[n] < 0 && tail_b[n] < 0;
        if (!both_inf && !(fabs((double)tail_a[n] - tail_b[n]) <= tol))
            fail_msg("%s: row %d: tail %.7g vs %.7g", what, n, (double)tail_a[n], (double)tail_b[n]);
    }
}

struct outs {
    int32_t *ids;
    float *lp, *tail;
};
static struct outs outs_new(int N, int K) {
    struct outs o = {malloc((size_t)N * K * sizeof(int32_t) + 4), malloc((size_t)N * K * sizeof(float) + 4),
                     malloc((size_t)N * sizeof(float) + 4)};
    assert_true(o.ids && o.lp && o.tail);
    return o;
}
static void outs_free(struct outs *o) {
    free(o->ids);
    free(o->lp);
    free(o->tail);
}

/* ---- CPU against the naive reference ---- */

static void cpu_case(int N, int V, int Vp, int K, float T, enum row_kind kind, float scale) {
    char what[128];
    snprintf(what, sizeof what, "cpu N %d V %d Vp %d K %d T %g kind %d", N, V, Vp, K, (double)T, (int)kind);
    float *z = make_logits(N, V, Vp, kind, scale);
    struct outs got = outs_new(N, K), want = outs_new(N, K);
    assert_int_equal(ops_cpu()->topk(got.ids, got.lp, got.tail, z, N, V, Vp, K, T), 0);
    for (int n = 0; n < N; n++)
        naive_row(z + (size_t)n * Vp, V, K, T, want.ids + (size_t)n * K, want.lp + (size_t)n * K, want.tail + n);
    expect_same(got.ids, got.lp, got.tail, want.ids, want.lp, want.tail, N, K, 1e-5, what);
    outs_free(&got);
    outs_free(&want);
    free(z);
}

static void test_cpu_against_sort(void **state) {
    (void)state;
    cpu_case(6, 97, 97, 8, 1.0f, ROW_RANDOM, 4.0f);
    cpu_case(3, 500, 512, 64, 0.7f, ROW_RANDOM, 6.0f);  /* padding columns hold 1e30 */
    cpu_case(4, 300, 300, 40, 2.5f, ROW_TIES, 3.0f);    /* ties: the lower id first */
    cpu_case(2, 64, 70, 64, 1.3f, ROW_RANDOM, 2.0f);    /* K = V: tail −inf */
    cpu_case(2, 33, 33, 5, 1.0f, ROW_EQUAL, 1.0f);      /* all equal: ids 0..K-1 */
    cpu_case(1, 1, 1, 1, 1.0f, ROW_RANDOM, 1.0f);
}

static void test_cpu_known_row(void **state) {
    (void)state;
    /* z = (1, 3, 3, −0, 0, 2): top-4 = 1, 2, 5, 0; the zeros tie, so 3 comes before 4 in a top-5 */
    const float z[6] = {1, 3, 3, -0.0f, 0.0f, 2};
    int32_t ids[5];
    float lp[5], tail;
    assert_int_equal(ops_cpu()->topk(ids, lp, &tail, z, 1, 6, 6, 5, 1.0f), 0);
    const int32_t want[5] = {1, 2, 5, 0, 3};
    double lse = log(exp(1) + 2 * exp(3) + 2 * exp(0) + exp(2));
    for (int j = 0; j < 5; j++) {
        assert_int_equal(ids[j], want[j]);
        assert_true(fabs(lp[j] - (z[want[j]] - lse)) < 1e-6);
    }
    assert_true(fabs(tail - (0.0 - lse)) < 1e-6);
}

static void test_cpu_refusals(void **state) {
    (void)state;
    const struct ops *o = ops_cpu();
    float z[8] = {0}, lp[8], tail[1];
    int32_t ids[8];
    assert_int_equal(o->topk(ids, lp, tail, z, 1, 8, 8, 0, 1.0f), SUSHI_EINVAL);
    assert_int_equal(o->topk(ids, lp, tail, z, 1, 8, 8, 9, 1.0f), SUSHI_EINVAL);
    assert_int_equal(o->topk(ids, lp, tail, z, 1, 8, 7, 4, 1.0f), SUSHI_EINVAL);
    assert_int_equal(o->topk(ids, lp, tail, z, 1, 8, 8, 4, 0.0f), SUSHI_EINVAL);
    assert_int_equal(o->topk(ids, lp, tail, z, 1, 8, 8, 4, NAN), SUSHI_EINVAL);
    assert_int_equal(o->topk(ids, lp, tail, z, -1, 8, 8, 4, 1.0f), SUSHI_EINVAL);
    assert_int_equal(o->topk(NULL, lp, tail, z, 1, 8, 8, 4, 1.0f), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "topk"));
}

/* ---- CUDA against the CPU ---- */

static void gpu_case(const struct ops *g, int N, int V, int Vp, int K, float T, enum row_kind kind, float scale) {
    char what[128];
    snprintf(what, sizeof what, "cuda N %d V %d Vp %d K %d T %g kind %d", N, V, Vp, K, (double)T, (int)kind);
    size_t nz = (size_t)N * Vp;
    float *z = make_logits(N, V, Vp, kind, scale);
    round_to(z, nz, g->act_dtype);
    struct outs got = outs_new(N, K), want = outs_new(N, K);
    assert_int_equal(ops_cpu()->topk(want.ids, want.lp, want.tail, z, N, V, Vp, K, T), 0);
    void *dz = g->alloc(nz * dtype_size(g->act_dtype));
    int32_t *dids = g->alloc((size_t)N * K * sizeof(int32_t));
    float *dlp = g->alloc((size_t)N * K * sizeof(float)), *dtail = g->alloc((size_t)N * sizeof(float));
    assert_true(dz && dids && dlp && dtail);
    assert_int_equal(g->f32_to_act(dz, z, nz), 0);
    int rc = g->topk(dids, dlp, dtail, dz, N, V, Vp, K, T);
    if (!rc) rc = g->sync();
    if (rc) fail_msg("%s: %s", what, sushi_last_error());
    assert_int_equal(g->to_host(got.ids, dids, (size_t)N * K * sizeof(int32_t)), 0);
    assert_int_equal(g->to_host(got.lp, dlp, (size_t)N * K * sizeof(float)), 0);
    assert_int_equal(g->to_host(got.tail, dtail, (size_t)N * sizeof(float)), 0);
    expect_same(got.ids, got.lp, got.tail, want.ids, want.lp, want.tail, N, K, 1e-4, what);
    g->free(dz);
    g->free(dids);
    g->free(dlp);
    g->free(dtail);
    outs_free(&got);
    outs_free(&want);
    free(z);
}

static void test_cuda_against_cpu(void **state) {
    (void)state;
    const struct ops *g = ops_cuda();
    if (!g) {
        printf("no GPU: %s\n", sushi_last_error());
        skip();
    }
    gpu_case(g, 5, 1000, 1003, 64, 1.0f, ROW_RANDOM, 8.0f);
    gpu_case(g, 3, 50, 50, 50, 0.7f, ROW_RANDOM, 4.0f);        /* K = V */
    gpu_case(g, 4, 5000, 5000, 64, 1.3f, ROW_TIES, 3.0f);      /* ties across chunks */
    gpu_case(g, 2, 3000, 3008, 200, 1.0f, ROW_EQUAL, 1.0f);    /* every logit equal */
    gpu_case(g, 64, 32000, 32000, 64, 1.0f, ROW_RANDOM, 12.0f);
    gpu_case(g, 3, 160000, 160128, 256, 2.0f, ROW_RANDOM, 10.0f);
    gpu_case(g, 7, 129280, 129280, 1, 1.0f, ROW_TIES, 5.0f);
    gpu_case(g, 2, 1, 1, 1, 1.0f, ROW_RANDOM, 1.0f);
}

static void test_cuda_refusals(void **state) {
    (void)state;
    const struct ops *g = ops_cuda();
    if (!g) skip();
    void *dz = g->alloc(1024 * dtype_size(g->act_dtype));
    int32_t *dids = g->alloc(1024 * sizeof(int32_t));
    float *dlp = g->alloc(1024 * sizeof(float)), *dtail = g->alloc(16);
    assert_true(dz && dids && dlp && dtail);
    assert_int_equal(g->topk(dids, dlp, dtail, dz, 1, 1000, 1000, 257, 1.0f), SUSHI_EUNSUPPORTED);
    assert_int_equal(g->topk(dids, dlp, dtail, dz, 1, 100, 100, 0, 1.0f), SUSHI_EINVAL);
    assert_int_equal(g->topk(dids, dlp, dtail, dz, 1, 100, 99, 4, 1.0f), SUSHI_EINVAL);
    assert_int_equal(g->topk(dids, dlp, dtail, dz, 1, 100, 100, 4, -1.0f), SUSHI_EINVAL);
    assert_int_equal(g->topk(NULL, dlp, dtail, dz, 1, 100, 100, 4, 1.0f), SUSHI_EINVAL);
    assert_int_equal(g->topk(dids, dlp, dtail, dz, 0, 100, 100, 4, 1.0f), 0); /* no rows: nothing to do */
    assert_int_equal(g->sync(), 0);
    g->free(dz);
    g->free(dids);
    g->free(dlp);
    g->free(dtail);
}

int main(void) {
    const char *s = getenv("SUSHI_TEST_SEED");
    rng_state = s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    if (!rng_state) rng_state = 1;
    printf("seed %llu\n", (unsigned long long)rng_state);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_known_row),     cmocka_unit_test(test_cpu_against_sort),
        cmocka_unit_test(test_cpu_refusals),      cmocka_unit_test(test_cuda_against_cpu),
        cmocka_unit_test(test_cuda_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
