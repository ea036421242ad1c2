/* Passkey (needle-in-a-haystack) rows, SPEC §5: a preamble, filler sentences with the
 * needle "The pass key is NNNNN. Remember it." at a seeded depth, the question, and the
 * answer, which the answer mask marks. Key and depth are hashes of (seed, epoch, row),
 * so a needle row is as reproducible as a text row. Pieces are tokenized separately and
 * concatenated (each starts with a space, so this matches tokenizing the whole text for
 * byte-level BPE pre-tokenizers, which split before spaces). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/data/data_internal.h"

enum { TAG_KEY = 4, TAG_DEPTH = 5 };

static const char preamble[] = "There is important info hidden inside a lot of irrelevant text. "
                               "Find it and memorize it. I will quiz you about the important "
                               "information there.";
static const char filler[] = " The grass is green. The sky is blue. The sun is yellow. Here we go. "
                             "There and back again.";

void data_needle_pieces_free(struct data_needle_pieces *p) {
    if (!p) return;
    for (int i = 0; i < NEEDLE_NPIECES; i++) free(p->ids[i]);
    memset(p, 0, sizeof *p);
}

int data_needle_pieces(const struct data_tokenizer *tok, unsigned key, struct data_needle_pieces *p) {
    if (!p) return sushi_error(SUSHI_EINVAL, "data_needle_pieces: NULL");
    memset(p, 0, sizeof *p);
    if (!tok || !tok->encode || key > 99999)
        return sushi_error(SUSHI_EINVAL, "data_needle_pieces: bad tokenizer or key %u", key);
    char needle[64], answer[16];
    snprintf(needle, sizeof needle, " The pass key is %05u. Remember it.", key);
    snprintf(answer, sizeof answer, " %05u", key);
    const char *text[NEEDLE_NPIECES] = {preamble, filler, needle, " What is the pass key? The pass key is",
                                        answer, "."};
    for (int i = 0; i < NEEDLE_NPIECES; i++) {
        int rc = tok->encode(tok->ctx, text[i], strlen(text[i]), &p->ids[i], &p->n[i]);
        if (rc) { data_needle_pieces_free(p); return rc; }
    }
    return 0;
}

static size_t fixed_tokens(const struct data_needle_pieces *p) {
    return p->n[NEEDLE_PRE] + p->n[NEEDLE_NEEDLE] + p->n[NEEDLE_QUESTION] + p->n[NEEDLE_ANSWER] + p->n[NEEDLE_TAIL] + 1;
}

int data_needle_check(const struct data_loader *l) {
    if (data_needle_block(&l->cfg) == 0) return 0;
    struct data_needle_pieces p;
    int rc = data_needle_pieces(&l->tok, 12345, &p);
    if (rc) return rc;
    size_t need = fixed_tokens(&p);
    data_needle_pieces_free(&p);
    if (need > (size_t)l->cfg.seq_len)
        return sushi_error(SUSHI_EINVAL, "data: needle_share > 0 needs seq_len >= %zu (a passkey "
                           "sample without filler), got %d", need, l->cfg.seq_len);
    return 0;
}

static size_t put(int32_t *tokens, uint8_t *answer, size_t at, const int32_t *ids, size_t n,
                  int is_answer) {
    memcpy(tokens + at, ids, n * sizeof *ids);
    memset(answer + at, is_answer, n);
    return at + n;
}

int data_needle_row(const struct data_loader *l, uint64_t epoch, uint64_t row, int32_t *tokens,
                    int32_t *targets, int32_t *doc_ids, int32_t *positions, uint8_t *answer) {
    const struct data_config *cfg = &l->cfg;
    unsigned key = 10000 + (unsigned)(data_hash(cfg->seed, epoch, row, TAG_KEY) % 90000);
    double depth = data_unit(data_hash(cfg->seed, epoch, row, TAG_DEPTH));
    struct data_needle_pieces p;
    int rc = data_needle_pieces(&l->tok, key, &p);
    if (rc) return rc;
    size_t T = (size_t)cfg->seq_len, fixed = fixed_tokens(&p);
    if (fixed > T) {
        data_needle_pieces_free(&p);
        return sushi_error(SUSHI_EINVAL, "data: passkey sample needs %zu tokens, seq_len is %zu",
                           fixed, T);
    }
    size_t n_fill = p.n[NEEDLE_FILL] ? (T - fixed) / p.n[NEEDLE_FILL] : 0;
    size_t before = (size_t)(depth * (double)n_fill + 0.5), at = 0;
    if (before > n_fill) before = n_fill;
    at = put(tokens, answer, at, p.ids[NEEDLE_PRE], p.n[NEEDLE_PRE], 0);
    for (size_t i = 0; i < before; i++) at = put(tokens, answer, at, p.ids[NEEDLE_FILL], p.n[NEEDLE_FILL], 0);
    at = put(tokens, answer, at, p.ids[NEEDLE_NEEDLE], p.n[NEEDLE_NEEDLE], 0);
    for (size_t i = before; i < n_fill; i++) at = put(tokens, answer, at, p.ids[NEEDLE_FILL], p.n[NEEDLE_FILL], 0);
    at = put(tokens, answer, at, p.ids[NEEDLE_QUESTION], p.n[NEEDLE_QUESTION], 0);
    at = put(tokens, answer, at, p.ids[NEEDLE_ANSWER], p.n[NEEDLE_ANSWER], 1);
    at = put(tokens, answer, at, p.ids[NEEDLE_TAIL], p.n[NEEDLE_TAIL], 0);
    data_needle_pieces_free(&p);
    size_t used = at + 1;   /* the EOS */
    for (size_t t = at; t < T; t++) { tokens[t] = l->tok.eos_id; answer[t] = 0; }
    for (size_t t = 0; t < T; t++) {
        int in = t < used;
        targets[t] = in && t + 1 < used ? tokens[t + 1] : -1;
        doc_ids[t] = in ? 0 : 1;                    /* padding is a segment of its own */
        positions[t] = (int32_t)(in ? t : t - used);
    }
    return 0;
}
