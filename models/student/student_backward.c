/* Student backward pass: the forward in reverse, one explicit step per op. Parameter
 * gradients accumulate (+=) so micro-batches add up; activation gradients overwrite.
 * With grad_checkpoint each block is recomputed from its saved input first. */
#include "common/core/log.h"
#include "models/student/student.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ < 0) return rc_; } while (0)

static void *at(void *base, size_t elems, size_t es) { return (char *)base + elems * es; }

/* dresid holds d(block output); on return it holds d(block input) */
static int block_backward(struct student_model *m, int l, int slot) {
    const struct ops *o = m->ops;
    const struct student_config *c = &m->cfg;
    struct student_acts *a = &m->a;
    size_t es = dtype_size(o->act_dtype);
    int N = m->B * m->S, C = c->d_model, HD = c->n_heads * c->d_head, F = c->d_ff;
    int GD = c->n_kv_heads * c->d_head, QKV = HD + 2 * GD;
    struct block_acts v;
    student_block_acts(m, l, slot, &v);
    size_t oq = (size_t)l * QKV * C, oo = (size_t)l * C * HD, of = (size_t)l * 2 * F * C;
    size_t od = (size_t)l * C * F, on = (size_t)l * C;
    struct attn_shape as;
    struct rope_shape rq, rk;
    student_attn_shape(m, &as);
    student_rope_shape(m, 0, &rq);
    student_rope_shape(m, 1, &rk);

    /* MLP: xout = x2 + down(swiglu(fc(ln2(x2)))) */
    CHECK(o->matmul(a->dfcsw, a->dresid, at(m->w.downw, od, es), N, F, C, 0, 0, 1.0f, 0.0f, 0, 0, 0));
    CHECK(o->matmul(at(m->g.downw, od, es), a->dresid, v.fcsw, C, F, N, 1, 0, 1.0f, 1.0f, 0, 0, 0));
    CHECK(o->swiglu_backward(a->dfch, a->dfcsw, v.fch, N, F));
    CHECK(o->matmul(a->dln, a->dfch, at(m->w.fcw, of, es), N, C, 2 * F, 0, 0, 1.0f, 0.0f, 0, 0, 0));
    CHECK(o->matmul(at(m->g.fcw, of, es), a->dfch, v.ln2, 2 * F, C, N, 1, 0, 1.0f, 1.0f, 0, 0, 0));
    CHECK(o->rmsnorm_backward(a->dtmp, at(m->g.ln2w, on, es), a->dln, v.x2, at(m->w.ln2w, on, es),
                              v.rstd2, N, C));
    CHECK(o->axpy(a->dresid, 1.0f, a->dtmp, (size_t)N * C));               /* d x2 */

    /* attention: x2 = x + o(attn(rope(qkv(ln1(x))))) */
    CHECK(o->matmul(a->datty, a->dresid, at(m->w.ow, oo, es), N, HD, C, 0, 0, 1.0f, 0.0f, 0, 0, 0));
    CHECK(o->matmul(at(m->g.ow, oo, es), a->dresid, v.atty, C, HD, N, 1, 0, 1.0f, 1.0f, 0, 0, 0));
    CHECK(o->attention_backward(a->dqkv, at(a->dqkv, HD, es), at(a->dqkv, (size_t)HD + GD, es),
                                a->datty, v.atty, v.lse, v.qkv, at(v.qkv, HD, es),
                                at(v.qkv, (size_t)HD + GD, es), &as));
    CHECK(o->rope_backward(a->dqkv, &rq));
    CHECK(o->rope_backward(a->dqkv, &rk));
    CHECK(o->matmul(a->dln, a->dqkv, at(m->w.qkvw, oq, es), N, C, QKV, 0, 0, 1.0f, 0.0f, 0, 0, 0));
    CHECK(o->matmul(at(m->g.qkvw, oq, es), a->dqkv, v.ln1, QKV, C, N, 1, 0, 1.0f, 1.0f, 0, 0, 0));
    CHECK(o->rmsnorm_backward(a->dtmp, at(m->g.ln1w, on, es), a->dln, v.x, at(m->w.ln1w, on, es),
                              v.rstd1, N, C));
    return o->axpy(a->dresid, 1.0f, a->dtmp, (size_t)N * C);             /* d x */
}

/* d lnf (B·S, C) into a->dln and dlmw += from dlogits (B·T, Vp) of the text rows;
 * prefix rows get no gradient from the head (mirror of lm_head_forward) */
static int lm_head_backward(struct student_model *m, const void *lmw, void *dlmw) {
    const struct ops *o = m->ops;
    struct student_acts *a = &m->a;
    size_t es = dtype_size(o->act_dtype);
    int C = m->cfg.d_model, Vp = m->cfg.vocab_padded, N = m->B * m->T;
    if (!m->P) {
        CHECK(o->matmul(a->dln, a->logits, lmw, N, C, Vp, 0, 0, 1.0f, 0.0f, 0, 0, 0));
        return o->matmul(dlmw, a->logits, a->lnf, Vp, C, N, 1, 0, 1.0f, 1.0f, 0, 0, 0);
    }
    CHECK(o->fill(a->dln, 0.0f, (size_t)m->B * m->S * C));
    for (int b = 0; b < m->B; b++) {
        const void *dlog = at(a->logits, (size_t)b * m->T * Vp, es);
        size_t row = (size_t)b * m->S + m->P;
        CHECK(o->matmul(at(a->dln, row * C, es), dlog, lmw, m->T, C, Vp, 0, 0, 1.0f, 0.0f, 0, 0, 0));
        CHECK(o->matmul(dlmw, dlog, at(a->lnf, row * C, es), Vp, C, m->T, 1, 0, 1.0f, 1.0f, 0, 0, 0));
    }
    return 0;
}

int student_backward(struct student_model *m) { return student_backward_prefix(m, NULL); }

int student_backward_prefix(struct student_model *m, void *dprefix) {
    if (!m || !m->master) return sushi_error(SUSHI_EINVAL, "student_backward: no model");
    if (!m->have_dlogits) return sushi_error(SUSHI_EINVAL, "student_backward: no forward pass to differentiate");
    if (dprefix && !m->P) return sushi_error(SUSHI_EINVAL, "student_backward: d(prefix) asked for but model.encoders is off");
    m->have_dlogits = 0; /* backward consumes the forward's activations */
    const struct ops *o = m->ops;
    const struct student_config *c = &m->cfg;
    struct student_acts *a = &m->a;
    size_t es = dtype_size(o->act_dtype);
    int NS = m->B * m->S, C = c->d_model, L = c->n_layers;

    /* logits = lnf · lmwᵀ on the text rows; a->logits holds dlogits (B·T, Vp) */
    CHECK(lm_head_backward(m, c->tied ? m->w.wte : m->w.lmw, c->tied ? m->g.wte : m->g.lmw));
    CHECK(o->rmsnorm_backward(a->dresid, m->g.lnfw, a->dln, at(a->resid, (size_t)L * NS * C, es),
                              m->w.lnfw, a->lnf_rstd, NS, C));
    for (int l = L - 1; l >= 0; l--) {
        int slot = c->grad_checkpoint ? 0 : l;
        if (c->grad_checkpoint) CHECK(student_block_forward(m, l, 0));
        CHECK(block_backward(m, l, slot));
    }
    /* prefix rows: their gradient goes to the encoders, not to the placeholder id 0 */
    for (int b = 0; b < m->B && m->P; b++) {
        void *rows = at(a->dresid, (size_t)b * m->S * C, es);
        if (dprefix) CHECK(o->copy(at(dprefix, (size_t)b * m->P * C, es), rows, (size_t)m->P * C * es));
        CHECK(o->fill(rows, 0.0f, (size_t)m->P * C));
    }
    return o->embedding_backward(m->g.wte, m->in.ids, a->dresid, NS, C);
}
