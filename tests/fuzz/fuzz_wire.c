/* libFuzzer target for the wire decoder (clang -fsanitize=fuzzer,address,undefined; see
 * tests/fuzz/fuzz.mk).
 *
 * Input layout: byte 0 gives the frame count (1 + b % 4); then one 2-byte little-endian
 * length per tensor frame; those frames are cut from the following bytes, and the header
 * frame is whatever remains, so it ends exactly at the end of the input and any read past
 * it is caught by ASan. A message that decodes must re-encode and decode to the same
 * fields (abort otherwise). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/wire/wire.h"

static void fuzz_same(const struct wire_msg *a, const struct wire_msg *b)
{
    if (a->kind != b->kind || a->id != b->id || a->epoch != b->epoch || a->cursor != b->cursor ||
        strcmp(a->stage, b->stage) != 0 || a->ntensors != b->ntensors)
        abort();
    if ((a->meta == NULL) != (b->meta == NULL) || (a->meta && !json_equal(a->meta, b->meta))) abort();
    for (int i = 0; i < a->ntensors; i++) {
        const struct wire_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim ||
            x->nbytes != y->nbytes || x->data != y->data)
            abort();
        for (int d = 0; d < x->ndim; d++)
            if (x->shape[d] != y->shape[d]) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) { log_set_level(LOG_QUIET); quiet = 1; }
    if (size < 1) return 0;
    int nframes = 1 + data[0] % 4;
    size_t pos = 1;
    size_t lens[4] = { 0 };
    for (int i = 1; i < nframes; i++) {
        if (pos + 2 > size) return 0;
        lens[i] = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
        pos += 2;
    }
    struct wire_frame f[4];
    for (int i = 1; i < nframes; i++) {
        size_t n = lens[i] < size - pos ? lens[i] : size - pos;
        f[i].data = data + pos;
        f[i].size = n;
        pos += n;
    }
    f[0].data = data + pos;
    f[0].size = size - pos;

    struct wire_caps caps = wire_caps_default();
    caps.max_header_bytes = 4096;
    caps.max_depth = 6;
    struct wire_msg m, again;
    if (wire_decode(f, nframes, &caps, &m) != 0) return 0;
    struct wire_buf hdr;
    if (wire_encode(&m, &hdr) != 0) abort();
    struct wire_frame g[4];
    memcpy(g, f, sizeof g);
    g[0].data = hdr.data;
    g[0].size = hdr.size;
    caps.max_header_bytes = 1u << 20; /* re-encoding may pick wider integer forms */
    if (wire_decode(g, nframes, &caps, &again) != 0) abort();
    fuzz_same(&m, &again);
    wire_msg_free(&again);
    wire_buf_free(&hdr);
    wire_msg_free(&m);
    return 0;
}
