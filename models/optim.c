/* AdamW driver, clipping and learning-rate schedules (see optim.h). */
#include "models/optim.h"

#include <math.h>
#include <string.h>

#include "common/core/log.h"

int optim_config_validate(struct optim_config *c) {
    if (!c) return sushi_error(SUSHI_EINVAL, "optim config: NULL");
    if (c->beta1 == 0) c->beta1 = 0.9f;
    if (c->beta2 == 0) c->beta2 = 0.95f;
    if (c->eps == 0) c->eps = 1e-8f;
    if (c->accum_steps == 0) c->accum_steps = 1;
    if (!(c->lr > 0)) return sushi_error(SUSHI_EINVAL, "optim config: lr must be > 0 (got %g)", c->lr);
    if (c->min_lr < 0 || c->min_lr > c->lr)
        return sushi_error(SUSHI_EINVAL, "optim config: min_lr %g must be in [0, lr %g]", c->min_lr, c->lr);
    if (c->warmup_steps < 0) return sushi_error(SUSHI_EINVAL, "optim config: warmup_steps must be ≥ 0");
    if (c->total_steps <= 0) return sushi_error(SUSHI_EINVAL, "optim config: total_steps must be > 0");
    if (c->schedule < OPTIM_COSINE || c->schedule > OPTIM_CONSTANT)
        return sushi_error(SUSHI_EINVAL, "optim config: schedule %d unknown", (int)c->schedule);
    if (!(c->beta1 > 0 && c->beta1 < 1) || !(c->beta2 > 0 && c->beta2 < 1))
        return sushi_error(SUSHI_EINVAL, "optim config: betas must be in (0,1)");
    if (!(c->eps > 0)) return sushi_error(SUSHI_EINVAL, "optim config: eps must be > 0");
    if (c->weight_decay < 0) return sushi_error(SUSHI_EINVAL, "optim config: weight_decay must be ≥ 0");
    if (c->clip_norm < 0) return sushi_error(SUSHI_EINVAL, "optim config: clip_norm must be ≥ 0");
    if (c->accum_steps < 0) return sushi_error(SUSHI_EINVAL, "optim config: accum_steps must be > 0");
    return 0;
}

float optim_scaled_lr(float base_lr, int base_batch, int batch) {
    if (base_batch <= 0 || batch <= 0) return base_lr;
    return base_lr * (float)batch / (float)base_batch;
}

float optim_lr_at(const struct optim_config *c, int s) {
    if (s < c->warmup_steps) return c->lr * (float)(s + 1) / (float)c->warmup_steps;
    if (c->schedule == OPTIM_CONSTANT) return c->lr;
    int span = c->total_steps - c->warmup_steps;
    double p = span > 0 ? (double)(s - c->warmup_steps) / span : 1.0;
    if (p > 1) p = 1;
    double f = c->schedule == OPTIM_COSINE ? 0.5 * (1.0 + cos(M_PI * p)) : 1.0 - p;
    return (float)(c->min_lr + (c->lr - c->min_lr) * f);
}

int optim_create(struct optim *o, const struct optim_config *c, const struct ops *ops, size_t n,
                 size_t n_decay) {
    if (!o || !c || !ops || n == 0 || n_decay > n)
        return sushi_error(SUSHI_EINVAL, "optim_create: bad arguments (n=%zu, n_decay=%zu)", n, n_decay);
    memset(o, 0, sizeof *o);
    o->cfg = *c;
    int rc = optim_config_validate(&o->cfg);
    if (rc) return rc;
    o->ops = ops;
    o->n = n;
    o->n_decay = n_decay;
    o->m = ops->alloc(n * sizeof(float));
    o->v = ops->alloc(n * sizeof(float));
    if (!o->m || !o->v) {
        optim_free(o);
        return sushi_error(SUSHI_ENOMEM, "optim_create: moments for %zu parameters", n);
    }
    return 0;
}

void optim_free(struct optim *o) {
    if (!o || !o->ops) return;
    if (o->m) o->ops->free(o->m);
    if (o->v) o->ops->free(o->v);
    memset(o, 0, sizeof *o);
}

int optim_step(struct optim *o, float *master, void *param, const void *grad) {
    if (!o || !o->m || !master || !grad) return sushi_error(SUSHI_EINVAL, "optim_step: NULL argument");
    const struct ops *ops = o->ops;
    size_t es = dtype_size(ops->act_dtype);
    float accum = 1.0f / (float)o->cfg.accum_steps;
    float ss = 0;
    int rc = ops->sumsq(&ss, grad, o->n);
    if (rc) return rc;
    float norm = sqrtf(ss) * accum;
    if (!isfinite(norm)) return sushi_error(SUSHI_EINVAL, "optim_step: gradient norm is %f at step %d", norm, o->step + 1);
    float clip = 1.0f;
    /* torch.nn.utils.clip_grad_norm_: coef = max / (norm + 1e-6), applied when < 1 */
    if (o->cfg.clip_norm > 0) {
        float coef = o->cfg.clip_norm / (norm + 1e-6f);
        if (coef < 1.0f) clip = coef;
    }
    o->last_norm = norm;
    o->last_lr = optim_lr_at(&o->cfg, o->step);
    struct adamw_args a = {.lr = o->last_lr, .beta1 = o->cfg.beta1, .beta2 = o->cfg.beta2,
                           .eps = o->cfg.eps, .step = o->step + 1, .grad_scale = accum * clip};
    /* two ranges: matrices with weight decay, then norm weights without */
    size_t off[2] = {0, o->n_decay}, cnt[2] = {o->n_decay, o->n - o->n_decay};
    for (int r = 0; r < 2; r++) {
        if (!cnt[r]) continue;
        a.n = cnt[r];
        a.weight_decay = r == 0 ? o->cfg.weight_decay : 0.0f;
        void *p = param ? (char *)param + off[r] * es : NULL;
        rc = ops->adamw(master + off[r], p, (const char *)grad + off[r] * es, o->m + off[r],
                        o->v + off[r], &a);
        if (rc) return rc;
    }
    o->step++;
    return 0;
}
