/* Test helpers shared by test_student.c and test_optim.c: a random student case (model
 * weights, batch, teacher top-K) and the PyTorch oracle (tests/oracle/student_ref.py)
 * run on it through files in a temporary directory. */
#ifndef SUSHI_TEST_STUDENT_CASE_H
#define SUSHI_TEST_STUDENT_CASE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/core/log.h"
#include "kernels/ops.h"
#include "models/rng.h"
#include "models/student/student.h"

struct scase {
    struct student_config cfg;
    int B, T, K;
    struct student_loss_cfg lc;
    int32_t *ids, *targets, *doc;        /* (B·T) */
    int32_t *tk_ids;                     /* (B·T, K) */
    float *tk_lp, *tail;                 /* (B·T, K), (B·T) */
    struct student_teacher teacher;
};

static inline const char *scase_root(void) {
    const char *r = getenv("SUSHI_REPO_ROOT");
    return r && *r ? r : ".";
}

/* the oracle needs Debian's torch under /usr/bin/python3 */
static inline int scase_have_torch(void) {
    return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

/* odd sizes, GQA (H=6, G=2), d_head ≠ C/H, padded vocab */
static inline struct student_config scase_small_config(int tied) {
    struct student_config c = {.n_layers = 2, .d_model = 20, .n_heads = 6, .n_kv_heads = 2,
                               .d_head = 6, .d_ff = 26, .vocab = 37, .vocab_padded = 48,
                               .max_seq = 16, .tied = tied, .rope_theta = 10000.0f,
                               .norm_eps = 1e-5f};
    return c;
}

/* random batch: targets with a few ignored (−1) rows, 2–3 documents per row, and a valid
 * (K+1)-bucket teacher distribution on K distinct ids */
static inline void scase_fill(struct scase *s, uint64_t seed) {
    int N = s->B * s->T, K = s->K, V = s->cfg.vocab;
    struct rng r;
    rng_seed(&r, seed);
    s->ids = calloc(N, 4);
    s->targets = calloc(N, 4);
    s->doc = calloc(N, 4);
    s->tk_ids = calloc((size_t)N * (K ? K : 1), 4);
    s->tk_lp = calloc((size_t)N * (K ? K : 1), 4);
    s->tail = calloc(N, 4);
    for (int n = 0; n < N; n++) {
        s->ids[n] = (int32_t)(rng_u64(&r) % V);
        s->targets[n] = (rng_u64(&r) % 7 == 0) ? -1 : (int32_t)(rng_u64(&r) % V);
        int t = n % s->T;
        s->doc[n] = t < s->T / 3 ? 0 : t < (2 * s->T) / 3 + 1 ? 1 : 2;
        double z[65], mx = -1e30, sum = 0;
        for (int k = 0; k <= K; k++) {
            z[k] = 2.0 * rng_normal(&r);
            mx = z[k] > mx ? z[k] : mx;
        }
        for (int k = 0; k <= K; k++) sum += exp(z[k] - mx);
        for (int k = 0; k < K; k++) {
            int32_t id;
            int dup;
            do {
                id = (int32_t)(rng_u64(&r) % V);
                dup = 0;
                for (int j = 0; j < k; j++) dup |= s->tk_ids[(size_t)n * K + j] == id;
            } while (dup);
            s->tk_ids[(size_t)n * K + k] = id;
            s->tk_lp[(size_t)n * K + k] = (float)(z[k] - mx - log(sum));
        }
        s->tail[n] = (float)(z[K] - mx - log(sum));
    }
    s->teacher = (struct student_teacher){K, s->tk_ids, s->tk_lp, s->tail};
}

static inline void scase_free(struct scase *s) {
    free(s->ids); free(s->targets); free(s->doc); free(s->tk_ids); free(s->tk_lp); free(s->tail);
}

/* weights large enough that every path carries signal: matrices N(0, 0.25²) except
 * the embedding N(0, 1), norms 1 + N(0, 0.1²) */
static inline int scase_randomize(struct student_model *m, uint64_t seed) {
    struct rng r;
    rng_seed(&r, seed);
    size_t n_wte = (size_t)m->cfg.vocab_padded * m->cfg.d_model;
    for (size_t i = 0; i < m->n_params; i++) {
        float z = rng_normal(&r);
        m->master[i] = i < n_wte ? z : i < m->n_decay ? 0.25f * z : 1.0f + 0.1f * z;
    }
    return student_sync_weights(m);
}

static inline const struct student_teacher *scase_teacher(const struct scase *s) {
    return s->K ? &s->teacher : NULL;
}

/* Writes the case (config, weights of `m`, inputs) into a fresh temp dir, runs the
 * oracle, reads `n_out` float64 results. `extra_json` is spliced into case.json. */
static inline int scase_oracle(const struct scase *s, const struct student_model *m, const char *mode,
                        const char *extra_json, double *out, size_t n_out) {
    char dir[] = "/tmp/sushi_student_XXXXXX", path[512], cmd[1024];
    if (!mkdtemp(dir)) return -1;
    struct param_view v[256];
    int nv = student_param_views(&m->cfg, m->master, v, 256);
    if (nv < 0 || nv > 256) return -1;
    snprintf(path, sizeof path, "%s/case.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    const struct student_config *c = &m->cfg;
    fprintf(f, "{\"mode\":\"%s\",%s\"config\":{\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,"
               "\"d_head\":%d,\"vocab\":%d,\"tied\":%d,\"rope_theta\":%.9g,\"norm_eps\":%.9g,"
               "\"window\":%d,\"doc_mask\":%d,\"B\":%d,\"T\":%d,\"k\":%d,\"smoothing\":%.9g,"
               "\"alpha\":%.9g,\"mode\":%d,\"temperature\":%.9g,\"jsd_beta\":%.9g},\"params\":[",
            mode, extra_json ? extra_json : "", c->n_layers, c->n_heads, c->n_kv_heads, c->d_head,
            c->vocab, c->tied, c->rope_theta, c->norm_eps, c->window, c->doc_mask, s->B, s->T,
            s->K, s->lc.smoothing, s->lc.alpha, (int)s->lc.mode, s->lc.temperature, s->lc.jsd_beta);
    for (int i = 0; i < nv; i++) {
        if (v[i].ndim == 2)
            fprintf(f, "%s[\"%s\",[%lld,%lld]]", i ? "," : "", v[i].name, (long long)v[i].shape[0],
                    (long long)v[i].shape[1]);
        else
            fprintf(f, "%s[\"%s\",[%lld]]", i ? "," : "", v[i].name, (long long)v[i].shape[0]);
    }
    fprintf(f, "]}\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/params.bin", dir);
    f = fopen(path, "wb");
    for (int i = 0; i < nv; i++) fwrite(v[i].data, 4, v[i].numel, f);
    fclose(f);
    size_t N = (size_t)s->B * s->T;
    snprintf(path, sizeof path, "%s/inputs.bin", dir);
    f = fopen(path, "wb");
    fwrite(s->ids, 4, N, f);
    fwrite(s->targets, 4, N, f);
    if (c->doc_mask) fwrite(s->doc, 4, N, f);
    if (s->K) {
        fwrite(s->tk_ids, 4, N * s->K, f);
        fwrite(s->tk_lp, 4, N * s->K, f);
        fwrite(s->tail, 4, N, f);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/student_ref.py %s", scase_root(), dir);
    int rc = system(cmd);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    f = rc == 0 ? fopen(path, "rb") : NULL;
    size_t got = f ? fread(out, sizeof(double), n_out, f) : 0;
    if (f) fclose(f);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return got == n_out ? 0 : -1;
}

/* ‖a − b‖₂ / ‖b‖₂ */
static inline double scase_rel_err(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
