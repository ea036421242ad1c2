/* Configuration files for services and tools: YAML (libyaml) read into a jansson tree,
 * `key.path=value` command-line overrides, and typed getters whose messages name the
 * file and key path (`configs/x.yaml: model.d_model: expected an integer, got "abc"`).
 *
 * Scalars are typed as in the YAML 1.2 core schema: quoted scalars are strings; plain
 * ones are null (null, ~, empty), booleans (true/false), integers (decimal, 0x, 0o),
 * floats (1.5, 1e-5, .inf is refused: JSON has no infinities) or else strings.
 * Anchors and aliases, tags other than the core ones and multiple documents are refused. */
#ifndef SUSHI_CONFIG_H
#define SUSHI_CONFIG_H

#include <jansson.h>

#include "common/core/json_util.h"
#include "models/student/student.h"

/* Parses a YAML file into a new tree (*out; an empty file gives an empty map). */
int config_load_yaml(const char *path, json_t **out);
/* Parses YAML text (any root value; an empty text gives null); `name` is used in
 * messages. */
int config_parse_yaml(const char *text, size_t len, const char *name, json_t **out);
/* Applies "a.b.c=value" (value parsed as a YAML flow value: 3, 1e-4, true, [1, 2],
 * "quoted"); missing intermediate maps are created. `file` names the config in messages. */
int config_set_override(json_t *root, const char *assignment, const char *file);

/* Loads a YAML file and applies "key.path=value" overrides in order (what every
 * command with --config does). */
int config_load(const char *path, const char *const *overrides, int n_overrides, json_t **out);

/* Typed getters by dotted path; absent and not required leaves *out untouched. */
int config_get_int(const json_t *root, const char *file, const char *path, int required, int *out);
int config_get_float(const json_t *root, const char *file, const char *path, int required, float *out);
int config_get_bool(const json_t *root, const char *file, const char *path, int required, int *out);
int config_get_string(const json_t *root, const char *file, const char *path, int required,
                      const char **out);

/* Loads a student model config: the `model` section of the YAML at path, after the
 * overrides ("model.d_model=128", ...), read and validated (student_config_validate). */
int config_load_student(const char *path, const char *const *overrides, int n_overrides,
                        struct student_config *out);

#endif
