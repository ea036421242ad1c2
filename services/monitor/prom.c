/* Prometheus text exposition of the monitor state: every numeric (or boolean) value a
 * stage reported becomes a gauge `sushi_<key>{stage="<stage>"}` (eval values
 * `sushi_eval_<key>`, checkpoint values `sushi_checkpoint_<key>`), names sanitized to
 * [a-zA-Z0-9_], label values escaped; plus the monitor's own counters. */
#include "services/monitor/monitor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"

#define MONITOR_NAME_MAX 192

void monitor_fmt_double(char *buf, size_t cap, double v)
{
    if (isnan(v)) { snprintf(buf, cap, "NaN"); return; }
    if (isinf(v)) { snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf"); return; }
    if (v > -1e15 && v < 1e15 && v == (double)(long long)v) { /* 5000, not 5e+03 */
        snprintf(buf, cap, "%lld", (long long)v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static void monitor_fmt_value(char *buf, size_t cap, const json_t *v)
{
    if (json_is_integer(v)) snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v)) snprintf(buf, cap, "%d", json_is_true(v));
    else monitor_fmt_double(buf, cap, json_number_value(v));
}

/* "sushi_" + prefix + key with every character outside [a-zA-Z0-9_] replaced by '_'. */
static void monitor_metric_name(char *buf, size_t cap, const char *prefix, const char *key)
{
    int n = snprintf(buf, cap, "sushi_%s%s", prefix, key);
    if (n < 0) n = 0;
    for (size_t i = 6; buf[i]; i++) {
        char c = buf[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            buf[i] = '_';
    }
}

/* A label value with \, " and newline escaped. */
static void monitor_put_label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\') fputs("\\\\", f);
        else if (*s == '"') fputs("\\\"", f);
        else if (*s == '\n') fputs("\\n", f);
        else fputc(*s, f);
    }
}

/* {metric name: {stage: value}} over every stage's metrics, eval and checkpoint values;
 * when two keys sanitize to the same name the first one wins. */
static json_t *monitor_collect(const json_t *stages)
{
    static const char *const secs[][2] = { { "metrics", "" }, { "eval", "eval_" }, { "checkpoint", "checkpoint_" } };
    json_t *by_name = json_object();
    const char *stage, *key;
    json_t *st, *v;
    json_object_foreach((json_t *)stages, stage, st) {
        for (size_t s = 0; s < sizeof secs / sizeof secs[0]; s++) {
            json_object_foreach(json_object_get(st, secs[s][0]), key, v) {
                if (!json_is_number(v) && !json_is_boolean(v)) continue;
                char name[MONITOR_NAME_MAX];
                monitor_metric_name(name, sizeof name, secs[s][1], key);
                json_t *series = json_object_get(by_name, name);
                if (!series) json_object_set_new(by_name, name, series = json_object());
                if (series && !json_object_get(series, stage)) json_object_set(series, stage, v);
            }
        }
    }
    return by_name;
}

static int monitor_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void monitor_put_series(FILE *f, const char *name, const json_t *series)
{
    size_t n = json_object_size(series), i = 0;
    const char **stages = malloc((n ? n : 1) * sizeof *stages);
    if (!stages) return;
    const char *stage;
    json_t *v;
    json_object_foreach((json_t *)series, stage, v) stages[i++] = stage;
    qsort(stages, n, sizeof *stages, monitor_cmp_str);
    fprintf(f, "# HELP %s value reported by a stage (meta key of metrics/eval/checkpoint messages)\n", name);
    fprintf(f, "# TYPE %s gauge\n", name);
    for (i = 0; i < n; i++) {
        char val[64];
        monitor_fmt_value(val, sizeof val, json_object_get(series, stages[i]));
        fprintf(f, "%s{stage=\"", name);
        monitor_put_label(f, stages[i]);
        fprintf(f, "\"} %s\n", val);
    }
    free(stages);
}

int monitor_prometheus(struct monitor *m, double now, char **out, size_t *len)
{
    if (!m || !out || !len) return sushi_error(SUSHI_EINVAL, "monitor_prometheus: NULL argument");
    *out = NULL;
    *len = 0;
    FILE *f = open_memstream(out, len);
    if (!f) return sushi_error(SUSHI_ENOMEM, "monitor_prometheus: out of memory");
    pthread_mutex_lock(&m->lock);
    json_t *by_name = monitor_collect(m->stages);
    uint64_t kinds[WIRE_KIND_COUNT], bad = m->bad;
    memcpy(kinds, m->kinds, sizeof kinds);
    double t0 = m->t_start;
    if (by_name) { /* values are shared with m->stages: render before unlocking */
        size_t n = json_object_size(by_name), i = 0;
        const char **names = malloc((n ? n : 1) * sizeof *names);
        const char *name;
        json_t *series;
        json_object_foreach(by_name, name, series) if (names) names[i++] = name;
        if (names) {
            qsort(names, n, sizeof *names, monitor_cmp_str);
            for (i = 0; i < n; i++) monitor_put_series(f, names[i], json_object_get(by_name, names[i]));
        }
        free(names);
    }
    pthread_mutex_unlock(&m->lock);
    json_decref(by_name);
    fputs("# HELP sushi_monitor_messages_total valid messages received by the monitor, by kind\n"
          "# TYPE sushi_monitor_messages_total counter\n", f);
    for (int k = 0; k < WIRE_KIND_COUNT; k++)
        fprintf(f, "sushi_monitor_messages_total{kind=\"%s\"} %llu\n", wire_kind_name(k),
                (unsigned long long)kinds[k]);
    fprintf(f, "# HELP sushi_monitor_bad_messages_total invalid messages dropped\n"
               "# TYPE sushi_monitor_bad_messages_total counter\n"
               "sushi_monitor_bad_messages_total %llu\n", (unsigned long long)bad);
    char up[64];
    monitor_fmt_double(up, sizeof up, now - t0);
    fprintf(f, "# HELP sushi_monitor_uptime_seconds seconds since the monitor started\n"
               "# TYPE sushi_monitor_uptime_seconds gauge\n"
               "sushi_monitor_uptime_seconds %s\n", up);
    if (fclose(f) != 0 || !*out) {
        free(*out);
        *out = NULL;
        return sushi_error(SUSHI_ENOMEM, "monitor_prometheus: out of memory");
    }
    return SUSHI_OK;
}
