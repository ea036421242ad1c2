// libs: wire data tok config deepseek student kernels cuda core
/* sushi-eval: the evaluation stage. Evaluates checkpoints as they appear:
 *
 *   endpoints.events (SUB, kind checkpoint, meta.path) ─┐
 *   eval.watch / --watch DIR (polled every second)     ─┼→ checkpoint DIR
 *   --once DIR                                          ─┘
 *      → held-out perplexity and loss, top-1 agreement / KD loss / perplexity of the
 *        teacher, passkey grid (eval_run.c)
 *      → PUB kind `eval` (id = step), a JSON line on stdout, RUN/eval.jsonl
 *
 * A checkpoint that cannot be read (half written, corrupt) is logged and skipped; it is
 * evaluated once its files change. Messages on the SUB that are not checkpoint
 * announcements are dropped and counted. Runs until SIGTERM (exit 0); --once exits after
 * one evaluation (1 on failure). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/config/config.h"
#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/transport/stage.h"
#include "common/transport/transport.h"
#include "services/eval/eval.h"

#define EVAL_MAX_OVERRIDES 64
#define EVAL_LOG_BAD_MAX 20     /* off-protocol messages logged one by one, then counted */

struct eval_args {
    const char *config, *watch, *once;
    const char *overrides[EVAL_MAX_OVERRIDES];
    int n_overrides;
};

/* what the loop counts; published as metrics after each change */
struct eval_counts {
    long long evaluations, failures, bad_messages;
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: sushi-eval --config RUN.yaml [--watch DIR] [--once CKPT_DIR] [key.path=value ...]\n"
            "\n"
            "Evaluates checkpoints (student HF Llama layout, or DeepSeek by config.json model_type):\n"
            "held-out perplexity and mean loss over the first eval.batches batches of eval.data,\n"
            "top-1 agreement with the teacher, its perplexity and the KD loss KL(teacher||model),\n"
            "and a passkey grid (eval.needle: lengths x depths, `trials` prompts per cell, exact\n"
            "match of the greedy continuation). Each result is published (kind eval, id = step),\n"
            "printed as one JSON line and appended to RUN/eval.jsonl (run.dir).\n"
            "\n"
            "  --config FILE     the run config: eval (data, batches, teacher, watch, needle,\n"
            "                    backend, threads, kd_cache_mb), endpoints.events, run.dir, data\n"
            "                    (eval.data's tokenizer/seq_len/batch_size default to data's),\n"
            "                    teacher.checkpoint (default teacher)\n"
            "  --watch DIR       poll DIR every second: a checkpoint directory (or a directory of\n"
            "                    them) is evaluated once its files are complete and unchanged, and\n"
            "                    again when they change (same as eval.watch=DIR)\n"
            "  --once DIR        evaluate checkpoint DIR, print the result and exit (1 on failure)\n"
            "  key.path=value    override a config value, e.g. eval.batches=8\n"
            "  -h, --help        this text\n"
            "\n"
            "Without --once it runs until SIGTERM, evaluating checkpoints announced on\n"
            "endpoints.events (kind checkpoint, meta.path) and those found under the watched directory.\n");
}

/* 1: --help shown; 0: parsed; < 0: usage error */
static int eval_parse(int argc, char **argv, struct eval_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) { usage(stdout); return 1; }
        int takes = !strcmp(s, "--config") || !strcmp(s, "--watch") || !strcmp(s, "--once");
        if (takes && !next) return sushi_error(SUSHI_EINVAL, "%s: missing value", s);
        if (!strcmp(s, "--config")) a->config = next;
        else if (!strcmp(s, "--watch")) a->watch = next;
        else if (!strcmp(s, "--once")) a->once = next;
        else if (s[0] != '-' && strchr(s, '=')) {
            if (a->n_overrides >= EVAL_MAX_OVERRIDES) return sushi_error(SUSHI_EINVAL, "too many overrides");
            a->overrides[a->n_overrides++] = s;
        } else return sushi_error(SUSHI_EINVAL, "unknown argument %s (see --help)", s);
        if (takes) i++;
    }
    if (!a->config) return sushi_error(SUSHI_EINVAL, "--config RUN.yaml is required (see --help)");
    return 0;
}

/* stdout line, RUN/eval.jsonl line, PUB message (steals meta) */
static int eval_report(struct stage *st, const char *run_dir, json_t *meta, uint64_t step) {
    char *line = json_dumps(meta, JSON_COMPACT);
    int rc = 0;
    if (!line) {
        json_decref(meta);
        return sushi_error(SUSHI_ENOMEM, "eval: result line");
    }
    printf("%s\n", line);
    fflush(stdout);
    if (run_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/eval.jsonl", run_dir);
        FILE *f = NULL;
        if (!(rc = fs_mkdir_p(run_dir, 0755)) && !(f = fopen(path, "a")))
            rc = sushi_error(SUSHI_EIO, "%s: cannot open for appending: %s", path, strerror(errno));
        if (f && (fprintf(f, "%s\n", line) < 0 || fclose(f) != 0))
            rc = sushi_error(SUSHI_EIO, "%s: write failed", path);
        if (rc) log_error("%s", sushi_last_error());
    }
    free(line);
    int prc = stage_publish(st, WIRE_EVAL, step, meta);
    return prc ? prc : rc;
}

static void eval_publish_counts(struct stage *st, const struct eval_counts *c) {
    json_t *m = json_pack("{s:I, s:I, s:I}", "evaluations", (json_int_t)c->evaluations, "eval_failures",
                          (json_int_t)c->failures, "bad_messages", (json_int_t)c->bad_messages);
    if (m) stage_publish(st, WIRE_METRICS, 0, m);
}

/* evaluates DIR and reports; a failure is logged and counted, never fatal */
static int eval_one(struct eval_service *s, struct stage *st, const char *dir, struct eval_counts *c) {
    json_t *meta = NULL;
    uint64_t step = 0;
    log_info("evaluating %s", dir);
    int rc = eval_checkpoint(s, dir, &meta, &step);
    if (rc) {
        c->failures++;
        log_warn("skipping checkpoint %s: %s", dir, sushi_last_error());
        return rc;
    }
    c->evaluations++;
    if (eval_report(st, s->cfg.run_dir, meta, step)) log_warn("eval: %s", sushi_last_error());
    return 0;
}

/* a message from the events socket: a checkpoint announcement or a counted drop */
static void eval_on_message(struct eval_watch *w, const struct wire_msg *msg, const struct transport_peer *from,
                            struct eval_counts *c, int *rescan) {
    const char *why = NULL, *path = NULL;
    if (msg->kind != WIRE_CHECKPOINT) {
        if (msg->kind == WIRE_METRICS || msg->kind == WIRE_HELLO || msg->kind == WIRE_HEARTBEAT) return;
        why = "not a checkpoint announcement";
    } else if (!(path = json_string_value(json_object_get(msg->meta, "path"))) || !*path) {
        why = "meta.path missing or not a string";
    }
    if (!why && eval_watch_announce(w, path)) why = sushi_last_error();
    if (why) {
        if (c->bad_messages++ < EVAL_LOG_BAD_MAX)
            log_warn("events: dropped a %s message from %s: %s", wire_kind_name(msg->kind), from->name, why);
        return;
    }
    log_info("checkpoint announced by %s: %s", msg->stage, path);
    *rescan = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* the service loop: until SIGTERM */
static int eval_serve(struct eval_service *s, struct stage *st, struct transport *sub, struct eval_watch *w) {
    struct eval_counts c = {0};
    uint64_t bad_transport = 0;
    double last_scan = 0;
    while (!stage_stopping()) {
        int rescan = 0;
        if (sub) {
            struct wire_msg msg;
            struct transport_peer from;
            int rc = transport_recv(sub, &msg, &from, 200);
            if (rc < 0) {
                log_error("events: %s", sushi_last_error());
                struct timespec ts = {0, 200000000};
                nanosleep(&ts, NULL);
            } else if (rc == 1) {
                eval_on_message(w, &msg, &from, &c, &rescan);
                wire_msg_free(&msg);
            }
            uint64_t bt = transport_bad_count(sub);
            if (bt != bad_transport) {
                c.bad_messages += (long long)(bt - bad_transport);
                bad_transport = bt;
                eval_publish_counts(st, &c);
            }
        } else {
            struct timespec ts = {0, 200000000};
            nanosleep(&ts, NULL);
        }
        if (!rescan && now_s() - last_scan < 1.0) continue;
        last_scan = now_s();
        if (eval_watch_scan(w)) log_error("watch: %s", sushi_last_error());
        int i, changed = 0;
        while (!stage_stopping() && (i = eval_watch_next(w)) >= 0) {
            eval_one(s, st, w->items[i].path, &c);
            eval_watch_mark(w, i);
            changed = 1;
        }
        if (changed) eval_publish_counts(st, &c);
    }
    log_info("stopping: %lld evaluations, %lld checkpoints skipped, %lld bad messages dropped", c.evaluations,
             c.failures, c.bad_messages);
    return 0;
}

int main(int argc, char **argv) {
    log_set_name("sushi-eval");
    struct eval_args a;
    int rc = eval_parse(argc, argv, &a);
    if (rc == 1) return 0;
    if (rc) {
        log_error("%s", sushi_last_error());
        return 2;
    }
    json_t *root = NULL;
    struct eval_config cfg;
    if ((rc = config_load(a.config, a.overrides, a.n_overrides, &root)) ||
        (rc = eval_config_load(root, a.config, &cfg))) {
        log_error("%s", sushi_last_error());
        json_decref(root);
        return 2;
    }
    if (a.watch) cfg.watch = a.watch;
    const struct ops *ops = ops_by_name(cfg.backend);
    if (!ops) {
        log_error("eval.backend %s: %s", cfg.backend, sushi_last_error());
        eval_config_free(&cfg);
        json_decref(root);
        return 2;
    }
    if (cfg.threads > 0) ops_cpu_set_threads(cfg.threads);
    struct eval_service s;
    struct stage st;
    struct eval_watch w;
    struct transport *sub = NULL;
    int have_stage = 0;
    eval_watch_init(&w, NULL);
    rc = eval_service_open(&s, &cfg, ops);   /* cfg moved into s */
    if (!rc) log_info("held-out data: %d batches of %dx%d", s.n_batches, s.cfg.data.batch_size,
                      s.cfg.data.seq_len);
    if (!rc && !(rc = stage_open(&st, "eval", NULL, s.cfg.heartbeat_ms))) have_stage = 1;
    if (!rc && a.once) {
        rc = eval_one(&s, &st, a.once, &(struct eval_counts){0});
    } else if (!rc) {
        eval_watch_free(&w);
        rc = eval_watch_init(&w, s.cfg.watch);
        if (!rc && s.cfg.events) {
            struct transport_opts o = transport_opts_default();
            o.rcvhwm = 1000;
            o.allow_remote = s.cfg.allow_remote;
            if (!(rc = transport_open(&sub, st.zctx, TRANSPORT_SUB, s.cfg.events, 0, &o)))
                log_info("subscribed to %s", s.cfg.events);
        }
        if (!rc && !sub && !s.cfg.watch)
            log_warn("no endpoints.events and no eval.watch: nothing will be evaluated (use --once DIR)");
        if (!rc && s.cfg.watch) log_info("watching %s", s.cfg.watch);
        if (!rc) rc = eval_serve(&s, &st, sub, &w);
    }
    if (rc && !a.once) log_error("%s", sushi_last_error());
    transport_close(sub);
    if (have_stage) stage_close(&st);
    eval_watch_free(&w);
    eval_service_close(&s);
    json_decref(root);
    return rc ? 1 : 0;
}
