/* The optimizer driver: AdamW (decoupled weight decay, bias correction) over one f32
 * master buffer through ops->adamw, global-norm gradient clipping through ops->sumsq,
 * gradient accumulation, and the learning-rate schedule (linear warmup, then cosine or
 * linear decay to min_lr, or constant), optionally scaled linearly with batch size.
 * One step may cover several parameter buffers (optim_step_multi) with one global norm,
 * and ranges may be frozen (optim_freeze). */
#ifndef SUSHI_OPTIM_H
#define SUSHI_OPTIM_H

#include <stddef.h>

#include "kernels/ops.h"

enum optim_schedule { OPTIM_COSINE = 0, OPTIM_LINEAR = 1, OPTIM_CONSTANT = 2 };

struct optim_config {
    float lr;             /* peak learning rate (after scaling) */
    float min_lr;         /* floor the decay reaches at total_steps */
    int warmup_steps;     /* lr rises linearly over the first warmup steps */
    int total_steps;      /* end of the decay */
    enum optim_schedule schedule;
    float beta1, beta2, eps, weight_decay;
    float clip_norm;      /* global gradient-norm limit, 0 = no clipping */
    int accum_steps;      /* micro-batches summed into one step (grads divided by this) */
};

/* One parameter buffer of a multi-buffer step (e.g. the student and its encoders): the
 * moments of buffer i sit after those of buffers 0..i-1 in the optimizer's m and v. */
struct optim_buf {
    float *master;        /* (n) f32 master weights */
    void *param;          /* act-dtype copy, may be NULL or == master */
    const void *grad;     /* (n) act-dtype accumulated gradients */
    size_t n, n_decay;    /* parameters; leading ones with weight decay */
};

/* A range of buffer `buf` kept frozen: its parameters get no update (no AdamW step, no
 * weight decay, moments untouched) and its gradients do not count in the clipping norm. */
struct optim_frozen {
    int buf;
    size_t off, n;
};
#define OPTIM_MAX_FROZEN 32

struct optim {
    struct optim_config cfg;
    const struct ops *ops;
    size_t n;             /* parameters */
    size_t n_decay;       /* leading parameters with weight decay (matrices) */
    float *m, *v;         /* (n) f32 moments in backend memory */
    int step;             /* completed steps */
    float last_lr, last_norm;
    struct optim_frozen frozen[OPTIM_MAX_FROZEN];
    int n_frozen;
};

/* Fills defaults (β 0.9/0.95, eps 1e-8, accum 1) and checks the values. */
int optim_config_validate(struct optim_config *c);
/* lr = base_lr · batch / base_batch (the linear scaling rule; SPEC: 3e-4 at batch 16). */
float optim_scaled_lr(float base_lr, int base_batch, int batch);
/* Learning rate for step index s (0-based). */
float optim_lr_at(const struct optim_config *c, int s);

int optim_create(struct optim *o, const struct optim_config *c, const struct ops *ops, size_t n,
                 size_t n_decay);
void optim_free(struct optim *o);
/* One update from the accumulated gradients `grad` (act dtype): clip by global norm of
 * grad/accum_steps, AdamW on master (and the act copy `param`, may be NULL or == master).
 * Does not zero the gradients. */
int optim_step(struct optim *o, float *master, void *param, const void *grad);
/* The same over nb buffers whose sizes add up to the optimizer's n: one global gradient
 * norm over all of them (frozen ranges excluded) for clipping, then AdamW on each. */
int optim_step_multi(struct optim *o, const struct optim_buf *bufs, int nb);
/* Freezes [off, off + n) of buffer `buf` (0 for optim_step's one buffer). */
int optim_freeze(struct optim *o, int buf, size_t off, size_t n);

#endif
