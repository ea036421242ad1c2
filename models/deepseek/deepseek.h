/* The DeepSeek-V3 / V2 teacher (SPEC §1): config.json parsing, HF-layout checkpoint
 * loading (bf16/f16/f32, FP8 e4m3 with 128×128 block scales, shards), and the forward
 * pass — MLA with decoupled RoPE/YaRN and DeepSeekMoE — with a cache of the compressed
 * latent c and the rotated k_pe, for scoring and generation. Heavy math goes through
 * the op table (kernels/ops.h). Where HF transformers and the original DeepSeek code
 * differ, this follows HF transformers 5.x. */
#ifndef SUSHI_DEEPSEEK_H
#define SUSHI_DEEPSEEK_H

#include <jansson.h>
#include <stdint.h>

#include "kernels/ops.h"

enum ds_family { DS_V2 = 2, DS_V3 = 3 };
enum ds_scoring { DS_SIGMOID = 0, DS_SOFTMAX = 1 };
enum ds_topk_method { DS_NOAUX_TC = 0, DS_GREEDY = 1, DS_GROUP_LIMITED_GREEDY = 2 };

struct ds_yarn {
    int on;                 /* rope_type yarn */
    double factor;          /* as written in config.json */
    double freq_factor;     /* max_position/original_max_position when the latter is given */
    int original_max_pos;
    int original_given;     /* original_max_position_embeddings was in the file */
    int attention_factor_given;
    double beta_fast, beta_slow, mscale, mscale_all_dim;
    double attention_factor;/* multiplies cos/sin */
};

struct ds_config {
    enum ds_family family;
    int vocab, C, F, F_moe, L, H;
    int q_lora;             /* 0: plain q_proj */
    int kv_lora, nope, rope, dv;
    int n_routed, n_shared, top_k, n_group, topk_group;
    float routed_scale;
    int norm_topk;
    enum ds_scoring scoring;
    enum ds_topk_method topk_method;
    int first_dense, moe_freq;
    float eps;
    double rope_theta;
    struct ds_yarn yarn;
    int max_pos;
    int interleave;         /* RoPE on pairs (2i, 2i+1) */
    int tied;
    int fp8;                /* quantization_config fp8 e4m3, 128×128 blocks */
    float attn_scale;       /* (nope+rope)^-0.5, times mscale² for V3 YaRN */
};

/* Parses DIR/config.json (either RoPE dialect). Unsupported values are refused by name. */
int ds_config_load(struct ds_config *c, const char *dir);
int ds_config_parse(struct ds_config *c, const json_t *root, const char *where);
/* Layer l uses MoE (l ≥ first_k_dense_replace and l % moe_layer_freq == 0). */
int ds_layer_is_moe(const struct ds_config *c, int l);

/* One SwiGLU MLP: gu (2F, C) = [gate; up], down (C, F). */
struct ds_mlp {
    void *gu;
    void *down;
    int F;
};

struct ds_layer {
    void *in_norm, *post_norm;  /* (C) */
    void *q_a;                  /* (q_lora, C) */
    void *q_a_norm;             /* (q_lora) */
    void *q_b;                  /* (H·(nope+rope), q_lora); q_proj when q_lora = 0: (H·(nope+rope), C) */
    void *kv_a;                 /* (kv_lora + rope, C) */
    void *kv_a_norm;            /* (kv_lora) */
    void *kv_b;                 /* (H·(nope+dv), kv_lora) */
    void *o;                    /* (C, H·dv) */
    int moe;
    struct ds_mlp dense;        /* when !moe */
    void *router;               /* (E, C) */
    float *router_bias;         /* (E) host, e_score_correction_bias (V3) */
    struct ds_mlp *experts;     /* [E] */
    void *experts_gu, *experts_down; /* (E, 2F, C), (E, C, F) when stored fused; experts[] view them */
    struct ds_mlp shared;       /* F = F_moe · n_shared; gu == NULL when none */
};

/* Per-sequence cache: latent c after kv_a_layernorm and rotated k_pe, per layer. */
struct ds_cache {
    int len, cap;
    void **c;                   /* [L] (cap, kv_lora) */
    void **kpe;                 /* [L] (cap, rope) */
};

struct ds_model {
    struct ds_config cfg;
    const struct ops *ops;
    void *embed;                /* (V, C) */
    void *final_norm;           /* (C) */
    void *head;                 /* (V, C), == embed when tied */
    struct ds_layer *layers;    /* [L] */
    int max_seq;                /* positions the RoPE table and the cache hold */
    float *rope_cos, *rope_sin; /* (max_seq, rope/2) backend memory */
    void *eye;                  /* (rope, rope) identity, broadcasts k_pe to every head */
    size_t n_params;            /* loaded parameters (elements) */
};

/* Loads DIR (config.json + model.safetensors or its index + shards). Every tensor is
 * checked by name, dtype and shape; FP8 weights are dequantised tensor by tensor into
 * the backend's activation dtype. Tensors of layers ≥ num_hidden_layers (V3's
 * multi-token-prediction module) are skipped; any other unknown tensor is an error. */
int ds_load(struct ds_model *m, const char *dir, const struct ops *ops, int max_seq);
void ds_free(struct ds_model *m);

/* FP8 e4m3 [rows, cols] with f32 scale_inv [⌈rows/128⌉, ⌈cols/128⌉] -> f32 */
int ds_fp8_dequant(float *dst, const uint8_t *src, const float *scale_inv, int64_t rows,
                   int64_t cols);

int ds_cache_init(struct ds_cache *k, const struct ds_model *m);
void ds_cache_reset(struct ds_cache *k);
void ds_cache_free(struct ds_cache *k, const struct ds_model *m);

/* Runs n new tokens at positions cache->len … cache->len + n − 1, appends them to the
 * cache and writes host f32 logits (n, V). */
int ds_forward(struct ds_model *m, struct ds_cache *k, const int32_t *ids, int n, float *logits);

/* MLA for n new rows x (n, C) -> out (n, C); mla.c */
int ds_mla_forward(struct ds_model *m, int l, struct ds_cache *k, const void *x, int n, void *out);
/* DeepSeekMoE or dense MLP for n rows x (n, C) -> out (n, C); moe.c */
int ds_ffn_forward(struct ds_model *m, int l, const void *x, int n, void *out);
/* Backward of one layer's MLA / FFN for one sequence from position 0 (recomputing the
 * forward from x): parameter gradients accumulate into g (a ds_layer of gradients with
 * the weights' layout, from ds_layer_grads_init), dx (n, C) is overwritten.
 * mla_backward.c / moe.c */
int ds_mla_backward(struct ds_model *m, int l, const void *x, int n, const void *dout, struct ds_layer *g, void *dx);
int ds_ffn_backward(struct ds_model *m, int l, const void *x, int n, const void *dout, struct ds_layer *g, void *dx);
int ds_layer_grads_init(const struct ds_model *m, int l, struct ds_layer *g);
void ds_layer_grads_free(const struct ds_model *m, struct ds_layer *g);
/* Router: host x (n, C) logits (n, E) -> chosen experts (n, top_k) and weights; moe.c */
int ds_route(const struct ds_config *c, const float *router_bias, const float *logits, int n,
             int32_t *experts, float *weights);

/* Top-K of one row of logits z (V) at temperature T (SPEC §1): ids by descending z,
 * logprobs = log_softmax(z/T) there, *tail = logsumexp over the other ids of z/T minus
 * logsumexp over all. */
int ds_topk(const float *z, int V, int K, float T, int32_t *ids, float *logprobs, float *tail);

/* Writes the model to DIR in the HF layout (config.json with rope_parameters,
 * model.safetensors in f32, one tensor per expert), readable by ds_load and by HF
 * transformers' DeepseekV3/V2ForCausalLM. save.c */
int ds_save(const struct ds_model *m, const char *dir);

/* Describes a DeepSeek checkpoint for `sushi inspect` (layers, experts, total and
 * active parameters, dtypes). */
int deepseek_describe(const char *dir, json_t *out);

/* ---- training a DeepSeek-style model (train*.c) -----------------------------------
 * The trainer can train a (small) DeepSeek model, e.g. the teacher the default pipeline
 * needs when no teacher checkpoint is configured. All parameters live in one f32 master
 * buffer (matrices first: weight decay applies to the first n_decay elements), the
 * compute weights in one act-dtype buffer and the gradients in another, with the
 * ds_model / ds_layer pointers viewing into the compute weights, so models/optim.c
 * updates them in one call. Batches are B rows of T tokens; each document segment of a
 * row (doc_ids; NULL = one segment per row) is its own sequence from position 0, as the
 * teacher scores it. */
struct ds_train {
    struct ds_model m;          /* weights view into wbuf; max_seq = T */
    int B, T;
    size_t n_params, n_decay;
    float *master;              /* (n_params) f32 */
    void *wbuf;                 /* (n_params) act dtype (== master on f32 backends) */
    void *gbuf;                 /* (n_params) act dtype, accumulates */
    struct ds_layer *g;         /* [L] gradient views into gbuf */
    void *g_embed, *g_final_norm, *g_head;
    struct ds_train_state *st;  /* activations and scratch (train.c) */
    float loss_scale;           /* the loss gradient is multiplied by this (dynamic loss
                                 * scaling, optim_loss_scale); 0 counts as 1 */
};

/* Creates a model of config c (c->vocab etc.; fp8 must be 0) with weights from `seed`:
 * matrices normal(0, 0.02), o_proj/down_proj scaled by 1/sqrt(2L), norms 1, router
 * bias 0. Loads weights from dir instead when dir != NULL (an HF DeepSeek checkpoint
 * whose config must equal c, e.g. one ds_train_save wrote). */
int ds_train_create(struct ds_train *t, const struct ds_config *c, const struct ops *ops, int B, int T,
                    uint64_t seed, const char *dir);
void ds_train_free(struct ds_train *t);
/* ids, targets (< 0 ignored), doc_ids (may be NULL) host (B, T); teacher top-K as in
 * student.h's struct student_teacher semantics (may be NULL: cross-entropy only):
 * mean loss over rows with a target, dlogits kept for backward. */
struct student_teacher;
struct student_loss_cfg;
int ds_train_forward(struct ds_train *t, const int32_t *ids, const int32_t *targets, const int32_t *doc_ids,
                     const struct student_teacher *teacher, const struct student_loss_cfg *lc, float *loss);
/* The logits (B·T, V) of ids (doc_ids as above) into host f32 memory: the training
 * forward without the loss (checks, evaluation); a following backward is refused. */
int ds_train_logits(struct ds_train *t, const int32_t *ids, const int32_t *doc_ids, float *logits);
/* Accumulates (+=) parameter gradients of the last forward's loss into gbuf. */
int ds_train_backward(struct ds_train *t);
int ds_train_zero_grad(struct ds_train *t);
/* Copies master into the compute weights (after loading or editing master). */
int ds_train_sync_weights(struct ds_train *t);
/* Writes the weights as an HF DeepSeek checkpoint (ds_save's layout, f32, from master)
 * plus, when m/v are given, optimizer.safetensors (f32 moments, same names +
 * .exp_avg / .exp_avg_sq) and trainer_state.json (state), atomically like the student's
 * checkpoint_save (fs_dir_stage / fs_dir_publish). m and v are HOST f32 arrays of
 * n_params in the layout (copies of struct optim's moments). */
int ds_train_save(const struct ds_train *t, const char *dir, const float *m, const float *v, const json_t *state);
/* Loads master weights (and the compute copy; and the host moments m/v and the state
 * when non-NULL, which must then exist) from DIR (or the DIR.old an interrupted save
 * left): any HF DeepSeek checkpoint ds_load reads whose config equals t's (refused
 * naming the first differing field), e.g. one ds_train_save wrote. Router biases come
 * from the file. *state is a new reference. */
int ds_train_load(struct ds_train *t, const char *dir, float *m, float *v, json_t **state);
/* The `model` section of a training YAML with arch: deepseek (fields of config.json:
 * vocab_size, hidden_size, ...) -> config; names the field in errors. The shape fields
 * are required (HF's defaults are the 671B model); q_lora_rank 0/absent = plain q_proj,
 * n_group / topk_group default 1, model_type deepseek_v3; unknown keys are refused.
 * train_config.c */
int ds_config_from_train_json(struct ds_config *c, const json_t *model, const char *file);

/* internals shared by train*.c: the trainable tensors of a model in the one-buffer
 * layout (matrices first, then the norms), by HF name. A gate/up pair shares its
 * ds_mlp.gu buffer: the up slot has off = F·C. */
struct ds_slot {
    char name[96];
    void **p;           /* the ds_model / ds_layer field that points at the tensor */
    size_t off;         /* elements from *p */
    int64_t rows, cols; /* cols 0: a vector */
    int resid;          /* writes into the residual stream (o_proj, down_proj) */
};
/* The slots of m (layers and experts arrays allocated, e.g. by ds_train_skeleton);
 * *out is malloc'd; returns the count or a negative error; *n_matrices = slots before
 * the first norm. */
int ds_train_slots(struct ds_model *m, struct ds_slot **out, int *n_matrices);
/* Allocates m's layers (and experts) arrays for config c, with router_bias when
 * with_bias; no tensors. ds_train_skeleton_free undoes it. */
int ds_train_skeleton(struct ds_model *m, const struct ds_config *c, const struct ops *ops, int with_bias);
void ds_train_skeleton_free(struct ds_model *m, int with_bias);
/* Points m's tensors into base (element size es) in the layout; n (total elements) and
 * n_decay (the matrices) may be NULL; base NULL only counts. */
int ds_train_layout(struct ds_model *m, void *base, size_t es, size_t *n, size_t *n_decay);
/* The RoPE cos/sin tables and the k_pe identity for m->max_seq positions (load.c). */
int ds_rope_tables(struct ds_model *m);
/* Field-by-field comparison; names the first differing config.json field in a message
 * prefixed with `where`. */
int ds_config_equal(const struct ds_config *a, const struct ds_config *b, const char *where);

/* ---- batched scoring (score.c) ----------------------------------------------------
 * The teacher's top-K output (SPEC §1) of a whole [B,T] batch in one forward: the
 * embedding, the norms, the FFN / MoE and the LM head run over every real position at
 * once, MLA per sequence (each document segment, or each row cut at its length, from
 * position 0), and the top-K runs on the backend (ops->topk), so only (N,K) ids and
 * log-probabilities and (N) tails come back to the host. Scratch is kept in the scorer
 * and reused across batches (it grows to the largest batch seen). */
typedef int (*ds_score_tick_fn)(void *ctx);
struct ds_scorer {
    struct ds_model *m;
    int rows, K;                /* capacity of the row buffers (real positions) and of K */
    int chunk;                  /* rows per LM-head / top-K chunk (may be lowered between calls) */
    struct ds_cache kc;         /* one sequence's MLA cache */
    int32_t *ids;               /* (rows) backend */
    void *x, *xn, *d;           /* (rows, C) act: residual stream, norm output, block output */
    float *rstd;                /* (rows) backend */
    void *logits;               /* (chunk, V) act */
    int32_t *top;               /* (rows, K) backend */
    float *lp, *tail;           /* (rows, K), (rows) backend */
    int32_t *h_ids, *h_top;     /* host copies: (rows), (rows, K) */
    float *h_lp, *h_tail;       /* (rows, K), (rows) */
    int *seg_start, *seg_len;   /* (rows) host: compacted first row and length of each sequence */
    ds_score_tick_fn tick;      /* called between layers and sequences; nonzero stops scoring */
    void *tick_ctx;
};
/* Binds s to m (nothing allocated yet: buffers grow on the first batches). */
int ds_scorer_init(struct ds_scorer *s, struct ds_model *m);
void ds_scorer_free(struct ds_scorer *s);
/* Scores tokens [B,T] (host): positions t < lengths[b] (lengths NULL = T) are real, each
 * run of equal doc_ids (NULL = the whole row) is one sequence from position 0; writes
 * host ids [B,T,K] by descending logit, logprobs [B,T,K] = log_softmax(z/temp) there and
 * tail [B,T] (log of the mass outside the K; −inf when K = V). Padding positions get ids
 * −1, logprobs 0, tail 0. A nonzero return of s->tick stops scoring and is returned. */
int ds_score_batch(struct ds_scorer *s, const int32_t *tokens, const int32_t *lengths, const int32_t *doc_ids, int B,
                   int T, int K, float temp, int32_t *ids, float *logprobs, float *tail);

#endif
