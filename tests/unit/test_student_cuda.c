// libs: student kernels cuda core
/* One whole training step of the student (forward, backward, clipping + AdamW) on the
 * CUDA backend (bf16 or f16 activations, f32 master weights and moments) against the
 * same step on the CPU backend (f32), from the same act-representable initial weights
 * and data. Tolerances, bf16 (8-bit mantissa) / f16 (11-bit): loss relative error ≤
 * 2e-2 / 1e-2, every parameter gradient ‖a − b‖₂/‖b‖₂ ≤ 5e-2 (both: f16 has the finer
 * mantissa but subnormals below 6.1e-5), updated master weights ‖a − b‖₂/‖b‖₂ ≤ 1e-2 per
 * tensor, and ≥ 95% of the AdamW updates with the same sign. f16 runs with a static loss
 * scale per case (the model's loss_scale and the optimizer's, which divides it out, as
 * dynamic loss scaling does): 2^14 on the dev tier, whose logit gradients (≈ 1/(V·N) ≈
 * 7e-8) would otherwise fall to f16's smallest subnormal and fail the comparison, 2^6 on
 * the small case (gradients up to ~1: far from f16's 65504 either way). Cases: a small
 * odd config (GQA, d_head 6, padded vocab, untied, document mask, sliding window, label
 * smoothing, top-K forward KD) and the dev tier (configs/student/dev.yaml, vocab 32000,
 * B=2, T=256). Without a usable GPU (ops_cuda() == NULL, as in CI) every test is
 * skipped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/core/dtype.h"
#include "models/optim.h"
#include "tests/unit/student_case.h"

#define TOL_GRAD 5e-2
#define TOL_WEIGHT 1e-2
#define MIN_SIGN_AGREE 0.95

/* the act dtype's rounding of x on the host, and its loss tolerance */
static float act_round(const struct ops *ops, float x) {
    return ops->act_dtype == DT_F16 ? f16_to_f32(f32_to_f16(x)) : bf16_to_f32(f32_to_bf16(x));
}
static double tol_loss(const struct ops *ops) { return ops->act_dtype == DT_F16 ? 1e-2 : 2e-2; }

/* ‖a − b‖₂ / ‖b‖₂ over two f32 arrays */
static double rel_err_f32(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* the backend's act-dtype gradients as host f32, divided by the loss scale they carry */
static float *grads_host(const struct student_model *m, float loss_scale) {
    float *g = malloc(m->n_params * sizeof(float));
    assert_non_null(g);
    assert_int_equal(m->ops->act_to_f32(g, m->gbuf, m->n_params), 0);
    for (size_t i = 0; i < m->n_params; i++) g[i] /= loss_scale;
    return g;
}

/* the backend's f32 master weights on the host */
static float *master_host(const struct student_model *m) {
    float *w = malloc(m->n_params * sizeof(float));
    assert_non_null(w);
    assert_int_equal(m->ops->to_host(w, m->master, m->n_params * sizeof(float)), 0);
    return w;
}

/* Per-tensor ‖a − b‖/‖b‖ over the HF views of two parameter-layout buffers; returns the
 * worst and prints the tensors above `tol`. */
static double compare_views(const struct student_config *c, float *a, float *b, double tol,
                            const char *what) {
    enum { MAX_VIEWS = 1024 };
    struct param_view *va = calloc(2 * MAX_VIEWS, sizeof *va), *vb = va + MAX_VIEWS;
    assert_non_null(va);
    int nv = student_param_views(c, a, va, MAX_VIEWS);
    assert_true(nv > 0 && nv <= MAX_VIEWS);
    assert_int_equal(student_param_views(c, b, vb, MAX_VIEWS), nv);
    double worst = 0;
    for (int i = 0; i < nv; i++) {
        double e = rel_err_f32(va[i].data, vb[i].data, va[i].numel);
        if (e > tol || e != e) print_message("  %s %s: rel err %.3g\n", what, va[i].name, e);
        worst = e > worst || e != e ? e : worst;
    }
    print_message("%s: worst rel err %.3g over %d tensors (tolerance %.0e)\n", what, worst, nv, tol);
    free(va);
    return worst;
}

struct step_case {
    struct student_config cfg;
    int B, T, K;
    struct student_loss_cfg lc;
    int randomize;   /* scase_randomize weights instead of student_init */
    float f16_loss_scale;   /* static loss scale of the f16 run (bf16: none) */
};

static void check_step(const struct step_case *sc) {
    const struct ops *gpu = ops_cuda();
    if (!gpu) {
        print_message("no GPU: %s\n", sushi_last_error());
        skip();
    }
    struct scase s = {.cfg = sc->cfg, .B = sc->B, .T = sc->T, .K = sc->K, .lc = sc->lc};
    scase_fill(&s, 3);
    struct student_model mc, mg;
    assert_int_equal(student_create(&mc, &sc->cfg, ops_cpu(), s.B, s.T, 1), 0);
    assert_int_equal(student_create(&mg, &sc->cfg, gpu, s.B, s.T, 1), 0);
    if (sc->randomize) assert_int_equal(scase_randomize(&mc, 11), 0);
    /* the same weights on both sides, rounded to the act dtype so that only the arithmetic
     * differs */
    for (size_t i = 0; i < mc.n_params; i++) mc.master[i] = act_round(gpu, mc.master[i]);
    const float scale = gpu->act_dtype == DT_F16 ? sc->f16_loss_scale : 1.0f;
    mg.loss_scale = scale;
    print_message("act dtype %s, loss scale %g\n", gpu->act_dtype == DT_F16 ? "f16" : "bf16", scale);
    assert_int_equal(gpu->to_device(mg.master, mc.master, mc.n_params * sizeof(float)), 0);
    assert_int_equal(student_sync_weights(&mc), 0);
    assert_int_equal(student_sync_weights(&mg), 0);
    float *w0 = malloc(mc.n_params * sizeof(float));
    assert_non_null(w0);
    memcpy(w0, mc.master, mc.n_params * sizeof(float));

    const int32_t *doc = sc->cfg.doc_mask ? s.doc : NULL;
    float lcpu = 0, lgpu = 0;
    assert_int_equal(student_forward(&mc, s.ids, s.targets, doc, scase_teacher(&s), &s.lc, &lcpu), 0);
    int rc = student_forward(&mg, s.ids, s.targets, doc, scase_teacher(&s), &s.lc, &lgpu);
    if (rc) print_message("cuda forward: %s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    print_message("loss cpu %.6f cuda %.6f rel err %.3g (tolerance %.0e)\n", lcpu, lgpu,
                  fabs(lgpu - lcpu) / fabs(lcpu), tol_loss(gpu));
    assert_true(fabs(lgpu - lcpu) <= tol_loss(gpu) * fabs(lcpu));

    assert_int_equal(student_backward(&mc), 0);
    rc = student_backward(&mg);
    if (rc) print_message("cuda backward: %s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    float *gg = grads_host(&mg, scale);
    double gworst = compare_views(&mc.cfg, gg, (float *)mc.gbuf, TOL_GRAD, "gradient");
    assert_true(gworst <= TOL_GRAD);

    struct optim_config oc = {.lr = 1e-4f, .min_lr = 1e-4f, .total_steps = 10,
                              .schedule = OPTIM_CONSTANT, .weight_decay = 0.1f, .clip_norm = 1.0f};
    struct optim_config ocg = oc;   /* the GPU's optimizer divides out the loss scale */
    ocg.loss_scale = scale > 1.0f ? scale : 0.0f;
    struct optim oc_cpu, oc_gpu;
    assert_int_equal(optim_create(&oc_cpu, &oc, ops_cpu(), mc.n_params, mc.n_decay), 0);
    assert_int_equal(optim_create(&oc_gpu, &ocg, gpu, mg.n_params, mg.n_decay), 0);
    assert_true(optim_loss_scale(&oc_gpu) == scale);
    assert_int_equal(optim_step(&oc_cpu, mc.master, mc.wbuf, mc.gbuf), 0);
    assert_int_equal(optim_step(&oc_gpu, mg.master, mg.wbuf, mg.gbuf), 0);
    print_message("gradient norm cpu %.6g cuda %.6g\n", oc_cpu.last_norm, oc_gpu.last_norm);
    assert_true(fabs(oc_gpu.last_norm - oc_cpu.last_norm) <= TOL_GRAD * oc_cpu.last_norm);
    float *wg = master_host(&mg);
    double wworst = compare_views(&mc.cfg, wg, mc.master, TOL_WEIGHT, "updated weight");
    assert_true(wworst <= TOL_WEIGHT);
    size_t moved = 0, agree = 0;
    for (size_t i = 0; i < mc.n_params; i++) {
        float dc = mc.master[i] - w0[i], dg = wg[i] - w0[i];
        if (dc == 0.0f) continue;
        moved++;
        agree += (dc > 0) == (dg > 0) && dg != 0.0f;
    }
    double frac = moved ? (double)agree / moved : 0.0;
    print_message("AdamW update sign agreement %.4f over %zu moved weights\n", frac, moved);
    assert_true(moved > 0 && frac >= MIN_SIGN_AGREE);

    optim_free(&oc_cpu);
    optim_free(&oc_gpu);
    free(gg);
    free(wg);
    free(w0);
    student_free(&mc);
    student_free(&mg);
    scase_free(&s);
}

/* odd shapes, GQA, untied, document mask + window, smoothing + forward KD */
static void test_step_small(void **st) {
    (void)st;
    struct step_case sc = {.cfg = scase_small_config(0), .B = 2, .T = 16, .K = 5, .randomize = 1,
                           .f16_loss_scale = 64,
                           .lc = {.smoothing = 0.1f, .alpha = 0.5f, .mode = KD_FORWARD,
                                  .temperature = 2.0f}};
    sc.cfg.doc_mask = 1;
    sc.cfg.window = 5;
    check_step(&sc);
}

/* configs/student/dev.yaml: 12 layers, C 512, 8 heads / 4 kv heads, SwiGLU 1408, tied */
static void test_step_dev(void **st) {
    (void)st;
    struct step_case sc = {.cfg = {.n_layers = 12, .d_model = 512, .n_heads = 8, .n_kv_heads = 4,
                                   .d_ff = 1408, .vocab = 32000, .max_seq = 512, .tied = 1,
                                   .rope_theta = 10000.0f, .norm_eps = 1e-5f},
                           .B = 2, .T = 256, .K = 0, .lc = {.smoothing = 0.0f}, .f16_loss_scale = 16384};
    check_step(&sc);
}

/* the same dev-tier step with gradient checkpointing (blocks recomputed in backward) */
static void test_step_dev_checkpoint(void **st) {
    (void)st;
    struct step_case sc = {.cfg = {.n_layers = 12, .d_model = 512, .n_heads = 8, .n_kv_heads = 4,
                                   .d_ff = 1408, .vocab = 32000, .max_seq = 512, .tied = 1,
                                   .rope_theta = 10000.0f, .norm_eps = 1e-5f, .grad_checkpoint = 1},
                           .B = 2, .T = 256, .K = 0, .lc = {.smoothing = 0.0f}, .f16_loss_scale = 16384};
    check_step(&sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_small),
        cmocka_unit_test(test_step_dev),
        cmocka_unit_test(test_step_dev_checkpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
