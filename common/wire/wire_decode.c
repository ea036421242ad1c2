/* Decoding and validating a v1 message. The header is read by a small bounded msgpack
 * reader (not msgpack-c's unpacker) so every declared length is checked against the
 * bytes present before it is trusted, nesting is capped, and each error names the field
 * ("header: tensors[2].shape[1]: ..."). Nothing is used before everything is checked. */
#include "common/wire/wire.h"

#include <stdio.h>
#include <string.h>

#include "common/core/log.h"

enum wdec_type { WD_NIL, WD_BOOL, WD_UINT, WD_INT, WD_FLOAT, WD_STR, WD_BIN, WD_ARRAY, WD_MAP };

static const char *const wdec_type_names[] = {
    "nil", "bool", "unsigned integer", "negative integer", "float", "string", "binary",
    "array", "map",
};

/* One msgpack value's head: scalars are complete; str/bin point at their body; for
 * array/map `len` is the element (pair) count, whose items follow. */
struct wdec_val {
    enum wdec_type t;
    uint64_t u;         /* WD_UINT, WD_BOOL */
    int64_t i;          /* WD_INT (always < 0) */
    double f;           /* WD_FLOAT */
    const char *s;      /* WD_STR, WD_BIN */
    uint32_t len;       /* WD_STR, WD_BIN bytes; WD_ARRAY items; WD_MAP pairs */
};

struct wdec {
    const uint8_t *p, *end;
    const struct wire_caps *caps;
};

static size_t wdec_left(const struct wdec *r) { return (size_t)(r->end - r->p); }

static uint64_t wdec_be(const uint8_t *p, int n)
{
    uint64_t x = 0;
    for (int k = 0; k < n; k++) x = (x << 8) | p[k];
    return x;
}

/* Reads n big-endian bytes after the type byte. */
static int wdec_take(struct wdec *r, const char *field, int n, uint64_t *out)
{
    if (wdec_left(r) < (size_t)n)
        return sushi_error(SUSHI_EFORMAT, "header: %s: truncated (needs %d bytes, %zu remain)",
                           field, n, wdec_left(r));
    *out = wdec_be(r->p, n);
    r->p += n;
    return SUSHI_OK;
}

/* Checks that `len` declared bytes (or items of at least `min_each` bytes) are present. */
static int wdec_declared(struct wdec *r, const char *field, uint64_t len, uint64_t min_each,
                         const char *unit)
{
    if (len > wdec_left(r) / min_each)
        return sushi_error(SUSHI_EFORMAT, "header: %s: declares %llu %s but only %zu bytes remain",
                           field, (unsigned long long)len, unit,
                           wdec_left(r));
    return SUSHI_OK;
}

static int wdec_next(struct wdec *r, const char *field, struct wdec_val *v)
{
    memset(v, 0, sizeof *v);
    if (r->p >= r->end)
        return sushi_error(SUSHI_EFORMAT, "header: %s: truncated (no bytes left)", field);
    uint8_t b = *r->p++;
    uint64_t x = 0;
    int rc = SUSHI_OK;
    int n = 0;
    if (b <= 0x7f) { v->t = WD_UINT; v->u = b; return SUSHI_OK; }
    if (b >= 0xe0) { v->t = WD_INT; v->i = (int8_t)b; return SUSHI_OK; }
    if ((b & 0xf0) == 0x80) { v->t = WD_MAP; x = b & 0x0f; goto container; }
    if ((b & 0xf0) == 0x90) { v->t = WD_ARRAY; x = b & 0x0f; goto container; }
    if ((b & 0xe0) == 0xa0) { v->t = WD_STR; x = b & 0x1f; goto bytes; }
    switch (b) {
    case 0xc0: v->t = WD_NIL; return SUSHI_OK;
    case 0xc2: case 0xc3: v->t = WD_BOOL; v->u = b == 0xc3; return SUSHI_OK;
    case 0xc4: case 0xc5: case 0xc6:
        v->t = WD_BIN; n = 1 << (b - 0xc4);
        if ((rc = wdec_take(r, field, n, &x))) return rc;
        goto bytes;
    case 0xca: case 0xcb: {
        n = b == 0xca ? 4 : 8;
        if ((rc = wdec_take(r, field, n, &x))) return rc;
        v->t = WD_FLOAT;
        if (n == 4) { uint32_t w = (uint32_t)x; float f; memcpy(&f, &w, 4); v->f = f; }
        else memcpy(&v->f, &x, 8);
        return SUSHI_OK;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        if ((rc = wdec_take(r, field, 1 << (b - 0xcc), &x))) return rc;
        v->t = WD_UINT; v->u = x;
        return SUSHI_OK;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        n = 1 << (b - 0xd0);
        if ((rc = wdec_take(r, field, n, &x))) return rc;
        int64_t s = n == 8 ? (int64_t)x : (int64_t)(x << (64 - 8 * n)) >> (64 - 8 * n);
        if (s >= 0) { v->t = WD_UINT; v->u = (uint64_t)s; }
        else { v->t = WD_INT; v->i = s; }
        return SUSHI_OK;
    }
    case 0xd9: case 0xda: case 0xdb:
        v->t = WD_STR; n = 1 << (b - 0xd9);
        if ((rc = wdec_take(r, field, n, &x))) return rc;
        goto bytes;
    case 0xdc: case 0xdd:
        v->t = WD_ARRAY;
        if ((rc = wdec_take(r, field, b == 0xdc ? 2 : 4, &x))) return rc;
        goto container;
    case 0xde: case 0xdf:
        v->t = WD_MAP;
        if ((rc = wdec_take(r, field, b == 0xde ? 2 : 4, &x))) return rc;
        goto container;
    default:
        if (b == 0xc1)
            return sushi_error(SUSHI_EFORMAT, "header: %s: invalid msgpack byte 0xc1", field);
        return sushi_error(SUSHI_EFORMAT, "header: %s: msgpack ext type 0x%02x is not allowed",
                           field, b);
    }
bytes:
    if ((rc = wdec_declared(r, field, x, 1, "bytes"))) return rc;
    v->s = (const char *)r->p;
    v->len = (uint32_t)x;
    r->p += x;
    return SUSHI_OK;
container:
    if ((rc = wdec_declared(r, field, x, v->t == WD_MAP ? 2 : 1, "entries"))) return rc;
    v->len = (uint32_t)x;
    return SUSHI_OK;
}

static int wdec_expect(struct wdec *r, const char *field, enum wdec_type t, struct wdec_val *v)
{
    int rc = wdec_next(r, field, v);
    if (rc) return rc;
    if (v->t != t)
        return sushi_error(SUSHI_EFORMAT, "header: %s: expected %s, got %s", field,
                           wdec_type_names[t], wdec_type_names[v->t]);
    return SUSHI_OK;
}

/* A string into buf (cap including the NUL); refuses embedded NULs and overlong ones. */
static int wdec_str(struct wdec *r, const char *field, char *buf, size_t cap)
{
    struct wdec_val v;
    int rc = wdec_expect(r, field, WD_STR, &v);
    if (rc) return rc;
    if (v.len >= cap)
        return sushi_error(SUSHI_EFORMAT, "header: %s: string of %u bytes exceeds %zu", field,
                           v.len, cap - 1);
    if (memchr(v.s, 0, v.len))
        return sushi_error(SUSHI_EFORMAT, "header: %s: string holds a NUL byte", field);
    memcpy(buf, v.s, v.len);
    buf[v.len] = 0;
    return SUSHI_OK;
}

static int wdec_uint(struct wdec *r, const char *field, uint64_t *out)
{
    struct wdec_val v;
    int rc = wdec_next(r, field, &v);
    if (rc) return rc;
    if (v.t != WD_UINT)
        return sushi_error(SUSHI_EFORMAT, "header: %s: expected %s, got %s", field,
                           wdec_type_names[WD_UINT], wdec_type_names[v.t]);
    *out = v.u;
    return SUSHI_OK;
}

/* meta values -> json; depth counts maps/arrays from the header map (depth 0). */
static int wdec_json(struct wdec *r, const char *field, int depth, json_t **out)
{
    struct wdec_val v;
    int rc = wdec_next(r, field, &v);
    if (rc) return rc;
    *out = NULL;
    switch (v.t) {
    case WD_NIL: *out = json_null(); break;
    case WD_BOOL: *out = json_boolean(v.u); break;
    case WD_UINT:
        if (v.u > INT64_MAX)
            return sushi_error(SUSHI_EFORMAT, "header: %s: integer %llu out of range", field,
                               (unsigned long long)v.u);
        *out = json_integer((json_int_t)v.u);
        break;
    case WD_INT: *out = json_integer(v.i); break;
    case WD_FLOAT:
        if (!(*out = json_real(v.f)))
            return sushi_error(SUSHI_EFORMAT, "header: %s: non-finite number", field);
        break;
    case WD_STR:
        if (!(*out = json_stringn(v.s, v.len)))
            return sushi_error(SUSHI_EFORMAT, "header: %s: string is not valid UTF-8", field);
        break;
    case WD_BIN:
        return sushi_error(SUSHI_EFORMAT, "header: %s: binary values are not allowed in meta", field);
    case WD_ARRAY:
    case WD_MAP: {
        if (depth > r->caps->max_depth)
            return sushi_error(SUSHI_EFORMAT, "header: %s: nested deeper than %d", field,
                               r->caps->max_depth);
        json_t *c = v.t == WD_MAP ? json_object() : json_array();
        if (!c) return sushi_error(SUSHI_ENOMEM, "header: %s: out of memory", field);
        for (uint32_t k = 0; k < v.len; k++) {
            char key[128], sub[192];
            json_t *item;
            if (v.t == WD_MAP) {
                rc = wdec_str(r, field, key, sizeof key);
                json_t *probe = rc ? NULL : json_string(key); /* NULL: not UTF-8 */
                if (!rc && !probe)
                    rc = sushi_error(SUSHI_EFORMAT, "header: %s: key is not valid UTF-8", field);
                json_decref(probe);
                if (!rc && json_object_get(c, key))
                    rc = sushi_error(SUSHI_EFORMAT, "header: %s: duplicate key \"%s\"", field, key);
                snprintf(sub, sizeof sub, "%s.%s", field, key);
            } else {
                snprintf(sub, sizeof sub, "%s[%u]", field, k);
            }
            if (!rc) rc = wdec_json(r, sub, depth + 1, &item);
            if (!rc && (v.t == WD_MAP ? json_object_set_new(c, key, item)
                                      : json_array_append_new(c, item)))
                rc = sushi_error(SUSHI_ENOMEM, "header: %s: out of memory", sub);
            if (rc) { json_decref(c); return rc; }
        }
        *out = c;
        return SUSHI_OK;
    }
    }
    if (!*out) return sushi_error(SUSHI_ENOMEM, "header: %s: out of memory", field);
    return SUSHI_OK;
}

/* One entry of `tensors`: {name, dtype, shape, frame}, all required. */
static int wdec_tensor(struct wdec *r, int idx, struct wire_tensor *t, uint64_t *frame)
{
    char field[96], key[16];
    struct wdec_val v;
    snprintf(field, sizeof field, "tensors[%d]", idx);
    int rc = wdec_expect(r, field, WD_MAP, &v);
    if (rc) return rc;
    unsigned seen = 0;
    for (uint32_t k = 0; k < v.len; k++) {
        if ((rc = wdec_str(r, field, key, sizeof key))) return rc;
        unsigned bit = strcmp(key, "name") == 0 ? 1 : strcmp(key, "dtype") == 0 ? 2
                     : strcmp(key, "shape") == 0 ? 4 : strcmp(key, "frame") == 0 ? 8 : 0;
        if (!bit) return sushi_error(SUSHI_EFORMAT, "header: %s: unknown key \"%s\"", field, key);
        if (seen & bit) return sushi_error(SUSHI_EFORMAT, "header: %s: duplicate key \"%s\"", field, key);
        seen |= bit;
        char sub[128];
        snprintf(sub, sizeof sub, "%s.%s", field, key);
        if (bit == 1) {
            if ((rc = wdec_str(r, sub, t->name, sizeof t->name))) return rc;
            if (!t->name[0]) return sushi_error(SUSHI_EFORMAT, "header: %s: empty name", sub);
        } else if (bit == 2) {
            char dt[16];
            if ((rc = wdec_str(r, sub, dt, sizeof dt))) return rc;
            int d = dtype_from_name(dt);
            if (d < 0) return sushi_error(SUSHI_EFORMAT, "header: %s: unknown dtype \"%s\"", sub, dt);
            t->dtype = (enum dtype)d;
        } else if (bit == 4) {
            struct wdec_val a;
            if ((rc = wdec_expect(r, sub, WD_ARRAY, &a))) return rc;
            if (a.len > WIRE_MAX_NDIM)
                return sushi_error(SUSHI_EFORMAT, "header: %s: %u dimensions exceed %d", sub, a.len,
                                   WIRE_MAX_NDIM);
            t->ndim = (int)a.len;
            for (int d = 0; d < t->ndim; d++) {
                char dim[160];
                uint64_t x;
                snprintf(dim, sizeof dim, "%s[%d]", sub, d);
                if ((rc = wdec_uint(r, dim, &x))) return rc;
                if (x > INT64_MAX)
                    return sushi_error(SUSHI_EFORMAT, "header: %s: %llu out of range", dim,
                                       (unsigned long long)x);
                t->shape[d] = (int64_t)x;
            }
        } else {
            if ((rc = wdec_uint(r, sub, frame))) return rc;
        }
    }
    if (seen != 15)
        return sushi_error(SUSHI_EFORMAT, "header: %s: missing key \"%s\"", field,
                           !(seen & 1) ? "name" : !(seen & 2) ? "dtype" : !(seen & 4) ? "shape" : "frame");
    return SUSHI_OK;
}

enum { WK_V = 1, WK_KIND = 2, WK_ID = 4, WK_EPOCH = 8, WK_CURSOR = 16, WK_STAGE = 32,
       WK_META = 64, WK_TENSORS = 128 };
static const char *const wdec_keys[] = { "v", "kind", "id", "epoch", "cursor", "stage", "meta",
                                         "tensors" };

static int wdec_header(struct wdec *r, struct wire_msg *m, uint64_t *frames)
{
    struct wdec_val v;
    int rc = wdec_expect(r, "header", WD_MAP, &v);
    if (rc) return rc;
    unsigned seen = 0;
    for (uint32_t k = 0; k < v.len; k++) {
        char key[16], kind[16];
        if ((rc = wdec_str(r, "header key", key, sizeof key))) return rc;
        unsigned bit = 0;
        for (int j = 0; j < 8; j++)
            if (strcmp(key, wdec_keys[j]) == 0) bit = 1u << j;
        if (!bit) return sushi_error(SUSHI_EFORMAT, "header: unknown key \"%s\"", key);
        if (seen & bit) return sushi_error(SUSHI_EFORMAT, "header: duplicate key \"%s\"", key);
        seen |= bit;
        uint64_t x;
        switch (bit) {
        case WK_V:
            if ((rc = wdec_uint(r, "v", &x))) return rc;
            if (x != WIRE_VERSION)
                return sushi_error(SUSHI_EUNSUPPORTED, "header: v: version %llu is not supported "
                                   "(expected %d)", (unsigned long long)x, WIRE_VERSION);
            m->v = (int)x;
            break;
        case WK_KIND: {
            if ((rc = wdec_str(r, "kind", kind, sizeof kind))) return rc;
            int kd = wire_kind_from_name(kind);
            if (kd < 0) return sushi_error(SUSHI_EFORMAT, "header: kind: unknown kind \"%s\"", kind);
            m->kind = (enum wire_kind)kd;
            break;
        }
        case WK_ID: rc = wdec_uint(r, "id", &m->id); break;
        case WK_EPOCH: rc = wdec_uint(r, "epoch", &m->epoch); break;
        case WK_CURSOR: rc = wdec_uint(r, "cursor", &m->cursor); break;
        case WK_STAGE: rc = wdec_str(r, "stage", m->stage, sizeof m->stage); break;
        case WK_META: {
            const uint8_t *at = r->p;
            if ((rc = wdec_json(r, "meta", 1, &m->meta))) return rc;
            if (!json_is_object(m->meta)) {
                r->p = at;
                return wdec_expect(r, "meta", WD_MAP, &v);
            }
            break;
        }
        case WK_TENSORS: {
            struct wdec_val a;
            if ((rc = wdec_expect(r, "tensors", WD_ARRAY, &a))) return rc;
            if ((int64_t)a.len > r->caps->max_tensors)
                return sushi_error(SUSHI_EFORMAT, "header: tensors: %u tensors exceed the cap of %d",
                                   a.len, r->caps->max_tensors);
            for (int i = 0; i < (int)a.len; i++) {
                if ((rc = wdec_tensor(r, i, &m->tensors[i], &frames[i]))) return rc;
                m->ntensors = i + 1;
            }
            break;
        }
        }
        if (rc) return rc;
    }
    if (!(seen & WK_V)) return sushi_error(SUSHI_EFORMAT, "header: missing key \"v\"");
    if (!(seen & WK_KIND)) return sushi_error(SUSHI_EFORMAT, "header: missing key \"kind\"");
    if (r->p != r->end)
        return sushi_error(SUSHI_EFORMAT, "header: %zu trailing bytes after the map", wdec_left(r));
    return SUSHI_OK;
}

/* Frames against the header: count, caps, dtype x shape == bytes, then tensor views. */
static int wdec_frames(const struct wire_frame *frames, int nframes, const struct wire_caps *caps,
                       const uint64_t *frame_of, struct wire_msg *m)
{
    if (nframes < 1 + m->ntensors)
        return sushi_error(SUSHI_EFORMAT, "message: missing frames: header declares %d tensors "
                           "(%d frames) but %d arrived", m->ntensors, 1 + m->ntensors, nframes);
    if (nframes > 1 + m->ntensors)
        return sushi_error(SUSHI_EFORMAT, "message: extra frames: header declares %d tensors "
                           "(%d frames) but %d arrived", m->ntensors, 1 + m->ntensors, nframes);
    size_t total = frames[0].size;
    for (int i = 0; i < m->ntensors; i++) {
        struct wire_tensor *t = &m->tensors[i];
        for (int j = 0; j < i; j++)
            if (strcmp(m->tensors[j].name, t->name) == 0)
                return sushi_error(SUSHI_EFORMAT, "header: tensors[%d]: duplicate name \"%s\"", i,
                                   t->name);
        if (frame_of[i] != (uint64_t)i + 1)
            return sushi_error(SUSHI_EFORMAT, "header: tensors[%d] (%s): frame %llu, expected %d", i,
                               t->name, (unsigned long long)frame_of[i], i + 1);
        const struct wire_frame *f = &frames[i + 1];
        if (f->size > caps->max_tensor_bytes)
            return sushi_error(SUSHI_EFORMAT, "tensor %s: frame %d is %zu bytes, over the cap of %zu",
                               t->name, i + 1, f->size, caps->max_tensor_bytes);
        if (f->size > 0 && !f->data)
            return sushi_error(SUSHI_EINVAL, "tensor %s: frame %d has NULL data", t->name, i + 1);
        total += f->size;
        if (total > caps->max_msg_bytes)
            return sushi_error(SUSHI_EFORMAT, "message: %zu bytes by frame %d, over the cap of %zu",
                               total, i + 1, caps->max_msg_bytes);
        size_t want;
        int rc = wire_tensor_nbytes(t->name, t->dtype, t->ndim, t->shape, &want);
        if (rc) return rc;
        if (want != f->size)
            return sushi_error(SUSHI_ESHAPE, "tensor %s: %s shape of %d dims needs %zu bytes but "
                               "frame %d holds %zu", t->name, dtype_name(t->dtype), t->ndim, want,
                               i + 1, f->size);
        t->data = f->data;
        t->nbytes = f->size;
    }
    return SUSHI_OK;
}

int wire_decode(const struct wire_frame *frames, int nframes, const struct wire_caps *caps,
                struct wire_msg *m)
{
    if (!m) return sushi_error(SUSHI_EINVAL, "wire_decode: NULL message");
    wire_msg_init(m, WIRE_BATCH);
    if (!frames || !caps) return sushi_error(SUSHI_EINVAL, "wire_decode: NULL argument");
    int rc = wire_caps_check(caps);
    if (rc) return rc;
    if (nframes < 1) return sushi_error(SUSHI_EFORMAT, "message: no frames (header frame missing)");
    if (frames[0].size > caps->max_header_bytes)
        return sushi_error(SUSHI_EFORMAT, "header: %zu bytes, over the cap of %zu", frames[0].size,
                           caps->max_header_bytes);
    if (frames[0].size == 0) return sushi_error(SUSHI_EFORMAT, "header: empty frame");
    if (!frames[0].data) return sushi_error(SUSHI_EINVAL, "wire_decode: header frame has NULL data");
    struct wdec r = { frames[0].data, (const uint8_t *)frames[0].data + frames[0].size, caps };
    uint64_t frame_of[WIRE_MAX_TENSORS];
    m->v = 0;
    rc = wdec_header(&r, m, frame_of);
    if (!rc) rc = wdec_frames(frames, nframes, caps, frame_of, m);
    if (rc) {
        wire_msg_free(m);
        wire_msg_init(m, WIRE_BATCH);
    }
    return rc;
}
