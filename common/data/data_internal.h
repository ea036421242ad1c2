/* Internal structures of the data library, shared by its files (not for other code). */
#ifndef SUSHI_DATA_INTERNAL_H
#define SUSHI_DATA_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/data/data.h"

/* One document (or one max_doc_bytes piece of one) as found by the scan. */
struct data_record {
    uint64_t offset;     /* byte offset of the container in its file (manifest: media index) */
    uint32_t len;        /* container bytes (text: the piece itself; JSONL: the line) */
    uint32_t sub_off;    /* the piece within the container's text (JSONL: decoded field) */
    uint32_t sub_len;
    uint32_t line;       /* 1-based line where it starts, for messages */
    uint32_t file;       /* index into loader files */
    uint32_t n_tokens;   /* without the EOS */
};

/* The first DATA_OPEN_FILES files stay open for the loader's lifetime (pread is
 * thread-safe), so a batch does not pay an open() per document; others are opened per read. */
#define DATA_OPEN_FILES 256
struct data_file {
    char *path;
    int source;
    int fd;          /* -1 when not kept open */
};

/* One manifest record: its media file and text (kept in memory: captions are short). */
struct data_media_entry {
    enum media_kind kind;
    char *path;
    char *text;
    atomic_int failed;      /* its decoding failed once (logged and counted) */
};

/* Rows of the plan's row table (base rows: all but needle rows): a text row index, or
 * DATA_ROW_MEDIA | index into media_order. */
#define DATA_ROW_MEDIA (1ull << 63)

/* Per-epoch plan: the document order and where each document's tokens start. */
struct data_plan {
    uint64_t epoch;
    uint64_t n_docs;        /* text documents of the stream */
    uint32_t *order;        /* [n_docs] record indices */
    uint64_t *prefix;       /* [n_docs+1] stream offset of each document (tokens + EOS) */
    uint64_t text_rows;     /* full rows of packed text */
    uint64_t n_media;       /* media documents drawn (one row each) */
    uint32_t *media_order;  /* [n_media] record indices */
    uint64_t base_rows;     /* text rows + media rows */
    uint64_t *row_table;    /* [base_rows], NULL when n_media is 0 (base row = text row) */
    uint64_t n_rows;        /* base rows + needle rows */
    uint64_t n_batches;
    long long *doc_counts;  /* [n_sources] */
    struct data_plan *next;
};

struct data_loader {
    struct data_config cfg;
    struct data_tokenizer tok;
    struct tokenizer *owned_tok;   /* loaded from cfg.tokenizer, else NULL */
    struct data_file *files;
    size_t n_files, cap_files;
    struct data_record *records;   /* grouped by source, in scan order */
    size_t n_records, cap_records;
    size_t src_first[DATA_MAX_SOURCES], src_count[DATA_MAX_SOURCES];
    struct data_media_entry *media;   /* manifest records */
    size_t n_media, cap_media;
    struct media_errors media_errs;
    long long errors, consecutive_errors;
    long long total_tokens;
    pthread_mutex_t lock;          /* plans list and error counters */
    struct data_plan *plans;       /* built on demand, kept until close */
};

/* Checks ranges of every field of a config (however it was built). */
int data_config_validate(const struct data_config *c);
int data_media_config_validate(const struct data_media_config *m);
/* Deep copy (strings duplicated); dst is freed on failure. */
int data_config_copy(struct data_config *dst, const struct data_config *src);

/* splitmix64 of a combination of values: the only source of randomness. */
uint64_t data_hash(uint64_t a, uint64_t b, uint64_t c, uint64_t d);
/* Uniform in [0, 1). */
double data_unit(uint64_t h);

/* data_source.c: scan all sources into files/records; read one record's text. */
int data_scan_sources(struct data_loader *l);
/* *text is malloc'ed (NUL-terminated); its length in *len. */
int data_record_text(const struct data_loader *l, const struct data_record *r, char **text,
                     size_t *len);
/* Counts a corrupt record: logs "FILE:LINE: cause", fails after too many in a row. */
int data_record_error(struct data_loader *l, const char *file, long long line, const char *cause);
int data_utf8_valid(const char *s, size_t n);
/* Appends a record (resets the run of corrupt records). */
int data_push_record(struct data_loader *l, const struct data_record *r);
/* Whether record r comes from a manifest source. */
int data_record_is_media(const struct data_loader *l, const struct data_record *r);

/* data_media.c: manifest sources, media rows and the batch's media tensors. */
int data_scan_manifest(struct data_loader *l, uint32_t file, const char *path);
void data_media_entries_free(struct data_loader *l);
/* Fills row r of b from media record `rec`: text + EOS + padding, and its media item. */
int data_media_row(struct data_loader *l, uint32_t rec, int r, struct data_batch *b,
                   const int32_t *ids, size_t n_ids);
/* Sizes b's media tensors for the loader's config and empties them. */
int data_media_batch_reset(const struct data_loader *l, struct data_batch *b);

/* data_plan.c */
int data_plan_get(struct data_loader *l, uint64_t epoch, const struct data_plan **out);
void data_plans_free(struct data_loader *l);
/* Needle-row layout of an epoch: K rows per block (0 = no needles). */
uint64_t data_needle_block(const struct data_config *cfg);
int data_row_is_needle(const struct data_config *cfg, uint64_t epoch, uint64_t row);
/* Base (text and media) rows before row `row` (row itself excluded). */
uint64_t data_text_rows_before(const struct data_config *cfg, uint64_t epoch, uint64_t row);

/* data_needle.c: fills one row (T tokens) with a passkey sample. */
int data_needle_row(const struct data_loader *l, uint64_t epoch, uint64_t row, int32_t *tokens,
                    int32_t *targets, int32_t *doc_ids, int32_t *positions, uint8_t *answer);
/* Checks that a minimal passkey sample fits in seq_len. */
int data_needle_check(const struct data_loader *l);

#endif
