// libs: core kernels student
/* The student model against the PyTorch reference (tests/oracle/student_ref.py): the
 * loss and every parameter gradient, ‖a − b‖₂/‖b‖₂ ≤ 1e-5 per tensor, on a small odd
 * config with GQA — tied and untied, document masking, sliding window, label smoothing,
 * and the top-K KD losses. Also: gradient checkpointing on vs off, a finite-difference
 * check, and parameter views. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/student_case.h"

static void check_against_torch(struct student_config cfg, int K, struct student_loss_cfg lc) {
    if (!scase_have_torch()) skip();
    struct scase s = {.cfg = cfg, .B = 2, .T = 11, .K = K, .lc = lc};
    struct student_model m;
    assert_int_equal(student_create(&m, &cfg, ops_cpu(), s.B, s.T, 7), 0);
    assert_int_equal(scase_randomize(&m, 11), 0);
    scase_fill(&s, 5);
    float loss;
    assert_int_equal(student_forward(&m, s.ids, s.targets, cfg.doc_mask ? s.doc : NULL,
                                     scase_teacher(&s), &lc, &loss), 0);
    assert_int_equal(student_backward(&m), 0);
    double *ref = malloc((1 + m.n_params) * sizeof(double));
    assert_non_null(ref);
    assert_int_equal(scase_oracle(&s, &m, "grad", NULL, ref, 1 + m.n_params), 0);
    print_message("loss %.7f (torch %.7f)\n", loss, ref[0]);
    assert_true(fabs(loss - ref[0]) <= 1e-5 * fabs(ref[0]));
    struct param_view gv[64];
    int nv = student_param_views(&m.cfg, (float *)m.gbuf, gv, 64);
    assert_true(nv > 0 && nv <= 64);
    size_t off = 1;
    double worst = 0;
    for (int i = 0; i < nv; i++) {
        double e = scase_rel_err(gv[i].data, ref + off, gv[i].numel);
        if (e > 1e-5) print_message("  %s: rel err %.3g\n", gv[i].name, e);
        worst = e > worst ? e : worst;
        assert_true(e <= 1e-5);
        off += gv[i].numel;
    }
    print_message("worst gradient rel err %.3g over %d tensors\n", worst, nv);
    free(ref);
    student_free(&m);
    scase_free(&s);
}

static const struct student_loss_cfg plain = {.smoothing = 0.0f};

static void test_grad_tied(void **st) { (void)st; check_against_torch(scase_small_config(1), 0, plain); }
static void test_grad_untied(void **st) { (void)st; check_against_torch(scase_small_config(0), 0, plain); }

static void test_grad_doc_mask_window(void **st) {
    (void)st;
    struct student_config c = scase_small_config(1);
    c.doc_mask = 1;
    c.window = 3;
    check_against_torch(c, 0, (struct student_loss_cfg){.smoothing = 0.1f});
}

static void test_grad_kd_forward(void **st) {
    (void)st;
    struct student_loss_cfg lc = {.smoothing = 0.1f, .alpha = 0.7f, .mode = KD_FORWARD, .temperature = 2.0f};
    check_against_torch(scase_small_config(0), 5, lc);
}

static void test_grad_kd_reverse_jsd(void **st) {
    (void)st;
    struct student_config c = scase_small_config(1);
    c.window = 4;
    check_against_torch(c, 4, (struct student_loss_cfg){.alpha = 0.5f, .mode = KD_REVERSE, .temperature = 1.0f});
    check_against_torch(c, 4, (struct student_loss_cfg){.alpha = 1.0f, .mode = KD_JSD, .temperature = 1.5f,
                                                        .jsd_beta = 0.3f});
}

/* gradients with every block recomputed in backward equal the stored-activation ones */
static void test_grad_checkpoint(void **st) {
    (void)st;
    struct student_config c = scase_small_config(0);
    c.n_layers = 3;
    c.doc_mask = 1;
    struct scase s = {.cfg = c, .B = 2, .T = 13, .K = 3,
                      .lc = {.smoothing = 0.05f, .alpha = 0.5f, .temperature = 1.0f}};
    scase_fill(&s, 9);
    float *g[2], loss[2];
    size_t n = 0;
    for (int ck = 0; ck < 2; ck++) {
        struct student_model m;
        c.grad_checkpoint = ck;
        assert_int_equal(student_create(&m, &c, ops_cpu(), s.B, s.T, 3), 0);
        assert_int_equal(scase_randomize(&m, 4), 0);
        assert_int_equal(student_forward(&m, s.ids, s.targets, s.doc, &s.teacher, &s.lc, &loss[ck]), 0);
        assert_int_equal(student_backward(&m), 0);
        n = m.n_params;
        g[ck] = malloc(n * sizeof(float));
        memcpy(g[ck], m.gbuf, n * sizeof(float));
        student_free(&m);
    }
    assert_true(loss[0] == loss[1]);
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)g[0][i] - g[1][i]) * ((double)g[0][i] - g[1][i]);
        den += (double)g[0][i] * g[0][i];
    }
    print_message("checkpointing: gradient rel diff %.3g\n", sqrt(num / den));
    assert_true(sqrt(num / den) <= 1e-6);
    free(g[0]);
    free(g[1]);
    scase_free(&s);
}

/* two micro-batches without zeroing in between accumulate to the sum of their grads */
static void test_grad_accumulation(void **st) {
    (void)st;
    struct student_config c = scase_small_config(1);
    struct scase s1 = {.cfg = c, .B = 2, .T = 8, .lc = {.smoothing = 0.1f}}, s2 = s1;
    scase_fill(&s1, 31);
    scase_fill(&s2, 32);
    struct student_model m;
    assert_int_equal(student_create(&m, &c, ops_cpu(), 2, 8, 8), 0);
    size_t n = m.n_params;
    float *g1 = malloc(n * 4), *g2 = malloc(n * 4), loss;
    assert_int_equal(student_forward(&m, s1.ids, s1.targets, NULL, NULL, &s1.lc, &loss), 0);
    assert_int_equal(student_backward(&m), 0);
    memcpy(g1, m.gbuf, n * 4);
    assert_int_equal(student_zero_grad(&m), 0);
    assert_int_equal(student_forward(&m, s2.ids, s2.targets, NULL, NULL, &s2.lc, &loss), 0);
    assert_int_equal(student_backward(&m), 0);
    memcpy(g2, m.gbuf, n * 4);
    assert_int_equal(student_zero_grad(&m), 0);
    for (int i = 0; i < 2; i++) {
        struct scase *s = i ? &s2 : &s1;
        assert_int_equal(student_forward(&m, s->ids, s->targets, NULL, NULL, &s->lc, &loss), 0);
        assert_int_equal(student_backward(&m), 0);
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double want = (double)g1[i] + g2[i], got = ((float *)m.gbuf)[i];
        num += (got - want) * (got - want);
        den += want * want;
    }
    print_message("accumulated gradient rel err %.3g\n", sqrt(num / den));
    assert_true(den > 0 && sqrt(num / den) <= 1e-6);
    free(g1);
    free(g2);
    student_free(&m);
    scase_free(&s1);
    scase_free(&s2);
}

/* central differences in f32 on a tiny model: step 1e-2 on weights of scale 0.25–1,
 * so truncation (h²) and rounding (ε·loss/h ≈ 1e-5) both stay well under 2% */
static void test_finite_difference(void **st) {
    (void)st;
    struct student_config c = scase_small_config(1);
    c.n_layers = 1;
    struct scase s = {.cfg = c, .B = 1, .T = 7, .lc = {.smoothing = 0.1f}};
    scase_fill(&s, 21);
    struct student_model m;
    assert_int_equal(student_create(&m, &c, ops_cpu(), s.B, s.T, 1), 0);
    assert_int_equal(scase_randomize(&m, 2), 0);
    float loss, lp, lm;
    assert_int_equal(student_forward(&m, s.ids, s.targets, NULL, NULL, &s.lc, &loss), 0);
    assert_int_equal(student_backward(&m), 0);
    float *grad = m.gbuf;
    struct rng r;
    rng_seed(&r, 99);
    int checked = 0;
    for (int tries = 0; tries < 2000 && checked < 10; tries++) {
        size_t i = rng_u64(&r) % m.n_params;
        if (fabsf(grad[i]) < 1e-2f) continue; /* only parameters with a clear gradient */
        float w0 = m.master[i], h = 1e-2f;
        m.master[i] = w0 + h;
        assert_int_equal(student_sync_weights(&m), 0);
        assert_int_equal(student_forward(&m, s.ids, s.targets, NULL, NULL, &s.lc, &lp), 0);
        m.master[i] = w0 - h;
        assert_int_equal(student_sync_weights(&m), 0);
        assert_int_equal(student_forward(&m, s.ids, s.targets, NULL, NULL, &s.lc, &lm), 0);
        m.master[i] = w0;
        double fd = ((double)lp - lm) / (2.0 * h);
        print_message("param %zu: analytic %.6f, finite difference %.6f\n", i, grad[i], fd);
        assert_true(fabs(fd - grad[i]) <= 2e-2 * fabs(grad[i]) + 2e-4);
        checked++;
    }
    assert_int_equal(checked, 10);
    student_free(&m);
    scase_free(&s);
}

/* cos/sin tables against HF's formulas (tests/oracle/student_rope.py, float64) */
static void check_rope(struct student_config c, const char *args) {
    assert_int_equal(student_config_validate(&c), 0);
    size_t n = (size_t)c.max_seq * c.d_head / 2;
    float *t = malloc(2 * n * sizeof(float));
    double *ref = malloc(2 * n * sizeof(double));
    assert_int_equal(student_rope_tables(&c, t, t + n), 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/student_rope.py %s", scase_root(), args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fread(ref, sizeof(double), 2 * n, p), 2 * n);
    pclose(p);
    double e = scase_rel_err(t, ref, 2 * n);
    print_message("rope tables (%s): rel err %.3g\n", args, e);
    assert_true(e <= 1e-6);
    free(t);
    free(ref);
}

static void test_rope_tables(void **st) {
    (void)st;
    if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) skip();
    struct student_config c = scase_small_config(1);
    c.d_head = 16;
    c.max_seq = 300;
    c.rope_theta = 500.0f;
    check_rope(c, "16 500 300");
    c.rope_scaling = (struct rope_scaling){.type = ROPE_SCALING_YARN, .factor = 4.0f,
                                           .original_max_position = 64, .beta_fast = 32.0f,
                                           .beta_slow = 1.0f};
    check_rope(c, "16 500 300 4 64 32 1 0 0");
    c.rope_scaling.mscale = 0.8f;
    c.rope_scaling.mscale_all_dim = 0.5f;
    check_rope(c, "16 500 300 4 64 32 1 0.8 0.5");
}

static void test_param_views(void **st) {
    (void)st;
    struct student_config c = scase_small_config(0);
    assert_int_equal(student_config_validate(&c), 0);
    size_t n = student_param_count(&c);
    /* 48·20 embed + 2·(36·20 q + 2·(12·20) kv + 20·36 o + 2·26·20 + 20·26 + 2·20) + 20 + 48·20 */
    assert_int_equal(n, 960 + 2 * (720 + 480 + 720 + 1040 + 520 + 40) + 20 + 960);
    float *base = calloc(n, sizeof(float));
    struct param_view v[32];
    int nv = student_param_views(&c, base, v, 32);
    assert_int_equal(nv, 1 + 2 * 9 + 1 + 1);
    assert_string_equal(v[2].name, "model.layers.0.self_attn.k_proj.weight");
    assert_int_equal(v[2].shape[0], 12);
    assert_true(v[2].data == v[1].data + 36 * 20); /* k rows follow q rows (fused qkv) */
    assert_string_equal(v[nv - 1].name, "lm_head.weight");
    size_t total = 0;
    for (int i = 0; i < nv; i++) total += v[i].numel;
    assert_int_equal(total, n);
    free(base);
    struct student_config bad = scase_small_config(1);
    bad.n_kv_heads = 4;
    assert_int_not_equal(student_config_validate(&bad), 0);
    assert_non_null(strstr(sushi_last_error(), "n_kv_heads"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_views),
        cmocka_unit_test(test_rope_tables),
        cmocka_unit_test(test_grad_tied),
        cmocka_unit_test(test_grad_untied),
        cmocka_unit_test(test_grad_doc_mask_window),
        cmocka_unit_test(test_grad_kd_forward),
        cmocka_unit_test(test_grad_kd_reverse_jsd),
        cmocka_unit_test(test_grad_checkpoint),
        cmocka_unit_test(test_grad_accumulation),
        cmocka_unit_test(test_finite_difference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
