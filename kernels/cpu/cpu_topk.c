/* The teacher's top-K of logit rows (SPEC §1) on the CPU backend: one pass per row keeps
 * the best K in a heap (almost every logit fails the first compare), a heap sort orders
 * them, and one pass of exponentials splits the probability mass into the top-K part and
 * the tail, summed on its own (not 1 − top) so a tiny tail keeps its precision. Rows run
 * in parallel on the backend's pool. */
#include <math.h>

#include "common/core/log.h"
#include "kernels/cpu/cpu_internal.h"

/* The top-K order: the larger logit first, the lower id on ties. */
static int topk_before(const float *z, int32_t a, int32_t b) {
    return z[a] > z[b] || (z[a] == z[b] && a < b);
}

/* h[0..n) is a heap whose root is the entry that comes LAST in the top-K order */
static void topk_sift_down(const float *z, int32_t *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && topk_before(z, h[m], h[l])) m = l;
        if (r < n && topk_before(z, h[m], h[r])) m = r;
        if (m == i) return;
        int32_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void topk_row(const float *z, int V, int K, float T, int32_t *ids, float *logprobs, float *tail) {
    for (int i = 0; i < K; i++) ids[i] = i;
    for (int i = K / 2 - 1; i >= 0; i--) topk_sift_down(z, ids, K, i);
    for (int i = K; i < V; i++)
        if (topk_before(z, i, ids[0])) {
            ids[0] = i;
            topk_sift_down(z, ids, K, 0);
        }
    for (int n = K; n > 1; n--) { /* heap sort: ids[] ends best first */
        int32_t t = ids[0];
        ids[0] = ids[n - 1];
        ids[n - 1] = t;
        topk_sift_down(z, ids, n - 1, 0);
    }
    const float invT = 1.0f / T, mx = z[ids[0]] * invT;
    const int32_t last = ids[K - 1];
    double s_top = 0, s_tail = 0;
    for (int i = 0; i < V; i++) {
        double e = expf(z[i] * invT - mx);
        if (i == last || topk_before(z, i, last)) s_top += e;
        else s_tail += e;
    }
    double lse = mx + log(s_top + s_tail);
    for (int j = 0; j < K; j++) logprobs[j] = (float)(z[ids[j]] * (double)invT - lse);
    *tail = s_tail > 0 ? (float)(mx + log(s_tail) - lse) : -INFINITY; /* −inf when K == V */
}

struct topk_ctx {
    int32_t *ids;
    float *logprobs, *tail;
    const float *z;
    int V, Vp, K;
    float T;
};

static void topk_range(void *ctx, size_t begin, size_t end, int thread) {
    (void)thread;
    const struct topk_ctx *x = ctx;
    for (size_t n = begin; n < end; n++)
        topk_row(x->z + n * (size_t)x->Vp, x->V, x->K, x->T, x->ids + n * (size_t)x->K,
                 x->logprobs + n * (size_t)x->K, x->tail + n);
}

int cpu_topk(int32_t *ids, float *logprobs, float *tail, const void *logits, int N, int V, int Vp, int K, float T) {
    if (!ids || !logprobs || !tail || !logits) return sushi_error(SUSHI_EINVAL, "cpu: topk: NULL pointer");
    if (N < 0 || V < 1 || Vp < V || K < 1 || K > V || !(T > 0))
        return sushi_error(SUSHI_EINVAL, "cpu: topk: bad argument (N %d, V %d, Vp %d, K %d, T %g)", N, V, Vp, K,
                           (double)T);
    struct topk_ctx x = {ids, logprobs, tail, logits, V, Vp, K, T};
    cpu_parallel_for((size_t)N, 4, topk_range, &x);
    return 0;
}
