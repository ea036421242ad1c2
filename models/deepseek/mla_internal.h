/* MLA internals shared by the forward (mla.c, mla_absorb.c) and the backward
 * (mla_backward.c): the scratch of one call, the projections of the new rows and the
 * pass up to the attention output. */
#ifndef SUSHI_DS_MLA_INTERNAL_H
#define SUSHI_DS_MLA_INTERNAL_H

#include "models/deepseek/deepseek.h"

/* Decoding steps of at most this many new tokens after a cached prefix use the absorbed
 * form (unless SUSHI_MLA says otherwise). */
#define MLA_ABSORB_MAX_NEW 8

/* The rows part (n) always; the positions part (S) only for the expanded form. */
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
/* S = 0: only the rows part (qa, qa_n, craw, rstd, pos) */
int mla_scratch_alloc(const struct ds_model *m, int n, int S, struct mla_scratch *s);
/* y (n, out) = x (n, in) · W (out, in)ᵀ, y rows ldy apart (0 = dense) */
int mla_linear(const struct ops *ops, void *y, const void *x, const void *w, int n, int out, int in, int ldy);
/* The n new rows at positions kc->len …: queries q (n, H, nope+rope) with q_pe rotated,
 * and the normalised latent c and rotated k_pe appended to layer l of the cache (kc->len
 * is not advanced). Uses the rows part of s (s->rstd ends as kv_a_layernorm's). */
int mla_project(const struct ds_model *m, int l, struct ds_cache *kc, const void *x, int n,
                const struct mla_scratch *s, void *q);
/* q, c and k_pe into the cache, k, v, attention output (S, H, dv) in *s (allocated here,
 * freed by the caller with mla_scratch_free, or here on failure) */
int mla_attend(const struct ds_model *m, int l, struct ds_cache *kc, const void *x, int n, struct mla_scratch *s);

/* The absorbed form for n new rows x (n, C) -> out (n, C), o_proj included: attends to
 * the cached latents directly (kv_b folded into the queries and the output); same
 * result as the expanded form. mla_absorb.c */
int mla_absorbed_forward(const struct ds_model *m, int l, struct ds_cache *kc, const void *x, int n, void *out);

#endif
