/* Setting up the trainer stage (pipeline.h): model and optimizer, resume from the
 * checkpoint in train.checkpoint_dir (else, for a new stage, the weights of
 * train.init_from), frozen layers (train.freeze_layers), records, sockets; and tearing it
 * down. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "models/student/checkpoint.h"
#include "services/trainer/loss_scale.h"
#include "services/trainer/pipeline.h"
#include "services/trainer/trainer.h"

/* step, next and the records' lengths from a loaded trainer_state.json */
static int read_state(struct pipe *p, const json_t *state, long long *ab, long long *lb) {
    const char *dir = p->tc->checkpoint_dir;
    json_t *step = json_object_get(state, "step"), *next = json_object_get(state, "next");
    json_t *a = json_object_get(state, "applied_bytes"), *l = json_object_get(state, "losses_bytes");
    json_t *rs = json_object_get(state, "data_rng");
    unsigned long long r = 0;
    if (!json_is_integer(step) || !json_is_integer(next) || !json_is_integer(a) || !json_is_integer(l) ||
        json_integer_value(step) < 0 || json_integer_value(next) < 0 || json_integer_value(a) < 0 ||
        json_integer_value(l) < 0 || !json_is_string(rs) || sscanf(json_string_value(rs), "%llx", &r) != 1)
        return sushi_error(SUSHI_EFORMAT, "%s: %s: needs integers step, next, applied_bytes, losses_bytes and "
                           "hex data_rng (not a pipeline checkpoint?)", dir, CKPT_STATE);
    p->opt.step = (int)json_integer_value(step);
    p->saved_step = p->opt.step;
    p->next = (uint64_t)json_integer_value(next);
    p->saved_next = p->next;
    p->rng.state = r;
    *ab = json_integer_value(a);
    *lb = json_integer_value(l);
    int rc = trainer_scale_state_get(&p->opt, state, dir);
    p->saved_iter = trainer_iterations(&p->opt);
    return rc;
}

/* loads the checkpoint when asked and present; opens the records to match */
static int resume(struct pipe *p, const char *records_dir) {
    const struct train_config *tc = p->tc;
    long long ab = 0, lb = 0;
    int keep = 0, rc = 0;
    if (tc->resume && trainer_checkpoint_exists(tc->checkpoint_dir)) {
        json_t *state = NULL;
        rc = trainer_model_load(&p->m, &p->opt, tc->checkpoint_dir, &state);
        if (!rc) rc = read_state(p, state, &ab, &lb);
        json_decref(state);
        if (rc) return rc;
        keep = 1;
        log_info("resumed %s at step %d, next batch %llu", tc->checkpoint_dir, p->opt.step,
                 (unsigned long long)p->next);
    } else if (tc->init_from[0]) {   /* a new stage: the previous stage's weights only */
        rc = trainer_model_init_from(&p->m, tc->init_from);
        if (rc) return rc;
    }
    return records_open(&p->rec, records_dir, keep, ab, lb);
}

/* ipc://PATH binds need PATH's folder */
static int ipc_parent(const char *endpoint) {
    if (strncmp(endpoint, "ipc://", 6) != 0) return 0;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", endpoint + 6);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = 0;
    return fs_mkdir_p(dir, 0755);
}

static int open_sockets(struct pipe *p) {
    const struct train_config *tc = p->tc;
    struct transport_opts o = transport_opts_default();
    o.send_timeout_ms = 200;
    o.linger_ms = 2000;        /* the final ack must leave before the process exits */
    o.allow_remote = tc->allow_remote;
    o.name = "loader";
    int rc = transport_open(&p->dealer, p->st.zctx, TRANSPORT_DEALER, tc->ep_loader, 0, &o);
    if (!rc && !tc->direct) {
        o.linger_ms = 0;
        o.name = "teachers";
        rc = ipc_parent(tc->ep_trainer);
        if (!rc) rc = transport_open(&p->router, p->st.zctx, TRANSPORT_ROUTER, tc->ep_trainer, 1, &o);
    }
    if (!rc && tc->ep_events[0]) {
        o.send_timeout_ms = 0;
        o.linger_ms = 1000;
        o.sndhwm = 1000;
        o.name = "events";
        rc = ipc_parent(tc->ep_events);
        if (!rc) rc = transport_open(&p->events, p->st.zctx, TRANSPORT_PUB, tc->ep_events, 1, &o);
    }
    return rc;
}

int trainer_pipeline(const struct train_config *tc) {
    struct pipe *p = calloc(1, sizeof *p);
    if (!p) return sushi_error(SUSHI_ENOMEM, "trainer: state");
    p->tc = tc;
    p->saved_step = p->saved_iter = -1;
    p->expect = (struct batch_expect){.B = tc->batch_size, .T = tc->seq_len, .scored = !tc->direct,
                                      .temperature = tc->kd.temperature};
    p->lc = (struct student_loss_cfg){.smoothing = tc->smoothing, .alpha = tc->kd.alpha, .mode = tc->kd.mode,
                                      .temperature = tc->kd.temperature, .jsd_beta = tc->kd.jsd_beta};
    rng_seed(&p->rng, tc->seed ^ 0x5eedda7aull);
    const struct ops *ops = NULL;
    char records_dir[600];
    snprintf(records_dir, sizeof records_dir, "%.512s/trainer", tc->run_dir);
    int rc = trainer_backend(tc, &ops);
    int have_model = 0, have_optim = 0, have_stage = 0, have_reorder = 0;
    if (!rc) rc = trainer_model_create(&p->m, tc, ops, tc->batch_size, tc->seq_len);
    have_model = !rc;
    if (!rc && p->m.has_enc)
        rc = mm_inputs_init(&p->mm, &p->m.student.cfg.enc, tc->batch_size, tc->image_mean, tc->image_std);
    struct optim_config oc;
    if (!rc) rc = trainer_optim_config(tc, ops, &oc);
    if (!rc) rc = optim_create(&p->opt, &oc, ops, p->m.n_params, p->m.n_decay);
    have_optim = !rc;
    if (!rc) rc = trainer_model_freeze(&p->m, &p->opt, tc->freeze_layers);
    if (!rc) {
        p->expect.vocab = p->m.vocab;
        p->expect.need_doc_ids = p->m.doc_mask;
        rc = reorder_init(&p->ro, tc->window);
        have_reorder = !rc;
    }
    if (!rc) rc = heartbeat_init(&p->hb, tc->heartbeat_ms, (tc->dead_after_ms + tc->heartbeat_ms - 1) / tc->heartbeat_ms,
                                 heartbeat_now_ms());
    if (!rc) rc = resume(p, records_dir);
    if (!rc) rc = stage_open(&p->st, "trainer", NULL, tc->heartbeat_ms);
    have_stage = !rc;
    if (!rc) rc = open_sockets(p);
    if (!rc) {
        log_info("trainer: %s model, %zu parameters, batch %dx%d x %d accum, %d steps from step %d, %s mode, "
                 "window %d, backend %s%s", trainer_arch_name(tc->arch), p->m.n_params, tc->batch_size, tc->seq_len,
                 p->opt.cfg.accum_steps, tc->steps, trainer_iterations(&p->opt), tc->direct ? "direct" : "KD",
                 tc->window, ops->name,
                 tc->deterministic ? ", deterministic" : "");
        rc = beat_start(p);
        if (!rc) rc = pipeline_loop(p);
        beat_stop(p);
    }
    if (rc) {   /* keep the message: teardown may log */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sushi_last_error());
        sushi_error(rc, "%s", msg);
    }
    transport_close(p->dealer);
    transport_close(p->router);
    transport_close(p->events);
    if (have_stage) stage_close(&p->st);
    records_close(&p->rec);
    if (have_reorder) reorder_free(&p->ro);
    if (have_optim) optim_free(&p->opt);
    if (have_model) trainer_model_free(&p->m);
    mm_inputs_free(&p->mm);
    free(p);
    return rc;
}
