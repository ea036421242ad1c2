/* The threaded stream: N workers produce batches by id into a ring of `prefetch` slots;
 * the consumer takes them strictly in id order. A worker claims sequence number s only
 * while s < consumed + prefetch, so at most `prefetch` batches exist at any time (the
 * one the consumer holds included). Which worker makes which batch does not matter:
 * data_batch() is a pure function of the id. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/data/data_internal.h"

enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_READY };

struct slot {
    struct data_batch b;
    uint64_t seq;
    enum slot_state state;
    int rc;
    char msg[512];
};

struct data_stream {
    struct data_loader *l;
    int n_threads, cap;
    pthread_t *threads;
    struct slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t can_claim, ready;
    uint64_t claim_seq, claim_id, consume_seq;
    int claim_failed, stop, holding;
};

static void *stream_worker(void *arg) {
    struct data_stream *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && (s->claim_failed || s->claim_seq >= s->consume_seq + (uint64_t)s->cap))
            pthread_cond_wait(&s->can_claim, &s->mu);
        if (s->stop) break;
        uint64_t seq = s->claim_seq++, id = s->claim_id;
        struct slot *sl = &s->slots[seq % (uint64_t)s->cap];
        sl->seq = seq;
        sl->state = SLOT_BUSY;
        int rc = data_next_id(s->l, id, &s->claim_id);   /* under mu: ids are claimed in order */
        if (rc) s->claim_failed = 1;
        pthread_mutex_unlock(&s->mu);
        if (!rc) rc = data_batch(s->l, id, &sl->b);
        pthread_mutex_lock(&s->mu);
        sl->rc = rc;
        if (rc) snprintf(sl->msg, sizeof sl->msg, "%s", sushi_last_error());
        sl->state = SLOT_READY;
        pthread_cond_broadcast(&s->ready);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int data_stream_open(struct data_stream **out, struct data_loader *l, uint64_t start_id,
                     int threads, int prefetch) {
    if (!out || !l) return sushi_error(SUSHI_EINVAL, "data_stream_open: NULL argument");
    if (threads < 1 || threads > 256 || prefetch < 1 || prefetch > 4096)
        return sushi_error(SUSHI_EINVAL, "data_stream_open: threads %d (1..256), prefetch %d "
                           "(1..4096)", threads, prefetch);
    uint64_t n;
    int rc = data_epoch_info(l, DATA_BATCH_EPOCH(start_id), &n, NULL);
    if (rc) return rc;
    if (DATA_BATCH_INDEX(start_id) >= n)
        return sushi_error(SUSHI_EINVAL, "data_stream_open: cursor %llu beyond the %llu batches of "
                           "epoch %llu", (unsigned long long)DATA_BATCH_INDEX(start_id),
                           (unsigned long long)n, (unsigned long long)DATA_BATCH_EPOCH(start_id));
    struct data_stream *s = calloc(1, sizeof *s);
    if (!s) return sushi_error(SUSHI_ENOMEM, "data_stream_open: out of memory");
    s->l = l;
    s->cap = prefetch;
    s->claim_id = start_id;
    s->slots = calloc((size_t)prefetch, sizeof *s->slots);
    s->threads = calloc((size_t)threads, sizeof *s->threads);
    if (!s->slots || !s->threads) rc = sushi_error(SUSHI_ENOMEM, "data_stream_open: out of memory");
    for (int i = 0; i < prefetch && !rc; i++)
        rc = data_batch_alloc(&s->slots[i].b, l->cfg.batch_size, l->cfg.seq_len);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->can_claim, NULL);
    pthread_cond_init(&s->ready, NULL);
    for (int i = 0; i < threads && !rc; i++) {
        if (pthread_create(&s->threads[i], NULL, stream_worker, s))
            rc = sushi_error(SUSHI_EIO, "data_stream_open: cannot start worker thread %d", i);
        else s->n_threads++;
    }
    if (rc) { data_stream_close(s); return rc; }
    *out = s;
    return 0;
}

int data_stream_next(struct data_stream *s, const struct data_batch **b) {
    if (!s || !b) return sushi_error(SUSHI_EINVAL, "data_stream_next: NULL argument");
    pthread_mutex_lock(&s->mu);
    if (s->holding) {   /* the previous batch goes back to the ring */
        s->slots[s->consume_seq % (uint64_t)s->cap].state = SLOT_FREE;
        s->consume_seq++;
        s->holding = 0;
        pthread_cond_broadcast(&s->can_claim);
    }
    struct slot *sl = &s->slots[s->consume_seq % (uint64_t)s->cap];
    while (!(sl->state == SLOT_READY && sl->seq == s->consume_seq))
        pthread_cond_wait(&s->ready, &s->mu);
    int rc = sl->rc;
    if (rc) sushi_error(rc, "%s", sl->msg);
    else { s->holding = 1; *b = &sl->b; }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void data_stream_close(struct data_stream *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->can_claim);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_threads; i++) pthread_join(s->threads[i], NULL);
    for (int i = 0; s->slots && i < s->cap; i++) data_batch_free(&s->slots[i].b);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->can_claim);
    pthread_cond_destroy(&s->ready);
    free(s->slots);
    free(s->threads);
    free(s);
}
