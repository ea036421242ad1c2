/* The teacher's top-K of logit rows on the GPU (ops.h `topk`, SPEC §1), for K ≤ 256 on
 * vocabularies of any size, one block per row, bf16 or f16 logits with f32 arithmetic:
 * 1. a radix select finds the K-th largest logit: keys are the order-preserving uint32
 *    images of the f32 values, and 4 passes of 8-bit histograms in shared memory fix the
 *    key a byte at a time from the top (the first pass also takes the row maximum);
 * 2. one pass collects the keys above that threshold (in any order) and the first
 *    `need` keys equal to it in id order (the CPU's tie rule: the lower id first), and
 *    sums exp(z/T − max) over the chosen K and over the rest (the tail) separately, so a
 *    tiny tail keeps its precision, as kernels/cpu/cpu_topk.c does;
 * 3. the K are ordered in shared memory (each one's rank counted against the others)
 *    and written with log_softmax(z/T) = z/T − logsumexp. */
#include "kernels/cuda/cuda_common.h"

#define TOPK_MAX 256

/* order-preserving image of f: a > b as floats iff key(a) > key(b) as integers; −0 is
 * taken as +0 so that the two compare equal, as they do on the CPU */
__device__ __forceinline__ uint32_t topk_key(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u << 1) == 0) u = 0;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float topk_value(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}


/* Warp 0: given the histogram of the candidates' byte at `shift` and krem, the rank
 * (from the top) of the wanted key among the candidates, picks the bin holding it and
 * leaves the extended prefix and the rank within that bin in *out_prefix / *out_krem.
 * Lane l owns bins 8l … 8l+7; suffix sums over the lanes find the lane, then that lane
 * walks its bins from the top. */
__device__ __forceinline__ void topk_pick_bin(const unsigned *hist, uint32_t prefix, int shift, unsigned krem,
                                              uint32_t *out_prefix, unsigned *out_krem) {
    int lane = threadIdx.x & 31;
    unsigned c[8], s = 0;
    for (int j = 0; j < 8; j++) {
        c[j] = hist[8 * lane + j];
        s += c[j];
    }
    unsigned S = s; /* inclusive suffix sum: candidates in bins ≥ 8·lane */
    for (int o = 1; o < 32; o <<= 1) {
        unsigned v = __shfl_down_sync(0xffffffffu, S, o);
        if (lane + o < 32) S += v;
    }
    unsigned ballot = __ballot_sync(0xffffffffu, S >= krem); /* lane 0 always: it sees every candidate */
    int L = ballot ? 31 - __clz(ballot) : 0;
    if (lane == L) {
        unsigned above = S - s;
        int j = 7;
        while (j > 0 && above + c[j] < krem) above += c[j--];
        *out_prefix = prefix | ((uint32_t)(8 * L + j) << shift);
        *out_krem = krem - above;
    }
}

template <typename A>
__global__ void topk_kernel(int32_t *ids, float *logprobs, float *tail, const A *logits, int V, int Vp, int K,
                            float invT) {
    __shared__ unsigned hist[256];
    __shared__ uint32_t cand_key[TOPK_MAX];
    __shared__ int32_t cand_id[TOPK_MAX];
    __shared__ float red[32];
    __shared__ unsigned warp_cnt[32];
    __shared__ uint32_t s_prefix;
    __shared__ unsigned s_krem;
    __shared__ int s_ngt;
    const A *z = logits + (size_t)blockIdx.x * Vp;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;

    /* 1. radix select of the K-th largest key; the row maximum on the way */
    float mx = -INFINITY;
    uint32_t prefix = 0, mask = 0;
    unsigned krem = (unsigned)K;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        /* every lane of a warp runs the same iterations (blockDim is a multiple of 32), so
         * the match below may name the whole warp; lanes without a candidate carry a value
         * no candidate bin has, unique per lane */
        for (int base = 0; base < V; base += blockDim.x) {
            int i = base + tid;
            bool in = false;
            unsigned bin = 256u + (unsigned)lane;
            if (i < V) {
                float f = ld(z + i);
                if (shift == 24) mx = fmaxf(mx, f);
                uint32_t key = topk_key(f);
                if ((key & mask) == prefix) {
                    in = true;
                    bin = (key >> shift) & 255u;
                }
            }
            unsigned peers = __match_any_sync(0xffffffffu, bin); /* one shared atomic per bin per warp */
            if (in && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (unsigned)__popc(peers));
        }
        __syncthreads();
        if (warp == 0) topk_pick_bin(hist, prefix, shift, krem, &s_prefix, &s_krem);
        __syncthreads();
        prefix = s_prefix;
        krem = s_krem;
        mask |= 255u << shift;
    }
    const uint32_t thr = prefix;      /* the key of the K-th largest logit */
    const int need = (int)krem;       /* how many keys equal to thr belong to the top K */
    const int n_gt = K - need;        /* keys above thr, all in the top K */
    const float mxT = block_max(mx, red) * invT;

    /* 2. collect the K; split the exponentials between the K and the tail */
    if (tid == 0) s_ngt = 0;
    __syncthreads();
    float s_top = 0.0f, s_tail = 0.0f;
    int taken = 0; /* ties taken so far: the same in every thread */
    for (int base = 0; base < V; base += blockDim.x) {
        int i = base + tid;
        bool valid = i < V;
        float f = valid ? ld(z + i) : 0.0f;
        uint32_t key = topk_key(f);
        bool sel = valid && key > thr, eq = valid && key == thr;
        if (sel) {
            int slot = atomicAdd(&s_ngt, 1);
            if (slot < n_gt) { /* always, by the select; a guard for the shared arrays */
                cand_key[slot] = key;
                cand_id[slot] = i;
            }
        }
        if (taken < need && __syncthreads_or(eq)) { /* uniform: taken is the same everywhere */
            unsigned b = __ballot_sync(0xffffffffu, eq);
            if (lane == 0) warp_cnt[warp] = (unsigned)__popc(b);
            __syncthreads();
            int before = 0, total = 0;
            for (int w = 0; w < nw; w++) {
                before += w < warp ? (int)warp_cnt[w] : 0;
                total += (int)warp_cnt[w];
            }
            int rank = taken + before + __popc(b & ((1u << lane) - 1u));
            if (eq && rank < need) {
                sel = true;
                cand_key[n_gt + rank] = key;
                cand_id[n_gt + rank] = i;
            }
            taken = taken + total < need ? taken + total : need;
            __syncthreads(); /* warp_cnt is rewritten by the next chunk */
        }
        if (valid) {
            float e = expf(f * invT - mxT);
            if (sel) s_top += e;
            else s_tail += e;
        }
    }
    s_top = block_sum(s_top, red);
    s_tail = block_sum(s_tail, red);
    const float lse = mxT + logf(s_top + s_tail);
    if (tid == 0) tail[blockIdx.x] = s_tail > 0.0f ? mxT + logf(s_tail) - lse : -INFINITY; /* −inf when K == V */

    /* 3. order the K: larger logit first, the lower id on ties */
    __syncthreads();
    size_t out = (size_t)blockIdx.x * K;
    for (int j = tid; j < K; j += blockDim.x) {
        uint32_t kj = cand_key[j];
        int32_t ij = cand_id[j];
        int r = 0;
        for (int q = 0; q < K; q++) {
            uint32_t kq = cand_key[q];
            r += kq > kj || (kq == kj && cand_id[q] < ij);
        }
        ids[out + r] = ij;
        logprobs[out + r] = topk_value(kj) * invT - lse;
    }
}

int cuda_topk(int32_t *ids, float *logprobs, float *tail, const void *logits, int N, int V, int Vp, int K, float T) {
    CUDA_REQUIRE(ids && logprobs && tail && logits, "cuda: topk: NULL pointer");
    CUDA_REQUIRE(N >= 0 && V >= 1 && Vp >= V && K >= 1 && K <= V && T > 0 && isfinite(T),
                 "cuda: topk: bad argument (N %d, V %d, Vp %d, K %d, T %g)", N, V, Vp, K, (double)T);
    if (K > TOPK_MAX)
        return sushi_error(SUSHI_EUNSUPPORTED, "cuda: topk: K %d is above the %d this kernel keeps", K, TOPK_MAX);
    if (N == 0) return 0;
    int threads = V >= 16384 ? 512 : V >= 2048 ? 256 : 128;
    float invT = 1.0f / T;
    CUDA_ACT(A, topk_kernel<A><<<N, threads>>>(ids, logprobs, tail, (const A *)logits, V, Vp, K, invT));
    CUDA_LAUNCHED("topk");
    return 0;
}
