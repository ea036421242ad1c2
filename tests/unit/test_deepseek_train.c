// libs: deepseek student kernels core
/* Training a DeepSeek-style model (models/deepseek/train*.c) on tiny configs with a MoE
 * layer: the loss and every parameter gradient against PyTorch autograd
 * (tests/oracle/deepseek_train_ref.py, float64; loss within 1e-5 relative, each
 * gradient tensor ‖a − b‖₂/‖b‖₂ ≤ 1e-4 in f32) with document segments and both the
 * label-smoothed cross-entropy and the top-K KD losses; AdamW steps reduce the loss;
 * a saved model loads in ds_load (inference) and gives the training forward's logits;
 * save → load → continue gives losses bit-identical to an uninterrupted run; bad input
 * (config mismatch, truncated files, out-of-range ids, bad YAML fields) is refused
 * with a message naming the cause. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/deepseek/deepseek.h"
#include "models/optim.h"
#include "models/rng.h"
#include "models/student/student.h"

enum { B = 2, T = 12, N = B * T, K = 4 };

static const char *repo_root(void) {
    const char *r = getenv("SUSHI_REPO_ROOT");
    return r && *r ? r : ".";
}

static int have_torch(void) { return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0; }

/* V3 flavour: q_lora, YaRN, untied, sigmoid noaux_tc with 2 groups; layer 0 dense, 1 MoE */
static const char *cfg_v3 =
    "{\"arch\": \"deepseek\", \"vocab_size\": 53, \"hidden_size\": 32, \"intermediate_size\": 40,"
    " \"moe_intermediate_size\": 16, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"q_lora_rank\": 24,"
    " \"kv_lora_rank\": 16, \"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 8, \"v_head_dim\": 12,"
    " \"n_routed_experts\": 4, \"n_shared_experts\": 1, \"num_experts_per_tok\": 2, \"n_group\": 2,"
    " \"topk_group\": 1, \"routed_scaling_factor\": 2.5, \"norm_topk_prob\": true, \"first_k_dense_replace\": 1,"
    " \"rms_norm_eps\": 1e-6, \"max_position_embeddings\": 64, \"tie_word_embeddings\": false,"
    " \"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000.0, \"factor\": 2.0,"
    " \"original_max_position_embeddings\": 32, \"beta_fast\": 32, \"beta_slow\": 1, \"mscale\": 1.0,"
    " \"mscale_all_dim\": 1.0}}";
/* V2 flavour: plain q_proj (q_lora_rank 0), tied head, softmax greedy, two MoE layers */
static const char *cfg_v2 =
    "{\"model_type\": \"deepseek_v2\", \"vocab_size\": 47, \"hidden_size\": 24, \"intermediate_size\": 32,"
    " \"moe_intermediate_size\": 12, \"num_hidden_layers\": 3, \"num_attention_heads\": 3, \"q_lora_rank\": 0,"
    " \"kv_lora_rank\": 12, \"qk_nope_head_dim\": 6, \"qk_rope_head_dim\": 4, \"v_head_dim\": 8,"
    " \"n_routed_experts\": 4, \"n_shared_experts\": 2, \"num_experts_per_tok\": 2, \"first_k_dense_replace\": 1,"
    " \"scoring_func\": \"softmax\", \"topk_method\": \"greedy\", \"rms_norm_eps\": 1e-6,"
    " \"tie_word_embeddings\": true}";

static void parse(const char *text, struct ds_config *c) {
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    assert_non_null(j);
    int rc = ds_config_from_train_json(c, j, "test.yaml");
    if (rc) print_message("%s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    json_decref(j);
}

static int parse_rc(const char *text) {
    struct ds_config c;
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    int rc = ds_config_from_train_json(&c, j, "test.yaml");
    json_decref(j);
    return rc;
}

/* a batch: ids, targets (some ignored), doc ids (3 segments in row 0, 2 in row 1) and
 * a teacher's top-K from random logits through ds_topk */
struct batch {
    int32_t ids[N], targets[N], doc[N], tk_ids[N * K];
    float tk_lp[N * K], tail[N];
};

static void make_batch(struct batch *b, int V, int seed) {
    for (int i = 0; i < N; i++) {
        b->ids[i] = (int32_t)((i * 7 + seed * 13 + 3) % V);
        b->targets[i] = (i % 9 == 4) ? -1 : (int32_t)((i * 11 + seed * 5 + 1) % V);
        int t = i % T, row = i / T;
        b->doc[i] = row == 0 ? (t < 5 ? 10 : t < 9 ? 11 : 12) : (t < 7 ? 20 : 21);
    }
    float *z = malloc((size_t)V * sizeof(float));
    assert_non_null(z);
    for (int i = 0; i < N; i++) {
        for (int v = 0; v < V; v++) z[v] = 2.0f * (float)sin(0.7 * v * (i + 1) + seed);
        assert_int_equal(ds_topk(z, V, K, 1.0f, b->tk_ids + i * K, b->tk_lp + i * K, &b->tail[i]), 0);
    }
    free(z);
}

static struct student_teacher teacher_of(const struct batch *b) {
    return (struct student_teacher){.k = K, .topk_ids = b->tk_ids, .topk_logprobs = b->tk_lp, .tail_logprob = b->tail};
}

/* weights away from the init's near-zero regime: matrices normal(0, 0.7/sqrt(cols)),
 * norms 1 + 0.2 noise, router biases nonzero (they steer the choice only) */
static void perturb(struct ds_train *t) {
    struct ds_slot *s;
    int n = ds_train_slots(&t->m, &s, NULL);
    assert_true(n > 0);
    for (int i = 0; i < n; i++) {
        float *p = (float *)*s[i].p + s[i].off;
        size_t cnt = (size_t)s[i].rows * (size_t)(s[i].cols ? s[i].cols : 1);
        struct rng r;
        rng_seed(&r, 1000u + (uint64_t)i);
        for (size_t k = 0; k < cnt; k++) {
            double x = rng_normal(&r);
            p[k] = s[i].cols ? (float)(0.7 * x / sqrt((double)s[i].cols)) : (float)(1.0 + 0.2 * x);
        }
    }
    free(s);
    for (int l = 0; l < t->m.cfg.L; l++)
        for (int e = 0; t->m.layers[l].router_bias && e < t->m.cfg.n_routed; e++)
            t->m.layers[l].router_bias[e] = 0.05f * (float)(e % 3) - 0.04f;
}

static double rel_err(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* loss and every gradient against autograd */
static void check_grads(const char *cfg_text, int with_doc, int with_kd, enum kd_mode mode) {
    if (!have_torch()) skip();
    struct ds_config c;
    parse(cfg_text, &c);
    struct ds_train t;
    assert_int_equal(ds_train_create(&t, &c, ops_cpu(), B, T, 7, NULL), 0);
    perturb(&t);
    char dir[] = "/tmp/sushi-dst-XXXXXX", path[256], cmd[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ckpt", dir);
    assert_int_equal(ds_train_save(&t, path, NULL, NULL, NULL), 0);
    struct batch b;
    make_batch(&b, c.vocab, 1);
    struct student_loss_cfg lc = {.smoothing = 0.1f, .alpha = 0.6f, .mode = mode, .temperature = 1.5f, .jsd_beta = 0.3f};
    struct student_teacher tk = teacher_of(&b);
    float loss;
    assert_int_equal(ds_train_forward(&t, b.ids, b.targets, with_doc ? b.doc : NULL, with_kd ? &tk : NULL, &lc, &loss), 0);
    assert_int_equal(ds_train_backward(&t), 0);
    /* case.json with the parameter names in layout order, inputs.bin */
    struct ds_slot *s;
    int ns = ds_train_slots(&t.m, &s, NULL);
    json_t *names = json_array();
    for (int i = 0; i < ns; i++) json_array_append_new(names, json_string(s[i].name));
    json_t *cj = json_pack("{s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:i, s:f, s:f, s:o}", "B", B, "T", T, "k",
                           with_kd ? K : 0, "doc_mask", with_doc, "vocab", c.vocab, "smoothing", (double)lc.smoothing,
                           "alpha", (double)lc.alpha, "mode", (int)mode, "temperature", (double)lc.temperature,
                           "jsd_beta", (double)lc.jsd_beta, "params", names);
    snprintf(path, sizeof path, "%s/ckpt/case.json", dir);
    assert_int_equal(json_dump_file(cj, path, 0), 0);
    json_decref(cj);
    snprintf(path, sizeof path, "%s/ckpt/inputs.bin", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(b.ids, 4, N, f);
    fwrite(b.targets, 4, N, f);
    if (with_doc) fwrite(b.doc, 4, N, f);
    if (with_kd) {
        fwrite(b.tk_ids, 4, N * K, f);
        fwrite(b.tk_lp, 4, N * K, f);
        fwrite(b.tail, 4, N, f);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/deepseek_train_ref.py grad %s/ckpt", repo_root(), dir);
    assert_int_equal(system(cmd), 0);
    double *ref = malloc((1 + t.n_params) * sizeof(double));
    assert_non_null(ref);
    snprintf(path, sizeof path, "%s/ckpt/out.bin", dir);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, sizeof(double), 1 + t.n_params, f), 1 + t.n_params);
    fclose(f);
    double le = fabs(loss - ref[0]) / fabs(ref[0]), worst = 0;
    print_message("loss %.7f, autograd %.7f (rel %.2g)\n", loss, ref[0], le);
    assert_true(le <= 1e-5);
    size_t off = 0;
    const float *g = t.gbuf;
    for (int i = 0; i < ns; i++) {
        size_t cnt = (size_t)s[i].rows * (size_t)(s[i].cols ? s[i].cols : 1);
        double e = rel_err(g + off, ref + 1 + off, cnt);
        if (e > worst) worst = e;
        if (!(e <= 1e-4) || getenv("DST_VERBOSE")) {
            double nr = 0;
            for (size_t k = 0; k < cnt; k++) nr += ref[1 + off + k] * ref[1 + off + k];
            print_message("%s: rel L2 %.3g (norm %.3g)\n", s[i].name, e, sqrt(nr));
        }
        if (!getenv("DST_VERBOSE")) assert_true(e <= 1e-4);
        off += cnt;
    }
    assert_int_equal(off, t.n_params);
    print_message("%d gradient tensors, worst rel L2 %.3g\n", ns, worst);
    free(ref);
    free(s);
    ds_train_free(&t);
    fs_remove_tree(dir);
}

static void test_grads_v3_doc_kd(void **state) { (void)state; check_grads(cfg_v3, 1, 1, KD_FORWARD); }
static void test_grads_v3_ce(void **state) { (void)state; check_grads(cfg_v3, 1, 0, KD_FORWARD); }
static void test_grads_v2_jsd(void **state) { (void)state; check_grads(cfg_v2, 0, 1, KD_JSD); }
static void test_grads_v2_reverse_doc(void **state) { (void)state; check_grads(cfg_v2, 1, 1, KD_REVERSE); }

static const struct optim_config ocfg = {.lr = 1e-2f, .min_lr = 1e-3f, .warmup_steps = 2, .total_steps = 20,
                                         .schedule = OPTIM_COSINE, .weight_decay = 0.1f, .clip_norm = 1.0f};

/* one optimizer step on batch `seed`; returns the loss */
static float train_step(struct ds_train *t, struct optim *o, int seed) {
    struct batch b;
    make_batch(&b, t->m.cfg.vocab, seed);
    struct student_loss_cfg lc = {.smoothing = 0.0f, .alpha = 0.5f, .mode = KD_FORWARD, .temperature = 1.0f};
    struct student_teacher tk = teacher_of(&b);
    float loss;
    assert_int_equal(ds_train_zero_grad(t), 0);
    assert_int_equal(ds_train_forward(t, b.ids, b.targets, b.doc, &tk, &lc, &loss), 0);
    assert_int_equal(ds_train_backward(t), 0);
    assert_int_equal(optim_step(o, t->master, t->wbuf, t->gbuf), 0);
    return loss;
}

static void test_steps_reduce_loss(void **state) {
    (void)state;
    struct ds_config c;
    parse(cfg_v3, &c);
    struct ds_train t;
    struct optim o;
    assert_int_equal(ds_train_create(&t, &c, ops_cpu(), B, T, 3, NULL), 0);
    assert_int_equal(optim_create(&o, &ocfg, ops_cpu(), t.n_params, t.n_decay), 0);
    float first = train_step(&t, &o, 1), last = first;
    for (int i = 0; i < 15; i++) last = train_step(&t, &o, 1);
    print_message("loss %.4f -> %.4f after 16 steps\n", first, last);
    assert_true(last < 0.7f * first);
    optim_free(&o);
    ds_train_free(&t);
}

/* save → ds_load: the inference forward per document gives the training forward's logits */
static void test_save_load_logits(void **state) {
    (void)state;
    struct ds_config c;
    parse(cfg_v3, &c);
    struct ds_train t;
    struct optim o;
    assert_int_equal(ds_train_create(&t, &c, ops_cpu(), B, T, 5, NULL), 0);
    perturb(&t);
    assert_int_equal(optim_create(&o, &ocfg, ops_cpu(), t.n_params, t.n_decay), 0);
    for (int i = 0; i < 3; i++) train_step(&t, &o, i);
    char dir[] = "/tmp/sushi-dst-XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/teacher", dir);
    assert_int_equal(ds_train_save(&t, path, NULL, NULL, NULL), 0);
    struct batch b;
    make_batch(&b, c.vocab, 9);
    int V = c.vocab;
    float *got = malloc((size_t)N * V * sizeof(float)), *ref = malloc((size_t)N * V * sizeof(float));
    assert_non_null(got);
    assert_non_null(ref);
    assert_int_equal(ds_train_logits(&t, b.ids, b.doc, got), 0);
    assert_int_equal(ds_train_backward(&t), SUSHI_EINVAL);   /* logits alone leave nothing to differentiate */
    struct ds_model m;
    assert_int_equal(ds_load(&m, path, ops_cpu(), T), 0);
    struct ds_cache k;
    assert_int_equal(ds_cache_init(&k, &m), 0);
    for (int s = 0; s < N;) {
        int e = s + 1;
        while (e % T && b.doc[e] == b.doc[s]) e++;
        ds_cache_reset(&k);
        assert_int_equal(ds_forward(&m, &k, b.ids + s, e - s, ref + (size_t)s * V), 0);
        s = e;
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)N * V; i++) {
        num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    print_message("training vs inference logits: rel L2 %.3g\n", sqrt(num / den));
    assert_true(sqrt(num / den) <= 1e-6);
    ds_cache_free(&k, &m);
    ds_free(&m);
    free(got);
    free(ref);
    optim_free(&o);
    ds_train_free(&t);
    fs_remove_tree(dir);
}

enum { STEPS = 6, SPLIT = 3 };

static void test_resume_bit_identical(void **state) {
    (void)state;
    struct ds_config c;
    parse(cfg_v3, &c);
    float full[STEPS], resumed[STEPS];
    struct ds_train t;
    struct optim o;
    assert_int_equal(ds_train_create(&t, &c, ops_cpu(), B, T, 11, NULL), 0);
    assert_int_equal(optim_create(&o, &ocfg, ops_cpu(), t.n_params, t.n_decay), 0);
    for (int i = 0; i < STEPS; i++) full[i] = train_step(&t, &o, i);
    optim_free(&o);
    ds_train_free(&t);

    char dir[] = "/tmp/sushi-dst-XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/run/ckpt", dir);
    assert_int_equal(ds_train_create(&t, &c, ops_cpu(), B, T, 11, NULL), 0);
    assert_int_equal(optim_create(&o, &ocfg, ops_cpu(), t.n_params, t.n_decay), 0);
    for (int i = 0; i < SPLIT; i++) resumed[i] = train_step(&t, &o, i);
    json_t *st = json_pack("{s:i}", "step", o.step);
    assert_int_equal(ds_train_save(&t, path, o.m, o.v, st), 0);
    assert_int_equal(ds_train_save(&t, path, o.m, o.v, st), 0);   /* over an existing checkpoint */
    json_decref(st);
    optim_free(&o);
    ds_train_free(&t);

    /* a fresh process: weights from the checkpoint at create, then moments and state */
    assert_int_equal(ds_train_create(&t, &c, ops_cpu(), B, T, 999, path), 0);
    assert_int_equal(optim_create(&o, &ocfg, ops_cpu(), t.n_params, t.n_decay), 0);
    json_t *loaded = NULL;
    assert_int_equal(ds_train_load(&t, path, o.m, o.v, &loaded), 0);
    o.step = (int)json_integer_value(json_object_get(loaded, "step"));
    assert_int_equal(o.step, SPLIT);
    json_decref(loaded);
    for (int i = SPLIT; i < STEPS; i++) resumed[i] = train_step(&t, &o, i);
    for (int i = 0; i < STEPS; i++) print_message("step %d: %.7f %.7f\n", i, full[i], resumed[i]);
    assert_memory_equal(full, resumed, sizeof full);
    optim_free(&o);
    ds_train_free(&t);
    fs_remove_tree(dir);
}

static void truncate_file(const char *path) {
    long long n = fs_file_size(path);
    assert_true(n > 100);
    assert_int_equal(truncate(path, n - 37), 0);
}

static void test_bad_input(void **state) {
    (void)state;
    struct ds_config c, c2;
    parse(cfg_v3, &c);
    struct ds_train t, t2;
    assert_int_equal(ds_train_create(&t, &c, ops_cpu(), B, T, 1, NULL), 0);
    struct optim o;
    assert_int_equal(optim_create(&o, &ocfg, ops_cpu(), t.n_params, t.n_decay), 0);
    char dir[] = "/tmp/sushi-dst-XXXXXX", path[256], file[320];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ckpt", dir);
    json_t *st = json_pack("{s:i}", "step", 0);
    assert_int_equal(ds_train_save(&t, path, o.m, o.v, st), 0);
    json_decref(st);

    /* out-of-range ids, targets, teacher ids; backward without a forward */
    struct batch b;
    make_batch(&b, c.vocab, 2);
    struct student_loss_cfg lc = {.alpha = 0.5f, .temperature = 1.0f};
    struct student_teacher tk = teacher_of(&b);
    float loss;
    assert_int_equal(ds_train_backward(&t), SUSHI_EINVAL);
    b.ids[5] = c.vocab;
    assert_int_equal(ds_train_forward(&t, b.ids, b.targets, NULL, NULL, &lc, &loss), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "token id 53"));
    b.ids[5] = -2;
    assert_int_equal(ds_train_forward(&t, b.ids, b.targets, NULL, NULL, &lc, &loss), SUSHI_EINVAL);
    b.ids[5] = 1;
    b.targets[7] = c.vocab + 4;
    assert_int_equal(ds_train_forward(&t, b.ids, b.targets, NULL, NULL, &lc, &loss), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "target 57"));
    b.targets[7] = 0;
    int32_t keep = b.tk_ids[9];
    b.tk_ids[9] = c.vocab;
    assert_int_equal(ds_train_forward(&t, b.ids, b.targets, NULL, &tk, &lc, &loss), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "teacher top-k id"));
    b.tk_ids[9] = keep;
    assert_int_equal(ds_train_forward(&t, b.ids, b.targets, b.doc, &tk, &lc, &loss), 0);
    assert_true(isfinite(loss) && loss > 0);

    /* a checkpoint of another shape */
    parse(cfg_v3, &c2);
    c2.C = 40;
    assert_int_equal(ds_train_create(&t2, &c2, ops_cpu(), B, T, 1, NULL), 0);
    assert_int_equal(ds_train_load(&t2, path, NULL, NULL, NULL), SUSHI_ESHAPE);
    print_message("%s\n", sushi_last_error());
    assert_non_null(strstr(sushi_last_error(), "hidden_size"));
    ds_train_free(&t2);
    assert_int_equal(ds_train_create(&t2, &c2, ops_cpu(), B, T, 1, path), SUSHI_ESHAPE);
    /* missing directory, missing state */
    snprintf(file, sizeof file, "%s/nothing", dir);
    assert_int_equal(ds_train_load(&t, file, NULL, NULL, NULL), SUSHI_ENOTFOUND);
    /* truncated optimizer file, then truncated weights */
    snprintf(file, sizeof file, "%s/optimizer.safetensors", path);
    truncate_file(file);
    int rc = ds_train_load(&t, path, o.m, o.v, NULL);
    print_message("%s\n", sushi_last_error());
    assert_true(rc < 0);
    assert_non_null(strstr(sushi_last_error(), "optimizer.safetensors"));
    assert_int_equal(ds_train_load(&t, path, NULL, NULL, NULL), 0);   /* weights alone still load */
    snprintf(file, sizeof file, "%s/model.safetensors", path);
    truncate_file(file);
    rc = ds_train_load(&t, path, NULL, NULL, NULL);
    print_message("%s\n", sushi_last_error());
    assert_true(rc < 0);
    assert_non_null(strstr(sushi_last_error(), "model.safetensors"));
    optim_free(&o);
    ds_train_free(&t);
    fs_remove_tree(dir);
}

static void test_config_fields(void **state) {
    (void)state;
    struct ds_config c;
    parse(cfg_v3, &c);
    assert_int_equal(c.family, DS_V3);
    assert_int_equal(c.q_lora, 24);
    assert_int_equal(c.n_group, 2);
    assert_int_equal(c.tied, 0);
    assert_true(c.yarn.on);
    parse(cfg_v2, &c);
    assert_int_equal(c.family, DS_V2);
    assert_int_equal(c.q_lora, 0);
    assert_int_equal(c.tied, 1);
    assert_int_equal(c.n_group, 1);
    assert_int_equal(c.scoring, DS_SOFTMAX);
    /* a missing shape field, an unknown key, a bad value, another arch: refused by name */
    assert_int_equal(parse_rc("{\"vocab_size\": 10}"), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "model.hidden_size"));
    char buf[2048];
    snprintf(buf, sizeof buf, "%.*s, \"hiden_size\": 3}", (int)strlen(cfg_v3) - 1, cfg_v3);
    assert_true(parse_rc(buf) < 0);
    assert_non_null(strstr(sushi_last_error(), "hiden_size"));
    snprintf(buf, sizeof buf, "%.*s, \"model_type\": \"deepseek_v3\", \"scoring_func\": \"softmax\"}",
             (int)strlen(cfg_v3) - 1, cfg_v3);
    assert_int_equal(parse_rc(buf), SUSHI_EUNSUPPORTED);
    assert_non_null(strstr(sushi_last_error(), "scoring_func"));
    snprintf(buf, sizeof buf, "{\"arch\": \"llama\"%s", strchr(cfg_v3, ','));
    assert_int_equal(parse_rc(buf), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "arch"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_fields),
        cmocka_unit_test(test_grads_v3_doc_kd),
        cmocka_unit_test(test_grads_v3_ce),
        cmocka_unit_test(test_grads_v2_jsd),
        cmocka_unit_test(test_grads_v2_reverse_doc),
        cmocka_unit_test(test_steps_reduce_loss),
        cmocka_unit_test(test_save_load_logits),
        cmocka_unit_test(test_resume_bit_identical),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
