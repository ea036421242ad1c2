// libs: tok core
/* Tokenizer against HuggingFace tokenizers itself (tests/oracle/tok_ref.js, the Rust
 * core on npm): identical ids for DeepSeek-V3's and GPT-2's tokenizer.json on varied
 * text, special tokens and invalid UTF-8, a seeded differential fuzz, very long pieces,
 * pipelines built from GPT-2's file with every Split behaviour, Digits, normalizers,
 * added-token flags, ignore_merges and a template post-processor; the vocab.json +
 * merges.txt loader. The reference runs once per batch of texts (one node process). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include "tests/unit/test_tokenizer_case.h"

/* ---- reference ---- */

static int b64(const char *s, size_t n, FILE *f)
{
    static const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)u[i] << 16 | (i + 1 < n ? (uint32_t)u[i + 1] << 8 : 0) | (i + 2 < n ? u[i + 2] : 0);
        fputc(a[v >> 18 & 63], f);
        fputc(a[v >> 12 & 63], f);
        fputc(i + 1 < n ? a[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? a[v & 63] : '=', f);
    }
    return fputc('\n', f) == EOF ? -1 : 0;
}

static int have_reference(void)
{
    char p[600];
    snprintf(p, sizeof p, "%s/build/npm/node_modules/@anush008/tokenizers/package.json", repo_root());
    return fs_exists(p) && fs_exists(g_ds) && fs_exists(g_gpt2) && system("node --version >/dev/null 2>&1") == 0;
}

/* Reference ids of every text: one node process; ref[i] is malloc'ed, n[i] its length. */
static void reference_ids(const char *tok, const struct text *tx, size_t nt, int special,
                          int32_t **ref, size_t *nref)
{
    char in[128], cmd[1400];
    snprintf(in, sizeof in, "%s/ref_in.txt", g_dir);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    for (size_t i = 0; i < nt; i++) assert_int_equal(b64(tx[i].s, tx[i].n, f), 0);
    fclose(f);
    snprintf(cmd, sizeof cmd, "node '%s/tests/oracle/tok_ref.js' '%s' '%s' %s", repo_root(), tok, in,
             special ? "--special" : "");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *line = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < nt; i++) {
        ssize_t len = getline(&line, &cap, p);
        assert_true(len >= 0);
        ref[i] = malloc((size_t)len * sizeof(int32_t) + 4);
        nref[i] = 0;
        for (char *s = line, *e; *s && *s != '\n'; s = e) {
            long v = strtol(s, &e, 10);
            assert_true(e != s);
            ref[i][nref[i]++] = (int32_t)v;
        }
    }
    free(line);
    assert_int_equal(pclose(p), 0);
}

/* Encodes every text with t and requires the reference ids; returns mismatches. */
static void expect_reference(const struct tokenizer *t, const char *tok_json, const struct text *tx,
                             size_t nt, int special)
{
    int32_t **ref = calloc(nt, sizeof *ref);
    size_t *nref = calloc(nt, sizeof *nref), bad = 0;
    reference_ids(tok_json, tx, nt, special, ref, nref);
    for (size_t i = 0; i < nt; i++) {
        int32_t *ids;
        size_t n;
        assert_int_equal(tok_encode(t, tx[i].s, tx[i].n, special, &ids, &n), 0);
        if (n != nref[i] || memcmp(ids, ref[i], n * sizeof *ids)) {
            if (bad++ < 5) {
                fprintf(stderr, "mismatch on text %zu (%zu bytes) \"%.*s\":\n  ours:", i, tx[i].n, (int)tx[i].n, tx[i].s);
                for (size_t k = 0; k < n; k++) fprintf(stderr, " %d", ids[k]);
                fprintf(stderr, "\n  ref: ");
                for (size_t k = 0; k < nref[i]; k++) fprintf(stderr, " %d", ref[i][k]);
                fprintf(stderr, "\n");
            }
        }
        free(ids);
        free(ref[i]);
    }
    free(ref);
    free(nref);
    assert_int_equal(bad, 0);
}

static void test_varied_deepseek(void **state)
{
    (void)state;
    if (!have_reference()) { skip(); return; }
    struct tokenizer *t = load_or_fail(g_ds);
    expect_reference(t, g_ds, varied, N_VARIED, 0);
    expect_reference(t, g_ds, varied, N_VARIED, 1);
    assert_int_equal(tok_vocab_size(t), 128815);
    assert_int_equal(tok_bos_id(t), 0);
    assert_int_equal(tok_eos_id(t), 1);
    tok_free(t);
}

static void test_varied_gpt2(void **state)
{
    (void)state;
    if (!have_reference()) { skip(); return; }
    struct tokenizer *t = load_or_fail(g_gpt2);
    expect_reference(t, g_gpt2, varied, N_VARIED, 0);
    assert_int_equal(tok_vocab_size(t), 50257);
    assert_int_equal(tok_eos_id(t), 50256);
    tok_free(t);
}

static void test_fuzz(void **state)
{
    (void)state;
    if (!have_reference()) { skip(); return; }
    const char *files[2] = {g_ds, g_gpt2};
    for (int f = 0; f < 2; f++) {
        struct tokenizer *t = load_or_fail(files[f]);
        rng_state = 0x5eed + (uint64_t)f;
        struct text *tx = random_texts(1500, 1);
        expect_reference(t, files[f], tx, 1500, 0);
        free_texts(tx, 1500);
        tok_free(t);
    }
}

/* Very long pieces: one CJK run (a single pre-token for DeepSeek), whitespace runs
 * (the look-ahead alternative), digits, one repeated letter, emoji. */
static void test_long(void **state)
{
    (void)state;
    if (!have_reference()) { skip(); return; }
    struct text tx[5];
    char *cjk = malloc(3 * 30000), *sp = malloc(60001), *dig = malloc(40001), *aa = malloc(80000), *emo = malloc(4 * 20000);
    rng_state = 3;
    for (int i = 0; i < 30000; i++) {          /* U+4E00..U+9FA5 */
        uint32_t c = 0x4E00 + rnd(0x9FA5 - 0x4E00 + 1);
        cjk[3 * i] = (char)(0xE0 | c >> 12);
        cjk[3 * i + 1] = (char)(0x80 | (c >> 6 & 0x3F));
        cjk[3 * i + 2] = (char)(0x80 | (c & 0x3F));
    }
    memset(sp, ' ', 60000);
    sp[60000] = 'x';
    memset(dig, '7', 40001);
    memset(aa, 'a', 80000);
    for (int i = 0; i < 20000; i++) memcpy(emo + 4 * i, "\xf0\x9f\x98\x80", 4);
    tx[0] = (struct text){cjk, 90000};
    tx[1] = (struct text){sp, 60001};
    tx[2] = (struct text){dig, 40001};
    tx[3] = (struct text){aa, 80000};
    tx[4] = (struct text){emo, 80000};
    const char *files[2] = {g_ds, g_gpt2};
    for (int f = 0; f < 2; f++) {
        struct tokenizer *t = load_or_fail(files[f]);
        expect_reference(t, files[f], tx, 5, 0);
        check_roundtrip(t, tx, 5);
        tok_free(t);
    }
    free(cjk);
    free(sp);
    free(dig);
    free(aa);
    free(emo);
}

/* ---- pipelines built from GPT-2's file ---- */

static const char *const ADDED =
    "[{\"id\":50256,\"content\":\"<|endoftext|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":50257,\"content\":\"<mask>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":50258,\"content\":\"[R]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":true,\"normalized\":false,\"special\":true},"
    "{\"id\":50259,\"content\":\"hello\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":false}]";
static const char *const TEMPLATE =
    "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<|endoftext|>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"[R]\",\"type_id\":0}}],"
    "\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],"
    "\"special_tokens\":{\"<|endoftext|>\":{\"id\":\"<|endoftext|>\",\"ids\":[50256],\"tokens\":[\"<|endoftext|>\"]},"
    "\"[R]\":{\"id\":\"[R]\",\"ids\":[50258],\"tokens\":[\"[R]\"]}}}";

/* Writes GPT-2's tokenizer.json with a variant pipeline to DIR/variant.json. */
static void write_variant(json_t *base, const char *normalizer, const char *pre, const char *post, char *out, size_t cap)
{
    json_t *root = json_deep_copy(base);
    json_object_set_new(root, "added_tokens", json_loads(ADDED, 0, NULL));
    json_object_set_new(root, "normalizer", normalizer ? json_loads(normalizer, 0, NULL) : json_null());
    json_t *p = json_loads(pre, 0, NULL);
    assert_non_null(p);
    json_object_set_new(root, "pre_tokenizer", p);
    if (post) json_object_set_new(root, "post_processor", json_loads(post, 0, NULL));
    snprintf(out, cap, "%s/variant.json", g_dir);
    assert_int_equal(json_dump_file(root, out, JSON_COMPACT), 0);
    json_decref(root);
}

static void test_pipelines(void **state)
{
    (void)state;
    if (!have_reference()) { skip(); return; }
    static const char *const behaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    json_t *base = json_load_file(g_gpt2, 0, NULL);
    assert_non_null(base);
    rng_state = 99;
    size_t nt = 300;
    struct text *tx = random_texts(nt, 0);
    for (size_t i = 0; i < N_VARIED; i++) free((char *)tx[i].s);
    memcpy(tx, varied, N_VARIED * sizeof *tx);   /* the varied texts first (not freed) */
    char path[128], pre[600];
    for (int v = 0; v < 15; v++) {
        const char *norm = NULL, *post = NULL;
        if (v < 10) {
            snprintf(pre, sizeof pre,
                     "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[aeiou]+|\\\\s\"},"
                     "\"behavior\":\"%s\",\"invert\":%s},{\"type\":\"Digits\",\"individual_digits\":%s},"
                     "{\"type\":\"ByteLevel\",\"add_prefix_space\":%s,\"trim_offsets\":true,\"use_regex\":false}]}",
                     behaviors[v / 2], v % 2 ? "true" : "false", v % 3 ? "true" : "false", v % 4 ? "false" : "true");
        } else if (v == 10) {
            snprintf(pre, sizeof pre,
                     "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},"
                     "\"behavior\":\"MergedWithNext\",\"invert\":false},"
                     "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}]}");
            norm = "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"``\"},\"content\":\"\\\"\"},"
                   "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\d+\"},\"content\":\"<n>\"}]}";
            post = TEMPLATE;
        } else {
            static const char *const norms[] = {
                "{\"type\":\"Prepend\",\"prepend\":\"~\"}",
                "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"Lowercase\"},"
                "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}]}",
                "{\"type\":\"NFD\"}",
                "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Strip\",\"strip_left\":false,\"strip_right\":true}]}",
            };
            snprintf(pre, sizeof pre, "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}");
            norm = norms[v - 11];
        }
        write_variant(base, norm, pre, post, path, sizeof path);
        struct tokenizer *t = load_or_fail(path);
        expect_reference(t, path, tx, nt, post != NULL);
        tok_free(t);
    }
    /* ignore_merges: whole-word vocabulary entries win even where no merge reaches them */
    json_t *model = json_object_get(base, "model"), *merges = json_object_get(model, "merges");
    json_object_set_new(model, "ignore_merges", json_true());
    for (size_t i = json_array_size(merges); i-- > 0;) {
        const char *m = json_string_value(json_array_get(merges, i));
        if (!strcmp(m, "hell o") || !strcmp(m, "Ġwor ld") || !strcmp(m, "Ġqu ick")) json_array_remove(merges, i);
    }
    snprintf(pre, sizeof pre, "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}");
    write_variant(base, NULL, pre, NULL, path, sizeof path);
    struct tokenizer *t = load_or_fail(path);
    expect_reference(t, path, tx, nt, 0);
    tok_free(t);
    for (size_t i = N_VARIED; i < nt; i++) free((char *)tx[i].s);
    free(tx);
    json_decref(base);
}

/* The vocab.json + merges.txt pair written from GPT-2's tokenizer.json gives HF's ids. */
static void test_bpe_files(void **state)
{
    (void)state;
    if (!have_reference()) { skip(); return; }
    json_t *root = json_load_file(g_gpt2, 0, NULL);
    assert_non_null(root);
    json_t *model = json_object_get(root, "model"), *m;
    char vocab[128], merges[128];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", g_dir);
    snprintf(merges, sizeof merges, "%s/merges.txt", g_dir);
    assert_int_equal(json_dump_file(json_object_get(model, "vocab"), vocab, 0), 0);
    FILE *f = fopen(merges, "w");
    assert_non_null(f);
    fprintf(f, "#version: 0.2\n");
    size_t i;
    json_array_foreach(json_object_get(model, "merges"), i, m) fprintf(f, "%s\n", json_string_value(m));
    fclose(f);
    json_decref(root);
    struct tokenizer *t = NULL;
    assert_int_equal(tok_load_bpe_files(&t, vocab, merges), 0);
    expect_reference(t, g_gpt2, varied, 9, 0);   /* texts without special tokens */
    rng_state = 5;
    struct text *tx = random_texts(300, 1);
    struct tokenizer *full = load_or_fail(g_gpt2);
    for (size_t k = 0; k < 300; k++) {   /* same ids as the tokenizer.json where no <|endoftext|> */
        if (memmem(tx[k].s, tx[k].n, "<|endoftext|>", 13)) continue;
        int32_t *a, *b;
        size_t na, nb;
        assert_int_equal(tok_encode(t, tx[k].s, tx[k].n, 0, &a, &na), 0);
        assert_int_equal(tok_encode(full, tx[k].s, tx[k].n, 0, &b, &nb), 0);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
        free(a);
        free(b);
    }
    free_texts(tx, 300);
    tok_free(full);
    tok_free(t);
}

int main(void)
{
    if (tok_test_setup()) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varied_deepseek), cmocka_unit_test(test_varied_gpt2),
        cmocka_unit_test(test_fuzz),            cmocka_unit_test(test_long),
        cmocka_unit_test(test_pipelines),       cmocka_unit_test(test_bpe_files),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fs_remove_tree(g_dir);
    return rc;
}
