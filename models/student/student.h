/* The student transformer (SPEC §3): pre-norm decoder with grouped-query attention,
 * RoPE, SwiGLU, RMSNorm, tied or untied LM head, explicit forward and backward.
 * Parameter names follow the HF Llama layout so checkpoints open in transformers. */
#ifndef SUSHI_STUDENT_H
#define SUSHI_STUDENT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "models/student/encoders.h"

enum rope_scaling_type { ROPE_SCALING_NONE = 0, ROPE_SCALING_YARN = 1 };

struct rope_scaling {
    enum rope_scaling_type type;
    float factor;
    int original_max_position;
    float beta_fast, beta_slow;
    float mscale, mscale_all_dim;
};

struct student_config {
    int n_layers;
    int d_model;        /* C */
    int n_heads;        /* H */
    int n_kv_heads;     /* G, divides H */
    int d_head;         /* D (default C/H) */
    int d_ff;           /* F, SwiGLU hidden width */
    int vocab;          /* real vocabulary (tokenizer's) */
    int vocab_padded;   /* rows of the embedding / LM head (≥ vocab) */
    int max_seq;        /* T */
    int tied;           /* LM head shares the embedding */
    float rope_theta;
    struct rope_scaling rope_scaling;
    float norm_eps;
    int window;         /* sliding window W, 0 = full causal */
    int doc_mask;       /* attend within a document only; RoPE positions restart */
    int grad_checkpoint;/* recompute each block in backward */
    struct encoder_config enc; /* multimodal prefix encoders (model.encoders), all off by
                                  default; when on, each sample's sequence is
                                  [prefix (encoder_prefix_len rows) | text (T rows)] */
};

/* A named parameter tensor in HF layout: a view into the model's one f32 buffer. */
struct param_view {
    char name[96];      /* e.g. "model.layers.3.self_attn.q_proj.weight" */
    float *data;
    int ndim;
    int64_t shape[2];
    size_t numel;
};

/* Fills defaults for absent fields and checks consistency; message names the field. */
int student_config_validate(struct student_config *c);
/* Total parameters (the tied embedding once). */
size_t student_param_count(const struct student_config *c);
/* The HF-named views of a parameter buffer laid out as the model lays it out; returns
 * the number of views (≤ max), or a negative error. */
int student_param_views(const struct student_config *c, float *base, struct param_view *out,
                        int max);


/* ---- the model: parameters, gradients, activations (llm.c layout) ----------------- */

/* Views into the one parameter buffer. Matrices come first (weight decay applies to
 * them), norm weights last. L layers, C width, H heads, G kv heads, D head dim,
 * F ffn width, Vp padded vocabulary, QKV = (H+2G)·D. */
struct student_params {
    void *wte;      /* (Vp, C)  embedding (= LM head when tied) */
    void *qkvw;     /* (L, QKV, C) rows: q (H·D), k (G·D), v (G·D) */
    void *ow;       /* (L, C, H·D) */
    void *fcw;      /* (L, 2F, C) rows: gate (F), up (F) */
    void *downw;    /* (L, C, F) */
    void *lmw;      /* (Vp, C) untied LM head, NULL when tied */
    void *ln1w;     /* (L, C) */
    void *ln2w;     /* (L, C) */
    void *lnfw;     /* (C) */
};

/* Activations saved by forward for backward. With grad_checkpoint only `resid` keeps
 * all layers; the per-layer fields hold one layer (slot 0) and backward recomputes. */
struct student_acts {
    void *resid;      /* (L+1, N, C) input of each block; resid[L] feeds the final norm */
    void *ln1;        /* (S, N, C) S = L or 1 (checkpointing) */
    float *ln1_rstd;  /* (S, N) */
    void *qkv;        /* (S, N, QKV) q and k after RoPE */
    void *atty;       /* (S, N, H·D) attention output */
    float *lse;       /* (S, B, H, T) */
    void *resid2;     /* (S, N, C) after attention residual */
    void *ln2;        /* (S, N, C) */
    float *ln2_rstd;  /* (S, N) */
    void *fch;        /* (S, N, 2F) gate|up pre-activation */
    void *fcsw;       /* (S, N, F) silu(gate)·up */
    void *lnf;        /* (N, C) */
    float *lnf_rstd;  /* (N) */
    void *logits;     /* (N, Vp); forward overwrites it with dlogits */
    float *row_loss;  /* (N) host */
    /* backward scratch */
    void *dresid;     /* (N, C) gradient flowing down the residual stream */
    void *dtmp;       /* (N, C) */
    void *dln;        /* (N, C) */
    void *dqkv;       /* (N, QKV) */
    void *datty;      /* (N, H·D) */
    void *dfch;       /* (N, 2F) */
    void *dfcsw;      /* (N, F) */
};

/* Block l's views into the activations: its input in resid and the per-block buffers of
 * slot `slot` (= l, or 0 when checkpointing keeps one block's worth). */
struct block_acts {
    void *x;          /* (N, C) block input */
    void *ln1;        /* (N, C) */
    float *rstd1;     /* (N) */
    void *qkv;        /* (N, QKV) */
    void *atty;       /* (N, H·D) */
    float *lse;       /* (B, H, T) */
    void *x2;         /* (N, C) after the attention residual */
    void *ln2;        /* (N, C) */
    float *rstd2;     /* (N) */
    void *fch;        /* (N, 2F) */
    void *fcsw;       /* (N, F) */
};

/* Index inputs in backend memory. */
struct student_inputs {
    int32_t *ids;      /* (B, T) */
    int32_t *targets;  /* (B, T) */
    int32_t *doc_ids;  /* (B, T) */
    int32_t *pos;      /* (B, T) RoPE positions (restart per document) */
    int32_t *topk_ids; /* (N, K) */
    float *topk_logprobs; /* (N, K) */
    float *tail_logprob;  /* (N) */
    int k_alloc;
};

struct student_model {
    struct student_config cfg;
    const struct ops *ops;
    int B, T;                   /* batch shape: B samples of T text tokens */
    int P;                      /* prefix rows per sample (0 without encoders) */
    int S;                      /* sequence rows per sample, P + T: what the blocks see */
    size_t n_params;            /* f32 elements of master / grads */
    size_t n_decay;             /* leading elements that receive weight decay */
    float *master;              /* (n_params) f32 master weights */
    void *wbuf;                 /* act-dtype weights used in compute (== master on f32) */
    void *gbuf;                 /* (n_params) act-dtype gradients, accumulate */
    struct student_params w, g; /* views into wbuf and gbuf */
    struct student_acts a;
    struct student_inputs in;
    float *rope_cos, *rope_sin; /* (max_seq, D/2) backend memory */
    int have_doc_ids;           /* the last forward used doc_ids */
    int n_valid;                /* rows with a target in the last forward */
    int have_dlogits;           /* a forward ran since the last backward */
    float last_loss;            /* unscaled */
    float loss_scale;           /* the loss gradient is multiplied by this (dynamic loss
                                 * scaling, optim_loss_scale); 0 counts as 1 */
};

/* The teacher's top-K outputs for a batch (host memory), and how to mix the losses. */
struct student_loss_cfg {
    float smoothing;      /* label smoothing ε */
    float alpha;          /* KD weight (ignored without a teacher) */
    enum kd_mode mode;
    float temperature;
    float jsd_beta;
};
struct student_teacher {
    int k;                        /* top-K width */
    const int32_t *topk_ids;      /* (B·T, K) */
    const float *topk_logprobs;   /* (B·T, K) */
    const float *tail_logprob;    /* (B·T) */
};

/* Allocates a model for batches of B sequences of T ≤ max_seq tokens on `ops`; the
 * weights are initialised from `seed` (student_init). */
int student_create(struct student_model *m, const struct student_config *c,
                   const struct ops *ops, int B, int T, uint64_t seed);
void student_free(struct student_model *m);
/* Deterministic init: matrices normal(0, 0.02); o_proj and down_proj (the projections
 * that write into the residual stream) scaled by 1/sqrt(2·L) as in GPT-2; norms 1. */
int student_init(struct student_model *m, uint64_t seed);
/* Copies master weights into the compute weights (after editing `master`). */
int student_sync_weights(struct student_model *m);
/* ids, targets (target < 0: ignored), doc_ids (NULL unless doc masking) are host (B,T).
 * teacher may be NULL. Computes the mean loss over rows with a target into *loss and
 * leaves dlogits (scaled for that mean) ready for student_backward. */
int student_forward(struct student_model *m, const int32_t *ids, const int32_t *targets,
                    const int32_t *doc_ids, const struct student_teacher *teacher,
                    const struct student_loss_cfg *lc, float *loss);
/* The same with a modality prefix: prefix (B, P, C) act in backend memory (from
 * encoder_prefix_forward), P = m->P > 0. Sequence row s of sample b is prefix row s for
 * s < P and text token s − P after; RoPE positions count from the prefix start, so the
 * text's positions are P..P+T−1. ids, targets and the teacher's top-K stay (B, T) text
 * only, aligned one to one with the teacher's text-only positions: the loss covers the
 * text rows alone. doc_ids must be NULL (document masking is not combined with a prefix).
 * With P = 0 it is student_forward (prefix must then be NULL). */
int student_forward_prefix(struct student_model *m, const void *prefix, const int32_t *ids,
                           const int32_t *targets, const int32_t *doc_ids,
                           const struct student_teacher *teacher,
                           const struct student_loss_cfg *lc, float *loss);
/* Accumulates parameter gradients (+=) of the last forward's mean loss. */
int student_backward(struct student_model *m);
/* The same, writing d(loss)/d(prefix) (B, P, C) act into dprefix (overwrite) when not
 * NULL, for encoder_prefix_backward. */
int student_backward_prefix(struct student_model *m, void *dprefix);
int student_zero_grad(struct student_model *m);

/* internals shared by the model's files */
int student_layout(const struct student_config *c, void *base, size_t esz,
                   struct student_params *p, size_t *n_decay);
int student_rope_tables(const struct student_config *c, float *cos_t, float *sin_t);
int student_block_forward(struct student_model *m, int l, int slot);
void student_block_acts(const struct student_model *m, int l, int slot, struct block_acts *v);
void student_attn_shape(const struct student_model *m, struct attn_shape *s);
void student_rope_shape(const struct student_model *m, int which, struct rope_shape *r);

#endif
