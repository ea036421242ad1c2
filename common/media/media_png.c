/* PNG decoding with libpng into u8 RGB, matching PIL's Image.open().convert("RGB"):
 * palettes expanded, grey replicated, alpha and tRNS dropped, 16-bit samples cut to
 * their high byte, low bit depths scaled to 0..255. libpng reports errors by longjmp:
 * everything the jump may skip is held in volatile locals and freed at the landing.
 * Common files take the faster path of media_png_fast.c first. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/media/media_internal.h"

struct png_src {
    const uint8_t *p;
    size_t n, pos;
    char msg[200];     /* libpng's error message */
};

static void png_read_cb(png_structp png, png_bytep out, size_t len)
{
    struct png_src *s = png_get_io_ptr(png);
    if (len > s->n - s->pos) png_error(png, "truncated file");
    memcpy(out, s->p + s->pos, len);
    s->pos += len;
}

static void png_error_cb(png_structp png, png_const_charp msg)
{
    struct png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "error");
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

int media_png_decode(const uint8_t *buf, size_t n, const char *name, struct media_image *out)
{
    memset(out, 0, sizeof *out);
    if (media_png_fast(buf, n, out) == 0) return 0;
    memset(out, 0, sizeof *out);
    struct png_src src = {.p = buf, .n = n};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_error_cb, png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return sushi_error(SUSHI_ENOMEM, "%s: PNG: out of memory", name);
    }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile int code = SUSHI_EFORMAT;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return sushi_error(code, "%s: PNG: %s", name, src.msg);
    }
    png_set_read_fn(png, &src, png_read_cb);
    png_set_user_limits(png, 1 << 16, 1 << 16);
    png_set_chunk_malloc_max(png, 64u << 20);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if ((uint64_t)w * h > MEDIA_MAX_PIXELS) {
        code = SUSHI_EUNSUPPORTED;
        png_error(png, "image too large");
    }
    int type = png_get_color_type(png, info);
    if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) {
        png_set_expand_gray_1_2_4_to_8(png);
        png_set_gray_to_rgb(png);
    }
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3 || png_get_channels(png, info) != 3) {
        code = SUSHI_EUNSUPPORTED;
        png_error(png, "unexpected layout after conversion to RGB");
    }
    pixels = malloc((size_t)w * h * 3);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pixels || !rows) {
        code = SUSHI_ENOMEM;
        png_error(png, "out of memory");
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w * 3;
    png_read_image(png, rows);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->h = (int)h;
    out->w = (int)w;
    out->c = 3;
    out->data = pixels;
    return 0;
}
