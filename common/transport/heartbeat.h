/* Heartbeats: when to send the next one and which peers have gone quiet.
 *
 * Time is passed in (monotonic milliseconds, heartbeat_now_ms()) so the logic is testable
 * without sleeping. Any message from a peer counts as a sign of life; a peer silent for
 * more than interval_ms * max_missed is declared dead once, and alive again when it is
 * heard from. */
#ifndef SUSHI_HEARTBEAT_H
#define SUSHI_HEARTBEAT_H

#include <stdint.h>

#include "common/wire/wire.h"

#define HEARTBEAT_MAX_PEERS 64
#define HEARTBEAT_NAME_MAX 272

struct heartbeat_peer {
    char name[HEARTBEAT_NAME_MAX];
    int64_t last_ms;    /* when last heard from */
    int alive;
};

struct heartbeat {
    int interval_ms;    /* how often we send one */
    int max_missed;     /* intervals of silence before a peer is dead */
    int64_t next_send_ms;
    int npeers;
    struct heartbeat_peer peers[HEARTBEAT_MAX_PEERS];
};

int64_t heartbeat_now_ms(void);
int heartbeat_init(struct heartbeat *h, int interval_ms, int max_missed, int64_t now_ms);
/* 1 when a heartbeat is due at now_ms (and schedules the next one), else 0. */
int heartbeat_due(struct heartbeat *h, int64_t now_ms);
/* Records a message from `peer`. Returns 1 if the peer is new or was dead, 0 if it was
 * alive, or an error when the peer table is full of live peers. */
int heartbeat_seen(struct heartbeat *h, const char *peer, int64_t now_ms);
/* Marks peers silent past the limit dead; writes up to `max` of the newly dead names
 * (borrowed, valid until the next call) to dead[] and returns how many died. */
int heartbeat_expired(struct heartbeat *h, int64_t now_ms, const char **dead, int max);
/* 1 alive, 0 dead or unknown. */
int heartbeat_is_alive(const struct heartbeat *h, const char *peer);
/* A heartbeat message from `stage` (meta empty; free with wire_msg_free). */
int heartbeat_msg(struct wire_msg *m, const char *stage);

#endif
