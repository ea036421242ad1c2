// libs: core
/* safetensors: round trip of every dtype, files exchanged with an independent Python
 * implementation (tests/oracle/ckpt_safetensors.py, struct + json only), and corrupt
 * files refused with messages naming the file, the tensor and the cause. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/core/safetensors.h"

static char tmpdir[64];
static const char *root_dir(void) {
    const char *r = getenv("SUSHI_REPO_ROOT");
    return r ? r : ".";
}
static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* the oracle's byte pattern and shapes */
static void pattern(int i, unsigned char *out, size_t n, int is_bool) {
    for (size_t j = 0; j < n; j++) {
        out[j] = (unsigned char)((i * 31 + (int)j * 7 + 3) & 0xff);
        if (is_bool) out[j] &= 1;
    }
}
static int shape_of(int i, int64_t *shape) {
    static const int64_t s[5][3] = {{2, 3}, {5}, {1, 2, 2}, {0}, {3, 1}};
    static const int nd[5] = {2, 1, 3, 0, 2};
    for (int d = 0; d < nd[i % 5]; d++) shape[d] = s[i % 5][d];
    return nd[i % 5];
}
static size_t numel(int nd, const int64_t *shape) {
    size_t n = 1;
    for (int d = 0; d < nd; d++) n *= (size_t)shape[d];
    return n;
}

static int have_python(void) { return access("/usr/bin/python3", X_OK) == 0; }

static int run_oracle(const char *cmd, const char *path, char *out, size_t cap) {
    char line[1024];
    snprintf(line, sizeof line, "/usr/bin/python3 %s/tests/oracle/ckpt_safetensors.py %s %s 2>&1",
             root_dir(), cmd, path);
    FILE *p = popen(line, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    return pclose(p);
}

static void assert_error_has(const char *needle) {
    const char *e = sushi_last_error();
    if (!strstr(e, needle)) fprintf(stderr, "error \"%s\" lacks \"%s\"\n", e, needle);
    assert_non_null(strstr(e, needle));
}

/* writes one tensor per dtype with the oracle's pattern */
static void write_all_dtypes(const char *path) {
    struct st_writer *w = st_writer_new();
    assert_non_null(w);
    unsigned char *bufs[DT_COUNT];
    for (int i = 0; i < DT_COUNT; i++) {
        int64_t shape[3];
        int nd = shape_of(i, shape);
        size_t nb = numel(nd, shape) * dtype_size((enum dtype)i);
        bufs[i] = malloc(nb ? nb : 1);
        pattern(i, bufs[i], nb, i == DT_BOOL);
        char name[32];
        snprintf(name, sizeof name, "t%02d_%s", i, dtype_name((enum dtype)i));
        assert_int_equal(st_writer_add(w, name, (enum dtype)i, nd, shape, bufs[i]), 0);
    }
    assert_int_equal(st_writer_meta(w, "writer", "sushi"), 0);
    assert_int_equal(st_writer_meta(w, "k", "v"), 0);
    assert_int_equal(st_writer_commit(w, path), 0);
    st_writer_free(w);
    for (int i = 0; i < DT_COUNT; i++) free(bufs[i]);
}

static void check_all_dtypes(const char *path, const char *writer) {
    struct st_file f;
    int rc = st_open(&f, path);
    if (rc) fprintf(stderr, "%s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    assert_int_equal(f.n, DT_COUNT);
    assert_string_equal(st_meta(&f, "writer"), writer);
    assert_string_equal(st_meta(&f, "k"), "v");
    assert_null(st_meta(&f, "absent"));
    for (int i = 0; i < DT_COUNT; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%02d_%s", i, dtype_name((enum dtype)i));
        const struct st_tensor *t = st_find(&f, name);
        assert_non_null(t);
        int64_t shape[3];
        int nd = shape_of(i, shape);
        assert_int_equal(st_expect(&f, name, (enum dtype)i, nd, shape), 0);
        size_t nb = numel(nd, shape) * dtype_size((enum dtype)i);
        assert_int_equal(t->nbytes, nb);
        assert_int_equal(st_numel(t), numel(nd, shape));
        unsigned char want[64];
        pattern(i, want, nb, i == DT_BOOL);
        assert_memory_equal(t->data, want, nb);
    }
    st_close(&f);
}

static void test_roundtrip_every_dtype(void **state) {
    (void)state;
    const char *p = tmp_path("all.safetensors");
    write_all_dtypes(p);
    check_all_dtypes(p, "sushi");
    /* the data starts 8-byte aligned and no temporary file is left behind */
    unsigned char hdr[8];
    FILE *f = fopen(p, "rb");
    assert_int_equal(fread(hdr, 1, 8, f), 8);
    fclose(f);
    assert_int_equal(hdr[0] % 8, 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp- >/dev/null", tmpdir);
    assert_int_not_equal(system(cmd), 0);
}

static void test_python_reads_ours(void **state) {
    (void)state;
    if (!have_python()) skip();
    const char *p = tmp_path("ours.safetensors");
    write_all_dtypes(p);
    char out[2048];
    int rc = run_oracle("check", p, out, sizeof out);
    if (rc) fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "OK 15 {\"k\": \"v\", \"writer\": \"sushi\"}\n");
}

static void test_we_read_python(void **state) {
    (void)state;
    if (!have_python()) skip();
    const char *p = tmp_path("py.safetensors");
    char out[2048];
    assert_int_equal(run_oracle("write", p, out, sizeof out), 0);
    check_all_dtypes(p, "python");
}

/* ---- corrupt files ---- */

static void write_raw(const char *path, const char *json, const void *data, size_t n, long long hlen_override) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t h = hlen_override >= 0 ? (uint64_t)hlen_override : strlen(json);
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(h >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(json, 1, strlen(json), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void expect_refused(const char *json, size_t ndata, long long hlen, int code, const char *msg1,
                           const char *msg2) {
    static unsigned char data[256];
    const char *p = tmp_path("bad.safetensors");
    write_raw(p, json, data, ndata, hlen);
    struct st_file f;
    sushi_clear_error();
    int rc = st_open(&f, p);
    if (rc != code) fprintf(stderr, "for %s: rc %d, %s\n", json, rc, sushi_last_error());
    assert_int_equal(rc, code);
    assert_error_has(p);
    if (msg1) assert_error_has(msg1);
    if (msg2) assert_error_has(msg2);
    assert_null(f.map);
}

static void test_corrupt_headers(void **state) {
    (void)state;
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_refused(ok, 8, 1000, SUSHI_EFORMAT, "header length 1000 exceeds the file", NULL);
    expect_refused(ok, 8, 1LL << 40, SUSHI_EFORMAT, "header length", "exceeds");
    expect_refused("{\"a\":{\"dtype\":\"F32\",", 0, -1, SUSHI_EFORMAT, "corrupt header JSON", NULL);
    expect_refused("[1,2]", 0, -1, SUSHI_EFORMAT, "not an object", NULL);
    expect_refused("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1,
                   SUSHI_EFORMAT, "tensor a: unknown dtype \"F33\"", NULL);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, -1,
                   SUSHI_EFORMAT, "tensor a: shape x dtype size is 12 bytes but data_offsets span 8", NULL);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, -1,
                   SUSHI_EFORMAT, "tensors a and b overlap", NULL);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8, -1,
                   SUSHI_EFORMAT, "tensor a: data_offsets [8, 16] beyond the data (8 bytes", NULL);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, -1,
                   SUSHI_EFORMAT, "tensor a: bad data_offsets", NULL);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, -1,
                   SUSHI_EFORMAT, "tensor a: shape[0] is not a non-negative integer", NULL);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, -1, SUSHI_EFORMAT,
                   "tensor a: data_offsets must be [begin, end]", NULL);
    expect_refused("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1, SUSHI_EFORMAT,
                   "tensor a: missing or non-string dtype", NULL);
    expect_refused("{\"a\":5}", 0, -1, SUSHI_EFORMAT, "tensor a: header entry is not an object", NULL);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 8, -1,
                   SUSHI_EUNSUPPORTED, "tensor a: 9 dimensions", NULL);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, -1,
                   SUSHI_EFORMAT, "duplicate", NULL);
    expect_refused("{\"__metadata__\":{\"x\":3}}", 0, -1, SUSHI_EFORMAT, "__metadata__.x is not a string", NULL);
    expect_refused("{\"__metadata__\":[]}", 0, -1, SUSHI_EFORMAT, "__metadata__ is not an object", NULL);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,8],\"data_offsets\":[0,8]}}",
                   8, -1, SUSHI_EFORMAT, "tensor a: shape too large", NULL);
}

static void test_truncated_everywhere(void **state) {
    (void)state;
    const char *p = tmp_path("full.safetensors");
    write_all_dtypes(p);
    char *buf;
    size_t n;
    assert_int_equal(fs_read_all(p, &buf, &n), 0);
    const char *q = tmp_path("trunc.safetensors");
    for (size_t cut = 0; cut < n; cut++) {
        FILE *f = fopen(q, "wb");
        fwrite(buf, 1, cut, f);
        fclose(f);
        struct st_file sf;
        int rc = st_open(&sf, q);
        if (rc != SUSHI_EFORMAT) fprintf(stderr, "cut at %zu of %zu: rc %d\n", cut, n, rc);
        assert_int_equal(rc, SUSHI_EFORMAT);
        const char *e = sushi_last_error();
        assert_true(strstr(e, "truncated") != NULL || strstr(e, "corrupt header") != NULL);
    }
    free(buf);
    struct st_file sf;
    assert_int_equal(st_open(&sf, tmp_path("missing.safetensors")), SUSHI_ENOTFOUND);
    assert_error_has("missing.safetensors");
}

static void test_expect_messages(void **state) {
    (void)state;
    const char *p = tmp_path("e.safetensors");
    float x[6] = {0};
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2};
    struct st_writer *w = st_writer_new();
    assert_int_equal(st_writer_add(w, "w", DT_F32, 2, s23, x), 0);
    assert_int_equal(st_writer_add(w, "w", DT_F32, 2, s23, x), SUSHI_EINVAL);
    assert_error_has("duplicate tensor w");
    assert_int_equal(st_writer_add(w, "__metadata__", DT_F32, 2, s23, x), SUSHI_EINVAL);
    assert_int_equal(st_writer_add(w, "n", DT_F32, 2, s23, NULL), SUSHI_EINVAL);
    assert_int_equal(st_writer_add(w, "bad", (enum dtype)99, 2, s23, x), SUSHI_EINVAL);
    assert_int_equal(st_writer_commit(w, p), 0);
    st_writer_free(w);
    struct st_file f;
    assert_int_equal(st_open(&f, p), 0);
    assert_int_equal(st_expect(&f, "w", DT_F32, 2, s32), SUSHI_ESHAPE);
    assert_error_has("tensor w: wrong shape: expected [3, 2], got [2, 3]");
    assert_int_equal(st_expect(&f, "w", DT_BF16, 2, s23), SUSHI_ESHAPE);
    assert_error_has("tensor w: wrong dtype: expected BF16, got F32");
    assert_int_equal(st_expect(&f, "v", DT_F32, 2, s23), SUSHI_ENOTFOUND);
    assert_error_has("missing tensor v");
    st_close(&f);
    /* writing into a folder that does not exist fails cleanly */
    w = st_writer_new();
    assert_int_equal(st_writer_add(w, "w", DT_F32, 2, s23, x), 0);
    assert_int_equal(st_writer_commit(w, "/nonexistent-dir/x.safetensors"), SUSHI_EIO);
    assert_error_has("/nonexistent-dir/x.safetensors");
    st_writer_free(w);
}

/* Random byte flips in the header and length: never a crash (ASan runs this too); a
 * file either opens with every tensor inside the mapping or is refused as corrupt. */
static void test_mutated_headers(void **state) {
    (void)state;
    const char *p = tmp_path("m0.safetensors");
    write_all_dtypes(p);
    char *orig;
    size_t n;
    assert_int_equal(fs_read_all(p, &orig, &n), 0);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)orig[i];
    const char *q = tmp_path("m1.safetensors");
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int opened = 0, refused = 0;
    for (int trial = 0; trial < 3000; trial++) {
        char *buf = malloc(n);
        memcpy(buf, orig, n);
        int flips = 1 + trial % 3;
        for (int k = 0; k < flips; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            size_t at = (size_t)(x % (8 + hl));
            buf[at] = (char)(x >> 32);
        }
        FILE *f = fopen(q, "wb");
        fwrite(buf, 1, n, f);
        fclose(f);
        free(buf);
        struct st_file sf;
        int rc = st_open(&sf, q);
        if (rc == 0) {
            opened++;
            for (size_t t = 0; t < sf.n; t++) {
                const char *b = sf.tensors[t].data, *base = sf.map;
                assert_true(b >= base && b + sf.tensors[t].nbytes <= base + sf.map_size);
                assert_int_equal(sf.tensors[t].nbytes, st_numel(&sf.tensors[t]) * dtype_size(sf.tensors[t].dtype));
            }
            st_close(&sf);
        } else {
            refused++;
            assert_true(rc == SUSHI_EFORMAT || rc == SUSHI_EUNSUPPORTED);
            assert_non_null(strstr(sushi_last_error(), q));
        }
    }
    assert_true(refused > 1000);
    free(orig);
}

/* ---- sharded sets ---- */

static void write_shard(const char *dir, const char *file, const char *const *names, int n, const float *data) {
    struct st_writer *w = st_writer_new();
    int64_t shape[1] = {2};
    for (int i = 0; i < n; i++) assert_int_equal(st_writer_add(w, names[i], DT_F32, 1, shape, data + 2 * i), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    assert_int_equal(st_writer_commit(w, path), 0);
    st_writer_free(w);
}

static void write_index(const char *dir, const char *text) {
    char path[300];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    assert_int_equal(fs_write_atomic(path, text, strlen(text)), 0);
}

static void test_sharded_set(void **state) {
    (void)state;
    const char *dir = tmp_path("shards");
    assert_int_equal(fs_mkdir_p(dir, 0755), 0);
    static const float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const char *a[] = {"x.a", "x.b"}, *b[] = {"y.c", "y.d"};
    write_shard(dir, "model-00001-of-00002.safetensors", a, 2, data);
    write_shard(dir, "model-00002-of-00002.safetensors", b, 2, data + 4);
    const char *good = "{\"metadata\": {\"total_size\": 32}, \"weight_map\": {"
                       "\"x.a\": \"model-00001-of-00002.safetensors\", \"x.b\": \"model-00001-of-00002.safetensors\","
                       "\"y.c\": \"model-00002-of-00002.safetensors\", \"y.d\": \"model-00002-of-00002.safetensors\"}}";
    write_index(dir, good);
    struct st_set s;
    int rc = st_set_open(&s, dir, "model");
    if (rc) fprintf(stderr, "%s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    assert_int_equal(s.n_files, 2);
    assert_int_equal(s.n, 4);
    const struct st_file *f = NULL;
    const struct st_tensor *t = st_set_find(&s, "y.d", &f);
    assert_non_null(t);
    assert_non_null(strstr(f->path, "model-00002-of-00002.safetensors"));
    float got[2];
    memcpy(got, t->data, 8);
    assert_true(got[0] == 7 && got[1] == 8);
    assert_null(st_set_find(&s, "y.e", NULL));
    st_set_close(&s);
    /* index and shards must agree */
    write_index(dir, "{\"weight_map\": {\"x.a\": \"model-00001-of-00002.safetensors\", "
                     "\"x.b\": \"model-00001-of-00002.safetensors\", \"y.c\": \"model-00002-of-00002.safetensors\"}}");
    assert_int_equal(st_set_open(&s, dir, "model"), SUSHI_EFORMAT);
    assert_error_has("tensor y.d in");
    assert_error_has("is not listed in the index");
    write_index(dir, "{\"weight_map\": {\"x.a\": \"model-00001-of-00002.safetensors\", "
                     "\"x.b\": \"model-00001-of-00002.safetensors\", \"y.c\": \"model-00002-of-00002.safetensors\","
                     "\"y.d\": \"model-00002-of-00002.safetensors\", \"z\": \"model-00002-of-00002.safetensors\"}}");
    assert_int_equal(st_set_open(&s, dir, "model"), SUSHI_ENOTFOUND);
    assert_error_has("tensor z: listed in the index but missing from model-00002-of-00002.safetensors");
    write_index(dir, "{\"weight_map\": {\"x.a\": \"model-00002-of-00002.safetensors\", "
                     "\"x.b\": \"model-00001-of-00002.safetensors\", \"y.c\": \"model-00002-of-00002.safetensors\","
                     "\"y.d\": \"model-00002-of-00002.safetensors\"}}");
    assert_int_equal(st_set_open(&s, dir, "model"), SUSHI_EFORMAT);
    assert_error_has("tensor x.a: the index says model-00002-of-00002.safetensors but it is in");
    write_index(dir, "{\"weight_map\": {\"x.a\": \"../etc/passwd\"}}");
    assert_int_equal(st_set_open(&s, dir, "model"), SUSHI_EFORMAT);
    assert_error_has("weight_map.x.a: bad shard file name");
    write_index(dir, "{\"weight_map\": {\"x.a\": \"model-00003-of-00002.safetensors\"}}");
    assert_int_equal(st_set_open(&s, dir, "model"), SUSHI_ENOTFOUND);
    assert_error_has("model-00003-of-00002.safetensors: cannot open");
    write_index(dir, "{\"weight_map\": [");
    assert_int_equal(st_set_open(&s, dir, "model"), SUSHI_EFORMAT);
    assert_error_has("model.safetensors.index.json: corrupt JSON");
    write_index(dir, "{\"metadata\": {}}");
    assert_int_equal(st_set_open(&s, dir, "model"), SUSHI_EFORMAT);
    assert_error_has("weight_map: missing or not a map");
    /* the same tensor in two shards */
    write_shard(dir, "model-00002-of-00002.safetensors", a, 1, data);
    write_index(dir, "{\"weight_map\": {\"x.a\": \"model-00001-of-00002.safetensors\", "
                     "\"x.b\": \"model-00002-of-00002.safetensors\"}}");
    assert_int_equal(st_set_open(&s, dir, "model"), SUSHI_EFORMAT);
    assert_error_has("tensor x.a appears in both");
    /* a single file without an index, with many tensors (hashed lookup) */
    const char *one = tmp_path("one");
    assert_int_equal(fs_mkdir_p(one, 0755), 0);
    struct st_writer *w = st_writer_new();
    static float big[2 * 5000];
    char names[5000][16];
    int64_t shape[1] = {2};
    for (int i = 0; i < 5000; i++) {
        snprintf(names[i], sizeof names[i], "t.%d", i);
        big[2 * i] = (float)i;
        assert_int_equal(st_writer_add(w, names[i], DT_F32, 1, shape, big + 2 * i), 0);
    }
    char path[300];
    snprintf(path, sizeof path, "%s/model.safetensors", one);
    assert_int_equal(st_writer_commit(w, path), 0);
    st_writer_free(w);
    assert_int_equal(st_set_open(&s, one, "model"), 0);
    for (int i = 0; i < 5000; i++) {
        t = st_set_find(&s, names[i], NULL);
        assert_non_null(t);
        memcpy(got, t->data, 4);
        assert_true(got[0] == (float)i);
    }
    st_set_close(&s);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sushi-test-st-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_dtype), cmocka_unit_test(test_python_reads_ours),
        cmocka_unit_test(test_we_read_python),        cmocka_unit_test(test_corrupt_headers),
        cmocka_unit_test(test_truncated_everywhere),  cmocka_unit_test(test_expect_messages),
        cmocka_unit_test(test_mutated_headers),       cmocka_unit_test(test_sharded_set),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fs_remove_tree(tmpdir);
    return rc;
}
