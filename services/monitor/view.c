/* Terminal view of the monitor: on a TTY a screen redrawn at most 4x/s (progress bar
 * with ETA, loss, learning rate, tokens/s, data-stall time, then every stage's values
 * — queue depths among them — and the latest eval results); otherwise one plain line
 * per metrics, eval or checkpoint message. */
#include "services/monitor/monitor.h"

#include <string.h>

#define MONITOR_VIEW_PERIOD_S 0.25
#define MONITOR_VIEW_WIDTH 160

void monitor_view_init(struct monitor_view *v, FILE *out, int tty)
{
    memset(v, 0, sizeof *v);
    v->out = out;
    v->tty = tty;
    v->t0 = -1;
}

/* "k=v k=v ..." of the flat values of obj, cut at cap bytes. */
static void monitor_view_pairs(char *buf, size_t cap, const json_t *obj)
{
    size_t n = 0;
    buf[0] = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        char val[64];
        if (json_is_string(v)) snprintf(val, sizeof val, "%s", json_string_value(v));
        else if (json_is_integer(v)) snprintf(val, sizeof val, "%lld", (long long)json_integer_value(v));
        else if (json_is_boolean(v)) snprintf(val, sizeof val, "%s", json_is_true(v) ? "true" : "false");
        else if (json_is_real(v)) monitor_fmt_double(val, sizeof val, json_real_value(v));
        else continue;
        int w = snprintf(buf + n, cap - n, "%s%s=%s", n ? " " : "", key, val);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
}

static void monitor_view_progress(struct monitor_view *v, const struct wire_msg *msg, double now)
{
    json_t *step = json_object_get(msg->meta, "step"), *total = json_object_get(msg->meta, "total_steps");
    if (msg->kind != WIRE_METRICS || !json_is_number(step) || !json_is_number(total)) return;
    if (v->progress_stage[0] && strcmp(v->progress_stage, msg->stage) != 0) return; /* first one wins */
    snprintf(v->progress_stage, sizeof v->progress_stage, "%s", msg->stage);
    v->step = json_number_value(step);
    v->total = json_number_value(total);
    if (v->t0 < 0 || v->step < v->step0) {
        v->t0 = now;
        v->step0 = v->step;
    }
}

static void monitor_view_num(FILE *f, const json_t *sec, const char *key, const char *label,
                             const char *unit)
{
    json_t *x = json_object_get(sec, key);
    if (!json_is_number(x)) return;
    char val[64];
    monitor_fmt_double(val, sizeof val, json_number_value(x));
    fprintf(f, "  %s %s%s", label, val, unit);
}

void monitor_view_draw(struct monitor_view *v, struct monitor *m, double now)
{
    FILE *f = v->out;
    v->last_draw = now;
    pthread_mutex_lock(&m->lock);
    uint64_t total_msgs = 0;
    for (int k = 0; k < WIRE_KIND_COUNT; k++) total_msgs += m->kinds[k];
    fprintf(f, "\033[H\033[J sushi-monitor  up %.0f s  messages %llu  bad %llu\n", now - m->t_start,
            (unsigned long long)total_msgs, (unsigned long long)m->bad);
    if (v->total > 0) {
        double frac = v->step / v->total;
        if (frac < 0) frac = 0;
        if (frac > 1) frac = 1;
        char bar[41];
        int fill = (int)(frac * 40);
        for (int i = 0; i < 40; i++) bar[i] = i < fill ? '#' : '-';
        bar[40] = 0;
        fprintf(f, " [%s] %5.1f%%  step %.0f/%.0f", bar, 100 * frac, v->step, v->total);
        if (v->step > v->step0 && now > v->t0) {
            double eta = (v->total - v->step) * (now - v->t0) / (v->step - v->step0);
            fprintf(f, "  ETA %d:%02d:%02d", (int)(eta / 3600), (int)(eta / 60) % 60, (int)eta % 60);
        }
        fputc('\n', f);
        json_t *sec = json_object_get(json_object_get(m->stages, v->progress_stage), "metrics");
        fprintf(f, " %s", v->progress_stage);
        monitor_view_num(f, sec, "loss", "loss", "");
        monitor_view_num(f, sec, "lr", "lr", "");
        monitor_view_num(f, sec, "tokens_per_s", "tokens/s", "");
        monitor_view_num(f, sec, "data_stall_s", "data stall", " s");
        fputc('\n', f);
    }
    const char *name;
    json_t *st;
    char line[MONITOR_VIEW_WIDTH];
    json_object_foreach(m->stages, name, st) {
        monitor_view_pairs(line, sizeof line, json_object_get(st, "metrics"));
        if (line[0]) fprintf(f, " %-10s %s\n", name, line);
        monitor_view_pairs(line, sizeof line, json_object_get(st, "eval"));
        if (line[0]) fprintf(f, " %-10s eval: %s\n", name, line);
    }
    pthread_mutex_unlock(&m->lock);
    fflush(f);
}

void monitor_view_update(struct monitor_view *v, struct monitor *m, const struct wire_msg *msg,
                         double now)
{
    if (!v || !m) return;
    if (msg) monitor_view_progress(v, msg, now);
    if (v->tty) {
        if (now - v->last_draw >= MONITOR_VIEW_PERIOD_S) monitor_view_draw(v, m, now);
        return;
    }
    if (!msg || (msg->kind != WIRE_METRICS && msg->kind != WIRE_EVAL && msg->kind != WIRE_CHECKPOINT)) return;
    char line[MONITOR_VIEW_WIDTH * 4];
    monitor_view_pairs(line, sizeof line, msg->meta);
    fprintf(v->out, "%s %s: %s\n", msg->stage, wire_kind_name(msg->kind), line);
    fflush(v->out);
}
