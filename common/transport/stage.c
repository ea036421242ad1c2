/* A stage's shared runtime: context, publishing, hello/heartbeat thread, stop signals. */
#include "common/transport/stage.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "common/core/log.h"
#include "common/transport/transport.h"

struct stage_impl {
    struct transport *pub;      /* main thread */
    struct transport *beat;     /* heartbeat thread */
    pthread_t thread;
    int thread_started;
    int heartbeat_ms;
    atomic_int quit;
};

static volatile sig_atomic_t stage_stop_flag;

static void stage_on_signal(int sig) { (void)sig; stage_stop_flag = 1; }
int stage_stopping(void) { return stage_stop_flag != 0; }
void stage_request_stop(void) { stage_stop_flag = 1; }

/* a PUB socket connected to every publish endpoint (NULL when there are none) */
static int stage_open_pub(struct stage *s, struct transport **out) {
    *out = NULL;
    if (s->npublish == 0) return 0;
    struct transport_opts o = transport_opts_default();
    o.send_timeout_ms = 0;
    o.sndhwm = 1000;
    o.name = "publish";
    const char *remote = getenv("SUSHI_ALLOW_REMOTE");
    o.allow_remote = remote && strcmp(remote, "1") == 0;
    int rc = transport_open(out, s->zctx, TRANSPORT_PUB, s->publish[0], 0, &o);
    for (int i = 1; i < s->npublish && !rc; i++) {
        rc = transport_check_endpoint(s->publish[i], o.allow_remote);
        if (!rc && zmq_connect(transport_zsock(*out), s->publish[i]) != 0)
            rc = sushi_error(SUSHI_EIO, "publish endpoint %s: %s", s->publish[i], zmq_strerror(zmq_errno()));
    }
    if (rc) {
        transport_close(*out);
        *out = NULL;
    }
    return rc;
}

static int stage_send(struct transport *t, const char *name, enum wire_kind kind, uint64_t id, json_t *meta) {
    struct wire_msg m;
    wire_msg_init(&m, kind);
    m.id = id;
    snprintf(m.stage, sizeof m.stage, "%s", name);
    m.meta = meta;
    int rc = t ? transport_send(t, &m, NULL, NULL, NULL) : 0;
    wire_msg_free(&m);
    return rc;
}

static void *stage_beat_main(void *arg) {
    struct stage *s = arg;
    struct stage_impl *im = s->impl;
    enum wire_kind kind = WIRE_HELLO;
    /* hello at once, then heartbeats; PUB drops what is sent before a subscriber joins,
     * so the supervisor takes any heartbeat as a hello too */
    while (!atomic_load(&im->quit)) {
        stage_send(im->beat, s->name, kind, 0, json_pack("{s:I}", "pid", (json_int_t)getpid()));
        kind = WIRE_HEARTBEAT;
        for (int waited = 0; waited < im->heartbeat_ms && !atomic_load(&im->quit); waited += 50) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int stage_open(struct stage *s, const char *name, const char *publish, int heartbeat_ms) {
    if (!s || !name) return sushi_error(SUSHI_EINVAL, "stage_open: bad argument");
    memset(s, 0, sizeof *s);
    const char *env_name = getenv("SUSHI_STAGE");
    snprintf(s->name, sizeof s->name, "%s", env_name && *env_name ? env_name : name);
    if (!publish) publish = getenv("SUSHI_PUBLISH");
    for (const char *p = publish; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0) {
            if (s->npublish == STAGE_MAX_PUBLISH)
                return sushi_error(SUSHI_EINVAL, "publish list: more than %d endpoints", STAGE_MAX_PUBLISH);
            if (n >= sizeof s->publish[0])
                return sushi_error(SUSHI_EINVAL, "publish endpoint %.40s...: too long", p);
            memcpy(s->publish[s->npublish], p, n);
            s->publish[s->npublish][n] = 0;
            s->npublish++;
        }
        p = end ? end + 1 : p + n;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stage_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->impl = calloc(1, sizeof *s->impl);
    s->zctx = zmq_ctx_new();
    if (!s->impl || !s->zctx) {
        stage_close(s);
        return sushi_error(SUSHI_ENOMEM, "stage %s: out of memory", s->name);
    }
    s->impl->heartbeat_ms = heartbeat_ms > 0 ? heartbeat_ms : 1000;
    int rc = stage_open_pub(s, &s->impl->pub);
    if (!rc) rc = stage_open_pub(s, &s->impl->beat);
    if (!rc && s->impl->beat) {
        if (pthread_create(&s->impl->thread, NULL, stage_beat_main, s) != 0)
            rc = sushi_error(SUSHI_EIO, "stage %s: cannot start the heartbeat thread", s->name);
        else
            s->impl->thread_started = 1;
    }
    if (rc) stage_close(s);
    return rc;
}

void stage_close(struct stage *s) {
    if (!s) return;
    if (s->impl) {
        atomic_store(&s->impl->quit, 1);
        if (s->impl->thread_started) pthread_join(s->impl->thread, NULL);
        transport_close(s->impl->pub);
        transport_close(s->impl->beat);
        free(s->impl);
        s->impl = NULL;
    }
    if (s->zctx) zmq_ctx_term(s->zctx);
    s->zctx = NULL;
}

int stage_publish(struct stage *s, enum wire_kind kind, uint64_t id, json_t *meta) {
    if (!s || !s->impl) {
        json_decref(meta);
        return sushi_error(SUSHI_EINVAL, "stage_publish: stage not open");
    }
    return stage_send(s->impl->pub, s->name, kind, id, meta);
}
