/* Loading a tokenizer: HF tokenizer.json (BPE model, added tokens, normalizer,
 * pre-tokenizer, post-processor, decoder) or the older vocab.json + merges.txt pair;
 * the vocabulary and merge hash maps; accessors. Anything this library cannot run
 * exactly as HF does is refused with SUSHI_EUNSUPPORTED naming the field. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/tokenizer/tok_internal.h"

/* GPT-2's pre-tokenizer regex, used by ByteLevel with use_regex. */
static const char *const BYTELEVEL_RE =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

uint64_t tok_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

int32_t tok_vocab_find(const struct tokenizer *t, const char *s, size_t n)
{
    uint32_t mask = t->vmap_cap - 1, h = (uint32_t)tok_hash(s, n) & mask;
    for (int32_t id; (id = t->vmap[h]) >= 0; h = (h + 1) & mask)
        if (t->id_len[id] == n && !memcmp(t->id_tok[id], s, n)) return id;
    return -1;
}

static uint32_t pow2_at_least(size_t n)
{
    uint32_t c = 16;
    while (c < 2 * n) c <<= 1;
    return c;
}

/* Vocabulary from an object token -> id (vocab.json or model.vocab). */
static int load_vocab(struct tokenizer *t, const json_t *vocab, int32_t extra_max, const char *where)
{
    if (!json_is_object(vocab)) return sushi_error(SUSHI_EFORMAT, "%s: model.vocab: expected an object", where);
    const char *key;
    json_t *v;
    int32_t max_id = extra_max;
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 30))
            return sushi_error(SUSHI_EFORMAT, "%s: vocab entry \"%s\": id must be an integer in [0, 2^30]", where, key);
        if ((int32_t)json_integer_value(v) > max_id) max_id = (int32_t)json_integer_value(v);
    }
    t->n_ids = max_id + 1;
    t->id_tok = calloc(t->n_ids, sizeof *t->id_tok);
    t->id_len = calloc(t->n_ids, sizeof *t->id_len);
    t->id_special = calloc(t->n_ids, 1);
    t->id_added = calloc(t->n_ids, 1);
    t->vmap_cap = pow2_at_least(json_object_size(vocab));
    t->vmap = malloc(t->vmap_cap * sizeof *t->vmap);
    if (!t->id_tok || !t->id_len || !t->id_special || !t->id_added || !t->vmap)
        return sushi_error(SUSHI_ENOMEM, "%s: out of memory for %d ids", where, t->n_ids);
    memset(t->vmap, 0xff, t->vmap_cap * sizeof *t->vmap);
    json_object_foreach((json_t *)vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        size_t n = strlen(key);
        if (t->id_tok[id])
            return sushi_error(SUSHI_EFORMAT, "%s: vocab: id %d given to both \"%s\" and \"%s\"", where, id, t->id_tok[id], key);
        if (!(t->id_tok[id] = strdup(key))) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", where);
        t->id_len[id] = (uint32_t)n;
        uint32_t mask = t->vmap_cap - 1, h = (uint32_t)tok_hash(key, n) & mask;
        while (t->vmap[h] >= 0) h = (h + 1) & mask;
        t->vmap[h] = id;
    }
    return 0;
}

/* One merge "a b" (rank r): (id a, id b) -> (r, id of "ab"). */
static int add_merge(struct tokenizer *t, const char *a, size_t na, const char *b, size_t nb,
                     int32_t rank, const char *where)
{
    char stack[512];
    int32_t ia = tok_vocab_find(t, a, na), ib = tok_vocab_find(t, b, nb);
    if (ia < 0 || ib < 0)
        return sushi_error(SUSHI_EFORMAT, "%s: merge %d \"%.*s %.*s\": a part is not in the vocabulary", where,
                           rank, (int)na, a, (int)nb, b);
    char *ab = na + nb <= sizeof stack ? stack : malloc(na + nb);
    if (!ab) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", where);
    memcpy(ab, a, na);
    memcpy(ab + na, b, nb);
    int32_t inew = tok_vocab_find(t, ab, na + nb);
    if (ab != stack) free(ab);
    if (inew < 0)
        return sushi_error(SUSHI_EFORMAT, "%s: merge %d \"%.*s %.*s\": the merged token is not in the vocabulary",
                           where, rank, (int)na, a, (int)nb, b);
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    uint32_t mask = t->pair_cap - 1, h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
    while (t->pair_key[h] != UINT64_MAX) {
        if (t->pair_key[h] == key) return 0;     /* a repeated merge keeps its first rank */
        h = (h + 1) & mask;
    }
    t->pair_key[h] = key;
    t->pair_rank[h] = rank;
    t->pair_new[h] = inew;
    return 0;
}

static int alloc_merges(struct tokenizer *t, size_t n, const char *where)
{
    t->pair_cap = pow2_at_least(n);
    t->pair_key = malloc(t->pair_cap * sizeof *t->pair_key);
    t->pair_rank = malloc(t->pair_cap * sizeof *t->pair_rank);
    t->pair_new = malloc(t->pair_cap * sizeof *t->pair_new);
    if (!t->pair_key || !t->pair_rank || !t->pair_new)
        return sushi_error(SUSHI_ENOMEM, "%s: out of memory for %zu merges", where, n);
    memset(t->pair_key, 0xff, t->pair_cap * sizeof *t->pair_key);
    return 0;
}

/* A merge line "a b" (exactly one space). */
static int add_merge_line(struct tokenizer *t, const char *s, size_t n, int32_t rank, const char *where)
{
    const char *sp = memchr(s, ' ', n);
    if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
        return sushi_error(SUSHI_EFORMAT, "%s: merge %d \"%.*s\": expected two tokens separated by one space",
                           where, rank, (int)n, s);
    return add_merge(t, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp + 1 - s), rank, where);
}

static int load_model(struct tokenizer *t, const json_t *m, const char *where, int32_t added_max)
{
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!json_is_object(m) || !type || strcmp(type, "BPE"))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: model.type: only \"BPE\" is supported, got %s", where,
                           type ? type : "none");
    const char *bad[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *v = json_string_value(json_object_get(m, bad[i]));
        if (v && *v) return sushi_error(SUSHI_EUNSUPPORTED, "%s: model.%s \"%s\" is not supported", where, bad[i], v);
    }
    json_t *dr = json_object_get(m, "dropout");
    if (dr && !json_is_null(dr) && json_number_value(dr) != 0.0)
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: model.dropout is not supported", where);
    if (json_is_true(json_object_get(m, "byte_fallback")))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: model.byte_fallback is not supported (byte-level BPE only)", where);
    t->ignore_merges = json_is_true(json_object_get(m, "ignore_merges"));
    int rc = load_vocab(t, json_object_get(m, "vocab"), added_max, where);
    if (rc) return rc;
    json_t *merges = json_object_get(m, "merges");
    if (!json_is_array(merges)) return sushi_error(SUSHI_EFORMAT, "%s: model.merges: expected an array", where);
    if ((rc = alloc_merges(t, json_array_size(merges), where))) return rc;
    size_t i;
    json_t *mv;
    json_array_foreach(merges, i, mv) {
        if (json_is_string(mv)) {
            rc = add_merge_line(t, json_string_value(mv), json_string_length(mv), (int32_t)i, where);
        } else if (json_is_array(mv) && json_array_size(mv) == 2 && json_is_string(json_array_get(mv, 0)) &&
                   json_is_string(json_array_get(mv, 1))) {
            json_t *a = json_array_get(mv, 0), *b = json_array_get(mv, 1);
            rc = add_merge(t, json_string_value(a), json_string_length(a), json_string_value(b),
                           json_string_length(b), (int32_t)i, where);
        } else {
            rc = sushi_error(SUSHI_EFORMAT, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", where, i);
        }
        if (rc) return rc;
    }
    return 0;
}

/* ---- pipeline steps ---- */

static int push_step(struct tok_step **v, int *n, struct tok_step s, const char *where)
{
    struct tok_step *p = realloc(*v, (*n + 1) * sizeof *p);
    if (!p) {
        if (s.re) pcre2_code_free(s.re);
        free(s.str);
        return sushi_error(SUSHI_ENOMEM, "%s: out of memory", where);
    }
    p[(*n)++] = s;
    *v = p;
    return 0;
}

static int split_step(struct tok_step **v, int *n, const char *pattern, int literal,
                      enum tok_behavior b, int invert, const char *where)
{
    struct tok_step s = {.kind = TOK_STEP_SPLIT, .behavior = b, .invert = invert};
    int rc = tok_re_compile(&s.re, pattern, literal, where);
    return rc ? rc : push_step(v, n, s, where);
}

/* {"String": s} or {"Regex": r}: the pattern text and whether it is literal. */
static int get_pattern(const json_t *p, const char **pat, int *literal, const char *where, const char *field)
{
    const char *s = json_string_value(json_object_get(p, "String"));
    const char *r = json_string_value(json_object_get(p, "Regex"));
    if (!s && !r) return sushi_error(SUSHI_EFORMAT, "%s: %s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", where, field);
    *pat = s ? s : r;
    *literal = s != NULL;
    return 0;
}

static int load_pretok(struct tokenizer *t, const json_t *p, const char *where, int *bytelevel)
{
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return sushi_error(SUSHI_EFORMAT, "%s: pre_tokenizer: missing \"type\"", where);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers"), *e;
        size_t i;
        if (!json_is_array(list)) return sushi_error(SUSHI_EFORMAT, "%s: pre_tokenizer Sequence: missing \"pretokenizers\"", where);
        json_array_foreach(list, i, e) {
            int rc = load_pretok(t, e, where, bytelevel);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "Split")) {
        static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        const char *beh = json_string_value(json_object_get(p, "behavior")), *pat;
        int literal, b = -1, rc;
        for (int i = 0; i < 5; i++)
            if (beh && !strcmp(beh, names[i])) b = i;
        if (b < 0) return sushi_error(SUSHI_EFORMAT, "%s: pre_tokenizer Split: unknown behavior \"%s\"", where, beh ? beh : "");
        if ((rc = get_pattern(json_object_get(p, "pattern"), &pat, &literal, where, "Split"))) return rc;
        return split_step(&t->pre, &t->n_pre, pat, literal, (enum tok_behavior)b,
                          json_is_true(json_object_get(p, "invert")), where);
    }
    if (!strcmp(type, "Digits")) {
        int each = json_is_true(json_object_get(p, "individual_digits"));
        return split_step(&t->pre, &t->n_pre, "\\p{N}", 0, each ? TOK_ISOLATED : TOK_CONTIGUOUS, 0, where);
    }
    if (!strcmp(type, "ByteLevel")) {
        int rc = 0;
        *bytelevel = 1;
        if (json_is_true(json_object_get(p, "add_prefix_space")))
            rc = push_step(&t->pre, &t->n_pre, (struct tok_step){.kind = TOK_STEP_PREFIX}, where);
        json_t *ur = json_object_get(p, "use_regex");
        if (!rc && (!ur || json_is_true(ur)))
            rc = split_step(&t->pre, &t->n_pre, BYTELEVEL_RE, 0, TOK_ISOLATED, 0, where);
        return rc;
    }
    return sushi_error(SUSHI_EUNSUPPORTED, "%s: pre_tokenizer type \"%s\" is not supported", where, type);
}

static int load_normalizer(struct tokenizer *t, const json_t *p, const char *where)
{
    if (!p || json_is_null(p)) return 0;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return sushi_error(SUSHI_EFORMAT, "%s: normalizer: missing \"type\"", where);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "normalizers"), *e;
        size_t i;
        if (!json_is_array(list)) return sushi_error(SUSHI_EFORMAT, "%s: normalizer Sequence: missing \"normalizers\"", where);
        json_array_foreach(list, i, e) {
            int rc = load_normalizer(t, e, where);
            if (rc) return rc;
        }
        return 0;
    }
    struct tok_step s = {0};
    const char *str = NULL;
    if (!strcmp(type, "Prepend")) {
        s.kind = TOK_STEP_PREPEND;
        str = json_string_value(json_object_get(p, "prepend"));
    } else if (!strcmp(type, "Replace")) {
        const char *pat;
        int literal, rc;
        s.kind = TOK_STEP_REPLACE;
        str = json_string_value(json_object_get(p, "content"));
        if ((rc = get_pattern(json_object_get(p, "pattern"), &pat, &literal, where, "Replace"))) return rc;
        if ((rc = tok_re_compile(&s.re, pat, literal, where))) return rc;
    } else if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") || !strcmp(type, "NFKD")) {
        s.kind = TOK_STEP_ICU;
        int rc = tok_norm_icu_get(type, &s.icu);
        return rc ? rc : push_step(&t->norm, &t->n_norm, s, where);
    } else if (!strcmp(type, "Lowercase")) {
        s.kind = TOK_STEP_LOWER;
        return push_step(&t->norm, &t->n_norm, s, where);
    } else if (!strcmp(type, "Strip")) {
        s.kind = TOK_STEP_STRIP;
        json_t *l = json_object_get(p, "strip_left"), *r = json_object_get(p, "strip_right");
        s.strip_left = !l || json_is_true(l);
        s.strip_right = !r || json_is_true(r);
        return push_step(&t->norm, &t->n_norm, s, where);
    } else {
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: normalizer type \"%s\" is not supported", where, type);
    }
    if (!str || !(s.str = strdup(str))) {
        if (s.re) pcre2_code_free(s.re);
        return sushi_error(SUSHI_EFORMAT, "%s: normalizer %s: missing its string", where, type);
    }
    s.str_len = strlen(str);
    return push_step(&t->norm, &t->n_norm, s, where);
}

static int append_ids(int32_t **v, int *n, const json_t *ids, const char *where)
{
    size_t i;
    json_t *e;
    json_array_foreach(ids, i, e) {
        int32_t *p = realloc(*v, (*n + 1) * sizeof *p);
        if (!p) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", where);
        *v = p;
        if (!json_is_integer(e)) return sushi_error(SUSHI_EFORMAT, "%s: post_processor: special token ids must be integers", where);
        p[(*n)++] = (int32_t)json_integer_value(e);
    }
    return 0;
}

/* TemplateProcessing's "single" template: special tokens before and after "A". */
static int load_post(struct tokenizer *t, const json_t *p, const char *where)
{
    if (!p || json_is_null(p)) return 0;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return sushi_error(SUSHI_EFORMAT, "%s: post_processor: missing \"type\"", where);
    if (!strcmp(type, "ByteLevel")) return 0;   /* offsets only */
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "processors"), *e;
        size_t i;
        json_array_foreach(list, i, e) {
            int rc = load_post(t, e, where);
            if (rc) return rc;
        }
        return 0;
    }
    if (strcmp(type, "TemplateProcessing"))
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: post_processor type \"%s\" is not supported", where, type);
    json_t *single = json_object_get(p, "single"), *specials = json_object_get(p, "special_tokens"), *e;
    int after = 0;
    size_t i;
    if (!json_is_array(single)) return sushi_error(SUSHI_EFORMAT, "%s: post_processor: missing \"single\"", where);
    json_array_foreach(single, i, e) {
        json_t *sp = json_object_get(e, "SpecialToken");
        if (json_object_get(e, "Sequence")) { after = 1; continue; }
        const char *name = json_string_value(json_object_get(sp, "id"));
        json_t *ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
        if (!name || !json_is_array(ids))
            return sushi_error(SUSHI_EFORMAT, "%s: post_processor: special token \"%s\" has no ids", where, name ? name : "?");
        int rc = after ? append_ids(&t->post_post, &t->n_post_post, ids, where)
                       : append_ids(&t->post_pre, &t->n_post_pre, ids, where);
        if (rc) return rc;
    }
    return 0;
}

static int load_decoder(struct tokenizer *t, const json_t *d, const char *where)
{
    const char *type = json_string_value(json_object_get(d, "type"));
    if (!d || json_is_null(d)) { t->decoder_bytelevel = 0; return 0; }
    if (type && !strcmp(type, "ByteLevel")) { t->decoder_bytelevel = 1; return 0; }
    return sushi_error(SUSHI_EUNSUPPORTED, "%s: decoder type \"%s\" is not supported", where, type ? type : "?");
}

/* ---- special ids ---- */

static int32_t named_token(const struct tokenizer *t, const json_t *v)
{
    if (json_is_object(v)) v = json_object_get(v, "content");
    const char *s = json_string_value(v);
    return s ? tok_token_to_id(t, s) : -1;
}

/* BOS/EOS: the tokenizer_config.json beside tokenizer.json when there is one, else the
 * usual names among the special added tokens. */
static void find_bos_eos(struct tokenizer *t, const char *json_path)
{
    static const char *const bos_names[] = {"<｜begin▁of▁sentence｜>", "<|begin_of_text|>", "<s>", "<|endoftext|>"};
    static const char *const eos_names[] = {"<｜end▁of▁sentence｜>", "<|end_of_text|>", "</s>", "<|endoftext|>"};
    t->bos = t->eos = -1;
    if (json_path) {
        const char *slash = strrchr(json_path, '/');
        size_t dir = slash ? (size_t)(slash - json_path + 1) : 0;
        char *cfg = malloc(dir + 32);
        if (cfg) {
            memcpy(cfg, json_path, dir);
            strcpy(cfg + dir, "tokenizer_config.json");
            json_t *c = json_load_file(cfg, 0, NULL);
            if (c) {
                t->bos = named_token(t, json_object_get(c, "bos_token"));
                t->eos = named_token(t, json_object_get(c, "eos_token"));
                json_decref(c);
            }
            free(cfg);
        }
    }
    for (int i = 0; i < 4; i++) {
        int32_t b = tok_token_to_id(t, bos_names[i]), e = tok_token_to_id(t, eos_names[i]);
        if (t->bos < 0 && b >= 0 && t->id_special[b]) t->bos = b;
        if (t->eos < 0 && e >= 0 && t->id_special[e]) t->eos = e;
    }
}

static int finish(struct tokenizer *t, const char *where, int bytelevel)
{
    if (!bytelevel)
        return sushi_error(SUSHI_EUNSUPPORTED, "%s: pre_tokenizer: a ByteLevel step is required (byte-level BPE only)", where);
    tok_bytelevel_init(t);
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0)
            return sushi_error(SUSHI_EFORMAT, "%s: vocabulary lacks the byte-level token of byte 0x%02x", where, b);
    return tok_cache_init(t);
}

int tok_load(struct tokenizer **out, const char *path)
{
    if (!out || !path) return sushi_error(SUSHI_EINVAL, "tok_load: NULL argument");
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!root) {
        int code = fs_exists(path) ? SUSHI_EFORMAT : SUSHI_ENOTFOUND;
        return sushi_error(code, "%s: line %d: %s", path, jerr.line, jerr.text);
    }
    struct tokenizer *t = calloc(1, sizeof *t);
    int rc = t ? 0 : sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    int32_t added_max = -1;
    int bytelevel = 0;
    if (!rc && !json_is_object(root)) rc = sushi_error(SUSHI_EFORMAT, "%s: expected a JSON object", path);
    if (!rc) rc = tok_added_load(t, json_object_get(root, "added_tokens"), path, &added_max);
    if (!rc) rc = load_model(t, json_object_get(root, "model"), path, added_max);
    if (!rc) rc = load_normalizer(t, json_object_get(root, "normalizer"), path);
    if (!rc) rc = tok_added_index(t);
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (!rc && pre && !json_is_null(pre)) rc = load_pretok(t, pre, path, &bytelevel);
    if (!rc) rc = load_post(t, json_object_get(root, "post_processor"), path);
    if (!rc) rc = load_decoder(t, json_object_get(root, "decoder"), path);
    if (!rc) rc = finish(t, path, bytelevel);
    json_decref(root);
    if (rc) { tok_free(t); return rc; }
    find_bos_eos(t, path);
    *out = t;
    return 0;
}

/* vocab.json + merges.txt: GPT-2's pipeline (ByteLevel pre-tokenizer with its regex, no
 * prefix space; ByteLevel decoder), no added tokens. */
int tok_load_bpe_files(struct tokenizer **out, const char *vocab_json, const char *merges_txt)
{
    if (!out || !vocab_json || !merges_txt) return sushi_error(SUSHI_EINVAL, "tok_load_bpe_files: NULL argument");
    *out = NULL;
    json_error_t jerr;
    json_t *vocab = json_load_file(vocab_json, 0, &jerr);
    if (!vocab) return sushi_error(fs_exists(vocab_json) ? SUSHI_EFORMAT : SUSHI_ENOTFOUND, "%s: line %d: %s",
                                   vocab_json, jerr.line, jerr.text);
    char *text = NULL;
    size_t len = 0;
    struct tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        json_decref(vocab);
        return sushi_error(SUSHI_ENOMEM, "%s: out of memory", vocab_json);
    }
    int rc = load_vocab(t, vocab, -1, vocab_json);
    json_decref(vocab);
    if (!rc) rc = fs_read_all(merges_txt, &text, &len);
    size_t lines = 1;
    for (size_t i = 0; !rc && i < len; i++) lines += text[i] == '\n';
    if (!rc) rc = alloc_merges(t, lines, merges_txt);
    int32_t rank = 0;
    for (size_t i = 0; !rc && i < len;) {
        char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len, n = e - i;
        if (n && text[i + n - 1] == '\r') n--;
        int header = rank == 0 && n >= 9 && !memcmp(text + i, "#version:", 9);
        if (n && !header) rc = add_merge_line(t, text + i, n, rank++, merges_txt);
        i = e + 1;
    }
    free(text);
    if (!rc) rc = tok_added_index(t);
    if (!rc) rc = split_step(&t->pre, &t->n_pre, BYTELEVEL_RE, 0, TOK_ISOLATED, 0, merges_txt);
    t->decoder_bytelevel = 1;
    if (!rc) rc = finish(t, vocab_json, 1);
    if (rc) { tok_free(t); return rc; }
    find_bos_eos(t, NULL);
    *out = t;
    return 0;
}

static void free_steps(struct tok_step *s, int n)
{
    for (int i = 0; i < n; i++) {
        if (s[i].re) pcre2_code_free(s[i].re);
        free(s[i].str);
    }
    free(s);
}

void tok_free(struct tokenizer *t)
{
    if (!t) return;
    for (int32_t i = 0; t->id_tok && i < t->n_ids; i++) free(t->id_tok[i]);
    free(t->id_tok);
    free(t->id_len);
    free(t->vmap);
    free(t->pair_key);
    free(t->pair_rank);
    free(t->pair_new);
    for (int i = 0; i < t->n_added; i++) {
        if (t->added[i].match != t->added[i].content) free(t->added[i].match);
        free(t->added[i].content);
    }
    free(t->added);
    free(t->raw_set.idx);
    free(t->norm_set.idx);
    free(t->id_special);
    free(t->id_added);
    free_steps(t->norm, t->n_norm);
    free_steps(t->pre, t->n_pre);
    free(t->post_pre);
    free(t->post_post);
    tok_cache_free(t);
    free(t);
}

int tok_vocab_size(const struct tokenizer *t) { return t ? t->n_ids : 0; }
int32_t tok_bos_id(const struct tokenizer *t) { return t ? t->bos : -1; }
int32_t tok_eos_id(const struct tokenizer *t) { return t ? t->eos : -1; }

int32_t tok_token_to_id(const struct tokenizer *t, const char *token)
{
    if (!t || !token) return -1;
    size_t n = strlen(token);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, token, n)) return t->added[i].id;
    return tok_vocab_find(t, token, n);
}

const char *tok_id_to_token(const struct tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n_ids) return NULL;
    return t->id_tok[id];
}
