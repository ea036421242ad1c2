// libs: core
/* NVML through dlopen (common/core/nvml.c): a missing library is a clean ENOTFOUND, and
 * against a stand-in libnvidia-ml built here the values come through unchanged. On the
 * GPU machine (SUSHI_TEST_GPU=1) the real driver must answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/core/log.h"
#include "common/core/nvml.h"

static const char *fake_src =
    "typedef void *dev;\n"
    "struct util { unsigned gpu, memory; };\n"
    "struct mem { unsigned long long total, free, used; };\n"
    "int nvmlInit_v2(void) { return FAIL_INIT; }\n"
    "int nvmlShutdown(void) { return 0; }\n"
    "int nvmlDeviceGetCount_v2(unsigned *n) { *n = 2; return 0; }\n"
    "int nvmlDeviceGetHandleByIndex_v2(unsigned i, dev *d) { if (i > 1) return 2; *d = (dev)(long)(i + 1); return 0; }\n"
    "int nvmlDeviceGetUtilizationRates(dev d, struct util *u) { u->gpu = 30 + (unsigned)(long)d; u->memory = 12; return 0; }\n"
    "int nvmlDeviceGetMemoryInfo(dev d, struct mem *m) { (void)d; m->total = 80000000000ull; m->used = 1234567890ull; m->free = m->total - m->used; return 0; }\n"
    "int nvmlDeviceGetTemperature(dev d, int s, unsigned *t) { (void)d; (void)s; *t = 55; return 0; }\n"
    "const char *nvmlErrorString(int r) { return r == 2 ? \"Invalid Argument\" : \"Fake Error\"; }\n";

static char dir[64];

/* builds the stand-in library (FAIL_INIT = the value nvmlInit_v2 returns); 0 or skip */
static int build_fake(const char *name, int fail_init, char *path, size_t cap) {
    char src[128], cmd[512];
    snprintf(src, sizeof src, "%s/%s.c", dir, name);
    snprintf(path, cap, "%s/%s.so", dir, name);
    FILE *f = fopen(src, "w");
    if (!f) return -1;
    fprintf(f, "#define FAIL_INIT %d\n%s", fail_init, fake_src);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -o %s %s 2>&1", path, src);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_missing_library(void **st) {
    (void)st;
    setenv("SUSHI_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
    struct nvml_sample s;
    assert_int_equal(nvml_open(), SUSHI_ENOTFOUND);
    assert_non_null(strstr(sushi_last_error(), "/nonexistent/libnvidia-ml.so.1"));
    assert_int_equal(nvml_sample(0, &s), SUSHI_ENOTFOUND);
    int n = -1;
    assert_int_equal(nvml_device_count(&n), SUSHI_ENOTFOUND);
    assert_int_equal(n, -1);
}

static void test_fake_library(void **st) {
    (void)st;
    char path[128];
    if (build_fake("fake_nvml", 0, path, sizeof path) != 0) skip();
    setenv("SUSHI_NVML_LIB", path, 1);
    assert_int_equal(nvml_open(), 0);
    int n = 0;
    assert_int_equal(nvml_device_count(&n), 0);
    assert_int_equal(n, 2);
    struct nvml_sample s;
    assert_int_equal(nvml_sample(1, &s), 0);
    assert_int_equal(s.util_gpu, 32);
    assert_int_equal(s.util_mem, 12);
    assert_true(s.mem_total == 80000000000ull);
    assert_true(s.mem_used == 1234567890ull);
    assert_int_equal(s.temp_c, 55);
    assert_int_equal(s.power_mw, 0); /* the stand-in has no nvmlDeviceGetPowerUsage */
    assert_int_equal(nvml_sample(5, &s), SUSHI_EBACKEND);
    assert_non_null(strstr(sushi_last_error(), "Invalid Argument"));
    assert_int_equal(nvml_sample(-1, &s), SUSHI_EINVAL);
    nvml_close();
}

static void test_init_failure(void **st) {
    (void)st;
    char path[128];
    if (build_fake("fake_nvml_fail", 9, path, sizeof path) != 0) skip();
    setenv("SUSHI_NVML_LIB", path, 1);
    assert_int_equal(nvml_open(), SUSHI_ENOTFOUND);
    assert_non_null(strstr(sushi_last_error(), "nvmlInit failed: Fake Error"));
}

static void test_real_driver(void **st) {
    (void)st;
    const char *gpu = getenv("SUSHI_TEST_GPU");
    if (!gpu || strcmp(gpu, "1") != 0) skip();
    unsetenv("SUSHI_NVML_LIB");
    nvml_close();
    struct nvml_sample s;
    assert_int_equal(nvml_open(), 0);
    assert_int_equal(nvml_sample(0, &s), 0);
    assert_true(s.mem_total > 0);
    assert_true(s.util_gpu <= 100);
    nvml_close();
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/sushi-nvml-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_library),
        cmocka_unit_test(test_fake_library),
        cmocka_unit_test(test_init_failure),
        cmocka_unit_test(test_real_driver),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
