// libs: deepseek student kernels core
/* The absorbed MLA form (models/deepseek/mla_absorb.c) against the expanded one and a
 * full pass, on random small DeepSeek models (ds_train_create, saved with ds_save and
 * read back with ds_load) of the V3 flavour (q_lora, YaRN with mscale, so attn_scale
 * and the rope tables carry the YaRN factors) and the V2 flavour (plain q_proj, tied
 * head), with the attention weights scaled up so the softmax is far from uniform.
 * Token-by-token decoding with SUSHI_MLA=absorbed, with SUSHI_MLA=expanded and with
 * the default choice, and steps of 3 new tokens after a prefix (the causal mask inside
 * a step), all give the logits of one full pass within 1e-5 relative (‖a − b‖₂/‖b‖₂,
 * fp32); the absorbed and expanded logits are not bit-identical (both forms really
 * ran). A bad SUSHI_MLA value and a step past the cache are refused. */
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

enum { MAX_SEQ = 48, T = 23 };

/* V3 flavour: q_lora, YaRN (factor 4, mscale_all_dim 1: attn_scale ≠ dqk^-0.5), untied,
 * layer 0 dense, layer 1 MoE */
static const char *cfg_v3 =
    "{\"arch\": \"deepseek\", \"vocab_size\": 61, \"hidden_size\": 32, \"intermediate_size\": 40,"
    " \"moe_intermediate_size\": 16, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"q_lora_rank\": 24,"
    " \"kv_lora_rank\": 16, \"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 8, \"v_head_dim\": 12,"
    " \"n_routed_experts\": 4, \"n_shared_experts\": 1, \"num_experts_per_tok\": 2, \"n_group\": 2,"
    " \"topk_group\": 1, \"routed_scaling_factor\": 2.5, \"norm_topk_prob\": true, \"first_k_dense_replace\": 1,"
    " \"rms_norm_eps\": 1e-6, \"max_position_embeddings\": 64, \"tie_word_embeddings\": false,"
    " \"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000.0, \"factor\": 4.0,"
    " \"original_max_position_embeddings\": 16, \"beta_fast\": 32, \"beta_slow\": 1, \"mscale\": 1.0,"
    " \"mscale_all_dim\": 1.0}}";
/* V2 flavour: plain q_proj, tied head, softmax greedy, dv > nope, odd head count */
static const char *cfg_v2 =
    "{\"model_type\": \"deepseek_v2\", \"vocab_size\": 47, \"hidden_size\": 24, \"intermediate_size\": 32,"
    " \"moe_intermediate_size\": 12, \"num_hidden_layers\": 3, \"num_attention_heads\": 3, \"q_lora_rank\": 0,"
    " \"kv_lora_rank\": 12, \"qk_nope_head_dim\": 6, \"qk_rope_head_dim\": 4, \"v_head_dim\": 8,"
    " \"n_routed_experts\": 4, \"n_shared_experts\": 2, \"num_experts_per_tok\": 2, \"first_k_dense_replace\": 1,"
    " \"scoring_func\": \"softmax\", \"topk_method\": \"greedy\", \"rms_norm_eps\": 1e-6,"
    " \"max_position_embeddings\": 64, \"tie_word_embeddings\": true}";

/* a random model of config `json` from `seed`, through a checkpoint folder, loaded for
 * MAX_SEQ positions; q_b, kv_b and o_proj scaled by `gain` */
static void make_model(struct ds_model *m, const char *json, uint64_t seed, float gain) {
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    struct ds_config c;
    int rc = ds_config_from_train_json(&c, j, "test.yaml");
    json_decref(j);
    if (rc) print_message("%s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    struct ds_train t;
    const struct ops *ops = ops_cpu();
    assert_int_equal(ds_train_create(&t, &c, ops, 1, 8, seed, NULL), 0);
    int dqk = c.nope + c.rope, qin = c.q_lora ? c.q_lora : c.C;
    for (int l = 0; l < c.L; l++) {
        struct ds_layer *y = &t.m.layers[l];
        assert_int_equal(ops->scale(y->q_b, gain, (size_t)c.H * dqk * qin), 0);
        assert_int_equal(ops->scale(y->kv_b, gain, (size_t)c.H * (c.nope + c.dv) * c.kv_lora), 0);
        assert_int_equal(ops->scale(y->o, gain, (size_t)c.C * c.H * c.dv), 0);
    }
    char dir[] = "/tmp/sushi-absorb-XXXXXX";
    assert_non_null(mkdtemp(dir));
    rc = ds_save(&t.m, dir);
    ds_train_free(&t);
    if (!rc) rc = ds_load(m, dir, ops, MAX_SEQ);
    if (rc) print_message("%s\n", sushi_last_error());
    fs_remove_tree(dir);
    assert_int_equal(rc, 0);
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* SUSHI_MLA = form (NULL: the default choice) */
static void set_form(const char *form) {
    if (form) setenv("SUSHI_MLA", form, 1);
    else unsetenv("SUSHI_MLA");
}

/* logits (T, V) of ids: a prefix of `prefix` tokens, then steps of `step` tokens */
static void decode(struct ds_model *m, const int32_t *ids, int prefix, int step, const char *form, float *z) {
    struct ds_cache k;
    assert_int_equal(ds_cache_init(&k, m), 0);
    set_form(form);
    size_t V = (size_t)m->cfg.vocab;
    int rc = ds_forward(m, &k, ids, prefix, z);
    for (int t = prefix; !rc && t < T; t += step) {
        int n = T - t < step ? T - t : step;
        rc = ds_forward(m, &k, ids + t, n, z + (size_t)t * V);
    }
    if (rc) print_message("%s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    assert_int_equal(k.len, T);
    set_form(NULL);
    ds_cache_free(&k, m);
}

static void check_model(const char *name, const char *json, uint64_t seed) {
    struct ds_model m;
    make_model(&m, json, seed, 12.0f);
    size_t V = (size_t)m.cfg.vocab, nz = (size_t)T * V;
    int32_t ids[T];
    for (int t = 0; t < T; t++) ids[t] = (int32_t)((seed * 7919 + (uint64_t)t * 104729 + (uint64_t)t * t) % V);
    float *full = malloc(nz * sizeof(float)), *z = malloc(nz * sizeof(float)), *ze = malloc(nz * sizeof(float));
    assert_non_null(full);
    assert_non_null(z);
    assert_non_null(ze);
    decode(&m, ids, T, 1, "expanded", full);   /* one pass over all T */

    struct {
        int prefix, step;
        const char *form;
    } runs[] = {{1, 1, "absorbed"}, {1, 1, NULL}, {5, 3, NULL}, {2, 3, "absorbed"}, {1, 1, "expanded"},
                {4, 7, "expanded"}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        decode(&m, ids, runs[r].prefix, runs[r].step, runs[r].form, z);
        double e = rel_err(z, full, nz);
        print_message("%s seed %d: prefix %d, steps of %d, %s: rel L2 %.3g vs the full pass\n", name, (int)seed,
                      runs[r].prefix, runs[r].step, runs[r].form ? runs[r].form : "default", e);
        assert_true(e <= 1e-5);
    }
    /* both forms ran: absorbed and expanded decoding round differently */
    decode(&m, ids, 1, 1, "absorbed", z);
    decode(&m, ids, 1, 1, "expanded", ze);
    double d = 0;
    for (size_t i = 0; i < nz; i++) d = fmax(d, fabs((double)z[i] - ze[i]));
    print_message("%s seed %d: max |absorbed − expanded| %.3g\n", name, (int)seed, d);
    assert_true(d > 0);
    assert_true(rel_err(z, ze, nz) <= 1e-5);
    free(full);
    free(z);
    free(ze);
    ds_free(&m);
}

static void test_v3_absorbed_equals_expanded(void **state) {
    (void)state;
    check_model("v3", cfg_v3, 1);
    check_model("v3", cfg_v3, 2);
}

static void test_v2_absorbed_equals_expanded(void **state) {
    (void)state;
    check_model("v2", cfg_v2, 3);
    check_model("v2", cfg_v2, 4);
}

static void test_refusals(void **state) {
    (void)state;
    struct ds_model m;
    make_model(&m, cfg_v2, 5, 1.0f);
    struct ds_cache k;
    assert_int_equal(ds_cache_init(&k, &m), 0);
    float *z = malloc((size_t)MAX_SEQ * m.cfg.vocab * sizeof(float));
    assert_non_null(z);
    int32_t ids[MAX_SEQ] = {0};
    /* an unknown form, named */
    set_form("squeezed");
    assert_int_equal(ds_forward(&m, &k, ids, 1, z), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "SUSHI_MLA=squeezed"));
    assert_int_equal(k.len, 0);
    /* the absorbed form past the cache (ds_mla_forward itself: ds_forward checks first) */
    set_form("absorbed");
    assert_int_equal(ds_forward(&m, &k, ids, MAX_SEQ - 1, z), 0);
    assert_int_equal(k.len, MAX_SEQ - 1);
    float x[2 * 24] = {0}, out[2 * 24];
    assert_int_equal(m.cfg.C, 24);
    for (int i = 0; i < 2 * 24; i++) x[i] = (float)(i % 5) - 2.0f;
    assert_int_equal(ds_mla_forward(&m, 0, &k, x, 2, out), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "exceed the cache"));
    assert_int_equal(ds_mla_forward(&m, 0, &k, x, 1, out), 0);
    assert_int_equal(ds_forward(&m, &k, ids, 1, z), 0);
    assert_int_equal(k.len, MAX_SEQ);
    set_form(NULL);
    free(z);
    ds_cache_free(&k, &m);
    ds_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v3_absorbed_equals_expanded),
        cmocka_unit_test(test_v2_absorbed_equals_expanded),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
