/* sushi-teacher's commands, and the scoring and generation every command shares. */
#ifndef SUSHI_TEACHER_H
#define SUSHI_TEACHER_H

#include <stdint.h>

#include "models/deepseek/deepseek.h"

/* sushi-teacher score|generate|pipeline|serve ...: argv[0] is the command name; 0 on
 * success, 1 on a runtime failure, 2 on a usage error */
int teacher_score(int argc, char **argv);
int teacher_generate(int argc, char **argv);
int teacher_pipeline(int argc, char **argv);
int teacher_serve(int argc, char **argv);

/* option values with a message naming the option; 0 or -1 */
int teacher_parse_int(const char *opt, const char *s, long lo, long hi, int *out);
int teacher_parse_float(const char *opt, const char *s, float *out);

/* ---- scoring (scoring.c) ---- */

/* ds_load of DIR on backend NAME (cpu, cuda, auto) for sequences up to max_seq; threads
 * > 0 sets the CPU backend's thread count. */
int teacher_load(struct ds_model *m, const char *dir, const char *backend, int threads, int max_seq);

/* What scoring needs besides the model: the latent cache and a logits buffer for one
 * sequence, and the batched scorer's scratch. */
struct teacher_scorer {
    struct ds_model *m;
    struct ds_cache cache;
    float *logits;          /* (max_seq, V) host f32: the last sequence's logits */
    struct ds_scorer batch; /* teacher_score_rows */
};
int teacher_scorer_init(struct teacher_scorer *s, struct ds_model *m);
void teacher_scorer_free(struct teacher_scorer *s);

/* SUSHI_EINVAL naming `what` and the index when an id is outside [0, vocab). */
int teacher_check_ids(const char *what, const int32_t *ids, size_t n, int vocab);

/* ids[0..n) as one sequence from position 0: per position the top-K ids top (n, K),
 * log_softmax(z/T) there lp (n, K) and the tail log-mass tail (n) (-inf when K = V).
 * s->logits holds the sequence's raw logits (n, V) afterwards. */
int teacher_score_seq(struct teacher_scorer *s, const int32_t *ids, int n, int K, float T, int32_t *top,
                      float *lp, float *tail);

/* Called between the layers and sequences of teacher_score_rows; a nonzero return
 * stops scoring and is returned (e.g. 1 = the service is stopping). */
typedef int (*teacher_tick_fn)(void *ctx);

struct teacher_rows {
    const int32_t *tokens;  /* [B,T] */
    const int32_t *doc_ids; /* [B,T] or NULL: a run of equal ids is one sequence */
    const int32_t *lengths; /* [B] or NULL (= T): positions at or past a row's length are padding */
    int B, T;
};
/* Scores every row: each sequence (document segment, or the row up to its length) from
 * position 0 into top [B,T,K], lp [B,T,K], tail [B,T]. Padding positions get ids -1,
 * log-probabilities 0 and tail 0. */
int teacher_score_rows(struct teacher_scorer *s, const struct teacher_rows *r, int K, float temp, int32_t *top,
                       float *lp, float *tail, teacher_tick_fn tick, void *ctx);

/* ---- generation (generate.c) ---- */

struct teacher_gen_opts {
    int max_new;            /* new tokens at most (≥ 1) */
    float temperature;      /* 0 = greedy */
    float top_p;            /* nucleus mass in (0, 1] */
    int top_k;              /* keep the k most likely ids; 0 = all */
    uint64_t seed;
    const int32_t *stops;   /* stop ids (not emitted) */
    int n_stops;
};
/* Generates after prompt[0..n) with the latent cache (reset first; the prompt and the
 * new tokens must fit its capacity): out[0..*n_out), *n_out ≤ o->max_new. */
int teacher_generate_ids(struct ds_model *m, struct ds_cache *cache, const int32_t *prompt, int n,
                         const struct teacher_gen_opts *o, int32_t *out, int *n_out);

#endif
