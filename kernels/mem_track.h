/* Memory accounting shared by the backends: ops->alloc records each block's size, ops->free
 * forgets it, and ops->mem_stats reports the bytes allocated now and at the peak. One
 * tracker per backend; thread-safe. */
#ifndef SUSHI_MEM_TRACK_H
#define SUSHI_MEM_TRACK_H

#include <pthread.h>
#include <stddef.h>

struct mem_track {
    pthread_mutex_t lock;
    void **keys;        /* open addressing; NULL = empty, MEM_TRACK_TOMB = deleted */
    size_t *sizes;
    size_t cap, used;   /* slots, slots not empty (live + deleted) */
    size_t allocated, peak;
};
#define MEM_TRACK_INIT { PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, 0, 0, 0 }

/* Records a block; when the table cannot grow the block is still usable, only uncounted. */
void mem_track_add(struct mem_track *t, void *p, size_t bytes);
/* Forgets a block and returns the size it was recorded with (0 for an unknown pointer,
 * which is ignored). */
size_t mem_track_remove(struct mem_track *t, void *p);
void mem_track_counts(struct mem_track *t, size_t *allocated, size_t *peak);

#endif
