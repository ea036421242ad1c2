/* Training a DeepSeek-style model (deepseek.h, "training a DeepSeek-style model"): the
 * one-buffer parameter layout, allocation and initialisation, and the model-level
 * forward / backward over B rows of T tokens. Each document segment of a row is its
 * own sequence from position 0: MLA runs per segment (ds_mla_forward / ds_mla_backward
 * recompute from the saved normalised input), the norms and the FFN / MoE (row-wise)
 * over all rows at once, then the final norm, the LM head and the fused loss
 * (ops->loss_forward_backward, as the student does). Checkpoints: train_io.c; the
 * `model:` section of a training YAML: train_config.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/deepseek/deepseek.h"
#include "models/rng.h"
#include "models/student/student.h"

#define AT(p, off) ((void *)((char *)(p) + (size_t)(off) * es))

struct ds_train_state {
    struct ds_model gm;         /* gradient views (layers == t->g) */
    struct ds_cache kc;         /* one segment's MLA cache */
    int N, n_seg, n_valid, have_dlogits, k_alloc;
    int *seg_start, *seg_len;   /* (N) absolute first row and length of each segment */
    int32_t *ids, *targets;     /* (N) backend */
    int32_t *topk_ids;          /* (N, K) backend */
    float *topk_logprobs, *tail;
    void *resid;                /* (2L+1, N, C): layer l input at 2l, after its MLA at 2l+1 */
    void *xn;                   /* (2L, N, C): the normalised inputs of MLA (2l) and FFN (2l+1) */
    float *rstd;                /* (2L, N) */
    void *lnf;                  /* (N, C) */
    float *lnf_rstd;            /* (N) */
    void *logits;               /* (N, V); the loss overwrites it with dlogits */
    float *dev_loss;            /* (N) backend f32 */
    float *row_loss;            /* (N) host */
    void *d, *dresid, *dtmp;    /* (N, C) */
};

/* ---- layout ------------------------------------------------------------------------ */

static void slot_add(struct ds_slot *s, int *n, void **p, size_t off, int64_t rows, int64_t cols, int resid,
                     const char *fmt, int l, int e) {
    struct ds_slot *x = &s[(*n)++];
    snprintf(x->name, sizeof x->name, fmt, l, e);
    x->p = p;
    x->off = off;
    x->rows = rows;
    x->cols = cols;
    x->resid = resid;
}

static void slots_mlp(struct ds_slot *s, int *n, struct ds_mlp *p, int C, const char *prefix, int l, int e) {
    char fmt[96];
    snprintf(fmt, sizeof fmt, "%s.gate_proj.weight", prefix);
    slot_add(s, n, &p->gu, 0, p->F, C, 0, fmt, l, e);
    snprintf(fmt, sizeof fmt, "%s.up_proj.weight", prefix);
    slot_add(s, n, &p->gu, (size_t)p->F * C, p->F, C, 0, fmt, l, e);
    snprintf(fmt, sizeof fmt, "%s.down_proj.weight", prefix);
    slot_add(s, n, &p->down, 0, C, p->F, 1, fmt, l, e);
}

int ds_train_slots(struct ds_model *m, struct ds_slot **out, int *n_matrices) {
    if (!m || !out || !m->layers) return sushi_error(SUSHI_EINVAL, "ds_train_slots: bad argument");
    const struct ds_config *c = &m->cfg;
    int C = c->C, H = c->H, dqk = c->nope + c->rope, n = 0;
    size_t cap = 3 + (size_t)c->L * (12 + 3 * ((size_t)c->n_routed + 1) + 4);
    struct ds_slot *s = calloc(cap, sizeof *s);
    if (!s) return sushi_error(SUSHI_ENOMEM, "ds_train_slots: out of memory");
    slot_add(s, &n, &m->embed, 0, c->vocab, C, 0, "model.embed_tokens.weight", 0, 0);
    if (!c->tied) slot_add(s, &n, &m->head, 0, c->vocab, C, 0, "lm_head.weight", 0, 0);
    for (int l = 0; l < c->L; l++) {
        struct ds_layer *y = &m->layers[l];
        if (c->q_lora) {
            slot_add(s, &n, &y->q_a, 0, c->q_lora, C, 0, "model.layers.%d.self_attn.q_a_proj.weight", l, 0);
            slot_add(s, &n, &y->q_b, 0, (int64_t)H * dqk, c->q_lora, 0, "model.layers.%d.self_attn.q_b_proj.weight", l, 0);
        } else {
            slot_add(s, &n, &y->q_b, 0, (int64_t)H * dqk, C, 0, "model.layers.%d.self_attn.q_proj.weight", l, 0);
        }
        slot_add(s, &n, &y->kv_a, 0, c->kv_lora + c->rope, C, 0, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l, 0);
        slot_add(s, &n, &y->kv_b, 0, (int64_t)H * (c->nope + c->dv), c->kv_lora, 0,
                 "model.layers.%d.self_attn.kv_b_proj.weight", l, 0);
        slot_add(s, &n, &y->o, 0, C, (int64_t)H * c->dv, 1, "model.layers.%d.self_attn.o_proj.weight", l, 0);
        if (!y->moe) {
            slots_mlp(s, &n, &y->dense, C, "model.layers.%d.mlp", l, 0);
            continue;
        }
        slot_add(s, &n, &y->router, 0, c->n_routed, C, 0, "model.layers.%d.mlp.gate.weight", l, 0);
        for (int e = 0; e < c->n_routed; e++) slots_mlp(s, &n, &y->experts[e], C, "model.layers.%d.mlp.experts.%d", l, e);
        if (c->n_shared) slots_mlp(s, &n, &y->shared, C, "model.layers.%d.mlp.shared_experts", l, 0);
    }
    if (n_matrices) *n_matrices = n;
    for (int l = 0; l < c->L; l++) {
        struct ds_layer *y = &m->layers[l];
        slot_add(s, &n, &y->in_norm, 0, C, 0, 0, "model.layers.%d.input_layernorm.weight", l, 0);
        slot_add(s, &n, &y->post_norm, 0, C, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l, 0);
        if (c->q_lora)
            slot_add(s, &n, &y->q_a_norm, 0, c->q_lora, 0, 0, "model.layers.%d.self_attn.q_a_layernorm.weight", l, 0);
        slot_add(s, &n, &y->kv_a_norm, 0, c->kv_lora, 0, 0, "model.layers.%d.self_attn.kv_a_layernorm.weight", l, 0);
    }
    slot_add(s, &n, &m->final_norm, 0, C, 0, 0, "model.norm.weight", 0, 0);
    *out = s;
    return n;
}

int ds_train_layout(struct ds_model *m, void *base, size_t es, size_t *n_out, size_t *n_decay) {
    struct ds_slot *s;
    int nm = 0, n = ds_train_slots(m, &s, &nm);
    if (n < 0) return n;
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        if (i == nm && n_decay) *n_decay = pos;
        if (s[i].off == 0) *s[i].p = base ? AT(base, pos) : NULL;   /* up halves follow their gate */
        pos += (size_t)s[i].rows * (size_t)(s[i].cols ? s[i].cols : 1);
    }
    free(s);
    if (m->cfg.tied) m->head = m->embed;
    if (n_out) *n_out = pos;
    return 0;
}

int ds_train_skeleton(struct ds_model *m, const struct ds_config *c, const struct ops *ops, int with_bias) {
    if (!m || !c || !ops) return sushi_error(SUSHI_EINVAL, "ds_train_skeleton: bad argument");
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->ops = ops;
    m->layers = calloc((size_t)c->L, sizeof *m->layers);
    int rc = m->layers ? 0 : sushi_error(SUSHI_ENOMEM, "deepseek: out of memory for %d layers", c->L);
    for (int l = 0; !rc && l < c->L; l++) {
        struct ds_layer *y = &m->layers[l];
        y->moe = ds_layer_is_moe(c, l);
        y->dense.F = c->F;
        if (!y->moe) continue;
        y->experts = calloc((size_t)c->n_routed, sizeof *y->experts);
        if (with_bias) y->router_bias = calloc((size_t)c->n_routed, sizeof(float));
        if (!y->experts || (with_bias && !y->router_bias))
            rc = sushi_error(SUSHI_ENOMEM, "deepseek: out of memory for %d experts", c->n_routed);
        for (int e = 0; !rc && e < c->n_routed; e++) y->experts[e].F = c->F_moe;
        y->shared.F = c->F_moe * c->n_shared;
    }
    if (rc) ds_train_skeleton_free(m, with_bias);
    return rc;
}

void ds_train_skeleton_free(struct ds_model *m, int with_bias) {
    if (!m) return;
    for (int l = 0; m->layers && l < m->cfg.L; l++) {
        free(m->layers[l].experts);
        if (with_bias) free(m->layers[l].router_bias);
    }
    free(m->layers);
    m->layers = NULL;
}

/* ---- create / free ----------------------------------------------------------------- */

/* matrices normal(0, 0.02), residual-stream projections × 1/sqrt(2L), norms 1 */
static int train_init(struct ds_train *t, uint64_t seed) {
    float *h = malloc(t->n_params * sizeof(float));
    if (!h) return sushi_error(SUSHI_ENOMEM, "ds_train_create: out of memory for %zu parameters", t->n_params);
    struct rng r;
    rng_seed(&r, seed);
    rng_fill_normal(&r, h, t->n_decay, 0.0f, 0.02f);
    for (size_t i = t->n_decay; i < t->n_params; i++) h[i] = 1.0f;
    struct ds_model hm;
    struct ds_slot *s = NULL;
    int n = 0, rc = ds_train_skeleton(&hm, &t->m.cfg, t->m.ops, 0);
    if (!rc) rc = ds_train_layout(&hm, h, sizeof(float), NULL, NULL);
    if (!rc) rc = n = ds_train_slots(&hm, &s, NULL);
    float scale = 1.0f / sqrtf(2.0f * t->m.cfg.L);
    for (int i = 0; rc >= 0 && i < n; i++) {
        if (!s[i].resid) continue;
        float *p = (float *)*s[i].p + s[i].off;
        for (size_t k = 0; k < (size_t)s[i].rows * (size_t)s[i].cols; k++) p[k] *= scale;
    }
    if (rc > 0) rc = 0;
    if (!rc) rc = t->m.ops->to_device(t->master, h, t->n_params * sizeof(float));
    free(s);
    if (hm.layers) ds_train_skeleton_free(&hm, 0);
    free(h);
    return rc;
}

static int train_alloc(const struct ops *o, void **p, size_t bytes, const char *what) {
    *p = o->alloc(bytes ? bytes : 1);
    return *p ? 0 : sushi_error(SUSHI_ENOMEM, "ds_train_create: cannot allocate %zu bytes for %s", bytes, what);
}

static int train_alloc_state(struct ds_train *t) {
    const struct ops *o = t->m.ops;
    const struct ds_config *c = &t->m.cfg;
    struct ds_train_state *st = t->st;
    size_t es = dtype_size(o->act_dtype), N = (size_t)t->B * t->T, C = (size_t)c->C, L = (size_t)c->L;
    st->N = (int)N;
    struct { void **p; size_t bytes; const char *what; } a[] = {
        {(void **)&st->ids, N * 4, "ids"}, {(void **)&st->targets, N * 4, "targets"},
        {&st->resid, (2 * L + 1) * N * C * es, "residual stream"}, {&st->xn, 2 * L * N * C * es, "norm outputs"},
        {(void **)&st->rstd, 2 * L * N * 4, "norm statistics"}, {&st->lnf, N * C * es, "final norm"},
        {(void **)&st->lnf_rstd, N * 4, "final norm statistics"},
        {&st->logits, N * (size_t)c->vocab * es, "logits"}, {(void **)&st->dev_loss, N * 4, "row losses"},
        {&st->d, N * C * es, "scratch"}, {&st->dresid, N * C * es, "scratch"}, {&st->dtmp, N * C * es, "scratch"},
    };
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) {
        int rc = train_alloc(o, a[i].p, a[i].bytes, a[i].what);
        if (rc) return rc;
    }
    st->row_loss = calloc(N, sizeof(float));
    st->seg_start = calloc(N, sizeof(int));
    st->seg_len = calloc(N, sizeof(int));
    if (!st->row_loss || !st->seg_start || !st->seg_len)
        return sushi_error(SUSHI_ENOMEM, "ds_train_create: out of memory for %zu rows", N);
    return ds_cache_init(&st->kc, &t->m);
}

int ds_train_create(struct ds_train *t, const struct ds_config *c, const struct ops *ops, int B, int T,
                    uint64_t seed, const char *dir) {
    if (!t || !c || !ops) return sushi_error(SUSHI_EINVAL, "ds_train_create: NULL argument");
    memset(t, 0, sizeof *t);
    if (B < 1 || T < 1) return sushi_error(SUSHI_EINVAL, "ds_train_create: batch %dx%d invalid", B, T);
    if (c->fp8) return sushi_error(SUSHI_EUNSUPPORTED, "ds_train_create: FP8 weights cannot be trained");
    if (c->L < 1 || c->C < 1 || c->vocab < 1 || c->H < 1 || c->kv_lora < 1 || c->rope < 2 || c->rope % 2)
        return sushi_error(SUSHI_EINVAL, "ds_train_create: config has no valid shape (parse it with ds_config_parse)");
    t->B = B;
    t->T = T;
    t->st = calloc(1, sizeof *t->st);
    int rc = t->st ? ds_train_skeleton(&t->m, c, ops, 1) : sushi_error(SUSHI_ENOMEM, "ds_train_create: out of memory");
    if (rc) {
        free(t->st);
        t->st = NULL;
        return rc;
    }
    t->m.max_seq = T;
    size_t es = dtype_size(ops->act_dtype);
    rc = ds_train_layout(&t->m, NULL, es, &t->n_params, &t->n_decay);
    if (!rc) rc = train_alloc(ops, (void **)&t->master, t->n_params * sizeof(float), "master weights");
    if (!rc) {
        if (ops->act_dtype == DT_F32) t->wbuf = t->master;
        else rc = train_alloc(ops, &t->wbuf, t->n_params * es, "compute weights");
    }
    if (!rc) rc = train_alloc(ops, &t->gbuf, t->n_params * es, "gradients");
    if (!rc) rc = ds_train_layout(&t->m, t->wbuf, es, NULL, NULL);
    if (!rc) rc = ds_train_skeleton(&t->st->gm, c, ops, 0);
    if (!rc) rc = ds_train_layout(&t->st->gm, t->gbuf, es, NULL, NULL);
    if (!rc) {
        t->g = t->st->gm.layers;
        t->g_embed = t->st->gm.embed;
        t->g_final_norm = t->st->gm.final_norm;
        t->g_head = t->st->gm.head;
        t->m.n_params = t->n_params;
        for (int l = 0; l < c->L; l++) t->m.n_params += t->m.layers[l].moe && c->topk_method == DS_NOAUX_TC ? c->n_routed : 0;
        rc = ds_rope_tables(&t->m);
    }
    if (!rc) rc = train_alloc_state(t);
    if (!rc) rc = dir ? ds_train_load(t, dir, NULL, NULL, NULL) : train_init(t, seed);
    if (!rc) rc = ds_train_sync_weights(t);
    if (!rc) rc = ds_train_zero_grad(t);
    if (rc) ds_train_free(t);
    return rc;
}

void ds_train_free(struct ds_train *t) {
    if (!t || !t->m.ops) return;
    const struct ops *o = t->m.ops;
    struct ds_train_state *st = t->st;
    if (st) {
        void *bufs[] = {st->ids, st->targets, st->topk_ids, st->topk_logprobs, st->tail, st->resid, st->xn,
                        st->rstd, st->lnf, st->lnf_rstd, st->logits, st->dev_loss, st->d, st->dresid, st->dtmp};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) o->free(bufs[i]);
        if (st->kc.c) ds_cache_free(&st->kc, &t->m);
        free(st->row_loss);
        free(st->seg_start);
        free(st->seg_len);
        if (st->gm.layers) ds_train_skeleton_free(&st->gm, 0);
        free(st);
    }
    void *tab[] = {t->m.rope_cos, t->m.rope_sin, t->m.eye, t->gbuf, t->wbuf != (void *)t->master ? t->wbuf : NULL,
                   t->master};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (tab[i]) o->free(tab[i]);
    ds_train_skeleton_free(&t->m, 1);
    memset(t, 0, sizeof *t);
}

int ds_train_zero_grad(struct ds_train *t) {
    if (!t || !t->gbuf) return sushi_error(SUSHI_EINVAL, "ds_train_zero_grad: no model");
    return t->m.ops->fill(t->gbuf, 0.0f, t->n_params);
}

int ds_train_sync_weights(struct ds_train *t) {
    if (!t || !t->master) return sushi_error(SUSHI_EINVAL, "ds_train_sync_weights: no model");
    if (t->wbuf == (void *)t->master) return 0;
    return t->m.ops->f32_to_act(t->wbuf, t->master, t->n_params);
}

/* ---- forward / backward ------------------------------------------------------------ */

/* checks ids, targets and teacher ids; splits rows into segments; uploads */
static int train_inputs(struct ds_train *t, const int32_t *ids, const int32_t *targets, const int32_t *doc_ids,
                        const struct student_teacher *tk) {
    struct ds_train_state *st = t->st;
    const struct ops *o = t->m.ops;
    int N = st->N, V = t->m.cfg.vocab;
    st->n_valid = 0;
    st->n_seg = 0;
    for (int i = 0; i < N; i++) {
        if (ids[i] < 0 || ids[i] >= V)
            return sushi_error(SUSHI_EINVAL, "ds_train_forward: token id %d at row %d, position %d is outside [0, %d)",
                               ids[i], i / t->T, i % t->T, V);
        if (targets && targets[i] >= V)
            return sushi_error(SUSHI_EINVAL, "ds_train_forward: target %d at row %d, position %d is outside [0, %d)",
                               targets[i], i / t->T, i % t->T, V);
        st->n_valid += targets && targets[i] >= 0;
        if (i % t->T == 0 || (doc_ids && doc_ids[i] != doc_ids[i - 1])) {
            st->seg_start[st->n_seg] = i;
            st->seg_len[st->n_seg++] = 0;
        }
        st->seg_len[st->n_seg - 1]++;
    }
    int rc = o->to_device(st->ids, ids, (size_t)N * 4);
    if (!rc && targets) rc = o->to_device(st->targets, targets, (size_t)N * 4);
    if (rc || !tk) return rc;
    size_t K = tk->k > 0 ? (size_t)tk->k : 0;
    if (!K || !tk->topk_ids || !tk->topk_logprobs || !tk->tail_logprob)
        return sushi_error(SUSHI_EINVAL, "ds_train_forward: teacher outputs incomplete (k %d)", tk->k);
    if (tk->k > V) return sushi_error(SUSHI_EINVAL, "ds_train_forward: teacher top-%d exceeds the vocabulary %d", tk->k, V);
    for (size_t i = 0; i < (size_t)N * K; i++)
        if (tk->topk_ids[i] < 0 || tk->topk_ids[i] >= V)
            return sushi_error(SUSHI_EINVAL, "ds_train_forward: teacher top-k id %d at row %zu is outside [0, %d)",
                               tk->topk_ids[i], i / K, V);
    if (st->k_alloc < tk->k) {
        void *old[] = {st->topk_ids, st->topk_logprobs, st->tail};
        for (int i = 0; i < 3; i++)
            if (old[i]) o->free(old[i]);
        st->topk_ids = o->alloc((size_t)N * K * 4);
        st->topk_logprobs = o->alloc((size_t)N * K * 4);
        st->tail = o->alloc((size_t)N * 4);
        st->k_alloc = tk->k;
        if (!st->topk_ids || !st->topk_logprobs || !st->tail) {
            st->k_alloc = 0;
            return sushi_error(SUSHI_ENOMEM, "ds_train_forward: teacher buffers (K %d)", tk->k);
        }
    }
    rc = o->to_device(st->topk_ids, tk->topk_ids, (size_t)N * K * 4);
    if (!rc) rc = o->to_device(st->topk_logprobs, tk->topk_logprobs, (size_t)N * K * 4);
    if (!rc) rc = o->to_device(st->tail, tk->tail_logprob, (size_t)N * 4);
    return rc;
}

/* embedding, layers, final norm and LM head into st->logits, after train_inputs */
static int train_body(struct ds_train *t) {
    struct ds_train_state *st = t->st;
    struct ds_model *m = &t->m;
    const struct ds_config *c = &m->cfg;
    const struct ops *o = m->ops;
    size_t es = dtype_size(o->act_dtype), N = (size_t)st->N, C = (size_t)c->C, NC = N * C;
    int rc = o->embedding_forward(st->resid, st->ids, m->embed, (int)N, c->C);
    for (int l = 0; !rc && l < c->L; l++) {
        const struct ds_layer *y = &m->layers[l];
        void *x = AT(st->resid, 2 * l * NC), *mid = AT(st->resid, (2 * l + 1) * NC), *out = AT(st->resid, (2 * l + 2) * NC);
        void *xa = AT(st->xn, 2 * l * NC), *xf = AT(st->xn, (2 * l + 1) * NC);
        rc = o->rmsnorm_forward(xa, st->rstd + 2 * l * N, x, y->in_norm, (int)N, c->C, c->eps);
        for (int s = 0; !rc && s < st->n_seg; s++) {
            ds_cache_reset(&st->kc);
            size_t off = (size_t)st->seg_start[s] * C;
            rc = ds_mla_forward(m, l, &st->kc, AT(xa, off), st->seg_len[s], AT(st->d, off));
        }
        if (!rc) rc = o->add(mid, x, st->d, NC);
        if (!rc) rc = o->rmsnorm_forward(xf, st->rstd + (2 * l + 1) * N, mid, y->post_norm, (int)N, c->C, c->eps);
        if (!rc) rc = ds_ffn_forward(m, l, xf, (int)N, st->d);
        if (!rc) rc = o->add(out, mid, st->d, NC);
    }
    if (!rc) rc = o->rmsnorm_forward(st->lnf, st->lnf_rstd, AT(st->resid, 2 * (size_t)c->L * NC), m->final_norm,
                                     (int)N, c->C, c->eps);
    if (!rc) rc = o->matmul(st->logits, st->lnf, m->head, (int)N, c->vocab, c->C, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    return rc;
}

int ds_train_forward(struct ds_train *t, const int32_t *ids, const int32_t *targets, const int32_t *doc_ids,
                     const struct student_teacher *teacher, const struct student_loss_cfg *lc, float *loss) {
    if (!t || !t->st || !ids || !targets || !lc || !loss)
        return sushi_error(SUSHI_EINVAL, "ds_train_forward: NULL argument");
    if (teacher && !(lc->temperature > 0))
        return sushi_error(SUSHI_EINVAL, "ds_train_forward: KD temperature must be > 0 (got %g)", (double)lc->temperature);
    struct ds_train_state *st = t->st;
    const struct ds_config *c = &t->m.cfg;
    const struct ops *o = t->m.ops;
    size_t N = (size_t)st->N;
    st->have_dlogits = 0;
    int rc = train_inputs(t, ids, targets, doc_ids, teacher);
    if (!rc) rc = train_body(t);
    struct loss_args la = {
        .N = (int)N, .vocab = c->vocab, .vocab_padded = c->vocab, .smoothing = lc->smoothing,
        .alpha = teacher ? lc->alpha : 0.0f, .mode = lc->mode, .temperature = lc->temperature,
        .jsd_beta = lc->jsd_beta, .k = teacher ? teacher->k : 0, .topk_ids = teacher ? st->topk_ids : NULL,
        .topk_logprobs = teacher ? st->topk_logprobs : NULL, .tail_logprob = teacher ? st->tail : NULL,
        .grad_scale = st->n_valid ? (t->loss_scale > 0 ? t->loss_scale : 1.0f) / (float)st->n_valid : 0.0f,
    };
    if (!rc && !isfinite(la.grad_scale))
        rc = sushi_error(SUSHI_EINVAL, "ds_train_forward: loss_scale %g is not usable", t->loss_scale);
    if (!rc) rc = o->loss_forward_backward(st->dev_loss, NULL, NULL, st->logits, st->logits, st->targets, &la);
    if (!rc) rc = o->to_host(st->row_loss, st->dev_loss, N * sizeof(float));
    if (rc) return rc;
    double sum = 0;
    for (size_t i = 0; i < N; i++) sum += targets[i] >= 0 ? st->row_loss[i] : 0.0;
    *loss = st->n_valid ? (float)(sum / st->n_valid) : 0.0f;
    st->have_dlogits = 1;
    return 0;
}

int ds_train_logits(struct ds_train *t, const int32_t *ids, const int32_t *doc_ids, float *logits) {
    if (!t || !t->st || !ids || !logits) return sushi_error(SUSHI_EINVAL, "ds_train_logits: NULL argument");
    struct ds_train_state *st = t->st;
    const struct ops *o = t->m.ops;
    size_t n = (size_t)st->N * (size_t)t->m.cfg.vocab;
    st->have_dlogits = 0;   /* the activations no longer match a loss */
    int rc = train_inputs(t, ids, NULL, doc_ids, NULL);
    if (!rc) rc = train_body(t);
    if (rc) return rc;
    if (o->act_dtype == DT_F32) return o->to_host(logits, st->logits, n * sizeof(float));
    float *f = o->alloc(n * sizeof(float));
    if (!f) return sushi_error(SUSHI_ENOMEM, "ds_train_logits: out of backend memory");
    rc = o->act_to_f32(f, st->logits, n);
    if (!rc) rc = o->to_host(logits, f, n * sizeof(float));
    o->free(f);
    return rc;
}

int ds_train_backward(struct ds_train *t) {
    if (!t || !t->st) return sushi_error(SUSHI_EINVAL, "ds_train_backward: no model");
    struct ds_train_state *st = t->st;
    if (!st->have_dlogits) return sushi_error(SUSHI_EINVAL, "ds_train_backward: no forward pass to differentiate");
    st->have_dlogits = 0;
    struct ds_model *m = &t->m;
    const struct ds_config *c = &m->cfg;
    const struct ops *o = m->ops;
    size_t es = dtype_size(o->act_dtype), N = (size_t)st->N, C = (size_t)c->C, NC = N * C;
    int n = (int)N, L = c->L;
    /* logits = lnf · headᵀ; st->logits holds dlogits */
    int rc = o->matmul(st->d, st->logits, m->head, n, c->C, c->vocab, 0, 0, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = o->matmul(t->g_head, st->logits, st->lnf, c->vocab, c->C, n, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    if (!rc) rc = o->rmsnorm_backward(st->dresid, t->g_final_norm, st->d, AT(st->resid, 2 * (size_t)L * NC),
                                      m->final_norm, st->lnf_rstd, n, c->C);
    for (int l = L - 1; !rc && l >= 0; l--) {
        const struct ds_layer *y = &m->layers[l];
        struct ds_layer *g = &t->g[l];
        void *x = AT(st->resid, 2 * l * NC), *mid = AT(st->resid, (2 * l + 1) * NC);
        void *xa = AT(st->xn, 2 * l * NC), *xf = AT(st->xn, (2 * l + 1) * NC);
        /* out = mid + FFN(rmsnorm(mid)) */
        rc = ds_ffn_backward(m, l, xf, n, st->dresid, g, st->d);
        if (!rc) rc = o->rmsnorm_backward(st->dtmp, g->post_norm, st->d, mid, y->post_norm, st->rstd + (2 * l + 1) * N,
                                          n, c->C);
        if (!rc) rc = o->axpy(st->dresid, 1.0f, st->dtmp, NC);
        /* mid = x + MLA(rmsnorm(x)), per segment */
        for (int s = 0; !rc && s < st->n_seg; s++) {
            size_t off = (size_t)st->seg_start[s] * C;
            rc = ds_mla_backward(m, l, AT(xa, off), st->seg_len[s], AT(st->dresid, off), g, AT(st->d, off));
        }
        if (!rc) rc = o->rmsnorm_backward(st->dtmp, g->in_norm, st->d, x, y->in_norm, st->rstd + 2 * l * N, n, c->C);
        if (!rc) rc = o->axpy(st->dresid, 1.0f, st->dtmp, NC);
    }
    if (!rc) rc = o->embedding_backward(t->g_embed, st->ids, st->dresid, n, c->C);
    return rc;
}
