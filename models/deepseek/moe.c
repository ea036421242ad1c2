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

/* out (n, C) = down(silu(gate(x)) ⊙ up(x)) for x (n, C) */
static int moe_mlp_forward(const struct ds_model *m, const struct ds_mlp *p, const void *x, int n, void *out) {
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype);
    int C = m->cfg.C, F = p->F;
    void *h = ops->alloc((size_t)n * 2 * F * es), *a = ops->alloc((size_t)n * F * es);
    int rc = (!h || !a) ? sushi_error(SUSHI_ENOMEM, "moe: out of backend memory") : 0;
    if (!rc) rc = ops->matmul(h, x, p->gu, n, 2 * F, C, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->swiglu_forward(a, h, n, F);
    if (!rc) rc = ops->matmul(out, a, p->down, n, C, F, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    if (h) ops->free(h);
    if (a) ops->free(a);
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

/* out += Σ over rows routed to each expert of w · E_e(x row) */
static int moe_experts_forward(const struct ds_model *m, const struct ds_layer *y, const void *x, int n,
                               const int32_t *experts, const float *weights, void *out) {
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype);
    int C = m->cfg.C, K = m->cfg.top_k;
    int *rows = malloc((size_t)n * K * sizeof(int));
    float *ws = malloc((size_t)n * K * sizeof(float));
    void *xe = ops->alloc((size_t)n * K * C * es), *ye = ops->alloc((size_t)n * K * C * es);
    int rc = (!rows || !ws || !xe || !ye) ? sushi_error(SUSHI_ENOMEM, "moe: out of memory") : 0;
    for (int e = 0; !rc && e < m->cfg.n_routed; e++) {
        int ne = 0;
        for (int t = 0; t < n; t++)
            for (int j = 0; j < K; j++)
                if (experts[(size_t)t * K + j] == e) {
                    rows[ne] = t;
                    ws[ne++] = weights[(size_t)t * K + j];
                }
        if (!ne) continue;
        for (int r = 0; !rc && r < ne; r++) rc = ops->copy(AT(xe, (size_t)r * C), AT(x, (size_t)rows[r] * C), C * es);
        if (!rc) rc = moe_mlp_forward(m, &y->experts[e], xe, ne, ye);
        for (int r = 0; !rc && r < ne; r++)
            rc = ops->axpy(AT(out, (size_t)rows[r] * C), ws[r], AT(ye, (size_t)r * C), (size_t)C);
    }
    free(rows);
    free(ws);
    if (xe) ops->free(xe);
    if (ye) ops->free(ye);
    return rc;
}

int ds_ffn_forward(struct ds_model *m, int l, const void *x, int n, void *out) {
    if (!m || !x || !out || l < 0 || l >= m->cfg.L || n < 1)
        return sushi_error(SUSHI_EINVAL, "ffn_forward: bad argument");
    const struct ds_layer *y = &m->layers[l];
    if (!y->moe) return moe_mlp_forward(m, &y->dense, x, n, out);
    int K = m->cfg.top_k;
    float *z = malloc((size_t)n * m->cfg.n_routed * sizeof(float)), *w = malloc((size_t)n * K * sizeof(float));
    int32_t *ex = malloc((size_t)n * K * sizeof(int32_t));
    int rc = (!z || !w || !ex) ? sushi_error(SUSHI_ENOMEM, "moe: out of memory") : 0;
    if (!rc) rc = moe_router_logits(m, y, x, n, z);
    if (!rc) rc = ds_route(&m->cfg, y->router_bias, z, n, ex, w);
    if (!rc && y->shared.gu) rc = moe_mlp_forward(m, &y->shared, x, n, out);
    else if (!rc) rc = m->ops->fill(out, 0.0f, (size_t)n * m->cfg.C);
    if (!rc) rc = moe_experts_forward(m, y, x, n, ex, w, out);
    free(z);
    free(w);
    free(ex);
    return rc;
}

/* Backward of one SwiGLU MLP, recomputing its hidden activations:
 * g->down += dyᵀ·a, g->gu += dhᵀ·x, dx = dh·gu (+ dx when accumulate). */
static int moe_mlp_backward(const struct ds_model *m, const struct ds_mlp *p, struct ds_mlp *g, const void *x, int n,
                            const void *dy, void *dx, int accumulate) {
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype);
    int C = m->cfg.C, F = p->F;
    void *h = ops->alloc((size_t)n * 2 * F * es), *a = ops->alloc((size_t)n * F * es);
    void *da = ops->alloc((size_t)n * F * es), *dh = ops->alloc((size_t)n * 2 * F * es);
    int rc = (!h || !a || !da || !dh) ? sushi_error(SUSHI_ENOMEM, "moe backward: out of backend memory") : 0;
    if (!rc) rc = ops->matmul(h, x, p->gu, n, 2 * F, C, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->swiglu_forward(a, h, n, F);
    if (!rc) rc = ops->matmul(g->down, dy, a, C, F, n, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    if (!rc) rc = ops->matmul(da, dy, p->down, n, F, C, 0, 0, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->swiglu_backward(dh, da, h, n, F);
    if (!rc) rc = ops->matmul(g->gu, dh, x, 2 * F, C, n, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    if (!rc) rc = ops->matmul(dx, dh, p->gu, n, C, 2 * F, 0, 0, 1.0f, accumulate ? 1.0f : 0.0f, 0, 0, 0);
    void *all[] = {h, a, da, dh};
    for (size_t i = 0; i < 4; i++)
        if (all[i]) ops->free(all[i]);
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

int ds_ffn_backward(struct ds_model *m, int l, const void *x, int n, const void *dout, struct ds_layer *g, void *dx) {
    if (!m || !x || !dout || !g || !dx || l < 0 || l >= m->cfg.L || n < 1)
        return sushi_error(SUSHI_EINVAL, "ffn_backward: bad argument");
    const struct ds_config *c = &m->cfg;
    const struct ds_layer *y = &m->layers[l];
    const struct ops *ops = m->ops;
    if (!y->moe) return moe_mlp_backward(m, &y->dense, &g->dense, x, n, dout, dx, 0);
    if (c->n_routed > 1024 || c->top_k > 64)
        return sushi_error(SUSHI_EUNSUPPORTED, "ffn_backward: at most 1024 experts, top-64");
    size_t es = dtype_size(ops->act_dtype);
    int C = c->C, K = c->top_k, E = c->n_routed;
    float *z = malloc((size_t)n * E * sizeof(float)), *w = malloc((size_t)n * K * sizeof(float));
    float *dw = calloc((size_t)n * K, sizeof(float)), *dz = malloc((size_t)n * E * sizeof(float));
    float *dout_h = malloc((size_t)n * C * sizeof(float)), *ye_h = malloc((size_t)n * K * C * sizeof(float));
    int32_t *ex = malloc((size_t)n * K * sizeof(int32_t));
    int *rows = malloc((size_t)n * K * sizeof(int)), *slot = malloc((size_t)n * K * sizeof(int));
    void *xe = ops->alloc((size_t)n * K * C * es), *ye = ops->alloc((size_t)n * K * C * es);
    void *dye = ops->alloc((size_t)n * K * C * es), *dxe = ops->alloc((size_t)n * K * C * es);
    void *dza = ops->alloc((size_t)n * E * es), *tmpf = ops->alloc((size_t)n * (E > C ? E : C) * K * sizeof(float));
    int rc = (!z || !w || !dw || !dz || !dout_h || !ye_h || !ex || !rows || !slot || !xe || !ye || !dye || !dxe || !dza || !tmpf)
                 ? sushi_error(SUSHI_ENOMEM, "ffn_backward: out of memory") : 0;
    if (!rc) rc = moe_router_logits(m, y, x, n, z);
    if (!rc) rc = ds_route(c, y->router_bias, z, n, ex, w);
    if (!rc && y->shared.gu) rc = moe_mlp_backward(m, &y->shared, &g->shared, x, n, dout, dx, 0);
    else if (!rc) rc = ops->fill(dx, 0.0f, (size_t)n * C);
    if (!rc) rc = ops->act_to_f32(tmpf, dout, (size_t)n * C);
    if (!rc) rc = ops->to_host(dout_h, tmpf, (size_t)n * C * sizeof(float));
    for (int e = 0; !rc && e < E; e++) {
        int ne = 0;
        for (int t = 0; t < n; t++)
            for (int j = 0; j < K; j++)
                if (ex[(size_t)t * K + j] == e) {
                    rows[ne] = t;
                    slot[ne++] = t * K + j;
                }
        if (!ne) continue;
        rc = ops->fill(dye, 0.0f, (size_t)ne * C);
        for (int r = 0; !rc && r < ne; r++) {
            rc = ops->copy(AT(xe, (size_t)r * C), AT(x, (size_t)rows[r] * C), C * es);
            if (!rc) rc = ops->axpy(AT(dye, (size_t)r * C), w[slot[r]], AT(dout, (size_t)rows[r] * C), (size_t)C);
        }
        /* d loss / d w = dout · E_e(x) */
        if (!rc) rc = moe_mlp_forward(m, &y->experts[e], xe, ne, ye);
        if (!rc) rc = ops->act_to_f32(tmpf, ye, (size_t)ne * C);
        if (!rc) rc = ops->to_host(ye_h, tmpf, (size_t)ne * C * sizeof(float));
        for (int r = 0; !rc && r < ne; r++) {
            double d = 0;
            for (int k = 0; k < C; k++) d += (double)dout_h[(size_t)rows[r] * C + k] * ye_h[(size_t)r * C + k];
            dw[slot[r]] = (float)d;
        }
        if (!rc) rc = moe_mlp_backward(m, &y->experts[e], &g->experts[e], xe, ne, dye, dxe, 0);
        for (int r = 0; !rc && r < ne; r++) rc = ops->axpy(AT(dx, (size_t)rows[r] * C), 1.0f, AT(dxe, (size_t)r * C), (size_t)C);
    }
    if (!rc) {
        moe_router_backward(c, z, ex, dw, n, dz);
        rc = ops->to_device(tmpf, dz, (size_t)n * E * sizeof(float));
    }
    if (!rc) rc = ops->f32_to_act(dza, tmpf, (size_t)n * E);
    if (!rc) rc = ops->matmul(g->router, dza, x, E, C, n, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    if (!rc) rc = ops->matmul(dx, dza, y->router, n, C, E, 0, 0, 1.0f, 1.0f, 0, 0, 0);
    free(z); free(w); free(dw); free(dz); free(dout_h); free(ye_h); free(ex); free(rows); free(slot);
    void *all[] = {xe, ye, dye, dxe, dza, tmpf};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) ops->free(all[i]);
    return rc;
}
