// libs: deepseek student kernels cuda core
/* Generation speed on the CPU with the two MLA forms (models/deepseek/mla.c,
 * mla_absorb.c): greedy decoding of N new tokens after a P-token prompt with a random
 * V3-flavour teacher (ds_train_create, saved with ds_save and read back with ds_load:
 * q_lora, YaRN, MoE), once with SUSHI_MLA=expanded (k and v expanded from the cache and
 * a square attention over all cached positions at every step) and once with
 * SUSHI_MLA=absorbed (kv_b folded into q and o, one row of scores per head), in one run.
 * Prints the prefill time, decode tokens/s of each form, the ratio, and whether both
 * produced the same tokens.
 *   build/bench/bench_generate [P] [N] [C] [H] [L]     (defaults 256 256 512 16 4) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/deepseek/deepseek.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* a random V3-flavour model of width C, H heads, L layers (layer 0 dense, then MoE) */
static int make_model(struct ds_model *m, int C, int H, int L, int max_seq) {
    char json[2048];
    snprintf(json, sizeof json,
             "{\"arch\": \"deepseek\", \"vocab_size\": 8192, \"hidden_size\": %d, \"intermediate_size\": %d,"
             " \"moe_intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d,"
             " \"q_lora_rank\": %d, \"kv_lora_rank\": %d, \"qk_nope_head_dim\": 64, \"qk_rope_head_dim\": 32,"
             " \"v_head_dim\": 64, \"n_routed_experts\": 16, \"n_shared_experts\": 1, \"num_experts_per_tok\": 4,"
             " \"n_group\": 4, \"topk_group\": 2, \"routed_scaling_factor\": 2.5, \"norm_topk_prob\": true,"
             " \"first_k_dense_replace\": 1, \"rms_norm_eps\": 1e-6, \"max_position_embeddings\": %d,"
             " \"tie_word_embeddings\": false, \"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000.0,"
             " \"factor\": 4.0, \"original_max_position_embeddings\": %d, \"beta_fast\": 32, \"beta_slow\": 1,"
             " \"mscale\": 1.0, \"mscale_all_dim\": 1.0}}",
             C, 2 * C, C / 2, L, H, 3 * C / 4, C / 2, 4 * max_seq, max_seq);
    json_t *j = json_loads(json, 0, NULL);
    struct ds_config c;
    int rc = j ? ds_config_from_train_json(&c, j, "bench") : sushi_error(SUSHI_EINVAL, "bench: bad config JSON");
    json_decref(j);
    struct ds_train t;
    if (!rc) rc = ds_train_create(&t, &c, ops_cpu(), 1, 8, 1, NULL);
    if (rc) return rc;
    char dir[] = "/tmp/sushi-bench-gen-XXXXXX";
    rc = mkdtemp(dir) ? ds_save(&t.m, dir) : sushi_error(SUSHI_EIO, "bench: cannot create a temporary folder");
    ds_train_free(&t);
    if (!rc) rc = ds_load(m, dir, ops_cpu(), max_seq);
    fs_remove_tree(dir);
    return rc;
}

static int32_t argmax(const float *z, int V) {
    int32_t best = 0;
    for (int v = 1; v < V; v++)
        if (z[v] > z[best]) best = v;
    return best;
}

/* greedy decoding of N tokens after prompt (P) with SUSHI_MLA = form: the N generated
 * ids into out, the decode time into *secs, the prefill time into *prefill */
static int generate(struct ds_model *m, struct ds_cache *k, const char *form, const int32_t *prompt, int P, int N,
                    float *z, int32_t *out, double *prefill, double *secs) {
    int V = m->cfg.vocab;
    setenv("SUSHI_MLA", "expanded", 1);   /* the prefill is the same for both */
    ds_cache_reset(k);
    double t0 = now();
    int rc = ds_forward(m, k, prompt, P, z);
    *prefill = now() - t0;
    setenv("SUSHI_MLA", form, 1);
    int32_t next = rc ? 0 : argmax(z + (size_t)(P - 1) * V, V);
    t0 = now();
    for (int i = 0; !rc && i < N; i++) {
        out[i] = next;
        rc = ds_forward(m, k, &next, 1, z);
        next = argmax(z, V);
    }
    *secs = now() - t0;
    unsetenv("SUSHI_MLA");
    return rc;
}

int main(int argc, char **argv) {
    int P = argc > 1 ? atoi(argv[1]) : 256, N = argc > 2 ? atoi(argv[2]) : 256;
    int C = argc > 3 ? atoi(argv[3]) : 512, H = argc > 4 ? atoi(argv[4]) : 16, L = argc > 5 ? atoi(argv[5]) : 4;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: bench_generate [P] [N] [C] [H] [L]   (prompt, new tokens, width, heads, layers)\n");
        return 0;
    }
    if (P < 1 || N < 1 || C < 64 || C % 64 || H < 1 || L < 2) {
        fprintf(stderr, "usage: bench_generate [P ≥ 1] [N ≥ 1] [C: a multiple of 64] [H ≥ 1] [L ≥ 2]\n");
        return 2;
    }
    struct ds_model m;
    struct ds_cache k;
    if (make_model(&m, C, H, L, P + N) || ds_cache_init(&k, &m)) {
        fprintf(stderr, "%s\n", sushi_last_error());
        return 1;
    }
    int V = m.cfg.vocab;
    int32_t *prompt = malloc((size_t)P * sizeof(int32_t)), *ge = malloc((size_t)N * sizeof(int32_t));
    int32_t *ga = malloc((size_t)N * sizeof(int32_t));
    float *z = malloc((size_t)P * V * sizeof(float));
    if (!prompt || !ge || !ga || !z) return 1;
    for (int i = 0; i < P; i++) prompt[i] = (int32_t)(((long)i * 7919 + 13) % V);
    double pe, pa, te, ta;
    int rc = generate(&m, &k, "expanded", prompt, P, N, z, ge, &pe, &te);
    if (!rc) rc = generate(&m, &k, "absorbed", prompt, P, N, z, ga, &pa, &ta);
    if (rc) {
        fprintf(stderr, "%s\n", sushi_last_error());
        return 1;
    }
    int same = 0;
    while (same < N && ge[same] == ga[same]) same++;
    printf("greedy generation, V3-flavour C=%d H=%d L=%d kv_lora=%d E=16 top-4 V=%d, prompt %d + %d new, %d threads\n",
           C, H, L, m.cfg.kv_lora, V, P, N, ops_cpu_threads());
    printf("prefill   %10.3f s (%d tokens, expanded)\n", (pe + pa) / 2, P);
    printf("expanded  %10.1f tokens/s\n", N / te);
    printf("absorbed  %10.1f tokens/s\n", N / ta);
    printf("ratio     %10.2fx (absorbed / expanded)\n", te / ta);
    printf("same tokens: %d of %d\n", same, N);
    free(prompt);
    free(ge);
    free(ga);
    free(z);
    ds_cache_free(&k, &m);
    ds_free(&m);
    return 0;
}
