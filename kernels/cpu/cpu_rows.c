/* Row permutation ops for mixture-of-experts routing (gather, weighted scatter-add, row
 * dot products) and the grouped causal softmax used by absorbed latent attention, on the
 * CPU backend (f32). */
#include <math.h>

#include "common/core/log.h"
#include "kernels/cpu/cpu_internal.h"

/* every row index in [0, M) */
static int rows_check(const char *op, const int32_t *rows, int n, int M, int C) {
    if (n < 0 || M < 0 || C < 1) return sushi_error(SUSHI_EINVAL, "cpu: %s: bad shape n=%d M=%d C=%d", op, n, M, C);
    if (n > 0 && !rows) return sushi_error(SUSHI_EINVAL, "cpu: %s: NULL rows", op);
    for (int r = 0; r < n; r++)
        if (rows[r] < 0 || rows[r] >= M)
            return sushi_error(SUSHI_EINVAL, "cpu: %s: row %d of %d is %d, outside [0, %d)", op, r, n, rows[r], M);
    return 0;
}

int cpu_gather_rows(void *out, const void *x, const int32_t *rows, int n, int M, int C) {
    int rc = rows_check("gather_rows", rows, n, M, C);
    if (rc) return rc;
    if (n > 0 && (!out || !x)) return sushi_error(SUSHI_EINVAL, "cpu: gather_rows: NULL pointer");
    float *o = out;
    const float *xs = x;
    for (int r = 0; r < n; r++) {
        const float *src = xs + (size_t)rows[r] * C;
        float *dst = o + (size_t)r * C;
        for (int c = 0; c < C; c++) dst[c] = src[c];
    }
    return 0;
}

int cpu_scatter_add_rows(void *y, const void *x, const int32_t *rows, const float *w, int n, int M, int C) {
    int rc = rows_check("scatter_add_rows", rows, n, M, C);
    if (rc) return rc;
    if (n > 0 && (!y || !x)) return sushi_error(SUSHI_EINVAL, "cpu: scatter_add_rows: NULL pointer");
    float *ys = y;
    const float *xs = x;
    for (int r = 0; r < n; r++) {
        float a = w ? w[r] : 1.0f;
        float *dst = ys + (size_t)rows[r] * C;
        const float *src = xs + (size_t)r * C;
        for (int c = 0; c < C; c++) dst[c] += a * src[c];
    }
    return 0;
}

int cpu_rows_dot(float *out, const void *a, const int32_t *rows, const void *b, int n, int M, int C) {
    int rc = rows_check("rows_dot", rows, n, M, C);
    if (rc) return rc;
    if (n > 0 && (!out || !a || !b)) return sushi_error(SUSHI_EINVAL, "cpu: rows_dot: NULL pointer");
    const float *as = a, *bs = b;
    for (int r = 0; r < n; r++) {
        const float *ar = as + (size_t)rows[r] * C, *br = bs + (size_t)r * C;
        double s = 0;
        for (int c = 0; c < C; c++) s += (double)ar[c] * br[c];
        out[r] = (float)s;
    }
    return 0;
}

struct sm_ctx {
    float *p;
    const float *s;
    int R, S, group;
    float scale;
};

static void softmax_range(void *ctx, size_t begin, size_t end, int thread) {
    (void)thread;
    const struct sm_ctx *x = ctx;
    int first = x->S - x->R / x->group; /* key of the first query */
    for (size_t r = begin; r < end; r++) {
        const float *s = x->s + r * (size_t)x->S;
        float *p = x->p + r * (size_t)x->S;
        int vis = first + (int)r / x->group + 1; /* visible columns [0, vis) */
        float mx = -INFINITY;
        for (int c = 0; c < vis; c++) mx = fmaxf(mx, x->scale * s[c]);
        double sum = 0;
        for (int c = 0; c < vis; c++) {
            p[c] = expf(x->scale * s[c] - mx);
            sum += p[c];
        }
        float inv = (float)(1.0 / sum);
        for (int c = 0; c < vis; c++) p[c] *= inv;
        for (int c = vis; c < x->S; c++) p[c] = 0.0f;
    }
}

int cpu_softmax_causal(void *p, const void *s, int R, int S, int group, float scale) {
    if (!p || !s) return sushi_error(SUSHI_EINVAL, "cpu: softmax_causal: NULL pointer");
    if (R < 1 || S < 1 || group < 1 || R % group || R / group > S)
        return sushi_error(SUSHI_EINVAL, "cpu: softmax_causal: bad shape R=%d S=%d group=%d", R, S, group);
    struct sm_ctx x = {p, s, R, S, group, scale};
    cpu_parallel_for((size_t)R, 8, softmax_range, &x);
    return 0;
}

int cpu_gather_sum_rows(void *out, const void *x, const int32_t *idx, const float *w, int n, int K, int M, int C) {
    if (n < 0 || K < 1 || M < 0 || C < 1)
        return sushi_error(SUSHI_EINVAL, "cpu: gather_sum_rows: bad shape n=%d K=%d M=%d C=%d", n, K, M, C);
    if (n > 0 && (!out || !x || !idx)) return sushi_error(SUSHI_EINVAL, "cpu: gather_sum_rows: NULL pointer");
    for (size_t i = 0; i < (size_t)n * K; i++)
        if (idx[i] >= M)
            return sushi_error(SUSHI_EINVAL, "cpu: gather_sum_rows: index %zu is %d, outside [0, %d)", i, idx[i], M);
    float *o = out;
    const float *xs = x;
    for (int t = 0; t < n; t++) {
        float *dst = o + (size_t)t * C;
        for (int j = 0; j < K; j++) {
            size_t i = (size_t)t * K + j;
            if (idx[i] < 0) continue;
            float a = w ? w[i] : 1.0f;
            const float *src = xs + (size_t)idx[i] * C;
            for (int c = 0; c < C; c++) dst[c] += a * src[c];
        }
    }
    return 0;
}
