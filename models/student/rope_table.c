/* RoPE cos/sin tables for the student: plain θ^(-2i/D) frequencies, or YaRN (SPEC §1):
 * frequencies blended between interpolated (÷factor) and original with a linear ramp
 * between the correction dims from beta_fast/beta_slow, and cos/sin multiplied by the
 * attention factor. Computed in double, stored f32 [max_seq, D/2]. The softmax scale
 * stays D^-0.5 (HF Llama YaRN puts the whole factor on cos/sin). */
#include <math.h>

#include "common/core/log.h"
#include "models/student/student.h"

/* the dim whose wavelength completes num_rot turns over max_pos positions */
static double yarn_correction_dim(double num_rot, int dim, double base, int max_pos) {
    return dim * log(max_pos / (num_rot * 2.0 * M_PI)) / (2.0 * log(base));
}

static double yarn_mscale(double scale, double m) {
    return scale <= 1.0 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

int student_rope_tables(const struct student_config *c, float *cos_t, float *sin_t) {
    if (!c || !cos_t || !sin_t) return sushi_error(SUSHI_EINVAL, "student_rope_tables: NULL argument");
    int D = c->d_head, half = D / 2;
    double base = c->rope_theta, attn = 1.0;
    const struct rope_scaling *y = &c->rope_scaling;
    double lo = 0, hi = 0;
    if (y->type == ROPE_SCALING_YARN) {
        lo = floor(yarn_correction_dim(y->beta_fast, D, base, y->original_max_position));
        hi = ceil(yarn_correction_dim(y->beta_slow, D, base, y->original_max_position));
        if (lo < 0) lo = 0;
        if (hi > D - 1) hi = D - 1;
        if (lo == hi) hi += 0.001;
        if (y->mscale != 0 && y->mscale_all_dim != 0)
            attn = yarn_mscale(y->factor, y->mscale) / yarn_mscale(y->factor, y->mscale_all_dim);
        else
            attn = yarn_mscale(y->factor, 1.0);
    }
    for (int i = 0; i < half; i++) {
        double inv = pow(base, -2.0 * i / D);
        if (y->type == ROPE_SCALING_YARN) {
            double ramp = (i - lo) / (hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            double extrap_w = 1.0 - ramp; /* high-frequency dims keep the original */
            inv = inv / y->factor * (1.0 - extrap_w) + inv * extrap_w;
        }
        for (int t = 0; t < c->max_seq; t++) {
            cos_t[(size_t)t * half + i] = (float)(cos(t * inv) * attn);
            sin_t[(size_t)t * half + i] = (float)(sin(t * inv) * attn);
        }
    }
    return 0;
}
