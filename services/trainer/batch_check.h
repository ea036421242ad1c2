/* Checking a received batch (direct mode) or scored batch (from a teacher replica)
 * against what the trainer expects before anything uses it (protocol.h, SPEC §2):
 * tensors present with the right dtypes and shapes [B,T] / [B] / [B,T,K], token ids,
 * targets and top-K ids inside the vocabulary, meta.next after the id, and the
 * teacher's meta.temperature equal to the configured KD temperature. The result is a
 * view into the message's frames. */
#ifndef SUSHI_TRAINER_BATCH_CHECK_H
#define SUSHI_TRAINER_BATCH_CHECK_H

#include <stdint.h>

#include "common/wire/wire.h"

struct batch_expect {
    int B, T, vocab;
    int scored;              /* require the teacher's tensors and meta */
    int need_doc_ids;        /* doc masking: doc_ids required */
    float temperature;       /* scored: required meta.temperature */
};

struct batch_view {
    uint64_t id, next;       /* this batch, the one that follows it (meta.next) */
    const int32_t *tokens, *targets, *doc_ids;   /* [B,T]; doc_ids NULL when absent */
    const uint64_t *sample_ids;                  /* [B] */
    int k;                                       /* 0 unless scored */
    const int32_t *topk_ids;                     /* [B,T,K] */
    const float *topk_logprobs;                  /* [B,T,K] */
    const float *tail_logprob;                   /* [B,T] */
};

/* 0 and *v filled, or SUSHI_EFORMAT / SUSHI_ESHAPE with a message naming the field. */
int batch_check(const struct wire_msg *m, const struct batch_expect *e, struct batch_view *v);

#endif
