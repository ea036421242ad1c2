// libs: media core
/* Manifests: records (modality, path resolved against the manifest's folder, text,
 * line) from a JSONL file; every kind of bad line skipped, counted and logged as
 * FILE:LINE: cause; a missing manifest is an error naming it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/media/media.h"

static const char k_manifest[] =
    "{\"image\": \"cats/1.png\", \"text\": \"a cat\"}\n"                  /* 1 */
    "\n"                                                                  /* 2 blank */
    "{\"audio\": \"/abs/a.wav\", \"text\": \"hello\", \"id\": 7}\r\n"     /* 3 */
    "{\"video\": \"v.mp4\"}\n"                                            /* 4 no text */
    "not json\n"                                                          /* 5 */
    "[1, 2]\n"                                                            /* 6 */
    "{\"text\": \"orphan\"}\n"                                            /* 7 */
    "{\"image\": \"a.png\", \"mesh\": \"b.obj\"}\n"                        /* 8 */
    "{\"mesh\": 5}\n"                                                     /* 9 */
    "{\"mesh\": \"\"}\n"                                                  /* 10 */
    "{\"image\": \"x.png\", \"text\": 3}\n"                                /* 11 */
    "   \t\n"                                                             /* 12 blank */
    "{\"mesh\": \"shapes/cube.obj\", \"text\": \"a cube \\u00e9\"}";       /* 13, no final newline */

static void test_manifest_records_and_bad_lines(void **state)
{
    (void)state;
    char dir[] = "/tmp/sushi-media-XXXXXX", path[128], logp[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    snprintf(logp, sizeof logp, "%s/log.txt", dir);
    assert_int_equal(fs_write_atomic(path, k_manifest, strlen(k_manifest)), 0);

    /* capture the warnings */
    fflush(stderr);
    int saved = dup(2), fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    struct media_manifest m;
    int rc = media_manifest_read(path, &m);
    fflush(stderr);
    dup2(saved, 2);
    close(fd);
    close(saved);
    assert_int_equal(rc, 0);

    assert_int_equal(m.n, 4);
    assert_int_equal(m.skipped, 7);
    char want[256];
    assert_int_equal(m.records[0].kind, MEDIA_IMAGE);
    snprintf(want, sizeof want, "%s/cats/1.png", dir);
    assert_string_equal(m.records[0].path, want);
    assert_string_equal(m.records[0].text, "a cat");
    assert_int_equal(m.records[0].line, 1);
    assert_int_equal(m.records[1].kind, MEDIA_AUDIO);
    assert_string_equal(m.records[1].path, "/abs/a.wav");
    assert_string_equal(m.records[1].text, "hello");
    assert_int_equal(m.records[1].line, 3);
    assert_int_equal(m.records[2].kind, MEDIA_VIDEO);
    assert_string_equal(m.records[2].text, "");
    assert_int_equal(m.records[2].line, 4);
    assert_int_equal(m.records[3].kind, MEDIA_MESH);
    snprintf(want, sizeof want, "%s/shapes/cube.obj", dir);
    assert_string_equal(m.records[3].path, want);
    assert_string_equal(m.records[3].text, "a cube \xc3\xa9");
    assert_int_equal(m.records[3].line, 13);
    media_manifest_free(&m);
    media_manifest_free(&m);

    char *log;
    size_t n;
    assert_int_equal(fs_read_all(logp, &log, &n), 0);
    printf("%s", log);
    const struct {
        int line;
        const char *cause;
    } bad[] = {{5, "not JSON"}, {6, "not a JSON object"}, {7, "no \"image\""}, {8, "both \"image\" and \"mesh\""},
               {9, "\"mesh\" must be a non-empty string"}, {10, "\"mesh\" must be a non-empty string"},
               {11, "\"text\" must be a string"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(want, sizeof want, "%s:%d: skipped: %s", path, bad[i].line, bad[i].cause);
        if (!strstr(log, want)) printf("missing: %s\n", want);
        assert_non_null(strstr(log, want));
    }
    free(log);

    /* relative manifest path: records stay relative to the same folder */
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(fs_write_atomic("rel.jsonl", "{\"image\": \"p.png\"}\n", 19), 0);
    assert_int_equal(media_manifest_read("rel.jsonl", &m), 0);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.records[0].path, "p.png");
    media_manifest_free(&m);
    assert_int_equal(chdir("/"), 0);

    snprintf(path, sizeof path, "%s/missing.jsonl", dir);
    assert_int_equal(media_manifest_read(path, &m), SUSHI_ENOTFOUND);
    assert_non_null(strstr(sushi_last_error(), path));
    assert_int_equal(fs_remove_tree(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_manifest_records_and_bad_lines)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
