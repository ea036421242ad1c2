/* The text data path: sources (plain text, JSONL, folders, globs), weighted mixing,
 * deterministic shuffling, packing into fixed-length rows, passkey (needle) rows, and a
 * threaded stream with a bounded prefetch queue. Used by sushi-loader and by eval.
 *
 * Determinism. A batch id is a pure function of (epoch, index):
 *     id = epoch << 40 | index        (DATA_BATCH_ID)
 * and data_batch() regenerates any batch from its id alone. Opening a loader scans every
 * source once and records, per document, where it lives and how many tokens it has
 * (tokenized once, in parallel; only counts are kept). Each epoch gets a plan: a seeded
 * weighted draw of a source per document slot, each source's documents taken from a
 * seeded permutation (reshuffled on every pass when a source is upsampled), and the
 * prefix sums of the documents' token counts (+1 for the EOS after each). Row r of the
 * epoch covers stream tokens [r*T, r*T + T), so the document where a row starts is found
 * by binary search and only the documents a batch touches are read and tokenized again.
 *
 * Packing, per row of T tokens:
 *   tokens     the stream: each document's tokens followed by EOS;
 *   targets    the next stream token when it belongs to the same document, else -1
 *              (at each EOS, and at the last position when the row ends a document);
 *              the last position's target is the first token of the next row when that
 *              continues the same document;
 *   doc_ids    0, 1, 2, ... per document segment within the row (attention document mask);
 *   positions  position within the document segment of this row (restarts at 0 at each
 *              segment, so it never exceeds T-1).
 * A document longer than max_doc_bytes is cut at a line break (else a space) into
 * several documents, so a batch never re-tokenizes more than max_doc_bytes per segment.
 *
 * Needle rows (SPEC §5). With share p > 0, K = round(1/p): in every block of K rows of an
 * epoch exactly one row (at a seeded position) is a passkey sample: a preamble, filler
 * sentences with "The pass key is NNNNN. Remember it." at a seeded depth, the question,
 * and the answer, which answer_mask marks, then EOS; the rest of the row is EOS padding
 * (targets -1, doc_ids 1). Needle rows are inserted, not substituted, so every text
 * token of the epoch is still delivered exactly once.
 *
 * Multimodal samples (format `manifest`: a JSONL manifest read by media_manifest_read,
 * {"image": "cat.png", "text": "..."} or "audio"/"video"/"mesh"). Each record is one
 * document of the mix like any other, but it is never packed: it fills one row of its
 * own, its text tokens then EOS from position 0 (cut to T-1 tokens), the rest EOS padding
 * (targets -1, doc_ids 1, positions restarting at 0, as needle padding). In an epoch's
 * plan the media documents are taken out of the text stream and their rows inserted
 * before the text row that was being filled when they were drawn, so text packing is
 * unchanged and every row still follows from (seed, epoch, index). The row's media is
 * decoded in data_batch (so on the stream's or the loader's worker threads) into the
 * fixed shapes of data.media and returned as per-modality tensors with the batch row of
 * each item (data_batch.media[]). Missing media: while opening, a record whose file is
 * missing, not a regular file or empty is dropped like a corrupt text record (one log
 * line, data_stats.errors). A file that exists but does not decode: its row stays a
 * text-only row (no media item); the first failure of each record is logged and counted
 * once in data_stats.errors. Both depend only on the files, so batches stay a pure
 * function of the id whatever the thread count. Decoding needs common/media: a program
 * that reads manifests sets data_config.media.ops = data_media_decoders() (linking the
 * media library); without it a manifest source is an error.
 *
 * Corrupt input (bad JSON, a missing or non-string text field, invalid UTF-8, an
 * unreadable file) is found while opening: the record is skipped with one warning naming
 * FILE:LINE and the cause, and counted (data_stats.errors). An epoch's last partial
 * batch is dropped. */
#ifndef SUSHI_DATA_H
#define SUSHI_DATA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/core/dtype.h"
#include "common/media/media.h"
#include "common/tokenizer/tokenizer.h"

#define DATA_INDEX_BITS 40
#define DATA_BATCH_ID(epoch, index) (((uint64_t)(epoch) << DATA_INDEX_BITS) | (uint64_t)(index))
#define DATA_BATCH_EPOCH(id) ((uint64_t)(id) >> DATA_INDEX_BITS)
#define DATA_BATCH_INDEX(id) ((uint64_t)(id) & ((1ull << DATA_INDEX_BITS) - 1))
#define DATA_MAX_SOURCES 64

enum data_format { DATA_TEXT = 0, DATA_JSONL = 1, DATA_MANIFEST = 2 };

struct data_source_config {
    char *name;
    char *path;         /* a file, a folder (walked recursively, sorted) or a glob */
    enum data_format format;
    char *text_field;   /* JSONL: member holding the text (default "text") */
    char *separator;    /* text: a line equal to this separates documents (NULL: one per file) */
    char *exclude;      /* fnmatch pattern: files whose name matches are left out (NULL: none) */
    double weight;      /* relative share of documents drawn from this source */
};

/* Fixed per-sample shapes of the media tensors (`data.media`), what the student's
 * encoders take (models/student/encoders.h). */
struct data_media_ops;
struct data_media_config {
    int image_h, image_w;           /* image.height, image.width (224) */
    enum media_filter filter;       /* image.filter: bilinear | bicubic (bicubic); video too */
    int audio_rate;                 /* audio.sample_rate (16000) */
    int audio_frames;               /* audio.frames: mel frames per clip, cropped/padded (1000) */
    int mel_bins;                   /* audio.mel_bins (80) */
    int mel_window, mel_hop;        /* audio.window, audio.hop in samples (400, 160) */
    int video_frames;               /* video.frames (8) */
    int video_h, video_w;           /* video.height, video.width (224) */
    int mesh_points;                /* mesh.points (2048) */
    uint64_t mesh_seed;             /* mesh.seed (0): surface sampling seed, the same every epoch */
    const struct data_media_ops *ops;   /* decoders (not from the config): data_media_decoders() */
};

/* What data needs from common/media, behind pointers so that programs without
 * manifests need not link the media library. */
struct data_media_ops {
    int (*manifest_read)(const char *path, struct media_manifest *out);
    void (*manifest_free)(struct media_manifest *m);
    /* Decodes `path` of `kind` into out, one item in the batch layout of the kind
     * (data_media_item_bytes): image [3,H,W] u8, audio_mel [frames,bins] f16, video
     * [F,3,H,W] u8, mesh_points [P,6] f32. */
    int (*decode)(const struct data_media_config *c, enum media_kind kind, const char *path,
                  void *out, struct media_errors *errs);
};
/* The common/media decoders (data_media_decode.c; links the media library). */
const struct data_media_ops *data_media_decoders(void);
/* Bytes, dtype and per-item shape (*ndim values) of one item of `kind`. */
size_t data_media_item_bytes(const struct data_media_config *c, enum media_kind kind);
int data_media_item_shape(const struct data_media_config *c, enum media_kind kind, enum dtype *dt,
                          int64_t dims[4]);

struct data_config {
    uint64_t seed;
    int seq_len;                /* T */
    int batch_size;             /* B */
    int threads;                /* worker threads (stream and indexing) */
    int prefetch;               /* bounded queue: batches produced ahead of the consumer */
    double needle_share;        /* share of rows that are passkey samples (0 disables) */
    int max_consecutive_errors; /* opening fails when a run of corrupt records exceeds this
                                   (0: any corrupt record is fatal); each is logged and counted */
    long long epoch_docs;       /* documents per epoch (0: all documents of all sources) */
    int max_doc_bytes;          /* longer documents are cut (see above) */
    char *tokenizer;            /* tokenizer.json path (NULL: set data_tokenizer yourself) */
    struct data_media_config media;
    int n_sources;
    struct data_source_config sources[DATA_MAX_SOURCES];
};

/* Reads the `data` section (a JSON object, e.g. from a YAML config) into *cfg, with
 * defaults for absent keys; `file` names the config in messages. Free with
 * data_config_free. */
int data_config_from_json(struct data_config *cfg, const json_t *data, const char *file);
void data_config_defaults(struct data_config *cfg);
void data_config_free(struct data_config *cfg);
void data_media_config_defaults(struct data_media_config *m);
/* Reads `data.media` (absent: defaults). */
int data_media_config_from_json(struct data_media_config *m, const json_t *media, const char *file);

/* Tokenization used by the loader: must be thread-safe and deterministic. */
typedef int (*data_tokenize_fn)(void *ctx, const char *text, size_t len, int32_t **ids,
                                size_t *n_ids);
struct data_tokenizer {
    data_tokenize_fn encode;
    void *ctx;
    int32_t eos_id;
};
/* Byte-level: one id per byte, EOS = 256. */
void data_tokenizer_bytes(struct data_tokenizer *t);
/* A loaded HF tokenizer (borrowed; must outlive the loader); no special tokens added. */
int data_tokenizer_hf(struct data_tokenizer *t, const struct tokenizer *tok);

/* The media of a batch, per modality: n items (0: the tensor is absent), each of
 * item_bytes, and the batch row each belongs to. Buffers are allocated by data_batch
 * (B items) on first use and reused. */
struct data_media_tensor {
    int n, cap;
    enum dtype dt;
    int ndim;               /* per-item dims */
    int64_t dims[4];
    size_t item_bytes;
    void *data;             /* [n, dims...] */
    int32_t *rows;          /* [n] */
};

struct data_batch {
    uint64_t id, epoch, index;
    int B, T;
    int32_t *tokens;       /* [B,T] */
    int32_t *targets;      /* [B,T] next token, -1 = ignore */
    int32_t *doc_ids;      /* [B,T] document segment within the row */
    int32_t *positions;    /* [B,T] position within the segment */
    uint64_t *sample_ids;  /* [B]   epoch << 40 | row index within the epoch */
    uint8_t *answer_mask;  /* [B,T] 1 on the answer tokens of needle rows */
    int n_needles;         /* needle rows in this batch */
    int n_media_rows;      /* rows from manifest records (with or without decoded media) */
    struct data_media_tensor media[MEDIA_NKINDS];
};
int data_batch_alloc(struct data_batch *b, int B, int T);
void data_batch_free(struct data_batch *b);
/* Wire names of the media tensors: "image", "audio_mel", "video", "mesh_points", and of
 * their row indices: "image_row", "audio_row", "video_row", "mesh_row". */
const char *data_media_tensor_name(enum media_kind kind);
const char *data_media_row_name(enum media_kind kind);
/* The wire shape [n, dims...] of a batch's media tensor; returns its rank. */
int data_media_tensor_shape(const struct data_media_tensor *t, int64_t shape[5]);
/* Writes the batch as safetensors (wire-format tensor names, media tensors with n > 0
 * included; metadata batch_id, epoch, cursor = index within the epoch, seq_len,
 * batch_size, needle_rows, media_rows). */
int data_batch_save(const struct data_batch *b, const char *path);

struct data_loader;
struct data_stats {
    long long files, documents, tokens;   /* usable, after skipping corrupt records */
    long long errors;                      /* corrupt records skipped (since open) */
};

/* Scans and indexes all sources (tokenizer: borrowed, NULL = cfg->tokenizer must be set
 * and is loaded by the loader). cfg is copied. */
int data_loader_open(struct data_loader **out, const struct data_config *cfg,
                     const struct data_tokenizer *tokenizer);
void data_loader_close(struct data_loader *l);
void data_loader_stats(const struct data_loader *l, struct data_stats *st);
const struct data_config *data_loader_config(const struct data_loader *l);
const struct data_tokenizer *data_loader_tokenizer(const struct data_loader *l);
/* Batches in an epoch, and (optionally) how many documents each source got in it
 * (doc_counts[n_sources]). */
int data_epoch_info(struct data_loader *l, uint64_t epoch, uint64_t *n_batches,
                    long long *doc_counts);
/* The id that follows `id` in the stream (next index, or the next epoch's first). */
int data_next_id(struct data_loader *l, uint64_t id, uint64_t *next);
/* Regenerates batch `id` into b (allocated with the loader's B and T). Thread-safe. */
int data_batch(struct data_loader *l, uint64_t id, struct data_batch *b);

/* The pieces of a passkey sample (SPEC §5), each tokenized on its own: the preamble, one
 * filler unit (repeated around the needle), the needle "The pass key is NNNNN. Remember
 * it.", the question, the answer " NNNNN" and the closing ".". Used by the loader's needle
 * rows and by eval's passkey grid, so both ask exactly the same thing. */
enum data_needle_piece { NEEDLE_PRE = 0, NEEDLE_FILL, NEEDLE_NEEDLE, NEEDLE_QUESTION, NEEDLE_ANSWER,
                         NEEDLE_TAIL, NEEDLE_NPIECES };
struct data_needle_pieces {
    int32_t *ids[NEEDLE_NPIECES];
    size_t n[NEEDLE_NPIECES];
};
/* key in [0, 99999]; free with data_needle_pieces_free (also after a failure). */
int data_needle_pieces(const struct data_tokenizer *tok, unsigned key, struct data_needle_pieces *p);
void data_needle_pieces_free(struct data_needle_pieces *p);

/* N worker threads produce batches by id into a bounded ring of `prefetch` slots; the
 * consumer receives them strictly in id order starting at start_id. */
struct data_stream;
int data_stream_open(struct data_stream **out, struct data_loader *l, uint64_t start_id,
                     int threads, int prefetch);
/* Blocks for the next batch; *b stays valid until the next call or close. */
int data_stream_next(struct data_stream *s, const struct data_batch **b);
void data_stream_close(struct data_stream *s);

#endif
