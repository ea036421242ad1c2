// libs: wire core
// srcs: services/trainer/mm_inputs.c
/* A batch's modality tensors → the encoders' inputs (services/trainer/mm_inputs.c):
 * pixels normalised and patchified in raster order with (py, px, c) inside a patch (the
 * layout of media_patchify, checked value by value), each item at its row and zeros
 * elsewhere; audio f16 → f32, video frames, mesh points; tensors of modalities the model
 * has no encoder for ignored; malformed tensors refused naming the tensor. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "common/core/dtype.h"
#include "common/core/log.h"
#include "services/trainer/mm_inputs.h"

static const float mean[3] = {0.5f, 0.25f, 0.0f}, stdv[3] = {0.5f, 0.5f, 2.0f};

static void add(struct wire_msg *m, const char *name, enum dtype dt, int ndim, const int64_t *shape, const void *d) {
    assert_int_equal(wire_msg_add_tensor(m, name, dt, ndim, shape, d), 0);
}

static void test_image_layout(void **st) {
    (void)st;
    /* P = 2, grid 2x3: images 4x6, patch_dim 12; B = 3, the image on row 2 */
    struct encoder_config c = {.image = 1, .patch_dim = 12, .grid_rows = 2, .grid_cols = 3,
                               .mesh_tokens = 1, .mesh_points = 2, .mesh_hidden = 4};
    struct mm_inputs x;
    assert_int_equal(mm_inputs_init(&x, &c, 3, mean, stdv), 0);
    uint8_t img[3 * 4 * 6];
    for (int i = 0; i < 3 * 4 * 6; i++) img[i] = (uint8_t)(i * 7);
    int32_t row = 2;
    float pts[2 * 6] = {1, 2, 3, 0, 0, 1, -1, -2, -3, 1, 0, 0};
    int32_t prow[2] = {0, 1};
    struct wire_msg m;
    wire_msg_init(&m, WIRE_BATCH);
    m.id = 9;
    add(&m, "image", DT_U8, 4, (int64_t[]){1, 3, 4, 6}, img);
    add(&m, "image_row", DT_I32, 1, (int64_t[]){1}, &row);
    add(&m, "mesh_points", DT_F32, 3, (int64_t[]){1, 2, 6}, pts);
    add(&m, "mesh_row", DT_I32, 1, (int64_t[]){1}, &prow[1]);
    uint16_t mel[4] = {0x3c00, 0x4000, 0xbc00, 0};   /* audio: no encoder, ignored */
    add(&m, "audio_mel", DT_F16, 3, (int64_t[]){1, 2, 2}, mel);
    add(&m, "audio_row", DT_I32, 1, (int64_t[]){1}, &prow[0]);
    assert_int_equal(mm_inputs_fill(&x, &m), 0);
    const float *out = x.in.image;
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 6 * 12; i++) assert_true(out[b * 72 + i] == 0.0f);
    for (int r = 0; r < 2; r++)
        for (int q = 0; q < 3; q++)
            for (int py = 0; py < 2; py++)
                for (int px = 0; px < 2; px++)
                    for (int ch = 0; ch < 3; ch++) {
                        uint8_t v = img[(ch * 4 + r * 2 + py) * 6 + q * 2 + px];
                        float want = ((float)v / 255.0f - mean[ch]) / stdv[ch];
                        assert_true(out[2 * 72 + (r * 3 + q) * 12 + (py * 2 + px) * 3 + ch] == want);
                    }
    assert_null(x.in.audio);
    assert_memory_equal(x.in.mesh + 12, pts, sizeof pts);
    for (int i = 0; i < 12; i++) assert_true(x.in.mesh[i] == 0.0f && x.in.mesh[24 + i] == 0.0f);
    wire_msg_free(&m);
    /* a batch without images: all zeros again */
    wire_msg_init(&m, WIRE_BATCH);
    assert_int_equal(mm_inputs_fill(&x, &m), 0);
    for (int i = 0; i < 3 * 72; i++) assert_true(out[i] == 0.0f);
    wire_msg_free(&m);
    mm_inputs_free(&x);
}

static void test_audio_video(void **st) {
    (void)st;
    struct encoder_config c = {.video_frames = 2, .patch_dim = 3, .grid_rows = 1, .grid_cols = 1,
                               .audio_tokens = 1, .mel_bins = 2, .audio_stride = 2};
    struct mm_inputs x;
    assert_int_equal(mm_inputs_init(&x, &c, 2, mean, stdv), 0);
    uint16_t mel[4] = {0x3c00, 0x4000, 0xbc00, 0x3800};   /* 1, 2, -1, 0.5 */
    uint8_t vid[2 * 3] = {255, 0, 51, 0, 255, 102};
    int32_t r0 = 0, r1 = 1;
    struct wire_msg m;
    wire_msg_init(&m, WIRE_BATCH);
    add(&m, "audio_mel", DT_F16, 3, (int64_t[]){1, 2, 2}, mel);
    add(&m, "audio_row", DT_I32, 1, (int64_t[]){1}, &r1);
    add(&m, "video", DT_U8, 5, (int64_t[]){1, 2, 3, 1, 1}, vid);
    add(&m, "video_row", DT_I32, 1, (int64_t[]){1}, &r0);
    assert_int_equal(mm_inputs_fill(&x, &m), 0);
    const float want_a[4] = {1, 2, -1, 0.5f};
    assert_memory_equal(x.in.audio + 4, want_a, sizeof want_a);
    for (int i = 0; i < 4; i++) assert_true(x.in.audio[i] == 0.0f);
    assert_true(x.in.video[0] == (1.0f - 0.5f) / 0.5f);           /* frame 0, R */
    assert_true(x.in.video[3 + 1] == (1.0f - 0.25f) / 0.5f);      /* frame 1, G */
    assert_true(x.in.video[3 + 2] == (102.0f / 255.0f - 0.0f) / 2.0f);
    wire_msg_free(&m);
    mm_inputs_free(&x);
}

static void test_refused(void **st) {
    (void)st;
    struct encoder_config c = {.image = 1, .patch_dim = 12, .grid_rows = 1, .grid_cols = 1};
    struct mm_inputs x;
    assert_int_equal(mm_inputs_init(&x, &c, 2, mean, stdv), 0);
    uint8_t img[2 * 3 * 2 * 2] = {0};
    int32_t rows[2] = {1, 1}, bad_row = 2;
    struct {
        const char *why;
        int64_t shape[4];
        const int32_t *rows;
        int nrows;
        int with_rows;
    } cases[] = {
        {"image: U8 [1,3,4,2], expected U8 [1,3,2,2]", {1, 3, 4, 2}, rows, 1, 1},
        {"image_row[0] = 2 outside [0, 2)", {1, 3, 2, 2}, &bad_row, 1, 1},
        {"image_row: row 1 twice", {2, 3, 2, 2}, rows, 2, 1},
        {"tensor image without image_row", {1, 3, 2, 2}, rows, 1, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct wire_msg m;
        wire_msg_init(&m, WIRE_BATCH);
        m.id = 4;
        add(&m, "image", DT_U8, 4, cases[k].shape, img);
        if (cases[k].with_rows) add(&m, "image_row", DT_I32, 1, (int64_t[]){cases[k].nrows}, cases[k].rows);
        assert_int_not_equal(mm_inputs_fill(&x, &m), 0);
        if (!strstr(sushi_last_error(), cases[k].why)) fprintf(stderr, "%s | %s\n", sushi_last_error(), cases[k].why);
        assert_non_null(strstr(sushi_last_error(), cases[k].why));
        assert_non_null(strstr(sushi_last_error(), "batch 4"));
        wire_msg_free(&m);
    }
    mm_inputs_free(&x);
    /* patch_dim that is no RGB square */
    c.patch_dim = 10;
    assert_int_equal(mm_inputs_init(&x, &c, 2, mean, stdv), SUSHI_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_layout),
        cmocka_unit_test(test_audio_video),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
