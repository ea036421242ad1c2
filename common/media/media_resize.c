/* Image resizing with libswscale, made to follow PIL's Image.resize: the RGB image is
 * split into three planes scaled as GRAY8 (no colour-space round trip, no chroma
 * subsampling), with swscale's area-scaled (antialiasing) bilinear or bicubic filters;
 * bicubic uses B = 0, C = 0.5, PIL's a = -0.5 kernel. Each thread keeps one cached
 * scaler context (sws_getCachedContext, in a pthread key freed at thread exit), so
 * repeated resizes to one size reuse it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libswscale/swscale.h>

#include "common/core/log.h"
#include "common/media/media_internal.h"

/* one scaler per thread, freed when the thread exits */
static pthread_key_t g_sws_key;
static pthread_once_t g_sws_once = PTHREAD_ONCE_INIT;
static void sws_key_free(void *ctx) { sws_freeContext(ctx); }
static void sws_key_init(void) { (void)pthread_key_create(&g_sws_key, sws_key_free); }

int media_resize_rgb(const uint8_t *src, int sh, int sw, int src_stride, uint8_t *dst, int dh, int dw,
                     enum media_filter filter)
{
    if (!src || !dst || sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0 || src_stride < sw * 3)
        return sushi_error(SUSHI_EINVAL, "media_resize: bad arguments");
    if (filter != MEDIA_BILINEAR && filter != MEDIA_BICUBIC)
        return sushi_error(SUSHI_EINVAL, "media_resize: unknown filter %d", (int)filter);
    if (sh == dh && sw == dw) {
        for (int y = 0; y < sh; y++) memcpy(dst + (size_t)y * dw * 3, src + (size_t)y * src_stride, (size_t)sw * 3);
        return 0;
    }
    double bicubic[2] = {0.0, 0.5};
    int flags = (filter == MEDIA_BICUBIC ? SWS_BICUBIC : SWS_BILINEAR) | SWS_ACCURATE_RND;
    pthread_once(&g_sws_once, sws_key_init);
    struct SwsContext *sws = pthread_getspecific(g_sws_key);
    sws = sws_getCachedContext(sws, sw, sh, AV_PIX_FMT_GRAY8, dw, dh, AV_PIX_FMT_GRAY8, flags, NULL, NULL,
                                 filter == MEDIA_BICUBIC ? bicubic : NULL);
    pthread_setspecific(g_sws_key, sws);
    if (!sws) return sushi_error(SUSHI_EBACKEND, "media_resize: swscale refused %dx%d -> %dx%d", sw, sh, dw, dh);
    /* planes padded to 32-byte rows: swscale's SIMD paths read a little past a row */
    int ss = (sw + 31) & ~31, ds = (dw + 31) & ~31;
    uint8_t *buf = media_scratch_get(MEDIA_SCRATCH_PLANES, (size_t)ss * sh * 3 + (size_t)ds * dh * 3 + 64);
    if (!buf) return sushi_error(SUSHI_ENOMEM, "media_resize: out of memory");
    uint8_t *sp[3], *dp[3];
    for (int c = 0; c < 3; c++) {
        sp[c] = buf + (size_t)c * ss * sh;
        dp[c] = buf + (size_t)3 * ss * sh + (size_t)c * ds * dh;
    }
    for (int y = 0; y < sh; y++) {
        const uint8_t *row = src + (size_t)y * src_stride;
        uint8_t *r = sp[0] + (size_t)y * ss, *g = sp[1] + (size_t)y * ss, *b = sp[2] + (size_t)y * ss;
        for (int x = 0; x < sw; x++) {
            r[x] = row[3 * x];
            g[x] = row[3 * x + 1];
            b[x] = row[3 * x + 2];
        }
    }
    int rc = 0;
    for (int c = 0; c < 3 && !rc; c++) {
        const uint8_t *in[1] = {sp[c]};
        uint8_t *outp[1] = {dp[c]};
        int is[1] = {ss}, os[1] = {ds};
        if (sws_scale(sws, in, is, 0, sh, outp, os) != dh)
            rc = sushi_error(SUSHI_EBACKEND, "media_resize: swscale failed on %dx%d -> %dx%d", sw, sh, dw, dh);
    }
    for (int y = 0; y < dh && !rc; y++) {
        uint8_t *row = dst + (size_t)y * dw * 3;
        const uint8_t *r = dp[0] + (size_t)y * ds, *g = dp[1] + (size_t)y * ds, *b = dp[2] + (size_t)y * ds;
        for (int x = 0; x < dw; x++) {
            row[3 * x] = r[x];
            row[3 * x + 1] = g[x];
            row[3 * x + 2] = b[x];
        }
    }
    media_scratch_put(MEDIA_SCRATCH_PLANES, buf);
    return rc;
}
