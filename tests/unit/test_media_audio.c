// libs: media core
/* Audio: decoded samples against soundfile (exact for WAV/FLAC, 1e-6 for OGG, channel
 * mean for stereo), resampling 44.1 kHz -> 16 kHz against the analytic sine, the
 * log-mel spectrogram against the numpy implementation of SPEC §4's conventions in
 * tests/oracle/media_ref.py (relative error <= 1e-4), and corrupt files refused with
 * the file named and the counter advanced; the same results from several threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/media/media.h"
#include "test_media_fixtures.h"

static void test_samples_match_soundfile(void **state)
{
    (void)state;
    MFX_REQUIRE_REF();
    const char *files[] = {"stereo44k.wav", "sine44k.wav", "tone16k.flac", "tone.ogg", "speech16k.wav"};
    const double tol[] = {1e-7, 0, 0, 1e-6, 0};
    for (int f = 0; f < 5; f++) {
        char name[128];
        long dims[4];
        int nd;
        size_t n, one;
        snprintf(name, sizeof name, "audio_%s", files[f]);
        double *ref = mfx_ref(name, "f64", dims, &nd, &n);
        snprintf(name, sizeof name, "rate_%s", files[f]);
        double *rate = mfx_ref(name, "f64", dims, &nd, &one);
        assert_non_null(ref);
        assert_non_null(rate);
        struct media_audio a;
        int rc = media_audio_load(mfx(files[f]), 0, &a, NULL);
        if (rc) printf("%s\n", sushi_last_error());
        assert_int_equal(rc, 0);
        assert_int_equal(a.rate, (int)rate[0]);
        assert_int_equal(a.n, (int64_t)n);
        double maxd = 0;
        for (size_t i = 0; i < n; i++) maxd = fmax(maxd, fabs(a.data[i] - ref[i]));
        printf("%-16s %lld samples at %d Hz, max |diff| vs soundfile %g\n", files[f], (long long)a.n, a.rate, maxd);
        assert_true(maxd <= tol[f]);
        media_audio_free(&a);
        free(ref);
        free(rate);
    }
}

static void test_resample_sine(void **state)
{
    (void)state;
    MFX_REQUIRE();
    struct media_audio src, a;
    assert_int_equal(media_audio_load(mfx("sine44k.wav"), 0, &src, NULL), 0);
    assert_int_equal(src.rate, 44100);
    assert_int_equal(media_audio_load(mfx("sine44k.wav"), 16000, &a, NULL), 0);
    assert_int_equal(a.rate, 16000);
    assert_int_equal(a.n, (src.n * 16000 + 44099) / 44100);
    float amp = 0;
    for (int64_t i = 0; i < src.n; i++) amp = fmaxf(amp, fabsf(src.data[i]));
    assert_true(amp > 0.05f);
    /* away from the edges the output is the same sine sampled at 16 kHz */
    double maxd = 0;
    for (int64_t i = 200; i < a.n - 200; i++)
        maxd = fmax(maxd, fabs(a.data[i] - amp * sin(2 * M_PI * 440.0 * i / 16000.0)));
    printf("resampled sine: max |diff| %g (amplitude %g)\n", maxd, amp);
    assert_true(maxd < 2e-3 * amp);
    /* and back up: 16 kHz -> 48 kHz keeps the sine too */
    struct media_audio up;
    assert_int_equal(media_audio_resample(a.data, a.n, 16000, 48000, &up), 0);
    assert_int_equal(up.n, a.n * 3);
    maxd = 0;
    for (int64_t i = 600; i < up.n - 600; i++)
        maxd = fmax(maxd, fabs(up.data[i] - amp * sin(2 * M_PI * 440.0 * i / 48000.0)));
    assert_true(maxd < 4e-3 * amp);
    media_audio_free(&up);
    media_audio_free(&src);
    media_audio_free(&a);
    assert_int_equal(media_audio_resample(NULL, 10, 16000, 8000, &up), SUSHI_EINVAL);
}

static void mel_compare(const struct media_mel *m, const char *ref_name, int want_mels)
{
    long dims[4];
    int nd;
    size_t n;
    double *ref = mfx_ref(ref_name, "f64", dims, &nd, &n);
    assert_non_null(ref);
    assert_int_equal(m->n_mels, want_mels);
    assert_int_equal(m->n_mels, dims[0]);
    assert_int_equal(m->n_frames, dims[1]);
    double num = 0, den = 0, maxd = 0;
    for (size_t i = 0; i < n; i++) {
        double d = m->data[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
        maxd = fmax(maxd, fabs(d));
    }
    double rel = sqrt(num / den);
    printf("%-24s [%d, %d] relative error %.3g, max |diff| %.3g\n", ref_name, m->n_mels, m->n_frames, rel, maxd);
    assert_true(rel <= 1e-4);
    free(ref);
}

static void test_mel_matches_numpy(void **state)
{
    (void)state;
    MFX_REQUIRE_REF();
    const char *files[] = {"tone16k.flac", "speech16k.wav"};
    for (int f = 0; f < 2; f++) {
        struct media_audio a;
        struct media_mel m;
        assert_int_equal(media_audio_load(mfx(files[f]), MEDIA_AUDIO_RATE, &a, NULL), 0);
        assert_int_equal(media_mel_compute(&a, NULL, &m), 0);
        assert_int_equal(m.n_frames, 1 + a.n / 160);
        char name[128];
        snprintf(name, sizeof name, "mel_%s", files[f]);
        mel_compare(&m, name, 80);
        media_mel_free(&m);
        media_audio_free(&a);
    }
    /* power-of-two FFT, other hop, band limits */
    long dims[4];
    int nd;
    size_t n;
    double *x = mfx_ref("mel_short_in", "f64", dims, &nd, &n);
    assert_non_null(x);
    struct media_audio a = {.rate = 16000, .n = (int64_t)n, .data = malloc(sizeof(float) * n)};
    for (size_t i = 0; i < n; i++) a.data[i] = (float)x[i];
    struct media_mel_opts o;
    media_mel_defaults(&o);
    o.n_fft = 256;
    o.hop = 100;
    o.n_mels = 40;
    o.fmin = 50;
    o.fmax = 7000;
    struct media_mel m;
    assert_int_equal(media_mel_compute(&a, &o, &m), 0);
    mel_compare(&m, "mel_short", 40);
    media_mel_free(&m);
    o.rate = 8000;
    assert_int_equal(media_mel_compute(&a, &o, &m), SUSHI_EINVAL);
    assert_non_null(strstr(sushi_last_error(), "resample"));
    media_audio_free(&a);
    free(x);
}

static void test_corrupt_audio(void **state)
{
    (void)state;
    MFX_REQUIRE();
    struct media_errors errs = {0};
    char dir[] = "/tmp/sushi-media-XXXXXX", path[160];
    assert_non_null(mkdtemp(dir));
    const char *srcs[] = {"tone16k.flac", "speech16k.wav", "tone.ogg"};
    const char *names[] = {"cut.flac", "head.wav", "text.ogg", "noise.wav"};
    for (int i = 0; i < 4; i++) {
        char *buf;
        size_t n;
        assert_int_equal(fs_read_all(mfx(srcs[i % 3]), &buf, &n), 0);
        size_t keep = i == 0 ? n / 2 : i == 1 ? 30 : n;
        if (i == 2) memcpy(buf, "hello, world", 12);                 /* no longer an Ogg stream */
        if (i == 3) memcpy(buf, "RIFX\xff\xff\xff\xff", 8);          /* a broken RIFF header */
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        assert_int_equal(fs_write_atomic(path, buf, keep), 0);
        free(buf);
        struct media_audio a;
        int rc = media_audio_load(path, MEDIA_AUDIO_RATE, &a, &errs);
        printf("%s -> %d: %s\n", names[i], rc, sushi_last_error());
        assert_true(rc < 0);
        assert_null(a.data);
        assert_non_null(strstr(sushi_last_error(), path));
    }
    struct media_audio a;
    snprintf(path, sizeof path, "%s/missing.wav", dir);
    assert_int_equal(media_audio_load(path, 0, &a, &errs), SUSHI_ENOTFOUND);
    assert_int_equal(atomic_load(&errs.by_kind[MEDIA_AUDIO]), 5);
    assert_int_equal(media_errors_total(&errs), 5);
    assert_int_equal(fs_remove_tree(dir), 0);
}

struct mel_worker {
    const char *path;
    double sum;
    int rc;
};

static void *mel_worker_run(void *arg)
{
    struct mel_worker *w = arg;
    for (int it = 0; it < 4 && !w->rc; it++) {
        struct media_audio a;
        struct media_mel m;
        w->rc = media_audio_load(w->path, MEDIA_AUDIO_RATE, &a, NULL);
        if (!w->rc) w->rc = media_mel_compute(&a, NULL, &m);
        if (!w->rc) {
            double s = 0;
            for (size_t i = 0; i < (size_t)m.n_mels * m.n_frames; i++) s += m.data[i] * (double)(i % 97 + 1);
            if (it && s != w->sum) w->rc = -100;   /* every run on a thread gives the same values */
            w->sum = s;
        }
        media_mel_free(&m);
        media_audio_free(&a);
    }
    return NULL;
}

/* decode, resample (44.1 kHz stereo) and mel from several threads at once */
static void test_threads_agree(void **state)
{
    (void)state;
    MFX_REQUIRE();
    struct mel_worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct mel_worker){.path = mfx(i % 2 ? "stereo44k.wav" : "speech16k.wav")};
        assert_int_equal(pthread_create(&th[i], NULL, mel_worker_run, &w[i]), 0);
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
        cmocka_unit_test(test_samples_match_soundfile),
        cmocka_unit_test(test_resample_sine),
        cmocka_unit_test(test_mel_matches_numpy),
        cmocka_unit_test(test_corrupt_audio),
        cmocka_unit_test(test_threads_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
