/* The trainer stage's state, shared by its setup (pipeline_setup.c: model, resume,
 * sockets) and its loop (pipeline.c: receive, reorder, train, checkpoint, ack). */
#ifndef SUSHI_TRAINER_PIPELINE_H
#define SUSHI_TRAINER_PIPELINE_H

#include <pthread.h>
#include <stdint.h>

#include "common/transport/heartbeat.h"
#include "common/transport/stage.h"
#include "common/transport/transport.h"
#include "models/optim.h"
#include "models/rng.h"
#include "services/trainer/batch_check.h"
#include "services/trainer/mm_inputs.h"
#include "services/trainer/records.h"
#include "services/trainer/reorder.h"
#include "services/trainer/train_config.h"
#include "services/trainer/trainer_model.h"

#define PIPE_LOGGED 64

/* the heartbeat thread of beat.c */
struct beat {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, quit;
    int busy;                      /* the main thread computes: the sockets are the thread's */
    int64_t last_ms;               /* last heartbeat sent */
};

struct pipe {
    const struct train_config *tc;
    struct stage st;
    struct transport *dealer;      /* to the loader */
    struct transport *router;      /* teacher replicas; NULL in direct mode */
    struct transport *events;      /* PUB: metrics, checkpoints; NULL when not configured */
    struct trainer_model m;
    struct mm_inputs mm;           /* encoder inputs of the batch (model.encoders on) */
    struct optim opt;
    struct reorder ro;
    struct records rec;
    struct batch_expect expect;
    struct student_loss_cfg lc;
    struct rng rng;                /* saved with checkpoints (no randomness is drawn yet) */
    struct heartbeat hb;           /* teacher replicas heard from */
    struct transport_peer peers[HEARTBEAT_MAX_PEERS];
    int npeers;
    uint64_t next;                 /* next batch id to apply */
    int accum;                     /* micro-batches applied in the current step */
    double loss_sum;
    float last_loss;
    int saved_step;                /* step of the last durable checkpoint (-1: none) */
    int saved_iter;                /* its iterations (steps + skipped steps, loss_scale.h) */
    uint64_t saved_next;           /* its next batch id (what the last ack said) */
    uint64_t bad;                  /* protocol violations (well-formed messages) */
    uint64_t dropped;              /* stale, duplicate or out-of-window batches */
    int loader_down;               /* the last send to the loader failed */
    uint64_t freed;                /* direct mode: input slots freed since the last grant */
    double stall_s;                /* cumulative seconds waiting for data after the first batch */
    double startup_s;              /* seconds waiting for the first batch */
    double step_t0, step_time_s;
    double log_t, t_start;
    long long tokens_since_log, tokens_total;
    struct beat beat;
    char logged[PIPE_LOGGED][272];
    int nlogged;
};

/* Runs until train.steps are done (final checkpoint, metrics event "end"), a signal
 * (no checkpoint), or a fatal error. */
int pipeline_loop(struct pipe *p);
/* A heartbeat to the loader (next, window; with credit = 1 also the direct-mode credits
 * freed since the last grant) and to each live teacher replica. pipeline.c */
int pipe_send_heartbeats(struct pipe *p, int credit);

/* beat.c: heartbeats during long computations (see there) */
int beat_start(struct pipe *p);
void beat_stop(struct pipe *p);
void beat_busy(struct pipe *p, int busy);   /* 1 before a computation, 0 after */

#endif
