// libs: wire core
/* The trainer's reorder window, batch checks and records (services/trainer): stale,
 * duplicate and out-of-window arrivals refused, held ones taken strictly in id order,
 * the next epoch's first ids accepted; every malformed batch refused with the field
 * named; applied.tsv / losses.tsv truncated back to a checkpoint's lengths. The
 * trainer's files are compiled into this test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/core/log.h"
#include "common/data/data.h"
#include "services/trainer/batch_check.c"
#include "services/trainer/records.c"
#include "services/trainer/reorder.c"

#define NB 2
#define NT 4
#define NK 3
#define VOCAB 50

/* a message carrying only an id and meta.next (what the window looks at) */
static struct wire_msg id_msg(uint64_t id) {
    struct wire_msg m;
    wire_msg_init(&m, WIRE_SCORED);
    m.id = id;
    m.meta = json_pack("{s:I}", "next", (json_int_t)(id + 1));
    return m;
}

static void test_window_order(void **state) {
    (void)state;
    struct reorder r;
    assert_int_equal(reorder_init(&r, 3), 0);
    uint64_t next = 0;
    uint64_t arrivals[] = {2, 1, 1, 3, 0};
    enum reorder_verdict want[] = {REORDER_HELD, REORDER_HELD, REORDER_DUPLICATE, REORDER_BEYOND, REORDER_HELD};
    for (int i = 0; i < 5; i++) {
        struct wire_msg m = id_msg(arrivals[i]);
        assert_int_equal(reorder_offer(&r, next, &m, 7), want[i]);
        wire_msg_free(&m);   /* empty when held */
    }
    assert_int_equal(r.held, 3);
    for (uint64_t id = 0; id < 3; id++) {
        struct wire_msg m;
        int tag = 0;
        assert_int_equal(reorder_take(&r, next, &m, &tag), 1);
        assert_int_equal(m.id, id);
        assert_int_equal(tag, 7);
        wire_msg_free(&m);
        next = id + 1;
    }
    struct wire_msg m;
    assert_int_equal(reorder_take(&r, next, &m, NULL), 0);
    assert_int_equal(reorder_check(&r, next, 1), REORDER_STALE);
    assert_int_equal(reorder_check(&r, next, 5), REORDER_HELD);
    assert_int_equal(reorder_check(&r, next, 6), REORDER_BEYOND);
    reorder_free(&r);
}

static void test_window_full_and_epochs(void **state) {
    (void)state;
    struct reorder r;
    assert_int_equal(reorder_init(&r, 2), 0);
    uint64_t next = DATA_BATCH_ID(0, 10);
    /* the last index of epoch 0 may be next; epoch 1's first ids are in the window */
    struct wire_msg a = id_msg(DATA_BATCH_ID(1, 0)), b = id_msg(DATA_BATCH_ID(1, 1)), c = id_msg(DATA_BATCH_ID(1, 2));
    assert_int_equal(reorder_offer(&r, next, &a, 0), REORDER_HELD);
    assert_int_equal(reorder_offer(&r, next, &b, 0), REORDER_HELD);
    assert_int_equal(reorder_offer(&r, next, &c, 0), REORDER_BEYOND);   /* index 2 ≥ W */
    assert_int_equal(reorder_check(&r, next, DATA_BATCH_ID(2, 0)), REORDER_BEYOND);
    /* full, yet `next` itself always has a slot */
    struct wire_msg n = id_msg(next);
    assert_int_equal(reorder_offer(&r, next, &n, 0), REORDER_HELD);
    assert_int_equal(r.held, 3);
    wire_msg_free(&c);
    reorder_free(&r);   /* frees what is still held */
    assert_int_not_equal(reorder_init(&r, 0), 0);
}

/* a scored batch with consistent tensors; the caller breaks one thing */
struct fixture {
    int32_t tokens[NB * NT], targets[NB * NT], doc[NB * NT], topk[NB * NT * NK];
    float lp[NB * NT * NK], tail[NB * NT];
    uint64_t sids[NB];
};

static void fill(struct fixture *f) {
    for (int i = 0; i < NB * NT; i++) {
        f->tokens[i] = i % VOCAB;
        f->targets[i] = i == 0 ? -1 : (i + 1) % VOCAB;
        f->doc[i] = i % NT >= NT / 2;
        f->tail[i] = -3.0f;
        for (int k = 0; k < NK; k++) {
            f->topk[i * NK + k] = (i + k) % VOCAB;
            f->lp[i * NK + k] = -1.5f;
        }
    }
    f->sids[0] = 10;
    f->sids[1] = 11;
}

static struct wire_msg scored(struct fixture *f, const char *skip, double temperature) {
    struct wire_msg m;
    wire_msg_init(&m, WIRE_SCORED);
    m.id = 5;
    m.meta = json_pack("{s:I, s:f}", "next", (json_int_t)6, "temperature", temperature);
    int64_t bt[2] = {NB, NT}, b[1] = {NB}, btk[3] = {NB, NT, NK};
    if (strcmp(skip, "tokens")) wire_msg_add_tensor(&m, "tokens", DT_I32, 2, bt, f->tokens);
    if (strcmp(skip, "targets")) wire_msg_add_tensor(&m, "targets", DT_I32, 2, bt, f->targets);
    if (strcmp(skip, "doc_ids")) wire_msg_add_tensor(&m, "doc_ids", DT_I32, 2, bt, f->doc);
    if (strcmp(skip, "sample_ids")) wire_msg_add_tensor(&m, "sample_ids", DT_U64, 1, b, f->sids);
    if (strcmp(skip, "topk_ids")) wire_msg_add_tensor(&m, "topk_ids", DT_I32, 3, btk, f->topk);
    if (strcmp(skip, "topk_logprobs")) wire_msg_add_tensor(&m, "topk_logprobs", DT_F32, 3, btk, f->lp);
    if (strcmp(skip, "tail_logprob")) wire_msg_add_tensor(&m, "tail_logprob", DT_F32, 2, bt, f->tail);
    return m;
}

static void expect_refused(struct fixture *f, const char *skip, double temp, int code, const char *needle) {
    struct batch_expect e = {.B = NB, .T = NT, .vocab = VOCAB, .scored = 1, .need_doc_ids = 1, .temperature = 1.0f};
    struct batch_view v;
    struct wire_msg m = scored(f, skip, temp);
    int rc = batch_check(&m, &e, &v);
    if (rc != code || !strstr(sushi_last_error(), needle))
        fail_msg("expected %d with \"%s\", got %d: %s", code, needle, rc, sushi_last_error());
    wire_msg_free(&m);
}

static void test_batch_check(void **state) {
    (void)state;
    struct fixture f;
    fill(&f);
    struct batch_expect e = {.B = NB, .T = NT, .vocab = VOCAB, .scored = 1, .need_doc_ids = 1, .temperature = 1.0f};
    struct batch_view v;
    struct wire_msg m = scored(&f, "", 1.0);
    assert_int_equal(batch_check(&m, &e, &v), 0);
    assert_int_equal(v.id, 5);
    assert_int_equal(v.next, 6);
    assert_int_equal(v.k, NK);
    assert_int_equal(v.sample_ids[1], 11);
    assert_int_equal(v.targets[0], -1);
    wire_msg_free(&m);
    /* direct mode: no teacher tensors or temperature needed; doc_ids optional */
    e.scored = 0;
    e.need_doc_ids = 0;
    m = scored(&f, "topk_ids", 9.0);
    assert_int_equal(batch_check(&m, &e, &v), 0);
    assert_int_equal(v.k, 0);
    wire_msg_free(&m);

    expect_refused(&f, "tail_logprob", 1.0, SUSHI_EFORMAT, "tensor tail_logprob missing");
    expect_refused(&f, "doc_ids", 1.0, SUSHI_EFORMAT, "tensor doc_ids missing");
    expect_refused(&f, "", 2.0, SUSHI_EINVAL, "temperature 2 differs");
    f.tokens[3] = VOCAB;
    expect_refused(&f, "", 1.0, SUSHI_EFORMAT, "tokens[3] = 50 outside [0, 50)");
    fill(&f);
    f.targets[2] = -2;
    expect_refused(&f, "", 1.0, SUSHI_EFORMAT, "targets[2] = -2");
    fill(&f);
    f.topk[7] = -1;
    expect_refused(&f, "", 1.0, SUSHI_EFORMAT, "topk_ids[7] = -1");
    fill(&f);

    /* wrong shape and dtype */
    m = scored(&f, "tokens", 1.0);
    int64_t wrong[2] = {NB, NT - 1};
    wire_msg_add_tensor(&m, "tokens", DT_I32, 2, wrong, f.tokens);
    e = (struct batch_expect){.B = NB, .T = NT, .vocab = VOCAB, .scored = 1, .temperature = 1.0f};
    assert_int_equal(batch_check(&m, &e, &v), SUSHI_ESHAPE);
    assert_non_null(strstr(sushi_last_error(), "tensor tokens: shape [2,3], expected [2,4]"));
    wire_msg_free(&m);
    m = scored(&f, "tail_logprob", 1.0);
    int64_t bt[2] = {NB, NT};
    wire_msg_add_tensor(&m, "tail_logprob", DT_I32, 2, bt, f.tokens);
    assert_int_equal(batch_check(&m, &e, &v), SUSHI_ESHAPE);
    assert_non_null(strstr(sushi_last_error(), "tail_logprob: dtype I32, expected F32"));
    wire_msg_free(&m);
    /* meta.next must follow the id */
    m = scored(&f, "", 1.0);
    json_object_set_new(m.meta, "next", json_integer(5));
    assert_int_equal(batch_check(&m, &e, &v), SUSHI_EFORMAT);
    assert_non_null(strstr(sushi_last_error(), "meta.next"));
    wire_msg_free(&m);
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void test_records_truncate(void **state) {
    (void)state;
    char dir[64] = "/tmp/sushi_recordsXXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[96];
    snprintf(sub, sizeof sub, "%s/trainer", dir);
    struct records r;
    uint64_t sids[2] = {4, 5};
    long long ab = 0, lb = 0;
    assert_int_equal(records_open(&r, sub, 0, 0, 0), 0);
    assert_int_equal(records_applied(&r, 1, 2, sids, 2), 0);
    assert_int_equal(records_loss(&r, 1, 1.25f), 0);
    assert_int_equal(records_sync(&r, &ab, &lb), 0);
    assert_int_equal(ab, strlen("1\t2\t4,5\n"));
    assert_int_equal(lb, strlen("1\t1.25\n"));
    assert_int_equal(records_applied(&r, 2, 3, sids, 2), 0);   /* after the "checkpoint" */
    assert_int_equal(records_loss(&r, 2, 1.0f), 0);
    records_close(&r);
    /* resume: back to the saved lengths, then appending continues from there */
    assert_int_equal(records_open(&r, sub, 1, ab, lb), 0);
    assert_int_equal(records_loss(&r, 2, 0.5f), 0);
    records_close(&r);
    char path[128];
    snprintf(path, sizeof path, "%s/applied.tsv", sub);
    assert_int_equal(file_size(path), ab);
    snprintf(path, sizeof path, "%s/losses.tsv", sub);
    char *text = NULL;
    size_t n = 0;
    assert_int_equal(fs_read_all(path, &text, &n), 0);
    assert_string_equal(text, "1\t1.25\n2\t0.5\n");
    free(text);
    /* a checkpoint claiming more than the file holds is refused */
    assert_int_equal(records_open(&r, sub, 1, 1000, 0), SUSHI_EFORMAT);
    /* a fresh run empties them */
    assert_int_equal(records_open(&r, sub, 0, 0, 0), 0);
    records_close(&r);
    assert_int_equal(file_size(path), 0);
    assert_int_equal(fs_remove_tree(dir), 0);
}

int main(void) {
    log_set_level(LOG_QUIET);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_order),
        cmocka_unit_test(test_window_full_and_epochs),
        cmocka_unit_test(test_batch_check),
        cmocka_unit_test(test_records_truncate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
