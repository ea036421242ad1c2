/* The mesh encoder: points (Pm, 6) (xyz, normal) → per-point MLP fc1 (6 → H) → SiLU →
 * fc2 (H → C) → mean over M spatial groups → + token_embed[g]. The groups come from a
 * Morton (z-order) sort of the points (encoders.h states the exact rule), so each token
 * summarises one region of the shape and the result is deterministic. SiLU runs through
 * the swiglu op with the "up" half held at 1; the mean-pool is a matmul with a (M, Pm)
 * pooling matrix built on the host. */
#include <math.h>
#include <stdlib.h>

#include "common/core/log.h"
#include "models/student/encoders.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ < 0) return rc_; } while (0)

static void *at(void *base, size_t elems, size_t es) { return (char *)base + elems * es; }

/* bit i of v moves to bit 3i */
static uint32_t spread3(uint32_t v) {
    v &= 0x3ff;
    v = (v | (v << 16)) & 0x030000ffu;
    v = (v | (v << 8)) & 0x0300f00fu;
    v = (v | (v << 4)) & 0x030c30c3u;
    v = (v | (v << 2)) & 0x09249249u;
    return v;
}

struct keyed { uint32_t code; int idx; };

static int keyed_cmp(const void *a, const void *b) {
    const struct keyed *x = a, *y = b;
    if (x->code != y->code) return x->code < y->code ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

int encoder_mesh_pool_matrix(const float *points, int Pm, int M, float *pool) {
    if (!points || !pool || M <= 0 || Pm < M)
        return sushi_error(SUSHI_EINVAL, "encoder_mesh_pool_matrix: %d points for %d tokens", Pm, M);
    double lo[3], hi[3];
    for (int d = 0; d < 3; d++) lo[d] = hi[d] = points[d];
    for (int p = 0; p < Pm; p++)
        for (int d = 0; d < 3; d++) {
            double v = points[(size_t)p * 6 + d];
            if (!isfinite(v)) return sushi_error(SUSHI_EINVAL, "mesh: point %d coordinate %d is not finite", p, d);
            lo[d] = v < lo[d] ? v : lo[d];
            hi[d] = v > hi[d] ? v : hi[d];
        }
    struct keyed *k = malloc((size_t)Pm * sizeof *k);
    if (!k) return sushi_error(SUSHI_ENOMEM, "mesh: sort keys for %d points", Pm);
    for (int p = 0; p < Pm; p++) {
        uint32_t q[3];
        for (int d = 0; d < 3; d++) {
            double u = hi[d] > lo[d] ? (points[(size_t)p * 6 + d] - lo[d]) / (hi[d] - lo[d]) : 0.0;
            double f = floor(u * 1023.0);
            q[d] = f < 0 ? 0 : f > 1023 ? 1023 : (uint32_t)f;
        }
        k[p].code = (spread3(q[0]) << 2) | (spread3(q[1]) << 1) | spread3(q[2]);
        k[p].idx = p;
    }
    qsort(k, (size_t)Pm, sizeof *k, keyed_cmp);
    for (size_t i = 0; i < (size_t)M * Pm; i++) pool[i] = 0.0f;
    for (int g = 0; g < M; g++) {
        int j0 = (int)((int64_t)g * Pm / M), j1 = (int)((int64_t)(g + 1) * Pm / M);
        for (int j = j0; j < j1; j++) pool[(size_t)g * Pm + k[j].idx] = 1.0f / (float)(j1 - j0);
    }
    free(k);
    return 0;
}

int encoder_mesh_forward(struct encoders *e, const float *points) {
    if (!e || !e->master || e->cfg.mesh_tokens <= 0) return sushi_error(SUSHI_EINVAL, "encoder_mesh_forward: mesh encoder not enabled");
    if (!points) return sushi_error(SUSHI_EINVAL, "encoder_mesh_forward: points missing");
    const struct ops *o = e->ops;
    struct encoder_mesh_acts *a = &e->mesh;
    size_t es = dtype_size(o->act_dtype);
    int B = e->B, Pm = e->cfg.mesh_points, M = e->cfg.mesh_tokens, H = e->cfg.mesh_hidden;
    int C = e->cfg.d_model, n = B * Pm;
    float *pool = malloc((size_t)B * M * Pm * sizeof *pool);
    if (!pool) return sushi_error(SUSHI_ENOMEM, "encoder_mesh_forward: pooling matrix");
    int rc = 0;
    for (int b = 0; b < B && !rc; b++)
        rc = encoder_mesh_pool_matrix(points + (size_t)b * Pm * 6, Pm, M, pool + (size_t)b * M * Pm);
    if (!rc) rc = encoder_upload_input(e, a->pool, pool, (size_t)B * M * Pm, "mesh pooling matrix");
    free(pool);
    CHECK(rc);
    CHECK(encoder_upload_input(e, a->x, points, (size_t)n * 6, "mesh points"));
    /* h = [x·W1ᵀ + b1 | 1] so that swiglu(h) = SiLU(fc1(x)) */
    CHECK(o->fill(a->h, 1.0f, (size_t)n * 2 * H));
    CHECK(o->matmul(a->h, a->x, e->w.mesh_w1, n, H, 6, 0, 1, 1.0f, 0.0f, 0, 0, 2 * H));
    CHECK(o->matmul(a->h, e->ones, e->w.mesh_b1, n, H, 1, 0, 0, 1.0f, 1.0f, 0, 0, 2 * H));
    CHECK(o->swiglu_forward(a->a, a->h, n, H));                                    /* (n, H) */
    CHECK(o->matmul(a->y, a->a, e->w.mesh_w2, n, C, H, 0, 1, 1.0f, 0.0f, 0, 0, 0));  /* (n, C) */
    CHECK(o->matmul(a->y, e->ones, e->w.mesh_b2, n, C, 1, 0, 0, 1.0f, 1.0f, 0, 0, 0));
    for (int b = 0; b < B; b++)                                                     /* (M, C) */
        CHECK(o->matmul(at(a->out, (size_t)b * M * C, es), at(a->pool, (size_t)b * M * Pm, es),
                        at(a->y, (size_t)b * Pm * C, es), M, C, Pm, 0, 0, 1.0f, 0.0f, 0, 0, 0));
    CHECK(o->embedding_forward(e->tmp, a->tok_ids, e->w.mesh_tok, B * M, C));
    CHECK(o->axpy(a->out, 1.0f, e->tmp, (size_t)B * M * C));
    e->have_forward = 1;
    return 0;
}

int encoder_mesh_backward(struct encoders *e, const void *dout, void *dx) {
    if (!e || !e->master || e->cfg.mesh_tokens <= 0) return sushi_error(SUSHI_EINVAL, "encoder_mesh_backward: mesh encoder not enabled");
    if (!dout) return sushi_error(SUSHI_EINVAL, "encoder_mesh_backward: no output gradient");
    const struct ops *o = e->ops;
    struct encoder_mesh_acts *a = &e->mesh;
    size_t es = dtype_size(o->act_dtype);
    int B = e->B, Pm = e->cfg.mesh_points, M = e->cfg.mesh_tokens, H = e->cfg.mesh_hidden;
    int C = e->cfg.d_model, n = B * Pm;
    CHECK(o->embedding_backward(e->g.mesh_tok, a->tok_ids, dout, B * M, C));
    for (int b = 0; b < B; b++)                                      /* dy_b = pool_bᵀ·dout_b */
        CHECK(o->matmul(at(a->dy, (size_t)b * Pm * C, es), at(a->pool, (size_t)b * M * Pm, es),
                        at((void *)dout, (size_t)b * M * C, es), Pm, C, M, 1, 0, 1.0f, 0.0f, 0, 0, 0));
    CHECK(o->matmul(e->g.mesh_w2, a->dy, a->a, C, H, n, 1, 0, 1.0f, 1.0f, 0, 0, 0));
    CHECK(o->matmul(e->g.mesh_b2, a->dy, e->ones, C, 1, n, 1, 0, 1.0f, 1.0f, 0, 0, 0));
    CHECK(o->matmul(a->da, a->dy, e->w.mesh_w2, n, H, C, 0, 0, 1.0f, 0.0f, 0, 0, 0));
    CHECK(o->swiglu_backward(a->dh, a->da, a->h, n, H));      /* d fc1 in dh[:, :H] (stride 2H) */
    CHECK(o->matmul(e->g.mesh_w1, a->dh, a->x, H, 6, n, 1, 0, 1.0f, 1.0f, 2 * H, 0, 0));
    CHECK(o->matmul(e->g.mesh_b1, a->dh, e->ones, H, 1, n, 1, 0, 1.0f, 1.0f, 2 * H, 0, 0));
    if (dx) CHECK(o->matmul(dx, a->dh, e->w.mesh_w1, n, 6, H, 0, 0, 1.0f, 0.0f, 2 * H, 0, 0));
    return 0;
}
