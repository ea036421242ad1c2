/* The student's configuration as plain JSON (the `model` section of a YAML config,
 * already converted to a jansson tree): JSON <-> struct student_config. No YAML here,
 * so models/ and the checkpoint code can use it. Unknown keys are refused by name. */
#ifndef SUSHI_CONFIG_STUDENT_H
#define SUSHI_CONFIG_STUDENT_H

#include <jansson.h>

#include "common/core/json_util.h"
#include "models/student/student.h"

/* Reads the object `model` (located at w for messages) into *out. Absent fields stay 0
 * (student_config_validate fills the defaults); *out is zeroed first. Keys:
 *   n_layers d_model n_heads n_kv_heads d_head d_ff vocab vocab_padded max_seq tied
 *   rope_theta norm_eps window doc_mask grad_checkpoint
 *   rope_scaling: {type: none|yarn, factor, original_max_position, beta_fast, beta_slow,
 *                  mscale, mscale_all_dim}
 *   encoders: {image, video_frames, patch_dim, grid_rows, grid_cols, audio_tokens, mel_bins,
 *              audio_stride, mesh_tokens, mesh_points, mesh_hidden}  (encoders.h; off when absent) */
int config_student_from_json(const json_t *model, struct ju_where w, struct student_config *out);
/* The same fields as a new JSON object (NULL on allocation failure). */
json_t *config_student_to_json(const struct student_config *c);

#endif
