// libs: core kernels student
/* One AdamW step over several parameter buffers (optim_step_multi): one global gradient
 * norm for clipping, each buffer's own weight-decay range, moments laid out buffer after
 * buffer; frozen ranges (optim_freeze) keep their weights and moments untouched and stay
 * out of the norm; optim_step is the one-buffer case; bad calls are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "common/core/log.h"
#include "models/optim.h"

/* the first AdamW step of weight w0 with gradient g (already scaled) and decay wd */
static double first_step(double w0, double g, double lr, double wd) {
    double upd = g == 0 ? 0 : g / (fabs(g) + 1e-8);
    return w0 - lr * upd - lr * wd * w0;
}

static void test_two_buffers_global_norm(void **st) {
    (void)st;
    const struct ops *ops = ops_cpu();
    struct optim_config c = {.lr = 0.1f, .total_steps = 10, .weight_decay = 0.5f, .clip_norm = 1.0f,
                             .schedule = OPTIM_CONSTANT};
    struct optim o;
    assert_int_equal(optim_create(&o, &c, ops, 7, 0), 0);
    const float a0[4] = {1.0f, -2.0f, 0.5f, 3.0f}, ga[4] = {3.0f, 0.0f, -4.0f, 0.0f};
    const float b0[3] = {0.25f, -1.0f, 2.0f}, gb[3] = {0.0f, 12.0f, 0.0f};
    float *a = ops->alloc(16), *b = ops->alloc(12), *gA = ops->alloc(16), *gB = ops->alloc(12);
    memcpy(a, a0, 16); memcpy(b, b0, 12); memcpy(gA, ga, 16); memcpy(gB, gb, 12);
    struct optim_buf bufs[2] = {{.master = a, .param = a, .grad = gA, .n = 4, .n_decay = 2},
                                {.master = b, .param = NULL, .grad = gB, .n = 3, .n_decay = 1}};
    assert_int_equal(optim_step_multi(&o, bufs, 2), 0);
    /* norm over both buffers: sqrt(9 + 16 + 144) = 13 */
    assert_float_equal(o.last_norm, 13.0f, 1e-5);
    double clip = 1.0 / (13.0 + 1e-6);
    for (int i = 0; i < 4; i++)
        assert_float_equal(a[i], first_step(a0[i], ga[i] * clip, 0.1, i < 2 ? 0.5 : 0.0), 1e-6);
    for (int i = 0; i < 3; i++)
        assert_float_equal(b[i], first_step(b0[i], gb[i] * clip, 0.1, i < 1 ? 0.5 : 0.0), 1e-6);
    /* moments: buffer 1's after buffer 0's */
    assert_float_equal(o.m[4 + 1], 0.1 * 12.0 * clip, 1e-6);
    assert_float_equal(o.m[2], 0.1 * -4.0 * clip, 1e-6);
    assert_int_equal(o.step, 1);
    /* sizes must add up to the optimizer's */
    bufs[1].n = 2;
    bufs[1].n_decay = 1;
    assert_int_equal(optim_step_multi(&o, bufs, 2), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "6 parameters"));
    assert_int_equal(optim_step_multi(&o, bufs, 0), SUSHI_EINVAL);
    ops->free(a); ops->free(b); ops->free(gA); ops->free(gB);
    optim_free(&o);
}

static void test_frozen(void **st) {
    (void)st;
    const struct ops *ops = ops_cpu();
    struct optim_config c = {.lr = 0.1f, .total_steps = 10, .weight_decay = 0.5f, .clip_norm = 0.0f,
                             .schedule = OPTIM_CONSTANT};
    struct optim o;
    assert_int_equal(optim_create(&o, &c, ops, 8, 4), 0);
    /* frozen: [1, 3) across nothing else, and [5, 6) in the undecayed part; a range of a
     * buffer that this step does not have is ignored */
    assert_int_equal(optim_freeze(&o, 0, 1, 2), 0);
    assert_int_equal(optim_freeze(&o, 0, 5, 1), 0);
    assert_int_equal(optim_freeze(&o, 3, 0, 8), 0);
    assert_int_equal(optim_freeze(&o, 0, 0, 0), SUSHI_EINVAL);
    const float w0[8] = {1, 2, 3, 4, 5, 6, 7, 8}, g0[8] = {1, 100, -100, 2, 3, 100, -2, 4};
    float *w = ops->alloc(32), *g = ops->alloc(32);
    memcpy(w, w0, 32);
    memcpy(g, g0, 32);
    for (int s = 0; s < 3; s++) assert_int_equal(optim_step(&o, w, w, g), 0);
    /* the norm leaves the frozen gradients out: sqrt(1 + 4 + 9 + 4 + 16) */
    assert_float_equal(o.last_norm, sqrtf(34.0f), 1e-5);
    for (int i = 0; i < 8; i++) {
        int frozen = (i >= 1 && i < 3) || i == 5;
        if (frozen) {
            assert_true(memcmp(&w[i], &w0[i], 4) == 0);   /* bit-identical */
            assert_true(o.m[i] == 0.0f && o.v[i] == 0.0f);
        } else {
            assert_true(w[i] != w0[i]);
        }
    }
    ops->free(w);
    ops->free(g);
    optim_free(&o);
}

/* the one-buffer call equals the multi call with that buffer, bit for bit */
static void test_single_equals_multi(void **st) {
    (void)st;
    const struct ops *ops = ops_cpu();
    struct optim_config c = {.lr = 0.01f, .total_steps = 10, .weight_decay = 0.1f, .clip_norm = 0.5f,
                             .warmup_steps = 2};
    struct optim o1, o2;
    assert_int_equal(optim_create(&o1, &c, ops, 64, 40), 0);
    assert_int_equal(optim_create(&o2, &c, ops, 64, 40), 0);
    float *w1 = ops->alloc(256), *w2 = ops->alloc(256), *g = ops->alloc(256);
    for (int i = 0; i < 64; i++) {
        w1[i] = w2[i] = sinf((float)i);
        g[i] = cosf((float)i * 0.7f);
    }
    struct optim_buf b = {.master = w2, .param = w2, .grad = g, .n = 64, .n_decay = 40};
    for (int s = 0; s < 4; s++) {
        assert_int_equal(optim_step(&o1, w1, w1, g), 0);
        assert_int_equal(optim_step_multi(&o2, &b, 1), 0);
    }
    assert_memory_equal(w1, w2, 256);
    assert_memory_equal(o1.v, o2.v, 256);
    ops->free(w1); ops->free(w2); ops->free(g);
    optim_free(&o1);
    optim_free(&o2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_buffers_global_norm),
        cmocka_unit_test(test_frozen),
        cmocka_unit_test(test_single_equals_multi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
