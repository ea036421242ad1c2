/* One evaluation of a checkpoint: the held-out batches through the model (perplexity,
 * mean loss), against the teacher (top-1 agreement, KD loss, the teacher's own
 * perplexity, computed once), and the passkey grid. The teacher is loaded once, at the
 * first evaluation that finds it (it may not exist yet while it is being pretrained);
 * its log-probabilities are kept in memory when they fit in eval.kd_cache_mb. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/log.h"
#include "models/student/checkpoint.h"
#include "services/eval/eval.h"

int eval_service_open(struct eval_service *s, const struct eval_config *cfg, const struct ops *ops) {
    if (!s || !cfg || !ops) return sushi_error(SUSHI_EINVAL, "eval_service_open: NULL argument");
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;   /* moved in: freed by eval_service_close */
    s->ops = ops;
    s->teacher_ppl = NAN;
    const struct eval_needle_config *n = &cfg->needle;
    for (int i = 0; n->trials > 0 && i < n->n_lengths; i++)
        if (n->lengths[i] > s->gen_T) s->gen_T = n->lengths[i];
    int rc = data_loader_open(&s->loader, &s->cfg.data, NULL);
    uint64_t have = 0;
    if (!rc) rc = data_epoch_info(s->loader, 0, &have, NULL);
    if (!rc && have == 0)
        rc = sushi_error(SUSHI_EINVAL, "eval.data: the held-out sources do not fill one batch of %dx%d",
                         cfg->data.batch_size, cfg->data.seq_len);
    if (rc) return rc;
    s->n_batches = have < (uint64_t)cfg->batches ? (int)have : cfg->batches;
    if (s->n_batches < cfg->batches)
        log_warn("eval.batches = %d, but the held-out data has %d batches: using %d", cfg->batches,
                 s->n_batches, s->n_batches);
    s->batches = calloc((size_t)s->n_batches, sizeof *s->batches);
    s->teacher_lp = calloc((size_t)s->n_batches, sizeof *s->teacher_lp);
    if (!s->batches || !s->teacher_lp) return sushi_error(SUSHI_ENOMEM, "eval: held-out batches");
    for (int i = 0; i < s->n_batches && !rc; i++) {
        rc = data_batch_alloc(&s->batches[i], cfg->data.batch_size, cfg->data.seq_len);
        if (!rc) rc = data_batch(s->loader, DATA_BATCH_ID(0, i), &s->batches[i]);
    }
    return rc;
}

void eval_service_close(struct eval_service *s) {
    if (!s) return;
    for (int i = 0; s->batches && i < s->n_batches; i++) data_batch_free(&s->batches[i]);
    for (int i = 0; s->teacher_lp && i < s->n_batches; i++) free(s->teacher_lp[i]);
    free(s->batches);
    free(s->teacher_lp);
    if (s->have_teacher) eval_model_close(&s->teacher);
    data_loader_close(s->loader);
    eval_config_free(&s->cfg);
    memset(s, 0, sizeof *s);
}

/* loads the teacher and computes its perplexity (and cache) once; 0 when absent */
static int eval_teacher_ready(struct eval_service *s) {
    if (s->have_teacher || !s->cfg.teacher) return 0;
    const struct data_config *d = &s->cfg.data;
    int rc = eval_model_open(&s->teacher, s->cfg.teacher, s->ops, d->batch_size, d->seq_len, 0);
    if (rc) {
        if (!s->teacher_failed) log_warn("teacher %s not usable yet (evaluating without it): %s",
                                         s->cfg.teacher, sushi_last_error());
        s->teacher_failed = 1;
        return 0;
    }
    s->have_teacher = 1;
    size_t N = (size_t)d->batch_size * d->seq_len, V = (size_t)s->teacher.vocab;
    int cache = (double)s->n_batches * N * V * sizeof(float) <= (double)s->cfg.kd_cache_mb * 1048576.0;
    size_t T = (size_t)d->seq_len;
    struct eval_sums sums = {0};
    float *tmp = cache ? NULL : malloc(T * V * sizeof(float));   /* one row when not cached */
    if (!cache && !tmp) rc = sushi_error(SUSHI_ENOMEM, "eval: teacher logits (%zu x %zu)", T, V);
    for (int i = 0; i < s->n_batches && !rc; i++) {
        const struct data_batch *b = &s->batches[i];
        if (cache && !(s->teacher_lp[i] = malloc(N * V * sizeof(float)))) {
            rc = sushi_error(SUSHI_ENOMEM, "eval: teacher log-probabilities (%zu x %zu)", N, V);
            break;
        }
        rc = eval_model_batch(&s->teacher, b);
        for (int r = 0; r < b->B && !rc; r++) {
            float *out = cache ? s->teacher_lp[i] + (size_t)r * T * V : tmp;
            rc = eval_model_row_logits(&s->teacher, b, r, out);
            if (!rc) eval_log_softmax(out, (int)T, (int)V);
            if (!rc) rc = eval_sums_add(&sums, out, NULL, b->targets + (size_t)r * T, (int)T, (int)V);
        }
    }
    free(tmp);
    if (rc) {   /* e.g. held-out ids outside its vocabulary: evaluate without it from now on */
        log_warn("teacher %s cannot score the held-out data (evaluating without it): %s", s->cfg.teacher,
                 sushi_last_error());
        for (int i = 0; i < s->n_batches; i++) { free(s->teacher_lp[i]); s->teacher_lp[i] = NULL; }
        eval_model_close(&s->teacher);
        s->have_teacher = 0;
        s->cfg.teacher = NULL;
        return 0;
    }
    s->teacher_ppl = sums.n ? exp(sums.ce / sums.n) : NAN;
    log_info("teacher %s: held-out perplexity %.6g over %lld tokens%s", s->cfg.teacher, s->teacher_ppl,
             sums.n, cache ? "" : " (log-probabilities recomputed per evaluation: over eval.kd_cache_mb)");
    return 0;
}

/* the held-out metrics of model m into sums (agreement and KD when the teacher matches),
 * one batch row at a time */
static int eval_heldout(struct eval_service *s, struct eval_model *m, struct eval_sums *sums,
                        int *with_teacher) {
    size_t T = (size_t)s->cfg.data.seq_len, V = (size_t)m->vocab;
    size_t TV = s->have_teacher ? (size_t)s->teacher.vocab : 0;
    *with_teacher = s->have_teacher && TV == V;
    if (s->have_teacher && TV != V)
        log_warn("teacher vocabulary %zu differs from the model's %zu: no agreement or KD loss", TV, V);
    int cached = *with_teacher && s->teacher_lp[0];
    float *lp = malloc(T * V * sizeof(float)), *tbuf = NULL;
    int rc = lp ? 0 : sushi_error(SUSHI_ENOMEM, "eval: logits (%zu x %zu)", T, V);
    if (!rc && *with_teacher && !cached && !(tbuf = malloc(T * V * sizeof(float))))
        rc = sushi_error(SUSHI_ENOMEM, "eval: teacher logits (%zu x %zu)", T, V);
    for (int i = 0; i < s->n_batches && !rc; i++) {
        const struct data_batch *b = &s->batches[i];
        rc = eval_model_batch(m, b);
        if (!rc && *with_teacher && !cached) rc = eval_model_batch(&s->teacher, b);
        for (int r = 0; r < b->B && !rc; r++) {
            float *tlp = NULL;
            rc = eval_model_row_logits(m, b, r, lp);
            if (!rc) eval_log_softmax(lp, (int)T, (int)V);
            if (!rc && cached) tlp = s->teacher_lp[i] + (size_t)r * T * V;
            if (!rc && *with_teacher && !cached) {
                tlp = tbuf;
                rc = eval_model_row_logits(&s->teacher, b, r, tlp);
                if (!rc) eval_log_softmax(tlp, (int)T, (int)V);
            }
            if (!rc) rc = eval_sums_add(sums, lp, tlp, b->targets + (size_t)r * T, (int)T, (int)V);
        }
    }
    free(lp);
    free(tbuf);
    return rc;
}

static int eval_greedy(void *ctx, const int32_t *prompt, int n, int steps, int32_t *out) {
    return eval_model_greedy(ctx, prompt, n, steps, out);
}

/* a finite number, or null */
static json_t *num(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

/* the `step` of DIR/trainer_state.json, 0 when absent */
static uint64_t eval_step(const char *dir, int *found) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_STATE);
    json_t *st = json_load_file(path, 0, NULL);
    json_t *v = json_object_get(st, "step");
    *found = json_is_integer(v) && json_integer_value(v) >= 0;
    uint64_t step = *found ? (uint64_t)json_integer_value(v) : 0;
    json_decref(st);
    return step;
}

int eval_checkpoint(struct eval_service *s, const char *dir, json_t **meta, uint64_t *step) {
    if (!s || !dir || !meta || !step) return sushi_error(SUSHI_EINVAL, "eval_checkpoint: NULL argument");
    *meta = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const struct data_config *d = &s->cfg.data;
    struct eval_model m;
    int rc = eval_model_open(&m, dir, s->ops, d->batch_size, d->seq_len, s->gen_T);
    if (rc) return rc;
    if (s->cfg.teacher && !s->have_teacher) rc = eval_teacher_ready(s);
    struct eval_sums sums = {0};
    int with_teacher = 0, found = 0;
    if (!rc) rc = eval_heldout(s, &m, &sums, &with_teacher);
    json_t *cells = NULL;
    double needle = NAN;
    if (!rc && s->gen_T > 0)
        rc = eval_needle_grid(&s->cfg.needle, data_loader_tokenizer(s->loader),
                              m.arch == EVAL_LLAMA ? m.gen_T : s->gen_T, eval_greedy, &m, &cells, &needle);
    int arch = m.arch;
    eval_model_close(&m);
    if (rc) { json_decref(cells); return rc; }
    if (!sums.n) { json_decref(cells); return sushi_error(SUSHI_EINVAL, "eval.data: no target positions in the held-out batches"); }
    *step = eval_step(dir, &found);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double loss = sums.ce / sums.n;
    json_t *o = json_object();
    if (!o) { json_decref(cells); return sushi_error(SUSHI_ENOMEM, "eval: result"); }
    json_object_set_new(o, "step", found ? json_integer((json_int_t)*step) : json_null());
    json_object_set_new(o, "checkpoint", json_string(dir));
    json_object_set_new(o, "arch", json_string(arch == EVAL_LLAMA ? "llama" : "deepseek"));
    json_object_set_new(o, "loss", num(loss));
    json_object_set_new(o, "ppl", num(exp(loss)));
    json_object_set_new(o, "top1_agreement", with_teacher ? num((double)sums.agree / sums.n) : json_null());
    json_object_set_new(o, "teacher_ppl", s->have_teacher ? num(s->teacher_ppl) : json_null());
    json_object_set_new(o, "kd_loss", with_teacher ? num(sums.kd / sums.n) : json_null());
    json_object_set_new(o, "needle_accuracy", num(needle));
    json_object_set_new(o, "needle", cells ? cells : json_object());
    json_object_set_new(o, "tokens", json_integer(sums.n));
    json_object_set_new(o, "eval_s", json_real((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9));
    *meta = o;
    return 0;
}
