/* Grouped GEMM (one problem per expert) through cublasGemmGroupedBatchedEx: one launch
 * for all problems instead of one per problem, with the same row-major → column-major
 * mapping as matmul_cuda.cu (Cᵀ = op(B)ᵀ·op(A)ᵀ, B first). Each problem is a group of
 * size 1. Where cuBLAS refuses the grouped call (status NOT_SUPPORTED, e.g. a GPU or
 * dtype it lacks), and with SUSHI_CUDA_GROUPED=0, the problems run one by one through
 * cuda_matmul. The pointer arrays go to the device through a workspace slot; the copy
 * from pageable memory waits for earlier work on the stream, so reuse is ordered. */
#include <cublas_v2.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"

static cublasHandle_t grouped_handle;
static int grouped_mode = -1;   /* -1 unread, 0 loop, 1 grouped */

static int grouped_loop(const struct matmul_problem *p, int count, int trans_a, int trans_b, float alpha,
                        float beta) {
    for (int i = 0; i < count; i++) {
        if (!p[i].m || !p[i].n || !p[i].k) continue;
        int rc = cuda_matmul(p[i].c, p[i].a, p[i].b, p[i].m, p[i].n, p[i].k, trans_a, trans_b, alpha, beta, 0, 0, 0);
        if (rc) return rc;
    }
    return 0;
}

int cuda_matmul_grouped(const struct matmul_problem *p, int count, int trans_a, int trans_b, float alpha,
                        float beta) {
    CUDA_REQUIRE(count >= 0 && (count == 0 || p), "cuda: matmul_grouped: bad argument");
    int live = 0;
    for (int i = 0; i < count; i++) {
        CUDA_REQUIRE(p[i].m >= 0 && p[i].n >= 0 && p[i].k >= 0,
                     "cuda: matmul_grouped: problem %d: bad shape m=%d n=%d k=%d", i, p[i].m, p[i].n, p[i].k);
        if (p[i].m && p[i].n && p[i].k) {
            CUDA_REQUIRE(p[i].a && p[i].b && p[i].c, "cuda: matmul_grouped: problem %d: NULL pointer", i);
            live++;
        }
    }
    if (!live) return 0;
    if (grouped_mode < 0) {
        const char *e = getenv("SUSHI_CUDA_GROUPED");
        grouped_mode = !(e && !strcmp(e, "0"));
    }
    if (!grouped_mode || live == 1) return grouped_loop(p, count, trans_a, trans_b, alpha, beta);
    if (!grouped_handle && cublasCreate(&grouped_handle) != CUBLAS_STATUS_SUCCESS)
        return sushi_error(SUSHI_EBACKEND, "cuda: matmul_grouped: cublasCreate failed");

    /* host arrays, one entry per live problem, in column-major terms */
    size_t L = (size_t)live;
    cublasOperation_t *ta = (cublasOperation_t *)malloc(2 * L * sizeof *ta);
    int *dims = (int *)malloc(7 * L * sizeof(int));
    float *ab = (float *)malloc(2 * L * sizeof(float));
    const void **ptr = (const void **)malloc(3 * L * sizeof(void *));
    if (!ta || !dims || !ab || !ptr) {
        free(ta), free(dims), free(ab), free(ptr);
        return sushi_error(SUSHI_ENOMEM, "cuda: matmul_grouped: out of host memory for %d problems", live);
    }
    cublasOperation_t *tb = ta + L;
    int *M = dims, *N = dims + L, *K = dims + 2 * L, *lda = dims + 3 * L, *ldb = dims + 4 * L, *ldc = dims + 5 * L;
    int *gs = dims + 6 * L;
    float *al = ab, *be = ab + L;
    size_t j = 0;
    for (int i = 0; i < count; i++) {
        const struct matmul_problem *q = &p[i];
        if (!q->m || !q->n || !q->k) continue;
        /* column-major problem: M' = n, N' = m, K' = k; first operand B, second A */
        ta[j] = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
        tb[j] = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
        M[j] = q->n, N[j] = q->m, K[j] = q->k;
        lda[j] = trans_b ? q->k : q->n;   /* B's row length */
        ldb[j] = trans_a ? q->m : q->k;   /* A's row length */
        ldc[j] = q->n;
        gs[j] = 1;
        al[j] = alpha, be[j] = beta;
        ptr[j] = q->b, ptr[L + j] = q->a, ptr[2 * L + j] = q->c;
        j++;
    }
    void *dev;
    int rc = cuda_workspace(&dev, 3 * L * sizeof(void *), 4);
    if (!rc && cudaMemcpy(dev, ptr, 3 * L * sizeof(void *), cudaMemcpyHostToDevice) != cudaSuccess)
        rc = sushi_error(SUSHI_EBACKEND, "cuda: matmul_grouped: pointer upload: %s", cudaGetErrorString(cudaGetLastError()));
    if (!rc) {
        const void *const *dA = (const void *const *)dev;
        cudaDataType_t dt = cuda_act_dtype() == DT_F16 ? CUDA_R_16F : CUDA_R_16BF;
        cublasStatus_t st = cublasGemmGroupedBatchedEx(grouped_handle, ta, tb, M, N, K, al, dA, dt, lda, dA + L, dt,
                                                       ldb, be, (void *const *)(dA + 2 * L), dt, ldc, live, gs,
                                                       CUBLAS_COMPUTE_32F);
        if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
            grouped_mode = 0;   /* this GPU / dtype: one by one from now on */
            rc = grouped_loop(p, count, trans_a, trans_b, alpha, beta);
        } else if (st != CUBLAS_STATUS_SUCCESS) {
            rc = sushi_error(SUSHI_EBACKEND, "cuda: matmul_grouped: cublasGemmGroupedBatchedEx failed (status %d, %d problems)",
                             (int)st, live);
        }
    }
    free(ta), free(dims), free(ab), free(ptr);
    return rc;
}
