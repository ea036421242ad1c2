/* Epoch plans: the seeded weighted mixing of sources, the per-source shuffles, the
 * prefix sums of token counts that locate any row, and the needle-row layout. Every
 * random choice is a hash of (seed, epoch, what, which), so a plan depends on nothing
 * but the config and the indexed corpus. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/data/data_internal.h"

enum { TAG_MIX = 1, TAG_PERM = 2, TAG_NEEDLE = 3 };

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t data_hash(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    return splitmix64(splitmix64(splitmix64(splitmix64(a) ^ b) ^ c) ^ d);
}

double data_unit(uint64_t h) { return (double)(h >> 11) * 0x1.0p-53; }

/* A uniform integer in [0, n) from a hash (multiply-shift). */
static uint64_t below(uint64_t h, uint64_t n) {
    return (uint64_t)(((unsigned __int128)h * n) >> 64);
}

uint64_t data_needle_block(const struct data_config *cfg) {
    if (cfg->needle_share <= 0.0) return 0;
    long long k = llround(1.0 / cfg->needle_share);
    return k < 1 ? 1 : (uint64_t)k;
}

static uint64_t needle_pos(const struct data_config *cfg, uint64_t epoch, uint64_t block,
                           uint64_t k) {
    return below(data_hash(cfg->seed, epoch, block, TAG_NEEDLE), k);
}

int data_row_is_needle(const struct data_config *cfg, uint64_t epoch, uint64_t row) {
    uint64_t k = data_needle_block(cfg);
    return k && row % k == needle_pos(cfg, epoch, row / k, k);
}

uint64_t data_text_rows_before(const struct data_config *cfg, uint64_t epoch, uint64_t row) {
    uint64_t k = data_needle_block(cfg);
    if (!k) return row;
    uint64_t block = row / k;
    uint64_t needles = block + (row % k > needle_pos(cfg, epoch, block, k) ? 1 : 0);
    return row - needles;
}

/* Fisher-Yates shuffle of 0..n-1 seeded by h. */
static void shuffle(uint32_t *perm, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        h = splitmix64(h);
        size_t j = (size_t)below(h, i);
        uint32_t t = perm[i - 1]; perm[i - 1] = perm[j]; perm[j] = t;
    }
}

static void plan_free(struct data_plan *p) {
    if (!p) return;
    free(p->order); free(p->prefix); free(p->doc_counts);
    free(p->media_order); free(p->row_table); free(p);
}

/* The base rows in order: media document i goes before the text row that was being
 * filled when it was drawn (text stream offset at[i]), after the last full text row
 * when none was. */
static int row_table_build(struct data_plan *p, const uint64_t *at, uint64_t T) {
    p->row_table = malloc(p->base_rows * sizeof *p->row_table);
    if (!p->row_table)
        return sushi_error(SUSHI_ENOMEM, "data: epoch %llu: out of memory (%llu rows)",
                           (unsigned long long)p->epoch, (unsigned long long)p->base_rows);
    uint64_t m = 0, out = 0;
    for (uint64_t t = 0; t < p->text_rows; t++) {
        while (m < p->n_media && at[m] / T <= t) p->row_table[out++] = DATA_ROW_MEDIA | m++;
        p->row_table[out++] = t;
    }
    while (m < p->n_media) p->row_table[out++] = DATA_ROW_MEDIA | m++;
    return 0;
}

static int plan_build(struct data_loader *l, uint64_t epoch, struct data_plan **out) {
    const struct data_config *cfg = &l->cfg;
    int ns = cfg->n_sources, rc = 0;
    double cum[DATA_MAX_SOURCES], total = 0.0;
    int last = 0;   /* the last drawable source, for u rounding up to total */
    for (int s = 0; s < ns; s++) {
        total += l->src_count[s] ? cfg->sources[s].weight : 0.0;
        cum[s] = total;
        if (l->src_count[s] && cfg->sources[s].weight > 0) last = s;
    }
    if (!(total > 0.0)) return sushi_error(SUSHI_EINVAL, "data: every source has weight 0");
    struct data_plan *p = calloc(1, sizeof *p);
    uint32_t *perm[DATA_MAX_SOURCES] = {0};
    uint64_t drawn[DATA_MAX_SOURCES] = {0};
    if (!p) return sushi_error(SUSHI_ENOMEM, "data: out of memory");
    p->epoch = epoch;
    uint64_t n_drawn = cfg->epoch_docs ? (uint64_t)cfg->epoch_docs : l->n_records;
    uint64_t *media_at = NULL;   /* [n_media] text tokens of the stream when each was drawn */
    p->order = malloc((n_drawn ? n_drawn : 1) * sizeof *p->order);
    p->prefix = malloc((n_drawn + 1) * sizeof *p->prefix);
    p->doc_counts = calloc((size_t)ns, sizeof *p->doc_counts);
    if (l->n_media) {
        p->media_order = malloc((n_drawn ? n_drawn : 1) * sizeof *p->media_order);
        media_at = malloc((n_drawn ? n_drawn : 1) * sizeof *media_at);
        if (!p->media_order || !media_at) rc = SUSHI_ENOMEM;
    }
    for (int s = 0; s < ns; s++)
        if (l->src_count[s] && !(perm[s] = malloc(l->src_count[s] * sizeof *perm[s]))) rc = SUSHI_ENOMEM;
    if (rc || !p->order || !p->prefix || !p->doc_counts) {
        rc = sushi_error(SUSHI_ENOMEM, "data: epoch %llu: out of memory (%llu documents)",
                         (unsigned long long)epoch, (unsigned long long)n_drawn);
        goto done;
    }
    p->prefix[0] = 0;
    for (uint64_t j = 0; j < n_drawn; j++) {
        double u = data_unit(data_hash(cfg->seed, epoch, j, TAG_MIX)) * total;
        int s = last;   /* the first drawable source whose cumulative weight exceeds u */
        for (int i = 0; i < ns; i++)
            if (l->src_count[i] && cfg->sources[i].weight > 0 && u < cum[i]) { s = i; break; }
        uint64_t n = l->src_count[s], k = drawn[s]++;
        if (k % n == 0)   /* a new pass over this source: a fresh shuffle */
            shuffle(perm[s], n, data_hash(cfg->seed, epoch, (uint64_t)s, TAG_PERM + 16 * (k / n)));
        uint32_t rec = (uint32_t)(l->src_first[s] + perm[s][k % n]);
        p->doc_counts[s]++;
        if (data_record_is_media(l, &l->records[rec])) {   /* a row of its own, not packed */
            media_at[p->n_media] = p->prefix[p->n_docs];
            p->media_order[p->n_media++] = rec;
            continue;
        }
        p->order[p->n_docs] = rec;
        p->prefix[p->n_docs + 1] = p->prefix[p->n_docs] + l->records[rec].n_tokens + 1;
        p->n_docs++;
    }
    uint64_t T = (uint64_t)cfg->seq_len, B = (uint64_t)cfg->batch_size, k = data_needle_block(cfg);
    p->text_rows = p->prefix[p->n_docs] / T;
    p->base_rows = p->text_rows + p->n_media;
    if (p->n_media && (rc = row_table_build(p, media_at, T))) goto done;
    if (k == 1) {
        p->n_rows = p->base_rows;   /* needle_share 1: every row a passkey sample */
    } else {
        uint64_t r = k ? p->base_rows + p->base_rows / (k - 1) : p->base_rows;
        r = r > 2 ? r - 2 : 0;
        if (r < p->base_rows) r = p->base_rows;
        while (data_text_rows_before(cfg, epoch, r) < p->base_rows) r++;
        p->n_rows = r;
    }
    p->n_batches = p->n_rows / B;
    if (p->n_batches == 0)
        rc = sushi_error(SUSHI_EINVAL, "data: epoch %llu: %llu tokens make %llu rows of %d, fewer "
                         "than one batch of %d", (unsigned long long)epoch,
                         (unsigned long long)p->prefix[p->n_docs], (unsigned long long)p->n_rows,
                         cfg->seq_len, cfg->batch_size);
    else if (p->n_batches >= (1ull << DATA_INDEX_BITS))
        rc = sushi_error(SUSHI_EUNSUPPORTED, "data: epoch %llu: more than 2^40 batches",
                         (unsigned long long)epoch);
done:
    free(media_at);
    for (int s = 0; s < ns; s++) free(perm[s]);
    if (rc) { plan_free(p); return rc; }
    *out = p;
    return 0;
}

int data_plan_get(struct data_loader *l, uint64_t epoch, const struct data_plan **out) {
    if (epoch >= (1ull << (64 - DATA_INDEX_BITS)))
        return sushi_error(SUSHI_EINVAL, "data: epoch %llu out of range", (unsigned long long)epoch);
    pthread_mutex_lock(&l->lock);
    struct data_plan *p = l->plans;
    while (p && p->epoch != epoch) p = p->next;
    int rc = 0;
    if (!p && !(rc = plan_build(l, epoch, &p))) {
        p->next = l->plans;
        l->plans = p;
    }
    pthread_mutex_unlock(&l->lock);
    if (!rc) *out = p;
    return rc;
}

void data_plans_free(struct data_loader *l) {
    while (l->plans) {
        struct data_plan *n = l->plans->next;
        plan_free(l->plans);
        l->plans = n;
    }
}

int data_epoch_info(struct data_loader *l, uint64_t epoch, uint64_t *n_batches,
                    long long *doc_counts) {
    if (!l) return sushi_error(SUSHI_EINVAL, "data_epoch_info: NULL loader");
    const struct data_plan *p;
    int rc = data_plan_get(l, epoch, &p);
    if (rc) return rc;
    if (n_batches) *n_batches = p->n_batches;
    if (doc_counts) memcpy(doc_counts, p->doc_counts, (size_t)l->cfg.n_sources * sizeof *doc_counts);
    return 0;
}

int data_next_id(struct data_loader *l, uint64_t id, uint64_t *next) {
    if (!l || !next) return sushi_error(SUSHI_EINVAL, "data_next_id: NULL argument");
    uint64_t n;
    int rc = data_epoch_info(l, DATA_BATCH_EPOCH(id), &n, NULL);
    if (rc) return rc;
    uint64_t index = DATA_BATCH_INDEX(id) + 1;
    *next = index < n ? DATA_BATCH_ID(DATA_BATCH_EPOCH(id), index)
                      : DATA_BATCH_ID(DATA_BATCH_EPOCH(id) + 1, 0);
    return 0;
}
