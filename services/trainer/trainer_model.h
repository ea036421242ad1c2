/* The model the trainer trains, behind one interface so the training loop has one code
 * path: the student (models/student) or a DeepSeek model (ds_train_*). Both keep their
 * parameters in one f32 master buffer, act-dtype compute weights and gradients, which
 * optim_step updates in one call. Checkpoints carry weights, AdamW moments and the
 * trainer's state object (trainer_state.json).
 *
 * A student with model.encoders (multimodal) also owns the encoders (encoders.h): each
 * forward takes the batch's encoder inputs, runs the prefix, then the student with it;
 * backward runs the student then the encoders; one AdamW step (trainer_model_step)
 * covers both buffers with one global gradient norm; the optimizer's moments are
 * [student | encoders]; checkpoints carry the encoder weights and moments too. */
#ifndef SUSHI_TRAINER_MODEL_H
#define SUSHI_TRAINER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "models/deepseek/deepseek.h"
#include "models/optim.h"
#include "models/student/student.h"
#include "services/trainer/train_config.h"

struct trainer_model {
    enum train_arch arch;
    const struct ops *ops;
    int B, T;
    int vocab;               /* real vocabulary: ids and targets must be below it */
    int doc_mask;            /* forward gets doc_ids */
    size_t n_params, n_decay;
    float *master;           /* (n_params) f32, backend memory */
    void *wbuf, *gbuf;       /* compute weights, gradients (act dtype) */
    struct student_model student;
    struct ds_train ds;
    /* multimodal student: n_params = n_student + enc.n_params */
    int has_enc;
    size_t n_student;
    struct encoders enc;
    void *prefix, *dprefix;  /* (B, P, C) act */
};

const char *trainer_arch_name(enum train_arch a);   /* "llama" | "deepseek" */

/* Creates the configured model for (B, T) batches on ops, initialised from tc->seed. */
int trainer_model_create(struct trainer_model *m, const struct train_config *tc, const struct ops *ops,
                         int B, int T);
void trainer_model_free(struct trainer_model *m);
/* Host (B, T) ids / targets / doc_ids (doc_ids ignored unless doc_mask); teacher NULL:
 * cross-entropy only. Mean loss over rows with a target; dlogits kept for backward. */
int trainer_model_forward(struct trainer_model *m, const int32_t *ids, const int32_t *targets,
                          const int32_t *doc_ids, const struct student_teacher *teacher,
                          const struct student_loss_cfg *lc, float *loss);
/* The same with the encoders' inputs of the batch (required when m->has_enc, else NULL). */
int trainer_model_forward_mm(struct trainer_model *m, const struct encoder_inputs *in, const int32_t *ids,
                             const int32_t *targets, const int32_t *doc_ids, const struct student_teacher *teacher,
                             const struct student_loss_cfg *lc, float *loss);
int trainer_model_backward(struct trainer_model *m);
/* One optimizer step over every parameter buffer (o sized for m->n_params): 0,
 * OPTIM_SKIPPED (dynamic loss scaling skipped it) or an error. */
int trainer_model_step(struct trainer_model *m, struct optim *o);
/* train.freeze_layers: the embedding (with a tied head, the head too) and the first n
 * transformer blocks are excluded from o's updates and its clipping norm (optim_freeze):
 * their weights stay bit-identical. Student only. */
int trainer_model_freeze(struct trainer_model *m, struct optim *o, int n);
/* train.init_from: weights only from the checkpoint in dir (the optimizer, schedule and
 * trainer state stay fresh). Encoder tensors the checkpoint has under the same name and
 * shape are taken (an image stage's vision weights carry into a mesh stage); the rest,
 * and all of them after a text-only checkpoint, stay freshly initialised (logged); a
 * checkpoint's encoders are dropped when this model has none. The text architecture
 * (layers, widths, heads, vocabulary, tying) must match. */
int trainer_model_init_from(struct trainer_model *m, const char *dir);
int trainer_model_zero_grad(struct trainer_model *m);
/* Writes weights, o's moments and `state` to dir atomically. */
int trainer_model_save(struct trainer_model *m, const struct optim *o, const char *dir, const json_t *state);
/* Loads weights and o's moments from dir; *state gets the trainer state (new ref). The
 * model must be the checkpoint's, except that a text-only checkpoint may be loaded into
 * a model with encoders: they keep their fresh weights, with zero moments (logged). */
int trainer_model_load(struct trainer_model *m, struct optim *o, const char *dir, json_t **state);
/* 1 when dir (or the dir.old an interrupted save left) holds a checkpoint. */
int trainer_checkpoint_exists(const char *dir);

#endif
