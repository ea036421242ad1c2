/* Optimizer kernels: AdamW on f32 master weights and moments (writing the bf16 or f16
 * copy used in compute, rounded to nearest or stochastically) and the sum of squares used
 * for global-norm clipping (and, on f16, for spotting the inf/NaN of an overflowed step). */
#include "kernels/cuda/cuda_common.h"

/* g = grad·grad_scale; m,v moments; master −= lr·(m̂/(√v̂ + eps) + wd·master); the act
 * copy rounds the new master to nearest, or stochastically with bits from (seed, step, i) */
template <typename T>
__global__ void adamw_kernel(float *master, T *param, const T *grad, float *m, float *v,
                             struct adamw_args a, float bc1, float bc2) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < a.n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = ld(grad + i) * a.grad_scale;
        float mi = a.beta1 * m[i] + (1.0f - a.beta1) * g;
        float vi = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float w = master[i];
        w -= a.lr * ((mi / bc1) / (sqrtf(vi / bc2) + a.eps) + a.weight_decay * w);
        master[i] = w;
        if (!param) continue;
        if (a.stochastic_rounding)
            st_sr(param + i, w, cuda_hash32(a.seed, (uint32_t)a.step, i));
        else
            st(param + i, w);
    }
}

int cuda_adamw(float *master, void *param, const void *grad, float *m, float *v,
               const struct adamw_args *a) {
    CUDA_REQUIRE(master && grad && m && v && a, "cuda: adamw: NULL pointer");
    CUDA_REQUIRE(a->step >= 1, "cuda: adamw: step %d (1-based)", a->step);
    CUDA_REQUIRE(a->beta1 >= 0 && a->beta1 < 1 && a->beta2 >= 0 && a->beta2 < 1,
                 "cuda: adamw: betas (%g, %g) outside [0, 1)", a->beta1, a->beta2);
    if (a->n == 0) return 0;
    CUDA_REQUIRE((void *)param != (void *)master, "cuda: adamw: param must be a separate act-dtype buffer");
    float bc1 = 1.0f - powf(a->beta1, (float)a->step), bc2 = 1.0f - powf(a->beta2, (float)a->step);
    CUDA_ACT(T, adamw_kernel<T><<<cuda_blocks(a->n, 256), 256>>>(master, (T *)param, (const T *)grad, m, v, *a,
                                                                 bc1, bc2));
    CUDA_LAUNCHED("adamw");
    return 0;
}

/* block partial sums in f32, combined in f64 */
template <typename T>
__global__ void sumsq_kernel(double *out, const T *x, size_t n) {
    __shared__ float part[32];
    float s = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = ld(x + i);
        s += v * v;
    }
    s = warp_sum(s);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
        s = warp_sum(s);
        if (threadIdx.x == 0) atomicAdd(out, (double)s);
    }
}

int cuda_sumsq(float *out, const void *x, size_t n) {
    CUDA_REQUIRE(out && (x || n == 0), "cuda: sumsq: NULL pointer");
    void *acc;
    int rc = cuda_workspace(&acc, sizeof(double), 2);
    if (rc) return rc;
    CUDA_CHECK(cudaMemset(acc, 0, sizeof(double)), "sumsq memset");
    if (n) {
        unsigned blocks = cuda_blocks(n, 256);
        if (blocks > 1024) blocks = 1024;
        CUDA_ACT(T, sumsq_kernel<T><<<blocks, 256>>>((double *)acc, (const T *)x, n));
        CUDA_LAUNCHED("sumsq");
    }
    double r = 0.0;
    CUDA_CHECK(cudaMemcpy(&r, acc, sizeof r, cudaMemcpyDeviceToHost), "sumsq result");
    *out = (float)r;
    return 0;
}
