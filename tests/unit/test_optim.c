// libs: core kernels student
/* The optimizer driver: learning-rate schedule values worked out by hand, linear LR
 * scaling, input validation, and 10 AdamW steps (clipping, warmup + cosine) on the
 * student whose losses match torch.optim.AdamW + clip_grad_norm_ to 1e-4 relative. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "models/optim.h"
#include "tests/unit/student_case.h"

static void test_schedule(void **st) {
    (void)st;
    struct optim_config c = {.lr = 1.0f, .min_lr = 0.1f, .warmup_steps = 10, .total_steps = 110};
    assert_int_equal(optim_config_validate(&c), 0);
    assert_float_equal(optim_lr_at(&c, 0), 0.1f, 1e-7);
    assert_float_equal(optim_lr_at(&c, 9), 1.0f, 1e-7);
    assert_float_equal(optim_lr_at(&c, 10), 1.0f, 1e-7);
    /* p = 25/100: 0.1 + 0.9 · (1 + cos(π/4)) / 2 */
    assert_float_equal(optim_lr_at(&c, 35), 0.868198f, 1e-6);
    assert_float_equal(optim_lr_at(&c, 110), 0.1f, 1e-7);
    assert_float_equal(optim_lr_at(&c, 500), 0.1f, 1e-7);
    c.schedule = OPTIM_LINEAR;
    assert_float_equal(optim_lr_at(&c, 35), 0.775f, 1e-6);
    c.schedule = OPTIM_CONSTANT;
    assert_float_equal(optim_lr_at(&c, 80), 1.0f, 1e-7);
    assert_float_equal(optim_scaled_lr(3e-4f, 16, 64), 1.2e-3f, 1e-9);
    assert_float_equal(optim_scaled_lr(3e-4f, 16, 4), 7.5e-5f, 1e-10);
}

static void test_config_errors(void **st) {
    (void)st;
    struct optim_config c = {.lr = 1e-3f, .min_lr = 1e-2f, .total_steps = 10};
    assert_int_equal(optim_config_validate(&c), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "min_lr"));
    c = (struct optim_config){.lr = 1e-3f, .total_steps = 0};
    assert_int_equal(optim_config_validate(&c), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "total_steps"));
    struct optim o;
    c.total_steps = 5;
    assert_int_equal(optim_create(&o, &c, ops_cpu(), 10, 11), SUSHI_EINVAL);
}

/* accumulated grads are divided by accum_steps before the norm and the update; the
 * first AdamW step moves each weight by lr·ĝ/(|ĝ|+eps) plus decay (matrices only) */
static void test_accum_clip_first_step(void **st) {
    (void)st;
    const struct ops *ops = ops_cpu();
    struct optim_config c = {.lr = 0.1f, .total_steps = 10, .weight_decay = 0.5f, .clip_norm = 1.0f,
                             .accum_steps = 2, .schedule = OPTIM_CONSTANT};
    struct optim o;
    assert_int_equal(optim_create(&o, &c, ops, 4, 2), 0);
    float *w = ops->alloc(4 * 4), *g = ops->alloc(4 * 4);
    const float w0[4] = {1.0f, -2.0f, 0.5f, 3.0f}, g0[4] = {6.0f, -8.0f, 0.0f, 1e-3f};
    memcpy(w, w0, sizeof w0);
    memcpy(g, g0, sizeof g0);
    assert_int_equal(optim_step(&o, w, w, g), 0);
    /* grads/2 = (3, -4, 0, 5e-4): norm 5.0000000250 → clip factor ≈ 0.2 */
    assert_float_equal(o.last_norm, 5.0f, 1e-5);
    assert_float_equal(o.last_lr, 0.1f, 1e-7);
    for (int i = 0; i < 4; i++) {
        double gh = g0[i] / 2.0 * (1.0 / (5.0 + 1e-6));
        double upd = gh == 0 ? 0 : gh / (fabs(gh) + 1e-8);
        double decay = i < 2 ? 0.1 * 0.5 * w0[i] : 0.0;
        assert_float_equal(w[i], w0[i] - 0.1 * upd - decay, 1e-5);
    }
    assert_int_equal(o.step, 1);
    ops->free(w);
    ops->free(g);
    optim_free(&o);
}

static void test_adamw_vs_torch(void **st) {
    (void)st;
    if (!scase_have_torch()) skip();
    struct scase s = {.cfg = scase_small_config(0), .B = 2, .T = 9, .lc = {.smoothing = 0.1f}};
    s.cfg.window = 5;
    scase_fill(&s, 17);
    struct student_model m;
    assert_int_equal(student_create(&m, &s.cfg, ops_cpu(), s.B, s.T, 5), 0);
    assert_int_equal(scase_randomize(&m, 6), 0);
    /* lr high enough that the loss moves, clip low enough that it is active */
    struct optim_config oc = {.lr = 3e-2f, .min_lr = 3e-3f, .warmup_steps = 3, .total_steps = 10,
                              .schedule = OPTIM_COSINE, .beta1 = 0.9f, .beta2 = 0.95f,
                              .eps = 1e-8f, .weight_decay = 0.1f, .clip_norm = 1.0f};
    char extra[512];
    snprintf(extra, sizeof extra,
             "\"steps\":10,\"optim\":{\"lr\":%.9g,\"min_lr\":%.9g,\"warmup_steps\":%d,"
             "\"total_steps\":%d,\"schedule\":\"cosine\",\"beta1\":%.9g,\"beta2\":%.9g,"
             "\"eps\":%.9g,\"weight_decay\":%.9g,\"clip_norm\":%.9g},",
             oc.lr, oc.min_lr, oc.warmup_steps, oc.total_steps, oc.beta1, oc.beta2, oc.eps,
             oc.weight_decay, oc.clip_norm);
    double ref[10];
    assert_int_equal(scase_oracle(&s, &m, "train", extra, ref, 10), 0);
    struct optim o;
    assert_int_equal(optim_create(&o, &oc, ops_cpu(), m.n_params, m.n_decay), 0);
    for (int i = 0; i < 10; i++) {
        float loss;
        assert_int_equal(student_zero_grad(&m), 0);
        assert_int_equal(student_forward(&m, s.ids, s.targets, NULL, NULL, &s.lc, &loss), 0);
        assert_int_equal(student_backward(&m), 0);
        assert_int_equal(optim_step(&o, m.master, m.wbuf, m.gbuf), 0);
        print_message("step %d: loss %.6f torch %.6f (lr %.5f, norm %.3f)\n", i, loss, ref[i],
                      o.last_lr, o.last_norm);
        assert_true(fabs(loss - ref[i]) <= 1e-4 * fabs(ref[i]));
    }
    assert_true(ref[9] < ref[0] - 0.1); /* the run actually trained */
    optim_free(&o);
    student_free(&m);
    scase_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_accum_clip_first_step),
        cmocka_unit_test(test_adamw_vs_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
