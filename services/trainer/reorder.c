/* The reorder window (reorder.h). */
#include "services/trainer/reorder.h"

#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "common/data/data.h"

int reorder_init(struct reorder *r, int window) {
    if (!r || window < 1) return sushi_error(SUSHI_EINVAL, "reorder_init: window %d must be ≥ 1", window);
    memset(r, 0, sizeof *r);
    r->slots = calloc((size_t)window + 1, sizeof *r->slots);
    if (!r->slots) return sushi_error(SUSHI_ENOMEM, "reorder_init: %d slots", window + 1);
    r->window = window;
    return 0;
}

void reorder_free(struct reorder *r) {
    if (!r || !r->slots) return;
    for (int i = 0; i <= r->window; i++)
        if (r->slots[i].used) wire_msg_free(&r->slots[i].msg);
    free(r->slots);
    memset(r, 0, sizeof *r);
}

const char *reorder_verdict_name(enum reorder_verdict v) {
    switch (v) {
    case REORDER_HELD: return "held";
    case REORDER_STALE: return "stale (already applied)";
    case REORDER_DUPLICATE: return "duplicate (already held)";
    case REORDER_BEYOND: return "beyond the reorder window";
    }
    return "?";
}

enum reorder_verdict reorder_check(const struct reorder *r, uint64_t next, uint64_t id) {
    if (id < next) return REORDER_STALE;
    for (int i = 0; i <= r->window; i++)
        if (r->slots[i].used && r->slots[i].id == id) return REORDER_DUPLICATE;
    if (id == next) return REORDER_HELD;   /* next always has a slot: W early ones + itself */
    uint64_t ne = DATA_BATCH_EPOCH(next), ni = DATA_BATCH_INDEX(next);
    uint64_t e = DATA_BATCH_EPOCH(id), i = DATA_BATCH_INDEX(id);
    int inside = (e == ne && i - ni < (uint64_t)r->window) || (e == ne + 1 && i < (uint64_t)r->window);
    if (!inside || r->held >= r->window) return REORDER_BEYOND;
    return REORDER_HELD;
}

enum reorder_verdict reorder_offer(struct reorder *r, uint64_t next, struct wire_msg *m, int tag) {
    enum reorder_verdict v = reorder_check(r, next, m->id);
    if (v != REORDER_HELD) return v;
    for (int i = 0; i <= r->window; i++) {
        struct reorder_slot *s = &r->slots[i];
        if (s->used) continue;
        s->used = 1;
        s->id = m->id;
        s->tag = tag;
        s->msg = *m;
        wire_msg_init(m, m->kind);
        r->held++;
        return REORDER_HELD;
    }
    return REORDER_BEYOND;   /* unreachable: held ≤ W leaves a slot */
}

int reorder_take(struct reorder *r, uint64_t next, struct wire_msg *out, int *tag) {
    for (int i = 0; i <= r->window; i++) {
        struct reorder_slot *s = &r->slots[i];
        if (!s->used || s->id != next) continue;
        *out = s->msg;
        if (tag) *tag = s->tag;
        memset(s, 0, sizeof *s);
        r->held--;
        return 1;
    }
    return 0;
}
