/* sushi-eval's settings from the run config: the `eval` section (held-out data, batch
 * count, teacher, watched directory, passkey grid, backend), plus endpoints.events,
 * run.dir and the defaults it takes from `data` and `teacher`. */
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/core/log.h"
#include "services/eval/eval.h"

/* eval.data with tokenizer, seq_len and batch_size taken from data: when absent, and
 * needle_share 0 unless given */
static int eval_data_config(const json_t *root, const char *file, struct data_config *out) {
    const json_t *ed = ju_get_path(root, "eval.data");
    if (!ed || json_is_null(ed))
        return sushi_error(SUSHI_EINVAL, "%s: eval.data: required (the held-out sources, same "
                           "schema as data:)", file);
    if (!json_is_object(ed)) return sushi_error(SUSHI_EINVAL, "%s: eval.data: expected a map", file);
    json_t *merged = json_deep_copy(ed);
    if (!merged) return sushi_error(SUSHI_ENOMEM, "%s: eval.data: out of memory", file);
    const json_t *data = json_object_get(root, "data");
    static const char *const inherit[] = {"tokenizer", "seq_len", "batch_size"};
    for (size_t i = 0; i < sizeof inherit / sizeof *inherit; i++) {
        json_t *v = json_is_object(data) ? json_object_get(data, inherit[i]) : NULL;
        json_t *own = json_object_get(merged, inherit[i]);
        if (v && (!own || json_is_null(own))) json_object_set(merged, inherit[i], v);
    }
    /* the passkey grid measures retrieval separately: held-out rows are text unless asked */
    if (!json_object_get(merged, "needle_share")) json_object_set_new(merged, "needle_share", json_real(0.0));
    char where[4096];
    snprintf(where, sizeof where, "%s (eval.data)", file);
    int rc = data_config_from_json(out, merged, where);
    json_decref(merged);
    return rc;
}

/* a list of numbers at eval.needle.KEY into ints or doubles */
static int eval_number_list(const json_t *needle, const char *file, const char *key, int *ints,
                            double *dbls, int *n) {
    const json_t *v = json_object_get(needle, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > EVAL_NEEDLE_MAX)
        return sushi_error(SUSHI_EINVAL, "%s: eval.needle.%s: expected a list of 1 to %d numbers",
                           file, key, EVAL_NEEDLE_MAX);
    size_t i;
    json_t *e;
    *n = 0;
    json_array_foreach(v, i, e) {
        if (ints) {
            if (!json_is_integer(e) || json_integer_value(e) < 8 || json_integer_value(e) > (1 << 20))
                return sushi_error(SUSHI_EINVAL, "%s: eval.needle.%s[%zu]: expected an integer "
                                   "length in [8, 1048576]", file, key, i);
            ints[i] = (int)json_integer_value(e);
        } else {
            if (!json_is_number(e) || !(json_number_value(e) >= 0.0 && json_number_value(e) <= 1.0))
                return sushi_error(SUSHI_EINVAL, "%s: eval.needle.%s[%zu]: expected a depth in "
                                   "[0, 1]", file, key, i);
            dbls[i] = json_number_value(e);
        }
        (*n)++;
    }
    return 0;
}

static int eval_needle_config(const json_t *root, const char *file, struct eval_needle_config *n) {
    static const char *const known[] = {"lengths", "depths", "trials", "seed", NULL};
    memset(n, 0, sizeof *n);
    n->seed = 1234;
    json_t *needle = ju_get_path(root, "eval.needle");
    if (!needle || json_is_null(needle)) return 0;
    struct ju_where w = {file, "eval.needle"};
    long long seed = (long long)n->seed;
    int rc;
    if (!json_is_object(needle)) return sushi_error(SUSHI_EINVAL, "%s: eval.needle: expected a map", file);
    n->trials = 2;
    n->n_depths = 1;
    n->depths[0] = 0.5;
    if ((rc = ju_check_keys(needle, w, known)) || (rc = ju_int(needle, w, "trials", 0, 0, 10000, &n->trials)) ||
        (rc = ju_int64(needle, w, "seed", 0, &seed)) ||
        (rc = eval_number_list(needle, file, "lengths", n->lengths, NULL, &n->n_lengths)) ||
        (rc = eval_number_list(needle, file, "depths", NULL, n->depths, &n->n_depths)))
        return rc;
    if (n->trials > 0 && n->n_lengths == 0)
        return sushi_error(SUSHI_EINVAL, "%s: eval.needle.lengths: required when trials > 0", file);
    n->seed = (uint64_t)seed;
    return 0;
}

/* an optional string at `path`, empty meaning absent */
static int eval_opt_string(const json_t *root, const char *file, const char *path, const char **out) {
    const char *s = NULL;
    int rc = config_get_string(root, file, path, 0, &s);
    if (rc) return rc;
    if (s && *s) *out = s;
    return 0;
}

/* eval.teacher: "" (given, empty) turns the teacher metrics off */
static int eval_no_teacher(const json_t *root, const char *file, const char **teacher) {
    const char *s = NULL;
    int rc = config_get_string(root, file, "eval.teacher", 0, &s);
    if (!rc && s && !*s) *teacher = NULL;
    return rc;
}

int eval_config_load(const json_t *root, const char *file, struct eval_config *c) {
    static const char *const known[] = {"data", "batches", "teacher", "watch", "needle", "backend",
                                        "threads", "heartbeat_ms", "kd_cache_mb", NULL};
    if (!root || !file || !c) return sushi_error(SUSHI_EINVAL, "eval_config_load: NULL argument");
    memset(c, 0, sizeof *c);
    data_config_defaults(&c->data);
    c->batches = 4;
    c->backend = "cpu";
    c->heartbeat_ms = 1000;
    c->kd_cache_mb = 1024;
    json_t *ev = json_object_get(root, "eval");
    if (!json_is_object(ev))
        return sushi_error(SUSHI_EINVAL, "%s: eval: required section (eval.data names the held-out "
                           "sources)", file);
    struct ju_where w = {file, "eval"};
    long long kd_mb = c->kd_cache_mb;
    int rc;
    if ((rc = ju_check_keys(ev, w, known)) || (rc = ju_int(ev, w, "batches", 0, 1, 1 << 20, &c->batches)) ||
        (rc = ju_int(ev, w, "threads", 0, 0, 1024, &c->threads)) ||
        (rc = ju_int(ev, w, "heartbeat_ms", 0, 10, 3600000, &c->heartbeat_ms)) ||
        (rc = ju_int64(ev, w, "kd_cache_mb", 0, &kd_mb)) ||
        (rc = eval_opt_string(root, file, "teacher.checkpoint", &c->teacher)) ||
        (rc = eval_opt_string(root, file, "eval.teacher", &c->teacher)) ||
        (rc = eval_no_teacher(root, file, &c->teacher)) ||
        (rc = eval_opt_string(root, file, "eval.watch", &c->watch)) ||
        (rc = eval_opt_string(root, file, "eval.backend", &c->backend)) ||
        (rc = eval_opt_string(root, file, "endpoints.events", &c->events)) ||
        (rc = config_get_bool(root, file, "endpoints.allow_remote", 0, &c->allow_remote)) ||
        (rc = eval_opt_string(root, file, "run.dir", &c->run_dir)) ||
        (rc = eval_needle_config(root, file, &c->needle)))
        goto fail;
    if (kd_mb < 0) { rc = sushi_error(SUSHI_EINVAL, "%s: eval.kd_cache_mb: expected >= 0", file); goto fail; }
    c->kd_cache_mb = kd_mb;
    if ((rc = eval_data_config(root, file, &c->data))) goto fail;
    return 0;
fail:
    eval_config_free(c);
    return rc;
}

void eval_config_free(struct eval_config *c) {
    if (c) data_config_free(&c->data);
}
