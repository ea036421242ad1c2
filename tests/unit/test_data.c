// libs: data tok core
/* The text data path (common/data) with the real GPT-2 tokenizer: packing boundaries
 * (the packed stream decodes back to every document exactly once), mixing proportions
 * within a binomial tolerance, passkey rows, cutting long documents, corrupt input and
 * config errors. Corpora are generated in a temporary folder. */
#include <fcntl.h>

#include "tests/unit/test_data_corpus.h"

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
    c.epoch_docs = 6000;   /* documents drawn per epoch (sources are upsampled) */
    add_source(&c, "mix_a.txt", DATA_TEXT, 3.0);
    add_source(&c, "mix_b.jsonl", DATA_JSONL, 1.0);
    add_source(&c, "mix_a.txt", DATA_TEXT, 0.0);   /* weight 0: never drawn */
    struct data_loader *l = open_loader(&c);
    for (uint64_t e = 0; e < 3; e++) {
        long long counts[3];
        assert_int_equal(data_epoch_info(l, e, NULL, counts), 0);
        assert_int_equal(counts[2], 0);
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
    assert_true(m.a + m.b > 5800);   /* the cut tail is under one batch */
    assert_true(fabs(share - 0.75) < 4 * sqrt(0.75 * 0.25 / 5800.0));
    data_loader_close(l);
    data_config_free(&c);
}

static void test_needle_rows(void **state) {
    (void)state;
    if (!g_tok) skip();
    enum { N = 2000, T = 512 };
    char *docs[N];
    write_text_source("needle.txt", 'A', N, docs);
    struct data_config c;
    base_config(&c, T, 4);
    c.needle_share = 0.25;   /* one row in every block of 4 */
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
    /* exactly one needle row per full block of 4 rows */
    uint64_t rows = nb * 4;
    assert_int_equal(needles, rows / 4);
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
    /* capture the log: one line per skipped record, naming file and line */
    char logpath[600];
    snprintf(logpath, sizeof logpath, "%s/corrupt.log", g_dir);
    fflush(stderr);
    int saved = dup(2), fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    log_set_level(LOG_WARN);
    struct data_loader *l = open_loader(&c);
    log_set_level(LOG_ERROR);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    struct data_stats st;
    data_loader_stats(l, &st);
    assert_int_equal(st.errors, 7);      /* 5 JSONL lines, 1 unreadable file, 1 text document */
    assert_int_equal(st.documents, 5);
    data_loader_close(l);
    char *log;
    size_t loglen;
    assert_int_equal(fs_read_all(logpath, &log, &loglen), 0);
    static const char *const where[] = {"a.jsonl:2: skipped: bad JSON", "a.jsonl:3: skipped: bad JSON",
        "a.jsonl:4: skipped: no member \"body\"", "a.jsonl:7: skipped: member \"body\" is not a string",
        "a.jsonl:8: skipped: expected a JSON object", "c.jsonl:0: skipped:",
        "b.txt:3: skipped: invalid UTF-8"};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) assert_non_null(strstr(log, where[i]));
    int lines = 0;
    for (char *p = log; (p = strstr(p, " skipped: ")); p++) lines++;
    assert_int_equal(lines, 7);
    free(log);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packing_boundaries),
        cmocka_unit_test(test_mixing_proportions),
        cmocka_unit_test(test_needle_rows),
        cmocka_unit_test(test_long_document_cut),
        cmocka_unit_test(test_corrupt_input),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, corpus_setup, corpus_teardown);
}
