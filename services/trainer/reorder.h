/* The trainer's reorder window (protocol.h, delivery rules): batches are applied
 * strictly in id order. An arrival older than `next` (already applied), already held
 * (duplicate) or beyond the window (the loader re-sends it later) is refused; early
 * arrivals are held, at most W of them, plus `next` itself.
 *
 * Ids are epoch << 40 | index. Within next's epoch the window is the W indices from
 * next's; an id of the following epoch is accepted while its index is below W (the
 * epoch's length is the loader's business; the bound on held messages keeps memory
 * bounded either way). */
#ifndef SUSHI_TRAINER_REORDER_H
#define SUSHI_TRAINER_REORDER_H

#include <stdint.h>

#include "common/wire/wire.h"

enum reorder_verdict { REORDER_HELD = 0, REORDER_STALE, REORDER_DUPLICATE, REORDER_BEYOND };

struct reorder_slot {
    int used;
    uint64_t id;
    int tag;                 /* caller's (e.g. which socket it came from) */
    struct wire_msg msg;     /* owned */
};

struct reorder {
    int window;              /* W */
    int held;
    struct reorder_slot *slots;   /* W + 1 */
};

int reorder_init(struct reorder *r, int window);
void reorder_free(struct reorder *r);          /* frees held messages */
const char *reorder_verdict_name(enum reorder_verdict v);
/* Which verdict `id` would get with `next` the next id to apply. */
enum reorder_verdict reorder_check(const struct reorder *r, uint64_t next, uint64_t id);
/* Offers *m (its id is m->id): on REORDER_HELD the message moves into the window and *m
 * is left empty; otherwise *m is untouched (the caller frees it). */
enum reorder_verdict reorder_offer(struct reorder *r, uint64_t next, struct wire_msg *m, int tag);
/* Moves the held message with id == next into *out (1), or returns 0 when it is not here. */
int reorder_take(struct reorder *r, uint64_t next, struct wire_msg *out, int *tag);

#endif
