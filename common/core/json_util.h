/* Typed reads of jansson values with messages that name where the value came from:
 * `configs/x.yaml: model.d_model: expected an integer, got "abc"`. A location is the
 * source (a file name) plus the dotted path of the object being read. */
#ifndef SUSHI_JSON_UTIL_H
#define SUSHI_JSON_UTIL_H

#include <jansson.h>

struct ju_where {
    const char *file;   /* e.g. "configs/student/tiny.yaml" */
    const char *path;   /* dotted path of the object, "" or NULL at the root */
};

/* Optional fields: when `key` is absent (or null) *out is left untouched and 0 is
 * returned; with `required` set, absence is an error. Integers must lie in [min, max]. */
int ju_int(const json_t *obj, struct ju_where w, const char *key, int required, long long min,
           long long max, int *out);
int ju_int64(const json_t *obj, struct ju_where w, const char *key, int required, long long *out);
/* Accepts integers and reals. */
int ju_float(const json_t *obj, struct ju_where w, const char *key, int required, float *out);
int ju_double(const json_t *obj, struct ju_where w, const char *key, int required, double *out);
/* *out = 0 or 1. */
int ju_bool(const json_t *obj, struct ju_where w, const char *key, int required, int *out);
/* Borrowed pointer into obj. */
int ju_string(const json_t *obj, struct ju_where w, const char *key, int required, const char **out);
/* An object member (NULL when absent and not required). */
int ju_object(const json_t *obj, struct ju_where w, const char *key, int required, json_t **out);
/* Refuses, by name, any key of obj not listed in `known` (NULL-terminated). */
int ju_check_keys(const json_t *obj, struct ju_where w, const char *const *known);
/* Walks a dotted path ("a.b.c") through nested objects; NULL when absent. */
json_t *ju_get_path(const json_t *root, const char *dotted);
/* A JSON real holding the shortest decimal that reads back as f (1e-05, not
 * 9.99999975e-06); NULL for a non-finite f. */
json_t *ju_real_from_float(float f);
/* Formats "PATH.KEY" (or "KEY" at the root) into buf. */
const char *ju_key_path(char *buf, size_t cap, struct ju_where w, const char *key);

#endif
