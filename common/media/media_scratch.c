/* Per-thread scratch buffers for the image path. Buffers of a few hundred KB freed
 * after every image go back to the kernel (glibc maps them), and the page faults of
 * mapping them again cost as much as the decoding; each thread keeps one buffer per
 * slot instead, grown as needed, freed at thread exit. Requests above
 * SCRATCH_MAX_CACHED get a plain allocation, so a rare huge image is not kept. */
#include <pthread.h>
#include <stdlib.h>

#include "common/media/media_internal.h"

#define SCRATCH_MAX_CACHED (32u << 20)

struct scratch {
    void *buf[MEDIA_SCRATCH_SLOTS];
    size_t cap[MEDIA_SCRATCH_SLOTS];
};

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void scratch_destroy(void *p)
{
    struct scratch *s = p;
    for (int i = 0; i < MEDIA_SCRATCH_SLOTS; i++) free(s->buf[i]);
    free(s);
}
static void scratch_key_init(void) { (void)pthread_key_create(&g_key, scratch_destroy); }

void *media_scratch_get(int slot, size_t n)
{
    if (slot < 0 || slot >= MEDIA_SCRATCH_SLOTS || n > SCRATCH_MAX_CACHED) return malloc(n ? n : 1);
    pthread_once(&g_once, scratch_key_init);
    struct scratch *s = pthread_getspecific(g_key);
    if (!s) {
        if (!(s = calloc(1, sizeof *s))) return NULL;
        if (pthread_setspecific(g_key, s)) {
            free(s);
            return NULL;
        }
    }
    if (s->cap[slot] < n) {
        free(s->buf[slot]);
        s->cap[slot] = 0;
        if (!(s->buf[slot] = malloc(n))) return NULL;
        s->cap[slot] = n;
    }
    return s->buf[slot];
}

void media_scratch_put(int slot, void *p)
{
    if (!p) return;
    struct scratch *s = slot >= 0 && slot < MEDIA_SCRATCH_SLOTS ? pthread_getspecific(g_key) : NULL;
    if (!s || p != s->buf[slot]) free(p);
}
