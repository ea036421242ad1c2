// libs: config student kernels cuda core
/* sushi-trainer: trains the student. For now standalone: byte-level language modelling
 * on a text corpus (vocab 256 padded to 320, no tokenizer needed), printing step, loss,
 * learning rate, gradient norm and tokens/s, and the held-out loss before and after.
 *
 *   corpus → random windows (B, T+1) → forward/backward × accum → clip → AdamW → log */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/optim.h"
#include "models/rng.h"
#include "models/student/checkpoint.h"
#include "models/student/student.h"
#include "services/trainer/train_config.h"

#define MAX_OVERRIDES 64

struct train_io {
    const char *save_dir;    /* --save: checkpoint written every save_every steps and at the end */
    const char *resume_dir;  /* --resume: continue from this checkpoint */
    int save_every;
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: sushi-trainer --config FILE [key.path=value ...] [--steps N] [--save DIR]\n"
            "                     [--save-every N] [--resume DIR]\n"
            "\n"
            "Trains the student described by the `model` section of FILE with the settings\n"
            "of its `train` section on the byte-level corpus train.corpus (90%% train,\n"
            "10%% held out). Any field can be overridden: train.lr=1e-3 model.n_layers=2.\n"
            "\n"
            "  --config FILE   training YAML (e.g. configs/train/tiny-cpu.yaml)\n"
            "  --steps N       same as train.steps=N\n"
            "  --save DIR      write a checkpoint (HF Llama layout + optimizer + trainer state)\n"
            "                  at the end and every --save-every N steps\n"
            "  --resume DIR    continue a run from its checkpoint (same losses as uninterrupted)\n"
            "  -h, --help      this text\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
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
static int eval_loss(struct student_model *m, const unsigned char *text, size_t lo, size_t hi,
                     int32_t *ids, int32_t *targets, int32_t *doc, const struct student_loss_cfg *lc,
                     float *out) {
    struct rng r;
    rng_seed(&r, 42);
    double sum = 0;
    const int batches = 4;
    for (int i = 0; i < batches; i++) {
        float loss;
        corpus_batch(text, lo, hi, m->B, m->T, &r, ids, targets, doc);
        int rc = student_forward(m, ids, targets, doc, NULL, lc, &loss);
        if (rc) return rc;
        sum += loss;
    }
    *out = (float)(sum / batches);
    return 0;
}

/* weights, AdamW moments, step and data RNG → dir (host copies of backend buffers) */
static int save_checkpoint(const char *dir, struct student_model *m, struct optim *o,
                           const struct rng *data) {
    size_t n = m->n_params;
    float *h = malloc(3 * n * sizeof(float));
    if (!h) return sushi_error(SUSHI_ENOMEM, "%s: checkpoint buffers", dir);
    int rc = m->ops->to_host(h, m->master, n * 4);
    if (!rc) rc = m->ops->to_host(h + n, o->m, n * 4);
    if (!rc) rc = m->ops->to_host(h + 2 * n, o->v, n * 4);
    char rng_hex[32];
    snprintf(rng_hex, sizeof rng_hex, "%016llx", (unsigned long long)data->state);
    json_t *state = json_pack("{s:i, s:s}", "step", o->step, "data_rng", rng_hex);
    if (!rc && !state) rc = sushi_error(SUSHI_ENOMEM, "%s: trainer state", dir);
    if (!rc) rc = checkpoint_save(dir, &m->cfg, h, h + n, h + 2 * n, state);
    json_decref(state);
    free(h);
    if (!rc) log_info("saved %s at step %d", dir, o->step);
    return rc;
}

static int load_checkpoint(const char *dir, struct student_model *m, struct optim *o,
                           struct rng *data) {
    struct student_config c = {0};
    int rc = checkpoint_read_config(dir, &c, NULL);
    if (rc) return rc;
    if (c.n_layers != m->cfg.n_layers || c.d_model != m->cfg.d_model || c.n_heads != m->cfg.n_heads ||
        c.n_kv_heads != m->cfg.n_kv_heads || c.d_ff != m->cfg.d_ff ||
        c.vocab_padded != m->cfg.vocab_padded || c.tied != m->cfg.tied)
        return sushi_error(SUSHI_ESHAPE, "%s: checkpoint architecture differs from the configured model", dir);
    size_t n = m->n_params;
    float *h = malloc(3 * n * sizeof(float));
    json_t *state = NULL;
    if (!h) return sushi_error(SUSHI_ENOMEM, "%s: checkpoint buffers", dir);
    rc = checkpoint_load(dir, &m->cfg, h, h + n, h + 2 * n, &state);
    json_t *step = rc ? NULL : json_object_get(state, "step");
    json_t *rs = rc ? NULL : json_object_get(state, "data_rng");
    unsigned long long r = 0;
    if (!rc && (!json_is_integer(step) || !json_is_string(rs) ||
                sscanf(json_string_value(rs), "%llx", &r) != 1))
        rc = sushi_error(SUSHI_EFORMAT, "%s: %s: needs integer \"step\" and hex \"data_rng\"", dir, CKPT_STATE);
    if (!rc) rc = m->ops->to_device(m->master, h, n * 4);
    if (!rc) rc = m->ops->to_device(o->m, h + n, n * 4);
    if (!rc) rc = m->ops->to_device(o->v, h + 2 * n, n * 4);
    if (!rc) rc = student_sync_weights(m);
    if (!rc) {
        o->step = (int)json_integer_value(step);
        data->state = r;
        log_info("resumed %s at step %d", dir, o->step);
    }
    json_decref(state);
    free(h);
    return rc;
}

static int train(const struct train_config *tc, const struct train_io *io) {
    const struct ops *ops = ops_by_name(tc->backend);
    if (!ops) return sushi_error(SUSHI_EINVAL, "train.backend \"%s\": %s", tc->backend, sushi_last_error());
    if (tc->threads > 0 && ops == ops_cpu()) ops_cpu_set_threads(tc->threads);
    char *text = NULL;
    size_t len = 0;
    int rc = fs_read_all(tc->corpus, &text, &len);
    if (rc) return rc;
    int B = tc->batch_size, T = tc->seq_len;
    size_t split = len / 10 * 9;
    if (len - split < (size_t)T + 2 || split < (size_t)T + 2) {
        free(text);
        return sushi_error(SUSHI_EINVAL, "%s: corpus of %zu bytes too small for seq_len %d", tc->corpus, len, T);
    }
    if (tc->model.vocab < 256) {
        free(text);
        return sushi_error(SUSHI_EINVAL, "model.vocab %d: byte-level training needs ≥ 256", tc->model.vocab);
    }
    const unsigned char *u = (const unsigned char *)text;
    struct student_model m;
    struct optim opt;
    memset(&opt, 0, sizeof opt);
    int32_t *ids = malloc((size_t)B * T * 4), *targets = malloc((size_t)B * T * 4);
    int32_t *doc = tc->model.doc_mask ? malloc((size_t)B * T * 4) : NULL;
    if (!ids || !targets || (tc->model.doc_mask && !doc)) rc = sushi_error(SUSHI_ENOMEM, "trainer: batch buffers");
    if (!rc) rc = student_create(&m, &tc->model, ops, B, T, tc->seed);
    if (rc) {
        free(ids); free(targets); free(doc); free(text);
        return rc;
    }
    rc = optim_create(&opt, &tc->optim, ops, m.n_params, m.n_decay);
    struct student_loss_cfg lc = {.smoothing = tc->smoothing};
    struct rng data_rng;
    rng_seed(&data_rng, tc->seed ^ 0x5eedda7aull);
    log_info("student: %d layers, C %d, %d heads (%d kv), FFN %d, vocab %d/%d, %zu parameters",
             m.cfg.n_layers, m.cfg.d_model, m.cfg.n_heads, m.cfg.n_kv_heads, m.cfg.d_ff, m.cfg.vocab,
             m.cfg.vocab_padded, m.n_params);
    log_info("training: %d steps, batch %dx%d x %d accum, lr %.3g → %.3g (%s, warmup %d), backend %s, corpus %s (%zu bytes)",
             tc->steps, B, T, opt.cfg.accum_steps, opt.cfg.lr, opt.cfg.min_lr,
             opt.cfg.schedule == OPTIM_COSINE ? "cosine" : opt.cfg.schedule == OPTIM_LINEAR ? "linear" : "constant",
             opt.cfg.warmup_steps, ops->name, tc->corpus, len);
    if (!rc && io->resume_dir) rc = load_checkpoint(io->resume_dir, &m, &opt, &data_rng);
    float val0 = 0, val1 = 0;
    if (!rc) rc = eval_loss(&m, u, split, len, ids, targets, doc, &lc, &val0);
    if (!rc) log_info("held-out loss before training: %.4f", val0);
    double t0 = now_s(), t_log = t0;
    long tokens_since = 0;
    for (int step = opt.step; step < tc->steps && !rc; step++) {
        float loss_sum = 0;
        rc = student_zero_grad(&m);
        for (int a = 0; a < opt.cfg.accum_steps && !rc; a++) {
            float loss;
            corpus_batch(u, 0, split, B, T, &data_rng, ids, targets, doc);
            rc = student_forward(&m, ids, targets, doc, NULL, &lc, &loss);
            if (!rc) rc = student_backward(&m);
            loss_sum += loss;
        }
        if (!rc) rc = optim_step(&opt, m.master, m.wbuf, m.gbuf);
        tokens_since += (long)B * T * opt.cfg.accum_steps;
        if (!rc && (step % tc->log_every == 0 || step == tc->steps - 1)) {
            if (ops->sync) ops->sync();
            double t = now_s();
            printf("step %5d/%d  loss %.4f  lr %.3e  norm %.3f  %.0f tok/s\n", step + 1, tc->steps,
                   loss_sum / opt.cfg.accum_steps, opt.last_lr, opt.last_norm,
                   tokens_since / (t - t_log));
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
    student_free(&m);
    free(ids);
    free(targets);
    free(doc);
    free(text);
    return rc;
}

int main(int argc, char **argv) {
    log_set_name("sushi-trainer");
    const char *config = NULL, *overrides[MAX_OVERRIDES];
    char steps_override[64];
    struct train_io io = {0};
    int n_over = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            snprintf(steps_override, sizeof steps_override, "train.steps=%s", argv[++i]);
            if (n_over < MAX_OVERRIDES) overrides[n_over++] = steps_override;
        } else if (!strcmp(argv[i], "--save") && i + 1 < argc) {
            io.save_dir = argv[++i];
        } else if (!strcmp(argv[i], "--save-every") && i + 1 < argc) {
            io.save_every = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--resume") && i + 1 < argc) {
            io.resume_dir = argv[++i];
        } else if (argv[i][0] != '-' && strchr(argv[i], '=')) {
            if (n_over == MAX_OVERRIDES) {
                log_error("more than %d overrides", MAX_OVERRIDES);
                return 2;
            }
            overrides[n_over++] = argv[i];
        } else {
            log_error("unknown argument \"%s\" (see --help)", argv[i]);
            return 2;
        }
    }
    if (!config) {
        usage(stderr);
        return 2;
    }
    struct train_config tc;
    int rc = train_config_load(config, overrides, n_over, &tc);
    if (!rc) rc = train(&tc, &io);
    if (rc) {
        log_error("%s", sushi_last_error());
        return 1;
    }
    return 0;
}
