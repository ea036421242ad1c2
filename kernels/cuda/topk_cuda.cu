/* The teacher's top-K of logit rows on the GPU. */
#include "kernels/cuda/cuda_common.h"

int cuda_topk(int32_t *ids, float *logprobs, float *tail, const void *logits, int N, int V, int Vp, int K, float T) {
    (void)ids, (void)logprobs, (void)tail, (void)logits, (void)N, (void)V, (void)Vp, (void)K, (void)T;
    return sushi_error(SUSHI_EUNSUPPORTED, "cuda: topk: not built yet");
}
