/* Memory accounting for the backends: a pointer -> size hash table under a mutex. */
#include "kernels/mem_track.h"

#include <stdint.h>
#include <stdlib.h>

#define MEM_TRACK_TOMB ((void *)(uintptr_t)1)

static size_t mem_track_slot(const void *p, size_t cap) {
    uint64_t h = (uint64_t)(uintptr_t)p;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)h & (cap - 1);
}

/* inserts into the table without growing it (a free or deleted slot must exist) */
static void mem_track_put(struct mem_track *t, void *p, size_t bytes) {
    size_t i = mem_track_slot(p, t->cap);
    while (t->keys[i] && t->keys[i] != MEM_TRACK_TOMB) i = (i + 1) & (t->cap - 1);
    if (!t->keys[i]) t->used++;
    t->keys[i] = p;
    t->sizes[i] = bytes;
}

/* rehashes into a table twice as large, or as large when deleted slots fill it */
static int mem_track_grow(struct mem_track *t) {
    size_t live = 0;
    for (size_t i = 0; i < t->cap; i++) live += t->keys[i] && t->keys[i] != MEM_TRACK_TOMB;
    size_t cap = !t->cap ? 256 : live * 2 >= t->cap ? t->cap * 2 : t->cap;
    void **keys = calloc(cap, sizeof *keys);
    size_t *sizes = calloc(cap, sizeof *sizes);
    if (!keys || !sizes) {
        free(keys);
        free(sizes);
        return -1;
    }
    void **old_keys = t->keys;
    size_t *old_sizes = t->sizes, old_cap = t->cap;
    t->keys = keys;
    t->sizes = sizes;
    t->cap = cap;
    t->used = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old_keys[i] && old_keys[i] != MEM_TRACK_TOMB) mem_track_put(t, old_keys[i], old_sizes[i]);
    free(old_keys);
    free(old_sizes);
    return 0;
}

void mem_track_add(struct mem_track *t, void *p, size_t bytes) {
    if (!t || !p) return;
    pthread_mutex_lock(&t->lock);
    if ((t->used + 1) * 4 >= t->cap * 3 && mem_track_grow(t) != 0) {
        pthread_mutex_unlock(&t->lock);
        return;
    }
    mem_track_put(t, p, bytes);
    t->allocated += bytes;
    if (t->allocated > t->peak) t->peak = t->allocated;
    pthread_mutex_unlock(&t->lock);
}

size_t mem_track_remove(struct mem_track *t, void *p) {
    size_t size = 0;
    if (!t || !p) return 0;
    pthread_mutex_lock(&t->lock);
    if (t->cap) {
        size_t i = mem_track_slot(p, t->cap);
        for (size_t n = 0; n < t->cap && t->keys[i]; n++, i = (i + 1) & (t->cap - 1)) {
            if (t->keys[i] == p) {
                t->keys[i] = MEM_TRACK_TOMB;
                t->allocated -= t->sizes[i];
                size = t->sizes[i];
                break;
            }
        }
    }
    pthread_mutex_unlock(&t->lock);
    return size;
}

void mem_track_counts(struct mem_track *t, size_t *allocated, size_t *peak) {
    pthread_mutex_lock(&t->lock);
    if (allocated) *allocated = t->allocated;
    if (peak) *peak = t->peak;
    pthread_mutex_unlock(&t->lock);
}
