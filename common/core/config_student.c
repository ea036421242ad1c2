/* struct student_config <-> JSON (the `model` section of a config). */
#include "common/core/config_student.h"

#include <stddef.h>
#include <string.h>

#include "common/core/log.h"

static const char *const student_keys[] = {
    "n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_ff", "vocab", "vocab_padded",
    "max_seq", "tied", "rope_theta", "rope_scaling", "norm_eps", "window", "doc_mask",
    "grad_checkpoint", "encoders", NULL};
static const char *const rope_keys[] = {
    "type", "factor", "original_max_position", "beta_fast", "beta_slow", "mscale",
    "mscale_all_dim", NULL};

#define BIG 1000000000LL

/* model.encoders: the multimodal prefix encoders (models/student/encoders.h), all off
 * when absent. One table names each field for parsing and for writing back. */
struct enc_field { const char *key; size_t off; int is_bool; };
static const struct enc_field enc_fields[] = {
    {"image", offsetof(struct encoder_config, image), 1},
    {"video_frames", offsetof(struct encoder_config, video_frames), 0},
    {"patch_dim", offsetof(struct encoder_config, patch_dim), 0},
    {"grid_rows", offsetof(struct encoder_config, grid_rows), 0},
    {"grid_cols", offsetof(struct encoder_config, grid_cols), 0},
    {"audio_tokens", offsetof(struct encoder_config, audio_tokens), 0},
    {"mel_bins", offsetof(struct encoder_config, mel_bins), 0},
    {"audio_stride", offsetof(struct encoder_config, audio_stride), 0},
    {"mesh_tokens", offsetof(struct encoder_config, mesh_tokens), 0},
    {"mesh_points", offsetof(struct encoder_config, mesh_points), 0},
    {"mesh_hidden", offsetof(struct encoder_config, mesh_hidden), 0},
};
#define N_ENC_FIELDS (sizeof enc_fields / sizeof enc_fields[0])

static int config_encoders_from_json(const json_t *model, struct ju_where w, struct encoder_config *e) {
    json_t *o = NULL;
    int rc = ju_object(model, w, "encoders", 0, &o);
    if (rc || !o) return rc;
    char path[256];
    struct ju_where we = {w.file, ju_key_path(path, sizeof path, w, "encoders")};
    const char *keys[N_ENC_FIELDS + 1];
    for (size_t i = 0; i < N_ENC_FIELDS; i++) keys[i] = enc_fields[i].key;
    keys[N_ENC_FIELDS] = NULL;
    if ((rc = ju_check_keys(o, we, keys))) return rc;
    for (size_t i = 0; i < N_ENC_FIELDS && !rc; i++) {
        int *dst = (int *)((char *)e + enc_fields[i].off);
        rc = enc_fields[i].is_bool ? ju_bool(o, we, enc_fields[i].key, 0, dst)
                                   : ju_int(o, we, enc_fields[i].key, 0, 0, BIG, dst);
    }
    return rc;
}

static json_t *config_encoders_to_json(const struct encoder_config *e) {
    json_t *o = json_object();
    for (size_t i = 0; o && i < N_ENC_FIELDS; i++) {
        int v = *(const int *)((const char *)e + enc_fields[i].off);
        json_t *j = enc_fields[i].is_bool ? json_boolean(v) : json_integer(v);
        if (!j || json_object_set_new(o, enc_fields[i].key, j)) { json_decref(o); return NULL; }
    }
    return o;
}

static int config_rope_from_json(const json_t *model, struct ju_where w, struct rope_scaling *r) {
    json_t *o = NULL;
    int rc = ju_object(model, w, "rope_scaling", 0, &o);
    if (rc || !o) return rc;
    char path[256];
    struct ju_where wr = {w.file, ju_key_path(path, sizeof path, w, "rope_scaling")};
    if ((rc = ju_check_keys(o, wr, rope_keys))) return rc;
    const char *type = "none";
    if ((rc = ju_string(o, wr, "type", 0, &type))) return rc;
    if (!strcmp(type, "yarn")) r->type = ROPE_SCALING_YARN;
    else if (!strcmp(type, "none")) r->type = ROPE_SCALING_NONE;
    else
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: %s.type: unsupported \"%s\" (none or yarn)",
                           w.file ? w.file : "config", wr.path, type);
    if ((rc = ju_float(o, wr, "factor", r->type == ROPE_SCALING_YARN, &r->factor))) return rc;
    if ((rc = ju_int(o, wr, "original_max_position", 0, 1, BIG, &r->original_max_position))) return rc;
    if ((rc = ju_float(o, wr, "beta_fast", 0, &r->beta_fast))) return rc;
    if ((rc = ju_float(o, wr, "beta_slow", 0, &r->beta_slow))) return rc;
    if ((rc = ju_float(o, wr, "mscale", 0, &r->mscale))) return rc;
    return ju_float(o, wr, "mscale_all_dim", 0, &r->mscale_all_dim);
}

int config_student_from_json(const json_t *model, struct ju_where w, struct student_config *out) {
    if (!out) return sushi_error(SUSHI_EINVAL, "config_student_from_json: null output");
    memset(out, 0, sizeof *out);
    if (!model) return sushi_error(SUSHI_ENOTFOUND, "%s: %s: missing", w.file ? w.file : "config",
                                   w.path && *w.path ? w.path : "model");
    int rc = ju_check_keys(model, w, student_keys);
    if (rc) return rc;
    struct { const char *key; int *dst; long long min; } ints[] = {
        {"n_layers", &out->n_layers, 1}, {"d_model", &out->d_model, 1},
        {"n_heads", &out->n_heads, 1}, {"n_kv_heads", &out->n_kv_heads, 1},
        {"d_head", &out->d_head, 1}, {"d_ff", &out->d_ff, 1}, {"vocab", &out->vocab, 1},
        {"vocab_padded", &out->vocab_padded, 1}, {"max_seq", &out->max_seq, 1},
        {"window", &out->window, 0}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if ((rc = ju_int(model, w, ints[i].key, 0, ints[i].min, BIG, ints[i].dst))) return rc;
    if ((rc = ju_bool(model, w, "tied", 0, &out->tied))) return rc;
    if ((rc = ju_bool(model, w, "doc_mask", 0, &out->doc_mask))) return rc;
    if ((rc = ju_bool(model, w, "grad_checkpoint", 0, &out->grad_checkpoint))) return rc;
    if ((rc = ju_float(model, w, "rope_theta", 0, &out->rope_theta))) return rc;
    if ((rc = ju_float(model, w, "norm_eps", 0, &out->norm_eps))) return rc;
    if ((rc = config_encoders_from_json(model, w, &out->enc))) return rc;
    return config_rope_from_json(model, w, &out->rope_scaling);
}

json_t *config_student_to_json(const struct student_config *c) {
    if (!c) return NULL;
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:o, s:o, s:i, s:b, s:b}",
                          "n_layers", c->n_layers, "d_model", c->d_model, "n_heads", c->n_heads,
                          "n_kv_heads", c->n_kv_heads, "d_head", c->d_head, "d_ff", c->d_ff,
                          "vocab", c->vocab, "vocab_padded", c->vocab_padded, "max_seq", c->max_seq,
                          "tied", c->tied, "rope_theta", ju_real_from_float(c->rope_theta),
                          "norm_eps", ju_real_from_float(c->norm_eps), "window", c->window,
                          "doc_mask", c->doc_mask, "grad_checkpoint", c->grad_checkpoint);
    if (o && encoder_enabled(&c->enc)) {  /* written only when on: text-only configs unchanged */
        json_t *enc = config_encoders_to_json(&c->enc);
        if (!enc || json_object_set_new(o, "encoders", enc)) { json_decref(o); return NULL; }
    }
    if (!o || c->rope_scaling.type != ROPE_SCALING_YARN) return o;
    const struct rope_scaling *r = &c->rope_scaling;
    json_t *rs = json_pack("{s:s, s:o, s:i, s:o, s:o, s:o, s:o}", "type", "yarn",
                           "factor", ju_real_from_float(r->factor),
                           "original_max_position", r->original_max_position,
                           "beta_fast", ju_real_from_float(r->beta_fast),
                           "beta_slow", ju_real_from_float(r->beta_slow),
                           "mscale", ju_real_from_float(r->mscale),
                           "mscale_all_dim", ju_real_from_float(r->mscale_all_dim));
    if (!rs || json_object_set_new(o, "rope_scaling", rs)) { json_decref(o); return NULL; }
    return o;
}
