/* Student forward pass, top to bottom: embedding → L × [RMSNorm → GQA attention with
 * RoPE → residual → RMSNorm → SwiGLU → residual] → RMSNorm → LM head → fused loss
 * (label-smoothed CE, optionally mixed with the top-K KD divergence). The loss op
 * leaves dlogits in the logits buffer, ready for student_backward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/student/student.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ < 0) return rc_; } while (0)

static void *at(void *base, size_t elems, size_t es) { return (char *)base + elems * es; }

/* attention shape over the fused qkv rows of one layer */
void student_attn_shape(const struct student_model *m, struct attn_shape *s) {
    const struct student_config *c = &m->cfg;
    int QKV = (c->n_heads + 2 * c->n_kv_heads) * c->d_head;
    memset(s, 0, sizeof *s);
    s->B = m->B;
    s->T = m->S;
    s->H = c->n_heads;
    s->G = c->n_kv_heads;
    s->dqk = s->dv = c->d_head;
    s->q_stride = s->k_stride = s->v_stride = QKV;
    s->o_stride = c->n_heads * c->d_head;
    s->scale = 1.0f / sqrtf((float)c->d_head);
    s->window = c->window;
    s->doc_ids = m->have_doc_ids ? m->in.doc_ids : NULL;
}

/* RoPE over the q heads (which=0) or k heads (which=1) of fused qkv rows */
void student_rope_shape(const struct student_model *m, int which, struct rope_shape *r) {
    const struct student_config *c = &m->cfg;
    memset(r, 0, sizeof *r);
    r->N = m->B * m->S;
    r->nheads = which ? c->n_kv_heads : c->n_heads;
    r->row_stride = (c->n_heads + 2 * c->n_kv_heads) * c->d_head;
    r->head_stride = c->d_head;
    r->offset = which ? c->n_heads * c->d_head : 0;
    r->rot_dim = c->d_head;
    r->max_pos = c->max_seq;
    r->pos = m->in.pos;
    r->cos = m->rope_cos;
    r->sin = m->rope_sin;
}

void student_block_acts(const struct student_model *m, int l, int slot, struct block_acts *v) {
    const struct student_config *c = &m->cfg;
    const struct student_acts *a = &m->a;
    size_t es = dtype_size(m->ops->act_dtype), N = (size_t)m->B * m->S, s = (size_t)slot;
    size_t C = (size_t)c->d_model, HD = (size_t)c->n_heads * c->d_head, F = (size_t)c->d_ff;
    size_t QKV = (size_t)(c->n_heads + 2 * c->n_kv_heads) * c->d_head;
    v->x = at(a->resid, (size_t)l * N * C, es);
    v->ln1 = at(a->ln1, s * N * C, es);
    v->rstd1 = a->ln1_rstd + s * N;
    v->qkv = at(a->qkv, s * N * QKV, es);
    v->atty = at(a->atty, s * N * HD, es);
    v->lse = a->lse + s * N * c->n_heads;
    v->x2 = at(a->resid2, s * N * C, es);
    v->ln2 = at(a->ln2, s * N * C, es);
    v->rstd2 = a->ln2_rstd + s * N;
    v->fch = at(a->fch, s * N * 2 * F, es);
    v->fcsw = at(a->fcsw, s * N * F, es);
}

int student_block_forward(struct student_model *m, int l, int slot) {
    const struct ops *o = m->ops;
    const struct student_config *c = &m->cfg;
    struct student_acts *a = &m->a;
    size_t es = dtype_size(o->act_dtype);
    int N = m->B * m->S, C = c->d_model, HD = c->n_heads * c->d_head, F = c->d_ff;
    int QKV = (c->n_heads + 2 * c->n_kv_heads) * c->d_head;
    struct block_acts v;
    student_block_acts(m, l, slot, &v);
    void *xout = at(a->resid, (size_t)(l + 1) * N * C, es); /* (N, C) block output */
    const void *qkvw = at(m->w.qkvw, (size_t)l * QKV * C, es);
    const void *ow = at(m->w.ow, (size_t)l * C * HD, es);
    const void *fcw = at(m->w.fcw, (size_t)l * 2 * F * C, es);
    const void *downw = at(m->w.downw, (size_t)l * C * F, es);
    struct attn_shape as;
    struct rope_shape rq, rk;
    student_attn_shape(m, &as);
    student_rope_shape(m, 0, &rq);
    student_rope_shape(m, 1, &rk);

    CHECK(o->rmsnorm_forward(v.ln1, v.rstd1, v.x, at(m->w.ln1w, (size_t)l * C, es), N, C, c->norm_eps));
    CHECK(o->matmul(v.qkv, v.ln1, qkvw, N, QKV, C, 0, 1, 1.0f, 0.0f, 0, 0, 0));    /* (N, QKV) */
    CHECK(o->rope_forward(v.qkv, &rq));
    CHECK(o->rope_forward(v.qkv, &rk));
    CHECK(o->attention_forward(v.atty, v.lse, v.qkv, at(v.qkv, HD, es),
                               at(v.qkv, (size_t)HD + c->n_kv_heads * c->d_head, es), &as));
    CHECK(o->copy(v.x2, v.x, (size_t)N * C * es));
    CHECK(o->matmul(v.x2, v.atty, ow, N, C, HD, 0, 1, 1.0f, 1.0f, 0, 0, 0));     /* x + o_proj */
    CHECK(o->rmsnorm_forward(v.ln2, v.rstd2, v.x2, at(m->w.ln2w, (size_t)l * C, es), N, C, c->norm_eps));
    CHECK(o->matmul(v.fch, v.ln2, fcw, N, 2 * F, C, 0, 1, 1.0f, 0.0f, 0, 0, 0));   /* (N, 2F) */
    CHECK(o->swiglu_forward(v.fcsw, v.fch, N, F));
    CHECK(o->copy(xout, v.x2, (size_t)N * C * es));
    CHECK(o->matmul(xout, v.fcsw, downw, N, C, F, 0, 1, 1.0f, 1.0f, 0, 0, 0));  /* x2 + down */
    return 0;
}

/* host ids/targets/doc ids → backend memory; RoPE positions restart per document. With
 * a prefix, ids and positions cover the S = P + T sequence rows (id 0 on prefix rows,
 * which the prefix overwrites) and targets stay the (B, T) text targets. */
static int upload_inputs(struct student_model *m, const int32_t *ids, const int32_t *targets,
                         const int32_t *doc_ids) {
    const struct student_config *c = &m->cfg;
    int N = m->B * m->T, P = m->P, NS = m->B * m->S;
    int32_t *pos = malloc((size_t)NS * sizeof *pos);
    int32_t *sids = P ? malloc((size_t)NS * sizeof *sids) : NULL;
    if (!pos || (P && !sids)) {
        free(pos);
        return sushi_error(SUSHI_ENOMEM, "student_forward: positions");
    }
    int rc = 0;
    m->n_valid = 0;
    for (int n = 0; n < N && !rc; n++) {
        if (ids[n] < 0 || ids[n] >= c->vocab_padded)
            rc = sushi_error(SUSHI_EINVAL, "student_forward: token id %d at row %d outside [0,%d)",
                             ids[n], n, c->vocab_padded);
        else if (targets[n] >= c->vocab)
            rc = sushi_error(SUSHI_EINVAL, "student_forward: target %d at row %d ≥ vocab %d",
                             targets[n], n, c->vocab);
        m->n_valid += targets[n] >= 0;
        int t = n % m->T;
        if (!doc_ids) pos[n] = t;
        else pos[n] = (t > 0 && doc_ids[n] == doc_ids[n - 1]) ? pos[n - 1] + 1 : 0;
    }
    if (P) {  /* sequence row s of sample b: prefix row s < P, then text token s − P */
        for (int n = 0; n < NS; n++) {
            int b = n / m->S, s = n % m->S;
            pos[n] = s;
            sids[n] = s < P ? 0 : ids[b * m->T + s - P];
        }
    }
    m->have_doc_ids = doc_ids != NULL;
    if (!rc) rc = m->ops->to_device(m->in.ids, P ? sids : ids, (size_t)NS * 4);
    if (!rc) rc = m->ops->to_device(m->in.targets, targets, (size_t)N * 4);
    if (!rc) rc = m->ops->to_device(m->in.pos, pos, (size_t)NS * 4);
    if (!rc && doc_ids) rc = m->ops->to_device(m->in.doc_ids, doc_ids, (size_t)N * 4);
    free(pos);
    free(sids);
    return rc;
}

static int upload_teacher(struct student_model *m, const struct student_teacher *t) {
    const struct ops *o = m->ops;
    size_t N = (size_t)m->B * m->T, K = t->k;
    if (t->k <= 0 || !t->topk_ids || !t->topk_logprobs || !t->tail_logprob)
        return sushi_error(SUSHI_EINVAL, "student_forward: teacher outputs incomplete (k=%d)", t->k);
    for (size_t i = 0; i < N * K; i++)
        if (t->topk_ids[i] < 0 || t->topk_ids[i] >= m->cfg.vocab)
            return sushi_error(SUSHI_EINVAL, "student_forward: teacher top-k id %d at %zu outside vocab %d",
                               t->topk_ids[i], i, m->cfg.vocab);
    if (m->in.k_alloc < t->k) {
        if (m->in.topk_ids) o->free(m->in.topk_ids);
        if (m->in.topk_logprobs) o->free(m->in.topk_logprobs);
        if (!m->in.tail_logprob) m->in.tail_logprob = o->alloc(N * 4);
        m->in.topk_ids = o->alloc(N * K * 4);
        m->in.topk_logprobs = o->alloc(N * K * 4);
        m->in.k_alloc = t->k;
        if (!m->in.topk_ids || !m->in.topk_logprobs || !m->in.tail_logprob) {
            m->in.k_alloc = 0;
            return sushi_error(SUSHI_ENOMEM, "student_forward: teacher buffers (K=%d)", t->k);
        }
    }
    CHECK(o->to_device(m->in.topk_ids, t->topk_ids, N * K * 4));
    CHECK(o->to_device(m->in.topk_logprobs, t->topk_logprobs, N * K * 4));
    return o->to_device(m->in.tail_logprob, t->tail_logprob, N * 4);
}

/* logits (B·T, Vp) of the text rows of lnf (B·S, C): one matmul without a prefix, one
 * per sample with one (the text rows of a sample are contiguous, the samples are not) */
static int lm_head_forward(struct student_model *m, const void *lmw) {
    const struct ops *o = m->ops;
    const struct student_config *c = &m->cfg;
    size_t es = dtype_size(o->act_dtype);
    int C = c->d_model, Vp = c->vocab_padded;
    if (!m->P)
        return o->matmul(m->a.logits, m->a.lnf, lmw, m->B * m->T, Vp, C, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    for (int b = 0; b < m->B; b++)
        CHECK(o->matmul(at(m->a.logits, (size_t)b * m->T * Vp, es),
                        at(m->a.lnf, ((size_t)b * m->S + m->P) * C, es), lmw, m->T, Vp, C, 0, 1,
                        1.0f, 0.0f, 0, 0, 0));
    return 0;
}

int student_forward(struct student_model *m, const int32_t *ids, const int32_t *targets,
                    const int32_t *doc_ids, const struct student_teacher *teacher,
                    const struct student_loss_cfg *lc, float *loss) {
    return student_forward_prefix(m, NULL, ids, targets, doc_ids, teacher, lc, loss);
}

int student_forward_prefix(struct student_model *m, const void *prefix, const int32_t *ids,
                           const int32_t *targets, const int32_t *doc_ids,
                           const struct student_teacher *teacher,
                           const struct student_loss_cfg *lc, float *loss) {
    if (!m || !m->master || !ids || !targets || !lc || !loss)
        return sushi_error(SUSHI_EINVAL, "student_forward: NULL argument");
    const struct ops *o = m->ops;
    const struct student_config *c = &m->cfg;
    struct student_acts *a = &m->a;
    size_t es = dtype_size(o->act_dtype);
    int N = m->B * m->T, NS = m->B * m->S, C = c->d_model, L = c->n_layers;
    if (m->P && !prefix) return sushi_error(SUSHI_EINVAL, "student_forward: the model has a %d-row prefix (model.encoders) but none was given", m->P);
    if (!m->P && prefix) return sushi_error(SUSHI_EINVAL, "student_forward: a prefix was given but model.encoders is off");
    if (c->doc_mask && !doc_ids) return sushi_error(SUSHI_EINVAL, "student_forward: doc_mask set but no doc_ids");
    CHECK(upload_inputs(m, ids, targets, c->doc_mask ? doc_ids : NULL));
    if (teacher) CHECK(upload_teacher(m, teacher));

    CHECK(o->embedding_forward(a->resid, m->in.ids, m->w.wte, NS, C));
    for (int b = 0; b < m->B && m->P; b++)     /* prefix rows replace the placeholder ids' rows */
        CHECK(o->copy(at(a->resid, (size_t)b * m->S * C, es), at((void *)prefix, (size_t)b * m->P * C, es),
                      (size_t)m->P * C * es));
    for (int l = 0; l < L; l++) CHECK(student_block_forward(m, l, c->grad_checkpoint ? 0 : l));
    CHECK(o->rmsnorm_forward(a->lnf, a->lnf_rstd, at(a->resid, (size_t)L * NS * C, es), m->w.lnfw,
                             NS, C, c->norm_eps));
    CHECK(lm_head_forward(m, c->tied ? m->w.wte : m->w.lmw));

    struct loss_args la = {
        .N = N, .vocab = c->vocab, .vocab_padded = c->vocab_padded, .smoothing = lc->smoothing,
        .alpha = teacher ? lc->alpha : 0.0f, .mode = lc->mode, .temperature = lc->temperature,
        .jsd_beta = lc->jsd_beta, .k = teacher ? teacher->k : 0,
        .topk_ids = teacher ? m->in.topk_ids : NULL,
        .topk_logprobs = teacher ? m->in.topk_logprobs : NULL,
        .tail_logprob = teacher ? m->in.tail_logprob : NULL,
        .grad_scale = m->n_valid ? (m->loss_scale > 0 ? m->loss_scale : 1.0f) / (float)m->n_valid : 0.0f,
    };
    if (!isfinite(la.grad_scale))
        return sushi_error(SUSHI_EINVAL, "student_forward: loss_scale %g is not usable", m->loss_scale);
    if (teacher && !(la.temperature > 0)) return sushi_error(SUSHI_EINVAL, "student_forward: KD temperature must be > 0");
    /* per-row losses land in backend memory (dtmp is free until backward), then host */
    float *dev_loss = (float *)a->dtmp;
    CHECK(o->loss_forward_backward(dev_loss, NULL, NULL, a->logits, a->logits, m->in.targets, &la));
    CHECK(o->to_host(a->row_loss, dev_loss, (size_t)N * sizeof(float)));
    double sum = 0;
    for (int n = 0; n < N; n++) sum += targets[n] >= 0 ? a->row_loss[n] : 0.0;
    *loss = m->last_loss = m->n_valid ? (float)(sum / m->n_valid) : 0.0f;
    m->have_dlogits = 1;
    return 0;
}
