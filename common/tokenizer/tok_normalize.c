/* Unicode normalizers of tokenizer.json that need Unicode data: NFC, NFD, NFKC, NFKD
 * and Lowercase (full case mapping, final sigma included, as Rust's str::to_lowercase)
 * through ICU; and Strip (Rust's char::is_whitespace at either end). Each rewrites one
 * piece into a new span of the work buffer. */
#include <stdlib.h>
#include <string.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "common/core/log.h"
#include "common/tokenizer/tok_internal.h"

int tok_norm_icu_get(const char *type, const void **out)
{
    UErrorCode e = U_ZERO_ERROR;
    const UNormalizer2 *n = NULL;
    if (!strcmp(type, "NFC")) n = unorm2_getNFCInstance(&e);
    else if (!strcmp(type, "NFD")) n = unorm2_getNFDInstance(&e);
    else if (!strcmp(type, "NFKC")) n = unorm2_getNFKCInstance(&e);
    else if (!strcmp(type, "NFKD")) n = unorm2_getNFKDInstance(&e);
    else return sushi_error(SUSHI_EUNSUPPORTED, "normalizer %s: unknown form", type);
    if (U_FAILURE(e) || !n) return sushi_error(SUSHI_EUNSUPPORTED, "normalizer %s: ICU: %s", type, u_errorName(e));
    *out = n;
    return 0;
}

/* UTF-8 -> UTF-16, transform, -> UTF-8 appended to w; (off, len) is the new span. */
static int icu_rewrite(const struct tok_step *st, struct tok_work *w, const char *s, size_t n,
                       size_t *off, size_t *len)
{
    UErrorCode e = U_ZERO_ERROR;
    int32_t n16 = 0, cap = (int32_t)n * 3 + 16;
    if (n > (1u << 28)) return sushi_error(SUSHI_EINVAL, "tokenizer: piece of %zu bytes too long to normalize", n);
    UChar *a = malloc((size_t)cap * sizeof *a), *b = malloc((size_t)cap * sizeof *b);
    char *u8 = NULL;
    int rc = 0;
    if (!a || !b) { rc = sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory"); goto out; }
    u_strFromUTF8(a, cap, &n16, s, (int32_t)n, &e);
    int32_t m = 0;
    if (st->kind == TOK_STEP_LOWER) {
        /* HF lowercases character by character (Rust's char::to_lowercase): no
         * context, so a final capital sigma becomes σ, never ς */
        for (int32_t i = 0; i < n16 && U_SUCCESS(e);) {
            int32_t k = U16_IS_LEAD(a[i]) && i + 1 < n16 && U16_IS_TRAIL(a[i + 1]) ? 2 : 1;
            m += u_strToLower(b + m, cap - m, a + i, k, "", &e);
            i += k;
        }
    } else m = unorm2_normalize((const UNormalizer2 *)st->icu, a, n16, b, cap, &e);
    int32_t n8 = 0;
    if (U_SUCCESS(e) && (u8 = malloc((size_t)m * 3 + 1))) u_strToUTF8(u8, m * 3 + 1, &n8, b, m, &e);
    if (U_FAILURE(e) || !u8) {
        rc = sushi_error(SUSHI_EINVAL, "tokenizer: Unicode normalization failed: %s", u_errorName(e));
        goto out;
    }
    *len = (size_t)n8;
    rc = tok_work_append(w, u8, (size_t)n8, off);
out:
    free(a);
    free(b);
    free(u8);
    return rc;
}

static int is_space_at(const char *s, size_t n, size_t i, size_t *cl)
{
    const uint8_t *u = (const uint8_t *)s + i;
    uint32_t c;
    if (u[0] < 0x80) { c = u[0]; *cl = 1; }
    else if (u[0] < 0xE0 && i + 1 < n) { c = (u[0] & 0x1Fu) << 6 | (u[1] & 0x3Fu); *cl = 2; }
    else if (u[0] < 0xF0 && i + 2 < n) { c = (u[0] & 0x0Fu) << 12 | (u[1] & 0x3Fu) << 6 | (u[2] & 0x3Fu); *cl = 3; }
    else { *cl = u[0] < 0xF0 ? 1 : 4; return 0; }
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int tok_norm_apply(const struct tok_step *st, struct tok_work *w, struct tok_piece *pc)
{
    if (st->kind == TOK_STEP_STRIP) {
        size_t cl, s = 0, e = pc->len;
        const char *b = w->buf + pc->off;
        if (st->strip_left)
            while (s < e && is_space_at(b, e, s, &cl)) s += cl;
        if (st->strip_right)
            while (e > s) {
                size_t p = e - 1;
                while (p > s && ((uint8_t)b[p] & 0xC0) == 0x80) p--;
                if (!is_space_at(b, e, p, &cl)) break;
                e = p;
            }
        pc->off += s;
        pc->len = e - s;
        return 0;
    }
    size_t off = 0, len = 0;
    size_t src = pc->off;
    char *copy = malloc(pc->len + 1);   /* the buffer may move while appending */
    if (!copy) return sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory");
    memcpy(copy, w->buf + src, pc->len);
    int rc = icu_rewrite(st, w, copy, pc->len, &off, &len);
    free(copy);
    if (rc) return rc;
    pc->off = off;
    pc->len = len;
    return 0;
}
