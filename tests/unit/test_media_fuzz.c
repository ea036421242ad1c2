// libs: core
/* Runs each media decoder's libFuzzer target ($BUILD/fuzz/fuzz_media_*, built by
 * tests/fuzz/media.mk when clang has libFuzzer) for 10 s, seeded with the fixtures of
 * scripts/gen-media-fixtures.sh; any crash, hang (> 10 s on one input), sanitizer
 * report or leak fails the test. Skips when a target was not built.
 * SUSHI_FUZZ_SECONDS changes the duration. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/core/fsutil.h"
#include "test_media_fixtures.h"

static char g_fuzz_dir[1100];

/* seeds: fixture files, or for the mesh target one byte choosing the extension + file */
static void seed(const char *corpus, const char *name, int prefix)
{
    char *buf, path[1400];
    size_t n;
    assert_int_equal(fs_read_all(mfx(name), &buf, &n), 0);
    snprintf(path, sizeof path, "%s/%s", corpus, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (prefix >= 0) fputc(prefix, f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    free(buf);
}

static void run_target(const char *target, const char *const *seeds, int mesh)
{
    char bin[1200];
    snprintf(bin, sizeof bin, "%s/fuzz_media_%s", g_fuzz_dir, target);
    if (access(bin, X_OK) != 0) {
        printf("no fuzz target at %s (clang without libFuzzer, or tests/fuzz/media.mk not included)\n", bin);
        skip();
    }
    MFX_REQUIRE();
    const char *secs = getenv("SUSHI_FUZZ_SECONDS");
    int seconds = secs ? atoi(secs) : 10;
    if (seconds < 1) seconds = 10;
    char dir[] = "/tmp/sushi-fuzz-media-XXXXXX", corpus[64];
    assert_non_null(mkdtemp(dir));
    snprintf(corpus, sizeof corpus, "%s/corpus", dir);
    assert_int_equal(fs_mkdir_p(corpus, 0700), 0);
    for (int i = 0; seeds[i]; i++) seed(corpus, seeds[i], mesh ? i % 4 : -1);
    char cmd[4096];
    /* a fixed seed in the suite: the same inputs in the same order every run (SUSHI_FUZZ_SEED
     * picks another; 0 = libFuzzer's random seed, as in a long run by hand) */
    const char *seed_env = getenv("SUSHI_FUZZ_SEED");
    unsigned long fuzz_seed = seed_env ? strtoul(seed_env, NULL, 10) : 1;
    snprintf(cmd, sizeof cmd, "%s -max_total_time=%d -timeout=10 -rss_limit_mb=4096 -seed=%lu -artifact_prefix=%s/ "
             "-print_final_stats=1 %s 2>&1", bin, seconds, fuzz_seed, dir, corpus);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[1024];
    long runs = -1;
    while (fgets(line, sizeof line, p)) {
        if (strstr(line, "ERROR") || strstr(line, "deadly signal") || strstr(line, "#0 ") ||
            strstr(line, "Test unit written"))
            fputs(line, stdout);
        if (strncmp(line, "stat::number_of_executed_units:", 31) == 0) runs = atol(line + 31);
    }
    int rc = pclose(p);
    printf("fuzz_media_%s: %ld inputs in %d s\n", target, runs, seconds);
    if (rc == 0) assert_int_equal(fs_remove_tree(dir), 0);
    else printf("artifacts kept in %s\n", dir);
    assert_int_equal(rc, 0);
    assert_true(runs >= 20);
}

static void test_fuzz_image(void **state)
{
    (void)state;
    const char *seeds[] = {"rgb.png", "mono1.png", "palette.png", "rgb.jpg", "progressive.jpg", "gray.jpg", NULL};
    run_target("image", seeds, 0);
}

static void test_fuzz_audio(void **state)
{
    (void)state;
    const char *seeds[] = {"tone16k.flac", "tone.ogg", "speech16k.wav", NULL};
    run_target("audio", seeds, 0);
}

static void test_fuzz_video(void **state)
{
    (void)state;
    const char *seeds[] = {"testsrc.mp4", "testsrc.mkv", "long.mp4", NULL};
    run_target("video", seeds, 0);
}

static void test_fuzz_mesh(void **state)
{
    (void)state;
    /* byte 0 % 4 picks .obj .ply .stl .gltf: seed i gets prefix i */
    const char *seeds[] = {"cube.obj", "tetra.ply", "two.stl", "two.gltf", NULL};
    run_target("mesh", seeds, 1);
}

static void test_fuzz_manifest(void **state)
{
    (void)state;
    MFX_REQUIRE();
    char path[1400];
    snprintf(path, sizeof path, "%s/fuzz-seed.jsonl", mfx_dir);
    const char text[] = "{\"image\": \"a.png\", \"text\": \"x\"}\n{\"mesh\": \"/m/b.obj\"}\nbad\n{\"audio\": 3}\n";
    if (access(path, R_OK) != 0) assert_int_equal(fs_write_atomic(path, text, sizeof text - 1), 0);
    const char *seeds[] = {"fuzz-seed.jsonl", NULL};
    run_target("manifest", seeds, 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    mfx_setup(argv[0]);
    /* $BUILD/tests/test_media_fuzz -> $BUILD/fuzz */
    char self[1024];
    snprintf(self, sizeof self, "%s", argv[0]);
    snprintf(g_fuzz_dir, sizeof g_fuzz_dir, "%s/../fuzz", dirname(self));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fuzz_image),   cmocka_unit_test(test_fuzz_audio),
        cmocka_unit_test(test_fuzz_video),   cmocka_unit_test(test_fuzz_mesh),
        cmocka_unit_test(test_fuzz_manifest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
