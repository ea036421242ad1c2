/* The loader's batch producer: worker threads regenerate batches by id (data_batch)
 * into a fixed set of slots. The main thread says which ids it wants next
 * (producer_want) and takes ready batches out (producer_take); a slot whose id is no
 * longer wanted (a rewind, a window that moved) is released, so memory stays bounded by
 * the slot count plus the batches zmq is still sending. An eventfd wakes the main
 * thread's zmq_poll when a batch is ready. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/core/log.h"
#include "services/loader/loader.h"

#define PRODUCER_RETRY_MS 1000   /* a failed regeneration is tried again after this */

enum slot_state { SLOT_FREE = 0, SLOT_REQUESTED, SLOT_BUSY, SLOT_READY, SLOT_FAILED };

struct slot {
    enum slot_state state;
    uint64_t id;
    int discard;                /* BUSY and no longer wanted: freed when done */
    struct data_batch *batch;   /* READY */
    int64_t failed_ms;          /* FAILED: when */
    char error[256];            /* FAILED: why */
};

struct producer {
    struct data_loader *loader;
    int nthreads, nslots, quit, efd;
    pthread_t threads[256];
    int started;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* a slot was requested, or quit */
    struct slot slots[LOADER_MAX_SLOTS];
};

void loader_batch_free(void *batch) {
    if (!batch) return;
    data_batch_free(batch);
    free(batch);
}

/* data_batch into a new heap batch; NULL with the error in msg on failure */
static struct data_batch *producer_make(struct data_loader *l, uint64_t id, char *msg, size_t cap) {
    const struct data_config *cfg = data_loader_config(l);
    struct data_batch *b = calloc(1, sizeof *b);
    int rc = b ? data_batch_alloc(b, cfg->batch_size, cfg->seq_len)
               : sushi_error(SUSHI_ENOMEM, "loader: out of memory for batch %llu", (unsigned long long)id);
    if (!rc) rc = data_batch(l, id, b);
    if (!rc) return b;
    snprintf(msg, cap, "batch %llu: %s", (unsigned long long)id, sushi_last_error());
    loader_batch_free(b);
    return NULL;
}

/* the requested slot with the lowest id (the most urgent), or NULL */
static struct slot *producer_next_request(struct producer *p) {
    struct slot *best = NULL;
    for (int i = 0; i < p->nslots; i++)
        if (p->slots[i].state == SLOT_REQUESTED && (!best || p->slots[i].id < best->id)) best = &p->slots[i];
    return best;
}

static void *producer_main(void *arg) {
    struct producer *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->quit) {
        struct slot *s = producer_next_request(p);
        if (!s) {
            pthread_cond_wait(&p->wake, &p->lock);
            continue;
        }
        s->state = SLOT_BUSY;
        s->discard = 0;
        uint64_t id = s->id;
        pthread_mutex_unlock(&p->lock);
        char msg[256] = "";
        struct data_batch *b = producer_make(p->loader, id, msg, sizeof msg);
        pthread_mutex_lock(&p->lock);
        if (s->discard || p->quit) {
            loader_batch_free(b);
            s->state = SLOT_FREE;
            s->discard = 0;
            continue;
        }
        if (b) {
            s->state = SLOT_READY;
            s->batch = b;
        } else {
            s->state = SLOT_FAILED;
            s->failed_ms = 0; /* stamped by producer_want (the main thread's clock) */
            snprintf(s->error, sizeof s->error, "%s", msg);
        }
        uint64_t one = 1;
        if (write(p->efd, &one, sizeof one) < 0) { /* the counter is full: already readable */ }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int producer_open(struct producer **out, struct data_loader *l, int threads, int slots) {
    if (!out || !l) return sushi_error(SUSHI_EINVAL, "producer_open: NULL argument");
    *out = NULL;
    if (threads < 1 || threads > 256 || slots < 1 || slots > LOADER_MAX_SLOTS)
        return sushi_error(SUSHI_EINVAL, "loader: threads %d must be in [1, 256] and the ready set %d "
                           "in [1, %d]", threads, slots, LOADER_MAX_SLOTS);
    struct producer *p = calloc(1, sizeof *p);
    if (!p) return sushi_error(SUSHI_ENOMEM, "producer_open: out of memory");
    p->loader = l;
    p->nthreads = threads;
    p->nslots = slots;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if ((p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return sushi_error(SUSHI_EIO, "loader: eventfd failed");
    }
    for (; p->started < threads; p->started++)
        if (pthread_create(&p->threads[p->started], NULL, producer_main, p) != 0) {
            producer_close(p);
            return sushi_error(SUSHI_EIO, "loader: cannot start batch thread %d", p->started + 1);
        }
    *out = p;
    return SUSHI_OK;
}

void producer_close(struct producer *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->started; i++) pthread_join(p->threads[i], NULL);
    for (int i = 0; i < p->nslots; i++) loader_batch_free(p->slots[i].batch);
    close(p->efd);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int producer_fd(const struct producer *p) { return p ? p->efd : -1; }

void producer_drain_fd(struct producer *p) {
    uint64_t v;
    if (p && read(p->efd, &v, sizeof v) < 0) { /* nothing pending */ }
}

static void slot_release(struct slot *s) {
    if (s->state == SLOT_BUSY) {
        s->discard = 1;
        return;
    }
    loader_batch_free(s->batch);
    s->batch = NULL;
    s->state = SLOT_FREE;
}

static int id_in(uint64_t id, const uint64_t *ids, int n) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

int producer_want(struct producer *p, const uint64_t *ids, int n, int64_t now_ms) {
    if (!p || (n > 0 && !ids)) return 0;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->nslots; i++) {
        struct slot *s = &p->slots[i];
        if (s->state == SLOT_FREE) continue;
        if (s->state == SLOT_FAILED && s->failed_ms == 0) s->failed_ms = now_ms;
        int wanted = id_in(s->id, ids, n);
        if (s->state == SLOT_BUSY) s->discard = !wanted;
        else if (!wanted || (s->state == SLOT_FAILED && now_ms - s->failed_ms >= PRODUCER_RETRY_MS))
            slot_release(s);
    }
    int have = 0, requested = 0;
    for (int k = 0; k < n; k++) {
        int found = 0;
        for (int i = 0; i < p->nslots && !found; i++)
            found = p->slots[i].state != SLOT_FREE && p->slots[i].id == ids[k];
        for (int i = 0; i < p->nslots && !found; i++)
            if (p->slots[i].state == SLOT_FREE) {
                p->slots[i] = (struct slot){ .state = SLOT_REQUESTED, .id = ids[k] };
                found = requested = 1;
            }
        if (!found) break;
        have++;
    }
    if (requested) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    return have;
}

int producer_take(struct producer *p, uint64_t id, struct data_batch **b) {
    if (!p || !b) return sushi_error(SUSHI_EINVAL, "producer_take: NULL argument");
    *b = NULL;
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->nslots; i++) {
        struct slot *s = &p->slots[i];
        if (s->id != id || s->state == SLOT_FREE || s->state == SLOT_BUSY || s->state == SLOT_REQUESTED)
            continue;
        if (s->state == SLOT_READY) {
            *b = s->batch;
            s->batch = NULL;
            s->state = SLOT_FREE;
            rc = 1;
        } else {
            rc = sushi_error(SUSHI_EIO, "loader: %s", s->error);
        }
        break;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}
