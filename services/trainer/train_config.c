/* Reading the training YAML (see train_config.h). */
#include "services/trainer/train_config.h"

#include <stdio.h>
#include <string.h>

#include "common/config/config.h"
#include "common/core/log.h"

static int get_schedule(json_t *root, const char *path, enum optim_schedule *out) {
    const char *s = NULL;
    int rc = config_get_string(root, path, "train.schedule", 0, &s);
    if (rc || !s) return rc;
    if (!strcmp(s, "cosine")) *out = OPTIM_COSINE;
    else if (!strcmp(s, "linear")) *out = OPTIM_LINEAR;
    else if (!strcmp(s, "constant")) *out = OPTIM_CONSTANT;
    else return sushi_error(SUSHI_EINVAL, "%s: train.schedule: \"%s\" (cosine, linear or constant)", path, s);
    return 0;
}

int train_config_load(const char *path, const char *const *overrides, int n_overrides,
                      struct train_config *t) {
    if (!path || !t) return sushi_error(SUSHI_EINVAL, "train_config_load: NULL argument");
    memset(t, 0, sizeof *t);
    int rc = config_load_student(path, overrides, n_overrides, &t->model);
    if (rc) return rc;
    json_t *root = NULL;
    if ((rc = config_load_yaml(path, &root))) return rc;
    for (int i = 0; i < n_overrides && !rc; i++) rc = config_set_override(root, overrides[i], path);
    /* defaults */
    t->batch_size = 8;
    t->seq_len = t->model.max_seq;
    t->steps = 100;
    t->base_batch = 16;
    t->log_every = 10;
    t->optim = (struct optim_config){.lr = 3e-4f, .warmup_steps = 10, .beta1 = 0.9f,
                                     .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                                     .clip_norm = 1.0f, .accum_steps = 1};
    int seed = 1234;
    const char *corpus = "configs/train/corpus.txt", *backend = "cpu";
    struct optim_config *o = &t->optim;
    struct { const char *key; int *dst; } ints[] = {
        {"train.batch_size", &t->batch_size}, {"train.seq_len", &t->seq_len},
        {"train.steps", &t->steps}, {"train.base_batch", &t->base_batch},
        {"train.log_every", &t->log_every}, {"train.threads", &t->threads},
        {"train.seed", &seed}, {"train.warmup_steps", &o->warmup_steps},
        {"train.accum_steps", &o->accum_steps}};
    struct { const char *key; float *dst; } floats[] = {
        {"train.lr", &o->lr}, {"train.min_lr", &o->min_lr}, {"train.beta1", &o->beta1},
        {"train.beta2", &o->beta2}, {"train.eps", &o->eps},
        {"train.weight_decay", &o->weight_decay}, {"train.clip_norm", &o->clip_norm},
        {"train.label_smoothing", &t->smoothing}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !rc; i++)
        rc = config_get_int(root, path, ints[i].key, 0, ints[i].dst);
    for (size_t i = 0; i < sizeof floats / sizeof floats[0] && !rc; i++)
        rc = config_get_float(root, path, floats[i].key, 0, floats[i].dst);
    if (!rc) rc = config_get_bool(root, path, "train.scale_lr", 0, &t->scale_lr);
    if (!rc) rc = config_get_string(root, path, "train.corpus", 0, &corpus);
    if (!rc) rc = config_get_string(root, path, "train.backend", 0, &backend);
    if (!rc) rc = get_schedule(root, path, &o->schedule);
    if (!rc) {
        snprintf(t->corpus, sizeof t->corpus, "%s", corpus);
        snprintf(t->backend, sizeof t->backend, "%s", backend);
    }
    json_decref(root);
    if (rc) return rc;
    t->seed = (uint64_t)seed;
    if (t->batch_size <= 0) return sushi_error(SUSHI_EINVAL, "%s: train.batch_size must be > 0", path);
    if (t->seq_len <= 1 || t->seq_len > t->model.max_seq)
        return sushi_error(SUSHI_EINVAL, "%s: train.seq_len %d must be in [2, model.max_seq %d]", path,
                           t->seq_len, t->model.max_seq);
    if (t->steps <= 0) return sushi_error(SUSHI_EINVAL, "%s: train.steps must be > 0", path);
    if (t->log_every <= 0) t->log_every = 1;
    if (t->threads < 0) return sushi_error(SUSHI_EINVAL, "%s: train.threads must be ≥ 0", path);
    if (t->scale_lr)
        o->lr = optim_scaled_lr(o->lr, t->base_batch, t->batch_size * (o->accum_steps ? o->accum_steps : 1));
    if (o->total_steps == 0) o->total_steps = t->steps;
    if (o->min_lr == 0) o->min_lr = 0.1f * o->lr;
    if ((rc = optim_config_validate(o))) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        return sushi_error(rc, "%s: train: %s", path, msg);
    }
    return 0;
}
