// libs: deepseek kernels cuda core tok
/* sushi-teacher score, run as a program on a random V3-flavour checkpoint written by
 * tests/oracle/deepseek_ref.py: the raw logits file equals ds_forward of each line
 * (≤ 1e-5), each JSON line carries the seq/pos/ids/logprobs/tail that ds_topk gives
 * for those logits at the requested K and T, and bad input is refused with a message.
 * sushi-teacher generate (greedy, with the latent cache) prints the text of the tokens
 * that argmax over a full recomputation of the sequence gives at every step. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/tokenizer/tokenizer.h"
#include "models/deepseek/deepseek.h"

static char prog[4096], dir[64];

static const int32_t lines[2][6] = {{3, 1, 4, 1, 5, 9}, {2, 7, 1, 8, 0, 0}};
static const int lens[2] = {6, 4};

/* runs sushi-teacher with ARGS; status, and stdout+stderr in *out (malloc'd) */
static int run(const char *args, char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", prog, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    *out = malloc(cap);
    assert_non_null(*out);
    size_t r;
    while ((r = fread(*out + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (n + 1 == cap) {
            cap *= 2;
            *out = realloc(*out, cap);
            assert_non_null(*out);
        }
    }
    (*out)[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup(void **state) {
    (void)state;
    const char *root = getenv("SUSHI_REPO_ROOT"), *build = getenv("BUILD");
    snprintf(prog, sizeof prog, "%s/%s/bin/sushi-teacher", root ? root : ".", build ? build : "build");
    snprintf(dir, sizeof dir, "/tmp/sushi-teacher-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/deepseek_ref.py write %s v3 21 >/dev/null 2>&1",
             root ? root : ".", dir);
    if (system(cmd)) dir[0] = 0;   /* no torch: the tests skip */
    snprintf(cmd, sizeof cmd, "%s/ids.txt", dir);
    FILE *f = fopen(cmd, "w");
    if (!f) return -1;
    for (int i = 0; i < 2; i++) {
        for (int t = 0; t < lens[i]; t++) fprintf(f, "%d ", lines[i][t]);
        fprintf(f, "\n");
    }
    fclose(f);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (dir[0]) fs_remove_tree(dir);
    return 0;
}

static void test_score_outputs(void **state) {
    (void)state;
    if (!dir[0] || !fs_exists(prog)) skip();
    enum { K = 5 };
    char args[4096], *out;
    snprintf(args, sizeof args, "score --model %s --ids-file %s/ids.txt --logits-out %s/z.bin --topk %d --temperature 0.7",
             dir, dir, dir, K);
    assert_int_equal(run(args, &out), 0);
    struct ds_model m;
    struct ds_cache k;
    assert_int_equal(ds_load(&m, dir, ops_cpu(), 8), 0);
    assert_int_equal(ds_cache_init(&k, &m), 0);
    int V = m.cfg.vocab;
    char zpath[256];
    snprintf(zpath, sizeof zpath, "%s/z.bin", dir);
    assert_int_equal(fs_file_size(zpath), (long long)(lens[0] + lens[1]) * V * 4);
    FILE *zf = fopen(zpath, "rb");
    assert_non_null(zf);
    float *z = malloc((size_t)6 * V * sizeof(float)), *zr = malloc((size_t)6 * V * sizeof(float));
    assert_non_null(z);
    assert_non_null(zr);
    char *line = out;
    for (int i = 0; i < 2; i++) {
        ds_cache_reset(&k);
        assert_int_equal(ds_forward(&m, &k, lines[i], lens[i], z), 0);
        assert_int_equal(fread(zr, sizeof(float), (size_t)lens[i] * V, zf), (size_t)lens[i] * V);
        /* the same code; ≤ 1e-5 rather than bitwise, as the program may be built with other flags */
        double num = 0, den = 0;
        for (size_t q = 0; q < (size_t)lens[i] * V; q++) {
            num += ((double)z[q] - zr[q]) * ((double)z[q] - zr[q]);
            den += (double)z[q] * z[q];
        }
        assert_true(sqrt(num / den) <= 1e-5);
        for (int t = 0; t < lens[i]; t++) {
            int32_t ids[K];
            float lp[K], tail;
            assert_int_equal(ds_topk(z + (size_t)t * V, V, K, 0.7f, ids, lp, &tail), 0);
            char *nl = strchr(line, '\n');
            assert_non_null(nl);
            *nl = 0;
            json_error_t e;
            json_t *j = json_loads(line, 0, &e);
            assert_non_null(j);
            assert_int_equal(json_integer_value(json_object_get(j, "seq")), i);
            assert_int_equal(json_integer_value(json_object_get(j, "pos")), t);
            json_t *ji = json_object_get(j, "ids"), *jl = json_object_get(j, "logprobs");
            assert_int_equal(json_array_size(ji), K);
            assert_int_equal(json_array_size(jl), K);
            for (int q = 0; q < K; q++) {
                assert_int_equal(json_integer_value(json_array_get(ji, q)), ids[q]);
                assert_true(fabs(json_number_value(json_array_get(jl, q)) - lp[q]) <= 1e-5 * (1 + fabs(lp[q])));
            }
            assert_true(fabs(json_number_value(json_object_get(j, "tail")) - tail) <= 1e-5 * (1 + fabs(tail)));
            json_decref(j);
            line = nl + 1;
        }
    }
    assert_int_equal(*line, 0);
    fclose(zf);
    free(z);
    free(zr);
    free(out);
    ds_cache_free(&k, &m);
    ds_free(&m);
}

static void test_score_refusals(void **state) {
    (void)state;
    if (!dir[0] || !fs_exists(prog)) skip();
    char args[4096], *out, bad[256];
    snprintf(bad, sizeof bad, "%s/bad.txt", dir);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fprintf(f, "1 2 3\n4 x 5\n");
    fclose(f);
    snprintf(args, sizeof args, "score --model %s --ids-file %s", dir, bad);
    assert_int_equal(run(args, &out), 1);
    assert_non_null(strstr(out, "line 2"));
    free(out);
    snprintf(args, sizeof args, "score --model %s --ids-file %s/ids.txt --topk 0", dir, dir);
    assert_int_equal(run(args, &out), 2);
    free(out);
    snprintf(args, sizeof args, "score --model %s/nothing --ids-file %s/ids.txt", dir, dir);
    assert_int_equal(run(args, &out), 1);
    assert_non_null(strstr(out, "config.json"));
    free(out);
    f = fopen(bad, "w");
    assert_non_null(f);
    fprintf(f, "1 2 97\n");   /* vocab is 97: id 97 is out of range */
    fclose(f);
    snprintf(args, sizeof args, "score --model %s --ids-file %s", dir, bad);
    assert_int_equal(run(args, &out), 1);
    assert_non_null(strstr(out, "97"));
    free(out);
    assert_int_equal(run("score --help", &out), 0);
    assert_non_null(strstr(out, "--logits-out"));
    free(out);
}

static void test_generate_equals_recomputation(void **state) {
    (void)state;
    if (!dir[0] || !fs_exists(prog)) skip();
    const char *root = getenv("SUSHI_REPO_ROOT");
    char gdir[128], cmd[8192], tokp[256];
    snprintf(gdir, sizeof gdir, "%s/gen", dir);
    snprintf(tokp, sizeof tokp, "%s/tokenizer.json", gdir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/deepseek_ref.py write %s v3 4 --vocab 260 && "
             "/usr/bin/python3 %s/tests/oracle/deepseek_ref.py tokenizer %s", root ? root : ".", gdir, root ? root : ".",
             tokp);
    assert_int_equal(system(cmd), 0);
    enum { NEW = 10 };
    const char *prompt = "hello world";
    char args[4096], *out;
    snprintf(args, sizeof args, "generate --model %s --tokenizer %s --prompt '%s' --max-tokens %d", gdir, tokp, prompt,
             NEW);
    assert_int_equal(run(args, &out), 0);
    struct tokenizer *tok;
    assert_int_equal(tok_load(&tok, tokp), 0);
    int32_t *ids;
    size_t n;
    assert_int_equal(tok_encode(tok, prompt, strlen(prompt), 1, &ids, &n), 0);
    ids = realloc(ids, (n + NEW) * sizeof(int32_t));
    assert_non_null(ids);
    struct ds_model m;
    struct ds_cache k;
    assert_int_equal(ds_load(&m, gdir, ops_cpu(), (int)n + NEW), 0);
    assert_int_equal(ds_cache_init(&k, &m), 0);
    int V = m.cfg.vocab, made = 0;
    float *z = malloc((n + NEW) * (size_t)V * sizeof(float));
    assert_non_null(z);
    for (; made < NEW; made++) {   /* recompute the whole sequence for every token */
        ds_cache_reset(&k);
        assert_int_equal(ds_forward(&m, &k, ids, (int)n + made, z), 0);
        const float *last = z + (n + made - 1) * (size_t)V;
        int best = 0;
        for (int i = 1; i < V; i++)
            if (last[i] > last[best]) best = i;
        if (best == tok_eos_id(tok)) break;
        ids[n + made] = best;
    }
    char *text;
    size_t len;
    assert_int_equal(tok_decode(tok, ids + n, (size_t)made, 1, &text, &len), 0);
    print_message("%d tokens, %zu bytes\n", made, len);
    assert_int_equal(strlen(out), len + 1);
    assert_memory_equal(out, text, len);
    free(text);
    free(z);
    free(ids);
    free(out);
    tok_free(tok);
    ds_cache_free(&k, &m);
    ds_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_score_outputs),
        cmocka_unit_test(test_score_refusals),
        cmocka_unit_test(test_generate_equals_recomputation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
