/* The loader's in-flight table: which batch ids are out, with which peer, since when.
 * It holds ids only (a batch is regenerated from its id when it has to be re-sent) and
 * never more entries than the trainer's window. */
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"
#include "services/loader/loader.h"

int inflight_init(struct inflight *t, int cap) {
    if (!t || cap < 1) return sushi_error(SUSHI_EINVAL, "inflight_init: capacity %d must be >= 1", cap);
    memset(t, 0, sizeof *t);
    if (!(t->e = calloc((size_t)cap, sizeof *t->e)))
        return sushi_error(SUSHI_ENOMEM, "inflight: out of memory for %d entries", cap);
    t->cap = cap;
    return SUSHI_OK;
}

void inflight_free(struct inflight *t) {
    if (!t) return;
    free(t->e);
    memset(t, 0, sizeof *t);
}

struct inflight_entry *inflight_find(struct inflight *t, uint64_t id) {
    if (!t) return NULL;
    for (int i = 0; i < t->n; i++)
        if (t->e[i].id == id) return &t->e[i];
    return NULL;
}

int inflight_put(struct inflight *t, uint64_t id, int peer, int64_t now_ms) {
    if (!t) return sushi_error(SUSHI_EINVAL, "inflight_put: NULL table");
    struct inflight_entry *e = inflight_find(t, id);
    if (!e) {
        if (t->n == t->cap)
            return sushi_error(SUSHI_EINVAL, "inflight: table full (%d entries) for batch %llu",
                               t->cap, (unsigned long long)id);
        e = &t->e[t->n++];
    }
    e->id = id;
    e->peer = peer;
    e->sent_ms = now_ms;
    e->due = 0;
    return SUSHI_OK;
}

void inflight_clear(struct inflight *t) {
    if (t) t->n = 0;
}

int inflight_keep_range(struct inflight *t, uint64_t lo, uint64_t hi) {
    if (!t) return 0;
    int kept = 0, dropped = 0;
    for (int i = 0; i < t->n; i++) {
        if (t->e[i].id >= lo && t->e[i].id < hi) t->e[kept++] = t->e[i];
        else dropped++;
    }
    t->n = kept;
    return dropped;
}

int inflight_orphan_peer(struct inflight *t, int peer) {
    if (!t) return 0;
    int n = 0;
    for (int i = 0; i < t->n; i++)
        if (t->e[i].peer == peer && !t->e[i].due) {
            t->e[i].due = 1;
            n++;
        }
    return n;
}

int inflight_needs_send(struct inflight *t, uint64_t id, int64_t now_ms, int resend_after_ms) {
    const struct inflight_entry *e = inflight_find(t, id);
    return !e || e->due || now_ms - e->sent_ms >= resend_after_ms;
}
