// libs: cuda kernels core
/* Attention on the GPU: the CUDA backend's flash-style forward and backward against
 * PyTorch's scaled_dot_product_attention (bench/bench_attention_cuda.py, run in the
 * same command with $SUSHI_PYTHON or python3), causal, bf16, MHA. Prints TFLOP/s
 * (forward 2·2·B·H·T²·D/2 causal flops, backward 2.5× that) and the ratio to PyTorch
 * (torch time / sushi time: 1.0 = parity). Before timing, it prints how far the fast
 * kernels' out/dq/dk/dv are from the plain f32 kernels' (SUSHI_ATTN_SIMPLE) on the
 * same inputs. The backward is timed twice when SUSHI_FA_BWD is unset: the default path
 * and the fused one (SUSHI_FA_BWD=fused, attention_bwd2_cuda.cu), each checked first;
 * with SUSHI_FA_BWD set, only that variant ("fused" column empty).
 *   build/bench/bench_attention_cuda [--reps N] [B,T,H,D ...]
 * default shapes: 16,1024,12,64 and 2,8192,12,64. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/log.h"
#include "kernels/ops.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median over reps of one call, in ms; sync() before and after each call */
#define MEDIAN_MS(result, reps, call)                                  \
    do {                                                               \
        double t_[256];                                                \
        int n_ = (reps) < 256 ? (reps) : 256;                          \
        for (int w_ = 0; w_ < 2; w_++) if ((call) || g->sync()) goto fail; \
        for (int r_ = 0; r_ < n_; r_++) {                              \
            double t0_ = now_s();                                      \
            if ((call) || g->sync()) goto fail;                        \
            t_[r_] = (now_s() - t0_) * 1e3;                            \
        }                                                              \
        qsort(t_, n_, sizeof(double), cmp_double);                     \
        (result) = t_[n_ / 2];                                         \
    } while (0)

static void fill_random(float *x, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
    }
}

/* relative difference of out, dq, dk, dv between the plain (SUSHI_ATTN_SIMPLE) and
 * the tensor-core kernels, printed to stderr */
static int paths_agree(const struct ops *g, const struct attn_shape *s, void *q, void *k, void *v,
                       void *dout, void *o, float *lse, void *dq, void *dk, void *dv, size_t n) {
    float *ref[4], *got[4];
    void *outs[4] = {o, dq, dk, dv};
    const char *names[4] = {"out", "dq", "dk", "dv"};
    int rc = -1;
    for (int i = 0; i < 4; i++) ref[i] = malloc(n * sizeof(float)), got[i] = malloc(n * sizeof(float));
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) setenv("SUSHI_ATTN_SIMPLE", "1", 1);
        else unsetenv("SUSHI_ATTN_SIMPLE");
        if (g->attention_forward(o, lse, q, k, v, s) ||
            g->attention_backward(dq, dk, dv, dout, o, lse, q, k, v, s))
            goto done;
        for (int i = 0; i < 4; i++)
            if (!ref[i] || !got[i] || g->act_to_f32(pass ? got[i] : ref[i], outs[i], n)) goto done;
    }
    const char *fa_bwd = getenv("SUSHI_FA_BWD");
    fprintf(stderr, "B%d T%d H%d D%d tensor-core%s%s vs plain:", s->B, s->T, s->H, s->dqk,
            fa_bwd ? " SUSHI_FA_BWD=" : "", fa_bwd ? fa_bwd : "");
    for (int i = 0; i < 4; i++) {
        double num = 0, den = 0;
        for (size_t e = 0; e < n; e++) {
            double d = (double)got[i][e] - ref[i][e];
            num += d * d;
            den += (double)ref[i][e] * ref[i][e];
        }
        fprintf(stderr, " %s %.2e", names[i], sqrt(num / den));
    }
    fprintf(stderr, "\n");
    rc = 0;
done:
    for (int i = 0; i < 4; i++) free(ref[i]), free(got[i]);
    return rc;
}

/* fused_ms: the backward with SUSHI_FA_BWD=fused, timed only when the variable is unset
 * (NAN otherwise) */
static int bench_shape(const struct ops *g, int B, int T, int H, int D, int reps, double *fwd_ms,
                       double *bwd_ms, double *fused_ms) {
    size_t n = (size_t)B * T * H * D;
    struct attn_shape s = {B, T, H, H, D, D, H * D, H * D, H * D, H * D, 1.0f / sqrtf((float)D), 0, NULL};
    void *q = g->alloc(n * 2), *k = g->alloc(n * 2), *v = g->alloc(n * 2), *o = g->alloc(n * 2);
    void *dout = g->alloc(n * 2), *dq = g->alloc(n * 2), *dk = g->alloc(n * 2), *dv = g->alloc(n * 2);
    float *lse = g->alloc((size_t)B * H * T * 4), *host = malloc(n * sizeof(float));
    int rc = -1, fused_set = 0;
    if (!q || !k || !v || !o || !dout || !dq || !dk || !dv || !lse || !host) goto fail;
    void *ins[] = {q, k, v, dout};
    for (int i = 0; i < 4; i++) {
        fill_random(host, n, 17u + i);
        if (g->f32_to_act(ins[i], host, n)) goto fail;
    }
    /* the tensor-core kernels must agree with the plain ones before they are timed */
    if (paths_agree(g, &s, q, k, v, dout, o, lse, dq, dk, dv, n)) goto fail;
    MEDIAN_MS(*fwd_ms, reps, g->attention_forward(o, lse, q, k, v, &s));
    MEDIAN_MS(*bwd_ms, reps, g->attention_backward(dq, dk, dv, dout, o, lse, q, k, v, &s));
    *fused_ms = NAN;
    if (!getenv("SUSHI_FA_BWD")) { /* the fused variant, checked, then timed */
        setenv("SUSHI_FA_BWD", "fused", 1);
        fused_set = 1;
        if (paths_agree(g, &s, q, k, v, dout, o, lse, dq, dk, dv, n)) goto fail;
        MEDIAN_MS(*fused_ms, reps, g->attention_backward(dq, dk, dv, dout, o, lse, q, k, v, &s));
    }
    rc = 0;
fail:
    if (fused_set) unsetenv("SUSHI_FA_BWD");
    if (rc) fprintf(stderr, "bench_attention_cuda: %s\n", sushi_last_error());
    void *all[] = {q, k, v, o, dout, dq, dk, dv, lse};
    for (int i = 0; i < 9; i++) g->free(all[i]);
    free(host);
    return rc;
}

int main(int argc, char **argv) {
    int reps = 20;
    const char *shapes[16] = {"16,1024,12,64", "2,8192,12,64"};
    int nshapes = 2, custom = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_attention_cuda [--reps N] [B,T,H,D ...]\n"
                   "CUDA flash attention vs torch scaled_dot_product_attention (causal, bf16).\n"
                   "SUSHI_PYTHON selects the Python with PyTorch (default python3).\n"
                   "SUSHI_FA_BWD unset: the backward is timed as is and with SUSHI_FA_BWD=fused.\n");
            return 0;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1 || reps > 256) { fprintf(stderr, "bench_attention_cuda: --reps in [1, 256]\n"); return 2; }
        } else if (nshapes < 16 || !custom) {
            if (!custom) nshapes = 0, custom = 1;
            if (nshapes < 16) shapes[nshapes++] = argv[i];
        }
    }
    const struct ops *g = ops_cuda();
    if (!g) {
        fprintf(stderr, "bench_attention_cuda: %s\n", sushi_last_error());
        return 1;
    }
    char cmd[1024];
    const char *py = getenv("SUSHI_PYTHON") ? getenv("SUSHI_PYTHON") : "python3";
    int len = snprintf(cmd, sizeof cmd, "%s bench/bench_attention_cuda.py %d", py, reps);
    for (int i = 0; i < nshapes && len < (int)sizeof cmd - 40; i++) len += snprintf(cmd + len, sizeof cmd - len, " %s", shapes[i]);
    /* ours first, then PyTorch, so the two never share the GPU */
    double fwd[16], bwd[16], fused[16];
    int dims[16][4];
    for (int i = 0; i < nshapes; i++) {
        int *d = dims[i];
        if (sscanf(shapes[i], "%d,%d,%d,%d", &d[0], &d[1], &d[2], &d[3]) != 4 || d[0] < 1 || d[1] < 1 ||
            d[2] < 1 || d[3] < 1 || d[3] > 256) {
            fprintf(stderr, "bench_attention_cuda: shape '%s' is not B,T,H,D (D ≤ 256)\n", shapes[i]);
            return 2;
        }
        if (bench_shape(g, d[0], d[1], d[2], d[3], reps, &fwd[i], &bwd[i], &fused[i])) return 1;
    }
    printf("%-18s %10s %10s %10s %10s %9s %9s %10s %9s\n", "B,T,H,D", "fwd TF/s", "torch", "bwd TF/s", "torch",
           "fwd ratio", "bwd ratio", "fused bwd", "ratio");
    FILE *p = popen(cmd, "r");
    for (int i = 0; i < nshapes; i++) {
        int *d = dims[i], pb, pt, ph, pd;
        double tf = NAN, tb = NAN;
        if (!p || fscanf(p, "%d %d %d %d %lf %lf", &pb, &pt, &ph, &pd, &tf, &tb) != 6) tf = tb = NAN;
        double flops = 4.0 * d[0] * d[2] * (double)d[1] * d[1] * d[3] / 2.0; /* causal forward */
        printf("%-18s %10.1f %10.1f %10.1f %10.1f %9.2f %9.2f %10.1f %9.2f\n", shapes[i], flops / fwd[i] * 1e-9,
               flops / tf * 1e-9, 2.5 * flops / bwd[i] * 1e-9, 2.5 * flops / tb * 1e-9, tf / fwd[i], tb / bwd[i],
               2.5 * flops / fused[i] * 1e-9, tb / fused[i]);
        printf("    ms: sushi fwd %.3f bwd %.3f fused bwd %.3f | torch fwd %.3f bwd %.3f\n", fwd[i], bwd[i],
               fused[i], tf, tb);
    }
    if (p) pclose(p);
    return 0;
}
