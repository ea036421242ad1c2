/* Causal grouped-query attention on the CPU (shapes and masking: struct attn_shape in
 * kernels/ops.h). Work is cut into blocks of ATT_BQ queries; each block is two GEMMs
 * (S = scale·Q Kᵀ over the keys the block can see, then P·V) around an exact softmax
 * of its rows, so the masked upper triangle (and what lies before a sliding window) is
 * never computed. Forward runs one task per (batch, head). Backward recomputes P from
 * the saved log-sum-exp and runs one task per (batch, kv head), so the dK/dV sums over
 * the heads of a group stay inside one thread. GEMMs are single-threaded OpenBLAS calls
 * (the pool supplies the parallelism). */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "common/core/log.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/cpu_math.h"

#define ATT_BQ 64   /* queries per block */

struct att_ctx {
    const struct attn_shape *s;
    const float *q, *k, *v, *out, *dout, *lse_in;
    float *o, *lse, *dq, *dk, *dv;
    int rc;   /* a failure (scratch allocation), set atomically by any thread */
};

/* the keys block [i0, i1) can see: [*jlo, i1) */
static int att_key_begin(const struct attn_shape *s, int i0) {
    int jlo = s->window > 0 ? i0 - s->window + 1 : 0;
    return jlo < 0 ? 0 : jlo;
}

/* Masks row i of a score block over keys [jlo, jlo + nk): zeros outside the causal
 * (and window) range, −inf for other documents' keys inside it, so that exp gives 0
 * there. Returns the offset of the range's first key in the row; it ends at key i. */
static int att_row_mask(const struct attn_shape *s, const int32_t *doc, float *row, int nk, int jlo, int i) {
    int first = s->window > 0 && i - s->window + 1 > jlo ? i - s->window + 1 : jlo;
    int a = first - jlo, end = i - jlo + 1;
    memset(row, 0, sizeof(float) * (size_t)a);
    memset(row + end, 0, sizeof(float) * (size_t)(nk - end));
    if (doc)
        for (int jj = a; jj < end; jj++)
            if (doc[jlo + jj] != doc[i]) row[jj] = -INFINITY;
    return a;
}

/* one query block of head h in batch b: out rows and lse */
static void att_fwd_block(struct att_ctx *c, float *S, int b, int h, int i0, int i1) {
    const struct attn_shape *s = c->s;
    const int g = h * s->G / s->H, jlo = att_key_begin(s, i0), nk = i1 - jlo, bq = i1 - i0;
    const size_t row0 = (size_t)b * s->T;
    const int32_t *doc = s->doc_ids ? s->doc_ids + row0 : NULL;
    const float *Q = c->q + (row0 + i0) * s->q_stride + (size_t)h * s->dqk;
    const float *K = c->k + (row0 + jlo) * s->k_stride + (size_t)g * s->dqk;
    const float *V = c->v + (row0 + jlo) * s->v_stride + (size_t)g * s->dv;
    float *O = c->o + (row0 + i0) * s->o_stride + (size_t)h * s->dv;
    float *L = c->lse + ((size_t)b * s->H + h) * s->T;

    /* S [bq, nk] = scale · Q Kᵀ */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, nk, s->dqk, s->scale, Q, s->q_stride,
                K, s->k_stride, 0.0f, S, nk);
    for (int r = 0; r < bq; r++) {
        const int i = i0 + r, a = att_row_mask(s, doc, S + (size_t)r * nk, nk, jlo, i);
        float *row = S + (size_t)r * nk, *vis = row + a;
        const size_t len = (size_t)(i - jlo - a + 1);
        const float m = cpu_vmax(vis, len);
        const double sum = cpu_vexp_sum(vis, vis, len, m, 1.0f);
        cpu_vlin2(vis, vis, (float)(1.0 / sum), NULL, 0.0f, 0.0f, len);
        L[i] = m + (float)log(sum);
    }
    /* O [bq, dv] = P V */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, s->dv, nk, 1.0f, S, nk, V, s->v_stride,
                0.0f, O, s->o_stride);
}

static void att_fwd_range(void *p, size_t t0, size_t t1, int thread) {
    struct att_ctx *c = p;
    const struct attn_shape *s = c->s;
    float *S = cpu_scratch(thread, 0, (size_t)ATT_BQ * s->T);
    if (!S) {
        __atomic_store_n(&c->rc, SUSHI_ENOMEM, __ATOMIC_RELAXED);
        return;
    }
    for (size_t t = t0; t < t1; t++) {
        int b = (int)(t / s->H), h = (int)(t % s->H);
        for (int i0 = 0; i0 < s->T; i0 += ATT_BQ)
            att_fwd_block(c, S, b, h, i0, i0 + ATT_BQ < s->T ? i0 + ATT_BQ : s->T);
    }
}

/* one query block of head h: dq rows (overwritten), dk/dv rows of the group (+=) */
static void att_bwd_block(struct att_ctx *c, float *P, float *dP, int b, int h, int i0, int i1) {
    const struct attn_shape *s = c->s;
    const int g = h * s->G / s->H, jlo = att_key_begin(s, i0), nk = i1 - jlo, bq = i1 - i0;
    const size_t row0 = (size_t)b * s->T;
    const int32_t *doc = s->doc_ids ? s->doc_ids + row0 : NULL;
    const size_t qo = (row0 + i0) * s->q_stride + (size_t)h * s->dqk;
    const size_t ko = (row0 + jlo) * s->k_stride + (size_t)g * s->dqk;
    const size_t vo = (row0 + jlo) * s->v_stride + (size_t)g * s->dv;
    const size_t oo = (row0 + i0) * s->o_stride + (size_t)h * s->dv;
    const float *L = c->lse_in + ((size_t)b * s->H + h) * s->T;

    /* P = exp(scale · Q Kᵀ − lse) on visible keys, 0 elsewhere */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, nk, s->dqk, s->scale, c->q + qo,
                s->q_stride, c->k + ko, s->k_stride, 0.0f, P, nk);
    /* dP [bq, nk] = dO Vᵀ */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, nk, s->dv, 1.0f, c->dout + oo,
                s->o_stride, c->v + vo, s->v_stride, 0.0f, dP, nk);
    for (int r = 0; r < bq; r++) {
        const int i = i0 + r;
        const float *dO = c->dout + oo + (size_t)r * s->o_stride, *O = c->out + oo + (size_t)r * s->o_stride;
        float D = 0.0f;   /* Σ_d dO·O = Σ_j P·dP */
        for (int d = 0; d < s->dv; d++) D += dO[d] * O[d];
        float *prow = P + (size_t)r * nk, *drow = dP + (size_t)r * nk;
        const int a = att_row_mask(s, doc, prow, nk, jlo, i);
        const size_t len = (size_t)(i - jlo - a + 1);
        cpu_vexp_sum(prow + a, prow + a, len, L[i], 1.0f);
        memset(drow, 0, sizeof(float) * (size_t)a);
        cpu_vmul_shifted(drow + a, prow + a, D, len);   /* dS = P ⊙ (dP − D) */
        memset(drow + a + len, 0, sizeof(float) * (nk - a - len));
    }
    /* dQ = scale · dS K;  dK += scale · dSᵀ Q;  dV += Pᵀ dO */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, s->dqk, nk, s->scale, dP, nk,
                c->k + ko, s->k_stride, 0.0f, c->dq + qo, s->q_stride);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, s->dqk, bq, s->scale, dP, nk,
                c->q + qo, s->q_stride, 1.0f, c->dk + ko, s->k_stride);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, s->dv, bq, 1.0f, P, nk,
                c->dout + oo, s->o_stride, 1.0f, c->dv + vo, s->v_stride);
}

static void att_bwd_range(void *p, size_t t0, size_t t1, int thread) {
    struct att_ctx *c = p;
    const struct attn_shape *s = c->s;
    float *P = cpu_scratch(thread, 0, (size_t)ATT_BQ * s->T);
    float *dP = cpu_scratch(thread, 1, (size_t)ATT_BQ * s->T);
    if (!P || !dP) {
        __atomic_store_n(&c->rc, SUSHI_ENOMEM, __ATOMIC_RELAXED);
        return;
    }
    for (size_t t = t0; t < t1; t++) {
        int b = (int)(t / s->G), g = (int)(t % s->G);
        for (int j = 0; j < s->T; j++) {
            size_t r = (size_t)b * s->T + j;
            memset(c->dk + r * s->k_stride + (size_t)g * s->dqk, 0, sizeof(float) * s->dqk);
            memset(c->dv + r * s->v_stride + (size_t)g * s->dv, 0, sizeof(float) * s->dv);
        }
        for (int h = g * s->H / s->G; h < (g + 1) * s->H / s->G; h++)
            for (int i0 = 0; i0 < s->T; i0 += ATT_BQ)
                att_bwd_block(c, P, dP, b, h, i0, i0 + ATT_BQ < s->T ? i0 + ATT_BQ : s->T);
    }
}

static int att_check(const char *op, const struct attn_shape *s) {
    if (!s) return sushi_error(SUSHI_EINVAL, "cpu: %s: NULL shape", op);
    if (s->B < 0 || s->T < 0 || s->H <= 0 || s->G <= 0 || s->H % s->G || s->dqk <= 0 || s->dv <= 0 ||
        s->window < 0 || s->q_stride < s->H * s->dqk || s->k_stride < s->G * s->dqk ||
        s->v_stride < s->G * s->dv || s->o_stride < s->H * s->dv)
        return sushi_error(SUSHI_ESHAPE,
                           "cpu: %s: bad shape B=%d T=%d H=%d G=%d dqk=%d dv=%d window=%d strides "
                           "q=%d k=%d v=%d o=%d (G must divide H; strides hold all heads)", op, s->B,
                           s->T, s->H, s->G, s->dqk, s->dv, s->window, s->q_stride, s->k_stride,
                           s->v_stride, s->o_stride);
    if (!(s->scale == s->scale) || isinf(s->scale))
        return sushi_error(SUSHI_EINVAL, "cpu: %s: scale %g is not finite", op, s->scale);
    return 0;
}

int cpu_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                          const struct attn_shape *s) {
    int rc = att_check("attention_forward", s);
    if (rc) return rc;
    if (s->B == 0 || s->T == 0) return 0;
    if (!out || !lse || !q || !k || !v) return sushi_error(SUSHI_EINVAL, "cpu: attention_forward: NULL pointer");
    struct att_ctx c = {.s = s, .q = q, .k = k, .v = v, .o = out, .lse = lse};
    cpu_parallel_for((size_t)s->B * s->H, 1, att_fwd_range, &c);
    return c.rc ? sushi_error(c.rc, "cpu: attention_forward: scratch for T=%d: out of memory", s->T) : 0;
}

int cpu_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                           const float *lse, const void *q, const void *k, const void *v,
                           const struct attn_shape *s) {
    int rc = att_check("attention_backward", s);
    if (rc) return rc;
    if (s->B == 0 || s->T == 0) return 0;
    if (!dq || !dk || !dv || !dout || !out || !lse || !q || !k || !v)
        return sushi_error(SUSHI_EINVAL, "cpu: attention_backward: NULL pointer");
    struct att_ctx c = {.s = s, .q = q, .k = k, .v = v, .out = out, .dout = dout, .lse_in = lse,
                        .dq = dq, .dk = dk, .dv = dv};
    cpu_parallel_for((size_t)s->B * s->G, 1, att_bwd_range, &c);
    return c.rc ? sushi_error(c.rc, "cpu: attention_backward: scratch for T=%d: out of memory", s->T) : 0;
}
