/* Absorbed multi-head latent attention (SPEC §1, "inference may absorb kv_b"), for
 * decoding a few new tokens after a cached prefix. With W_UK[h] (nope, kv_lora) and
 * W_UV[h] (dv, kv_lora) the k_nope and v rows of kv_b for head h, and c, k_pe the
 * cached latents and rotated shared keys of all S positions:
 *   q_lat[i,h]  = q_nope[i,h] · W_UK[h]                                 (kv_lora)
 *   s[i,h,t]    = q_lat[i,h]·c[t] + q_pe[i,h]·k_pe[t]                   (= q·k of the expanded form)
 *   p           = causal softmax of attn_scale·s over t ≤ start + i
 *   o_lat[i,h]  = Σ_t p[i,h,t] · c[t]                                   (kv_lora)
 *   att[i,h]    = o_lat[i,h] · W_UV[h]ᵀ                                 (dv; = Σ_t p·v[t])
 *   out         = o_proj(att)
 * With the n·H (query, head) pairs as rows, the scores and o_lat are single matmuls
 * against the cache (c is shared by the heads): a step costs O(S·H·(kv_lora + rope))
 * per layer instead of expanding k and v at every cached position and attending over
 * an S×S square. q_pe and k_pe come rotated from mla_project, as in the expanded form. */
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/deepseek/deepseek.h"
#include "models/deepseek/mla_internal.h"

#define AT(p, off) ((void *)((char *)(p) + (size_t)(off) * es))

/* the buffers of one call */
struct mla_absorb_buf {
    void *q;        /* (n, H, nope+rope) */
    void *qlat;     /* (n, H, kv_lora) */
    void *sc;       /* (n·H, S) scores, then probabilities */
    void *olat;     /* (n, H, kv_lora) */
    void *att;      /* (n, H, dv) */
};

static void absorb_buf_free(const struct ops *ops, struct mla_absorb_buf *b) {
    void *all[] = {b->q, b->qlat, b->sc, b->olat, b->att};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) ops->free(all[i]);
}

static int absorb_buf_alloc(const struct ds_model *m, int n, int S, struct mla_absorb_buf *b) {
    const struct ds_config *c = &m->cfg;
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype), nh = (size_t)n * c->H;
    memset(b, 0, sizeof *b);
    b->q = ops->alloc(nh * (c->nope + c->rope) * es);
    b->qlat = ops->alloc(nh * c->kv_lora * es);
    b->sc = ops->alloc(nh * S * es);
    b->olat = ops->alloc(nh * c->kv_lora * es);
    b->att = ops->alloc(nh * c->dv * es);
    if (!b->q || !b->qlat || !b->sc || !b->olat || !b->att) {
        absorb_buf_free(ops, b);
        return sushi_error(SUSHI_ENOMEM, "mla_forward (absorbed): out of backend memory (%d new rows, %d positions)",
                           n, S);
    }
    return 0;
}

/* attention of the n new rows, whose queries are in b->q, over the S cached positions of
 * layer l, into b->att (n, H, dv) */
static int absorb_attend(const struct ds_model *m, int l, const struct ds_cache *kc, int n, int S,
                         struct mla_absorb_buf *b) {
    const struct ds_config *c = &m->cfg;
    const struct ds_layer *y = &m->layers[l];
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype);
    int H = c->H, dqk = c->nope + c->rope, kvl = c->kv_lora, R = n * H;
    int rc = 0;
    /* q_lat[:, h] (n, kv_lora) = q_nope[:, h] (n, nope) · W_UK[h] (nope, kv_lora) */
    for (int h = 0; !rc && h < H; h++) {
        const void *wk = AT(y->kv_b, (size_t)h * (c->nope + c->dv) * kvl);
        rc = ops->matmul(AT(b->qlat, (size_t)h * kvl), AT(b->q, (size_t)h * dqk), wk, n, kvl, c->nope, 0, 0, 1.0f,
                         0.0f, H * dqk, 0, H * kvl);
    }
    /* scores (R, S) = q_lat (R, kv_lora) · cᵀ + q_pe (R, rope; rows dqk apart) · k_peᵀ */
    if (!rc) rc = ops->matmul(b->sc, b->qlat, kc->c[l], R, S, kvl, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->matmul(b->sc, AT(b->q, c->nope), kc->kpe[l], R, S, c->rope, 0, 1, 1.0f, 1.0f, dqk, 0, 0);
    /* the R/H = n queries are the last n of the S positions: row (i, h) sees t ≤ start + i */
    if (!rc) rc = ops->softmax_causal(b->sc, b->sc, R, S, H, c->attn_scale);
    /* o_lat (R, kv_lora) = p (R, S) · c (S, kv_lora) */
    if (!rc) rc = ops->matmul(b->olat, b->sc, kc->c[l], R, kvl, S, 0, 0, 1.0f, 0.0f, 0, 0, 0);
    /* att[:, h] (n, dv) = o_lat[:, h] (n, kv_lora) · W_UV[h]ᵀ (kv_lora, dv) */
    for (int h = 0; !rc && h < H; h++) {
        const void *wv = AT(y->kv_b, ((size_t)h * (c->nope + c->dv) + c->nope) * kvl);
        rc = ops->matmul(AT(b->att, (size_t)h * c->dv), AT(b->olat, (size_t)h * kvl), wv, n, c->dv, kvl, 0, 1, 1.0f,
                         0.0f, H * kvl, 0, H * c->dv);
    }
    return rc;
}

int mla_absorbed_forward(const struct ds_model *m, int l, struct ds_cache *kc, const void *x, int n, void *out) {
    if (!m || !kc || !x || !out || l < 0 || l >= m->cfg.L || n < 1)
        return sushi_error(SUSHI_EINVAL, "mla_forward (absorbed): bad argument");
    const struct ds_config *c = &m->cfg;
    const struct ops *ops = m->ops;
    int S = kc->len + n;
    if (S > kc->cap)
        return sushi_error(SUSHI_EINVAL, "mla_forward (absorbed): %d positions exceed the cache (%d)", S, kc->cap);
    struct mla_scratch s;
    struct mla_absorb_buf b;
    int rc = mla_scratch_alloc(m, n, 0, &s);
    if (rc) return rc;
    rc = absorb_buf_alloc(m, n, S, &b);
    if (rc) {
        mla_scratch_free(ops, &s);
        return rc;
    }
    rc = mla_project(m, l, kc, x, n, &s, b.q);
    if (!rc) rc = absorb_attend(m, l, kc, n, S, &b);
    if (!rc) rc = mla_linear(ops, out, b.att, m->layers[l].o, n, c->C, c->H * c->dv, 0);
    absorb_buf_free(ops, &b);
    mla_scratch_free(ops, &s);
    return rc;
}
