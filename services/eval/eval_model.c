/* The model under evaluation, whatever its architecture: a student checkpoint (HF Llama
 * layout, models/student) or a DeepSeek one (models/deepseek, e.g. while the teacher is
 * being pretrained), decided by config.json's model_type. Gives host logits over the
 * real vocabulary for held-out batches and greedy continuations for the passkey grid. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/student/checkpoint.h"
#include "services/eval/eval.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ < 0) return rc_; } while (0)

int eval_model_arch(const char *dir, enum eval_arch *arch) {
    if (!dir || !arch) return sushi_error(SUSHI_EINVAL, "eval_model_arch: NULL argument");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return sushi_error(SUSHI_EFORMAT, "%s: %s (line %d)", path, je.text, je.line);
    const char *type = json_string_value(json_object_get(j, "model_type"));
    int rc = 0;
    if (!type || !strcmp(type, "llama")) *arch = EVAL_LLAMA;
    else if (!strcmp(type, "deepseek_v3") || !strcmp(type, "deepseek_v2")) *arch = EVAL_DEEPSEEK;
    else rc = sushi_error(SUSHI_EUNSUPPORTED, "%s: model_type \"%s\": expected llama, deepseek_v3 "
                          "or deepseek_v2", path, type);
    json_decref(j);
    return rc;
}

static int eval_open_student(struct eval_model *m, const char *dir) {
    struct student_config c;
    memset(&c, 0, sizeof c);
    CHECK(checkpoint_read_config(dir, &c, NULL));
    /* held-out text is scored by the language model alone: a multimodal checkpoint's
     * encoders are left out (their tensors are skipped on load) */
    if (encoder_enabled(&c.enc)) log_info("%s: evaluating the text model (encoders not used)", dir);
    memset(&c.enc, 0, sizeof c.enc);
    if (m->T > c.max_seq)
        return sushi_error(SUSHI_EINVAL, "%s: eval.data seq_len %d exceeds the model's max_seq %d",
                           dir, m->T, c.max_seq);
    m->vocab = c.vocab;
    m->max_seq = c.max_seq;
    CHECK(student_create(&m->sm, &c, m->ops, m->B, m->T, 0));
    m->have_sm = 1;
    CHECK(checkpoint_load(dir, &c, m->sm.master, NULL, NULL, NULL));
    CHECK(student_sync_weights(&m->sm));
    if (m->gen_T > c.max_seq) m->gen_T = c.max_seq;
    if (m->gen_T > 0) {
        CHECK(student_create(&m->gen, &c, m->ops, 1, m->gen_T, 0));
        m->have_gen = 1;
        memcpy(m->gen.master, m->sm.master, m->sm.n_params * sizeof(float));
        CHECK(student_sync_weights(&m->gen));
    }
    return 0;
}

static int eval_open_deepseek(struct eval_model *m, const char *dir) {
    int len = m->T > m->gen_T ? m->T : m->gen_T;
    CHECK(ds_load(&m->ds, dir, m->ops, len));
    m->have_ds = 1;
    CHECK(ds_cache_init(&m->cache, &m->ds));
    m->have_cache = 1;
    m->vocab = m->ds.cfg.vocab;
    m->max_seq = len;
    if (!(m->scratch = malloc((size_t)len * m->vocab * sizeof(float))))
        return sushi_error(SUSHI_ENOMEM, "%s: logits buffer (%d x %d)", dir, len, m->vocab);
    return 0;
}

int eval_model_open(struct eval_model *m, const char *dir, const struct ops *ops, int B, int T,
                    int gen_T) {
    if (!m || !dir || !ops || B < 1 || T < 1 || gen_T < 0)
        return sushi_error(SUSHI_EINVAL, "eval_model_open: bad argument");
    memset(m, 0, sizeof *m);
    m->ops = ops;
    m->B = B;
    m->T = T;
    m->gen_T = gen_T;
    char real[4096];   /* DIR, or DIR.old when an interrupted save left only that */
    int rc = checkpoint_resolve_dir(dir, real, sizeof real);
    if (!rc) rc = eval_model_arch(real, &m->arch);
    if (!rc) rc = m->arch == EVAL_LLAMA ? eval_open_student(m, real) : eval_open_deepseek(m, real);
    if (rc) eval_model_close(m);
    return rc;
}

void eval_model_close(struct eval_model *m) {
    if (!m) return;
    if (m->have_sm) student_free(&m->sm);
    if (m->have_gen) student_free(&m->gen);
    if (m->have_cache) ds_cache_free(&m->cache, &m->ds);
    if (m->have_ds) ds_free(&m->ds);
    free(m->scratch);
    memset(m, 0, sizeof *m);
}

/* logits of `rows` rows of the final hidden state of s starting at row `first`, real
 * vocabulary, into host out (rows, vocab). student_forward leaves its logits buffer
 * holding the loss gradient, so the head is applied again to the normed hidden state. */
static int eval_student_head(struct student_model *s, int first, int rows, float *out) {
    const struct ops *o = s->ops;
    const struct student_config *c = &s->cfg;
    size_t es = dtype_size(o->act_dtype), Vp = (size_t)c->vocab_padded;
    const void *lmw = c->tied ? s->w.wte : s->w.lmw;
    const void *x = (const char *)s->a.lnf + (size_t)first * c->d_model * es;
    CHECK(o->matmul(s->a.logits, x, lmw, rows, c->vocab_padded, c->d_model, 0, 1, 1.0f, 0.0f, 0, 0, 0));
    void *host = malloc((size_t)rows * Vp * es);
    float *f = o->act_dtype == DT_F32 ? host : malloc((size_t)rows * Vp * sizeof(float));
    int rc = host && f ? 0 : sushi_error(SUSHI_ENOMEM, "eval: logits (%d x %zu)", rows, Vp);
    if (!rc) rc = o->to_host(host, s->a.logits, (size_t)rows * Vp * es);
    if (!rc && f != host) rc = dtype_convert_to_f32(f, host, o->act_dtype, (size_t)rows * Vp);
    for (int r = 0; !rc && r < rows; r++)
        memcpy(out + (size_t)r * c->vocab, f + (size_t)r * Vp, (size_t)c->vocab * sizeof(float));
    if (f != host) free(f);
    free(host);
    return rc;
}

/* one sequence from position 0 through the DeepSeek model: logits (n, vocab) */
static int eval_ds_sequence(struct eval_model *m, const int32_t *ids, int n, float *logits) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->vocab)
            return sushi_error(SUSHI_EINVAL, "eval: token id %d outside the model's vocabulary %d",
                               ids[i], m->vocab);
    ds_cache_reset(&m->cache);
    return ds_forward(&m->ds, &m->cache, ids, n, logits);
}

int eval_model_batch(struct eval_model *m, const struct data_batch *b) {
    if (!m || !b) return sushi_error(SUSHI_EINVAL, "eval_model_batch: NULL argument");
    if (b->B != m->B || b->T != m->T)
        return sushi_error(SUSHI_ESHAPE, "eval: batch %dx%d, model sized for %dx%d", b->B, b->T, m->B, m->T);
    if (m->arch == EVAL_DEEPSEEK) return 0;
    struct student_loss_cfg lc = {.smoothing = 0.0f, .alpha = 0.0f, .temperature = 1.0f};
    float loss;
    return student_forward(&m->sm, b->tokens, b->targets, b->doc_ids, NULL, &lc, &loss);
}

int eval_model_row_logits(struct eval_model *m, const struct data_batch *b, int r, float *logits) {
    if (!m || !b || !logits || r < 0 || r >= m->B || b->T != m->T)
        return sushi_error(SUSHI_EINVAL, "eval_model_row_logits: bad argument");
    if (m->arch == EVAL_LLAMA) return eval_student_head(&m->sm, r * m->T, m->T, logits);
    const int32_t *ids = b->tokens + (size_t)r * b->T, *doc = b->doc_ids + (size_t)r * b->T;
    for (int s = 0; s < b->T;) {
        int e = s + 1;
        while (e < b->T && doc[e] == doc[s]) e++;
        CHECK(eval_ds_sequence(m, ids + s, e - s, logits + (size_t)s * m->vocab));
        s = e;
    }
    return 0;
}

int eval_model_greedy(struct eval_model *m, const int32_t *prompt, int n, int steps, int32_t *out) {
    if (!m || !prompt || !out || n < 1 || steps < 0)
        return sushi_error(SUSHI_EINVAL, "eval_model_greedy: bad argument");
    if (n + steps > m->gen_T)
        return sushi_error(SUSHI_EINVAL, "eval: greedy prompt of %d + %d tokens exceeds %d", n, steps,
                           m->gen_T);
    if (m->arch == EVAL_DEEPSEEK) {
        CHECK(eval_ds_sequence(m, prompt, n, m->scratch));
        for (int i = 0; i < steps; i++) {
            out[i] = eval_argmax(m->scratch + (size_t)(i ? 0 : n - 1) * m->vocab, m->vocab);
            if (i + 1 < steps) CHECK(ds_forward(&m->ds, &m->cache, &out[i], 1, m->scratch));
        }
        return 0;
    }
    /* the student runs fixed-length rows: the prompt, then padding the causal mask hides */
    int T = m->gen_T, rc = 0;
    int32_t *ids = calloc((size_t)T, sizeof *ids), *tg = malloc((size_t)T * sizeof *tg),
            *doc = calloc((size_t)T, sizeof *doc);
    float *row = malloc((size_t)m->vocab * sizeof *row);
    if (!ids || !tg || !doc || !row) rc = sushi_error(SUSHI_ENOMEM, "eval: greedy buffers");
    for (int t = 0; !rc && t < T; t++) tg[t] = -1;
    if (!rc) memcpy(ids, prompt, (size_t)n * sizeof *ids);
    struct student_loss_cfg lc = {.smoothing = 0.0f, .alpha = 0.0f, .temperature = 1.0f};
    for (int i = 0; !rc && i < steps; i++) {
        float loss;
        rc = student_forward(&m->gen, ids, tg, doc, NULL, &lc, &loss);
        if (!rc) rc = eval_student_head(&m->gen, n + i - 1, 1, row);
        if (!rc) ids[n + i] = out[i] = eval_argmax(row, m->vocab);
    }
    free(ids);
    free(tg);
    free(doc);
    free(row);
    return rc;
}
