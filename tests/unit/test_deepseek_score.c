// libs: deepseek kernels cuda core
/* Batched teacher scoring (ds_score_batch) against the per-sequence path (ds_cache_reset
 * + ds_forward + ds_topk for each document segment / row cut at its length) on random
 * V3- and V2-flavour checkpoints written by the PyTorch oracle (tests/oracle/
 * deepseek_ref.py, run by $SUSHI_PYTHON or /usr/bin/python3): on the CPU backend ids
 * identical, logprobs and tails within 1e-5, padding positions −1 / 0 / 0, with lengths
 * and doc_ids, K = V, a temperature ≠ 1, the LM head and top-K in several chunks, and
 * the scorer's buffers reused across batches of other shapes; the tick callback runs
 * and stops scoring when it returns nonzero; a K the backend's top-K refuses as
 * unsupported is computed on the host; bad arguments are refused by name. When a
 * GPU is usable, the CUDA backend's batched scores of the same checkpoint agree with the
 * CPU's within bf16 precision (top-1 log-probabilities and tails within 0.1, the same
 * top-1 id at ≥ 80% of positions). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/deepseek/deepseek.h"

#define MAX_SEQ 24

/* the python that runs the oracle: $SUSHI_PYTHON (e.g. on a GPU machine whose
 * /usr/bin/python3 has no torch), else Debian's */
static const char *python(void) {
    const char *p = getenv("SUSHI_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

static int have_torch(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s -c 'import torch' >/dev/null 2>&1", python());
    return system(cmd) == 0;
}

static char *ds_fixture(const char *flavour, int seed) {
    const char *root = getenv("SUSHI_REPO_ROOT");
    char *dir = strdup("/tmp/sushi-dsscore-XXXXXX"), cmd[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "%s %s/tests/oracle/deepseek_ref.py write %s %s %d", python(),
             root && *root ? root : ".", dir, flavour, seed);
    assert_int_equal(system(cmd), 0);
    return dir;
}

struct batch {
    int B, T;
    int32_t *tokens, *doc_ids, *lengths;
};

/* B rows of T random ids; lengths (or NULL) and doc_ids (or NULL) as given, and ids
 * out of the vocabulary at padding positions (they must not be looked at) */
static struct batch batch_new(int B, int T, int V, const int *lengths, const int *seg_every, unsigned seed) {
    struct batch b = {B, T, malloc((size_t)B * T * 4), seg_every ? malloc((size_t)B * T * 4) : NULL,
                      lengths ? malloc((size_t)B * 4) : NULL};
    assert_non_null(b.tokens);
    for (int r = 0; r < B; r++) {
        if (lengths) b.lengths[r] = lengths[r];
        for (int t = 0; t < T; t++) {
            seed = seed * 1103515245u + 12345u;
            size_t i = (size_t)r * T + t;
            b.tokens[i] = lengths && t >= lengths[r] ? V + 7 : (int32_t)((seed >> 8) % (unsigned)V);
            if (seg_every) b.doc_ids[i] = 100 * r + (seg_every[r] ? t / seg_every[r] : 0);
        }
    }
    return b;
}

static void batch_free(struct batch *b) {
    free(b->tokens);
    free(b->doc_ids);
    free(b->lengths);
}

/* the per-sequence path into ids/lp/tail [B,T,K], padding −1 / 0 / 0 */
static void score_per_sequence(struct ds_model *m, const struct batch *b, int K, float temp, int32_t *ids, float *lp,
                               float *tail) {
    int V = m->cfg.vocab;
    struct ds_cache k;
    assert_int_equal(ds_cache_init(&k, m), 0);
    float *z = malloc((size_t)b->T * V * sizeof(float));
    assert_non_null(z);
    for (int r = 0; r < b->B; r++) {
        int len = b->lengths ? b->lengths[r] : b->T;
        size_t row = (size_t)r * b->T;
        for (int t = 0; t < len;) {
            int e = t + 1;
            while (e < len && b->doc_ids && b->doc_ids[row + e] == b->doc_ids[row + t]) e++;
            if (!b->doc_ids) e = len;
            ds_cache_reset(&k);
            assert_int_equal(ds_forward(m, &k, b->tokens + row + t, e - t, z), 0);
            for (int p = t; p < e; p++)
                assert_int_equal(ds_topk(z + (size_t)(p - t) * V, V, K, temp, ids + (row + p) * K, lp + (row + p) * K,
                                         tail + row + p), 0);
            t = e;
        }
        for (int t = len; t < b->T; t++) {
            for (int j = 0; j < K; j++) {
                ids[(row + t) * K + j] = -1;
                lp[(row + t) * K + j] = 0.0f;
            }
            tail[row + t] = 0.0f;
        }
    }
    free(z);
    ds_cache_free(&k, m);
}

static int ticks;
static int count_tick(void *ctx) {
    (void)ctx;
    ticks++;
    return 0;
}

/* ds_score_batch on s against the per-sequence path on m */
static void check_batch(struct ds_scorer *s, struct ds_model *m, const struct batch *b, int K, float temp) {
    size_t nk = (size_t)b->B * b->T * K, n = (size_t)b->B * b->T;
    int32_t *ids = malloc(nk * 4), *want_ids = malloc(nk * 4);
    float *lp = malloc(nk * 4), *want_lp = malloc(nk * 4), *tail = malloc(n * 4), *want_tail = malloc(n * 4);
    assert_true(ids && want_ids && lp && want_lp && tail && want_tail);
    for (size_t i = 0; i < nk; i++) ids[i] = -7, lp[i] = 7.0f;  /* every entry must be written */
    for (size_t i = 0; i < n; i++) tail[i] = 7.0f;
    score_per_sequence(m, b, K, temp, want_ids, want_lp, want_tail);
    ticks = 0;
    s->tick = count_tick;
    int rc = ds_score_batch(s, b->tokens, b->lengths, b->doc_ids, b->B, b->T, K, temp, ids, lp, tail);
    s->tick = NULL;
    if (rc) fail_msg("ds_score_batch: %s", sushi_last_error());
    assert_true(ticks >= m->cfg.L);
    double worst = 0;
    for (size_t i = 0; i < nk; i++) {
        if (ids[i] != want_ids[i]) fail_msg("position %zu rank %zu: id %d, per sequence %d", i / K, i % K, ids[i], want_ids[i]);
        double d = fabs((double)lp[i] - want_lp[i]);
        worst = d > worst ? d : worst;
    }
    for (size_t i = 0; i < n; i++) {
        if (isinf(want_tail[i])) {
            assert_true(isinf(tail[i]) && tail[i] < 0);
            continue;
        }
        double d = fabs((double)tail[i] - want_tail[i]);
        worst = d > worst ? d : worst;
    }
    print_message("B %d T %d K %d temp %g: worst |diff| %.3g, %d ticks\n", b->B, b->T, K, (double)temp, worst, ticks);
    assert_true(worst <= 1e-5);
    free(ids), free(want_ids), free(lp), free(want_lp), free(tail), free(want_tail);
}

static void check_flavour(const char *flavour, int seed) {
    if (!have_torch()) skip();
    char *dir = ds_fixture(flavour, seed);
    struct ds_model m;
    assert_int_equal(ds_load(&m, dir, ops_cpu(), MAX_SEQ), 0);
    int V = m.cfg.vocab;
    struct ds_scorer s;
    assert_int_equal(ds_scorer_init(&s, &m), 0);
    /* lengths (one empty row, one full) and document segments */
    const int len3[3] = {13, 0, 16}, seg3[3] = {5, 0, 3};
    struct batch b = batch_new(3, 16, V, len3, seg3, 1u + seed);
    check_batch(&s, &m, &b, 8, 1.3f);
    batch_free(&b);
    /* a larger batch (the buffers grow), no lengths, doc_ids; K = V */
    const int seg4[4] = {7, 24, 1, 11};
    b = batch_new(4, 24, V, NULL, seg4, 2u + seed);
    check_batch(&s, &m, &b, V, 1.0f);
    batch_free(&b);
    /* a smaller one again in the same buffers: whole rows, the head in chunks of 5 rows */
    s.chunk = 5;
    b = batch_new(2, 9, V, NULL, NULL, 3u + seed);
    check_batch(&s, &m, &b, 4, 0.8f);
    batch_free(&b);
    ds_scorer_free(&s);
    ds_free(&m);
    fs_remove_tree(dir);
    free(dir);
}

static void test_v3_batch_equals_sequences(void **state) {
    (void)state;
    check_flavour("v3", 31);
}

static void test_v2_batch_equals_sequences(void **state) {
    (void)state;
    check_flavour("v2", 32);
}

/* the CPU table with a top-K that keeps K ≤ 4 only, as the CUDA one keeps K ≤ 256 */
static struct ops limited;
static int limited_topk(int32_t *ids, float *lp, float *tail, const void *z, int N, int V, int Vp, int K, float T) {
    if (K > 4) return sushi_error(SUSHI_EUNSUPPORTED, "limited topk: K %d above 4", K);
    return ops_cpu()->topk(ids, lp, tail, z, N, V, Vp, K, T);
}

static void test_topk_fallback(void **state) {
    (void)state;
    if (!have_torch()) skip();
    limited = *ops_cpu();
    limited.topk = limited_topk;
    char *dir = ds_fixture("v2", 35);
    struct ds_model m;
    assert_int_equal(ds_load(&m, dir, &limited, MAX_SEQ), 0);
    struct ds_scorer s;
    assert_int_equal(ds_scorer_init(&s, &m), 0);
    const int len3[3] = {16, 7, 12}, seg3[3] = {4, 0, 5};
    struct batch b = batch_new(3, 16, m.cfg.vocab, len3, seg3, 41);
    check_batch(&s, &m, &b, 3, 1.0f);     /* the backend's op */
    s.chunk = 6;
    check_batch(&s, &m, &b, 10, 1.5f);    /* the host's, chunk by chunk */
    batch_free(&b);
    ds_scorer_free(&s);
    ds_free(&m);
    fs_remove_tree(dir);
    free(dir);
}

static int stop_tick(void *ctx) {
    return ++*(int *)ctx >= 3 ? 1 : 0;
}

static void expect_refused(struct ds_scorer *s, const struct batch *b, int K, float temp, const char *needle) {
    size_t n = (size_t)b->B * b->T;
    int32_t *ids = malloc(n * (K > 0 ? K : 1) * 4);
    float *lp = malloc(n * (K > 0 ? K : 1) * 4), *tail = malloc(n * 4);
    int rc = ds_score_batch(s, b->tokens, b->lengths, b->doc_ids, b->B, b->T, K, temp, ids, lp, tail);
    print_message("refused: %s\n", sushi_last_error());
    assert_int_equal(rc, SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), needle));
    free(ids), free(lp), free(tail);
}

static void test_refusals_and_stop(void **state) {
    (void)state;
    if (!have_torch()) skip();
    char *dir = ds_fixture("v3", 33);
    struct ds_model m;
    assert_int_equal(ds_load(&m, dir, ops_cpu(), MAX_SEQ), 0);
    int V = m.cfg.vocab;
    struct ds_scorer s;
    assert_int_equal(ds_scorer_init(&s, &m), 0);
    const int len2[2] = {5, 8};
    struct batch b = batch_new(2, 8, V, len2, NULL, 9);
    expect_refused(&s, &b, 0, 1.0f, "top-K 0");
    expect_refused(&s, &b, V + 1, 1.0f, "top-K");
    expect_refused(&s, &b, 4, 0.0f, "temperature");
    expect_refused(&s, &b, 4, NAN, "temperature");
    b.lengths[1] = 9;
    expect_refused(&s, &b, 4, 1.0f, "lengths[1] = 9");
    b.lengths[1] = 8;
    b.tokens[8 + 3] = -2;
    expect_refused(&s, &b, 4, 1.0f, "token id -2 at row 1, position 3");
    b.tokens[8 + 3] = 1;
    int32_t ids[64], t32[64] = {0};
    float lp[64], tail[16];
    assert_int_equal(ds_score_batch(&s, t32, NULL, NULL, 1, MAX_SEQ + 1, 1, 1.0f, ids, lp, tail), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "exceeds the maximum"));
    assert_int_equal(ds_score_batch(&s, NULL, NULL, NULL, 1, 4, 1, 1.0f, ids, lp, tail), SUSHI_EINVAL);
    assert_int_equal(ds_score_batch(&s, t32, NULL, NULL, 0, 4, 1, 1.0f, ids, lp, tail), SUSHI_EINVAL);
    /* a tick that asks to stop: its value comes back */
    int calls = 0;
    s.tick = stop_tick;
    s.tick_ctx = &calls;
    assert_int_equal(ds_score_batch(&s, b.tokens, b.lengths, NULL, 2, 8, 4, 1.0f, ids, lp, tail), 1);
    assert_int_equal(calls, 3);
    s.tick = NULL;
    /* after a refusal or a stop the scorer still works */
    assert_int_equal(ds_score_batch(&s, b.tokens, b.lengths, NULL, 2, 8, 4, 1.0f, ids, lp, tail), 0);
    assert_int_equal(ids[5 * 4], -1);   /* row 0 ends at 5 */
    assert_true(ids[0] >= 0 && ids[0] < V);
    batch_free(&b);
    ds_scorer_free(&s);
    ds_free(&m);
    fs_remove_tree(dir);
    free(dir);
}

/* the CUDA backend against the CPU on one checkpoint (bf16 activations) */
static void test_cuda_matches_cpu(void **state) {
    (void)state;
    const struct ops *g = ops_cuda();
    if (!g || !have_torch()) skip();
    char *dir = ds_fixture("v3", 34);
    struct ds_model mc, mg;
    assert_int_equal(ds_load(&mc, dir, ops_cpu(), MAX_SEQ), 0);
    if (ds_load(&mg, dir, g, MAX_SEQ)) fail_msg("cuda load: %s", sushi_last_error());
    int V = mc.cfg.vocab, K = 8;
    const int len3[3] = {20, 3, 24}, seg3[3] = {6, 0, 24};
    struct batch b = batch_new(3, MAX_SEQ, V, len3, seg3, 77);
    size_t n = (size_t)b.B * b.T, nk = n * K;
    int32_t *ic = malloc(nk * 4), *ig = malloc(nk * 4);
    float *lc = malloc(nk * 4), *lg = malloc(nk * 4), *tc = malloc(n * 4), *tg = malloc(n * 4);
    assert_true(ic && ig && lc && lg && tc && tg);
    struct ds_scorer sc, sg;
    assert_int_equal(ds_scorer_init(&sc, &mc), 0);
    assert_int_equal(ds_scorer_init(&sg, &mg), 0);
    assert_int_equal(ds_score_batch(&sc, b.tokens, b.lengths, b.doc_ids, b.B, b.T, K, 1.0f, ic, lc, tc), 0);
    if (ds_score_batch(&sg, b.tokens, b.lengths, b.doc_ids, b.B, b.T, K, 1.0f, ig, lg, tg))
        fail_msg("cuda score: %s", sushi_last_error());
    double worst = 0, sum = 0;
    int same_top1 = 0, real = 0;
    for (int r = 0; r < b.B; r++)
        for (int t = 0; t < b.T; t++) {
            size_t p = (size_t)r * b.T + t;
            if (t >= len3[r]) {
                assert_int_equal(ig[p * K], -1);
                continue;
            }
            real++;
            same_top1 += ig[p * K] == ic[p * K];
            double d = fabs((double)lg[p * K] - lc[p * K]);
            worst = d > worst ? d : worst;
            sum += d;
            d = fabs((double)tg[p] - tc[p]);
            worst = d > worst ? d : worst;
        }
    /* the fixture's weights are large (routing and attention matter), so its logits are
     * large too: bf16 activations (8 bits of mantissa) move log-probabilities by tenths
     * where f16 (11 bits) moves them by hundredths; a wrong kernel moves them by units */
    int bf = g->act_dtype == DT_BF16;
    print_message("cuda (%s) vs cpu: top-1 equal at %d of %d positions, |diff| worst %.3g, mean %.3g\n",
                  bf ? "bf16" : "f16", same_top1, real, worst, sum / real);
    assert_true(worst <= (bf ? 0.75 : 0.2));
    assert_true(sum / real <= (bf ? 0.1 : 0.02));
    assert_true(same_top1 * 10 >= real * 8);
    free(ic), free(ig), free(lc), free(lg), free(tc), free(tg);
    batch_free(&b);
    ds_scorer_free(&sc);
    ds_scorer_free(&sg);
    ds_free(&mc);
    ds_free(&mg);
    fs_remove_tree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v3_batch_equals_sequences),
        cmocka_unit_test(test_v2_batch_equals_sequences),
        cmocka_unit_test(test_refusals_and_stop),
        cmocka_unit_test(test_topk_fallback),
        cmocka_unit_test(test_cuda_matches_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
