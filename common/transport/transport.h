/* ZeroMQ sockets that carry v1 wire messages between sushi stages.
 *
 * Every socket sets ZMQ_MAXMSGSIZE (from the wire caps), linger and high-water marks.
 * Endpoints are ipc://, tcp:// or inproc://; tcp is limited to loopback unless
 * opts.allow_remote is set. Sending is zero-copy: the header frame is handed over and
 * each tensor frame points at the caller's bytes (see transport_send for the lifetime).
 * Receiving is zero-copy too: the message keeps the zmq frames alive until
 * wire_msg_free. A message that fails validation is counted, logged once per peer (with
 * the peer and the reason), and dropped; the receiver keeps serving. A single frame
 * larger than ZMQ_MAXMSGSIZE never reaches us: zmq drops that connection (the peer may
 * reconnect) without reading it into memory. */
#ifndef SUSHI_TRANSPORT_H
#define SUSHI_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/wire/wire.h"

/* PUB only sends, SUB only receives and is subscribed to every message. */
enum transport_kind { TRANSPORT_PUSH = 0, TRANSPORT_PULL, TRANSPORT_DEALER, TRANSPORT_ROUTER,
                      TRANSPORT_PUB, TRANSPORT_SUB };

struct transport_opts {
    struct wire_caps caps;  /* validation caps; ZMQ_MAXMSGSIZE = largest allowed frame */
    int linger_ms;          /* ZMQ_LINGER (default 0: unsent messages dropped on close) */
    int sndhwm, rcvhwm;     /* high-water marks in messages (default 64) */
    int send_timeout_ms;    /* ZMQ_SNDTIMEO; -1 blocks (default 10000) */
    int allow_remote;       /* permit non-loopback tcp addresses (default 0) */
    const char *name;       /* socket name in log lines (default: the endpoint) */
};
struct transport_opts transport_opts_default(void);

/* Whether `endpoint` is acceptable: 0, or SUSHI_EINVAL naming the problem. */
int transport_check_endpoint(const char *endpoint, int allow_remote);

struct transport;

/* Opens a socket of `kind` on zmq context `zctx`, bound (bind = 1) or connected to
 * `endpoint`. "tcp://127.0.0.1:*" binds an ephemeral port: see transport_endpoint. */
int transport_open(struct transport **out, void *zctx, enum transport_kind kind,
                   const char *endpoint, int bind, const struct transport_opts *opts);
void transport_close(struct transport *t);          /* NULL is a no-op */
const char *transport_endpoint(const struct transport *t); /* resolved (ZMQ_LAST_ENDPOINT) */
void *transport_zsock(const struct transport *t);   /* for zmq_poll */

/* Who sent a received message, or whom to send to on a ROUTER socket. */
struct transport_peer {
    char name[272];         /* for log lines: "tcp 127.0.0.1 via tcp://..." or "router id 0a1b.." */
    uint8_t route[255];     /* ROUTER routing id */
    size_t route_len;
};

typedef void (*transport_done_fn)(void *ctx);

/* Sends m as a multipart message (ROUTER: to `to`, which must be a peer received
 * earlier). With done != NULL the tensor bytes are sent zero-copy: they must stay
 * unchanged until done(ctx) runs, which happens exactly once (possibly on a zmq thread,
 * possibly before transport_send returns) once every frame is released, also on error.
 * With done == NULL the tensor bytes are copied and may be reused at once. */
int transport_send(struct transport *t, const struct wire_msg *m, const struct transport_peer *to,
                   transport_done_fn done, void *ctx);

/* Waits up to timeout_ms (-1: forever, 0: poll) for a valid message. Returns 1 with *m
 * filled (free with wire_msg_free) and *from set when given, 0 when the time ran out,
 * or a negative error for a socket failure. Invalid messages are dropped on the way. */
int transport_recv(struct transport *t, struct wire_msg *m, struct transport_peer *from,
                   int timeout_ms);

uint64_t transport_bad_count(const struct transport *t);   /* messages dropped as invalid */
const char *transport_last_bad(const struct transport *t); /* reason for the last one, or "" */

#endif
