/* The teacher's batched scoring (deepseek.h, "batched scoring"): one forward over every
 * real position of a [B,T] batch, top to bottom as ds_forward reads, except that the
 * positions of all sequences are packed into one (n, C) stream — padding positions
 * (t ≥ length) are left out — so the embedding, the norms, the FFN / MoE and the LM head
 * each run once over n rows. MLA runs per sequence with a cache reset before each, as
 * train.c's forward does. The LM head and the top-K (ops->topk, on the backend) run in
 * chunks of rows so the (rows, V) logits never need to exist at once; the host receives
 * the (n, K) ids and log-probabilities and the (n) tails, and spreads them back over
 * [B,T] with the padding values. A K the backend's top-K does not keep (the CUDA
 * kernel's K ≤ 256) is computed on the host from the chunk's logits instead. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/deepseek/deepseek.h"

#define AT(p, off) ((void *)((char *)(p) + (size_t)(off) * es))

/* the (chunk, V) act logits take at most this many bytes: on a GPU few large chunks (one
 * for 8×1024 positions of a 32K vocabulary in bf16); on the CPU, where a chunk of a few
 * hundred rows keeps the matmul as fast, little host memory */
#define SCORE_LOGITS_BYTES_GPU ((size_t)512 << 20)
#define SCORE_LOGITS_BYTES_CPU ((size_t)64 << 20)

int ds_scorer_init(struct ds_scorer *s, struct ds_model *m) {
    if (!s || !m || !m->ops) return sushi_error(SUSHI_EINVAL, "ds_scorer_init: NULL argument");
    memset(s, 0, sizeof *s);
    s->m = m;
    return 0;
}

static void score_free_rows(struct ds_scorer *s) {
    const struct ops *o = s->m->ops;
    void *dev[] = {s->ids, s->x, s->xn, s->d, s->rstd, s->logits};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) o->free(dev[i]);
    s->ids = NULL, s->x = s->xn = s->d = s->logits = NULL, s->rstd = NULL;
    free(s->h_ids);
    free(s->seg_start);
    free(s->seg_len);
    s->h_ids = NULL, s->seg_start = s->seg_len = NULL;
    s->rows = s->chunk = 0;
}

static void score_free_k(struct ds_scorer *s) {
    const struct ops *o = s->m->ops;
    void *dev[] = {s->top, s->lp, s->tail};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) o->free(dev[i]);
    free(s->h_top);
    free(s->h_lp);
    free(s->h_tail);
    s->top = NULL, s->lp = s->tail = NULL, s->h_top = NULL, s->h_lp = s->h_tail = NULL;
    s->K = 0;
}

void ds_scorer_free(struct ds_scorer *s) {
    if (!s || !s->m) return;
    score_free_rows(s);
    score_free_k(s);
    if (s->kc.c) ds_cache_free(&s->kc, s->m);
    memset(s, 0, sizeof *s);
}

/* room for n rows and K top ids (the (rows, K) buffers follow the row capacity) */
static int score_reserve(struct ds_scorer *s, int n, int K) {
    const struct ops *o = s->m->ops;
    const struct ds_config *c = &s->m->cfg;
    size_t es = dtype_size(o->act_dtype);
    if (!s->kc.c) {
        int rc = ds_cache_init(&s->kc, s->m);
        if (rc) return rc;
    }
    if (n > s->rows) {
        score_free_rows(s);
        score_free_k(s);
        size_t N = (size_t)n, C = (size_t)c->C, V = (size_t)c->vocab;
        size_t budget = strcmp(o->name, "cpu") ? SCORE_LOGITS_BYTES_GPU : SCORE_LOGITS_BYTES_CPU;
        size_t chunk = budget / (V * es);
        chunk = chunk < 1 ? 1 : chunk > N ? N : chunk;
        s->ids = o->alloc(N * sizeof(int32_t));
        s->x = o->alloc(N * C * es);
        s->xn = o->alloc(N * C * es);
        s->d = o->alloc(N * C * es);
        s->rstd = o->alloc(N * sizeof(float));
        s->logits = o->alloc(chunk * V * es);
        s->h_ids = malloc(N * sizeof(int32_t));
        s->seg_start = malloc(N * sizeof(int));
        s->seg_len = malloc(N * sizeof(int));
        if (!s->ids || !s->x || !s->xn || !s->d || !s->rstd || !s->logits || !s->h_ids || !s->seg_start ||
            !s->seg_len) {
            score_free_rows(s);
            return sushi_error(SUSHI_ENOMEM, "ds_score_batch: out of memory for %d positions (C %d, V %d)", n, c->C,
                               c->vocab);
        }
        s->rows = n;
        s->chunk = (int)chunk;
    }
    if (K > s->K) {
        score_free_k(s);
        size_t NK = (size_t)s->rows * (size_t)K;
        s->top = o->alloc(NK * sizeof(int32_t));
        s->lp = o->alloc(NK * sizeof(float));
        s->tail = o->alloc((size_t)s->rows * sizeof(float));
        s->h_top = malloc(NK * sizeof(int32_t));
        s->h_lp = malloc(NK * sizeof(float));
        s->h_tail = malloc((size_t)s->rows * sizeof(float));
        if (!s->top || !s->lp || !s->tail || !s->h_top || !s->h_lp || !s->h_tail) {
            score_free_k(s);
            return sushi_error(SUSHI_ENOMEM, "ds_score_batch: out of memory for top-%d of %d positions", K, s->rows);
        }
        s->K = K;
    }
    return 0;
}

/* Checks lengths and token ids and counts the real positions (*n). */
static int score_check(const struct ds_model *m, const int32_t *tokens, const int32_t *lengths, int B, int T,
                       int *n) {
    int V = m->cfg.vocab;
    size_t total = 0;
    for (int b = 0; b < B; b++) {
        int len = lengths ? lengths[b] : T;
        if (len < 0 || len > T)
            return sushi_error(SUSHI_EINVAL, "ds_score_batch: lengths[%d] = %d is outside [0, %d]", b, len, T);
        for (int t = 0; t < len; t++) {
            int32_t id = tokens[(size_t)b * T + t];
            if (id < 0 || id >= V)
                return sushi_error(SUSHI_EINVAL, "ds_score_batch: token id %d at row %d, position %d is outside [0, %d)",
                                   id, b, t, V);
        }
        total += (size_t)len;
    }
    if (total > (size_t)INT32_MAX / 2)
        return sushi_error(SUSHI_EINVAL, "ds_score_batch: %zu positions are too many for one batch", total);
    *n = (int)total;
    return 0;
}

/* Packs the real positions into s->h_ids and splits them into sequences; the number of
 * sequences, or a negative error when one is longer than the model's max_seq. */
static int score_pack(struct ds_scorer *s, const int32_t *tokens, const int32_t *lengths, const int32_t *doc_ids,
                      int B, int T) {
    int r = 0, n_seg = 0;
    for (int b = 0; b < B; b++) {
        int len = lengths ? lengths[b] : T;
        size_t row = (size_t)b * T;
        for (int t = 0; t < len; t++, r++) {
            s->h_ids[r] = tokens[row + t];
            if (t == 0 || (doc_ids && doc_ids[row + t] != doc_ids[row + t - 1])) {
                s->seg_start[n_seg] = r;
                s->seg_len[n_seg++] = 0;
            }
            if (++s->seg_len[n_seg - 1] > s->m->max_seq)
                return sushi_error(SUSHI_EINVAL, "ds_score_batch: a sequence in row %d exceeds the maximum %d positions",
                                   b, s->m->max_seq);
        }
    }
    return n_seg;
}

static int score_tick(const struct ds_scorer *s) {
    return s->tick ? s->tick(s->tick_ctx) : 0;
}

/* embedding, the layers, the final norm into s->xn: n packed rows, n_seg sequences */
static int score_body(struct ds_scorer *s, int n, int n_seg) {
    struct ds_model *m = s->m;
    const struct ds_config *c = &m->cfg;
    const struct ops *o = m->ops;
    size_t es = dtype_size(o->act_dtype), C = (size_t)c->C, NC = (size_t)n * C;
    int rc = o->to_device(s->ids, s->h_ids, (size_t)n * sizeof(int32_t));
    if (!rc) rc = o->embedding_forward(s->x, s->ids, m->embed, n, c->C);
    for (int l = 0; !rc && l < c->L; l++) {
        const struct ds_layer *y = &m->layers[l];
        rc = o->rmsnorm_forward(s->xn, s->rstd, s->x, y->in_norm, n, c->C, c->eps);
        for (int q = 0; !rc && q < n_seg; q++) {
            if ((rc = score_tick(s)) != 0) break;
            size_t off = (size_t)s->seg_start[q] * C;
            ds_cache_reset(&s->kc);
            rc = ds_mla_forward(m, l, &s->kc, AT(s->xn, off), s->seg_len[q], AT(s->d, off));
        }
        if (!rc) rc = o->axpy(s->x, 1.0f, s->d, NC);
        if (!rc) rc = o->rmsnorm_forward(s->xn, s->rstd, s->x, y->post_norm, n, c->C, c->eps);
        if (!rc) rc = score_tick(s);
        if (!rc) rc = ds_ffn_forward(m, l, s->xn, n, s->d);
        if (!rc) rc = o->axpy(s->x, 1.0f, s->d, NC);
    }
    if (!rc) rc = o->rmsnorm_forward(s->xn, s->rstd, s->x, m->final_norm, n, c->C, c->eps);
    return rc;
}

/* The top-K of the cn logit rows in s->logits on the host, into the backend outputs at
 * row r0: for a K the backend's op does not keep (the CUDA kernel's K ≤ 256). */
static int score_topk_host(struct ds_scorer *s, int r0, int cn, int K, float temp) {
    const struct ops *o = s->m->ops;
    size_t V = (size_t)s->m->cfg.vocab, nz = (size_t)cn * V, nk = (size_t)cn * K;
    float *dz = o->alloc(nz * sizeof(float)), *hz = malloc(nz * sizeof(float));
    int rc = (!dz || !hz) ? sushi_error(SUSHI_ENOMEM, "ds_score_batch: out of memory for %d rows of logits", cn) : 0;
    if (!rc) rc = o->act_to_f32(dz, s->logits, nz);
    if (!rc) rc = o->to_host(hz, dz, nz * sizeof(float));
    int32_t *ids = s->h_top + (size_t)r0 * K;
    float *lp = s->h_lp + (size_t)r0 * K, *tail = s->h_tail + r0;
    if (!rc) rc = ops_cpu()->topk(ids, lp, tail, hz, cn, (int)V, (int)V, K, temp);
    if (!rc) rc = o->to_device(s->top + (size_t)r0 * K, ids, nk * sizeof(int32_t));
    if (!rc) rc = o->to_device(s->lp + (size_t)r0 * K, lp, nk * sizeof(float));
    if (!rc) rc = o->to_device(s->tail + r0, tail, (size_t)cn * sizeof(float));
    if (dz) o->free(dz);
    free(hz);
    return rc;
}

/* LM head and top-K chunk by chunk, then the (n, K) results to the host copies */
static int score_head(struct ds_scorer *s, int n, int K, float temp) {
    struct ds_model *m = s->m;
    const struct ds_config *c = &m->cfg;
    const struct ops *o = m->ops;
    size_t es = dtype_size(o->act_dtype);
    int rc = 0;
    for (int r0 = 0; !rc && r0 < n; r0 += s->chunk) {
        int cn = n - r0 < s->chunk ? n - r0 : s->chunk;
        if ((rc = score_tick(s)) != 0) break;
        rc = o->matmul(s->logits, AT(s->xn, (size_t)r0 * c->C), m->head, cn, c->vocab, c->C, 0, 1, 1.0f, 0.0f, 0, 0, 0);
        if (!rc)
            rc = o->topk(s->top + (size_t)r0 * K, s->lp + (size_t)r0 * K, s->tail + r0, s->logits, cn, c->vocab,
                         c->vocab, K, temp);
        if (rc == SUSHI_EUNSUPPORTED) rc = score_topk_host(s, r0, cn, K, temp);
    }
    size_t NK = (size_t)n * K;
    if (!rc) rc = o->to_host(s->h_top, s->top, NK * sizeof(int32_t));
    if (!rc) rc = o->to_host(s->h_lp, s->lp, NK * sizeof(float));
    if (!rc) rc = o->to_host(s->h_tail, s->tail, (size_t)n * sizeof(float));
    return rc;
}

/* the packed results over [B,T], padding positions filled */
static void score_unpack(const struct ds_scorer *s, const int32_t *lengths, int B, int T, int K, int32_t *ids,
                         float *logprobs, float *tail) {
    size_t r = 0;
    for (int b = 0; b < B; b++) {
        int len = lengths ? lengths[b] : T;
        size_t row = (size_t)b * T;
        memcpy(ids + row * K, s->h_top + r * K, (size_t)len * K * sizeof(int32_t));
        memcpy(logprobs + row * K, s->h_lp + r * K, (size_t)len * K * sizeof(float));
        memcpy(tail + row, s->h_tail + r, (size_t)len * sizeof(float));
        r += (size_t)len;
        for (size_t i = (row + len) * K; i < (row + T) * K; i++) {
            ids[i] = -1;
            logprobs[i] = 0.0f;
        }
        for (int t = len; t < T; t++) tail[row + t] = 0.0f;
    }
}

int ds_score_batch(struct ds_scorer *s, const int32_t *tokens, const int32_t *lengths, const int32_t *doc_ids, int B,
                   int T, int K, float temp, int32_t *ids, float *logprobs, float *tail) {
    if (!s || !s->m || !tokens || !ids || !logprobs || !tail)
        return sushi_error(SUSHI_EINVAL, "ds_score_batch: NULL argument");
    int V = s->m->cfg.vocab;
    if (B < 1 || T < 1 || (size_t)B * (size_t)T > (size_t)INT32_MAX / 2)
        return sushi_error(SUSHI_EINVAL, "ds_score_batch: batch %dx%d invalid", B, T);
    if (K < 1 || K > V)
        return sushi_error(SUSHI_EINVAL, "ds_score_batch: top-K %d outside [1, %d] (the vocabulary)", K, V);
    if (!(temp > 0) || !isfinite(temp))
        return sushi_error(SUSHI_EINVAL, "ds_score_batch: temperature %g must be a finite value > 0", (double)temp);
    int n = 0, rc = score_check(s->m, tokens, lengths, B, T, &n);
    if (!rc && n > 0) rc = score_reserve(s, n, K);
    int n_seg = 0;
    if (!rc && n > 0) rc = n_seg = score_pack(s, tokens, lengths, doc_ids, B, T);
    if (rc < 0) return rc;
    rc = 0;
    if (n > 0) rc = score_body(s, n, n_seg);
    if (!rc && n > 0) rc = score_head(s, n, K, temp);
    if (rc) return rc;
    score_unpack(s, lengths, B, T, K, ids, logprobs, tail);
    return 0;
}
