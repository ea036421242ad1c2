// libs: student kernels cuda core
/* The multimodal encoders and the modality prefix against the PyTorch reference
 * (tests/oracle/encoder_ref.py, float64 autograd): each encoder's output, every
 * parameter gradient and the input gradient, ‖a − b‖₂/‖b‖₂ ≤ 1e-5 per tensor in f32;
 * the student with an image prefix (and with all four modalities): loss and every
 * student and encoder gradient, same tolerance. Also: the loss covers text rows only,
 * text positions follow the prefix, the Morton grouping's invariants, config errors,
 * and a student without encoders has no prefix. On a GPU (skipped without one): the
 * prefix, student and encoder step on CUDA (bf16) against the CPU (f32) from the same
 * bf16-representable weights and inputs: loss ≤ 2e-2, every gradient ≤ 5e-2 relative. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/core/config_student.h"
#include "common/core/dtype.h"
#include "models/student/encoders.h"
#include "tests/unit/student_case.h"

#define TOL 1e-5

static void fill_normal(float *x, size_t n, float std, struct rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = std * rng_normal(r);
}

/* encoder weights large enough to carry signal through every path */
static void randomize_encoders(struct encoders *e, uint64_t seed) {
    struct rng r;
    rng_seed(&r, seed);
    fill_normal(e->master, e->n_params, 0.5f, &r);
    assert_int_equal(encoders_sync_weights(e), 0);
}

static void json_enc(FILE *f, const struct encoder_config *c) {
    fprintf(f, "\"enc\":{\"d_model\":%d,\"image\":%d,\"video_frames\":%d,\"patch_dim\":%d,"
               "\"grid_rows\":%d,\"grid_cols\":%d,\"audio_tokens\":%d,\"mel_bins\":%d,"
               "\"audio_stride\":%d,\"mesh_tokens\":%d,\"mesh_points\":%d,\"mesh_hidden\":%d}",
            c->d_model, c->image, c->video_frames, c->patch_dim, c->grid_rows, c->grid_cols,
            c->audio_tokens, c->mel_bins, c->audio_stride, c->mesh_tokens, c->mesh_points,
            c->mesh_hidden);
}

static void json_views(FILE *f, const char *key, const struct param_view *v, int nv) {
    fprintf(f, "\"%s\":[", key);
    for (int i = 0; i < nv; i++) {
        if (v[i].ndim == 2)
            fprintf(f, "%s[\"%s\",[%lld,%lld]]", i ? "," : "", v[i].name, (long long)v[i].shape[0],
                    (long long)v[i].shape[1]);
        else
            fprintf(f, "%s[\"%s\",[%lld]]", i ? "," : "", v[i].name, (long long)v[i].shape[0]);
    }
    fprintf(f, "]");
}

/* a temp dir for one oracle run */
struct oracle { char dir[64]; FILE *json, *params, *inputs; };

static void oracle_open(struct oracle *o) {
    snprintf(o->dir, sizeof o->dir, "/tmp/sushi_enc_XXXXXX");
    assert_non_null(mkdtemp(o->dir));
    char p[128];
    snprintf(p, sizeof p, "%s/case.json", o->dir);
    o->json = fopen(p, "w");
    snprintf(p, sizeof p, "%s/params.bin", o->dir);
    o->params = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/inputs.bin", o->dir);
    o->inputs = fopen(p, "wb");
    assert_true(o->json && o->params && o->inputs);
}

/* closes the files, runs the oracle, reads n float64 results into out */
static void oracle_run(struct oracle *o, double *out, size_t n) {
    fclose(o->json);
    fclose(o->params);
    fclose(o->inputs);
    char cmd[512], p[128];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/encoder_ref.py %s", scase_root(), o->dir);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/out.bin", o->dir);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    assert_int_equal(fread(out, sizeof(double), n, f), n);
    fclose(f);
    snprintf(cmd, sizeof cmd, "rm -rf %s", o->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", o->dir);
}

static double check(const char *what, const float *a, const double *ref, size_t n) {
    double e = scase_rel_err(a, ref, n);
    if (e > TOL) print_message("  %s: rel err %.3g\n", what, e);
    assert_true(e <= TOL);
    return e;
}

/* ---- one encoder vs torch ------------------------------------------------------------ */

static size_t input_len(const struct encoder_config *c, const char *mod, int B) {
    size_t np = (size_t)c->grid_rows * c->grid_cols;
    if (!strcmp(mod, "image")) return B * np * c->patch_dim;
    if (!strcmp(mod, "video")) return B * (size_t)c->video_frames * np * c->patch_dim;
    if (!strcmp(mod, "audio")) return B * (size_t)c->audio_tokens * c->audio_stride * c->mel_bins;
    return B * (size_t)c->mesh_points * 6;
}

static void check_encoder(struct encoder_config cfg, const char *mod) {
    if (!scase_have_torch()) skip();
    const int B = 2;
    struct encoders e;
    assert_int_equal(encoders_create(&e, &cfg, ops_cpu(), B, 3), 0);
    randomize_encoders(&e, 17);
    size_t nx = input_len(&e.cfg, mod, B);
    struct rng r;
    rng_seed(&r, 29);
    float *x = malloc(nx * sizeof *x);
    fill_normal(x, nx, 1.0f, &r);
    int rc = 0;
    void *out = NULL;
    size_t rows = 0;
    if (!strcmp(mod, "image")) rc = encoder_image_forward(&e, x), out = e.image.out, rows = e.image.rows;
    else if (!strcmp(mod, "video")) rc = encoder_video_forward(&e, x), out = e.video.out, rows = e.video.rows;
    else if (!strcmp(mod, "audio")) rc = encoder_audio_forward(&e, x), out = e.audio.out, rows = e.audio.rows;
    else rc = encoder_mesh_forward(&e, x), out = e.mesh.out, rows = e.cfg.mesh_tokens;
    assert_int_equal(rc, 0);
    size_t ny = B * rows * cfg.d_model;
    float *dout = malloc(ny * sizeof *dout), *dx = calloc(nx, sizeof *dx);
    fill_normal(dout, ny, 1.0f, &r);
    if (!strcmp(mod, "image")) rc = encoder_image_backward(&e, dout, dx);
    else if (!strcmp(mod, "video")) rc = encoder_video_backward(&e, dout, dx);
    else if (!strcmp(mod, "audio")) rc = encoder_audio_backward(&e, dout, dx);
    else rc = encoder_mesh_backward(&e, dout, dx);
    assert_int_equal(rc, 0);

    struct oracle o;
    oracle_open(&o);
    struct param_view v[16], gv[16];
    int nv = encoder_param_views(&e.cfg, e.master, v, 16);
    assert_int_equal(encoder_param_views(&e.cfg, (float *)e.gbuf, gv, 16), nv);
    fprintf(o.json, "{\"mode\":\"encoder\",\"modality\":\"%s\",\"B\":%d,", mod, B);
    json_enc(o.json, &e.cfg);
    fprintf(o.json, ",");
    json_views(o.json, "params", v, nv);
    fprintf(o.json, "}\n");
    for (int i = 0; i < nv; i++) fwrite(v[i].data, 4, v[i].numel, o.params);
    fwrite(x, 4, nx, o.inputs);
    fwrite(dout, 4, ny, o.inputs);
    double *ref = malloc((ny + e.n_params + nx) * sizeof *ref);
    oracle_run(&o, ref, ny + e.n_params + nx);
    double worst = check("output", out, ref, ny);
    size_t off = ny;
    for (int i = 0; i < nv; i++) {
        double er = check(gv[i].name, gv[i].data, ref + off, gv[i].numel);
        worst = er > worst ? er : worst;
        off += gv[i].numel;
    }
    double ex = check("input gradient", dx, ref + off, nx);
    print_message("%s: worst rel err %.3g over output, %d parameter gradients and dx (%.3g)\n",
                  mod, ex > worst ? ex : worst, nv, ex);
    free(ref); free(x); free(dout); free(dx);
    encoders_free(&e);
}

static struct encoder_config enc_base(void) {
    return (struct encoder_config){.d_model = 20, .patch_dim = 12, .grid_rows = 2, .grid_cols = 3,
                                   .mel_bins = 80, .audio_stride = 3, .mesh_points = 17,
                                   .mesh_hidden = 10};
}

static void test_image(void **st) {
    (void)st;
    struct encoder_config c = enc_base();
    c.image = 1;
    check_encoder(c, "image");
}

static void test_video(void **st) {
    (void)st;
    struct encoder_config c = enc_base();
    c.video_frames = 3;
    check_encoder(c, "video");
}

static void test_audio(void **st) {
    (void)st;
    struct encoder_config c = enc_base();
    c.audio_tokens = 4;
    check_encoder(c, "audio");
}

static void test_mesh(void **st) {
    (void)st;
    struct encoder_config c = enc_base();
    c.mesh_tokens = 3;
    check_encoder(c, "mesh");
}

/* ---- the student with a prefix vs torch ---------------------------------------------- */

static void check_student_prefix(struct encoder_config ec, int K, struct student_loss_cfg lc, int gc) {
    if (!scase_have_torch()) skip();
    struct student_config cfg = scase_small_config(K == 0);
    cfg.grad_checkpoint = gc;
    cfg.max_seq = 48;
    cfg.window = 9;
    cfg.enc = ec;
    struct scase s = {.cfg = cfg, .B = 2, .T = 7, .K = K, .lc = lc};
    struct student_model m;
    struct encoders e;
    const struct ops *o = ops_cpu();
    assert_int_equal(student_create(&m, &cfg, o, s.B, s.T, 7), 0);
    assert_int_equal(encoders_create(&e, &m.cfg.enc, o, s.B, 5), 0);
    assert_int_equal(m.P, encoder_prefix_len(&e.cfg));
    assert_int_equal(m.S, m.P + s.T);
    assert_int_equal(scase_randomize(&m, 11), 0);
    randomize_encoders(&e, 13);
    scase_fill(&s, 5);

    const char *mods[4] = {"image", "video", "audio", "mesh"};
    int on[4] = {ec.image, ec.video_frames > 0, ec.audio_tokens > 0, ec.mesh_tokens > 0};
    float *x[4] = {0};
    struct rng r;
    rng_seed(&r, 31);
    for (int i = 0; i < 4; i++)
        if (on[i]) {
            size_t n = input_len(&e.cfg, mods[i], s.B);
            x[i] = malloc(n * sizeof(float));
            fill_normal(x[i], n, 1.0f, &r);
        }
    struct encoder_inputs in = {x[0], x[1], x[2], x[3]};
    size_t npre = (size_t)s.B * m.P * cfg.d_model;
    void *prefix = o->alloc(npre * 4), *dprefix = o->alloc(npre * 4);
    float loss;
    assert_int_equal(encoder_prefix_forward(&e, &in, prefix), 0);
    assert_int_equal(student_forward_prefix(&m, prefix, s.ids, s.targets, NULL, scase_teacher(&s), &lc, &loss), 0);
    assert_int_equal(student_backward_prefix(&m, dprefix), 0);
    assert_int_equal(encoder_prefix_backward(&e, dprefix), 0);

    /* the loss counts text rows with a target, nothing of the prefix */
    int valid = 0;
    for (int n = 0; n < s.B * s.T; n++) valid += s.targets[n] >= 0;
    assert_int_equal(m.n_valid, valid);
    /* RoPE positions: 0..P−1 on the prefix, P..P+T−1 on the text */
    for (int n = 0; n < s.B * m.S; n++) assert_int_equal(m.in.pos[n], n % m.S);

    struct oracle or;
    oracle_open(&or);
    struct param_view v[16], gv[16], pv[64], pg[64];
    int nv = encoder_param_views(&e.cfg, e.master, v, 16);
    encoder_param_views(&e.cfg, (float *)e.gbuf, gv, 16);
    int ns = student_param_views(&m.cfg, m.master, pv, 64);
    assert_int_equal(student_param_views(&m.cfg, (float *)m.gbuf, pg, 64), ns);
    fprintf(or.json, "{\"mode\":\"student\",\"B\":%d,\"modalities\":[", s.B);
    for (int i = 0, k = 0; i < 4; i++)
        if (on[i]) fprintf(or.json, "%s\"%s\"", k++ ? "," : "", mods[i]);
    fprintf(or.json, "],\"config\":{\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,\"d_head\":%d,"
                     "\"vocab\":%d,\"tied\":%d,\"rope_theta\":%.9g,\"norm_eps\":%.9g,\"window\":%d,"
                     "\"T\":%d,\"k\":%d,\"smoothing\":%.9g,\"alpha\":%.9g,\"mode\":%d,"
                     "\"temperature\":%.9g,\"jsd_beta\":%.9g},",
            cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.vocab, cfg.tied,
            cfg.rope_theta, cfg.norm_eps, cfg.window, s.T, K, lc.smoothing, lc.alpha, (int)lc.mode,
            lc.temperature, lc.jsd_beta);
    json_enc(or.json, &e.cfg);
    fprintf(or.json, ",");
    json_views(or.json, "params", v, nv);
    fprintf(or.json, ",");
    json_views(or.json, "student_params", pv, ns);
    fprintf(or.json, "}\n");
    for (int i = 0; i < nv; i++) fwrite(v[i].data, 4, v[i].numel, or.params);
    for (int i = 0; i < ns; i++) fwrite(pv[i].data, 4, pv[i].numel, or.params);
    for (int i = 0; i < 4; i++)
        if (on[i]) fwrite(x[i], 4, input_len(&e.cfg, mods[i], s.B), or.inputs);
    size_t N = (size_t)s.B * s.T;
    fwrite(s.ids, 4, N, or.inputs);
    fwrite(s.targets, 4, N, or.inputs);
    if (K) {
        fwrite(s.tk_ids, 4, N * K, or.inputs);
        fwrite(s.tk_lp, 4, N * K, or.inputs);
        fwrite(s.tail, 4, N, or.inputs);
    }
    size_t nref = 1 + m.n_params + e.n_params;
    double *ref = malloc(nref * sizeof *ref);
    oracle_run(&or, ref, nref);
    print_message("loss %.7f (torch %.7f)\n", loss, ref[0]);
    assert_true(fabs(loss - ref[0]) <= TOL * fabs(ref[0]));
    size_t off = 1;
    double worst = 0;
    for (int i = 0; i < ns; i++) {
        double er = check(pg[i].name, pg[i].data, ref + off, pg[i].numel);
        worst = er > worst ? er : worst;
        off += pg[i].numel;
    }
    for (int i = 0; i < nv; i++) {
        double er = check(gv[i].name, gv[i].data, ref + off, gv[i].numel);
        worst = er > worst ? er : worst;
        off += gv[i].numel;
    }
    print_message("worst gradient rel err %.3g over %d student and %d encoder tensors\n", worst, ns, nv);
    free(ref);
    for (int i = 0; i < 4; i++) free(x[i]);
    o->free(prefix);
    o->free(dprefix);
    encoders_free(&e);
    student_free(&m);
    scase_free(&s);
}

static void test_student_image_prefix(void **st) {
    (void)st;
    struct encoder_config c = enc_base();
    c.image = 1;
    check_student_prefix(c, 0, (struct student_loss_cfg){.smoothing = 0.1f}, 0);
}

static void test_student_all_modalities_kd(void **st) {
    (void)st;
    struct encoder_config c = enc_base();
    c.image = 1;
    c.video_frames = 2;
    c.audio_tokens = 3;
    c.mesh_tokens = 3;
    struct student_loss_cfg lc = {.smoothing = 0.0f, .alpha = 0.6f, .mode = KD_FORWARD, .temperature = 2.0f};
    check_student_prefix(c, 4, lc, 1);   /* untied, KD, gradient checkpointing */
}

/* ---- properties without torch -------------------------------------------------------- */

/* the same prefix gives the same loss and a different one changes it (the prefix reaches
 * the text); a forward without the prefix and a non-finite input are refused */
static void test_prefix_reaches_text(void **st) {
    (void)st;
    struct student_config cfg = scase_small_config(1);
    cfg.max_seq = 24;
    cfg.enc = enc_base();
    cfg.enc.image = 1;
    struct scase s = {.cfg = cfg, .B = 2, .T = 5};
    struct student_model m;
    struct encoders e;
    const struct ops *o = ops_cpu();
    assert_int_equal(student_create(&m, &cfg, o, s.B, s.T, 7), 0);
    assert_int_equal(encoders_create(&e, &m.cfg.enc, o, s.B, 5), 0);
    scase_fill(&s, 3);
    size_t nx = input_len(&e.cfg, "image", s.B), npre = (size_t)s.B * m.P * cfg.d_model;
    float *x = calloc(nx, sizeof *x);
    void *prefix = o->alloc(npre * 4);
    struct student_loss_cfg lc = {0};
    float l0, l1, l2;
    struct encoder_inputs in = {.image = x};
    assert_int_equal(encoder_prefix_forward(&e, &in, prefix), 0);
    assert_int_equal(student_forward_prefix(&m, prefix, s.ids, s.targets, NULL, NULL, &lc, &l0), 0);
    assert_int_equal(student_forward_prefix(&m, prefix, s.ids, s.targets, NULL, NULL, &lc, &l1), 0);
    assert_true(l0 == l1);                       /* deterministic */
    for (size_t i = 0; i < nx; i++) x[i] = 1.0f;
    assert_int_equal(encoder_prefix_forward(&e, &in, prefix), 0);
    assert_int_equal(student_forward_prefix(&m, prefix, s.ids, s.targets, NULL, NULL, &lc, &l2), 0);
    assert_true(l2 != l0);
    /* the wrong calls are refused */
    assert_true(student_forward(&m, s.ids, s.targets, NULL, NULL, &lc, &l0) < 0);
    x[3] = NAN;
    assert_true(encoder_prefix_forward(&e, &in, prefix) < 0);
    free(x);
    o->free(prefix);
    encoders_free(&e);
    student_free(&m);
    scase_free(&s);
}

/* every point in exactly one group, groups of ⌊P/M⌋ or ⌈P/M⌉ points, rows summing to 1,
 * and the grouping follows the points when their order is shuffled */
static void test_mesh_grouping(void **st) {
    (void)st;
    enum { P = 23, M = 4 };
    float pts[P * 6], shuf[P * 6], pool[M * P], pool2[M * P];
    struct rng r;
    rng_seed(&r, 9);
    fill_normal(pts, P * 6, 1.0f, &r);
    assert_int_equal(encoder_mesh_pool_matrix(pts, P, M, pool), 0);
    for (int p = 0; p < P; p++) {
        int groups = 0;
        for (int g = 0; g < M; g++) groups += pool[g * P + p] != 0;
        assert_int_equal(groups, 1);
    }
    for (int g = 0; g < M; g++) {
        double sum = 0;
        int cnt = 0;
        for (int p = 0; p < P; p++) sum += pool[g * P + p], cnt += pool[g * P + p] != 0;
        assert_true(fabs(sum - 1.0) < 1e-6);
        assert_true(cnt == P / M || cnt == P / M + 1);
    }
    int perm[P];
    for (int p = 0; p < P; p++) perm[p] = (p * 7 + 3) % P;   /* 7 is coprime with 23 */
    for (int p = 0; p < P; p++) memcpy(shuf + p * 6, pts + perm[p] * 6, 6 * sizeof(float));
    assert_int_equal(encoder_mesh_pool_matrix(shuf, P, M, pool2), 0);
    for (int g = 0; g < M; g++)
        for (int p = 0; p < P; p++) assert_true(pool2[g * P + p] == pool[g * P + perm[p]]);
    assert_true(encoder_mesh_pool_matrix(pts, 3, M, pool) < 0);
}

static void test_config_errors(void **st) {
    (void)st;
    struct student_config c = scase_small_config(1);
    assert_int_equal(student_config_validate(&c), 0);
    assert_int_equal(encoder_prefix_len(&c.enc), 0);
    c.enc = enc_base();
    c.enc.mesh_tokens = 30;                  /* more tokens than points */
    assert_true(student_config_validate(&c) < 0);
    c.enc = enc_base();
    c.enc.image = 1;
    c.enc.grid_rows = 8;                     /* prefix 2 + 24 ≥ max_seq 16 */
    assert_true(student_config_validate(&c) < 0);
    c.enc.grid_rows = 2;
    c.doc_mask = 1;
    assert_true(student_config_validate(&c) < 0);
    c.doc_mask = 0;
    assert_int_equal(student_config_validate(&c), 0);
    assert_int_equal(encoder_prefix_len(&c.enc), 8);
    struct student_model m;                  /* prefix 8 + T 9 > max_seq 16 */
    assert_true(student_create(&m, &c, ops_cpu(), 1, 9, 1) < 0);
}

/* without encoders the model has no prefix, and a prefix is refused */
static void test_no_prefix(void **st) {
    (void)st;
    struct student_config cfg = scase_small_config(0);
    struct scase s = {.cfg = cfg, .B = 2, .T = 6};
    struct student_model m;
    assert_int_equal(student_create(&m, &cfg, ops_cpu(), s.B, s.T, 7), 0);
    assert_int_equal(m.P, 0);
    assert_int_equal(m.S, s.T);
    scase_fill(&s, 2);
    struct student_loss_cfg lc = {0};
    float l0, l1, dummy[4];
    assert_int_equal(student_forward(&m, s.ids, s.targets, NULL, NULL, &lc, &l0), 0);
    assert_true(student_forward_prefix(&m, dummy, s.ids, s.targets, NULL, NULL, &lc, &l1) < 0);
    assert_int_equal(student_forward_prefix(&m, NULL, s.ids, s.targets, NULL, NULL, &lc, &l1), 0);
    assert_true(l0 == l1);
    assert_true(student_backward_prefix(&m, dummy) < 0);
    student_free(&m);
    scase_free(&s);
}

/* model.encoders parses, round-trips, refuses unknown keys, and is not written when off */
static void test_config_json(void **st) {
    (void)st;
    json_error_t jerr;
    json_t *j = json_loads("{\"n_layers\":1,\"d_model\":20,\"n_heads\":2,\"d_ff\":8,\"vocab\":10,"
                           "\"max_seq\":64,\"encoders\":{\"image\":true,\"patch_dim\":48,"
                           "\"grid_rows\":2,\"grid_cols\":2,\"mesh_tokens\":4,\"mesh_points\":64,"
                           "\"mesh_hidden\":16}}", 0, &jerr);
    assert_non_null(j);
    struct ju_where w = {"test.yaml", "model"};
    struct student_config c;
    assert_int_equal(config_student_from_json(j, w, &c), 0);
    assert_int_equal(c.enc.image, 1);
    assert_int_equal(c.enc.patch_dim, 48);
    assert_int_equal(c.enc.mesh_points, 64);
    assert_int_equal(student_config_validate(&c), 0);
    assert_int_equal(encoder_prefix_len(&c.enc), 2 + 4 + 4);
    json_t *back = config_student_to_json(&c);
    struct student_config c2;
    assert_int_equal(config_student_from_json(back, w, &c2), 0);
    assert_int_equal(c2.enc.mesh_hidden, 16);
    assert_int_equal(c2.enc.grid_cols, 2);
    json_decref(back);
    json_object_set_new(json_object_get(j, "encoders"), "bogus", json_integer(1));
    assert_true(config_student_from_json(j, w, &c) < 0);
    json_object_del(j, "encoders");
    assert_int_equal(config_student_from_json(j, w, &c), 0);
    assert_int_equal(encoder_enabled(&c.enc), 0);
    back = config_student_to_json(&c);
    assert_null(json_object_get(back, "encoders"));
    json_decref(back);
    json_decref(j);
}

/* ---- CUDA (bf16) against CPU (f32) ------------------------------------------------------ */

struct side {
    struct student_model m;
    struct encoders e;
    float loss;
    float *sg, *eg;     /* host f32 gradients */
};

static void run_side(struct side *sd, const struct ops *o, const struct student_config *cfg,
                     const float *sw, const float *ew, const struct encoder_inputs *in,
                     struct scase *s, const struct student_loss_cfg *lc) {
    assert_int_equal(student_create(&sd->m, cfg, o, s->B, s->T, 7), 0);
    assert_int_equal(encoders_create(&sd->e, &sd->m.cfg.enc, o, s->B, 5), 0);
    assert_int_equal(o->to_device(sd->m.master, sw, sd->m.n_params * 4), 0);
    assert_int_equal(o->to_device(sd->e.master, ew, sd->e.n_params * 4), 0);
    assert_int_equal(student_sync_weights(&sd->m), 0);
    assert_int_equal(encoders_sync_weights(&sd->e), 0);
    size_t npre = (size_t)s->B * sd->m.P * cfg->d_model * 4;
    void *prefix = o->alloc(npre), *dprefix = o->alloc(npre);
    assert_true(prefix && dprefix);
    assert_int_equal(encoder_prefix_forward(&sd->e, in, prefix), 0);
    assert_int_equal(student_forward_prefix(&sd->m, prefix, s->ids, s->targets, NULL, scase_teacher(s), lc,
                                            &sd->loss), 0);
    assert_int_equal(student_backward_prefix(&sd->m, dprefix), 0);
    assert_int_equal(encoder_prefix_backward(&sd->e, dprefix), 0);
    sd->sg = malloc(sd->m.n_params * 4);
    sd->eg = malloc(sd->e.n_params * 4);
    assert_int_equal(o->act_to_f32(sd->sg, sd->m.gbuf, sd->m.n_params), 0);
    assert_int_equal(o->act_to_f32(sd->eg, sd->e.gbuf, sd->e.n_params), 0);
    o->free(prefix);
    o->free(dprefix);
}

static double rel_f32(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_cuda_matches_cpu(void **st) {
    (void)st;
    const struct ops *gpu = ops_cuda();
    if (!gpu) skip();
    struct student_config cfg = scase_small_config(0);
    cfg.max_seq = 48;
    cfg.enc = enc_base();
    cfg.enc.image = 1;
    cfg.enc.video_frames = 2;
    cfg.enc.audio_tokens = 3;
    cfg.enc.mesh_tokens = 3;
    assert_int_equal(student_config_validate(&cfg), 0);
    struct scase s = {.cfg = cfg, .B = 2, .T = 9, .K = 4};
    struct student_loss_cfg lc = {.smoothing = 0.1f, .alpha = 0.5f, .mode = KD_FORWARD, .temperature = 1.0f};
    scase_fill(&s, 4);
    size_t ns = student_param_count(&cfg), ne = encoder_param_count(&cfg.enc);
    float *sw = malloc(ns * 4), *ew = malloc(ne * 4);
    struct rng r;
    rng_seed(&r, 8);
    fill_normal(sw, ns, 0.25f, &r);
    fill_normal(ew, ne, 0.25f, &r);
    size_t n_norm = (size_t)cfg.n_layers * cfg.d_model * 2 + cfg.d_model;   /* trailing norms */
    for (size_t i = ns - n_norm; i < ns; i++) sw[i] += 1.0f;
    for (size_t i = 0; i < ns; i++) sw[i] = bf16_to_f32(f32_to_bf16(sw[i]));
    for (size_t i = 0; i < ne; i++) ew[i] = bf16_to_f32(f32_to_bf16(ew[i]));
    const char *mods[4] = {"image", "video", "audio", "mesh"};
    float *x[4];
    for (int i = 0; i < 4; i++) {
        size_t n = input_len(&cfg.enc, mods[i], s.B);
        x[i] = malloc(n * 4);
        fill_normal(x[i], n, 1.0f, &r);
        for (size_t j = 0; j < n; j++) x[i][j] = bf16_to_f32(f32_to_bf16(x[i][j]));
    }
    struct encoder_inputs in = {x[0], x[1], x[2], x[3]};
    struct side c = {0}, g = {0};
    run_side(&c, ops_cpu(), &cfg, sw, ew, &in, &s, &lc);
    run_side(&g, gpu, &cfg, sw, ew, &in, &s, &lc);
    print_message("loss cpu %.6f cuda %.6f\n", c.loss, g.loss);
    assert_true(fabs(g.loss - c.loss) <= 2e-2 * fabs(c.loss));
    struct param_view pv[64];
    int nv = student_param_views(&c.m.cfg, c.sg, pv, 64);
    double worst = 0;
    for (int i = 0; i < nv; i++) {
        double er = rel_f32(g.sg + (pv[i].data - c.sg), pv[i].data, pv[i].numel);
        if (er > 5e-2) print_message("  %s: rel err %.3g\n", pv[i].name, er);
        worst = er > worst ? er : worst;
    }
    struct param_view ev[16];
    int nev = encoder_param_views(&c.e.cfg, c.eg, ev, 16);
    for (int i = 0; i < nev; i++) {
        double er = rel_f32(g.eg + (ev[i].data - c.eg), ev[i].data, ev[i].numel);
        if (er > 5e-2) print_message("  %s: rel err %.3g\n", ev[i].name, er);
        worst = er > worst ? er : worst;
    }
    print_message("worst gradient rel err cuda vs cpu %.3g over %d + %d tensors\n", worst, nv, nev);
    assert_true(worst <= 5e-2);
    struct side *sides[2] = {&c, &g};
    for (int k = 0; k < 2; k++) {
        free(sides[k]->sg);
        free(sides[k]->eg);
        encoders_free(&sides[k]->e);
        student_free(&sides[k]->m);
    }
    for (int i = 0; i < 4; i++) free(x[i]);
    free(sw);
    free(ew);
    scase_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image),
        cmocka_unit_test(test_video),
        cmocka_unit_test(test_audio),
        cmocka_unit_test(test_mesh),
        cmocka_unit_test(test_student_image_prefix),
        cmocka_unit_test(test_student_all_modalities_kd),
        cmocka_unit_test(test_prefix_reaches_text),
        cmocka_unit_test(test_mesh_grouping),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_no_prefix),
        cmocka_unit_test(test_config_json),
        cmocka_unit_test(test_cuda_matches_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
