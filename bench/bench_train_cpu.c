// libs: student kernels cuda core
/* Training-step throughput of the dev-tier student on the CPU (forward, backward,
 * clipping and AdamW), sushi against PyTorch CPU (bench/torch_train_cpu.py, same model,
 * same thread count) in one run; prints both tokens/s and the ratio. --profile adds a
 * per-op time breakdown (the op table wrapped with timers).
 *
 *   build/bench/bench_train_cpu [--threads 2] [--steps 3] [--profile] [--no-torch]
 *                               [--layers 12] [--B 4] [--T 512] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/log.h"
#include "models/optim.h"
#include "models/student/student.h"

#include "bench/ops_profile.h"

static double torch_tokens_per_s(int threads, int steps, int layers, int B, int T) {
    char cmd[512];
    const char *root = getenv("SUSHI_REPO_ROOT");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/torch_train_cpu.py --threads %d --steps %d "
             "--layers %d --B %d --T %d", root ? root : ".", threads, steps, layers, B, T);
    return bench_run_torch(cmd);
}

int main(int argc, char **argv) {
    int threads = 2, steps = 3, profile = 0, torch = 1, layers = 12, B = 4, T = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--threads") && more) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--steps") && more) steps = atoi(argv[++i]);
        else if (!strcmp(a, "--layers") && more) layers = atoi(argv[++i]);
        else if (!strcmp(a, "--B") && more) B = atoi(argv[++i]);
        else if (!strcmp(a, "--T") && more) T = atoi(argv[++i]);
        else if (!strcmp(a, "--profile")) profile = 1;
        else if (!strcmp(a, "--no-torch")) torch = 0;
        else {
            fprintf(stderr, "usage: bench_train_cpu [--threads N] [--steps N] [--layers N] [--B N] "
                            "[--T N] [--profile] [--no-torch]\n");
            return !strcmp(a, "-h") || !strcmp(a, "--help") ? 0 : 2;
        }
    }
    if (threads <= 0 || steps <= 0 || layers <= 0 || B <= 0 || T <= 1 || T > 512) {
        fprintf(stderr, "bench_train_cpu: bad sizes\n");
        return 2;
    }
    ops_cpu_set_threads(threads);
    sync_each = profile;
    const struct ops *ops = profile ? profile_ops(ops_cpu()) : ops_cpu();
    struct student_config c = {.n_layers = layers, .d_model = 512, .n_heads = 8, .n_kv_heads = 4,
                               .d_ff = 1408, .vocab = 32000, .max_seq = 512, .tied = 1,
                               .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    struct student_model m;
    struct optim opt;
    struct optim_config oc = {.lr = 3e-4f, .min_lr = 3e-5f, .total_steps = 100, .weight_decay = 0.1f,
                              .clip_norm = 1.0f};
    if (student_create(&m, &c, ops, B, T, 1) || optim_create(&opt, &oc, ops, m.n_params, m.n_decay)) {
        fprintf(stderr, "bench_train_cpu: %s\n", sushi_last_error());
        return 1;
    }
    int32_t *ids = malloc((size_t)B * T * 4), *tg = malloc((size_t)B * T * 4);
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)((i * 7919u) % 32000);
        tg[i] = (int32_t)((i * 104729u + 13) % 32000);
    }
    struct student_loss_cfg lc = {0};
    double *times = calloc(steps, sizeof(double));
    float loss = 0;
    for (int s = 0; s <= steps; s++) { /* step 0 warms up */
        if (s == 1) {
            memset(p_time, 0, sizeof p_time);
            n_mm = 0;
        }
        double t0 = now_s();
        if (student_zero_grad(&m) || student_forward(&m, ids, tg, NULL, NULL, &lc, &loss) ||
            student_backward(&m) || optim_step(&opt, m.master, m.wbuf, m.gbuf)) {
            fprintf(stderr, "bench_train_cpu: %s\n", sushi_last_error());
            return 1;
        }
        if (s) times[s - 1] = now_s() - t0;
    }
    for (int i = 0; i < steps; i++)       /* median */
        for (int j = i + 1; j < steps; j++)
            if (times[j] < times[i]) { double t = times[i]; times[i] = times[j]; times[j] = t; }
    double sushi_tps = B * T / times[steps / 2];
    printf("sushi loss %.4f\nsushi tokens/s %.1f (dev tier: %d layers, C 512, B %d, T %d, %d threads, %zu params)\n",
           loss, sushi_tps, layers, B, T, threads, m.n_params);
    if (profile) {
        double total = 0;
        for (int i = 0; i < P_COUNT; i++) total += p_time[i];
        printf("per-op time over %d steps (%.2f s in ops):\n", steps, total);
        for (int i = 0; i < P_COUNT; i++)
            printf("  %-20s %8.3f s  %5.1f%%\n", p_names[i], p_time[i], 100 * p_time[i] / total);
        printf("matmul by shape (m n k ta tb): calls, time, GFLOP/s\n");
        for (int i = 0; i < n_mm; i++)
            printf("  %6d %6d %6d %d %d  %4d  %7.3f s  %6.1f\n", mm[i].m, mm[i].n, mm[i].k, mm[i].ta,
                   mm[i].tb, mm[i].calls, mm[i].t, 2.0 * mm[i].m * mm[i].n * mm[i].k * mm[i].calls / mm[i].t * 1e-9);
    }
    if (torch) {
        double t = torch_tokens_per_s(threads, steps, layers, B, T);
        if (t > 0) printf("ratio sushi/torch %.2fx\n", sushi_tps / t);
        else printf("torch: not available (/usr/bin/python3 with torch needed)\n");
    }
    optim_free(&opt);
    student_free(&m);
    free(ids);
    free(tg);
    free(times);
    return 0;
}
