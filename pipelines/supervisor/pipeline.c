/* A pipeline file: YAML (common/config) -> struct sup_pipeline, with ${var} substitution
 * and validation whose messages name the file and the field.
 *
 *   pipeline:
 *     name: distill
 *     vars: { run: runs/distill, teacher: "${run}/teacher", common: [ "run.dir=${run}" ] }
 *     run_dir: "${run}"            # default: ${run} when that var exists, else runs/NAME
 *     publish: [ "ipc://${run}/monitor.sock" ]   # more SUSHI_PUBLISH endpoints
 *     results: "${run}/eval.jsonl"  # eval results file: its last line is the summary's last eval
 *     start_timeout_s: 60  stop_grace_s: 5  max_restarts: 5
 *     backoff: { initial_s: 0.5, max_s: 10 }
 *     phases:
 *       - name: distill
 *         skip_if_exists: "${run}/done"
 *         promote: { from: "${run}/tmp", to: "${run}/final", copy: [ FILE ] }  # rename, copy in
 *         stages:
 *           - { name: trainer, program: trainer, args: [--config, "${config}", "${common}"],
 *               main: true, replicas: 1, console: false, ready: heartbeat, env: { K: v } }
 *
 * A var's value is a string, a number or a list; "${x}" as a whole argument with a list
 * value becomes one argument per element. Vars may use other vars; "$$" is a "$". A var
 * { json: FILE, key: a.b } is the value at that key of a JSON file, read when the phase
 * using it starts (an earlier phase may write FILE; until then --print-commands shows
 * "<KEY of FILE>"), e.g. { json: "${teacher}/config.json", key: vocab_size }. */
#include "pipelines/supervisor/supervisor.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config/config.h"
#include "common/core/fsutil.h"
#include "common/core/log.h"

#define SUP_MAX_DEPTH 16

struct sup_ctx {
    const char *file;
    const json_t *vars;
    int strict;             /* a { json, key } var whose file is missing is an error (else a placeholder) */
};

/* A growing string. */
struct sbuf {
    char *s;
    size_t n, cap;
};

static int sb_add(struct sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *t = realloc(b->s, cap);
        if (!t) return sushi_error(SUSHI_ENOMEM, "pipeline: out of memory");
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return SUSHI_OK;
}

static int sup_expand_into(const struct sup_ctx *c, const char *in, const char *where, int depth, struct sbuf *b);

/* A var { json: FILE, key: a.b.c }: the value at that path of a JSON file, read when the
 * phase that uses it starts (an earlier phase may write the file). */
static int sup_expand_json_var(const struct sup_ctx *c, const json_t *v, const char *name, const char *where,
                               int depth, struct sbuf *b) {
    const char *file = json_string_value(json_object_get(v, "json"));
    const char *key = json_string_value(json_object_get(v, "key"));
    if (!file || !key || json_object_size(v) != 2)
        return sushi_error(SUSHI_EINVAL, "%s: pipeline.vars.%s: a map var must be { json: FILE, key: PATH }",
                           c->file, name);
    struct sbuf pb = {0};
    int rc = sup_expand_into(c, file, where, depth + 1, &pb);
    if (rc) {
        free(pb.s);
        return rc;
    }
    char text[512];
    json_error_t err;
    json_t *j = fs_exists(pb.s) ? json_load_file(pb.s, 0, &err) : NULL;
    const json_t *x = j ? ju_get_path(j, key) : NULL;
    if (json_is_integer(x)) snprintf(text, sizeof text, "%lld", (long long)json_integer_value(x));
    else if (json_is_real(x)) snprintf(text, sizeof text, "%.9g", json_real_value(x));
    else if (json_is_string(x)) snprintf(text, sizeof text, "%s", json_string_value(x));
    else if (!fs_exists(pb.s) && !c->strict) snprintf(text, sizeof text, "<%s of %s>", key, pb.s);
    else if (!fs_exists(pb.s))
        rc = sushi_error(SUSHI_ENOTFOUND, "%s: %s: ${%s}: %s: missing", c->file, where, name, pb.s);
    else if (!j) rc = sushi_error(SUSHI_EFORMAT, "%s: %s: ${%s}: %s: %s", c->file, where, name, pb.s, err.text);
    else
        rc = sushi_error(SUSHI_EFORMAT, "%s: %s: ${%s}: %s: %s: no number or string there", c->file, where, name,
                         pb.s, key);
    json_decref(j);
    free(pb.s);
    return rc ? rc : sb_add(b, text, strlen(text));
}

/* A scalar var value as text, expanded in turn. */
static int sup_expand_value(const struct sup_ctx *c, const json_t *v, const char *name, const char *where, int depth,
                            struct sbuf *b) {
    char num[64];
    if (json_is_string(v)) return sup_expand_into(c, json_string_value(v), where, depth + 1, b);
    if (json_is_integer(v)) snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) snprintf(num, sizeof num, "%.9g", json_real_value(v));
    else if (json_is_boolean(v)) snprintf(num, sizeof num, "%s", json_is_true(v) ? "true" : "false");
    else if (json_is_object(v)) return sup_expand_json_var(c, v, name, where, depth, b);
    else
        return sushi_error(SUSHI_EINVAL, "%s: %s: ${%s} is a %s, usable only as a whole argument", c->file, where,
                           name, json_is_array(v) ? "list" : "map or null");
    return sb_add(b, num, strlen(num));
}

static int sup_expand_into(const struct sup_ctx *c, const char *in, const char *where, int depth, struct sbuf *b) {
    if (depth > SUP_MAX_DEPTH)
        return sushi_error(SUSHI_EINVAL, "%s: %s: vars nest deeper than %d (a var refers to itself?)", c->file, where,
                           SUP_MAX_DEPTH);
    int rc = sb_add(b, "", 0);
    for (const char *p = in; !rc && *p;) {
        const char *d = strchr(p, '$');
        if (!d) return sb_add(b, p, strlen(p));
        if ((rc = sb_add(b, p, (size_t)(d - p)))) break;
        if (d[1] == '$') {
            rc = sb_add(b, "$", 1);
            p = d + 2;
            continue;
        }
        const char *end = d[1] == '{' ? strchr(d + 2, '}') : NULL;
        if (!end || end == d + 2)
            return sushi_error(SUSHI_EINVAL, "%s: %s: \"%s\": expected ${NAME} after $ (write $$ for a dollar)",
                               c->file, where, in);
        char name[SUP_NAME_MAX];
        snprintf(name, sizeof name, "%.*s", (int)(end - d - 2), d + 2);
        const json_t *v = json_object_get(c->vars, name);
        if (!v)
            return sushi_error(SUSHI_EINVAL, "%s: %s: unknown variable ${%s} (pipeline.vars has no %s)", c->file,
                               where, name, name);
        rc = sup_expand_value(c, v, name, where, depth, b);
        p = end + 1;
    }
    return rc;
}

/* *out = in with every ${var} substituted (malloc'd). */
static int sup_expand(const struct sup_ctx *c, const char *in, const char *where, char **out) {
    struct sbuf b = {0};
    int rc = sup_expand_into(c, in, where, 0, &b);
    if (rc) {
        free(b.s);
        return rc;
    }
    *out = b.s;
    return SUSHI_OK;
}

/* An optional string field, expanded; *out stays NULL when absent. */
static int sup_string_field(const struct sup_ctx *c, const json_t *obj, const char *path, const char *key,
                            int required, char **out) {
    const char *s = NULL;
    struct ju_where w = {c->file, path};
    int rc = ju_string(obj, w, key, required, &s);
    if (rc || !s) return rc;
    char where[256];
    return sup_expand(c, s, ju_key_path(where, sizeof where, w, key), out);
}

static int sup_push(char ***v, int *n, char *s) {
    char **t = realloc(*v, (size_t)(*n + 2) * sizeof **v);
    if (!t) {
        free(s);
        return sushi_error(SUSHI_ENOMEM, "pipeline: out of memory");
    }
    *v = t;
    t[(*n)++] = s;
    t[*n] = NULL;
    return SUSHI_OK;
}

/* A scalar list element or arg as text (numbers allowed: args: [--steps, 20]). */
static int sup_scalar_arg(const struct sup_ctx *c, const json_t *v, const char *where, char **out) {
    if (json_is_string(v)) return sup_expand(c, json_string_value(v), where, out);
    struct sbuf b = {0};
    int rc = sup_expand_value(c, v, "(value)", where, 0, &b);
    if (rc) {
        free(b.s);
        return sushi_error(SUSHI_EINVAL, "%s: %s: expected a string or a number", c->file, where);
    }
    *out = b.s;
    return SUSHI_OK;
}

/* One `args` element: a scalar, or "${list}" expanding to several arguments (a list's
 * elements may be "${list}" in turn). */
static int sup_add_arg(const struct sup_ctx *c, const json_t *v, const char *where, int depth, struct sup_stage *s) {
    const char *str = json_string_value(v);
    size_t len = str ? strlen(str) : 0;
    if (depth > SUP_MAX_DEPTH)
        return sushi_error(SUSHI_EINVAL, "%s: %s: list vars nest deeper than %d", c->file, where, SUP_MAX_DEPTH);
    if (str && len > 3 && str[0] == '$' && str[1] == '{' && str[len - 1] == '}' && !strchr(str + 2, '$')) {
        char name[SUP_NAME_MAX];
        snprintf(name, sizeof name, "%.*s", (int)(len - 3), str + 2);
        const json_t *lv = json_object_get(c->vars, name);
        if (json_is_array(lv)) {
            size_t i;
            const json_t *e;
            json_array_foreach(lv, i, e) {
                char w2[640];
                snprintf(w2, sizeof w2, "%s (pipeline.vars.%s[%zu])", where, name, i);
                int rc = sup_add_arg(c, e, w2, depth + 1, s);
                if (rc) return rc;
            }
            return SUSHI_OK;
        }
    }
    char *arg = NULL;
    int rc = sup_scalar_arg(c, v, where, &arg);
    return rc ? rc : sup_push(&s->argv, &s->argc, arg);
}

static int sup_valid_name(const struct sup_ctx *c, const char *where, const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= SUP_NAME_MAX)
        return sushi_error(SUSHI_EINVAL, "%s: %s: \"%s\": expected 1..%d characters", c->file, where, name,
                           SUP_NAME_MAX - 1);
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-'))
            return sushi_error(SUSHI_EINVAL, "%s: %s: \"%s\": use letters, digits, '-' and '_' only", c->file,
                               where, name);
    return SUSHI_OK;
}

static int sup_stage_load(const struct sup_ctx *c, const json_t *j, const char *path, const char *bindir,
                          int default_restarts, struct sup_stage *s) {
    static const char *const keys[] = {"name", "program", "args", "replicas", "main", "console", "ready",
                                       "max_restarts", "env", NULL};
    struct ju_where w = {c->file, path};
    char where[256];
    const char *name = NULL, *program = NULL, *ready = "heartbeat";
    int rc;
    if (!json_is_object(j)) return sushi_error(SUSHI_EINVAL, "%s: %s: expected a map (name, program, args, ...)",
                                               c->file, path);
    if ((rc = ju_check_keys(j, w, keys)) || (rc = ju_string(j, w, "name", 1, &name)) ||
        (rc = sup_valid_name(c, ju_key_path(where, sizeof where, w, "name"), name)))
        return rc;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->replicas = 1;
    s->max_restarts = default_restarts;
    if ((rc = ju_string(j, w, "program", 0, &program)) || (rc = ju_int(j, w, "replicas", 0, 1, SUP_MAX_REPLICAS,
                                                                        &s->replicas)) ||
        (rc = ju_bool(j, w, "main", 0, &s->main)) || (rc = ju_bool(j, w, "console", 0, &s->console)) ||
        (rc = ju_string(j, w, "ready", 0, &ready)) ||
        (rc = ju_int(j, w, "max_restarts", 0, 0, 1000, &s->max_restarts)))
        return rc;
    if (strcmp(ready, "heartbeat") && strcmp(ready, "start"))
        return sushi_error(SUSHI_EINVAL, "%s: %s: \"%s\": expected heartbeat or start", c->file,
                           ju_key_path(where, sizeof where, w, "ready"), ready);
    s->ready_on_start = !strcmp(ready, "start");
    if (s->main && s->replicas != 1)
        return sushi_error(SUSHI_EINVAL, "%s: %s: a main stage has exactly one replica", c->file,
                           ju_key_path(where, sizeof where, w, "replicas"));
    char *prog = NULL;
    if ((rc = sup_expand(c, program ? program : name, ju_key_path(where, sizeof where, w, "program"), &prog)))
        return rc;
    if (!*prog) {
        free(prog);
        return sushi_error(SUSHI_EINVAL, "%s: %s: empty program", c->file, where);
    }
    if (strchr(prog, '/')) s->program = prog;
    else {
        size_t n = strlen(bindir) + strlen(prog) + 16;
        s->program = malloc(n);
        if (s->program) snprintf(s->program, n, "%s/sushi-%s", bindir, prog);
        free(prog);
        if (!s->program) return sushi_error(SUSHI_ENOMEM, "pipeline: out of memory");
    }
    char *argv0 = strdup(s->program);
    if (!argv0 || (rc = sup_push(&s->argv, &s->argc, argv0)))
        return argv0 ? rc : sushi_error(SUSHI_ENOMEM, "pipeline: out of memory");
    const json_t *args = json_object_get(j, "args");
    if (args && !json_is_null(args)) {
        if (!json_is_array(args))
            return sushi_error(SUSHI_EINVAL, "%s: %s: expected a list of arguments", c->file,
                               ju_key_path(where, sizeof where, w, "args"));
        size_t i;
        const json_t *a;
        json_array_foreach(args, i, a) {
            char aw[512];
            snprintf(aw, sizeof aw, "%s.args[%zu]", path, i);
            if ((rc = sup_add_arg(c, a, aw, 0, s))) return rc;
        }
    }
    const json_t *env = json_object_get(j, "env");
    if (env && !json_is_null(env)) {
        if (!json_is_object(env))
            return sushi_error(SUSHI_EINVAL, "%s: %s: expected a map NAME: value", c->file,
                               ju_key_path(where, sizeof where, w, "env"));
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)env, k, v) {
            char ew[512], *val = NULL;
            snprintf(ew, sizeof ew, "%s.env.%s", path, k);
            if ((rc = sup_scalar_arg(c, v, ew, &val))) return rc;
            char *kv = malloc(strlen(k) + strlen(val) + 2);
            if (kv) sprintf(kv, "%s=%s", k, val);
            free(val);
            if (!kv) return sushi_error(SUSHI_ENOMEM, "pipeline: out of memory");
            if ((rc = sup_push(&s->env, &s->nenv, kv))) return rc;
        }
    }
    return SUSHI_OK;
}

static int sup_phase_load(const struct sup_ctx *c, const json_t *j, const char *path, const char *bindir,
                          int default_restarts, struct sup_phase *ph, int *ninsts) {
    static const char *const keys[] = {"name", "skip_if_exists", "promote", "stages", "max_restarts", NULL};
    struct ju_where w = {c->file, path};
    char where[256];
    const char *name = NULL;
    int rc;
    if (!json_is_object(j)) return sushi_error(SUSHI_EINVAL, "%s: %s: expected a map (name, stages)", c->file, path);
    if ((rc = ju_check_keys(j, w, keys)) || (rc = ju_string(j, w, "name", 1, &name)) ||
        (rc = sup_valid_name(c, ju_key_path(where, sizeof where, w, "name"), name)) ||
        (rc = ju_int(j, w, "max_restarts", 0, 0, 1000, &default_restarts)) ||
        (rc = sup_string_field(c, j, path, "skip_if_exists", 0, &ph->skip_if_exists)))
        return rc;
    snprintf(ph->name, sizeof ph->name, "%s", name);
    json_t *promote = NULL;
    if ((rc = ju_object(j, w, "promote", 0, &promote))) return rc;
    if (promote) {
        static const char *const pkeys[] = {"from", "to", "copy", NULL};
        char pp[256];
        snprintf(pp, sizeof pp, "%s.promote", path);
        struct ju_where pw = {c->file, pp};
        if ((rc = ju_check_keys(promote, pw, pkeys)) ||
            (rc = sup_string_field(c, promote, pp, "from", 1, &ph->promote_from)) ||
            (rc = sup_string_field(c, promote, pp, "to", 1, &ph->promote_to)))
            return rc;
        const json_t *copy = json_object_get(promote, "copy");
        if (copy && !json_is_null(copy) && !json_is_array(copy))
            return sushi_error(SUSHI_EINVAL, "%s: %s.copy: expected a list of files", c->file, pp);
        for (size_t i = 0; copy && i < json_array_size(copy); i++) {
            char cw[300], *f = NULL;
            snprintf(cw, sizeof cw, "%s.copy[%zu]", pp, i);
            if ((rc = sup_scalar_arg(c, json_array_get(copy, i), cw, &f)) ||
                (rc = sup_push(&ph->promote_copy, &ph->npromote_copy, f)))
                return rc;
        }
    }
    const json_t *stages = json_object_get(j, "stages");
    if (!json_is_array(stages) || json_array_size(stages) == 0 || json_array_size(stages) > SUP_MAX_STAGES)
        return sushi_error(SUSHI_EINVAL, "%s: %s: expected a list of 1..%d stages", c->file,
                           ju_key_path(where, sizeof where, w, "stages"), SUP_MAX_STAGES);
    int nmain = 0, nconsole = 0;
    for (size_t i = 0; i < json_array_size(stages); i++) {
        char sp[256];
        snprintf(sp, sizeof sp, "%s.stages[%zu]", path, i);
        struct sup_stage *s = &ph->stages[ph->nstages++];
        if ((rc = sup_stage_load(c, json_array_get(stages, i), sp, bindir, default_restarts, s))) return rc;
        for (int k = 0; k < ph->nstages - 1; k++)
            if (!strcmp(ph->stages[k].name, s->name))
                return sushi_error(SUSHI_EINVAL, "%s: %s.name: \"%s\" is used twice in phase %s", c->file, sp,
                                   s->name, ph->name);
        nmain += s->main;
        nconsole += s->console;
        *ninsts += s->replicas;
    }
    if (nmain > 1) return sushi_error(SUSHI_EINVAL, "%s: %s.stages: %d stages say main: true (at most one)", c->file,
                                      path, nmain);
    if (nconsole > 1)
        return sushi_error(SUSHI_EINVAL, "%s: %s.stages: %d stages say console: true (at most one)", c->file, path,
                           nconsole);
    if (*ninsts > SUP_MAX_INSTANCES)
        return sushi_error(SUSHI_EINVAL, "%s: %s: %d stage instances (at most %d)", c->file, path, *ninsts,
                           SUP_MAX_INSTANCES);
    return SUSHI_OK;
}

static int sup_double_field(const struct sup_ctx *c, const json_t *obj, const char *path, const char *key,
                            double min, double max, double *out) {
    struct ju_where w = {c->file, path};
    int rc = ju_double(obj, w, key, 0, out);
    if (!rc && (*out < min || *out > max)) {
        char where[256];
        return sushi_error(SUSHI_EINVAL, "%s: %s: %g out of range [%g, %g]", c->file,
                           ju_key_path(where, sizeof where, w, key), *out, min, max);
    }
    return rc;
}

static int sup_pipeline_from_json(const struct sup_ctx *c, const json_t *pj, const char *bindir, int strict_phase,
                                  struct sup_pipeline *p) {
    static const char *const keys[] = {"name", "description", "vars", "run_dir", "publish", "results",
                                       "start_timeout_s", "stop_grace_s", "max_restarts", "backoff", "phases", NULL};
    struct ju_where w = {c->file, "pipeline"};
    const char *name = NULL;
    int rc, max_restarts = 5;
    if ((rc = ju_check_keys(pj, w, keys)) || (rc = ju_string(pj, w, "name", 1, &name)) ||
        (rc = sup_valid_name(c, "pipeline.name", name)) ||
        (rc = ju_int(pj, w, "max_restarts", 0, 0, 1000, &max_restarts)) ||
        (rc = sup_double_field(c, pj, "pipeline", "start_timeout_s", 0.1, 86400, &p->start_timeout_s)) ||
        (rc = sup_double_field(c, pj, "pipeline", "stop_grace_s", 0, 3600, &p->stop_grace_s)))
        return rc;
    snprintf(p->name, sizeof p->name, "%s", name);
    if ((rc = sup_string_field(c, pj, "pipeline", "results", 0, &p->results))) return rc;
    json_t *backoff = NULL;
    if ((rc = ju_object(pj, w, "backoff", 0, &backoff))) return rc;
    if (backoff) {
        static const char *const bkeys[] = {"initial_s", "max_s", NULL};
        struct ju_where bw = {c->file, "pipeline.backoff"};
        if ((rc = ju_check_keys(backoff, bw, bkeys)) ||
            (rc = sup_double_field(c, backoff, "pipeline.backoff", "initial_s", 0, 3600, &p->backoff_initial_s)) ||
            (rc = sup_double_field(c, backoff, "pipeline.backoff", "max_s", 0, 3600, &p->backoff_max_s)))
            return rc;
    }
    if (json_object_get(pj, "run_dir")) rc = sup_string_field(c, pj, "pipeline", "run_dir", 1, &p->run_dir);
    else if (json_object_get(c->vars, "run")) rc = sup_expand(c, "${run}", "pipeline.vars.run", &p->run_dir);
    else if ((p->run_dir = malloc(strlen(name) + 8))) sprintf(p->run_dir, "runs/%s", name);
    if (rc || !p->run_dir) return rc ? rc : sushi_error(SUSHI_ENOMEM, "pipeline: out of memory");
    if (!*p->run_dir) return sushi_error(SUSHI_EINVAL, "%s: pipeline.run_dir: empty", c->file);
    snprintf(p->sub_endpoint, sizeof p->sub_endpoint, "ipc://%s/supervisor.sock", p->run_dir);
    if (strlen(p->sub_endpoint) > 100)
        return sushi_error(SUSHI_EINVAL, "%s: pipeline.run_dir: %s: too long for an ipc:// socket path", c->file,
                           p->run_dir);
    /* the children's publish list: the supervisor's SUB, then pipeline.publish */
    struct sbuf pub = {0};
    if ((rc = sb_add(&pub, p->sub_endpoint, strlen(p->sub_endpoint)))) return rc;
    const json_t *plist = json_object_get(pj, "publish");
    if (plist && !json_is_null(plist) && !json_is_array(plist)) {
        free(pub.s);
        return sushi_error(SUSHI_EINVAL, "%s: pipeline.publish: expected a list of endpoints", c->file);
    }
    for (size_t i = 0; plist && i < json_array_size(plist) && !rc; i++) {
        char where[64], *ep = NULL;
        snprintf(where, sizeof where, "pipeline.publish[%zu]", i);
        if (!(rc = sup_scalar_arg(c, json_array_get(plist, i), where, &ep)) && *ep) {
            if (strchr(ep, ','))
                rc = sushi_error(SUSHI_EINVAL, "%s: %s: \"%s\": one endpoint per entry", c->file, where, ep);
            if (!rc) rc = sb_add(&pub, ",", 1);
            if (!rc) rc = sb_add(&pub, ep, strlen(ep));
        }
        free(ep);
    }
    p->publish = pub.s;
    if (rc) return rc;
    const json_t *phases = json_object_get(pj, "phases");
    if (!json_is_array(phases) || json_array_size(phases) == 0 || json_array_size(phases) > SUP_MAX_PHASES)
        return sushi_error(SUSHI_EINVAL, "%s: pipeline.phases: expected a list of 1..%d phases", c->file,
                           SUP_MAX_PHASES);
    for (size_t i = 0; i < json_array_size(phases); i++) {
        char path[64];
        int ninsts = 0;
        snprintf(path, sizeof path, "pipeline.phases[%zu]", i);
        struct sup_phase *ph = &p->phases[p->nphases++];
        struct sup_ctx pc = *c;
        pc.strict = (int)i == strict_phase;
        if ((rc = sup_phase_load(&pc, json_array_get(phases, i), path, bindir, max_restarts, ph, &ninsts)))
            return rc;
        for (int k = 0; k < p->nphases - 1; k++)
            if (!strcmp(p->phases[k].name, ph->name))
                return sushi_error(SUSHI_EINVAL, "%s: %s.name: \"%s\" is used twice", c->file, path, ph->name);
    }
    return SUSHI_OK;
}

int sup_pipeline_load(const char *path, const char *const *overrides, int noverrides, const char *bindir,
                      int strict_phase, struct sup_pipeline *out) {
    if (!path || !bindir || !out || (noverrides && !overrides))
        return sushi_error(SUSHI_EINVAL, "sup_pipeline_load: bad argument");
    memset(out, 0, sizeof *out);
    snprintf(out->file, sizeof out->file, "%s", path);
    out->start_timeout_s = 60;
    out->stop_grace_s = 5;
    out->backoff_initial_s = 0.5;
    out->backoff_max_s = 10;
    json_t *root = NULL;
    int rc = config_load(path, NULL, 0, &root);
    if (rc) return rc;
    json_t *pj = json_object_get(root, "pipeline");
    if (!json_is_object(pj)) {
        json_decref(root);
        return sushi_error(SUSHI_EINVAL, "%s: pipeline: missing (expected a map with name, vars, phases)", path);
    }
    for (int i = 0; i < noverrides && !rc; i++) {
        const char *o = overrides[i];
        if (!strncmp(o, "pipeline.", 9)) rc = config_set_override(root, o, path);
        else rc = config_set_override(pj, o, path);
    }
    json_t *vars = json_object_get(pj, "vars");
    if (!rc && vars && !json_is_object(vars))
        rc = sushi_error(SUSHI_EINVAL, "%s: pipeline.vars: expected a map NAME: value", path);
    json_t *empty = json_object();
    struct sup_ctx c = {path, vars ? vars : empty, 0};
    if (!rc) rc = sup_pipeline_from_json(&c, pj, bindir, strict_phase, out);
    json_decref(empty);
    json_decref(root);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        sup_pipeline_free(out);
        sushi_error(rc, "%s", msg);
    }
    return rc;
}

static void sup_free_list(char **v) {
    for (char **p = v; p && *p; p++) free(*p);
    free(v);
}

void sup_pipeline_free(struct sup_pipeline *p) {
    if (!p) return;
    for (int i = 0; i < p->nphases; i++) {
        struct sup_phase *ph = &p->phases[i];
        for (int k = 0; k < ph->nstages; k++) {
            free(ph->stages[k].program);
            sup_free_list(ph->stages[k].argv);
            sup_free_list(ph->stages[k].env);
        }
        free(ph->skip_if_exists);
        free(ph->promote_from);
        free(ph->promote_to);
        sup_free_list(ph->promote_copy);
    }
    free(p->run_dir);
    free(p->publish);
    free(p->results);
    memset(p, 0, sizeof *p);
}

/* An argument as the shell would need it: bare when safe, else in single quotes. */
static void sup_print_quoted(FILE *f, const char *a) {
    int safe = *a != 0;
    for (const char *p = a; *p && safe; p++)
        safe = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *p) != NULL;
    if (safe) {
        fputs(a, f);
        return;
    }
    fputc('\'', f);
    for (const char *p = a; *p; p++) {
        if (*p == '\'') fputs("'\\''", f);
        else fputc(*p, f);
    }
    fputc('\'', f);
}

void sup_print_command(FILE *f, const struct sup_stage *s) {
    for (int i = 0; i < s->argc; i++) {
        if (i) fputc(' ', f);
        sup_print_quoted(f, s->argv[i]);
    }
}
