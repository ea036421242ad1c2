/* sushi-loader's pipeline mode, in three parts (common/transport/protocol.h is the
 * contract they implement):
 *   inflight.c  the in-flight table: batch id -> (peer, time sent); the loader never
 *               holds batches, it regenerates any of them from its id
 *   producer.c  worker threads regenerating batches by id into a small, fixed set of
 *               ready slots (never an unbounded queue)
 *   pipeline.c  the ROUTER socket and its peers: hello/heartbeat/credit/window/rewind,
 *               scheduling, re-sending, metrics */
#ifndef SUSHI_LOADER_H
#define SUSHI_LOADER_H

#include <stdint.h>

#include <jansson.h>

#include "common/data/data.h"

#define LOADER_MAX_WINDOW 4096   /* largest trainer window accepted */
#define LOADER_MAX_SLOTS 64      /* largest ready set */

/* ---- in-flight table (inflight.c) ---- */

struct inflight_entry {
    uint64_t id;
    int peer;           /* index in the loader's peer table */
    int64_t sent_ms;    /* monotonic time of the last send */
    int due;            /* 1: re-send at once (its peer died or said hello again) */
};

struct inflight {
    int n, cap;
    struct inflight_entry *e;   /* [cap], the first n used, unordered */
};

int inflight_init(struct inflight *t, int cap);
void inflight_free(struct inflight *t);
struct inflight_entry *inflight_find(struct inflight *t, uint64_t id);
/* Records a send of `id` to `peer` at now_ms (replacing an earlier entry for id). */
int inflight_put(struct inflight *t, uint64_t id, int peer, int64_t now_ms);
void inflight_clear(struct inflight *t);
/* Drops the entries outside [lo, hi) (below: applied; above: out of the window);
 * returns how many. */
int inflight_keep_range(struct inflight *t, uint64_t lo, uint64_t hi);
/* Marks every entry of `peer` due for an immediate re-send; returns how many. */
int inflight_orphan_peer(struct inflight *t, int peer);
/* Whether `id` has to be sent now: never sent (since the last rewind), due, or sent more
 * than resend_after_ms ago. */
int inflight_needs_send(struct inflight *t, uint64_t id, int64_t now_ms, int resend_after_ms);

/* ---- batch producer (producer.c) ---- */

struct producer;

/* `threads` workers calling data_batch(l, id) into at most `slots` ready batches. */
int producer_open(struct producer **out, struct data_loader *l, int threads, int slots);
void producer_close(struct producer *p);   /* joins the workers; NULL is a no-op */
/* A file descriptor that becomes readable when a batch is ready (for zmq_poll);
 * producer_drain_fd clears it. */
int producer_fd(const struct producer *p);
void producer_drain_fd(struct producer *p);
/* The ids wanted next, most urgent first: they are (or become) requested or ready;
 * slots holding other ids are released. Returns how many of the ids have a slot. */
int producer_want(struct producer *p, const uint64_t *ids, int n, int64_t now_ms);
/* 1 and *b (owned by the caller: loader_batch_free) when batch `id` is ready, 0 when not
 * yet, or the error of a failed regeneration (retried a second later). */
int producer_take(struct producer *p, uint64_t id, struct data_batch **b);
/* Frees a batch from producer_take (a transport_done_fn: runs on any thread). */
void loader_batch_free(void *batch);

/* ---- pipeline mode (pipeline.c) ---- */

struct loader_opts {
    const char *file;        /* the config, for messages */
    const char *endpoint;    /* endpoints.loader (ROUTER bind) */
    int allow_remote;        /* endpoints.allow_remote: a tcp:// bind beyond loopback */
    int heartbeat_ms;        /* loader.heartbeat_ms */
    int dead_after_ms;       /* loader.dead_after_ms */
    int resend_after_ms;     /* loader.resend_after_ms */
    int threads;             /* loader.threads: batch regeneration threads */
    int slots;               /* loader.ready: ready set size (default 2 x threads, >= 2) */
    int metrics_ms;          /* loader.metrics_ms: metrics interval (default 1000) */
    int log_ms;              /* loader.log_ms: progress line interval (default 5000) */
};

/* Reads the options from a run config (root) with protocol.h defaults; threads > 0
 * overrides loader.threads. */
int loader_opts_from_config(struct loader_opts *o, const json_t *root, const char *file,
                            int threads);
/* Indexes the data of cfg and serves its batches over the ROUTER socket until SIGTERM
 * or SIGINT (then returns 0). */
int loader_pipeline_run(const struct loader_opts *o, const struct data_config *cfg);

#endif
