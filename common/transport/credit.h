/* Credit-based flow control: the receiver grants credits, the sender sends one message
 * per credit and stops at zero, so at most `window` messages per sender are ever queued
 * or being processed at the receiver: memory stays bounded end to end.
 *
 * A grant travels in any message's meta as "credit": N (usually in the receiver's reply
 * to a hello, or on a heartbeat). The receiver grants `window` at first, then, as it
 * finishes messages, the slots they freed. A message that arrives without a credit is a
 * protocol violation the receiver detects. */
#ifndef SUSHI_CREDIT_H
#define SUSHI_CREDIT_H

#include <stdint.h>

#include "common/wire/wire.h"

struct credit_sender {
    int64_t credits;    /* messages it may still send */
    int64_t max;        /* most credits it accepts holding (the receiver's window) */
};

int credit_sender_init(struct credit_sender *s, int64_t max);
int credit_can_send(const struct credit_sender *s);
/* Spends one credit before a send; SUSHI_EINVAL when none is left. */
int credit_take(struct credit_sender *s);
/* Adds a grant of n > 0; refuses one that would exceed max. */
int credit_grant(struct credit_sender *s, int64_t n);

struct credit_receiver {
    int64_t window;     /* messages this receiver holds at most */
    int64_t outstanding;/* granted, not yet arrived */
    int64_t held;       /* arrived, not yet done */
};

int credit_receiver_init(struct credit_receiver *r, int64_t window);
/* Credits to grant now: the free slots (window - outstanding - held), marked outstanding. */
int64_t credit_to_grant(struct credit_receiver *r);
/* A message arrived; SUSHI_EFORMAT when the sender had no credit for it. */
int credit_arrived(struct credit_receiver *r);
/* n held messages are finished (their memory is free). */
int credit_done(struct credit_receiver *r, int64_t n);

/* meta.credit = n on m (creating meta). */
int credit_put(struct wire_msg *m, int64_t n);
/* 1 and *n when m carries a grant, 0 when it does not, SUSHI_EFORMAT when malformed. */
int credit_get(const struct wire_msg *m, int64_t *n);

#endif
