/* sushi-inspect: describers of checkpoint directories, one per model_type.
 *
 * A describer adds its architecture's fields to `out` (a JSON object): "layers",
 * "width", "heads", "parameters": {...} and whatever else the family has. main.c adds
 * what every checkpoint has (model_type, files and their sizes, tensor dtypes).
 * To describe a new family, write `int NAME_describe(const char *dir, json_t *out)`
 * (returning 0 or a negative SUSHI_E* code after sushi_error) and add a row to
 * inspect_describers[] in main.c. */
#ifndef SUSHI_INSPECT_H
#define SUSHI_INSPECT_H

#include <jansson.h>

typedef int (*inspect_describe_fn)(const char *dir, json_t *out);

/* Llama-family / sushi student checkpoints (describe_llama.c). */
int inspect_describe_llama(const char *dir, json_t *out);

#endif
