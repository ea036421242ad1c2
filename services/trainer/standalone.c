/* Standalone training: byte-level language modelling on a text corpus (vocab 256 padded
 * to 320, no tokenizer needed), printing step, loss, learning rate, gradient norm and
 * tokens/s, and the held-out loss before and after.
 *
 *   corpus → random windows (B, T+1) → forward/backward × accum → clip → AdamW → log */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/rng.h"
#include "models/student/checkpoint.h"
#include "services/trainer/loss_scale.h"
#include "services/trainer/trainer.h"
#include "services/trainer/trainer_model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int trainer_backend(const struct train_config *tc, const struct ops **out) {
    const struct ops *ops = ops_by_name(tc->backend);
    if (!ops) return sushi_error(SUSHI_EINVAL, "train.backend \"%s\": %s", tc->backend, sushi_last_error());
    if (tc->threads > 0 && ops == ops_cpu()) ops_cpu_set_threads(tc->threads);
    *out = ops;
    return 0;
}

/* B windows of T+1 bytes from text[lo, hi): ids = bytes 0..T-1, targets = 1..T; doc
 * (may be NULL) numbers the paragraphs (a blank line starts a new document) */
static void corpus_batch(const unsigned char *text, size_t lo, size_t hi, int B, int T,
                         struct rng *r, int32_t *ids, int32_t *targets, int32_t *doc) {
    for (int b = 0; b < B; b++) {
        size_t off = lo + rng_u64(r) % (hi - lo - T - 1);
        int32_t d = 0;
        for (int t = 0; t < T; t++) {
            ids[b * T + t] = text[off + t];
            targets[b * T + t] = text[off + t + 1];
            if (t >= 2 && text[off + t - 1] == '\n' && text[off + t - 2] == '\n') d++;
            if (doc) doc[b * T + t] = d;
        }
    }
}

/* mean loss over a fixed set of held-out windows (same windows every call) */
static int eval_loss(struct trainer_model *m, const unsigned char *text, size_t lo, size_t hi,
                     int32_t *ids, int32_t *targets, int32_t *doc, const struct student_loss_cfg *lc,
                     float *out) {
    struct rng r;
    rng_seed(&r, 42);
    double sum = 0;
    const int batches = 4;
    for (int i = 0; i < batches; i++) {
        float loss;
        corpus_batch(text, lo, hi, m->B, m->T, &r, ids, targets, doc);
        int rc = trainer_model_forward(m, ids, targets, doc, NULL, lc, &loss);
        if (rc) return rc;
        sum += loss;
    }
    *out = (float)(sum / batches);
    return 0;
}

/* weights, AdamW moments, step and data RNG → dir */
static int save_checkpoint(const char *dir, struct trainer_model *m, struct optim *o, const struct rng *data) {
    char rng_hex[32];
    snprintf(rng_hex, sizeof rng_hex, "%016llx", (unsigned long long)data->state);
    json_t *state = json_pack("{s:i, s:s}", "step", o->step, "data_rng", rng_hex);
    if (!state) return sushi_error(SUSHI_ENOMEM, "%s: trainer state", dir);
    int rc = trainer_scale_state_put(state, o);
    if (!rc) rc = trainer_model_save(m, o, dir, state);
    json_decref(state);
    if (!rc) log_info("saved %s at step %d", dir, o->step);
    return rc;
}

static int load_checkpoint(const char *dir, struct trainer_model *m, struct optim *o, struct rng *data) {
    json_t *state = NULL;
    int rc = trainer_model_load(m, o, dir, &state);
    json_t *step = rc ? NULL : json_object_get(state, "step");
    json_t *rs = rc ? NULL : json_object_get(state, "data_rng");
    unsigned long long r = 0;
    if (!rc && (!json_is_integer(step) || !json_is_string(rs) ||
                sscanf(json_string_value(rs), "%llx", &r) != 1))
        rc = sushi_error(SUSHI_EFORMAT, "%s: %s: needs integer \"step\" and hex \"data_rng\"", dir, CKPT_STATE);
    if (!rc) rc = trainer_scale_state_get(o, state, dir);
    if (!rc) {
        o->step = (int)json_integer_value(step);
        data->state = r;
        log_info("resumed %s at step %d", dir, o->step);
    }
    json_decref(state);
    return rc;
}

int trainer_standalone(const struct train_config *tc, const struct train_io *io) {
    const struct ops *ops = NULL;
    int rc = trainer_backend(tc, &ops);
    if (rc) return rc;
    char *text = NULL;
    size_t len = 0;
    if ((rc = fs_read_all(tc->corpus, &text, &len))) return rc;
    int B = tc->batch_size, T = tc->seq_len;
    size_t split = len / 10 * 9;
    if (len - split < (size_t)T + 2 || split < (size_t)T + 2) {
        free(text);
        return sushi_error(SUSHI_EINVAL, "%s: corpus of %zu bytes too small for seq_len %d", tc->corpus, len, T);
    }
    const unsigned char *u = (const unsigned char *)text;
    struct trainer_model m;
    struct optim opt;
    memset(&opt, 0, sizeof opt);
    memset(&m, 0, sizeof m);
    int32_t *ids = malloc((size_t)B * T * 4), *targets = malloc((size_t)B * T * 4);
    int32_t *doc = malloc((size_t)B * T * 4);
    if (!ids || !targets || !doc) rc = sushi_error(SUSHI_ENOMEM, "trainer: batch buffers");
    if (!rc) rc = trainer_model_create(&m, tc, ops, B, T);
    if (!rc && m.vocab < 256) rc = sushi_error(SUSHI_EINVAL, "model vocab %d: byte-level training needs ≥ 256", m.vocab);
    if (rc) {
        trainer_model_free(&m);
        free(ids); free(targets); free(doc); free(text);
        return rc;
    }
    struct optim_config oc;
    rc = trainer_optim_config(tc, ops, &oc);
    if (!rc) rc = optim_create(&opt, &oc, ops, m.n_params, m.n_decay);
    struct student_loss_cfg lc = {.smoothing = tc->smoothing};
    struct rng data_rng;
    rng_seed(&data_rng, tc->seed ^ 0x5eedda7aull);
    if (m.arch == TRAIN_ARCH_LLAMA) {
        const struct student_config *c = &m.student.cfg;
        log_info("student: %d layers, C %d, %d heads (%d kv), FFN %d, vocab %d/%d, %zu parameters", c->n_layers,
                 c->d_model, c->n_heads, c->n_kv_heads, c->d_ff, c->vocab, c->vocab_padded, m.n_params);
    } else {
        log_info("deepseek: %d layers, C %d, vocab %d, %zu parameters", tc->ds.L, tc->ds.C, tc->ds.vocab, m.n_params);
    }
    log_info("training: %d steps, batch %dx%d x %d accum, lr %.3g → %.3g (%s, warmup %d), backend %s, corpus %s (%zu bytes)",
             tc->steps, B, T, opt.cfg.accum_steps, opt.cfg.lr, opt.cfg.min_lr,
             opt.cfg.schedule == OPTIM_COSINE ? "cosine" : opt.cfg.schedule == OPTIM_LINEAR ? "linear" : "constant",
             opt.cfg.warmup_steps, ops->name, tc->corpus, len);
    if (!rc) rc = trainer_model_freeze(&m, &opt, tc->freeze_layers);
    if (!rc && io->resume_dir) rc = load_checkpoint(io->resume_dir, &m, &opt, &data_rng);
    else if (!rc && tc->init_from[0]) rc = trainer_model_init_from(&m, tc->init_from);
    float val0 = 0, val1 = 0;
    if (!rc) rc = eval_loss(&m, u, split, len, ids, targets, doc, &lc, &val0);
    if (!rc) log_info("held-out loss before training: %.4f", val0);
    double t0 = now_s(), t_log = t0;
    long tokens_since = 0;
    /* step: iterations (train.steps counts skipped ones too, loss_scale.h) */
    for (int step = trainer_iterations(&opt); step < tc->steps && !rc; step++) {
        float loss_sum = 0;
        rc = trainer_model_zero_grad(&m);
        trainer_set_loss_scale(&m, &opt);
        for (int a = 0; a < opt.cfg.accum_steps && !rc; a++) {
            float loss;
            corpus_batch(u, 0, split, B, T, &data_rng, ids, targets, doc);
            rc = trainer_model_forward(&m, ids, targets, doc, NULL, &lc, &loss);
            if (!rc) rc = trainer_model_backward(&m);
            loss_sum += loss;
        }
        if (!rc) rc = trainer_model_step(&m, &opt);
        int skipped = rc == OPTIM_SKIPPED;
        if (skipped) {
            trainer_log_skip(&opt, step + 1);
            rc = 0;
        }
        tokens_since += (long)B * T * opt.cfg.accum_steps;
        if (!rc && (step % tc->log_every == 0 || step == tc->steps - 1)) {
            if (ops->sync) ops->sync();
            double t = now_s();
            printf("step %5d/%d  loss %.4f  lr %.3e  norm %.3f  %.0f tok/s", step + 1, tc->steps,
                   loss_sum / opt.cfg.accum_steps, opt.last_lr, opt.last_norm,
                   tokens_since / (t - t_log));
            if (opt.cfg.loss_scale > 0)
                printf("  scale %g  skipped %d%s", optim_loss_scale(&opt), opt.skipped, skipped ? "  (skipped)" : "");
            printf("\n");
            fflush(stdout);
            t_log = t;
            tokens_since = 0;
        }
        if (!rc && io->save_dir && io->save_every > 0 && (step + 1) % io->save_every == 0 &&
            step + 1 < tc->steps)
            rc = save_checkpoint(io->save_dir, &m, &opt, &data_rng);
    }
    if (!rc && io->save_dir) rc = save_checkpoint(io->save_dir, &m, &opt, &data_rng);
    if (!rc) rc = eval_loss(&m, u, split, len, ids, targets, doc, &lc, &val1);
    if (!rc) log_info("held-out loss: %.4f → %.4f in %.1f s", val0, val1, now_s() - t0);
    optim_free(&opt);
    trainer_model_free(&m);
    free(ids);
    free(targets);
    free(doc);
    free(text);
    return rc;
}
