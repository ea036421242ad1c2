// libs: student kernels core config
/* Student checkpoints with encoders (model.encoders): the encoder weights and AdamW
 * moments round-trip bit-exactly under their HF names next to the text model's,
 * config.json carries sushi.encoders (checkpoint_read_config gives them back), a
 * text-only load of such a checkpoint skips the encoder tensors, and asking for
 * encoder tensors a text-only checkpoint lacks is refused naming the tensor. */
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
#include "models/rng.h"
#include "models/student/checkpoint.h"

static char tmpdir[64];

static struct student_config enc_config(int with_enc) {
    struct student_config c = {.n_layers = 2, .d_model = 16, .n_heads = 4, .n_kv_heads = 2, .d_ff = 24,
                               .vocab = 30, .vocab_padded = 32, .max_seq = 48, .tied = 1,
                               .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    if (with_enc)
        c.enc = (struct encoder_config){.image = 1, .patch_dim = 12, .grid_rows = 2, .grid_cols = 3,
                                        .mesh_tokens = 2, .mesh_points = 8, .mesh_hidden = 5};
    assert_int_equal(student_config_validate(&c), 0);
    return c;
}

static float *randn(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof *x);
    struct rng r;
    rng_seed(&r, seed);
    assert_int_equal(rng_fill_normal(&r, x, n, 0.0f, 0.5f), 0);
    return x;
}

static void test_roundtrip(void **st) {
    (void)st;
    struct student_config c = enc_config(1);
    size_t ns = student_param_count(&c), ne = encoder_param_count(&c.enc);
    assert_true(ne > 0);
    float *p = randn(ns, 1), *m = randn(ns, 2), *v = randn(ns, 3);
    float *ep = randn(ne, 4), *em = randn(ne, 5), *ev = randn(ne, 6);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/enc", tmpdir);
    struct ckpt_encoder_bufs e = {ep, em, ev};
    json_t *state = json_pack("{s:i}", "step", 3);
    assert_int_equal(checkpoint_save_enc(dir, &c, p, m, v, &e, state), 0);
    /* config.json: the encoders come back */
    struct student_config r = {0};
    enum ckpt_source src;
    assert_int_equal(checkpoint_read_config(dir, &r, &src), 0);
    assert_int_equal(src, CKPT_FROM_CONFIG_JSON);
    assert_memory_equal(&r.enc, &c.enc, sizeof r.enc);
    /* bit-exact */
    float *p2 = calloc(ns, 4), *m2 = calloc(ns, 4), *v2 = calloc(ns, 4);
    float *ep2 = calloc(ne, 4), *em2 = calloc(ne, 4), *ev2 = calloc(ne, 4);
    struct ckpt_encoder_bufs e2 = {ep2, em2, ev2};
    json_t *st2 = NULL;
    assert_int_equal(checkpoint_load_enc(dir, &r, p2, m2, v2, &e2, &st2), 0);
    assert_memory_equal(p, p2, ns * 4);
    assert_memory_equal(m, m2, ns * 4);
    assert_memory_equal(v, v2, ns * 4);
    assert_memory_equal(ep, ep2, ne * 4);
    assert_memory_equal(em, em2, ne * 4);
    assert_memory_equal(ev, ev2, ne * 4);
    json_decref(st2);
    /* the text model alone: encoder tensors skipped, not an error */
    memset(p2, 0, ns * 4);
    assert_int_equal(checkpoint_load(dir, &r, p2, m2, v2, NULL), 0);
    assert_memory_equal(p, p2, ns * 4);
    /* moments for one part only: refused */
    struct ckpt_encoder_bufs half = {ep2, NULL, NULL};
    assert_int_equal(checkpoint_save_enc(dir, &c, p, m, v, &half, NULL), SUSHI_EINVAL);
    /* a text-only checkpoint has no encoder tensors to give */
    struct student_config t = enc_config(0);
    char dir2[128];
    snprintf(dir2, sizeof dir2, "%s/text", tmpdir);
    assert_int_equal(checkpoint_save(dir2, &t, p, NULL, NULL, NULL), 0);
    struct ckpt_encoder_bufs w = {ep2, NULL, NULL};
    assert_int_equal(checkpoint_load_enc(dir2, &c, p2, NULL, NULL, &w, NULL), SUSHI_ENOTFOUND);
    assert_non_null(strstr(sushi_last_error(), "model.vision.patch_proj.weight"));
    /* encoder buffers for a model without encoders: refused */
    assert_int_equal(checkpoint_load_enc(dir2, &t, p2, NULL, NULL, &w, NULL), SUSHI_EINVAL);
    json_decref(state);
    free(p); free(m); free(v); free(ep); free(em); free(ev);
    free(p2); free(m2); free(v2); free(ep2); free(em2); free(ev2);
}

static int setup(void **st) {
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sushi-ckenc-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **st) {
    (void)st;
    fs_remove_tree(tmpdir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_roundtrip)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
