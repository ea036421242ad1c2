/* The encode pipeline and decode, following HF tokenizers' encode(text) / decode(ids):
 *   text -> valid UTF-8 -> split around raw added tokens -> normalizers -> split around
 *   normalized added tokens -> pre-tokenizer steps -> byte-level BPE per piece ->
 *   post-processor ids.
 * Invalid UTF-8 in the input: every maximal invalid subsequence (the WHATWG / Unicode
 * "maximal subpart" rule, as Rust's String::from_utf8_lossy and node's Buffer
 * toString('utf8') apply it) becomes U+FFFD before anything else, so the ids are those
 * HF gives for the lossily decoded string; decode() returns U+FFFD there. */
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/tokenizer/tok_internal.h"

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when s starts a maximal invalid
 * subpart whose length is then *bad (>= 1). */
static size_t utf8_valid_len(const uint8_t *s, size_t n, size_t *bad)
{
    uint8_t c = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else { *bad = 1; return 0; }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n || s[k] < lo || s[k] > hi) { *bad = k; return 0; }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

/* Appends s[0..n) to w->buf with invalid subsequences replaced by U+FFFD. */
static int append_lossy(struct tok_work *w, const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0, run = 0, off;
    int rc = 0;
    while (i < n && !rc) {
        size_t bad = 0, k = utf8_valid_len(u + i, n - i, &bad);
        if (k) { i += k; continue; }
        if (i > run) rc = tok_work_append(w, s + run, i - run, &off);
        if (!rc) rc = tok_work_append(w, "\xEF\xBF\xBD", 3, &off);
        i += bad;
        run = i;
    }
    if (!rc && n > run) rc = tok_work_append(w, s + run, n - run, &off);
    return rc;
}

static int ids_push(int32_t **ids, size_t *n, size_t *cap, const int32_t *v, size_t k)
{
    if (k == 0) return 0;
    if (*n + k > *cap) {
        size_t nc = (*n + k) * 2 + 16;
        int32_t *p = realloc(*ids, nc * sizeof *p);
        if (!p) return sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory for %zu ids", nc);
        *ids = p;
        *cap = nc;
    }
    memcpy(*ids + *n, v, k * sizeof *v);
    *n += k;
    return 0;
}

int tok_encode(const struct tokenizer *t, const char *text, size_t len, int add_special,
               int32_t **ids, size_t *n_ids)
{
    if (!t || !ids || !n_ids || (!text && len)) return sushi_error(SUSHI_EINVAL, "tok_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    struct tok_work w = {0};
    int32_t *out = NULL;
    size_t n = 0, cap = 0;
    int rc = append_lossy(&w, text ? text : "", len);
    if (!rc && w.len > 0) rc = tok_work_push(&w, 0, w.len, -1);
    if (!rc) rc = tok_added_split(t, &t->raw_set, &w);
    for (int i = 0; !rc && i < t->n_norm; i++) {
        if (!w.md && t->norm[i].re && !(w.md = pcre2_match_data_create(1, NULL)))
            rc = sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory");
        if (!rc) rc = tok_step_apply(&t->norm[i], &w);
    }
    if (!rc) rc = tok_added_split(t, &t->norm_set, &w);
    if (!rc && !w.md && !(w.md = pcre2_match_data_create(1, NULL)))
        rc = sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory");
    for (int i = 0; !rc && i < t->n_pre; i++) rc = tok_step_apply(&t->pre[i], &w);
    if (!rc && add_special) rc = ids_push(&out, &n, &cap, t->post_pre, t->n_post_pre);
    for (size_t i = 0; !rc && i < w.n; i++) {
        if (w.p[i].id >= 0) rc = ids_push(&out, &n, &cap, &w.p[i].id, 1);
        else rc = tok_bpe_word(t, w.buf + w.p[i].off, w.p[i].len, &out, &n, &cap);
    }
    if (!rc && add_special) rc = ids_push(&out, &n, &cap, t->post_post, t->n_post_post);
    pcre2_match_data_free(w.md);
    free(w.buf);
    free(w.p);
    if (rc) { free(out); return rc; }
    if (!out && !(out = malloc(sizeof *out))) return sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory");
    *ids = out;
    *n_ids = n;
    return 0;
}

/* The ByteLevel decoder on one token: its characters mapped back to bytes, or the
 * token's own bytes when a character is outside the byte map (added tokens). */
static int decode_token(const struct tokenizer *t, const char *s, size_t n, struct tok_work *w)
{
    size_t start = w->len, off;
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)s[i];
        uint32_t cp;
        size_t k;
        if (c < 0x80) { cp = c; k = 1; }
        else if ((c & 0xE0) == 0xC0 && i + 1 < n) { cp = (c & 0x1Fu) << 6 | ((uint8_t)s[i + 1] & 0x3Fu); k = 2; }
        else cp = 0xFFFFFFFF, k = 1;
        if (cp >= sizeof t->cp_is_byte || !t->cp_is_byte[cp]) {
            w->len = start;
            return tok_work_append(w, s, n, &off);
        }
        uint8_t b = t->byte_of_cp[cp];
        int rc = tok_work_append(w, (const char *)&b, 1, &off);
        if (rc) return rc;
        i += k;
    }
    return 0;
}

int tok_decode(const struct tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special,
               char **text, size_t *len)
{
    if (!t || !text || !len || (!ids && n_ids)) return sushi_error(SUSHI_EINVAL, "tok_decode: NULL argument");
    *text = NULL;
    *len = 0;
    struct tok_work raw = {0}, out = {0};
    size_t off;
    int rc = 0, first = 1;
    for (size_t i = 0; i < n_ids && !rc; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || !t->id_tok[id]) {
            rc = sushi_error(SUSHI_EINVAL, "tok_decode: id %d at position %zu is not in the vocabulary (size %d)",
                             id, i, t->n_ids);
            break;
        }
        if (skip_special && t->id_special[id]) continue;
        if (t->decoder_bytelevel) {
            rc = decode_token(t, t->id_tok[id], t->id_len[id], &raw);
        } else {
            if (!first) rc = tok_work_append(&raw, " ", 1, &off);
            if (!rc) rc = tok_work_append(&raw, t->id_tok[id], t->id_len[id], &off);
        }
        first = 0;
    }
    if (!rc) rc = append_lossy(&out, raw.buf ? raw.buf : "", raw.len);
    if (!rc) rc = tok_work_append(&out, "", 0, &off);   /* ensures a buffer */
    free(raw.buf);
    free(raw.p);
    free(out.p);
    if (rc) { free(out.buf); return rc; }
    out.buf[out.len] = 0;
    *text = out.buf;
    *len = out.len;
    return 0;
}
