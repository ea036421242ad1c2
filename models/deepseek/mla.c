/* Multi-head latent attention (SPEC §1) for n new tokens of one sequence:
 *   q = q_b(rmsnorm(q_a(x))) or q_proj(x)            (n, H, nope+rope)
 *   c = rmsnorm(kv_a(x)[:kv_lora]), k_pe = rope(kv_a(x)[kv_lora:])   -> cache
 *   k_nope, v = kv_b(c) per head over every cached position
 *   k = [k_nope, k_pe] (k_pe shared by the heads), q_pe rotated; causal softmax; o_proj.
 * Only c and k_pe are cached (kv_lora + rope numbers per token and layer). Two forms give
 * the same logits:
 * - expanded (here; prefill and training): k and v are expanded from the cache on each
 *   call and the attention op runs a square causal problem over all S cached positions
 *   (the rows of earlier positions hold zero queries and their outputs are discarded);
 * - absorbed (mla_absorb.c; decoding): kv_b is folded into the queries and the output,
 *   so a step attends to the latents directly in O(S) per token.
 * ds_mla_forward picks the absorbed form for a step of at most MLA_ABSORB_MAX_NEW new
 * tokens after a cached prefix; SUSHI_MLA=absorbed|expanded forces one. */
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/deepseek/deepseek.h"
#include "models/deepseek/mla_internal.h"

#define AT(p, off) ((void *)((char *)(p) + (size_t)(off) * es))

void mla_scratch_free(const struct ops *ops, struct mla_scratch *s) {
    void *all[] = {s->qa, s->qa_n, s->craw, s->q, s->k, s->v, s->att, s->lse, s->rstd, s->pos};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) ops->free(all[i]);
}

int mla_scratch_alloc(const struct ds_model *m, int n, int S, struct mla_scratch *s) {
    const struct ds_config *c = &m->cfg;
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype), dqk = (size_t)(c->nope + c->rope);
    size_t ql = c->q_lora ? (size_t)c->q_lora : 1;
    memset(s, 0, sizeof *s);
    s->qa = ops->alloc((size_t)n * ql * es);
    s->qa_n = ops->alloc((size_t)n * ql * es);
    s->craw = ops->alloc((size_t)n * c->kv_lora * es);
    s->rstd = ops->alloc((size_t)n * sizeof(float));
    s->pos = ops->alloc((size_t)n * sizeof(int32_t));
    int ok = s->qa && s->qa_n && s->craw && s->rstd && s->pos;
    if (ok && S > 0) {
        s->q = ops->alloc((size_t)S * c->H * dqk * es);
        s->k = ops->alloc((size_t)S * c->H * dqk * es);
        s->v = ops->alloc((size_t)S * c->H * c->dv * es);
        s->att = ops->alloc((size_t)S * c->H * c->dv * es);
        s->lse = ops->alloc((size_t)S * c->H * sizeof(float));
        ok = s->q && s->k && s->v && s->att && s->lse;
    }
    if (!ok) {
        mla_scratch_free(ops, s);
        return sushi_error(SUSHI_ENOMEM, "mla_forward: out of backend memory (%d new rows, %d positions)", n, S);
    }
    return 0;
}

/* y (n, out) = x (n, in) · W (out, in)ᵀ, y rows ldy apart (0 = dense) */
int mla_linear(const struct ops *ops, void *y, const void *x, const void *w, int n, int out, int in, int ldy) {
    return ops->matmul(y, x, w, n, out, in, 0, 1, 1.0f, 0.0f, 0, 0, ldy);
}

/* the RMSNorm of the latents q_a / kv_a: HF builds them with the default eps 1e-6 */
#define MLA_LATENT_EPS 1e-6f

int mla_project(const struct ds_model *m, int l, struct ds_cache *kc, const void *x, int n,
                const struct mla_scratch *s, void *q) {
    const struct ds_config *c = &m->cfg;
    const struct ds_layer *y = &m->layers[l];
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype);
    int H = c->H, dqk = c->nope + c->rope, start = kc->len;
    if (!x || !s || !q || l < 0 || l >= c->L || n < 1)
        return sushi_error(SUSHI_EINVAL, "mla_forward: bad argument to the projections");
    if (start + n > kc->cap)
        return sushi_error(SUSHI_EINVAL, "mla_forward: %d positions exceed the cache (%d)", start + n, kc->cap);
    int rc = 0;
    int32_t *pos = malloc((size_t)n * sizeof(int32_t));
    if (!pos) rc = sushi_error(SUSHI_ENOMEM, "mla_forward: out of memory");
    for (int i = 0; !rc && i < n; i++) pos[i] = start + i;
    if (!rc) rc = ops->to_device(s->pos, pos, (size_t)n * sizeof(int32_t));
    free(pos);

    /* queries (n, H, dqk) */
    if (!rc && c->q_lora) {
        rc = mla_linear(ops, s->qa, x, y->q_a, n, c->q_lora, c->C, 0);
        if (!rc) rc = ops->rmsnorm_forward(s->qa_n, s->rstd, s->qa, y->q_a_norm, n, c->q_lora, MLA_LATENT_EPS);
        if (!rc) rc = mla_linear(ops, q, s->qa_n, y->q_b, n, H * dqk, c->q_lora, 0);
    } else if (!rc) {
        rc = mla_linear(ops, q, x, y->q_b, n, H * dqk, c->C, 0);
    }
    struct rope_shape rq = {.N = n, .nheads = H, .row_stride = H * dqk, .head_stride = dqk, .offset = c->nope,
                            .rot_dim = c->rope, .interleaved = c->interleave, .max_pos = m->max_seq,
                            .pos = s->pos, .cos = m->rope_cos, .sin = m->rope_sin};
    if (!rc) rc = ops->rope_forward(q, &rq);

    /* latent c (normalised) and rotated k_pe of the new rows, into the cache; s->rstd
     * ends as kv_a_layernorm's (the backward uses it) */
    void *cnew = AT(kc->c[l], (size_t)start * c->kv_lora), *kpnew = AT(kc->kpe[l], (size_t)start * c->rope);
    if (!rc) rc = mla_linear(ops, s->craw, x, y->kv_a, n, c->kv_lora, c->C, 0);
    if (!rc) rc = ops->rmsnorm_forward(cnew, s->rstd, s->craw, y->kv_a_norm, n, c->kv_lora, MLA_LATENT_EPS);
    if (!rc) rc = mla_linear(ops, kpnew, x, AT(y->kv_a, (size_t)c->kv_lora * c->C), n, c->rope, c->C, 0);
    struct rope_shape rk = rq;
    rk.nheads = 1;
    rk.row_stride = c->rope;
    rk.head_stride = c->rope;
    rk.offset = 0;
    if (!rc) rc = ops->rope_forward(kpnew, &rk);
    return rc;
}

int mla_attend(const struct ds_model *m, int l, struct ds_cache *kc, const void *x, int n, struct mla_scratch *sp) {
    const struct ds_config *c = &m->cfg;
    const struct ops *ops = m->ops;
    size_t es = dtype_size(ops->act_dtype);
    int H = c->H, dqk = c->nope + c->rope, start = kc->len, S = start + n;
    if (S > kc->cap)
        return sushi_error(SUSHI_EINVAL, "mla_forward: %d positions exceed the cache (%d)", S, kc->cap);
    int rc = mla_scratch_alloc(m, n, S, sp);
    if (rc) return rc;
    struct mla_scratch s = *sp;
    /* the new rows' queries at row `start` of q, the earlier rows zero */
    rc = ops->fill(s.q, 0.0f, (size_t)S * H * dqk);
    if (!rc) rc = mla_project(m, l, kc, x, n, &s, AT(s.q, (size_t)start * H * dqk));

    /* keys and values of all S positions, per head, from the cache */
    const struct ds_layer *y = &m->layers[l];
    for (int h = 0; !rc && h < H; h++) {
        const void *wk = AT(y->kv_b, (size_t)h * (c->nope + c->dv) * c->kv_lora);
        const void *wv = AT(y->kv_b, ((size_t)h * (c->nope + c->dv) + c->nope) * c->kv_lora);
        rc = mla_linear(ops, AT(s.k, (size_t)h * dqk), kc->c[l], wk, S, c->nope, c->kv_lora, H * dqk);
        if (!rc) rc = mla_linear(ops, AT(s.v, (size_t)h * c->dv), kc->c[l], wv, S, c->dv, c->kv_lora, H * c->dv);
        /* k_pe · I: copies the shared k_pe into this head's rope slot for every row */
        if (!rc) rc = mla_linear(ops, AT(s.k, (size_t)h * dqk + c->nope), kc->kpe[l], m->eye, S, c->rope, c->rope, H * dqk);
    }
    struct attn_shape as = {.B = 1, .T = S, .H = H, .G = H, .dqk = dqk, .dv = c->dv, .q_stride = H * dqk,
                            .k_stride = H * dqk, .v_stride = H * c->dv, .o_stride = H * c->dv,
                            .scale = c->attn_scale, .window = 0, .doc_ids = NULL};
    if (!rc) rc = ops->attention_forward(s.att, s.lse, s.q, s.k, s.v, &as);
    if (rc) mla_scratch_free(ops, sp);
    return rc;
}

/* 1 for the absorbed form, 0 for the expanded one, or an error for a bad SUSHI_MLA */
static int mla_form(int n, int len) {
    const char *e = getenv("SUSHI_MLA");
    if (!e || !*e) return len > 0 && n <= MLA_ABSORB_MAX_NEW;
    if (!strcmp(e, "absorbed")) return 1;
    if (!strcmp(e, "expanded")) return 0;
    return sushi_error(SUSHI_EINVAL, "mla_forward: SUSHI_MLA=%s: expected absorbed or expanded", e);
}

int ds_mla_forward(struct ds_model *m, int l, struct ds_cache *kc, const void *x, int n, void *out) {
    if (!m || !kc || !x || !out || l < 0 || l >= m->cfg.L || n < 1)
        return sushi_error(SUSHI_EINVAL, "mla_forward: bad argument");
    const struct ds_config *c = &m->cfg;
    size_t es = dtype_size(m->ops->act_dtype);
    int form = mla_form(n, kc->len);
    if (form < 0) return form;
    if (form) return mla_absorbed_forward(m, l, kc, x, n, out);
    struct mla_scratch s;
    int rc = mla_attend(m, l, kc, x, n, &s);
    if (rc) return rc;
    rc = mla_linear(m->ops, out, AT(s.att, (size_t)kc->len * c->H * c->dv), m->layers[l].o, n, c->C, c->H * c->dv, 0);
    mla_scratch_free(m->ops, &s);
    return rc;
}

int ds_cache_init(struct ds_cache *k, const struct ds_model *m) {
    if (!k || !m) return sushi_error(SUSHI_EINVAL, "ds_cache_init: NULL argument");
    memset(k, 0, sizeof *k);
    const struct ds_config *c = &m->cfg;
    size_t es = dtype_size(m->ops->act_dtype);
    k->cap = m->max_seq;
    k->c = calloc((size_t)c->L, sizeof *k->c);
    k->kpe = calloc((size_t)c->L, sizeof *k->kpe);
    if (!k->c || !k->kpe) goto oom;
    for (int l = 0; l < c->L; l++) {
        k->c[l] = m->ops->alloc((size_t)k->cap * c->kv_lora * es);
        k->kpe[l] = m->ops->alloc((size_t)k->cap * c->rope * es);
        if (!k->c[l] || !k->kpe[l]) goto oom;
    }
    return 0;
oom:
    ds_cache_free(k, m);
    return sushi_error(SUSHI_ENOMEM, "ds_cache_init: out of memory for %d positions", m->max_seq);
}

void ds_cache_reset(struct ds_cache *k) {
    if (k) k->len = 0;
}

void ds_cache_free(struct ds_cache *k, const struct ds_model *m) {
    if (!k || !m) return;
    for (int l = 0; l < m->cfg.L; l++) {
        if (k->c && k->c[l]) m->ops->free(k->c[l]);
        if (k->kpe && k->kpe[l]) m->ops->free(k->kpe[l]);
    }
    free(k->c);
    free(k->kpe);
    memset(k, 0, sizeof *k);
}
