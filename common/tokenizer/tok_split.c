/* Splitting and rewriting of text pieces, as HF tokenizers' NormalizedString::split
 * and the normalizers do: regex matches (PCRE2, UTF + Unicode properties, JIT) cut a
 * piece into matched and unmatched parts, which a SplitDelimiterBehavior then keeps,
 * drops or merges; empty parts are dropped. */
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/tokenizer/tok_internal.h"

int tok_re_compile(pcre2_code **out, const char *pattern, int literal, const char *where)
{
    int err;
    PCRE2_SIZE at;
    uint32_t opt = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opt, &err, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return sushi_error(SUSHI_EFORMAT, "%s: regex /%s/ at offset %zu: %s", where, pattern,
                           (size_t)at, (char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* falls back to the interpreter */
    *out = re;
    return 0;
}

int tok_work_append(struct tok_work *w, const char *s, size_t n, size_t *off)
{
    if (w->len + n + 1 > w->cap) {
        /* s may point into w->buf itself (a piece copied to the end) */
        int inside = w->buf && s >= w->buf && s < w->buf + w->cap;
        size_t s_off = inside ? (size_t)(s - w->buf) : 0;
        size_t nc = (w->len + n + 1) * 2;
        char *p = realloc(w->buf, nc);
        if (!p) return sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory for %zu bytes", nc);
        w->buf = p;
        w->cap = nc;
        if (inside) s = p + s_off;
    }
    if (n) memcpy(w->buf + w->len, s, n);
    *off = w->len;
    w->len += n;
    return 0;
}

int tok_work_push(struct tok_work *w, size_t off, size_t len, int32_t id)
{
    if (w->n == w->pcap) {
        size_t nc = w->pcap ? w->pcap * 2 : 64;
        struct tok_piece *p = realloc(w->p, nc * sizeof *p);
        if (!p) return sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory for %zu pieces", nc);
        w->p = p;
        w->pcap = nc;
    }
    w->p[w->n++] = (struct tok_piece){off, len, id};
    return 0;
}

/* One match of re in subject[start..n): 1 with [*ms, *me), 0 for none, < 0 on error.
 * A JIT stack overflow on a very long piece retries with a larger stack. */
static int re_next(const pcre2_code *re, pcre2_match_data *md, const char *subj, size_t n,
                   size_t start, size_t *ms, size_t *me)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)subj, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_MATCHLIMIT ||
        rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT) {
        pcre2_jit_stack *js = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
        pcre2_match_context *mc = pcre2_match_context_create(NULL);
        if (js && mc) {
            pcre2_jit_stack_assign(mc, NULL, js);
            rc = pcre2_match(re, (PCRE2_SPTR)subj, n, start, PCRE2_NO_UTF_CHECK, md, mc);
        }
        pcre2_match_context_free(mc);
        pcre2_jit_stack_free(js);
    }
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return sushi_error(SUSHI_EINVAL, "tokenizer: regex match failed on a %zu-byte piece: %s",
                           n, (char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

static size_t utf8_char_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* The parts of one piece: (start, end, is_match) covering it, in order. */
struct part { size_t s, e; int m; };
struct parts { struct part *v; size_t n, cap; };

static int parts_push(struct parts *p, size_t s, size_t e, int m)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 32;
        struct part *q = realloc(p->v, nc * sizeof *q);
        if (!q) return sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory for %zu parts", nc);
        p->v = q;
        p->cap = nc;
    }
    p->v[p->n++] = (struct part){s, e, m};
    return 0;
}

/* HF's Pattern::find_matches for a regex: matched and unmatched parts in order.
 * Empty matches are skipped (they would only yield empty parts). */
static int find_parts(const struct tok_step *st, pcre2_match_data *md, const char *subj,
                      size_t n, struct parts *out)
{
    out->n = 0;
    size_t prev = 0, start = 0;
    int rc = 0;
    while (start <= n) {
        size_t ms = 0, me = 0;
        int r = re_next(st->re, md, subj, n, start, &ms, &me);
        if (r < 0) return r;
        if (r == 0) break;
        if (me == ms) {
            if (ms >= n) break;
            start = ms + utf8_char_len((unsigned char)subj[ms]);
            continue;
        }
        if (prev != ms && (rc = parts_push(out, prev, ms, st->invert))) return rc;
        if ((rc = parts_push(out, ms, me, !st->invert))) return rc;
        prev = start = me;
    }
    if (prev != n && (rc = parts_push(out, prev, n, st->invert))) return rc;
    return 0;
}

static void reverse_parts(struct part *v, size_t n)
{
    for (size_t i = 0; i < n / 2; i++) {
        struct part x = v[i];
        v[i] = v[n - 1 - i];
        v[n - 1 - i] = x;
    }
}

/* SplitDelimiterBehavior: rewrites the parts in place into the kept spans (m unused). */
static void apply_behavior(enum tok_behavior b, struct parts *p)
{
    size_t k = 0;
    int prev_match = 0;
    switch (b) {
    case TOK_ISOLATED:
        return;
    case TOK_REMOVED:
        for (size_t i = 0; i < p->n; i++)
            if (!p->v[i].m) p->v[k++] = p->v[i];
        break;
    case TOK_CONTIGUOUS:
        for (size_t i = 0; i < p->n; i++) {
            if (k > 0 && p->v[i].m == prev_match) p->v[k - 1].e = p->v[i].e;
            else p->v[k++] = p->v[i];
            prev_match = p->v[i].m;
        }
        break;
    case TOK_MERGED_PREV:
        for (size_t i = 0; i < p->n; i++) {
            if (p->v[i].m && !prev_match && k > 0) p->v[k - 1].e = p->v[i].e;
            else p->v[k++] = p->v[i];
            prev_match = p->v[i].m;
        }
        break;
    case TOK_MERGED_NEXT:
        /* HF folds from the end: reverse, merge each match into the part after it,
         * reverse back */
        reverse_parts(p->v, p->n);
        for (size_t i = 0; i < p->n; i++) {
            if (p->v[i].m && !prev_match && k > 0) p->v[k - 1].s = p->v[i].s;
            else p->v[k++] = p->v[i];
            prev_match = p->v[i].m;
        }
        reverse_parts(p->v, k);
        break;
    }
    p->n = k;
}

/* Replace: every match of st->re in the piece becomes st->str (a new piece in w->buf). */
static int replace_piece(const struct tok_step *st, struct tok_work *w, struct tok_piece *pc,
                         struct parts *parts)
{
    int rc = find_parts(st, w->md, w->buf + pc->off, pc->len, parts);
    if (rc || parts->n == 0) return rc;
    size_t start = w->len, off;
    for (size_t i = 0; i < parts->n && !rc; i++) {
        if (parts->v[i].m) rc = tok_work_append(w, st->str, st->str_len, &off);
        else rc = tok_work_append(w, w->buf + pc->off + parts->v[i].s, parts->v[i].e - parts->v[i].s, &off);
    }
    pc->off = start;
    pc->len = w->len - start;
    return rc;
}

int tok_step_apply(const struct tok_step *st, struct tok_work *w)
{
    struct parts parts = {0};
    int rc = 0;
    size_t n_old = w->n;
    struct tok_piece *old = w->p;
    w->p = NULL;
    w->n = w->pcap = 0;
    for (size_t i = 0; i < n_old && !rc; i++) {
        struct tok_piece pc = old[i];
        if (pc.id >= 0) { rc = tok_work_push(w, pc.off, pc.len, pc.id); continue; }
        size_t off;
        switch (st->kind) {
        case TOK_STEP_PREFIX:
            if (pc.len > 0 && w->buf[pc.off] == ' ') break;
            if ((rc = tok_work_append(w, " ", 1, &off))) break;
            if ((rc = tok_work_append(w, w->buf + pc.off, pc.len, &pc.off))) break;
            pc.off = off;
            pc.len += 1;
            break;
        case TOK_STEP_PREPEND:
            if (pc.len == 0) break;
            if ((rc = tok_work_append(w, st->str, st->str_len, &off))) break;
            if ((rc = tok_work_append(w, w->buf + pc.off, pc.len, &pc.off))) break;
            pc.off = off;
            pc.len += st->str_len;
            break;
        case TOK_STEP_REPLACE:
            rc = replace_piece(st, w, &pc, &parts);
            break;
        case TOK_STEP_ICU:
        case TOK_STEP_LOWER:
        case TOK_STEP_STRIP:
            rc = tok_norm_apply(st, w, &pc);
            break;
        case TOK_STEP_SPLIT:
            if ((rc = find_parts(st, w->md, w->buf + pc.off, pc.len, &parts))) break;
            apply_behavior(st->behavior, &parts);
            for (size_t k = 0; k < parts.n && !rc; k++)
                if (parts.v[k].e > parts.v[k].s)
                    rc = tok_work_push(w, pc.off + parts.v[k].s, parts.v[k].e - parts.v[k].s, -1);
            continue;
        }
        if (!rc && pc.len > 0) rc = tok_work_push(w, pc.off, pc.len, -1);
    }
    free(old);
    free(parts.v);
    return rc;
}
