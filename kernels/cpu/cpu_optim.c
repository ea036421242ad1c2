/* Optimizer ops on the CPU: AdamW on f32 master weights and moments, and the sum of
 * squares used for global-norm clipping (f64 partial sums per thread). */
#include <math.h>

#include "common/core/log.h"
#include "kernels/cpu/cpu_internal.h"

#define OPT_MIN 4096     /* elements per thread below which one thread does it all */

struct adamw_ctx {
    float *master, *param, *m, *v;
    const float *grad;
    const struct adamw_args *a;
    float bc1, bc2;
};

/* g = grad·grad_scale; m, v moments; master −= lr·(m̂/(√v̂ + eps) + wd·master) */
static void adamw_range(void *p, size_t i0, size_t i1, int thread) {
    const struct adamw_ctx *c = p;
    const struct adamw_args *a = c->a;
    (void)thread;
    for (size_t i = i0; i < i1; i++) {
        float g = c->grad[i] * a->grad_scale;
        float mi = a->beta1 * c->m[i] + (1.0f - a->beta1) * g;
        float vi = a->beta2 * c->v[i] + (1.0f - a->beta2) * g * g;
        c->m[i] = mi;
        c->v[i] = vi;
        float w = c->master[i];
        w -= a->lr * ((mi / c->bc1) / (sqrtf(vi / c->bc2) + a->eps) + a->weight_decay * w);
        c->master[i] = w;
        if (c->param) c->param[i] = w;
    }
}

int cpu_adamw(float *master, void *param, const void *grad, float *m, float *v,
              const struct adamw_args *a) {
    if (!a) return sushi_error(SUSHI_EINVAL, "cpu: adamw: NULL arguments");
    if (a->step < 1) return sushi_error(SUSHI_EINVAL, "cpu: adamw: step %d (1-based)", a->step);
    if (!(a->beta1 >= 0.0f && a->beta1 < 1.0f && a->beta2 >= 0.0f && a->beta2 < 1.0f))
        return sushi_error(SUSHI_EINVAL, "cpu: adamw: betas (%g, %g) outside [0, 1)", a->beta1, a->beta2);
    if (!(a->eps > 0.0f)) return sushi_error(SUSHI_EINVAL, "cpu: adamw: eps %g must be > 0", a->eps);
    if (a->n == 0) return 0;
    if (!master || !grad || !m || !v) return sushi_error(SUSHI_EINVAL, "cpu: adamw: NULL pointer");
    struct adamw_ctx c = {master, param == (void *)master ? NULL : param, m, v, grad, a,
                          1.0f - powf(a->beta1, (float)a->step), 1.0f - powf(a->beta2, (float)a->step)};
    cpu_parallel_for(a->n, OPT_MIN, adamw_range, &c);
    return 0;
}

struct sumsq_ctx {
    const float *x;
    double part[CPU_MAX_THREADS];
};

static void sumsq_range(void *p, size_t i0, size_t i1, int thread) {
    struct sumsq_ctx *c = p;
    float acc[8] = {0};   /* 8 lanes in f32, folded into f64 every 4096 values */
    double s = 0.0;
    size_t i = i0;
    while (i < i1) {
        size_t end = i + 4096 < i1 ? i + 4096 : i1;
        for (; i + 8 <= end; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += c->x[i + l] * c->x[i + l];
        for (; i < end; i++) acc[0] += c->x[i] * c->x[i];
        for (int l = 0; l < 8; l++) {
            s += acc[l];
            acc[l] = 0.0f;
        }
    }
    c->part[thread] += s;
}

int cpu_sumsq(float *out, const void *x, size_t n) {
    if (!out || (n && !x)) return sushi_error(SUSHI_EINVAL, "cpu: sumsq: NULL pointer");
    struct sumsq_ctx c = {.x = x};
    cpu_parallel_for(n, OPT_MIN, sumsq_range, &c);
    double s = 0.0;
    for (int t = 0; t < CPU_MAX_THREADS; t++) s += c.part[t];
    *out = (float)s;
    return 0;
}
