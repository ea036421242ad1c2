/* The fused distillation loss on the CPU (SPEC §2; struct loss_args in kernels/ops.h).
 * One task per row range; per row, with two vocab-sized exp rows in per-thread scratch:
 *   1. max m of the logits over the real vocabulary;
 *   2. e1 = exp(s − m) and Σ (CE), eT = exp((s − m)/T) and its sums over all ids and over
 *      the ids outside the teacher's top-K (the student's tail bucket, summed directly,
 *      never 1 − Σ), Σ s (smoothing);
 *   3. dlogits = grad_scale·((1−α)(softmax − y′) + α·(q_v/T)(g_b(v) − Σ_b q_b g_b)),
 * where q_b is the student's mass in bucket b at temperature T and g_b = ∂kd/∂q_b:
 * −T²p_b/q_b (forward KL), T²(log q_b − log p_b + 1) (reverse KL), T²(1−β)log(q_b/m_b)
 * (JSD). Pass 3 writes every id as a tail id, then adds the top-K ids' own term. A
 * per-thread map vocab → bucket + 1 (all-zero between rows) refuses repeated top-K ids. */
#include <math.h>

#include "common/core/log.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/cpu_math.h"

#define LOSS_SLOT_E1 0       /* exp(s − max), vocab values */
#define LOSS_SLOT_ET 1       /* exp((s − max)/T), vocab values */
#define LOSS_SLOT_GRAD 2     /* g_b (K + 1 values), then K saved eT values */
#define LOSS_SLOT_MAP 3      /* top-K map, vocab values */

struct loss_ctx {
    float *loss, *ce, *kd, *d;
    const float *s;
    const int32_t *y;
    const struct loss_args *a;
    int rc, bad_row;         /* duplicate top-K id, or scratch failure (atomic stores) */
};

/* this bucket's term of the divergence (without T²), 0·log 0 = 0 */
static double loss_bucket_term(enum kd_mode mode, double beta, double lq, double lp) {
    double p = exp(lp), q = exp(lq);
    if (mode == KD_FORWARD) return p > 0.0 ? p * (lp - lq) : 0.0;
    if (mode == KD_REVERSE) return q > 0.0 ? q * (lq - lp) : 0.0;
    double lm = log(beta * p + (1.0 - beta) * q);
    return (p > 0.0 ? beta * p * (lp - lm) : 0.0) + (q > 0.0 ? (1.0 - beta) * q * (lq - lm) : 0.0);
}

/* g_b = ∂kd/∂q_b */
static double loss_bucket_grad(enum kd_mode mode, double T2, double beta, double lq, double lp) {
    if (mode == KD_FORWARD) return lp == -INFINITY ? 0.0 : -T2 * exp(lp - lq);
    if (mode == KD_REVERSE) return T2 * (lq - lp + 1.0);
    double q = exp(lq), m = beta * exp(lp) + (1.0 - beta) * q;
    return T2 * (1.0 - beta) * (lq - log(m));
}

static void loss_row(struct loss_ctx *c, size_t n, float *map, float *g, float *e1, float *eT) {
    const struct loss_args *a = c->a;
    const int V = a->vocab, K = a->k, y = c->y[n];
    const float *s = c->s + n * a->vocab_padded;
    float *d = c->d + n * a->vocab_padded;
    if (y < 0) {
        for (int v = 0; v < a->vocab_padded; v++) d[v] = 0.0f;
        if (c->loss) c->loss[n] = 0.0f;
        if (c->ce) c->ce[n] = 0.0f;
        if (c->kd) c->kd[n] = 0.0f;
        return;
    }
    const int32_t *ids = K ? a->topk_ids + n * K : NULL;
    for (int b = 0; b < K; b++) {
        if (map[ids[b]] != 0.0f) {
            for (int j = 0; j < b; j++) map[ids[j]] = 0.0f;
            __atomic_store_n(&c->bad_row, (int)n, __ATOMIC_RELAXED);
            __atomic_store_n(&c->rc, SUSHI_EINVAL, __ATOMIC_RELAXED);
            return;
        }
        map[ids[b]] = (float)(b + 1);
    }

    /* passes 1 and 2: e1 = exp(s − m), eT = exp((s − m)/T), in the thread's scratch */
    const float m = cpu_vmax(s, (size_t)V);
    const float invT = K ? 1.0f / a->temperature : 1.0f;
    const double sum1 = cpu_vexp_sum(e1, s, (size_t)V, m, 1.0f), sums = cpu_vsum(s, (size_t)V);
    double sumT = 0.0, tailT = 0.0;
    if (K) {
        cpu_vexp_sum(eT, s, (size_t)V, m, invT);
        for (int b = 0; b < K; b++) {   /* the tail is summed directly over the other ids */
            g[K + 1 + b] = eT[ids[b]];
            eT[ids[b]] = 0.0f;
        }
        tailT = cpu_vsum(eT, (size_t)V);
        sumT = tailT;
        for (int b = 0; b < K; b++) {
            eT[ids[b]] = g[K + 1 + b];
            sumT += eT[ids[b]];
        }
    }
    const double lse1 = m + log(sum1), lseT = (double)m * invT + log(sumT);
    const double eps = a->smoothing;
    const double ce = lse1 - (1.0 - eps) * s[y] - eps / V * sums;

    double kd = 0.0, gbar = 0.0;
    if (K) {
        const double T2 = (double)a->temperature * a->temperature, lseTail = (double)m * invT + log(tailT);
        for (int b = 0; b <= K; b++) {
            double lq = b < K ? (double)s[ids[b]] * invT - lseT : lseTail - lseT;
            double lp = b < K ? a->topk_logprobs[n * K + b] : a->tail_logprob[n];
            kd += loss_bucket_term(a->mode, a->jsd_beta, lq, lp);
            double gb = loss_bucket_grad(a->mode, T2, a->jsd_beta, lq, lp), q = exp(lq);
            g[b] = (float)gb;
            if (q > 0.0) gbar += q * gb;
        }
        kd *= T2;
    }
    if (c->loss) c->loss[n] = (float)(a->alpha * kd + (1.0 - a->alpha) * ce);
    if (c->ce) c->ce[n] = (float)ce;
    if (c->kd) c->kd[n] = (float)kd;

    /* pass 3 reads only e1/eT, so dlogits may alias logits: every id first as a tail id,
     * then the top-K ids' own bucket weight and the target's one-hot */
    const float wce = a->grad_scale * (1.0f - a->alpha), wkd = a->grad_scale * a->alpha;
    const float kq = (float)(wkd * invT / sumT);
    cpu_vlin2(d, e1, (float)(wce / sum1), K ? eT : NULL, K ? kq * (g[K] - (float)gbar) : 0.0f,
              (float)(-wce * eps / V), (size_t)V);
    for (int b = 0; b < K; b++) d[ids[b]] += kq * eT[ids[b]] * (g[b] - g[K]);
    d[y] -= wce * (float)(1.0 - eps);
    for (int v = V; v < a->vocab_padded; v++) d[v] = 0.0f;
    for (int b = 0; b < K; b++) map[ids[b]] = 0.0f;
}

static void loss_range(void *p, size_t r0, size_t r1, int thread) {
    struct loss_ctx *c = p;
    float *map = c->a->k ? cpu_scratch(thread, LOSS_SLOT_MAP, (size_t)c->a->vocab) : NULL;
    float *g = cpu_scratch(thread, LOSS_SLOT_GRAD, 2 * (size_t)c->a->k + 1);
    float *e1 = cpu_scratch(thread, LOSS_SLOT_E1, (size_t)c->a->vocab);
    float *eT = c->a->k ? cpu_scratch(thread, LOSS_SLOT_ET, (size_t)c->a->vocab) : NULL;
    if ((c->a->k && (!map || !eT)) || !g || !e1) {
        __atomic_store_n(&c->rc, SUSHI_ENOMEM, __ATOMIC_RELAXED);
        return;
    }
    for (size_t n = r0; n < r1 && !__atomic_load_n(&c->rc, __ATOMIC_RELAXED); n++) loss_row(c, n, map, g, e1, eT);
}

int cpu_loss_forward_backward(float *loss, float *ce, float *kd, void *dlogits,
                              const void *logits, const int32_t *targets,
                              const struct loss_args *a) {
    if (!a || !dlogits || !logits || !targets) return sushi_error(SUSHI_EINVAL, "cpu: loss: NULL pointer");
    if (a->N < 0 || a->vocab <= 0 || a->vocab_padded < a->vocab)
        return sushi_error(SUSHI_ESHAPE, "cpu: loss: bad shape N=%d vocab=%d vocab_padded=%d", a->N,
                           a->vocab, a->vocab_padded);
    if (a->k < 0 || a->k >= a->vocab)
        return sushi_error(SUSHI_ESHAPE, "cpu: loss: top-K width %d outside [0, vocab=%d)", a->k, a->vocab);
    if (a->k && (!a->topk_ids || !a->topk_logprobs || !a->tail_logprob))
        return sushi_error(SUSHI_EINVAL, "cpu: loss: top-K %d without teacher ids/logprobs/tail", a->k);
    if (a->k && !(a->temperature > 0.0f))
        return sushi_error(SUSHI_EINVAL, "cpu: loss: temperature %g must be > 0", a->temperature);
    if (!(a->smoothing >= 0.0f && a->smoothing < 1.0f))
        return sushi_error(SUSHI_EINVAL, "cpu: loss: smoothing %g outside [0, 1)", a->smoothing);
    if (!(a->alpha >= 0.0f && a->alpha <= 1.0f))
        return sushi_error(SUSHI_EINVAL, "cpu: loss: alpha %g outside [0, 1]", a->alpha);
    if (a->mode != KD_FORWARD && a->mode != KD_REVERSE && a->mode != KD_JSD)
        return sushi_error(SUSHI_EINVAL, "cpu: loss: unknown kd mode %d", (int)a->mode);
    if (a->k && a->mode == KD_JSD && !(a->jsd_beta >= 0.0f && a->jsd_beta <= 1.0f))
        return sushi_error(SUSHI_EINVAL, "cpu: loss: JSD beta %g outside [0, 1]", a->jsd_beta);
    for (int n = 0; n < a->N; n++) {
        if (targets[n] >= a->vocab)
            return sushi_error(SUSHI_EINVAL, "cpu: loss: row %d target %d outside the vocabulary (%d)", n,
                               targets[n], a->vocab);
        for (int b = 0; b < a->k; b++) {
            int32_t id = a->topk_ids[(size_t)n * a->k + b];
            if (id < 0 || id >= a->vocab)
                return sushi_error(SUSHI_EINVAL, "cpu: loss: row %d top-K id %d outside [0, %d)", n, id,
                                   a->vocab);
        }
    }
    struct loss_ctx c = {loss, ce, kd, dlogits, logits, targets, a, 0, -1};
    cpu_parallel_for((size_t)a->N, 1, loss_range, &c);
    if (c.rc == SUSHI_EINVAL)
        return sushi_error(SUSHI_EINVAL, "cpu: loss: row %d has a repeated top-K id", c.bad_row);
    if (c.rc) return sushi_error(c.rc, "cpu: loss: scratch for vocab %d: out of memory", a->vocab);
    return 0;
}
