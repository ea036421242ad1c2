/* The v1 wire format: one message = a msgpack header frame + one raw frame per tensor.
 *
 * Frame 0 is a msgpack map {v, kind, id, epoch, cursor, stage, meta, tensors}; tensors is
 * an array of {name, dtype, shape, frame}, and tensor i lives in frame i+1 as raw
 * little-endian bytes. Encoding builds only the header: tensor bytes are never copied.
 * Decoding validates everything (version, kind, field types, dtype x shape == frame
 * bytes, declared lengths against the bytes present, caps on sizes, counts and nesting,
 * no trailing bytes, frame count) before anything is used, and names the offending field
 * in its error message (sushi_last_error()). */
#ifndef SUSHI_WIRE_H
#define SUSHI_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/core/dtype.h"

#define WIRE_VERSION 1
#define WIRE_MAX_TENSORS 32   /* hard limit; caps.max_tensors may lower it */
#define WIRE_MAX_NDIM 8
#define WIRE_NAME_MAX 64      /* tensor name, including the NUL */
#define WIRE_STAGE_MAX 64     /* stage name, including the NUL */

enum wire_kind {
    WIRE_BATCH = 0, WIRE_SCORED, WIRE_ACK, WIRE_METRICS, WIRE_CHECKPOINT, WIRE_EVAL,
    WIRE_REQUEST, WIRE_REPLY, WIRE_ERROR, WIRE_HELLO, WIRE_HEARTBEAT, WIRE_REWIND,
    WIRE_KIND_COUNT
};

const char *wire_kind_name(enum wire_kind k); /* "batch", ...; "?" when invalid */
int wire_kind_from_name(const char *name);    /* enum value, or -1 when unknown */

/* Limits a receiver enforces before using a message. */
struct wire_caps {
    size_t max_header_bytes;  /* frame 0 */
    size_t max_tensor_bytes;  /* any one tensor frame */
    size_t max_msg_bytes;     /* all frames together */
    int max_tensors;          /* <= WIRE_MAX_TENSORS */
    int max_depth;            /* nesting of meta (the header map itself is depth 0) */
};
/* 64 KiB header, 1 GiB tensor, 2 GiB message, 32 tensors, meta depth 8. */
struct wire_caps wire_caps_default(void);
int wire_caps_check(const struct wire_caps *c);

struct wire_tensor {
    char name[WIRE_NAME_MAX];
    enum dtype dtype;
    int ndim;
    int64_t shape[WIRE_MAX_NDIM];
    /* Borrowed bytes. Sending: the caller's buffer. Received: points into the received
     * frame (kept alive by the message) and is aligned to the element size. */
    const void *data;
    size_t nbytes;            /* numel * dtype_size(dtype) */
};

struct wire_msg {
    int v;                    /* WIRE_VERSION */
    enum wire_kind kind;
    uint64_t id, epoch, cursor;
    char stage[WIRE_STAGE_MAX];
    json_t *meta;             /* owned object or NULL; small (caps.max_header_bytes) */
    int ntensors;
    struct wire_tensor tensors[WIRE_MAX_TENSORS];
    /* What keeps received bytes alive (set by the transport), run by wire_msg_free. */
    void (*release)(void *owner);
    void *owner;
};

/* An empty message of `kind` (v = 1, no meta, no tensors). */
void wire_msg_init(struct wire_msg *m, enum wire_kind kind);
/* Drops meta and the received frames; leaves an empty message. NULL is a no-op. */
void wire_msg_free(struct wire_msg *m);
/* Appends a tensor view (bytes borrowed, not copied); checks name, dtype, shape, count. */
int wire_msg_add_tensor(struct wire_msg *m, const char *name, enum dtype dt, int ndim,
                        const int64_t *shape, const void *data);
/* The tensor called `name`, or NULL. */
const struct wire_tensor *wire_msg_tensor(const struct wire_msg *m, const char *name);
/* numel * dtype_size with overflow checks; `what` names the tensor in errors. */
int wire_tensor_nbytes(const char *what, enum dtype dt, int ndim, const int64_t *shape,
                       size_t *out);

/* A heap buffer holding an encoded header. */
struct wire_buf {
    uint8_t *data;
    size_t size;
};
void wire_buf_free(struct wire_buf *b);

/* Encodes m's header (frame 0) into *out (malloc'd; free with wire_buf_free). Frames
 * 1..ntensors are m->tensors[i].data / nbytes as they are. */
int wire_encode(const struct wire_msg *m, struct wire_buf *out);

/* One received frame (borrowed). */
struct wire_frame {
    const void *data;
    size_t size;
};

/* Validates frames[0..nframes) against caps and fills *m (meta allocated, tensor data
 * pointing into the frames). On failure *m is left empty, the error names the field and
 * the code is SUSHI_EFORMAT (or SUSHI_EUNSUPPORTED for a wrong version, SUSHI_ESHAPE for
 * dtype x shape != frame bytes). Tensor data is not realigned here. */
int wire_decode(const struct wire_frame *frames, int nframes, const struct wire_caps *caps,
                struct wire_msg *m);

#endif
