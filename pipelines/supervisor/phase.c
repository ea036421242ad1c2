/* One phase of a pipeline:
 *
 *   start every stage instance → wait for its hello/heartbeat (start timeout)
 *   loop: reap exits → a crash (exit != 0 or a signal) restarts the instance after a
 *         backoff (initial, doubling up to max); past max_restarts the phase fails
 *       → the main stage's exit 0 ends the phase (no main: every instance exited 0)
 *       → SIGINT/SIGTERM to the supervisor ends it as interrupted
 *   stop: SIGTERM to every instance's process group, SIGKILL after the grace period. */
#include "pipelines/supervisor/supervisor.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <zmq.h>

#include "common/core/log.h"
#include "common/transport/transport.h"
#include "common/wire/wire.h"

struct sup_phase_ctx {
    const struct sup_pipeline *p;
    struct sup_phase_run *run;
    struct sup_report *r;
    int dirty;                      /* supervisor.json needs rewriting */
};

static int sup_start(struct sup_phase_ctx *c, struct sup_inst *in) {
    char log_path[PATH_MAX + 64], *lp = NULL;
    if (!in->stage->console) {
        snprintf(log_path, sizeof log_path, "%s/logs/%s.log", c->p->run_dir, in->name);
        lp = log_path;
    }
    int rc = sup_spawn(in->stage, in->name, c->p->publish, lp, &in->pid);
    if (rc) return rc;
    in->t_start = sup_now();
    if (in->t_first_start == 0) in->t_first_start = in->t_start;
    in->ready = in->stage->ready_on_start;
    in->state = in->ready ? SUP_RUNNING : SUP_STARTING;
    in->start_timed_out = 0;
    c->dirty = 1;
    log_info("started %s (pid %d)%s%s", in->name, (int)in->pid, lp ? ", log " : "", lp ? lp : "");
    return SUSHI_OK;
}

/* An instance exited with `status`; returns 1 when the phase is over (main exit 0). */
static int sup_on_exit(struct sup_phase_ctx *c, struct sup_inst *in, int status) {
    const struct sup_pipeline *p = c->p;
    char st[96];
    in->pid = 0;
    in->last_status = status;
    in->t_end = sup_now();
    c->dirty = 1;
    sup_status_text(status, st, sizeof st);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        in->state = SUP_DONE;
        log_info("%s finished (exit 0)", in->name);
        return in->stage->main;
    }
    if (sup_stopping()) {
        in->state = SUP_STOPPED;
        return 0;
    }
    if (in->restarts >= in->stage->max_restarts) {
        in->state = SUP_FAILED;
        snprintf(c->run->message, sizeof c->run->message,
                 "stage %s failed: %s%s after %d restart%s (max_restarts %d); see %s/logs/%s.log", in->name, st,
                 in->start_timed_out ? " (no hello/heartbeat within the start timeout)" : "", in->restarts,
                 in->restarts == 1 ? "" : "s", in->stage->max_restarts, p->run_dir, in->name);
        c->run->result = SUP_PHASE_FAILED;
        return 1;
    }
    /* a stage that ran well for a while before crashing starts over from the initial delay */
    double ran = in->t_end - in->t_start;
    if (in->backoff <= 0 || ran > 6 * p->backoff_max_s) in->backoff = p->backoff_initial_s;
    else in->backoff = in->backoff * 2 > p->backoff_max_s ? p->backoff_max_s : in->backoff * 2;
    in->restarts++;
    in->restart_at = in->t_end + in->backoff;
    in->state = SUP_BACKOFF;
    in->ready = 0;
    log_warn("%s crashed (%s%s) after %.1f s; restart %d/%d in %.1f s", in->name, st,
             in->start_timed_out ? ", no hello/heartbeat within the start timeout" : "", ran, in->restarts,
             in->stage->max_restarts, in->backoff);
    return 0;
}

/* Reaps every exited child of this phase; returns 1 when the phase is over. */
static int sup_reap(struct sup_phase_ctx *c) {
    int over = 0, status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < c->run->ninsts; i++)
            if (c->run->insts[i].pid == pid) {
                over |= sup_on_exit(c, &c->run->insts[i], status);
                break;
            }
    }
    return over;
}

/* Restarts due instances and kills ones that missed the start timeout; 1 = phase over. */
static int sup_tick(struct sup_phase_ctx *c) {
    double now = sup_now();
    int all_done = 1;
    for (int i = 0; i < c->run->ninsts; i++) {
        struct sup_inst *in = &c->run->insts[i];
        if (in->state == SUP_BACKOFF && now >= in->restart_at) {
            if (sup_start(c, in)) {
                snprintf(c->run->message, sizeof c->run->message, "%s", sushi_last_error());
                c->run->result = SUP_PHASE_FAILED;
                return 1;
            }
            log_info("restarted %s (restart %d)", in->name, in->restarts);
        }
        if (in->state == SUP_STARTING && !in->start_timed_out && now - in->t_start > c->p->start_timeout_s) {
            log_warn("%s sent no hello/heartbeat within %.0f s: killing it", in->name, c->p->start_timeout_s);
            in->start_timed_out = 1;
            sup_signal(in->pid, SIGKILL);
        }
        all_done &= in->state == SUP_DONE;
    }
    return all_done;
}

static void sup_receive(struct sup_phase_ctx *c, struct transport *sub, int timeout_ms) {
    zmq_pollitem_t item = {transport_zsock(sub), 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout_ms) <= 0) return;
    for (int n = 0; n < 1000; n++) {
        struct wire_msg m;
        int rc = transport_recv(sub, &m, NULL, 0);
        if (rc <= 0) break;
        int was_ready[SUP_MAX_INSTANCES];
        for (int i = 0; i < c->run->ninsts; i++) was_ready[i] = c->run->insts[i].ready;
        sup_report_message(c->r, &m, c->run->insts, c->run->ninsts);
        for (int i = 0; i < c->run->ninsts; i++) c->dirty |= was_ready[i] != c->run->insts[i].ready;
        wire_msg_free(&m);
    }
}

/* SIGTERM to every running instance, SIGKILL to what is left after the grace period. */
static void sup_stop_all(struct sup_phase_ctx *c) {
    int any = 0;
    for (int i = 0; i < c->run->ninsts; i++) {
        struct sup_inst *in = &c->run->insts[i];
        if (in->state == SUP_BACKOFF || (in->state == SUP_STARTING && !in->pid)) in->state = SUP_STOPPED;
        if (in->pid > 0) {
            sup_signal(in->pid, SIGTERM);
            any = 1;
        }
    }
    double t0 = sup_now();
    while (any) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        any = 0;
        for (int i = 0; i < c->run->ninsts; i++) {
            struct sup_inst *in = &c->run->insts[i];
            if (pid > 0 && in->pid == pid) {
                in->pid = 0;
                in->last_status = status;
                in->t_end = sup_now();
                if (in->state != SUP_DONE) in->state = SUP_STOPPED;
                c->dirty = 1;
            }
            any |= in->pid > 0;
        }
        if (!any) break;
        if (sup_now() - t0 > c->p->stop_grace_s) {
            for (int i = 0; i < c->run->ninsts; i++)
                if (c->run->insts[i].pid > 0) {
                    log_warn("%s did not stop within %.0f s: SIGKILL", c->run->insts[i].name, c->p->stop_grace_s);
                    sup_signal(c->run->insts[i].pid, SIGKILL);
                }
            t0 = 1e300; /* once */
        }
        if (pid <= 0) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

static void sup_init_insts(const struct sup_phase *ph, struct sup_phase_run *out) {
    for (int s = 0; s < ph->nstages; s++) {
        const struct sup_stage *st = &ph->stages[s];
        for (int r = 0; r < st->replicas; r++) {
            struct sup_inst *in = &out->insts[out->ninsts++];
            memset(in, 0, sizeof *in);
            in->stage = st;
            in->last_status = -1;
            if (st->replicas > 1) snprintf(in->name, sizeof in->name, "%s.%d", st->name, r + 1);
            else snprintf(in->name, sizeof in->name, "%s", st->name);
        }
    }
}

int sup_phase_run(const struct sup_pipeline *p, const struct sup_phase *ph, struct transport *sub,
                  struct sup_report *r, struct sup_phase_run *out) {
    if (!p || !ph || !sub || !r || !out) return sushi_error(SUSHI_EINVAL, "sup_phase_run: bad argument");
    memset(out, 0, sizeof *out);
    out->phase = ph;
    out->t_start = sup_now();
    sup_init_insts(ph, out);
    struct sup_phase_ctx c = {p, out, r, 1};
    r->phase = ph->name;
    r->progress = 1;
    for (int s = 0; s < ph->nstages; s++) r->progress &= !ph->stages[s].console;
    int over = 0;
    for (int i = 0; i < out->ninsts && !over; i++)
        if (sup_start(&c, &out->insts[i])) {
            snprintf(out->message, sizeof out->message, "%s", sushi_last_error());
            out->result = SUP_PHASE_FAILED;
            over = 1;
        }
    while (!over) {
        if (sup_stopping()) {
            out->result = SUP_PHASE_INTERRUPTED;
            snprintf(out->message, sizeof out->message, "stopped by signal %d (%s)", sup_stop_signal(),
                     strsignal(sup_stop_signal()));
            break;
        }
        over = sup_reap(&c);
        if (!over) over = sup_tick(&c);
        if (c.dirty) {
            if (sup_report_write_state(p, ph->name, out->insts, out->ninsts))
                log_warn("%s", sushi_last_error());
            c.dirty = 0;
        }
        if (!over) sup_receive(&c, sub, 100);
    }
    sup_stop_all(&c);
    sup_receive(&c, sub, 0); /* last evals and checkpoints */
    if (sup_report_write_state(p, ph->name, out->insts, out->ninsts)) log_warn("%s", sushi_last_error());
    out->t_end = sup_now();
    return SUSHI_OK;
}
