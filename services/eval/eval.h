/* sushi-eval's parts: its settings (the run config's `eval` section), the model under
 * evaluation (a student in the HF Llama layout or a DeepSeek checkpoint, chosen by
 * config.json), the held-out metrics, the passkey grid and the checkpoint watcher. */
#ifndef SUSHI_EVAL_H
#define SUSHI_EVAL_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/data/data.h"
#include "models/deepseek/deepseek.h"
#include "models/student/student.h"

#define EVAL_NEEDLE_MAX 16

/* ---- settings (eval_config.c) ------------------------------------------------------ */

struct eval_needle_config {
    int n_lengths, n_depths;
    int lengths[EVAL_NEEDLE_MAX];     /* context lengths in tokens (prompt + answer) */
    double depths[EVAL_NEEDLE_MAX];   /* needle position as a share of the filler, [0, 1] */
    int trials;                       /* prompts per cell (0: no grid) */
    uint64_t seed;                    /* pass keys are drawn from it */
};

struct eval_config {
    struct data_config data;          /* eval.data, tokenizer/seq_len/batch_size from data: */
    int batches;                      /* held-out batches: ids 0..batches-1 of epoch 0 */
    const char *teacher;              /* eval.teacher, default teacher.checkpoint; "" = none */
    const char *watch;                /* directory to watch or NULL */
    const char *events;               /* endpoints.events or NULL */
    const char *run_dir;              /* run.dir or NULL */
    const char *backend;              /* cpu | cuda | auto */
    int threads;                      /* CPU threads, 0 = backend default */
    int heartbeat_ms;
    int allow_remote;                 /* endpoints.allow_remote */
    long long kd_cache_mb;            /* teacher log-probabilities kept in memory up to this */
    struct eval_needle_config needle;
};

/* Reads the run config's sections (root stays the owner of the borrowed strings).
 * eval.data is required; its tokenizer, seq_len and batch_size default to data's, its
 * needle_share to 0. */
int eval_config_load(const json_t *root, const char *file, struct eval_config *c);
void eval_config_free(struct eval_config *c);

/* ---- the model under evaluation (eval_model.c) ------------------------------------- */

enum eval_arch { EVAL_LLAMA = 0, EVAL_DEEPSEEK = 1 };

struct eval_model {
    enum eval_arch arch;
    const struct ops *ops;
    int vocab;                        /* real vocabulary: logits rows have this width */
    int max_seq;                      /* longest sequence the model takes */
    int B, T;                         /* held-out batch shape */
    int gen_T;                        /* longest greedy prompt + continuation (0: none) */
    struct student_model sm;          /* llama: B x T for batches */
    struct student_model gen;         /* llama: 1 x gen_T for greedy decoding */
    int have_sm, have_gen;
    struct ds_model ds;               /* deepseek */
    struct ds_cache cache;
    int have_ds, have_cache;
    float *scratch;                   /* deepseek: (max(T, gen_T), V) logits */
};

/* The architecture of checkpoint DIR from its config.json (model_type deepseek_v2/v3 ->
 * DeepSeek, llama or absent -> student). */
int eval_model_arch(const char *dir, enum eval_arch *arch);
/* Loads DIR for batches of B x T and greedy decoding up to gen_T tokens (clamped to
 * the model's max_seq; 0: none). */
int eval_model_open(struct eval_model *m, const char *dir, const struct ops *ops, int B, int T,
                    int gen_T);
void eval_model_close(struct eval_model *m);
/* Runs held-out batch b through the model (the student: one forward of the whole batch;
 * DeepSeek: nothing yet). Then eval_model_row_logits gives row r's host logits (T,
 * vocab), one row at a time so that no (B*T, vocab) buffer is needed. DeepSeek models
 * score each document segment (doc_ids) as its own sequence from position 0; the
 * student sees the row as it is trained (doc_ids only matter with doc_mask). */
int eval_model_batch(struct eval_model *m, const struct data_batch *b);
int eval_model_row_logits(struct eval_model *m, const struct data_batch *b, int r, float *logits);
/* Greedy continuation: `steps` ids after the n prompt ids into out. */
int eval_model_greedy(struct eval_model *m, const int32_t *prompt, int n, int steps, int32_t *out);

/* ---- held-out metrics (eval_metrics.c) --------------------------------------------- */

/* Sums over target positions (targets >= 0) of held-out batches. */
struct eval_sums {
    double ce;                /* Σ −log p(target) */
    double kd;                /* Σ KL(teacher ‖ model) */
    long long n;              /* target positions */
    long long agree;          /* argmax model == argmax teacher */
};

/* In-place log_softmax of each row of x (N, V), computed in double. */
void eval_log_softmax(float *x, int N, int V);
/* Index of the largest value of x (V); the first one on ties. */
int32_t eval_argmax(const float *x, int V);
/* Adds a batch: lp (N, V) model log-probabilities, tlp teacher log-probabilities (may be
 * NULL: no agreement or KD), targets (N). A target outside [0, V) is an error. */
int eval_sums_add(struct eval_sums *s, const float *lp, const float *tlp, const int32_t *targets,
                  int N, int V);

/* ---- passkey grid (eval_needle.c) -------------------------------------------------- */

/* Greedy decoder: `steps` ids following the n prompt ids into out. */
typedef int (*eval_greedy_fn)(void *ctx, const int32_t *prompt, int n, int steps, int32_t *out);

/* A passkey prompt of at most len tokens (prompt + answer): preamble, filler with the
 * needle at `depth`, the question; *answer the expected continuation. Caller frees. */
int eval_needle_prompt(const struct data_tokenizer *tok, unsigned key, double depth, int len,
                       int32_t **prompt, int *n_prompt, int32_t **answer, int *n_answer);
/* Runs the grid. cells: a new object {"LEN@DEPTH": accuracy or null (longer than
 * max_len, or too short for a prompt)}; *mean: the mean over the cells that ran (NAN
 * when none). */
int eval_needle_grid(const struct eval_needle_config *c, const struct data_tokenizer *tok,
                     int max_len, eval_greedy_fn fn, void *ctx, json_t **cells, double *mean);

/* ---- checkpoint watcher (eval_watch.c) --------------------------------------------- */

/* What identifies one version of a checkpoint's files. */
struct eval_sig {
    dev_t dev[2];
    ino_t ino[2];
    off_t size[2];
    long long mtime_ns[2];
};

struct eval_tracked {
    char *path;
    struct eval_sig seen, done;   /* at the last poll; last evaluated (or failed) */
    int have_seen, have_done;
    int announced;                /* evaluate at the next poll without waiting */
    int present;                  /* found at the last poll */
    int due;                      /* set by eval_watch_scan, cleared by eval_watch_next */
};

struct eval_watch {
    char *dir;                    /* NULL: only announced paths are tracked */
    struct eval_tracked *items;
    int n, cap;
};

/* The signature of checkpoint DIR: config.json and model.safetensors (or its index).
 * SUSHI_ENOTFOUND while either is missing. */
int eval_sig_read(const char *dir, struct eval_sig *s);
int eval_watch_init(struct eval_watch *w, const char *dir);
void eval_watch_free(struct eval_watch *w);
/* Tracks an announced checkpoint: evaluated at the next poll unless this very version
 * was evaluated already. */
int eval_watch_announce(struct eval_watch *w, const char *path);
/* One poll: rescans the watched directory (the directory itself when it is a
 * checkpoint, else its subdirectories) and reads every tracked signature. An entry is
 * due when its files are complete, unchanged since the previous poll (or it was
 * announced), and this version was not evaluated (or refused) yet. */
int eval_watch_scan(struct eval_watch *w);
/* The index of the next due entry (cleared), or -1. */
int eval_watch_next(struct eval_watch *w);
/* After evaluating (or failing on) entry i: this version is done. */
void eval_watch_mark(struct eval_watch *w, int i);

/* ---- one evaluation (eval_run.c) --------------------------------------------------- */

struct eval_service {
    struct eval_config cfg;
    const struct ops *ops;
    struct data_loader *loader;
    struct data_batch *batches;       /* [n_batches] held-out batches, ids 0.. of epoch 0 */
    int n_batches;
    struct eval_model teacher;        /* loaded at the first evaluation that can */
    int have_teacher, teacher_failed;
    float **teacher_lp;               /* [n_batches] cached (B*T, V) log-probabilities or NULL */
    double teacher_ppl;               /* NAN until computed */
    int gen_T;                        /* longest passkey context (0: no grid) */
};

/* Opens the held-out data and reads its batches. */
int eval_service_open(struct eval_service *s, const struct eval_config *cfg, const struct ops *ops);
void eval_service_close(struct eval_service *s);
/* Evaluates checkpoint DIR: *meta receives the eval message's meta (new reference) and
 * *step the step from DIR/trainer_state.json (0 when absent). */
int eval_checkpoint(struct eval_service *s, const char *dir, json_t **meta, uint64_t *step);

#endif
