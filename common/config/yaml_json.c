/* YAML text -> jansson tree via libyaml's event parser, typing plain scalars the YAML
 * 1.2 core-schema way. Errors carry file:line:column. */
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/config/config.h"
#include "common/core/fsutil.h"
#include "common/core/log.h"

#define YJ_MAX_DEPTH 64

static int yj_match(const char *re, const char *s) {
    regex_t r;
    if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB) != 0) return 0;
    int ok = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

/* A plain (unquoted) scalar typed by the core schema; NULL with *bad set for values
 * JSON cannot hold (.inf, .nan, integers beyond 64 bits). */
static json_t *yj_plain_scalar(const char *s, const char **bad) {
    *bad = NULL;
    if (!*s || yj_match("^(null|Null|NULL|~)$", s)) return json_null();
    if (yj_match("^(true|True|TRUE)$", s)) return json_true();
    if (yj_match("^(false|False|FALSE)$", s)) return json_false();
    int base = 0;
    const char *digits = s;
    if (yj_match("^[-+]?[0-9]+$", s)) base = 10;
    else if (yj_match("^0o[0-7]+$", s)) { base = 8; digits = s + 2; }
    else if (yj_match("^0x[0-9a-fA-F]+$", s)) { base = 16; digits = s + 2; }
    if (base) {
        errno = 0;
        char *end;
        long long v = strtoll(digits, &end, base);
        if (errno == ERANGE || *end) { *bad = "integer out of 64-bit range"; return NULL; }
        return json_integer(v);
    }
    if (yj_match("^[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?$", s)) {
        double d = strtod(s, NULL);
        if (!isfinite(d)) { *bad = "float out of range"; return NULL; }
        return json_real(d);
    }
    if (yj_match("^([-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN))$", s)) {
        *bad = "infinities and NaN are not allowed";
        return NULL;
    }
    return json_string(s);
}

struct yj_frame {
    json_t *node;    /* object or array being filled */
    char *key;       /* pending key of a map (NULL when the next scalar is a key) */
};

struct yj_state {
    const char *name;
    struct yj_frame stack[YJ_MAX_DEPTH];
    int depth;
    json_t *root;
};

static int yj_err(struct yj_state *st, const yaml_event_t *ev, const char *what) {
    return sushi_error(SUSHI_EFORMAT, "%s:%zu:%zu: %s", st->name, ev->start_mark.line + 1,
                       ev->start_mark.column + 1, what);
}

/* Places a finished value (stolen) into the enclosing container, or as the root. */
static int yj_place(struct yj_state *st, const yaml_event_t *ev, json_t *v) {
    if (st->depth == 0) {
        if (st->root) { json_decref(v); return yj_err(st, ev, "more than one root value"); }
        st->root = v;
        return SUSHI_OK;
    }
    struct yj_frame *f = &st->stack[st->depth - 1];
    if (json_is_array(f->node)) {
        json_array_append_new(f->node, v);
        return SUSHI_OK;
    }
    if (!f->key) {   /* v is a key */
        if (!json_is_string(v)) {
            json_decref(v);
            return yj_err(st, ev, "map keys must be plain strings");
        }
        f->key = strdup(json_string_value(v));
        json_decref(v);
        if (!f->key) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", st->name);
        if (json_object_get(f->node, f->key)) {
            char msg[300];
            snprintf(msg, sizeof msg, "duplicate key \"%s\"", f->key);
            return yj_err(st, ev, msg);
        }
        return SUSHI_OK;
    }
    json_object_set_new(f->node, f->key, v);
    free(f->key);
    f->key = NULL;
    return SUSHI_OK;
}

static int yj_scalar(struct yj_state *st, const yaml_event_t *ev) {
    const char *s = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    int expecting_key = st->depth > 0 && json_is_object(st->stack[st->depth - 1].node) &&
                        !st->stack[st->depth - 1].key;
    json_t *v;
    const char *bad = NULL;
    if (tag && strcmp(tag, YAML_STR_TAG) && strcmp(tag, "!"))
        return yj_err(st, ev, "tags are not supported");
    if (expecting_key || tag || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        v = json_stringn(s, ev->data.scalar.length);
    else
        v = yj_plain_scalar(s, &bad);
    if (!v) return yj_err(st, ev, bad ? bad : "invalid scalar (not UTF-8?)");
    return yj_place(st, ev, v);
}

static int yj_open(struct yj_state *st, const yaml_event_t *ev, json_t *node) {
    if (!node) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", st->name);
    if (st->depth == YJ_MAX_DEPTH) {
        json_decref(node);
        return yj_err(st, ev, "nesting too deep");
    }
    if (st->depth > 0 && json_is_object(st->stack[st->depth - 1].node) && !st->stack[st->depth - 1].key) {
        json_decref(node);
        return yj_err(st, ev, "map keys must be plain strings");
    }
    st->stack[st->depth].node = node;
    st->stack[st->depth].key = NULL;
    st->depth++;
    return SUSHI_OK;
}

static int yj_close(struct yj_state *st, const yaml_event_t *ev) {
    struct yj_frame f = st->stack[--st->depth];
    free(f.key);
    return yj_place(st, ev, f.node);
}

static void yj_free(struct yj_state *st) {
    while (st->depth > 0) {
        struct yj_frame *f = &st->stack[--st->depth];
        free(f->key);
        json_decref(f->node);
    }
    json_decref(st->root);
    st->root = NULL;
}

int config_parse_yaml(const char *text, size_t len, const char *name, json_t **out) {
    if (!text || !out) return sushi_error(SUSHI_EINVAL, "config_parse_yaml: null argument");
    *out = NULL;
    if (!name) name = "(yaml)";
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", name);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    struct yj_state st = {.name = name};
    int rc = SUSHI_OK, done = 0, docs = 0;
    while (!done && rc == SUSHI_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = sushi_error(SUSHI_EFORMAT, "%s:%zu:%zu: %s%s%s", name, p.problem_mark.line + 1,
                             p.problem_mark.column + 1, p.problem ? p.problem : "syntax error",
                             p.context ? " " : "", p.context ? p.context : "");
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) rc = yj_err(&st, &ev, "more than one YAML document");
            break;
        case YAML_ALIAS_EVENT: rc = yj_err(&st, &ev, "aliases are not supported"); break;
        case YAML_SCALAR_EVENT:
            if (ev.data.scalar.anchor) rc = yj_err(&st, &ev, "anchors are not supported");
            else rc = yj_scalar(&st, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            if (ev.data.sequence_start.anchor) rc = yj_err(&st, &ev, "anchors are not supported");
            else rc = yj_open(&st, &ev, json_array());
            break;
        case YAML_MAPPING_START_EVENT:
            if (ev.data.mapping_start.anchor) rc = yj_err(&st, &ev, "anchors are not supported");
            else rc = yj_open(&st, &ev, json_object());
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: rc = yj_close(&st, &ev); break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (rc) { yj_free(&st); return rc; }
    *out = st.root ? st.root : json_null();   /* an empty document */
    return SUSHI_OK;
}

int config_load_yaml(const char *path, json_t **out) {
    if (!path || !out) return sushi_error(SUSHI_EINVAL, "config_load_yaml: null argument");
    char *text = NULL;
    size_t n = 0;
    int rc = fs_read_all(path, &text, &n);
    if (rc) return rc;
    rc = config_parse_yaml(text, n, path, out);
    free(text);
    if (rc == SUSHI_OK && json_is_null(*out)) {   /* an empty document */
        json_decref(*out);
        *out = json_object();
    }
    if (rc == SUSHI_OK && !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return sushi_error(SUSHI_EFORMAT, "%s: the top level must be a map", path);
    }
    return rc;
}
