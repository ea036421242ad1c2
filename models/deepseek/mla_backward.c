/* Backward of multi-head latent attention for one sequence from position 0, so a
 * DeepSeek-style model can be trained: the forward is recomputed from x (mla_attend),
 * then, in reverse, o_proj, attention, RoPE on q_pe and on the shared k_pe (its
 * gradient summed over the heads), kv_b per head, kv_a_layernorm, kv_a, and the query
 * path (q_b, q_a_layernorm, q_a, or q_proj). Also the gradient buffers of a layer. */
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/deepseek/deepseek.h"
#include "models/deepseek/mla_internal.h"

#define AT(p, off) ((void *)((char *)(p) + (size_t)(off) * es))

/* C (m, n) += Aᵀ·B for A (k, m) rows lda apart, B (k, n) */
static int mlab_grad(const struct ops *ops, void *gw, const void *a, const void *b, int m, int n, int k, int lda) {
    return ops->matmul(gw, a, b, m, n, k, 1, 0, 1.0f, 1.0f, lda, 0, 0);
}

/* y (n, in) (+)= dy (n, out) · W (out, in), dy rows ldd apart */
static int mlab_dx(const struct ops *ops, void *y, const void *dy, const void *w, int n, int out, int in, int ldd,
                   float beta) {
    return ops->matmul(y, dy, w, n, in, out, 0, 0, 1.0f, beta, ldd, 0, 0);
}

int ds_mla_backward(struct ds_model *m, int l, const void *x, int n, const void *dout, struct ds_layer *g, void *dx) {
    if (!m || !x || !dout || !g || !dx || l < 0 || l >= m->cfg.L || n < 1 || n > m->max_seq)
        return sushi_error(SUSHI_EINVAL, "mla_backward: bad argument");
    const struct ds_config *c = &m->cfg;
    const struct ds_layer *y = &m->layers[l];
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype);
    int H = c->H, dqk = c->nope + c->rope, dv = c->dv, kvl = c->kv_lora, R = c->rope, ql = c->q_lora;
    /* a one-layer cache for the recomputed forward */
    struct ds_cache kc = {.len = 0, .cap = n};
    void **cslots = calloc((size_t)c->L, sizeof(void *)), **kslots = calloc((size_t)c->L, sizeof(void *));
    if (!cslots || !kslots) {
        free(cslots);
        free(kslots);
        return sushi_error(SUSHI_ENOMEM, "mla_backward: out of memory");
    }
    kc.c = cslots;
    kc.kpe = kslots;
    cslots[l] = ops->alloc((size_t)n * kvl * es);
    kslots[l] = ops->alloc((size_t)n * R * es);
    size_t nq = (size_t)n * H * dqk;
    void *datt = ops->alloc((size_t)n * H * dv * es), *dq = ops->alloc(nq * es), *dk = ops->alloc(nq * es);
    void *dvv = ops->alloc((size_t)n * H * dv * es), *dc = ops->alloc((size_t)n * kvl * es);
    void *dkpe = ops->alloc((size_t)n * R * es), *dcraw = ops->alloc((size_t)n * kvl * es);
    void *dqa_n = ops->alloc((size_t)n * (ql ? ql : 1) * es), *dqa = ops->alloc((size_t)n * (ql ? ql : 1) * es);
    struct mla_scratch s;
    memset(&s, 0, sizeof s);
    int rc = (!cslots[l] || !kslots[l] || !datt || !dq || !dk || !dvv || !dc || !dkpe || !dcraw || !dqa_n || !dqa)
                 ? sushi_error(SUSHI_ENOMEM, "mla_backward: out of backend memory") : 0;
    int attended = 0;
    if (!rc) rc = mla_attend(m, l, &kc, x, n, &s);
    attended = !rc;
    const void *cnorm = cslots[l];
    /* o_proj */
    if (!rc) rc = mlab_grad(ops, g->o, dout, s.att, c->C, H * dv, n, 0);
    if (!rc) rc = mlab_dx(ops, datt, dout, y->o, n, c->C, H * dv, 0, 0.0f);
    struct attn_shape as = {.B = 1, .T = n, .H = H, .G = H, .dqk = dqk, .dv = dv, .q_stride = H * dqk,
                            .k_stride = H * dqk, .v_stride = H * dv, .o_stride = H * dv, .scale = c->attn_scale};
    if (!rc) rc = ops->attention_backward(dq, dk, dvv, datt, s.att, s.lse, s.q, s.k, s.v, &as);
    struct rope_shape rq = {.N = n, .nheads = H, .row_stride = H * dqk, .head_stride = dqk, .offset = c->nope,
                            .rot_dim = R, .interleaved = c->interleave, .max_pos = m->max_seq, .pos = s.pos,
                            .cos = m->rope_cos, .sin = m->rope_sin};
    if (!rc) rc = ops->rope_backward(dq, &rq);
    /* per head: kv_b rows of k_nope and v, the latent's gradient, k_pe summed over heads */
    for (int h = 0; !rc && h < H; h++) {
        size_t wk = (size_t)h * (c->nope + dv) * kvl, wv = wk + (size_t)c->nope * kvl;
        float beta = h ? 1.0f : 0.0f;
        rc = mlab_grad(ops, AT(g->kv_b, wk), AT(dk, (size_t)h * dqk), cnorm, c->nope, kvl, n, H * dqk);
        if (!rc) rc = mlab_grad(ops, AT(g->kv_b, wv), AT(dvv, (size_t)h * dv), cnorm, dv, kvl, n, H * dv);
        if (!rc) rc = mlab_dx(ops, dc, AT(dk, (size_t)h * dqk), AT(y->kv_b, wk), n, c->nope, kvl, H * dqk, beta);
        if (!rc) rc = mlab_dx(ops, dc, AT(dvv, (size_t)h * dv), AT(y->kv_b, wv), n, dv, kvl, H * dv, 1.0f);
        if (!rc) rc = ops->matmul(dkpe, AT(dk, (size_t)h * dqk + c->nope), m->eye, n, R, R, 0, 0, 1.0f, beta,
                                  H * dqk, 0, 0);
    }
    struct rope_shape rk = rq;
    rk.nheads = 1;
    rk.row_stride = R;
    rk.head_stride = R;
    rk.offset = 0;
    if (!rc) rc = ops->rope_backward(dkpe, &rk);
    /* kv_a_layernorm (its rstd is the last one mla_attend computed) and kv_a */
    if (!rc) rc = ops->rmsnorm_backward(dcraw, g->kv_a_norm, dc, s.craw, y->kv_a_norm, s.rstd, n, kvl);
    if (!rc) rc = mlab_grad(ops, g->kv_a, dcraw, x, kvl, c->C, n, 0);
    if (!rc) rc = mlab_grad(ops, AT(g->kv_a, (size_t)kvl * c->C), dkpe, x, R, c->C, n, 0);
    if (!rc) rc = mlab_dx(ops, dx, dcraw, y->kv_a, n, kvl, c->C, 0, 0.0f);
    if (!rc) rc = mlab_dx(ops, dx, dkpe, AT(y->kv_a, (size_t)kvl * c->C), n, R, c->C, 0, 1.0f);
    /* queries */
    if (!rc && ql) {
        rc = mlab_grad(ops, g->q_b, dq, s.qa_n, H * dqk, ql, n, 0);
        if (!rc) rc = mlab_dx(ops, dqa_n, dq, y->q_b, n, H * dqk, ql, 0, 0.0f);
        /* the rstd of q_a_layernorm, overwritten by kv_a_layernorm's in the forward */
        if (!rc) rc = ops->rmsnorm_forward(s.qa_n, s.rstd, s.qa, y->q_a_norm, n, ql, 1e-6f);
        if (!rc) rc = ops->rmsnorm_backward(dqa, g->q_a_norm, dqa_n, s.qa, y->q_a_norm, s.rstd, n, ql);
        if (!rc) rc = mlab_grad(ops, g->q_a, dqa, x, ql, c->C, n, 0);
        if (!rc) rc = mlab_dx(ops, dx, dqa, y->q_a, n, ql, c->C, 0, 1.0f);
    } else if (!rc) {
        rc = mlab_grad(ops, g->q_b, dq, x, H * dqk, c->C, n, 0);
        if (!rc) rc = mlab_dx(ops, dx, dq, y->q_b, n, H * dqk, c->C, 0, 1.0f);
    }
    if (attended) mla_scratch_free(ops, &s);
    void *all[] = {cslots[l], kslots[l], datt, dq, dk, dvv, dc, dkpe, dcraw, dqa_n, dqa};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) ops->free(all[i]);
    free(cslots);
    free(kslots);
    return rc;
}

/* one zeroed buffer of `n` act elements, or an error */
static int grads_buf(const struct ops *ops, void **p, size_t n) {
    *p = ops->alloc(n * dtype_size(ops->act_dtype));
    return *p ? 0 : sushi_error(SUSHI_ENOMEM, "deepseek: out of memory for gradients");
}

static int grads_mlp(const struct ops *ops, struct ds_mlp *g, int C, int F) {
    g->F = F;
    int rc = grads_buf(ops, &g->gu, (size_t)2 * F * C);
    return rc ? rc : grads_buf(ops, &g->down, (size_t)C * F);
}

int ds_layer_grads_init(const struct ds_model *m, int l, struct ds_layer *g) {
    if (!m || !g || l < 0 || l >= m->cfg.L) return sushi_error(SUSHI_EINVAL, "ds_layer_grads_init: bad argument");
    const struct ds_config *c = &m->cfg;
    const struct ops *ops = m->ops;
    size_t C = (size_t)c->C, H = (size_t)c->H, dqk = (size_t)(c->nope + c->rope);
    memset(g, 0, sizeof *g);
    g->moe = m->layers[l].moe;
    int rc = grads_buf(ops, &g->in_norm, C);
    if (!rc) rc = grads_buf(ops, &g->post_norm, C);
    if (!rc && c->q_lora) {
        rc = grads_buf(ops, &g->q_a, (size_t)c->q_lora * C);
        if (!rc) rc = grads_buf(ops, &g->q_a_norm, (size_t)c->q_lora);
        if (!rc) rc = grads_buf(ops, &g->q_b, H * dqk * c->q_lora);
    } else if (!rc) {
        rc = grads_buf(ops, &g->q_b, H * dqk * C);
    }
    if (!rc) rc = grads_buf(ops, &g->kv_a, (size_t)(c->kv_lora + c->rope) * C);
    if (!rc) rc = grads_buf(ops, &g->kv_a_norm, (size_t)c->kv_lora);
    if (!rc) rc = grads_buf(ops, &g->kv_b, H * (c->nope + c->dv) * c->kv_lora);
    if (!rc) rc = grads_buf(ops, &g->o, C * H * c->dv);
    if (!rc && !g->moe) rc = grads_mlp(ops, &g->dense, c->C, c->F);
    if (!rc && g->moe) {
        rc = grads_buf(ops, &g->router, (size_t)c->n_routed * C);
        g->experts = calloc((size_t)c->n_routed, sizeof *g->experts);
        if (!rc && !g->experts) rc = sushi_error(SUSHI_ENOMEM, "deepseek: out of memory for gradients");
        for (int e = 0; !rc && e < c->n_routed; e++) rc = grads_mlp(ops, &g->experts[e], c->C, c->F_moe);
        if (!rc && c->n_shared) rc = grads_mlp(ops, &g->shared, c->C, c->F_moe * c->n_shared);
    }
    if (rc) ds_layer_grads_free(m, g);
    return rc;
}

void ds_layer_grads_free(const struct ds_model *m, struct ds_layer *g) {
    if (!m || !g) return;
    const struct ops *ops = m->ops;
    void *bufs[] = {g->in_norm, g->post_norm, g->q_a, g->q_a_norm, g->q_b, g->kv_a, g->kv_a_norm, g->kv_b, g->o,
                    g->router, g->dense.gu, g->dense.down, g->shared.gu, g->shared.down};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) ops->free(bufs[i]);
    for (int e = 0; g->experts && e < m->cfg.n_routed; e++) {
        if (g->experts[e].gu) ops->free(g->experts[e].gu);
        if (g->experts[e].down) ops->free(g->experts[e].down);
    }
    free(g->experts);
    memset(g, 0, sizeof *g);
}
