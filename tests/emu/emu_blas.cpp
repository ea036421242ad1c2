/* cuBLASLt and cuBLAS for the CUDA emulator (cublas_emu.h): column-major
 * D = alpha·op(A)·op(B) + beta·C with bf16 or f16 operands and output, f32 compute and
 * scale, as a plain loop in f32 (the operands are widened to f32 first, each output is a
 * sequential dot product over k, rounded once to the output type). beta = 0 does not read
 * C, as cuBLAS. Layout shapes are checked against the operation: a mismatch answers
 * CUBLAS_STATUS_INVALID_VALUE, which a wrong row/column mapping in the caller would meet. */
#include "tests/emu/cuda_emu.h"

#include <stdlib.h>

#include <vector>

struct sushi_emu_lt_handle { int unused; };
struct sushi_emu_blas_handle { int unused; };
struct sushi_emu_lt_pref { size_t workspace; };

static bool type_ok(cudaDataType_t t) { return t == CUDA_R_16BF || t == CUDA_R_16F; }

static float load(const void *p, size_t i, cudaDataType_t t) {
    uint16_t b = ((const uint16_t *)p)[i];
    return t == CUDA_R_16F ? sushi_emu::f16_to_f32(b) : sushi_emu::bf16_to_f32(b);
}

static void store(void *p, size_t i, float v, cudaDataType_t t) {
    ((uint16_t *)p)[i] = t == CUDA_R_16F ? sushi_emu::f32_to_f16(v, 0) : sushi_emu::f32_to_bf16(v, 0);
}

/* column-major: op(A) is M×K, op(B) is K×N, C and D M×N */
static cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int M, int N, int K, float alpha, const void *A,
                           cudaDataType_t at, long long lda, const void *B, cudaDataType_t bt, long long ldb, float beta,
                           const void *C, cudaDataType_t ct, long long ldc, void *D, long long ldd) {
    if (M < 0 || N < 0 || K < 0 || !type_ok(at) || !type_ok(bt) || !type_ok(ct)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (lda < (ta == CUBLAS_OP_N ? M : K) || ldb < (tb == CUBLAS_OP_N ? K : N) || ldc < M || ldd < M ||
        lda < 1 || ldb < 1 || ldc < 1 || ldd < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (M == 0 || N == 0) return CUBLAS_STATUS_SUCCESS;
    if (!A || !B || !D || (beta != 0.0f && !C)) return CUBLAS_STATUS_INVALID_VALUE;
    /* rows of op(A) and columns of op(B), each K contiguous floats */
    std::vector<float> a((size_t)M * K), b((size_t)N * K);
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++)
            a[(size_t)i * K + k] = load(A, ta == CUBLAS_OP_N ? (size_t)k * lda + i : (size_t)i * lda + k, at);
    for (int j = 0; j < N; j++)
        for (int k = 0; k < K; k++)
            b[(size_t)j * K + k] = load(B, tb == CUBLAS_OP_N ? (size_t)j * ldb + k : (size_t)k * ldb + j, bt);
    for (int j = 0; j < N; j++)
        for (int i = 0; i < M; i++) {
            const float *x = &a[(size_t)i * K], *y = &b[(size_t)j * K];
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += x[k] * y[k];
            float v = alpha * s;
            if (beta != 0.0f) v += beta * load(C, (size_t)j * ldc + i, ct);
            store(D, (size_t)j * ldd + i, v, ct);
        }
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- cuBLASLt ---- */

template <typename T> static cublasStatus_t make(T **p) {
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    *p = (T *)calloc(1, sizeof(T));
    return *p ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
template <typename T> static cublasStatus_t drop(T *p) {
    free(p);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { return make(h); }
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { return drop(h); }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    cublasStatus_t st = make(d);
    if (st == CUBLAS_STATUS_SUCCESS) (*d)->compute = compute, (*d)->scale = scale;
    return st;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { return drop(d); }

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *buf,
                                              size_t size) {
    if (!d || !buf || size != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
    if (a == CUBLASLT_MATMUL_DESC_TRANSA) memcpy(&d->transa, buf, size);
    else if (a == CUBLASLT_MATMUL_DESC_TRANSB) memcpy(&d->transb, buf, size);
    else return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, unsigned long long rows,
                                          unsigned long long cols, long long ld) {
    cublasStatus_t st = make(l);
    if (st == CUBLAS_STATUS_SUCCESS) (*l)->type = type, (*l)->rows = rows, (*l)->cols = cols, (*l)->ld = ld;
    return st;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { return drop(l); }

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) { return make(p); }
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { return drop(p); }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a,
                                                    const void *buf, size_t size) {
    if (!p || !buf || a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES || size != sizeof(size_t))
        return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&p->workspace, buf, size);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t *results, int *found) {
    if (!h || !d || !a || !b || !c || !dl || !p || requested < 1 || !results || !found) return CUBLAS_STATUS_INVALID_VALUE;
    memset(results, 0, sizeof *results);
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                              const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_size, cudaStream_t s) {
    (void)ws, (void)ws_size, (void)s;
    if (!h || !d || !alpha || !beta || !la || !lb || !lc || !ld || !algo) return CUBLAS_STATUS_INVALID_VALUE;
    if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F || lc->type != ld->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    unsigned long long M = lc->rows, N = lc->cols;
    unsigned long long am = d->transa == CUBLAS_OP_N ? la->rows : la->cols, K = d->transa == CUBLAS_OP_N ? la->cols : la->rows;
    unsigned long long bk = d->transb == CUBLAS_OP_N ? lb->rows : lb->cols, bn = d->transb == CUBLAS_OP_N ? lb->cols : lb->rows;
    if (am != M || bk != K || bn != N || ld->rows != M || ld->cols != N || M > 0x7fffffff || N > 0x7fffffff || K > 0x7fffffff)
        return CUBLAS_STATUS_INVALID_VALUE;
    if ((C != D && beta && *(const float *)beta != 0.0f) && lc->ld != ld->ld) return CUBLAS_STATUS_NOT_SUPPORTED;
    return gemm(d->transa, d->transb, (int)M, (int)N, (int)K, *(const float *)alpha, A, la->type, la->ld, B, lb->type,
                lb->ld, *(const float *)beta, C, lc->type, lc->ld, D, ld->ld);
}

/* ---- cuBLAS grouped GEMM ---- */

cublasStatus_t cublasCreate(cublasHandle_t *h) { return make(h); }
cublasStatus_t cublasDestroy(cublasHandle_t h) { return drop(h); }

cublasStatus_t cublasGemmGroupedBatchedEx(cublasHandle_t h, const cublasOperation_t transa[],
                                          const cublasOperation_t transb[], const int m[], const int n[],
                                          const int k[], const void *alpha, const void *const A[],
                                          cudaDataType_t at, const int lda[], const void *const B[],
                                          cudaDataType_t bt, const int ldb[], const void *beta, void *const C[],
                                          cudaDataType_t ct, const int ldc[], int groups, const int group_size[],
                                          cublasComputeType_t compute) {
    if (!h || groups < 0 || (groups && (!transa || !transb || !m || !n || !k || !alpha || !A || !lda || !B || !ldb ||
                                        !beta || !C || !ldc || !group_size)))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (compute != CUBLAS_COMPUTE_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    const float *al = (const float *)alpha, *be = (const float *)beta;
    size_t p = 0;   /* the pointer arrays hold one entry per problem, groups after each other */
    for (int g = 0; g < groups; g++) {
        if (group_size[g] < 0) return CUBLAS_STATUS_INVALID_VALUE;
        for (int i = 0; i < group_size[g]; i++, p++) {
            cublasStatus_t st = gemm(transa[g], transb[g], m[g], n[g], k[g], al[g], A[p], at, lda[g], B[p], bt, ldb[g],
                                     be[g], C[p], ct, ldc[g], C[p], ldc[g]);
            if (st != CUBLAS_STATUS_SUCCESS) return st;
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}
