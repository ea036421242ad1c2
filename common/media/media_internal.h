/* Functions shared between the media library's files (not part of its API). */
#ifndef SUSHI_MEDIA_INTERNAL_H
#define SUSHI_MEDIA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/media/media.h"

/* Largest image accepted (pixels: 8192 x 8192), so sizes never overflow and a lying
 * header cannot make a decoder allocate gigabytes. */
#define MEDIA_MAX_PIXELS (1L << 26)
/* Largest decoded video (bytes of [N, 3, H, W]). */
#define MEDIA_MAX_VIDEO_BYTES (1L << 30)

int media_png_decode(const uint8_t *buf, size_t n, const char *name, struct media_image *out);
int media_jpeg_decode(const uint8_t *buf, size_t n, const char *name, struct media_image *out);

/* Resizes interleaved u8 RGB (src_stride bytes per row) into dst [dh, dw, 3]. */
int media_resize_rgb(const uint8_t *src, int sh, int sw, int src_stride, uint8_t *dst, int dh, int dw,
                     enum media_filter filter);

/* Text of an FFmpeg error code. */
const char *media_av_err(int err, char *buf, size_t cap);

#endif
