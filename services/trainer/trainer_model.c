/* The trainer's model interface over the student and a DeepSeek model (trainer_model.h). */
#include "services/trainer/trainer_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/student/checkpoint.h"

const char *trainer_arch_name(enum train_arch a) {
    return a == TRAIN_ARCH_DEEPSEEK ? "deepseek" : "llama";
}

int trainer_model_create(struct trainer_model *m, const struct train_config *tc, const struct ops *ops,
                         int B, int T) {
    if (!m || !tc || !ops) return sushi_error(SUSHI_EINVAL, "trainer_model_create: NULL argument");
    memset(m, 0, sizeof *m);
    m->arch = tc->arch;
    m->ops = ops;
    m->B = B;
    m->T = T;
    int rc;
    if (tc->arch == TRAIN_ARCH_DEEPSEEK) {
        rc = ds_train_create(&m->ds, &tc->ds, ops, B, T, tc->seed, NULL);
        if (rc) return rc;
        m->vocab = tc->ds.vocab;
        m->doc_mask = 1;   /* each document segment is its own sequence, as the teacher scores it */
        m->n_params = m->ds.n_params;
        m->n_decay = m->ds.n_decay;
        m->master = m->ds.master;
        m->wbuf = m->ds.wbuf;
        m->gbuf = m->ds.gbuf;
        return 0;
    }
    rc = student_create(&m->student, &tc->model, ops, B, T, tc->seed);
    if (rc) return rc;
    m->vocab = m->student.cfg.vocab;
    m->doc_mask = m->student.cfg.doc_mask;
    m->n_params = m->n_student = m->student.n_params;
    m->n_decay = m->student.n_decay;
    m->master = m->student.master;
    m->wbuf = m->student.wbuf;
    m->gbuf = m->student.gbuf;
    if (!encoder_enabled(&m->student.cfg.enc)) return 0;
    rc = encoders_create(&m->enc, &m->student.cfg.enc, ops, B, tc->seed ^ 0xe9c0de75ull);
    if (rc) {
        student_free(&m->student);
        return rc;
    }
    m->has_enc = 1;
    m->n_params += m->enc.n_params;
    size_t bytes = (size_t)B * m->student.P * m->student.cfg.d_model * dtype_size(ops->act_dtype);
    m->prefix = ops->alloc(bytes);
    m->dprefix = ops->alloc(bytes);
    if (!m->prefix || !m->dprefix) {
        trainer_model_free(m);
        return sushi_error(SUSHI_ENOMEM, "trainer_model_create: prefix buffers (%zu bytes)", bytes);
    }
    return 0;
}

void trainer_model_free(struct trainer_model *m) {
    if (!m) return;
    if (m->arch == TRAIN_ARCH_DEEPSEEK) ds_train_free(&m->ds);
    else student_free(&m->student);
    if (m->has_enc) encoders_free(&m->enc);
    if (m->prefix) m->ops->free(m->prefix);
    if (m->dprefix) m->ops->free(m->dprefix);
    memset(m, 0, sizeof *m);
}

int trainer_model_forward(struct trainer_model *m, const int32_t *ids, const int32_t *targets,
                          const int32_t *doc_ids, const struct student_teacher *teacher,
                          const struct student_loss_cfg *lc, float *loss) {
    return trainer_model_forward_mm(m, NULL, ids, targets, doc_ids, teacher, lc, loss);
}

int trainer_model_forward_mm(struct trainer_model *m, const struct encoder_inputs *in, const int32_t *ids,
                             const int32_t *targets, const int32_t *doc_ids, const struct student_teacher *teacher,
                             const struct student_loss_cfg *lc, float *loss) {
    const int32_t *doc = m->doc_mask ? doc_ids : NULL;
    if (!m->has_enc != !in)
        return sushi_error(SUSHI_EINVAL, "trainer: %s", in ? "encoder inputs given but model.encoders is off"
                                                           : "model.encoders is on but the batch has no encoder inputs");
    if (m->arch == TRAIN_ARCH_DEEPSEEK) return ds_train_forward(&m->ds, ids, targets, doc, teacher, lc, loss);
    if (!m->has_enc) return student_forward(&m->student, ids, targets, doc, teacher, lc, loss);
    int rc = encoder_prefix_forward(&m->enc, in, m->prefix);
    if (rc) return rc;
    return student_forward_prefix(&m->student, m->prefix, ids, targets, NULL, teacher, lc, loss);
}

int trainer_model_backward(struct trainer_model *m) {
    if (m->arch == TRAIN_ARCH_DEEPSEEK) return ds_train_backward(&m->ds);
    if (!m->has_enc) return student_backward(&m->student);
    int rc = student_backward_prefix(&m->student, m->dprefix);
    return rc ? rc : encoder_prefix_backward(&m->enc, m->dprefix);
}

int trainer_model_zero_grad(struct trainer_model *m) {
    if (m->arch == TRAIN_ARCH_DEEPSEEK) return ds_train_zero_grad(&m->ds);
    int rc = student_zero_grad(&m->student);
    return rc || !m->has_enc ? rc : encoders_zero_grad(&m->enc);
}

int trainer_model_step(struct trainer_model *m, struct optim *o) {
    if (!m || !o) return sushi_error(SUSHI_EINVAL, "trainer_model_step: NULL argument");
    struct optim_buf b[2] = {
        {.master = m->master, .param = m->wbuf, .grad = m->gbuf, .n = m->n_student ? m->n_student : m->n_params,
         .n_decay = m->n_decay},
        {.master = m->enc.master, .param = m->enc.wbuf, .grad = m->enc.gbuf, .n = m->enc.n_params,
         .n_decay = m->enc.n_decay}};
    return optim_step_multi(o, b, m->has_enc ? 2 : 1);
}

int trainer_model_freeze(struct trainer_model *m, struct optim *o, int n) {
    if (!m || !o) return sushi_error(SUSHI_EINVAL, "trainer_model_freeze: NULL argument");
    if (n <= 0) return 0;
    if (m->arch != TRAIN_ARCH_LLAMA)
        return sushi_error(SUSHI_EUNSUPPORTED, "train.freeze_layers: only for the student (arch llama)");
    const struct student_config *c = &m->student.cfg;
    if (n > c->n_layers)
        return sushi_error(SUSHI_EINVAL, "train.freeze_layers %d exceeds model.n_layers %d", n, c->n_layers);
    struct student_params p;
    size_t nd;
    int rc = student_layout(c, m->master, 4, &p, &nd);
    if (rc) return rc;
    size_t L = c->n_layers, C = c->d_model, D = c->d_head, H = c->n_heads, G = c->n_kv_heads, F = c->d_ff;
    size_t QKV = (H + 2 * G) * D;
    /* per-layer tensors are layer-major: the first n layers are one range of each */
    struct { void *at; size_t per_layer; } t[6] = {{p.qkvw, QKV * C}, {p.ow, C * H * D}, {p.fcw, 2 * F * C},
                                                   {p.downw, C * F}, {p.ln1w, C}, {p.ln2w, C}};
    rc = optim_freeze(o, 0, 0, (size_t)c->vocab_padded * C);   /* wte comes first */
    for (int i = 0; i < 6 && !rc; i++)
        rc = optim_freeze(o, 0, (size_t)((float *)t[i].at - m->master), (size_t)n * t[i].per_layer);
    (void)L;
    return rc;
}

/* host copies of master weights and moments: h[0..n) weights, [n..2n) m, [2n..3n) v, each
 * [student | encoders] */
static int host_copies(struct trainer_model *m, const struct optim *o, const char *dir, float **out) {
    size_t n = m->n_params, ns = m->n_student ? m->n_student : n;
    float *h = malloc(3 * n * sizeof(float));
    if (!h) return sushi_error(SUSHI_ENOMEM, "%s: checkpoint buffers (%zu parameters)", dir, n);
    int rc = m->ops->to_host(h, m->master, ns * 4);
    if (!rc && m->has_enc) rc = m->ops->to_host(h + ns, m->enc.master, (n - ns) * 4);
    if (!rc) rc = m->ops->to_host(h + n, o->m, n * 4);
    if (!rc) rc = m->ops->to_host(h + 2 * n, o->v, n * 4);
    if (rc) {
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int trainer_model_save(struct trainer_model *m, const struct optim *o, const char *dir, const json_t *state) {
    if (!m || !o || !dir) return sushi_error(SUSHI_EINVAL, "trainer_model_save: NULL argument");
    float *h = NULL;
    int rc = host_copies(m, o, dir, &h);
    if (rc) return rc;
    size_t n = m->n_params, ns = m->n_student;
    struct ckpt_encoder_bufs e = {h + ns, h + n + ns, h + 2 * n + ns};
    if (m->arch == TRAIN_ARCH_DEEPSEEK) rc = ds_train_save(&m->ds, dir, h + n, h + 2 * n, state);
    else rc = checkpoint_save_enc(dir, &m->student.cfg, h, h + n, h + 2 * n, m->has_enc ? &e : NULL, state);
    free(h);
    return rc;
}

static int same_text_arch(const struct student_config *c, const struct student_config *want) {
    return c->n_layers == want->n_layers && c->d_model == want->d_model && c->n_heads == want->n_heads &&
           c->d_head == want->d_head &&
           c->n_kv_heads == want->n_kv_heads && c->d_ff == want->d_ff && c->vocab_padded == want->vocab_padded &&
           c->tied == want->tied;
}

static int same_encoders(const struct encoder_config *a, const struct encoder_config *b) {
    struct encoder_config x = *a, y = *b;
    return encoder_enabled(&x) == encoder_enabled(&y) && (!encoder_enabled(&x) || !memcmp(&x, &y, sizeof x));
}

/* the checkpoint's config; refuses another text architecture */
static int read_student_arch(const char *dir, const struct student_config *want, struct student_config *c) {
    memset(c, 0, sizeof *c);
    int rc = checkpoint_read_config(dir, c, NULL);
    if (rc) return rc;
    if (!same_text_arch(c, want))
        return sushi_error(SUSHI_ESHAPE, "%s: checkpoint architecture differs from the configured model", dir);
    return 0;
}

int trainer_model_load(struct trainer_model *m, struct optim *o, const char *dir, json_t **state) {
    if (!m || !o || !dir || !state) return sushi_error(SUSHI_EINVAL, "trainer_model_load: NULL argument");
    *state = NULL;
    size_t n = m->n_params, ns = m->n_student ? m->n_student : n;
    float *h = malloc(3 * n * sizeof(float));
    if (!h) return sushi_error(SUSHI_ENOMEM, "%s: checkpoint buffers (%zu parameters)", dir, n);
    int rc;
    if (m->arch == TRAIN_ARCH_DEEPSEEK) {
        rc = ds_train_load(&m->ds, dir, h + n, h + 2 * n, state);
        if (!rc) rc = m->ops->to_host(h, m->master, n * 4);   /* ds_train_load fills master itself */
    } else {
        struct student_config c;
        struct ckpt_encoder_bufs e = {h + ns, h + n + ns, h + 2 * n + ns};
        rc = read_student_arch(dir, &m->student.cfg, &c);
        /* a text-only checkpoint into a model with encoders: they keep their fresh
         * weights and start with zero moments */
        int fresh_enc = !rc && m->has_enc && !encoder_enabled(&c.enc);
        if (!rc && !fresh_enc && !same_encoders(&c.enc, &m->student.cfg.enc))
            rc = sushi_error(SUSHI_ESHAPE, "%s: checkpoint's model.encoders differ from the configured model's "
                             "(resume needs the same model; train.init_from starts a new stage)", dir);
        if (!rc && fresh_enc) {
            rc = m->ops->to_host(h + ns, m->enc.master, (n - ns) * 4);
            memset(h + n + ns, 0, (n - ns) * sizeof(float));
            memset(h + 2 * n + ns, 0, (n - ns) * sizeof(float));
        }
        if (!rc) rc = checkpoint_load_enc(dir, &c, h, h + n, h + 2 * n, m->has_enc && !fresh_enc ? &e : NULL, state);
        if (!rc && fresh_enc)
            log_info("%s: a text-only checkpoint; this model's encoders start freshly initialised", dir);
    }
    if (!rc) rc = m->ops->to_device(m->master, h, ns * 4);
    if (!rc && m->has_enc) rc = m->ops->to_device(m->enc.master, h + ns, (n - ns) * 4);
    if (!rc) rc = m->ops->to_device(o->m, h + n, n * 4);
    if (!rc) rc = m->ops->to_device(o->v, h + 2 * n, n * 4);
    if (!rc) rc = m->arch == TRAIN_ARCH_DEEPSEEK ? ds_train_sync_weights(&m->ds) : student_sync_weights(&m->student);
    if (!rc && m->has_enc) rc = encoders_sync_weights(&m->enc);
    if (!rc && !json_is_object(*state))
        rc = sushi_error(SUSHI_EFORMAT, "%s: %s: missing or not an object", dir, CKPT_STATE);
    if (rc) {
        json_decref(*state);
        *state = NULL;
    }
    free(h);
    return rc;
}

/* this model's encoder tensors that the checkpoint's encoders (host buffer ck, laid out
 * for ckc) have under the same name and shape are copied in; *copied / *total counted */
static int init_encoders_matching(struct trainer_model *m, const struct encoder_config *ckc, float *ck,
                                  int *copied, int *total) {
    size_t n = m->enc.n_params;
    float *h = malloc(n * sizeof(float));
    struct param_view *mine = NULL, *theirs = NULL;
    int nm = encoder_param_views(&m->enc.cfg, h, NULL, 0), nt = encoder_param_views(ckc, ck, NULL, 0);
    int rc = nm < 0 ? nm : nt < 0 ? nt : 0;
    if (!rc) {
        mine = calloc((size_t)nm + 1, sizeof *mine);
        theirs = calloc((size_t)nt + 1, sizeof *theirs);
        if (!h || !mine || !theirs) rc = sushi_error(SUSHI_ENOMEM, "init_from: encoder buffers");
    }
    if (!rc) rc = m->ops->to_host(h, m->enc.master, n * 4);
    if (!rc) {
        encoder_param_views(&m->enc.cfg, h, mine, nm);
        encoder_param_views(ckc, ck, theirs, nt);
        *total = nm;
        for (int a = 0; a < nm; a++)
            for (int b = 0; b < nt; b++)
                if (!strcmp(mine[a].name, theirs[b].name) && mine[a].ndim == theirs[b].ndim &&
                    mine[a].shape[0] == theirs[b].shape[0] && mine[a].shape[1] == theirs[b].shape[1] &&
                    mine[a].numel == theirs[b].numel) {
                    memcpy(mine[a].data, theirs[b].data, mine[a].numel * sizeof(float));
                    (*copied)++;
                }
        rc = m->ops->to_device(m->enc.master, h, n * 4);
    }
    if (!rc) rc = encoders_sync_weights(&m->enc);
    free(h);
    free(mine);
    free(theirs);
    return rc;
}

int trainer_model_init_from(struct trainer_model *m, const char *dir) {
    if (!m || !dir) return sushi_error(SUSHI_EINVAL, "trainer_model_init_from: NULL argument");
    if (m->arch != TRAIN_ARCH_LLAMA)
        return sushi_error(SUSHI_EUNSUPPORTED, "train.init_from: only for the student (arch llama)");
    struct student_config c;
    int rc = read_student_arch(dir, &m->student.cfg, &c);
    if (rc) return rc;
    int ck_enc = encoder_enabled(&c.enc), use_enc = ck_enc && m->has_enc;
    size_t ns = m->n_student, ne = use_enc ? encoder_param_count(&c.enc) : 0;
    float *h = malloc((ns + ne) * sizeof(float));
    if (!h) return sushi_error(SUSHI_ENOMEM, "%s: checkpoint buffers (%zu parameters)", dir, ns + ne);
    struct ckpt_encoder_bufs e = {h + ns, NULL, NULL};
    rc = checkpoint_load_enc(dir, &c, h, NULL, NULL, use_enc ? &e : NULL, NULL);
    if (!rc) rc = m->ops->to_device(m->master, h, ns * 4);
    if (!rc) rc = student_sync_weights(&m->student);
    int copied = 0, total = 0;
    if (!rc && use_enc) rc = init_encoders_matching(m, &c.enc, h + ns, &copied, &total);
    free(h);
    if (rc) return rc;
    if (m->has_enc && !ck_enc)
        log_info("init_from %s: a text-only checkpoint; this model's encoders start freshly initialised", dir);
    else if (m->has_enc)
        log_info("init_from %s: %d of %d encoder tensors from the checkpoint (same name and shape), the rest "
                 "freshly initialised", dir, copied, total);
    else if (ck_enc)
        log_info("init_from %s: the checkpoint's encoders are not used (model.encoders is off)", dir);
    log_info("init_from %s: weights loaded (optimizer, schedule and step start fresh)", dir);
    return 0;
}

int trainer_checkpoint_exists(const char *dir) {
    char buf[1024];
    if (checkpoint_resolve_dir(dir, buf, sizeof buf)) return 0;
    char state[1100];
    snprintf(state, sizeof state, "%s/%s", buf, CKPT_STATE);
    return fs_exists(state);
}
