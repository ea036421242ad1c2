/* The `data` section of a config: defaults, reading from JSON (YAML via common/config),
 * validation with messages naming the file and key, and the tokenizer adapters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/json_util.h"
#include "common/core/log.h"
#include "common/data/data_internal.h"

void data_config_defaults(struct data_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->seed = 1234;
    cfg->seq_len = 1024;
    cfg->batch_size = 8;
    cfg->threads = 2;
    cfg->prefetch = 8;
    cfg->needle_share = 0.01;
    cfg->max_consecutive_errors = 100;
    cfg->max_doc_bytes = 65536;
    data_media_config_defaults(&cfg->media);
}

void data_config_free(struct data_config *cfg) {
    if (!cfg) return;
    for (int i = 0; i < cfg->n_sources; i++) {
        struct data_source_config *s = &cfg->sources[i];
        free(s->name); free(s->path); free(s->text_field); free(s->separator); free(s->exclude);
    }
    free(cfg->tokenizer);
    memset(cfg, 0, sizeof *cfg);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

int data_config_validate(const struct data_config *c) {
    if (c->seq_len < 2 || c->batch_size < 1 || c->threads < 1 || c->prefetch < 1 ||
        c->max_doc_bytes < 64 || c->max_consecutive_errors < 0 || c->epoch_docs < 0 ||
        c->epoch_docs > UINT32_MAX)
        return sushi_error(SUSHI_EINVAL, "data: bad config: seq_len %d (>= 2), batch_size %d (>= 1), "
                           "threads %d (>= 1), prefetch %d (>= 1), max_doc_bytes %d (>= 64), "
                           "max_consecutive_errors %d (>= 0), epoch_docs %lld (0..2^32-1)",
                           c->seq_len, c->batch_size, c->threads, c->prefetch, c->max_doc_bytes,
                           c->max_consecutive_errors, c->epoch_docs);
    if (!(c->needle_share >= 0.0 && c->needle_share <= 1.0))
        return sushi_error(SUSHI_EINVAL, "data: needle_share %g not in [0, 1]", c->needle_share);
    int rc = data_media_config_validate(&c->media);
    if (rc) return rc;
    if (c->n_sources < 1 || c->n_sources > DATA_MAX_SOURCES)
        return sushi_error(SUSHI_EINVAL, "data: %d sources, expected 1..%d", c->n_sources,
                           DATA_MAX_SOURCES);
    for (int i = 0; i < c->n_sources; i++) {
        const struct data_source_config *s = &c->sources[i];
        if (!s->path || !*s->path) return sushi_error(SUSHI_EINVAL, "data: source %d: no path", i);
        if (!(s->weight >= 0.0 && s->weight <= 1e9))
            return sushi_error(SUSHI_EINVAL, "data: source %s: weight %g not in [0, 1e9]",
                               s->name ? s->name : s->path, s->weight);
        if (s->format != DATA_TEXT && s->format != DATA_JSONL && s->format != DATA_MANIFEST)
            return sushi_error(SUSHI_EINVAL, "data: source %s: unknown format %d",
                               s->name ? s->name : s->path, (int)s->format);
    }
    return 0;
}

int data_config_copy(struct data_config *dst, const struct data_config *src) {
    *dst = *src;
    dst->tokenizer = dup_or_null(src->tokenizer);
    int bad = src->tokenizer && !dst->tokenizer;
    for (int i = 0; i < src->n_sources; i++) {
        const struct data_source_config *s = &src->sources[i];
        struct data_source_config *d = &dst->sources[i];
        d->name = dup_or_null(s->name ? s->name : s->path);
        d->path = dup_or_null(s->path);
        d->text_field = dup_or_null(s->text_field ? s->text_field : "text");
        d->separator = dup_or_null(s->separator);
        d->exclude = dup_or_null(s->exclude);
        bad |= !d->name || !d->path || !d->text_field || (s->separator && !d->separator) ||
               (s->exclude && !d->exclude);
    }
    if (bad) {
        data_config_free(dst);
        return sushi_error(SUSHI_ENOMEM, "data: out of memory copying the config");
    }
    return 0;
}

static int read_source(struct data_source_config *s, const json_t *obj, const char *file,
                       const char *path) {
    static const char *const known[] = {"name", "path", "format", "text_field", "separator",
                                        "weight", "exclude", NULL};
    struct ju_where w = {file, path};
    int rc;
    if (!json_is_object(obj)) return sushi_error(SUSHI_EINVAL, "%s: %s: expected a map", file, path);
    if ((rc = ju_check_keys(obj, w, known))) return rc;
    const char *name = NULL, *p = NULL, *format = "text", *field = "text", *sep = NULL, *excl = NULL;
    s->weight = 1.0;
    if ((rc = ju_string(obj, w, "path", 1, &p)) || (rc = ju_string(obj, w, "name", 0, &name)) ||
        (rc = ju_string(obj, w, "format", 0, &format)) ||
        (rc = ju_string(obj, w, "text_field", 0, &field)) ||
        (rc = ju_string(obj, w, "separator", 0, &sep)) ||
        (rc = ju_string(obj, w, "exclude", 0, &excl)) ||
        (rc = ju_double(obj, w, "weight", 0, &s->weight)))
        return rc;
    if (!strcmp(format, "text")) s->format = DATA_TEXT;
    else if (!strcmp(format, "jsonl")) s->format = DATA_JSONL;
    else if (!strcmp(format, "manifest")) s->format = DATA_MANIFEST;
    else return sushi_error(SUSHI_EINVAL, "%s: %s.format: expected text, jsonl or manifest, got \"%s\"",
                            file, path, format);
    if (!(s->weight >= 0.0) || s->weight > 1e9)
        return sushi_error(SUSHI_EINVAL, "%s: %s.weight: expected a value in [0, 1e9], got %g",
                           file, path, s->weight);
    if (!*p) return sushi_error(SUSHI_EINVAL, "%s: %s.path: empty", file, path);
    s->name = strdup(name ? name : p);
    s->path = strdup(p);
    s->text_field = strdup(field);
    s->separator = dup_or_null(sep);
    s->exclude = dup_or_null(excl);
    if (!s->name || !s->path || !s->text_field || (sep && !s->separator) || (excl && !s->exclude))
        return sushi_error(SUSHI_ENOMEM, "%s: %s: out of memory", file, path);
    return 0;
}

int data_config_from_json(struct data_config *cfg, const json_t *data, const char *file) {
    static const char *const known[] = {"seed", "seq_len", "batch_size", "threads", "prefetch",
        "needle_share", "max_consecutive_errors", "epoch_docs", "max_doc_bytes", "tokenizer",
        "sources", "media", NULL};
    if (!cfg || !data || !file) return sushi_error(SUSHI_EINVAL, "data_config_from_json: NULL argument");
    data_config_defaults(cfg);
    struct ju_where w = {file, "data"};
    if (!json_is_object(data)) return sushi_error(SUSHI_EINVAL, "%s: data: expected a map", file);
    long long seed = (long long)cfg->seed;
    const char *tok = NULL;
    int rc;
    if ((rc = ju_check_keys(data, w, known)) || (rc = ju_int64(data, w, "seed", 0, &seed)) ||
        (rc = ju_int(data, w, "seq_len", 0, 2, 1 << 20, &cfg->seq_len)) ||
        (rc = ju_int(data, w, "batch_size", 0, 1, 1 << 16, &cfg->batch_size)) ||
        (rc = ju_int(data, w, "threads", 0, 1, 256, &cfg->threads)) ||
        (rc = ju_int(data, w, "prefetch", 0, 1, 4096, &cfg->prefetch)) ||
        (rc = ju_double(data, w, "needle_share", 0, &cfg->needle_share)) ||
        (rc = ju_int(data, w, "max_consecutive_errors", 0, 0, 1 << 30, &cfg->max_consecutive_errors)) ||
        (rc = ju_int64(data, w, "epoch_docs", 0, &cfg->epoch_docs)) ||
        (rc = ju_int(data, w, "max_doc_bytes", 0, 64, 1 << 30, &cfg->max_doc_bytes)) ||
        (rc = ju_string(data, w, "tokenizer", 0, &tok)) ||
        (rc = data_media_config_from_json(&cfg->media, json_object_get(data, "media"), file)))
        goto fail;
    cfg->seed = (uint64_t)seed;
    if (!(cfg->needle_share >= 0.0 && cfg->needle_share <= 1.0)) {
        rc = sushi_error(SUSHI_EINVAL, "%s: data.needle_share: expected a value in [0, 1], got %g",
                         file, cfg->needle_share);
        goto fail;
    }
    if (cfg->epoch_docs < 0) {
        rc = sushi_error(SUSHI_EINVAL, "%s: data.epoch_docs: expected >= 0, got %lld", file,
                         cfg->epoch_docs);
        goto fail;
    }
    if (tok && !(cfg->tokenizer = strdup(tok))) { rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", file); goto fail; }
    const json_t *srcs = json_object_get(data, "sources");
    if (!json_is_array(srcs) || json_array_size(srcs) == 0) {
        rc = sushi_error(SUSHI_EINVAL, "%s: data.sources: expected a non-empty list of sources", file);
        goto fail;
    }
    if (json_array_size(srcs) > DATA_MAX_SOURCES) {
        rc = sushi_error(SUSHI_EINVAL, "%s: data.sources: %zu sources, at most %d", file,
                         json_array_size(srcs), DATA_MAX_SOURCES);
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(srcs); i++) {
        char path[64];
        snprintf(path, sizeof path, "data.sources[%zu]", i);
        cfg->n_sources = (int)i + 1;
        if ((rc = read_source(&cfg->sources[i], json_array_get(srcs, i), file, path))) goto fail;
    }
    if ((rc = data_config_validate(cfg))) goto fail;
    return 0;
fail:
    data_config_free(cfg);
    return rc;
}

static int bytes_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n_ids) {
    (void)ctx;
    int32_t *out = malloc((len ? len : 1) * sizeof *out);
    if (!out) return sushi_error(SUSHI_ENOMEM, "byte tokenizer: out of memory (%zu bytes)", len);
    for (size_t i = 0; i < len; i++) out[i] = (unsigned char)text[i];
    *ids = out;
    *n_ids = len;
    return 0;
}

void data_tokenizer_bytes(struct data_tokenizer *t) {
    t->encode = bytes_encode;
    t->ctx = NULL;
    t->eos_id = 256;
}

static int hf_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n_ids) {
    return tok_encode((const struct tokenizer *)ctx, text, len, 0, ids, n_ids);
}

int data_tokenizer_hf(struct data_tokenizer *t, const struct tokenizer *tok) {
    if (!t || !tok) return sushi_error(SUSHI_EINVAL, "data_tokenizer_hf: NULL argument");
    int32_t eos = tok_eos_id(tok);
    if (eos < 0) return sushi_error(SUSHI_EINVAL, "data_tokenizer_hf: the tokenizer has no EOS token");
    t->encode = hf_encode;
    t->ctx = (void *)tok;
    t->eos_id = eos;
    return 0;
}
