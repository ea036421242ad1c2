/* key.path=value overrides, typed getters by dotted path, and the student loader. */
#include "common/config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/config_student.h"
#include "common/core/log.h"

int config_set_override(json_t *root, const char *assignment, const char *file) {
    if (!file) file = "override";
    if (!json_is_object(root) || !assignment)
        return sushi_error(SUSHI_EINVAL, "config_set_override: null argument");
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return sushi_error(SUSHI_EINVAL, "%s: override \"%s\": expected key.path=value", file, assignment);
    size_t klen = (size_t)(eq - assignment);
    char *key = strndup(assignment, klen);
    if (!key) return sushi_error(SUSHI_ENOMEM, "override: out of memory");
    int rc = SUSHI_OK;
    json_t *value = NULL;
    char name[300];
    snprintf(name, sizeof name, "override %s", key);
    rc = config_parse_yaml(eq + 1, strlen(eq + 1), name, &value);
    if (rc) goto done;
    json_t *cur = root;
    for (char *s = key;;) {
        char *dot = strchr(s, '.');
        if (dot) *dot = 0;
        if (!*s) {
            rc = sushi_error(SUSHI_EINVAL, "%s: override \"%s\": empty key component", file, assignment);
            goto done;
        }
        if (!dot) {
            json_object_set_new(cur, s, value);
            value = NULL;
            break;
        }
        json_t *next = json_object_get(cur, s);
        if (!next) {
            next = json_object();
            if (!next || json_object_set_new(cur, s, next)) {
                rc = sushi_error(SUSHI_ENOMEM, "override: out of memory");
                goto done;
            }
        } else if (!json_is_object(next)) {
            rc = sushi_error(SUSHI_EINVAL, "%s: override \"%s\": %.*s is not a map", file, assignment,
                             (int)(dot - key), assignment);
            goto done;
        }
        cur = next;
        s = dot + 1;
    }
done:
    json_decref(value);
    free(key);
    return rc;
}

/* Splits "a.b.c" into the parent object (a.b) and the last key (c). */
static int config_locate(const json_t *root, const char *path, char *parent, size_t cap,
                         const char **key, const json_t **obj) {
    if (!root || !path || strlen(path) >= cap)
        return sushi_error(SUSHI_EINVAL, "config: bad key path");
    snprintf(parent, cap, "%s", path);
    char *dot = strrchr(parent, '.');
    if (dot) {
        *dot = 0;
        *key = path + (dot - parent) + 1;
        *obj = ju_get_path(root, parent);
    } else {
        parent[0] = 0;
        *key = path;
        *obj = root;
    }
    return SUSHI_OK;
}

#define CONFIG_GETTER(fn, type, call)                                                        \
    int fn(const json_t *root, const char *file, const char *path, int required, type *out) { \
        char parent[256];                                                                    \
        const char *key = NULL;                                                              \
        const json_t *obj = NULL;                                                            \
        int rc = config_locate(root, path, parent, sizeof parent, &key, &obj);               \
        if (rc) return rc;                                                                   \
        struct ju_where w = {file, parent};                                                  \
        return call;                                                                         \
    }

CONFIG_GETTER(config_get_int, int, ju_int(obj, w, key, required, -2147483648LL, 2147483647LL, out))
CONFIG_GETTER(config_get_float, float, ju_float(obj, w, key, required, out))
CONFIG_GETTER(config_get_bool, int, ju_bool(obj, w, key, required, out))
CONFIG_GETTER(config_get_string, const char *, ju_string(obj, w, key, required, out))

int config_load(const char *path, const char *const *overrides, int n_overrides, json_t **out) {
    if (!path || !out || n_overrides < 0 || (n_overrides && !overrides))
        return sushi_error(SUSHI_EINVAL, "config_load: bad argument");
    int rc = config_load_yaml(path, out);
    for (int i = 0; i < n_overrides && !rc; i++) rc = config_set_override(*out, overrides[i], path);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

int config_load_student(const char *path, const char *const *overrides, int n_overrides,
                        struct student_config *out) {
    if (!out) return sushi_error(SUSHI_EINVAL, "config_load_student: bad argument");
    json_t *root = NULL;
    int rc = config_load(path, overrides, n_overrides, &root);
    if (rc) return rc;
    json_t *model = NULL;
    struct ju_where w = {path, ""};
    if (!rc) rc = ju_object(root, w, "model", 1, &model);
    w.path = "model";
    if (!rc) rc = config_student_from_json(model, w, out);
    if (!rc && (rc = student_config_validate(out))) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        rc = sushi_error(rc, "%s: %s", path, msg);
    }
    json_decref(root);
    return rc;
}
