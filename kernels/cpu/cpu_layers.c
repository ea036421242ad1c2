/* Row-wise layers of the CPU backend: embedding, RMSNorm, SwiGLU and rotary embedding,
 * each a forward/backward pair, threaded over rows (or over columns where rows would
 * race on a parameter gradient). */
#include <math.h>

#include "common/core/log.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/cpu_math.h"

#define ROWS_MIN 4   /* rows per thread below which a layer runs on one thread */

/* ---- embedding ---- */

struct emb_ctx {
    float *dst;
    const float *src;
    const int32_t *ids;
    int N, C;
};

/* out[n,:] = table[ids[n],:] over rows [r0, r1) */
static void emb_fwd_range(void *p, size_t r0, size_t r1, int thread) {
    const struct emb_ctx *e = p;
    (void)thread;
    for (size_t n = r0; n < r1; n++) {
        const float *row = e->src + (size_t)e->ids[n] * e->C;
        float *o = e->dst + n * e->C;
        for (int c = 0; c < e->C; c++) o[c] = row[c];
    }
}

/* dtable[ids[n], c] += dout[n, c] over columns [c0, c1): threads own columns, no race */
static void emb_bwd_range(void *p, size_t c0, size_t c1, int thread) {
    const struct emb_ctx *e = p;
    (void)thread;
    for (int n = 0; n < e->N; n++) {
        float *row = e->dst + (size_t)e->ids[n] * e->C;
        const float *g = e->src + (size_t)n * e->C;
        for (size_t c = c0; c < c1; c++) row[c] += g[c];
    }
}

static int emb_check(const char *op, const void *a, const int32_t *ids, const void *b, int N, int C) {
    if (N < 0 || C <= 0) return sushi_error(SUSHI_ESHAPE, "cpu: %s: bad shape N=%d C=%d", op, N, C);
    if (N > 0 && (!a || !ids || !b)) return sushi_error(SUSHI_EINVAL, "cpu: %s: NULL pointer", op);
    for (int n = 0; n < N; n++)
        if (ids[n] < 0) return sushi_error(SUSHI_EINVAL, "cpu: %s: row %d has negative id %d", op, n, ids[n]);
    return 0;
}

int cpu_embedding_forward(void *out, const int32_t *ids, const void *table, int N, int C) {
    int rc = emb_check("embedding_forward", out, ids, table, N, C);
    if (rc || N == 0) return rc;
    struct emb_ctx e = {out, table, ids, N, C};
    cpu_parallel_for((size_t)N, 16, emb_fwd_range, &e);
    return 0;
}

int cpu_embedding_backward(void *dtable, const int32_t *ids, const void *dout, int N, int C) {
    int rc = emb_check("embedding_backward", dtable, ids, dout, N, C);
    if (rc || N == 0) return rc;
    struct emb_ctx e = {dtable, dout, ids, N, C};
    cpu_parallel_for((size_t)C, 64, emb_bwd_range, &e);
    return 0;
}

/* ---- RMSNorm ---- */

struct rms_ctx {
    float *out, *dw;
    float *rstd;
    const float *x, *w, *dout;
    int N, C;
    float eps;
};

static void rms_fwd_range(void *p, size_t r0, size_t r1, int thread) {
    const struct rms_ctx *r = p;
    (void)thread;
    for (size_t n = r0; n < r1; n++) {
        const float *x = r->x + n * r->C;
        float *o = r->out + n * r->C;
        float ss = 0.0f;
        for (int c = 0; c < r->C; c++) ss += x[c] * x[c];
        float rs = 1.0f / sqrtf(ss / (float)r->C + r->eps);
        for (int c = 0; c < r->C; c++) o[c] = x[c] * rs * r->w[c];
        r->rstd[n] = rs;
    }
}

/* dw[c] += Σ_n dout[n,c]·x[n,c]·rstd[n] over columns [c0, c1) */
static void rms_dw_range(void *p, size_t c0, size_t c1, int thread) {
    const struct rms_ctx *r = p;
    (void)thread;
    for (int n = 0; n < r->N; n++) {
        const float *x = r->x + (size_t)n * r->C, *g = r->dout + (size_t)n * r->C;
        float rs = r->rstd[n];
        for (size_t c = c0; c < c1; c++) r->dw[c] += g[c] * x[c] * rs;
    }
}

/* dx = rstd·(g⊙w) − x·rstd³/C·Σ(g⊙w⊙x); reads a row before writing it, so dx may alias dout */
static void rms_dx_range(void *p, size_t r0, size_t r1, int thread) {
    const struct rms_ctx *r = p;
    (void)thread;
    for (size_t n = r0; n < r1; n++) {
        const float *x = r->x + n * r->C, *g = r->dout + n * r->C;
        float *dx = r->out + n * r->C;
        float rs = r->rstd[n], dot = 0.0f;
        for (int c = 0; c < r->C; c++) dot += g[c] * r->w[c] * x[c];
        float k = dot * rs * rs * rs / (float)r->C;
        for (int c = 0; c < r->C; c++) dx[c] = rs * g[c] * r->w[c] - k * x[c];
    }
}

int cpu_rmsnorm_forward(void *out, float *rstd, const void *x, const void *w, int N, int C,
                        float eps) {
    if (N < 0 || C <= 0) return sushi_error(SUSHI_ESHAPE, "cpu: rmsnorm_forward: bad shape N=%d C=%d", N, C);
    if (!(eps >= 0.0f)) return sushi_error(SUSHI_EINVAL, "cpu: rmsnorm_forward: eps %g must be >= 0", eps);
    if (N == 0) return 0;
    if (!out || !rstd || !x || !w) return sushi_error(SUSHI_EINVAL, "cpu: rmsnorm_forward: NULL pointer");
    struct rms_ctx r = {out, NULL, rstd, x, w, NULL, N, C, eps};
    cpu_parallel_for((size_t)N, ROWS_MIN, rms_fwd_range, &r);
    return 0;
}

int cpu_rmsnorm_backward(void *dx, void *dw, const void *dout, const void *x, const void *w,
                         const float *rstd, int N, int C) {
    if (N < 0 || C <= 0) return sushi_error(SUSHI_ESHAPE, "cpu: rmsnorm_backward: bad shape N=%d C=%d", N, C);
    if (N == 0) return 0;
    if (!dx || !dw || !dout || !x || !w || !rstd)
        return sushi_error(SUSHI_EINVAL, "cpu: rmsnorm_backward: NULL pointer");
    struct rms_ctx r = {dx, dw, (float *)rstd, x, w, dout, N, C, 0.0f};
    cpu_parallel_for((size_t)C, 64, rms_dw_range, &r);   /* before dx: dx may alias dout */
    cpu_parallel_for((size_t)N, ROWS_MIN, rms_dx_range, &r);
    return 0;
}

/* ---- SwiGLU ---- */

struct swiglu_ctx {
    float *dst;
    const float *h, *dout;
    int F;
    int rc;   /* scratch failure, set atomically */
};

/* σ(g) = 1/(1 + exp(−g)) of a row into t (vector exp) */
static void swiglu_sigmoid(float *t, const float *g, int F) {
    cpu_vexp_sum(t, g, (size_t)F, 0.0f, -1.0f);
    for (int i = 0; i < F; i++) t[i] = 1.0f / (1.0f + t[i]);
}

static void swiglu_fwd_range(void *p, size_t r0, size_t r1, int thread) {
    struct swiglu_ctx *s = p;
    float *t = cpu_scratch(thread, 0, (size_t)s->F);
    if (!t) {
        __atomic_store_n(&s->rc, SUSHI_ENOMEM, __ATOMIC_RELAXED);
        return;
    }
    for (size_t n = r0; n < r1; n++) {
        const float *g = s->h + n * 2 * s->F, *u = g + s->F;
        float *o = s->dst + n * s->F;
        swiglu_sigmoid(t, g, s->F);
        for (int i = 0; i < s->F; i++) o[i] = g[i] * t[i] * u[i];
    }
}

/* dgate = dout·up·σ(g)(1 + g(1 − σ(g))), dup = dout·silu(g) */
static void swiglu_bwd_range(void *p, size_t r0, size_t r1, int thread) {
    struct swiglu_ctx *s = p;
    float *t = cpu_scratch(thread, 0, (size_t)s->F);
    if (!t) {
        __atomic_store_n(&s->rc, SUSHI_ENOMEM, __ATOMIC_RELAXED);
        return;
    }
    for (size_t n = r0; n < r1; n++) {
        const float *g = s->h + n * 2 * s->F, *u = g + s->F, *d = s->dout + n * s->F;
        float *dg = s->dst + n * 2 * s->F, *du = dg + s->F;
        swiglu_sigmoid(t, g, s->F);
        for (int i = 0; i < s->F; i++) {
            float sg = t[i];
            float gi = g[i], ui = u[i], di = d[i];
            dg[i] = di * ui * sg * (1.0f + gi * (1.0f - sg));
            du[i] = di * gi * sg;
        }
    }
}

int cpu_swiglu_forward(void *out, const void *h, int N, int F) {
    if (N < 0 || F <= 0) return sushi_error(SUSHI_ESHAPE, "cpu: swiglu_forward: bad shape N=%d F=%d", N, F);
    if (N == 0) return 0;
    if (!out || !h) return sushi_error(SUSHI_EINVAL, "cpu: swiglu_forward: NULL pointer");
    struct swiglu_ctx s = {out, h, NULL, F, 0};
    cpu_parallel_for((size_t)N, ROWS_MIN, swiglu_fwd_range, &s);
    return s.rc ? sushi_error(s.rc, "cpu: swiglu_forward: scratch for F=%d: out of memory", F) : 0;
}

int cpu_swiglu_backward(void *dh, const void *dout, const void *h, int N, int F) {
    if (N < 0 || F <= 0) return sushi_error(SUSHI_ESHAPE, "cpu: swiglu_backward: bad shape N=%d F=%d", N, F);
    if (N == 0) return 0;
    if (!dh || !dout || !h) return sushi_error(SUSHI_EINVAL, "cpu: swiglu_backward: NULL pointer");
    struct swiglu_ctx s = {dh, h, dout, F, 0};
    cpu_parallel_for((size_t)N, ROWS_MIN, swiglu_bwd_range, &s);
    return s.rc ? sushi_error(s.rc, "cpu: swiglu_backward: scratch for F=%d: out of memory", F) : 0;
}

/* ---- rotary embedding ---- */

struct rope_ctx {
    float *x;
    const struct rope_shape *s;
    float sign;   /* +1 forward, −1 backward (rotation by −θ) */
};

static void rope_range(void *p, size_t r0, size_t r1, int thread) {
    const struct rope_ctx *r = p;
    const struct rope_shape *s = r->s;
    const int half = s->rot_dim / 2;
    (void)thread;
    for (size_t n = r0; n < r1; n++) {
        const float *cs = s->cos + (size_t)s->pos[n] * half, *sn = s->sin + (size_t)s->pos[n] * half;
        for (int h = 0; h < s->nheads; h++) {
            float *x = r->x + n * s->row_stride + (size_t)h * s->head_stride + s->offset;
            for (int i = 0; i < half; i++) {
                int i0 = s->interleaved ? 2 * i : i, i1 = s->interleaved ? 2 * i + 1 : i + half;
                float c = cs[i], si = r->sign * sn[i], a = x[i0], b = x[i1];
                x[i0] = a * c - b * si;
                x[i1] = a * si + b * c;
            }
        }
    }
}

static int rope_run(const char *op, void *x, const struct rope_shape *s, float sign) {
    if (!s) return sushi_error(SUSHI_EINVAL, "cpu: %s: NULL shape", op);
    if (s->N < 0 || s->nheads < 0 || s->rot_dim <= 0 || s->rot_dim % 2 || s->offset < 0 ||
        s->head_stride < 0 || s->max_pos <= 0 ||
        (s->nheads > 0 && s->offset + (s->nheads - 1) * s->head_stride + s->rot_dim > s->row_stride))
        return sushi_error(SUSHI_ESHAPE,
                           "cpu: %s: bad shape N=%d nheads=%d row_stride=%d head_stride=%d offset=%d "
                           "rot_dim=%d max_pos=%d", op, s->N, s->nheads, s->row_stride, s->head_stride,
                           s->offset, s->rot_dim, s->max_pos);
    if (s->N == 0 || s->nheads == 0) return 0;
    if (!x || !s->pos || !s->cos || !s->sin) return sushi_error(SUSHI_EINVAL, "cpu: %s: NULL pointer", op);
    for (int n = 0; n < s->N; n++)
        if (s->pos[n] < 0 || s->pos[n] >= s->max_pos)
            return sushi_error(SUSHI_EINVAL, "cpu: %s: row %d position %d outside [0, %d)", op, n,
                               s->pos[n], s->max_pos);
    struct rope_ctx r = {x, s, sign};
    cpu_parallel_for((size_t)s->N, 16, rope_range, &r);
    return 0;
}

int cpu_rope_forward(void *x, const struct rope_shape *s) { return rope_run("rope_forward", x, s, 1.0f); }
int cpu_rope_backward(void *dx, const struct rope_shape *s) { return rope_run("rope_backward", dx, s, -1.0f); }
