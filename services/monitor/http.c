/* HTTP endpoint of the monitor (libmicrohttpd, its own thread): GET /metrics in the
 * Prometheus text format, GET /report as the JSON run summary so far. */
#include "services/monitor/monitor.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "common/core/log.h"

struct monitor_http {
    struct MHD_Daemon *daemon;
    struct monitor *m;
    int port;
};

static double monitor_http_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static enum MHD_Result monitor_http_reply(struct MHD_Connection *c, unsigned status, const char *type,
                                          char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result monitor_http_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    char *body = strdup(text);
    return body ? monitor_http_reply(c, status, "text/plain; charset=utf-8", body, strlen(body)) : MHD_NO;
}

static enum MHD_Result monitor_http_handle(void *cls, struct MHD_Connection *c, const char *url,
                                           const char *method, const char *version, const char *upload,
                                           size_t *upload_size, void **req)
{
    (void)version;
    (void)upload;
    struct monitor_http *h = cls;
    if (!*req) { /* first call for this request: headers only */
        *req = h;
        return MHD_YES;
    }
    if (*upload_size) { /* no request bodies: discard */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return monitor_http_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
    if (strcmp(url, "/metrics") == 0) {
        char *body;
        size_t len;
        if (monitor_prometheus(h->m, monitor_http_now(), &body, &len))
            return monitor_http_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render metrics\n");
        return monitor_http_reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len);
    }
    if (strcmp(url, "/report") == 0) {
        json_t *r = monitor_report(h->m, monitor_http_now());
        char *body = r ? json_dumps(r, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        json_decref(r);
        if (!body) return monitor_http_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render report\n");
        return monitor_http_reply(c, MHD_HTTP_OK, "application/json", body, strlen(body));
    }
    if (strcmp(url, "/") == 0)
        return monitor_http_text(c, MHD_HTTP_OK, "sushi-monitor: /metrics (Prometheus), /report (JSON)\n");
    return monitor_http_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /report\n");
}

int monitor_http_start(struct monitor_http **out, struct monitor *m, const char *host, int port)
{
    if (!out || !m || !host) return sushi_error(SUSHI_EINVAL, "monitor_http_start: NULL argument");
    *out = NULL;
    if (port < 0 || port > 65535) return sushi_error(SUSHI_EINVAL, "http port %d: must be 0..65535", port);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return sushi_error(SUSHI_EINVAL, "http host %s: expected an IPv4 address such as 127.0.0.1", host);
    struct monitor_http *h = calloc(1, sizeof *h);
    if (!h) return sushi_error(SUSHI_ENOMEM, "monitor_http_start: out of memory");
    h->m = m;
    h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL,
                                 NULL, monitor_http_handle, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                 MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                 MHD_OPTION_END);
    if (!h->daemon) {
        free(h);
        return sushi_error(SUSHI_EIO, "http %s:%d: cannot listen (port in use?)", host, port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : port;
    *out = h;
    return SUSHI_OK;
}

int monitor_http_port(const struct monitor_http *h) { return h ? h->port : -1; }

void monitor_http_stop(struct monitor_http *h)
{
    if (!h) return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
