// libs: core
/* Element types: names and sizes, bf16/f16 conversions (exhaustive round trips; f16
 * against numpy's float16 for all 65536 halves and 200000 random floats, bit-exact),
 * round-to-nearest-even ties, f8 e4m3 values worked out by hand, and the bulk
 * converter including its refusal of non-float types. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/core/dtype.h"
#include "common/core/log.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_names(void **st) {
    (void)st;
    static const size_t sizes[DT_COUNT] = {4, 2, 2, 8, 1, 1, 1, 2, 4, 8, 1, 2, 4, 8, 1};
    for (int i = 0; i < DT_COUNT; i++) {
        assert_int_equal(dtype_size((enum dtype)i), sizes[i]);
        assert_int_equal(dtype_from_name(dtype_name((enum dtype)i)), i);
    }
    assert_string_equal(dtype_name(DT_BF16), "BF16");
    assert_string_equal(dtype_name(DT_F8_E4M3), "F8_E4M3");
    assert_int_equal(dtype_from_name("I64"), DT_I64);
    assert_int_equal(dtype_size(DT_COUNT), 0);
    assert_string_equal(dtype_name((enum dtype)99), "?");
    assert_int_equal(dtype_from_name("f32"), -1);   /* names are case-sensitive, as in safetensors */
    assert_int_equal(dtype_from_name(NULL), -1);
}

static void test_bf16(void **st) {
    (void)st;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bf16_to_f32((uint16_t)h);
        assert_int_equal(bits(f), h << 16);
        if (!isnan(f)) assert_int_equal(f32_to_bf16(f), h);
        else assert_true(isnan(bf16_to_f32(f32_to_bf16(f))));
    }
    /* ties to even: 1 + 2^-8 lies halfway between 0x3f80 and 0x3f81 */
    assert_int_equal(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    assert_int_equal(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    assert_int_equal(f32_to_bf16(-2.0f), 0xc000);
    assert_int_equal(f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80);   /* FLT_MAX rounds to inf */
    assert_true(isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001)))));   /* NaN stays NaN */
}

static void test_f16_hand(void **st) {
    (void)st;
    assert_int_equal(f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(f32_to_f16(65520.0f), 0x7c00);            /* halfway to 2^16 rounds to inf */
    assert_int_equal(f32_to_f16(0x1p-24f), 0x0001);            /* smallest subnormal */
    assert_int_equal(f32_to_f16(0x1p-25f), 0x0000);            /* tie to even: zero */
    assert_int_equal(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);     /* tie to even */
    assert_int_equal(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_true(f16_to_f32(0x7c00) == INFINITY);
    assert_true(isnan(f16_to_f32(0x7e00)));
    assert_true(f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(f16_to_f32(0x8000) == 0.0f && signbit(f16_to_f32(0x8000)));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        if (!isnan(f)) assert_int_equal(f32_to_f16(f), h);
    }
}

/* f16 both ways against numpy, bit for bit (NaN payloads aside) */
static void test_f16_numpy(void **st) {
    (void)st;
    if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) skip();
    enum { NR = 200000 };
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)getpid();
    print_message("seed %llu\n", (unsigned long long)seed);
    float *x = malloc(NR * sizeof(float));
    uint16_t *got = malloc(NR * 2), *want = malloc(NR * 2);
    float *hf = malloc(65536 * sizeof(float)), *hw = malloc(65536 * sizeof(float));
    assert_true(x && got && want && hf && hw);
    for (int i = 0; i < NR; i++) {   /* xorshift bits, mostly within f16 range */
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        uint32_t u = (uint32_t)seed;
        if (i % 4) u = (u & 0x807fffffu) | ((uint32_t)(98 + (seed >> 40) % 50) << 23);   /* 2^-29 .. 2^21 */
        x[i] = from_bits(u);
        got[i] = f32_to_f16(x[i]);
    }
    for (uint32_t h = 0; h < 65536; h++) hf[h] = f16_to_f32((uint16_t)h);
    char dir[] = "/tmp/sushi-dtype-XXXXXX", path[128], cmd[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.bin", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(x, sizeof(float), NR, f), NR);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; d='%s'; "
             "np.fromfile(d+'/x.bin','<f4').astype('<f2').tofile(d+'/h.bin'); "
             "np.arange(65536,dtype='<u2').view('<f2').astype('<f4').tofile(d+'/w.bin')\" 2>/dev/null", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/h.bin", dir);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(want, 2, NR, f), NR);
    fclose(f);
    snprintf(path, sizeof path, "%s/w.bin", dir);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(hw, sizeof(float), 65536, f), 65536);
    fclose(f);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    int bad = 0;
    for (int i = 0; i < NR; i++)
        if (got[i] != want[i] && !(isnan(x[i]) && (got[i] & 0x7fff) > 0x7c00 && (want[i] & 0x7fff) > 0x7c00)) {
            if (bad++ < 5) print_error("f32 %a: f16 0x%04x, numpy 0x%04x\n", x[i], got[i], want[i]);
        }
    for (int h = 0; h < 65536; h++)
        if (bits(hf[h]) != bits(hw[h]) && !(isnan(hf[h]) && isnan(hw[h]))) {
            if (bad++ < 10) print_error("f16 0x%04x: %a, numpy %a\n", h, hf[h], hw[h]);
        }
    free(x), free(got), free(want), free(hf), free(hw);
    assert_int_equal(bad, 0);
}

static void test_f8e4m3(void **st) {
    (void)st;
    assert_true(f8e4m3_to_f32(0x38) == 1.0f);            /* e=7, m=0 */
    assert_true(f8e4m3_to_f32(0xb8) == -1.0f);
    assert_true(f8e4m3_to_f32(0x7e) == 448.0f);          /* largest finite: 1.75·2^8 */
    assert_true(f8e4m3_to_f32(0x08) == 0x1p-6f);         /* smallest normal */
    assert_true(f8e4m3_to_f32(0x01) == 0x1p-9f);         /* smallest subnormal */
    assert_true(f8e4m3_to_f32(0x3c) == 1.5f);
    assert_true(f8e4m3_to_f32(0x00) == 0.0f);
    assert_true(isnan(f8e4m3_to_f32(0x7f)) && isnan(f8e4m3_to_f32(0xff)));
    assert_true(f8e4m3_to_f32(0x78) == 256.0f);          /* e=15 is finite in the fn variant */
    for (int b = 1; b < 0x7f; b++) assert_true(f8e4m3_to_f32((uint8_t)b) > f8e4m3_to_f32((uint8_t)(b - 1)));
}

static void test_convert(void **st) {
    (void)st;
    float out[4];
    uint16_t bf[4] = {0x3f80, 0xc000, 0x0000, 0x4049};
    assert_int_equal(dtype_convert_to_f32(out, bf, DT_BF16, 4), 0);
    assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.0f && out[3] == 3.140625f);
    uint16_t hf[2] = {0x3c00, 0x3555};
    assert_int_equal(dtype_convert_to_f32(out, hf, DT_F16, 2), 0);
    assert_true(out[0] == 1.0f && out[1] == f16_to_f32(0x3555));
    double dd[2] = {0.1, -1e300};
    assert_int_equal(dtype_convert_to_f32(out, dd, DT_F64, 2), 0);
    assert_true(out[0] == 0.1f && out[1] == -INFINITY);
    uint8_t e8[2] = {0x38, 0x3c};
    assert_int_equal(dtype_convert_to_f32(out, e8, DT_F8_E4M3, 2), 0);
    assert_true(out[0] == 1.0f && out[1] == 1.5f);
    float ff[2] = {2.5f, -7.0f};
    assert_int_equal(dtype_convert_to_f32(out, ff, DT_F32, 2), 0);
    assert_true(out[0] == 2.5f && out[1] == -7.0f);
    int32_t ii[1] = {3};
    assert_int_equal(dtype_convert_to_f32(out, ii, DT_I32, 1), SUSHI_EUNSUPPORTED);
    assert_non_null(strstr(sushi_last_error(), "I32"));
    assert_int_equal(dtype_convert_to_f32(NULL, ff, DT_F32, 2), SUSHI_EINVAL);
    assert_int_equal(dtype_convert_to_f32(NULL, NULL, DT_F32, 0), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),     cmocka_unit_test(test_bf16),  cmocka_unit_test(test_f16_hand),
        cmocka_unit_test(test_f16_numpy), cmocka_unit_test(test_f8e4m3), cmocka_unit_test(test_convert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
