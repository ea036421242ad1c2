/* The failure counter that media decoders update (struct media_errors) and the
 * modality names, and FFmpeg error texts. */
#include <stdio.h>

#include <libavutil/error.h>

#include "common/media/media_internal.h"

const char *media_kind_name(enum media_kind kind)
{
    static const char *names[MEDIA_NKINDS] = {"image", "audio", "video", "mesh"};
    return (unsigned)kind < MEDIA_NKINDS ? names[kind] : "?";
}

int media_errors_add(struct media_errors *errs, enum media_kind kind, int rc)
{
    if (!errs || rc >= 0) return rc;
    if ((unsigned)kind < MEDIA_NKINDS) atomic_fetch_add(&errs->by_kind[kind], 1);
    int cause = -rc;
    if (cause >= MEDIA_NCAUSES) cause = 0;   /* slot 0: codes without a slot of their own */
    atomic_fetch_add(&errs->by_cause[cause], 1);
    return rc;
}

long media_errors_total(const struct media_errors *errs)
{
    if (!errs) return 0;
    long n = 0;
    for (int k = 0; k < MEDIA_NKINDS; k++) n += atomic_load(&errs->by_kind[k]);
    return n;
}

const char *media_av_err(int err, char *buf, size_t cap)
{
    if (av_strerror(err, buf, cap) < 0) snprintf(buf, cap, "error %d", err);
    return buf;
}
