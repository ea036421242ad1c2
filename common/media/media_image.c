/* Images: the decoder choice by file signature, normalisation to f32/f16 and
 * patchification into the student's [N, P*P*C] patch rows. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/core/dtype.h"
#include "common/core/log.h"
#include "common/media/media_internal.h"

const struct media_norm media_norm_clip = {
    .mean = {0.48145466f, 0.4578275f, 0.40821073f},
    .std = {0.26862954f, 0.26130258f, 0.27577711f},
};

int media_image_decode(const void *buf, size_t n, const char *name, struct media_image *out,
                       struct media_errors *errs)
{
    if (!out) return sushi_error(SUSHI_EINVAL, "media_image_decode: null output");
    memset(out, 0, sizeof *out);
    if (!name) name = "(buffer)";
    if (!buf && n) return media_errors_add(errs, MEDIA_IMAGE, sushi_error(SUSHI_EINVAL, "%s: null buffer", name));
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t *b = buf;
    int rc;
    if (n >= 8 && memcmp(b, png_sig, 8) == 0)
        rc = media_png_decode(b, n, name, out);
    else if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        rc = media_jpeg_decode(b, n, name, out);
    else if (n == 0)
        rc = sushi_error(SUSHI_EFORMAT, "%s: empty file", name);
    else
        rc = sushi_error(SUSHI_EUNSUPPORTED, "%s: not a PNG or JPEG file (unknown signature)", name);
    return media_errors_add(errs, MEDIA_IMAGE, rc);
}

int media_image_load(const char *path, struct media_image *out, struct media_errors *errs)
{
    if (!path || !out) return sushi_error(SUSHI_EINVAL, "media_image_load: null argument");
    memset(out, 0, sizeof *out);
    /* one read of the file's size into the thread's file buffer */
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return media_errors_add(errs, MEDIA_IMAGE, sushi_error(e == ENOENT ? SUSHI_ENOTFOUND : SUSHI_EIO,
                                                               "%s: cannot open: %s", path, strerror(e)));
    }
    struct stat st;
    int rc = 0;
    uint8_t *buf = NULL;
    size_t n = 0;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1L << 30))
        rc = sushi_error(SUSHI_EIO, "%s: not a regular file of at most 1 GiB", path);
    else if (!(buf = media_scratch_get(MEDIA_SCRATCH_FILE, (size_t)st.st_size + 1)))
        rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    else if ((n = fread(buf, 1, (size_t)st.st_size, f)) != (size_t)st.st_size)
        rc = sushi_error(SUSHI_EIO, "%s: read %zu of %lld bytes", path, n, (long long)st.st_size);
    fclose(f);
    if (!rc) rc = media_image_decode(buf, n, path, out, NULL);
    media_scratch_put(MEDIA_SCRATCH_FILE, buf);
    return media_errors_add(errs, MEDIA_IMAGE, rc);
}

void media_image_free(struct media_image *img)
{
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

static int image_check(const struct media_image *img, const char *what)
{
    if (!img || !img->data || img->h <= 0 || img->w <= 0 || img->c != 3)
        return sushi_error(SUSHI_EINVAL, "%s: expected a decoded RGB image", what);
    return 0;
}

int media_image_resize(const struct media_image *src, int h, int w, enum media_filter filter,
                       struct media_image *out)
{
    int rc = image_check(src, "media_image_resize");
    if (rc) return rc;
    if (!out || h <= 0 || w <= 0 || (int64_t)h * w > MEDIA_MAX_PIXELS)
        return sushi_error(SUSHI_EINVAL, "media_image_resize: bad output size %dx%d", w, h);
    memset(out, 0, sizeof *out);
    uint8_t *dst = malloc((size_t)h * w * 3);
    if (!dst) return sushi_error(SUSHI_ENOMEM, "media_image_resize: out of memory");
    rc = media_resize_rgb(src->data, src->h, src->w, src->w * 3, dst, h, w, filter);
    if (rc) {
        free(dst);
        return rc;
    }
    *out = (struct media_image){.h = h, .w = w, .c = 3, .data = dst};
    return 0;
}

int media_image_normalize(const struct media_image *img, const struct media_norm *norm,
                          enum media_float type, void *out)
{
    int rc = image_check(img, "media_image_normalize");
    if (rc) return rc;
    if (!out || (type != MEDIA_F32 && type != MEDIA_F16))
        return sushi_error(SUSHI_EINVAL, "media_image_normalize: bad output");
    if (!norm) norm = &media_norm_clip;
    float lut[3][256];   /* one table per channel: 768 divisions instead of h*w*3 */
    for (int c = 0; c < 3; c++) {
        if (!(norm->std[c] > 0))
            return sushi_error(SUSHI_EINVAL, "media_image_normalize: std[%d] = %g must be > 0", c, norm->std[c]);
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - norm->mean[c]) / norm->std[c];
    }
    size_t n = (size_t)img->h * img->w;
    if (type == MEDIA_F32) {
        float *o = out;
        for (size_t i = 0; i < n; i++)
            for (int c = 0; c < 3; c++) o[i * 3 + c] = lut[c][img->data[i * 3 + c]];
    } else {
        uint16_t hl[3][256], *o = out;
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 256; v++) hl[c][v] = f32_to_f16(lut[c][v]);
        for (size_t i = 0; i < n; i++)
            for (int c = 0; c < 3; c++) o[i * 3 + c] = hl[c][img->data[i * 3 + c]];
    }
    return 0;
}

int media_patchify(const void *in, int h, int w, int c, size_t elem_size, int p, void *out)
{
    if (!in || !out || h <= 0 || w <= 0 || c <= 0 || p <= 0 || !elem_size)
        return sushi_error(SUSHI_EINVAL, "media_patchify: bad arguments");
    if (h % p || w % p)
        return sushi_error(SUSHI_ESHAPE, "media_patchify: image %dx%d is not a multiple of the patch size %d",
                           w, h, p);
    const uint8_t *src = in;
    uint8_t *dst = out;
    size_t row = (size_t)p * c * elem_size;   /* one patch row: P pixels of C elements */
    for (int py = 0; py < h / p; py++)
        for (int px = 0; px < w / p; px++)
            for (int y = 0; y < p; y++) {
                memcpy(dst, src + (((size_t)(py * p + y) * w) + (size_t)px * p) * c * elem_size, row);
                dst += row;
            }
    return 0;
}
