// libs: media core
/* Images: PNG/JPEG decoding bit-exact against PIL's convert("RGB") for RGB, grey,
 * 1-bit, RGBA, palette+tRNS, 16-bit RGB, progressive and 4:4:4/4:2:0 JPEG; resizing against PIL's
 * resize with the same filter within SPEC §4's tolerance (mean |diff| <= 2, max <= 16);
 * normalisation and patch layout against values computed here; corrupt, truncated and
 * unknown files refused with the file named and the counter advanced; the same results
 * from several threads at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>

#include "common/core/dtype.h"
#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/media/media.h"
#include "test_media_fixtures.h"

static const char *k_images[] = {"rgb.png", "odd.png", "gray.png", "mono1.png", "rgba.png", "palette.png",
                                 "rgb.jpg", "rgb444.jpg", "progressive.jpg", "gray.jpg", "rgb16.png", "graya16.png"};

static void test_decode_matches_pil(void **state)
{
    (void)state;
    MFX_REQUIRE_REF();
    for (size_t i = 0; i < sizeof k_images / sizeof *k_images; i++) {
        char name[128];
        snprintf(name, sizeof name, "img_%s", k_images[i]);
        long dims[4];
        int nd;
        size_t n;
        uint8_t *ref = mfx_ref(name, "u8", dims, &nd, &n);
        assert_non_null(ref);
        struct media_image img;
        int rc = media_image_load(mfx(k_images[i]), &img, NULL);
        if (rc) printf("%s\n", sushi_last_error());
        assert_int_equal(rc, 0);
        assert_int_equal(img.h, dims[0]);
        assert_int_equal(img.w, dims[1]);
        assert_int_equal(img.c, 3);
        size_t diff = 0;
        for (size_t j = 0; j < n; j++) diff += img.data[j] != ref[j];
        if (diff) printf("%s: %zu of %zu values differ from PIL\n", k_images[i], diff, n);
        assert_int_equal(diff, 0);
        media_image_free(&img);
        free(ref);
    }
}

static void test_resize_within_spec(void **state)
{
    (void)state;
    MFX_REQUIRE_REF();
    const char *files[] = {"rgb.png", "odd.png", "rgb.jpg"};
    const char *fnames[] = {"bilinear", "bicubic"};
    const int sizes[3][2] = {{224, 224}, {96, 64}, {700, 500}};
    for (int f = 0; f < 3; f++) {
        struct media_image img;
        assert_int_equal(media_image_load(mfx(files[f]), &img, NULL), 0);
        for (int flt = 0; flt < 2; flt++)
            for (int s = 0; s < 3; s++) {
                int w = sizes[s][0], h = sizes[s][1];
                char name[160];
                snprintf(name, sizeof name, "resize_%s_%dx%d_%s", fnames[flt], w, h, files[f]);
                long dims[4];
                int nd;
                size_t n;
                uint8_t *ref = mfx_ref(name, "u8", dims, &nd, &n);
                assert_non_null(ref);
                struct media_image out;
                assert_int_equal(media_image_resize(&img, h, w, (enum media_filter)flt, &out), 0);
                assert_int_equal(out.h, h);
                assert_int_equal(out.w, w);
                double sum = 0;
                int maxd = 0;
                for (size_t j = 0; j < n; j++) {
                    int d = abs((int)out.data[j] - (int)ref[j]);
                    sum += d;
                    if (d > maxd) maxd = d;
                }
                printf("%-40s mean |diff| %.3f max %d\n", name, sum / n, maxd);
                assert_true(sum / n <= 2.0);
                assert_true(maxd <= 16);
                media_image_free(&out);
                free(ref);
            }
        media_image_free(&img);
    }
}

static void test_normalize_and_patchify(void **state)
{
    (void)state;
    /* a 4x6 image with known values */
    uint8_t px[4 * 6 * 3];
    for (int i = 0; i < 4 * 6 * 3; i++) px[i] = (uint8_t)(i * 7 + 1);
    struct media_image img = {.h = 4, .w = 6, .c = 3, .data = px};
    struct media_norm norm = {.mean = {0.5f, 0.25f, 0.0f}, .std = {0.5f, 2.0f, 1.0f}};
    float f32[72];
    uint16_t f16[72];
    assert_int_equal(media_image_normalize(&img, &norm, MEDIA_F32, f32), 0);
    assert_int_equal(media_image_normalize(&img, &norm, MEDIA_F16, f16), 0);
    for (int i = 0; i < 72; i++) {
        int c = i % 3;
        float want = ((float)px[i] / 255.0f - norm.mean[c]) / norm.std[c];
        assert_float_equal(f32[i], want, 1e-6);
        assert_float_equal(f16_to_f32(f16[i]), want, 2e-3);
    }
    struct media_norm bad = norm;
    bad.std[1] = 0;
    assert_int_equal(media_image_normalize(&img, &bad, MEDIA_F32, f32), SUSHI_EINVAL);
    /* 2x2 patches: patch k = (py, px) in raster order, rows of 2 pixels x 3 channels */
    float patches[72];
    assert_int_equal(media_patchify(f32, 4, 6, 3, sizeof(float), 2, patches), 0);
    for (int k = 0; k < 6; k++)
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 2; x++)
                for (int c = 0; c < 3; c++) {
                    int py = k / 3, pxx = k % 3;
                    float want = f32[((py * 2 + y) * 6 + pxx * 2 + x) * 3 + c];
                    assert_true(patches[k * 12 + (y * 2 + x) * 3 + c] == want);
                }
    assert_int_equal(media_patchify(f32, 4, 6, 3, sizeof(float), 4, patches), SUSHI_ESHAPE);
}

static void expect_refused(const char *path, const void *data, size_t n, int code, const char *cause,
                           struct media_errors *errs)
{
    assert_int_equal(fs_write_atomic(path, data, n), 0);
    struct media_image img;
    long before = media_errors_total(errs);
    int rc = media_image_load(path, &img, errs);
    printf("%s -> %d: %s\n", path, rc, sushi_last_error());
    assert_int_equal(rc, code);
    assert_null(img.data);
    assert_non_null(strstr(sushi_last_error(), path));
    if (cause) assert_non_null(strstr(sushi_last_error(), cause));
    assert_int_equal(media_errors_total(errs), before + 1);
}

static void test_corrupt_files(void **state)
{
    (void)state;
    MFX_REQUIRE();
    struct media_errors errs = {0};
    char *png, *jpg;
    size_t npng, njpg;
    assert_int_equal(fs_read_all(mfx("rgb.png"), &png, &npng), 0);
    assert_int_equal(fs_read_all(mfx("rgb.jpg"), &jpg, &njpg), 0);
    char dir[] = "/tmp/sushi-media-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/cut.png", dir);
    expect_refused(path, png, npng / 2, SUSHI_EFORMAT, "PNG", &errs);
    snprintf(path, sizeof path, "%s/head.png", dir);
    expect_refused(path, png, 20, SUSHI_EFORMAT, "truncated", &errs);
    png[40] ^= 0x55;   /* inside IHDR: CRC mismatch */
    snprintf(path, sizeof path, "%s/crc.png", dir);
    expect_refused(path, png, npng, SUSHI_EFORMAT, "PNG", &errs);
    snprintf(path, sizeof path, "%s/cut.jpg", dir);
    expect_refused(path, jpg, njpg / 2, SUSHI_EFORMAT, "truncated", &errs);
    snprintf(path, sizeof path, "%s/head.jpg", dir);
    expect_refused(path, jpg, 100, SUSHI_EFORMAT, "JPEG", &errs);
    snprintf(path, sizeof path, "%s/text.png", dir);
    expect_refused(path, "hello, world", 12, SUSHI_EUNSUPPORTED, "not a PNG or JPEG", &errs);
    snprintf(path, sizeof path, "%s/empty.jpg", dir);
    expect_refused(path, "", 0, SUSHI_EFORMAT, "empty", &errs);
    struct media_image img;
    snprintf(path, sizeof path, "%s/missing.png", dir);
    assert_int_equal(media_image_load(path, &img, &errs), SUSHI_ENOTFOUND);
    assert_int_equal(atomic_load(&errs.by_kind[MEDIA_IMAGE]), 8);
    assert_int_equal(atomic_load(&errs.by_cause[-SUSHI_EFORMAT]), 6);
    assert_int_equal(atomic_load(&errs.by_cause[-SUSHI_EUNSUPPORTED]), 1);
    assert_int_equal(atomic_load(&errs.by_cause[-SUSHI_ENOTFOUND]), 1);
    free(png);
    free(jpg);
    assert_int_equal(fs_remove_tree(dir), 0);
}

struct worker {
    const char *path;
    uint64_t sum;
    int rc;
};

static void *decode_resize_worker(void *arg)
{
    struct worker *w = arg;
    w->sum = 0;
    for (int it = 0; it < 6 && !w->rc; it++) {
        struct media_image img, out;
        w->rc = media_image_load(w->path, &img, NULL);
        if (!w->rc) w->rc = media_image_resize(&img, 224, 224, (enum media_filter)(it % 2), &out);
        if (!w->rc)
            for (int j = 0; j < 224 * 224 * 3; j++) w->sum += (uint64_t)out.data[j] * (uint64_t)(j % 251 + 1);
        media_image_free(&img);
        media_image_free(&out);
    }
    return NULL;
}

static void test_threads_agree(void **state)
{
    (void)state;
    MFX_REQUIRE();
    struct worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.path = mfx(i % 2 ? "rgb.jpg" : "rgb.png")};
        assert_int_equal(pthread_create(&th[i], NULL, decode_resize_worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) assert_int_equal(w[i].rc, 0);
    assert_true(w[0].sum == w[2].sum);
    assert_true(w[1].sum == w[3].sum);
    assert_true(w[0].sum != w[1].sum);
}

int main(int argc, char **argv)
{
    (void)argc;
    mfx_setup(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_matches_pil),
        cmocka_unit_test(test_resize_within_spec),
        cmocka_unit_test(test_normalize_and_patchify),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_threads_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
