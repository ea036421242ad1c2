// libs: kernels cuda core
/* Op-level timings of the CPU backend on the dev-tier shapes (B 4, T 512, C 512, H 8,
 * G 4, D 64, FFN 1408, vocab 32000), each against the same op in PyTorch CPU
 * (bench/bench_ops_cpu.py, same thread count) in one run; prints ms and the ratio
 * torch/sushi per op. Backward rows time forward + backward, as autograd does.
 *
 *   build/bench/bench_ops_cpu [--threads 2] [--no-torch] [--only SUBSTRING] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/log.h"
#include "kernels/ops.h"

enum { B = 4, T = 512, C = 512, H = 8, G = 4, D = 64, FF = 1408, V = 32000, K = 32, N = B * T };
#define ADAMW_N (16u * 1024u * 1024u)

static const struct ops *o;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *randn(size_t n, float scale) {
    float *p = o->alloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_ops_cpu: %s\n", sushi_last_error());
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        float u = (rand() + 1.0f) / ((float)RAND_MAX + 2.0f), w = rand() / (float)RAND_MAX;
        p[i] = scale * sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * w);
    }
    return p;
}

struct bench_state {
    float *x, *wqkv, *wfc, *wte, *dfc, *dw, *out, *big;
    float *qkv, *dqkv, *att, *datt, *lse;
    float *xn, *wn, *rstd, *dn, *dx, *dwn;
    float *h, *dsw, *sw, *dh;
    float *logits, *dlogits, *tlp, *tail, *master, *pm, *pv, *grad;
    int32_t *y, *ids, *pos;
    float *cosb, *sinb;
    struct attn_shape as;
    struct rope_shape rq;
    struct loss_args ce, kd;
};

#define CHECK(call)                                                                     \
    do {                                                                                \
        if ((call) != 0) {                                                              \
            fprintf(stderr, "bench_ops_cpu: %s: %s\n", #call, sushi_last_error());      \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static struct bench_state S;

static void b_matmul_qkv(void) { CHECK(o->matmul(S.out, S.x, S.wqkv, N, (H + 2 * G) * D, C, 0, 1, 1, 0, 0, 0, 0)); }
static void b_matmul_fc(void) { CHECK(o->matmul(S.out, S.x, S.wfc, N, 2 * FF, C, 0, 1, 1, 0, 0, 0, 0)); }
static void b_matmul_lm(void) { CHECK(o->matmul(S.big, S.x, S.wte, N, V, C, 0, 1, 1, 0, 0, 0, 0)); }
static void b_matmul_dw(void) { CHECK(o->matmul(S.dw, S.dfc, S.x, 2 * FF, C, N, 1, 0, 1, 0, 0, 0, 0)); }
static void b_attn_f(void) {
    CHECK(o->attention_forward(S.att, S.lse, S.qkv, S.qkv + H * D, S.qkv + (H + G) * D, &S.as));
}
static void b_attn_fb(void) {
    b_attn_f();
    CHECK(o->attention_backward(S.dqkv, S.dqkv + H * D, S.dqkv + (H + G) * D, S.datt, S.att, S.lse, S.qkv,
                                S.qkv + H * D, S.qkv + (H + G) * D, &S.as));
}
static void b_rope(void) { CHECK(o->rope_forward(S.qkv, &S.rq)); }
static void b_rms_f(void) { CHECK(o->rmsnorm_forward(S.dx, S.rstd, S.xn, S.wn, N, C, 1e-5f)); }
static void b_rms_fb(void) {
    b_rms_f();
    CHECK(o->rmsnorm_backward(S.dx, S.dwn, S.dn, S.xn, S.wn, S.rstd, N, C));
}
static void b_swiglu_f(void) { CHECK(o->swiglu_forward(S.sw, S.h, N, FF)); }
static void b_swiglu_fb(void) {
    b_swiglu_f();
    CHECK(o->swiglu_backward(S.dh, S.dsw, S.h, N, FF));
}
static void b_loss_ce(void) { CHECK(o->loss_forward_backward(NULL, NULL, NULL, S.dlogits, S.logits, S.y, &S.ce)); }
static void b_loss_kd(void) { CHECK(o->loss_forward_backward(NULL, NULL, NULL, S.dlogits, S.logits, S.y, &S.kd)); }
static void b_adamw(void) {
    static int step;
    struct adamw_args a = {ADAMW_N, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, ++step, 1.0f, 0, 0};
    CHECK(o->adamw(S.master, NULL, S.grad, S.pm, S.pv, &a));
}

static const struct {
    const char *name;
    void (*fn)(void);
} benches[] = {
    {"matmul_qkv", b_matmul_qkv},       {"matmul_fc", b_matmul_fc},
    {"matmul_lmhead", b_matmul_lm},     {"matmul_dW_fc", b_matmul_dw},
    {"attention_forward", b_attn_f},    {"attention_fwd+bwd", b_attn_fb},
    {"rope_forward", b_rope},           {"rmsnorm_forward", b_rms_f},
    {"rmsnorm_fwd+bwd", b_rms_fb},      {"swiglu_forward", b_swiglu_f},
    {"swiglu_fwd+bwd", b_swiglu_fb},    {"loss_ce_fwd+bwd", b_loss_ce},
    {"loss_kd_fwd+bwd", b_loss_kd},     {"adamw_16M", b_adamw},
};
#define NB (int)(sizeof benches / sizeof *benches)

static void setup(void) {
    const int QKV = (H + 2 * G) * D;
    S.x = randn((size_t)N * C, 1), S.wqkv = randn((size_t)QKV * C, 0.02f), S.wfc = randn((size_t)2 * FF * C, 0.02f);
    S.wte = randn((size_t)V * C, 0.02f), S.dfc = randn((size_t)N * 2 * FF, 1), S.dw = randn((size_t)2 * FF * C, 0);
    S.out = randn((size_t)N * 2 * FF, 0), S.big = randn((size_t)N * V, 0);
    S.qkv = randn((size_t)N * QKV, 1), S.dqkv = randn((size_t)N * QKV, 0), S.att = randn((size_t)N * H * D, 0);
    S.datt = randn((size_t)N * H * D, 1), S.lse = randn((size_t)B * H * T, 0);
    S.xn = randn((size_t)N * C, 1), S.wn = randn(C, 1), S.rstd = randn(N, 0), S.dn = randn((size_t)N * C, 1);
    S.dx = randn((size_t)N * C, 0), S.dwn = randn(C, 0);
    S.h = randn((size_t)N * 2 * FF, 1), S.dsw = randn((size_t)N * FF, 1), S.sw = randn((size_t)N * FF, 0);
    S.dh = randn((size_t)N * 2 * FF, 0);
    S.logits = randn((size_t)N * V, 2), S.dlogits = S.big;
    S.tlp = randn((size_t)N * K, 0), S.tail = randn(N, 0);
    S.master = randn(ADAMW_N, 1), S.pm = randn(ADAMW_N, 0), S.pv = randn(ADAMW_N, 0), S.grad = randn(ADAMW_N, 1);
    S.y = o->alloc(sizeof(int32_t) * N), S.ids = o->alloc(sizeof(int32_t) * N * K), S.pos = o->alloc(sizeof(int32_t) * N);
    S.cosb = randn((size_t)T * D / 2, 0), S.sinb = randn((size_t)T * D / 2, 0);
    if (!S.y || !S.ids || !S.pos) exit(1);
    for (int n = 0; n < N; n++) {
        S.y[n] = rand() % V;
        S.pos[n] = n % T;
        S.tail[n] = -0.1f;
        for (int k = 0; k < K; k++) {
            S.ids[n * K + k] = (n * 7919 + k * 997) % V;   /* distinct for k < K */
            S.tlp[n * K + k] = -logf((float)K) - 0.1f;
        }
    }
    for (int p = 0; p < T; p++)
        for (int i = 0; i < D / 2; i++) {
            S.cosb[p * D / 2 + i] = cosf(p * powf(10000.0f, -2.0f * i / D));
            S.sinb[p * D / 2 + i] = sinf(p * powf(10000.0f, -2.0f * i / D));
        }
    S.as = (struct attn_shape){B, T, H, G, D, D, QKV, QKV, QKV, H * D, 1.0f / sqrtf(D), 0, NULL};
    S.rq = (struct rope_shape){N, H, QKV, D, 0, D, 0, T, S.pos, S.cosb, S.sinb};
    S.ce = (struct loss_args){N, V, V, 0.1f, 0.0f, KD_FORWARD, 1.0f, 0.5f, 0, NULL, NULL, NULL, 1.0f};
    S.kd = (struct loss_args){N, V, V, 0.1f, 0.5f, KD_FORWARD, 2.0f, 0.5f, K, S.ids, S.tlp, S.tail, 1.0f};
}

static double time_ms(void (*fn)(void)) {
    fn();
    int reps = 0;
    double t0 = now_s();
    while (reps < 3 || now_s() - t0 < 0.5) {
        fn();
        reps++;
    }
    return (now_s() - t0) / reps * 1e3;
}

int main(int argc, char **argv) {
    int threads = 2, torch = 1;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) torch = 0;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            printf("usage: bench_ops_cpu [--threads N] [--no-torch] [--only SUBSTRING]\n"
                   "CPU op timings on the dev-tier shapes against PyTorch CPU (bench/bench_ops_cpu.py).\n");
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    if (threads < 1) {
        fprintf(stderr, "bench_ops_cpu: --threads must be >= 1\n");
        return 2;
    }
    o = ops_cpu();
    ops_cpu_set_threads(threads);
    setup();
    double ms[NB], tms[NB];
    for (int i = 0; i < NB; i++) {
        ms[i] = only && !strstr(benches[i].name, only) ? NAN : time_ms(benches[i].fn);
        tms[i] = NAN;
    }
    if (torch) {
        char cmd[256], line[256];
        const char *root = getenv("SUSHI_REPO_ROOT");
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/bench_ops_cpu.py %d", root && *root ? root : ".", threads);
        FILE *p = popen(cmd, "r");
        while (p && fgets(line, sizeof line, p)) {
            char name[64];
            double v;
            if (sscanf(line, "%63s %lf", name, &v) == 2)
                for (int i = 0; i < NB; i++)
                    if (!strcmp(name, benches[i].name)) tms[i] = v;
        }
        if (!p || pclose(p) != 0) fprintf(stderr, "bench_ops_cpu: the PyTorch side failed (%s)\n", cmd);
    }
    printf("dev-tier shapes, %d threads (B %d, T %d, C %d, H %d, G %d, D %d, FFN %d, vocab %d, K %d)\n",
           threads, B, T, C, H, G, D, FF, V, K);
    printf("%-20s %10s %10s %8s\n", "op", "sushi ms", "torch ms", "ratio");
    for (int i = 0; i < NB; i++)
        if (!only || strstr(benches[i].name, only))
            printf("%-20s %10.2f %10.2f %7.2fx\n", benches[i].name, ms[i], tms[i], tms[i] / ms[i]);
    return 0;
}
