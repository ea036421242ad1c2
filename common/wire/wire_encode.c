/* Encoding the v1 header frame with msgpack-c. Only the header is built here: tensor
 * frames are the callers' buffers, sent as they are. */
#include "common/wire/wire.h"

#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "common/core/log.h"

static int wenc_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

/* json value -> msgpack (objects become maps; depth bounded so a cyclic or absurd meta
 * cannot recurse forever). */
static int wenc_json(msgpack_packer *pk, const json_t *j, int depth)
{
    if (depth > 64) return sushi_error(SUSHI_EINVAL, "wire_encode: meta nested deeper than 64");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        if (msgpack_pack_map(pk, json_object_size(j))) return SUSHI_ENOMEM;
        json_object_foreach((json_t *)j, k, v) {
            if (wenc_str(pk, k)) return SUSHI_ENOMEM;
            int rc = wenc_json(pk, v, depth + 1);
            if (rc) return rc;
        }
        return SUSHI_OK;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        if (msgpack_pack_array(pk, json_array_size(j))) return SUSHI_ENOMEM;
        json_array_foreach(j, i, v) {
            int rc = wenc_json(pk, v, depth + 1);
            if (rc) return rc;
        }
        return SUSHI_OK;
    }
    case JSON_STRING: {
        size_t n = json_string_length(j);
        return (msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, json_string_value(j), n))
                   ? SUSHI_ENOMEM : SUSHI_OK;
    }
    case JSON_INTEGER: return msgpack_pack_int64(pk, json_integer_value(j)) ? SUSHI_ENOMEM : 0;
    case JSON_REAL: return msgpack_pack_double(pk, json_real_value(j)) ? SUSHI_ENOMEM : 0;
    case JSON_TRUE: return msgpack_pack_true(pk) ? SUSHI_ENOMEM : 0;
    case JSON_FALSE: return msgpack_pack_false(pk) ? SUSHI_ENOMEM : 0;
    case JSON_NULL: return msgpack_pack_nil(pk) ? SUSHI_ENOMEM : 0;
    }
    return sushi_error(SUSHI_EINVAL, "wire_encode: meta holds an unknown json type");
}

static int wenc_tensor(msgpack_packer *pk, const struct wire_tensor *t, int frame)
{
    if (msgpack_pack_map(pk, 4)) return SUSHI_ENOMEM;
    if (wenc_str(pk, "name") || wenc_str(pk, t->name)) return SUSHI_ENOMEM;
    if (wenc_str(pk, "dtype") || wenc_str(pk, dtype_name(t->dtype))) return SUSHI_ENOMEM;
    if (wenc_str(pk, "shape") || msgpack_pack_array(pk, (size_t)t->ndim)) return SUSHI_ENOMEM;
    for (int d = 0; d < t->ndim; d++)
        if (msgpack_pack_uint64(pk, (uint64_t)t->shape[d])) return SUSHI_ENOMEM;
    if (wenc_str(pk, "frame") || msgpack_pack_uint32(pk, (uint32_t)frame)) return SUSHI_ENOMEM;
    return SUSHI_OK;
}

static int wenc_check(const struct wire_msg *m)
{
    if (m->v != WIRE_VERSION)
        return sushi_error(SUSHI_EINVAL, "wire_encode: version %d is not %d", m->v, WIRE_VERSION);
    if ((int)m->kind < 0 || m->kind >= WIRE_KIND_COUNT)
        return sushi_error(SUSHI_EINVAL, "wire_encode: invalid kind %d", (int)m->kind);
    if (m->ntensors < 0 || m->ntensors > WIRE_MAX_TENSORS)
        return sushi_error(SUSHI_EINVAL, "wire_encode: %d tensors outside [0, %d]", m->ntensors,
                           WIRE_MAX_TENSORS);
    if (memchr(m->stage, 0, sizeof m->stage) == NULL)
        return sushi_error(SUSHI_EINVAL, "wire_encode: stage is not NUL-terminated");
    if (m->meta && !json_is_object(m->meta))
        return sushi_error(SUSHI_EINVAL, "wire_encode: meta must be a json object");
    for (int i = 0; i < m->ntensors; i++) {
        const struct wire_tensor *t = &m->tensors[i];
        size_t n;
        if (memchr(t->name, 0, sizeof t->name) == NULL || t->name[0] == 0)
            return sushi_error(SUSHI_EINVAL, "wire_encode: tensor %d: empty or unterminated name", i);
        int rc = wire_tensor_nbytes(t->name, t->dtype, t->ndim, t->shape, &n);
        if (rc) return rc;
        if (n != t->nbytes)
            return sushi_error(SUSHI_ESHAPE, "wire_encode: tensor %s: nbytes %zu but shape x dtype "
                               "gives %zu", t->name, t->nbytes, n);
        if (n > 0 && !t->data)
            return sushi_error(SUSHI_EINVAL, "wire_encode: tensor %s: NULL data", t->name);
    }
    return SUSHI_OK;
}

int wire_encode(const struct wire_msg *m, struct wire_buf *out)
{
    if (!m || !out) return sushi_error(SUSHI_EINVAL, "wire_encode: NULL argument");
    out->data = NULL;
    out->size = 0;
    int rc = wenc_check(m);
    if (rc) return rc;

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int nkeys = 7 + (m->meta != NULL);
    int fail = msgpack_pack_map(&pk, (size_t)nkeys);
    fail = fail || wenc_str(&pk, "v") || msgpack_pack_int(&pk, m->v);
    fail = fail || wenc_str(&pk, "kind") || wenc_str(&pk, wire_kind_name(m->kind));
    fail = fail || wenc_str(&pk, "id") || msgpack_pack_uint64(&pk, m->id);
    fail = fail || wenc_str(&pk, "epoch") || msgpack_pack_uint64(&pk, m->epoch);
    fail = fail || wenc_str(&pk, "cursor") || msgpack_pack_uint64(&pk, m->cursor);
    fail = fail || wenc_str(&pk, "stage") || wenc_str(&pk, m->stage);
    if (!fail && m->meta) {
        fail = wenc_str(&pk, "meta");
        if (!fail && (rc = wenc_json(&pk, m->meta, 1))) goto error;
    }
    fail = fail || wenc_str(&pk, "tensors") || msgpack_pack_array(&pk, (size_t)m->ntensors);
    for (int i = 0; !fail && i < m->ntensors; i++)
        if ((rc = wenc_tensor(&pk, &m->tensors[i], i + 1))) goto error;
    if (fail) {
        rc = sushi_error(SUSHI_ENOMEM, "wire_encode: out of memory");
        goto error;
    }
    out->data = (uint8_t *)sb.data; /* sbuffer memory is malloc'd: wire_buf_free frees it */
    out->size = sb.size;
    return SUSHI_OK;
error:
    if (rc == SUSHI_ENOMEM) rc = sushi_error(SUSHI_ENOMEM, "wire_encode: out of memory");
    msgpack_sbuffer_destroy(&sb);
    return rc;
}
