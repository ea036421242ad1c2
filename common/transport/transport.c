/* ZeroMQ sockets carrying v1 wire messages: options, endpoint policy, zero-copy
 * multipart send, validating receive with a bad-message counter and log-once-per-peer. */
#include "common/transport/transport.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "common/core/log.h"

#define TRANSPORT_LOGGED_PEERS 64

struct transport {
    void *sock;
    enum transport_kind kind;
    struct transport_opts opts;
    char endpoint[256];
    char name[256];
    uint64_t bad;
    char last_bad[512];
    char logged[TRANSPORT_LOGGED_PEERS][272]; /* peers whose bad message was logged */
    int nlogged;
};

struct transport_opts transport_opts_default(void)
{
    struct transport_opts o = {
        .caps = wire_caps_default(),
        .linger_ms = 0,
        .sndhwm = 64,
        .rcvhwm = 64,
        .send_timeout_ms = 10000,
        .allow_remote = 0,
        .name = NULL,
    };
    return o;
}

static int transport_is_loopback(const char *host, size_t n)
{
    if (n == 9 && memcmp(host, "localhost", 9) == 0) return 1;
    if (n == 5 && memcmp(host, "[::1]", 5) == 0) return 1;
    if (n < 9 || memcmp(host, "127.", 4) != 0) return 0;
    for (size_t i = 4; i < n; i++)
        if (!((host[i] >= '0' && host[i] <= '9') || host[i] == '.')) return 0;
    return 1;
}

int transport_check_endpoint(const char *ep, int allow_remote)
{
    if (!ep || !*ep) return sushi_error(SUSHI_EINVAL, "endpoint: empty");
    if (strlen(ep) >= 256) return sushi_error(SUSHI_EINVAL, "endpoint %.64s...: longer than 255", ep);
    if (strncmp(ep, "ipc://", 6) == 0) {
        size_t n = strlen(ep + 6);
        if (n == 0 || n > 107)
            return sushi_error(SUSHI_EINVAL, "endpoint %s: ipc path must be 1..107 bytes", ep);
        return SUSHI_OK;
    }
    if (strncmp(ep, "inproc://", 9) == 0) {
        if (!ep[9]) return sushi_error(SUSHI_EINVAL, "endpoint %s: empty inproc name", ep);
        return SUSHI_OK;
    }
    if (strncmp(ep, "tcp://", 6) != 0)
        return sushi_error(SUSHI_EINVAL, "endpoint %s: scheme must be ipc://, tcp:// or inproc://", ep);
    const char *host = ep + 6, *colon = strrchr(host, ':');
    if (strchr(host, ';'))
        return sushi_error(SUSHI_EINVAL, "endpoint %s: source addresses (';') are not supported", ep);
    if (!colon || colon == host)
        return sushi_error(SUSHI_EINVAL, "endpoint %s: expected tcp://HOST:PORT", ep);
    const char *port = colon + 1;
    if (strcmp(port, "*") != 0) {
        char *end;
        long p = strtol(port, &end, 10);
        if (!*port || *end || p < 1 || p > 65535)
            return sushi_error(SUSHI_EINVAL, "endpoint %s: port must be 1..65535 or *", ep);
    }
    if (!allow_remote && !transport_is_loopback(host, (size_t)(colon - host)))
        return sushi_error(SUSHI_EINVAL, "endpoint %s: host is not loopback (127.0.0.1, localhost, "
                           "[::1]); set allow_remote to use other interfaces", ep);
    return SUSHI_OK;
}

static int transport_zerr(struct transport *t, const char *what)
{
    return sushi_error(SUSHI_EIO, "%s: %s: %s", t->name, what, zmq_strerror(zmq_errno()));
}

int transport_open(struct transport **out, void *zctx, enum transport_kind kind,
                   const char *endpoint, int bind, const struct transport_opts *opts)
{
    static const int ztype[] = { ZMQ_PUSH, ZMQ_PULL, ZMQ_DEALER, ZMQ_ROUTER, ZMQ_PUB, ZMQ_SUB };
    if (!out || !zctx) return sushi_error(SUSHI_EINVAL, "transport_open: NULL argument");
    *out = NULL;
    if ((int)kind < 0 || kind > TRANSPORT_SUB)
        return sushi_error(SUSHI_EINVAL, "transport_open: invalid socket kind %d", (int)kind);
    struct transport_opts o = opts ? *opts : transport_opts_default();
    int rc = transport_check_endpoint(endpoint, o.allow_remote);
    if (rc) return rc;
    if ((rc = wire_caps_check(&o.caps))) return rc;
    if (o.sndhwm < 0 || o.rcvhwm < 0 || o.linger_ms < -1 || o.send_timeout_ms < -1)
        return sushi_error(SUSHI_EINVAL, "transport_open: %s: negative hwm, linger or timeout", endpoint);

    struct transport *t = calloc(1, sizeof *t);
    if (!t) return sushi_error(SUSHI_ENOMEM, "transport_open: out of memory");
    t->kind = kind;
    t->opts = o;
    t->opts.name = NULL;
    snprintf(t->endpoint, sizeof t->endpoint, "%s", endpoint);
    snprintf(t->name, sizeof t->name, "%.255s", o.name ? o.name : endpoint);
    t->sock = zmq_socket(zctx, ztype[kind]);
    if (!t->sock) {
        rc = transport_zerr(t, "zmq_socket");
        free(t);
        return rc;
    }
    size_t frame_max = o.caps.max_header_bytes > o.caps.max_tensor_bytes ? o.caps.max_header_bytes
                                                                          : o.caps.max_tensor_bytes;
    int64_t maxmsg = frame_max > INT64_MAX ? INT64_MAX : (int64_t)frame_max;
    int one = 1;
    if (zmq_setsockopt(t->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) ||
        zmq_setsockopt(t->sock, ZMQ_LINGER, &o.linger_ms, sizeof(int)) ||
        zmq_setsockopt(t->sock, ZMQ_SNDHWM, &o.sndhwm, sizeof(int)) ||
        zmq_setsockopt(t->sock, ZMQ_RCVHWM, &o.rcvhwm, sizeof(int)) ||
        zmq_setsockopt(t->sock, ZMQ_SNDTIMEO, &o.send_timeout_ms, sizeof(int)) ||
        (kind == TRANSPORT_ROUTER && zmq_setsockopt(t->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one)) ||
        (kind == TRANSPORT_SUB && zmq_setsockopt(t->sock, ZMQ_SUBSCRIBE, "", 0))) {
        rc = transport_zerr(t, "zmq_setsockopt");
        goto fail;
    }
    if ((bind ? zmq_bind(t->sock, endpoint) : zmq_connect(t->sock, endpoint)) != 0) {
        rc = transport_zerr(t, bind ? "bind" : "connect");
        goto fail;
    }
    size_t len = sizeof t->endpoint;
    if (bind && zmq_getsockopt(t->sock, ZMQ_LAST_ENDPOINT, t->endpoint, &len) != 0) {
        rc = transport_zerr(t, "ZMQ_LAST_ENDPOINT");
        goto fail;
    }
    if (!o.name) snprintf(t->name, sizeof t->name, "%.255s", t->endpoint);
    *out = t;
    return SUSHI_OK;
fail:
    zmq_close(t->sock);
    free(t);
    return rc;
}

void transport_close(struct transport *t)
{
    if (!t) return;
    zmq_close(t->sock);
    free(t);
}

const char *transport_endpoint(const struct transport *t) { return t ? t->endpoint : ""; }
void *transport_zsock(const struct transport *t) { return t ? t->sock : NULL; }
uint64_t transport_bad_count(const struct transport *t) { return t ? t->bad : 0; }
const char *transport_last_bad(const struct transport *t) { return t ? t->last_bad : ""; }

/* ---- send ---- */

/* Shared by the tensor frames of one zero-copy send: done runs when the last is freed. */
struct transport_sendref {
    atomic_int refs;
    transport_done_fn done;
    void *ctx;
};

static void transport_sendref_put(struct transport_sendref *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1) {
        r->done(r->ctx);
        free(r);
    }
}
static void transport_frame_free(void *data, void *hint) { (void)data; transport_sendref_put(hint); }
static void transport_header_free(void *data, void *hint) { (void)hint; free(data); }

int transport_send(struct transport *t, const struct wire_msg *m, const struct transport_peer *to,
                   transport_done_fn done, void *ctx)
{
    if (!t || !m) return sushi_error(SUSHI_EINVAL, "transport_send: NULL argument");
    if (t->kind == TRANSPORT_PULL || t->kind == TRANSPORT_SUB)
        return sushi_error(SUSHI_EINVAL, "%s: transport_send on a %s socket", t->name,
                           t->kind == TRANSPORT_SUB ? "SUB" : "PULL");
    if (t->kind == TRANSPORT_ROUTER && (!to || to->route_len == 0 || to->route_len > sizeof to->route))
        return sushi_error(SUSHI_EINVAL, "%s: ROUTER send needs a peer routing id", t->name);
    struct transport_sendref *ref = NULL;
    if (done) {
        if (!(ref = malloc(sizeof *ref))) {
            done(ctx);
            return sushi_error(SUSHI_ENOMEM, "%s: out of memory", t->name);
        }
        atomic_init(&ref->refs, 1); /* ours, dropped at the end */
        ref->done = done;
        ref->ctx = ctx;
    }
    struct wire_buf hdr;
    int rc = wire_encode(m, &hdr);
    int nframes = 1 + m->ntensors;
    zmq_msg_t frames[1 + WIRE_MAX_TENSORS];
    int built = 0, sent = 0;
    if (rc) goto out;
    if (zmq_msg_init_data(&frames[0], hdr.data, hdr.size, transport_header_free, NULL) != 0) {
        wire_buf_free(&hdr);
        rc = transport_zerr(t, "zmq_msg_init_data");
        goto out;
    }
    for (built = 1; built < nframes; built++) {
        const struct wire_tensor *w = &m->tensors[built - 1];
        int zr;
        if (ref) {
            atomic_fetch_add(&ref->refs, 1);
            zr = zmq_msg_init_data(&frames[built], (void *)w->data, w->nbytes, transport_frame_free, ref);
            if (zr != 0) atomic_fetch_sub(&ref->refs, 1);
        } else {
            zr = zmq_msg_init_size(&frames[built], w->nbytes);
            if (zr == 0 && w->nbytes) memcpy(zmq_msg_data(&frames[built]), w->data, w->nbytes);
        }
        if (zr != 0) {
            rc = transport_zerr(t, "zmq_msg_init");
            goto out;
        }
    }
    if (t->kind == TRANSPORT_ROUTER && zmq_send(t->sock, to->route, to->route_len, ZMQ_SNDMORE) < 0) {
        rc = transport_zerr(t, "send routing id");
        goto out;
    }
    for (; sent < nframes; sent++) {
        if (zmq_msg_send(&frames[sent], t->sock, sent + 1 < nframes ? ZMQ_SNDMORE : 0) < 0) {
            rc = zmq_errno() == EAGAIN ? sushi_error(SUSHI_EIO, "%s: send timed out after %d ms",
                                                     t->name, t->opts.send_timeout_ms)
                                       : transport_zerr(t, "zmq_msg_send");
            goto out;
        }
    }
out:
    for (int i = sent; i < built; i++) zmq_msg_close(&frames[i]);
    if (ref) transport_sendref_put(ref);
    return rc;
}

/* ---- receive ---- */

/* Keeps the received frames (and realigned copies) alive for the message's lifetime. */
struct transport_rx {
    int nframes;
    zmq_msg_t frames[2 + WIRE_MAX_TENSORS];
    void *copies[WIRE_MAX_TENSORS];
};

static void transport_rx_release(void *owner)
{
    struct transport_rx *rx = owner;
    if (!rx) return;
    for (int i = 0; i < rx->nframes; i++) zmq_msg_close(&rx->frames[i]);
    for (int i = 0; i < WIRE_MAX_TENSORS; i++) free(rx->copies[i]);
    free(rx);
}

static void transport_peer_name(struct transport *t, zmq_msg_t *first, const uint8_t *route,
                                size_t route_len, struct transport_peer *p)
{
    memset(p, 0, sizeof *p);
    if (t->kind == TRANSPORT_ROUTER) {
        memcpy(p->route, route, route_len);
        p->route_len = route_len;
        int n = snprintf(p->name, sizeof p->name, "router id ");
        for (size_t i = 0; i < route_len && n + 3 < (int)sizeof p->name; i++)
            n += snprintf(p->name + n, sizeof p->name - (size_t)n, "%02x", route[i]);
        return;
    }
    const char *addr = zmq_msg_gets(first, "Peer-Address");
    if (addr) snprintf(p->name, sizeof p->name, "%.46s via %.200s", addr, t->endpoint);
    else snprintf(p->name, sizeof p->name, "peer on %.255s", t->endpoint);
}

/* Counts a dropped message; logs it at warn level once per peer, at debug after that. */
static void transport_bad(struct transport *t, const struct transport_peer *p, const char *why)
{
    t->bad++;
    snprintf(t->last_bad, sizeof t->last_bad, "%s", why);
    for (int i = 0; i < t->nlogged && i < TRANSPORT_LOGGED_PEERS; i++)
        if (strcmp(t->logged[i], p->name) == 0) {
            log_debug("%s: dropped bad message from %s: %s", t->name, p->name, why);
            return;
        }
    snprintf(t->logged[t->nlogged % TRANSPORT_LOGGED_PEERS], sizeof t->logged[0], "%s", p->name);
    t->nlogged++;
    log_warn("%s: dropped bad message from %s (further ones from this peer are only counted): %s",
             t->name, p->name, why);
}

static int64_t transport_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads every part of one multipart message into rx (parts beyond its room are read
 * and discarded but counted in *total). */
static int transport_read_parts(struct transport *t, struct transport_rx *rx, int *total)
{
    int more = 1;
    *total = 0;
    while (more) {
        zmq_msg_t part, *dst = rx->nframes < (int)(sizeof rx->frames / sizeof rx->frames[0])
                                   ? &rx->frames[rx->nframes] : &part;
        zmq_msg_init(dst);
        if (zmq_msg_recv(dst, t->sock, 0) < 0) {
            zmq_msg_close(dst);
            return transport_zerr(t, "zmq_msg_recv");
        }
        more = zmq_msg_more(dst);
        (*total)++;
        if (dst == &part) zmq_msg_close(&part);
        else rx->nframes++;
    }
    return SUSHI_OK;
}

/* One message: 1 valid, 0 dropped, < 0 socket error. */
static int transport_recv_one(struct transport *t, struct wire_msg *m, struct transport_peer *from)
{
    struct transport_rx *rx = calloc(1, sizeof *rx);
    if (!rx) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", t->name);
    int total, rc = transport_read_parts(t, rx, &total);
    if (rc) { transport_rx_release(rx); return rc; }
    int skip = t->kind == TRANSPORT_ROUTER; /* routing id frame */
    struct transport_peer peer;
    transport_peer_name(t, &rx->frames[0], zmq_msg_data(&rx->frames[0]),
                        skip ? zmq_msg_size(&rx->frames[0]) : 0, &peer);
    struct wire_frame wf[1 + WIRE_MAX_TENSORS + 1];
    int nwf = 0;
    for (int i = skip; i < rx->nframes && nwf < (int)(sizeof wf / sizeof wf[0]); i++, nwf++) {
        wf[nwf].data = zmq_msg_data(&rx->frames[i]);
        wf[nwf].size = zmq_msg_size(&rx->frames[i]);
    }
    if (total - skip > nwf) /* parts beyond any valid message were discarded on reading */
        rc = sushi_error(SUSHI_EFORMAT, "message: extra frames: %d frames, at most %d allowed",
                         total - skip, 1 + WIRE_MAX_TENSORS);
    else
        rc = wire_decode(wf, nwf, &t->opts.caps, m);
    if (rc) {
        transport_bad(t, &peer, sushi_last_error());
        transport_rx_release(rx);
        return 0;
    }
    for (int i = 0; i < m->ntensors; i++) { /* zmq frames may sit at any offset */
        struct wire_tensor *w = &m->tensors[i];
        size_t es = dtype_size(w->dtype);
        if (w->nbytes == 0 || (uintptr_t)w->data % es == 0) continue;
        if (!(rx->copies[i] = aligned_alloc(64, (w->nbytes + 63) & ~(size_t)63))) {
            wire_msg_free(m);
            transport_rx_release(rx);
            return sushi_error(SUSHI_ENOMEM, "%s: out of memory", t->name);
        }
        memcpy(rx->copies[i], w->data, w->nbytes);
        w->data = rx->copies[i];
    }
    m->release = transport_rx_release;
    m->owner = rx;
    if (from) *from = peer;
    return 1;
}

int transport_recv(struct transport *t, struct wire_msg *m, struct transport_peer *from,
                   int timeout_ms)
{
    if (!t || !m) return sushi_error(SUSHI_EINVAL, "transport_recv: NULL argument");
    wire_msg_init(m, WIRE_BATCH);
    if (t->kind == TRANSPORT_PUSH || t->kind == TRANSPORT_PUB)
        return sushi_error(SUSHI_EINVAL, "%s: transport_recv on a %s socket", t->name,
                           t->kind == TRANSPORT_PUB ? "PUB" : "PUSH");
    int64_t deadline = timeout_ms < 0 ? -1 : transport_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline < 0 ? -1 : deadline - transport_now_ms();
        if (deadline >= 0 && left < 0) left = 0;
        zmq_pollitem_t it = { t->sock, 0, ZMQ_POLLIN, 0 };
        int n = zmq_poll(&it, 1, (long)left);
        if (n < 0) {
            if (zmq_errno() == EINTR) continue;
            return transport_zerr(t, "zmq_poll");
        }
        if (n == 0) return 0;
        int rc = transport_recv_one(t, m, from);
        if (rc != 0) return rc;
        if (deadline >= 0 && transport_now_ms() >= deadline) return 0;
    }
}
