// libs: wire core
/* Transport over real ZeroMQ sockets: PUSH/PULL over ipc:// in a temp dir and
 * ROUTER/DEALER over tcp://127.0.0.1 (ephemeral port), with garbage frames sent to the
 * receiver, which counts and drops them and keeps serving valid messages; zero-copy send
 * completion; credits bounding messages in flight; heartbeat timeouts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "common/core/log.h"
#include "common/transport/credit.h"
#include "common/transport/heartbeat.h"
#include "common/transport/transport.h"

static void *g_ctx;
static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    g_ctx = zmq_ctx_new();
    snprintf(g_dir, sizeof g_dir, "/tmp/sushi_transportXXXXXX");
    return g_ctx && mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    zmq_ctx_term(g_ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A batch-like message: tokens [2,5] i32 whose values start at `base`. */
static int32_t g_tokens[4][10];
static void make_batch(struct wire_msg *m, uint64_t id, int slot)
{
    wire_msg_init(m, WIRE_BATCH);
    m->id = id;
    snprintf(m->stage, sizeof m->stage, "loader");
    for (int i = 0; i < 10; i++) g_tokens[slot][i] = (int32_t)(id * 100 + (uint64_t)i);
    int64_t shape[2] = { 2, 5 };
    assert_int_equal(wire_msg_add_tensor(m, "tokens", DT_I32, 2, shape, g_tokens[slot]), 0);
}

static void check_batch(const struct wire_msg *m, uint64_t id)
{
    assert_int_equal(m->kind, WIRE_BATCH);
    assert_int_equal(m->id, id);
    const struct wire_tensor *t = wire_msg_tensor(m, "tokens");
    assert_non_null(t);
    assert_int_equal(t->nbytes, 40);
    assert_int_equal((uintptr_t)t->data % 4, 0);
    const int32_t *v = t->data;
    for (int i = 0; i < 10; i++) assert_int_equal(v[i], (int32_t)(id * 100 + (uint64_t)i));
}

/* Garbage a hostile or broken peer may send: multipart messages given as frame lists. */
static void send_garbage(void *raw)
{
    static const uint8_t v2[] = { 0x82, 0xa1, 'v', 0x02, 0xa4, 'k', 'i', 'n', 'd', 0xa3, 'a', 'c', 'k' };
    static const uint8_t badkind[] = { 0x82, 0xa1, 'v', 0x01, 0xa4, 'k', 'i', 'n', 'd', 0xa3, 'z', 'z', 'z' };
    static const uint8_t trunc[] = { 0x83, 0xa1, 'v', 0x01, 0xa4, 'k', 'i' };
    static const uint8_t random_bytes[] = { 0xde, 0xad, 0xbe, 0xef, 0x00, 0x11 };
    zmq_send(raw, v2, sizeof v2, 0);
    zmq_send(raw, badkind, sizeof badkind, 0);
    zmq_send(raw, trunc, sizeof trunc, 0);
    zmq_send(raw, random_bytes, sizeof random_bytes, 0);
    zmq_send(raw, "", 0, 0);
    for (int i = 0; i < 40; i++) zmq_send(raw, "x", 1, i < 39 ? ZMQ_SNDMORE : 0); /* 40 frames */
    /* empty header + one more frame */
    zmq_send(raw, v2 + 0, 0, ZMQ_SNDMORE); /* empty header frame, then one more */
    zmq_send(raw, "x", 1, 0);
}
#define GARBAGE_MESSAGES 7

/* Receives until `want` valid messages and `want_bad` bad ones were seen (or 5 s). */
static void recv_expect(struct transport *rx, int want, uint64_t want_bad, uint64_t first_id)
{
    int got = 0, seen[8] = { 0 };
    int64_t until = heartbeat_now_ms() + 5000;
    while ((got < want || transport_bad_count(rx) < want_bad) && heartbeat_now_ms() < until) {
        struct wire_msg m;
        struct transport_peer from;
        int rc = transport_recv(rx, &m, &from, 100);
        assert_true(rc >= 0);
        if (rc == 0) continue;
        assert_true(m.id >= first_id && m.id < first_id + 8);
        check_batch(&m, m.id);
        assert_true(from.name[0] != 0);
        seen[m.id - first_id]++;
        got++;
        wire_msg_free(&m);
    }
    assert_int_equal(got, want);
    for (int i = 0; i < want; i++) assert_int_equal(seen[i], 1);
    assert_int_equal(transport_bad_count(rx), want_bad);
}

static void test_endpoint_policy(void **state)
{
    (void)state;
    assert_int_equal(transport_check_endpoint("ipc:///tmp/x.sock", 0), 0);
    assert_int_equal(transport_check_endpoint("tcp://127.0.0.1:*", 0), 0);
    assert_int_equal(transport_check_endpoint("tcp://localhost:5555", 0), 0);
    assert_int_equal(transport_check_endpoint("tcp://[::1]:5555", 0), 0);
    assert_int_equal(transport_check_endpoint("tcp://0.0.0.0:5555", 0), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "host is not loopback"));
    assert_int_equal(transport_check_endpoint("tcp://*:5555", 0), SUSHI_EINVAL);
    assert_int_equal(transport_check_endpoint("tcp://10.1.2.3:5555", 1), 0);
    assert_int_equal(transport_check_endpoint("tcp://127.0.0.1:70000", 0), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "port must be"));
    assert_int_equal(transport_check_endpoint("tcp://127.0.0.1", 0), SUSHI_EINVAL);
    assert_int_equal(transport_check_endpoint("udp://127.0.0.1:1", 0), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "scheme must be"));
    assert_int_equal(transport_check_endpoint("ipc://", 0), SUSHI_EINVAL);
    assert_int_equal(transport_check_endpoint(NULL, 0), SUSHI_EINVAL);
    struct transport *t;
    assert_int_equal(transport_open(&t, g_ctx, TRANSPORT_PULL, "tcp://0.0.0.0:*", 1, NULL), SUSHI_EINVAL);
    assert_null(t);
}

static void test_push_pull_ipc_garbage(void **state)
{
    (void)state;
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/pull.sock", g_dir);
    struct transport *rx, *tx;
    assert_int_equal(transport_open(&rx, g_ctx, TRANSPORT_PULL, ep, 1, NULL), 0);
    assert_string_equal(transport_endpoint(rx), ep);
    assert_int_equal(transport_open(&tx, g_ctx, TRANSPORT_PUSH, ep, 0, NULL), 0);
    void *raw = zmq_socket(g_ctx, ZMQ_PUSH);
    assert_int_equal(zmq_connect(raw, ep), 0);

    struct wire_msg m;
    make_batch(&m, 10, 0);
    assert_int_equal(transport_send(tx, &m, NULL, NULL, NULL), 0); /* copying send */
    wire_msg_free(&m);
    send_garbage(raw);
    make_batch(&m, 11, 1);
    assert_int_equal(transport_send(tx, &m, NULL, NULL, NULL), 0);
    wire_msg_free(&m);
    recv_expect(rx, 2, GARBAGE_MESSAGES, 10);
    assert_string_equal(transport_last_bad(rx), "header: empty frame"); /* the last one sent */
    /* still serving after the garbage */
    make_batch(&m, 12, 2);
    assert_int_equal(transport_send(tx, &m, NULL, NULL, NULL), 0);
    wire_msg_free(&m);
    struct wire_msg r;
    assert_int_equal(transport_recv(rx, &r, NULL, 2000), 1);
    check_batch(&r, 12);
    wire_msg_free(&r);
    assert_int_equal(transport_recv(rx, &r, NULL, 0), 0); /* nothing left */
    zmq_close(raw);
    transport_close(tx);
    transport_close(rx);
}

static atomic_int g_done;
static void on_done(void *ctx) { atomic_fetch_add((atomic_int *)ctx, 1); }

static void test_router_dealer_tcp_garbage(void **state)
{
    (void)state;
    struct transport *router, *dealer;
    assert_int_equal(transport_open(&router, g_ctx, TRANSPORT_ROUTER, "tcp://127.0.0.1:*", 1, NULL), 0);
    const char *ep = transport_endpoint(router);
    assert_non_null(strstr(ep, "tcp://127.0.0.1:"));
    assert_true(atoi(strrchr(ep, ':') + 1) > 0);
    assert_int_equal(transport_open(&dealer, g_ctx, TRANSPORT_DEALER, ep, 0, NULL), 0);
    void *raw = zmq_socket(g_ctx, ZMQ_DEALER);
    assert_int_equal(zmq_connect(raw, ep), 0);

    send_garbage(raw);
    struct wire_msg m;
    make_batch(&m, 20, 0);
    atomic_store(&g_done, 0);
    assert_int_equal(transport_send(dealer, &m, NULL, on_done, &g_done), 0); /* zero-copy */
    wire_msg_free(&m);
    struct wire_msg r;
    struct transport_peer from;
    int64_t until = heartbeat_now_ms() + 5000;
    int rc = 0;
    while (rc == 0 && heartbeat_now_ms() < until) rc = transport_recv(router, &r, &from, 100);
    assert_int_equal(rc, 1);
    check_batch(&r, 20);
    wire_msg_free(&r);
    assert_non_null(strstr(from.name, "router id "));
    /* garbage came from another peer; it may still be in flight */
    while (transport_bad_count(router) < GARBAGE_MESSAGES && heartbeat_now_ms() < until)
        assert_true(transport_recv(router, &r, NULL, 50) == 0);
    assert_int_equal(transport_bad_count(router), GARBAGE_MESSAGES);
    assert_true(strlen(transport_last_bad(router)) > 0);
    /* the zero-copy frames are released once sent */
    while (atomic_load(&g_done) == 0 && heartbeat_now_ms() < until) usleep(1000);
    assert_int_equal(atomic_load(&g_done), 1);

    /* reply to the peer by its routing id */
    struct wire_msg ack;
    wire_msg_init(&ack, WIRE_ACK);
    ack.id = 21;
    assert_int_equal(transport_send(router, &ack, &from, NULL, NULL), 0);
    assert_int_equal(transport_recv(dealer, &r, NULL, 2000), 1);
    assert_int_equal(r.kind, WIRE_ACK);
    assert_int_equal(r.id, 21);
    wire_msg_free(&r);
    /* an unknown routing id is an error, not a silent drop */
    struct transport_peer nobody = { .route = { 1, 2, 3 }, .route_len = 3 };
    assert_true(transport_send(router, &ack, &nobody, NULL, NULL) < 0);
    zmq_close(raw);
    transport_close(dealer);
    transport_close(router);
}

/* The DEALER side gets garbage too: from a raw ROUTER, between valid replies. */
static void test_dealer_receives_garbage(void **state)
{
    (void)state;
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/dealer.sock", g_dir);
    void *raw = zmq_socket(g_ctx, ZMQ_ROUTER);
    assert_int_equal(zmq_bind(raw, ep), 0);
    struct transport *dealer;
    assert_int_equal(transport_open(&dealer, g_ctx, TRANSPORT_DEALER, ep, 0, NULL), 0);
    struct wire_msg m, r;
    wire_msg_init(&m, WIRE_HELLO);
    assert_int_equal(transport_send(dealer, &m, NULL, NULL, NULL), 0);
    uint8_t id[256], hello[256];
    int idn = zmq_recv(raw, id, sizeof id, 0);
    assert_true(idn > 0);
    assert_true(zmq_recv(raw, hello, sizeof hello, 0) > 0);
    /* garbage, then a valid batch encoded by us and sent through the raw socket */
    static const uint8_t junk[] = { 0x81, 0xa1, 'v', 0xcf, 0, 0, 0, 0, 0, 0, 0, 2 };
    zmq_send(raw, id, (size_t)idn, ZMQ_SNDMORE);
    zmq_send(raw, junk, sizeof junk, 0);
    make_batch(&m, 40, 0);
    struct wire_buf hdr;
    assert_int_equal(wire_encode(&m, &hdr), 0);
    zmq_send(raw, id, (size_t)idn, ZMQ_SNDMORE);
    zmq_send(raw, hdr.data, hdr.size, ZMQ_SNDMORE);
    zmq_send(raw, m.tensors[0].data, m.tensors[0].nbytes, 0);
    wire_buf_free(&hdr);
    wire_msg_free(&m);
    assert_int_equal(transport_recv(dealer, &r, NULL, 2000), 1);
    check_batch(&r, 40);
    wire_msg_free(&r);
    assert_int_equal(transport_bad_count(dealer), 1);
    assert_non_null(strstr(transport_last_bad(dealer), "v: version 2 is not supported"));
    transport_close(dealer);
    zmq_close(raw);
}

/* A frame above ZMQ_MAXMSGSIZE makes zmq drop that connection; the socket keeps serving. */
static void test_oversized_frame_dropped(void **state)
{
    (void)state;
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/max.sock", g_dir);
    struct transport_opts o = transport_opts_default();
    o.caps.max_header_bytes = 1024;
    o.caps.max_tensor_bytes = 4096;
    struct transport *rx, *tx;
    assert_int_equal(transport_open(&rx, g_ctx, TRANSPORT_PULL, ep, 1, &o), 0);
    int64_t maxmsg = 0;
    size_t len = sizeof maxmsg;
    assert_int_equal(zmq_getsockopt(transport_zsock(rx), ZMQ_MAXMSGSIZE, &maxmsg, &len), 0);
    assert_int_equal(maxmsg, 4096);
    void *raw = zmq_socket(g_ctx, ZMQ_PUSH);
    assert_int_equal(zmq_connect(raw, ep), 0);
    char *big = calloc(1, 8192);
    zmq_send(raw, big, 8192, 0);
    free(big);
    assert_int_equal(transport_open(&tx, g_ctx, TRANSPORT_PUSH, ep, 0, &o), 0);
    struct wire_msg m, r;
    make_batch(&m, 30, 0);
    assert_int_equal(transport_send(tx, &m, NULL, NULL, NULL), 0);
    wire_msg_free(&m);
    assert_int_equal(transport_recv(rx, &r, NULL, 3000), 1);
    check_batch(&r, 30);
    wire_msg_free(&r);
    assert_int_equal(transport_recv(rx, &r, NULL, 200), 0); /* the big one never arrives */
    zmq_close(raw);
    transport_close(tx);
    transport_close(rx);
}

static void test_credit_logic(void **state)
{
    (void)state;
    struct credit_sender s;
    struct credit_receiver r;
    assert_int_equal(credit_sender_init(&s, 3), 0);
    assert_int_equal(credit_receiver_init(&r, 3), 0);
    assert_false(credit_can_send(&s));
    assert_int_equal(credit_take(&s), SUSHI_EINVAL);
    assert_int_equal(credit_to_grant(&r), 3);
    assert_int_equal(credit_to_grant(&r), 0); /* nothing freed yet */
    assert_int_equal(credit_grant(&s, 3), 0);
    assert_int_equal(credit_grant(&s, 1), SUSHI_EFORMAT); /* over the window */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(credit_take(&s), 0);
        assert_int_equal(credit_arrived(&r), 0);
    }
    assert_false(credit_can_send(&s));
    assert_int_equal(credit_arrived(&r), SUSHI_EFORMAT); /* a fourth without credit */
    assert_non_null(strstr(sushi_last_error(), "without a credit"));
    assert_int_equal(credit_done(&r, 4), SUSHI_EINVAL);
    assert_int_equal(credit_done(&r, 2), 0);
    assert_int_equal(credit_to_grant(&r), 2);
    struct wire_msg m;
    int64_t n = 0;
    wire_msg_init(&m, WIRE_HEARTBEAT);
    assert_int_equal(credit_get(&m, &n), 0);
    assert_int_equal(credit_put(&m, 2), 0);
    assert_int_equal(credit_get(&m, &n), 1);
    assert_int_equal(n, 2);
    json_object_set_new(m.meta, "credit", json_string("many"));
    assert_int_equal(credit_get(&m, &n), SUSHI_EFORMAT);
    wire_msg_free(&m);
}

/* Sender (DEALER) sends only with credits from the receiver (ROUTER): the receiver never
 * holds more than the window, however eager the sender is. */
static void test_credits_bound_in_flight(void **state)
{
    (void)state;
    enum { WINDOW = 4, TOTAL = 11 };
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/credit.sock", g_dir);
    struct transport *recv_sock, *send_sock;
    assert_int_equal(transport_open(&recv_sock, g_ctx, TRANSPORT_ROUTER, ep, 1, NULL), 0);
    assert_int_equal(transport_open(&send_sock, g_ctx, TRANSPORT_DEALER, ep, 0, NULL), 0);
    struct credit_sender cs;
    struct credit_receiver cr;
    assert_int_equal(credit_sender_init(&cs, WINDOW), 0);
    assert_int_equal(credit_receiver_init(&cr, WINDOW), 0);

    struct wire_msg m, r;
    struct transport_peer peer;
    wire_msg_init(&m, WIRE_HELLO);
    assert_int_equal(transport_send(send_sock, &m, NULL, NULL, NULL), 0);
    assert_int_equal(transport_recv(recv_sock, &r, &peer, 2000), 1);
    assert_int_equal(r.kind, WIRE_HELLO);
    wire_msg_free(&r);

    int sent = 0, received = 0, max_held = 0;
    struct wire_msg grant;
    while (received < TOTAL) {
        int64_t g = credit_to_grant(&cr);
        if (g > 0) { /* receiver -> sender: grant */
            wire_msg_init(&grant, WIRE_HEARTBEAT);
            assert_int_equal(credit_put(&grant, g), 0);
            assert_int_equal(transport_send(recv_sock, &grant, &peer, NULL, NULL), 0);
            wire_msg_free(&grant);
        }
        int64_t n;
        int wait_ms = g > 0 ? 1000 : 0;
        while (transport_recv(send_sock, &r, NULL, wait_ms) == 1) {
            wait_ms = 0;
            assert_int_equal(credit_get(&r, &n), 1);
            assert_int_equal(credit_grant(&cs, n), 0);
            wire_msg_free(&r);
        }
        /* eager sender: sends everything its credits allow */
        while (sent < TOTAL && credit_can_send(&cs)) {
            assert_int_equal(credit_take(&cs), 0);
            make_batch(&m, 100 + (uint64_t)sent, 0);
            assert_int_equal(transport_send(send_sock, &m, NULL, NULL, NULL), 0);
            wire_msg_free(&m);
            sent++;
        }
        /* receiver takes what has arrived, then finishes only part of it */
        int arrived_now = 0;
        while (transport_recv(recv_sock, &r, NULL, arrived_now == 0 ? 1000 : 50) == 1) {
            assert_int_equal(credit_arrived(&cr), 0);
            check_batch(&r, 100 + (uint64_t)received);
            wire_msg_free(&r);
            received++;
            arrived_now++;
        }
        assert_true(arrived_now > 0);
        if (cr.held > max_held) max_held = (int)cr.held;
        assert_true(cr.held <= WINDOW);
        assert_int_equal(sent - received + (int)cr.held, (int)cr.held); /* nothing queued beyond */
        assert_int_equal(credit_done(&cr, cr.held > 1 ? cr.held - 1 : cr.held), 0);
    }
    assert_int_equal(max_held, WINDOW);
    assert_int_equal(sent, TOTAL);
    transport_close(send_sock);
    transport_close(recv_sock);
}

static void test_heartbeat_logic(void **state)
{
    (void)state;
    struct heartbeat h;
    assert_int_equal(heartbeat_init(&h, 100, 3, 1000), 0);
    assert_int_equal(heartbeat_init(&h, 0, 3, 1000), SUSHI_EINVAL);
    assert_int_equal(heartbeat_init(&h, 100, 3, 1000), 0);
    assert_int_equal(heartbeat_due(&h, 1000), 1);
    assert_int_equal(heartbeat_due(&h, 1099), 0);
    assert_int_equal(heartbeat_due(&h, 1100), 1);
    assert_int_equal(heartbeat_seen(&h, "a", 1000), 1);
    assert_int_equal(heartbeat_seen(&h, "b", 1200), 1);
    assert_int_equal(heartbeat_seen(&h, "b", 1250), 0);
    const char *dead[4];
    assert_int_equal(heartbeat_expired(&h, 1300, dead, 4), 0); /* a: exactly 3 intervals */
    assert_int_equal(heartbeat_expired(&h, 1301, dead, 4), 1);
    assert_string_equal(dead[0], "a");
    assert_int_equal(heartbeat_expired(&h, 1302, dead, 4), 0); /* reported once */
    assert_false(heartbeat_is_alive(&h, "a"));
    assert_true(heartbeat_is_alive(&h, "b"));
    assert_int_equal(heartbeat_seen(&h, "a", 1400), 1); /* back */
    assert_int_equal(heartbeat_expired(&h, 1551, dead, 4), 1);
    assert_string_equal(dead[0], "b");
}

/* A DEALER heartbeats every 20 ms for 300 ms, then goes silent; the ROUTER declares it
 * dead after 5 missed intervals. */
static void test_heartbeat_timeout_over_sockets(void **state)
{
    (void)state;
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/hb.sock", g_dir);
    struct transport *router, *dealer;
    assert_int_equal(transport_open(&router, g_ctx, TRANSPORT_ROUTER, ep, 1, NULL), 0);
    assert_int_equal(transport_open(&dealer, g_ctx, TRANSPORT_DEALER, ep, 0, NULL), 0);
    struct heartbeat tx, rx;
    int64_t t0 = heartbeat_now_ms();
    assert_int_equal(heartbeat_init(&tx, 20, 5, t0), 0);
    assert_int_equal(heartbeat_init(&rx, 20, 5, t0), 0);
    int beats = 0, died = 0;
    int64_t stop = t0 + 300, dead_at = 0;
    while (heartbeat_now_ms() < t0 + 3000 && !died) {
        int64_t now = heartbeat_now_ms();
        if (now < stop && heartbeat_due(&tx, now)) {
            struct wire_msg hb;
            assert_int_equal(heartbeat_msg(&hb, "teacher"), 0);
            assert_int_equal(transport_send(dealer, &hb, NULL, NULL, NULL), 0);
            wire_msg_free(&hb);
        }
        struct wire_msg r;
        struct transport_peer from;
        if (transport_recv(router, &r, &from, 5) == 1) {
            assert_int_equal(r.kind, WIRE_HEARTBEAT);
            assert_string_equal(r.stage, "teacher");
            assert_true(heartbeat_seen(&rx, from.name, heartbeat_now_ms()) >= 0);
            beats++;
            wire_msg_free(&r);
        }
        const char *dead[2];
        died = heartbeat_expired(&rx, heartbeat_now_ms(), dead, 2);
        if (died) dead_at = heartbeat_now_ms();
    }
    assert_true(beats >= 5);
    assert_int_equal(died, 1);
    assert_true(dead_at >= stop); /* not while it was beating */
    transport_close(dealer);
    transport_close(router);
}

int main(void)
{
    log_set_level(LOG_QUIET);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_policy),
        cmocka_unit_test(test_push_pull_ipc_garbage),
        cmocka_unit_test(test_router_dealer_tcp_garbage),
        cmocka_unit_test(test_dealer_receives_garbage),
        cmocka_unit_test(test_oversized_frame_dropped),
        cmocka_unit_test(test_credit_logic),
        cmocka_unit_test(test_credits_bound_in_flight),
        cmocka_unit_test(test_heartbeat_logic),
        cmocka_unit_test(test_heartbeat_timeout_over_sockets),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
