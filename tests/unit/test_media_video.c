// libs: media core
/* Video: frames sampled uniformly by timestamp from an H.264 MP4, an MPEG-4 MKV and
 * a 30 s H.264 clip against PyAV (tests/oracle/media_ref.py picks the same timestamps,
 * decoding every frame): RGB frames exact at the stream's size and timestamps equal,
 * with and without seeking between targets; a resized frame within SPEC §4's
 * tolerance of PIL's resize; truncated, garbage and audio-only files refused with the
 * file named and the counter advanced. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/media/media.h"
#include "test_media_fixtures.h"

static void test_frames_match_pyav(void **state)
{
    (void)state;
    MFX_REQUIRE_REF();
    const char *files[] = {"testsrc.mp4", "testsrc.mkv", "long.mp4"};
    const int nframes[] = {8, 5, 4};
    /* seek_s: 0 decodes every frame; 0.05 seeks before nearly every target; 2 (the
     * default) seeks across the long clip's 7.5 s gaps (keyframes every 4 s) */
    const double seeks[] = {0, 0.05, 2};
    for (int run = 0; run < 9; run++) {
        int f = run / 3;
        double seek_s = seeks[run % 3];
        char name[128];
        long dims[4], tdims[4];
        int nd;
        size_t n, nt;
        snprintf(name, sizeof name, "video_%s", files[f]);
        uint8_t *ref = mfx_ref(name, "u8", dims, &nd, &n);
        snprintf(name, sizeof name, "vtimes_%s", files[f]);
        double *times = mfx_ref(name, "f64", tdims, &nd, &nt);
        assert_non_null(ref);
        assert_non_null(times);
        struct media_video_opts o;
        media_video_defaults(&o);
        o.frames = nframes[f];
        o.seek_s = seek_s;
        struct media_video v;
        int rc = media_video_load(mfx(files[f]), &o, &v, NULL);
        if (rc) printf("%s\n", sushi_last_error());
        assert_int_equal(rc, 0);
        assert_int_equal(v.n, dims[0]);
        assert_int_equal(v.c, 3);
        assert_int_equal(v.h, dims[2]);
        assert_int_equal(v.w, dims[3]);
        size_t diff = 0;
        for (size_t i = 0; i < n; i++) diff += v.data[i] != ref[i];
        printf("%s (seek_s %g): %d frames %dx%d at", files[f], seek_s, v.n, v.w, v.h);
        for (int i = 0; i < v.n; i++) printf(" %.3f", v.t[i]);
        printf(" s; %zu values differ from PyAV\n", diff);
        assert_int_equal(diff, 0);
        for (int i = 0; i < v.n; i++) assert_float_equal(v.t[i], times[i], 1e-9);
        /* the frames differ from each other: testsrc moves */
        assert_memory_not_equal(v.data, v.data + (size_t)3 * v.h * v.w, (size_t)3 * v.h * v.w);
        media_video_free(&v);
        free(ref);
        free(times);

        /* resized: the last sampled frame against PIL's bilinear resize */
        if (f == 2 || run % 3) continue;
        o.h = o.w = 224;
        assert_int_equal(media_video_load(mfx(files[f]), &o, &v, NULL), 0);
        assert_int_equal(v.h, 224);
        snprintf(name, sizeof name, "vlast224_bilinear_%s", files[f]);
        ref = mfx_ref(name, "u8", dims, &nd, &n);
        assert_non_null(ref);
        const uint8_t *last = v.data + (size_t)(v.n - 1) * 3 * 224 * 224;
        double sum = 0;
        int maxd = 0;
        for (size_t i = 0; i < n; i++) {
            int d = abs((int)last[i] - (int)ref[i]);
            sum += d;
            maxd = d > maxd ? d : maxd;
        }
        printf("%s resized to 224x224: mean |diff| %.3f max %d\n", files[f], sum / n, maxd);
        assert_true(sum / n <= 2.0);
        assert_true(maxd <= 16);
        media_video_free(&v);
        free(ref);
    }
}

static void test_bad_videos(void **state)
{
    (void)state;
    MFX_REQUIRE();
    struct media_errors errs = {0};
    char dir[] = "/tmp/sushi-media-XXXXXX", path[160];
    assert_non_null(mkdtemp(dir));
    char *buf;
    size_t n;
    assert_int_equal(fs_read_all(mfx("testsrc.mp4"), &buf, &n), 0);
    struct {
        const char *name;
        size_t keep;
        int code;
    } cases[] = {{"cut.mp4", 0, SUSHI_EFORMAT}, {"head.mp4", 64, SUSHI_EFORMAT}, {"text.mkv", 13, SUSHI_EFORMAT}};
    cases[0].keep = n / 2;
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name);
        assert_int_equal(fs_write_atomic(path, i == 2 ? "not a video\n\n" : buf, cases[i].keep), 0);
        struct media_video v;
        int rc = media_video_load(path, NULL, &v, &errs);
        printf("%s -> %d: %s\n", cases[i].name, rc, sushi_last_error());
        assert_true(rc < 0);
        assert_null(v.data);
        assert_non_null(strstr(sushi_last_error(), path));
    }
    free(buf);
    struct media_video v;
    assert_int_equal(media_video_load(mfx("tone16k.flac"), NULL, &v, &errs), SUSHI_EUNSUPPORTED);
    assert_non_null(strstr(sushi_last_error(), "no video stream"));
    snprintf(path, sizeof path, "%s/missing.mp4", dir);
    assert_int_equal(media_video_load(path, NULL, &v, &errs), SUSHI_ENOTFOUND);
    struct media_video_opts o;
    media_video_defaults(&o);
    o.frames = 0;
    assert_int_equal(media_video_load(mfx("testsrc.mp4"), &o, &v, &errs), SUSHI_EINVAL);
    assert_int_equal(atomic_load(&errs.by_kind[MEDIA_VIDEO]), 5);
    assert_int_equal(fs_remove_tree(dir), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    mfx_setup(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_match_pyav),
        cmocka_unit_test(test_bad_videos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
