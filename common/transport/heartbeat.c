/* Heartbeat scheduling and peer liveness (see heartbeat.h). */
#include "common/transport/heartbeat.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/core/log.h"

int64_t heartbeat_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int heartbeat_init(struct heartbeat *h, int interval_ms, int max_missed, int64_t now_ms)
{
    if (!h) return sushi_error(SUSHI_EINVAL, "heartbeat_init: NULL argument");
    if (interval_ms < 1 || max_missed < 1)
        return sushi_error(SUSHI_EINVAL, "heartbeat: interval_ms %d and max_missed %d must be >= 1",
                           interval_ms, max_missed);
    memset(h, 0, sizeof *h);
    h->interval_ms = interval_ms;
    h->max_missed = max_missed;
    h->next_send_ms = now_ms;
    return SUSHI_OK;
}

int heartbeat_due(struct heartbeat *h, int64_t now_ms)
{
    if (!h || now_ms < h->next_send_ms) return 0;
    h->next_send_ms = now_ms + h->interval_ms;
    return 1;
}

static struct heartbeat_peer *heartbeat_find(const struct heartbeat *h, const char *peer)
{
    for (int i = 0; i < h->npeers; i++)
        if (strcmp(h->peers[i].name, peer) == 0) return (struct heartbeat_peer *)&h->peers[i];
    return NULL;
}

int heartbeat_seen(struct heartbeat *h, const char *peer, int64_t now_ms)
{
    if (!h || !peer) return sushi_error(SUSHI_EINVAL, "heartbeat_seen: NULL argument");
    struct heartbeat_peer *p = heartbeat_find(h, peer);
    if (!p) {
        if (h->npeers < HEARTBEAT_MAX_PEERS) {
            p = &h->peers[h->npeers++];
        } else { /* reuse a dead peer's slot */
            for (int i = 0; i < h->npeers && !p; i++)
                if (!h->peers[i].alive) p = &h->peers[i];
            if (!p)
                return sushi_error(SUSHI_ENOMEM, "heartbeat: %s: more than %d live peers", peer,
                                   HEARTBEAT_MAX_PEERS);
        }
        snprintf(p->name, sizeof p->name, "%s", peer);
        p->alive = 0;
    }
    int revived = !p->alive;
    p->alive = 1;
    p->last_ms = now_ms;
    return revived;
}

int heartbeat_expired(struct heartbeat *h, int64_t now_ms, const char **dead, int max)
{
    if (!h || (max > 0 && !dead)) return sushi_error(SUSHI_EINVAL, "heartbeat_expired: NULL argument");
    int64_t limit = (int64_t)h->interval_ms * h->max_missed;
    int n = 0;
    for (int i = 0; i < h->npeers; i++) {
        struct heartbeat_peer *p = &h->peers[i];
        if (!p->alive || now_ms - p->last_ms <= limit) continue;
        p->alive = 0;
        if (n < max) dead[n] = p->name;
        n++;
    }
    return n;
}

int heartbeat_is_alive(const struct heartbeat *h, const char *peer)
{
    if (!h || !peer) return 0;
    const struct heartbeat_peer *p = heartbeat_find(h, peer);
    return p && p->alive;
}

int heartbeat_msg(struct wire_msg *m, const char *stage)
{
    if (!m || !stage) return sushi_error(SUSHI_EINVAL, "heartbeat_msg: NULL argument");
    if (strlen(stage) >= WIRE_STAGE_MAX)
        return sushi_error(SUSHI_EINVAL, "heartbeat_msg: stage name longer than %d", WIRE_STAGE_MAX - 1);
    wire_msg_init(m, WIRE_HEARTBEAT);
    snprintf(m->stage, sizeof m->stage, "%s", stage);
    return SUSHI_OK;
}
