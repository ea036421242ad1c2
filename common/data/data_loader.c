/* Opening a loader: copy and check the config, load the tokenizer, scan the sources,
 * and count every document's tokens once (in parallel, `threads` workers over an
 * interleaved split of the records, so the result does not depend on the split). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/core/log.h"
#include "common/data/data_internal.h"

struct count_job {
    struct data_loader *l;
    size_t first, step;
    int rc;
    char msg[512];
};

static void *count_worker(void *arg) {
    struct count_job *j = arg;
    struct data_loader *l = j->l;
    for (size_t i = j->first; i < l->n_records && !j->rc; i += j->step) {
        struct data_record *r = &l->records[i];
        char *text;
        size_t len;
        int32_t *ids = NULL;
        size_t n = 0;
        j->rc = data_record_text(l, r, &text, &len);
        if (!j->rc) {
            j->rc = l->tok.encode(l->tok.ctx, text, len, &ids, &n);
            free(text);
        }
        free(ids);
        if (!j->rc && n > UINT32_MAX - 1)
            j->rc = sushi_error(SUSHI_EUNSUPPORTED, "data: %s:%u: more than 2^32 tokens",
                                l->files[r->file].path, r->line);
        r->n_tokens = (uint32_t)n;
        if (j->rc) snprintf(j->msg, sizeof j->msg, "%s", sushi_last_error());
    }
    return NULL;
}

static int count_tokens(struct data_loader *l) {
    int nt = l->cfg.threads;
    struct count_job jobs[256];
    pthread_t th[256];
    int started = 0, rc = 0;
    for (int i = 0; i < nt; i++) {
        jobs[i] = (struct count_job){.l = l, .first = (size_t)i, .step = (size_t)nt};
        if (i > 0 && pthread_create(&th[i], NULL, count_worker, &jobs[i]) == 0) started = i;
        else if (i > 0) { jobs[i].rc = SUSHI_EIO; snprintf(jobs[i].msg, sizeof jobs[i].msg, "data: cannot start a thread"); }
    }
    count_worker(&jobs[0]);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < nt && !rc; i++)
        if (jobs[i].rc) rc = sushi_error(jobs[i].rc, "%s", jobs[i].msg);
    for (size_t i = 0; i < l->n_records && !rc; i++) l->total_tokens += l->records[i].n_tokens;
    return rc;
}

int data_loader_open(struct data_loader **out, const struct data_config *cfg,
                     const struct data_tokenizer *tokenizer) {
    if (!out || !cfg) return sushi_error(SUSHI_EINVAL, "data_loader_open: NULL argument");
    *out = NULL;
    int rc = data_config_validate(cfg);
    if (rc) return rc;
    struct data_loader *l = calloc(1, sizeof *l);
    if (!l) return sushi_error(SUSHI_ENOMEM, "data_loader_open: out of memory");
    pthread_mutex_init(&l->lock, NULL);
    if ((rc = data_config_copy(&l->cfg, cfg))) { pthread_mutex_destroy(&l->lock); free(l); return rc; }
    if (tokenizer) {
        if (!tokenizer->encode) rc = sushi_error(SUSHI_EINVAL, "data_loader_open: tokenizer without encode");
        else l->tok = *tokenizer;
    } else if (!cfg->tokenizer) {
        rc = sushi_error(SUSHI_EINVAL, "data: no tokenizer: set data.tokenizer to a tokenizer.json");
    } else if (!(rc = tok_load(&l->owned_tok, cfg->tokenizer))) {
        rc = data_tokenizer_hf(&l->tok, l->owned_tok);
    }
    if (!rc) rc = data_scan_sources(l);
    if (!rc) rc = count_tokens(l);
    if (!rc) rc = data_needle_check(l);
    if (rc) { data_loader_close(l); return rc; }
    log_info("data: %zu files, %zu documents, %lld tokens, %lld corrupt records skipped",
             l->n_files, l->n_records, l->total_tokens, l->errors);
    *out = l;
    return 0;
}

void data_loader_close(struct data_loader *l) {
    if (!l) return;
    data_plans_free(l);
    for (size_t i = 0; i < l->n_files; i++) {
        if (l->files[i].fd >= 0) close(l->files[i].fd);
        free(l->files[i].path);
    }
    free(l->files);
    free(l->records);
    data_media_entries_free(l);
    if (l->owned_tok) tok_free(l->owned_tok);
    data_config_free(&l->cfg);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

void data_loader_stats(const struct data_loader *l, struct data_stats *st) {
    if (!l || !st) return;
    st->files = (long long)l->n_files;
    st->documents = (long long)l->n_records;
    st->tokens = l->total_tokens;
    st->errors = l->errors;
}

const struct data_config *data_loader_config(const struct data_loader *l) { return l ? &l->cfg : NULL; }
const struct data_tokenizer *data_loader_tokenizer(const struct data_loader *l) {
    return l ? &l->tok : NULL;
}
