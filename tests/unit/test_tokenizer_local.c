// libs: tok core
/* Tokenizer behaviour that needs no reference: refusal of malformed files and
 * arguments with messages naming the cause, the defined handling of invalid UTF-8,
 * decode(encode(x)) == x, concurrent encodes on one tokenizer, and sushi-tokenize. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/test_tokenizer_case.h"

static void test_roundtrip(void **state)
{
    (void)state;
    if (!fs_exists(g_ds)) { skip(); return; }
    struct tokenizer *t = load_or_fail(g_ds);
    check_roundtrip(t, varied, 11);                  /* texts 0..10 are valid UTF-8 */
    check_roundtrip(t, varied + 12, N_VARIED - 12);
    rng_state = 77;
    struct text *tx = random_texts(2000, 0);
    check_roundtrip(t, tx, 2000);
    free_texts(tx, 2000);
    /* skip_special drops special tokens only */
    int32_t *ids;
    size_t n, len;
    char *back;
    const char *s = "<｜begin▁of▁sentence｜>hi<｜User｜>";
    assert_int_equal(tok_encode(t, s, strlen(s), 0, &ids, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 0);
    assert_int_equal(tok_decode(t, ids, n, 1, &back, &len), 0);
    assert_string_equal(back, "hi<｜User｜>");
    free(back);
    free(ids);
    tok_free(t);
}

/* Invalid UTF-8: each maximal invalid subsequence encodes as U+FFFD would. */
static void test_invalid_utf8(void **state)
{
    (void)state;
    if (!fs_exists(g_gpt2)) { skip(); return; }
    struct tokenizer *t = load_or_fail(g_gpt2);
    static const char bad[] = "a\xff\xc3(b\xe2\x82z\xf0\x9f\x98\xed\xa0\x80";
    static const char good[] = "a\xef\xbf\xbd\xef\xbf\xbd(b\xef\xbf\xbdz\xef\xbf\xbd"
                               "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd";
    int32_t *a, *b;
    size_t na, nb, len;
    assert_int_equal(tok_encode(t, bad, sizeof bad - 1, 0, &a, &na), 0);
    assert_int_equal(tok_encode(t, good, sizeof good - 1, 0, &b, &nb), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    char *back;
    assert_int_equal(tok_decode(t, a, na, 0, &back, &len), 0);
    assert_int_equal(len, sizeof good - 1);
    assert_memory_equal(back, good, len);
    free(back);
    /* a lone byte token decodes to U+FFFD; an empty text to no ids */
    int32_t lone = tok_token_to_id(t, "\xc3\x83");    /* byte 0xC3 */
    assert_true(lone >= 0);
    assert_int_equal(tok_decode(t, &lone, 1, 0, &back, &len), 0);
    assert_string_equal(back, "\xef\xbf\xbd");
    free(back);
    free(a);
    free(b);
    assert_int_equal(tok_encode(t, "", 0, 0, &a, &na), 0);
    assert_int_equal(na, 0);
    free(a);
    tok_free(t);
}

/* ---- threads ---- */

struct job { const struct tokenizer *t; const struct text *tx; size_t nt; int32_t **ids; size_t *n; int rc; };

static void *encode_all(void *arg)
{
    struct job *j = arg;
    for (int rep = 0; rep < 3; rep++)
        for (size_t i = 0; i < j->nt && !j->rc; i++) {
            free(j->ids[i]);
            j->rc = tok_encode(j->t, j->tx[i].s, j->tx[i].n, 0, &j->ids[i], &j->n[i]);
        }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    if (!fs_exists(g_ds)) { skip(); return; }
    struct tokenizer *t = load_or_fail(g_ds);
    rng_state = 1234;
    const size_t nt = 400;
    struct text *tx = random_texts(nt, 1);
    struct job jobs[4];
    pthread_t th[4];
    for (int k = 0; k < 4; k++) {
        jobs[k] = (struct job){t, tx, nt, calloc(nt, sizeof(int32_t *)), calloc(nt, sizeof(size_t)), 0};
        assert_int_equal(pthread_create(&th[k], NULL, encode_all, &jobs[k]), 0);
    }
    for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
    for (size_t i = 0; i < nt; i++) {
        int32_t *ids;
        size_t n;
        assert_int_equal(tok_encode(t, tx[i].s, tx[i].n, 0, &ids, &n), 0);
        for (int k = 0; k < 4; k++) {
            assert_int_equal(jobs[k].rc, 0);
            assert_int_equal(jobs[k].n[i], n);
            assert_memory_equal(jobs[k].ids[i], ids, n * sizeof *ids);
        }
        free(ids);
    }
    for (int k = 0; k < 4; k++) {
        for (size_t i = 0; i < nt; i++) free(jobs[k].ids[i]);
        free(jobs[k].ids);
        free(jobs[k].n);
    }
    free_texts(tx, nt);
    tok_free(t);
}

/* ---- malformed input ---- */

static int load_text(const char *json_text, const char *expect_in_msg)
{
    char path[128];
    snprintf(path, sizeof path, "%s/bad.json", g_dir);
    FILE *f = fopen(path, "w");
    fputs(json_text, f);
    fclose(f);
    struct tokenizer *t = NULL;
    int rc = tok_load(&t, path);
    assert_null(t);
    if (!strstr(sushi_last_error(), expect_in_msg)) fprintf(stderr, "message: %s\n", sushi_last_error());
    assert_non_null(strstr(sushi_last_error(), expect_in_msg));
    return rc;
}

#define BYTES_VOCAB_HEAD "{\"model\":{\"type\":\"BPE\",\"vocab\":{"
static void test_malformed(void **state)
{
    (void)state;
    struct tokenizer *t = NULL;
    assert_int_equal(tok_load(&t, "/nonexistent/tokenizer.json"), SUSHI_ENOTFOUND);
    assert_int_equal(tok_load(NULL, "x"), SUSHI_EINVAL);
    assert_int_equal(load_text("{\"model\": {\"type\": \"BPE\", ", "line"), SUSHI_EFORMAT);
    assert_int_equal(load_text("[1,2]", "expected a JSON object"), SUSHI_EFORMAT);
    assert_int_equal(load_text("{\"model\":{\"type\":\"WordPiece\"}}", "model.type"), SUSHI_EUNSUPPORTED);
    assert_int_equal(load_text(BYTES_VOCAB_HEAD "\"a\":0,\"b\":\"x\"},\"merges\":[]}}", "vocab entry \"b\""), SUSHI_EFORMAT);
    assert_int_equal(load_text(BYTES_VOCAB_HEAD "\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}", "not in the vocabulary"), SUSHI_EFORMAT);
    assert_int_equal(load_text(BYTES_VOCAB_HEAD "\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", "merged token"), SUSHI_EFORMAT);
    assert_int_equal(load_text(BYTES_VOCAB_HEAD "\"a\":0,\"b\":1},\"merges\":[\"ab\"]}}", "one space"), SUSHI_EFORMAT);
    assert_int_equal(load_text(BYTES_VOCAB_HEAD "\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Whitespace\"}}",
                               "\"Whitespace\" is not supported"), SUSHI_EUNSUPPORTED);
    assert_int_equal(load_text(BYTES_VOCAB_HEAD "\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\","
                               "\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}}", "regex /(/"), SUSHI_EFORMAT);
    assert_int_equal(load_text(BYTES_VOCAB_HEAD "\"a\":0},\"merges\":[]},\"pre_tokenizer\":null}", "ByteLevel step is required"),
                     SUSHI_EUNSUPPORTED);
    assert_int_equal(load_text(BYTES_VOCAB_HEAD "\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
                               "lacks the byte-level token of byte 0x00"), SUSHI_EFORMAT);
    assert_int_equal(load_text("{\"added_tokens\":[{\"id\":-1,\"content\":\"x\"}],\"model\":{}}", "added_tokens[0]"), SUSHI_EFORMAT);
    if (!fs_exists(g_gpt2)) return;
    t = load_or_fail(g_gpt2);
    int32_t bad_ids[2] = {5, 50257};
    char *text;
    size_t len;
    assert_int_equal(tok_decode(t, bad_ids, 2, 0, &text, &len), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "id 50257 at position 1"));
    assert_int_equal(tok_encode(t, NULL, 3, 0, (int32_t **)&text, &len), SUSHI_EINVAL);
    assert_int_equal(tok_token_to_id(t, "hello"), 31373);
    assert_string_equal(tok_id_to_token(t, 31373), "hello");
    assert_null(tok_id_to_token(t, 50257));
    tok_free(t);
}

/* ---- sushi-tokenize ---- */

static char *slurp(const char *path)
{
    char *b;
    size_t n;
    return fs_read_all(path, &b, &n) ? NULL : b;
}

static void test_cli(void **state)
{
    (void)state;
    char bin[600], in[128], ids[128], back[128], cmd[2400];
    const char *build = getenv("BUILD");   /* set by scripts/run-tests.sh (build-asan, ...) */
    snprintf(bin, sizeof bin, "%s/%s/bin/sushi-tokenize", repo_root(), build && *build ? build : "build");
    if (!fs_exists(g_ds)) { skip(); return; }
    assert_true(fs_exists(bin));   /* built by `make all` before the tests run */
    static const char *lines[] = {"Hello world, 12345", "深度求索 ひらがな 😀", "", "<｜begin▁of▁sentence｜>x\ty"};
    snprintf(in, sizeof in, "%s/cli_in.txt", g_dir);
    snprintf(ids, sizeof ids, "%s/cli_ids.txt", g_dir);
    snprintf(back, sizeof back, "%s/cli_back.txt", g_dir);
    FILE *f = fopen(in, "w");
    for (int i = 0; i < 4; i++) fprintf(f, "%s\n", lines[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' --tokenizer '%s' --lines '%s' > '%s'", bin, g_ds, in, ids);
    assert_int_equal(system(cmd), 0);
    struct tokenizer *t = load_or_fail(g_ds);
    char *got = slurp(ids), *line = got;
    assert_non_null(got);
    for (int i = 0; i < 4; i++) {            /* each output line: the ids of that input line */
        int32_t *want;
        size_t n;
        assert_int_equal(tok_encode(t, lines[i], strlen(lines[i]), 0, &want, &n), 0);
        for (size_t k = 0; k < n; k++) {
            char *e;
            assert_int_equal(strtol(line, &e, 10), want[k]);
            line = e;
        }
        assert_int_equal(*line, '\n');
        line++;
        free(want);
    }
    assert_int_equal(*line, 0);
    free(got);
    tok_free(t);
    snprintf(cmd, sizeof cmd, "'%s' --tokenizer '%s' --lines --decode --special < '%s' > '%s'", bin, g_ds, ids, back);
    assert_int_equal(system(cmd), 0);
    char *a = slurp(in), *b = slurp(back);
    assert_string_equal(a, b);
    free(a);
    free(b);
    snprintf(cmd, sizeof cmd, "'%s' --lines < /dev/null 2>/dev/null", bin);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "echo hi | '%s' --tokenizer /nonexistent.json 2>/dev/null", bin);
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
}

int main(void)
{
    if (tok_test_setup()) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed), cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_threads),
        cmocka_unit_test(test_cli),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fs_remove_tree(g_dir);
    return rc;
}
