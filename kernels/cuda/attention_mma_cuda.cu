/* Tensor-core attention forward (bf16 WMMA 16×16×16, f32 accumulate) for head dims
 * that are multiples of 16: a block of 4 warps owns 64 queries, each warp 16; per
 * 64-key tile a warp computes S = Q·Kᵀ on the tensor cores, applies the mask and the
 * online softmax in f32 (two lanes per row), then O = O·corr + P·V on the tensor cores
 * with O kept in shared memory. Same contract as attention_forward_kernel. */
#include <mma.h>
#include <math.h>

#include "kernels/cuda/cuda_common.h"

using namespace nvcuda;

#define MMA_WARPS 4
#define MMA_BQ 64
#define MMA_BK 64
#define MMA_SLD (MMA_BK + 4)   /* f32 score row stride (pad) */

__device__ __forceinline__ bool mma_visible(const struct attn_shape &s, int b, int i, int j) {
    if (j > i || j >= s.T) return false;
    if (s.window > 0 && i - s.window >= j) return false;
    if (s.doc_ids && s.doc_ids[(size_t)b * s.T + i] != s.doc_ids[(size_t)b * s.T + j]) return false;
    return true;
}

__global__ void __launch_bounds__(MMA_WARPS * 32)
attention_forward_mma_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                             struct attn_shape s) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const int dq = s.dqk, dv = s.dv, ldq = dq + 8, ldv = dv + 8;
    bf16 *Qs = (bf16 *)smem_raw;                     /* [BQ][ldq] */
    bf16 *Ks = Qs + MMA_BQ * ldq;                    /* [BK][ldq] */
    bf16 *Vs = Ks + MMA_BK * ldq;                    /* [BK][ldv] */
    bf16 *Ps = Vs + MMA_BK * ldv;                    /* [BQ][BK+8] */
    float *Ss = (float *)(Ps + MMA_BQ * (MMA_BK + 8)); /* [BQ][SLD] */
    float *Os = Ss + MMA_BQ * MMA_SLD;               /* [BQ][dv+4] */
    const int ldo = dv + 4, ldp = MMA_BK + 8;
    const int bh = blockIdx.y, b = bh / s.H, h = bh % s.H, g = h * s.G / s.H;
    const int q0 = blockIdx.x * MMA_BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int tid = threadIdx.x, nt = blockDim.x;

    for (int e = tid; e < MMA_BQ * dq; e += nt) {
        int r = e / dq, d = e % dq, i = q0 + r;
        Qs[r * ldq + d] = i < s.T ? q[((size_t)b * s.T + i) * s.q_stride + (size_t)h * dq + d] : __float2bfloat16(0.0f);
    }
    for (int e = tid; e < MMA_BQ * ldo; e += nt) Os[e] = 0.0f;
    /* lane owns row (warp·16 + lane/2), half (lane%2) of the tile's columns */
    const int row = warp * 16 + lane / 2, half = lane % 2, i = q0 + row;
    float m = -INFINITY, l = 0.0f;
    const int q_last = min(q0 + MMA_BQ, s.T) - 1;
    int k_first = s.window > 0 ? max(0, q0 - s.window + 1) : 0;
    k_first = (k_first / MMA_BK) * MMA_BK;
    for (int k0 = k_first; k0 <= q_last; k0 += MMA_BK) {
        __syncthreads();
        for (int e = tid; e < MMA_BK * dq; e += nt) {
            int j = e / dq, d = e % dq, kj = k0 + j;
            Ks[j * ldq + d] = kj < s.T ? k[((size_t)b * s.T + kj) * s.k_stride + (size_t)g * dq + d] : __float2bfloat16(0.0f);
        }
        for (int e = tid; e < MMA_BK * dv; e += nt) {
            int j = e / dv, d = e % dv, kj = k0 + j;
            Vs[j * ldv + d] = kj < s.T ? v[((size_t)b * s.T + kj) * s.v_stride + (size_t)g * dv + d] : __float2bfloat16(0.0f);
        }
        __syncthreads();
        /* S[16, 64] = Q_w · Kᵀ */
        for (int nb = 0; nb < MMA_BK / 16; nb++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kb = 0; kb < dq; kb += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
                wmma::load_matrix_sync(fa, Qs + warp * 16 * ldq + kb, ldq);
                wmma::load_matrix_sync(fb, Ks + nb * 16 * ldq + kb, ldq);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(Ss + warp * 16 * MMA_SLD + nb * 16, acc, MMA_SLD, wmma::mem_row_major);
        }
        __syncwarp();
        /* online softmax on this lane's 32 scores */
        float *srow = Ss + row * MMA_SLD + half * 32;
        float mx = -INFINITY;
        for (int c = 0; c < 32; c++) {
            float x = mma_visible(s, b, i, k0 + half * 32 + c) && i < s.T ? srow[c] * s.scale : -INFINITY;
            srow[c] = x;
            mx = fmaxf(mx, x);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float mn = fmaxf(m, mx);
        float corr = mn == -INFINITY ? 1.0f : __expf(m - mn), sum = 0.0f;
        bf16 *prow = Ps + row * ldp + half * 32;
        for (int c = 0; c < 32; c++) {
            float p = mn == -INFINITY ? 0.0f : __expf(srow[c] - mn);
            bf16 pb = __float2bfloat16(p);
            prow[c] = pb;
            sum += __bfloat162float(pb);  /* normalise by what the tensor cores multiply */
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * corr + sum;
        m = mn;
        float *orow = Os + row * ldo;
        for (int d = half; d < dv; d += 2) orow[d] *= corr;
        __syncwarp();
        /* O_w[16, dv] += P_w · V */
        for (int nb = 0; nb < dv / 16; nb++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, Os + warp * 16 * ldo + nb * 16, ldo, wmma::mem_row_major);
            for (int kb = 0; kb < MMA_BK; kb += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> fb;
                wmma::load_matrix_sync(fa, Ps + warp * 16 * ldp + kb, ldp);
                wmma::load_matrix_sync(fb, Vs + kb * ldv + nb * 16, ldv);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(Os + warp * 16 * ldo + nb * 16, acc, ldo, wmma::mem_row_major);
        }
        __syncwarp();
    }
    if (i < s.T) {
        float inv = 1.0f / l;
        bf16 *o = out + ((size_t)b * s.T + i) * s.o_stride + (size_t)h * dv;
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
    size_t smem = sizeof(bf16) * ((size_t)(MMA_BQ + MMA_BK) * ldq + MMA_BK * ldv + MMA_BQ * (MMA_BK + 8)) +
                  sizeof(float) * ((size_t)MMA_BQ * MMA_SLD + MMA_BQ * (s->dv + 4));
    if (smem > 220 * 1024) return 1;
    CUDA_CHECK(cudaFuncSetAttribute(attention_forward_mma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem), "attention_forward mma smem");
    dim3 grid((s->T + MMA_BQ - 1) / MMA_BQ, s->B * s->H);
    attention_forward_mma_kernel<<<grid, MMA_WARPS * 32, smem>>>((bf16 *)out, lse, (const bf16 *)q,
                                                                 (const bf16 *)k, (const bf16 *)v, *s);
    CUDA_LAUNCHED("attention_forward (tensor cores)");
    return 0;
}
