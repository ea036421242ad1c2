/* Monitor state: folds metrics, eval and checkpoint messages into per-stage last values
 * and loss statistics; writes JSONL records and the end-of-run JSON report. */
#include "services/monitor/monitor.h"

#include <errno.h>
#include <string.h>

#include "common/core/log.h"

int monitor_init(struct monitor *m)
{
    if (!m) return sushi_error(SUSHI_EINVAL, "monitor_init: NULL argument");
    memset(m, 0, sizeof *m);
    m->stages = json_object();
    m->evals = json_array();
    if (!m->stages || !m->evals) {
        json_decref(m->stages);
        json_decref(m->evals);
        return sushi_error(SUSHI_ENOMEM, "monitor_init: out of memory");
    }
    pthread_mutex_init(&m->lock, NULL);
    return SUSHI_OK;
}

void monitor_free(struct monitor *m)
{
    if (!m || !m->stages) return;
    json_decref(m->stages);
    json_decref(m->evals);
    pthread_mutex_destroy(&m->lock);
    m->stages = m->evals = NULL;
}

/* obj[key] as an object, created when absent (NULL when out of memory). */
static json_t *monitor_child(json_t *obj, const char *key)
{
    json_t *c = json_object_get(obj, key);
    if (json_is_object(c)) return c;
    c = json_object();
    if (!c || json_object_set_new(obj, key, c)) return NULL;
    return c;
}

static void monitor_loss_add(json_t *stage, double loss)
{
    json_t *l = json_object_get(stage, "loss");
    if (!json_is_object(l)) {
        json_object_set_new(stage, "loss", json_pack("{s:f,s:f,s:f,s:I}", "min", loss, "max", loss,
                                                     "sum", loss, "count", (json_int_t)1));
        return;
    }
    double mn = json_number_value(json_object_get(l, "min"));
    double mx = json_number_value(json_object_get(l, "max"));
    double sum = json_number_value(json_object_get(l, "sum"));
    json_int_t n = json_integer_value(json_object_get(l, "count"));
    json_object_set_new(l, "min", json_real(loss < mn ? loss : mn));
    json_object_set_new(l, "max", json_real(loss > mx ? loss : mx));
    json_object_set_new(l, "sum", json_real(sum + loss));
    json_object_set_new(l, "count", json_integer(n + 1));
}

int monitor_ingest(struct monitor *m, const struct wire_msg *msg, double now)
{
    if (!m || !msg || (int)msg->kind < 0 || msg->kind >= WIRE_KIND_COUNT)
        return sushi_error(SUSHI_EINVAL, "monitor_ingest: NULL argument or invalid kind");
    const char *ev = json_string_value(json_object_get(msg->meta, "event"));
    int end = ev && strcmp(ev, "end") == 0;
    pthread_mutex_lock(&m->lock);
    m->kinds[msg->kind]++;
    int rc = SUSHI_OK;
    if (msg->kind == WIRE_METRICS || msg->kind == WIRE_EVAL || msg->kind == WIRE_CHECKPOINT) {
        json_t *stage = monitor_child(m->stages, msg->stage);
        json_t *sec = stage ? monitor_child(stage, wire_kind_name(msg->kind)) : NULL;
        if (!sec) {
            rc = sushi_error(SUSHI_ENOMEM, "monitor: out of memory");
            goto out;
        }
        const char *key;
        json_t *v;
        json_object_foreach(msg->meta, key, v) /* flat values only; nested ones stay in the JSONL */
            if (json_is_number(v) || json_is_string(v) || json_is_boolean(v)) json_object_set(sec, key, v);
        json_int_t n = json_integer_value(json_object_get(stage, "messages"));
        json_object_set_new(stage, "messages", json_integer(n + 1));
        json_object_set_new(stage, "updated", json_real(now));
        json_t *loss = json_object_get(msg->meta, "loss");
        if (msg->kind == WIRE_METRICS && json_is_number(loss)) monitor_loss_add(stage, json_number_value(loss));
        if (msg->kind == WIRE_EVAL) {
            if (json_array_size(m->evals) >= MONITOR_EVALS_MAX) json_array_remove(m->evals, 0);
            json_array_append_new(m->evals, json_pack("{s:s,s:I,s:f,s:o}", "stage", msg->stage, "id",
                                                      (json_int_t)msg->id, "t", now, "meta",
                                                      msg->meta ? json_incref(msg->meta) : json_object()));
        }
    }
out:
    pthread_mutex_unlock(&m->lock);
    return rc ? rc : end;
}

void monitor_set_bad(struct monitor *m, uint64_t bad)
{
    if (!m) return;
    pthread_mutex_lock(&m->lock);
    m->bad = bad;
    pthread_mutex_unlock(&m->lock);
}

json_t *monitor_msg_json(const struct wire_msg *msg, double now)
{
    if (!msg) return NULL;
    json_t *tensors = json_array();
    for (int i = 0; tensors && i < msg->ntensors; i++) {
        const struct wire_tensor *w = &msg->tensors[i];
        json_t *shape = json_array();
        for (int d = 0; shape && d < w->ndim; d++) json_array_append_new(shape, json_integer(w->shape[d]));
        json_array_append_new(tensors, json_pack("{s:s,s:s,s:o}", "name", w->name, "dtype",
                                                 dtype_name(w->dtype), "shape", shape));
    }
    return json_pack("{s:f,s:s,s:s,s:I,s:I,s:I,s:O,s:o}", "t", now, "kind", wire_kind_name(msg->kind),
                     "stage", msg->stage, "id", (json_int_t)msg->id, "epoch", (json_int_t)msg->epoch,
                     "cursor", (json_int_t)msg->cursor, "meta", msg->meta ? msg->meta : json_null(),
                     "tensors", tensors);
}

int monitor_jsonl_write(FILE *f, const char *path, const struct wire_msg *msg, double now)
{
    if (!f || !msg) return sushi_error(SUSHI_EINVAL, "monitor_jsonl_write: NULL argument");
    json_t *rec = monitor_msg_json(msg, now);
    char *line = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (!line) return sushi_error(SUSHI_ENOMEM, "%s: cannot encode a %s message", path, wire_kind_name(msg->kind));
    int bad = fprintf(f, "%s\n", line) < 0 || fflush(f) != 0;
    free(line);
    if (bad) return sushi_error(SUSHI_EIO, "%s: write failed: %s", path, strerror(errno));
    return SUSHI_OK;
}

json_t *monitor_report(struct monitor *m, double now)
{
    if (!m) return NULL;
    pthread_mutex_lock(&m->lock);
    json_t *stages = json_deep_copy(m->stages);
    json_t *evals = json_deep_copy(m->evals);
    json_t *kinds = json_object();
    for (int k = 0; kinds && k < WIRE_KIND_COUNT; k++)
        if (m->kinds[k]) json_object_set_new(kinds, wire_kind_name(k), json_integer((json_int_t)m->kinds[k]));
    uint64_t bad = m->bad;
    double t0 = m->t_start;
    pthread_mutex_unlock(&m->lock);
    const char *name;
    json_t *st;
    json_object_foreach(stages, name, st) { /* running sum -> mean */
        json_t *l = json_object_get(st, "loss");
        if (!json_is_object(l)) continue;
        json_int_t n = json_integer_value(json_object_get(l, "count"));
        json_object_set_new(l, "mean", json_real(json_number_value(json_object_get(l, "sum")) / (double)n));
        json_object_del(l, "sum");
    }
    return json_pack("{s:f,s:f,s:f,s:o,s:I,s:o,s:o}", "started", t0, "ended", now, "duration_s", now - t0,
                     "messages", kinds, "bad_messages", (json_int_t)bad, "stages", stages, "eval", evals);
}

int monitor_report_write(struct monitor *m, const char *path, double now)
{
    if (!m || !path) return sushi_error(SUSHI_EINVAL, "monitor_report_write: NULL argument");
    json_t *r = monitor_report(m, now);
    if (!r) return sushi_error(SUSHI_ENOMEM, "%s: cannot build the report", path);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = json_dump_file(r, tmp, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(r);
    if (rc != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return sushi_error(SUSHI_EIO, "%s: cannot write the report: %s", path, strerror(errno));
    }
    return SUSHI_OK;
}
