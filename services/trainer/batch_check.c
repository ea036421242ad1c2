/* Checking received batches (batch_check.h). */
#include "services/trainer/batch_check.h"

#include <math.h>
#include <string.h>

#include "common/core/log.h"

/* tensor `name` of dtype dt and shape dims[0..ndim) (dims[i] < 0: any, reported in *any) */
static int get_tensor(const struct wire_msg *m, const char *name, enum dtype dt, int ndim, const int64_t *dims,
                      int required, const void **out, int64_t *any) {
    const struct wire_tensor *t = wire_msg_tensor(m, name);
    *out = NULL;
    if (!t) return required ? sushi_error(SUSHI_EFORMAT, "batch %llu: tensor %s missing",
                                          (unsigned long long)m->id, name) : 0;
    if (t->dtype != dt)
        return sushi_error(SUSHI_ESHAPE, "batch %llu: tensor %s: dtype %s, expected %s", (unsigned long long)m->id,
                           name, dtype_name(t->dtype), dtype_name(dt));
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) {
        if (dims[i] < 0) {
            if (t->shape[i] < 1 || t->shape[i] > 1024) ok = 0;
            else if (any) *any = t->shape[i];
        } else if (t->shape[i] != dims[i]) {
            ok = 0;
        }
    }
    if (!ok) {
        char got[96] = "", want[96] = "";
        for (int i = 0; i < t->ndim && i < WIRE_MAX_NDIM; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), i ? ",%s%lld" : "%s%lld",
                     dims[i] < 0 ? "K≤" : "", dims[i] < 0 ? 1024LL : (long long)dims[i]);
        return sushi_error(SUSHI_ESHAPE, "batch %llu: tensor %s: shape [%s], expected [%s]",
                           (unsigned long long)m->id, name, got, want);
    }
    *out = t->data;
    return 0;
}

/* every value of ids[0..n) in [lo, vocab) */
static int check_ids(const struct wire_msg *m, const char *name, const int32_t *ids, size_t n, int lo, int vocab) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < lo || ids[i] >= vocab)
            return sushi_error(SUSHI_EFORMAT, "batch %llu: %s[%zu] = %d outside [%d, %d)", (unsigned long long)m->id,
                               name, i, ids[i], lo, vocab);
    return 0;
}

static int check_meta(const struct wire_msg *m, const struct batch_expect *e, struct batch_view *v) {
    unsigned long long id = (unsigned long long)m->id;
    json_t *next = m->meta ? json_object_get(m->meta, "next") : NULL;
    if (!json_is_integer(next) || json_integer_value(next) < 0 || (uint64_t)json_integer_value(next) <= m->id)
        return sushi_error(SUSHI_EFORMAT, "batch %llu: meta.next missing or not an id after this one", id);
    v->next = (uint64_t)json_integer_value(next);
    if (!e->scored) return 0;
    json_t *temp = json_object_get(m->meta, "temperature");
    if (!json_is_number(temp))
        return sushi_error(SUSHI_EFORMAT, "batch %llu: meta.temperature missing", id);
    double t = json_number_value(temp);
    if (!(fabs(t - e->temperature) <= 1e-6 * e->temperature))
        return sushi_error(SUSHI_EINVAL, "batch %llu: teacher temperature %g differs from train.kd.temperature %g",
                           id, t, e->temperature);
    return 0;
}

int batch_check(const struct wire_msg *m, const struct batch_expect *e, struct batch_view *v) {
    if (!m || !e || !v) return sushi_error(SUSHI_EINVAL, "batch_check: NULL argument");
    memset(v, 0, sizeof *v);
    v->id = m->id;
    const int64_t bt[2] = {e->B, e->T}, b[1] = {e->B}, btk[3] = {e->B, e->T, -1};
    const void *p;
    int64_t k = 0;
    int rc;
    if ((rc = get_tensor(m, "tokens", DT_I32, 2, bt, 1, &p, NULL))) return rc;
    v->tokens = p;
    if ((rc = get_tensor(m, "targets", DT_I32, 2, bt, 1, &p, NULL))) return rc;
    v->targets = p;
    if ((rc = get_tensor(m, "doc_ids", DT_I32, 2, bt, e->need_doc_ids, &p, NULL))) return rc;
    v->doc_ids = p;
    if ((rc = get_tensor(m, "sample_ids", DT_U64, 1, b, 1, &p, NULL))) return rc;
    v->sample_ids = p;
    size_t n = (size_t)e->B * e->T;
    if ((rc = check_ids(m, "tokens", v->tokens, n, 0, e->vocab))) return rc;
    if ((rc = check_ids(m, "targets", v->targets, n, -1, e->vocab))) return rc;
    if (e->scored) {
        if ((rc = get_tensor(m, "topk_ids", DT_I32, 3, btk, 1, &p, &k))) return rc;
        v->topk_ids = p;
        if (k > e->vocab)
            return sushi_error(SUSHI_ESHAPE, "batch %llu: top-K width %lld above the vocabulary %d",
                               (unsigned long long)m->id, (long long)k, e->vocab);
        const int64_t btk2[3] = {e->B, e->T, k};
        if ((rc = get_tensor(m, "topk_logprobs", DT_F32, 3, btk2, 1, &p, NULL))) return rc;
        v->topk_logprobs = p;
        if ((rc = get_tensor(m, "tail_logprob", DT_F32, 2, bt, 1, &p, NULL))) return rc;
        v->tail_logprob = p;
        v->k = (int)k;
        if ((rc = check_ids(m, "topk_ids", v->topk_ids, n * (size_t)k, 0, e->vocab))) return rc;
    }
    return check_meta(m, e, v);
}
