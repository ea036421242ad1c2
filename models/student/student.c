/* The student model's configuration, parameter layout (one buffer, HF-named views),
 * allocation and deterministic initialisation. Forward is in student_forward.c,
 * backward in student_backward.c, RoPE tables in rope_table.c. */
#include "models/student/student.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/rng.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ < 0) return rc_; } while (0)

int student_config_validate(struct student_config *c) {
    if (!c) return sushi_error(SUSHI_EINVAL, "student config: NULL");
    if (c->n_layers <= 0) return sushi_error(SUSHI_EINVAL, "student config: n_layers must be > 0 (got %d)", c->n_layers);
    if (c->d_model <= 0) return sushi_error(SUSHI_EINVAL, "student config: d_model must be > 0 (got %d)", c->d_model);
    if (c->n_heads <= 0) return sushi_error(SUSHI_EINVAL, "student config: n_heads must be > 0 (got %d)", c->n_heads);
    if (c->n_kv_heads == 0) c->n_kv_heads = c->n_heads;
    if (c->n_kv_heads < 0 || c->n_heads % c->n_kv_heads)
        return sushi_error(SUSHI_EINVAL, "student config: n_kv_heads %d must divide n_heads %d",
                           c->n_kv_heads, c->n_heads);
    if (c->d_head == 0) {
        if (c->d_model % c->n_heads)
            return sushi_error(SUSHI_EINVAL, "student config: d_model %d not divisible by n_heads %d; set d_head",
                               c->d_model, c->n_heads);
        c->d_head = c->d_model / c->n_heads;
    }
    if (c->d_head <= 0 || c->d_head % 2)
        return sushi_error(SUSHI_EINVAL, "student config: d_head must be even and > 0 (got %d)", c->d_head);
    if (c->d_ff <= 0) return sushi_error(SUSHI_EINVAL, "student config: d_ff must be > 0 (got %d)", c->d_ff);
    if (c->vocab <= 0) return sushi_error(SUSHI_EINVAL, "student config: vocab must be > 0 (got %d)", c->vocab);
    if (c->vocab_padded == 0) c->vocab_padded = c->vocab;
    if (c->vocab_padded < c->vocab)
        return sushi_error(SUSHI_EINVAL, "student config: vocab_padded %d < vocab %d", c->vocab_padded, c->vocab);
    if (c->max_seq <= 0) return sushi_error(SUSHI_EINVAL, "student config: max_seq must be > 0 (got %d)", c->max_seq);
    if (c->rope_theta == 0) c->rope_theta = 10000.0f;
    if (!(c->rope_theta > 1.0f)) return sushi_error(SUSHI_EINVAL, "student config: rope_theta must be > 1");
    if (c->norm_eps == 0) c->norm_eps = 1e-5f;
    if (!(c->norm_eps > 0)) return sushi_error(SUSHI_EINVAL, "student config: norm_eps must be > 0");
    if (c->window < 0) return sushi_error(SUSHI_EINVAL, "student config: window must be ≥ 0 (got %d)", c->window);
    if (encoder_enabled(&c->enc)) {
        c->enc.d_model = c->d_model;
        CHECK(encoder_config_validate(&c->enc));
        if (c->doc_mask)
            return sushi_error(SUSHI_EUNSUPPORTED, "student config: doc_mask cannot be combined with model.encoders");
        if (encoder_prefix_len(&c->enc) >= c->max_seq)
            return sushi_error(SUSHI_EINVAL, "student config: the encoders' prefix of %d rows leaves no room in max_seq %d",
                               encoder_prefix_len(&c->enc), c->max_seq);
    }
    struct rope_scaling *y = &c->rope_scaling;
    if (y->type == ROPE_SCALING_YARN) {
        if (!(y->factor >= 1.0f)) return sushi_error(SUSHI_EINVAL, "student config: rope_scaling.factor must be ≥ 1");
        if (y->original_max_position <= 0) y->original_max_position = c->max_seq;
        if (y->beta_fast == 0) y->beta_fast = 32.0f;
        if (y->beta_slow == 0) y->beta_slow = 1.0f;
    } else if (y->type != ROPE_SCALING_NONE) {
        return sushi_error(SUSHI_EUNSUPPORTED, "student config: rope_scaling.type %d unknown", (int)y->type);
    }
    return 0;
}

/* Lays out the parameter tensors in `base` (element size esz) and returns the element
 * count; *n_decay = elements of the leading matrices. base may be NULL to count. */
int student_layout(const struct student_config *c, void *base, size_t esz,
                   struct student_params *p, size_t *n_decay) {
    size_t L = c->n_layers, C = c->d_model, D = c->d_head, H = c->n_heads, G = c->n_kv_heads;
    size_t F = c->d_ff, Vp = c->vocab_padded, QKV = (H + 2 * G) * D;
    size_t sizes[9] = {Vp * C, L * QKV * C, L * C * H * D, L * 2 * F * C, L * C * F,
                       c->tied ? 0 : Vp * C, L * C, L * C, C};
    void **slots[9] = {&p->wte, &p->qkvw, &p->ow, &p->fcw, &p->downw, &p->lmw,
                       &p->ln1w, &p->ln2w, &p->lnfw};
    size_t off = 0;
    for (int i = 0; i < 9; i++) {
        *slots[i] = (base && sizes[i]) ? (char *)base + off * esz : NULL;
        off += sizes[i];
        if (i == 5 && n_decay) *n_decay = off;
    }
    if (off > (size_t)1 << 40) return sushi_error(SUSHI_EINVAL, "student: parameter count overflow");
    return 0;
}

size_t student_param_count(const struct student_config *c) {
    struct student_params p;
    size_t n = 0;
    if (!c) return 0;
    student_layout(c, NULL, 4, &p, &n);
    return n + (size_t)c->n_layers * c->d_model * 2 + c->d_model;
}

static int add_view(struct param_view *out, int *n, int max, const char *name, float *data,
                    int64_t rows, int64_t cols) {
    if (*n < max) {
        struct param_view *v = &out[*n];
        snprintf(v->name, sizeof v->name, "%s", name);
        v->data = data;
        v->ndim = cols ? 2 : 1;
        v->shape[0] = rows;
        v->shape[1] = cols;
        v->numel = (size_t)rows * (size_t)(cols ? cols : 1);
    }
    (*n)++;
    return 0;
}

int student_param_views(const struct student_config *c, float *base, struct param_view *out,
                        int max) {
    if (!c || !base || (!out && max > 0)) return sushi_error(SUSHI_EINVAL, "student_param_views: NULL argument");
    struct student_params p;
    CHECK(student_layout(c, base, sizeof(float), &p, NULL));
    int64_t L = c->n_layers, C = c->d_model, D = c->d_head, H = c->n_heads, G = c->n_kv_heads;
    int64_t F = c->d_ff, QKV = (H + 2 * G) * D;
    int n = 0;
    char name[96];
    add_view(out, &n, max, "model.embed_tokens.weight", p.wte, c->vocab_padded, C);
    for (int64_t l = 0; l < L; l++) {
        float *qkv = (float *)p.qkvw + l * QKV * C, *fc = (float *)p.fcw + l * 2 * F * C;
#define LAYER_VIEW(suffix, ptr, r, cc) \
        snprintf(name, sizeof name, "model.layers.%d.%s", (int)l, suffix); \
        add_view(out, &n, max, name, ptr, r, cc)
        LAYER_VIEW("self_attn.q_proj.weight", qkv, H * D, C);
        LAYER_VIEW("self_attn.k_proj.weight", qkv + H * D * C, G * D, C);
        LAYER_VIEW("self_attn.v_proj.weight", qkv + (H + G) * D * C, G * D, C);
        LAYER_VIEW("self_attn.o_proj.weight", (float *)p.ow + l * C * H * D, C, H * D);
        LAYER_VIEW("mlp.gate_proj.weight", fc, F, C);
        LAYER_VIEW("mlp.up_proj.weight", fc + F * C, F, C);
        LAYER_VIEW("mlp.down_proj.weight", (float *)p.downw + l * C * F, C, F);
        LAYER_VIEW("input_layernorm.weight", (float *)p.ln1w + l * C, C, 0);
        LAYER_VIEW("post_attention_layernorm.weight", (float *)p.ln2w + l * C, C, 0);
#undef LAYER_VIEW
    }
    add_view(out, &n, max, "model.norm.weight", p.lnfw, C, 0);
    if (!c->tied) add_view(out, &n, max, "lm_head.weight", p.lmw, c->vocab_padded, C);
    return n;
}

/* ---- allocation ---------------------------------------------------------------------- */

static int alloc_into(const struct ops *o, void **dst, size_t bytes, const char *what) {
    *dst = o->alloc(bytes ? bytes : 1);
    if (!*dst) return sushi_error(SUSHI_ENOMEM, "student: cannot allocate %zu bytes for %s", bytes, what);
    return 0;
}

static int alloc_acts(struct student_model *m) {
    const struct student_config *c = &m->cfg;
    const struct ops *o = m->ops;
    struct student_acts *a = &m->a;
    size_t es = dtype_size(o->act_dtype);
    size_t N = (size_t)m->B * m->S, C = c->d_model, L = c->n_layers, D = c->d_head;
    size_t H = c->n_heads, QKV = (H + 2 * c->n_kv_heads) * D, F = c->d_ff;
    size_t S = c->grad_checkpoint ? 1 : L;
    struct { void **p; size_t bytes; const char *what; } t[] = {
        {&a->resid, (L + 1) * N * C * es, "resid"},
        {&a->ln1, S * N * C * es, "ln1"},
        {(void **)&a->ln1_rstd, S * N * 4, "ln1_rstd"},
        {&a->qkv, S * N * QKV * es, "qkv"},
        {&a->atty, S * N * H * D * es, "atty"},
        {(void **)&a->lse, S * N * H * 4, "lse"},
        {&a->resid2, S * N * C * es, "resid2"},
        {&a->ln2, S * N * C * es, "ln2"},
        {(void **)&a->ln2_rstd, S * N * 4, "ln2_rstd"},
        {&a->fch, S * N * 2 * F * es, "fch"},
        {&a->fcsw, S * N * F * es, "fcsw"},
        {&a->lnf, N * C * es, "lnf"},
        {(void **)&a->lnf_rstd, N * 4, "lnf_rstd"},
        {&a->logits, N * c->vocab_padded * es, "logits"},
        {&a->dresid, N * C * es, "dresid"},
        {&a->dtmp, N * C * es, "dtmp"},
        {&a->dln, N * C * es, "dln"},
        {&a->dqkv, N * QKV * es, "dqkv"},
        {&a->datty, N * H * D * es, "datty"},
        {&a->dfch, N * 2 * F * es, "dfch"},
        {&a->dfcsw, N * F * es, "dfcsw"},
        {(void **)&m->in.ids, N * 4, "ids"},
        {(void **)&m->in.targets, N * 4, "targets"},
        {(void **)&m->in.doc_ids, N * 4, "doc_ids"},
        {(void **)&m->in.pos, N * 4, "positions"},
        {(void **)&m->rope_cos, (size_t)c->max_seq * D / 2 * 4, "rope cos"},
        {(void **)&m->rope_sin, (size_t)c->max_seq * D / 2 * 4, "rope sin"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) CHECK(alloc_into(o, t[i].p, t[i].bytes, t[i].what));
    a->row_loss = calloc(N, sizeof(float));
    if (!a->row_loss) return sushi_error(SUSHI_ENOMEM, "student: cannot allocate row losses");
    return 0;
}

static int upload_rope(struct student_model *m) {
    size_t n = (size_t)m->cfg.max_seq * m->cfg.d_head / 2;
    float *cs = malloc(2 * n * sizeof(float));
    if (!cs) return sushi_error(SUSHI_ENOMEM, "student: rope tables");
    int rc = student_rope_tables(&m->cfg, cs, cs + n);
    if (!rc) rc = m->ops->to_device(m->rope_cos, cs, n * sizeof(float));
    if (!rc) rc = m->ops->to_device(m->rope_sin, cs + n, n * sizeof(float));
    free(cs);
    return rc;
}

int student_create(struct student_model *m, const struct student_config *cfg,
                   const struct ops *ops, int B, int T, uint64_t seed) {
    if (!m || !cfg || !ops) return sushi_error(SUSHI_EINVAL, "student_create: NULL argument");
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    CHECK(student_config_validate(&m->cfg));
    m->P = encoder_prefix_len(&m->cfg.enc);
    if (B <= 0 || T <= 0 || T > m->cfg.max_seq - m->P)
        return sushi_error(SUSHI_EINVAL, "student_create: batch %dx%d invalid (max_seq %d, prefix %d)", B, T,
                           m->cfg.max_seq, m->P);
    m->ops = ops;
    m->B = B;
    m->T = T;
    m->S = m->P + T;
    size_t es = dtype_size(ops->act_dtype);
    struct student_params tmp;
    CHECK(student_layout(&m->cfg, NULL, 4, &tmp, &m->n_decay));
    m->n_params = student_param_count(&m->cfg);
    int rc = alloc_into(ops, (void **)&m->master, m->n_params * 4, "master weights");
    if (!rc) {
        if (ops->act_dtype == DT_F32) m->wbuf = m->master;
        else rc = alloc_into(ops, &m->wbuf, m->n_params * es, "compute weights");
    }
    if (!rc) rc = alloc_into(ops, &m->gbuf, m->n_params * es, "gradients");
    if (!rc) rc = student_layout(&m->cfg, m->wbuf, es, &m->w, NULL);
    if (!rc) rc = student_layout(&m->cfg, m->gbuf, es, &m->g, NULL);
    if (!rc) rc = alloc_acts(m);
    if (!rc) rc = upload_rope(m);
    if (!rc) rc = student_init(m, seed);
    if (rc) student_free(m);
    return rc;
}

void student_free(struct student_model *m) {
    if (!m || !m->ops) return;
    const struct ops *o = m->ops;
    struct student_acts *a = &m->a;
    void *bufs[] = {a->resid, a->ln1, a->ln1_rstd, a->qkv, a->atty, a->lse, a->resid2, a->ln2,
                    a->ln2_rstd, a->fch, a->fcsw, a->lnf, a->lnf_rstd, a->logits, a->dresid,
                    a->dtmp, a->dln, a->dqkv, a->datty, a->dfch, a->dfcsw, m->in.ids,
                    m->in.targets, m->in.doc_ids, m->in.pos, m->in.topk_ids,
                    m->in.topk_logprobs, m->in.tail_logprob, m->rope_cos, m->rope_sin,
                    m->gbuf, m->wbuf != (void *)m->master ? m->wbuf : NULL, m->master};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) o->free(bufs[i]);
    free(a->row_loss);
    memset(m, 0, sizeof *m);
}

int student_sync_weights(struct student_model *m) {
    if (!m || !m->master) return sushi_error(SUSHI_EINVAL, "student_sync_weights: no model");
    if (m->wbuf == (void *)m->master) return 0;
    return m->ops->f32_to_act(m->wbuf, m->master, m->n_params);
}

int student_init(struct student_model *m, uint64_t seed) {
    if (!m || !m->master) return sushi_error(SUSHI_EINVAL, "student_init: no model");
    const struct student_config *c = &m->cfg;
    float *h = malloc(m->n_params * sizeof(float));
    if (!h) return sushi_error(SUSHI_ENOMEM, "student_init: %zu parameters", m->n_params);
    struct student_params p;
    student_layout(c, h, sizeof(float), &p, NULL);
    struct rng r;
    rng_seed(&r, seed);
    rng_fill_normal(&r, h, m->n_decay, 0.0f, 0.02f);
    /* residual-stream projections: std 0.02 / sqrt(2L) keeps the stream's variance flat */
    float s = 1.0f / sqrtf(2.0f * c->n_layers);
    size_t n_ow = (size_t)c->n_layers * c->d_model * c->n_heads * c->d_head;
    size_t n_down = (size_t)c->n_layers * c->d_model * c->d_ff;
    for (size_t i = 0; i < n_ow; i++) ((float *)p.ow)[i] *= s;
    for (size_t i = 0; i < n_down; i++) ((float *)p.downw)[i] *= s;
    for (size_t i = m->n_decay; i < m->n_params; i++) h[i] = 1.0f;
    int rc = m->ops->to_device(m->master, h, m->n_params * sizeof(float));
    free(h);
    if (!rc) rc = student_sync_weights(m);
    if (!rc) rc = student_zero_grad(m);
    return rc;
}

int student_zero_grad(struct student_model *m) {
    if (!m || !m->gbuf) return sushi_error(SUSHI_EINVAL, "student_zero_grad: no model");
    return m->ops->fill(m->gbuf, 0.0f, m->n_params);
}
