// libs: config student kernels core
/* Checkpoint save and load time for a student of a tier config (default SmolLM-135M
 * shape), parameters + AdamW moments, against the alternative a PyTorch user picks:
 * torch.save / torch.load of the same tensors (a state dict of the HF names and shapes,
 * written and read by /usr/bin/python3). Both write to the same folder and fsync. Prints
 * each time and the ratios (> 1: sushi is faster).
 *
 *   build/bench/bench_checkpoint [--config configs/student/smollm-135m.yaml] [--dir /tmp]
 *                                [--repeat 3] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/config/config.h"
#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/student/checkpoint.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *torch_script =
    "import os, sys, time, torch\n"
    "shapes = [tuple(int(x) for x in l.split()[1:]) for l in open(sys.argv[1])]\n"
    "names = [l.split()[0] for l in open(sys.argv[1])]\n"
    "sd = {n: torch.randn(*s) for n, s in zip(names, shapes)}\n"
    "opt = {'m': {n: torch.randn(*s) for n, s in zip(names, shapes)},\n"
    "       'v': {n: torch.rand(*s) for n, s in zip(names, shapes)}}\n"
    "path, best_s, best_l = sys.argv[2], 1e9, 1e9\n"
    "for _ in range(int(sys.argv[3])):\n"
    "    t = time.perf_counter()\n"
    "    torch.save(sd, path + '/model.pt'); torch.save(opt, path + '/optim.pt')\n"
    "    for f in ('model.pt', 'optim.pt'):\n"
    "        fd = os.open(path + '/' + f, os.O_RDONLY); os.fsync(fd); os.close(fd)\n"
    "    best_s = min(best_s, time.perf_counter() - t)\n"
    "    t = time.perf_counter()\n"
    "    a = torch.load(path + '/model.pt'); b = torch.load(path + '/optim.pt')\n"
    "    best_l = min(best_l, time.perf_counter() - t)\n"
    "    del a, b\n"
    "print(best_s, best_l)\n";

int main(int argc, char **argv) {
    const char *config = "configs/student/smollm-135m.yaml", *base = "/tmp";
    int repeat = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: bench_checkpoint [--config YAML] [--dir DIR] [--repeat N]\n");
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) base = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else {
            fprintf(stderr, "bench_checkpoint: unknown argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (repeat < 1) repeat = 1;
    struct student_config c;
    if (config_load_student(config, NULL, 0, &c)) {
        fprintf(stderr, "%s\n", sushi_last_error());
        return 1;
    }
    size_t n = student_param_count(&c);
    float *buf = malloc(3 * n * sizeof(float));
    if (!buf) return 1;
    for (size_t i = 0; i < 3 * n; i++) buf[i] = (float)(i % 1000) * 1e-3f;
    char dir[600], work[512], shapes[600];
    snprintf(work, sizeof work, "%s/sushi-bench-ckpt-XXXXXX", base);
    if (!mkdtemp(work)) { perror(work); return 1; }
    snprintf(dir, sizeof dir, "%s/ck", work);
    double best_save = 1e9, best_load = 1e9;
    for (int r = 0; r < repeat; r++) {
        double t0 = now_s();
        int rc = checkpoint_save(dir, &c, buf, buf + n, buf + 2 * n, NULL);
        double t1 = now_s();
        if (!rc) rc = checkpoint_load(dir, &c, buf, buf + n, buf + 2 * n, NULL);
        double t2 = now_s();
        if (rc) { fprintf(stderr, "%s\n", sushi_last_error()); return 1; }
        if (t1 - t0 < best_save) best_save = t1 - t0;
        if (t2 - t1 < best_load) best_load = t2 - t1;
    }
    /* the same names and shapes for torch */
    int nv = student_param_views(&c, buf, NULL, 0);
    struct param_view *pv = calloc((size_t)nv, sizeof *pv);
    student_param_views(&c, buf, pv, nv);
    snprintf(shapes, sizeof shapes, "%s/shapes.txt", work);
    FILE *f = fopen(shapes, "w");
    if (!f) { perror(shapes); return 1; }
    for (int i = 0; i < nv; i++) {
        if (pv[i].ndim == 2) fprintf(f, "%s %lld %lld\n", pv[i].name, (long long)pv[i].shape[0], (long long)pv[i].shape[1]);
        else fprintf(f, "%s %lld\n", pv[i].name, (long long)pv[i].shape[0]);
    }
    fclose(f);
    free(pv);
    char script[600], cmd[2048];
    snprintf(script, sizeof script, "%s/torch_ckpt.py", work);
    fs_write_atomic(script, torch_script, strlen(torch_script));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s %d", script, shapes, work, repeat);
    double ts = 0, tl = 0;
    FILE *p = popen(cmd, "r");
    int ok = p && fscanf(p, "%lf %lf", &ts, &tl) == 2;
    if (p) pclose(p);
    char mp[700];
    snprintf(mp, sizeof mp, "%s/model.safetensors", dir);
    long long bytes = fs_file_size(mp);
    snprintf(mp, sizeof mp, "%s/optimizer.safetensors", dir);
    bytes += fs_file_size(mp);
    printf("checkpoint %s: %zu parameters + 2 moments, %.1f MB (best of %d)\n", config, n, bytes / 1e6, repeat);
    printf("sushi  save %.3f s  load %.3f s\n", best_save, best_load);
    if (ok) {
        printf("torch  save %.3f s  load %.3f s  (torch.save/torch.load)\n", ts, tl);
        printf("ratio  save %.2fx  load %.2fx  (torch time / sushi time)\n", ts / best_save, tl / best_load);
    } else {
        printf("torch  unavailable (/usr/bin/python3 with torch not found)\n");
    }
    fs_remove_tree(work);
    free(buf);
    return 0;
}
