// libs: config student kernels core
/* YAML configs: core-schema typing, overrides, located errors, unknown keys, and the
 * four student tier configs (SPEC §3 table) loading and validating. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config/config.h"
#include "common/core/config_student.h"
#include "common/core/log.h"

static json_t *parse(const char *text) {
    json_t *j = NULL;
    int rc = config_parse_yaml(text, strlen(text), "t.yaml", &j);
    if (rc) fprintf(stderr, "parse: %s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    return j;
}

static void assert_error_has(const char *needle) {
    const char *e = sushi_last_error();
    if (!strstr(e, needle)) fprintf(stderr, "error \"%s\" lacks \"%s\"\n", e, needle);
    assert_non_null(strstr(e, needle));
}

static void test_scalar_typing(void **state) {
    (void)state;
    json_t *j = parse("a: 12\nb: -3\nc: 1.5\nd: 1e-5\ne: true\nf: False\ng: ~\nh: null\n"
                      "i: '12'\nj: \"true\"\nk: hello world\nl: 0x1F\nm: 0o17\nn: .5\n"
                      "o: 1.0e+3\np: yes\nq:\n");
    assert_int_equal(json_integer_value(json_object_get(j, "a")), 12);
    assert_int_equal(json_integer_value(json_object_get(j, "b")), -3);
    assert_true(json_is_real(json_object_get(j, "c")));
    assert_true(json_real_value(json_object_get(j, "c")) == 1.5);
    assert_true(json_is_real(json_object_get(j, "d")));   /* YAML 1.2: 1e-5 is a float */
    assert_true(json_real_value(json_object_get(j, "d")) == 1e-5);
    assert_true(json_is_true(json_object_get(j, "e")));
    assert_true(json_is_false(json_object_get(j, "f")));
    assert_true(json_is_null(json_object_get(j, "g")));
    assert_true(json_is_null(json_object_get(j, "h")));
    assert_string_equal(json_string_value(json_object_get(j, "i")), "12");
    assert_string_equal(json_string_value(json_object_get(j, "j")), "true");
    assert_string_equal(json_string_value(json_object_get(j, "k")), "hello world");
    assert_int_equal(json_integer_value(json_object_get(j, "l")), 31);
    assert_int_equal(json_integer_value(json_object_get(j, "m")), 15);
    assert_true(json_real_value(json_object_get(j, "n")) == 0.5);
    assert_true(json_real_value(json_object_get(j, "o")) == 1000.0);
    assert_string_equal(json_string_value(json_object_get(j, "p")), "yes");  /* not 1.1 bool */
    assert_true(json_is_null(json_object_get(j, "q")));
    json_decref(j);
}

static void test_nesting(void **state) {
    (void)state;
    json_t *j = parse("model:\n  sizes: [1, 2, 3]\n  inner: {x: 1, y: [a, 'b']}\nlist:\n  - k: 1\n  - 2\n");
    json_t *sizes = ju_get_path(j, "model.sizes");
    assert_int_equal(json_array_size(sizes), 3);
    assert_int_equal(json_integer_value(json_array_get(sizes, 2)), 3);
    assert_int_equal(json_integer_value(ju_get_path(j, "model.inner.x")), 1);
    assert_string_equal(json_string_value(json_array_get(ju_get_path(j, "model.inner.y"), 1)), "b");
    json_t *list = json_object_get(j, "list");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "k")), 1);
    assert_int_equal(json_integer_value(json_array_get(list, 1)), 2);
    assert_null(ju_get_path(j, "model.missing.x"));
    json_decref(j);
}

static void test_yaml_errors(void **state) {
    (void)state;
    json_t *j = NULL;
    const char *dup = "a: 1\nb: 2\na: 3\n";
    assert_int_equal(config_parse_yaml(dup, strlen(dup), "d.yaml", &j), SUSHI_EFORMAT);
    assert_error_has("d.yaml:3:");
    assert_error_has("duplicate key \"a\"");
    const char *syn = "a: [1, 2\nb: 3\n";
    assert_int_equal(config_parse_yaml(syn, strlen(syn), "s.yaml", &j), SUSHI_EFORMAT);
    assert_error_has("s.yaml:");
    const char *alias = "a: &x 1\nb: *x\n";
    assert_int_equal(config_parse_yaml(alias, strlen(alias), "al.yaml", &j), SUSHI_EFORMAT);
    assert_error_has("not supported");
    const char *inf = "a: .inf\n";
    assert_int_equal(config_parse_yaml(inf, strlen(inf), "i.yaml", &j), SUSHI_EFORMAT);
    assert_error_has("i.yaml:1:4: infinities");
    const char *two = "a: 1\n---\nb: 2\n";
    assert_int_equal(config_parse_yaml(two, strlen(two), "two.yaml", &j), SUSHI_EFORMAT);
    assert_error_has("more than one YAML document");
    assert_null(j);
    assert_int_equal(config_load_yaml("/nonexistent/x.yaml", &j), SUSHI_ENOTFOUND);
    assert_error_has("/nonexistent/x.yaml");
}

static void test_overrides(void **state) {
    (void)state;
    json_t *j = parse("model:\n  d_model: 64\n  tied: true\nname: x\n");
    assert_int_equal(config_set_override(j, "model.d_model=128", "f.yaml"), 0);
    assert_int_equal(config_set_override(j, "model.tied=false", "f.yaml"), 0);
    assert_int_equal(config_set_override(j, "train.opt.lr=3e-4", "f.yaml"), 0);
    assert_int_equal(config_set_override(j, "data.weights=[1, 2.5]", "f.yaml"), 0);
    assert_int_equal(config_set_override(j, "name=\"007\"", "f.yaml"), 0);
    assert_int_equal(config_set_override(j, "model.window=", "f.yaml"), 0);
    assert_true(json_is_null(ju_get_path(j, "model.window")));
    int d = 0, tied = 1;
    float lr = 0;
    const char *name = NULL;
    assert_int_equal(config_get_int(j, "f.yaml", "model.d_model", 1, &d), 0);
    assert_int_equal(d, 128);
    assert_int_equal(config_get_bool(j, "f.yaml", "model.tied", 1, &tied), 0);
    assert_int_equal(tied, 0);
    assert_int_equal(config_get_float(j, "f.yaml", "train.opt.lr", 1, &lr), 0);
    assert_true(lr == 3e-4f);
    assert_int_equal(config_get_string(j, "f.yaml", "name", 1, &name), 0);
    assert_string_equal(name, "007");
    assert_true(json_real_value(json_array_get(ju_get_path(j, "data.weights"), 1)) == 2.5);
    /* errors */
    assert_int_equal(config_set_override(j, "model.d_model.x=1", "f.yaml"), SUSHI_EINVAL);
    assert_error_has("model.d_model is not a map");
    assert_int_equal(config_set_override(j, "model.d_model", "f.yaml"), SUSHI_EINVAL);
    assert_error_has("expected key.path=value");
    assert_int_equal(config_set_override(j, "model..x=1", "f.yaml"), SUSHI_EINVAL);
    assert_error_has("empty key component");
    json_decref(j);
}

static void test_getter_errors(void **state) {
    (void)state;
    json_t *j = parse("model:\n  d_model: abc\n  eps: 1e-5\n  big: 99999999999\n");
    int d = 7;
    assert_int_equal(config_get_int(j, "configs/x.yaml", "model.d_model", 1, &d), SUSHI_EFORMAT);
    assert_string_equal(sushi_last_error(), "configs/x.yaml: model.d_model: expected an integer, got \"abc\"");
    assert_int_equal(d, 7);
    assert_int_equal(config_get_int(j, "configs/x.yaml", "model.eps", 1, &d), SUSHI_EFORMAT);
    assert_error_has("model.eps: expected an integer, got 1e-5");
    assert_int_equal(config_get_int(j, "configs/x.yaml", "model.big", 1, &d), SUSHI_EINVAL);
    assert_error_has("model.big: 99999999999 out of range");
    assert_int_equal(config_get_int(j, "configs/x.yaml", "model.n_heads", 1, &d), SUSHI_ENOTFOUND);
    assert_string_equal(sushi_last_error(), "configs/x.yaml: model.n_heads: missing (required)");
    assert_int_equal(config_get_int(j, "configs/x.yaml", "model.n_heads", 0, &d), 0);
    assert_int_equal(d, 7);
    json_decref(j);
}

static char tmpdir[64];

static const char *write_tmp(const char *name, const char *text) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_student_config_errors(void **state) {
    (void)state;
    struct student_config c;
    const char *p = write_tmp("bad1.yaml", "model:\n  n_layers: 2\n  d_modle: 64\n");
    assert_int_equal(config_load_student(p, NULL, 0, &c), SUSHI_EINVAL);
    assert_error_has("bad1.yaml: model.d_modle: unknown key");
    p = write_tmp("bad2.yaml", "model:\n  n_layers: 2\n  d_model: abc\n");
    assert_int_equal(config_load_student(p, NULL, 0, &c), SUSHI_EFORMAT);
    assert_error_has("bad2.yaml: model.d_model: expected an integer, got \"abc\"");
    p = write_tmp("bad3.yaml", "model:\n  n_layers: 1\n  d_model: 64\n  n_heads: 4\n  d_ff: 8\n"
                               "  vocab: 10\n  max_seq: 8\n  rope_scaling: {type: ntk}\n");
    assert_int_equal(config_load_student(p, NULL, 0, &c), SUSHI_EUNSUPPORTED);
    assert_error_has("model.rope_scaling.type: unsupported \"ntk\"");
    p = write_tmp("bad4.yaml", "train: {}\n");
    assert_int_equal(config_load_student(p, NULL, 0, &c), SUSHI_ENOTFOUND);
    assert_error_has("bad4.yaml: model: missing");
    p = write_tmp("bad5.yaml", "model:\n  n_layers: 1\n  d_model: 64\n  n_heads: 4\n  d_ff: 8\n"
                               "  max_seq: 8\n");
    assert_int_equal(config_load_student(p, NULL, 0, &c), SUSHI_EINVAL);
    assert_error_has("bad5.yaml: ");
    assert_error_has("vocab");
    p = write_tmp("yarn.yaml", "model:\n  n_layers: 1\n  d_model: 64\n  n_heads: 4\n  d_ff: 8\n"
                               "  vocab: 10\n  max_seq: 8\n  rope_scaling: {type: yarn, factor: 4}\n");
    assert_int_equal(config_load_student(p, NULL, 0, &c), 0);
    assert_int_equal(c.rope_scaling.type, ROPE_SCALING_YARN);
    assert_true(c.rope_scaling.factor == 4.0f);
    /* to_json -> from_json round trip */
    json_t *j = config_student_to_json(&c);
    struct student_config c2;
    struct ju_where w = {"rt", "model"};
    assert_int_equal(config_student_from_json(j, w, &c2), 0);
    json_decref(j);
    assert_memory_equal(&c, &c2, sizeof c);
}

struct tier { const char *name; int L, C, H, G, F, T, D, V; };

static void test_tier_configs(void **state) {
    (void)state;
    static const struct tier tiers[] = {
        {"tiny", 1, 64, 4, 2, 192, 128, 16, 32000},
        {"dev", 12, 512, 8, 4, 1408, 512, 64, 32000},
        {"production", 30, 768, 16, 4, 2048, 2048, 48, 32000},
        {"smollm-135m", 30, 576, 9, 3, 1536, 2048, 64, 49152},
    };
    const char *root = getenv("SUSHI_REPO_ROOT");
    for (size_t i = 0; i < sizeof tiers / sizeof tiers[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/configs/student/%s.yaml", root ? root : ".", tiers[i].name);
        struct student_config c;
        int rc = config_load_student(path, NULL, 0, &c);
        if (rc) fprintf(stderr, "%s\n", sushi_last_error());
        assert_int_equal(rc, 0);
        assert_int_equal(c.n_layers, tiers[i].L);
        assert_int_equal(c.d_model, tiers[i].C);
        assert_int_equal(c.n_heads, tiers[i].H);
        assert_int_equal(c.n_kv_heads, tiers[i].G);
        assert_int_equal(c.d_ff, tiers[i].F);
        assert_int_equal(c.max_seq, tiers[i].T);
        assert_int_equal(c.d_head, tiers[i].D);
        assert_int_equal(c.vocab, tiers[i].V);
        assert_int_equal(c.tied, 1);
        assert_true(c.rope_theta == 10000.0f);
        assert_int_equal(c.window, 0);
    }
    /* SmolLM-135M has 134,515,008 parameters (HF model card / safetensors header) */
    char path[512];
    snprintf(path, sizeof path, "%s/configs/student/smollm-135m.yaml", root ? root : ".");
    struct student_config c;
    assert_int_equal(config_load_student(path, NULL, 0, &c), 0);
    assert_int_equal(student_param_count(&c), 134515008);
    const char *ov[] = {"model.vocab=100", "model.window=32", "model.doc_mask=true"};
    snprintf(path, sizeof path, "%s/configs/student/tiny.yaml", root ? root : ".");
    assert_int_equal(config_load_student(path, ov, 3, &c), 0);
    assert_int_equal(c.vocab, 100);
    assert_int_equal(c.vocab_padded, 100);
    assert_int_equal(c.window, 32);
    assert_int_equal(c.doc_mask, 1);
    const char *bad[] = {"model.n_layer=3"};
    assert_int_equal(config_load_student(path, bad, 1, &c), SUSHI_EINVAL);
    assert_error_has("model.n_layer: unknown key");
}

/* Random byte flips in a real config: the parser never crashes or leaks (ASan runs
 * this too); a refusal always carries file:line:column or a typing message. */
static void test_mutated_yaml(void **state) {
    (void)state;
    const char *text = "# c\nmodel:\n  n_layers: 1\n  d_model: 64\n  list: [1, 2.5, 'x', {a: b}]\n"
                       "  nested:\n    - k: v\n    - \"q\"\ntrain: {lr: 3e-4, on: true}\n";
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int ok = 0, bad = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(buf, text, n + 1);
        for (int k = 0; k < 1 + trial % 3; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            static const char alphabet[] = "[]{}:,-'\"&*!|>#\n x0.~";
            buf[x % n] = alphabet[(x >> 32) % (sizeof alphabet - 1)];
        }
        json_t *j = NULL;
        int rc = config_parse_yaml(buf, n, "m.yaml", &j);
        if (rc == 0) {
            ok++;
            assert_non_null(j);
            json_decref(j);
        } else {
            bad++;
            assert_null(j);
            assert_non_null(strstr(sushi_last_error(), "m.yaml"));
        }
    }
    free(buf);
    assert_true(ok > 100 && bad > 100);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sushi-test-config-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_typing),   cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_yaml_errors),     cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_getter_errors),   cmocka_unit_test(test_student_config_errors),
        cmocka_unit_test(test_tier_configs),      cmocka_unit_test(test_mutated_yaml),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) rc = rc ? rc : 1;
    return rc;
}
