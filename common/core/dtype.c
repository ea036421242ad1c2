/* Element types: sizes, safetensors names and scalar conversions to and from f32
 * (bf16 and f16 round to nearest even; f8 e4m3 is the OCP "fn" variant). */
#include <math.h>
#include <string.h>

#include "common/core/dtype.h"
#include "common/core/log.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[DT_COUNT] = {
    [DT_F32] = {"F32", 4},      [DT_BF16] = {"BF16", 2},    [DT_F16] = {"F16", 2},
    [DT_F64] = {"F64", 8},      [DT_F8_E4M3] = {"F8_E4M3", 1}, [DT_F8_E5M2] = {"F8_E5M2", 1},
    [DT_I8] = {"I8", 1},        [DT_I16] = {"I16", 2},      [DT_I32] = {"I32", 4},
    [DT_I64] = {"I64", 8},      [DT_U8] = {"U8", 1},        [DT_U16] = {"U16", 2},
    [DT_U32] = {"U32", 4},      [DT_U64] = {"U64", 8},      [DT_BOOL] = {"BOOL", 1},
};

size_t dtype_size(enum dtype dt) {
    return (unsigned)dt < DT_COUNT ? dtype_info[dt].size : 0;
}

const char *dtype_name(enum dtype dt) {
    return (unsigned)dt < DT_COUNT ? dtype_info[dt].name : "?";
}

int dtype_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < DT_COUNT; i++)
        if (strcmp(name, dtype_info[i].name) == 0) return i;
    return -1;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);   /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return f32_from_bits(sign | 0x7f800000u | (m << 13));   /* inf, NaN */
    if (e == 0) {
        float v = (float)m * 0x1p-24f;                                      /* subnormal or zero */
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
}

/* Rounding by float arithmetic: scaling up then down makes the FPU round the mantissa
 * to 10 bits at the right exponent (subnormals included), overflow goes to inf. */
uint16_t f32_to_f16(float f) {
    const uint32_t w = f32_bits(f), shl1 = w + w, sign = w & 0x80000000u;
    float base = (fabsf(f) * 0x1p+112f) * 0x1p-110f;
    uint32_t bias = shl1 & 0xff000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = f32_from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f32_bits(base);
    const uint32_t nonsign = ((bits >> 13) & 0x7c00u) + (bits & 0x0fffu);
    return (uint16_t)((sign >> 16) | (shl1 > 0xff000000u ? 0x7e00u : nonsign));
}

float f8e4m3_to_f32(uint8_t b) {
    int sign = b & 0x80, e = (b >> 3) & 0xf, m = b & 7;
    float v;
    if (e == 0xf && m == 7) return NAN;
    if (e == 0) v = (float)m * 0x1p-9f;                       /* subnormal: m/8 · 2^-6 */
    else v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return sign ? -v : v;
}

int dtype_convert_to_f32(float *dst, const void *src, enum dtype dt, size_t n) {
    if (n && (!dst || !src)) return sushi_error(SUSHI_EINVAL, "dtype: convert %zu values: NULL pointer", n);
    switch (dt) {
    case DT_F32:
        if (n) memmove(dst, src, n * 4);
        return 0;
    case DT_BF16:
    case DT_F16: {
        const unsigned char *p = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = dt == DT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
        return 0;
    }
    case DT_F64: {
        const unsigned char *p = src;
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    }
    case DT_F8_E4M3: {
        const uint8_t *p = src;
        for (size_t i = 0; i < n; i++) dst[i] = f8e4m3_to_f32(p[i]);
        return 0;
    }
    default:
        return sushi_error(SUSHI_EUNSUPPORTED, "dtype: conversion of %s to F32 is not supported",
                           dtype_name(dt));
    }
}
