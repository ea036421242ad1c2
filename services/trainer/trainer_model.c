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
    m->n_params = m->student.n_params;
    m->n_decay = m->student.n_decay;
    m->master = m->student.master;
    m->wbuf = m->student.wbuf;
    m->gbuf = m->student.gbuf;
    return 0;
}

void trainer_model_free(struct trainer_model *m) {
    if (!m) return;
    if (m->arch == TRAIN_ARCH_DEEPSEEK) ds_train_free(&m->ds);
    else student_free(&m->student);
    memset(m, 0, sizeof *m);
}

int trainer_model_forward(struct trainer_model *m, const int32_t *ids, const int32_t *targets,
                          const int32_t *doc_ids, const struct student_teacher *teacher,
                          const struct student_loss_cfg *lc, float *loss) {
    const int32_t *doc = m->doc_mask ? doc_ids : NULL;
    if (m->arch == TRAIN_ARCH_DEEPSEEK) return ds_train_forward(&m->ds, ids, targets, doc, teacher, lc, loss);
    return student_forward(&m->student, ids, targets, doc, teacher, lc, loss);
}

int trainer_model_backward(struct trainer_model *m) {
    return m->arch == TRAIN_ARCH_DEEPSEEK ? ds_train_backward(&m->ds) : student_backward(&m->student);
}

int trainer_model_zero_grad(struct trainer_model *m) {
    return m->arch == TRAIN_ARCH_DEEPSEEK ? ds_train_zero_grad(&m->ds) : student_zero_grad(&m->student);
}

/* host copies of master weights and moments: h[0..n) weights, [n..2n) m, [2n..3n) v */
static int host_copies(struct trainer_model *m, const struct optim *o, const char *dir, float **out) {
    size_t n = m->n_params;
    float *h = malloc(3 * n * sizeof(float));
    if (!h) return sushi_error(SUSHI_ENOMEM, "%s: checkpoint buffers (%zu parameters)", dir, n);
    int rc = m->ops->to_host(h, m->master, n * 4);
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
    size_t n = m->n_params;
    if (m->arch == TRAIN_ARCH_DEEPSEEK) rc = ds_train_save(&m->ds, dir, h + n, h + 2 * n, state);
    else rc = checkpoint_save(dir, &m->student.cfg, h, h + n, h + 2 * n, state);
    free(h);
    return rc;
}

static int check_student_arch(const char *dir, const struct student_config *want) {
    struct student_config c = {0};
    int rc = checkpoint_read_config(dir, &c, NULL);
    if (rc) return rc;
    if (c.n_layers != want->n_layers || c.d_model != want->d_model || c.n_heads != want->n_heads ||
        c.n_kv_heads != want->n_kv_heads || c.d_ff != want->d_ff || c.vocab_padded != want->vocab_padded ||
        c.tied != want->tied)
        return sushi_error(SUSHI_ESHAPE, "%s: checkpoint architecture differs from the configured model", dir);
    return 0;
}

int trainer_model_load(struct trainer_model *m, struct optim *o, const char *dir, json_t **state) {
    if (!m || !o || !dir || !state) return sushi_error(SUSHI_EINVAL, "trainer_model_load: NULL argument");
    *state = NULL;
    size_t n = m->n_params;
    float *h = malloc(3 * n * sizeof(float));
    if (!h) return sushi_error(SUSHI_ENOMEM, "%s: checkpoint buffers (%zu parameters)", dir, n);
    int rc;
    if (m->arch == TRAIN_ARCH_DEEPSEEK) {
        rc = ds_train_load(&m->ds, dir, h + n, h + 2 * n, state);
        if (!rc) rc = m->ops->to_host(h, m->master, n * 4);   /* ds_train_load fills master itself */
    } else {
        rc = check_student_arch(dir, &m->student.cfg);
        if (!rc) rc = checkpoint_load(dir, &m->student.cfg, h, h + n, h + 2 * n, state);
    }
    if (!rc) rc = m->ops->to_device(m->master, h, n * 4);
    if (!rc) rc = m->ops->to_device(o->m, h + n, n * 4);
    if (!rc) rc = m->ops->to_device(o->v, h + 2 * n, n * 4);
    if (!rc) rc = m->arch == TRAIN_ARCH_DEEPSEEK ? ds_train_sync_weights(&m->ds) : student_sync_weights(&m->student);
    if (!rc && !json_is_object(*state))
        rc = sushi_error(SUSHI_EFORMAT, "%s: %s: missing or not an object", dir, CKPT_STATE);
    if (rc) {
        json_decref(*state);
        *state = NULL;
    }
    free(h);
    return rc;
}

int trainer_checkpoint_exists(const char *dir) {
    char buf[1024];
    if (checkpoint_resolve_dir(dir, buf, sizeof buf)) return 0;
    char state[1100];
    snprintf(state, sizeof state, "%s/%s", buf, CKPT_STATE);
    return fs_exists(state);
}
