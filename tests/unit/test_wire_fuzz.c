// libs: core
/* Runs the wire decoder's libFuzzer target ($BUILD/fuzz/fuzz_wire, see tests/fuzz/fuzz.mk)
 * for 20 s from the seed corpus; any crash, sanitizer report, leak or failed re-encode
 * check fails the test. Skips when the target was not built (clang without libFuzzer).
 * SUSHI_FUZZ_SECONDS changes the duration. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_fuzz[1024];

static void test_fuzz_wire_decoder(void **state)
{
    (void)state;
    if (access(g_fuzz, X_OK) != 0) {
        printf("no fuzz target at %s (clang without libFuzzer?)\n", g_fuzz);
        skip();
    }
    const char *root = getenv("SUSHI_REPO_ROOT");
    if (!root || !*root) root = ".";
    const char *secs = getenv("SUSHI_FUZZ_SECONDS");
    int seconds = secs ? atoi(secs) : 20;
    if (seconds < 1) seconds = 20;
    char dir[] = "/tmp/sushi_fuzzXXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cp %s/tests/fuzz/corpus/* %s/ && %s -max_total_time=%d -dict=%s/tests/fuzz/wire.dict "
             "-artifact_prefix=%s/ -print_final_stats=1 %s 2>&1",
             root, dir, g_fuzz, seconds, root, dir, dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[1024];
    long runs = -1;
    while (fgets(line, sizeof line, p)) {
        if (strstr(line, "ERROR") || strstr(line, "==ERROR") || strstr(line, "deadly signal"))
            fputs(line, stdout);
        if (strncmp(line, "stat::number_of_executed_units:", 31) == 0) runs = atol(line + 31);
    }
    int rc = pclose(p);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    printf("fuzz_wire: %ld inputs in %d s\n", runs, seconds);
    assert_int_equal(rc, 0);
    assert_true(runs > 1000);
}

int main(int argc, char **argv)
{
    (void)argc;
    /* $BUILD/tests/test_wire_fuzz -> $BUILD/fuzz/fuzz_wire */
    char self[1024];
    snprintf(self, sizeof self, "%s", argv[0]);
    snprintf(g_fuzz, sizeof g_fuzz, "%s/../fuzz/fuzz_wire", dirname(self));
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_fuzz_wire_decoder) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
