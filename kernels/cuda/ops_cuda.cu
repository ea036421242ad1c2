/* The CUDA op table: device discovery (NULL with a message when no GPU or driver is
 * usable), the choice of the activation dtype, memory ops, f32 <-> act conversions,
 * elementwise ops and the table that gathers the kernels of the other files in
 * kernels/cuda/. The act dtype is bf16 on compute capability ≥ 8.0 and f16 below (where
 * training needs dynamic loss scaling); SUSHI_CUDA_DTYPE=bf16|f16 overrides the choice. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"

static int *bad_input;
static enum dtype act_dtype = DT_BF16;

enum dtype cuda_act_dtype(void) { return act_dtype; }

int *cuda_bad_input_flag(void) { return bad_input; }

/* ---- workspace ---- */

#define CUDA_WS_SLOTS 6
static void *ws_ptr[CUDA_WS_SLOTS];
static size_t ws_size[CUDA_WS_SLOTS];

int cuda_workspace(void **p, size_t bytes, int slot) {
    CUDA_REQUIRE(slot >= 0 && slot < CUDA_WS_SLOTS, "cuda: workspace slot %d out of range", slot);
    if (bytes > ws_size[slot]) {
        if (ws_ptr[slot]) {
            CUDA_CHECK(cudaDeviceSynchronize(), "workspace sync");
            CUDA_CHECK(cudaFree(ws_ptr[slot]), "workspace free");
            ws_ptr[slot] = NULL;
            ws_size[slot] = 0;
        }
        size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;
        if (cudaMalloc(&ws_ptr[slot], want) != cudaSuccess) {
            (void)cudaGetLastError();
            ws_ptr[slot] = NULL;
            return sushi_error(SUSHI_ENOMEM, "cuda: workspace of %zu bytes: out of device memory", want);
        }
        ws_size[slot] = want;
    }
    *p = ws_ptr[slot];
    return 0;
}

/* ---- memory ---- */

static struct mem_track cuda_mem = MEM_TRACK_INIT;

/* Freed blocks are cached for reuse, as PyTorch's allocator does: cudaMalloc / cudaFree
 * synchronise the device and cost ~0.1 ms, and the models allocate scratch per call (per
 * layer, per expert). Sizes are rounded up to a class (512 B steps below 64 KiB, then a
 * quarter of the power of two, so at most 25% is wasted) and a freed block waits in the
 * cache for the next request of its class. Reuse is safe because all work runs in order
 * on the default stream. When cudaMalloc fails the cache is released and the call
 * retried. SUSHI_CUDA_CACHE=0 turns caching off (e.g. for compute-sanitizer). */
#define CACHE_MAX_BLOCKS 4096
struct cached_block {
    void *p;
    size_t size;
};
static struct cached_block cache_blocks[CACHE_MAX_BLOCKS];
static int cache_count = -1;   /* -1: SUSHI_CUDA_CACHE not read yet */
static int cache_on = 1;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t size_class(size_t bytes) {
    if (bytes <= ((size_t)64 << 10)) return (bytes + 511) & ~(size_t)511;
    size_t pow = (size_t)64 << 10;
    while (pow < bytes / 2) pow <<= 1;              /* pow < bytes ≤ 2·pow */
    size_t step = pow / 4, c = pow;
    while (c < bytes) c += step;
    return c;
}

/* a cached block of exactly this class, or NULL */
static void *cache_take(size_t size) {
    void *p = NULL;
    pthread_mutex_lock(&cache_lock);
    if (cache_count < 0) {
        const char *e = getenv("SUSHI_CUDA_CACHE");
        cache_on = !(e && !strcmp(e, "0"));
        cache_count = 0;
    }
    for (int i = cache_count - 1; i >= 0; i--)
        if (cache_blocks[i].size == size) {
            p = cache_blocks[i].p;
            cache_blocks[i] = cache_blocks[--cache_count];
            break;
        }
    pthread_mutex_unlock(&cache_lock);
    return p;
}

/* keeps the block for reuse; 0 when the cache is off or full (the caller frees it) */
static int cache_put(void *p, size_t size) {
    int kept = 0;
    pthread_mutex_lock(&cache_lock);
    if (cache_on && cache_count >= 0 && cache_count < CACHE_MAX_BLOCKS) {
        cache_blocks[cache_count].p = p;
        cache_blocks[cache_count++].size = size;
        kept = 1;
    }
    pthread_mutex_unlock(&cache_lock);
    return kept;
}

static void cache_release(void) {
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < cache_count; i++) cudaFree(cache_blocks[i].p);
    if (cache_count > 0) cache_count = 0;
    pthread_mutex_unlock(&cache_lock);
}

static void *cu_alloc(size_t bytes) {
    size_t size = size_class(bytes ? bytes : 1);
    void *p = cache_take(size);
    if (!p && cudaMalloc(&p, size) != cudaSuccess) {
        (void)cudaGetLastError();
        cache_release();
        p = NULL;
        if (cudaMalloc(&p, size) != cudaSuccess) {
            (void)cudaGetLastError();
            sushi_error(SUSHI_ENOMEM, "cuda: alloc of %zu bytes: out of device memory", bytes);
            return NULL;
        }
    }
    if (cudaMemsetAsync(p, 0, bytes, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        cudaFree(p);
        sushi_error(SUSHI_EBACKEND, "cuda: alloc: zeroing %zu bytes failed", bytes);
        return NULL;
    }
    mem_track_add(&cuda_mem, p, bytes);   /* the statistics count what was asked for */
    return p;
}

static void cu_free(void *p) {
    if (!p) return;
    size_t bytes = mem_track_remove(&cuda_mem, p);
    if (!bytes || !cache_put(p, size_class(bytes))) cudaFree(p);
}

static int cu_mem_stats(struct ops_mem *out) {
    CUDA_REQUIRE(out, "cuda: mem_stats: NULL");
    memset(out, 0, sizeof *out);
    mem_track_counts(&cuda_mem, &out->allocated, &out->peak);
    CUDA_CHECK(cudaMemGetInfo(&out->free, &out->total), "cudaMemGetInfo");
    return 0;
}

static int cu_to_device(void *dst, const void *src, size_t bytes) {
    CUDA_REQUIRE((dst && src) || bytes == 0, "cuda: to_device: NULL pointer");
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "to_device");
    return 0;
}

static int cu_to_host(void *dst, const void *src, size_t bytes) {
    CUDA_REQUIRE((dst && src) || bytes == 0, "cuda: to_host: NULL pointer");
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "to_host");
    return 0;
}

static int cu_copy(void *dst, const void *src, size_t bytes) {
    CUDA_REQUIRE((dst && src) || bytes == 0, "cuda: copy: NULL pointer");
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy");
    return 0;
}

static int cu_sync(void) {
    CUDA_CHECK(cudaDeviceSynchronize(), "sync");
    int bad = 0;
    CUDA_CHECK(cudaMemcpy(&bad, bad_input, sizeof bad, cudaMemcpyDeviceToHost), "sync: read input flag");
    if (bad) {
        int zero = 0;
        CUDA_CHECK(cudaMemcpy(bad_input, &zero, sizeof zero, cudaMemcpyHostToDevice), "sync: clear input flag");
        static const char *why[] = {"?", "embedding id outside the table",
                                    "rope position outside [0, max_pos)",
                                    "loss target or top-k id outside the vocabulary",
                                    "gather/scatter row index outside the matrix"};
        return sushi_error(SUSHI_EINVAL, "cuda: a kernel skipped elements: %s",
                           why[bad > 0 && bad < 5 ? bad : 0]);
    }
    return 0;
}

/* ---- elementwise ---- */

template <typename T>
__global__ void fill_kernel(T *x, float v, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        st(x + i, v);
}

template <typename T>
__global__ void f32_to_act_kernel(T *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        st(dst + i, src[i]);
}

template <typename T>
__global__ void act_to_f32_kernel(float *dst, const T *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = ld(src + i);
}

/* out = a·x + b·y (y may be NULL) */
template <typename T>
__global__ void axpby_kernel(T *out, float a, const T *x, float b, const T *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        st(out + i, a * ld(x + i) + (y ? b * ld(y + i) : 0.0f));
}

static int cu_fill(void *x, float value, size_t n) {
    if (n == 0) return 0;
    CUDA_REQUIRE(x, "cuda: fill: NULL pointer");
    CUDA_ACT(T, fill_kernel<T><<<cuda_blocks(n, 256), 256>>>((T *)x, value, n));
    CUDA_LAUNCHED("fill");
    return 0;
}

static int is_host_pointer(const void *p) {
    cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, p) != cudaSuccess) {
        (void)cudaGetLastError();
        return 1;
    }
    return at.type == cudaMemoryTypeUnregistered || at.type == cudaMemoryTypeHost;
}

static int cu_f32_to_act(void *dst, const float *src, size_t n) {
    if (n == 0) return 0;
    CUDA_REQUIRE(dst && src, "cuda: f32_to_act: NULL pointer");
    const float *dsrc = src;
    if (is_host_pointer(src)) {
        void *tmp;
        int rc = cuda_workspace(&tmp, n * sizeof(float), 3);
        if (rc) return rc;
        CUDA_CHECK(cudaMemcpy(tmp, src, n * sizeof(float), cudaMemcpyHostToDevice), "f32_to_act upload");
        dsrc = (const float *)tmp;
    }
    CUDA_ACT(T, f32_to_act_kernel<T><<<cuda_blocks(n, 256), 256>>>((T *)dst, dsrc, n));
    CUDA_LAUNCHED("f32_to_act");
    return 0;
}

static int cu_act_to_f32(float *dst, const void *src, size_t n) {
    if (n == 0) return 0;
    CUDA_REQUIRE(dst && src, "cuda: act_to_f32: NULL pointer");
    if (!is_host_pointer(dst)) {
        CUDA_ACT(T, act_to_f32_kernel<T><<<cuda_blocks(n, 256), 256>>>(dst, (const T *)src, n));
        CUDA_LAUNCHED("act_to_f32");
        return 0;
    }
    void *tmp;
    int rc = cuda_workspace(&tmp, n * sizeof(float), 3);
    if (rc) return rc;
    CUDA_ACT(T, act_to_f32_kernel<T><<<cuda_blocks(n, 256), 256>>>((float *)tmp, (const T *)src, n));
    CUDA_LAUNCHED("act_to_f32");
    CUDA_CHECK(cudaMemcpy(dst, tmp, n * sizeof(float), cudaMemcpyDeviceToHost), "act_to_f32 download");
    return 0;
}

static int cu_add(void *out, const void *a, const void *b, size_t n) {
    if (n == 0) return 0;
    CUDA_REQUIRE(out && a && b, "cuda: add: NULL pointer");
    CUDA_ACT(T, axpby_kernel<T><<<cuda_blocks(n, 256), 256>>>((T *)out, 1.0f, (const T *)a, 1.0f,
                                                              (const T *)b, n));
    CUDA_LAUNCHED("add");
    return 0;
}

static int cu_axpy(void *y, float alpha, const void *x, size_t n) {
    if (n == 0) return 0;
    CUDA_REQUIRE(y && x, "cuda: axpy: NULL pointer");
    CUDA_ACT(T, axpby_kernel<T><<<cuda_blocks(n, 256), 256>>>((T *)y, alpha, (const T *)x, 1.0f,
                                                              (const T *)y, n));
    CUDA_LAUNCHED("axpy");
    return 0;
}

static int cu_scale(void *x, float alpha, size_t n) {
    if (n == 0) return 0;
    CUDA_REQUIRE(x, "cuda: scale: NULL pointer");
    CUDA_ACT(T, axpby_kernel<T><<<cuda_blocks(n, 256), 256>>>((T *)x, alpha, (const T *)x, 0.0f,
                                                              (const T *)NULL, n));
    CUDA_LAUNCHED("scale");
    return 0;
}

/* ---- the activation dtype ---- */

/* bf16 where the GPU has bf16 arithmetic (compute capability ≥ 8.0), else f16;
 * SUSHI_CUDA_DTYPE=bf16|f16 overrides. 0, or −1 with `reason` filled. */
static int choose_act_dtype(char *reason, size_t size) {
    int dev = 0;
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDevice(&dev);
    if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, dev);
    if (err != cudaSuccess) {
        snprintf(reason, size, "CUDA backend: cannot read the device properties: %s", cudaGetErrorString(err));
        (void)cudaGetLastError();
        return -1;
    }
    /* a GPU this build has no device code for (NVCCFLAGS -gencode) fails here, not at the
     * first kernel */
    cudaFuncAttributes fa;
    if ((err = cudaFuncGetAttributes(&fa, fill_kernel<f16>)) != cudaSuccess) {
        snprintf(reason, size, "CUDA backend: %.64s (compute capability %d.%d): %s; rebuild with its "
                 "-gencode in NVCCFLAGS", prop.name, prop.major, prop.minor, cudaGetErrorString(err));
        (void)cudaGetLastError();
        return -1;
    }
    int has_bf16 = prop.major >= 8;
    enum dtype dt = has_bf16 ? DT_BF16 : DT_F16;
    const char *env = getenv("SUSHI_CUDA_DTYPE");
    if (env && *env) {
        if (!strcmp(env, "bf16")) {
            if (!has_bf16) {
                snprintf(reason, size, "CUDA backend: SUSHI_CUDA_DTYPE=bf16 but %.64s (compute capability %d.%d) "
                         "has no bf16 arithmetic (needs 8.0); use f16 or unset it", prop.name, prop.major,
                         prop.minor);
                return -1;
            }
            dt = DT_BF16;
        } else if (!strcmp(env, "f16")) {
            dt = DT_F16;
        } else {
            snprintf(reason, size, "CUDA backend: SUSHI_CUDA_DTYPE='%.40s' is neither bf16 nor f16", env);
            return -1;
        }
    }
    act_dtype = dt;
    log_info("cuda: %s, compute capability %d.%d, activations in %s%s%s", prop.name, prop.major, prop.minor,
             dt == DT_BF16 ? "bf16" : "f16", env && *env ? " (SUSHI_CUDA_DTYPE)" : "",
             dt == DT_F16 ? ": training needs dynamic loss scaling" : "");
    return 0;
}

/* ---- the table ---- */

static struct ops cuda_table;

extern "C" const struct ops *ops_cuda(void) {
    static int state = 0; /* 0 unknown, 1 usable, -1 not usable */
    static char reason[256];
    if (state == 0) {
        int count = 0;
        cudaError_t err = cudaGetDeviceCount(&count);
        if (err != cudaSuccess || count == 0) {
            snprintf(reason, sizeof reason, "CUDA backend: no usable GPU (%s)",
                     err != cudaSuccess ? cudaGetErrorString(err) : "no CUDA device found");
            (void)cudaGetLastError();
            state = -1;
        } else if (cudaFree(0) != cudaSuccess) {
            snprintf(reason, sizeof reason, "CUDA backend: cannot create a context: %s",
                     cudaGetErrorString(cudaGetLastError()));
            state = -1;
        } else if (choose_act_dtype(reason, sizeof reason) < 0) {
            state = -1;
        } else if (!(bad_input = (int *)cu_alloc(sizeof(int)))) {
            snprintf(reason, sizeof reason, "CUDA backend: %s", sushi_last_error());
            state = -1;
        } else {
            struct ops *t = &cuda_table;
            t->name = "cuda";
            t->act_dtype = act_dtype;
            t->alloc = cu_alloc;
            t->free = cu_free;
            t->to_device = cu_to_device;
            t->to_host = cu_to_host;
            t->copy = cu_copy;
            t->fill = cu_fill;
            t->f32_to_act = cu_f32_to_act;
            t->act_to_f32 = cu_act_to_f32;
            t->sync = cu_sync;
            t->mem_stats = cu_mem_stats;
            t->matmul = cuda_matmul;
            t->add = cu_add;
            t->axpy = cu_axpy;
            t->scale = cu_scale;
            t->embedding_forward = cuda_embedding_forward;
            t->embedding_backward = cuda_embedding_backward;
            t->rmsnorm_forward = cuda_rmsnorm_forward;
            t->rmsnorm_backward = cuda_rmsnorm_backward;
            t->rope_forward = cuda_rope_forward;
            t->rope_backward = cuda_rope_backward;
            t->attention_forward = cuda_attention_forward;
            t->attention_backward = cuda_attention_backward;
            t->swiglu_forward = cuda_swiglu_forward;
            t->swiglu_backward = cuda_swiglu_backward;
            t->loss_forward_backward = cuda_loss_forward_backward;
            t->adamw = cuda_adamw;
            t->sumsq = cuda_sumsq;
            t->gather_rows = cuda_gather_rows;
            t->scatter_add_rows = cuda_scatter_add_rows;
            t->rows_dot = cuda_rows_dot;
            t->softmax_causal = cuda_softmax_causal;
            t->topk = cuda_topk;
            t->gather_sum_rows = cuda_gather_sum_rows;
            t->matmul_grouped = cuda_matmul_grouped;
            state = 1;
        }
    }
    if (state < 0) {
        sushi_error(SUSHI_EUNSUPPORTED, "%s", reason);
        return NULL;
    }
    return &cuda_table;
}
