/* Student checkpoints: a DIRECTORY in the HF Llama layout, so PyTorch/transformers can
 * open it, plus the training state:
 *
 *   model.safetensors       F32 parameters under HF names (no lm_head.weight when tied);
 *                           __metadata__ {"format": "pt", "sushi.config": <model JSON>}.
 *                           Reading also accepts HF shards (model.safetensors.index.json).
 *   config.json             HF LlamaConfig (model_type "llama") + a "sushi" object for
 *                           what HF lacks: {"vocab": real vocab, "window", "doc_mask",
 *                           "encoders" (model.encoders, only when a modality is on)}
 *                           Encoder weights (multimodal students) sit in the same files
 *                           under model.vision.* / video / audio / mesh / prefix names.
 *   optimizer.safetensors   (optional) AdamW moments, F32, NAME.exp_avg / NAME.exp_avg_sq
 *   trainer_state.json      (optional) the trainer's opaque key/value state
 *
 * Saving writes everything into DIR.tmp-XXXXXX, fsyncs it, then swaps it in: an old DIR
 * is renamed to DIR.old, the new one to DIR, DIR.old removed, the parent fsynced. If a
 * crash leaves only DIR.old, readers fall back to it (it is the last complete save).
 *
 * Architecture detection (checkpoint_read_config), from the files alone:
 *   1. config.json when present (HF Llama; both rope dialects: top-level rope_theta /
 *      rope_scaling, and transformers 5's rope_parameters);
 *   2. else the "sushi.config" metadata of model.safetensors (files sushi wrote);
 *   3. else tensor shapes: layers (count of model.layers.N), width and padded vocab
 *      (embed_tokens), FFN width (gate_proj), tied (no lm_head), kv width / q width.
 *      The head count cannot be inferred from shapes (q_proj is [H·D, C]): it comes
 *      from the caller's hint in *cfg (n_heads or d_head, when nonzero), else D = 64 is
 *      assumed (the Llama/SmolLM convention). max_seq, rope_theta and norm_eps take
 *      hints or the defaults 2048, 10000, 1e-5; the real vocab equals the padded one.
 *
 * Loading converts F32/BF16/F16/F64 tensors to f32 (e.g. SmolLM-135M's bf16 file);
 * optimizer moments must be F32. Every mismatch is refused with the file, the tensor
 * and the problem: missing, unexpected extra, wrong shape (expected vs actual), wrong
 * dtype, truncated or corrupt file. */
#ifndef SUSHI_CHECKPOINT_H
#define SUSHI_CHECKPOINT_H

#include <jansson.h>

#include "common/core/safetensors.h"
#include "models/student/student.h"

#define CKPT_MODEL_STEM "model"
#define CKPT_OPTIMIZER_STEM "optimizer"
#define CKPT_MODEL "model.safetensors"
#define CKPT_CONFIG "config.json"
#define CKPT_OPTIMIZER "optimizer.safetensors"
#define CKPT_STATE "trainer_state.json"
#define CKPT_META_CONFIG "sushi.config"

enum ckpt_source { CKPT_FROM_CONFIG_JSON = 0, CKPT_FROM_METADATA, CKPT_FROM_SHAPES };

/* The encoders' part of a multimodal student (model.encoders, encoders.h): f32 buffers of
 * encoder_param_count(&cfg->enc) elements laid out as the encoders lay them out, saved
 * under their HF names (encoder_param_views) into the same files as the text model. */
struct ckpt_encoder_bufs {
    float *params;
    float *m, *v;       /* AdamW moments: set exactly when the text model's are */
};

/* params, m, v: f32 buffers of student_param_count(cfg) elements in the model's layout.
 * m and v are both NULL (no optimizer state) or both set; state may be NULL. */
int checkpoint_save(const char *dir, const struct student_config *cfg, const float *params,
                    const float *m, const float *v, const json_t *state);
/* The same with the encoders' buffers e (NULL: text model only; a model with encoders
 * then saves no encoder tensors, and loading skips the file's encoder tensors). */
int checkpoint_save_enc(const char *dir, const struct student_config *cfg, const float *params,
                        const float *m, const float *v, const struct ckpt_encoder_bufs *e, const json_t *state);
int checkpoint_load_enc(const char *dir, const struct student_config *cfg, float *params, float *m,
                        float *v, const struct ckpt_encoder_bufs *e, json_t **state);
/* Detects and validates the architecture (see above). *cfg may carry hints (see above);
 * it is overwritten. *src (may be NULL) says where the answer came from. */
int checkpoint_read_config(const char *dir, struct student_config *cfg, enum ckpt_source *src);
/* Loads parameters (and, when m/v/state are non-NULL, the optimizer moments and the
 * trainer state, which must then exist) for the config checkpoint_read_config gave.
 * *state receives a new reference the caller json_decref()s. */
int checkpoint_load(const char *dir, const struct student_config *cfg, float *params, float *m,
                    float *v, json_t **state);

/* ---- config.json <-> struct student_config (checkpoint_config.c) ---- */
/* HF LlamaConfig JSON for cfg (new reference; NULL on allocation failure). */
json_t *checkpoint_hf_config(const struct student_config *cfg);
/* Reads an HF Llama config.json object; `file` names it in messages. Validates. */
int checkpoint_config_from_hf(const json_t *hf, const char *file, struct student_config *cfg);
/* Infers what tensor shapes tell (see above); *cfg holds hints on entry. Validates. */
int checkpoint_config_from_tensors(const struct st_set *f, struct student_config *cfg);
/* The directory to read: DIR, or DIR.old when only that survived an interrupted save.
 * Writes into buf (cap bytes). */
int checkpoint_resolve_dir(const char *dir, char *buf, size_t cap);

#endif
