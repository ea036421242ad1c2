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

int ds_topk(const float *z, int V, int K, float T, int32_t *ids, float *logprobs, float *tail) {
    if (!z || !ids || !logprobs || !tail || V < 1 || K < 1 || K > V || !(T > 0))
        return sushi_error(SUSHI_EINVAL, "ds_topk: bad argument (V %d, K %d, T %g)", V, K, (double)T);
    return ops_cpu()->topk(ids, logprobs, tail, z, 1, V, V, K, T);
}
