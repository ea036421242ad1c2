/* Typed, located reads of jansson values (see json_util.h). */
#include "common/core/json_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/log.h"

const char *ju_key_path(char *buf, size_t cap, struct ju_where w, const char *key) {
    if (w.path && *w.path) snprintf(buf, cap, "%s.%s", w.path, key);
    else snprintf(buf, cap, "%s", key);
    return buf;
}

/* A short rendering of a value for messages: "abc" in quotes, numbers as written. */
static void ju_describe(const json_t *v, char *buf, size_t cap) {
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(9));
    snprintf(buf, cap, "%s", s ? s : "?");
    if (s && strlen(s) >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
    free(s);
}

static int ju_type_error(const json_t *v, struct ju_where w, const char *key, const char *want) {
    char kp[256], got[96];
    ju_describe(v, got, sizeof got);
    return sushi_error(SUSHI_EFORMAT, "%s: %s: expected %s, got %s", w.file ? w.file : "config",
                       ju_key_path(kp, sizeof kp, w, key), want, got);
}

/* The member, or NULL (and an error code in *rc when required). */
static json_t *ju_member(const json_t *obj, struct ju_where w, const char *key, int required, int *rc) {
    *rc = SUSHI_OK;
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (json_is_null(v)) v = NULL;
    if (!v && required) {
        char kp[256];
        *rc = sushi_error(SUSHI_ENOTFOUND, "%s: %s: missing (required)", w.file ? w.file : "config",
                          ju_key_path(kp, sizeof kp, w, key));
    }
    return v;
}

int ju_int64(const json_t *obj, struct ju_where w, const char *key, int required, long long *out) {
    int rc;
    json_t *v = ju_member(obj, w, key, required, &rc);
    if (!v) return rc;
    if (!json_is_integer(v)) return ju_type_error(v, w, key, "an integer");
    *out = json_integer_value(v);
    return SUSHI_OK;
}

int ju_int(const json_t *obj, struct ju_where w, const char *key, int required, long long min,
           long long max, int *out) {
    long long x = 0;
    int rc;
    json_t *v = ju_member(obj, w, key, required, &rc);
    if (!v) return rc;
    if ((rc = ju_int64(obj, w, key, required, &x))) return rc;
    if (min < -2147483647LL - 1) min = -2147483647LL - 1;
    if (max > 2147483647LL) max = 2147483647LL;
    if (x < min || x > max) {
        char kp[256];
        return sushi_error(SUSHI_EINVAL, "%s: %s: %lld out of range [%lld, %lld]",
                           w.file ? w.file : "config", ju_key_path(kp, sizeof kp, w, key), x, min, max);
    }
    *out = (int)x;
    return SUSHI_OK;
}

int ju_double(const json_t *obj, struct ju_where w, const char *key, int required, double *out) {
    int rc;
    json_t *v = ju_member(obj, w, key, required, &rc);
    if (!v) return rc;
    if (!json_is_number(v)) return ju_type_error(v, w, key, "a number");
    *out = json_number_value(v);
    return SUSHI_OK;
}

int ju_float(const json_t *obj, struct ju_where w, const char *key, int required, float *out) {
    double d = 0;
    int rc;
    json_t *v = ju_member(obj, w, key, required, &rc);
    if (!v) return rc;
    if ((rc = ju_double(obj, w, key, required, &d))) return rc;
    if (!isfinite((float)d)) return ju_type_error(v, w, key, "a finite 32-bit float");
    *out = (float)d;
    return SUSHI_OK;
}

int ju_bool(const json_t *obj, struct ju_where w, const char *key, int required, int *out) {
    int rc;
    json_t *v = ju_member(obj, w, key, required, &rc);
    if (!v) return rc;
    if (!json_is_boolean(v)) return ju_type_error(v, w, key, "true or false");
    *out = json_is_true(v);
    return SUSHI_OK;
}

int ju_string(const json_t *obj, struct ju_where w, const char *key, int required, const char **out) {
    int rc;
    json_t *v = ju_member(obj, w, key, required, &rc);
    if (!v) return rc;
    if (!json_is_string(v)) return ju_type_error(v, w, key, "a string");
    *out = json_string_value(v);
    return SUSHI_OK;
}

int ju_object(const json_t *obj, struct ju_where w, const char *key, int required, json_t **out) {
    int rc;
    *out = NULL;
    json_t *v = ju_member(obj, w, key, required, &rc);
    if (!v) return rc;
    if (!json_is_object(v)) return ju_type_error(v, w, key, "a map");
    *out = v;
    return SUSHI_OK;
}

int ju_check_keys(const json_t *obj, struct ju_where w, const char *const *known) {
    if (!json_is_object(obj)) {
        return sushi_error(SUSHI_EFORMAT, "%s: %s: expected a map", w.file ? w.file : "config",
                           w.path && *w.path ? w.path : "(root)");
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        int ok = 0;
        for (const char *const *p = known; *p && !ok; p++) ok = !strcmp(*p, k);
        if (!ok) {
            char kp[256];
            return sushi_error(SUSHI_EINVAL, "%s: %s: unknown key", w.file ? w.file : "config",
                               ju_key_path(kp, sizeof kp, w, k));
        }
    }
    return SUSHI_OK;
}

json_t *ju_get_path(const json_t *root, const char *dotted) {
    if (!root || !dotted) return NULL;
    const json_t *cur = root;
    const char *s = dotted;
    while (cur) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (!json_is_object(cur)) return NULL;
        cur = json_object_getn(cur, s, n);
        if (!dot) return (json_t *)cur;
        s = dot + 1;
    }
    return NULL;
}

json_t *ju_real_from_float(float f) {
    char buf[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}
