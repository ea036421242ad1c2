/* The passkey (needle-in-a-haystack) grid, SPEC §5: for each context length and depth,
 * `trials` prompts built like the loader's needle rows (common/data/data_needle.c: the
 * same preamble, filler, needle, question and answer texts, each piece tokenized on its
 * own and concatenated), scored by exact match of the model's greedy continuation with
 * the answer tokens. The pieces come from data_needle_pieces, as the loader's do. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/rng.h"
#include "services/eval/eval.h"

static int32_t *append(int32_t *dst, const int32_t *src, size_t n) {
    memcpy(dst, src, n * sizeof *src);
    return dst + n;
}

int eval_needle_prompt(const struct data_tokenizer *tok, unsigned key, double depth, int len,
                       int32_t **prompt, int *n_prompt, int32_t **answer, int *n_answer) {
    if (!tok || !tok->encode || !prompt || !n_prompt || !answer || !n_answer || len < 1 ||
        !(depth >= 0.0 && depth <= 1.0) || key > 99999)
        return sushi_error(SUSHI_EINVAL, "eval_needle_prompt: bad argument");
    struct data_needle_pieces p;
    int rc = data_needle_pieces(tok, key, &p);
    if (rc) return rc;
    size_t fixed = p.n[NEEDLE_PRE] + p.n[NEEDLE_NEEDLE] + p.n[NEEDLE_QUESTION] + p.n[NEEDLE_ANSWER];
    if (fixed > (size_t)len || p.n[NEEDLE_ANSWER] == 0) {
        data_needle_pieces_free(&p);
        return sushi_error(SUSHI_EINVAL, "eval.needle: a passkey prompt needs at least %zu tokens, "
                           "length %d is too short", fixed, len);
    }
    size_t n_fill = p.n[NEEDLE_FILL] ? ((size_t)len - fixed) / p.n[NEEDLE_FILL] : 0;
    size_t before = (size_t)(depth * (double)n_fill + 0.5);
    if (before > n_fill) before = n_fill;
    size_t total = fixed - p.n[NEEDLE_ANSWER] + n_fill * p.n[NEEDLE_FILL];
    *prompt = malloc(total * sizeof **prompt);
    *answer = malloc(p.n[NEEDLE_ANSWER] * sizeof **answer);
    if (!*prompt || !*answer) {
        free(*prompt);
        free(*answer);
        *prompt = *answer = NULL;
        data_needle_pieces_free(&p);
        return sushi_error(SUSHI_ENOMEM, "eval.needle: prompt of %zu tokens", total);
    }
    int32_t *at = append(*prompt, p.ids[NEEDLE_PRE], p.n[NEEDLE_PRE]);
    for (size_t i = 0; i < before; i++) at = append(at, p.ids[NEEDLE_FILL], p.n[NEEDLE_FILL]);
    at = append(at, p.ids[NEEDLE_NEEDLE], p.n[NEEDLE_NEEDLE]);
    for (size_t i = before; i < n_fill; i++) at = append(at, p.ids[NEEDLE_FILL], p.n[NEEDLE_FILL]);
    append(at, p.ids[NEEDLE_QUESTION], p.n[NEEDLE_QUESTION]);
    append(*answer, p.ids[NEEDLE_ANSWER], p.n[NEEDLE_ANSWER]);
    *n_prompt = (int)total;
    *n_answer = (int)p.n[NEEDLE_ANSWER];
    data_needle_pieces_free(&p);
    return 0;
}

/* accuracy of one cell over its trials, keys drawn from r */
static int needle_cell(const struct eval_needle_config *c, const struct data_tokenizer *tok, int len,
                       double depth, struct rng *r, eval_greedy_fn fn, void *ctx, double *acc) {
    int hits = 0, rc = 0;
    for (int t = 0; t < c->trials && !rc; t++) {
        unsigned key = 10000 + (unsigned)(rng_u64(r) % 90000);
        int32_t *prompt = NULL, *answer = NULL, *got = NULL;
        int np = 0, na = 0;
        rc = eval_needle_prompt(tok, key, depth, len, &prompt, &np, &answer, &na);
        if (rc == SUSHI_EINVAL && !prompt) {   /* the length cannot hold a prompt: no score */
            log_warn("%s", sushi_last_error());
            *acc = NAN;
            return 0;
        }
        if (!rc && !(got = malloc((size_t)na * sizeof *got))) rc = sushi_error(SUSHI_ENOMEM, "eval.needle: answer");
        if (!rc) rc = fn(ctx, prompt, np, na, got);
        if (!rc) hits += memcmp(got, answer, (size_t)na * sizeof *got) == 0;
        free(prompt);
        free(answer);
        free(got);
    }
    *acc = c->trials && !rc ? (double)hits / c->trials : NAN;
    return rc;
}

int eval_needle_grid(const struct eval_needle_config *c, const struct data_tokenizer *tok,
                     int max_len, eval_greedy_fn fn, void *ctx, json_t **cells, double *mean) {
    if (!c || !tok || !fn || !cells || !mean) return sushi_error(SUSHI_EINVAL, "eval_needle_grid: NULL argument");
    *mean = NAN;
    if (!(*cells = json_object())) return sushi_error(SUSHI_ENOMEM, "eval.needle: out of memory");
    double sum = 0;
    int ran = 0;
    for (int li = 0; li < c->n_lengths; li++) {
        for (int di = 0; di < c->n_depths; di++) {
            char key[64];
            snprintf(key, sizeof key, "%d@%g", c->lengths[li], c->depths[di]);
            double acc = NAN;
            struct rng r;   /* a cell's keys depend on the seed and the cell alone */
            rng_seed(&r, c->seed ^ ((uint64_t)(li * EVAL_NEEDLE_MAX + di + 1) * 0x9E3779B97F4A7C15ull));
            if (c->lengths[li] <= max_len) {
                int rc = needle_cell(c, tok, c->lengths[li], c->depths[di], &r, fn, ctx, &acc);
                if (rc) {
                    json_decref(*cells);
                    *cells = NULL;
                    return rc;
                }
            }
            json_object_set_new(*cells, key, isnan(acc) ? json_null() : json_real(acc));
            if (!isnan(acc)) { sum += acc; ran++; }
        }
    }
    if (ran) *mean = sum / ran;
    return 0;
}
