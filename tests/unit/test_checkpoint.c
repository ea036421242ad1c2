// libs: student kernels core
/* Student checkpoint directories: bit-exact round trip, atomic replace and recovery,
 * architecture detection (config.json, metadata, shapes), bf16 HF-layout loading,
 * refusal of broken checkpoints with precise messages, and HF compatibility: an
 * independent PyTorch Llama (tests/oracle/ckpt_llama.py) loads the directory and
 * reproduces the C forward's losses and logit gradients. */
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
#include "common/core/json_util.h"
#include "common/core/log.h"
#include "kernels/ops.h"
#include "models/rng.h"
#include "models/student/checkpoint.h"

static char tmpdir[64];
static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void assert_error_has(const char *needle) {
    const char *e = sushi_last_error();
    if (!strstr(e, needle)) fprintf(stderr, "error \"%s\" lacks \"%s\"\n", e, needle);
    assert_non_null(strstr(e, needle));
}

/* GQA (H=6, G=2), d_head ≠ C/H, padded vocab */
static struct student_config small_config(int tied) {
    struct student_config c = {.n_layers = 2, .d_model = 20, .n_heads = 6, .n_kv_heads = 2,
                               .d_head = 6, .d_ff = 26, .vocab = 37, .vocab_padded = 48,
                               .max_seq = 16, .tied = tied, .rope_theta = 10000.0f,
                               .norm_eps = 1e-5f};
    assert_int_equal(student_config_validate(&c), 0);
    return c;
}

static float *random_buffer(const struct student_config *c, uint64_t seed, float std, int positive) {
    size_t n = student_param_count(c);
    float *x = malloc(n * sizeof *x);
    struct rng r;
    rng_seed(&r, seed);
    assert_int_equal(rng_fill_normal(&r, x, n, 0.0f, std), 0);
    if (positive)
        for (size_t i = 0; i < n; i++) x[i] = fabsf(x[i]);
    return x;
}

static void test_roundtrip_bitexact(void **state) {
    (void)state;
    for (int tied = 0; tied <= 1; tied++) {
        struct student_config c = small_config(tied);
        size_t n = student_param_count(&c);
        float *p = random_buffer(&c, 1 + tied, 0.5f, 0), *m = random_buffer(&c, 2, 0.1f, 0),
              *v = random_buffer(&c, 3, 0.01f, 1);
        json_t *st = json_pack("{s:i, s:I, s:[I,I,I,I], s:f, s:{s:i, s:s}}", "step", 12, "next_batch",
                               (json_int_t)123456789012LL, "rng", (json_int_t)1, (json_int_t)2,
                               (json_int_t)3, (json_int_t)-4, "loss_scale", 1024.0, "cursor",
                               "epoch", 2, "source", "web");
        const char *dir = tmp_path(tied ? "rt-tied" : "rt-untied");
        int rc = checkpoint_save(dir, &c, p, m, v, st);
        if (rc) fprintf(stderr, "%s\n", sushi_last_error());
        assert_int_equal(rc, 0);
        struct student_config c2 = {0};
        enum ckpt_source src = CKPT_FROM_SHAPES;
        assert_int_equal(checkpoint_read_config(dir, &c2, &src), 0);
        assert_int_equal(src, CKPT_FROM_CONFIG_JSON);
        assert_memory_equal(&c, &c2, sizeof c);
        float *p2 = calloc(n, 4), *m2 = calloc(n, 4), *v2 = calloc(n, 4);
        json_t *st2 = NULL;
        assert_int_equal(checkpoint_load(dir, &c2, p2, m2, v2, &st2), 0);
        assert_memory_equal(p, p2, n * 4);
        assert_memory_equal(m, m2, n * 4);
        assert_memory_equal(v, v2, n * 4);
        assert_true(json_equal(st, st2));
        /* the HF view of the directory */
        char path[300];
        snprintf(path, sizeof path, "%s/config.json", dir);
        json_t *hf = json_load_file(path, 0, NULL);
        assert_string_equal(json_string_value(json_object_get(hf, "model_type")), "llama");
        assert_int_equal(json_integer_value(json_object_get(hf, "vocab_size")), 48);
        assert_int_equal(json_integer_value(ju_get_path(hf, "sushi.vocab")), 37);
        assert_true(json_real_value(json_object_get(hf, "rms_norm_eps")) == 1e-5);
        assert_int_equal(json_is_true(json_object_get(hf, "tie_word_embeddings")), tied);
        json_decref(hf);
        struct st_file f;
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        assert_int_equal(st_open(&f, path), 0);
        assert_int_equal(st_find(&f, "lm_head.weight") == NULL, tied);
        assert_int_equal(f.n, 2 + 9 * 2 + !tied);
        st_close(&f);
        json_decref(st);
        json_decref(st2);
        free(p); free(m); free(v); free(p2); free(m2); free(v2);
    }
}

static int count_entries(const char *prefix) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ls -d %s* 2>/dev/null | wc -l", prefix);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (fscanf(f, "%d", &n) != 1) n = -1;
    pclose(f);
    return n;
}

static void write_text(const char *dir, const char *file, const char *text);

static void test_atomic_replace_and_recovery(void **state) {
    (void)state;
    struct student_config c = small_config(1);
    size_t n = student_param_count(&c);
    float *a = random_buffer(&c, 10, 1.0f, 0), *b = random_buffer(&c, 11, 1.0f, 0), *x = calloc(n, 4);
    const char *dir = tmp_path("atomic");
    assert_int_equal(checkpoint_save(dir, &c, a, NULL, NULL, NULL), 0);
    assert_int_equal(checkpoint_save(dir, &c, b, NULL, NULL, NULL), 0);
    assert_int_equal(count_entries(dir), 1);   /* no .old, no .tmp-* left */
    assert_int_equal(checkpoint_load(dir, &c, x, NULL, NULL, NULL), 0);
    assert_memory_equal(x, b, n * 4);
    /* a failed save leaves the previous checkpoint untouched */
    struct student_config bad = c;
    bad.n_heads = 0;
    assert_int_not_equal(checkpoint_save(dir, &bad, a, NULL, NULL, NULL), 0);
    json_t *arr = json_array();
    assert_int_equal(checkpoint_save(dir, &c, a, NULL, NULL, arr), SUSHI_EINVAL);
    json_decref(arr);
    assert_int_equal(count_entries(dir), 1);
    memset(x, 0, n * 4);
    assert_int_equal(checkpoint_load(dir, &c, x, NULL, NULL, NULL), 0);
    assert_memory_equal(x, b, n * 4);
    /* a crash between the two renames leaves only DIR.old: readers use it */
    char old[300];
    snprintf(old, sizeof old, "%s.old", dir);
    assert_int_equal(rename(dir, old), 0);
    struct student_config c2;
    assert_int_equal(checkpoint_read_config(dir, &c2, NULL), 0);
    memset(x, 0, n * 4);
    assert_int_equal(checkpoint_load(dir, &c2, x, NULL, NULL, NULL), 0);
    assert_memory_equal(x, b, n * 4);
    /* and the next save cleans it up, with what a save killed mid-way left */
    char stale[300];
    snprintf(stale, sizeof stale, "%s.tmp-Ab3dE9", dir);
    assert_int_equal(fs_mkdir_p(stale, 0755), 0);
    write_text(stale, "model.safetensors", "partial");
    snprintf(stale, sizeof stale, "%s.tmp-keep", dir);   /* not a temporary name: kept */
    assert_int_equal(fs_mkdir_p(stale, 0755), 0);
    assert_int_equal(checkpoint_save(dir, &c, a, NULL, NULL, NULL), 0);
    assert_true(fs_is_dir(stale));
    assert_int_equal(fs_remove_tree(stale), 0);
    assert_int_equal(count_entries(dir), 1);
    assert_int_equal(checkpoint_load(dir, &c, x, NULL, NULL, NULL), 0);
    assert_memory_equal(x, a, n * 4);
    /* missing optimizer state / trainer state when asked for */
    float *m = calloc(n, 4), *v = calloc(n, 4);
    json_t *st = NULL;
    assert_int_equal(checkpoint_load(dir, &c, x, m, v, NULL), SUSHI_ENOTFOUND);
    assert_error_has("optimizer.safetensors");
    assert_int_equal(checkpoint_load(dir, &c, x, NULL, NULL, &st), SUSHI_ENOTFOUND);
    assert_error_has("trainer_state.json: missing");
    assert_int_equal(checkpoint_read_config(tmp_path("nowhere"), &c2, NULL), SUSHI_ENOTFOUND);
    assert_error_has("nowhere: no such checkpoint directory");
    free(a); free(b); free(x); free(m); free(v);
}

/* writes DIR/model.safetensors from the views of p, dropping `skip`, adding `extra`
 * (an F32 [2] tensor), writing tensor `as_dtype_name` as dtype dt */
static void write_model_file(const char *dir, const struct student_config *c, float *p, const char *skip,
                             const char *extra, const char *retype, enum dtype dt, const char *meta) {
    fs_mkdir_p(dir, 0755);
    int n = student_param_views(c, p, NULL, 0);
    struct param_view *pv = calloc((size_t)n, sizeof *pv);
    assert_int_equal(student_param_views(c, p, pv, n), n);
    struct st_writer *w = st_writer_new();
    uint16_t *conv[256] = {0};
    static float two[2] = {1, 2};
    int nc = 0;
    for (int i = 0; i < n; i++) {
        if (skip && !strcmp(pv[i].name, skip)) continue;
        const void *data = pv[i].data;
        enum dtype t = DT_F32;
        if (retype && (!strcmp(retype, "*") || !strcmp(pv[i].name, retype))) {
            t = dt;
            if (dt == DT_BF16) {   /* exact: the values were rounded to bf16 beforehand */
                uint16_t *h = malloc(pv[i].numel * 2);
                for (size_t k = 0; k < pv[i].numel; k++) {
                    uint32_t u;
                    memcpy(&u, &pv[i].data[k], 4);
                    h[k] = (uint16_t)(u >> 16);
                }
                conv[nc++] = h;
                data = h;
            }
        }
        assert_int_equal(st_writer_add(w, pv[i].name, t, pv[i].ndim, pv[i].shape, data), 0);
    }
    int64_t s2[1] = {2};
    if (extra) assert_int_equal(st_writer_add(w, extra, DT_F32, 1, s2, two), 0);
    if (meta) assert_int_equal(st_writer_meta(w, CKPT_META_CONFIG, meta), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(st_writer_commit(w, path), 0);
    st_writer_free(w);
    for (int i = 0; i < nc; i++) free(conv[i]);
    free(pv);
}

static void write_text(const char *dir, const char *file, const char *text) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    assert_int_equal(fs_write_atomic(path, text, strlen(text)), 0);
}

static void expect_load_refused(const char *dir, const struct student_config *c, int code,
                                const char *m1, const char *m2) {
    size_t n = student_param_count(c);
    float *x = calloc(n, 4);
    sushi_clear_error();
    int rc = checkpoint_load(dir, c, x, NULL, NULL, NULL);
    if (rc != code) fprintf(stderr, "rc %d: %s\n", rc, sushi_last_error());
    assert_int_equal(rc, code);
    assert_error_has("model.safetensors");
    if (m1) assert_error_has(m1);
    if (m2) assert_error_has(m2);
    free(x);
}

static void test_broken_checkpoints_refused(void **state) {
    (void)state;
    struct student_config c = small_config(1);
    float *p = random_buffer(&c, 5, 1.0f, 0);
    const char *dir = tmp_path("broken");
    assert_int_equal(checkpoint_save(dir, &c, p, NULL, NULL, NULL), 0);
    /* loading with a different architecture: wrong shape, expected vs actual */
    struct student_config wide = c;
    wide.d_ff = 30;
    expect_load_refused(dir, &wide, SUSHI_ESHAPE, "tensor model.layers.0.mlp.gate_proj.weight",
                        "wrong shape: expected [30, 20], got [26, 20]");
    write_model_file(dir, &c, p, "model.norm.weight", NULL, NULL, DT_F32, NULL);
    expect_load_refused(dir, &c, SUSHI_ENOTFOUND, "missing tensor model.norm.weight", NULL);
    write_model_file(dir, &c, p, NULL, "model.layers.0.extra.weight", NULL, DT_F32, NULL);
    expect_load_refused(dir, &c, SUSHI_EFORMAT, "unexpected extra tensor model.layers.0.extra.weight", NULL);
    write_model_file(dir, &c, p, NULL, NULL, "model.layers.1.input_layernorm.weight", DT_I32, NULL);
    expect_load_refused(dir, &c, SUSHI_ESHAPE, "tensor model.layers.1.input_layernorm.weight",
                        "wrong dtype I32");
    /* untied file loaded as tied: lm_head is an unexpected extra */
    struct student_config u = small_config(0);
    float *pu = random_buffer(&u, 6, 1.0f, 0);
    write_model_file(dir, &u, pu, NULL, NULL, NULL, DT_F32, NULL);
    free(pu);
    expect_load_refused(dir, &c, SUSHI_EFORMAT, "unexpected extra tensor lm_head.weight", NULL);
    /* truncated file */
    write_model_file(dir, &c, p, NULL, NULL, NULL, DT_F32, NULL);
    char path[300];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    long long size = fs_file_size(path);
    assert_int_equal(truncate(path, size - 10), 0);
    expect_load_refused(dir, &c, SUSHI_EFORMAT, "truncated", NULL);
    /* optimizer moments must be F32 */
    struct student_config c2;
    assert_int_equal(checkpoint_save(dir, &c, p, p, p, NULL), 0);
    assert_int_equal(checkpoint_read_config(dir, &c2, NULL), 0);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    float *m = calloc(student_param_count(&c), 4), *v = calloc(student_param_count(&c), 4);
    {   /* rewrite one moment as BF16 */
        struct st_file f;
        assert_int_equal(st_open(&f, path), 0);
        struct st_writer *w = st_writer_new();
        for (size_t i = 0; i < f.n; i++) {
            const struct st_tensor *t = &f.tensors[i];
            int bf = !strcmp(t->name, "model.norm.weight.exp_avg");
            assert_int_equal(st_writer_add(w, t->name, bf ? DT_BF16 : t->dtype, t->ndim, t->shape,
                                           t->data), 0);
        }
        char p2[300];
        snprintf(p2, sizeof p2, "%s/opt2.safetensors", dir);
        assert_int_equal(st_writer_commit(w, p2), 0);
        st_writer_free(w);
        st_close(&f);
        assert_int_equal(rename(p2, path), 0);
    }
    assert_int_equal(checkpoint_load(dir, &c, m, m, v, NULL), SUSHI_ESHAPE);
    assert_error_has("optimizer.safetensors: tensor model.norm.weight.exp_avg: wrong");
    assert_error_has("expected F32, got BF16");
    free(m); free(v);
    /* config.json problems */
    write_text(dir, "config.json", "{\"model_type\": \"llama\", ");
    assert_int_equal(checkpoint_read_config(dir, &c2, NULL), SUSHI_EFORMAT);
    assert_error_has("config.json: corrupt JSON");
    write_text(dir, "config.json", "{\"model_type\": \"deepseek_v3\"}");
    assert_int_equal(checkpoint_read_config(dir, &c2, NULL), SUSHI_EUNSUPPORTED);
    assert_error_has("config.json: model_type \"deepseek_v3\" is not a student (llama) checkpoint");
    const char *base = "{\"model_type\": \"llama\", \"hidden_size\": 20, \"intermediate_size\": 26, "
                       "\"num_attention_heads\": 6, \"num_key_value_heads\": 2, \"head_dim\": 6, "
                       "\"num_hidden_layers\": 2, \"vocab_size\": 48, ";
    char text[1024];
    snprintf(text, sizeof text, "%s\"attention_bias\": true}", base);
    write_text(dir, "config.json", text);
    assert_int_equal(checkpoint_read_config(dir, &c2, NULL), SUSHI_EUNSUPPORTED);
    assert_error_has("config.json: attention_bias: true is not supported");
    snprintf(text, sizeof text, "%s\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}}", base);
    write_text(dir, "config.json", text);
    assert_int_equal(checkpoint_read_config(dir, &c2, NULL), SUSHI_EUNSUPPORTED);
    assert_error_has("rope_scaling.rope_type: unsupported \"llama3\"");
    snprintf(text, sizeof text, "%s\"sushi\": {\"vocab\": 30, \"windw\": 4}}", base);
    write_text(dir, "config.json", text);
    assert_int_equal(checkpoint_read_config(dir, &c2, NULL), SUSHI_EINVAL);
    assert_error_has("config.json: sushi.windw: unknown key");
    snprintf(text, sizeof text, "%s\"hidden_size\": \"20\"}", base);
    write_text(dir, "config.json", text);
    assert_int_equal(checkpoint_read_config(dir, &c2, NULL), SUSHI_EFORMAT);
    /* transformers 5 dialect: rope_parameters */
    snprintf(text, sizeof text, "%s\"max_position_embeddings\": 64, \"rope_parameters\": {\"rope_type\": "
             "\"yarn\", \"rope_theta\": 50000.0, \"factor\": 4.0, \"original_max_position_embeddings\": 16, "
             "\"beta_fast\": 32, \"beta_slow\": 1}}", base);
    write_text(dir, "config.json", text);
    assert_int_equal(checkpoint_read_config(dir, &c2, NULL), 0);
    assert_true(c2.rope_theta == 50000.0f);
    assert_int_equal(c2.rope_scaling.type, ROPE_SCALING_YARN);
    assert_true(c2.rope_scaling.factor == 4.0f);
    assert_int_equal(c2.rope_scaling.original_max_position, 16);
    assert_int_equal(c2.max_seq, 64);
    assert_int_equal(c2.vocab, 48);
    free(p);
}

/* A Llama-family file as HF tools write it: bf16, tied (no lm_head), a rotary buffer,
 * no config.json and no sushi metadata; D = 64 as in SmolLM. */
static void test_bf16_hf_layout_detected(void **state) {
    (void)state;
    struct student_config c = {.n_layers = 3, .d_model = 96, .n_heads = 3, .n_kv_heads = 1,
                               .d_head = 64, .d_ff = 40, .vocab = 50, .max_seq = 2048, .tied = 1};
    assert_int_equal(student_config_validate(&c), 0);
    size_t n = student_param_count(&c);
    float *p = random_buffer(&c, 7, 1.0f, 0);
    for (size_t i = 0; i < n; i++) {   /* round to bf16 so the conversion is exact */
        uint32_t u;
        memcpy(&u, &p[i], 4);
        u &= 0xffff0000u;
        memcpy(&p[i], &u, 4);
    }
    const char *dir = tmp_path("hf-bf16");
    write_model_file(dir, &c, p, NULL, "model.layers.0.self_attn.rotary_emb.inv_freq", "*", DT_BF16, NULL);
    struct student_config d = {0};
    enum ckpt_source src;
    assert_int_equal(checkpoint_read_config(dir, &d, &src), 0);
    assert_int_equal(src, CKPT_FROM_SHAPES);
    assert_memory_equal(&c, &d, sizeof c);
    float *x = calloc(n, 4);
    assert_int_equal(checkpoint_load(dir, &d, x, NULL, NULL, NULL), 0);
    assert_memory_equal(x, p, n * 4);
    /* the same tensors as two HF shards with an index */
    {
        char path[300], shard[300];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        struct st_file f;
        assert_int_equal(st_open(&f, path), 0);
        json_t *wm = json_object();
        for (int part = 0; part < 2; part++) {
            char file[64];
            snprintf(file, sizeof file, "model-%05d-of-00002.safetensors", part + 1);
            struct st_writer *w = st_writer_new();
            for (size_t i = part * f.n / 2; i < (part + 1) * f.n / 2; i++) {
                const struct st_tensor *t = &f.tensors[i];
                assert_int_equal(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
                json_object_set_new(wm, t->name, json_string(file));
            }
            snprintf(shard, sizeof shard, "%s/%s", dir, file);
            assert_int_equal(st_writer_commit(w, shard), 0);
            st_writer_free(w);
        }
        st_close(&f);
        assert_int_equal(unlink(path), 0);
        json_t *index = json_pack("{s:{}, s:o}", "metadata", "weight_map", wm);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        assert_int_equal(json_dump_file(index, path, 0), 0);
        json_decref(index);
        memset(&d, 0, sizeof d);
        assert_int_equal(checkpoint_read_config(dir, &d, &src), 0);
        assert_memory_equal(&c, &d, sizeof c);
        memset(x, 0, n * 4);
        assert_int_equal(checkpoint_load(dir, &d, x, NULL, NULL, NULL), 0);
        assert_memory_equal(x, p, n * 4);
    }
    /* the head count needs a hint when D is not 64 */
    struct student_config s = small_config(1);
    const char *dir2 = tmp_path("hf-small");
    write_model_file(dir2, &s, p, NULL, NULL, NULL, DT_F32, NULL);
    memset(&d, 0, sizeof d);
    assert_int_equal(checkpoint_read_config(dir2, &d, &src), SUSHI_ESHAPE);
    assert_error_has("not a multiple of head dim 64");
    memset(&d, 0, sizeof d);
    d.n_heads = 6;
    d.max_seq = 16;
    assert_int_equal(checkpoint_read_config(dir2, &d, &src), 0);
    s.vocab = s.vocab_padded;   /* shapes only know the padded vocabulary */
    assert_memory_equal(&s, &d, sizeof s);
    /* sushi's own metadata restores everything without config.json */
    struct student_config full = small_config(0);
    assert_int_equal(checkpoint_save(dir2, &full, p, NULL, NULL, NULL), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/config.json", dir2);
    assert_int_equal(unlink(path), 0);
    memset(&d, 0, sizeof d);
    assert_int_equal(checkpoint_read_config(dir2, &d, &src), 0);
    assert_int_equal(src, CKPT_FROM_METADATA);
    assert_memory_equal(&full, &d, sizeof d);
    free(p);
    free(x);
}

/* SmolLM-135M's published config.json (transformers 4.40) reads as the smollm-135m tier */
static void test_smollm_config_json(void **state) {
    (void)state;
    const char *text =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
        " \"bos_token_id\": 0, \"eos_token_id\": 0, \"hidden_act\": \"silu\", \"hidden_size\": 576,"
        " \"initializer_range\": 0.02, \"intermediate_size\": 1536, \"max_position_embeddings\": 2048,"
        " \"model_type\": \"llama\", \"num_attention_heads\": 9, \"num_hidden_layers\": 30,"
        " \"num_key_value_heads\": 3, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05,"
        " \"rope_scaling\": null, \"rope_theta\": 10000.0, \"tie_word_embeddings\": true,"
        " \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.40.1\", \"use_cache\": true,"
        " \"vocab_size\": 49152}";
    json_t *hf = json_loads(text, 0, NULL);
    assert_non_null(hf);
    struct student_config c;
    assert_int_equal(checkpoint_config_from_hf(hf, "smollm/config.json", &c), 0);
    json_decref(hf);
    struct student_config want = {.n_layers = 30, .d_model = 576, .n_heads = 9, .n_kv_heads = 3,
                                  .d_head = 64, .d_ff = 1536, .vocab = 49152, .vocab_padded = 49152,
                                  .max_seq = 2048, .tied = 1, .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    assert_memory_equal(&c, &want, sizeof c);
    assert_int_equal(student_param_count(&c), 134515008);   /* SmolLM-135M's parameter count */
}

/* The PyTorch Llama oracle loads the saved directory (strict names and shapes) and
 * reproduces the C forward's per-row losses and dlogits. */
static void test_hf_llama_oracle_matches(void **state) {
    (void)state;
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) skip();
    const char *root = getenv("SUSHI_REPO_ROOT");
    for (int tied = 0; tied <= 1; tied++) {
        struct student_config c = small_config(tied);
        const int B = 2, T = 16, N = B * T;
        struct student_model mdl;
        memset(&mdl, 0, sizeof mdl);
        int rc = student_create(&mdl, &c, ops_cpu(), B, T, 1);
        if (rc) fprintf(stderr, "%s\n", sushi_last_error());
        assert_int_equal(rc, 0);
        /* large random weights so every tensor visibly shapes the logits */
        struct rng r;
        rng_seed(&r, 100 + tied);
        rng_fill_normal(&r, mdl.master, mdl.n_params, 0.0f, 0.3f);
        assert_int_equal(student_sync_weights(&mdl), 0);
        const char *dir = tmp_path(tied ? "hf-tied" : "hf-untied");
        assert_int_equal(checkpoint_save(dir, &c, mdl.master, NULL, NULL, NULL), 0);
        int32_t ids[32], tg[32];
        for (int i = 0; i < N; i++) {
            ids[i] = (int32_t)(rng_u64(&r) % c.vocab);
            tg[i] = (int32_t)(rng_u64(&r) % c.vocab);
        }
        char ip[300], tp[300], op[300], cmd[1400];
        snprintf(ip, sizeof ip, "%s/ids.bin", tmpdir);
        snprintf(tp, sizeof tp, "%s/tg.bin", tmpdir);
        snprintf(op, sizeof op, "%s/out.bin", tmpdir);
        assert_int_equal(fs_write_atomic(ip, ids, sizeof ids), 0);
        assert_int_equal(fs_write_atomic(tp, tg, sizeof tg), 0);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/ckpt_llama.py %s %d %d %s %s %s",
                 root ? root : ".", dir, B, T, ip, tp, op);
        assert_int_equal(system(cmd), 0);
        char *out;
        size_t len;
        assert_int_equal(fs_read_all(op, &out, &len), 0);
        assert_int_equal(len, (size_t)N * 4 * (1 + c.vocab_padded));
        const float *ref_loss = (const float *)out, *ref_dl = ref_loss + N;
        struct student_loss_cfg lc = {0};
        float loss;
        assert_int_equal(student_forward(&mdl, ids, tg, NULL, NULL, &lc, &loss), 0);
        double max_loss = 0, max_dl = 0, mean = 0;
        for (int i = 0; i < N; i++) {
            max_loss = fmax(max_loss, fabs(mdl.a.row_loss[i] - ref_loss[i]));
            mean += ref_loss[i] / N;
        }
        const float *dl = mdl.a.logits;   /* CPU backend: f32 host memory */
        for (size_t i = 0; i < (size_t)N * c.vocab_padded; i++) max_dl = fmax(max_dl, fabs(dl[i] - ref_dl[i]));
        printf("tied=%d: mean loss %.5f, |loss - ref| max %.3g, |dlogits - ref| max %.3g\n", tied, mean,
               max_loss, max_dl);
        assert_true(mean > 1.0);              /* a non-trivial distribution */
        assert_true(max_loss < 1e-5 * fmax(1.0, mean));
        assert_true(max_dl < 1e-7);
        assert_true(fabs(loss - mean) < 1e-5 * mean);
        free(out);
        student_free(&mdl);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sushi-test-ckpt-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_bitexact),
        cmocka_unit_test(test_atomic_replace_and_recovery),
        cmocka_unit_test(test_broken_checkpoints_refused),
        cmocka_unit_test(test_bf16_hf_layout_detected),
        cmocka_unit_test(test_smollm_config_json),
        cmocka_unit_test(test_hf_llama_oracle_matches),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fs_remove_tree(tmpdir);
    return rc;
}
