/* DeepSeekMoE and the dense SwiGLU MLP (SPEC §1). Routing follows HF transformers:
 * V3 — sigmoid scores, `noaux_tc`: e_score_correction_bias added for choosing only,
 * group score = sum of the top-2 biased scores, topk_group groups kept, the others'
 * scores set to 0 (not −inf, as HF does) before the top-k; weights are the unbiased
 * scores, optionally renormalised (+1e-20), times routed_scaling_factor.
 * V2 — softmax scores, `greedy` or `group_limited_greedy` (group score = max), weights
 * times routed_scaling_factor; HF's V2 never renormalises. Experts run on the rows
 * routed to them; y = Σ w_e·E_e(x) + shared(x). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/deepseek/deepseek.h"

#define AT(p, off) ((void *)((char *)(p) + (size_t)(off) * es))

/* indices of the k largest of v[0..n) (ties: lower index first), in descending order */
static void moe_top(const float *v, int n, int k, int *idx) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int q = 0; q < j && !taken; q++) taken = idx[q] == i;
            if (!taken && (best < 0 || v[i] > v[best])) best = i;
        }
        idx[j] = best;
    }
}

/* router scores s (E) of one row of logits z: sigmoid (V3) or softmax (V2) */
static void moe_scores(const struct ds_config *c, const float *z, float *s) {
    int E = c->n_routed;
    if (c->scoring == DS_SIGMOID) {
        for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-z[e]));
        return;
    }
    float mx = z[0];
    for (int e = 1; e < E; e++) mx = fmaxf(mx, z[e]);
    double sum = 0;
    for (int e = 0; e < E; e++) sum += exp((double)z[e] - mx);
    for (int e = 0; e < E; e++) s[e] = (float)(exp((double)z[e] - mx) / sum);
}

int ds_route(const struct ds_config *c, const float *bias, const float *logits, int n, int32_t *experts,
             float *weights) {
    if (!c || !logits || !experts || !weights || n < 0 || (c->topk_method == DS_NOAUX_TC && !bias))
        return sushi_error(SUSHI_EINVAL, "ds_route: bad argument");
    int E = c->n_routed, G = c->n_group, per = E / G, K = c->top_k;
    float *s = malloc((size_t)E * sizeof(float)), *choice = malloc((size_t)E * sizeof(float));
    float *gs = malloc((size_t)G * sizeof(float));
    int *gi = malloc((size_t)G * sizeof(int)), *ti = malloc((size_t)(K > 2 ? K : 2) * sizeof(int));
    int rc = (!s || !choice || !gs || !gi || !ti) ? sushi_error(SUSHI_ENOMEM, "ds_route: out of memory") : 0;
    for (int t = 0; !rc && t < n; t++) {
        moe_scores(c, logits + (size_t)t * E, s);
        for (int e = 0; e < E; e++) choice[e] = c->topk_method == DS_NOAUX_TC ? s[e] + bias[e] : s[e];
        if (c->topk_method != DS_GREEDY) {
            for (int g = 0; g < G; g++) {
                if (c->topk_method == DS_NOAUX_TC) {
                    moe_top(choice + g * per, per, 2, ti);
                    gs[g] = choice[g * per + ti[0]] + choice[g * per + ti[1]];
                } else {
                    moe_top(choice + g * per, per, 1, ti);
                    gs[g] = choice[g * per + ti[0]];
                }
            }
            moe_top(gs, G, c->topk_group, gi);
            for (int g = 0; g < G; g++) {
                int keep = 0;
                for (int j = 0; j < c->topk_group; j++) keep |= gi[j] == g;
                if (!keep) memset(choice + g * per, 0, (size_t)per * sizeof(float));
            }
        }
        moe_top(choice, E, K, ti);
        double sum = 0;
        for (int j = 0; j < K; j++) {
            experts[(size_t)t * K + j] = ti[j];
            /* V3 weighs with the unbiased score; HF's V2 with the (group-masked) score */
            float w = c->topk_method == DS_NOAUX_TC ? s[ti[j]] : choice[ti[j]];
            weights[(size_t)t * K + j] = w;
            sum += w;
        }
        for (int j = 0; j < K; j++) {
            float *w = &weights[(size_t)t * K + j];
            if (c->norm_topk) *w = (float)(*w / (sum + 1e-20));
            *w *= c->routed_scale;
        }
    }
    free(s);
    free(choice);
    free(gs);
    free(gi);
    free(ti);
    return rc;
}

/* Hidden activations of the SwiGLU MLPs of one ffn call, allocated once for the most
 * rows·F any of its MLPs sees: h (rows, 2F) = x·guᵀ, a (rows, F) = silu(gate) ⊙ up, and
 * for the backward da (rows, F), dh (rows, 2F). */
struct moe_scratch {
    void *h, *a, *da, *dh;
};

static void moe_scratch_free(const struct ops *ops, struct moe_scratch *s) {
    void *all[] = {s->h, s->a, s->da, s->dh};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) ops->free(all[i]);
    memset(s, 0, sizeof *s);
}

static int moe_scratch_init(const struct ops *ops, struct moe_scratch *s, size_t rows_f, int backward) {
    size_t es = dtype_size(ops->act_dtype);
    memset(s, 0, sizeof *s);
    if (!rows_f) rows_f = 1;
    s->h = ops->alloc(rows_f * 2 * es);
    s->a = ops->alloc(rows_f * es);
    if (backward) {
        s->da = ops->alloc(rows_f * es);
        s->dh = ops->alloc(rows_f * 2 * es);
    }
    if (!s->h || !s->a || (backward && (!s->da || !s->dh))) {
        moe_scratch_free(ops, s);
        return sushi_error(SUSHI_ENOMEM, "moe: out of backend memory for %zu hidden values", rows_f * 6);
    }
    return 0;
}

/* s->h, s->a of the MLP p for x (n, C) */
static int moe_mlp_hidden(const struct ds_model *m, const struct ds_mlp *p, const void *x, int n,
                          const struct moe_scratch *s) {
    const struct ops *ops = m->ops;
    int rc = ops->matmul(s->h, x, p->gu, n, 2 * p->F, m->cfg.C, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->swiglu_forward(s->a, s->h, n, p->F);
    return rc;
}

/* out (n, C) = down(silu(gate(x)) ⊙ up(x)) for x (n, C); leaves x's hidden activations in s */
static int moe_mlp_forward(const struct ds_model *m, const struct ds_mlp *p, const void *x, int n, void *out,
                           const struct moe_scratch *s) {
    int rc = moe_mlp_hidden(m, p, x, n, s);
    if (!rc) rc = m->ops->matmul(out, s->a, p->down, n, m->cfg.C, p->F, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    return rc;
}

/* Backward of one SwiGLU MLP from x's hidden activations in s (moe_mlp_hidden):
 * g->down += dyᵀ·a, g->gu += dhᵀ·x, dx = dh·gu (+ dx when accumulate). */
static int moe_mlp_backward(const struct ds_model *m, const struct ds_mlp *p, struct ds_mlp *g, const void *x, int n,
                            const void *dy, void *dx, int accumulate, const struct moe_scratch *s) {
    const struct ops *ops = m->ops;
    int C = m->cfg.C, F = p->F;
    int rc = ops->matmul(g->down, dy, s->a, C, F, n, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    if (!rc) rc = ops->matmul(s->da, dy, p->down, n, F, C, 0, 0, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->swiglu_backward(s->dh, s->da, s->h, n, F);
    if (!rc) rc = ops->matmul(g->gu, s->dh, x, 2 * F, C, n, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    if (!rc) rc = ops->matmul(dx, s->dh, p->gu, n, C, 2 * F, 0, 0, 1.0f, accumulate ? 1.0f : 0.0f, 0, 0, 0);
    return rc;
}

/* The dense MLP of a layer without experts, forward or (dout != NULL) backward */
static int moe_dense(const struct ds_model *m, const struct ds_layer *y, struct ds_layer *g, const void *x, int n,
                     const void *dout, void *out) {
    struct moe_scratch s;
    int rc = moe_scratch_init(m->ops, &s, (size_t)n * y->dense.F, dout != NULL);
    if (!rc && !dout) rc = moe_mlp_forward(m, &y->dense, x, n, out, &s);
    if (!rc && dout) rc = moe_mlp_hidden(m, &y->dense, x, n, &s);
    if (!rc && dout) rc = moe_mlp_backward(m, &y->dense, &g->dense, x, n, dout, out, 0, &s);
    moe_scratch_free(m->ops, &s);
    return rc;
}

/* router logits (n, E) in f32 on the host */
static int moe_router_logits(const struct ds_model *m, const struct ds_layer *y, const void *x, int n, float *host) {
    const struct ops *ops = m->ops;
    size_t E = (size_t)m->cfg.n_routed;
    void *z = ops->alloc((size_t)n * E * dtype_size(ops->act_dtype));
    float *zf = ops->alloc((size_t)n * E * sizeof(float));
    int rc = (!z || !zf) ? sushi_error(SUSHI_ENOMEM, "moe: out of backend memory") : 0;
    if (!rc) rc = ops->matmul(z, x, y->router, n, (int)E, m->cfg.C, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->act_to_f32(zf, z, (size_t)n * E);
    if (!rc) rc = ops->to_host(host, zf, (size_t)n * E * sizeof(float));
    if (z) ops->free(z);
    if (zf) ops->free(zf);
    return rc;
}

/* The routing of one ffn call as one permutation of its n·K (token, choice) pairs,
 * sorted by expert (counting sort, stable: ascending token within an expert). Expert e
 * owns sorted pairs [off[e], off[e+1]); host arrays, with rows, w (and iota = 0, 1, …,
 * for the backward) copied to the backend in one upload. */
struct moe_perm {
    int nk, max_ne;     /* pairs; most pairs of one expert (≤ n: experts of a token differ) */
    int *off;           /* [E+1] */
    int *slot;          /* [nk] t·K + j of each sorted pair */
    void *host;         /* rows int32 [nk] | w f32 [nk] | iota int32 [nk] */
    int32_t *rows;      /* [nk] token of each pair (view into host) */
    float *w;           /* [nk] routing weight (view into host) */
    void *dev;          /* backend copy of host */
    const int32_t *rows_d, *iota_d;
    const float *w_d;
};

static void moe_perm_free(const struct ops *ops, struct moe_perm *p) {
    free(p->off);
    free(p->slot);
    free(p->host);
    if (p->dev) ops->free(p->dev);
    memset(p, 0, sizeof *p);
}

static int moe_perm_build(const struct ds_model *m, const int32_t *ex, const float *w, int n, int with_iota,
                          struct moe_perm *p) {
    const struct ops *ops = m->ops;
    int E = m->cfg.n_routed, K = m->cfg.top_k, nk = n * K, parts = with_iota ? 3 : 2;
    memset(p, 0, sizeof *p);
    p->nk = nk;
    p->off = calloc((size_t)E + 1, sizeof(int));
    p->slot = malloc((size_t)nk * sizeof(int));
    p->host = malloc((size_t)nk * parts * sizeof(int32_t));
    p->dev = ops->alloc((size_t)nk * parts * sizeof(int32_t));
    if (!p->off || !p->slot || !p->host || !p->dev) {
        moe_perm_free(ops, p);
        return sushi_error(SUSHI_ENOMEM, "moe: out of memory for the routing of %d rows", n);
    }
    p->rows = p->host;
    p->w = (float *)((int32_t *)p->host + nk);
    for (int i = 0; i < nk; i++) {
        if (ex[i] < 0 || ex[i] >= E) {
            moe_perm_free(ops, p);
            return sushi_error(SUSHI_EINVAL, "moe: row %d chose expert %d, outside [0, %d)", i / K, ex[i], E);
        }
        p->off[ex[i] + 1]++;
    }
    for (int e = 0; e < E; e++) {
        if (p->off[e + 1] > p->max_ne) p->max_ne = p->off[e + 1];
        p->off[e + 1] += p->off[e];
    }
    int *next = malloc((size_t)E * sizeof(int));
    if (!next) {
        moe_perm_free(ops, p);
        return sushi_error(SUSHI_ENOMEM, "moe: out of memory for the routing of %d rows", n);
    }
    memcpy(next, p->off, (size_t)E * sizeof(int));
    for (int i = 0; i < nk; i++) {
        int at = next[ex[i]]++;
        p->rows[at] = i / K;
        p->w[at] = w[i];
        p->slot[at] = i;
    }
    free(next);
    if (with_iota)
        for (int i = 0; i < nk; i++) ((int32_t *)p->host)[2 * (size_t)nk + i] = i;
    int rc = ops->to_device(p->dev, p->host, (size_t)nk * parts * sizeof(int32_t));
    if (rc) {
        moe_perm_free(ops, p);
        return rc;
    }
    p->rows_d = p->dev;
    p->w_d = (const float *)((const int32_t *)p->dev + nk);
    p->iota_d = with_iota ? (const int32_t *)p->dev + 2 * (size_t)nk : NULL;
    return 0;
}

/* Router logits z (n, E), experts ex (n, K) and weights w (n, K) on the host, and their
 * permutation */
static int moe_route(const struct ds_model *m, const struct ds_layer *y, const void *x, int n, float *z, int32_t *ex,
                     float *w, int with_iota, struct moe_perm *p) {
    int rc = moe_router_logits(m, y, x, n, z);
    if (!rc) rc = ds_route(&m->cfg, y->router_bias, z, n, ex, w);
    if (!rc) rc = moe_perm_build(m, ex, w, n, with_iota, p);
    return rc;
}

/* rows·F of the largest MLP call of one MoE layer: the shared experts on all n rows or
 * one routed expert on its rows */
static size_t moe_rows_f(const struct ds_model *m, const struct ds_layer *y, int n, int max_ne) {
    size_t most = y->shared.gu ? (size_t)n * y->shared.F : 0;
    for (int e = 0; e < m->cfg.n_routed; e++)
        if ((size_t)max_ne * y->experts[e].F > most) most = (size_t)max_ne * y->experts[e].F;
    return most;
}

int ds_ffn_forward(struct ds_model *m, int l, const void *x, int n, void *out) {
    if (!m || !x || !out || l < 0 || l >= m->cfg.L || n < 1)
        return sushi_error(SUSHI_EINVAL, "ffn_forward: bad argument");
    const struct ds_layer *y = &m->layers[l];
    if (!y->moe) return moe_dense(m, y, NULL, x, n, NULL, out);
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype);
    int C = m->cfg.C, K = m->cfg.top_k;
    struct moe_perm p = {0};
    struct moe_scratch s = {0};
    void *xe = NULL, *ye = NULL;
    float *z = malloc((size_t)n * m->cfg.n_routed * sizeof(float)), *w = malloc((size_t)n * K * sizeof(float));
    int32_t *ex = malloc((size_t)n * K * sizeof(int32_t));
    int rc = (!z || !w || !ex) ? sushi_error(SUSHI_ENOMEM, "ffn_forward: out of memory") : 0;
    if (!rc) rc = moe_route(m, y, x, n, z, ex, w, 0, &p);
    if (!rc) rc = moe_scratch_init(ops, &s, moe_rows_f(m, y, n, p.max_ne), 0);
    if (!rc) {
        xe = ops->alloc((size_t)p.max_ne * C * es);
        ye = ops->alloc((size_t)p.max_ne * C * es);
        if (!xe || !ye) rc = sushi_error(SUSHI_ENOMEM, "ffn_forward: out of backend memory for %d rows", p.max_ne);
    }
    if (!rc && y->shared.gu) rc = moe_mlp_forward(m, &y->shared, x, n, out, &s);
    else if (!rc) rc = ops->fill(out, 0.0f, (size_t)n * C);
    /* out += w · E_e(x rows) per expert, experts and rows ascending */
    for (int e = 0; !rc && e < m->cfg.n_routed; e++) {
        int o = p.off[e], ne = p.off[e + 1] - o;
        if (!ne) continue;
        rc = ops->gather_rows(xe, x, p.rows_d + o, ne, n, C);
        if (!rc) rc = moe_mlp_forward(m, &y->experts[e], xe, ne, ye, &s);
        if (!rc) rc = ops->scatter_add_rows(out, ye, p.rows_d + o, p.w_d + o, ne, n, C);
    }
    free(z);
    free(w);
    free(ex);
    if (xe) ops->free(xe);
    if (ye) ops->free(ye);
    moe_scratch_free(ops, &s);
    moe_perm_free(ops, &p);
    return rc;
}

/* d loss / d router logits (n, E) on the host from d loss / d weights (n, K): through
 * routed_scaling_factor, the optional renormalisation and the sigmoid or softmax. The
 * selection itself (and e_score_correction_bias) has no gradient. */
static void moe_router_backward(const struct ds_config *c, const float *z, const int32_t *ex, const float *dw, int n,
                                float *dz) {
    int E = c->n_routed, K = c->top_k;
    float s[1024];
    for (int t = 0; t < n; t++) {
        moe_scores(c, z + (size_t)t * E, s);
        const int32_t *ix = ex + (size_t)t * K;
        const float *g = dw + (size_t)t * K;
        double ds[64] = {0}, sum = 0, dot = 0;
        for (int j = 0; j < K; j++) {
            sum += s[ix[j]];
            dot += (double)g[j] * s[ix[j]];
        }
        for (int j = 0; j < K; j++)
            ds[j] = c->norm_topk ? c->routed_scale * (g[j] / (sum + 1e-20) - dot / ((sum + 1e-20) * (sum + 1e-20)))
                                 : c->routed_scale * g[j];
        float *d = dz + (size_t)t * E;
        memset(d, 0, (size_t)E * sizeof(float));
        if (c->scoring == DS_SIGMOID) {
            for (int j = 0; j < K; j++) d[ix[j]] += (float)(ds[j] * s[ix[j]] * (1 - s[ix[j]]));
        } else {
            double sd = 0;
            for (int j = 0; j < K; j++) sd += ds[j] * s[ix[j]];
            for (int e = 0; e < E; e++) d[e] = (float)(-s[e] * sd);
            for (int j = 0; j < K; j++) d[ix[j]] += (float)(s[ix[j]] * ds[j]);
        }
    }
}


/* Backward of one MoE layer. Per expert e, with the routed rows gathered once:
 *   dy_e = w ⊙ dout rows (scatter_add_rows onto zeros through iota),
 *   d w  = dout rows · E_e(x rows) (rows_dot, one download for the layer),
 *   expert gradients and dx_e by moe_mlp_backward, dx rows += dx_e (scatter_add_rows).
 * The router's gradient goes through the host (moe_router_backward) as (n, E) logits. */
int ds_ffn_backward(struct ds_model *m, int l, const void *x, int n, const void *dout, struct ds_layer *g, void *dx) {
    if (!m || !x || !dout || !g || !dx || l < 0 || l >= m->cfg.L || n < 1)
        return sushi_error(SUSHI_EINVAL, "ffn_backward: bad argument");
    const struct ds_config *c = &m->cfg;
    const struct ds_layer *y = &m->layers[l];
    const struct ops *ops = m->ops;
    if (!y->moe) return moe_dense(m, y, g, x, n, dout, dx);
    if (c->n_routed > 1024 || c->top_k > 64)
        return sushi_error(SUSHI_EUNSUPPORTED, "ffn_backward: at most 1024 experts, top-64");
    size_t es = dtype_size(ops->act_dtype);
    int C = c->C, K = c->top_k, E = c->n_routed;
    struct moe_perm p = {0};
    struct moe_scratch s = {0};
    float *z = malloc((size_t)n * E * sizeof(float)), *w = malloc((size_t)n * K * sizeof(float));
    float *dw = malloc((size_t)n * K * sizeof(float)), *dz = malloc((size_t)n * E * sizeof(float));
    float *dws = malloc((size_t)n * K * sizeof(float));
    int32_t *ex = malloc((size_t)n * K * sizeof(int32_t));
    void *dza = ops->alloc((size_t)n * E * es);
    float *dzf = ops->alloc((size_t)n * E * sizeof(float)), *dws_d = ops->alloc((size_t)n * K * sizeof(float));
    void *xe = NULL, *ye = NULL, *dye = NULL, *dxe = NULL;
    int rc = (!z || !w || !dw || !dz || !dws || !ex || !dza || !dzf || !dws_d)
                 ? sushi_error(SUSHI_ENOMEM, "ffn_backward: out of memory") : 0;
    if (!rc) rc = moe_route(m, y, x, n, z, ex, w, 1, &p);
    if (!rc) rc = moe_scratch_init(ops, &s, moe_rows_f(m, y, n, p.max_ne), 1);
    if (!rc) {
        size_t bytes = (size_t)p.max_ne * C * es;
        xe = ops->alloc(bytes), ye = ops->alloc(bytes), dye = ops->alloc(bytes), dxe = ops->alloc(bytes);
        if (!xe || !ye || !dye || !dxe)
            rc = sushi_error(SUSHI_ENOMEM, "ffn_backward: out of backend memory for %d rows", p.max_ne);
    }
    if (!rc && y->shared.gu) {
        rc = moe_mlp_hidden(m, &y->shared, x, n, &s);
        if (!rc) rc = moe_mlp_backward(m, &y->shared, &g->shared, x, n, dout, dx, 0, &s);
    } else if (!rc) {
        rc = ops->fill(dx, 0.0f, (size_t)n * C);
    }
    for (int e = 0; !rc && e < E; e++) {
        int o = p.off[e], ne = p.off[e + 1] - o;
        if (!ne) continue;
        const int32_t *rows = p.rows_d + o;
        rc = ops->gather_rows(xe, x, rows, ne, n, C);
        if (!rc) rc = ops->gather_rows(dxe, dout, rows, ne, n, C);   /* dxe: dout rows, until the MLP's dx */
        if (!rc) rc = ops->fill(dye, 0.0f, (size_t)ne * C);
        if (!rc) rc = ops->scatter_add_rows(dye, dxe, p.iota_d, p.w_d + o, ne, ne, C);
        if (!rc) rc = moe_mlp_forward(m, &y->experts[e], xe, ne, ye, &s);
        if (!rc) rc = ops->rows_dot(dws_d + o, dout, rows, ye, ne, n, C);
        if (!rc) rc = moe_mlp_backward(m, &y->experts[e], &g->experts[e], xe, ne, dye, dxe, 0, &s);
        if (!rc) rc = ops->scatter_add_rows(dx, dxe, rows, NULL, ne, n, C);
    }
    if (!rc) rc = ops->to_host(dws, dws_d, (size_t)p.nk * sizeof(float));
    if (!rc) {
        for (int i = 0; i < p.nk; i++) dw[p.slot[i]] = dws[i];
        moe_router_backward(c, z, ex, dw, n, dz);
        rc = ops->to_device(dzf, dz, (size_t)n * E * sizeof(float));
    }
    if (!rc) rc = ops->f32_to_act(dza, dzf, (size_t)n * E);
    if (!rc) rc = ops->matmul(g->router, dza, x, E, C, n, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    if (!rc) rc = ops->matmul(dx, dza, y->router, n, C, E, 0, 0, 1.0f, 1.0f, 0, 0, 0);
    free(z); free(w); free(dw); free(dz); free(dws); free(ex);
    void *all[] = {xe, ye, dye, dxe, dza, dzf, dws_d};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) ops->free(all[i]);
    moe_scratch_free(ops, &s);
    moe_perm_free(ops, &p);
    return rc;
}
