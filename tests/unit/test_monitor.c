// libs: wire core
/* sushi-monitor end to end: the real binary runs as a child process, a PUB socket
 * publishes metrics/eval messages and a garbage frame to it over ipc://, and the test
 * reads its JSONL file line by line, GETs /metrics and /report over its own HTTP client,
 * and checks the end-of-run report against statistics computed here from the values
 * sent. Also: PUB/SUB in the transport, SIGTERM ending a run, bad command lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "common/core/json_util.h"
#include "common/core/log.h"
#include "common/transport/transport.h"

static char g_bin[PATH_MAX];   /* build/bin/sushi-monitor beside this test's build dir */
static char g_dir[64];
static void *g_ctx;
static struct transport *g_pub; /* open PUB socket and running monitor of the current test, */
static struct transport *g_sub;
static pid_t g_pid;             /* cleaned up by `cleanup` also when an assertion fails */

static int setup(void **state)
{
    (void)state;
    g_ctx = zmq_ctx_new();
    snprintf(g_dir, sizeof g_dir, "/tmp/sushi_monitorXXXXXX");
    return g_ctx && mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    zmq_ctx_term(g_ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int cleanup(void **state)
{
    (void)state;
    transport_close(g_pub);
    transport_close(g_sub);
    g_pub = g_sub = NULL;
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, NULL, 0);
    }
    g_pid = 0;
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* A port that was free a moment ago. */
static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

/* GET path from 127.0.0.1:port: the status code (-1 when no connection) and the body
 * (malloc'd, NUL-terminated) in *body. */
static int http_get(int port, const char *path, char **body)
{
    *body = NULL;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    assert_int_equal(write(s, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(s, buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    close(s);
    buf[len] = 0;
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) status = -1;
    char *sep = strstr(buf, "\r\n\r\n");
    *body = strdup(sep ? sep + 4 : "");
    free(buf);
    return status;
}

/* Starts the monitor with argv (NULL-terminated, argv[0] ignored), output to DIR/name.log. */
static pid_t spawn_monitor(const char *name, char **argv)
{
    char log[128];
    snprintf(log, sizeof log, "%s/%s.log", g_dir, name);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        argv[0] = g_bin;
        execv(g_bin, argv);
        _exit(127);
    }
    g_pid = pid;
    return pid;
}

/* Exit status of pid within timeout_ms (killed and -1 when it does not exit). */
static int wait_exit(pid_t pid, int timeout_ms)
{
    int st;
    if (pid == g_pid) g_pid = 0;
    for (int t = 0; t < timeout_ms; t += 10) {
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static int http_status(int port, const char *path)
{
    char *body;
    int st = http_get(port, path, &body);
    free(body);
    return st;
}

static void publish(struct transport *pub, enum wire_kind kind, const char *stage, json_t *meta)
{
    struct wire_msg m;
    wire_msg_init(&m, kind);
    snprintf(m.stage, sizeof m.stage, "%s", stage);
    m.meta = meta;
    assert_int_equal(transport_send(pub, &m, NULL, NULL, NULL), 0);
    wire_msg_free(&m);
}

/* Publishes heartbeats until the monitor's /metrics counts one (PUB/SUB drops messages
 * sent before the subscription arrives). */
static void wait_subscribed(struct transport *pub, int port)
{
    for (int i = 0; i < 500; i++) {
        publish(pub, WIRE_HEARTBEAT, "test", NULL);
        char *body;
        int st = http_get(port, "/metrics", &body);
        int seen = st == 200 && !strstr(body, "sushi_monitor_messages_total{kind=\"heartbeat\"} 0\n");
        free(body);
        if (seen) return;
        sleep_ms(10);
    }
    fail_msg("monitor never received a heartbeat");
}

static int has_line(const char *body, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = body; (p = strstr(p, line)); p += n)
        if ((p == body || p[-1] == '\n') && p[n] == '\n') return 1;
    return 0;
}

#define assert_line(body, line) \
    do { if (!has_line(body, line)) fail_msg("missing line \"%s\" in:\n%s", line, body); } while (0)

static void test_pubsub(void **state)
{
    (void)state;
    struct transport *pub, *sub;
    assert_int_equal(transport_open(&pub, g_ctx, TRANSPORT_PUB, "inproc://ps", 1, NULL), 0);
    g_pub = pub;
    assert_int_equal(transport_open(&sub, g_ctx, TRANSPORT_SUB, "inproc://ps", 0, NULL), 0);
    g_sub = sub;
    struct wire_msg r;
    int got = 0;
    for (int i = 0; i < 200 && !got; i++) { /* until the subscription has reached the PUB */
        publish(pub, WIRE_METRICS, "trainer", json_pack("{s:f}", "loss", 1.5));
        got = transport_recv(sub, &r, NULL, 10);
    }
    assert_int_equal(got, 1);
    assert_int_equal(r.kind, WIRE_METRICS);
    assert_string_equal(r.stage, "trainer");
    assert_true(json_real_value(json_object_get(r.meta, "loss")) == 1.5);
    wire_msg_free(&r);
    assert_int_equal(transport_send(sub, &r, NULL, NULL, NULL), SUSHI_EINVAL);
    assert_int_equal(transport_recv(pub, &r, NULL, 0), SUSHI_EINVAL);
    transport_close(sub);
    transport_close(pub);
    g_pub = g_sub = NULL;
}

static const double LOSSES[] = { 2.5, 2.0, 1.75, 1.5, 1.3 };
#define NSTEPS (int)(sizeof LOSSES / sizeof LOSSES[0])

static void test_monitor_run(void **state)
{
    (void)state;
    if (access(g_bin, X_OK) != 0) skip();
    char ep[128], jsonl[128], report[128], port_s[16];
    snprintf(ep, sizeof ep, "ipc://%s/monitor.sock", g_dir);
    snprintf(jsonl, sizeof jsonl, "%s/run.jsonl", g_dir);
    snprintf(report, sizeof report, "%s/report.json", g_dir);
    int port = free_port();
    snprintf(port_s, sizeof port_s, "%d", port);
    char *argv[] = { NULL, "--bind", ep, "--jsonl", jsonl, "--http", port_s, "--report", report, NULL };
    pid_t pid = spawn_monitor("run", argv);

    struct transport *pub;
    for (int i = 0; i < 300 && http_status(port, "/") != 200; i++) sleep_ms(10);
    assert_int_equal(transport_open(&pub, g_ctx, TRANSPORT_PUB, ep, 0, NULL), 0);
    g_pub = pub;
    wait_subscribed(pub, port);

    for (int s = 0; s < NSTEPS; s++)
        publish(pub, WIRE_METRICS, "trainer",
                json_pack("{s:i,s:i,s:f,s:f,s:i,s:f}", "step", s + 1, "total_steps", 10, "loss", LOSSES[s],
                          "lr", 1e-3, "tokens_per_s", 1000 + s, "data_stall_s", 0.25));
    publish(pub, WIRE_METRICS, "loader", json_pack("{s:i,s:s}", "queue-batches", 7, "source", "text"));
    publish(pub, WIRE_EVAL, "eval", json_pack("{s:f,s:i}", "ppl", 12.5, "step", 5));
    static const char garbage[] = "\x81\xa1v\x07 not a wire header";
    assert_int_equal(zmq_send(transport_zsock(pub), garbage, sizeof garbage, 0), (int)sizeof garbage);

    char *body = NULL;
    for (int i = 0; i < 300; i++) { /* until the garbage has been counted */
        free(body);
        assert_int_equal(http_get(port, "/metrics", &body), 200);
        if (has_line(body, "sushi_monitor_bad_messages_total 1")) break;
        sleep_ms(10);
    }
    assert_line(body, "sushi_monitor_bad_messages_total 1");
    assert_line(body, "# TYPE sushi_loss gauge");
    assert_line(body, "sushi_loss{stage=\"trainer\"} 1.3");
    assert_line(body, "sushi_lr{stage=\"trainer\"} 0.001");
    assert_line(body, "sushi_step{stage=\"trainer\"} 5");
    assert_line(body, "sushi_tokens_per_s{stage=\"trainer\"} 1004");
    assert_line(body, "sushi_data_stall_s{stage=\"trainer\"} 0.25");
    assert_line(body, "sushi_queue_batches{stage=\"loader\"} 7");
    assert_line(body, "sushi_eval_ppl{stage=\"eval\"} 12.5");
    assert_line(body, "sushi_eval_step{stage=\"eval\"} 5");
    assert_line(body, "sushi_monitor_messages_total{kind=\"metrics\"} 6");
    assert_line(body, "sushi_monitor_messages_total{kind=\"eval\"} 1");
    assert_null(strstr(body, "source")); /* strings are not exported */
    free(body);
    assert_int_equal(http_get(port, "/nope", &body), 404);
    free(body);
    assert_int_equal(http_get(port, "/report", &body), 200);
    json_t *live = json_loads(body, 0, NULL);
    free(body);
    assert_non_null(live);
    assert_int_equal(json_integer_value(ju_get_path(live, "stages.trainer.loss.count")), NSTEPS);
    json_decref(live);

    publish(pub, WIRE_METRICS, "trainer", json_pack("{s:s,s:i}", "event", "end", "step", NSTEPS));
    assert_int_equal(wait_exit(pid, 5000), 0);
    transport_close(pub);
    g_pub = NULL;

    /* JSONL: every valid message, in order */
    FILE *f = fopen(jsonl, "r");
    assert_non_null(f);
    char line[4096];
    int nmetrics = 0, neval = 0, nend = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *rec = json_loads(line, 0, &err);
        if (!rec) fail_msg("%s: bad JSON line: %s", jsonl, err.text);
        const char *kind = json_string_value(json_object_get(rec, "kind"));
        const char *stage = json_string_value(json_object_get(rec, "stage"));
        json_t *meta = json_object_get(rec, "meta");
        assert_non_null(kind);
        assert_true(json_number_value(json_object_get(rec, "t")) > 1e9);
        if (strcmp(kind, "metrics") == 0 && strcmp(stage, "trainer") == 0) {
            if (json_object_get(meta, "event")) {
                nend++;
            } else {
                assert_true(nmetrics < NSTEPS);
                assert_int_equal(json_integer_value(json_object_get(meta, "step")), nmetrics + 1);
                assert_true(json_real_value(json_object_get(meta, "loss")) == LOSSES[nmetrics]);
                nmetrics++;
            }
        } else if (strcmp(kind, "eval") == 0) {
            assert_true(json_real_value(json_object_get(meta, "ppl")) == 12.5);
            neval++;
        }
        json_decref(rec);
    }
    fclose(f);
    assert_int_equal(nmetrics, NSTEPS);
    assert_int_equal(neval, 1);
    assert_int_equal(nend, 1);

    /* report: statistics computed here from the values sent */
    double sum = 0, mn = LOSSES[0], mx = LOSSES[0];
    for (int s = 0; s < NSTEPS; s++) {
        sum += LOSSES[s];
        mn = LOSSES[s] < mn ? LOSSES[s] : mn;
        mx = LOSSES[s] > mx ? LOSSES[s] : mx;
    }
    json_t *rep = json_load_file(report, 0, NULL);
    assert_non_null(rep);
    assert_float_equal(json_number_value(ju_get_path(rep, "stages.trainer.loss.mean")), sum / NSTEPS, 1e-12);
    assert_true(json_number_value(ju_get_path(rep, "stages.trainer.loss.min")) == mn);
    assert_true(json_number_value(ju_get_path(rep, "stages.trainer.loss.max")) == mx);
    assert_int_equal(json_integer_value(ju_get_path(rep, "stages.trainer.loss.count")), NSTEPS);
    assert_int_equal(json_integer_value(ju_get_path(rep, "stages.trainer.metrics.step")), NSTEPS);
    assert_int_equal(json_integer_value(ju_get_path(rep, "stages.loader.metrics.queue-batches")), 7);
    assert_int_equal(json_integer_value(ju_get_path(rep, "messages.metrics")), NSTEPS + 2);
    assert_int_equal(json_integer_value(json_object_get(rep, "bad_messages")), 1);
    json_t *evals = json_object_get(rep, "eval");
    assert_int_equal(json_array_size(evals), 1);
    assert_true(json_number_value(ju_get_path(json_array_get(evals, 0), "meta.ppl")) == 12.5);
    assert_true(json_number_value(json_object_get(rep, "duration_s")) > 0);
    json_decref(rep);
}

/* SIGTERM ends a run with a report; settings from a YAML config and a key.path=value
 * override; the JSONL file is appended to, never truncated. */
static void test_monitor_sigterm(void **state)
{
    (void)state;
    if (access(g_bin, X_OK) != 0) skip();
    char ep[128], jsonl[128], report[128];
    struct transport *pub;
    assert_int_equal(transport_open(&pub, g_ctx, TRANSPORT_PUB, "tcp://127.0.0.1:*", 1, NULL), 0);
    g_pub = pub;
    snprintf(ep, sizeof ep, "%s", transport_endpoint(pub));
    snprintf(jsonl, sizeof jsonl, "%s/term.jsonl", g_dir);
    snprintf(report, sizeof report, "%s/term.json", g_dir);
    FILE *f = fopen(jsonl, "w");
    fputs("{\"earlier\":1}\n", f);
    fclose(f);
    char cfg[128], port_s[40];
    snprintf(cfg, sizeof cfg, "%s/term.yaml", g_dir);
    f = fopen(cfg, "w"); /* the config gives jsonl, report and a port the override replaces */
    fprintf(f, "monitor:\n  jsonl: %s\n  report: %s\n  http:\n    port: 1\n", jsonl, report);
    fclose(f);
    int port = free_port();
    snprintf(port_s, sizeof port_s, "monitor.http.port=%d", port);
    char *argv[] = { NULL, "--config", cfg, "--connect", ep, port_s, NULL };
    pid_t pid = spawn_monitor("term", argv);
    for (int i = 0; i < 300 && http_status(port, "/") != 200; i++) sleep_ms(10);
    wait_subscribed(pub, port);
    publish(pub, WIRE_CHECKPOINT, "trainer", json_pack("{s:i}", "step", 40));
    char *body = NULL;
    for (int i = 0; i < 300; i++) {
        free(body);
        assert_int_equal(http_get(port, "/metrics", &body), 200);
        if (has_line(body, "sushi_checkpoint_step{stage=\"trainer\"} 40")) break;
        sleep_ms(10);
    }
    assert_line(body, "sushi_checkpoint_step{stage=\"trainer\"} 40");
    free(body);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid, 5000), 0);
    transport_close(pub);
    g_pub = NULL;
    f = fopen(jsonl, "r");
    char line[4096];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "{\"earlier\":1}\n");
    fclose(f);
    json_t *rep = json_load_file(report, 0, NULL);
    assert_non_null(rep);
    assert_int_equal(json_integer_value(ju_get_path(rep, "stages.trainer.checkpoint.step")), 40);
    assert_null(ju_get_path(rep, "stages.trainer.loss"));
    json_decref(rep);
}

/* Bad command lines and configs: exit status 2 and a message naming the cause. */
static void test_monitor_bad_args(void **state)
{
    (void)state;
    if (access(g_bin, X_OK) != 0) skip();
    char cfg[128], log[160];
    snprintf(cfg, sizeof cfg, "%s/bad.yaml", g_dir);
    FILE *f = fopen(cfg, "w");
    fputs("monitor:\n  connect: 5\n", f);
    fclose(f);
    struct { char *argv[6]; const char *needle; } cases[] = {
        { { NULL, NULL }, "no endpoint" },
        { { NULL, "--connect", "ipc:///tmp/x", "--http", "80x", NULL }, "--http 80x" },
        { { NULL, "--connect", "tcp://10.1.2.3:5", NULL }, "not loopback" },
        { { NULL, "--config", cfg, NULL }, "monitor.connect" },
        { { NULL, "--bogus", NULL }, "unknown argument --bogus" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pid_t pid = spawn_monitor("bad", cases[i].argv);
        int rc = wait_exit(pid, 5000);
        snprintf(log, sizeof log, "%s/bad.log", g_dir);
        f = fopen(log, "r");
        char text[2048] = { 0 };
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = 0;
        fclose(f);
        if (!strstr(text, cases[i].needle)) fail_msg("case %zu: expected \"%s\" in: %s", i, cases[i].needle, text);
        assert_int_not_equal(rc, 0);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    char self[PATH_MAX];
    snprintf(self, sizeof self, "%s", argv[0]);
    snprintf(g_bin, sizeof g_bin, "%s/../bin/sushi-monitor", dirname(self));
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_pubsub, cleanup),
        cmocka_unit_test_teardown(test_monitor_run, cleanup),
        cmocka_unit_test_teardown(test_monitor_sigterm, cleanup),
        cmocka_unit_test_teardown(test_monitor_bad_args, cleanup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
