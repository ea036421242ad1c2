/* Held-out metrics from host logits (SPEC §5): cross-entropy (perplexity = exp of its
 * mean over target positions), top-1 agreement with the teacher (argmax equality at the
 * same positions) and the forward KL divergence KL(teacher ‖ model) at temperature 1. */
#include <math.h>

#include "common/core/log.h"
#include "services/eval/eval.h"

void eval_log_softmax(float *x, int N, int V) {
    for (int n = 0; n < N; n++) {
        float *r = x + (size_t)n * V;
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) if (r[v] > mx) mx = r[v];
        for (int v = 0; v < V; v++) s += exp((double)r[v] - mx);
        double lse = mx + log(s);
        for (int v = 0; v < V; v++) r[v] = (float)((double)r[v] - lse);
    }
}

int32_t eval_argmax(const float *x, int V) {
    int32_t best = 0;
    for (int v = 1; v < V; v++) if (x[v] > x[best]) best = v;
    return best;
}

int eval_sums_add(struct eval_sums *s, const float *lp, const float *tlp, const int32_t *targets,
                  int N, int V) {
    if (!s || !lp || !targets || N < 0 || V < 1) return sushi_error(SUSHI_EINVAL, "eval_sums_add: bad argument");
    for (int n = 0; n < N; n++) {
        int32_t t = targets[n];
        if (t < 0) continue;
        if (t >= V) return sushi_error(SUSHI_EINVAL, "eval: target %d at row %d outside the vocabulary %d", t, n, V);
        const float *r = lp + (size_t)n * V;
        s->ce -= r[t];
        s->n++;
        if (!tlp) continue;
        const float *q = tlp + (size_t)n * V;
        s->agree += eval_argmax(r, V) == eval_argmax(q, V);
        double kl = 0;
        for (int v = 0; v < V; v++) {
            double p = exp((double)q[v]);
            if (p > 0) kl += p * ((double)q[v] - (double)r[v]);
        }
        s->kd += kl;
    }
    return 0;
}
