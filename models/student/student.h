/* The student transformer (SPEC §3): pre-norm decoder with grouped-query attention,
 * RoPE, SwiGLU, RMSNorm, tied or untied LM head, explicit forward and backward.
 * Parameter names follow the HF Llama layout so checkpoints open in transformers. */
#ifndef SUSHI_STUDENT_H
#define SUSHI_STUDENT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

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

#endif
