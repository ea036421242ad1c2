/* Byte-level BPE: the GPT-2 byte <-> character map, the merge loop over one word
 * (a binary heap of candidate pairs ordered by (rank, position) over a linked list of
 * symbols, which is what HF tokenizers' BPE::merge_word does) and a sharded, locked
 * cache of encoded words that worker threads share. */
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/tokenizer/tok_internal.h"

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
 * bytes take the code points 256, 257, ... in byte order. */
static int bytelevel_cp(int b)
{
    int n = 0;
    for (int i = 0; i < 256; i++) {
        int keep = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174);
        if (i == b) return keep ? i : 256 + n;
        n += !keep;
    }
    return -1;
}

static size_t utf8_put(char *out, int cp)
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* byte_id[b]: the vocabulary id of b's one-character token (-1 when missing). */
void tok_bytelevel_init(struct tokenizer *t)
{
    memset(t->cp_is_byte, 0, sizeof t->cp_is_byte);
    for (int b = 0; b < 256; b++) {
        char s[2];
        int cp = bytelevel_cp(b);
        t->cp_of_byte[b] = (uint16_t)cp;
        size_t n = utf8_put(s, cp);
        t->byte_id[b] = tok_vocab_find(t, s, n);
        t->byte_of_cp[cp] = (uint8_t)b;
        t->cp_is_byte[cp] = 1;
    }
}

static int pair_lookup(const struct tokenizer *t, int32_t a, int32_t b, int32_t *new_id)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t mask = t->pair_cap - 1;
    uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
    while (t->pair_key[h] != UINT64_MAX) {
        if (t->pair_key[h] == key) {
            *new_id = t->pair_new[h];
            return t->pair_rank[h];
        }
        h = (h + 1) & mask;
    }
    return -1;
}

struct sym { int32_t id, prev, next; };
struct cand { int32_t rank, pos; };

static int cand_less(struct cand x, struct cand y)
{
    return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos);
}

static void heap_push(struct cand *h, size_t *n, struct cand c)
{
    size_t i = (*n)++;
    while (i > 0 && cand_less(c, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static struct cand heap_pop(struct cand *h, size_t *n)
{
    struct cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(h[c + 1], h[c])) c++;
        if (!cand_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static void push_pair(const struct tokenizer *t, const struct sym *s, int32_t pos,
                      struct cand *heap, size_t *nh)
{
    int32_t nx = s[pos].next, new_id;
    if (nx < 0) return;
    int rank = pair_lookup(t, s[pos].id, s[nx].id, &new_id);
    if (rank >= 0) heap_push(heap, nh, (struct cand){rank, pos});
}

static int ids_append(int32_t **ids, size_t *n, size_t *cap, int32_t id)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        int32_t *p = realloc(*ids, nc * sizeof *p);
        if (!p) return sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory for %zu ids", nc);
        *ids = p;
        *cap = nc;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

/* The merge loop over n >= 1 bytes; appends the resulting ids. */
static int bpe_merge(const struct tokenizer *t, const uint8_t *s, size_t n, int32_t **ids,
                     size_t *n_ids, size_t *cap)
{
    struct sym sbuf[128];
    struct cand hbuf[128];
    struct sym *sy = n <= 128 ? sbuf : malloc(n * sizeof *sy);
    struct cand *heap = n <= 128 ? hbuf : malloc(n * sizeof *heap);
    int rc = 0;
    if (!sy || !heap) {
        rc = sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory for a %zu-byte word", n);
        goto out;
    }
    /* Bytes without a token of their own are dropped, as HF's BPE drops characters
     * missing from the vocabulary when the model has no unk_token. */
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[s[i]];
        if (id < 0) continue;
        sy[m] = (struct sym){id, m - 1, m + 1};
        m++;
    }
    if (m == 0) goto out;
    sy[m - 1].next = -1;
    size_t nh = 0;
    for (int32_t i = 0; i < m; i++) push_pair(t, sy, i, heap, &nh);
    while (nh > 0) {
        struct cand c = heap_pop(heap, &nh);
        struct sym *a = &sy[c.pos];
        if (a->id < 0 || a->next < 0) continue;                 /* merged away */
        struct sym *b = &sy[a->next];
        int32_t new_id;
        if (pair_lookup(t, a->id, b->id, &new_id) != c.rank) continue;   /* stale */
        a->id = new_id;
        int32_t bnext = b->next;
        b->id = -1;
        a->next = bnext;
        if (bnext >= 0) sy[bnext].prev = c.pos;
        if (a->prev >= 0) push_pair(t, sy, a->prev, heap, &nh);
        push_pair(t, sy, c.pos, heap, &nh);
    }
    for (int32_t i = 0; i >= 0 && !rc; i = sy[i].next) rc = ids_append(ids, n_ids, cap, sy[i].id);
out:
    if (sy != sbuf) free(sy);
    if (heap != hbuf) free(heap);
    return rc;
}

/* ---- word cache ---- */

int tok_cache_init(struct tokenizer *t)
{
    for (int i = 0; i < TOK_CACHE_SHARDS; i++) {
        t->cache[i].slots = calloc(TOK_CACHE_SLOTS, sizeof(struct tok_cache_slot));
        if (!t->cache[i].slots) return sushi_error(SUSHI_ENOMEM, "tokenizer: out of memory for the word cache");
        pthread_mutex_init(&t->cache[i].mu, NULL);
    }
    return 0;
}

void tok_cache_free(struct tokenizer *t)
{
    for (int i = 0; i < TOK_CACHE_SHARDS; i++) {
        if (!t->cache[i].slots) continue;
        pthread_mutex_destroy(&t->cache[i].mu);
        free(t->cache[i].slots);
        t->cache[i].slots = NULL;
    }
}

static int cache_get(struct tok_cache_shard *sh, uint32_t slot, const char *s, size_t n,
                     int32_t *out, int *nout)
{
    int hit = 0;
    pthread_mutex_lock(&sh->mu);
    struct tok_cache_slot *c = &sh->slots[slot];
    if (c->klen == n && !memcmp(c->key, s, n)) {
        memcpy(out, c->ids, c->nids * sizeof *out);
        *nout = c->nids;
        hit = 1;
    }
    pthread_mutex_unlock(&sh->mu);
    return hit;
}

static void cache_put(struct tok_cache_shard *sh, uint32_t slot, const char *s, size_t n,
                      const int32_t *ids, size_t nids)
{
    pthread_mutex_lock(&sh->mu);
    struct tok_cache_slot *c = &sh->slots[slot];
    c->klen = (uint8_t)n;
    c->nids = (uint8_t)nids;
    memcpy(c->key, s, n);
    memcpy(c->ids, ids, nids * sizeof *ids);
    pthread_mutex_unlock(&sh->mu);
}

/* ignore_merges (Llama 3 style): a word that is a whole vocabulary entry is one token. */
static int32_t whole_word_id(const struct tokenizer *t, const uint8_t *s, size_t n)
{
    char stack[256];
    char *buf = 2 * n <= sizeof stack ? stack : malloc(2 * n);
    if (!buf) return -1;                /* then the merges decide */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += utf8_put(buf + k, t->cp_of_byte[s[i]]);
    int32_t id = tok_vocab_find(t, buf, k);
    if (buf != stack) free(buf);
    return id;
}

int tok_bpe_word(const struct tokenizer *t, const char *s, size_t n, int32_t **ids,
                 size_t *n_ids, size_t *cap)
{
    if (n == 0) return 0;
    const uint8_t *u = (const uint8_t *)s;
    if (t->ignore_merges) {
        int32_t id = whole_word_id(t, u, n);
        if (id >= 0) return ids_append(ids, n_ids, cap, id);
    }
    if (n == 1) return t->byte_id[u[0]] >= 0 ? ids_append(ids, n_ids, cap, t->byte_id[u[0]]) : 0;
    if (n > TOK_CACHE_KEY) return bpe_merge(t, u, n, ids, n_ids, cap);

    uint64_t h = tok_hash(s, n);
    struct tok_cache_shard *sh = (struct tok_cache_shard *)&t->cache[h % TOK_CACHE_SHARDS];
    uint32_t slot = (uint32_t)(h >> 32) % TOK_CACHE_SLOTS;
    int32_t got[TOK_CACHE_IDS];
    int ngot;
    if (cache_get(sh, slot, s, n, got, &ngot)) {
        for (int i = 0; i < ngot; i++) {
            int rc = ids_append(ids, n_ids, cap, got[i]);
            if (rc) return rc;
        }
        return 0;
    }
    size_t before = *n_ids;
    int rc = bpe_merge(t, u, n, ids, n_ids, cap);
    if (!rc && *n_ids - before <= TOK_CACHE_IDS)
        cache_put(sh, slot, s, n, *ids + before, *n_ids - before);
    return rc;
}
