// libs: deepseek kernels core
/* The DeepSeek teacher against the PyTorch reference (tests/oracle/deepseek_ref.py, run
 * with Debian's /usr/bin/python3): logits on random small checkpoints of the V3 flavour
 * (q_lora, sigmoid, noaux_tc with groups, YaRN + mscale, rope_parameters dialect) and the
 * V2 flavours (no q_lora, softmax, greedy / group_limited_greedy, top-level rope_scaling,
 * tied head), ‖a − b‖₂/‖b‖₂ ≤ 1e-4 in fp32; FP8 e4m3 with 128×128 block scales decoded
 * by the reference from the bit layout; sharded files; cached decoding equal to a full
 * pass; missing / mis-shaped / extra tensors refused by name; the top-K output; MLA and
 * MoE / dense FFN backward against autograd (every gradient ≤ 1e-4 relative). */
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

static const char *repo_root(void) {
    const char *r = getenv("SUSHI_REPO_ROOT");
    return r && *r ? r : ".";
}

static int have_torch(void) {
    return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

/* writes a checkpoint with the oracle into a fresh temporary folder */
static char *ds_fixture(const char *flavour, int seed, const char *extra_args) {
    char *dir = strdup("/tmp/sushi-ds-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/deepseek_ref.py write %s %s %d %s", repo_root(), dir,
             flavour, seed, extra_args ? extra_args : "");
    assert_int_equal(system(cmd), 0);
    return dir;
}

static void ds_rmdir(char *dir) {
    fs_remove_tree(dir);
    free(dir);
}

static const int32_t seq_a[] = {1, 5, 9, 13, 2, 96, 0, 44, 7, 7, 31, 60, 3};
static const int32_t seq_b[] = {17, 4, 88, 2, 59};

/* logits of seq_a and seq_b from the oracle, concatenated */
static float *oracle_logits(const char *dir, size_t n) {
    char ids[512], out[512], cmd[2048];
    snprintf(ids, sizeof ids, "%s/ids.txt", dir);
    snprintf(out, sizeof out, "%s/ref.bin", dir);
    FILE *f = fopen(ids, "w");
    assert_non_null(f);
    for (size_t i = 0; i < sizeof seq_a / sizeof seq_a[0]; i++) fprintf(f, "%d ", seq_a[i]);
    fprintf(f, "\n");
    for (size_t i = 0; i < sizeof seq_b / sizeof seq_b[0]; i++) fprintf(f, "%d ", seq_b[i]);
    fprintf(f, "\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/deepseek_ref.py logits %s %s %s", repo_root(), dir,
             ids, out);
    assert_int_equal(system(cmd), 0);
    float *ref = malloc(n * sizeof(float));
    assert_non_null(ref);
    f = fopen(out, "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, sizeof(float), n, f), n);
    fclose(f);
    return ref;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);   /* an unused expert: both zero */
}

static void check_against_torch(const char *flavour, const char *args) {
    if (!have_torch()) skip();
    char *dir = ds_fixture(flavour, 3, args);
    struct ds_model m;
    assert_int_equal(ds_load(&m, dir, ops_cpu(), 64), 0);
    int V = m.cfg.vocab, na = sizeof seq_a / sizeof seq_a[0], nb = sizeof seq_b / sizeof seq_b[0];
    float *got = malloc((size_t)(na + nb) * V * sizeof(float));
    assert_non_null(got);
    struct ds_cache k;
    assert_int_equal(ds_cache_init(&k, &m), 0);
    assert_int_equal(ds_forward(&m, &k, seq_a, na, got), 0);
    ds_cache_reset(&k);
    assert_int_equal(ds_forward(&m, &k, seq_b, nb, got + (size_t)na * V), 0);
    float *ref = oracle_logits(dir, (size_t)(na + nb) * V);
    double e = rel_err(got, ref, (size_t)(na + nb) * V);
    print_message("%s %s: rel L2 error %.3g\n", flavour, args, e);
    assert_true(e <= 1e-4);
    free(ref);
    free(got);
    ds_cache_free(&k, &m);
    ds_free(&m);
    ds_rmdir(dir);
}

static void test_v3_logits(void **state) { (void)state; check_against_torch("v3", ""); }
static void test_v2_logits(void **state) { (void)state; check_against_torch("v2", ""); }
static void test_v2_group_limited_logits(void **state) { (void)state; check_against_torch("v2g", ""); }
static void test_v3_fp8_sharded_logits(void **state) { (void)state; check_against_torch("v3", "--fp8 --shards 3"); }
static void test_v2_fp8_logits(void **state) { (void)state; check_against_torch("v2", "--fp8"); }
static void test_v3_fused_experts_logits(void **state) { (void)state; check_against_torch("v3", "--fused --shards 2"); }

/* export in the HF layout: reloads to the same logits, and the independent reader of
 * the oracle (HF names, rope_parameters dialect) computes them too */
static void check_save(const char *flavour, const char *args) {
    char *dir = ds_fixture(flavour, 13, args);
    struct ds_model m, m2;
    assert_int_equal(ds_load(&m, dir, ops_cpu(), 16), 0);
    char out[512];
    snprintf(out, sizeof out, "%s/export", dir);
    assert_int_equal(ds_save(&m, out), 0);
    assert_int_equal(ds_load(&m2, out, ops_cpu(), 16), 0);
    assert_int_equal(m2.n_params, m.n_params);
    int V = m.cfg.vocab, na = sizeof seq_a / sizeof seq_a[0], nb = sizeof seq_b / sizeof seq_b[0];
    float *a = malloc((size_t)(na + nb) * V * sizeof(float)), *b = malloc((size_t)(na + nb) * V * sizeof(float));
    assert_non_null(a);
    assert_non_null(b);
    struct ds_cache k, k2;
    assert_int_equal(ds_cache_init(&k, &m), 0);
    assert_int_equal(ds_cache_init(&k2, &m2), 0);
    assert_int_equal(ds_forward(&m, &k, seq_a, na, a), 0);
    ds_cache_reset(&k);
    assert_int_equal(ds_forward(&m, &k, seq_b, nb, a + (size_t)na * V), 0);
    assert_int_equal(ds_forward(&m2, &k2, seq_a, na, b), 0);
    ds_cache_reset(&k2);
    assert_int_equal(ds_forward(&m2, &k2, seq_b, nb, b + (size_t)na * V), 0);
    assert_memory_equal(a, b, (size_t)(na + nb) * V * sizeof(float));
    float *ref = oracle_logits(out, (size_t)(na + nb) * V);
    double e = rel_err(a, ref, (size_t)(na + nb) * V);
    print_message("%s %s exported: oracle rel L2 %.3g\n", flavour, args, e);
    assert_true(e <= 1e-4);
    free(ref);
    free(a);
    free(b);
    ds_cache_free(&k, &m);
    ds_cache_free(&k2, &m2);
    ds_free(&m);
    ds_free(&m2);
    ds_rmdir(dir);
}

static void test_save(void **state) {
    (void)state;
    if (!have_torch()) skip();
    check_save("v3", "--fused");
    check_save("v2", "--fp8");
}

/* token-by-token decoding with the c / k_pe cache gives the logits of one full pass */
/* sushi inspect's parameter count equals the elements the loader read */
static void test_describe(void **state) {
    (void)state;
    if (!have_torch()) skip();
    const char *flavours[] = {"v3", "v2"};
    for (int i = 0; i < 2; i++) {
        char *dir = ds_fixture(flavours[i], 9, "--fp8");
        struct ds_model m;
        assert_int_equal(ds_load(&m, dir, ops_cpu(), 8), 0);
        json_t *out = json_object();
        assert_int_equal(deepseek_describe(dir, out), 0);
        json_t *p = json_object_get(out, "parameters");
        long long total = json_integer_value(json_object_get(p, "total"));
        long long active = json_integer_value(json_object_get(p, "active_per_token"));
        long long expert = json_integer_value(json_object_get(p, "expert"));
        assert_int_equal(total, (long long)m.n_params);
        /* 2 MoE layers, each with n_routed − top_k experts idle */
        assert_int_equal(total - active, 2LL * (m.cfg.n_routed - m.cfg.top_k) * expert);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(out, "architecture"), "moe_layers")), 2);
        json_decref(out);
        ds_free(&m);
        ds_rmdir(dir);
    }
}

static void test_cache_equals_full_pass(void **state) {
    (void)state;
    if (!have_torch()) skip();
    char *dir = ds_fixture("v3", 5, "");
    struct ds_model m;
    assert_int_equal(ds_load(&m, dir, ops_cpu(), 32), 0);
    int V = m.cfg.vocab, n = sizeof seq_a / sizeof seq_a[0];
    float *full = malloc((size_t)n * V * sizeof(float)), *step = malloc((size_t)n * V * sizeof(float));
    assert_non_null(full);
    assert_non_null(step);
    struct ds_cache k;
    assert_int_equal(ds_cache_init(&k, &m), 0);
    assert_int_equal(ds_forward(&m, &k, seq_a, n, full), 0);
    ds_cache_reset(&k);
    assert_int_equal(ds_forward(&m, &k, seq_a, 4, step), 0);   /* a prompt, then one at a time */
    for (int t = 4; t < n; t++) assert_int_equal(ds_forward(&m, &k, seq_a + t, 1, step + (size_t)t * V), 0);
    assert_int_equal(k.len, n);
    double e = rel_err(step, full, (size_t)n * V);
    print_message("cached vs full: rel L2 %.3g\n", e);
    assert_true(e <= 1e-5);
    /* past the cache: refused */
    assert_int_not_equal(ds_forward(&m, &k, seq_a, 32, full), 0);
    /* a token outside the vocabulary: refused */
    int32_t bad = V;
    ds_cache_reset(&k);
    assert_int_equal(ds_forward(&m, &k, &bad, 1, full), SUSHI_EINVAL);
    free(full);
    free(step);
    ds_cache_free(&k, &m);
    ds_free(&m);
    ds_rmdir(dir);
}

static void expect_refusal(const char *args, int code, const char *needle) {
    char *dir = ds_fixture("v3", 7, args);
    struct ds_model m;
    int rc = ds_load(&m, dir, ops_cpu(), 16);
    print_message("%s -> %s\n", args, sushi_last_error());
    assert_int_equal(rc, code);
    assert_non_null(strstr(sushi_last_error(), needle));
    ds_rmdir(dir);
}

static void test_bad_checkpoints(void **state) {
    (void)state;
    if (!have_torch()) skip();
    expect_refusal("--drop model.layers.1.self_attn.kv_b_proj.weight", SUSHI_ENOTFOUND,
                   "model.layers.1.self_attn.kv_b_proj.weight");
    expect_refusal("--reshape model.layers.2.mlp.experts.3.up_proj.weight", SUSHI_ESHAPE,
                   "model.layers.2.mlp.experts.3.up_proj.weight");
    expect_refusal("--extra", SUSHI_EFORMAT, "model.layers.0.self_attn.unexpected.weight");
    expect_refusal("--fp8 --drop model.layers.0.self_attn.o_proj.weight_scale_inv", SUSHI_ENOTFOUND,
                   "o_proj.weight_scale_inv");
}

/* (pointer, elements) of every gradient of a block, in the oracle's order */
struct grad_list {
    int n;
    const float *p[64];
    size_t len[64];
};

static void grad_add(struct grad_list *g, const void *p, size_t len) {
    assert_true(g->n < 64);
    g->p[g->n] = p;
    g->len[g->n++] = len;
}

static void grad_add_mlp(struct grad_list *g, const struct ds_mlp *p, int C) {
    grad_add(g, p->gu, (size_t)2 * p->F * C);   /* gate then up, as gate_proj, up_proj */
    grad_add(g, p->down, (size_t)C * p->F);
}

/* MLA or FFN backward of layer l against autograd; each tensor ≤ 1e-4 relative */
static void check_backward(const char *flavour, int l, const char *block) {
    char *dir = ds_fixture(flavour, 11, "");
    enum { N = 7 };
    struct ds_model m;
    assert_int_equal(ds_load(&m, dir, ops_cpu(), N), 0);
    const struct ds_config *c = &m.cfg;
    int C = c->C, mla = !strcmp(block, "mla");
    float *io = malloc((size_t)2 * N * C * sizeof(float)), *dx = malloc((size_t)N * C * sizeof(float));
    assert_non_null(io);
    assert_non_null(dx);
    for (int i = 0; i < 2 * N * C; i++) io[i] = (float)sin(0.37 * i + 1.0) * (i < N * C ? 1.0f : 0.5f);
    struct ds_layer g;
    assert_int_equal(ds_layer_grads_init(&m, l, &g), 0);
    if (mla) assert_int_equal(ds_mla_backward(&m, l, io, N, io + N * C, &g, dx), 0);
    else assert_int_equal(ds_ffn_backward(&m, l, io, N, io + N * C, &g, dx), 0);
    struct grad_list gl = {0};
    grad_add(&gl, dx, (size_t)N * C);
    size_t H = (size_t)c->H, dqk = (size_t)(c->nope + c->rope);
    if (mla) {
        if (c->q_lora) {
            grad_add(&gl, g.q_a, (size_t)c->q_lora * C);
            grad_add(&gl, g.q_a_norm, (size_t)c->q_lora);
            grad_add(&gl, g.q_b, H * dqk * c->q_lora);
        } else {
            grad_add(&gl, g.q_b, H * dqk * C);
        }
        grad_add(&gl, g.kv_a, (size_t)(c->kv_lora + c->rope) * C);
        grad_add(&gl, g.kv_a_norm, (size_t)c->kv_lora);
        grad_add(&gl, g.kv_b, H * (c->nope + c->dv) * c->kv_lora);
        grad_add(&gl, g.o, (size_t)C * H * c->dv);
    } else if (!g.moe) {
        grad_add_mlp(&gl, &g.dense, C);
    } else {
        grad_add(&gl, g.router, (size_t)c->n_routed * C);
        for (int e = 0; e < c->n_routed; e++) grad_add_mlp(&gl, &g.experts[e], C);
        grad_add_mlp(&gl, &g.shared, C);
    }
    size_t total = 0;
    for (int i = 0; i < gl.n; i++) total += gl.len[i];
    char in[512], out[512], cmd[2048];
    snprintf(in, sizeof in, "%s/xd.bin", dir);
    snprintf(out, sizeof out, "%s/grad.bin", dir);
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(io, sizeof(float), (size_t)2 * N * C, f), (size_t)2 * N * C);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/deepseek_ref.py grad %s %d %s %d %s %s", repo_root(),
             dir, l, block, N, in, out);
    assert_int_equal(system(cmd), 0);
    float *ref = malloc(total * sizeof(float));
    assert_non_null(ref);
    f = fopen(out, "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, sizeof(float), total, f), total);
    fclose(f);
    double worst = 0;
    size_t off = 0;
    for (int i = 0; i < gl.n; i++) {
        double e = rel_err(gl.p[i], ref + off, gl.len[i]);
        if (e > worst) worst = e;
        if (!(e <= 1e-4)) print_message("%s layer %d %s: tensor %d: rel L2 %.3g\n", flavour, l, block, i, e);
        assert_true(e <= 1e-4);
        off += gl.len[i];
    }
    print_message("%s layer %d %s backward: %d tensors, worst rel L2 %.3g\n", flavour, l, block, gl.n, worst);
    free(ref);
    free(io);
    free(dx);
    ds_layer_grads_free(&m, &g);
    ds_free(&m);
    ds_rmdir(dir);
}

static void test_mla_backward(void **state) {
    (void)state;
    if (!have_torch()) skip();
    check_backward("v3", 1, "mla");
    check_backward("v2", 2, "mla");
}

static void test_ffn_backward(void **state) {
    (void)state;
    if (!have_torch()) skip();
    check_backward("v3", 0, "ffn");   /* dense */
    check_backward("v3", 1, "ffn");   /* MoE: sigmoid, noaux_tc, renormalised */
    check_backward("v2", 2, "ffn");   /* MoE: softmax, greedy */
    check_backward("v2g", 1, "ffn");  /* MoE: group_limited_greedy */
}

static int parse_cfg(const char *text, struct ds_config *c) {
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    assert_non_null(j);
    int rc = ds_config_parse(c, j, "config.json");
    json_decref(j);
    return rc;
}

static void test_config(void **state) {
    (void)state;
    struct ds_config c;
    /* V3 defaults, old dialect, DeepSeek-V3's own rope_scaling: m² ≈ 1.874 (SPEC §1) */
    assert_int_equal(parse_cfg("{\"model_type\": \"deepseek_v3\", \"max_position_embeddings\": 163840, "
                               "\"rope_theta\": 10000, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, "
                               "\"original_max_position_embeddings\": 4096, \"beta_fast\": 32, \"beta_slow\": 1, "
                               "\"mscale\": 1.0, \"mscale_all_dim\": 1.0}}", &c), 0);
    assert_int_equal(c.L, 61);
    assert_int_equal(c.n_routed, 256);
    assert_int_equal(c.first_dense, 3);
    assert_int_equal(c.q_lora, 1536);
    double m = 0.1 * log(40.0) + 1.0;
    assert_true(fabs(c.attn_scale - pow(192, -0.5) * m * m) < 1e-7);
    assert_true(fabs(m * m - 1.874) < 1e-3);
    assert_true(fabs(c.yarn.attention_factor - 1.0) < 1e-12);
    /* V2-Lite: q_lora null, softmax greedy; HF 5.17's V2 also applies mscale(40, 0.707)² */
    assert_int_equal(parse_cfg("{\"model_type\": \"deepseek_v2\", \"q_lora_rank\": null, \"num_experts_per_tok\": 6, "
                               "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, \"mscale\": 0.707, "
                               "\"mscale_all_dim\": 0.707, \"original_max_position_embeddings\": 4096}, "
                               "\"max_position_embeddings\": 163840, \"norm_topk_prob\": true}", &c), 0);
    assert_int_equal(c.q_lora, 0);
    assert_int_equal(c.scoring, DS_SOFTMAX);
    assert_int_equal(c.norm_topk, 0);
    double m2 = 0.1 * 0.707 * log(40.0) + 1.0;
    assert_true(fabs(c.attn_scale - pow(192, -0.5) * m2 * m2) < 1e-7);
    /* unsupported values, by name */
    assert_int_equal(parse_cfg("{\"model_type\": \"deepseek_v3\", \"scoring_func\": \"softmax\"}", &c), SUSHI_EUNSUPPORTED);
    assert_non_null(strstr(sushi_last_error(), "scoring_func"));
    assert_int_equal(parse_cfg("{\"model_type\": \"deepseek_v2\", \"num_experts_per_tok\": 2, \"topk_method\": \"x\"}", &c),
                     SUSHI_EUNSUPPORTED);
    assert_non_null(strstr(sushi_last_error(), "topk_method"));
    assert_int_equal(parse_cfg("{\"model_type\": \"deepseek_v3\", \"attention_bias\": true}", &c), SUSHI_EUNSUPPORTED);
    assert_int_equal(parse_cfg("{\"model_type\": \"deepseek_v3\", \"quantization_config\": {\"quant_method\": \"fp8\", "
                               "\"weight_block_size\": [64, 64]}}", &c), SUSHI_EUNSUPPORTED);
    assert_non_null(strstr(sushi_last_error(), "weight_block_size"));
    assert_int_equal(parse_cfg("{\"model_type\": \"deepseek_v3\", \"rope_parameters\": {\"rope_type\": \"dynamic\"}}", &c),
                     SUSHI_EUNSUPPORTED);
    assert_int_equal(parse_cfg("{\"model_type\": \"llama\"}", &c), SUSHI_EUNSUPPORTED);
}

/* top-K, logprobs and tail against a direct double-precision computation */
static void test_topk(void **state) {
    (void)state;
    enum { V = 1000, K = 8 };
    float z[V];
    for (int i = 0; i < V; i++) z[i] = (float)sin(i * 1.3) * 3.0f;
    z[123] = 40.0f;   /* a confident row: log(1 − Σp) would round to log 0 */
    int32_t ids[K];
    float lp[K], tail;
    float T = 2.0f;
    assert_int_equal(ds_topk(z, V, K, T, ids, lp, &tail), 0);
    assert_int_equal(ids[0], 123);
    double mx = 40.0 / T, all = 0, rest = 0;
    for (int i = 0; i < V; i++) {
        double ex = exp(z[i] / T - mx);
        all += ex;
        int in = 0;
        for (int j = 0; j < K; j++) in |= ids[j] == i;
        if (!in) {
            rest += ex;
            for (int j = 0; j < K; j++) assert_true(z[i] <= z[ids[j]]);
        }
    }
    for (int j = 1; j < K; j++) assert_true(z[ids[j]] <= z[ids[j - 1]]);
    for (int j = 0; j < K; j++) assert_true(fabs(lp[j] - (z[ids[j]] / T - mx - log(all))) < 1e-5);
    assert_true(fabs(tail - (log(rest) - log(all))) < 1e-4);
    assert_true(tail < -10.0f && isfinite(tail));
    assert_int_equal(ds_topk(z, V, 0, T, ids, lp, &tail), SUSHI_EINVAL);
    assert_int_equal(ds_topk(z, V, K, 0.0f, ids, lp, &tail), SUSHI_EINVAL);
    /* ties: the lower id first; K == V: every id, no tail mass */
    float flat[6] = {1, 3, 3, 0, 3, 2};
    int32_t all_ids[6];
    float all_lp[6];
    assert_int_equal(ds_topk(flat, 6, 6, 1.0f, all_ids, all_lp, &tail), 0);
    const int32_t want[6] = {1, 2, 4, 5, 0, 3};
    for (int j = 0; j < 6; j++) assert_int_equal(all_ids[j], want[j]);
    assert_true(isinf(tail) && tail < 0);
    assert_int_equal(ds_topk(flat, 6, 2, 1.0f, all_ids, all_lp, &tail), 0);
    assert_int_equal(all_ids[0], 1);
    assert_int_equal(all_ids[1], 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_v3_logits),
        cmocka_unit_test(test_v2_logits),
        cmocka_unit_test(test_v2_group_limited_logits),
        cmocka_unit_test(test_v3_fp8_sharded_logits),
        cmocka_unit_test(test_v2_fp8_logits),
        cmocka_unit_test(test_v3_fused_experts_logits),
        cmocka_unit_test(test_cache_equals_full_pass),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_save),
        cmocka_unit_test(test_mla_backward),
        cmocka_unit_test(test_ffn_backward),
        cmocka_unit_test(test_bad_checkpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
