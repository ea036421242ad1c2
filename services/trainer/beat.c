/* Heartbeats while the trainer computes. A step of a large model (or a checkpoint) can
 * take longer than the peers' dead_after_ms, and the loader would forget a trainer that
 * is only busy. So around each long computation the main thread hands its sockets to
 * this thread (beat_busy 1), which sends the usual heartbeats every heartbeat_ms, and
 * takes them back (beat_busy 0) before it touches them again. The mutex serialises
 * every use of the sockets between the two threads (ZeroMQ sockets may move between
 * threads across a full memory barrier). */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "common/core/log.h"
#include "services/trainer/pipeline.h"

static void *beat_main(void *arg) {
    struct pipe *p = arg;
    struct beat *b = &p->beat;
    pthread_mutex_lock(&b->mu);
    while (!b->quit) {
        int64_t now = heartbeat_now_ms();
        if (b->busy && now - b->last_ms >= p->tc->heartbeat_ms) {
            pipe_send_heartbeats(p, 0);
            b->last_ms = now;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int beat_start(struct pipe *p) {
    struct beat *b = &p->beat;
    memset(b, 0, sizeof *b);
    if (pthread_mutex_init(&b->mu, NULL)) return sushi_error(SUSHI_EIO, "trainer: heartbeat mutex");
    if (pthread_cond_init(&b->cv, NULL)) {
        pthread_mutex_destroy(&b->mu);
        return sushi_error(SUSHI_EIO, "trainer: heartbeat condition");
    }
    int e = pthread_create(&b->thread, NULL, beat_main, p);
    if (e) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        return sushi_error(SUSHI_EIO, "trainer: heartbeat thread: %s", strerror(e));
    }
    b->started = 1;
    return 0;
}

void beat_stop(struct pipe *p) {
    struct beat *b = &p->beat;
    if (!b->started) return;
    pthread_mutex_lock(&b->mu);
    b->quit = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    b->started = 0;
}

void beat_busy(struct pipe *p, int busy) {
    struct beat *b = &p->beat;
    if (!b->started) return;
    pthread_mutex_lock(&b->mu);
    b->busy = busy;
    if (busy) b->last_ms = heartbeat_now_ms();   /* the main thread has just been on the network */
    pthread_mutex_unlock(&b->mu);
}
