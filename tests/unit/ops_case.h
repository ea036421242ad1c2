/* Test-side helpers for the op tests: a seeded random source, guarded buffers (sentinel
 * values on both sides catch out-of-bounds writes) and a case directory that the
 * PyTorch oracle (tests/oracle/ops_ref.py) reads: DIR/manifest.json lists the cases,
 * DIR/<case>.<tensor>.bin holds raw little-endian f32 or i32 arrays. */
#ifndef SUSHI_OPS_CASE_H
#define SUSHI_OPS_CASE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OC_GUARD 16
#define OC_SENTINEL -98765.4321f

/* ---- random ---- */

static uint64_t oc_state;

static uint64_t oc_next(void) {   /* splitmix64 */
    uint64_t z = (oc_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float oc_uniform(void) { return (float)((oc_next() >> 40) * 0x1p-24); }   /* [0, 1) */
static int oc_int(int n) { return (int)(oc_next() % (uint64_t)n); }

static float oc_normal(void) {
    float u = oc_uniform() + 0x1p-25f, v = oc_uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* ---- guarded buffers ---- */

struct oc_buf {
    float *base;   /* OC_GUARD sentinels, n values, OC_GUARD sentinels */
    float *p;
    size_t n;
};

static int oc_nbufs;
static struct oc_buf oc_bufs[1024];   /* copies: callers' structs may be gone */

static float *oc_alloc(struct oc_buf *b, size_t n) {
    b->base = malloc((n + 2 * OC_GUARD) * sizeof(float));
    if (!b->base) return NULL;
    b->n = n;
    b->p = b->base + OC_GUARD;
    for (size_t i = 0; i < OC_GUARD; i++) b->base[i] = b->p[n + i] = OC_SENTINEL;
    memset(b->p, 0, n * sizeof(float));
    if (oc_nbufs < 1024) oc_bufs[oc_nbufs++] = *b;
    return b->p;
}

static float *oc_randn(struct oc_buf *b, size_t n, float scale) {
    float *p = oc_alloc(b, n);
    for (size_t i = 0; p && i < n; i++) p[i] = scale * oc_normal();
    return p;
}

/* number of buffers whose guards were overwritten; frees every buffer */
static int oc_release_all(void) {
    int bad = 0;
    for (int k = 0; k < oc_nbufs; k++) {
        struct oc_buf *b = &oc_bufs[k];
        for (size_t i = 0; i < OC_GUARD; i++)
            if (memcmp(&b->base[i], &(float){OC_SENTINEL}, 4) || memcmp(&b->p[b->n + i], &(float){OC_SENTINEL}, 4)) {
                bad++;
                fprintf(stderr, "guard of buffer %d (%zu values) overwritten\n", k, b->n);
                break;
            }
        free(b->base);
    }
    oc_nbufs = 0;
    return bad;
}

/* ---- case directory ---- */

struct oc_dir {
    char path[256];
    FILE *manifest;
    int ncases;
    int open;   /* inside a case object */
};

static int oc_dir_open(struct oc_dir *d) {
    snprintf(d->path, sizeof d->path, "/tmp/sushi-ops-XXXXXX");
    if (!mkdtemp(d->path)) return -1;
    char p[300];
    snprintf(p, sizeof p, "%s/manifest.json", d->path);
    d->manifest = fopen(p, "w");
    d->ncases = 0;
    d->open = 0;
    if (!d->manifest) return -1;
    fputs("[\n", d->manifest);
    return 0;
}

static void oc_case_end(struct oc_dir *d) {
    if (d->open) fputs("}", d->manifest);
    d->open = 0;
}

/* starts case "c<N>" for `op`; returns its index */
static int oc_case(struct oc_dir *d, const char *op) {
    oc_case_end(d);
    fprintf(d->manifest, "%s{\"case\": \"c%d\", \"op\": \"%s\"", d->ncases ? ",\n" : "", d->ncases, op);
    d->open = 1;
    return d->ncases++;
}

static void oc_int_arg(struct oc_dir *d, const char *key, long v) { fprintf(d->manifest, ", \"%s\": %ld", key, v); }
static void oc_float_arg(struct oc_dir *d, const char *key, double v) {
    fprintf(d->manifest, ", \"%s\": %.9g", key, v);
}

static int oc_write(struct oc_dir *d, const char *name, const void *p, size_t bytes) {
    char path[400];
    snprintf(path, sizeof path, "%s/c%d.%s.bin", d->path, d->ncases - 1, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = bytes ? fwrite(p, 1, bytes, f) : 0;
    return (fclose(f) == 0 && w == bytes) ? 0 : -1;
}

static int oc_f32(struct oc_dir *d, const char *name, const float *p, size_t n) {
    return oc_write(d, name, p, n * sizeof(float));
}
static int oc_i32(struct oc_dir *d, const char *name, const int32_t *p, size_t n) {
    return oc_write(d, name, p, n * sizeof(int32_t));
}

static void oc_dir_close(struct oc_dir *d) {
    oc_case_end(d);
    fputs("\n]\n", d->manifest);
    fclose(d->manifest);
    d->manifest = NULL;
}

static void oc_dir_remove(struct oc_dir *d) {
    char cmd[320];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", d->path);
}

#endif
