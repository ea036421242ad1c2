/* The teacher's scoring, shared by `score` (files), `pipeline` (batches from the loader)
 * and `serve` (requests): load a checkpoint on a backend; score one sequence from
 * position 0 (ds_cache_reset + ds_forward, ds_topk per position at temperature T), which
 * `score --logits-out` needs for the raw logits; score the rows of a [B,T] batch in one
 * batched forward (ds_score_batch: each document segment (doc_ids) or each row cut at
 * its length is its own sequence, the top-K runs on the backend), with a callback
 * between layers and sequences so a service can keep its heartbeats going while it
 * scores a long batch. */
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "services/teacher/teacher.h"

int teacher_load(struct ds_model *m, const char *dir, const char *backend, int threads, int max_seq) {
    if (!m || !dir || !backend || max_seq < 1)
        return sushi_error(SUSHI_EINVAL, "teacher_load: bad argument");
    const struct ops *ops = ops_by_name(backend);
    if (!ops) return sushi_error(SUSHI_EINVAL, "backend %s: %s", backend, sushi_last_error());
    if (threads > 0) ops_cpu_set_threads(threads);
    return ds_load(m, dir, ops, max_seq);
}

int teacher_scorer_init(struct teacher_scorer *s, struct ds_model *m) {
    if (!s || !m) return sushi_error(SUSHI_EINVAL, "teacher_scorer_init: NULL argument");
    memset(s, 0, sizeof *s);
    s->m = m;
    s->logits = malloc((size_t)m->max_seq * m->cfg.vocab * sizeof(float));
    if (!s->logits) return sushi_error(SUSHI_ENOMEM, "teacher: out of memory for %d positions of logits", m->max_seq);
    int rc = ds_cache_init(&s->cache, m);
    if (!rc) rc = ds_scorer_init(&s->batch, m);
    if (rc) {
        free(s->logits);
        s->logits = NULL;
    }
    return rc;
}

void teacher_scorer_free(struct teacher_scorer *s) {
    if (!s || !s->m) return;
    free(s->logits);
    ds_cache_free(&s->cache, s->m);
    ds_scorer_free(&s->batch);
    memset(s, 0, sizeof *s);
}

int teacher_check_ids(const char *what, const int32_t *ids, size_t n, int vocab) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return sushi_error(SUSHI_EINVAL, "%s: token id %d at index %zu is outside the teacher's vocabulary [0, %d)",
                               what, ids[i], i, vocab);
    return SUSHI_OK;
}

int teacher_score_seq(struct teacher_scorer *s, const int32_t *ids, int n, int K, float T, int32_t *top,
                      float *lp, float *tail) {
    if (!s || !s->logits || !ids || !top || !lp || !tail || n < 1)
        return sushi_error(SUSHI_EINVAL, "teacher_score_seq: bad argument");
    int V = s->m->cfg.vocab;
    if (n > s->m->max_seq)
        return sushi_error(SUSHI_EINVAL, "teacher: a sequence of %d tokens exceeds the maximum %d", n, s->m->max_seq);
    ds_cache_reset(&s->cache);
    int rc = ds_forward(s->m, &s->cache, ids, n, s->logits);
    for (int t = 0; !rc && t < n; t++)
        rc = ds_topk(s->logits + (size_t)t * V, V, K, T, top + (size_t)t * K, lp + (size_t)t * K, &tail[t]);
    return rc;
}

int teacher_score_rows(struct teacher_scorer *s, const struct teacher_rows *r, int K, float temp, int32_t *top,
                       float *lp, float *tail, teacher_tick_fn tick, void *ctx) {
    if (!s || !s->m || !r || !r->tokens || r->B < 1 || r->T < 1 || !top || !lp || !tail)
        return sushi_error(SUSHI_EINVAL, "teacher_score_rows: bad argument");
    s->batch.tick = tick;
    s->batch.tick_ctx = ctx;
    int rc = ds_score_batch(&s->batch, r->tokens, r->lengths, r->doc_ids, r->B, r->T, K, temp, top, lp, tail);
    s->batch.tick = NULL;
    s->batch.tick_ctx = NULL;
    return rc;
}
