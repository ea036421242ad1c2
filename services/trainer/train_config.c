/* Reading the training YAML (see train_config.h). */
#include "services/trainer/train_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/config/config.h"
#include "common/core/config_student.h"
#include "common/core/log.h"
#include "common/data/data.h"
#include "common/transport/protocol.h"

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

/* model.arch selects the student (absent, "llama") or a DeepSeek model ("deepseek");
 * the rest of the section is that architecture's config. */
static int load_model(json_t *root, const char *path, struct train_config *t) {
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return sushi_error(SUSHI_ENOTFOUND, "%s: model: missing or not a map", path);
    const char *arch = "llama";
    int rc = config_get_string(root, path, "model.arch", 0, &arch);
    if (rc) return rc;
    if (!strcmp(arch, "llama")) t->arch = TRAIN_ARCH_LLAMA;
    else if (!strcmp(arch, "deepseek")) t->arch = TRAIN_ARCH_DEEPSEEK;
    else return sushi_error(SUSHI_EINVAL, "%s: model.arch: \"%s\" (llama or deepseek)", path, arch);
    json_t *fields = json_deep_copy(model);
    if (!fields) return sushi_error(SUSHI_ENOMEM, "%s: model section", path);
    json_object_del(fields, "arch");
    if (t->arch == TRAIN_ARCH_DEEPSEEK) {
        rc = ds_config_from_train_json(&t->ds, fields, path);
        json_decref(fields);
        return rc;
    }
    struct ju_where w = {path, "model"};
    rc = config_student_from_json(fields, w, &t->model);
    json_decref(fields);
    if (!rc && (rc = student_config_validate(&t->model))) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        rc = sushi_error(rc, "%s: %s", path, msg);
    }
    return rc;
}

static int copy_string(json_t *root, const char *path, const char *key, int required, const char *def,
                       char *dst, size_t cap) {
    const char *s = def;
    int rc = config_get_string(root, path, key, required, &s);
    if (rc) return rc;
    if (strlen(s) >= cap) return sushi_error(SUSHI_EINVAL, "%s: %s: longer than %zu bytes", path, key, cap - 1);
    snprintf(dst, cap, "%s", s);
    return 0;
}

/* a float or a list of 3 floats (one per channel) into v[3] */
static int get_channels(json_t *root, const char *path, const char *key, float def, float *v) {
    v[0] = v[1] = v[2] = def;
    json_t *x = json_object_get(json_object_get(root, "train"), key + strlen("train."));
    if (!x) return 0;
    if (json_is_number(x)) {
        v[0] = v[1] = v[2] = (float)json_number_value(x);
    } else if (json_is_array(x) && json_array_size(x) == 3) {
        for (int i = 0; i < 3; i++) {
            json_t *e = json_array_get(x, (size_t)i);
            if (!json_is_number(e)) return sushi_error(SUSHI_EINVAL, "%s: %s[%d]: not a number", path, key, i);
            v[i] = (float)json_number_value(e);
        }
    } else {
        return sushi_error(SUSHI_EINVAL, "%s: %s: a number or a list of 3 numbers", path, key);
    }
    return 0;
}

/* train.loss_scale (auto | off | dynamic | a number > 0), its growth interval and
 * train.stochastic_rounding, into t and t->optim (seeded by the run seed) */
static int load_scaling(json_t *root, const char *path, struct train_config *t) {
    t->loss_scale = TRAIN_SCALE_AUTO;
    t->loss_scale_init = TRAIN_SCALE_INITIAL;
    json_t *x = json_object_get(json_object_get(root, "train"), "loss_scale");
    if (json_is_string(x)) {
        const char *s = json_string_value(x);
        if (!strcmp(s, "auto")) t->loss_scale = TRAIN_SCALE_AUTO;
        else if (!strcmp(s, "off")) t->loss_scale = TRAIN_SCALE_OFF;
        else if (!strcmp(s, "dynamic")) t->loss_scale = TRAIN_SCALE_DYNAMIC;
        else return sushi_error(SUSHI_EINVAL, "%s: train.loss_scale: \"%s\" (auto, off, dynamic or a number > 0)",
                                path, s);
    } else if (json_is_number(x)) {
        double v = json_number_value(x);
        if (!(v > 0) || !isfinite((float)v))
            return sushi_error(SUSHI_EINVAL, "%s: train.loss_scale: %g must be > 0 and finite in f32 (or auto, off, "
                               "dynamic)", path, v);
        t->loss_scale = TRAIN_SCALE_DYNAMIC;
        t->loss_scale_init = (float)v;
    } else if (json_is_boolean(x)) {
        t->loss_scale = json_is_true(x) ? TRAIN_SCALE_DYNAMIC : TRAIN_SCALE_OFF;
    } else if (x && !json_is_null(x)) {
        return sushi_error(SUSHI_EINVAL, "%s: train.loss_scale: auto, off, dynamic or a number > 0", path);
    }
    int interval = 2000;
    int rc = config_get_int(root, path, "train.loss_scale_growth_interval", 0, &interval);
    if (!rc) rc = config_get_bool(root, path, "train.stochastic_rounding", 0, &t->optim.stochastic_rounding);
    if (rc) return rc;
    if (interval <= 0)
        return sushi_error(SUSHI_EINVAL, "%s: train.loss_scale_growth_interval must be > 0 (got %d)", path, interval);
    t->optim.scale_growth_interval = interval;
    return 0;
}

/* train.init_from, train.freeze_layers, train.image_mean / image_std */
static int load_stage(json_t *root, const char *path, struct train_config *t) {
    int rc = copy_string(root, path, "train.init_from", 0, "", t->init_from, sizeof t->init_from);
    if (!rc) rc = config_get_int(root, path, "train.freeze_layers", 0, &t->freeze_layers);
    if (!rc) rc = get_channels(root, path, "train.image_mean", 0.5f, t->image_mean);
    if (!rc) rc = get_channels(root, path, "train.image_std", 0.5f, t->image_std);
    if (rc) return rc;
    if (t->freeze_layers < 0) return sushi_error(SUSHI_EINVAL, "%s: train.freeze_layers must be ≥ 0", path);
    for (int i = 0; i < 3; i++)
        if (!(t->image_std[i] > 0)) return sushi_error(SUSHI_EINVAL, "%s: train.image_std must be > 0", path);
    return 0;
}

/* run, endpoints, data.batch_size/seq_len and train's pipeline fields */
static int load_pipeline(json_t *root, const char *path, struct train_config *t) {
    struct data_config dc;
    data_config_defaults(&dc);
    t->batch_size = dc.batch_size;
    t->seq_len = dc.seq_len;
    t->save_every = 50;
    t->window = PROTO_WINDOW;
    t->heartbeat_ms = PROTO_HEARTBEAT_MS;
    t->dead_after_ms = PROTO_DEAD_AFTER_MS;
    t->kd = (struct train_kd){.alpha = 0.5f, .mode = KD_FORWARD, .temperature = 1.0f, .jsd_beta = 0.5f};
    t->resume = 1;
    t->deterministic = 0;
    const char *mode = "forward";
    int rc = 0;
    struct { const char *key; int *dst; } ints[] = {
        {"data.batch_size", &t->batch_size}, {"data.seq_len", &t->seq_len},
        {"train.save_every", &t->save_every}, {"train.window", &t->window},
        {"train.heartbeat_ms", &t->heartbeat_ms}, {"train.dead_after_ms", &t->dead_after_ms}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !rc; i++)
        rc = config_get_int(root, path, ints[i].key, 0, ints[i].dst);
    if (!rc) rc = config_get_float(root, path, "train.kd.alpha", 0, &t->kd.alpha);
    if (!rc) rc = config_get_float(root, path, "train.kd.temperature", 0, &t->kd.temperature);
    if (!rc) rc = config_get_float(root, path, "train.kd.jsd_beta", 0, &t->kd.jsd_beta);
    if (!rc) rc = config_get_string(root, path, "train.kd.mode", 0, &mode);
    if (!rc) rc = config_get_bool(root, path, "train.resume", 0, &t->resume);
    if (!rc) rc = config_get_bool(root, path, "train.deterministic", 0, &t->deterministic);
    if (!rc) rc = config_get_bool(root, path, "train.save_initial", 0, &t->save_initial);
    if (!rc) rc = copy_string(root, path, "run.dir", 0, "runs/distill", t->run_dir, sizeof t->run_dir);
    if (!rc) rc = copy_string(root, path, "endpoints.loader", 1, NULL, t->ep_loader, sizeof t->ep_loader);
    if (!rc) rc = copy_string(root, path, "endpoints.trainer", 0, "", t->ep_trainer, sizeof t->ep_trainer);
    if (!rc) rc = copy_string(root, path, "endpoints.events", 0, "", t->ep_events, sizeof t->ep_events);
    if (!rc) rc = config_get_bool(root, path, "endpoints.allow_remote", 0, &t->allow_remote);
    if (!rc) rc = copy_string(root, path, "train.checkpoint_dir", 0, "", t->checkpoint_dir, sizeof t->checkpoint_dir);
    if (rc) return rc;
    if (!t->checkpoint_dir[0]) snprintf(t->checkpoint_dir, sizeof t->checkpoint_dir, "%.400s/student", t->run_dir);
    t->direct = t->ep_trainer[0] == 0;
    if (!strcmp(mode, "forward")) t->kd.mode = KD_FORWARD;
    else if (!strcmp(mode, "reverse")) t->kd.mode = KD_REVERSE;
    else if (!strcmp(mode, "jsd")) t->kd.mode = KD_JSD;
    else return sushi_error(SUSHI_EINVAL, "%s: train.kd.mode: \"%s\" (forward, reverse or jsd)", path, mode);
    if (!(t->kd.alpha >= 0 && t->kd.alpha <= 1))
        return sushi_error(SUSHI_EINVAL, "%s: train.kd.alpha %g must be in [0, 1]", path, t->kd.alpha);
    if (!(t->kd.temperature > 0))
        return sushi_error(SUSHI_EINVAL, "%s: train.kd.temperature %g must be > 0", path, t->kd.temperature);
    if (!(t->kd.jsd_beta > 0 && t->kd.jsd_beta < 1))
        return sushi_error(SUSHI_EINVAL, "%s: train.kd.jsd_beta %g must be in (0, 1)", path, t->kd.jsd_beta);
    if (t->save_every <= 0) return sushi_error(SUSHI_EINVAL, "%s: train.save_every must be > 0", path);
    if (t->window < 1 || t->window > 4096)
        return sushi_error(SUSHI_EINVAL, "%s: train.window %d must be in [1, 4096]", path, t->window);
    if (t->heartbeat_ms <= 0 || t->dead_after_ms <= t->heartbeat_ms)
        return sushi_error(SUSHI_EINVAL, "%s: train.heartbeat_ms %d must be > 0 and below train.dead_after_ms %d",
                           path, t->heartbeat_ms, t->dead_after_ms);
    return 0;
}

int train_config_load(const char *path, const char *const *overrides, int n_overrides,
                      struct train_config *t) {
    if (!path || !t) return sushi_error(SUSHI_EINVAL, "train_config_load: NULL argument");
    memset(t, 0, sizeof *t);
    json_t *root = NULL;
    int rc = config_load(path, overrides, n_overrides, &root);
    if (rc) return rc;
    rc = load_model(root, path, t);
    t->pipeline = json_object_get(root, "endpoints") != NULL;
    /* defaults */
    t->batch_size = 8;
    t->seq_len = t->arch == TRAIN_ARCH_LLAMA ? t->model.max_seq : 0;
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
    if (!rc) rc = load_stage(root, path, t);
    if (!rc) rc = load_scaling(root, path, t);
    if (!rc) {
        snprintf(t->corpus, sizeof t->corpus, "%s", corpus);
        snprintf(t->backend, sizeof t->backend, "%s", backend);
    }
    if (!rc && t->pipeline) rc = load_pipeline(root, path, t);
    json_decref(root);
    if (rc) return rc;
    t->seed = (uint64_t)seed;
    o->seed = (uint32_t)(t->seed ^ (t->seed >> 32));
    int max_seq = t->arch == TRAIN_ARCH_LLAMA ? t->model.max_seq : t->ds.max_pos;
    if (t->batch_size <= 0) return sushi_error(SUSHI_EINVAL, "%s: train.batch_size must be > 0", path);
    if (t->seq_len <= 1 || (max_seq > 0 && t->seq_len > max_seq))
        return sushi_error(SUSHI_EINVAL, "%s: %s %d must be in [2, model max_seq %d]", path,
                           t->pipeline ? "data.seq_len" : "train.seq_len", t->seq_len, max_seq);
    int prefix = t->arch == TRAIN_ARCH_LLAMA ? encoder_prefix_len(&t->model.enc) : 0;
    if (prefix > 0 && t->seq_len > max_seq - prefix)
        return sushi_error(SUSHI_EINVAL, "%s: %s %d and the %d prefix rows of model.encoders exceed model.max_seq %d",
                           path, t->pipeline ? "data.seq_len" : "train.seq_len", t->seq_len, prefix, max_seq);
    if (t->steps <= 0) return sushi_error(SUSHI_EINVAL, "%s: train.steps must be > 0", path);
    if (t->log_every <= 0) t->log_every = 1;
    if (t->threads < 0) return sushi_error(SUSHI_EINVAL, "%s: train.threads must be ≥ 0", path);
    /* the CPU backend sums in a fixed order whatever its thread count (bit-identical
     * results, tests/e2e/test_trainer_threads.sh); the CUDA kernels accumulate some
     * gradients with atomics, so their sums vary in the last bits from run to run */
    if (t->deterministic && strcmp(t->backend, "cpu") != 0)
        return sushi_error(SUSHI_EINVAL, "%s: train.deterministic needs train.backend cpu, not %s (the CUDA kernels "
                           "accumulate with atomics); set train.deterministic=false to train there", path, t->backend);
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
