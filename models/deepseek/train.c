/* Training a DeepSeek-style model (deepseek.h, "training a DeepSeek-style model"):
 * parameter buffers, model-level forward/backward over B rows of T tokens split into
 * document segments, HF-layout checkpoints with optimizer state. */
#include "models/deepseek/deepseek.h"

#include <string.h>

#include "common/core/log.h"

int ds_train_create(struct ds_train *t, const struct ds_config *c, const struct ops *ops, int B, int T,
                    uint64_t seed, const char *dir)
{
    (void)c; (void)ops; (void)B; (void)T; (void)seed; (void)dir;
    if (t) memset(t, 0, sizeof *t);
    return sushi_error(SUSHI_EUNSUPPORTED, "ds_train_create: not implemented yet");
}

void ds_train_free(struct ds_train *t)
{
    if (t) memset(t, 0, sizeof *t);
}

int ds_train_forward(struct ds_train *t, const int32_t *ids, const int32_t *targets, const int32_t *doc_ids,
                     const struct student_teacher *teacher, const struct student_loss_cfg *lc, float *loss)
{
    (void)t; (void)ids; (void)targets; (void)doc_ids; (void)teacher; (void)lc; (void)loss;
    return sushi_error(SUSHI_EUNSUPPORTED, "ds_train_forward: not implemented yet");
}

int ds_train_backward(struct ds_train *t)
{
    (void)t;
    return sushi_error(SUSHI_EUNSUPPORTED, "ds_train_backward: not implemented yet");
}

int ds_train_zero_grad(struct ds_train *t)
{
    (void)t;
    return sushi_error(SUSHI_EUNSUPPORTED, "ds_train_zero_grad: not implemented yet");
}

int ds_train_sync_weights(struct ds_train *t)
{
    (void)t;
    return sushi_error(SUSHI_EUNSUPPORTED, "ds_train_sync_weights: not implemented yet");
}

int ds_train_save(const struct ds_train *t, const char *dir, const float *m, const float *v, const json_t *state)
{
    (void)t; (void)dir; (void)m; (void)v; (void)state;
    return sushi_error(SUSHI_EUNSUPPORTED, "ds_train_save: not implemented yet");
}

int ds_train_load(struct ds_train *t, const char *dir, float *m, float *v, json_t **state)
{
    (void)t; (void)dir; (void)m; (void)v; (void)state;
    return sushi_error(SUSHI_EUNSUPPORTED, "ds_train_load: not implemented yet");
}

int ds_config_from_train_json(struct ds_config *c, const json_t *model, const char *file)
{
    (void)c; (void)model; (void)file;
    return sushi_error(SUSHI_EUNSUPPORTED, "ds_config_from_train_json: not implemented yet");
}
