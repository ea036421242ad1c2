/* The DeepSeek forward pass for one sequence, top to bottom: embedding, per layer
 * x += MLA(rmsnorm(x)), x += FFN(rmsnorm(x)) (MoE or dense), final norm, LM head; and
 * the teacher's top-K output of a row of logits (SPEC §1). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "models/deepseek/deepseek.h"

int ds_forward(struct ds_model *m, struct ds_cache *k, const int32_t *ids, int n, float *logits) {
    if (!m || !k || !ids || !logits || n < 1) return sushi_error(SUSHI_EINVAL, "ds_forward: bad argument");
    const struct ds_config *c = &m->cfg;
    const struct ops *ops = m->ops;
    if (k->len + n > k->cap)
        return sushi_error(SUSHI_EINVAL, "ds_forward: %d positions exceed the maximum %d", k->len + n, k->cap);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return sushi_error(SUSHI_EINVAL, "ds_forward: token id %d at %d is outside [0, %d)", ids[i], i, c->vocab);
    size_t es = dtype_size(ops->act_dtype), nc = (size_t)n * c->C;
    void *x = ops->alloc(nc * es), *xn = ops->alloc(nc * es), *d = ops->alloc(nc * es);
    void *z = ops->alloc((size_t)n * c->vocab * es);
    float *zf = ops->alloc((size_t)n * c->vocab * sizeof(float)), *rstd = ops->alloc((size_t)n * sizeof(float));
    int32_t *dev_ids = ops->alloc((size_t)n * sizeof(int32_t));
    int rc = (!x || !xn || !d || !z || !zf || !rstd || !dev_ids)
                 ? sushi_error(SUSHI_ENOMEM, "ds_forward: out of backend memory for %d tokens", n) : 0;
    if (!rc) rc = ops->to_device(dev_ids, ids, (size_t)n * sizeof(int32_t));
    if (!rc) rc = ops->embedding_forward(x, dev_ids, m->embed, n, c->C);
    for (int l = 0; !rc && l < c->L; l++) {
        const struct ds_layer *y = &m->layers[l];
        rc = ops->rmsnorm_forward(xn, rstd, x, y->in_norm, n, c->C, c->eps);
        if (!rc) rc = ds_mla_forward(m, l, k, xn, n, d);
        if (!rc) rc = ops->axpy(x, 1.0f, d, nc);
        if (!rc) rc = ops->rmsnorm_forward(xn, rstd, x, y->post_norm, n, c->C, c->eps);
        if (!rc) rc = ds_ffn_forward(m, l, xn, n, d);
        if (!rc) rc = ops->axpy(x, 1.0f, d, nc);
    }
    if (!rc) rc = ops->rmsnorm_forward(xn, rstd, x, m->final_norm, n, c->C, c->eps);
    if (!rc) rc = ops->matmul(z, xn, m->head, n, c->vocab, c->C, 0, 1, 1.0f, 0.0f, 0, 0, 0);
    if (!rc) rc = ops->act_to_f32(zf, z, (size_t)n * c->vocab);
    if (!rc) rc = ops->to_host(logits, zf, (size_t)n * c->vocab * sizeof(float));
    if (!rc) k->len += n;
    void *all[] = {x, xn, d, z, zf, rstd, dev_ids};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) ops->free(all[i]);
    return rc;
}

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

int ds_topk(const float *z, int V, int K, float T, int32_t *ids, float *logprobs, float *tail) {
    if (!z || !ids || !logprobs || !tail || V < 1 || K < 1 || K > V || !(T > 0))
        return sushi_error(SUSHI_EINVAL, "ds_topk: bad argument (V %d, K %d, T %g)", V, K, (double)T);
    /* one pass keeping the best K in a heap (almost every logit fails the first compare) */
    for (int i = 0; i < K; i++) ids[i] = i;
    for (int i = K / 2 - 1; i >= 0; i--) topk_sift_down(z, ids, K, i);
    for (int i = K; i < V; i++)
        if (topk_before(z, i, ids[0])) {
            ids[0] = i;
            topk_sift_down(z, ids, K, 0);
        }
    for (int n = K; n > 1; n--) {   /* heap sort: ids[] ends best first */
        int32_t t = ids[0];
        ids[0] = ids[n - 1];
        ids[n - 1] = t;
        topk_sift_down(z, ids, n - 1, 0);
    }
    /* one pass of exponentials, split into the top-K mass and the tail mass; the tail is
     * summed on its own (not 1 - top) so a tiny tail keeps its precision */
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
    *tail = s_tail > 0 ? (float)(mx + log(s_tail) - lse) : -INFINITY;   /* −inf when K == V */
    return 0;
}
