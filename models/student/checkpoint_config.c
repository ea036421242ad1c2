/* A checkpoint's architecture: HF Llama config.json <-> struct student_config, and
 * what can be inferred from tensor shapes alone (see checkpoint.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/config_student.h"
#include "common/core/fsutil.h"
#include "common/core/json_util.h"
#include "common/core/log.h"
#include "models/student/checkpoint.h"

static int ckpt_set(json_t *o, const char *k, json_t *v) { return v ? json_object_set_new(o, k, v) : -1; }

json_t *checkpoint_hf_config(const struct student_config *c) {
    if (!c) return NULL;
    json_t *o = json_object();
    int bad = !o;
    if (bad) return NULL;
    bad |= ckpt_set(o, "architectures", json_pack("[s]", "LlamaForCausalLM"));
    bad |= ckpt_set(o, "model_type", json_string("llama"));
    bad |= ckpt_set(o, "hidden_size", json_integer(c->d_model));
    bad |= ckpt_set(o, "intermediate_size", json_integer(c->d_ff));
    bad |= ckpt_set(o, "num_attention_heads", json_integer(c->n_heads));
    bad |= ckpt_set(o, "num_key_value_heads", json_integer(c->n_kv_heads));
    bad |= ckpt_set(o, "head_dim", json_integer(c->d_head));
    bad |= ckpt_set(o, "num_hidden_layers", json_integer(c->n_layers));
    bad |= ckpt_set(o, "vocab_size", json_integer(c->vocab_padded));
    bad |= ckpt_set(o, "max_position_embeddings", json_integer(c->max_seq));
    bad |= ckpt_set(o, "rms_norm_eps", ju_real_from_float((c->norm_eps)));
    bad |= ckpt_set(o, "rope_theta", ju_real_from_float((c->rope_theta)));
    const struct rope_scaling *r = &c->rope_scaling;
    if (r->type == ROPE_SCALING_YARN) {
        json_t *rs = json_pack("{s:s, s:o, s:i, s:o, s:o}", "rope_type", "yarn",
                               "factor", ju_real_from_float(r->factor),
                               "original_max_position_embeddings", r->original_max_position,
                               "beta_fast", ju_real_from_float(r->beta_fast),
                               "beta_slow", ju_real_from_float(r->beta_slow));
        if (rs && r->mscale != 0) bad |= ckpt_set(rs, "mscale", ju_real_from_float((r->mscale)));
        if (rs && r->mscale_all_dim != 0)
            bad |= ckpt_set(rs, "mscale_all_dim", ju_real_from_float((r->mscale_all_dim)));
        bad |= ckpt_set(o, "rope_scaling", rs);
    } else {
        bad |= ckpt_set(o, "rope_scaling", json_null());
    }
    bad |= ckpt_set(o, "tie_word_embeddings", json_boolean(c->tied));
    bad |= ckpt_set(o, "hidden_act", json_string("silu"));
    bad |= ckpt_set(o, "attention_bias", json_false());
    bad |= ckpt_set(o, "mlp_bias", json_false());
    bad |= ckpt_set(o, "torch_dtype", json_string("float32"));
    json_t *sushi = json_pack("{s:i, s:i, s:b}", "vocab", c->vocab, "window", c->window, "doc_mask", c->doc_mask);
    if (sushi && encoder_enabled(&c->enc)) {   /* model.encoders as config_student writes it */
        json_t *native = config_student_to_json(c);
        json_t *enc = native ? json_object_get(native, "encoders") : NULL;
        bad |= !enc || json_object_set(sushi, "encoders", enc);
        json_decref(native);
    }
    bad |= ckpt_set(o, "sushi", sushi);
    if (bad) { json_decref(o); return NULL; }
    return o;
}

static const char *const sushi_keys[] = {"vocab", "window", "doc_mask", "encoders", NULL};

/* sushi.encoders: parsed by config_student's reader, on the config read so far */
static int ckpt_encoders_from_hf(const json_t *s, const char *file, struct student_config *c) {
    json_t *enc = json_object_get(s, "encoders");
    if (!enc) return SUSHI_OK;
    json_t *native = config_student_to_json(c);
    if (!native || json_object_set(native, "encoders", enc)) {
        json_decref(native);
        return sushi_error(SUSHI_ENOMEM, "%s: out of memory", file);
    }
    struct ju_where w = {file, "sushi"};
    int rc = config_student_from_json(native, w, c);
    json_decref(native);
    return rc;
}
static const char *const yarn_keys[] = {
    "type", "rope_type", "rope_theta", "factor", "original_max_position_embeddings", "beta_fast",
    "beta_slow", "mscale", "mscale_all_dim", "attention_factor", NULL};

#define BIG 1000000000LL

/* rope_theta and rope_scaling at the top level, or transformers 5's rope_parameters. */
static int ckpt_rope_from_hf(const json_t *hf, struct ju_where w, struct student_config *c) {
    int rc = ju_float(hf, w, "rope_theta", 0, &c->rope_theta);
    if (rc) return rc;
    json_t *rs = NULL;
    const char *key = "rope_parameters";
    if ((rc = ju_object(hf, w, key, 0, &rs))) return rc;
    if (!rs) {
        key = "rope_scaling";
        if ((rc = ju_object(hf, w, key, 0, &rs))) return rc;
    }
    if (!rs) return SUSHI_OK;
    struct ju_where wr = {w.file, key};
    if ((rc = ju_float(rs, wr, "rope_theta", 0, &c->rope_theta))) return rc;
    const char *type = NULL;
    if ((rc = ju_string(rs, wr, "rope_type", 0, &type))) return rc;
    if (!type && (rc = ju_string(rs, wr, "type", 0, &type))) return rc;
    if (!type || !strcmp(type, "default")) return SUSHI_OK;
    if (strcmp(type, "yarn"))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: %s.rope_type: unsupported \"%s\" (default or yarn)",
                           w.file, key, type);
    if ((rc = ju_check_keys(rs, wr, yarn_keys))) return rc;
    if (json_object_get(rs, "attention_factor"))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: %s.attention_factor: not supported", w.file, key);
    struct rope_scaling *r = &c->rope_scaling;
    r->type = ROPE_SCALING_YARN;
    if ((rc = ju_float(rs, wr, "factor", 1, &r->factor))) return rc;
    if ((rc = ju_int(rs, wr, "original_max_position_embeddings", 0, 1, BIG, &r->original_max_position)))
        return rc;
    if ((rc = ju_float(rs, wr, "beta_fast", 0, &r->beta_fast))) return rc;
    if ((rc = ju_float(rs, wr, "beta_slow", 0, &r->beta_slow))) return rc;
    if ((rc = ju_float(rs, wr, "mscale", 0, &r->mscale))) return rc;
    return ju_float(rs, wr, "mscale_all_dim", 0, &r->mscale_all_dim);
}

/* Fields whose non-default value would change the math are refused by name. */
static int ckpt_refuse_unsupported(const json_t *hf, struct ju_where w) {
    static const char *const no_bias[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        int b = 0;
        int rc = ju_bool(hf, w, no_bias[i], 0, &b);
        if (rc) return rc;
        if (b) return sushi_error(SUSHI_EUNSUPPORTED, "%s: %s: true is not supported", w.file, no_bias[i]);
    }
    const char *act = NULL;
    int rc = ju_string(hf, w, "hidden_act", 0, &act);
    if (rc) return rc;
    if (act && strcmp(act, "silu"))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: hidden_act: \"%s\" is not supported (silu)", w.file, act);
    return SUSHI_OK;
}

int checkpoint_config_from_hf(const json_t *hf, const char *file, struct student_config *c) {
    if (!hf || !c) return sushi_error(SUSHI_EINVAL, "checkpoint_config_from_hf: null argument");
    if (!file) file = CKPT_CONFIG;
    memset(c, 0, sizeof *c);
    struct ju_where w = {file, ""};
    if (!json_is_object(hf)) return sushi_error(SUSHI_EFORMAT, "%s: not a JSON object", file);
    const char *mt = NULL;
    int rc = ju_string(hf, w, "model_type", 1, &mt);
    if (rc) return rc;
    if (strcmp(mt, "llama"))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: model_type \"%s\" is not a student (llama) checkpoint",
                           file, mt);
    if ((rc = ckpt_refuse_unsupported(hf, w))) return rc;
    struct { const char *key; int *dst; int required; } ints[] = {
        {"num_hidden_layers", &c->n_layers, 1}, {"hidden_size", &c->d_model, 1},
        {"num_attention_heads", &c->n_heads, 1}, {"num_key_value_heads", &c->n_kv_heads, 0},
        {"head_dim", &c->d_head, 0}, {"intermediate_size", &c->d_ff, 1},
        {"vocab_size", &c->vocab_padded, 1}, {"max_position_embeddings", &c->max_seq, 0}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if ((rc = ju_int(hf, w, ints[i].key, ints[i].required, 1, BIG, ints[i].dst))) return rc;
    if (!c->max_seq) c->max_seq = 2048;
    if ((rc = ju_float(hf, w, "rms_norm_eps", 0, &c->norm_eps))) return rc;
    if ((rc = ju_bool(hf, w, "tie_word_embeddings", 0, &c->tied))) return rc;
    if ((rc = ckpt_rope_from_hf(hf, w, c))) return rc;
    json_t *s = NULL;
    if ((rc = ju_object(hf, w, "sushi", 0, &s))) return rc;
    c->vocab = c->vocab_padded;
    if (s) {
        struct ju_where ws = {file, "sushi"};
        if ((rc = ju_check_keys(s, ws, sushi_keys))) return rc;
        if ((rc = ju_int(s, ws, "vocab", 0, 1, c->vocab_padded, &c->vocab))) return rc;
        if ((rc = ju_int(s, ws, "window", 0, 0, BIG, &c->window))) return rc;
        if ((rc = ju_bool(s, ws, "doc_mask", 0, &c->doc_mask))) return rc;
        if ((rc = ckpt_encoders_from_hf(s, file, c))) return rc;
    }
    if ((rc = student_config_validate(c))) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        return sushi_error(rc, "%s: %s", file, msg);
    }
    return SUSHI_OK;
}

/* Rows and columns of a 2-D tensor, or an error naming it. */
static int ckpt_dims(const struct st_set *f, const char *name, int64_t *rows, int64_t *cols) {
    const struct st_file *file = NULL;
    const struct st_tensor *t = st_set_find(f, name, &file);
    if (!t) return sushi_error(SUSHI_ENOTFOUND, "%s: missing tensor %s (needed to infer the architecture)",
                               f->dir, name);
    if (t->ndim != 2)
        return sushi_error(SUSHI_ESHAPE, "%s: tensor %s: expected 2 dimensions, got %d", file->path, name, t->ndim);
    *rows = t->shape[0];
    *cols = t->shape[1];
    if (*rows <= 0 || *cols <= 0 || *rows > BIG || *cols > BIG)
        return sushi_error(SUSHI_ESHAPE, "%s: tensor %s: implausible shape", file->path, name);
    return SUSHI_OK;
}

int checkpoint_config_from_tensors(const struct st_set *f, struct student_config *c) {
    if (!f || !c) return sushi_error(SUSHI_EINVAL, "checkpoint_config_from_tensors: null argument");
    struct student_config hint = *c;
    memset(c, 0, sizeof *c);
    int64_t V, C, q, k, F, x;
    int rc = ckpt_dims(f, "model.embed_tokens.weight", &V, &C);
    if (!rc) rc = ckpt_dims(f, "model.layers.0.self_attn.q_proj.weight", &q, &x);
    if (!rc) rc = ckpt_dims(f, "model.layers.0.self_attn.k_proj.weight", &k, &x);
    if (!rc) rc = ckpt_dims(f, "model.layers.0.mlp.gate_proj.weight", &F, &x);
    if (rc) return rc;
    int layers = 0;
    for (size_t i = 0; i < f->n; i++) {
        int l, used = 0;
        if (sscanf(f->tensors[i]->name, "model.layers.%d.%n", &l, &used) == 1 && used > 0 &&
            l >= 0 && l < BIG && l + 1 > layers)
            layers = l + 1;
    }
    int64_t D = hint.d_head > 0 ? hint.d_head : hint.n_heads > 0 ? q / hint.n_heads : 64;
    if (D <= 0 || q % D || k % D)
        return sushi_error(SUSHI_ESHAPE,
                           "%s: q_proj has %lld rows and k_proj %lld: not a multiple of head dim %lld "
                           "(give n_heads or d_head, or add config.json)",
                           f->dir, (long long)q, (long long)k, (long long)D);
    c->n_layers = layers;
    c->d_model = (int)C;
    c->vocab_padded = c->vocab = (int)V;
    c->d_head = (int)D;
    c->n_heads = (int)(q / D);
    c->n_kv_heads = (int)(k / D);
    c->d_ff = (int)F;
    c->tied = st_set_find(f, "lm_head.weight", NULL) == NULL;
    c->max_seq = hint.max_seq > 0 ? hint.max_seq : 2048;
    c->rope_theta = hint.rope_theta > 0 ? hint.rope_theta : 10000.0f;
    c->norm_eps = hint.norm_eps > 0 ? hint.norm_eps : 1e-5f;
    if ((rc = student_config_validate(c))) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        return sushi_error(rc, "%s: inferred %s", f->dir, msg);
    }
    return SUSHI_OK;
}

int checkpoint_resolve_dir(const char *dir, char *buf, size_t cap) {
    int rc = fs_dir_resolve(dir, buf, cap);
    if (rc == SUSHI_ENOTFOUND) return sushi_error(rc, "%s: no such checkpoint directory", buf);
    return rc;
}
