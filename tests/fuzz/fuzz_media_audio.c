/* libFuzzer target for audio decoding (libsndfile) and resampling to 16 kHz plus the
 * log-mel spectrogram (tests/fuzz/media.mk): the input is an audio file. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/core/log.h"
#include "common/media/media.h"
#include "fuzz_media_file.h"

/* libsndfile's Ogg/Vorbis reader leaks its vorbis_info on some corrupt streams
 * (inside libvorbis/libsndfile, not this code): not reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:vorbis_info_init\n"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) { log_set_level(LOG_QUIET); quiet = 1; }
    const char *path = fuzz_media_file(data, size, ".audio");
    struct media_errors errs = {0};
    struct media_audio a;
    int rc = media_audio_load(path, MEDIA_AUDIO_RATE, &a, &errs);
    unlink(path);
    if (rc) {
        if (media_errors_total(&errs) != 1 || a.data) abort();
        return 0;
    }
    if (a.rate != MEDIA_AUDIO_RATE || a.n <= 0 || !a.data) abort();
    if (a.n <= 16000 * 2) {   /* mel of short clips only: keep each run fast */
        struct media_mel m;
        if (media_mel_compute(&a, NULL, &m)) abort();
        if (m.n_frames != 1 + a.n / 160) abort();
        for (size_t i = 0; i < (size_t)m.n_mels * m.n_frames; i++)
            if (!(m.data[i] >= -10.0f) && !isnan(m.data[i])) abort();
        media_mel_free(&m);
    }
    media_audio_free(&a);
    return 0;
}
