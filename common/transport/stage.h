/* What every long-running stage shares: its name, a ZeroMQ context, a PUB socket
 * connected to every endpoint in the publish list (the monitor, the supervisor), a
 * background thread that publishes `hello` once and then a `heartbeat` every interval
 * (meta {pid}) on its own socket, and SIGINT/SIGTERM turning into stage_stopping().
 *
 * The publish list is comma-separated endpoints, from the caller or, when NULL, from the
 * environment variable SUSHI_PUBLISH (the supervisor sets it for its children); empty or
 * unset means the stage publishes nowhere (it still runs). Publish endpoints must be ipc://
 * or loopback tcp:// unless SUSHI_ALLOW_REMOTE=1 (containers publishing to a monitor). The stage name comes from
 * the caller or SUSHI_STAGE (e.g. "teacher.2" for the supervisor's second replica). */
#ifndef SUSHI_STAGE_H
#define SUSHI_STAGE_H

#include <stdint.h>

#include <jansson.h>

#include "common/wire/wire.h"

#define STAGE_MAX_PUBLISH 8

struct stage_impl;

struct stage {
    char name[WIRE_STAGE_MAX];
    void *zctx;                 /* shared by the stage's sockets */
    int npublish;
    char publish[STAGE_MAX_PUBLISH][256];
    struct stage_impl *impl;
};

/* name: the default stage name when SUSHI_STAGE is unset; publish: NULL = SUSHI_PUBLISH.
 * heartbeat_ms <= 0: 1000. Installs SIGINT/SIGTERM handlers (SIGPIPE ignored). */
int stage_open(struct stage *s, const char *name, const char *publish, int heartbeat_ms);
/* Stops the heartbeat thread, closes the sockets and the context. */
void stage_close(struct stage *s);
/* Publishes a message of `kind` with `meta` (stolen; may be NULL) and `id` in the header.
 * Never blocks: with no subscriber the message is dropped. */
int stage_publish(struct stage *s, enum wire_kind kind, uint64_t id, json_t *meta);
/* 1 once SIGINT or SIGTERM arrived. */
int stage_stopping(void);
/* Asks the stage to stop (as a signal would). */
void stage_request_stop(void);

#endif
