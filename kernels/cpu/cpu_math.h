/* Vector helpers of the CPU backend for the loops that bound the non-GEMM ops: exp
 * (Cephes polynomial, relative error < 1e-7 in [−87.3, 88.3], 0 below, so −inf gives 0,
 * NaN stays NaN),
 * sums and maxima. AVX2+FMA when the compiler targets it (the default build does:
 * -march=x86-64-v3), the same formula in scalar code otherwise. */
#ifndef SUSHI_CPU_MATH_H
#define SUSHI_CPU_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CPU_MATH_AVX2 1
#endif

#define CPU_EXP_LO -87.3f
#define CPU_EXP_HI 88.3f

static inline float cpu_expf(float x) {
    if (x != x) return x;
    if (x < CPU_EXP_LO) return 0.0f;
    if (x > CPU_EXP_HI) x = CPU_EXP_HI;
    float n = floorf(x * 1.44269504f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    uint32_t e = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, 4);
    return y * scale;
}

#ifdef CPU_MATH_AVX2
static inline __m256 cpu_exp8(__m256 x0) {
    const __m256 lo = _mm256_set1_ps(CPU_EXP_LO);
    __m256 keep = _mm256_cmp_ps(x0, lo, _CMP_GE_OQ);
    __m256 x = _mm256_min_ps(_mm256_max_ps(x0, lo), _mm256_set1_ps(CPU_EXP_HI));
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 nan = _mm256_cmp_ps(x0, x0, _CMP_UNORD_Q);
    return _mm256_or_ps(_mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), keep), _mm256_and_ps(x0, nan));
}

static inline float cpu_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* y[i] = exp(scale·(x[i] − shift)); returns Σ y (y may alias x) */
static inline double cpu_vexp_sum(float *y, const float *x, size_t n, float shift, float scale) {
    size_t i = 0;
    double total = 0.0;
#ifdef CPU_MATH_AVX2
    const __m256 vs = _mm256_set1_ps(shift), vk = _mm256_set1_ps(scale);
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 e = cpu_exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs), vk));
        _mm256_storeu_ps(y + i, e);
        acc = _mm256_add_ps(acc, e);
        if ((i & 1023) == 1016) {   /* fold into f64 every 1024 values */
            total += cpu_hsum8(acc);
            acc = _mm256_setzero_ps();
        }
    }
    total += cpu_hsum8(acc);
#endif
    for (; i < n; i++) {
        y[i] = cpu_expf(scale * (x[i] - shift));
        total += y[i];
    }
    return total;
}

/* Σ x in f32 lanes folded into f64 */
static inline double cpu_vsum(const float *x, size_t n) {
    size_t i = 0;
    double total = 0.0;
#ifdef CPU_MATH_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
        if ((i & 1023) == 1016) {
            total += cpu_hsum8(acc);
            acc = _mm256_setzero_ps();
        }
    }
    total += cpu_hsum8(acc);
#endif
    for (; i < n; i++) total += x[i];
    return total;
}

/* max of x (−inf for n = 0) */
static inline float cpu_vmax(const float *x, size_t n) {
    size_t i = 0;
    float m = -INFINITY;
#ifdef CPU_MATH_AVX2
    __m256 acc = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) acc = _mm256_max_ps(acc, _mm256_loadu_ps(x + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    for (int l = 0; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
#endif
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* y[i] = a1·x1[i] + a2·x2[i] + c (x2 may be NULL: no second term) */
static inline void cpu_vlin2(float *y, const float *x1, float a1, const float *x2, float a2, float c,
                             size_t n) {
    size_t i = 0;
#ifdef CPU_MATH_AVX2
    const __m256 va1 = _mm256_set1_ps(a1), va2 = _mm256_set1_ps(a2), vc = _mm256_set1_ps(c);
    for (; i + 8 <= n; i += 8) {
        __m256 t = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), va1, vc);
        if (x2) t = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i), va2, t);
        _mm256_storeu_ps(y + i, t);
    }
#endif
    for (; i < n; i++) y[i] = a1 * x1[i] + (x2 ? a2 * x2[i] : 0.0f) + c;
}

/* y[i] = p[i]·(y[i] − c) */
static inline void cpu_vmul_shifted(float *y, const float *p, float c, size_t n) {
    size_t i = 0;
#ifdef CPU_MATH_AVX2
    const __m256 vc = _mm256_set1_ps(c);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(p + i), _mm256_sub_ps(_mm256_loadu_ps(y + i), vc)));
#endif
    for (; i < n; i++) y[i] = p[i] * (y[i] - c);
}

#endif
