// libs: deepseek student kernels cuda core
/* Teacher scoring throughput on the GPU: tokens/s of ds_score_batch (one batched forward
 * over B·T positions, top-K ids, log-probabilities and tails on the device, only those
 * copied back) on a random DeepSeek-V3-shaped MoE, against HF transformers (bf16, eager
 * and sdpa attention: bench/hf_teacher_gpu.py, forward + log_softmax + top-K on the same
 * weights and tokens) in one run; prints both and the ratios.
 *
 * The model (default): 12 layers, width 2048, 16 heads (qk_nope 128, qk_rope 64, v 128),
 * q_lora 512, kv_lora 256, first layer dense (intermediate 4096), then 32 routed experts
 * of moe_intermediate_size 1024, top-4 in 4 groups (topk_group 2, noaux_tc, sigmoid),
 * 1 shared expert, vocabulary 32000 (2.4 B parameters; the f32 checkpoint is 9.6 GB).
 * HF transformers writes it (bench/hf_teacher_gpu.py --create, bf16, its own random
 * initialisation) when it can; otherwise it is created with ds_train_create (seeded random weights, on --create-backend, by
 * default the scoring backend: on the GPU the f32 master weights and the gradients take
 * 19 GB there but spare the host 19 GB of page faults; `cpu` keeps the GPU free) and
 * written with ds_train_save into a temporary folder (removed at the end), or reused
 * from --dir when that holds a config.json (created there otherwise and kept). The
 * times of creating, saving and loading are printed. --small: a tiny shape for the CPU.
 *
 *   build/bench/bench_teacher_gpu [--backend cuda|cpu] [--small] [--layers 12] [--B 8] [--T 1024]
 *       [--K 64] [--reps 5] [--dir DIR] [--create-backend cpu|cuda] [--profile] [--no-hf]
 * SUSHI_PYTHON picks the python for the HF side (default python3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/deepseek/deepseek.h"

#include "bench/ops_profile.h"

struct opts {
    const char *backend, *create_backend, *dir;
    int small, layers, B, T, K, reps, profile, hf;
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the model's config.json fields (HF DeepseekV3 names) */
static json_t *model_json(const struct opts *o) {
    int max_pos = o->T > 4096 ? o->T : 4096;
    if (o->small)
        return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, "
                         "s:f, s:b, s:f, s:i, s:b}",
                         "vocab_size", 512, "hidden_size", 128, "intermediate_size", 256, "moe_intermediate_size", 64,
                         "num_hidden_layers", 3, "num_attention_heads", 4, "num_key_value_heads", 4, "q_lora_rank",
                         64, "kv_lora_rank", 32, "qk_nope_head_dim", 32, "qk_rope_head_dim", 16, "v_head_dim", 32,
                         "n_routed_experts", 8, "n_shared_experts", 1, "num_experts_per_tok", 2, "n_group", 4,
                         "topk_group", 2, "first_k_dense_replace", 1, "routed_scaling_factor", 2.5, "norm_topk_prob",
                         1, "rope_theta", 10000.0, "max_position_embeddings", max_pos, "tie_word_embeddings", 0);
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, "
                     "s:f, s:b, s:f, s:i, s:b}",
                     "vocab_size", 32000, "hidden_size", 2048, "intermediate_size", 4096, "moe_intermediate_size", 1024,
                     "num_hidden_layers", o->layers, "num_attention_heads", 16, "num_key_value_heads", 16, "q_lora_rank", 512,
                     "kv_lora_rank", 256, "qk_nope_head_dim", 128, "qk_rope_head_dim", 64, "v_head_dim", 128,
                     "n_routed_experts", 32, "n_shared_experts", 1, "num_experts_per_tok", 4, "n_group", 4,
                     "topk_group", 2, "first_k_dense_replace", 1, "routed_scaling_factor", 2.5, "norm_topk_prob", 1,
                     "rope_theta", 10000.0, "max_position_embeddings", max_pos, "tie_word_embeddings", 0);
}

/* The checkpoint written by HF transformers (bench/hf_teacher_gpu.py --create: its own
 * initialisation on the GPU, bf16), much faster than ds_train_create's single-threaded
 * normal draws and an f32 write at 2.4 B parameters; 0 when it wrote dir/config.json. */
static int create_with_hf(const struct opts *o, const char *dir, const char *tmp) {
    const char *root = getenv("SUSHI_REPO_ROOT"), *py = getenv("SUSHI_PYTHON");
    char cfg[1100], cmd[3000], probe[1100];
    snprintf(cfg, sizeof cfg, "%s/model.json", tmp);
    json_t *j = model_json(o);
    if (!j || json_dump_file(j, cfg, 0)) {
        json_decref(j);
        return -1;
    }
    json_decref(j);
    snprintf(cmd, sizeof cmd, "%s %s/bench/hf_teacher_gpu.py --create %s --config %s", py && *py ? py : "python3",
             root && *root ? root : ".", dir, cfg);
    fflush(stdout);
    double t0 = now_s();
    int st = system(cmd);
    snprintf(probe, sizeof probe, "%s/config.json", dir);
    struct stat sb;
    if (st != 0 || stat(probe, &sb) != 0) return -1;
    printf("checkpoint: written by HF transformers in %.1f s\n", now_s() - t0);
    return 0;
}

/* Creates the random checkpoint in dir (timed). */
static int create_checkpoint(const struct opts *o, const char *dir) {
    json_t *j = model_json(o);
    struct ds_config c;
    int rc = j ? ds_config_from_train_json(&c, j, "bench_teacher_gpu") : sushi_error(SUSHI_ENOMEM, "config");
    json_decref(j);
    if (rc) return rc;
    const struct ops *ops = ops_by_name(o->create_backend);
    if (!ops) return sushi_error(SUSHI_EINVAL, "--create-backend %s: %s", o->create_backend, sushi_last_error());
    struct ds_train t;
    double t0 = now_s();
    if ((rc = ds_train_create(&t, &c, ops, 1, 8, 1234, NULL))) return rc;
    double t1 = now_s();
    rc = ds_train_save(&t, dir, NULL, NULL, NULL);
    double t2 = now_s();
    if (!rc)
        printf("checkpoint: %zu parameters, created in %.1f s (%s), saved in %.1f s (%.2f GB f32) to %s\n", t.n_params,
               t1 - t0, ops->name, t2 - t1, t.n_params * 4e-9, dir);
    ds_train_free(&t);
    return rc;
}

/* median seconds of o->reps calls of ds_score_batch after one warm-up call */
static int time_scoring(const struct opts *o, struct ds_scorer *s, const int32_t *tokens, int32_t *ids, float *lp,
                        float *tail, double *median) {
    const struct ops *ops = s->m->ops;
    double *t = calloc((size_t)o->reps, sizeof(double));
    if (!t) return sushi_error(SUSHI_ENOMEM, "bench_teacher_gpu: out of memory");
    int rc = ds_score_batch(s, tokens, NULL, NULL, o->B, o->T, o->K, 1.0f, ids, lp, tail);
    if (!rc) rc = ops->sync();
    for (int r = 0; !rc && r < o->reps; r++) {
        double t0 = now_s();
        rc = ds_score_batch(s, tokens, NULL, NULL, o->B, o->T, o->K, 1.0f, ids, lp, tail);
        if (!rc) rc = ops->sync();
        t[r] = now_s() - t0;
    }
    if (!rc) {
        qsort(t, (size_t)o->reps, sizeof(double), cmp_double);
        *median = t[o->reps / 2];
    }
    free(t);
    return rc;
}

/* per-op time of one call, each op synchronised */
static int profile_scoring(const struct opts *o, struct ds_scorer *s, const int32_t *tokens, int32_t *ids, float *lp,
                           float *tail) {
    memset(p_time, 0, sizeof p_time);
    sync_each = 1;
    double t0 = now_s();
    int rc = ds_score_batch(s, tokens, NULL, NULL, o->B, o->T, o->K, 1.0f, ids, lp, tail);
    double all = now_s() - t0;
    sync_each = 0;
    if (rc) return rc;
    double sum = 0;
    for (int i = 0; i < P_COUNT; i++) sum += p_time[i];
    printf("per-op time of one batch, each op synchronised (%.1f ms in timed ops, %.1f ms in all):\n", sum * 1e3,
           all * 1e3);
    for (int i = 0; i < P_COUNT; i++)
        if (p_time[i] > 0) printf("  %-20s %8.2f ms\n", p_names[i], p_time[i] * 1e3);
    return 0;
}

/* HF transformers' tokens/s with attention `attn` (0 when it could not run) */
static double hf_tokens_per_s(const struct opts *o, const char *dir, const char *tokens_file, const char *attn) {
    const char *root = getenv("SUSHI_REPO_ROOT"), *py = getenv("SUSHI_PYTHON");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s/bench/hf_teacher_gpu.py %s --B %d --T %d --K %d --reps %d --attn %s --tokens %s",
             py && *py ? py : "python3", root && *root ? root : ".", dir, o->B, o->T, o->K, o->reps, attn, tokens_file);
    fflush(stdout);
    return bench_run_torch(cmd);
}

static int usage(int rc) {
    fprintf(rc ? stderr : stdout,
            "usage: bench_teacher_gpu [--backend cuda|cpu] [--small] [--layers 12] [--B N] [--T N] [--K N] [--reps N]\n"
            "                         [--dir DIR] [--create-backend cpu|cuda] [--profile] [--no-hf]\n");
    return rc;
}

static int parse_args(int argc, char **argv, struct opts *o) {
    *o = (struct opts){.backend = "cuda", .create_backend = NULL, .B = 0, .T = 0, .layers = 12, .K = 64, .reps = 5,
                     .hf = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--backend") && more) o->backend = argv[++i];
        else if (!strcmp(a, "--create-backend") && more) o->create_backend = argv[++i];
        else if (!strcmp(a, "--dir") && more) o->dir = argv[++i];
        else if (!strcmp(a, "--small")) o->small = 1;
        else if (!strcmp(a, "--layers") && more) o->layers = atoi(argv[++i]);
        else if (!strcmp(a, "--B") && more) o->B = atoi(argv[++i]);
        else if (!strcmp(a, "--T") && more) o->T = atoi(argv[++i]);
        else if (!strcmp(a, "--K") && more) o->K = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && more) o->reps = atoi(argv[++i]);
        else if (!strcmp(a, "--profile")) o->profile = 1;
        else if (!strcmp(a, "--no-hf")) o->hf = 0;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(0), 1;
        else return usage(2);
    }
    if (!o->create_backend) o->create_backend = o->backend;
    if (!o->B) o->B = o->small ? 2 : 8;
    if (!o->T) o->T = o->small ? 128 : 1024;
    if (o->B < 1 || o->T < 1 || o->T > 65536 || o->K < 1 || o->reps < 1 || o->layers < 2) {
        fprintf(stderr, "bench_teacher_gpu: bad sizes (B %d, T %d, K %d, reps %d)\n", o->B, o->T, o->K, o->reps);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv) {
    double start = now_s();
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach a log even when a timeout ends the run */
    struct opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc) return prc == 1 ? 0 : prc;
    const struct ops *backend = ops_by_name(o.backend);
    if (!backend) {
        printf("bench_teacher_gpu: backend %s not usable (%s); nothing measured\n", o.backend, sushi_last_error());
        return 0;
    }
    /* tmp holds the token file, and the checkpoint unless --dir names one */
    char tmp[] = "/tmp/sushi-bench-teacher-XXXXXX", dir[1024], tokens_file[1100], cfg[1100];
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof dir, "%s", o.dir ? o.dir : tmp);
    if (!o.dir) snprintf(dir, sizeof dir, "%s/ckpt", tmp);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    struct stat st;
    int rc = 0;
    if (stat(cfg, &st) == 0) printf("checkpoint: reusing %s\n", dir);
    else if (!o.hf || create_with_hf(&o, dir, tmp) != 0) rc = create_checkpoint(&o, dir);

    struct ds_model m;
    int loaded = 0;
    double t0 = now_s();
    if (!rc) loaded = !(rc = ds_load(&m, dir, profile_ops(backend), o.T));
    if (!rc) printf("loaded on %s in %.1f s\n", backend->name, now_s() - t0);
    if (!rc && o.K > m.cfg.vocab) rc = sushi_error(SUSHI_EINVAL, "--K %d exceeds the vocabulary %d", o.K, m.cfg.vocab);
    size_t n = (size_t)o.B * o.T, nk = n * (size_t)o.K;
    int32_t *tokens = malloc(n * 4), *ids = malloc(nk * 4);
    float *lp = malloc(nk * 4), *tail = malloc(n * 4);
    if (!rc && (!tokens || !ids || !lp || !tail)) rc = sushi_error(SUSHI_ENOMEM, "bench_teacher_gpu: host buffers");
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; !rc && i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        tokens[i] = (int32_t)(x % (uint64_t)m.cfg.vocab);
    }
    snprintf(tokens_file, sizeof tokens_file, "%s/tokens.i32", tmp);
    FILE *f = rc ? NULL : fopen(tokens_file, "wb");
    if (!rc && (!f || fwrite(tokens, 4, n, f) != n)) rc = sushi_error(SUSHI_EIO, "%s: cannot write", tokens_file);
    if (f) fclose(f);

    struct ds_scorer s;
    int have_s = !rc && !(rc = ds_scorer_init(&s, &m));
    double med = 0;
    if (!rc) rc = time_scoring(&o, &s, tokens, ids, lp, tail, &med);
    double sushi_tps = med > 0 ? (double)n / med : 0;
    if (!rc) {
        double top1 = 0;
        for (size_t i = 0; i < n; i++) top1 += lp[i * o.K];
        printf("model: V %d, C %d, L %d, %d routed experts top-%d, %zu parameters; B %d, T %d, K %d\n", m.cfg.vocab,
               m.cfg.C, m.cfg.L, m.cfg.n_routed, m.cfg.top_k, m.n_params, o.B, o.T, o.K);
        printf("sushi %s: batch %.1f ms (median of %d), mean top-1 logprob %.4f, peak backend memory %.2f GiB "
               "(weights and scoring)\n", backend->name, med * 1e3, o.reps, top1 / n, mem_peak / (double)(1u << 30));
        printf("sushi tokens/s %.1f\n", sushi_tps);
    }
    if (!rc && o.profile) rc = profile_scoring(&o, &s, tokens, ids, lp, tail);
    if (have_s) ds_scorer_free(&s);
    if (loaded) ds_free(&m);   /* frees the GPU for the HF side */
    if (!rc && o.hf) {
        double eager = hf_tokens_per_s(&o, dir, tokens_file, "eager");
        double sdpa = hf_tokens_per_s(&o, dir, tokens_file, "sdpa");
        if (eager > 0) printf("hf eager tokens/s %.1f  ratio sushi/eager %.2fx\n", eager, sushi_tps / eager);
        else printf("hf eager: not measured (see above)\n");
        if (sdpa > 0) printf("hf sdpa tokens/s %.1f  ratio sushi/sdpa %.2fx\n", sdpa, sushi_tps / sdpa);
        else printf("hf sdpa: not measured (see above)\n");
    }
    if (rc) fprintf(stderr, "bench_teacher_gpu: %s\n", sushi_last_error());
    printf("bench total %.1f s\n", now_s() - start);
    free(tokens);
    free(ids);
    free(lp);
    free(tail);
    fs_remove_tree(tmp);
    return rc ? 1 : 0;
}
