/* A batch's modality tensors → the encoders' inputs (encoders.h). The loader sends, for
 * the N ≤ B rows that have a modality (tensors absent when N = 0):
 *   image [N,3,H,W] u8 + image_row [N] i32      audio_mel [N,frames,bins] f16 + audio_row
 *   video [N,F,3,H,W] u8 + video_row            mesh_points [N,P,6] f32 + mesh_row
 * Pixels are normalised ((x/255 − mean[c]) / std[c]) and patchified into (R·Cc, PD)
 * patches in raster order, each patch row-major (py, px, c) (common/media's
 * media_patchify layout; a local copy keeps the trainer free of the media decoders).
 * Rows without a modality get zeros. Tensors of a modality the model has no encoder for
 * are ignored. Shapes must match model.encoders exactly. */
#ifndef SUSHI_TRAINER_MM_INPUTS_H
#define SUSHI_TRAINER_MM_INPUTS_H

#include "common/wire/wire.h"
#include "models/student/encoders.h"

struct mm_inputs {
    struct encoder_config cfg;
    int B;
    float mean[3], std[3];
    float *image, *video, *audio, *mesh;   /* host buffers of the enabled modalities */
    struct encoder_inputs in;              /* views of the above */
};

int mm_inputs_init(struct mm_inputs *x, const struct encoder_config *c, int B, const float mean[3],
                   const float std[3]);
void mm_inputs_free(struct mm_inputs *x);
/* Fills x from m's tensors (checked; messages name the batch and tensor). */
int mm_inputs_fill(struct mm_inputs *x, const struct wire_msg *m);
/* Patch side P from patch_dim = P·P·3 (0 when not a square RGB patch). */
int mm_patch_side(const struct encoder_config *c);
/* One [3,H,W] u8 image → (H/P·W/P, P·P·3) f32 normalised patches. */
void mm_patchify_chw(const uint8_t *img, int H, int W, int P, const float mean[3], const float std[3], float *out);

#endif
