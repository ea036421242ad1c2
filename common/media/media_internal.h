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

/* 0: decoded; 1: not a file for the fast path (libpng decodes it instead) */
int media_png_fast(const uint8_t *buf, size_t n, struct media_image *out);
int media_png_decode(const uint8_t *buf, size_t n, const char *name, struct media_image *out);
int media_jpeg_decode(const uint8_t *buf, size_t n, const char *name, struct media_image *out);

/* Resizes interleaved u8 RGB (src_stride bytes per row) into dst [dh, dw, 3]. */
int media_resize_rgb(const uint8_t *src, int sh, int sw, int src_stride, uint8_t *dst, int dh, int dw,
                     enum media_filter filter);

/* Per-thread scratch buffers (media_scratch.c): get a buffer of n bytes for a slot,
 * give it back with put (which frees it only when it was not the cached one). A slot
 * is used by one function at a time on a thread. */
enum {
    MEDIA_SCRATCH_FILE = 0, MEDIA_SCRATCH_ZLIB, MEDIA_SCRATCH_ROWS, MEDIA_SCRATCH_PLANES, MEDIA_SCRATCH_FRAME,
    MEDIA_SCRATCH_SLOTS
};
void *media_scratch_get(int slot, size_t n);
void media_scratch_put(int slot, void *p);

/* Text of an FFmpeg error code. */
const char *media_av_err(int err, char *buf, size_t cap);

#endif
