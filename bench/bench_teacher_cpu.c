// libs: deepseek kernels cuda core
/* Teacher scoring throughput on the CPU: tokens/s over all positions of a sequence,
 * forward + top-K log-probabilities + tail, for sushi's DeepSeek forward and for the
 * PyTorch reference (tests/oracle/deepseek_ref.py, float32) on the same random
 * V3-flavour checkpoint (q_lora, sigmoid/noaux_tc routing, 16 experts, YaRN).
 *   build/bench/bench_teacher_cpu [T] [REPS] [K]     (defaults 256 2 64) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/deepseek/deepseek.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int T = argc > 1 ? atoi(argv[1]) : 256, reps = argc > 2 ? atoi(argv[2]) : 2, K = argc > 3 ? atoi(argv[3]) : 64;
    if (T < 8 || reps < 1 || K < 1) {
        fprintf(stderr, "usage: bench_teacher_cpu [T ≥ 8] [REPS ≥ 1] [K ≥ 1]\n");
        return 2;
    }
    const char *root = getenv("SUSHI_REPO_ROOT") ? getenv("SUSHI_REPO_ROOT") : ".";
    char dir[] = "/tmp/sushi-bench-ds-XXXXXX", cmd[1024];
    if (!mkdtemp(dir)) return 1;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/deepseek_ref.py write %s v3bench 1", root, dir);
    if (system(cmd)) {
        fprintf(stderr, "could not write the checkpoint (needs /usr/bin/python3 with torch)\n");
        return 1;
    }
    struct ds_model m;
    struct ds_cache k;
    if (ds_load(&m, dir, ops_cpu(), T) || ds_cache_init(&k, &m)) {
        fprintf(stderr, "%s\n", sushi_last_error());
        return 1;
    }
    int V = m.cfg.vocab;
    int32_t *ids = malloc((size_t)T * sizeof(int32_t)), *top = malloc((size_t)K * sizeof(int32_t));
    float *z = malloc((size_t)T * V * sizeof(float)), *lp = malloc((size_t)K * sizeof(float)), tail;
    if (!ids || !top || !z || !lp) return 1;
    for (int i = 0; i < T; i++) ids[i] = (int32_t)(((long)i * 7919) % V);
    ds_forward(&m, &k, ids, 8, z);   /* warm-up */
    double t0 = now();
    int rc = 0;
    for (int r = 0; !rc && r < reps; r++) {
        ds_cache_reset(&k);
        rc = ds_forward(&m, &k, ids, T, z);
        for (int t = 0; !rc && t < T; t++) rc = ds_topk(z + (size_t)t * V, V, K, 1.0f, top, lp, &tail);
    }
    double sushi = reps * T / (now() - t0);
    if (rc) {
        fprintf(stderr, "%s\n", sushi_last_error());
        return 1;
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/deepseek_ref.py bench %s %d %d %d %d", root, dir, T,
             reps, K, ops_cpu_threads());
    FILE *p = popen(cmd, "r");
    double torch_tps = 0;
    if (!p || fscanf(p, "%lf", &torch_tps) != 1) torch_tps = 0;
    if (p) pclose(p);
    printf("teacher scoring, V3-flavour C=256 L=4 E=16 top-4 V=%d, T=%d, K=%d, %d threads\n", V, T, K,
           ops_cpu_threads());
    printf("sushi   %10.1f tokens/s\n", sushi);
    printf("pytorch %10.1f tokens/s (float32 reference)\n", torch_tps);
    if (torch_tps > 0) printf("ratio   %10.2fx\n", sushi / torch_tps);
    free(ids);
    free(top);
    free(z);
    free(lp);
    ds_cache_free(&k, &m);
    ds_free(&m);
    fs_remove_tree(dir);
    return 0;
}
