// The CUDA emulator's own checks (tests/emu): built from this .cu through transform.py like
// the backend's kernels, so it also exercises the rewriting (multi-line launches, extern
// __shared__, inline PTX). Warp shuffles/ballot/match against their definitions, block
// barriers with predicates, dynamic shared memory, mma.sync m16n8k16 (bf16 through
// kernels/cuda/mma_sm80.h, f16 through its own PTX) against a double-precision product,
// ldmatrix x4 plain and transposed against the PTX fragment layout, cp.async copying only
// at wait_group (zero fill past src_size), a deadlock and bad launches reported as errors,
// f16/bf16 conversions (ties to even, subnormals, overflow, toward zero; f16 exhaustively
// against the compiler's _Float16), a cuBLASLt GEMM against a naive loop.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/mma_sm80.h"

template <typename V> static V *dev(size_t n) {
    void *p = NULL;
    assert_int_equal(cudaMalloc(&p, n * sizeof(V)), cudaSuccess);
    return (V *)p;
}

/* ---- warp collectives and barriers ---- */

enum { W_XOR, W_DOWN, W_SRC, W_UP, W_BALLOT, W_MATCH, W_ALL, W_ANY, W_OR, W_COUNT, W_N };

__global__ void warp_kernel(unsigned *out) {
    unsigned t = threadIdx.x, *o = out + t * W_N;
    o[W_XOR] = __shfl_xor_sync(0xffffffffu, t, 5);
    o[W_DOWN] = __shfl_down_sync(0xffffffffu, t, 3);
    o[W_SRC] = __shfl_sync(0xffffffffu, t, 7);
    o[W_UP] = __shfl_up_sync(0xffffffffu, t, 2, 16);
    o[W_BALLOT] = __ballot_sync(0xffffffffu, t % 3 == 0);
    o[W_MATCH] = __match_any_sync(0xffffffffu, t % 4);
    o[W_ALL] = __all_sync(0xffffffffu, t < 1000);
    o[W_ANY] = __any_sync(0xffffffffu, t == 40);
    o[W_OR] = __syncthreads_or(t == 17);
    o[W_COUNT] = __syncthreads_count(t % 2);
}

static void test_warp(void **state) {
    (void)state;
    const int n = 64;
    unsigned *d = dev<unsigned>(n * W_N), h[n * W_N];
    warp_kernel<<<1, n>>>(d);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    assert_int_equal(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
    for (unsigned t = 0; t < (unsigned)n; t++) {
        const unsigned *o = h + t * W_N, lane = t % 32, base = t - lane;
        unsigned ballot = 0, match = 0;
        for (unsigned l = 0; l < 32; l++) {
            ballot |= ((base + l) % 3 == 0) << l;
            match |= ((base + l) % 4 == t % 4) << l;
        }
        assert_int_equal(o[W_XOR], base + (lane ^ 5));
        assert_int_equal(o[W_DOWN], lane + 3 < 32 ? t + 3 : t);
        assert_int_equal(o[W_SRC], base + 7);
        assert_int_equal(o[W_UP], lane % 16 >= 2 ? t - 2 : t);
        assert_int_equal(o[W_BALLOT], ballot);
        assert_int_equal(o[W_MATCH], match);
        assert_int_equal(o[W_ALL], 1);
        assert_int_equal(o[W_ANY], t >= 32);
        assert_int_equal(o[W_OR], 1);
        assert_int_equal(o[W_COUNT], n / 2);
    }
    cudaFree(d);
}

/* block sum through dynamic shared memory, every thread reads every slot after the barrier */
__global__ void block_sum_kernel(float *out, const float *x) {
    extern __shared__ float part[];
    part[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
    __syncthreads();
    float s = 0.0f;
    for (unsigned i = 0; i < blockDim.x; i++) s += part[i];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

static void test_block_shared(void **state) {
    (void)state;
    const int blocks = 3, threads = 200;
    float h[blocks * threads], r[blocks * threads];
    for (int i = 0; i < blocks * threads; i++) h[i] = (float)(i % 17);
    float *x = dev<float>(blocks * threads), *out = dev<float>(blocks * threads);
    assert_int_equal(cudaMemcpy(x, h, sizeof h, cudaMemcpyHostToDevice), cudaSuccess);
    block_sum_kernel<<<blocks,
                       threads,
                       threads * sizeof(float)>>>(out,
                                                  x);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    assert_int_equal(cudaMemcpy(r, out, sizeof r, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int b = 0; b < blocks; b++) {
        float want = 0.0f;
        for (int i = 0; i < threads; i++) want += h[b * threads + i];
        for (int i = 0; i < threads; i++) assert_true(r[b * threads + i] == want);
    }
    cudaFree(x), cudaFree(out);
}

/* ---- mma.sync and ldmatrix ---- */

static uint16_t bits16(float v, bool f16) { return f16 ? sushi_emu::f32_to_f16(v, 0) : sushi_emu::f32_to_bf16(v, 0); }
static float val16(uint16_t b, bool f16) { return f16 ? sushi_emu::f16_to_f32(b) : sushi_emu::bf16_to_f32(b); }

/* A [16][16] and B [16][8] (k rows) as 16-bit patterns; d [32][4] per lane */
template <bool F16>
__global__ void mma_kernel(float *d, const uint16_t *A, const uint16_t *B) {
    int lane = threadIdx.x, g = lane / 4, t = lane % 4;
    auto pk = [](uint16_t lo, uint16_t hi) { return (uint32_t)lo | (uint32_t)hi << 16; };
    uint32_t a0 = pk(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]), a1 = pk(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]);
    uint32_t a2 = pk(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]);
    uint32_t a3 = pk(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9]);
    uint32_t b0 = pk(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]), b1 = pk(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
    float c[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    if (!F16) {
        mma_bf16(c, a0, a1, a2, a3, b0, b1);
    } else {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                     "{%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
    for (int e = 0; e < 4; e++) d[lane * 4 + e] = c[e];
}

static void mma_case(bool f16) {
    uint16_t A[256], B[128];
    for (int i = 0; i < 256; i++) A[i] = bits16((float)((i * 37) % 19 - 9) / 8.0f, f16);
    for (int i = 0; i < 128; i++) B[i] = bits16((float)((i * 11) % 13 - 6) / 4.0f, f16);
    uint16_t *dA = dev<uint16_t>(256), *dB = dev<uint16_t>(128);
    float *dd = dev<float>(128), d[128];
    assert_int_equal(cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice), cudaSuccess);
    assert_int_equal(cudaMemcpy(dB, B, sizeof B, cudaMemcpyHostToDevice), cudaSuccess);
    if (f16) mma_kernel<true><<<1, 32>>>(dd, dA, dB);
    else mma_kernel<false><<<1, 32>>>(dd, dA, dB);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    assert_int_equal(cudaMemcpy(d, dd, sizeof d, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int lane = 0; lane < 32; lane++)
        for (int e = 0; e < 4; e++) {
            int row = lane / 4 + (e >= 2 ? 8 : 0), col = 2 * (lane % 4) + (e & 1);
            double want = 1.0 + e;
            for (int k = 0; k < 16; k++) want += (double)val16(A[row * 16 + k], f16) * val16(B[k * 8 + col], f16);
            assert_true(fabs(d[lane * 4 + e] - want) <= 1e-5 * (1.0 + fabs(want)));
        }
    cudaFree(dA), cudaFree(dB), cudaFree(dd);
}

static void test_mma(void **state) {
    (void)state;
    mma_case(false);
    mma_case(true);
}

/* four 8×8 matrices [32][8] in shared; lane l gives the address of row l */
__global__ void ldsm_kernel(uint32_t *out, const bf16 *src) {
    __shared__ __align__(16) bf16 tile[32 * 8];
    for (int i = threadIdx.x; i < 256; i += 32) tile[i] = src[i];
    __syncwarp();
    uint32_t r[4], rt[4];
    ldsm4(r, tile + threadIdx.x * 8);
    ldsm4t(rt, tile + threadIdx.x * 8);
    for (int m = 0; m < 4; m++) out[threadIdx.x * 8 + m] = r[m], out[threadIdx.x * 8 + 4 + m] = rt[m];
}

static void test_ldmatrix(void **state) {
    (void)state;
    uint16_t h[256];
    for (int i = 0; i < 256; i++) h[i] = (uint16_t)(i + 1);
    uint16_t *d = dev<uint16_t>(256);
    uint32_t *o = dev<uint32_t>(256), r[256];
    assert_int_equal(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice), cudaSuccess);
    ldsm_kernel<<<1, 32>>>(o, (const bf16 *)d);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    assert_int_equal(cudaMemcpy(r, o, sizeof r, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int lane = 0; lane < 32; lane++) {
        int g = lane / 4, t = lane % 4;
        for (int m = 0; m < 4; m++) {
            const uint16_t *mat = h + m * 64;   /* row j of matrix m: h[(8m + j)·8 ...] */
            assert_int_equal(r[lane * 8 + m], (uint32_t)mat[g * 8 + 2 * t] | (uint32_t)mat[g * 8 + 2 * t + 1] << 16);
            assert_int_equal(r[lane * 8 + 4 + m], (uint32_t)mat[2 * t * 8 + g] | (uint32_t)mat[(2 * t + 1) * 8 + g] << 16);
        }
    }
    cudaFree(d), cudaFree(o);
}

/* ---- cp.async ---- */

__global__ void cp_async_kernel(uint32_t *out, const uint32_t *src) {
    extern __shared__ __align__(16) uint32_t buf[];
    cp_async16(buf + 4 * threadIdx.x, src + 4 * threadIdx.x, 8);   /* 8 bytes, then 8 zero */
    cp_commit();
    out[8 * threadIdx.x] = buf[4 * threadIdx.x];                  /* before the wait: not copied */
    cp_wait<0>();
    for (int i = 0; i < 4; i++) out[8 * threadIdx.x + 4 + i] = buf[4 * threadIdx.x + i];
}

static void test_cp_async(void **state) {
    (void)state;
    uint32_t h[64], r[128];
    for (int i = 0; i < 64; i++) h[i] = 1000u + (uint32_t)i;
    uint32_t *s = dev<uint32_t>(64), *o = dev<uint32_t>(128);
    assert_int_equal(cudaMemcpy(s, h, sizeof h, cudaMemcpyHostToDevice), cudaSuccess);
    cp_async_kernel<<<1, 16, 256>>>(o, s);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    assert_int_equal(cudaMemcpy(r, o, sizeof r, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int t = 0; t < 16; t++) {
        assert_int_equal(r[8 * t], 0xffffffffu);   /* the poisoned shared memory */
        assert_int_equal(r[8 * t + 4], h[4 * t]);
        assert_int_equal(r[8 * t + 5], h[4 * t + 1]);
        assert_int_equal(r[8 * t + 6], 0);
        assert_int_equal(r[8 * t + 7], 0);
    }
    cudaFree(s), cudaFree(o);
}

/* ---- failures ---- */

__global__ void deadlock_kernel(int *x) {
    if (threadIdx.x == 0) __syncwarp();   /* waits for lanes that wait at __syncthreads */
    else __syncthreads();
    x[threadIdx.x] = 1;
}

__global__ void smem_kernel(int *x) {
    extern __shared__ int big[];
    big[threadIdx.x] = 1;
    x[threadIdx.x] = big[threadIdx.x];
}

static void test_failures(void **state) {
    (void)state;
    int *x = dev<int>(64), h = 0;
    deadlock_kernel<<<1, 64>>>(x);
    assert_int_equal(cudaGetLastError(), cudaErrorLaunchFailure);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    smem_kernel<<<1, 2048>>>(x);
    assert_int_equal(cudaGetLastError(), cudaErrorInvalidConfiguration);
    smem_kernel<<<1, 32, 64 * 1024>>>(x);
    assert_int_equal(cudaGetLastError(), cudaErrorInvalidValue);
    assert_int_equal(cudaFuncSetAttribute(smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024),
                     cudaSuccess);
    smem_kernel<<<1, 32, 64 * 1024>>>(x);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    /* a host pointer where device memory belongs */
    assert_int_equal(cudaMemcpy(&h, &h, sizeof h, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    assert_int_equal(cudaMemcpy(x + 63, &h, 2 * sizeof h, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
    (void)cudaGetLastError();
    cudaFree(x);
}

/* ---- conversions ---- */

static void test_conversions(void **state) {
    (void)state;
    assert_int_equal(sushi_emu::f32_to_f16(65504.0f, 0), 0x7bff);
    assert_int_equal(sushi_emu::f32_to_f16(65520.0f, 0), 0x7c00);        /* rounds past the largest: inf */
    assert_int_equal(sushi_emu::f32_to_f16(65520.0f, 1), 0x7bff);
    assert_int_equal(sushi_emu::f32_to_f16(1.0f + 0x1p-11f, 0), 0x3c00); /* tie to even */
    assert_int_equal(sushi_emu::f32_to_f16(1.0f + 3 * 0x1p-11f, 0), 0x3c02);
    assert_int_equal(sushi_emu::f32_to_f16(0x1p-24f, 0), 0x0001);
    assert_int_equal(sushi_emu::f32_to_f16(0x1p-25f, 0), 0x0000);        /* tie to even: 0 */
    assert_int_equal(sushi_emu::f32_to_f16(3 * 0x1p-26f, 0), 0x0001);
    assert_int_equal(sushi_emu::f32_to_f16(-0.0f, 0), 0x8000);
    assert_int_equal(sushi_emu::f32_to_f16(NAN, 0) & 0x7e00, 0x7e00);
    assert_int_equal(sushi_emu::f32_to_bf16(1.0f + 0x1p-8f, 0), 0x3f80);
    assert_int_equal(sushi_emu::f32_to_bf16(1.0f + 3 * 0x1p-8f, 0), 0x3f82);
    assert_int_equal(sushi_emu::f32_to_bf16(1.0f + 3 * 0x1p-8f, 1), 0x3f81);
    assert_true(isnan(sushi_emu::bf16_to_f32(sushi_emu::f32_to_bf16(NAN, 0))));
    for (uint32_t b = 0; b < 65536; b++) {
        float v = sushi_emu::f16_to_f32((uint16_t)b);
        if (!isnan(v)) assert_int_equal(sushi_emu::f32_to_f16(v, 0), b);
    }
#ifdef __FLT16_MAX__
    uint32_t s = 12345;
    for (int i = 0; i < 1000000; i++) {   /* random patterns, exponents around f16's range */
        s = s * 1664525u + 1013904223u;
        float v = sushi_emu::bits_f32((s & 0x807fffffu) | (uint32_t)(96 + (s >> 23) % 48) << 23);
        _Float16 ref = (_Float16)v;
        uint16_t rb;
        memcpy(&rb, &ref, 2);
        assert_int_equal(sushi_emu::f32_to_f16(v, 0), rb);
    }
#endif
}

/* ---- cuBLASLt ---- */

static void test_gemm(void **state) {
    (void)state;
    /* column-major C[3×2] = Aᵀ·B with A stored [4×3] (ld 4), B [4×2] (ld 5), C ld 3 */
    const int M = 3, N = 2, K = 4;
    uint16_t A[12], B[10], C[6];
    for (int i = 0; i < 12; i++) A[i] = sushi_emu::f32_to_bf16((float)(i - 5), 0);
    for (int i = 0; i < 10; i++) B[i] = sushi_emu::f32_to_bf16((float)(2 * i - 7) / 2.0f, 0);
    for (int i = 0; i < 6; i++) C[i] = sushi_emu::f32_to_bf16((float)i, 0);
    uint16_t *dA = dev<uint16_t>(12), *dB = dev<uint16_t>(10), *dC = dev<uint16_t>(6), R[6];
    cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, B, sizeof B, cudaMemcpyHostToDevice);
    cudaMemcpy(dC, C, sizeof C, cudaMemcpyHostToDevice);
    cublasLtHandle_t h;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    assert_int_equal(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
    assert_int_equal(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, M, 4);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, N, 5);
    cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, M, N, 3);
    cublasLtMatmulAlgo_t algo = {};
    float alpha = 0.5f, beta = 2.0f;
    assert_int_equal(cublasLtMatmul(h, op, &alpha, dA, la, dB, lb, &beta, dC, lc, dC, lc, &algo, NULL, 0, 0),
                     CUBLAS_STATUS_SUCCESS);
    cudaMemcpy(R, dC, sizeof R, cudaMemcpyDeviceToHost);
    for (int j = 0; j < N; j++)
        for (int i = 0; i < M; i++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += (float)(i * 4 + k - 5) * (float)(2 * (j * 5 + k) - 7) / 2.0f;
            float want = sushi_emu::bf16_to_f32(sushi_emu::f32_to_bf16(0.5f * s + 2.0f * (float)(j * 3 + i), 0));
            assert_true(sushi_emu::bf16_to_f32(R[j * 3 + i]) == want);
        }
    /* a layout that does not fit the operation is refused */
    cublasLtMatrixLayout_t bad;
    cublasLtMatrixLayoutCreate(&bad, CUDA_R_16BF, M + 1, N, 4);
    assert_int_equal(cublasLtMatmul(h, op, &alpha, dA, la, dB, lb, &beta, dC, bad, dC, bad, &algo, NULL, 0, 0),
                     CUBLAS_STATUS_INVALID_VALUE);
    cublasLtMatrixLayoutDestroy(bad), cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc), cublasLtMatmulDescDestroy(op), cublasLtDestroy(h);
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warp),        cmocka_unit_test(test_block_shared), cmocka_unit_test(test_mma),
        cmocka_unit_test(test_ldmatrix),    cmocka_unit_test(test_cp_async),     cmocka_unit_test(test_failures),
        cmocka_unit_test(test_conversions), cmocka_unit_test(test_gemm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
