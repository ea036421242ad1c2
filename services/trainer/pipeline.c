/* The trainer stage of the distillation pipeline (protocol.h):
 *
 *   hello (next, window) → loader          teacher replicas → scored ─┐  (ROUTER)
 *                                          loader → batch (direct) ───┤  (DEALER)
 *      check (shapes, ids, temperature) → reorder window → apply in id order:
 *      [modality tensors → encoder prefix (model.encoders)] →
 *      forward (KD top-K + CE) / backward × accum_steps → clip → AdamW → losses.tsv
 *      every save_every steps and at the end: checkpoint → ack next → announce (PUB)
 *
 * Every applied batch goes to applied.tsv; the checkpoint records both files' lengths,
 * the step and `next`, so a resumed run (train.resume) continues exactly where the last
 * durable checkpoint left off and the loader rewinds to its `next`. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/transport/heartbeat.h"
#include "common/transport/protocol.h"
#include "common/transport/stage.h"
#include "common/transport/transport.h"
#include "models/rng.h"
#include "models/student/checkpoint.h"
#include "services/trainer/batch_check.h"
#include "services/trainer/loss_scale.h"
#include "services/trainer/pipeline.h"
#include "services/trainer/records.h"
#include "services/trainer/reorder.h"
#include "services/trainer/trainer.h"
#include "services/trainer/trainer_model.h"

enum { FROM_LOADER = 0, FROM_TEACHER = 1 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- sending ---------------------------------------------------------------------- */

static int send_to_loader(struct pipe *p, enum wire_kind kind, uint64_t id, json_t *meta) {
    struct wire_msg m;
    wire_msg_init(&m, kind);
    m.id = id;
    snprintf(m.stage, sizeof m.stage, "%s", p->st.name);
    m.meta = meta;
    int rc = transport_send(p->dealer, &m, NULL, NULL, NULL);
    m.meta = NULL;
    json_decref(meta);
    if (rc && !p->loader_down)
        log_warn("loader %s: %s %llu not sent (further failures are only logged at debug level until a send "
                 "succeeds): %s", p->tc->ep_loader, wire_kind_name(kind), (unsigned long long)id, sushi_last_error());
    else if (rc)
        log_debug("loader %s: %s not sent: %s", p->tc->ep_loader, wire_kind_name(kind), sushi_last_error());
    else if (p->loader_down)
        log_info("loader %s: reachable again", p->tc->ep_loader);
    p->loader_down = rc != 0;
    return 0;   /* the loader may be restarting: heartbeats and hellos repeat */
}

static int send_hello(struct pipe *p) {
    json_t *meta = json_pack("{s:s, s:I, s:i, s:i}", "role", PROTO_ROLE_TRAINER, "next", (json_int_t)p->next,
                             "window", p->tc->window, "direct", p->tc->direct);
    if (!meta) return sushi_error(SUSHI_ENOMEM, "trainer: hello");
    if (p->tc->direct) {
        /* every free slot; grants made before this hello are void (the loader forgets them) */
        json_object_set_new(meta, "credit", json_integer(p->tc->window - p->ro.held));
        p->freed = 0;
    }
    return send_to_loader(p, WIRE_HELLO, p->next, meta);
}

/* heartbeat to the loader: next and window always, freed slots as credit in direct mode */
static int send_loader_heartbeat(struct pipe *p, int credit) {
    json_t *meta = json_pack("{s:I, s:i}", "next", (json_int_t)p->next, "window", p->tc->window);
    if (!meta) return sushi_error(SUSHI_ENOMEM, "trainer: heartbeat");
    if (credit && p->tc->direct && p->freed > 0) {
        json_object_set_new(meta, "credit", json_integer((json_int_t)p->freed));
        p->freed = 0;
    }
    return send_to_loader(p, WIRE_HEARTBEAT, 0, meta);
}

int pipe_send_heartbeats(struct pipe *p, int credit) {
    int rc = send_loader_heartbeat(p, credit);
    for (int i = 0; i < p->npeers && !rc; i++) {
        if (!heartbeat_is_alive(&p->hb, p->peers[i].name)) continue;
        struct wire_msg m;
        if ((rc = heartbeat_msg(&m, p->st.name))) break;
        if (transport_send(p->router, &m, &p->peers[i], NULL, NULL))
            log_debug("heartbeat to %s: %s", p->peers[i].name, sushi_last_error());
        wire_msg_free(&m);
    }
    return rc;
}

/* heartbeats every heartbeat_ms; teacher replicas gone silent are no longer sent any */
static int heartbeats(struct pipe *p) {
    int64_t now = heartbeat_now_ms();
    const char *dead[HEARTBEAT_MAX_PEERS];
    int n = heartbeat_expired(&p->hb, now, dead, HEARTBEAT_MAX_PEERS);
    for (int i = 0; i < n; i++) log_warn("teacher replica %s: silent for %d ms", dead[i], p->tc->dead_after_ms);
    return heartbeat_due(&p->hb, now) ? pipe_send_heartbeats(p, 1) : 0;
}

/* publishes on the events PUB (when configured) and to the stage's publish list */
static void announce(struct pipe *p, enum wire_kind kind, uint64_t id, json_t *meta) {
    if (p->events && meta) {
        struct wire_msg m;
        wire_msg_init(&m, kind);
        m.id = id;
        snprintf(m.stage, sizeof m.stage, "%s", p->st.name);
        m.meta = meta;
        if (transport_send(p->events, &m, NULL, NULL, NULL))
            log_debug("events %s: %s", p->tc->ep_events, sushi_last_error());
    }
    if (stage_publish(&p->st, kind, id, meta ? json_deep_copy(meta) : NULL))
        log_debug("publish: %s", sushi_last_error());
    json_decref(meta);
}

/* ---- receiving -------------------------------------------------------------------- */

/* a well-formed message that breaks the protocol: counted, logged once per peer */
static void protocol_bad(struct pipe *p, const char *peer, const char *why) {
    p->bad++;
    for (int i = 0; i < p->nlogged && i < PIPE_LOGGED; i++)
        if (!strcmp(p->logged[i], peer)) {
            log_debug("dropped message from %s: %s", peer, why);
            return;
        }
    snprintf(p->logged[p->nlogged % PIPE_LOGGED], sizeof p->logged[0], "%s", peer);
    p->nlogged++;
    log_warn("dropped message from %s (further ones from this peer are only counted): %s", peer, why);
}

/* a batch or scored batch: checked, then into the reorder window */
static void offer_batch(struct pipe *p, struct wire_msg *m, const struct transport_peer *from, int tag) {
    struct batch_view v;
    if (batch_check(m, &p->expect, &v)) {
        protocol_bad(p, from->name, sushi_last_error());
        if (tag == FROM_LOADER) p->freed++;
        return;
    }
    enum reorder_verdict verdict = reorder_offer(&p->ro, p->next, m, tag);
    if (verdict != REORDER_HELD) {
        p->dropped++;
        if (tag == FROM_LOADER) p->freed++;
        log_debug("batch %llu from %s dropped: %s (next %llu)", (unsigned long long)m->id, from->name,
                  reorder_verdict_name(verdict), (unsigned long long)p->next);
    }
}

static void remember_teacher(struct pipe *p, const struct transport_peer *from) {
    int fresh = heartbeat_seen(&p->hb, from->name, heartbeat_now_ms());
    if (fresh < 0) return;   /* table full of live peers: it gets no heartbeats */
    for (int i = 0; i < p->npeers; i++)
        if (!strcmp(p->peers[i].name, from->name)) return;
    if (p->npeers < HEARTBEAT_MAX_PEERS) {
        p->peers[p->npeers++] = *from;
        log_info("teacher replica %s connected", from->name);
    }
}

static void on_loader_msg(struct pipe *p, struct wire_msg *m, const struct transport_peer *from) {
    switch (m->kind) {
    case WIRE_BATCH:
        if (p->tc->direct) offer_batch(p, m, from, FROM_LOADER);
        else protocol_bad(p, from->name, "batch from the loader, but the trainer is not in direct mode");
        break;
    case WIRE_HELLO:   /* a (re)started loader asks who we are */
        send_hello(p);
        if (p->saved_step >= 0) send_to_loader(p, WIRE_ACK, p->saved_next, NULL);   /* acks are cumulative */
        break;
    case WIRE_HEARTBEAT:
        break;
    default: {
        char why[96];
        snprintf(why, sizeof why, "unexpected %s on the loader socket", wire_kind_name(m->kind));
        protocol_bad(p, from->name, why);
    }
    }
}

static void on_teacher_msg(struct pipe *p, struct wire_msg *m, const struct transport_peer *from) {
    switch (m->kind) {
    case WIRE_SCORED:
        remember_teacher(p, from);
        offer_batch(p, m, from, FROM_TEACHER);
        break;
    case WIRE_HELLO:
    case WIRE_HEARTBEAT:
        remember_teacher(p, from);
        break;
    default: {
        char why[96];
        snprintf(why, sizeof why, "unexpected %s on the trainer socket", wire_kind_name(m->kind));
        protocol_bad(p, from->name, why);
    }
    }
}

/* Waits up to timeout_ms for traffic, then handles every message already queued. The
 * wait counts as data stall (it only happens while no batch is ready to apply) once the
 * first batch of this process was applied; before that it is start-up: the pipeline
 * filling (loader indexing, the first teacher scoring), reported as startup_wait_s. */
static int receive(struct pipe *p, int timeout_ms) {
    zmq_pollitem_t items[2] = {{transport_zsock(p->dealer), 0, ZMQ_POLLIN, 0},
                               {p->router ? transport_zsock(p->router) : NULL, 0, ZMQ_POLLIN, 0}};
    int n = p->router ? 2 : 1;
    double t0 = now_s();
    int rc = zmq_poll(items, n, timeout_ms);
    if (p->tokens_total > 0) p->stall_s += now_s() - t0;
    else p->startup_s += now_s() - t0;
    if (rc < 0) {
        if (zmq_errno() == EINTR) return 0;
        return sushi_error(SUSHI_EIO, "trainer: poll: %s", zmq_strerror(zmq_errno()));
    }
    for (int s = 0; s < n; s++) {
        struct transport *t = s == 0 ? p->dealer : p->router;
        if (!(items[s].revents & ZMQ_POLLIN)) continue;
        /* bounded: at most a window's worth per socket before the caller applies */
        for (int k = 0; k <= p->tc->window * 2 + 8; k++) {
            struct wire_msg m;
            struct transport_peer from;
            int got = transport_recv(t, &m, &from, 0);
            if (got < 0) return got;
            if (got == 0) break;
            if (s == 0) on_loader_msg(p, &m, &from);
            else on_teacher_msg(p, &m, &from);
            wire_msg_free(&m);
        }
    }
    return 0;
}

/* ---- training --------------------------------------------------------------------- */

static uint64_t bad_total(const struct pipe *p) {
    return p->bad + transport_bad_count(p->dealer) + (p->router ? transport_bad_count(p->router) : 0);
}

static int metrics(struct pipe *p, const char *event) {
    /* tokens/s over the last log interval; at the end, over the whole run */
    double t = now_s(), dt = event ? t - p->t_start : t - p->log_t;
    long long tokens = event ? p->tokens_total : p->tokens_since_log;
    double tps = dt > 0 ? tokens / dt : 0;
    json_t *meta = json_object();
    if (!meta) return sushi_error(SUSHI_ENOMEM, "trainer: metrics");
    json_object_set_new(meta, "step", json_integer(p->opt.step));
    json_object_set_new(meta, "total_steps", json_integer(p->tc->steps));
    json_object_set_new(meta, "loss", isfinite(p->last_loss) ? json_real(p->last_loss) : json_null());
    json_object_set_new(meta, "lr", json_real(p->opt.last_lr));
    json_object_set_new(meta, "grad_norm", isfinite(p->opt.last_norm) ? json_real(p->opt.last_norm) : json_null());
    json_object_set_new(meta, "tokens_per_s", json_real(tps));
    json_object_set_new(meta, "data_stall_s", json_real(p->stall_s));
    json_object_set_new(meta, "startup_wait_s", json_real(p->startup_s));
    json_object_set_new(meta, "elapsed_s", json_real(t - p->t_start));
    json_object_set_new(meta, "step_time_s", json_real(p->step_time_s));
    json_object_set_new(meta, "queue_reorder", json_integer(p->ro.held));
    json_object_set_new(meta, "bad_messages", json_integer((json_int_t)bad_total(p)));
    trainer_scale_metrics(meta, &p->opt);
    ops_device_metrics(p->m.ops, meta);
    if (event) json_object_set_new(meta, "event", json_string(event));
    printf("step %5d/%d  loss %.4f  lr %.3e  norm %.3f  %.0f tok/s  step %.3f s  stall %.1f s  reorder %d  bad %llu",
           p->opt.step, p->tc->steps, p->last_loss, p->opt.last_lr, p->opt.last_norm, tps, p->step_time_s,
           p->stall_s, p->ro.held, (unsigned long long)bad_total(p));
    if (p->opt.cfg.loss_scale > 0) printf("  scale %g  skipped %d", optim_loss_scale(&p->opt), p->opt.skipped);
    printf("%s%s\n", event ? "  " : "", event ? event : "");
    fflush(stdout);
    p->log_t = t;
    p->tokens_since_log = 0;
    announce(p, WIRE_METRICS, (uint64_t)p->opt.step, meta);
    return 0;
}

/* Makes the state durable (records fsynced, checkpoint swapped in), then acks `next`
 * and announces the checkpoint. */
static int checkpoint(struct pipe *p) {
    long long ab = 0, lb = 0;
    beat_busy(p, 1);
    int rc = records_sync(&p->rec, &ab, &lb);
    if (rc) {
        beat_busy(p, 0);
        return rc;
    }
    char rng_hex[32];
    snprintf(rng_hex, sizeof rng_hex, "%016llx", (unsigned long long)p->rng.state);
    json_t *state = json_pack("{s:i, s:I, s:s, s:I, s:I, s:s}", "step", p->opt.step, "next", (json_int_t)p->next,
                              "data_rng", rng_hex, "applied_bytes", (json_int_t)ab, "losses_bytes", (json_int_t)lb,
                              "arch", trainer_arch_name(p->m.arch));
    if (!state) {
        beat_busy(p, 0);
        return sushi_error(SUSHI_ENOMEM, "trainer: checkpoint state");
    }
    rc = trainer_scale_state_put(state, &p->opt);
    if (!rc) rc = trainer_model_save(&p->m, &p->opt, p->tc->checkpoint_dir, state);
    beat_busy(p, 0);
    json_decref(state);
    if (rc) return rc;
    p->saved_step = p->opt.step;
    p->saved_iter = trainer_iterations(&p->opt);
    p->saved_next = p->next;
    log_info("checkpoint %s: step %d, next %llu", p->tc->checkpoint_dir, p->opt.step, (unsigned long long)p->next);
    send_to_loader(p, WIRE_ACK, p->next, NULL);
    json_t *meta = json_pack("{s:s, s:i, s:s}", "path", p->tc->checkpoint_dir, "step", p->opt.step, "arch",
                             trainer_arch_name(p->m.arch));
    announce(p, WIRE_CHECKPOINT, p->next, meta);
    return 0;
}

/* The optimizer step closing accum_steps micro-batches. A step dynamic loss scaling
 * skips (loss_scale.h) leaves the step number and losses.tsv alone, but its batches stay
 * applied: the iteration counts for train.steps, metrics and checkpoints (and acks). */
static int finish_step(struct pipe *p) {
    beat_busy(p, 1);
    int rc = p->m.ops->sync ? p->m.ops->sync() : 0;
    if (!rc) rc = trainer_model_step(&p->m, &p->opt);
    beat_busy(p, 0);
    int skipped = rc == OPTIM_SKIPPED;
    if (rc && !skipped) return rc;
    rc = 0;
    int iter = trainer_iterations(&p->opt);
    p->last_loss = (float)(p->loss_sum / p->accum);
    p->accum = 0;
    p->loss_sum = 0;
    p->step_time_s = now_s() - p->step_t0;
    if (skipped) trainer_log_skip(&p->opt, iter);
    else if ((rc = records_loss(&p->rec, p->opt.step, p->last_loss))) return rc;
    if (iter % p->tc->log_every == 0 || iter == p->tc->steps) metrics(p, NULL);
    if (iter % p->tc->save_every == 0 || iter == p->tc->steps) rc = checkpoint(p);
    return rc;
}

/* forward/backward of the batch with id == next (moved out of the window) */
static int apply(struct pipe *p, struct wire_msg *m, int tag) {
    struct batch_view v;
    int rc = batch_check(m, &p->expect, &v);   /* checked on arrival; this recovers the views */
    if (rc) return rc;
    if (p->accum == 0) {
        p->step_t0 = now_s();
        if ((rc = trainer_model_zero_grad(&p->m))) return rc;
    }
    trainer_set_loss_scale(&p->m, &p->opt);
    struct student_teacher teacher = {.k = v.k, .topk_ids = v.topk_ids, .topk_logprobs = v.topk_logprobs,
                                      .tail_logprob = v.tail_logprob};
    int kd = !p->tc->direct && p->tc->kd.alpha > 0;
    float loss = 0;
    beat_busy(p, 1);
    if (p->m.has_enc) rc = mm_inputs_fill(&p->mm, m);
    if (!rc)
        rc = trainer_model_forward_mm(&p->m, p->m.has_enc ? &p->mm.in : NULL, v.tokens, v.targets, v.doc_ids,
                                      kd ? &teacher : NULL, &p->lc, &loss);
    if (!rc) rc = trainer_model_backward(&p->m);
    beat_busy(p, 0);
    /* the step the batch counts towards: a skipped step's batches and its retry's share it */
    if (!rc) rc = records_applied(&p->rec, p->opt.step + 1, v.id, v.sample_ids, p->expect.B);
    if (rc) return rc;
    p->loss_sum += loss;
    p->accum++;
    p->next = v.next;
    p->tokens_since_log += (long long)p->expect.B * p->expect.T;
    p->tokens_total += (long long)p->expect.B * p->expect.T;
    if (tag == FROM_LOADER) p->freed++;
    if (p->accum == p->opt.cfg.accum_steps) rc = finish_step(p);
    return rc;
}

/* applies every batch that is next in line */
static int apply_ready(struct pipe *p) {
    struct wire_msg m;
    int tag, rc = 0;
    while (!rc && trainer_iterations(&p->opt) < p->tc->steps && !stage_stopping() &&
           reorder_take(&p->ro, p->next, &m, &tag)) {
        rc = apply(p, &m, tag);
        wire_msg_free(&m);
        if (!rc) rc = heartbeats(p);   /* long steps must not look like a dead trainer */
    }
    return rc;
}

int pipeline_loop(struct pipe *p) {
    int rc = 0;
    if (p->saved_step < 0 && p->tc->save_initial) rc = checkpoint(p);   /* a baseline for eval */
    if (!rc) rc = send_hello(p);
    p->log_t = p->t_start = now_s();
    while (!rc && !stage_stopping() && trainer_iterations(&p->opt) < p->tc->steps) {
        rc = apply_ready(p);
        if (!rc && p->tc->direct && p->freed > 0) rc = send_loader_heartbeat(p, 1);   /* credits back now */
        if (!rc) rc = heartbeats(p);
        if (!rc && trainer_iterations(&p->opt) < p->tc->steps) rc = receive(p, 50);
    }
    if (rc) return rc;
    if (stage_stopping()) {
        log_info("stopping on signal at step %d (last checkpoint: step %d)", p->opt.step, p->saved_step);
        return 0;
    }
    if (p->saved_iter != trainer_iterations(&p->opt)) rc = checkpoint(p);
    if (!rc) rc = metrics(p, "end");
    if (!rc) log_info("done: %d steps, next batch %llu, %llu bad messages", p->opt.step,
                      (unsigned long long)p->next, (unsigned long long)bad_total(p));
    return rc;
}
