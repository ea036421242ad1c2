// libs: data media tok core
/* Multimodal batches (common/data with format `manifest`): every manifest row holds its
 * caption + EOS then padding, and its media item equals, byte for byte, what the
 * common/media functions give for the same file and shapes; item rows point at those
 * rows; the same ids give the same batches with 1 and 3 stream threads; a corrupt file
 * leaves a text-only row, counted once however often the batch is made; a missing file
 * is dropped at open; text-only configs carry no media; `data.media` config parsing and
 * its errors. Byte tokenizer (EOS 256); fixtures from scripts/gen-media-fixtures.sh. */
#include "tests/unit/test_data_corpus.h"
#include "tests/unit/test_media_fixtures.h"

#include "common/core/dtype.h"

enum { T = 48, B = 4 };

static const char *const CAPTIONS[] = {"bars in a png", "spoken words", "moving pattern", "a small cube",
                                       "bars as jpeg"};
static const char *const FILES[] = {"rgb.png", "speech16k.wav", "testsrc.mp4", "cube.obj", "rgb.jpg"};
static const enum media_kind KINDS[] = {MEDIA_IMAGE, MEDIA_AUDIO, MEDIA_VIDEO, MEDIA_MESH, MEDIA_IMAGE};
#define NREC 5
#define NTEXT 30
static char *g_docs[NTEXT];   /* the text source's documents */

/* manifest.jsonl (the fixtures with absolute paths, plus `extra` lines) and a text source */
static void write_corpus(const char *extra) {
    char buf[8192];
    size_t n = 0;
    static const char *const key[] = {"image", "audio", "video", "mesh", "image"};
    for (int i = 0; i < NREC; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "{\"%s\": \"%s\", \"text\": \"%s\"}\n", key[i],
                              mfx(FILES[i]), CAPTIONS[i]);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s", extra);
    write_file("manifest.jsonl", buf, n);
    for (int i = 0; i < NTEXT; i++) free(g_docs[i]);
    write_text_source("text.txt", 'T', NTEXT, g_docs);
}

/* the text rows of an epoch in order, joined: the packed stream of the text documents
 * alone (media rows are inserted between rows, never inside); checks each complete
 * document, returns how many */
static int check_text_stream(const int32_t *stream, size_t n) {
    int docs = 0;
    for (size_t at = 0, e; at < n; at = e + 1) {
        for (e = at; e < n && stream[e] != 256; e++) {}
        if (e == n) break;   /* the epoch's cut tail */
        char buf[2048];
        assert_true(e - at < sizeof buf);
        for (size_t i = at; i < e; i++) buf[i - at] = (char)stream[i];
        buf[e - at] = 0;
        int known = 0;
        for (int i = 0; i < NTEXT && !known; i++) known = !strcmp(buf, g_docs[i]);
        if (!known) fail_msg("text rows: unknown document \"%s\"", buf);
        docs++;
    }
    return docs;
}

static void media_config(struct data_config *c) {
    base_config(c, T, B);
    c->epoch_docs = 40;
    c->media.image_h = 20; c->media.image_w = 28;
    c->media.audio_frames = 50;
    c->media.video_frames = 3; c->media.video_h = 16; c->media.video_w = 12;
    c->media.mesh_points = 32; c->media.mesh_seed = 7;
    c->media.ops = data_media_decoders();
    add_source(c, "text.txt", DATA_TEXT, 1.0);
    add_source(c, "manifest.jsonl", DATA_MANIFEST, 1.0);
}

static struct data_loader *open_bytes(struct data_config *c) {
    struct data_tokenizer t;
    data_tokenizer_bytes(&t);
    struct data_loader *l = NULL;
    int rc = data_loader_open(&l, c, &t);
    if (rc) fprintf(stderr, "data_loader_open: %s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    return l;
}

/* the caption index of row r when it is a manifest row, else -1 (checks its layout) */
static int media_row_caption(const struct data_batch *b, int r) {
    const int32_t *tk = b->tokens + (size_t)r * T, *tg = b->targets + (size_t)r * T;
    const int32_t *d = b->doc_ids + (size_t)r * T, *p = b->positions + (size_t)r * T;
    for (int i = 0; i < NREC; i++) {
        int n = (int)strlen(CAPTIONS[i]), ok = 1;
        for (int t = 0; t < n && ok; t++) ok = tk[t] == (unsigned char)CAPTIONS[i][t];
        if (!ok || tk[n] != 256 || d[n + 1] != 1) continue;
        for (int t = 0; t < T; t++) {
            assert_int_equal(tk[t], t < n ? (unsigned char)CAPTIONS[i][t] : 256);
            assert_int_equal(tg[t], t < n ? tk[t + 1] : -1);
            assert_int_equal(d[t], t <= n ? 0 : 1);
            assert_int_equal(p[t], t <= n ? t : t - n - 1);
        }
        return i;
    }
    return -1;
}

/* the item of record i, decoded here with common/media alone */
static void *reference_item(const struct data_config *c, int i, size_t *bytes) {
    const char *path = mfx(FILES[i]);
    uint8_t *out = NULL;
    if (KINDS[i] == MEDIA_IMAGE) {
        struct media_image img = {0}, rs = {0};
        assert_int_equal(media_image_load(path, &img, NULL), 0);
        assert_int_equal(media_image_resize(&img, 20, 28, c->media.filter, &rs), 0);
        *bytes = 3 * 20 * 28;
        out = malloc(*bytes);
        for (int y = 0; y < 20 * 28; y++)
            for (int ch = 0; ch < 3; ch++) out[ch * 20 * 28 + y] = rs.data[y * 3 + ch];
        media_image_free(&img);
        media_image_free(&rs);
    } else if (KINDS[i] == MEDIA_AUDIO) {
        struct media_audio a = {0};
        struct media_mel m = {0};
        struct media_mel_opts o;
        media_mel_defaults(&o);
        assert_int_equal(media_audio_load(path, 16000, &a, NULL), 0);
        assert_int_equal(media_mel_compute(&a, &o, &m), 0);
        assert_true(m.n_frames >= 50);   /* speech: longer than the clip, cropped */
        *bytes = 50 * 80 * 2;
        uint16_t *h = malloc(*bytes);
        for (int f = 0; f < 50; f++)
            for (int k = 0; k < 80; k++) h[f * 80 + k] = f32_to_f16(m.data[(size_t)k * m.n_frames + f]);
        out = (uint8_t *)h;
        media_mel_free(&m);
        media_audio_free(&a);
    } else if (KINDS[i] == MEDIA_VIDEO) {
        struct media_video_opts o;
        struct media_video v = {0};
        media_video_defaults(&o);
        o.frames = 3; o.h = 16; o.w = 12; o.filter = c->media.filter;
        assert_int_equal(media_video_load(path, &o, &v, NULL), 0);
        *bytes = 3 * 3 * 16 * 12;
        out = malloc(*bytes);
        memcpy(out, v.data, *bytes);
        media_video_free(&v);
    } else {
        struct media_mesh_opts o = {.points = 32, .seed = 7};
        struct media_points pts = {0};
        assert_int_equal(media_mesh_load(path, &o, &pts, NULL), 0);
        *bytes = 32 * 6 * sizeof(float);
        out = malloc(*bytes);
        memcpy(out, pts.data, *bytes);
        media_points_free(&pts);
    }
    return out;
}

static void test_rows_and_items_match_decoders(void **state) {
    (void)state;
    MFX_REQUIRE();
    write_corpus("");
    struct data_config c;
    media_config(&c);
    struct data_loader *l = open_bytes(&c);
    uint64_t nb;
    assert_int_equal(data_epoch_info(l, 0, &nb, NULL), 0);
    struct data_batch b;
    assert_int_equal(data_batch_alloc(&b, B, T), 0);
    void *ref[NREC] = {0};
    size_t ref_bytes[NREC];
    int per_kind[MEDIA_NKINDS] = {0}, media_rows = 0, text_rows = 0;
    int32_t *stream = malloc((size_t)nb * B * T * sizeof *stream);
    size_t n_stream = 0;
    for (uint64_t i = 0; i < nb; i++) {
        assert_int_equal(data_batch(l, DATA_BATCH_ID(0, i), &b), 0);
        int rows_of_kind[MEDIA_NKINDS][B], n_of_kind[MEDIA_NKINDS] = {0}, caption[B];
        for (int r = 0; r < B; r++) {
            caption[r] = media_row_caption(&b, r);
            if (caption[r] < 0) {
                memcpy(stream + n_stream, b.tokens + (size_t)r * T, T * sizeof *stream);
                n_stream += T;
                text_rows++;
                continue;
            }
            enum media_kind k = KINDS[caption[r]];
            rows_of_kind[k][n_of_kind[k]++] = r;
            media_rows++;
        }
        for (int k = 0; k < MEDIA_NKINDS; k++) {
            const struct data_media_tensor *mt = &b.media[k];
            assert_int_equal(mt->n, n_of_kind[k]);
            per_kind[k] += mt->n;
            for (int j = 0; j < mt->n; j++) {
                int r = mt->rows[j], rec = caption[r];
                assert_int_equal(r, rows_of_kind[k][j]);
                if (!ref[rec]) ref[rec] = reference_item(&c, rec, &ref_bytes[rec]);
                assert_int_equal(mt->item_bytes, ref_bytes[rec]);
                assert_memory_equal((char *)mt->data + (size_t)j * mt->item_bytes, ref[rec], ref_bytes[rec]);
            }
        }
    }
    for (int k = 0; k < MEDIA_NKINDS; k++) assert_true(per_kind[k] > 0);
    assert_true(media_rows > 4 && text_rows > 4);
    assert_true(check_text_stream(stream, n_stream) > 10);
    free(stream);
    int64_t shape[5];
    assert_int_equal(data_media_tensor_shape(&b.media[MEDIA_VIDEO], shape), 5);
    assert_true(shape[1] == 3 && shape[2] == 3 && shape[3] == 16 && shape[4] == 12);
    for (int i = 0; i < NREC; i++) free(ref[i]);
    struct data_stats st;
    data_loader_stats(l, &st);
    assert_int_equal(st.errors, 0);
    data_batch_free(&b);
    data_loader_close(l);
    data_config_free(&c);
}

/* all tensors of two batches equal */
static void assert_batches_equal(const struct data_batch *a, const struct data_batch *b) {
    size_t n = (size_t)B * T * sizeof(int32_t);
    assert_int_equal(a->id, b->id);
    assert_memory_equal(a->tokens, b->tokens, n);
    assert_memory_equal(a->targets, b->targets, n);
    assert_memory_equal(a->doc_ids, b->doc_ids, n);
    assert_memory_equal(a->positions, b->positions, n);
    assert_int_equal(a->n_media_rows, b->n_media_rows);
    for (int k = 0; k < MEDIA_NKINDS; k++) {
        assert_int_equal(a->media[k].n, b->media[k].n);
        if (!a->media[k].n) continue;
        assert_memory_equal(a->media[k].rows, b->media[k].rows, (size_t)a->media[k].n * sizeof(int32_t));
        assert_memory_equal(a->media[k].data, b->media[k].data, (size_t)a->media[k].n * a->media[k].item_bytes);
    }
}

static void test_threads_agree(void **state) {
    (void)state;
    MFX_REQUIRE();
    write_corpus("");
    struct data_config c;
    media_config(&c);
    struct data_loader *l = open_bytes(&c);
    struct data_stream *s1, *s3;
    assert_int_equal(data_stream_open(&s1, l, DATA_BATCH_ID(1, 0), 1, 2), 0);
    assert_int_equal(data_stream_open(&s3, l, DATA_BATCH_ID(1, 0), 3, 4), 0);
    for (int i = 0; i < 8; i++) {
        const struct data_batch *a, *b;
        assert_int_equal(data_stream_next(s1, &a), 0);
        assert_int_equal(data_stream_next(s3, &b), 0);
        assert_batches_equal(a, b);
    }
    data_stream_close(s1);
    data_stream_close(s3);
    data_loader_close(l);
    data_config_free(&c);
}

static void test_corrupt_and_missing(void **state) {
    (void)state;
    MFX_REQUIRE();
    write_file("bad.png", "\x89PNG\r\n\x1a\nnot really a png at all", 32);
    char extra[1024];
    snprintf(extra, sizeof extra, "{\"image\": \"bad.png\", \"text\": \"broken\"}\n"
             "{\"image\": \"gone.png\", \"text\": \"missing\"}\n");
    write_corpus(extra);
    struct data_config c;
    media_config(&c);
    c.epoch_docs = NREC + 1;
    c.sources[0].weight = 0.0;   /* manifest records only: one pass, every one drawn once */
    struct data_loader *l = open_bytes(&c);
    struct data_stats st;
    data_loader_stats(l, &st);
    assert_int_equal(st.errors, 1);              /* gone.png, dropped at open */
    assert_int_equal(st.documents, 30 + NREC + 1);
    uint64_t nb;
    assert_int_equal(data_epoch_info(l, 0, &nb, NULL), 0);
    assert_int_equal(nb, (NREC + 1) / B);
    struct data_batch b;
    assert_int_equal(data_batch_alloc(&b, B, T), 0);
    int found = 0;
    for (int pass = 0; pass < 2; pass++)
        for (uint64_t i = 0; i < 3 * nb; i++) {   /* three epochs, twice: the same rows again */
            assert_int_equal(data_batch(l, DATA_BATCH_ID(i / nb, i % nb), &b), 0);
            int items = 0, broken = 0;
            for (int k = 0; k < MEDIA_NKINDS; k++) items += b.media[k].n;
            assert_int_equal(b.n_media_rows, B);
            for (int r = 0; r < B; r++) {
                if (memcmp(b.tokens + (size_t)r * T, (int32_t[]){'b', 'r', 'o', 'k', 'e', 'n', 256}, 7 * 4)) continue;
                broken++;
                for (int k = 0; k < MEDIA_NKINDS; k++)
                    for (int j = 0; j < b.media[k].n; j++) assert_int_not_equal(b.media[k].rows[j], r);
            }
            assert_int_equal(items, B - broken);   /* every other row has its item */
            found += broken;
        }
    assert_true(found > 0);
    data_loader_stats(l, &st);
    assert_int_equal(st.errors, 2);              /* + bad.png, once */
    data_batch_free(&b);
    data_loader_close(l);
    data_config_free(&c);
}

static void test_text_only_and_no_decoders(void **state) {
    (void)state;
    MFX_REQUIRE();
    write_corpus("");
    struct data_config c;
    base_config(&c, T, B);
    add_source(&c, "text.txt", DATA_TEXT, 1.0);
    struct data_loader *l = open_bytes(&c);
    struct data_batch b;
    assert_int_equal(data_batch_alloc(&b, B, T), 0);
    assert_int_equal(data_batch(l, DATA_BATCH_ID(0, 1), &b), 0);
    for (int k = 0; k < MEDIA_NKINDS; k++) assert_true(b.media[k].n == 0 && b.media[k].data == NULL);
    assert_int_equal(b.n_media_rows, 0);
    data_batch_free(&b);
    data_loader_close(l);
    data_config_free(&c);
    media_config(&c);
    c.media.ops = NULL;   /* a program without the media library */
    struct data_tokenizer t;
    data_tokenizer_bytes(&t);
    assert_int_equal(data_loader_open(&l, &c, &t), SUSHI_EUNSUPPORTED);
    assert_non_null(strstr(sushi_last_error(), "manifest.jsonl"));
    data_config_free(&c);
}

static int parse(const char *json, struct data_config *c) {
    json_error_t e;
    json_t *j = json_loads(json, 0, &e);
    assert_non_null(j);
    int rc = data_config_from_json(c, j, "cfg.yaml");
    json_decref(j);
    return rc;
}

static void test_media_config(void **state) {
    (void)state;
    struct data_config c;
    const char *src = "\"sources\": [{\"path\": \"m.jsonl\", \"format\": \"manifest\"}]";
    char buf[1024];
    snprintf(buf, sizeof buf, "{%s}", src);
    assert_int_equal(parse(buf, &c), 0);
    assert_int_equal(c.sources[0].format, DATA_MANIFEST);
    assert_true(c.media.image_h == 224 && c.media.filter == MEDIA_BICUBIC && c.media.mel_bins == 80 &&
                c.media.mel_window == 400 && c.media.mel_hop == 160 && c.media.audio_rate == 16000);
    assert_int_equal(data_media_item_bytes(&c.media, MEDIA_AUDIO), 1000 * 80 * 2);
    data_config_free(&c);
    snprintf(buf, sizeof buf, "{%s, \"media\": {\"image\": {\"height\": 32, \"width\": 48, \"filter\": \"bilinear\"},"
             " \"audio\": {\"frames\": 300, \"mel_bins\": 64, \"window\": 512, \"hop\": 128},"
             " \"video\": {\"frames\": 2, \"height\": 8, \"width\": 8}, \"mesh\": {\"points\": 100, \"seed\": 3}}}", src);
    assert_int_equal(parse(buf, &c), 0);
    assert_true(c.media.image_h == 32 && c.media.image_w == 48 && c.media.filter == MEDIA_BILINEAR);
    assert_true(c.media.audio_frames == 300 && c.media.mel_bins == 64 && c.media.mel_window == 512 &&
                c.media.mel_hop == 128);
    assert_true(c.media.video_frames == 2 && c.media.mesh_points == 100 && c.media.mesh_seed == 3);
    assert_int_equal(data_media_item_bytes(&c.media, MEDIA_VIDEO), 2 * 3 * 8 * 8);
    assert_int_equal(data_media_item_bytes(&c.media, MEDIA_MESH), 100 * 6 * 4);
    data_config_free(&c);
    static const char *const bad[][2] = {
        {"\"media\": {\"image\": {\"filter\": \"nearest\"}}", "data.media.image.filter"},
        {"\"media\": {\"audio\": {\"window\": 100, \"hop\": 200}}", "hop"},
        {"\"media\": {\"sound\": {}}", "sound"},
        {"\"media\": {\"mesh\": {\"points\": 0}}", "data.media.mesh.points"},
        {"\"media\": {\"video\": {\"fps\": 3}}", "fps"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(buf, sizeof buf, "{%s, %s}", src, bad[i][0]);
        assert_int_equal(parse(buf, &c), SUSHI_EINVAL);
        if (!strstr(sushi_last_error(), bad[i][1])) fail_msg("%s: %s", bad[i][0], sushi_last_error());
    }
    snprintf(buf, sizeof buf, "{\"sources\": [{\"path\": \"m\", \"format\": \"media\"}]}");
    assert_int_equal(parse(buf, &c), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "manifest"));
}

int main(int argc, char **argv) {
    (void)argc;
    mfx_setup(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_and_items_match_decoders),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_corrupt_and_missing),
        cmocka_unit_test(test_text_only_and_no_decoders),
        cmocka_unit_test(test_media_config),
    };
    int rc = cmocka_run_group_tests(tests, corpus_setup, corpus_teardown);
    for (int i = 0; i < NTEXT; i++) free(g_docs[i]);
    return rc;
}
