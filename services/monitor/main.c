// libs: wire config student kernels core
// ldlibs: -lmicrohttpd
/* sushi-monitor: watches a run. Subscribes (ZeroMQ SUB) to the metrics, eval and
 * checkpoint messages every stage publishes, and
 *
 *   receive → JSONL line (--jsonl) → state (last values, loss stats, evals)
 *           → terminal view / plain lines → HTTP /metrics + /report (--http)
 *   SIGINT, SIGTERM or meta `event: end` → JSON report (--report) → exit 0
 *
 * Convention for stage authors: PUBlish a wire message with kind `metrics` (or `eval`,
 * `checkpoint`), `stage` = the sender's name, and `meta` = a flat map of numbers and
 * strings. Known keys: step, total_steps (progress bar and ETA), loss (min/max/mean in
 * the report), lr, tokens_per_s, data_stall_s (seconds the trainer waited for data),
 * queue depths as `queue_<name>`; every other numeric key is exported too, as
 * `sushi_<key>{stage="..."}` (eval: `sushi_eval_<key>`, checkpoint:
 * `sushi_checkpoint_<key>`). Nested values only reach the JSONL. The meta entry
 * `event: "end"` (from any stage) ends the run. Invalid messages are counted
 * (sushi_monitor_bad_messages_total) and dropped. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "common/config/config.h"
#include "common/core/log.h"
#include "common/transport/stage.h"
#include "common/transport/transport.h"
#include "services/monitor/monitor.h"

#define MONITOR_MAX_EPS 16
#define MONITOR_MAX_OVERRIDES 64

struct monitor_args {
    const char *connect[MONITOR_MAX_EPS], *bind[MONITOR_MAX_EPS];
    int nconnect, nbind;
    const char *jsonl, *report, *http_host;
    int http_port;              /* -1: no HTTP */
    int allow_remote;
};


static void usage(FILE *f)
{
    fprintf(f,
            "usage: sushi-monitor [--config FILE] [key.path=value ...] [--connect EP ...] [--bind EP ...]\n"
            "                     [--jsonl FILE] [--http PORT] [--http-host ADDR] [--report FILE]\n"
            "\n"
            "Subscribes to the metrics, eval and checkpoint messages of a sushi run, shows them\n"
            "live, and exports them. Ends on SIGINT/SIGTERM or a message with meta event: end,\n"
            "writing the report, and exits 0.\n"
            "\n"
            "  --config FILE     YAML with a `monitor` section: connect (list), bind (list), jsonl,\n"
            "                    report, http.port, http.host (e.g. configs/monitor/monitor.yaml)\n"
            "  --connect EP      SUB-connect to a stage's PUB endpoint (repeatable; replaces the config's)\n"
            "  --bind EP         SUB-bind EP so stages connect to the monitor (repeatable)\n"
            "  --jsonl FILE      append every message as one JSON line (flushed per line)\n"
            "  --http PORT       serve /metrics (Prometheus text) and /report (JSON); 0 = any port\n"
            "  --http-host ADDR  address to listen on (default 127.0.0.1)\n"
            "  --report FILE     JSON summary written at the end (per-stage last values, loss\n"
            "                    min/max/mean, eval results, duration)\n"
            "  --allow-remote    permit non-loopback tcp:// endpoints\n"
            "  -h, --help        this text\n"
            "\n"
            "Endpoints: ipc://PATH, tcp://127.0.0.1:PORT. The metric convention is in the\n"
            "header comment of services/monitor/main.c.\n");
}

static double monitor_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* config `monitor.KEY`: a string or a list of strings, into eps (when the CLI gave none) */
static int monitor_config_eps(const json_t *cfg, const char *file, const char *key, const char **eps, int *n)
{
    char path[64];
    snprintf(path, sizeof path, "monitor.%s", key);
    json_t *v = ju_get_path(cfg, path);
    if (!v || json_is_null(v) || *n) return SUSHI_OK;
    if (json_is_string(v)) {
        eps[(*n)++] = json_string_value(v);
        return SUSHI_OK;
    }
    if (!json_is_array(v) || json_array_size(v) > MONITOR_MAX_EPS)
        return sushi_error(SUSHI_EINVAL, "%s: %s: expected an endpoint or a list of at most %d", file, path,
                           MONITOR_MAX_EPS);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e))
            return sushi_error(SUSHI_EINVAL, "%s: %s[%zu]: expected an endpoint string", file, path, i);
        eps[(*n)++] = json_string_value(e);
    }
    return SUSHI_OK;
}

static int monitor_from_config(const json_t *cfg, const char *file, struct monitor_args *a)
{
    int rc;
    if ((rc = monitor_config_eps(cfg, file, "connect", a->connect, &a->nconnect)) ||
        (rc = monitor_config_eps(cfg, file, "bind", a->bind, &a->nbind)))
        return rc;
    if (!a->jsonl && (rc = config_get_string(cfg, file, "monitor.jsonl", 0, &a->jsonl))) return rc;
    if (!a->report && (rc = config_get_string(cfg, file, "monitor.report", 0, &a->report))) return rc;
    if (a->http_port < 0 && (rc = config_get_int(cfg, file, "monitor.http.port", 0, &a->http_port))) return rc;
    if (!a->http_host && (rc = config_get_string(cfg, file, "monitor.http.host", 0, &a->http_host))) return rc;
    return SUSHI_OK;
}

static int monitor_parse_port(const char *s, int *out)
{
    char *end;
    errno = 0;
    long p = strtol(s, &end, 10);
    if (!*s || *end || errno || p < 0 || p > 65535)
        return sushi_error(SUSHI_EINVAL, "--http %s: expected a port 0..65535", s);
    *out = (int)p;
    return SUSHI_OK;
}

/* Parses argv into *a and loads the config (owned by *cfg). 1: --help shown. */
static int monitor_parse(int argc, char **argv, struct monitor_args *a, json_t **cfg)
{
    const char *config = NULL, *overrides[MONITOR_MAX_OVERRIDES];
    int nover = 0, rc;
    memset(a, 0, sizeof *a);
    a->http_port = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = strcmp(s, "--config") == 0 || strcmp(s, "--connect") == 0 || strcmp(s, "--bind") == 0 ||
                    strcmp(s, "--jsonl") == 0 || strcmp(s, "--http") == 0 || strcmp(s, "--http-host") == 0 ||
                    strcmp(s, "--report") == 0;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) { usage(stdout); return 1; }
        if (takes && !next) return sushi_error(SUSHI_EINVAL, "%s: missing value", s);
        if (strcmp(s, "--allow-remote") == 0) a->allow_remote = 1;
        else if (strcmp(s, "--config") == 0) config = next;
        else if (strcmp(s, "--connect") == 0 || strcmp(s, "--bind") == 0) {
            int *n = s[2] == 'c' ? &a->nconnect : &a->nbind;
            if (*n >= MONITOR_MAX_EPS) return sushi_error(SUSHI_EINVAL, "%s: at most %d endpoints", s, MONITOR_MAX_EPS);
            (s[2] == 'c' ? a->connect : a->bind)[(*n)++] = next;
        } else if (strcmp(s, "--jsonl") == 0) a->jsonl = next;
        else if (strcmp(s, "--report") == 0) a->report = next;
        else if (strcmp(s, "--http-host") == 0) a->http_host = next;
        else if (strcmp(s, "--http") == 0) { if ((rc = monitor_parse_port(next, &a->http_port))) return rc; }
        else if (s[0] != '-' && strchr(s, '=')) {
            if (nover >= MONITOR_MAX_OVERRIDES) return sushi_error(SUSHI_EINVAL, "too many overrides");
            overrides[nover++] = s;
            continue;
        } else return sushi_error(SUSHI_EINVAL, "unknown argument %s (see --help)", s);
        if (takes) i++;
    }
    *cfg = NULL;
    if (config) {
        if ((rc = config_load(config, overrides, nover, cfg))) return rc;
        if ((rc = monitor_from_config(*cfg, config, a))) return rc;
    } else if (nover) return sushi_error(SUSHI_EINVAL, "%s: overrides need --config", overrides[0]);
    if (!a->nconnect && !a->nbind)
        return sushi_error(SUSHI_EINVAL, "no endpoint: give --connect EP, --bind EP or a --config with monitor.connect");
    if (!a->http_host) a->http_host = "127.0.0.1";
    return SUSHI_OK;
}

/* The receive loop: returns when a signal or an end event arrives, or on a socket error. */
static int monitor_run(struct monitor *m, struct transport **socks, int nsocks, FILE *jsonl, const char *jsonl_path,
                       struct monitor_view *view)
{
    zmq_pollitem_t items[2 * MONITOR_MAX_EPS];
    for (int i = 0; i < nsocks; i++) items[i] = (zmq_pollitem_t){ transport_zsock(socks[i]), 0, ZMQ_POLLIN, 0 };
    while (!stage_stopping()) {
        int n = zmq_poll(items, nsocks, 100);
        if (n < 0 && zmq_errno() != EINTR) return sushi_error(SUSHI_EIO, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        uint64_t bad = 0;
        for (int i = 0; i < nsocks && n > 0; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            struct wire_msg msg;
            int rc = transport_recv(socks[i], &msg, NULL, 0);
            if (rc < 0) return rc;
            if (rc == 0) continue;
            double now = monitor_now();
            if (jsonl && (rc = monitor_jsonl_write(jsonl, jsonl_path, &msg, now))) log_error("%s", sushi_last_error());
            rc = monitor_ingest(m, &msg, now);
            if (rc < 0) log_error("%s", sushi_last_error());
            monitor_view_update(view, m, &msg, now);
            if (rc == 1) {
                log_info("end of run announced by stage %s", msg.stage);
                stage_request_stop();
            }
            wire_msg_free(&msg);
        }
        for (int i = 0; i < nsocks; i++) bad += transport_bad_count(socks[i]);
        monitor_set_bad(m, bad);
        monitor_view_update(view, m, NULL, monitor_now());
    }
    return SUSHI_OK;
}

int main(int argc, char **argv)
{
    log_set_name("sushi-monitor");
    struct monitor_args a;
    json_t *cfg = NULL;
    int rc = monitor_parse(argc, argv, &a, &cfg);
    if (rc == 1) return 0;
    if (rc) {
        log_error("%s", sushi_last_error());
        json_decref(cfg);
        return 2;
    }
    struct monitor m;
    struct transport *socks[2 * MONITOR_MAX_EPS];
    int nsocks = 0;
    struct monitor_http *http = NULL;
    FILE *jsonl = NULL;
    /* hello and heartbeats for a supervisor, SIGINT/SIGTERM -> stage_stopping() */
    struct stage st;
    if ((rc = stage_open(&st, "monitor", NULL, 1000))) {
        log_error("%s", sushi_last_error());
        json_decref(cfg);
        return 1;
    }
    void *zctx = st.zctx;
    if ((rc = monitor_init(&m))) goto out;
    m.t_start = monitor_now();
    struct transport_opts o = transport_opts_default();
    o.allow_remote = a.allow_remote;
    o.rcvhwm = 10000; /* metrics are small; a slow terminal must not drop them */
    for (int i = 0; i < a.nconnect + a.nbind; i++) {
        int bind = i >= a.nconnect;
        const char *ep = bind ? a.bind[i - a.nconnect] : a.connect[i];
        if ((rc = transport_open(&socks[nsocks], zctx, TRANSPORT_SUB, ep, bind, &o))) goto out;
        log_info("%s %s", bind ? "listening on" : "subscribed to", transport_endpoint(socks[nsocks]));
        nsocks++;
    }
    if (a.jsonl && !(jsonl = fopen(a.jsonl, "a"))) {
        rc = sushi_error(SUSHI_EIO, "%s: cannot open for appending: %s", a.jsonl, strerror(errno));
        goto out;
    }
    if (a.http_port >= 0) {
        if ((rc = monitor_http_start(&http, &m, a.http_host, a.http_port))) goto out;
        log_info("serving http://%s:%d/metrics and /report", a.http_host, monitor_http_port(http));
    }
    struct monitor_view view;
    monitor_view_init(&view, stdout, isatty(STDOUT_FILENO));
    if ((rc = monitor_run(&m, socks, nsocks, jsonl, a.jsonl, &view))) goto out;
    if (view.tty) monitor_view_draw(&view, &m, monitor_now());
    if (a.report && (rc = monitor_report_write(&m, a.report, monitor_now()))) goto out;
    if (a.report) log_info("report written to %s", a.report);
out:
    if (rc) log_error("%s", sushi_last_error());
    monitor_http_stop(http);
    for (int i = 0; i < nsocks; i++) transport_close(socks[i]);
    if (jsonl) fclose(jsonl);
    stage_close(&st);
    monitor_free(&m);
    json_decref(cfg);
    return rc ? 1 : 0;
}
