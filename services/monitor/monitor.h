/* The monitor's state: what every stage last reported, loss statistics, eval results and
 * message counters, shared by the receive loop (writer), the HTTP thread and the terminal
 * view (readers) under one mutex. Rendering: Prometheus text (prom.c), JSON report
 * (state.c), terminal (view.c), HTTP server (http.c). */
#ifndef SUSHI_MONITOR_H
#define SUSHI_MONITOR_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common/wire/wire.h"

#define MONITOR_EVALS_MAX 1024 /* eval results kept for the report (oldest dropped) */

struct monitor {
    pthread_mutex_t lock;
    /* {stage: {"metrics": {key: value}, "eval": {...}, "checkpoint": {...},
     *          "messages": n, "updated": unix_s, "loss": {min, max, sum, count}}} */
    json_t *stages;
    json_t *evals;                      /* [{stage, id, t, meta}], at most MONITOR_EVALS_MAX */
    uint64_t kinds[WIRE_KIND_COUNT];    /* valid messages received, by kind */
    uint64_t bad;                       /* invalid messages dropped by the transports */
    double t_start;                     /* unix seconds */
};

int monitor_init(struct monitor *m);
void monitor_free(struct monitor *m);   /* NULL is a no-op */

/* Folds one received message into the state. Returns 1 when its meta says
 * `event: end` (the run is over), 0 otherwise, or a negative error. */
int monitor_ingest(struct monitor *m, const struct wire_msg *msg, double now);
void monitor_set_bad(struct monitor *m, uint64_t bad);

/* The JSONL record of one message: {t, kind, stage, id, epoch, cursor, meta, tensors}. */
json_t *monitor_msg_json(const struct wire_msg *msg, double now);
/* Appends it to f as one line and flushes. */
int monitor_jsonl_write(FILE *f, const char *path, const struct wire_msg *msg, double now);

/* The run summary: duration, message counts, per-stage last values and loss
 * min/max/mean/count, eval results. New reference. */
json_t *monitor_report(struct monitor *m, double now);
int monitor_report_write(struct monitor *m, const char *path, double now);

/* Prometheus text exposition (version 0.0.4) of every numeric value, malloc'd into
 * *out (NUL-terminated, length *len). */
int monitor_prometheus(struct monitor *m, double now, char **out, size_t *len);
/* Shortest decimal that reads back as v ("0.1", "1e-05", "NaN", "+Inf"). */
void monitor_fmt_double(char *buf, size_t cap, double v);

/* HTTP server (libmicrohttpd) for /metrics and /report on host:port (port 0: any). */
struct monitor_http;
int monitor_http_start(struct monitor_http **out, struct monitor *m, const char *host, int port);
int monitor_http_port(const struct monitor_http *h);
void monitor_http_stop(struct monitor_http *h); /* NULL is a no-op */

/* Terminal view: redrawn at most 4x/s on a TTY, one plain line per message otherwise. */
struct monitor_view {
    FILE *out;
    int tty;
    double last_draw;
    double t0, step0;           /* first (time, step) seen, for the ETA */
    double step, total;         /* latest progress */
    char progress_stage[WIRE_STAGE_MAX];
};
void monitor_view_init(struct monitor_view *v, FILE *out, int tty);
void monitor_view_update(struct monitor_view *v, struct monitor *m, const struct wire_msg *msg,
                         double now);
void monitor_view_draw(struct monitor_view *v, struct monitor *m, double now);

#endif
