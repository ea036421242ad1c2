/* Row-major bf16 or f16 GEMM (the act dtype) through cuBLASLt with f32 accumulation:
 * C[m,n] = alpha·op(A)·op(B) + beta·C. cuBLASLt is column-major, so we compute
 * Cᵀ[n,m] = op(B)ᵀ·op(A)ᵀ: a row-major buffer read as column-major is its transpose,
 * hence B goes first and each operand keeps its own transpose flag. */
#include <cublasLt.h>

#include "kernels/cuda/cuda_common.h"

#define LT_CHECK(call, what)                                                              \
    do {                                                                                  \
        cublasStatus_t st_ = (call);                                                      \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                               \
            rc = sushi_error(SUSHI_EBACKEND, "cuda: matmul: %s failed (cublas status %d)", \
                             (what), (int)st_);                                           \
            goto done;                                                                    \
        }                                                                                 \
    } while (0)

static cublasLtHandle_t lt_handle;
static const size_t LT_WORKSPACE = (size_t)32 << 20;

int cuda_matmul(void *c, const void *a, const void *b, int m, int n, int k, int trans_a,
                int trans_b, float alpha, float beta, int lda, int ldb, int ldc) {
    CUDA_REQUIRE(c && a && b, "cuda: matmul: NULL pointer");
    CUDA_REQUIRE(m > 0 && n > 0 && k > 0, "cuda: matmul: bad shape m=%d n=%d k=%d", m, n, k);
    /* row strides of the stored matrices: A is [m,k] or [k,m], B is [k,n] or [n,k] */
    int a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
    if (lda == 0) lda = a_cols;
    if (ldb == 0) ldb = b_cols;
    if (ldc == 0) ldc = n;
    CUDA_REQUIRE(lda >= a_cols && ldb >= b_cols && ldc >= n,
                 "cuda: matmul: strides lda=%d ldb=%d ldc=%d smaller than rows (%d, %d, %d)",
                 lda, ldb, ldc, a_cols, b_cols, n);
    if (!lt_handle && cublasLtCreate(&lt_handle) != CUBLAS_STATUS_SUCCESS)
        return sushi_error(SUSHI_EBACKEND, "cuda: matmul: cublasLtCreate failed");
    void *ws;
    int rc = cuda_workspace(&ws, LT_WORKSPACE, 0);
    if (rc) return rc;

    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    size_t wsz = LT_WORKSPACE;
    /* column-major problem: M' = n, N' = m, K' = k; first operand is B, second is A */
    cublasOperation_t opa = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t dt = cuda_act_dtype() == DT_F16 ? CUDA_R_16F : CUDA_R_16BF;
    LT_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
    LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa), "transa");
    LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb), "transb");
    /* column-major shapes of the stored buffers: rows = row-major columns */
    LT_CHECK(cublasLtMatrixLayoutCreate(&la, dt, b_cols, trans_b ? n : k, ldb), "layout B");
    LT_CHECK(cublasLtMatrixLayoutCreate(&lb, dt, a_cols, trans_a ? k : m, lda), "layout A");
    LT_CHECK(cublasLtMatrixLayoutCreate(&lc, dt, n, m, ldc), "layout C");
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref), "preference");
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &wsz, sizeof wsz), "workspace size");
    LT_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_handle, op, la, lb, lc, lc, pref, 1, &heur, &found),
             "heuristic");
    if (found == 0) {
        rc = sushi_error(SUSHI_EBACKEND, "cuda: matmul: no cuBLASLt algorithm for m=%d n=%d k=%d", m, n, k);
        goto done;
    }
    LT_CHECK(cublasLtMatmul(lt_handle, op, &alpha, b, la, a, lb, &beta, c, lc, c, lc, &heur.algo,
                            ws, wsz, 0), "matmul");
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return rc;
}
