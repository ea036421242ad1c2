/* The trainer's side of dynamic loss scaling (optim.h): train.loss_scale resolved against
 * the backend (auto turns it on when activations are f16), the model told the scale
 * before each forward, a skipped step logged, and the scaling state (scale, good-step
 * counter, skipped steps) kept in trainer_state.json so a resumed run continues exactly.
 *
 * Steps and iterations: train.steps counts iterations, skipped ones included; a skipped
 * iteration consumes its batches but does not advance the optimizer's step, so a run
 * ends after train.steps − skipped_steps optimizer steps. */
#ifndef SUSHI_TRAINER_LOSS_SCALE_H
#define SUSHI_TRAINER_LOSS_SCALE_H

#include <jansson.h>

#include "models/optim.h"
#include "services/trainer/train_config.h"
#include "services/trainer/trainer_model.h"

/* tc->optim with loss_scale set for the backend: 0 (off) or the initial dynamic scale. */
int trainer_optim_config(const struct train_config *tc, const struct ops *ops, struct optim_config *out);
/* Iterations done: optimizer steps plus skipped ones. */
int trainer_iterations(const struct optim *o);
/* Sets the model's loss scale to optim_loss_scale(o) (before each forward). */
void trainer_set_loss_scale(struct trainer_model *m, const struct optim *o);
/* The warning for a step optim_step skipped ("step N skipped: gradient norm inf, loss
 * scale A → B"), N the iteration. */
void trainer_log_skip(const struct optim *o, int iteration);
/* Adds loss_scale, scale_good_steps and skipped_steps to a checkpoint's state. */
int trainer_scale_state_put(json_t *state, const struct optim *o);
/* Restores them from a loaded state (absent in older checkpoints: the fresh values stay). */
int trainer_scale_state_get(struct optim *o, const json_t *state, const char *dir);
/* Adds loss_scale and skipped_steps to published metrics. */
int trainer_scale_metrics(json_t *meta, const struct optim *o);

#endif
