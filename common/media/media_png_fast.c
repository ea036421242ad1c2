/* A fast path for the common PNGs: non-interlaced, 8 bits per sample. The chunks are
 * walked here (every CRC checked), the concatenated IDAT stream is inflated with
 * libdeflate (about twice zlib's speed; Adler-32 checked) and the rows unfiltered and
 * converted to RGB here. Anything else, and any file that is not clean (bad CRC, short
 * or long image data, unknown critical chunk), returns 1 so that libpng decodes it and
 * gives its verdict: results and errors are libpng's, only faster. */
#include <libdeflate.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/media/media_internal.h"

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* one decompressor per thread, freed at thread exit */
static pthread_key_t g_inflate_key;
static pthread_once_t g_inflate_once = PTHREAD_ONCE_INIT;
static void inflate_key_free(void *d) { libdeflate_free_decompressor(d); }
static void inflate_key_init(void) { (void)pthread_key_create(&g_inflate_key, inflate_key_free); }

static struct libdeflate_decompressor *thread_inflater(void)
{
    pthread_once(&g_inflate_once, inflate_key_init);
    struct libdeflate_decompressor *d = pthread_getspecific(g_inflate_key);
    if (!d && (d = libdeflate_alloc_decompressor())) pthread_setspecific(g_inflate_key, d);
    return d;
}

static inline uint8_t paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

/* undoes the filter of one row in place (prior: the previous unfiltered row or zeros) */
static int unfilter_row(int type, uint8_t *row, const uint8_t *prior, size_t len, int bpp)
{
    size_t i;
    switch (type) {
    case 0: return 0;
    case 1:
        for (i = (size_t)bpp; i < len; i++) row[i] = (uint8_t)(row[i] + row[i - bpp]);
        return 0;
    case 2:
        for (i = 0; i < len; i++) row[i] = (uint8_t)(row[i] + prior[i]);
        return 0;
    case 3:
        for (i = 0; i < (size_t)bpp; i++) row[i] = (uint8_t)(row[i] + (prior[i] >> 1));
        for (; i < len; i++) row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prior[i]) >> 1));
        return 0;
    case 4:
        for (i = 0; i < (size_t)bpp; i++) row[i] = (uint8_t)(row[i] + prior[i]);
        for (; i < len; i++) row[i] = (uint8_t)(row[i] + paeth(row[i - bpp], prior[i], prior[i - bpp]));
        return 0;
    default: return -1;
    }
}

int media_png_fast(const uint8_t *buf, size_t n, struct media_image *out)
{
    if (n < 8 + 25 || be32(buf + 8) != 13 || memcmp(buf + 12, "IHDR", 4)) return 1;
    const uint8_t *ihdr = buf + 16;
    uint32_t w = be32(ihdr), h = be32(ihdr + 4);
    int depth = ihdr[8], type = ihdr[9], interlace = ihdr[12];
    static const int chans[7] = {1, 0, 3, 1, 2, 0, 4};
    if (depth != 8 || type > 6 || !chans[type] || interlace || ihdr[10] || ihdr[11] || !w || !h ||
        (uint64_t)w * h > MEDIA_MAX_PIXELS)
        return 1;
    int bpp = chans[type];
    size_t stride = (size_t)w * bpp;
    const uint8_t *plte = NULL;
    uint32_t nplte = 0;
    /* walk the chunks: CRCs, the palette, the IDAT total */
    size_t pos = 8, idat = 0;
    int seen_idat = 0, ended = 0;
    while (pos + 12 <= n) {
        uint32_t len = be32(buf + pos);
        const uint8_t *tag = buf + pos + 4;
        if (len > n - pos - 12) return 1;
        if (libdeflate_crc32(0, tag, len + 4) != be32(buf + pos + 8 + len)) return 1;
        if (!memcmp(tag, "IDAT", 4)) {
            if (seen_idat == 2) return 1;   /* IDATs not consecutive */
            seen_idat = 1;
            idat += len;
        } else {
            if (seen_idat) seen_idat = 2;
            if (!memcmp(tag, "IEND", 4)) {
                ended = 1;
                break;
            }
            if (!memcmp(tag, "PLTE", 4)) {
                plte = tag + 4;
                nplte = len / 3;
            } else if (!(tag[0] & 0x20) && memcmp(tag, "IHDR", 4)) {
                return 1;   /* an unknown critical chunk: libpng decides */
            }
        }
        pos += 12 + (size_t)len;
    }
    if (!ended || !idat || (type == 3 && !plte)) return 1;
    uint8_t *z = media_scratch_get(MEDIA_SCRATCH_ZLIB, idat);
    uint8_t *raw = media_scratch_get(MEDIA_SCRATCH_ROWS, h * (stride + 1) + stride);
    uint8_t *rgb = malloc((size_t)w * h * 3);
    int rc = 1;
    struct libdeflate_decompressor *d = thread_inflater();
    if (!z || !raw || !rgb || !d) goto done;
    size_t zn = 0;
    for (pos = 8; pos + 12 <= n;) {
        uint32_t len = be32(buf + pos);
        if (!memcmp(buf + pos + 4, "IDAT", 4)) {
            memcpy(z + zn, buf + pos + 8, len);
            zn += len;
        }
        if (!memcmp(buf + pos + 4, "IEND", 4)) break;
        pos += 12 + (size_t)len;
    }
    size_t got = 0;
    if (libdeflate_zlib_decompress(d, z, zn, raw, h * (stride + 1), &got) != LIBDEFLATE_SUCCESS ||
        got != h * (stride + 1))
        goto done;
    uint8_t *zero = raw + h * (stride + 1);   /* the row above the first */
    memset(zero, 0, stride);
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = raw + (size_t)y * (stride + 1);
        const uint8_t *prior = y ? row - stride : zero;   /* previous row's pixels */
        if (unfilter_row(row[0], row + 1, prior, stride, bpp)) goto done;
        uint8_t *o = rgb + (size_t)y * w * 3;
        const uint8_t *px = row + 1;
        switch (type) {
        case 2: memcpy(o, px, stride); break;
        case 6:
            for (uint32_t x = 0; x < w; x++) memcpy(o + 3 * x, px + 4 * x, 3);
            break;
        case 0:
        case 4:
            for (uint32_t x = 0; x < w; x++) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = px[x * bpp];
            break;
        case 3:
            for (uint32_t x = 0; x < w; x++) {
                uint32_t k = px[x];
                if (k >= nplte) goto done;   /* libpng's verdict on an out-of-range index */
                memcpy(o + 3 * x, plte + 3 * k, 3);
            }
            break;
        }
    }
    *out = (struct media_image){.h = (int)h, .w = (int)w, .c = 3, .data = rgb};
    rgb = NULL;
    rc = 0;
done:
    media_scratch_put(MEDIA_SCRATCH_ZLIB, z);
    media_scratch_put(MEDIA_SCRATCH_ROWS, raw);
    free(rgb);
    return rc;
}
