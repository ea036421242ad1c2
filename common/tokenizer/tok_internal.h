/* Internal layout of a loaded tokenizer, shared by the files of common/tokenizer:
 * tok_load.c (tokenizer.json / vocab.json + merges.txt), tok_split.c (regex splitting,
 * normalizers), tok_bpe.c (byte-level BPE merges and the word cache) and tok_encode.c
 * (added tokens, the encode pipeline, decode). */
#ifndef SUSHI_TOK_INTERNAL_H
#define SUSHI_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/tokenizer/tokenizer.h"

/* Split behaviours of HF's SplitDelimiterBehavior. */
enum tok_behavior {
    TOK_REMOVED, TOK_ISOLATED, TOK_MERGED_PREV, TOK_MERGED_NEXT, TOK_CONTIGUOUS
};

/* A piece of the text being encoded: bytes [off, off+len) of the work buffer; id >= 0
 * when the piece is an added token already. */
struct tok_piece {
    size_t off, len;
    int32_t id;
};

/* The work state of one encode call: a growing byte buffer (pieces point into it by
 * offset, so appends never invalidate them) and the current list of pieces. */
struct tok_work {
    char *buf;
    size_t len, cap;
    struct tok_piece *p;
    size_t n, pcap;
    pcre2_match_data *md;
};

/* A pre-tokenizer or normalizer step. */
enum tok_step_kind {
    TOK_STEP_SPLIT,       /* Split / Digits / ByteLevel's regex: re + behavior + invert */
    TOK_STEP_PREFIX,      /* ByteLevel add_prefix_space: " " before pieces not starting with one */
    TOK_STEP_PREPEND,     /* normalizer Prepend: `str` before every piece */
    TOK_STEP_REPLACE,     /* normalizer Replace: every match of re becomes `str` */
    TOK_STEP_ICU,         /* normalizer NFC / NFD / NFKC / NFKD (icu: the ICU normalizer) */
    TOK_STEP_LOWER,       /* normalizer Lowercase */
    TOK_STEP_STRIP,       /* normalizer Strip: strip_left / strip_right */
};

struct tok_step {
    enum tok_step_kind kind;
    pcre2_code *re;
    enum tok_behavior behavior;
    int invert;
    char *str;
    size_t str_len;
    const void *icu;
    uint8_t strip_left, strip_right;
};

struct tok_added {
    char *content;
    size_t len;
    char *match;                      /* what is matched: content, normalized if normalized */
    size_t match_len;
    int32_t id;
    uint8_t special, normalized, lstrip, rstrip, single_word;
};

/* Added tokens of one matching pass, indexed by first byte, longest first. */
struct tok_added_set {
    int32_t start[257];   /* CSR over first byte: entries start[b] .. start[b+1]-1 */
    int32_t *idx;         /* indices into tokenizer.added */
};

/* Cache of encoded words: shards of direct-mapped slots, each shard under a mutex. */
#define TOK_CACHE_SHARDS 16
#define TOK_CACHE_SLOTS 4096          /* per shard */
#define TOK_CACHE_KEY 46              /* longest cached word, bytes */
#define TOK_CACHE_IDS 12              /* most ids of a cached word */
struct tok_cache_slot {
    uint8_t klen, nids;               /* klen 0: empty */
    char key[TOK_CACHE_KEY];
    int32_t ids[TOK_CACHE_IDS];
};
struct tok_cache_shard {
    pthread_mutex_t mu;
    struct tok_cache_slot *slots;
};

struct tokenizer {
    /* vocabulary: id -> token (byte-level string), token -> id hash (open addressing) */
    int32_t n_ids;                    /* max id + 1 over vocab and added tokens */
    char **id_tok;                    /* (n_ids) NULL where unused */
    uint32_t *id_len;
    int32_t *vmap;                    /* (vmap_cap) ids, -1 empty */
    uint32_t vmap_cap;

    /* merges: (left id, right id) -> rank, merged id */
    uint64_t *pair_key;               /* (pair_cap) left << 32 | right, UINT64_MAX empty */
    int32_t *pair_rank, *pair_new;
    uint32_t pair_cap;
    int ignore_merges;

    int32_t byte_id[256];             /* id of the one-character token of each byte */
    uint16_t cp_of_byte[256];         /* the byte-level map: byte -> code point */
    uint8_t byte_of_cp[324];          /* inverse byte-level map by code point; 0 + flag */
    uint8_t cp_is_byte[324];

    struct tok_added *added;
    int n_added;
    struct tok_added_set raw_set, norm_set; /* normalized=false / normalized=true tokens */
    uint8_t *id_special;              /* (n_ids) 1 for special added tokens */
    uint8_t *id_added;                /* (n_ids) 1 for any added token */

    struct tok_step *norm;            /* normalizers, in order */
    int n_norm;
    struct tok_step *pre;             /* pre-tokenizer steps, in order */
    int n_pre;
    int decoder_bytelevel;            /* 1: ByteLevel decoder; 0: tokens joined by " " */

    int32_t *post_pre, *post_post;    /* ids the post-processor puts around a sequence */
    int n_post_pre, n_post_post;

    int32_t bos, eos;
    struct tok_cache_shard cache[TOK_CACHE_SHARDS];
};

/* tok_load.c */
uint64_t tok_hash(const char *s, size_t n);
int32_t tok_vocab_find(const struct tokenizer *t, const char *s, size_t n);

/* tok_added.c */
struct json_t;
int tok_added_load(struct tokenizer *t, const struct json_t *arr, const char *where, int32_t *max_id);
int tok_added_index(struct tokenizer *t);
int tok_added_split(const struct tokenizer *t, const struct tok_added_set *set, struct tok_work *w);

/* tok_split.c */
int tok_re_compile(pcre2_code **out, const char *pattern, int literal, const char *where);
int tok_work_append(struct tok_work *w, const char *s, size_t n, size_t *off);
int tok_work_push(struct tok_work *w, size_t off, size_t len, int32_t id);
/* Applies one normalizer or pre-tokenizer step to every piece without an id. */
int tok_step_apply(const struct tok_step *s, struct tok_work *w);

/* tok_normalize.c */
int tok_norm_icu_get(const char *type, const void **out);
int tok_norm_apply(const struct tok_step *st, struct tok_work *w, struct tok_piece *pc);

/* tok_bpe.c */
void tok_bytelevel_init(struct tokenizer *t);
/* Encodes one pre-tokenized word (raw bytes, before the byte-level map); appends ids. */
int tok_bpe_word(const struct tokenizer *t, const char *s, size_t n, int32_t **ids,
                 size_t *n_ids, size_t *cap);
int tok_cache_init(struct tokenizer *t);
void tok_cache_free(struct tokenizer *t);

#endif
