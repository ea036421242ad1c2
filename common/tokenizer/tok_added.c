/* Added tokens (special and not): loading from tokenizer.json's "added_tokens" and
 * matching them in text before pre-tokenization, as HF's AddedVocabulary does:
 * leftmost-longest matches, non-overlapping; single_word requires no word character
 * on either side; lstrip/rstrip make the token swallow the whitespace beside it.
 * Tokens with normalized=false are matched in the raw text, the others in the
 * normalized pieces. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/tokenizer/tok_internal.h"

int tok_added_load(struct tokenizer *t, const json_t *arr, const char *where, int32_t *max_id)
{
    *max_id = -1;
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) return sushi_error(SUSHI_EFORMAT, "%s: added_tokens: expected an array", where);
    t->added = calloc(json_array_size(arr) + 1, sizeof *t->added);
    if (!t->added) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", where);
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        json_t *id = json_object_get(e, "id"), *c = json_object_get(e, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > (1 << 30) ||
            !json_is_string(c) || json_string_length(c) == 0)
            return sushi_error(SUSHI_EFORMAT, "%s: added_tokens[%zu]: needs an integer \"id\" in [0, 2^30] and a non-empty \"content\"",
                               where, i);
        struct tok_added *a = &t->added[t->n_added++];
        if (!(a->content = strdup(json_string_value(c)))) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", where);
        a->len = json_string_length(c);
        a->id = (int32_t)json_integer_value(id);
        a->special = json_is_true(json_object_get(e, "special"));
        a->normalized = json_is_true(json_object_get(e, "normalized"));
        a->lstrip = json_is_true(json_object_get(e, "lstrip"));
        a->rstrip = json_is_true(json_object_get(e, "rstrip"));
        a->single_word = json_is_true(json_object_get(e, "single_word"));
        if (a->id > *max_id) *max_id = a->id;
        a->match = a->content;
        a->match_len = a->len;
    }
    return 0;
}

static const struct tokenizer *sort_ctx;
static int by_first_byte_then_longest(const void *x, const void *y)
{
    const struct tok_added *a = &sort_ctx->added[*(const int32_t *)x], *b = &sort_ctx->added[*(const int32_t *)y];
    if ((uint8_t)a->match[0] != (uint8_t)b->match[0]) return (uint8_t)a->match[0] - (uint8_t)b->match[0];
    if (a->match_len != b->match_len) return a->match_len > b->match_len ? -1 : 1;
    return *(const int32_t *)x - *(const int32_t *)y;
}

static int build_set(struct tokenizer *t, struct tok_added_set *s, int normalized)
{
    int n = 0;
    s->idx = malloc((t->n_added + 1) * sizeof *s->idx);
    if (!s->idx) return sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory");
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized && t->added[i].match_len > 0) s->idx[n++] = i;
    sort_ctx = t;   /* load runs on one thread */
    qsort(s->idx, n, sizeof *s->idx, by_first_byte_then_longest);
    int k = 0;
    for (int b = 0; b <= 256; b++) {
        s->start[b] = k;
        while (b < 256 && k < n && (uint8_t)t->added[s->idx[k]].match[0] == b) k++;
    }
    return 0;
}

/* HF matches a normalized token by its content passed through the normalizers. */
static int normalize_content(const struct tokenizer *t, struct tok_added *a)
{
    struct tok_work w = {0};
    size_t off;
    int rc = tok_work_append(&w, a->content, a->len, &off);
    if (!rc) rc = tok_work_push(&w, 0, a->len, -1);
    if (!rc && !(w.md = pcre2_match_data_create(1, NULL))) rc = sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory");
    for (int i = 0; !rc && i < t->n_norm; i++) rc = tok_step_apply(&t->norm[i], &w);
    size_t total = 0;
    for (size_t i = 0; i < w.n; i++) total += w.p[i].len;
    if (!rc && !(a->match = malloc(total + 1))) rc = sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; !rc && i < w.n; i++) {
        memcpy(a->match + a->match_len, w.buf + w.p[i].off, w.p[i].len);
        a->match_len += w.p[i].len;
    }
    pcre2_match_data_free(w.md);
    free(w.buf);
    free(w.p);
    return rc;
}

/* After the vocabulary and normalizers: marks added ids, names ids the vocabulary lacks, builds sets. */
int tok_added_index(struct tokenizer *t)
{
    for (int i = 0; i < t->n_added; i++) {
        struct tok_added *a = &t->added[i];
        if (a->normalized && t->n_norm) {
            a->match = NULL;
            a->match_len = 0;
            int rc = normalize_content(t, a);
            if (rc) return rc;
        }
        /* as HF: a token already in the vocabulary keeps its vocabulary id */
        int32_t v = tok_vocab_find(t, a->content, a->len);
        if (v >= 0) a->id = v;
        t->id_added[a->id] = 1;
        t->id_special[a->id] = a->special;
        if (!t->id_tok[a->id]) {
            if (!(t->id_tok[a->id] = strdup(a->content))) return sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory");
            t->id_len[a->id] = (uint32_t)a->len;
        }
    }
    int rc = build_set(t, &t->raw_set, 0);
    return rc ? rc : build_set(t, &t->norm_set, 1);
}

/* One UTF-8 character at s[i] (valid input); returns its code point, *n its length. */
static uint32_t cp_at(const char *s, size_t i, size_t *n)
{
    const uint8_t *u = (const uint8_t *)s + i;
    if (u[0] < 0x80) { *n = 1; return u[0]; }
    if (u[0] < 0xE0) { *n = 2; return (u[0] & 0x1Fu) << 6 | (u[1] & 0x3Fu); }
    if (u[0] < 0xF0) { *n = 3; return (u[0] & 0x0Fu) << 12 | (u[1] & 0x3Fu) << 6 | (u[2] & 0x3Fu); }
    *n = 4;
    return (u[0] & 0x07u) << 18 | (u[1] & 0x3Fu) << 12 | (u[2] & 0x3Fu) << 6 | (u[3] & 0x3Fu);
}

/* Start of the character that ends at s[i-1]. */
static size_t prev_char(const char *s, size_t i)
{
    do i--; while (i > 0 && ((uint8_t)s[i] & 0xC0) == 0x80);
    return i;
}

/* Rust's char::is_whitespace (the Unicode White_Space property). */
static int is_space_cp(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* A word character as Rust's regex \w (UTS #18): Alphabetic, marks, decimal digits,
 * connector punctuation and the joiners ZWNJ/ZWJ; PCRE2 on one character. */
static pcre2_code *word_re;
static void word_re_compile(void)
{
    int err;
    PCRE2_SIZE at;
    word_re = pcre2_compile((PCRE2_SPTR) "^[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]$", PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
}

static int is_word_char(const char *s, size_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, word_re_compile);
    if (!word_re) return 0;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int rc = md ? pcre2_match(word_re, (PCRE2_SPTR)s, n, 0, PCRE2_NO_UTF_CHECK, md, NULL) : -1;
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* Leftmost-longest match of the set at or after `from` in s[0..n): index into added. */
static int find_match(const struct tokenizer *t, const struct tok_added_set *set, const char *s,
                      size_t n, size_t from, size_t *at)
{
    for (size_t i = from; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        for (int k = set->start[b]; k < set->start[b + 1]; k++) {
            const struct tok_added *a = &t->added[set->idx[k]];
            if (a->match_len <= n - i && !memcmp(s + i, a->match, a->match_len)) {
                *at = i;
                return set->idx[k];
            }
        }
    }
    return -1;
}

/* Splits every piece without an id around the matches of `set`. */
int tok_added_split(const struct tokenizer *t, const struct tok_added_set *set, struct tok_work *w)
{
    if (set->start[256] == 0) return 0;
    size_t n_old = w->n;
    struct tok_piece *old = w->p;
    int rc = 0;
    w->p = NULL;
    w->n = w->pcap = 0;
    for (size_t i = 0; i < n_old && !rc; i++) {
        struct tok_piece pc = old[i];
        if (pc.id >= 0) { rc = tok_work_push(w, pc.off, pc.len, pc.id); continue; }
        const char *s = w->buf + pc.off;
        size_t n = pc.len, done = 0, from = 0, at, cl;
        int k;
        while (!rc && (k = find_match(t, set, s, n, from, &at)) >= 0) {
            const struct tok_added *a = &t->added[k];
            size_t start = at, stop = at + a->match_len;
            from = stop;
            if (a->single_word) {
                int left_word = start > 0 && is_word_char(s + prev_char(s, start), start - prev_char(s, start));
                int right_word = stop < n && (cp_at(s, stop, &cl), is_word_char(s + stop, cl));
                if (left_word || right_word) continue;
            }
            if (a->lstrip) {
                while (start > done) {
                    size_t p = prev_char(s, start);
                    if (!is_space_cp(cp_at(s, p, &cl))) break;
                    start = p;
                }
            }
            if (a->rstrip)
                while (stop < n && is_space_cp(cp_at(s, stop, &cl))) stop += cl;
            if (start > done) rc = tok_work_push(w, pc.off + done, start - done, -1);
            if (!rc) rc = tok_work_push(w, pc.off + start, stop - start, a->id);
            done = from = stop;
        }
        if (!rc && done < n) rc = tok_work_push(w, pc.off + done, n - done, -1);
    }
    free(old);
    return rc;
}
