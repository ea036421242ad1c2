/* Multimodal student encoders (SPEC §4 "Multimodal student"): image, video, audio and
 * mesh inputs → C-wide tokens that enter the student's sequence as a prefix
 * [begin | image | video | audio | mesh | end] before the text. Explicit forward and
 * backward through the op table, llm.c layout: all encoder parameters in one buffer with
 * HF-named views, gradients accumulate (+=), activation gradients overwrite.
 *
 * - image: patches (N, PD) (PD = P·P·C_in, patchified by the decoder) → linear → +
 *   row_embed[r] + col_embed[c] for patch n at (r, c) = (n / cols, n % cols).
 * - video: F frames, each the image path (same weights) + temporal_embed[f].
 * - audio: log-mel (A·S, mel_bins) → windows of S frames with stride S, i.e. a linear
 *   map of S·mel_bins → C per token (the frames of a window are contiguous rows) + pos.
 * - mesh: points (Pm, 6) xyz+normal → fc1 (6 → H) → SiLU → fc2 (H → C) per point → mean
 *   over M groups → + token_embed[g]. Groups are consecutive runs of the points sorted by
 *   their Morton (z-order) code: xyz normalised to the sample's bounding box per axis,
 *   quantised to 10 bits (floor(u·1023), in double), bits interleaved x, y, z from the
 *   top; ties keep the input order. Group g holds sorted points [g·Pm/M, (g+1)·Pm/M).
 *   Spatially close points share a token; the result does not depend on point order
 *   except through ties, and it is deterministic.
 * Shapes are fixed per model (the loader resizes, crops, pads), so the prefix length is
 * fixed: student_config.enc determines it (encoder_prefix_len). */
#ifndef SUSHI_ENCODERS_H
#define SUSHI_ENCODERS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

/* Encoder configuration: part of the student's config (`model.encoders`), all off by
 * default. d_model comes from the student. */
struct encoder_config {
    int d_model;        /* C (set from the student's d_model) */
    int image;          /* image path on */
    int video_frames;   /* F frames per clip; 0 = no video (video uses the image weights) */
    int patch_dim;      /* PD = P·P·C_in values of one flattened patch */
    int grid_rows;      /* patch rows per image */
    int grid_cols;      /* patch columns per image */
    int audio_tokens;   /* A tokens per clip; 0 = no audio */
    int mel_bins;       /* mel bins per frame (default 80) */
    int audio_stride;   /* S frames per token (window = stride) */
    int mesh_tokens;    /* M tokens per mesh; 0 = no mesh */
    int mesh_points;    /* Pm points per mesh (≥ M) */
    int mesh_hidden;    /* H, width of the per-point MLP */
};

/* 1 when any modality is on. */
int encoder_enabled(const struct encoder_config *c);
/* Fills defaults and checks the fields (messages name "model.encoders.FIELD"). */
int encoder_config_validate(struct encoder_config *c);
/* Prefix rows per sample: 2 boundary tokens + the tokens of each enabled modality;
 * 0 when no modality is on. */
int encoder_prefix_len(const struct encoder_config *c);

/* Parameter views (one buffer). Decayed matrices first, then biases, embeddings and
 * boundary tokens; disabled modalities take no space and have NULL views. */
struct encoder_params {
    void *patch_w;      /* (C, PD)   model.vision.patch_proj.weight */
    void *audio_w;      /* (C, S·mel) model.audio.proj.weight */
    void *mesh_w1;      /* (H, 6)    model.mesh.fc1.weight */
    void *mesh_w2;      /* (C, H)    model.mesh.fc2.weight */
    void *patch_b;      /* (C)       model.vision.patch_proj.bias */
    void *row_emb;      /* (R, C)    model.vision.row_embed.weight */
    void *col_emb;      /* (Cc, C)   model.vision.col_embed.weight */
    void *time_emb;     /* (F, C)    model.video.temporal_embed.weight */
    void *audio_b;      /* (C)       model.audio.proj.bias */
    void *audio_pos;    /* (A, C)    model.audio.pos_embed.weight */
    void *mesh_b1;      /* (H)       model.mesh.fc1.bias */
    void *mesh_b2;      /* (C)       model.mesh.fc2.bias */
    void *mesh_tok;     /* (M, C)    model.mesh.token_embed.weight */
    void *boundary;     /* (2, C)    model.prefix.boundary.weight: rows begin, end */
};

/* One "linear + learned positions" path (image, video, audio): rows of x are tokens. */
struct encoder_path {
    int rows;           /* tokens per sample */
    int in_dim;         /* values per token */
    void *x;            /* (B·rows, in_dim) act, the last forward's input */
    void *out;          /* (B·rows, C) act */
    void *dout;         /* (B·rows, C) act, filled by encoder_prefix_backward */
    int32_t *ids[3];    /* (B·rows) position ids into up to 3 tables (backend memory) */
};

struct encoder_mesh_acts {
    void *x;            /* (B·Pm, 6) act */
    void *h;            /* (B·Pm, 2H) fc1 pre-activation | ones (SiLU through swiglu) */
    void *a;            /* (B·Pm, H) SiLU(fc1) */
    void *y;            /* (B·Pm, C) fc2 output per point */
    void *pool;         /* (B, M, Pm) act, mean-pooling matrix of the last forward */
    void *out;          /* (B·M, C) act */
    void *dout;         /* (B·M, C) act */
    void *dy;           /* (B·Pm, C) */
    void *da;           /* (B·Pm, H) */
    void *dh;           /* (B·Pm, 2H) */
    int32_t *tok_ids;   /* (B·M) group index */
};

struct encoders {
    struct encoder_config cfg;
    const struct ops *ops;
    int B;                      /* samples per batch */
    size_t n_params, n_decay;   /* f32 elements; leading elements with weight decay */
    float *master;              /* (n_params) f32 master weights */
    void *wbuf, *gbuf;          /* act-dtype weights (== master on f32), gradients */
    struct encoder_params w, g; /* views into wbuf and gbuf */
    struct encoder_path image, video, audio;
    struct encoder_mesh_acts mesh;
    void *tmp;                  /* (max rows, C) act scratch for gathered embeddings */
    void *ones;                 /* (max rows) act, all 1 (bias as a rank-1 matmul) */
    int have_forward;
};

/* Host inputs of one batch, f32, NULL for a disabled modality. */
struct encoder_inputs {
    const float *image;  /* (B, R·Cc, PD) */
    const float *video;  /* (B, F, R·Cc, PD) */
    const float *audio;  /* (B, A·S, mel) log-mel frames */
    const float *mesh;   /* (B, Pm, 6) xyz, normal */
};

/* HF-named views (struct param_view, student.h) of a parameter buffer laid out as
 * `encoders` lays it out, in buffer order; returns the count (may exceed max: then only
 * max are written) or a negative error. The same type as student_param_views, so a
 * checkpoint can write both lists into one safetensors file. */
struct param_view;
int encoder_param_views(const struct encoder_config *c, float *base, struct param_view *out,
                        int max);
size_t encoder_param_count(const struct encoder_config *c);

/* Allocates encoders for batches of B samples; initialises weights from seed:
 * matrices normal(0, 0.02), biases 0, embeddings normal(0, 0.02). */
int encoders_create(struct encoders *e, const struct encoder_config *c, const struct ops *ops,
                    int B, uint64_t seed);
void encoders_free(struct encoders *e);
int encoders_sync_weights(struct encoders *e);
int encoders_zero_grad(struct encoders *e);

/* Per-modality forward into the path's `out`, backward from a (B·rows, C) act gradient;
 * dx (act, the input's shape) receives the input gradient when not NULL. */
int encoder_image_forward(struct encoders *e, const float *patches);
int encoder_image_backward(struct encoders *e, const void *dout, void *dx);
int encoder_video_forward(struct encoders *e, const float *frames);
int encoder_video_backward(struct encoders *e, const void *dout, void *dx);
int encoder_audio_forward(struct encoders *e, const float *mel);
int encoder_audio_backward(struct encoders *e, const void *dout, void *dx);
int encoder_mesh_forward(struct encoders *e, const float *points);
int encoder_mesh_backward(struct encoders *e, const void *dout, void *dx);

/* Morton grouping of one mesh (host): writes pool (M, Pm) with 1/|group| where point p
 * belongs to group g, 0 elsewhere. */
int encoder_mesh_pool_matrix(const float *points, int Pm, int M, float *pool);

/* All enabled encoders, then the prefix (B, P, C) act (backend memory) of
 * encoder_prefix_len rows per sample. */
int encoder_prefix_forward(struct encoders *e, const struct encoder_inputs *in, void *prefix);
/* From d(prefix) (B, P, C) act: accumulates every encoder parameter's gradient. */
int encoder_prefix_backward(struct encoders *e, const void *dprefix);

/* internals shared by the encoder files */
int encoder_layout(const struct encoder_config *c, void *base, size_t esz,
                   struct encoder_params *p, size_t *n_decay);
int encoder_upload_input(struct encoders *e, void *dst, const float *src, size_t n, const char *what);

#endif
