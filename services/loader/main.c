// libs: data tok config student core
/* sushi-loader: the data stage. Reads the `data` section of a YAML config, indexes the
 * sources and produces batches in id order from (seed, epoch, cursor). With --dump N
 * OUTDIR it writes N batches as safetensors files (wire-format tensor names; metadata
 * batch_id, epoch, cursor) so any batch can be inspected with ordinary tools. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/data/data.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: sushi-loader --config FILE --dump N OUTDIR [options] [key.path=value ...]\n\n"
        "Produces training batches from the data sources of FILE (its `data` section):\n"
        "weighted mixing, seeded shuffling, packing into seq_len rows with doc_ids and\n"
        "positions, passkey rows. The same (seed, epoch, cursor) gives the same batches\n"
        "whatever the number of threads.\n\n"
        "  --config FILE     YAML config with a `data:` section (see configs/data/)\n"
        "  --dump N OUTDIR   write N batches to OUTDIR/batch-EEEE-IIIIIIIIII.safetensors\n"
        "  --epoch E         first epoch (default 0)\n"
        "  --cursor C        first batch index within the epoch (default 0)\n"
        "  --threads N       worker threads (default: data.threads)\n"
        "  -h, --help        this help\n"
        "  key.path=value    override a config value, e.g. data.seed=7 data.seq_len=512\n\n"
        "Tensors per batch: tokens, targets (-1 = ignore), doc_ids, positions [B,T] I32,\n"
        "sample_ids [B] U64, answer_mask [B,T] U8 (answer tokens of passkey rows).\n");
}

static int parse_u64(const char *s, const char *what, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !*s || *end || *s == '-')
        return sushi_error(SUSHI_EINVAL, "%s: expected a non-negative integer, got \"%s\"", what, s);
    *out = v;
    return 0;
}

static int dump(struct data_loader *l, uint64_t start, unsigned long long n, int threads,
                const char *outdir) {
    int rc = fs_mkdir_p(outdir, 0755);
    if (rc) return rc;
    struct data_stream *s;
    if ((rc = data_stream_open(&s, l, start, threads, data_loader_config(l)->prefetch))) return rc;
    for (unsigned long long i = 0; i < n && !rc; i++) {
        const struct data_batch *b;
        if ((rc = data_stream_next(s, &b))) break;
        char path[4096];
        snprintf(path, sizeof path, "%s/batch-%04llu-%010llu.safetensors", outdir,
                 (unsigned long long)b->epoch, (unsigned long long)b->index);
        if (!(rc = data_batch_save(b, path)))
            printf("%s id=%llu epoch=%llu cursor=%llu needle_rows=%d\n", path,
                   (unsigned long long)b->id, (unsigned long long)b->epoch,
                   (unsigned long long)b->index, b->n_needles);
    }
    data_stream_close(s);
    return rc;
}

int main(int argc, char **argv) {
    log_set_name("sushi-loader");
    const char *config = NULL, *outdir = NULL;
    unsigned long long n_dump = 0, epoch = 0, cursor = 0, threads = 0;
    const char **overrides = calloc((size_t)argc, sizeof *overrides);
    int n_over = 0, rc = 0, have_dump = 0;
    if (!overrides) return 1;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); free(overrides); return 0; }
        else if (!strcmp(a, "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(a, "--dump") && i + 2 < argc) {
            have_dump = 1;
            rc = parse_u64(argv[++i], "--dump N", &n_dump);
            outdir = argv[++i];
        } else if (!strcmp(a, "--epoch") && i + 1 < argc) rc = parse_u64(argv[++i], "--epoch", &epoch);
        else if (!strcmp(a, "--cursor") && i + 1 < argc) rc = parse_u64(argv[++i], "--cursor", &cursor);
        else if (!strcmp(a, "--threads") && i + 1 < argc) rc = parse_u64(argv[++i], "--threads", &threads);
        else if (a[0] != '-' && strchr(a, '=')) overrides[n_over++] = a;
        else rc = sushi_error(SUSHI_EINVAL, "unknown or incomplete argument \"%s\" (see --help)", a);
    }
    if (!rc && !config) rc = sushi_error(SUSHI_EINVAL, "--config FILE is required (see --help)");
    if (!rc && !have_dump)
        rc = sushi_error(SUSHI_EUNSUPPORTED, "only --dump N OUTDIR is available so far (see --help)");
    if (!rc && (epoch >= (1ull << (64 - DATA_INDEX_BITS)) || cursor >= (1ull << DATA_INDEX_BITS)))
        rc = sushi_error(SUSHI_EINVAL, "--epoch %llu or --cursor %llu out of range", epoch, cursor);
    json_t *root = NULL;
    struct data_config cfg;
    data_config_defaults(&cfg);
    struct data_loader *l = NULL;
    if (!rc) rc = config_load_yaml(config, &root);
    for (int i = 0; i < n_over && !rc; i++) rc = config_set_override(root, overrides[i], config);
    if (!rc) {
        const json_t *data = json_object_get(root, "data");
        rc = data ? data_config_from_json(&cfg, data, config)
                  : sushi_error(SUSHI_EINVAL, "%s: no `data` section", config);
    }
    if (!rc && threads) {
        if (threads > 256) rc = sushi_error(SUSHI_EINVAL, "--threads %llu: at most 256", threads);
        else cfg.threads = (int)threads;
    }
    if (!rc) rc = data_loader_open(&l, &cfg, NULL);
    if (!rc) rc = dump(l, DATA_BATCH_ID(epoch, cursor), n_dump, cfg.threads, outdir);
    if (l) {
        struct data_stats st;
        data_loader_stats(l, &st);
        if (!rc) log_info("%llu batches written to %s; %lld documents, %lld tokens, %lld corrupt "
                          "records skipped", n_dump, outdir, st.documents, st.tokens, st.errors);
    }
    if (rc) log_error("%s", sushi_last_error());
    data_loader_close(l);
    data_config_free(&cfg);
    json_decref(root);
    free(overrides);
    return rc ? 1 : 0;
}
