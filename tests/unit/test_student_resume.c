// libs: student kernels core
/* Determinism of training: the same seed gives bit-identical losses, and saving a
 * checkpoint (weights, AdamW moments, step, data RNG through models/student/checkpoint.h)
 * then loading it into a fresh model and continuing gives losses bit-identical to the
 * uninterrupted run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include "models/optim.h"
#include "models/student/checkpoint.h"
#include "tests/unit/student_case.h"

#define STEPS 6
#define SPLIT 3

struct run {
    struct student_model m;
    struct optim o;
    struct rng data;
};

static const struct optim_config ocfg = {.lr = 1e-2f, .min_lr = 1e-3f, .warmup_steps = 2,
                                         .total_steps = STEPS, .weight_decay = 0.1f,
                                         .clip_norm = 0.5f};

static struct student_config resume_config(void) {
    struct student_config c = scase_small_config(0);
    c.doc_mask = 1;
    c.window = 5;
    return c;
}

static void run_start(struct run *r, uint64_t seed) {
    struct student_config c = resume_config();
    assert_int_equal(student_create(&r->m, &c, ops_cpu(), 2, 10, seed), 0);
    assert_int_equal(optim_create(&r->o, &ocfg, ops_cpu(), r->m.n_params, r->m.n_decay), 0);
    rng_seed(&r->data, seed + 100);
}

/* one optimizer step on a batch drawn from the run's data RNG */
static float run_step(struct run *r) {
    int N = r->m.B * r->m.T;
    int32_t ids[64], tg[64], doc[64];
    for (int n = 0; n < N; n++) {
        ids[n] = (int32_t)(rng_u64(&r->data) % r->m.cfg.vocab);
        tg[n] = (ids[n] * 3 + 1) % r->m.cfg.vocab; /* a learnable map */
        doc[n] = (n % r->m.T) < 4 ? 0 : 1;
    }
    struct student_loss_cfg lc = {.smoothing = 0.1f};
    float loss;
    assert_int_equal(student_zero_grad(&r->m), 0);
    assert_int_equal(student_forward(&r->m, ids, tg, doc, NULL, &lc, &loss), 0);
    assert_int_equal(student_backward(&r->m), 0);
    assert_int_equal(optim_step(&r->o, r->m.master, r->m.wbuf, r->m.gbuf), 0);
    return loss;
}

static void run_end(struct run *r) {
    optim_free(&r->o);
    student_free(&r->m);
}

static void test_same_seed_same_losses(void **st) {
    (void)st;
    float a[STEPS], b[STEPS];
    struct run r;
    run_start(&r, 3);
    for (int i = 0; i < STEPS; i++) a[i] = run_step(&r);
    run_end(&r);
    run_start(&r, 3);
    for (int i = 0; i < STEPS; i++) b[i] = run_step(&r);
    run_end(&r);
    assert_memory_equal(a, b, sizeof a);
    assert_true(a[STEPS - 1] < a[0]);
    run_start(&r, 4); /* a different seed gives a different run */
    float c0 = run_step(&r);
    run_end(&r);
    assert_true(c0 != a[0]);
}

static void test_save_load_continue(void **st) {
    (void)st;
    float full[STEPS], resumed[STEPS];
    struct run r;
    run_start(&r, 3);
    for (int i = 0; i < STEPS; i++) full[i] = run_step(&r);
    run_end(&r);

    char dir[] = "/tmp/sushi_resume_XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ckpt", dir);
    run_start(&r, 3);
    for (int i = 0; i < SPLIT; i++) resumed[i] = run_step(&r);
    char rng_hex[32];
    snprintf(rng_hex, sizeof rng_hex, "%016llx", (unsigned long long)r.data.state);
    json_t *state = json_pack("{s:i, s:s}", "step", r.o.step, "data_rng", rng_hex);
    assert_int_equal(checkpoint_save(path, &r.m.cfg, r.m.master, r.o.m, r.o.v, state), 0);
    json_decref(state);
    run_end(&r);

    run_start(&r, 77); /* different init and data seed: everything must come from disk */
    struct student_config c = {0};
    assert_int_equal(checkpoint_read_config(path, &c, NULL), 0);
    assert_int_equal(c.n_kv_heads, r.m.cfg.n_kv_heads);
    assert_int_equal(c.window, r.m.cfg.window);
    json_t *loaded = NULL;
    assert_int_equal(checkpoint_load(path, &c, r.m.master, r.o.m, r.o.v, &loaded), 0);
    assert_int_equal(student_sync_weights(&r.m), 0);
    r.o.step = (int)json_integer_value(json_object_get(loaded, "step"));
    unsigned long long s = 0;
    assert_int_equal(sscanf(json_string_value(json_object_get(loaded, "data_rng")), "%llx", &s), 1);
    r.data.state = s;
    json_decref(loaded);
    assert_int_equal(r.o.step, SPLIT);
    for (int i = SPLIT; i < STEPS; i++) resumed[i] = run_step(&r);
    run_end(&r);
    for (int i = 0; i < STEPS; i++) print_message("step %d: %.8f %.8f\n", i, full[i], resumed[i]);
    assert_memory_equal(full, resumed, sizeof full);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_losses),
        cmocka_unit_test(test_save_load_continue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
