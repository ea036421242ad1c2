// libs: cuda kernels core
/* ops->softmax_causal (kernels/ops.h): rows in groups of `group`, the R/group queries the
 * last positions of the S keys, row r sees columns c ≤ S − R/group + r/group.
 * CPU backend against a naive double-precision reference over several (R, S, group),
 * scores up to ±100 (the max must be subtracted), p separate from s and aliasing it, p
 * poisoned with NaN first (masked columns must be written as 0): max |p − ref| ≤ 1e-6.
 * Bad shapes and NULL pointers are refused with SUSHI_EINVAL and nothing written. The
 * same cases on ops_cuda() against the CPU on bf16-representable inputs, within 1e-2
 * relative (‖gpu − cpu‖/‖cpu‖, outputs rounded to bf16 once) with the masked columns
 * exactly 0; skipped without a usable GPU. SUSHI_TEST_SEED fixes the otherwise
 * time-based seed (printed). */
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

#include "common/core/log.h"
#include "kernels/ops.h"

static uint64_t rng_state;

static float rnd_unit(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)(uint32_t)(rng_state >> 16) / 4294967296.0f * 2.0f - 1.0f;
}

struct sm_case {
    int R, S, group;
    float amp, scale;   /* scores in [−amp, amp], softmax of scale·s */
};

static const struct sm_case cases[] = {
    {1, 1, 1, 3.0f, 1.0f},       {3, 7, 1, 3.0f, 0.5f},     {8, 8, 2, 4.0f, 1.0f},
    {12, 5, 4, 2.0f, 0.35f},     {6, 3, 2, 5.0f, 1.0f},     {64, 300, 16, 8.0f, 0.125f},
    {5, 40, 5, 100.0f, 1.0f},    {384, 1000, 128, 6.0f, 0.1f}, {1, 4097, 1, 10.0f, 1.0f},
    {24, 3, 8, 1.0f, 2.0f},
};

/* n scores in [−amp, amp], rounded to bf16 so every backend sees the same numbers */
static float *rnd_scores(size_t n, float amp) {
    float *x = malloc(n * sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(amp * rnd_unit()));
    return x;
}

/* columns row r sees */
static int visible(const struct sm_case *c, int r) { return c->S - c->R / c->group + r / c->group + 1; }

static int masked(const struct sm_case *c, size_t i) { return (int)(i % (size_t)c->S) >= visible(c, (int)(i / c->S)); }

static void reference(double *p, const float *s, const struct sm_case *c) {
    for (int r = 0; r < c->R; r++) {
        int vis = visible(c, r);
        const float *sr = s + (size_t)r * c->S;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < vis; j++) mx = fmax(mx, (double)c->scale * sr[j]);
        for (int j = 0; j < vis; j++) sum += exp((double)c->scale * sr[j] - mx);
        for (int j = 0; j < c->S; j++)
            p[(size_t)r * c->S + j] = j < vis ? exp((double)c->scale * sr[j] - mx) / sum : 0.0;
    }
}

static void poison(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = NAN;
}

static void test_cpu_against_reference(void **st) {
    (void)st;
    const struct ops *cpu = ops_cpu();
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const struct sm_case *c = &cases[k];
        size_t n = (size_t)c->R * c->S;
        float *s = rnd_scores(n, c->amp), *p = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float));
        double *ref = malloc(n * sizeof(double));
        assert_non_null(p);
        assert_non_null(a);
        assert_non_null(ref);
        reference(ref, s, c);
        poison(p, n);
        assert_int_equal(cpu->softmax_causal(p, s, c->R, c->S, c->group, c->scale), 0);
        memcpy(a, s, n * sizeof(float));
        assert_int_equal(cpu->softmax_causal(a, a, c->R, c->S, c->group, c->scale), 0);   /* p aliasing s */
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(p[i])) fail_msg("R=%d S=%d group=%d: element %zu is %g", c->R, c->S, c->group, i, p[i]);
            if (masked(c, i) && p[i] != 0.0f) fail_msg("element %zu is masked but %g", i, p[i]);
            worst = fmax(worst, fabs(p[i] - ref[i]));
            if (a[i] != p[i]) fail_msg("aliased output %zu: %g, separate %g", i, a[i], p[i]);
        }
        print_message("cpu softmax_causal R=%-4d S=%-5d group=%-4d max abs err %.2e\n", c->R, c->S, c->group, worst);
        assert_true(worst <= 1e-6);
        free(s);
        free(p);
        free(a);
        free(ref);
    }
}

/* every refusal is SUSHI_EINVAL and leaves p as it was */
static void expect_refused(const struct ops *ops, void *p, const void *s, int R, int S, int group) {
    int rc = ops->softmax_causal(p, s, R, S, group, 1.0f);
    print_message("%s softmax_causal R=%d S=%d group=%d%s: %s\n", ops->name, R, S, group,
                  p && s ? "" : " (NULL)", rc ? sushi_last_error() : "accepted");
    assert_int_equal(rc, SUSHI_EINVAL);
}

static void check_refusals(const struct ops *ops, void *p, const void *s) {
    expect_refused(ops, p, s, 0, 4, 1);   /* no rows */
    expect_refused(ops, p, s, 2, 0, 1);   /* no columns */
    expect_refused(ops, p, s, 2, 4, 0);   /* no group */
    expect_refused(ops, p, s, 6, 4, 4);   /* R not a multiple of group */
    expect_refused(ops, p, s, 8, 4, 1);   /* more queries (8) than keys (4) */
    expect_refused(ops, p, s, -2, 4, 1);
    expect_refused(ops, NULL, s, 2, 4, 1);
    expect_refused(ops, p, NULL, 2, 4, 1);
}

static void test_cpu_refusals(void **st) {
    (void)st;
    float s[32] = {0}, p[32];
    for (int i = 0; i < 32; i++) p[i] = 7.0f;
    check_refusals(ops_cpu(), p, s);
    for (int i = 0; i < 32; i++) assert_true(p[i] == 7.0f);
}

static void test_cuda_against_cpu(void **st) {
    (void)st;
    const struct ops *gpu = ops_cuda(), *cpu = ops_cpu();
    if (!gpu) {
        print_message("no GPU: %s\n", sushi_last_error());
        skip();
    }
    size_t es = dtype_size(gpu->act_dtype);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const struct sm_case *c = &cases[k];
        size_t n = (size_t)c->R * c->S;
        float *s = rnd_scores(n, c->amp), *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
        float *nan = malloc(n * sizeof(float));
        assert_non_null(want);
        assert_non_null(got);
        assert_non_null(nan);
        poison(nan, n);
        assert_int_equal(cpu->softmax_causal(want, s, c->R, c->S, c->group, c->scale), 0);
        void *ds = gpu->alloc(n * es), *dp = gpu->alloc(n * es);
        assert_non_null(ds);
        assert_non_null(dp);
        for (int alias = 0; alias < 2; alias++) {
            assert_int_equal(gpu->f32_to_act(ds, s, n), 0);
            assert_int_equal(gpu->f32_to_act(dp, nan, n), 0);
            void *out = alias ? ds : dp;
            assert_int_equal(gpu->softmax_causal(out, ds, c->R, c->S, c->group, c->scale), 0);
            assert_int_equal(gpu->sync(), 0);
            assert_int_equal(gpu->act_to_f32(got, out, n), 0);
            double num = 0, den = 0;
            for (size_t i = 0; i < n; i++) {
                if (!isfinite(got[i])) fail_msg("cuda R=%d S=%d: element %zu is %g", c->R, c->S, i, got[i]);
                if (masked(c, i) && got[i] != 0.0f) fail_msg("cuda: element %zu is masked but %g", i, got[i]);
                num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
                den += (double)want[i] * want[i];
            }
            double e = sqrt(num / den);
            print_message("cuda softmax_causal R=%-4d S=%-5d group=%-4d%s rel err %.2e\n", c->R, c->S, c->group,
                          alias ? " (p = s)" : "        ", e);
            assert_true(e <= 1e-2);
        }
        gpu->free(ds);
        gpu->free(dp);
        free(s);
        free(want);
        free(got);
        free(nan);
    }
    void *ds = gpu->alloc(32 * es), *dp = gpu->alloc(32 * es);
    assert_non_null(ds);
    assert_non_null(dp);
    check_refusals(gpu, dp, ds);
    assert_int_equal(gpu->sync(), 0);
    gpu->free(ds);
    gpu->free(dp);
}

static int setup(void **st) {
    (void)st;
    const char *seed = getenv("SUSHI_TEST_SEED");
    rng_state = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL) * 2654435761u;
    if (rng_state == 0) rng_state = 1;
    print_message("seed %llu (SUSHI_TEST_SEED)\n", (unsigned long long)rng_state);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_against_reference),
        cmocka_unit_test(test_cpu_refusals),
        cmocka_unit_test(test_cuda_against_cpu),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
