/* Dynamic loss scaling in the trainer: config, model, logs, checkpoint state (loss_scale.h). */
#include "services/trainer/loss_scale.h"

#include <stdio.h>

#include "common/core/log.h"
#include "models/student/checkpoint.h"

int trainer_optim_config(const struct train_config *tc, const struct ops *ops, struct optim_config *out) {
    if (!tc || !ops || !out) return sushi_error(SUSHI_EINVAL, "trainer_optim_config: NULL argument");
    *out = tc->optim;
    int on = tc->loss_scale == TRAIN_SCALE_DYNAMIC || (tc->loss_scale == TRAIN_SCALE_AUTO && ops->act_dtype == DT_F16);
    out->loss_scale = on ? tc->loss_scale_init : 0.0f;
    if (on)
        log_info("dynamic loss scaling: initial scale %g, doubled after %d finite steps, halved (step skipped) on "
                 "a non-finite gradient norm", out->loss_scale, out->scale_growth_interval);
    if (out->stochastic_rounding && ops->act_dtype == DT_F32)
        log_info("train.stochastic_rounding: no effect on the %s backend's f32 weights", ops->name);
    return 0;
}

int trainer_iterations(const struct optim *o) {
    return o->step + o->skipped;
}

void trainer_set_loss_scale(struct trainer_model *m, const struct optim *o) {
    float s = optim_loss_scale(o);
    m->student.loss_scale = s;
    m->ds.loss_scale = s;
}

void trainer_log_skip(const struct optim *o, int iteration) {
    log_warn("step %d skipped: gradient norm %g, loss scale %g → %g (%d skipped so far)", iteration,
             (double)o->last_norm, (double)o->last_scale, (double)o->scale, o->skipped);
}

int trainer_scale_state_put(json_t *state, const struct optim *o) {
    if (!state || !o) return sushi_error(SUSHI_EINVAL, "trainer_scale_state_put: NULL argument");
    if (json_object_set_new(state, "loss_scale", json_real(optim_loss_scale(o))) ||
        json_object_set_new(state, "scale_good_steps", json_integer(o->good_steps)) ||
        json_object_set_new(state, "skipped_steps", json_integer(o->skipped)))
        return sushi_error(SUSHI_ENOMEM, "trainer state: loss scaling fields");
    return 0;
}

int trainer_scale_state_get(struct optim *o, const json_t *state, const char *dir) {
    if (!o || !state || !dir) return sushi_error(SUSHI_EINVAL, "trainer_scale_state_get: NULL argument");
    json_t *s = json_object_get(state, "loss_scale"), *g = json_object_get(state, "scale_good_steps");
    json_t *k = json_object_get(state, "skipped_steps");
    if (!s && !g && !k) return 0;   /* a checkpoint from before loss scaling */
    if (!json_is_number(s) || !json_is_integer(g) || !json_is_integer(k) || json_integer_value(g) < 0 ||
        json_integer_value(k) < 0 || json_integer_value(g) > 0x7fffffff || json_integer_value(k) > 0x7fffffff)
        return sushi_error(SUSHI_EFORMAT, "%s: %s: loss_scale (a number), scale_good_steps and skipped_steps "
                           "(integers ≥ 0) go together", dir, CKPT_STATE);
    int rc = optim_set_scale_state(o, (float)json_number_value(s), (int)json_integer_value(g),
                                   (int)json_integer_value(k));
    if (rc) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        return sushi_error(rc, "%s: %s: %s", dir, CKPT_STATE, msg);
    }
    return 0;
}

int trainer_scale_metrics(json_t *meta, const struct optim *o) {
    if (!meta || !o) return sushi_error(SUSHI_EINVAL, "trainer_scale_metrics: NULL argument");
    json_object_set_new(meta, "loss_scale", json_real(optim_loss_scale(o)));
    json_object_set_new(meta, "skipped_steps", json_integer(o->skipped));
    return 0;
}
