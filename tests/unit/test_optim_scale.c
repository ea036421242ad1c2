// libs: core kernels student
/* Dynamic loss scaling in the optimizer (optim.h): a non-finite gradient norm (inf or
 * NaN) skips the step — master, moments and the step counter unchanged, the scale
 * halved, OPTIM_SKIPPED returned — until scale_min, where it is an error naming the
 * step; scale_growth_interval finite steps double the scale; gradients multiplied by a
 * power of two S with the scale at S give bit-identical clipping norms and AdamW updates
 * (over several steps, with accumulation, clipping and two buffers); the scaling state
 * can be restored; bad settings are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "common/core/log.h"
#include "models/optim.h"

#define N 37

static struct optim_config dyn_config(float scale) {
    return (struct optim_config){.lr = 0.01f, .total_steps = 100, .warmup_steps = 3, .weight_decay = 0.1f,
                                 .clip_norm = 1.0f, .loss_scale = scale, .scale_growth_interval = 3};
}

/* deterministic weights and gradients, gradients multiplied by mul */
static void fill(float *w, float *g, int n, int seed, float mul) {
    for (int i = 0; i < n; i++) {
        if (w) w[i] = 0.05f * (float)((i * 7 + seed) % 11) - 0.25f;
        g[i] = mul * (0.125f * (float)((i * 5 + seed * 3) % 13) - 0.75f);
    }
}

static void test_skip_on_nonfinite(void **st) {
    (void)st;
    const struct ops *ops = ops_cpu();
    struct optim_config c = dyn_config(1024.0f);
    struct optim o;
    assert_int_equal(optim_create(&o, &c, ops, N, 20), 0);
    assert_true(optim_loss_scale(&o) == 1024.0f);
    float *w = ops->alloc(N * 4), *g = ops->alloc(N * 4);
    fill(w, g, N, 1, 1024.0f);
    assert_int_equal(optim_step(&o, w, w, g), 0);   /* one good step: moments are nonzero */
    assert_int_equal(o.step, 1);
    assert_int_equal(o.good_steps, 1);
    float w1[N], m1[N], v1[N];
    memcpy(w1, w, sizeof w1);
    memcpy(m1, o.m, sizeof m1);
    memcpy(v1, o.v, sizeof v1);
    const float bad[2] = {INFINITY, NAN};
    for (int k = 0; k < 2; k++) {
        fill(NULL, g, N, 2, 1024.0f);
        g[N / 2] = bad[k];
        float before = optim_loss_scale(&o);
        assert_int_equal(optim_step(&o, w, w, g), OPTIM_SKIPPED);
        assert_memory_equal(w, w1, sizeof w1);
        assert_memory_equal(o.m, m1, sizeof m1);
        assert_memory_equal(o.v, v1, sizeof v1);
        assert_int_equal(o.step, 1);
        assert_true(optim_loss_scale(&o) == before / 2);
        assert_true(o.last_scale == before);
        assert_false(isfinite(o.last_norm));
        assert_int_equal(o.good_steps, 0);
        assert_int_equal(o.skipped, k + 1);
    }
    assert_true(optim_loss_scale(&o) == 256.0f);
    /* the next finite step is the optimizer's second (bias correction of step 2) */
    fill(NULL, g, N, 2, 256.0f);
    assert_int_equal(optim_step(&o, w, w, g), 0);
    assert_int_equal(o.step, 2);
    assert_int_equal(o.skipped, 2);
    ops->free(w);
    ops->free(g);
    optim_free(&o);
}

static void test_growth(void **st) {
    (void)st;
    const struct ops *ops = ops_cpu();
    struct optim_config c = dyn_config(8.0f);
    struct optim o;
    assert_int_equal(optim_create(&o, &c, ops, N, 0), 0);
    float *w = ops->alloc(N * 4), *g = ops->alloc(N * 4);
    fill(w, g, N, 3, 8.0f);
    for (int s = 1; s <= 2; s++) {
        assert_int_equal(optim_step(&o, w, w, g), 0);
        assert_true(optim_loss_scale(&o) == 8.0f);
        assert_int_equal(o.good_steps, s);
    }
    assert_int_equal(optim_step(&o, w, w, g), 0);   /* the third good step in a row */
    assert_true(optim_loss_scale(&o) == 16.0f);
    assert_int_equal(o.good_steps, 0);
    /* a skip restarts the count */
    fill(NULL, g, N, 3, 16.0f);
    assert_int_equal(optim_step(&o, w, w, g), 0);
    assert_int_equal(optim_step(&o, w, w, g), 0);
    g[0] = INFINITY;
    assert_int_equal(optim_step(&o, w, w, g), OPTIM_SKIPPED);
    assert_true(optim_loss_scale(&o) == 8.0f);
    fill(NULL, g, N, 3, 8.0f);
    for (int s = 0; s < 2; s++) assert_int_equal(optim_step(&o, w, w, g), 0);
    assert_true(optim_loss_scale(&o) == 8.0f);
    assert_int_equal(optim_step(&o, w, w, g), 0);
    assert_true(optim_loss_scale(&o) == 16.0f);
    assert_int_equal(o.step, 8);
    assert_int_equal(o.skipped, 1);
    ops->free(w);
    ops->free(g);
    optim_free(&o);
}

static void test_minimum(void **st) {
    (void)st;
    const struct ops *ops = ops_cpu();
    struct optim_config c = dyn_config(3.0f);
    c.scale_min = 1.0f;
    struct optim o;
    assert_int_equal(optim_create(&o, &c, ops, N, 0), 0);
    float *w = ops->alloc(N * 4), *g = ops->alloc(N * 4);
    fill(w, g, N, 4, 1.0f);
    g[3] = NAN;
    assert_int_equal(optim_step(&o, w, w, g), OPTIM_SKIPPED);
    assert_true(optim_loss_scale(&o) == 1.5f);
    assert_int_equal(optim_step(&o, w, w, g), OPTIM_SKIPPED);
    assert_true(optim_loss_scale(&o) == 1.0f);   /* halving stops at scale_min */
    assert_int_equal(optim_step(&o, w, w, g), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "at step 1"));
    assert_non_null(strstr(sushi_last_error(), "minimum"));
    assert_int_equal(o.skipped, 2);
    optim_free(&o);
    /* without dynamic scaling a non-finite norm is an error at once */
    c.loss_scale = 0;
    assert_int_equal(optim_create(&o, &c, ops, N, 0), 0);
    assert_true(optim_loss_scale(&o) == 1.0f);
    assert_int_equal(optim_step(&o, w, w, g), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "nan at step 1"));
    assert_int_equal(o.skipped, 0);
    ops->free(w);
    ops->free(g);
    optim_free(&o);
}

/* n_steps steps on two buffers, each step accumulating two micro-batches whose gradients
 * are multiplied by mul, the optimizer at scale `scale` (0 = off); weights, moments and
 * norms out */
static void run(float scale, float mul, int n_steps, float *w_out, float *m_out, float *norms) {
    const struct ops *ops = ops_cpu();
    struct optim_config c = dyn_config(scale);
    c.scale_growth_interval = 1000;
    c.scale_min = 1.0f / 1024;
    c.accum_steps = 2;
    c.clip_norm = 2.0f;   /* clipping is active on every other step */
    struct optim o;
    assert_int_equal(optim_create(&o, &c, ops, N, 20), 0);
    float *w = ops->alloc(N * 4), *g = ops->alloc(N * 4);
    fill(w, g, N, 0, 0);
    for (int s = 0; s < n_steps; s++) {
        float g2[N];
        fill(NULL, g, N, s + 1, mul);
        fill(NULL, g2, N, s + 7, mul * (s % 2 ? 0.25f : 3.0f));
        for (int i = 0; i < N; i++) g[i] += g2[i];
        struct optim_buf b[2] = {{.master = w, .param = w, .grad = g, .n = 25, .n_decay = 20},
                                 {.master = w + 25, .param = w + 25, .grad = g + 25, .n = N - 25, .n_decay = 4}};
        assert_int_equal(optim_step_multi(&o, b, 2), 0);
        norms[s] = o.last_norm;
    }
    memcpy(w_out, w, N * 4);
    memcpy(m_out, o.m, N * 4);
    ops->free(w);
    ops->free(g);
    optim_free(&o);
}

static void test_scaled_equals_unscaled(void **st) {
    (void)st;
    enum { STEPS = 6 };
    float w0[N], m0[N], n0[STEPS], w1[N], m1[N], n1[STEPS];
    run(0.0f, 1.0f, STEPS, w0, m0, n0);
    const float scales[3] = {1024.0f, 65536.0f, 0.25f};
    for (int k = 0; k < 3; k++) {
        run(scales[k], scales[k], STEPS, w1, m1, n1);
        assert_memory_equal(w1, w0, sizeof w0);
        assert_memory_equal(m1, m0, sizeof m0);
        assert_memory_equal(n1, n0, sizeof n0);
    }
    int clipped = 0;
    for (int s = 0; s < STEPS; s++) clipped += n0[s] > 2.0f;
    assert_true(clipped > 0 && clipped < STEPS);   /* both clipped and unclipped steps were compared */
}

static void test_state_and_config(void **st) {
    (void)st;
    const struct ops *ops = ops_cpu();
    struct optim_config c = dyn_config(4096.0f);
    struct optim o;
    assert_int_equal(optim_create(&o, &c, ops, N, 0), 0);
    assert_int_equal(optim_set_scale_state(&o, 512.0f, 2, 7), 0);
    assert_true(optim_loss_scale(&o) == 512.0f);
    assert_int_equal(o.good_steps, 2);
    assert_int_equal(o.skipped, 7);
    assert_int_equal(optim_set_scale_state(&o, NAN, 0, 0), SUSHI_EINVAL);
    assert_int_equal(optim_set_scale_state(&o, 2.0f, -1, 0), SUSHI_EINVAL);
    optim_free(&o);
    struct optim_config bad = dyn_config(-1.0f);
    assert_int_equal(optim_config_validate(&bad), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "loss_scale"));
    bad = dyn_config(0.5f);   /* below the default scale_min 1 */
    assert_int_equal(optim_config_validate(&bad), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "scale_min"));
    bad = dyn_config(8.0f);
    bad.stochastic_rounding = 2;
    assert_int_equal(optim_config_validate(&bad), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "stochastic_rounding"));
    struct optim_config def = {.lr = 0.1f, .total_steps = 1, .loss_scale = 2.0f};
    assert_int_equal(optim_config_validate(&def), 0);
    assert_int_equal(def.scale_growth_interval, 2000);
    assert_true(def.scale_min == 1.0f);
    /* stochastic rounding on f32 weights: same update as without */
    float w0[N], m0[N], w1[N], g[N];
    fill(w0, g, N, 5, 1.0f);
    memcpy(w1, w0, sizeof w0);
    for (int k = 0; k < 2; k++) {
        struct optim_config sc = dyn_config(0.0f);
        sc.stochastic_rounding = k;
        sc.seed = 99;
        assert_int_equal(optim_create(&o, &sc, ops, N, 10), 0);
        assert_int_equal(optim_step(&o, k ? w1 : w0, NULL, g), 0);
        if (!k) memcpy(m0, o.m, sizeof m0);
        else assert_memory_equal(o.m, m0, sizeof m0);
        optim_free(&o);
    }
    assert_memory_equal(w1, w0, sizeof w0);
}

int main(void) {
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skip_on_nonfinite),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_minimum),
        cmocka_unit_test(test_scaled_equals_unscaled),
        cmocka_unit_test(test_state_and_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
