/* JPEG decoding with libjpeg-turbo into u8 RGB, with the library's defaults (islow
 * DCT, fancy upsampling) as PIL uses them, so results match PIL bit for bit. libjpeg
 * reports errors by longjmp; a premature end of data, which libjpeg only warns about
 * (and fills with grey), is an error here as it is in PIL. CMYK/YCCK are refused. */
#include <stdio.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "common/core/log.h"
#include "common/media/media_internal.h"

struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
};

static void jpeg_error_exit_cb(j_common_ptr cinfo)
{
    struct jpeg_err *e = (struct jpeg_err *)cinfo->err;
    e->mgr.format_message(cinfo, e->msg);
    longjmp(e->jump, 1);
}

static void jpeg_emit_cb(j_common_ptr cinfo, int level)
{
    struct jpeg_err *e = (struct jpeg_err *)cinfo->err;
    if (level == -1 && e->mgr.msg_code == JWRN_JPEG_EOF) {
        snprintf(e->msg, sizeof e->msg, "truncated file (premature end of data)");
        longjmp(e->jump, 1);
    }
}

static void jpeg_output_cb(j_common_ptr cinfo) { (void)cinfo; }

int media_jpeg_decode(const uint8_t *buf, size_t n, const char *name, struct media_image *out)
{
    memset(out, 0, sizeof *out);
    struct jpeg_decompress_struct cinfo;
    struct jpeg_err err;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_error_exit_cb;
    err.mgr.emit_message = jpeg_emit_cb;
    err.mgr.output_message = jpeg_output_cb;
    uint8_t *volatile pixels = NULL;
    volatile int code = SUSHI_EFORMAT;
    if (setjmp(err.jump)) {
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        return sushi_error(code, "%s: JPEG: %s", name, err.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        code = SUSHI_EUNSUPPORTED;
        snprintf(err.msg, sizeof err.msg, "CMYK/YCCK images are not supported");
        longjmp(err.jump, 1);
    }
    if ((uint64_t)cinfo.image_width * cinfo.image_height > MEDIA_MAX_PIXELS) {
        code = SUSHI_EUNSUPPORTED;
        snprintf(err.msg, sizeof err.msg, "image too large (%ux%u)", cinfo.image_width, cinfo.image_height);
        longjmp(err.jump, 1);
    }
    cinfo.out_color_space = JCS_EXT_RGB;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3) {
        code = SUSHI_EUNSUPPORTED;
        snprintf(err.msg, sizeof err.msg, "%d output components", cinfo.output_components);
        longjmp(err.jump, 1);
    }
    size_t stride = (size_t)cinfo.output_width * 3;
    pixels = malloc(stride * cinfo.output_height);
    if (!pixels) {
        code = SUSHI_ENOMEM;
        snprintf(err.msg, sizeof err.msg, "out of memory");
        longjmp(err.jump, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[4];
        int k = 0;
        for (; k < 4 && cinfo.output_scanline + k < cinfo.output_height; k++)
            rows[k] = pixels + (cinfo.output_scanline + k) * stride;
        jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)k);
    }
    /* no jpeg_finish_decompress: a missing EOI after complete image data is accepted */
    out->h = (int)cinfo.output_height;
    out->w = (int)cinfo.output_width;
    out->c = 3;
    out->data = pixels;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}
