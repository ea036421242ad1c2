// libs: deepseek student kernels core
/* sushi-inspect DIR: describes a checkpoint directory as JSON on stdout — its
 * architecture (by model_type, through a table of describers), parameter counts,
 * tensor dtypes and file sizes. Reads headers only (safetensors are memory-mapped). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/core/safetensors.h"
#include "models/deepseek/deepseek.h"
#include "models/student/checkpoint.h"
#include "tools/inspect/inspect.h"

/* model_type -> describer. The teacher family adds its rows here, e.g.
 *   {"deepseek_v3", deepseek_describe}, {"deepseek_v2", deepseek_describe}. */
static const struct {
    const char *model_type;
    inspect_describe_fn describe;
} inspect_describers[] = {
    {"llama", inspect_describe_llama},
    {"deepseek_v3", deepseek_describe},
    {"deepseek_v2", deepseek_describe},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: sushi inspect [--compact] [--tensors] DIR\n\n"
            "Describes a checkpoint directory (config.json + *.safetensors) as JSON:\n"
            "architecture (model_type), layers, width, heads, kv heads, head dim, ffn,\n"
            "vocabulary, tied embeddings, parameter counts (total, embedding, per layer),\n"
            "tensor dtypes and file sizes. Without config.json the architecture is\n"
            "inferred from tensor shapes (a Llama layout is assumed).\n\n"
            "  --compact   one line of JSON instead of indented output\n"
            "  --tensors   also list every tensor: file, name, dtype, shape\n"
            "  --help      this text\n");
}

/* model_type from config.json, or "llama" when there is none (shape detection). */
static int inspect_model_type(const char *dir, char *buf, size_t cap) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_CONFIG);
    if (!fs_exists(path)) {
        snprintf(buf, cap, "llama");
        return SUSHI_OK;
    }
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) return sushi_error(SUSHI_EFORMAT, "%s: corrupt JSON at line %d: %s", path, err.line, err.text);
    const char *mt = json_string_value(json_object_get(j, "model_type"));
    int rc = mt ? SUSHI_OK : sushi_error(SUSHI_EFORMAT, "%s: model_type: missing or not a string", path);
    if (mt) snprintf(buf, cap, "%s", mt);
    json_decref(j);
    return rc;
}

static int inspect_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file's size, and dtype/tensor counts over every *.safetensors (shards too). */
static int inspect_files(const char *dir, int list, json_t *out) {
    DIR *d = opendir(dir);
    if (!d) return sushi_error(SUSHI_ENOTFOUND, "%s: cannot open the directory", dir);
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char **nn = realloc(names, (n + 1) * sizeof *names);
        if (!nn || !(nn[n] = strdup(e->d_name))) {
            free(nn ? nn : names);
            closedir(d);
            return sushi_error(SUSHI_ENOMEM, "inspect: out of memory");
        }
        names = nn;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, inspect_cmp);
    json_t *files = json_object(), *dtypes = json_object(), *tlist = list ? json_array() : NULL;
    long long total_bytes = 0, tensors = 0, elements = 0;
    int rc = SUSHI_OK;
    for (size_t i = 0; i < n; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        long long size = fs_is_dir(path) ? -1 : fs_file_size(path);
        if (size >= 0) {
            json_object_set_new(files, names[i], json_integer(size));
            total_bytes += size;
        }
        size_t len = strlen(names[i]);
        if (rc == SUSHI_OK && size >= 0 && len > 12 && !strcmp(names[i] + len - 12, ".safetensors")) {
            struct st_file f;
            if ((rc = st_open(&f, path))) break;
            for (size_t t = 0; t < f.n; t++) {
                const char *dn = dtype_name(f.tensors[t].dtype);
                json_int_t c = json_integer_value(json_object_get(dtypes, dn));
                json_object_set_new(dtypes, dn, json_integer(c + 1));
                elements += (long long)st_numel(&f.tensors[t]);
                if (tlist) {
                    json_t *shape = json_array();
                    for (int d = 0; d < f.tensors[t].ndim; d++)
                        json_array_append_new(shape, json_integer(f.tensors[t].shape[d]));
                    json_array_append_new(tlist, json_pack("{s:s, s:s, s:s, s:o}", "file", names[i], "name",
                                                           f.tensors[t].name, "dtype", dn, "shape", shape));
                }
            }
            tensors += (long long)f.n;
            st_close(&f);
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    json_object_set_new(out, "files", files);
    json_object_set_new(out, "total_bytes", json_integer(total_bytes));
    json_object_set_new(out, "tensors", json_integer(tensors));
    json_object_set_new(out, "tensor_elements", json_integer(elements));
    json_object_set_new(out, "dtypes", dtypes);
    if (tlist) json_object_set_new(out, "tensor_list", tlist);
    return rc;
}

int main(int argc, char **argv) {
    log_set_name("sushi-inspect");
    const char *dir = NULL;
    int compact = 0, list = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--compact")) {
            compact = 1;
        } else if (!strcmp(argv[i], "--tensors")) {
            list = 1;
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "sushi-inspect: unexpected argument \"%s\"\n\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            dir = argv[i];
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    char resolved[4096], model_type[128];
    int rc = checkpoint_resolve_dir(dir, resolved, sizeof resolved);
    if (!rc) rc = inspect_model_type(resolved, model_type, sizeof model_type);
    inspect_describe_fn describe = NULL;
    for (size_t i = 0; !rc && i < sizeof inspect_describers / sizeof inspect_describers[0]; i++)
        if (!strcmp(inspect_describers[i].model_type, model_type)) describe = inspect_describers[i].describe;
    if (!rc && !describe)
        rc = sushi_error(SUSHI_EUNSUPPORTED, "%s/%s: model_type \"%s\" has no describer", resolved,
                         CKPT_CONFIG, model_type);
    json_t *out = json_object();
    if (!rc) {
        json_object_set_new(out, "path", json_string(resolved));
        json_object_set_new(out, "model_type", json_string(model_type));
        rc = describe(resolved, out);
    }
    if (!rc) rc = inspect_files(resolved, list, out);
    if (rc) {
        log_error("%s", sushi_last_error());
        json_decref(out);
        return 1;
    }
    char *s = json_dumps(out, (compact ? JSON_COMPACT : JSON_INDENT(2)) | JSON_PRESERVE_ORDER |
                                  JSON_REAL_PRECISION(9));
    json_decref(out);
    if (!s) {
        log_error("out of memory");
        return 1;
    }
    puts(s);
    free(s);
    return 0;
}
