// libs: data tok config core
// srcs: services/loader/inflight.c
/* The loader's in-flight table (services/loader/inflight.c): which batch went to which
 * peer and when, what must be (re-)sent, rewinds and window moves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/core/log.h"
#include "services/loader/loader.h"

static void test_put_find_replace(void **st) {
    (void)st;
    struct inflight t;
    assert_int_equal(inflight_init(&t, 3), 0);
    assert_null(inflight_find(&t, 7));
    assert_int_equal(inflight_put(&t, 7, 1, 100), 0);
    assert_int_equal(inflight_put(&t, 8, 2, 110), 0);
    assert_int_equal(inflight_put(&t, 7, 0, 200), 0); /* a re-send replaces the entry */
    assert_int_equal(t.n, 2);
    struct inflight_entry *e = inflight_find(&t, 7);
    assert_non_null(e);
    assert_int_equal(e->peer, 0);
    assert_int_equal(e->sent_ms, 200);
    assert_int_equal(inflight_put(&t, 9, 1, 120), 0);
    assert_int_equal(inflight_put(&t, 10, 1, 130), SUSHI_EINVAL); /* full */
    assert_non_null(strstr(sushi_last_error(), "batch 10"));
    inflight_free(&t);
    assert_int_equal(inflight_init(&t, 0), SUSHI_EINVAL);
}

static void test_needs_send(void **st) {
    (void)st;
    struct inflight t;
    assert_int_equal(inflight_init(&t, 8), 0);
    assert_true(inflight_needs_send(&t, 5, 0, 1000));  /* never sent */
    assert_int_equal(inflight_put(&t, 5, 1, 1000), 0);
    assert_false(inflight_needs_send(&t, 5, 1999, 1000));
    assert_true(inflight_needs_send(&t, 5, 2000, 1000)); /* timed out */
    assert_int_equal(inflight_put(&t, 6, 2, 1500), 0);
    assert_int_equal(inflight_orphan_peer(&t, 1), 1);    /* peer 1 died */
    assert_int_equal(inflight_orphan_peer(&t, 1), 0);    /* counted once */
    assert_true(inflight_needs_send(&t, 5, 1001, 1000));
    assert_false(inflight_needs_send(&t, 6, 1600, 1000));
    assert_int_equal(inflight_put(&t, 5, 2, 1700), 0);   /* re-sent: no longer due */
    assert_false(inflight_needs_send(&t, 5, 1800, 1000));
    inflight_free(&t);
}

static void test_keep_range_and_clear(void **st) {
    (void)st;
    struct inflight t;
    assert_int_equal(inflight_init(&t, 8), 0);
    for (uint64_t id = 10; id < 16; id++) assert_int_equal(inflight_put(&t, id, 0, 0), 0);
    /* trainer applied up to 12, window of 3: keep 12, 13, 14 */
    assert_int_equal(inflight_keep_range(&t, 12, 15), 3);
    assert_int_equal(t.n, 3);
    assert_null(inflight_find(&t, 11));
    assert_null(inflight_find(&t, 15));
    assert_non_null(inflight_find(&t, 13));
    inflight_clear(&t);                                  /* rewind */
    assert_int_equal(t.n, 0);
    assert_true(inflight_needs_send(&t, 13, 0, 1000));
    inflight_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_find_replace),
        cmocka_unit_test(test_needs_send),
        cmocka_unit_test(test_keep_range_and_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
