/* libFuzzer target for video decoding (libavformat/libavcodec, frame sampling, RGB
 * conversion, resize; tests/fuzz/media.mk): the input is a video file. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <libavutil/log.h>

#include "common/core/log.h"
#include "common/media/media.h"
#include "fuzz_media_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        log_set_level(LOG_QUIET);
        av_log_set_level(AV_LOG_QUIET);
        quiet = 1;
    }
    const char *path = fuzz_media_file(data, size, ".video");
    struct media_video_opts o;
    media_video_defaults(&o);
    o.frames = 3;
    o.h = o.w = 32;
    struct media_errors errs = {0};
    struct media_video v;
    int rc = media_video_load(path, &o, &v, &errs);
    unlink(path);
    if (rc) {
        if (media_errors_total(&errs) != 1 || v.data) abort();
        return 0;
    }
    if (v.n != 3 || v.c != 3 || v.h != 32 || v.w != 32 || !v.data || !v.t) abort();
    media_video_free(&v);
    return 0;
}
