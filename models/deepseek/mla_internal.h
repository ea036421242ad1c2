/* MLA internals shared by the forward (mla.c) and the backward (backward.c): the
 * scratch of one call and the pass up to the attention output. */
#ifndef SUSHI_DS_MLA_INTERNAL_H
#define SUSHI_DS_MLA_INTERNAL_H

#include "models/deepseek/deepseek.h"

struct mla_scratch {
    void *qa;       /* (n, q_lora) */
    void *qa_n;     /* (n, q_lora) */
    void *craw;     /* (n, kv_lora) */
    void *q;        /* (S, H, dqk), rows < start zero */
    void *k;        /* (S, H, dqk) */
    void *v;        /* (S, H, dv) */
    void *att;      /* (S, H, dv) */
    float *lse;     /* (H, S) f32 */
    float *rstd;    /* (n) f32 */
    int32_t *pos;   /* (n) */
};

void mla_scratch_free(const struct ops *ops, struct mla_scratch *s);
int mla_scratch_alloc(const struct ds_model *m, int n, int S, struct mla_scratch *s);
/* y (n, out) = x (n, in) · W (out, in)ᵀ, y rows ldy apart (0 = dense) */
int mla_linear(const struct ops *ops, void *y, const void *x, const void *w, int n, int out, int in, int ldy);
/* q, c and k_pe into the cache, k, v, attention output (S, H, dv) in *s (allocated here,
 * freed by the caller with mla_scratch_free, or here on failure) */
int mla_attend(const struct ds_model *m, int l, struct ds_cache *kc, const void *x, int n, struct mla_scratch *s);

#endif
