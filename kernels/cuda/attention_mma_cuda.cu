/* Tensor-core attention forward (bf16 or f16 WMMA 16×16×16, f32 accumulate) for head dims
 * that are multiples of 16: a block of 4 warps owns 64 queries, each warp 16; per
 * 64-key tile a warp computes S = Q·Kᵀ on the tensor cores, applies the mask and the
 * online softmax in f32 (two lanes per row), then O = O·corr + P·V on the tensor cores
 * with O kept in shared memory. The backward has the same shape: a dq kernel
 * (query-parallel) and a dk/dv kernel (key-parallel, looping over the heads of its
 * group), each warp owning 16 rows and computing S, dP = dO·Vᵀ, dS and the gradient
 * products on the tensor cores. Same contracts as the plain kernels in attention_cuda.cu. */
#include <mma.h>
#include <math.h>

#include "kernels/cuda/attention_common.h"

using namespace nvcuda;

#define MMA_WARPS 4
#define MMA_BQ 64
#define MMA_BK 64
#define MMA_SLD (MMA_BK + 4)   /* f32 score row stride (pad) */

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_acc;
template <typename T>
using frag_a = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major>;

/* bf16 WMMA needs sm_80 (f16: sm_70); compiled for an older target the bf16 products are
 * empty, never launched there (bf16 is refused below 8.0) */
template <typename T>
struct wmma_ok {
    static constexpr bool value = true;
};
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
template <>
struct wmma_ok<bf16> {
    static constexpr bool value = false;
};
#endif

/* C[16, 64] = A[16, kd] · B[64, kd]ᵀ (all row-major in shared memory); each A
 * fragment is loaded once */
template <typename T>
__device__ void warp_mma_abt(float *C, int ldc, const T *A, int lda, const T *B, int ldb, int kd) {
    if constexpr (wmma_ok<T>::value) {
        frag_acc acc[4];
#pragma unroll
        for (int nb = 0; nb < 4; nb++) wmma::fill_fragment(acc[nb], 0.0f);
        for (int kb = 0; kb < kd; kb += 16) {
            frag_a<T> fa;
            wmma::load_matrix_sync(fa, A + kb, lda);
#pragma unroll
            for (int nb = 0; nb < 4; nb++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
                wmma::load_matrix_sync(fb, B + nb * 16 * ldb + kb, ldb);
                wmma::mma_sync(acc[nb], fa, fb, acc[nb]);
            }
        }
#pragma unroll
        for (int nb = 0; nb < 4; nb++) wmma::store_matrix_sync(C + nb * 16, acc[nb], ldc, wmma::mem_row_major);
    }
}

/* C[16, n] += A[16, 64] · B[64, n]; the four A fragments are loaded once */
template <typename T>
__device__ void warp_mma_acc(float *C, int ldc, const T *A, int lda, const T *B, int ldb, int n) {
    if constexpr (wmma_ok<T>::value) {
        frag_a<T> fa[4];
#pragma unroll
        for (int kb = 0; kb < 4; kb++) wmma::load_matrix_sync(fa[kb], A + kb * 16, lda);
        for (int nb = 0; nb < n; nb += 16) {
            frag_acc acc;
            wmma::load_matrix_sync(acc, C + nb, ldc, wmma::mem_row_major);
#pragma unroll
            for (int kb = 0; kb < 4; kb++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
                wmma::load_matrix_sync(fb, B + kb * 16 * ldb + nb, ldb);
                wmma::mma_sync(acc, fa[kb], fb, acc);
            }
            wmma::store_matrix_sync(C + nb, acc, ldc, wmma::mem_row_major);
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(MMA_WARPS * 32)
attention_forward_mma_kernel(T *out, float *lse, const T *q, const T *k, const T *v,
                             struct attn_shape s) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const int dq = s.dqk, dv = s.dv, ldq = dq + 8, ldv = dv + 8;
    T *Qs = (T *)smem_raw;                           /* [BQ][ldq] */
    T *Ks = Qs + MMA_BQ * ldq;                       /* [BK][ldq] */
    T *Vs = Ks + MMA_BK * ldq;                       /* [BK][ldv] */
    T *Ps = Vs + MMA_BK * ldv;                       /* [BQ][BK+8] */
    float *Ss = (float *)(Ps + MMA_BQ * (MMA_BK + 8)); /* [BQ][SLD] */
    float *Os = Ss + MMA_BQ * MMA_SLD;               /* [BQ][dv+4] */
    const int ldo = dv + 4, ldp = MMA_BK + 8;
    const int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h * s.G / s.H;
    const int q0 = blockIdx.x * MMA_BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int tid = threadIdx.x, nt = blockDim.x;

    attn_load_rows(Qs, ldq, q, b, q0, s.T, s.q_stride, h, dq);
    for (int e = tid; e < MMA_BQ * ldo; e += nt) Os[e] = 0.0f;
    /* lane owns row (warp·16 + lane/2), half (lane%2) of the tile's columns */
    const int row = warp * 16 + lane / 2, half = lane % 2, i = q0 + row;
    float m = -INFINITY, l = 0.0f;
    const int q_last = min(q0 + MMA_BQ, s.T) - 1;
    int k_first = s.window > 0 ? max(0, q0 - s.window + 1) : 0;
    k_first = (k_first / MMA_BK) * MMA_BK;
    for (int k0 = k_first; k0 <= q_last; k0 += MMA_BK) {
        __syncthreads();
        attn_load_rows(Ks, ldq, k, b, k0, s.T, s.k_stride, g, dq);
        attn_load_rows(Vs, ldv, v, b, k0, s.T, s.v_stride, g, dv);
        __syncthreads();
        /* S[16, 64] = Q_w · Kᵀ */
        warp_mma_abt(Ss + warp * 16 * MMA_SLD, MMA_SLD, Qs + warp * 16 * ldq, ldq, Ks, ldq, dq);
        const bool full = !s.doc_ids && k0 + MMA_BK - 1 <= q0 && (s.window <= 0 || q_last - s.window < k0);
        __syncwarp();
        /* online softmax on this lane's 32 scores */
        float *srow = Ss + row * MMA_SLD + half * 32;
        float mx = -INFINITY;
        /* columns visited in a rotated order so the 32 lanes hit 32 different banks */
        const int rot = (row + 16 * half) & 31;
        for (int c0 = 0; c0 < 32; c0++) {
            int c = (c0 + rot) & 31;
            float x = full || (i < s.T && attn_visible(s, b, i, k0 + half * 32 + c)) ? srow[c] * s.scale : -INFINITY;
            srow[c] = x;
            mx = fmaxf(mx, x);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float mn = fmaxf(m, mx);
        float corr = mn == -INFINITY ? 1.0f : __expf(m - mn), sum = 0.0f;
        T *prow = Ps + row * ldp + half * 32;
        for (int c0 = 0; c0 < 32; c0++) {
            int c = (c0 + rot) & 31;
            float p = mn == -INFINITY ? 0.0f : __expf(srow[c] - mn);
            T pb = act_from<T>(p);
            prow[c] = pb;
            sum += ld(&pb);  /* normalise by what the tensor cores multiply */
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * corr + sum;
        m = mn;
        float *orow = Os + row * ldo;
        if (!__all_sync(0xffffffffu, corr == 1.0f))  /* the running max rarely moves late on */
            for (int d = half; d < dv; d += 2) orow[d] *= corr;
        __syncwarp();
        /* O_w[16, dv] += P_w · V */
        warp_mma_acc(Os + warp * 16 * ldo, ldo, Ps + warp * 16 * ldp, ldp, Vs, ldv, dv);
        __syncwarp();
    }
    if (i < s.T) {
        float inv = 1.0f / l;
        T *o = out + ((size_t)b * s.T + i) * s.o_stride + (size_t)h * dv;
        const float *orow = Os + row * ldo;
        for (int d = half; d < dv; d += 2) st(o + d, orow[d] * inv);
        if (half == 0) lse[((size_t)b * s.H + h) * s.T + i] = m + logf(l);
    }
}

/* 1 when the shape does not suit the tensor-core path (caller falls back), else 0 or
 * an error */
int cuda_attention_forward_mma(void *out, float *lse, const void *q, const void *k, const void *v,
                               const struct attn_shape *s) {
    if (s->dqk % 16 || s->dv % 16 || s->dqk > 256 || s->dv > 256) return 1;
    int ldq = s->dqk + 8, ldv = s->dv + 8;
    size_t smem = sizeof(uint16_t) * ((size_t)(MMA_BQ + MMA_BK) * ldq + MMA_BK * ldv + MMA_BQ * (MMA_BK + 8)) +
                  sizeof(float) * ((size_t)MMA_BQ * MMA_SLD + MMA_BQ * (s->dv + 4));
    if (smem > 220 * 1024) return 1;
    dim3 grid((s->T + MMA_BQ - 1) / MMA_BQ, s->B * s->H);
    CUDA_ACT(T, CUDA_CHECK(cudaFuncSetAttribute(attention_forward_mma_kernel<T>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                           "attention_forward mma smem");
             attention_forward_mma_kernel<T><<<grid, MMA_WARPS * 32, smem>>>((T *)out, lse, (const T *)q,
                                                                            (const T *)k, (const T *)v, *s));
    CUDA_LAUNCHED("attention_forward (tensor cores)");
    return 0;
}

/* dq_i = scale · Σ_j p_ij (dp_ij − delta_i) k_j; warp owns 16 queries */
template <typename T>
__global__ void __launch_bounds__(MMA_WARPS * 32)
attention_dq_mma_kernel(T *dqo, const T *dout, const float *lse, const float *delta,
                        const T *q, const T *k, const T *v, struct attn_shape s) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const int dq = s.dqk, dv = s.dv, ldq = dq + 8, ldv = dv + 8, ldp = MMA_BK + 8, lda = dq + 4;
    T *Qs = (T *)smem_raw, *Os = Qs + 64 * ldq, *Ks = Os + 64 * ldv, *Vs = Ks + 64 * ldq;
    T *dSs = Vs + 64 * ldv;                                /* [64][ldp] */
    float *Ss = (float *)(dSs + 64 * ldp), *dPs = Ss + 64 * MMA_SLD, *Acc = dPs + 64 * MMA_SLD;
    const int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h * s.G / s.H;
    const int q0 = blockIdx.x * 64, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    attn_load_rows(Qs, ldq, q, b, q0, s.T, s.q_stride, h, dq);
    attn_load_rows(Os, ldv, dout, b, q0, s.T, s.o_stride, h, dv);
    for (int e = threadIdx.x; e < 64 * lda; e += blockDim.x) Acc[e] = 0.0f;
    const int row = warp * 16 + lane / 2, half = lane % 2, i = q0 + row;
    float *Lq = Acc + 64 * lda, *Dq = Lq + 64;            /* [64] lse, delta of the rows */
    for (int r = threadIdx.x; r < 64; r += blockDim.x) {
        size_t lr = ((size_t)b * s.H + h) * s.T + (q0 + r < s.T ? q0 + r : 0);
        Lq[r] = lse[lr];
        Dq[r] = delta[lr];
    }
    const int q_last = min(q0 + 64, s.T) - 1;
    int k_first = s.window > 0 ? max(0, q0 - s.window + 1) : 0;
    for (int k0 = (k_first / 64) * 64; k0 <= q_last; k0 += 64) {
        __syncthreads();
        attn_load_rows(Ks, ldq, k, b, k0, s.T, s.k_stride, g, dq);
        attn_load_rows(Vs, ldv, v, b, k0, s.T, s.v_stride, g, dv);
        __syncthreads();
        warp_mma_abt(Ss + warp * 16 * MMA_SLD, MMA_SLD, Qs + warp * 16 * ldq, ldq, Ks, ldq, dq);
        warp_mma_abt(dPs + warp * 16 * MMA_SLD, MMA_SLD, Os + warp * 16 * ldv, ldv, Vs, ldv, dv);
        const bool full = !s.doc_ids && k0 + 63 <= q0 && (s.window <= 0 || q_last - s.window < k0);
        __syncwarp();
        for (int e = lane; e < 16 * 64; e += 32) {
            int r = warp * 16 + e / 64, c = e % 64, ii = q0 + r;
            float ds = 0.0f;
            if (full || (ii < s.T && attn_visible(s, b, ii, k0 + c))) {
                float p = __expf(Ss[r * MMA_SLD + c] * s.scale - Lq[r]);
                ds = p * (dPs[r * MMA_SLD + c] - Dq[r]) * s.scale;
            }
            dSs[r * ldp + c] = act_from<T>(ds);
        }
        __syncwarp();
        warp_mma_acc(Acc + warp * 16 * lda, lda, dSs + warp * 16 * ldp, ldp, Ks, ldq, dq);
        __syncwarp();
    }
    if (i < s.T) {
        T *o = dqo + ((size_t)b * s.T + i) * s.q_stride + (size_t)h * dq;
        for (int d = half; d < dq; d += 2) st(o + d, Acc[row * lda + d]);
    }
}

/* dv_j = Σ p_ij dout_i, dk_j = scale · Σ p_ij (dp_ij − delta_i) q_i over the heads of
 * kv head g; warp owns 16 keys, the tiles hold Sᵀ (keys × queries) */
template <typename T>
__global__ void __launch_bounds__(MMA_WARPS * 32)
attention_dkv_mma_kernel(T *dko, T *dvo, const T *dout, const float *lse, const float *delta,
                         const T *q, const T *k, const T *v, struct attn_shape s) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const int dq = s.dqk, dv = s.dv, ldq = dq + 8, ldv = dv + 8, ldp = MMA_BK + 8;
    const int ldk = dq + 4, ldvv = dv + 4;
    T *Kr = (T *)smem_raw, *Vr = Kr + 64 * ldq, *Qs = Vr + 64 * ldv, *Os = Qs + 64 * ldq;
    T *Ps = Os + 64 * ldv, *dSs = Ps + 64 * ldp;
    float *Ss = (float *)(dSs + 64 * ldp), *dPs = Ss + 64 * MMA_SLD;
    float *dK = dPs + 64 * MMA_SLD, *dV = dK + 64 * ldk, *Ls = dV + 64 * ldvv, *Ds = Ls + 64;
    const int bg = blockIdx.y, b = bg / s.G, g = bg % s.G;
    const int j0 = blockIdx.x * 64, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    attn_load_rows(Kr, ldq, k, b, j0, s.T, s.k_stride, g, dq);
    attn_load_rows(Vr, ldv, v, b, j0, s.T, s.v_stride, g, dv);
    for (int e = threadIdx.x; e < 64 * ldk; e += blockDim.x) dK[e] = 0.0f;
    for (int e = threadIdx.x; e < 64 * ldvv; e += blockDim.x) dV[e] = 0.0f;
    const int row = warp * 16 + lane / 2, half = lane % 2, j = j0 + row;
    const int h_first = (g * s.H + s.G - 1) / s.G, h_end = ((g + 1) * s.H + s.G - 1) / s.G;
    const int j_last = min(j0 + 64, s.T) - 1;
    const int i_end = s.window > 0 ? min(s.T, j_last + s.window) : s.T;
    for (int h = h_first; h < h_end; h++) {
        for (int i0 = (j0 / 64) * 64; i0 < i_end; i0 += 64) {
            __syncthreads();
            attn_load_rows(Qs, ldq, q, b, i0, s.T, s.q_stride, h, dq);
            attn_load_rows(Os, ldv, dout, b, i0, s.T, s.o_stride, h, dv);
            for (int r = threadIdx.x; r < 64; r += blockDim.x) {
                size_t li = ((size_t)b * s.H + h) * s.T + (i0 + r < s.T ? i0 + r : 0);
                Ls[r] = lse[li];
                Ds[r] = delta[li];
            }
            __syncthreads();
            warp_mma_abt(Ss + warp * 16 * MMA_SLD, MMA_SLD, Kr + warp * 16 * ldq, ldq, Qs, ldq, dq);
            warp_mma_abt(dPs + warp * 16 * MMA_SLD, MMA_SLD, Vr + warp * 16 * ldv, ldv, Os, ldv, dv);
            const bool full = !s.doc_ids && i0 >= j0 + 63 && i0 + 63 < s.T &&
                              (s.window <= 0 || i0 + 63 - s.window < j0);
            __syncwarp();
            for (int e = lane; e < 16 * 64; e += 32) {
                int r = warp * 16 + e / 64, c = e % 64, i = i0 + c, jj = j0 + r;
                float p = 0.0f, ds = 0.0f;
                if (full || (jj < s.T && i < s.T && attn_visible(s, b, i, jj))) {
                    p = __expf(Ss[r * MMA_SLD + c] * s.scale - Ls[c]);
                    ds = p * (dPs[r * MMA_SLD + c] - Ds[c]) * s.scale;
                }
                Ps[r * ldp + c] = act_from<T>(p);
                dSs[r * ldp + c] = act_from<T>(ds);
            }
            __syncwarp();
            warp_mma_acc(dV + warp * 16 * ldvv, ldvv, Ps + warp * 16 * ldp, ldp, Os, ldv, dv);
            warp_mma_acc(dK + warp * 16 * ldk, ldk, dSs + warp * 16 * ldp, ldp, Qs, ldq, dq);
            __syncwarp();
        }
    }
    if (j < s.T) {
        T *ko = dko + ((size_t)b * s.T + j) * s.k_stride + (size_t)g * dq;
        T *vo = dvo + ((size_t)b * s.T + j) * s.v_stride + (size_t)g * dv;
        for (int d = half; d < dq; d += 2) st(ko + d, dK[row * ldk + d]);
        for (int d = half; d < dv; d += 2) st(vo + d, dV[row * ldvv + d]);
    }
}

int cuda_attention_backward_mma(void *dq, void *dk, void *dv, const void *dout, const float *delta,
                                const float *lse, const void *q, const void *k, const void *v,
                                const struct attn_shape *s) {
    if (s->dqk % 16 || s->dv % 16) return 1;
    size_t ldq = s->dqk + 8, ldv = s->dv + 8, ldp = MMA_BK + 8;
    size_t smem_q = sizeof(uint16_t) * (64 * (2 * ldq + 2 * ldv) + 64 * ldp) +
                    sizeof(float) * (2 * 64 * MMA_SLD + 64 * (s->dqk + 4) + 128);
    size_t smem_kv = sizeof(uint16_t) * (64 * (2 * ldq + 2 * ldv) + 2 * 64 * ldp) +
                     sizeof(float) * (2 * 64 * MMA_SLD + 64 * (s->dqk + 4) + 64 * (s->dv + 4) + 128);
    if (smem_q > 220 * 1024 || smem_kv > 220 * 1024) return 1;
    dim3 grid_q((s->T + 63) / 64, s->B * s->H), grid_kv((s->T + 63) / 64, s->B * s->G);
    CUDA_ACT(T, CUDA_CHECK(cudaFuncSetAttribute(attention_dq_mma_kernel<T>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_q),
                           "attention_backward mma dq smem");
             CUDA_CHECK(cudaFuncSetAttribute(attention_dkv_mma_kernel<T>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_kv),
                        "attention_backward mma dkv smem");
             attention_dq_mma_kernel<T><<<grid_q, MMA_WARPS * 32, smem_q>>>(
                 (T *)dq, (const T *)dout, lse, delta, (const T *)q, (const T *)k, (const T *)v, *s);
             CUDA_LAUNCHED("attention_backward dq (tensor cores)");
             attention_dkv_mma_kernel<T><<<grid_kv, MMA_WARPS * 32, smem_kv>>>(
                 (T *)dk, (T *)dv, (const T *)dout, lse, delta, (const T *)q, (const T *)k, (const T *)v, *s);
             CUDA_LAUNCHED("attention_backward dkv (tensor cores)"));
    return 0;
}
