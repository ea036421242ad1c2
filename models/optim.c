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
    if (c->scale_growth_interval == 0) c->scale_growth_interval = 2000;
    if (c->scale_min == 0) c->scale_min = 1.0f;
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
    if (!(c->loss_scale >= 0) || !isfinite(c->loss_scale))
        return sushi_error(SUSHI_EINVAL, "optim config: loss_scale %g must be finite and ≥ 0 (0 = off)",
                           c->loss_scale);
    if (c->scale_growth_interval < 0)
        return sushi_error(SUSHI_EINVAL, "optim config: scale_growth_interval must be > 0 (got %d)",
                           c->scale_growth_interval);
    if (!(c->scale_min > 0) || !isfinite(c->scale_min))
        return sushi_error(SUSHI_EINVAL, "optim config: scale_min %g must be finite and > 0", c->scale_min);
    if (c->loss_scale > 0 && c->loss_scale < c->scale_min)
        return sushi_error(SUSHI_EINVAL, "optim config: loss_scale %g is below scale_min %g", c->loss_scale,
                           c->scale_min);
    if (c->stochastic_rounding != 0 && c->stochastic_rounding != 1)
        return sushi_error(SUSHI_EINVAL, "optim config: stochastic_rounding must be 0 or 1 (got %d)",
                           c->stochastic_rounding);
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
    o->scale = o->last_scale = o->cfg.loss_scale > 0 ? o->cfg.loss_scale : 1.0f;
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

float optim_loss_scale(const struct optim *o) {
    return o && o->cfg.loss_scale > 0 && o->scale > 0 ? o->scale : 1.0f;
}

int optim_set_scale_state(struct optim *o, float scale, int good_steps, int skipped) {
    if (!o) return sushi_error(SUSHI_EINVAL, "optim_set_scale_state: NULL optimizer");
    if (!(scale > 0) || !isfinite(scale) || good_steps < 0 || skipped < 0)
        return sushi_error(SUSHI_EINVAL, "optim_set_scale_state: scale %g must be finite and > 0, counters ≥ 0 "
                           "(got %d, %d)", scale, good_steps, skipped);
    if (o->cfg.loss_scale > 0) o->scale = o->last_scale = scale < o->cfg.scale_min ? o->cfg.scale_min : scale;
    o->good_steps = good_steps;
    o->skipped = skipped;
    return 0;
}

/* After a step's gradient norm: a finite one counts towards doubling the scale (0 is
 * returned); a non-finite one halves it and skips the step (OPTIM_SKIPPED), or is an
 * error without dynamic scaling or at scale_min. */
static int update_scale(struct optim *o, float norm) {
    int dynamic = o->cfg.loss_scale > 0;
    o->last_scale = optim_loss_scale(o);
    if (isfinite(norm)) {
        if (dynamic && ++o->good_steps >= o->cfg.scale_growth_interval) {
            if (isfinite(o->scale * 2.0f)) o->scale *= 2.0f;
            o->good_steps = 0;
        }
        return 0;
    }
    if (!dynamic) return sushi_error(SUSHI_EINVAL, "optim_step: gradient norm is %f at step %d", norm, o->step + 1);
    if (o->scale <= o->cfg.scale_min)
        return sushi_error(SUSHI_EINVAL, "optim_step: gradient norm is %f at step %d with the loss scale at its "
                           "minimum %g", norm, o->step + 1, o->cfg.scale_min);
    float half = o->scale * 0.5f;
    o->scale = half < o->cfg.scale_min ? o->cfg.scale_min : half;
    o->good_steps = 0;
    o->skipped++;
    return OPTIM_SKIPPED;
}

int optim_freeze(struct optim *o, int buf, size_t off, size_t n) {
    if (!o || buf < 0 || n == 0) return sushi_error(SUSHI_EINVAL, "optim_freeze: bad arguments");
    if (o->n_frozen == OPTIM_MAX_FROZEN)
        return sushi_error(SUSHI_EINVAL, "optim_freeze: at most %d frozen ranges", OPTIM_MAX_FROZEN);
    o->frozen[o->n_frozen++] = (struct optim_frozen){.buf = buf, .off = off, .n = n};
    return 0;
}

/* The parts of [lo, hi) of buffer b outside its frozen ranges, in order: up to cap
 * segments (off, cnt) into seg; returns the count or -1 when cap is too small. */
static int active_segments(const struct optim *o, int b, size_t lo, size_t hi, size_t (*seg)[2], int cap) {
    int n = 0;
    size_t at = lo;
    while (at < hi) {
        size_t end = hi, skip = 0;   /* the first frozen range overlapping [at, hi) */
        for (int i = 0; i < o->n_frozen; i++) {
            const struct optim_frozen *f = &o->frozen[i];
            if (f->buf != b || f->off + f->n <= at || f->off >= end) continue;
            if (f->off <= at) { end = at; skip = f->off + f->n; break; }
            end = f->off;
            skip = f->off + f->n;
        }
        if (end > at) {
            if (n == cap) return -1;
            seg[n][0] = at;
            seg[n][1] = end - at;
            n++;
        }
        at = skip > end ? skip : end;
        if (skip == 0) break;
    }
    return n;
}

#define OPTIM_MAX_SEG (2 * OPTIM_MAX_FROZEN + 2)

int optim_step_multi(struct optim *o, const struct optim_buf *bufs, int nb) {
    if (!o || !o->m || !bufs || nb < 1) return sushi_error(SUSHI_EINVAL, "optim_step: NULL argument");
    size_t total = 0;
    for (int b = 0; b < nb; b++) {
        if (!bufs[b].master || !bufs[b].grad || bufs[b].n_decay > bufs[b].n)
            return sushi_error(SUSHI_EINVAL, "optim_step: buffer %d: missing weights or gradients", b);
        total += bufs[b].n;
    }
    if (total != o->n)
        return sushi_error(SUSHI_EINVAL, "optim_step: buffers hold %zu parameters, the optimizer %zu", total, o->n);
    const struct ops *ops = o->ops;
    size_t es = dtype_size(ops->act_dtype);
    float accum = 1.0f / (float)o->cfg.accum_steps;
    size_t seg[OPTIM_MAX_SEG][2];
    double ss = 0;   /* one global norm over every trainable gradient */
    for (int b = 0; b < nb; b++) {
        int ns = active_segments(o, b, 0, bufs[b].n, seg, OPTIM_MAX_SEG);
        if (ns < 0) return sushi_error(SUSHI_EINVAL, "optim_step: too many frozen ranges");
        for (int s = 0; s < ns; s++) {
            float part = 0;
            int rc = ops->sumsq(&part, (const char *)bufs[b].grad + seg[s][0] * es, seg[s][1]);
            if (rc) return rc;
            ss += part;
        }
    }
    /* 1/S after accum: for S = 2^k both products are exact, the unscaled run's norm */
    float unscale = 1.0f / optim_loss_scale(o);
    float norm = sqrtf((float)ss) * accum * unscale;
    o->last_norm = norm;
    int rc = update_scale(o, norm);
    if (rc) {
        if (rc == OPTIM_SKIPPED) o->last_lr = optim_lr_at(&o->cfg, o->step);
        return rc;
    }
    float clip = 1.0f;
    /* torch.nn.utils.clip_grad_norm_: coef = max / (norm + 1e-6), applied when < 1 */
    if (o->cfg.clip_norm > 0) {
        float coef = o->cfg.clip_norm / (norm + 1e-6f);
        if (coef < 1.0f) clip = coef;
    }
    o->last_lr = optim_lr_at(&o->cfg, o->step);
    struct adamw_args a = {.lr = o->last_lr, .beta1 = o->cfg.beta1, .beta2 = o->cfg.beta2, .eps = o->cfg.eps,
                           .step = o->step + 1, .grad_scale = accum * clip * unscale,
                           .stochastic_rounding = o->cfg.stochastic_rounding, .seed = o->cfg.seed};
    size_t mo = 0;   /* the buffer's first moment */
    for (int b = 0; b < nb; b++) {
        const struct optim_buf *x = &bufs[b];
        /* two ranges: matrices with weight decay, then the rest without */
        for (int r = 0; r < 2; r++) {
            size_t lo = r == 0 ? 0 : x->n_decay, hi = r == 0 ? x->n_decay : x->n;
            int ns = active_segments(o, b, lo, hi, seg, OPTIM_MAX_SEG);
            if (ns < 0) return sushi_error(SUSHI_EINVAL, "optim_step: too many frozen ranges");
            a.weight_decay = r == 0 ? o->cfg.weight_decay : 0.0f;
            for (int s = 0; s < ns; s++) {
                size_t off = seg[s][0];
                a.n = seg[s][1];
                /* the kernel's random bits hash (seed, step, index within the call): fold the
                 * segment's place in the whole parameter vector into the seed */
                a.seed = o->cfg.seed ^ (uint32_t)((mo + off) * 0x9E3779B97F4A7C15ull >> 32);
                void *p = x->param ? (char *)x->param + off * es : NULL;
                rc = ops->adamw(x->master + off, p, (const char *)x->grad + off * es, o->m + mo + off,
                            o->v + mo + off, &a);
                if (rc) return rc;
            }
        }
        mo += x->n;
    }
    o->step++;
    return 0;
}

int optim_step(struct optim *o, float *master, void *param, const void *grad) {
    if (!o || !o->m || !master || !grad) return sushi_error(SUSHI_EINVAL, "optim_step: NULL argument");
    struct optim_buf b = {.master = master, .param = param, .grad = grad, .n = o->n, .n_decay = o->n_decay};
    return optim_step_multi(o, &b, 1);
}
