/* Small helpers of the loader's ROUTER socket (net.c): preparing an ipc:// endpoint and
 * remembering peers by routing id (log once per peer; ask a peer at most so often). */
#ifndef SUSHI_LOADER_NET_H
#define SUSHI_LOADER_NET_H

#include <stddef.h>
#include <stdint.h>

#include "common/transport/transport.h"

#define NET_SEEN_MAX 64

struct net_seen {
    int n;                      /* entries written (the table is a ring of NET_SEEN_MAX) */
    struct {
        uint8_t route[255];
        size_t len;
        int64_t ms;
    } e[NET_SEEN_MAX];
};

/* 0: `from` is new (now recorded); 1: recorded less than every_ms ago (every_ms 0:
 * recorded at all); -1: recorded longer ago (the time is renewed). */
int net_seen_check(struct net_seen *s, const struct transport_peer *from, int64_t now_ms, int every_ms);

/* For ipc://PATH (relative to the working directory): creates PATH's folder and removes
 * a stale socket file left by a process that died; SUSHI_EINVAL when another process
 * listens there or PATH is not a socket. Other endpoints: nothing to do. */
int net_prepare_endpoint(const char *endpoint);

/* For ipc://PATH bound by this process: removes the socket file (at a clean exit). */
void net_release_endpoint(const char *endpoint);

#endif
