// libs: student kernels cuda core
/* Training-step throughput of the 124M-class student on the GPU (forward, backward,
 * gradient clipping and AdamW; bf16 activations, f32 master weights and moments), sushi
 * against PyTorch (bench/torch_train_gpu.py: bf16 autocast, SDPA, fused AdamW,
 * torch.compile) in one run; prints tokens/s, MFU and the ratio. MFU = tokens/s ·
 * (6·N + 6·L·C·T) / 989e12 (H100 SXM dense bf16), N every parameter once.
 * Also the step time and peak backend memory (the live total of ops->alloc, cuBLAS
 * workspace excluded) with gradient checkpointing off and on, the time per phase
 * (forward / backward / optimizer, synchronised), and with --profile the time per op
 * (each op synchronised; the sum exceeds the step time by the launch gaps it exposes).
 *
 *   build/bench/bench_train_gpu [--steps 10] [--layers 12] [--B 16] [--T 1024]
 *                               [--profile] [--no-torch] [--no-ckpt] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/log.h"
#include "models/optim.h"
#include "models/student/student.h"

#define H100_BF16_FLOPS 989e12

#include "bench/ops_profile.h"

/* ---- one configuration: median step time, phases, peak memory ---- */
struct run_result {
    double step_s, fwd_s, bwd_s, opt_s;  /* medians / means over the timed steps */
    double peak_gib;
    float loss;
    size_t n_params;
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_config(const struct ops *ops, struct student_config c, int B, int T, int steps,
                      int phases, struct run_result *r) {
    struct student_model m;
    struct optim opt;
    struct optim_config oc = {.lr = 3e-4f, .min_lr = 3e-5f, .total_steps = 1000, .weight_decay = 0.1f,
                              .clip_norm = 1.0f};
    mem_live = mem_peak = 0;
    memset(mem_ptr, 0, sizeof mem_ptr);
    int rc = student_create(&m, &c, ops, B, T, 1);
    if (rc) return rc;
    rc = optim_create(&opt, &oc, ops, m.n_params, m.n_decay);
    if (rc) {
        student_free(&m);
        return rc;
    }
    int32_t *ids = malloc((size_t)B * T * 4), *tg = malloc((size_t)B * T * 4);
    double *times = calloc(steps, sizeof(double));
    if (!ids || !tg || !times) rc = sushi_error(SUSHI_ENOMEM, "bench_train_gpu: host buffers");
    for (int i = 0; !rc && i < B * T; i++) {
        ids[i] = (int32_t)((i * 7919u) % (unsigned)c.vocab);
        tg[i] = (int32_t)((i * 104729u + 13) % (unsigned)c.vocab);
    }
    struct student_loss_cfg lc = {0};
    double tf = 0, tb = 0, to = 0;
    for (int s = -2; !rc && s < steps; s++) { /* two warm-up steps */
        if (s == 0) memset(p_time, 0, sizeof p_time);
        double t0 = now_s();
        rc = student_zero_grad(&m);
        if (!rc) rc = student_forward(&m, ids, tg, NULL, NULL, &lc, &r->loss); /* reads the loss: synchronises */
        double t1 = now_s();
        if (!rc) rc = student_backward(&m);
        if (!rc && phases) rc = ops->sync();
        double t2 = now_s();
        if (!rc) rc = optim_step(&opt, m.master, m.wbuf, m.gbuf);
        if (!rc) rc = ops->sync();
        double t3 = now_s();
        if (s >= 0) {
            times[s] = t3 - t0;
            tf += t1 - t0;
            tb += t2 - t1;
            to += t3 - t2;
        }
    }
    if (!rc) {
        qsort(times, steps, sizeof(double), cmp_double);
        r->step_s = times[steps / 2];
        r->fwd_s = tf / steps;
        r->bwd_s = tb / steps;
        r->opt_s = to / steps;
        r->peak_gib = mem_peak / (double)(1u << 30);
        r->n_params = m.n_params;
    }
    free(ids);
    free(tg);
    free(times);
    optim_free(&opt);
    student_free(&m);
    return rc;
}

static double torch_tokens_per_s(int steps, int layers, int B, int T) {
    char cmd[512];
    const char *root = getenv("SUSHI_REPO_ROOT"), *py = getenv("SUSHI_PYTHON");
    snprintf(cmd, sizeof cmd, "%s %s/bench/torch_train_gpu.py --steps %d --layers %d --B %d --T %d",
             py && *py ? py : "python3", root ? root : ".", steps, layers, B, T);
    return bench_run_torch(cmd);
}

int main(int argc, char **argv) {
    int steps = 10, layers = 12, B = 16, T = 1024, profile = 0, torch = 1, ckpt = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--steps") && more) steps = atoi(argv[++i]);
        else if (!strcmp(a, "--layers") && more) layers = atoi(argv[++i]);
        else if (!strcmp(a, "--B") && more) B = atoi(argv[++i]);
        else if (!strcmp(a, "--T") && more) T = atoi(argv[++i]);
        else if (!strcmp(a, "--profile")) profile = 1;
        else if (!strcmp(a, "--no-torch")) torch = 0;
        else if (!strcmp(a, "--no-ckpt")) ckpt = 0;
        else {
            fprintf(stderr, "usage: bench_train_gpu [--steps N] [--layers N] [--B N] [--T N] "
                            "[--profile] [--no-torch] [--no-ckpt]\n");
            return !strcmp(a, "-h") || !strcmp(a, "--help") ? 0 : 2;
        }
    }
    if (steps <= 0 || layers <= 0 || B <= 0 || T <= 1 || T > 8192) {
        fprintf(stderr, "bench_train_gpu: bad sizes (steps %d, layers %d, B %d, T %d)\n", steps, layers, B, T);
        return 2;
    }
    const struct ops *gpu = ops_cuda();
    if (!gpu) {
        printf("bench_train_gpu: no GPU (%s); nothing measured\n", sushi_last_error());
        return 0;
    }
    const struct ops *ops = profile_ops(gpu);
    struct student_config c = {.n_layers = layers, .d_model = 768, .n_heads = 12, .n_kv_heads = 12,
                               .d_ff = 2048, .vocab = 50304, .max_seq = T, .tied = 1,
                               .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    struct run_result off = {0}, on = {0}, ph = {0};
    if (run_config(ops, c, B, T, steps, 0, &off) || run_config(ops, c, B, T, steps, 1, &ph)) {
        fprintf(stderr, "bench_train_gpu: %s\n", sushi_last_error());
        return 1;
    }
    double flops_tok = 6.0 * off.n_params + 6.0 * layers * c.d_model * T;
    double tps = B * T / off.step_s;
    printf("sushi loss %.4f, %zu params, %d layers, C %d, B %d, T %d\n", off.loss, off.n_params,
           layers, c.d_model, B, T);
    printf("sushi step ms %.1f, peak memory GiB %.2f (checkpointing off)\n", off.step_s * 1e3, off.peak_gib);
    printf("sushi tokens/s %.1f  MFU %.1f%%\n", tps, 100 * tps * flops_tok / H100_BF16_FLOPS);
    printf("phases (synchronised) ms: forward+loss %.1f  backward %.1f  clip+adamw %.1f\n",
           ph.fwd_s * 1e3, ph.bwd_s * 1e3, ph.opt_s * 1e3);
    if (ckpt) {
        c.grad_checkpoint = 1;
        if (run_config(ops, c, B, T, steps, 0, &on)) {
            fprintf(stderr, "bench_train_gpu: checkpointing: %s\n", sushi_last_error());
            return 1;
        }
        printf("sushi step ms %.1f, peak memory GiB %.2f (checkpointing on), tokens/s %.1f\n",
               on.step_s * 1e3, on.peak_gib, B * T / on.step_s);
        c.grad_checkpoint = 0;
    }
    if (profile) {
        sync_each = 1;
        if (run_config(ops, c, B, T, steps, 1, &ph)) {
            fprintf(stderr, "bench_train_gpu: profile: %s\n", sushi_last_error());
            return 1;
        }
        sync_each = 0;
        double total = 0;
        for (int i = 0; i < P_COUNT; i++) total += p_time[i];
        printf("per-op time per step, each op synchronised (%.1f ms in ops, step %.1f ms):\n",
               total * 1e3 / steps, ph.step_s * 1e3);
        for (int i = 0; i < P_COUNT; i++)
            printf("  %-20s %8.2f ms  %5.1f%%\n", p_names[i], p_time[i] * 1e3 / steps, 100 * p_time[i] / total);
    }
    if (torch) {
        double t = torch_tokens_per_s(steps, layers, B, T);
        if (t > 0) {
            printf("torch MFU %.1f%%\n", 100 * t * flops_tok / H100_BF16_FLOPS);
            printf("ratio sushi/torch.compile %.2fx\n", tps / t);
        } else {
            printf("torch: not available (python3 with CUDA torch needed; SUSHI_PYTHON picks it)\n");
        }
    }
    return 0;
}
