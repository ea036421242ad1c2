/* Student checkpoint directories: atomic save, verified load (see checkpoint.h). */
#include "models/student/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/core/config_student.h"
#include "common/core/fsutil.h"
#include "common/core/log.h"

#define CKPT_PATH_MAX 4096
#define CKPT_JOIN_MAX (CKPT_PATH_MAX + 64)   /* a directory joined with a file name */

static const char *ckpt_join(char *buf, const char *dir, const char *file) {
    snprintf(buf, CKPT_JOIN_MAX, "%s/%s", dir, file);
    return buf;
}

/* The HF-named views of one f32 buffer laid out as the model lays it out, followed by
 * those of the encoders' buffer `ebase` (laid out as encoders.h lays it out) when it is
 * not NULL and cfg->enc has a modality on. */
static int ckpt_views(const struct student_config *cfg, const float *base, const float *ebase,
                      struct param_view **out) {
    *out = NULL;
    int n = student_param_views(cfg, (float *)base, NULL, 0);
    if (n <= 0) return n < 0 ? n : sushi_error(SUSHI_EINVAL, "checkpoint: model has no parameters");
    int ne = ebase && encoder_enabled(&cfg->enc) ? encoder_param_views(&cfg->enc, (float *)ebase, NULL, 0) : 0;
    if (ne < 0) return ne;
    *out = calloc((size_t)(n + ne), sizeof **out);
    if (!*out) return sushi_error(SUSHI_ENOMEM, "checkpoint: out of memory");
    int m = student_param_views(cfg, (float *)base, *out, n);
    int me = ne ? encoder_param_views(&cfg->enc, (float *)ebase, *out + n, ne) : 0;
    if (m != n || me != ne) {
        free(*out);
        *out = NULL;
        return m < 0 ? m : me < 0 ? me : sushi_error(SUSHI_EINVAL, "checkpoint: parameter views changed");
    }
    return n + ne;
}

/* encoder buffers: given exactly when cfg->enc is on (moments too when `moments`) */
static int ckpt_check_enc(const char *dir, const struct student_config *cfg, const struct ckpt_encoder_bufs *e,
                          int moments) {
    if (!e) return 0;
    if (!encoder_enabled(&cfg->enc))
        return sushi_error(SUSHI_EINVAL, "checkpoint: %s: encoder buffers given but model.encoders is off", dir);
    if (!e->params || (moments && (!e->m || !e->v)) || (!moments && (e->m || e->v)))
        return sushi_error(SUSHI_EINVAL, "checkpoint: %s: encoder weights missing, or moments given for one "
                           "part of the model only", dir);
    return 0;
}

/* ---------------------------------------------------------------- saving */

/* Writes the tensors of `buf` under their names (+ suffix) into one safetensors writer. */
static int ckpt_add_views(struct st_writer *w, const struct param_view *views, int n,
                          const char *suffix) {
    char name[160];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s%s", views[i].name, suffix);
        int rc = st_writer_add(w, name, DT_F32, views[i].ndim, views[i].shape, views[i].data);
        if (rc) return rc;
    }
    return SUSHI_OK;
}

static int ckpt_write_json(const char *path, const json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if (!s) return sushi_error(SUSHI_ENOMEM, "%s: cannot serialise JSON", path);
    size_t n = strlen(s);
    s[n] = '\n';   /* replaces the terminator; length n + 1 written */
    int rc = fs_write_atomic(path, s, n + 1);
    free(s);
    return rc;
}

static int ckpt_write_model(const char *tmp, const struct student_config *cfg, const float *params,
                            const float *eparams) {
    char path[CKPT_JOIN_MAX];
    struct param_view *views;
    int n = ckpt_views(cfg, params, eparams, &views);
    if (n < 0) return n;
    json_t *native = config_student_to_json(cfg);
    char *meta = native ? json_dumps(native, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(native);
    struct st_writer *w = st_writer_new();
    int rc = (!meta || !w) ? sushi_error(SUSHI_ENOMEM, "checkpoint: out of memory") : SUSHI_OK;
    if (!rc) rc = st_writer_meta(w, "format", "pt");
    if (!rc) rc = st_writer_meta(w, CKPT_META_CONFIG, meta);
    if (!rc) rc = ckpt_add_views(w, views, n, "");
    if (!rc) rc = st_writer_commit(w, ckpt_join(path, tmp, CKPT_MODEL));
    st_writer_free(w);
    free(meta);
    free(views);
    if (rc) return rc;
    json_t *hf = checkpoint_hf_config(cfg);
    if (!hf) return sushi_error(SUSHI_ENOMEM, "checkpoint: out of memory");
    rc = ckpt_write_json(ckpt_join(path, tmp, CKPT_CONFIG), hf);
    json_decref(hf);
    return rc;
}

static int ckpt_write_optimizer(const char *tmp, const struct student_config *cfg, const float *m,
                                const float *v, const struct ckpt_encoder_bufs *e) {
    char path[CKPT_JOIN_MAX];
    struct param_view *vm, *vv;
    int n = ckpt_views(cfg, m, e ? e->m : NULL, &vm);
    if (n < 0) return n;
    int n2 = ckpt_views(cfg, v, e ? e->v : NULL, &vv);
    if (n2 < 0) { free(vm); return n2; }
    struct st_writer *w = st_writer_new();
    int rc = w ? SUSHI_OK : sushi_error(SUSHI_ENOMEM, "checkpoint: out of memory");
    if (!rc) rc = st_writer_meta(w, "format", "pt");
    if (!rc) rc = ckpt_add_views(w, vm, n, ".exp_avg");
    if (!rc) rc = ckpt_add_views(w, vv, n2, ".exp_avg_sq");
    if (!rc) rc = st_writer_commit(w, ckpt_join(path, tmp, CKPT_OPTIMIZER));
    st_writer_free(w);
    free(vm);
    free(vv);
    return rc;
}

int checkpoint_save(const char *dir_in, const struct student_config *cfg_in, const float *params,
                    const float *m, const float *v, const json_t *state) {
    return checkpoint_save_enc(dir_in, cfg_in, params, m, v, NULL, state);
}

int checkpoint_save_enc(const char *dir_in, const struct student_config *cfg_in, const float *params,
                        const float *m, const float *v, const struct ckpt_encoder_bufs *e, const json_t *state) {
    if (!dir_in || !*dir_in || !cfg_in || !params)
        return sushi_error(SUSHI_EINVAL, "checkpoint_save: missing directory, config or parameters");
    if (!m != !v) return sushi_error(SUSHI_EINVAL, "checkpoint_save: %s: give both AdamW moments or neither", dir_in);
    if (state && !json_is_object(state))
        return sushi_error(SUSHI_EINVAL, "checkpoint_save: %s: trainer state must be a JSON object", dir_in);
    struct student_config cfg = *cfg_in;
    int rc = student_config_validate(&cfg);
    if (rc) return rc;
    if ((rc = ckpt_check_enc(dir_in, &cfg, e, m != NULL))) return rc;
    char tmp[CKPT_PATH_MAX], path[CKPT_JOIN_MAX];
    if ((rc = fs_dir_stage(dir_in, tmp, sizeof tmp))) return rc;
    rc = ckpt_write_model(tmp, &cfg, params, e ? e->params : NULL);
    if (!rc && m) rc = ckpt_write_optimizer(tmp, &cfg, m, v, e);
    if (!rc && state) rc = ckpt_write_json(ckpt_join(path, tmp, CKPT_STATE), state);
    if (!rc) return fs_dir_publish(tmp, dir_in);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sushi_last_error());
    fs_remove_tree(tmp);
    return sushi_error(rc, "%s", msg);
}

/* ---------------------------------------------------------------- loading */

int checkpoint_read_config(const char *dir_in, struct student_config *cfg, enum ckpt_source *src) {
    if (!dir_in || !cfg) return sushi_error(SUSHI_EINVAL, "checkpoint_read_config: null argument");
    char dir[CKPT_PATH_MAX], path[CKPT_JOIN_MAX];
    int rc = checkpoint_resolve_dir(dir_in, dir, sizeof dir);
    if (rc) return rc;
    if (fs_exists(ckpt_join(path, dir, CKPT_CONFIG))) {
        json_error_t err;
        json_t *hf = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        if (!hf) return sushi_error(SUSHI_EFORMAT, "%s: corrupt JSON at line %d: %s", path, err.line, err.text);
        rc = checkpoint_config_from_hf(hf, path, cfg);
        json_decref(hf);
        if (src) *src = CKPT_FROM_CONFIG_JSON;
        return rc;
    }
    struct st_set f;
    if ((rc = st_set_open(&f, dir, CKPT_MODEL_STEM))) return rc;
    ckpt_join(path, dir, CKPT_MODEL);
    const char *meta = f.n_files == 1 ? st_meta(&f.files[0], CKPT_META_CONFIG) : NULL;
    if (meta) {
        json_error_t err;
        json_t *j = json_loads(meta, 0, &err);
        char where[CKPT_JOIN_MAX + 32];
        snprintf(where, sizeof where, "%s: __metadata__", path);
        struct ju_where w = {where, CKPT_META_CONFIG};
        rc = j ? config_student_from_json(j, w, cfg)
               : sushi_error(SUSHI_EFORMAT, "%s: %s: corrupt JSON: %s", where, CKPT_META_CONFIG, err.text);
        json_decref(j);
        if (!rc && (rc = student_config_validate(cfg))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", sushi_last_error());
            rc = sushi_error(rc, "%s: %s", where, msg);
        }
        if (src) *src = CKPT_FROM_METADATA;
    } else {
        rc = checkpoint_config_from_tensors(&f, cfg);
        if (src) *src = CKPT_FROM_SHAPES;
    }
    st_set_close(&f);
    return rc;
}

/* Encoder tensors (encoders.h), skipped when the caller loads the text model alone. */
static int ckpt_encoder_name(const char *name) {
    static const char *const pre[] = {"model.vision.", "model.video.", "model.audio.", "model.mesh.",
                                      "model.prefix."};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
        if (!strncmp(name, pre[i], strlen(pre[i]))) return 1;
    return 0;
}

/* Buffers that HF Llama files may carry and that are not parameters. */
static int ckpt_ignorable(const char *name, int skip_encoders) {
    if (skip_encoders && ckpt_encoder_name(name)) return 1;
    size_t n = strlen(name);
    const char *s = ".rotary_emb.inv_freq";
    return n > strlen(s) && !strcmp(name + n - strlen(s), s);
}

/* Position of t in f->tensors (t came from st_set_find). */
static size_t ckpt_set_index(const struct st_set *f, const struct st_tensor *t) {
    size_t k = 0;
    for (size_t i = 0; i < f->n_files; i++) {
        const struct st_file *x = &f->files[i];
        if (t >= x->tensors && t < x->tensors + x->n) return k + (size_t)(t - x->tensors);
        k += x->n;
    }
    return 0;   /* unreachable for tensors of f */
}

/* Copies every view from f (tensor NAME+suffix), converting to f32 when allow_convert;
 * refuses missing, mis-shaped, wrongly typed and unexpected extra tensors. */
static int ckpt_read_views(const struct st_set *f, const struct param_view *views, int n,
                           const char *const *suffixes, int n_suffixes, int allow_convert, int skip_encoders) {
    char *used = calloc(f->n ? f->n : 1, 1);
    if (!used) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", f->dir);
    int rc = SUSHI_OK;
    char name[160];
    for (int s = 0; s < n_suffixes && !rc; s++) {
        for (int i = 0; i < n && !rc; i++) {
            const struct param_view *pv = &views[s * n + i];
            snprintf(name, sizeof name, "%s%s", pv->name, suffixes[s]);
            const struct st_file *file = NULL;
            const struct st_tensor *t = st_set_find(f, name, &file);
            if (!t) {
                rc = sushi_error(SUSHI_ENOTFOUND, "%s: missing tensor %s", f->n_files == 1 ? f->files[0].path : f->dir,
                                 name);
                break;
            }
            enum dtype dt = allow_convert ? t->dtype : DT_F32;
            if (allow_convert && dt != DT_F32 && dt != DT_BF16 && dt != DT_F16 && dt != DT_F64)
                rc = sushi_error(SUSHI_ESHAPE, "%s: tensor %s: wrong dtype %s (expected a float type)",
                                 file->path, name, dtype_name(dt));
            if (!rc) rc = st_expect(file, name, dt, pv->ndim, pv->shape);
            if (!rc) rc = dtype_convert_to_f32(pv->data, t->data, dt, pv->numel);
            if (!rc) used[ckpt_set_index(f, t)] = 1;
        }
    }
    for (size_t i = 0; i < f->n && !rc; i++)
        if (!used[i] && !ckpt_ignorable(f->tensors[i]->name, skip_encoders))
            rc = sushi_error(SUSHI_EFORMAT, "%s: unexpected extra tensor %s (not in this model's layout)",
                             f->owner[i]->path, f->tensors[i]->name);
    free(used);
    return rc;
}

static int ckpt_load_file(const char *dir, const char *stem, const struct student_config *cfg,
                          float *const *bufs, float *const *ebufs, const char *const *suffixes, int nb,
                          int allow_convert) {
    struct param_view *views = NULL;
    int n = 0, rc = SUSHI_OK;
    for (int b = 0; b < nb && !rc; b++) {
        struct param_view *one;
        int k = ckpt_views(cfg, bufs[b], ebufs ? ebufs[b] : NULL, &one);
        if (k < 0) { rc = k; break; }
        struct param_view *grown = realloc(views, (size_t)(n + k) * sizeof *views);
        if (!grown) { free(one); rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", dir); break; }
        views = grown;
        memcpy(views + n, one, (size_t)k * sizeof *one);
        free(one);
        n += k;
    }
    struct st_set f;
    if (!rc) rc = st_set_open(&f, dir, stem);
    if (!rc) {
        rc = ckpt_read_views(&f, views, n / nb, suffixes, nb, allow_convert, !ebufs);
        st_set_close(&f);
    }
    free(views);
    return rc;
}

int checkpoint_load(const char *dir_in, const struct student_config *cfg_in, float *params, float *m,
                    float *v, json_t **state) {
    return checkpoint_load_enc(dir_in, cfg_in, params, m, v, NULL, state);
}

int checkpoint_load_enc(const char *dir_in, const struct student_config *cfg_in, float *params, float *m,
                        float *v, const struct ckpt_encoder_bufs *e, json_t **state) {
    if (!dir_in || !cfg_in || !params)
        return sushi_error(SUSHI_EINVAL, "checkpoint_load: missing directory, config or parameters");
    if (!m != !v) return sushi_error(SUSHI_EINVAL, "checkpoint_load: %s: give both AdamW moments or neither", dir_in);
    if (state) *state = NULL;
    struct student_config cfg = *cfg_in;
    int rc = student_config_validate(&cfg);
    char dir[CKPT_PATH_MAX], path[CKPT_JOIN_MAX];
    if (!rc) rc = ckpt_check_enc(dir_in, &cfg, e, m != NULL);
    if (!rc) rc = checkpoint_resolve_dir(dir_in, dir, sizeof dir);
    if (rc) return rc;
    const char *none[] = {""};
    float *eparams = e ? e->params : NULL;
    rc = ckpt_load_file(dir, CKPT_MODEL_STEM, &cfg, &params, e ? &eparams : NULL, none, 1, 1);
    if (!rc && m) {
        float *bufs[2] = {m, v}, *ebufs[2] = {e ? e->m : NULL, e ? e->v : NULL};
        const char *suffixes[2] = {".exp_avg", ".exp_avg_sq"};
        rc = ckpt_load_file(dir, CKPT_OPTIMIZER_STEM, &cfg, bufs, e ? ebufs : NULL, suffixes, 2, 0);
    }
    if (!rc && state) {
        json_error_t err;
        ckpt_join(path, dir, CKPT_STATE);
        if (!fs_exists(path)) return sushi_error(SUSHI_ENOTFOUND, "%s: missing (no trainer state)", path);
        *state = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        if (!*state) return sushi_error(SUSHI_EFORMAT, "%s: corrupt JSON at line %d: %s", path, err.line, err.text);
        if (!json_is_object(*state)) {
            json_decref(*state);
            *state = NULL;
            return sushi_error(SUSHI_EFORMAT, "%s: not a JSON object", path);
        }
    }
    return rc;
}
