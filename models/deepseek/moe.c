/* DeepSeekMoE and the dense SwiGLU MLP (SPEC §1). Routing follows HF transformers:
 * V3 — sigmoid scores, `noaux_tc`: e_score_correction_bias added for choosing only,
 * group score = sum of the top-2 biased scores, topk_group groups kept, the others'
 * scores set to 0 (not −inf, as HF does) before the top-k; weights are the unbiased
 * scores, optionally renormalised (+1e-20), times routed_scaling_factor.
 * V2 — softmax scores, `greedy` or `group_limited_greedy` (group score = max), weights
 * times routed_scaling_factor; HF's V2 never renormalises. y = Σ w_e·E_e(x) + shared(x).
 * Routing is computed on the host; the routed (row, choice) pairs become one permutation
 * sorted by expert, uploaded once per layer call. All experts run together, a constant
 * number of ops per layer whatever the number of experts: one gather_rows of the sorted
 * rows, grouped matmuls (one problem per expert) around one swiglu over all rows, and one
 * gather_sum_rows that adds each row's expert outputs, experts ascending (so the sums'
 * order is fixed, and the same as one expert after the other). */
#include <math.h>
#include <stddef.h>
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


/* Buffers of one ffn call, host and backend, each side carved from one allocation (so
 * a layer call allocates twice, whatever the number of experts). Widths: n rows, E
 * experts, K choices per row, nk = n·K (row, choice) pairs, F the experts' MLP width;
 * the hidden buffers hold the widest of the MLPs run (the dense or shared one on n rows,
 * the experts on nk rows). */
struct moe_call {
    int nk;                  /* (row, choice) pairs */
    void *host, *dev;        /* the two allocations */
    /* host */
    float *z, *dz;           /* (n, E) router logits f32, their gradient (backward) */
    float *w, *dw;           /* (n, K) routing weights, d loss / d weights (backward) */
    int32_t *ex;             /* (n, K) chosen experts */
    int *off;                /* [E+1] expert e owns sorted pairs [off[e], off[e+1]) */
    int *next;               /* [E] counting sort cursors */
    int *slot;               /* [nk] t·K + j of each sorted pair */
    int *fill;               /* [n] per-row cursors */
    float *dws;              /* [nk] d loss / d weight of each sorted pair (backward) */
    struct matmul_problem *prob; /* [E] one grouped matmul's problems */
    int32_t *perm;           /* [nk] row | [nk] f32 weight of the sorted pairs |
                              * (n, K) sorted position | (n, K) f32 weight, each row's pairs by ascending expert */
    /* backend */
    void *h, *a, *dh;        /* (rows, 2F), (rows, F) act hidden activations (a then da in backward); dh */
    void *xe, *ye, *dye;     /* (nk, C) act sorted rows (the forward's expert outputs overwrite them);
                              * backward: expert outputs then dx rows, dy rows */
    void *za;                /* (n, E) act router logits, then their gradient */
    float *zf;               /* (n, E) f32 the same */
    float *dws_d;            /* [nk] f32 (backward) */
    int32_t *perm_d;         /* backend copy of perm */
    const int32_t *rows_d, *idx_d;
    const float *w_d, *ws_d;
};

/* one allocation holding `count` parts of the given sizes (256-byte aligned); part i at
 * parts[i] (NULL when it has 0 bytes). NULL when out of memory. */
static void *moe_carve(const size_t *bytes, int count, void *(*alloc)(size_t), void **parts) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += (bytes[i] + 255) & ~(size_t)255;
    char *base = alloc(total ? total : 1);
    for (size_t i = 0, at = 0; base && i < (size_t)count; at += (bytes[i] + 255) & ~(size_t)255, i++)
        parts[i] = bytes[i] ? base + at : NULL;
    return base;
}

static void moe_call_free(const struct ops *ops, struct moe_call *c) {
    free(c->host);
    if (c->dev) ops->free(c->dev);
    memset(c, 0, sizeof *c);
}

/* rows × F of the widest hidden activation of a layer call on n rows: the dense MLP, or
 * the shared experts on n rows and the routed ones on n·K */
static size_t moe_hidden(const struct ds_model *m, const struct ds_layer *y, size_t n) {
    if (!y->moe) return n * (size_t)y->dense.F;
    size_t shared = y->shared.gu ? n * (size_t)y->shared.F : 0, routed = n * m->cfg.top_k * (size_t)m->cfg.F_moe;
    return shared > routed ? shared : routed;
}

static int moe_call_init(const struct ds_model *m, const struct ds_layer *y, int n, int backward,
                         struct moe_call *c) {
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype), N = (size_t)n, C = (size_t)m->cfg.C, hid = moe_hidden(m, y, N);
    size_t E = y->moe ? (size_t)m->cfg.n_routed : 0, nk = y->moe ? N * m->cfg.top_k : 0, b = backward ? 1 : 0;
    size_t nc = nk * C * es, i4 = sizeof(int32_t);
    memset(c, 0, sizeof *c);
    c->nk = (int)nk;
    /* host: z dz w dw ex off next slot fill dws prob perm */
    const size_t hb[] = {N * E * 4, b * N * E * 4, nk * 4, b * nk * 4, nk * i4, y->moe ? (E + 1) * sizeof(int) : 0,
                         E * sizeof(int), nk * sizeof(int), y->moe ? N * sizeof(int) : 0, b * nk * 4,
                         E * sizeof(struct matmul_problem), 4 * nk * i4};
    /* backend: h a dh xe ye dye za zf dws_d perm_d */
    const size_t db[] = {2 * hid * es, hid * es, b * 2 * hid * es, nc, b * nc, b * nc, N * E * es, N * E * 4, b * nk * 4,
                         4 * nk * i4};
    void *hp[sizeof hb / sizeof hb[0]], *dp[sizeof db / sizeof db[0]];
    c->host = moe_carve(hb, (int)(sizeof hb / sizeof hb[0]), malloc, hp);
    c->dev = moe_carve(db, (int)(sizeof db / sizeof db[0]), ops->alloc, dp);
    if (!c->host || !c->dev) {
        moe_call_free(ops, c);
        return sushi_error(SUSHI_ENOMEM, "moe: out of memory for the buffers of a layer call on %d rows", n);
    }
    c->z = hp[0], c->dz = hp[1], c->w = hp[2], c->dw = hp[3], c->ex = hp[4], c->off = hp[5], c->next = hp[6];
    c->slot = hp[7], c->fill = hp[8], c->dws = hp[9], c->prob = hp[10], c->perm = hp[11];
    c->h = dp[0], c->a = dp[1], c->dh = dp[2], c->xe = dp[3], c->ye = dp[4], c->dye = dp[5];
    c->za = dp[6], c->zf = dp[7], c->dws_d = dp[8], c->perm_d = dp[9];
    return 0;
}

/* c->h, c->a of the MLP p for x (n, C) */
static int moe_mlp_hidden(const struct ds_model *m, const struct ds_mlp *p, const void *x, int n,
                          const struct moe_call *c) {
    const struct ops *ops = m->ops;
    int rc = ops->matmul(c->h, x, p->gu, n, 2 * p->F, m->cfg.C, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->swiglu_forward(c->a, c->h, n, p->F);
    return rc;
}

/* Backward of one SwiGLU MLP from x's hidden activations in c (moe_mlp_hidden):
 * g->down += dyᵀ·a, g->gu += dhᵀ·x, dx = dh·gu (+ dx when accumulate); da overwrites a. */
static int moe_mlp_backward(const struct ds_model *m, const struct ds_mlp *p, struct ds_mlp *g, const void *x, int n,
                            const void *dy, void *dx, int accumulate, const struct moe_call *c) {
    const struct ops *ops = m->ops;
    int C = m->cfg.C, F = p->F;
    int rc = ops->matmul(g->down, dy, c->a, C, F, n, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    if (!rc) rc = ops->matmul(c->a, dy, p->down, n, F, C, 0, 0, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->swiglu_backward(c->dh, c->a, c->h, n, F);
    if (!rc) rc = ops->matmul(g->gu, c->dh, x, 2 * F, C, n, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    if (!rc) rc = ops->matmul(dx, c->dh, p->gu, n, C, 2 * F, 0, 0, 1.0f, accumulate ? 1.0f : 0.0f, 0, 0, 0);
    return rc;
}

/* The dense MLP of a layer without experts: out = MLP(x), or (dout != NULL) its
 * backward with out = dx */
static int moe_dense(const struct ds_model *m, const struct ds_layer *y, struct ds_layer *g, const void *x, int n,
                     const void *dout, void *out) {
    struct moe_call c;
    int rc = moe_call_init(m, y, n, dout != NULL, &c);
    if (!rc) rc = moe_mlp_hidden(m, &y->dense, x, n, &c);
    if (!rc && !dout) rc = m->ops->matmul(out, c.a, y->dense.down, n, m->cfg.C, y->dense.F, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    if (!rc && dout) rc = moe_mlp_backward(m, &y->dense, &g->dense, x, n, dout, out, 0, &c);
    moe_call_free(m->ops, &c);
    return rc;
}

/* The routing as one permutation of the nk (row, choice) pairs, sorted by expert
 * (counting sort, stable: ascending row within an expert): offsets and slots on the
 * host; rows and weights in sorted order, and each row's sorted positions and weights
 * by ascending expert (the order positions ascend in), copied to the backend in one upload. */
static int moe_perm_build(const struct ds_model *m, int n, struct moe_call *c) {
    int E = m->cfg.n_routed, K = m->cfg.top_k, nk = c->nk;
    int32_t *rows = c->perm, *idx = c->perm + 2 * (size_t)nk;
    float *w = (float *)(c->perm + nk), *ws = (float *)(c->perm + 3 * (size_t)nk);
    memset(c->off, 0, (size_t)(E + 1) * sizeof(int));
    for (int i = 0; i < nk; i++) {
        if (c->ex[i] < 0 || c->ex[i] >= E)
            return sushi_error(SUSHI_EINVAL, "moe: row %d chose expert %d, outside [0, %d)", i / K, c->ex[i], E);
        c->off[c->ex[i] + 1]++;
    }
    for (int e = 0; e < E; e++) c->off[e + 1] += c->off[e];
    memcpy(c->next, c->off, (size_t)E * sizeof(int));
    for (int i = 0; i < nk; i++) {
        int at = c->next[c->ex[i]]++;
        rows[at] = i / K;
        w[at] = c->w[i];
        c->slot[at] = i;
    }
    memset(c->fill, 0, (size_t)n * sizeof(int));
    for (int at = 0; at < nk; at++) {
        int t = rows[at], j = c->fill[t]++;
        if (j >= K) return sushi_error(SUSHI_EINVAL, "moe: row %d chose more than %d experts", t, K);
        idx[(size_t)t * K + j] = at;
        ws[(size_t)t * K + j] = w[at];
    }
    int rc = m->ops->to_device(c->perm_d, c->perm, 4 * (size_t)nk * sizeof(int32_t));
    c->rows_d = c->perm_d;
    c->w_d = (const float *)(c->perm_d + nk);
    c->idx_d = c->perm_d + 2 * (size_t)nk;
    c->ws_d = (const float *)(c->perm_d + 3 * (size_t)nk);
    return rc;
}

/* router logits z (n, E) f32 on the host, chosen experts and weights (n, K), and their
 * permutation */
static int moe_route(const struct ds_model *m, const struct ds_layer *y, const void *x, int n, struct moe_call *c) {
    const struct ops *ops = m->ops;
    size_t E = (size_t)m->cfg.n_routed;
    for (size_t e = 0; e < E; e++)
        if (y->experts[e].F != m->cfg.F_moe)
            return sushi_error(SUSHI_EINVAL, "moe: expert %zu has width %d, not moe_intermediate_size %d", e,
                               y->experts[e].F, m->cfg.F_moe);
    int rc = ops->matmul(c->za, x, y->router, n, (int)E, m->cfg.C, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->act_to_f32(c->zf, c->za, (size_t)n * E);
    if (!rc) rc = ops->to_host(c->z, c->zf, (size_t)n * E * sizeof(float));
    if (!rc) rc = ds_route(&m->cfg, y->router_bias, c->z, n, c->ex, c->w);
    if (!rc) rc = moe_perm_build(m, n, c);
    return rc;
}

/* One grouped matmul over the experts, C = op(A)·op(B) + beta·C per expert e. An operand
 * with a width is rows [off[e], off[e+1]) of a sorted (nk, width) act buffer; one
 * without is the weight at byte offset `field` of mlp[e] (gu or down). A dimension
 * MOE_NE is the expert's row count. */
#define MOE_NE (-1)
struct moe_gemm {
    void *c;
    const void *a, *b;
    int cw, aw, bw;
    const struct ds_mlp *mlp;
    size_t field;
    int m, n, k, ta, tb;
    float beta;
};

static void *moe_operand(const struct moe_call *c, const struct moe_gemm *g, const void *buf, int width, int e,
                         size_t es) {
    if (width) return AT(buf, (size_t)c->off[e] * width);
    return *(void *const *)((const char *)&g->mlp[e] + g->field);
}

static int moe_grouped(const struct ds_model *m, const struct moe_call *c, const struct moe_gemm *g) {
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype);
    for (int e = 0; e < m->cfg.n_routed; e++) {
        int ne = c->off[e + 1] - c->off[e];
        c->prob[e] = (struct matmul_problem){
            moe_operand(c, g, g->c, g->cw, e, es), moe_operand(c, g, g->a, g->aw, e, es),
            moe_operand(c, g, g->b, g->bw, e, es), g->m == MOE_NE ? ne : g->m, g->n == MOE_NE ? ne : g->n,
            g->k == MOE_NE ? ne : g->k};
    }
    return ops->matmul_grouped(c->prob, m->cfg.n_routed, g->ta, g->tb, 1.0f, g->beta);
}

/* every routed row through its expert: xe = x rows (sorted), h = xe·guᵀ, a = swiglu(h),
 * ye = a·downᵀ (ye may be xe, which is dead by then) */
static int moe_experts_forward(const struct ds_model *m, const struct ds_layer *y, const void *x, int n, void *ye,
                               const struct moe_call *c) {
    int C = m->cfg.C, F = m->cfg.F_moe;
    size_t gu = offsetof(struct ds_mlp, gu), down = offsetof(struct ds_mlp, down);
    int rc = m->ops->gather_rows(c->xe, x, c->rows_d, c->nk, n, C);
    if (!rc)
        rc = moe_grouped(m, c, &(struct moe_gemm){.c = c->h, .cw = 2 * F, .a = c->xe, .aw = C, .mlp = y->experts,
                                                  .field = gu, .m = MOE_NE, .n = 2 * F, .k = C, .tb = 1});
    if (!rc) rc = m->ops->swiglu_forward(c->a, c->h, c->nk, F);
    if (!rc)
        rc = moe_grouped(m, c, &(struct moe_gemm){.c = ye, .cw = C, .a = c->a, .aw = F, .mlp = y->experts,
                                                  .field = down, .m = MOE_NE, .n = C, .k = F, .tb = 1});
    return rc;
}

int ds_ffn_forward(struct ds_model *m, int l, const void *x, int n, void *out) {
    if (!m || !x || !out || l < 0 || l >= m->cfg.L || n < 1)
        return sushi_error(SUSHI_EINVAL, "ffn_forward: bad argument");
    const struct ds_layer *y = &m->layers[l];
    if (!y->moe) return moe_dense(m, y, NULL, x, n, NULL, out);
    const struct ops *ops = m->ops;
    int C = m->cfg.C;
    struct moe_call c;
    int rc = moe_call_init(m, y, n, 0, &c);
    if (!rc) rc = moe_route(m, y, x, n, &c);
    if (!rc && y->shared.gu) {
        rc = moe_mlp_hidden(m, &y->shared, x, n, &c);
        if (!rc) rc = ops->matmul(out, c.a, y->shared.down, n, C, y->shared.F, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    } else if (!rc) {
        rc = ops->fill(out, 0.0f, (size_t)n * C);
    }
    if (!rc) rc = moe_experts_forward(m, y, x, n, c.xe, &c);
    /* out += Σ_j w·E(x) over each row's experts, ascending */
    if (!rc) rc = ops->gather_sum_rows(out, c.xe, c.idx_d, c.ws_d, n, m->cfg.top_k, c.nk, C);
    moe_call_free(ops, &c);
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

/* Backward of one MoE layer, all experts together on the sorted rows:
 *   dy = w ⊙ dout rows (gather_sum_rows with one weighted term per row onto zeros),
 *   the expert forward again (moe_experts_forward), d w = dout rows · E(x rows) (rows_dot;
 *   one download for the layer), down += dyᵀ·a, da = dy·down, dh = swiglu', gu += dhᵀ·xe,
 *   dx rows = dh·gu (grouped matmuls), dx += Σ of each row's dx rows (gather_sum_rows).
 * The router's gradient goes through the host (moe_router_backward): only the (n, E)
 * logits and their gradient and the (n, K) d weights cross. */
int ds_ffn_backward(struct ds_model *m, int l, const void *x, int n, const void *dout, struct ds_layer *g, void *dx) {
    if (!m || !x || !dout || !g || !dx || l < 0 || l >= m->cfg.L || n < 1)
        return sushi_error(SUSHI_EINVAL, "ffn_backward: bad argument");
    const struct ds_config *cf = &m->cfg;
    const struct ds_layer *y = &m->layers[l];
    const struct ops *ops = m->ops;
    if (!y->moe) return moe_dense(m, y, g, x, n, dout, dx);
    if (cf->n_routed > 1024 || cf->top_k > 64)
        return sushi_error(SUSHI_EUNSUPPORTED, "ffn_backward: at most 1024 experts, top-64");
    int C = cf->C, E = cf->n_routed, F = cf->F_moe;
    size_t gu = offsetof(struct ds_mlp, gu), down = offsetof(struct ds_mlp, down);
    struct moe_call c;
    int rc = moe_call_init(m, y, n, 1, &c);
    if (!rc) rc = moe_route(m, y, x, n, &c);
    if (!rc && y->shared.gu) {
        rc = moe_mlp_hidden(m, &y->shared, x, n, &c);
        if (!rc) rc = moe_mlp_backward(m, &y->shared, &g->shared, x, n, dout, dx, 0, &c);
    } else if (!rc) {
        rc = ops->fill(dx, 0.0f, (size_t)n * C);
    }
    if (!rc) rc = ops->fill(c.dye, 0.0f, (size_t)c.nk * C);
    if (!rc) rc = ops->gather_sum_rows(c.dye, dout, c.rows_d, c.w_d, c.nk, 1, n, C);
    if (!rc) rc = moe_experts_forward(m, y, x, n, c.ye, &c);
    if (!rc) rc = ops->rows_dot(c.dws_d, dout, c.rows_d, c.ye, c.nk, n, C);
    if (!rc)
        rc = moe_grouped(m, &c, &(struct moe_gemm){.mlp = g->experts, .field = down, .a = c.dye, .aw = C, .b = c.a,
                                                   .bw = F, .m = C, .n = F, .k = MOE_NE, .ta = 1, .beta = 1.0f});
    if (!rc) /* da into a */
        rc = moe_grouped(m, &c, &(struct moe_gemm){.c = c.a, .cw = F, .a = c.dye, .aw = C, .mlp = y->experts,
                                                   .field = down, .m = MOE_NE, .n = F, .k = C});
    if (!rc) rc = ops->swiglu_backward(c.dh, c.a, c.h, c.nk, F);
    if (!rc)
        rc = moe_grouped(m, &c, &(struct moe_gemm){.mlp = g->experts, .field = gu, .a = c.dh, .aw = 2 * F, .b = c.xe,
                                                   .bw = C, .m = 2 * F, .n = C, .k = MOE_NE, .ta = 1, .beta = 1.0f});
    if (!rc) /* dx rows into ye */
        rc = moe_grouped(m, &c, &(struct moe_gemm){.c = c.ye, .cw = C, .a = c.dh, .aw = 2 * F, .mlp = y->experts,
                                                   .field = gu, .m = MOE_NE, .n = C, .k = 2 * F});
    if (!rc) rc = ops->gather_sum_rows(dx, c.ye, c.idx_d, NULL, n, cf->top_k, c.nk, C);
    if (!rc) rc = ops->to_host(c.dws, c.dws_d, (size_t)c.nk * sizeof(float));
    if (!rc) {
        for (int i = 0; i < c.nk; i++) c.dw[c.slot[i]] = c.dws[i];
        moe_router_backward(cf, c.z, c.ex, c.dw, n, c.dz);
        rc = ops->to_device(c.zf, c.dz, (size_t)n * E * sizeof(float));
    }
    if (!rc) rc = ops->f32_to_act(c.za, c.zf, (size_t)n * E);
    if (!rc) rc = ops->matmul(g->router, c.za, x, E, C, n, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    if (!rc) rc = ops->matmul(dx, c.za, y->router, n, C, E, 0, 0, 1.0f, 1.0f, 0, 0, 0);
    moe_call_free(ops, &c);
    return rc;
}
