// libs: data tok config student kernels core
/* sushi-eval's parts without a model: the passkey prompt (the exact text the loader's
 * needle rows use, byte tokens), the grid with decoders that know or miss the key
 * (per-cell accuracy, null cells, the mean), the held-out sums worked out by hand, and
 * the checkpoint watcher (stable-before-due, once per version, rename swaps, transient
 * names, announcements), and the settings (defaults taken from data: and teacher:,
 * errors that name the field). The service's files are compiled in here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/config/config.h"
#include "services/eval/eval_config.c"
#include "services/eval/eval_metrics.c"
#include "services/eval/eval_needle.c"
#include "services/eval/eval_watch.c"

#define PRE "There is important info hidden inside a lot of irrelevant text. Find it and memorize it. " \
            "I will quiz you about the important information there."
#define FILL " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."

static char *ids_text(const int32_t *ids, int n) {
    char *s = malloc((size_t)n + 1);
    for (int i = 0; i < n; i++) s[i] = (char)ids[i];
    s[n] = 0;
    return s;
}

static void test_prompt_text(void **st) {
    (void)st;
    struct data_tokenizer tok;
    data_tokenizer_bytes(&tok);
    int32_t *p, *a;
    int np, na;
    /* fixed = 143 + 36 + 38 + 6 = 223 bytes; (500 - 223) / 90 = 3 fillers; depth 0.5 -> 2 (1.5 rounded) before */
    assert_int_equal(eval_needle_prompt(&tok, 4821, 0.5, 500, &p, &np, &a, &na), 0);
    char *text = ids_text(p, np), *ans = ids_text(a, na);
    const char *want = PRE FILL FILL " The pass key is 04821. Remember it." FILL " What is the pass key? The pass key is";
    assert_string_equal(text, want);
    assert_string_equal(ans, " 04821");
    assert_true(np + na <= 500);
    free(text); free(ans); free(p); free(a);
    assert_int_equal(eval_needle_prompt(&tok, 12345, 0.0, 223, &p, &np, &a, &na), 0);
    text = ids_text(p, np);
    assert_string_equal(text, PRE " The pass key is 12345. Remember it. What is the pass key? The pass key is");
    free(text); free(p); free(a);
    assert_int_equal(eval_needle_prompt(&tok, 12345, 0.0, 222, &p, &np, &a, &na), SUSHI_EINVAL);
    assert_int_equal(eval_needle_prompt(&tok, 12345, 1.5, 500, &p, &np, &a, &na), SUSHI_EINVAL);
}

/* a decoder that reads the key from the prompt; ctx: depth limit (only needles in the
 * first `*limit` share of the prompt are found), or NULL for always */
static int oracle_decoder(void *ctx, const int32_t *prompt, int n, int steps, int32_t *out) {
    char *text = ids_text(prompt, n);
    const char *at = strstr(text, "pass key is ");
    const double *limit = ctx;
    assert_non_null(at);
    assert_int_equal(steps, 6);
    int found = !limit || (double)(at - text) < *limit * n;
    out[0] = ' ';
    for (int i = 0; i < 5; i++) out[1 + i] = found ? at[12 + i] : '0';
    free(text);
    return 0;
}

static void test_grid(void **st) {
    (void)st;
    struct data_tokenizer tok;
    data_tokenizer_bytes(&tok);
    struct eval_needle_config c = {.n_lengths = 3, .lengths = {200, 400, 900}, .n_depths = 2,
                                   .depths = {0.0, 1.0}, .trials = 3, .seed = 5};
    json_t *cells;
    double mean;
    assert_int_equal(eval_needle_grid(&c, &tok, 800, oracle_decoder, NULL, &cells, &mean), 0);
    /* 200 is too short for a prompt, 900 exceeds max_len: null */
    assert_int_equal(json_object_size(cells), 6);
    assert_true(json_is_null(json_object_get(cells, "200@0")));
    assert_true(json_is_null(json_object_get(cells, "900@1")));
    assert_float_equal(json_real_value(json_object_get(cells, "400@0")), 1.0, 0);
    assert_float_equal(json_real_value(json_object_get(cells, "400@1")), 1.0, 0);
    assert_float_equal(mean, 1.0, 0);
    json_decref(cells);
    double half = 0.5;   /* finds needles early in the prompt only */
    assert_int_equal(eval_needle_grid(&c, &tok, 1000, oracle_decoder, &half, &cells, &mean), 0);
    assert_float_equal(json_real_value(json_object_get(cells, "400@0")), 1.0, 0);
    assert_float_equal(json_real_value(json_object_get(cells, "400@1")), 0.0, 0);
    assert_float_equal(json_real_value(json_object_get(cells, "900@0")), 1.0, 0);
    assert_float_equal(json_real_value(json_object_get(cells, "900@1")), 0.0, 0);
    assert_float_equal(mean, 0.5, 1e-12);
    json_decref(cells);
    c.trials = 0;
    assert_int_equal(eval_needle_grid(&c, &tok, 1000, oracle_decoder, NULL, &cells, &mean), 0);
    assert_true(isnan(mean));
    json_decref(cells);
}

static void test_sums(void **st) {
    (void)st;
    /* rows: model logits (0, ln 2, ln 3) and (ln 4, 0, 0); teacher (0, 0, 0) and (0, ln 2, 0) */
    float lp[6] = {0, logf(2), logf(3), logf(4), 0, 0}, tlp[6] = {0, 0, 0, 0, logf(2), 0};
    int32_t targets[2] = {2, -1};
    eval_log_softmax(lp, 2, 3);
    eval_log_softmax(tlp, 2, 3);
    assert_float_equal(lp[2], logf(3.0f / 6.0f), 1e-6);
    struct eval_sums s = {0};
    assert_int_equal(eval_sums_add(&s, lp, tlp, targets, 2, 3), 0);
    assert_int_equal(s.n, 1);                              /* target -1 ignored */
    assert_float_equal(s.ce, log(2.0), 1e-6);              /* -log(3/6) */
    assert_int_equal(s.agree, 0);                          /* argmax 2 vs 0 (first of ties) */
    /* KL(uniform || (1,2,3)/6) = Σ 1/3 (log 1/3 − log p) */
    double kl = (log(1.0 / 3) * 3 - log(1.0 / 6) - log(2.0 / 6) - log(3.0 / 6)) / 3;
    assert_float_equal(s.kd, kl, 1e-6);
    targets[1] = 0;
    assert_int_equal(eval_sums_add(&s, lp, tlp, targets, 2, 3), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.agree, 0 + 0 + 0);                  /* row 2: argmax 0 vs 1 */
    targets[1] = 3;
    assert_int_equal(eval_sums_add(&s, lp, NULL, targets, 2, 3), SUSHI_EINVAL);
    assert_int_equal(eval_argmax((float[]){1, 3, 3, 2}, 4), 1);
}

static void put(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(fs_mkdir_p(dir, 0755), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_watch(void **st) {
    (void)st;
    char root[] = "/tmp/sushi-eval-XXXXXX", a[256], tmp[256], b[256];
    assert_non_null(mkdtemp(root));
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(tmp, sizeof tmp, "%s/a.tmp-1", root);
    snprintf(b, sizeof b, "%s/b", root);
    struct eval_watch w;
    assert_int_equal(eval_watch_init(&w, root), 0);
    assert_int_equal(eval_watch_scan(&w), 0);
    assert_int_equal(eval_watch_next(&w), -1);
    put(a, "config.json", "{}");
    assert_int_equal(eval_watch_scan(&w), 0);
    assert_int_equal(eval_watch_next(&w), -1);      /* incomplete */
    put(a, "model.safetensors", "v1");
    put(tmp, "config.json", "{}");                   /* a save in progress: never tracked */
    put(tmp, "model.safetensors", "v2");
    assert_int_equal(eval_watch_scan(&w), 0);
    assert_int_equal(eval_watch_next(&w), -1);      /* complete, not yet stable */
    assert_int_equal(eval_watch_scan(&w), 0);
    int i = eval_watch_next(&w);
    assert_true(i >= 0);
    assert_string_equal(w.items[i].path, a);
    assert_int_equal(eval_watch_next(&w), -1);
    eval_watch_mark(&w, i);
    assert_int_equal(eval_watch_scan(&w), 0);
    assert_int_equal(eval_watch_next(&w), -1);      /* same version: once */
    /* swap by rename: a new version, due after one stable poll */
    char old[300];
    snprintf(old, sizeof old, "%s.old", a);
    assert_int_equal(rename(a, old), 0);
    assert_int_equal(rename(tmp, a), 0);
    assert_int_equal(eval_watch_scan(&w), 0);
    assert_int_equal(eval_watch_next(&w), -1);
    assert_int_equal(eval_watch_scan(&w), 0);
    assert_int_equal((i = eval_watch_next(&w)) >= 0, 1);
    assert_string_equal(w.items[i].path, a);
    eval_watch_mark(&w, i);
    assert_int_equal(w.n, 1);                        /* a.old and a.tmp-1 never tracked */
    /* an announcement is due at the next poll, without waiting */
    put(b, "config.json", "{}");
    put(b, "model.safetensors", "x");
    struct eval_watch only;
    assert_int_equal(eval_watch_init(&only, NULL), 0);
    assert_int_equal(eval_watch_announce(&only, b), 0);
    assert_int_equal(eval_watch_scan(&only), 0);
    assert_int_equal((i = eval_watch_next(&only)), 0);
    eval_watch_mark(&only, i);
    assert_int_equal(eval_watch_announce(&only, b), 0);  /* unchanged: not again */
    assert_int_equal(eval_watch_scan(&only), 0);
    assert_int_equal(eval_watch_next(&only), -1);
    assert_int_equal(eval_watch_announce(&only, ""), SUSHI_EINVAL);
    eval_watch_free(&only);
    eval_watch_free(&w);
    assert_int_equal(fs_remove_tree(root), 0);
}

static int load(const char *yaml, struct eval_config *c) {
    json_t *root = NULL;
    assert_int_equal(config_parse_yaml(yaml, strlen(yaml), "run.yaml", &root), 0);
    int rc = eval_config_load(root, "run.yaml", c);
    if (rc == 0) {   /* borrowed strings point into root: compare before freeing it */
        assert_true(c->teacher == NULL || strcmp(c->teacher, "t/ckpt") == 0 || strcmp(c->teacher, "own") == 0);
    }
    json_decref(root);
    return rc;
}

static void test_config(void **st) {
    (void)st;
    const char *base = "data: {seq_len: 96, batch_size: 3, tokenizer: tok.json, sources: [{path: a.txt}]}\n"
                       "teacher: {checkpoint: t/ckpt}\n";
    char yaml[1024];
    struct eval_config c;
    snprintf(yaml, sizeof yaml, "%seval: {batches: 3, data: {seed: 5, sources: [{path: h.txt}]},"
             " needle: {lengths: [128, 256], depths: [0.25]}}\n", base);
    assert_int_equal(load(yaml, &c), 0);
    assert_int_equal(c.data.seq_len, 96);          /* from data: */
    assert_int_equal(c.data.batch_size, 3);
    assert_string_equal(c.data.tokenizer, "tok.json");
    assert_int_equal((int)c.data.seed, 5);
    assert_float_equal(c.data.needle_share, 0.0, 0);
    assert_string_equal(c.data.sources[0].path, "h.txt");
    assert_int_equal(c.batches, 3);
    assert_int_equal(c.needle.n_lengths, 2);
    assert_int_equal(c.needle.lengths[1], 256);
    assert_int_equal(c.needle.trials, 2);          /* default */
    assert_float_equal(c.needle.depths[0], 0.25, 0);
    eval_config_free(&c);
    snprintf(yaml, sizeof yaml, "%seval: {teacher: own, data: {seq_len: 32, sources: [{path: h.txt}]}}\n", base);
    assert_int_equal(load(yaml, &c), 0);
    assert_int_equal(c.data.seq_len, 32);          /* its own wins */
    assert_int_equal(c.needle.trials, 0);          /* no needle section: no grid */
    eval_config_free(&c);
    snprintf(yaml, sizeof yaml, "%seval: {teacher: \"\", data: {sources: [{path: h.txt}]}}\n", base);
    assert_int_equal(load(yaml, &c), 0);
    assert_null(c.teacher);
    eval_config_free(&c);
    snprintf(yaml, sizeof yaml, "%seval: {batches: 2}\n", base);
    assert_int_equal(load(yaml, &c), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "eval.data: required"));
    snprintf(yaml, sizeof yaml, "%seval: {data: {sources: [{path: h.txt}]}, needle: {lengths: [64], depths: [2]}}\n", base);
    assert_int_equal(load(yaml, &c), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "eval.needle.depths[0]"));
    snprintf(yaml, sizeof yaml, "%seval: {data: {sources: [{path: h.txt}]}, bogus: 1}\n", base);
    assert_int_equal(load(yaml, &c), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "bogus"));
    assert_int_equal(load(base, &c), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "eval"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_text),
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_sums),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
