/* Row permutation for mixture-of-experts routing (gather, weighted scatter-add, row dot
 * products) and the grouped causal softmax of absorbed latent attention, on bf16 or f16
 * activations with f32 arithmetic. A row index outside [0, M) is skipped and raises the
 * backend's bad-input flag (reason 4), reported by sync(). */
#include "kernels/cuda/cuda_common.h"

/* one block per output row r */
template <typename T>
__global__ void gather_rows_kernel(T *out, const T *x, const int32_t *rows, int M, int C, int *bad) {
    int r = blockIdx.x, src = rows[r];
    T *dst = out + (size_t)r * C;
    if (src < 0 || src >= M) {
        if (threadIdx.x == 0) cuda_flag_bad(bad, 4);
        for (int c = threadIdx.x; c < C; c += blockDim.x) st(dst + c, 0.0f);
        return;
    }
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = x[(size_t)src * C + c];
}

/* one block per input row r; rows are distinct within a call, so no atomics */
template <typename T>
__global__ void scatter_add_rows_kernel(T *y, const T *x, const int32_t *rows, const float *w, int M, int C,
                                        int *bad) {
    int r = blockIdx.x, dst = rows[r];
    if (dst < 0 || dst >= M) {
        if (threadIdx.x == 0) cuda_flag_bad(bad, 4);
        return;
    }
    float a = w ? w[r] : 1.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        T *p = y + (size_t)dst * C + c;
        st(p, ld(p) + a * ld(x + (size_t)r * C + c));
    }
}

/* one warp per row r */
template <typename T>
__global__ void rows_dot_kernel(float *out, const T *a, const int32_t *rows, const T *b, int n, int M, int C,
                                int *bad) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= n) return;
    int src = rows[r];
    if (src < 0 || src >= M) {
        if (lane == 0) {
            cuda_flag_bad(bad, 4);
            out[r] = 0.0f;
        }
        return;
    }
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += ld(a + (size_t)src * C + c) * ld(b + (size_t)r * C + c);
    s = warp_sum(s);
    if (lane == 0) out[r] = s;
}

/* one block per output row t: the K terms summed in f32 in order of j, then added once */
template <typename T>
__global__ void gather_sum_rows_kernel(T *out, const T *x, const int32_t *idx, const float *w, int K, int M, int C,
                                       int *bad) {
    int t = blockIdx.x;
    const int32_t *ix = idx + (size_t)t * K;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        T *o = out + (size_t)t * C + c;
        float acc = ld(o);
        for (int j = 0; j < K; j++) {
            int src = ix[j];
            if (src < 0) continue;
            if (src >= M) {
                if (c == threadIdx.x && threadIdx.x == 0) cuda_flag_bad(bad, 4);
                continue;
            }
            acc += (w ? w[(size_t)t * K + j] : 1.0f) * ld(x + (size_t)src * C + c);
        }
        st(o, acc);
    }
}

static int rows_shape(const char *op, int n, int M, int C) {
    CUDA_REQUIRE(n >= 0 && M >= 0 && C > 0, "cuda: %s: bad shape n=%d M=%d C=%d", op, n, M, C);
    return 0;
}

int cuda_gather_rows(void *out, const void *x, const int32_t *rows, int n, int M, int C) {
    int rc = rows_shape("gather_rows", n, M, C);
    if (rc || n == 0) return rc;
    CUDA_REQUIRE(out && x && rows, "cuda: gather_rows: NULL pointer");
    CUDA_ACT(T, gather_rows_kernel<T><<<n, 128>>>((T *)out, (const T *)x, rows, M, C, cuda_bad_input_flag()));
    CUDA_LAUNCHED("gather_rows");
    return 0;
}

int cuda_scatter_add_rows(void *y, const void *x, const int32_t *rows, const float *w, int n, int M, int C) {
    int rc = rows_shape("scatter_add_rows", n, M, C);
    if (rc || n == 0) return rc;
    CUDA_REQUIRE(y && x && rows, "cuda: scatter_add_rows: NULL pointer");
    CUDA_ACT(T, scatter_add_rows_kernel<T><<<n, 128>>>((T *)y, (const T *)x, rows, w, M, C, cuda_bad_input_flag()));
    CUDA_LAUNCHED("scatter_add_rows");
    return 0;
}

int cuda_rows_dot(float *out, const void *a, const int32_t *rows, const void *b, int n, int M, int C) {
    int rc = rows_shape("rows_dot", n, M, C);
    if (rc || n == 0) return rc;
    CUDA_REQUIRE(out && a && b && rows, "cuda: rows_dot: NULL pointer");
    CUDA_ACT(T, rows_dot_kernel<T><<<cuda_blocks((size_t)n * 32, 256), 256>>>(out, (const T *)a, rows, (const T *)b,
                                                                             n, M, C, cuda_bad_input_flag()));
    CUDA_LAUNCHED("rows_dot");
    return 0;
}

int cuda_gather_sum_rows(void *out, const void *x, const int32_t *idx, const float *w, int n, int K, int M, int C) {
    CUDA_REQUIRE(n >= 0 && K > 0 && M >= 0 && C > 0, "cuda: gather_sum_rows: bad shape n=%d K=%d M=%d C=%d", n, K,
                 M, C);
    if (n == 0) return 0;
    CUDA_REQUIRE(out && x && idx, "cuda: gather_sum_rows: NULL pointer");
    CUDA_ACT(T, gather_sum_rows_kernel<T><<<n, 128>>>((T *)out, (const T *)x, idx, w, K, M, C, cuda_bad_input_flag()));
    CUDA_LAUNCHED("gather_sum_rows");
    return 0;
}

/* one block per row; three passes over the row (max, sum, write) in f32 */
template <typename T>
__global__ void softmax_causal_kernel(T *p, const T *s, int R, int S, int group, float scale) {
    __shared__ float red[32];
    int r = blockIdx.x;
    int vis = S - R / group + r / group + 1;
    const T *sr = s + (size_t)r * S;
    T *pr = p + (size_t)r * S;
    float mx = -INFINITY;
    for (int c = threadIdx.x; c < vis; c += blockDim.x) mx = fmaxf(mx, scale * ld(sr + c));
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < vis; c += blockDim.x) sum += __expf(scale * ld(sr + c) - mx);
    sum = block_sum(sum, red);
    float inv = 1.0f / sum;
    for (int c = threadIdx.x; c < S; c += blockDim.x) st(pr + c, c < vis ? __expf(scale * ld(sr + c) - mx) * inv : 0.0f);
}

int cuda_softmax_causal(void *p, const void *s, int R, int S, int group, float scale) {
    CUDA_REQUIRE(p && s, "cuda: softmax_causal: NULL pointer");
    CUDA_REQUIRE(R > 0 && S > 0 && group > 0 && R % group == 0 && R / group <= S,
                 "cuda: softmax_causal: bad shape R=%d S=%d group=%d", R, S, group);
    CUDA_ACT(T, softmax_causal_kernel<T><<<R, 256>>>((T *)p, (const T *)s, R, S, group, scale));
    CUDA_LAUNCHED("softmax_causal");
    return 0;
}
