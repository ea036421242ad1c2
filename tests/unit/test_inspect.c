// libs: student kernels core
/* sushi-inspect: runs the built program on checkpoints written here and checks its
 * JSON against the files themselves (tensor element counts, file sizes, dtypes) and
 * against hand-computed parameter counts; errors exit 1 with a message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/student/checkpoint.h"

static char tmpdir[64], prog[512];

/* runs sushi-inspect ARGS; returns its exit status, stdout+stderr in out */
static int run_inspect(const char *args, char **out) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", prog, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    *out = malloc(cap);
    n = fread(*out, 1, cap - 1, p);
    (*out)[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static json_int_t geti(const json_t *j, const char *key) {
    const json_t *v = json_object_get(j, key);
    if (!json_is_integer(v)) fprintf(stderr, "no integer %s\n", key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void describe_checks(int tied) {
    struct student_config c = {.n_layers = 3, .d_model = 32, .n_heads = 4, .n_kv_heads = 2, .d_head = 8,
                               .d_ff = 40, .vocab = 50, .vocab_padded = 64, .max_seq = 32, .tied = tied};
    assert_int_equal(student_config_validate(&c), 0);
    size_t n = student_param_count(&c);
    float *p = calloc(n, 4);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/ck%d", tmpdir, tied);
    json_t *st = json_pack("{s:i}", "step", 1);
    assert_int_equal(checkpoint_save(dir, &c, p, p, p, st), 0);
    json_decref(st);
    free(p);
    char *out;
    char args[256];
    snprintf(args, sizeof args, "--compact %s", dir);
    int rc = run_inspect(args, &out);
    if (rc) fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    json_error_t err;
    json_t *j = json_loads(out, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "model_type")), "llama");
    assert_int_equal(geti(j, "layers"), 3);
    assert_int_equal(geti(j, "width"), 32);
    assert_int_equal(geti(j, "heads"), 4);
    assert_int_equal(geti(j, "kv_heads"), 2);
    assert_int_equal(geti(j, "head_dim"), 8);
    assert_int_equal(geti(j, "ffn"), 40);
    assert_int_equal(geti(j, "vocab"), 50);
    assert_int_equal(geti(j, "vocab_padded"), 64);
    assert_int_equal(json_is_true(json_object_get(j, "tied")), tied);
    /* by hand: embedding 64·32; per layer q 32·32, k,v 16·32 each, o 32·32, mlp 3·40·32,
     * two norms 2·32; final norm 32; untied head 64·32 */
    json_t *pc = json_object_get(j, "parameters");
    long long layer = 32 * 32 + 2 * 16 * 32 + 32 * 32 + 3 * 40 * 32 + 2 * 32;
    long long total = 64 * 32 + 3 * layer + 32 + (tied ? 0 : 64 * 32);
    assert_int_equal(geti(pc, "per_layer"), layer);
    assert_int_equal(geti(pc, "embedding"), 64 * 32);
    assert_int_equal(geti(pc, "total"), total);
    /* the files: sizes as on disk, elements = parameters + 2 moments */
    json_t *files = json_object_get(j, "files");
    const char *names[] = {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"};
    long long sum = 0;
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        assert_int_equal(geti(files, names[i]), fs_file_size(path));
        sum += fs_file_size(path);
    }
    assert_int_equal(json_object_size(files), 4);
    assert_int_equal(geti(j, "total_bytes"), sum);
    assert_int_equal(geti(j, "tensor_elements"), 3 * total);
    int nt = 2 + 9 * 3 + !tied;
    assert_int_equal(geti(j, "tensors"), 3 * nt);
    assert_int_equal(geti(json_object_get(j, "dtypes"), "F32"), 3 * nt);
    json_decref(j);
    free(out);
    /* --tensors lists every tensor with its shape */
    snprintf(args, sizeof args, "--compact --tensors %s", dir);
    assert_int_equal(run_inspect(args, &out), 0);
    j = json_loads(out, 0, &err);
    assert_non_null(j);
    json_t *list = json_object_get(j, "tensor_list");
    assert_int_equal(json_array_size(list), 3 * nt);
    int found = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *t = json_array_get(list, i);
        if (strcmp(json_string_value(json_object_get(t, "name")), "model.layers.2.self_attn.k_proj.weight")) continue;
        found++;
        assert_string_equal(json_string_value(json_object_get(t, "file")), "model.safetensors");
        assert_string_equal(json_string_value(json_object_get(t, "dtype")), "F32");
        json_t *shape = json_object_get(t, "shape");
        assert_int_equal(json_integer_value(json_array_get(shape, 0)), 16);
        assert_int_equal(json_integer_value(json_array_get(shape, 1)), 32);
    }
    assert_int_equal(found, 1);
    json_decref(j);
    free(out);
}

static void test_describes_student(void **state) {
    (void)state;
    if (access(prog, X_OK) != 0) skip();
    describe_checks(1);
    describe_checks(0);
}

static void test_errors_and_help(void **state) {
    (void)state;
    if (access(prog, X_OK) != 0) skip();
    char *out;
    assert_int_equal(run_inspect("--help", &out), 0);
    assert_non_null(strstr(out, "usage: sushi inspect"));
    free(out);
    assert_int_equal(run_inspect("", &out), 2);
    free(out);
    assert_int_equal(run_inspect("/nonexistent/ck", &out), 1);
    assert_non_null(strstr(out, "/nonexistent/ck: no such checkpoint directory"));
    free(out);
    char dir[128], path[160], args[200];
    snprintf(dir, sizeof dir, "%s/other", tmpdir);
    assert_int_equal(fs_mkdir_p(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = "{\"model_type\": \"gpt2\"}";
    assert_int_equal(fs_write_atomic(path, cfg, strlen(cfg)), 0);
    snprintf(args, sizeof args, "%s", dir);
    assert_int_equal(run_inspect(args, &out), 1);
    assert_non_null(strstr(out, "model_type \"gpt2\" has no describer"));
    free(out);
}

int main(void) {
    const char *root = getenv("SUSHI_REPO_ROOT"), *build = getenv("BUILD");
    snprintf(prog, sizeof prog, "%s/%s/bin/sushi-inspect", root ? root : ".", build ? build : "build");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sushi-test-inspect-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describes_student),
        cmocka_unit_test(test_errors_and_help),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fs_remove_tree(tmpdir);
    return rc;
}
