/* CUDA emulation for the CPU: what the CUDA backend (kernels/cuda) needs from cuda_runtime.h, cuda_bf16.h,
 * cuda_fp16.h, mma.h, cublasLt.h and cublas_v2.h, so that the same kernel sources (rewritten
 * by tests/emu/transform.py: launches, `extern __shared__`, inline PTX) compile as C++17 and
 * run on the host. A launch runs its blocks one after another; the threads of a block are
 * cooperative user-space threads (emu_runtime.cpp) that switch at every barrier and warp
 * collective, so a block runs deterministically on one OS thread. `__shared__` variables
 * become `static` (one block at a time); device memory is host memory. bf16/f16 are 16-bit
 * patterns converted with round-to-nearest-even (or toward zero) in software; cuBLAS(Lt)
 * GEMMs are plain f32 loops (emu_blas.cpp). Not thread-safe: one host thread launches. */
#ifndef SUSHI_CUDA_EMU_H
#define SUSHI_CUDA_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <initializer_list>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

/* ---- vector and index types ---- */

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
struct uint2 { uint32_t x, y; };
struct uint4 { uint32_t x, y, z, w; };
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }

namespace sushi_emu {
extern dim3 thread_idx, block_idx, block_dim, grid_dim;

static inline uint32_t f32_bits(float v) { uint32_t u; memcpy(&u, &v, 4); return u; }
static inline float bits_f32(uint32_t u) { float v; memcpy(&v, &u, 4); return v; }
uint16_t f32_to_f16(float v, int toward_zero);
float f16_to_f32(uint16_t h);
static inline uint16_t f32_to_bf16(float v, int toward_zero) {
    uint32_t u = f32_bits(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   /* quiet NaN */
    if (!toward_zero) u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }
} // namespace sushi_emu

#define threadIdx (sushi_emu::thread_idx)
#define blockIdx (sushi_emu::block_idx)
#define blockDim (sushi_emu::block_dim)
#define gridDim (sushi_emu::grid_dim)

/* ---- bf16 and f16: 16-bit patterns, f32 arithmetic through the conversions ---- */

struct __nv_bfloat16 {
    uint16_t x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float v) : x(sushi_emu::f32_to_bf16(v, 0)) {}
    operator float() const { return sushi_emu::bf16_to_f32(x); }
};
struct __half {
    uint16_t x;
    __half() = default;
    __half(float v) : x(sushi_emu::f32_to_f16(v, 0)) {}
    operator float() const { return sushi_emu::f16_to_f32(x); }
};
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
struct __half2 { __half x, y; };
typedef __nv_bfloat16 nv_bfloat16;
typedef __half half;

static inline __nv_bfloat16 bf16_raw(uint16_t b) { __nv_bfloat16 r; r.x = b; return r; }
static inline __half f16_raw(uint16_t b) { __half r; r.x = b; return r; }
static inline __nv_bfloat16 __float2bfloat16_rn(float v) { return bf16_raw(sushi_emu::f32_to_bf16(v, 0)); }
static inline __nv_bfloat16 __float2bfloat16_rz(float v) { return bf16_raw(sushi_emu::f32_to_bf16(v, 1)); }
static inline __nv_bfloat16 __float2bfloat16(float v) { return __float2bfloat16_rn(v); }
static inline float __bfloat162float(__nv_bfloat16 b) { return sushi_emu::bf16_to_f32(b.x); }
static inline __half __float2half_rn(float v) { return f16_raw(sushi_emu::f32_to_f16(v, 0)); }
static inline __half __float2half_rz(float v) { return f16_raw(sushi_emu::f32_to_f16(v, 1)); }
static inline __half __float2half(float v) { return __float2half_rn(v); }
static inline float __half2float(__half h) { return sushi_emu::f16_to_f32(h.x); }
static inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return {__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
static inline __half2 __floats2half2_rn(float lo, float hi) { return {__float2half_rn(lo), __float2half_rn(hi)}; }
static inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
static inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }
static inline float __low2float(__half2 v) { return __half2float(v.x); }
static inline float __high2float(__half2 v) { return __half2float(v.y); }

/* ---- math and bit intrinsics ---- */

/* glibc's math.h declares __expf and __logf without exporting them */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
template <typename A, typename B> static inline std::common_type_t<A, B> min(A a, B b) {
    return (std::common_type_t<A, B>)b < (std::common_type_t<A, B>)a ? b : a;
}
template <typename A, typename B> static inline std::common_type_t<A, B> max(A a, B b) {
    return (std::common_type_t<A, B>)a < (std::common_type_t<A, B>)b ? b : a;
}
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline uint32_t __float_as_uint(float v) { return sushi_emu::f32_bits(v); }
static inline float __uint_as_float(uint32_t u) { return sushi_emu::bits_f32(u); }
static inline int __float_as_int(float v) { return (int)sushi_emu::f32_bits(v); }
static inline float __int_as_float(int u) { return sushi_emu::bits_f32((uint32_t)u); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}

/* ---- atomics: one OS thread runs the block and never switches inside them ---- */

template <typename V> static inline V atomicAdd(V *p, V v) { V old = *p; *p = old + v; return old; }
static inline float2 atomicAdd(float2 *p, float2 v) {
    float2 old = *p;
    p->x += v.x, p->y += v.y;
    return old;
}
static inline __nv_bfloat16 atomicAdd(__nv_bfloat16 *p, __nv_bfloat16 v) {
    __nv_bfloat16 old = *p;
    *p = __float2bfloat16_rn(__bfloat162float(old) + __bfloat162float(v));
    return old;
}
static inline __half atomicAdd(__half *p, __half v) {
    __half old = *p;
    *p = __float2half_rn(__half2float(old) + __half2float(v));
    return old;
}
template <typename V> static inline V atomicSub(V *p, V v) { V old = *p; *p = old - v; return old; }
template <typename V> static inline V atomicOr(V *p, V v) { V old = *p; *p = old | v; return old; }
template <typename V> static inline V atomicAnd(V *p, V v) { V old = *p; *p = old & v; return old; }
template <typename V> static inline V atomicMax(V *p, V v) { V old = *p; if (v > old) *p = v; return old; }
template <typename V> static inline V atomicMin(V *p, V v) { V old = *p; if (v < old) *p = v; return old; }
template <typename V> static inline V atomicExch(V *p, V v) { V old = *p; *p = v; return old; }
template <typename V> static inline V atomicCAS(V *p, V cmp, V v) { V old = *p; if (old == cmp) *p = v; return old; }

/* ---- barriers and warp collectives (emu_runtime.cpp) ---- */

namespace sushi_emu {
void syncthreads(void);
int syncthreads_or(int pred);
int syncthreads_count(int pred);
/* deposits `bytes` (≤ 32) of this lane, waits for the lanes of mask (exited lanes count as
 * arrived) and returns the warp's 32 slots of 32 bytes, valid until this lane's next call */
const unsigned char *warp_exchange(unsigned mask, const void *mine, size_t bytes);
int lane_id(void);
unsigned live_lanes(void);
void *shared_ptr(uint32_t addr);
void *dynamic_shared(void);   /* the block's `extern __shared__` buffer */

template <typename V> static inline V lane_value(const unsigned char *slots, int lane) {
    V r;
    memcpy(&r, slots + 32 * lane, sizeof r);
    return r;
}
template <typename V> static inline V shfl(unsigned mask, V v, int src) {
    static_assert(sizeof(V) <= 32, "shuffle of a value over 32 bytes");
    const unsigned char *s = warp_exchange(mask, &v, sizeof v);
    return lane_value<V>(s, src & 31);
}
} // namespace sushi_emu

static inline void __syncthreads(void) { sushi_emu::syncthreads(); }
static inline int __syncthreads_or(int p) { return sushi_emu::syncthreads_or(p); }
static inline int __syncthreads_and(int p) {
    return sushi_emu::syncthreads_count(p) == (int)(blockDim.x * blockDim.y * blockDim.z);
}
static inline int __syncthreads_count(int p) { return sushi_emu::syncthreads_count(p); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)sushi_emu::warp_exchange(mask, NULL, 0); }
static inline unsigned __activemask(void) { return sushi_emu::live_lanes(); }
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}

template <typename V> static inline V __shfl_sync(unsigned mask, V v, int src, int width = 32) {
    int lane = sushi_emu::lane_id();
    return sushi_emu::shfl(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <typename V> static inline V __shfl_xor_sync(unsigned mask, V v, int m, int width = 32) {
    int lane = sushi_emu::lane_id(), src = lane ^ m;
    return sushi_emu::shfl(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}
template <typename V> static inline V __shfl_down_sync(unsigned mask, V v, unsigned d, int width = 32) {
    int lane = sushi_emu::lane_id();
    return sushi_emu::shfl(mask, v, (lane & (width - 1)) + (int)d < width ? lane + (int)d : lane);
}
template <typename V> static inline V __shfl_up_sync(unsigned mask, V v, unsigned d, int width = 32) {
    int lane = sushi_emu::lane_id();
    return sushi_emu::shfl(mask, v, (lane & (width - 1)) >= (int)d ? lane - (int)d : lane);
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    int p = pred != 0;
    const unsigned char *s = sushi_emu::warp_exchange(mask, &p, sizeof p);
    unsigned r = 0;
    for (int l = 0; l < 32; l++)
        if ((mask >> l & 1u) && sushi_emu::lane_value<int>(s, l)) r |= 1u << l;
    return r;
}
static inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == (mask & sushi_emu::live_lanes()); }
static inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
template <typename V> static inline unsigned __match_any_sync(unsigned mask, V v) {
    const unsigned char *s = sushi_emu::warp_exchange(mask, &v, sizeof v);
    unsigned r = 0;
    for (int l = 0; l < 32; l++)
        if ((mask >> l & 1u) && !memcmp(s + 32 * l, &v, sizeof v)) r |= 1u << l;
    return r;
}

/* shared addresses: 32-bit offsets from the emulator's shared window (static storage) */
size_t __cvta_generic_to_shared(const void *p);

/* ---- inline PTX: transform.py turns `asm volatile("text" : outs : ins)` into
 * sushi_emu::ptx("text", {out(x), in(y), ...}); operands are numbered as in PTX (%0 ...) ---- */

namespace sushi_emu {
struct ptx_operand {
    void *out;      /* outputs ("=r", "+f"): where the value lives */
    uint64_t in;    /* inputs: the value's bits (pointers as addresses) */
};
template <typename V> static inline ptx_operand out(V &v) { return {(void *)&v, 0}; }
template <typename V> static inline ptx_operand in(const V &v) {
    ptx_operand o = {NULL, 0};
    if constexpr (std::is_pointer<V>::value) o.in = (uint64_t)(uintptr_t)v;
    else if constexpr (std::is_floating_point<V>::value) o.in = f32_bits((float)v);
    else o.in = (uint64_t)v;
    return o;
}
void ptx(const char *text, std::initializer_list<ptx_operand> ops);
} // namespace sushi_emu

/* ---- WMMA: each lane holds the whole 16×16 tile; stores are split over the lanes ---- */

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
    static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
    static constexpr int num_elements = rows * cols;
    float v[rows * cols];
};
template <typename U, int M, int N, int K, typename T, typename L>
static inline void fill_fragment(fragment<U, M, N, K, T, L> &f, float x) {
    for (int i = 0; i < f.num_elements; i++) f.v[i] = x;
}
template <typename U, int M, int N, int K, typename T, typename L, typename P>
static inline void load_matrix_sync(fragment<U, M, N, K, T, L> &f, const P *p, unsigned ldm) {
    constexpr bool col = std::is_same<L, col_major>::value;
    using F = fragment<U, M, N, K, T, L>;
    for (int r = 0; r < F::rows; r++)
        for (int c = 0; c < F::cols; c++) f.v[r * F::cols + c] = (float)p[col ? (size_t)c * ldm + r : (size_t)r * ldm + c];
}
template <int M, int N, int K>
static inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm, layout_t l) {
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) f.v[r * N + c] = p[l == mem_col_major ? (size_t)c * ldm + r : (size_t)r * ldm + c];
}
template <int M, int N, int K>
static inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t l) {
    for (int e = sushi_emu::lane_id(); e < M * N; e += 32) {
        int r = e / N, c = e % N;
        p[l == mem_col_major ? (size_t)c * ldm + r : (size_t)r * ldm + c] = f.v[e];
    }
}
template <int M, int N, int K, typename T, typename LA, typename LB>
static inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                            const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
    float t[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += a.v[i * K + k] * b.v[k * N + j];
            t[i * N + j] = s + c.v[i * N + j];
        }
    memcpy(d.v, t, sizeof t);
}
} // namespace wmma
} // namespace nvcuda

/* ---- runtime API (host memory stands for device memory) ---- */

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorLaunchFailure = 719,
} cudaError_t;
typedef void *cudaStream_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};
enum cudaMemoryType { cudaMemoryTypeUnregistered = 0, cudaMemoryTypeHost = 1, cudaMemoryTypeDevice = 2, cudaMemoryTypeManaged = 3 };
struct cudaPointerAttributes { enum cudaMemoryType type; int device; void *devicePointer, *hostPointer; };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlock = 8, cudaDevAttrMultiProcessorCount = 16,
                      cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
struct cudaFuncAttributes { size_t sharedSizeBytes, constSizeBytes, localSizeBytes; int maxThreadsPerBlock, numRegs,
                            ptxVersion, binaryVersion, maxDynamicSharedSizeBytes; };
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
    int major, minor, multiProcessorCount, maxThreadsPerBlock, warpSize;
};

const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMalloc(void **p, size_t bytes);
template <typename V> static inline cudaError_t cudaMalloc(V **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p);
cudaError_t cudaStreamSynchronize(cudaStream_t s);

namespace sushi_emu {
cudaError_t func_set_smem(const void *fn, int bytes);
typedef void (*block_fn)(void *ctx);
/* runs fn(ctx) as every thread of every block of the grid; name is for messages */
void launch(const char *name, const void *fn, dim3 grid, dim3 block, size_t smem, block_fn body, void *ctx);

struct launch_cfg {
    dim3 grid, block;
    size_t smem;
    template <typename... P, typename... A> void run(const char *name, void (*k)(P...), A &&...a) {
        struct call {
            void (*k)(P...);
            std::tuple<std::decay_t<P>...> args;
        } c{k, std::tuple<std::decay_t<P>...>(std::forward<A>(a)...)};
        launch(name, (const void *)k, grid, block, smem,
               [](void *p) { std::apply(((call *)p)->k, ((call *)p)->args); }, &c);
    }
};
static inline launch_cfg cfg(dim3 grid, dim3 block, size_t smem = 0, cudaStream_t = 0) { return {grid, block, smem}; }
} // namespace sushi_emu

template <typename F> static inline cudaError_t cudaFuncSetAttribute(F fn, cudaFuncAttribute a, int v) {
    return a == cudaFuncAttributeMaxDynamicSharedMemorySize ? sushi_emu::func_set_smem((const void *)fn, v)
                                                            : cudaErrorInvalidValue;
}
template <typename F> static inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, F fn) {
    if (!a || !fn) return cudaErrorInvalidValue;
    memset(a, 0, sizeof *a);
    a->maxThreadsPerBlock = 1024;
    a->ptxVersion = a->binaryVersion = 90;
    return cudaSuccess;
}

#include "tests/emu/cublas_emu.h"

#endif
