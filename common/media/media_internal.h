/* Functions shared between the media library's files (not part of its API). */
#ifndef SUSHI_MEDIA_INTERNAL_H
#define SUSHI_MEDIA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/media/media.h"

/* Largest image accepted (pixels), so that h * w * 3 and friends never overflow. */
#define MEDIA_MAX_PIXELS (1L << 28)

int media_png_decode(const uint8_t *buf, size_t n, const char *name, struct media_image *out);
int media_jpeg_decode(const uint8_t *buf, size_t n, const char *name, struct media_image *out);

/* Resizes interleaved u8 RGB (src_stride bytes per row) into dst [dh, dw, 3]. */
int media_resize_rgb(const uint8_t *src, int sh, int sw, int src_stride, uint8_t *dst, int dh, int dw,
                     enum media_filter filter);

/* Text of an FFmpeg error code. */
const char *media_av_err(int err, char *buf, size_t cap);

#endif
