// libs: wire core
/* Wire format v1: round trips of every kind and dtype, headers checked against the
 * Python msgpack package (tests/oracle/wire_msgpack.py), and every malformed case
 * refused with an error naming the cause. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "common/core/log.h"
#include "common/wire/wire.h"

static const char *repo_root(void)
{
    const char *r = getenv("SUSHI_REPO_ROOT");
    return r && *r ? r : ".";
}

/* ---- helpers: encode m and decode it back through frames ---- */

static int roundtrip(const struct wire_msg *m, struct wire_msg *out)
{
    struct wire_buf hdr;
    int rc = wire_encode(m, &hdr);
    if (rc) return rc;
    struct wire_frame f[1 + WIRE_MAX_TENSORS];
    f[0].data = hdr.data;
    f[0].size = hdr.size;
    for (int i = 0; i < m->ntensors; i++) {
        f[i + 1].data = m->tensors[i].data;
        f[i + 1].size = m->tensors[i].nbytes;
    }
    struct wire_caps caps = wire_caps_default();
    rc = wire_decode(f, 1 + m->ntensors, &caps, out);
    wire_buf_free(&hdr);
    return rc;
}

static void test_roundtrip_every_kind(void **state)
{
    (void)state;
    for (int k = 0; k < WIRE_KIND_COUNT; k++) {
        struct wire_msg m, d;
        wire_msg_init(&m, (enum wire_kind)k);
        m.id = 0xfedcba9876543210ull + (uint64_t)k;
        m.epoch = (uint64_t)k * 7;
        m.cursor = UINT64_MAX - (uint64_t)k;
        snprintf(m.stage, sizeof m.stage, "stage-%s", wire_kind_name((enum wire_kind)k));
        m.meta = json_pack("{s:i, s:s}", "k", k, "name", wire_kind_name((enum wire_kind)k));
        assert_int_equal(roundtrip(&m, &d), 0);
        assert_int_equal(d.v, 1);
        assert_int_equal(d.kind, k);
        assert_true(d.id == m.id && d.epoch == m.epoch && d.cursor == m.cursor);
        assert_string_equal(d.stage, m.stage);
        assert_true(json_equal(d.meta, m.meta));
        assert_int_equal(d.ntensors, 0);
        assert_int_equal(wire_kind_from_name(wire_kind_name((enum wire_kind)k)), k);
        wire_msg_free(&d);
        wire_msg_free(&m);
    }
    assert_int_equal(wire_kind_from_name("bogus"), -1);
}

static void test_roundtrip_every_dtype(void **state)
{
    (void)state;
    struct wire_msg m, d;
    wire_msg_init(&m, WIRE_SCORED);
    uint8_t *buf[DT_COUNT];
    for (int t = 0; t < DT_COUNT; t++) {
        int64_t shape[3] = { 2, 3, t + 1 };
        size_t n = 6 * (size_t)(t + 1) * dtype_size((enum dtype)t);
        buf[t] = malloc(n);
        for (size_t i = 0; i < n; i++) buf[t][i] = (uint8_t)(i * 31 + (size_t)t);
        char name[32];
        snprintf(name, sizeof name, "t_%s", dtype_name((enum dtype)t));
        assert_int_equal(wire_msg_add_tensor(&m, name, (enum dtype)t, 3, shape, buf[t]), 0);
    }
    int64_t scalar_shape[1];
    float scalar = 2.5f;
    assert_int_equal(wire_msg_add_tensor(&m, "scalar", DT_F32, 0, scalar_shape, &scalar), 0);
    int64_t empty_shape[2] = { 0, 5 };
    assert_int_equal(wire_msg_add_tensor(&m, "empty", DT_I32, 2, empty_shape, NULL), 0);
    assert_int_equal(roundtrip(&m, &d), 0);
    assert_int_equal(d.ntensors, DT_COUNT + 2);
    for (int t = 0; t < d.ntensors; t++) {
        const struct wire_tensor *a = &m.tensors[t], *b = &d.tensors[t];
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->dtype, b->dtype);
        assert_int_equal(a->ndim, b->ndim);
        for (int k = 0; k < a->ndim; k++) assert_int_equal(a->shape[k], b->shape[k]);
        assert_int_equal(a->nbytes, b->nbytes);
        if (a->nbytes) assert_memory_equal(a->data, b->data, a->nbytes);
    }
    const struct wire_tensor *s = wire_msg_tensor(&d, "scalar");
    assert_non_null(s);
    assert_int_equal(s->nbytes, 4);
    assert_null(wire_msg_tensor(&d, "absent"));
    wire_msg_free(&d);
    wire_msg_free(&m);
    for (int t = 0; t < DT_COUNT; t++) free(buf[t]);
}

/* Our encoder, read by the Python msgpack package. */
static void test_header_read_by_python(void **state)
{
    (void)state;
    struct wire_msg m;
    wire_msg_init(&m, WIRE_SCORED);
    m.id = 42;
    m.epoch = 3;
    m.cursor = 1ull << 40;
    snprintf(m.stage, sizeof m.stage, "teacher");
    m.meta = json_loads("{\"temperature\": 0.5, \"k\": -7, \"tags\": [\"a\", true, null], "
                        "\"nested\": {\"x\": {\"y\": 1}}}", 0, NULL);
    assert_non_null(m.meta);
    int32_t ids[8 * 4 * 2] = { 0 };
    int64_t shape[3] = { 8, 4, 2 };
    assert_int_equal(wire_msg_add_tensor(&m, "topk_ids", DT_I32, 3, shape, ids), 0);
    struct wire_buf hdr;
    assert_int_equal(wire_encode(&m, &hdr), 0);
    char path[] = "/tmp/sushi_wire_hdrXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, hdr.data, hdr.size), (ssize_t)hdr.size);
    close(fd);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/wire_msgpack.py decode %s",
             repo_root(), path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int prc = pclose(p);
    unlink(path);
    if (prc != 0) { wire_buf_free(&hdr); wire_msg_free(&m); skip(); } /* no python3-msgpack */
    json_t *got = json_loads(out, 0, NULL);
    assert_non_null(got);
    json_t *want = json_pack("{s:i, s:s, s:I, s:I, s:I, s:s, s:O, s:[{s:s, s:s, s:[i,i,i], s:i}]}",
                             "v", 1, "kind", "scored", "id", (json_int_t)42, "epoch", (json_int_t)3,
                             "cursor", (json_int_t)(1ll << 40), "stage", "teacher", "meta", m.meta,
                             "tensors", "name", "topk_ids", "dtype", "I32", "shape", 8, 4, 2,
                             "frame", 1);
    assert_non_null(want);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    wire_buf_free(&hdr);
    wire_msg_free(&m);
}

/* A header written by the Python msgpack package, read by our decoder. */
static void test_python_header_decoded(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/wire_msgpack.py encode "
             "'{\"tensors\": [{\"frame\": 1, \"shape\": [2, 3], \"dtype\": \"BF16\", \"name\": "
             "\"tail_logprob\"}], \"meta\": {\"t\": 1.25, \"u\": [1, -300000, \"z\"]}, "
             "\"stage\": \"loader\", \"kind\": \"batch\", \"v\": 1, \"id\": 18446744073709551615, "
             "\"cursor\": 65536}'", repo_root());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    uint8_t hdr[1024];
    size_t n = fread(hdr, 1, sizeof hdr, p);
    if (pclose(p) != 0) skip();
    uint8_t data[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    struct wire_frame f[2] = { { hdr, n }, { data, sizeof data } };
    struct wire_caps caps = wire_caps_default();
    struct wire_msg m;
    assert_int_equal(wire_decode(f, 2, &caps, &m), 0);
    assert_int_equal(m.kind, WIRE_BATCH);
    assert_true(m.id == UINT64_MAX);
    assert_true(m.cursor == 65536 && m.epoch == 0);
    assert_string_equal(m.stage, "loader");
    json_t *want = json_loads("{\"t\": 1.25, \"u\": [1, -300000, \"z\"]}", 0, NULL);
    assert_true(json_equal(m.meta, want));
    json_decref(want);
    assert_int_equal(m.ntensors, 1);
    assert_int_equal(m.tensors[0].dtype, DT_BF16);
    assert_int_equal(m.tensors[0].shape[1], 3);
    assert_ptr_equal(m.tensors[0].data, data);
    wire_msg_free(&m);
}

/* ---- malformed headers, built by hand with msgpack-c ---- */

struct spec {
    int v;
    const char *kind;
    int ntensors;
    const char *dtype;
    int64_t dim0;          /* shape is [dim0, 2] */
    int meta_depth;        /* meta = {"a": {"a": ... 1}} nested this deep (0: no meta) */
    const char *extra_key; /* an additional top-level key with value nil */
    int frame_offset;      /* added to each tensor's frame index */
};

static struct spec spec_ok(void)
{
    struct spec s = { 1, "batch", 2, "F32", 3, 2, NULL, 0 };
    return s;
}

static void pstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pmeta(msgpack_packer *pk, int depth)
{
    if (depth == 0) { msgpack_pack_int(pk, 1); return; }
    msgpack_pack_map(pk, 1);
    pstr(pk, "a");
    pmeta(pk, depth - 1);
}

static void build(const struct spec *s, msgpack_sbuffer *sb)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4 + (s->meta_depth > 0) + (s->extra_key != NULL));
    pstr(&pk, "v");
    msgpack_pack_int(&pk, s->v);
    pstr(&pk, "kind");
    pstr(&pk, s->kind);
    pstr(&pk, "id");
    msgpack_pack_uint64(&pk, 9);
    if (s->meta_depth > 0) {
        pstr(&pk, "meta");
        pmeta(&pk, s->meta_depth);
    }
    if (s->extra_key) {
        pstr(&pk, s->extra_key);
        msgpack_pack_nil(&pk);
    }
    pstr(&pk, "tensors");
    msgpack_pack_array(&pk, (size_t)s->ntensors);
    for (int i = 0; i < s->ntensors; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        msgpack_pack_map(&pk, 4);
        pstr(&pk, "name");
        pstr(&pk, name);
        pstr(&pk, "dtype");
        pstr(&pk, s->dtype);
        pstr(&pk, "shape");
        msgpack_pack_array(&pk, 2);
        msgpack_pack_int64(&pk, s->dim0);
        msgpack_pack_int(&pk, 2);
        pstr(&pk, "frame");
        msgpack_pack_int(&pk, i + 1 + s->frame_offset);
    }
}

static float g_data[4][64];

/* Decodes header `hdr` with nframes frames (frame i > 0 of `fbytes` bytes); checks rc and
 * that the error names `needle`, and that a failed decode leaves an empty message. */
static void expect_bytes(const void *hdr, size_t size, int nframes, size_t fbytes,
                         const struct wire_caps *caps, int want_rc, const char *needle)
{
    struct wire_frame f[8];
    f[0].data = hdr;
    f[0].size = size;
    for (int i = 1; i < nframes && i < 8; i++) {
        f[i].data = g_data[(i - 1) % 4];
        f[i].size = fbytes;
    }
    struct wire_caps c = caps ? *caps : wire_caps_default();
    struct wire_msg m;
    int rc = wire_decode(f, nframes, &c, &m);
    if (rc != want_rc || !strstr(sushi_last_error(), needle))
        fail_msg("want rc %d and \"%s\", got rc %d: %s", want_rc, needle, rc, sushi_last_error());
    if (rc == 0) wire_msg_free(&m);
    else assert_true(m.meta == NULL && m.ntensors == 0 && m.release == NULL);
}

static void expect(const struct spec *s, int nframes, size_t fbytes, const struct wire_caps *caps,
                   int want_rc, const char *needle)
{
    msgpack_sbuffer sb;
    build(s, &sb);
    expect_bytes(sb.data, sb.size, nframes, fbytes, caps, want_rc, needle);
    msgpack_sbuffer_destroy(&sb);
}

static void test_valid_spec_accepted(void **state)
{
    (void)state;
    struct spec s = spec_ok();
    expect(&s, 3, 24, NULL, 0, "");
}

static void test_wrong_version(void **state)
{
    (void)state;
    struct spec s = spec_ok();
    s.v = 2;
    expect(&s, 3, 24, NULL, SUSHI_EUNSUPPORTED, "v: version 2 is not supported");
    s.v = 0;
    expect(&s, 3, 24, NULL, SUSHI_EUNSUPPORTED, "version 0");
    s.v = -1;
    expect(&s, 3, 24, NULL, SUSHI_EFORMAT, "v: expected unsigned integer, got negative integer");
}

static void test_unknown_kind_and_dtype(void **state)
{
    (void)state;
    struct spec s = spec_ok();
    s.kind = "scoreded";
    expect(&s, 3, 24, NULL, SUSHI_EFORMAT, "kind: unknown kind \"scoreded\"");
    s = spec_ok();
    s.dtype = "F33";
    expect(&s, 3, 24, NULL, SUSHI_EFORMAT, "tensors[0].dtype: unknown dtype \"F33\"");
}

static void test_shape_dtype_vs_frame_bytes(void **state)
{
    (void)state;
    struct spec s = spec_ok(); /* [3,2] F32 = 24 bytes */
    expect(&s, 3, 20, NULL, SUSHI_ESHAPE, "tensor t0: F32 shape of 2 dims needs 24 bytes but frame 1 holds 20");
    s.dtype = "F16";
    expect(&s, 3, 24, NULL, SUSHI_ESHAPE, "needs 12 bytes");
    s = spec_ok();
    s.dim0 = INT64_MAX; /* numel overflow */
    expect(&s, 3, 24, NULL, SUSHI_EFORMAT, "overflows");
    s.dim0 = -3;
    expect(&s, 3, 24, NULL, SUSHI_EFORMAT, "tensors[0].shape[0]: expected unsigned integer");
}

static void test_too_many_tensors(void **state)
{
    (void)state;
    struct spec s = spec_ok();
    s.ntensors = 3;
    struct wire_caps c = wire_caps_default();
    c.max_tensors = 2;
    expect(&s, 4, 24, &c, SUSHI_EFORMAT, "tensors: 3 tensors exceed the cap of 2");
    /* more than the hard limit, whatever the frames */
    s.ntensors = WIRE_MAX_TENSORS + 1;
    expect(&s, 4, 24, NULL, SUSHI_EFORMAT, "33 tensors exceed the cap of 32");
}

static void test_oversized(void **state)
{
    (void)state;
    struct spec s = spec_ok();
    struct wire_caps c = wire_caps_default();
    c.max_header_bytes = 40;
    expect(&s, 3, 24, &c, SUSHI_EFORMAT, "over the cap of 40");
    c = wire_caps_default();
    c.max_tensor_bytes = 16;
    expect(&s, 3, 24, &c, SUSHI_EFORMAT, "tensor t0: frame 1 is 24 bytes, over the cap of 16");
    c = wire_caps_default();
    c.max_header_bytes = 256;
    c.max_msg_bytes = 256;
    s.dim0 = 16; /* 128-byte frames: header + 2 x 128 > 256 */
    expect(&s, 3, 128, &c, SUSHI_EFORMAT, "by frame 2, over the cap of 256");
}

static void test_nested_too_deep(void **state)
{
    (void)state;
    struct spec s = spec_ok();
    struct wire_caps c = wire_caps_default();
    c.max_depth = 4;
    s.meta_depth = 4;
    expect(&s, 3, 24, &c, 0, "");
    s.meta_depth = 5;
    expect(&s, 3, 24, &c, SUSHI_EFORMAT, "meta.a.a.a.a: nested deeper than 4");
    s.meta_depth = 5000; /* far past any cap: refused, no deep recursion */
    expect(&s, 3, 24, NULL, SUSHI_EFORMAT, "nested deeper than 8");
}

static void test_trailing_garbage(void **state)
{
    (void)state;
    struct spec s = spec_ok();
    msgpack_sbuffer sb;
    build(&s, &sb);
    msgpack_sbuffer_write(&sb, "\x00\x01\x02", 3);
    expect_bytes(sb.data, sb.size, 3, 24, NULL, SUSHI_EFORMAT, "header: 3 trailing bytes after the map");
    msgpack_sbuffer_destroy(&sb);
}

static void test_missing_and_extra_frames(void **state)
{
    (void)state;
    struct spec s = spec_ok();
    expect(&s, 2, 24, NULL, SUSHI_EFORMAT, "missing frames: header declares 2 tensors (3 frames) but 2 arrived");
    expect(&s, 4, 24, NULL, SUSHI_EFORMAT, "extra frames: header declares 2 tensors (3 frames) but 4 arrived");
    expect(&s, 0, 24, NULL, SUSHI_EFORMAT, "no frames");
    s.frame_offset = 1;
    expect(&s, 3, 24, NULL, SUSHI_EFORMAT, "tensors[0] (t0): frame 2, expected 1");
}

static void test_truncated_header(void **state)
{
    (void)state;
    struct spec s = spec_ok();
    msgpack_sbuffer sb;
    build(&s, &sb);
    /* every proper prefix is refused without reading past its end */
    for (size_t n = 1; n < sb.size; n++) {
        uint8_t *copy = malloc(n); /* exact size so ASan catches over-reads */
        memcpy(copy, sb.data, n);
        expect_bytes(copy, n, 3, 24, NULL, SUSHI_EFORMAT, "header");
        free(copy);
    }
    expect_bytes(sb.data, sb.size - 1, 3, 24, NULL, SUSHI_EFORMAT, "tensors[1].frame: truncated");
    expect_bytes(sb.data, 0, 3, 24, NULL, SUSHI_EFORMAT, "header: empty frame");
    msgpack_sbuffer_destroy(&sb);
}

static void test_declared_lengths_checked(void **state)
{
    (void)state;
    /* map of 1 pair whose key is a str32 claiming 4 GiB */
    const uint8_t big_str[] = { 0x81, 0xdb, 0xff, 0xff, 0xff, 0xf0, 'v' };
    expect_bytes(big_str, sizeof big_str, 1, 0, NULL, SUSHI_EFORMAT,
                 "header key: declares 4294967280 bytes but only 1 bytes remain");
    /* map32 claiming 2^32-1 pairs */
    const uint8_t big_map[] = { 0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01 };
    expect_bytes(big_map, sizeof big_map, 1, 0, NULL, SUSHI_EFORMAT,
                 "header: declares 4294967295 entries but only 3 bytes remain");
    /* tensors as array16 of 60000 entries */
    const uint8_t big_arr[] = { 0x82, 0xa1, 'v', 0x01, 0xa7, 't', 'e', 'n', 's', 'o', 'r', 's',
                                0xdc, 0xea, 0x60 };
    expect_bytes(big_arr, sizeof big_arr, 1, 0, NULL, SUSHI_EFORMAT, "tensors: declares 60000 entries");
}

static void test_other_malformed(void **state)
{
    (void)state;
    struct spec s = spec_ok();
    s.extra_key = "colour";
    expect(&s, 3, 24, NULL, SUSHI_EFORMAT, "header: unknown key \"colour\"");
    s.extra_key = "kind";
    expect(&s, 3, 24, NULL, SUSHI_EFORMAT, "header: duplicate key \"kind\"");
    const uint8_t not_map[] = { 0x91, 0x01 };
    expect_bytes(not_map, sizeof not_map, 1, 0, NULL, SUSHI_EFORMAT, "header: expected map, got array");
    const uint8_t no_kind[] = { 0x81, 0xa1, 'v', 0x01 };
    expect_bytes(no_kind, sizeof no_kind, 1, 0, NULL, SUSHI_EFORMAT, "missing key \"kind\"");
    const uint8_t ext[] = { 0x82, 0xa1, 'v', 0x01, 0xa4, 'k', 'i', 'n', 'd', 0xd4, 0x01, 0x00 };
    expect_bytes(ext, sizeof ext, 1, 0, NULL, SUSHI_EFORMAT, "kind: msgpack ext type 0xd4 is not allowed");
    const uint8_t c1[] = { 0x81, 0xa1, 'v', 0xc1 };
    expect_bytes(c1, sizeof c1, 1, 0, NULL, SUSHI_EFORMAT, "v: invalid msgpack byte 0xc1");
    const uint8_t nul_kind[] = { 0x82, 0xa1, 'v', 0x01, 0xa4, 'k', 'i', 'n', 'd', 0xa2, 'a', 0x00 };
    expect_bytes(nul_kind, sizeof nul_kind, 1, 0, NULL, SUSHI_EFORMAT, "kind: string holds a NUL byte");
    /* bad UTF-8 in meta, and a meta that is not a map */
    const uint8_t bad_utf8[] = { 0x83, 0xa1, 'v', 0x01, 0xa4, 'k', 'i', 'n', 'd', 0xa3, 'a', 'c', 'k',
                                 0xa4, 'm', 'e', 't', 'a', 0x81, 0xa1, 'x', 0xa1, 0xff };
    expect_bytes(bad_utf8, sizeof bad_utf8, 1, 0, NULL, SUSHI_EFORMAT, "meta.x: string is not valid UTF-8");
    const uint8_t bad_key[] = { 0x83, 0xa1, 'v', 0x01, 0xa4, 'k', 'i', 'n', 'd', 0xa3, 'a', 'c', 'k',
                                0xa4, 'm', 'e', 't', 'a', 0x81, 0xa1, 0xc3, 0x01 };
    expect_bytes(bad_key, sizeof bad_key, 1, 0, NULL, SUSHI_EFORMAT, "meta: key is not valid UTF-8");
    const uint8_t dup_key[] = { 0x83, 0xa1, 'v', 0x01, 0xa4, 'k', 'i', 'n', 'd', 0xa3, 'a', 'c', 'k',
                                0xa4, 'm', 'e', 't', 'a', 0x82, 0xa1, 'x', 0x01, 0xa1, 'x', 0x02 };
    expect_bytes(dup_key, sizeof dup_key, 1, 0, NULL, SUSHI_EFORMAT, "meta: duplicate key \"x\"");
    const uint8_t meta_int[] = { 0x83, 0xa1, 'v', 0x01, 0xa4, 'k', 'i', 'n', 'd', 0xa3, 'a', 'c', 'k',
                                 0xa4, 'm', 'e', 't', 'a', 0x05 };
    expect_bytes(meta_int, sizeof meta_int, 1, 0, NULL, SUSHI_EFORMAT, "meta: expected map, got unsigned integer");
}

static void test_encode_refuses_bad_messages(void **state)
{
    (void)state;
    struct wire_msg m;
    struct wire_buf b;
    wire_msg_init(&m, WIRE_BATCH);
    int64_t shape[2] = { 2, 2 };
    float x[4] = { 0 };
    assert_int_equal(wire_msg_add_tensor(&m, "x", DT_F32, 2, shape, x), 0);
    assert_int_equal(wire_msg_add_tensor(&m, "x", DT_F32, 2, shape, x), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "added twice"));
    assert_int_equal(wire_msg_add_tensor(&m, "y", DT_COUNT, 2, shape, x), SUSHI_EFORMAT);
    assert_int_equal(wire_msg_add_tensor(&m, "", DT_F32, 2, shape, x), SUSHI_EINVAL);
    m.tensors[0].nbytes = 12;
    assert_int_equal(wire_encode(&m, &b), SUSHI_ESHAPE);
    assert_non_null(strstr(sushi_last_error(), "tensor x: nbytes 12"));
    m.tensors[0].nbytes = 16;
    m.kind = (enum wire_kind)99;
    assert_int_equal(wire_encode(&m, &b), SUSHI_EINVAL);
    assert_null(b.data);
    m.kind = WIRE_BATCH;
    m.meta = json_array();
    assert_int_equal(wire_encode(&m, &b), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "meta must be a json object"));
    wire_msg_free(&m);
}

int main(void)
{
    log_set_level(LOG_QUIET);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_kind),
        cmocka_unit_test(test_roundtrip_every_dtype),
        cmocka_unit_test(test_header_read_by_python),
        cmocka_unit_test(test_python_header_decoded),
        cmocka_unit_test(test_valid_spec_accepted),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_unknown_kind_and_dtype),
        cmocka_unit_test(test_shape_dtype_vs_frame_bytes),
        cmocka_unit_test(test_too_many_tensors),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_nested_too_deep),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_missing_and_extra_frames),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_declared_lengths_checked),
        cmocka_unit_test(test_other_malformed),
        cmocka_unit_test(test_encode_refuses_bad_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
