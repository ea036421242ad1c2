/* libFuzzer target for the PNG/JPEG decoders (tests/fuzz/media.mk): the input is an
 * image file in memory. A decoded image must have a sane shape and must resize,
 * normalise and patchify without error. */
#include <stdint.h>
#include <stdlib.h>

#include "common/core/log.h"
#include "common/media/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) { log_set_level(LOG_QUIET); quiet = 1; }
    struct media_errors errs = {0};
    struct media_image img, small;
    if (media_image_decode(data, size, "fuzz", &img, &errs)) {
        if (media_errors_total(&errs) != 1 || img.data) abort();
        return 0;
    }
    if (img.h <= 0 || img.w <= 0 || img.c != 3 || !img.data) abort();
    if (media_image_resize(&img, 16, 16, (enum media_filter)(size % 2), &small)) abort();
    float norm[16 * 16 * 3], patches[16 * 16 * 3];
    if (media_image_normalize(&small, NULL, MEDIA_F32, norm)) abort();
    if (media_patchify(norm, 16, 16, 3, sizeof(float), 8, patches)) abort();
    media_image_free(&small);
    media_image_free(&img);
    return 0;
}
