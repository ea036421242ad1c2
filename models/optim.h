/* The optimizer driver: AdamW (decoupled weight decay, bias correction) over one f32
 * master buffer through ops->adamw, global-norm gradient clipping through ops->sumsq,
 * gradient accumulation, and the learning-rate schedule (linear warmup, then cosine or
 * linear decay to min_lr, or constant), optionally scaled linearly with batch size.
 * One step may cover several parameter buffers (optim_step_multi) with one global norm,
 * and ranges may be frozen (optim_freeze).
 *
 * Dynamic loss scaling (fp16 training, cfg.loss_scale > 0): the model multiplies its loss
 * gradient by optim_loss_scale(o) = S; the step divides the gradients by S (folded into
 * the clipping norm and AdamW's grad_scale, so scaling by 2^k gives bit-identical updates
 * when nothing overflows). A non-finite gradient norm skips the step — weights, moments
 * and the step counter unchanged, S halved (not below scale_min), OPTIM_SKIPPED
 * returned — and scale_growth_interval finite steps in a row double S. At scale_min a
 * non-finite norm is an error, as it always is without dynamic scaling. */
#ifndef SUSHI_OPTIM_H
#define SUSHI_OPTIM_H

#include <stddef.h>
#include <stdint.h>

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
    float loss_scale;     /* 0 = off (static 1); > 0 = dynamic loss scaling from this scale */
    int scale_growth_interval;   /* finite steps in a row before the scale doubles (2000) */
    float scale_min;      /* the scale's floor (1): a non-finite norm there is an error */
    int stochastic_rounding;     /* 0/1: ops->adamw rounds act-dtype weights stochastically */
    uint32_t seed;        /* its seed (hashed with step and index) */
};

/* optim_step's return value for a step skipped by dynamic loss scaling (not an error) */
#define OPTIM_SKIPPED 1

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
    float last_lr, last_norm;   /* last_norm: of the unscaled gradients (inf/NaN after a skip) */
    float scale;          /* loss scale the next step expects (1 without dynamic scaling) */
    float last_scale;     /* the scale the last step ran with (before a skip halved it) */
    int good_steps;       /* finite steps since the scale last changed */
    int skipped;          /* steps skipped for a non-finite gradient norm */
    struct optim_frozen frozen[OPTIM_MAX_FROZEN];
    int n_frozen;
};

/* Fills defaults (β 0.9/0.95, eps 1e-8, accum 1, growth interval 2000, scale_min 1)
 * and checks the values. */
int optim_config_validate(struct optim_config *c);
/* lr = base_lr · batch / base_batch (the linear scaling rule; SPEC: 3e-4 at batch 16). */
float optim_scaled_lr(float base_lr, int base_batch, int batch);
/* Learning rate for step index s (0-based). */
float optim_lr_at(const struct optim_config *c, int s);

int optim_create(struct optim *o, const struct optim_config *c, const struct ops *ops, size_t n,
                 size_t n_decay);
void optim_free(struct optim *o);
/* One update from the accumulated gradients `grad` (act dtype): clip by global norm of
 * grad/(accum_steps·S), AdamW on master (and the act copy `param`, may be NULL or ==
 * master). Does not zero the gradients. 0, OPTIM_SKIPPED (dynamic loss scaling, non-finite
 * norm: nothing updated) or a negative error. */
int optim_step(struct optim *o, float *master, void *param, const void *grad);
/* The same over nb buffers whose sizes add up to the optimizer's n: one global gradient
 * norm over all of them (frozen ranges excluded) for clipping, then AdamW on each. */
int optim_step_multi(struct optim *o, const struct optim_buf *bufs, int nb);
/* The factor S the model's loss gradient must be multiplied by before backward (the
 * current dynamic loss scale; 1 without dynamic scaling). */
float optim_loss_scale(const struct optim *o);
/* Restores the scaling state a checkpoint saved (scale > 0 and finite, counters ≥ 0;
 * scale ignored without dynamic scaling). */
int optim_set_scale_state(struct optim *o, float scale, int good_steps, int skipped);
/* Freezes [off, off + n) of buffer `buf` (0 for optim_step's one buffer). */
int optim_freeze(struct optim *o, int buf, size_t off, size_t n);

#endif
