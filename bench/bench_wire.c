// libs: wire core
/* Wire throughput: a realistic scored batch (B=8, T=2048, K=64: tokens, targets,
 * sample_ids, topk_ids i32, topk_logprobs f32, tail_logprob f32; ~8.3 MB) sent as v1
 * messages PUSH -> PULL over ipc:// and tcp://127.0.0.1 (zero-copy send, validating
 * zero-copy receive, HWM 4), against a plain memcpy of the same bytes. Prints GB/s and
 * the ratio transport / memcpy.
 *   bench_wire [--iters N] [--B 8 --T 2048 --K 64] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "common/core/log.h"
#include "common/transport/transport.h"

struct bench_batch {
    struct wire_msg msg;
    void *bufs[6];
    size_t bytes;
};

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_batch_make(struct bench_batch *b, int64_t B, int64_t T, int64_t K)
{
    struct { const char *name; enum dtype dt; int ndim; int64_t shape[3]; } spec[6] = {
        { "tokens", DT_I32, 2, { B, T } },          { "targets", DT_I32, 2, { B, T } },
        { "sample_ids", DT_U64, 1, { B } },         { "topk_ids", DT_I32, 3, { B, T, K } },
        { "topk_logprobs", DT_F32, 3, { B, T, K } }, { "tail_logprob", DT_F32, 2, { B, T } },
    };
    memset(b, 0, sizeof *b);
    wire_msg_init(&b->msg, WIRE_SCORED);
    snprintf(b->msg.stage, sizeof b->msg.stage, "teacher");
    b->msg.meta = json_pack("{s:f}", "temperature", 1.0);
    for (int i = 0; i < 6; i++) {
        size_t n;
        int rc = wire_tensor_nbytes(spec[i].name, spec[i].dt, spec[i].ndim, spec[i].shape, &n);
        if (rc) return rc;
        if (!(b->bufs[i] = malloc(n ? n : 1))) return sushi_error(SUSHI_ENOMEM, "bench: out of memory");
        for (size_t k = 0; k < n; k++) ((uint8_t *)b->bufs[i])[k] = (uint8_t)(k * 131 + (size_t)i);
        if ((rc = wire_msg_add_tensor(&b->msg, spec[i].name, spec[i].dt, spec[i].ndim, spec[i].shape,
                                      b->bufs[i])))
            return rc;
        b->bytes += n;
    }
    return SUSHI_OK;
}

static void bench_batch_free(struct bench_batch *b)
{
    wire_msg_free(&b->msg);
    for (int i = 0; i < 6; i++) free(b->bufs[i]);
}

/* memcpy of every tensor into a destination of the same size, iters times. */
static double bench_memcpy(const struct bench_batch *b, int iters)
{
    void *dst[6];
    for (int i = 0; i < 6; i++) dst[i] = malloc(b->msg.tensors[i].nbytes + 1);
    double t0 = bench_now();
    for (int it = 0; it < iters; it++)
        for (int i = 0; i < 6; i++) memcpy(dst[i], b->msg.tensors[i].data, b->msg.tensors[i].nbytes);
    double dt = bench_now() - t0;
    volatile uint8_t sink = ((uint8_t *)dst[3])[7];
    (void)sink;
    for (int i = 0; i < 6; i++) free(dst[i]);
    return dt;
}

struct bench_sender {
    void *zctx;
    const char *endpoint;
    const struct bench_batch *batch;
    int iters;
    int rc;
};

static void bench_noop_done(void *ctx) { (void)ctx; }

static void *bench_send_thread(void *arg)
{
    struct bench_sender *s = arg;
    struct transport_opts o = transport_opts_default();
    o.sndhwm = 4;
    o.linger_ms = -1;
    struct transport *tx;
    if ((s->rc = transport_open(&tx, s->zctx, TRANSPORT_PUSH, s->endpoint, 0, &o))) return NULL;
    for (int i = 0; i < s->iters && !s->rc; i++)
        s->rc = transport_send(tx, &s->batch->msg, NULL, bench_noop_done, NULL);
    transport_close(tx);
    return NULL;
}

/* Seconds to receive and validate iters messages sent from another thread. */
static double bench_transport(void *zctx, const char *endpoint, const struct bench_batch *b, int iters)
{
    struct transport_opts o = transport_opts_default();
    o.rcvhwm = 4;
    struct transport *rx;
    if (transport_open(&rx, zctx, TRANSPORT_PULL, endpoint, 1, &o)) return -1;
    struct bench_sender s = { zctx, transport_endpoint(rx), b, iters, 0 };
    pthread_t th;
    double t0 = bench_now();
    pthread_create(&th, NULL, bench_send_thread, &s);
    int got = 0;
    while (got < iters) {
        struct wire_msg m;
        int rc = transport_recv(rx, &m, NULL, 10000);
        if (rc <= 0 || m.ntensors != 6) {
            log_error("bench: %s: receive failed after %d messages: %s", endpoint, got,
                      rc < 0 ? sushi_last_error() : "timeout or wrong message");
            if (rc > 0) wire_msg_free(&m);
            break;
        }
        wire_msg_free(&m);
        got++;
    }
    double dt = bench_now() - t0;
    pthread_join(th, NULL);
    transport_close(rx);
    if (s.rc || got < iters) return -1;
    return dt;
}

static void bench_usage(void)
{
    printf("usage: bench_wire [--iters N] [--B B] [--T T] [--K K]\n"
           "Wire throughput of a scored batch over ipc:// and tcp://127.0.0.1 vs memcpy.\n"
           "Defaults: --iters 200 --B 8 --T 2048 --K 64\n");
}

int main(int argc, char **argv)
{
    int iters = 200;
    long B = 8, T = 2048, K = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { bench_usage(); return 0; }
        long *dst = !strcmp(argv[i], "--B") ? &B : !strcmp(argv[i], "--T") ? &T
                  : !strcmp(argv[i], "--K") ? &K : NULL;
        if (i + 1 < argc && !strcmp(argv[i], "--iters")) { iters = atoi(argv[++i]); continue; }
        if (dst && i + 1 < argc) { *dst = atol(argv[++i]); continue; }
        fprintf(stderr, "bench_wire: unknown or incomplete argument %s\n", argv[i]);
        bench_usage();
        return 2;
    }
    if (iters < 1 || B < 1 || T < 1 || K < 1) {
        fprintf(stderr, "bench_wire: --iters, --B, --T, --K must be >= 1\n");
        return 2;
    }
    struct bench_batch b;
    if (bench_batch_make(&b, B, T, K)) {
        fprintf(stderr, "bench_wire: %s\n", sushi_last_error());
        return 1;
    }
    void *zctx = zmq_ctx_new();
    char ipc[128];
    snprintf(ipc, sizeof ipc, "ipc:///tmp/sushi_bench_wire_%d.sock", (int)getpid());
    double gb = (double)b.bytes * iters / 1e9;
    printf("scored batch B=%ld T=%ld K=%ld: %.2f MB per message, %d messages\n", B, T, K,
           (double)b.bytes / 1e6, iters);
    bench_memcpy(&b, iters < 10 ? iters : 10); /* warm the pages */
    double t_mem = bench_memcpy(&b, iters);
    double t_ipc = bench_transport(zctx, ipc, &b, iters);
    double t_tcp = bench_transport(zctx, "tcp://127.0.0.1:*", &b, iters);
    unlink(ipc + 6);
    printf("%-24s %8.2f GB/s\n", "memcpy", gb / t_mem);
    int rc = 0;
    if (t_ipc > 0) printf("%-24s %8.2f GB/s  (%.2fx memcpy)\n", "wire over ipc://", gb / t_ipc, t_mem / t_ipc);
    else { printf("wire over ipc://: failed\n"); rc = 1; }
    if (t_tcp > 0) printf("%-24s %8.2f GB/s  (%.2fx memcpy)\n", "wire over tcp://127.0.0.1", gb / t_tcp, t_mem / t_tcp);
    else { printf("wire over tcp://: failed\n"); rc = 1; }
    zmq_ctx_term(zctx);
    bench_batch_free(&b);
    return rc;
}
