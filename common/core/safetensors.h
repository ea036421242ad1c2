/* safetensors files: read by memory-mapping (nothing copied), written atomically
 * (temporary file in the same folder, fsync, rename, fsync of the folder).
 *
 * Format: 8-byte little-endian header length L, L bytes of JSON
 * {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "string value"}}, then the data; offsets are relative to the
 * end of the header. Reading validates everything before use: header length within the
 * file, JSON well formed, known dtype, dtype size × shape == end − begin, offsets inside
 * the data and not overlapping. Failures name the file and the tensor. */
#ifndef SUSHI_SAFETENSORS_H
#define SUSHI_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/core/dtype.h"

#define ST_MAX_DIMS 8

struct st_tensor {
    char *name;
    enum dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;   /* points into the mapping; 8-byte aligned when the header is
                         * padded as sushi's and HF's writers do, else read it with
                         * memcpy or dtype_convert_to_f32 */
    size_t nbytes;
};

struct st_file {
    char *path;
    void *map;
    size_t map_size;
    size_t n;                   /* tensors, in file order */
    struct st_tensor *tensors;
    size_t n_meta;
    char **meta_keys, **meta_values;
};

int st_open(struct st_file *f, const char *path);
void st_close(struct st_file *f);
const struct st_tensor *st_find(const struct st_file *f, const char *name);
const char *st_meta(const struct st_file *f, const char *key);   /* NULL if absent */
size_t st_numel(const struct st_tensor *t);
/* Checks a tensor's dtype and shape; the message names file, tensor, expected and actual. */
int st_expect(const struct st_file *f, const char *name, enum dtype dt, int ndim,
              const int64_t *shape);

struct st_writer;   /* opaque: collects tensors (borrowed pointers) and metadata */
struct st_writer *st_writer_new(void);
int st_writer_add(struct st_writer *w, const char *name, enum dtype dt, int ndim,
                  const int64_t *shape, const void *data);
int st_writer_meta(struct st_writer *w, const char *key, const char *value);
/* Writes PATH atomically; data pointers must stay valid until this returns. */
int st_writer_commit(struct st_writer *w, const char *path);
void st_writer_free(struct st_writer *w);

/* The tensors of one checkpoint stored as DIR/STEM.safetensors or, when present, as the
 * shards that DIR/STEM.safetensors.index.json names ({"metadata": {...}, "weight_map":
 * {"tensor": "STEM-00001-of-00002.safetensors", ...}}). The index must match the
 * shards exactly: a listed tensor missing from its shard, a shard tensor the index
 * does not list, or a tensor in two shards is refused by name. Lookup is hashed
 * (DeepSeek-V3 has ~90k tensors). */
struct st_set {
    char *dir;
    size_t n_files;
    struct st_file *files;
    size_t n;                         /* tensors over all files */
    const struct st_tensor **tensors; /* in file order */
    const struct st_file **owner;     /* the file of each tensor */
    size_t cap;                       /* hash slots (power of two) */
    size_t *slots;                    /* tensor index + 1, 0 = empty */
};

int st_set_open(struct st_set *s, const char *dir, const char *stem);
void st_set_close(struct st_set *s);
/* The tensor and (when file is non-NULL) the file holding it; NULL when absent. */
const struct st_tensor *st_set_find(const struct st_set *s, const char *name,
                                    const struct st_file **file);

#endif
