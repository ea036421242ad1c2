/* Wire messages in memory: kind names, caps, building and freeing messages. */
#include "common/wire/wire.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"

static const char *const wire_kind_names[WIRE_KIND_COUNT] = {
    "batch", "scored", "ack", "metrics", "checkpoint", "eval",
    "request", "reply", "error", "hello", "heartbeat", "rewind",
};

const char *wire_kind_name(enum wire_kind k)
{
    if ((int)k < 0 || k >= WIRE_KIND_COUNT) return "?";
    return wire_kind_names[k];
}

int wire_kind_from_name(const char *name)
{
    if (!name) return -1;
    for (int k = 0; k < WIRE_KIND_COUNT; k++)
        if (strcmp(name, wire_kind_names[k]) == 0) return k;
    return -1;
}

struct wire_caps wire_caps_default(void)
{
    struct wire_caps c = {
        .max_header_bytes = 64u << 10,
        .max_tensor_bytes = (size_t)1 << 30,
        .max_msg_bytes = (size_t)2 << 30,
        .max_tensors = WIRE_MAX_TENSORS,
        .max_depth = 8,
    };
    return c;
}

int wire_caps_check(const struct wire_caps *c)
{
    if (!c) return sushi_error(SUSHI_EINVAL, "wire caps: NULL");
    if (c->max_header_bytes < 16)
        return sushi_error(SUSHI_EINVAL, "wire caps: max_header_bytes %zu is below 16",
                           c->max_header_bytes);
    if (c->max_tensors < 0 || c->max_tensors > WIRE_MAX_TENSORS)
        return sushi_error(SUSHI_EINVAL, "wire caps: max_tensors %d outside [0, %d]",
                           c->max_tensors, WIRE_MAX_TENSORS);
    if (c->max_depth < 1 || c->max_depth > 64)
        return sushi_error(SUSHI_EINVAL, "wire caps: max_depth %d outside [1, 64]", c->max_depth);
    if (c->max_msg_bytes < c->max_header_bytes)
        return sushi_error(SUSHI_EINVAL, "wire caps: max_msg_bytes %zu below max_header_bytes %zu",
                           c->max_msg_bytes, c->max_header_bytes);
    return SUSHI_OK;
}

void wire_msg_init(struct wire_msg *m, enum wire_kind kind)
{
    if (!m) return;
    memset(m, 0, offsetof(struct wire_msg, tensors));
    m->v = WIRE_VERSION;
    m->kind = kind;
    m->ntensors = 0;
    m->release = NULL;
    m->owner = NULL;
}

void wire_msg_free(struct wire_msg *m)
{
    if (!m) return;
    if (m->meta) json_decref(m->meta);
    if (m->release) m->release(m->owner);
    wire_msg_init(m, m->kind);
}

int wire_tensor_nbytes(const char *what, enum dtype dt, int ndim, const int64_t *shape,
                       size_t *out)
{
    size_t es = dtype_size(dt);
    if (es == 0) return sushi_error(SUSHI_EFORMAT, "tensor %s: invalid dtype %d", what, (int)dt);
    if (ndim < 0 || ndim > WIRE_MAX_NDIM)
        return sushi_error(SUSHI_EFORMAT, "tensor %s: ndim %d outside [0, %d]", what, ndim,
                           WIRE_MAX_NDIM);
    if (ndim > 0 && !shape) return sushi_error(SUSHI_EINVAL, "tensor %s: NULL shape", what);
    uint64_t n = es;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return sushi_error(SUSHI_EFORMAT, "tensor %s: shape[%d] = %lld is negative", what, i,
                               (long long)shape[i]);
        if (shape[i] != 0 && n > UINT64_MAX / (uint64_t)shape[i])
            return sushi_error(SUSHI_EFORMAT, "tensor %s: shape overflows 64 bits", what);
        n *= (uint64_t)shape[i];
    }
    if (n > SIZE_MAX) return sushi_error(SUSHI_EFORMAT, "tensor %s: size overflows size_t", what);
    *out = (size_t)n;
    return SUSHI_OK;
}

int wire_msg_add_tensor(struct wire_msg *m, const char *name, enum dtype dt, int ndim,
                        const int64_t *shape, const void *data)
{
    if (!m || !name) return sushi_error(SUSHI_EINVAL, "wire_msg_add_tensor: NULL argument");
    size_t len = strlen(name);
    if (len == 0 || len >= WIRE_NAME_MAX)
        return sushi_error(SUSHI_EINVAL, "wire_msg_add_tensor: name \"%.64s\" must be 1..%d bytes",
                           name, WIRE_NAME_MAX - 1);
    if (m->ntensors >= WIRE_MAX_TENSORS)
        return sushi_error(SUSHI_EINVAL, "wire_msg_add_tensor: %s: more than %d tensors", name,
                           WIRE_MAX_TENSORS);
    if (wire_msg_tensor(m, name))
        return sushi_error(SUSHI_EINVAL, "wire_msg_add_tensor: tensor %s added twice", name);
    size_t nbytes;
    int rc = wire_tensor_nbytes(name, dt, ndim, shape, &nbytes);
    if (rc) return rc;
    if (nbytes > 0 && !data)
        return sushi_error(SUSHI_EINVAL, "wire_msg_add_tensor: tensor %s: NULL data", name);
    struct wire_tensor *t = &m->tensors[m->ntensors++];
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, len + 1);
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = nbytes;
    return SUSHI_OK;
}

const struct wire_tensor *wire_msg_tensor(const struct wire_msg *m, const char *name)
{
    if (!m || !name) return NULL;
    for (int i = 0; i < m->ntensors && i < WIRE_MAX_TENSORS; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

void wire_buf_free(struct wire_buf *b)
{
    if (!b) return;
    free(b->data);
    b->data = NULL;
    b->size = 0;
}
