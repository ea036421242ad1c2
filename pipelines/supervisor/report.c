/* What the supervisor hears on its SUB socket and what it tells: hello/heartbeat make a
 * stage instance ready; trainer metrics become progress lines (when no stage has the
 * console); eval results and checkpoint announcements are kept for the summary;
 * RUN/supervisor.json holds every instance's pid and restart count at all times; the
 * summary at the end. */
#include "pipelines/supervisor/supervisor.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/wire/wire.h"

static const char *const sup_state_names[] = {"starting", "running", "backoff", "done", "failed", "stopped"};

void sup_report_init(struct sup_report *r, FILE *out) {
    memset(r, 0, sizeof *r);
    r->out = out;
    r->progress = 1;
    r->last_progress = -1e9;
}

void sup_report_free(struct sup_report *r) {
    if (!r) return;
    json_decref(r->last_eval);
    for (int i = 0; i < r->ncheckpoints; i++) free(r->checkpoints[i]);
    memset(r, 0, sizeof *r);
}

static double sup_meta_num(const json_t *meta, const char *key, double dflt) {
    const json_t *v = json_object_get(meta, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static void sup_add_checkpoint(struct sup_report *r, const char *path) {
    for (int i = 0; i < r->ncheckpoints; i++)
        if (!strcmp(r->checkpoints[i], path)) {
            char *same = r->checkpoints[i];
            memmove(&r->checkpoints[i], &r->checkpoints[i + 1], (size_t)(r->ncheckpoints - i - 1) * sizeof(char *));
            r->checkpoints[r->ncheckpoints - 1] = same;
            return;
        }
    char *copy = strdup(path);
    if (!copy) return;
    if (r->ncheckpoints == SUP_MAX_CHECKPOINTS) {
        free(r->checkpoints[0]);
        memmove(&r->checkpoints[0], &r->checkpoints[1], (SUP_MAX_CHECKPOINTS - 1) * sizeof(char *));
        r->ncheckpoints--;
    }
    r->checkpoints[r->ncheckpoints++] = copy;
}

/* "loss 4.1234 lr 0.001 ..." from the numeric metrics a trainer publishes */
static void sup_print_metrics(struct sup_report *r, const struct wire_msg *m) {
    const json_t *meta = m->meta;
    double step = sup_meta_num(meta, "step", -1), total = sup_meta_num(meta, "total_steps", -1);
    fprintf(r->out, "[%s] %s step %.0f", r->phase ? r->phase : "-", m->stage, step);
    if (total > 0) fprintf(r->out, "/%.0f", total);
    static const struct { const char *key, *fmt; } shown[] = {
        {"loss", " loss %.4f"}, {"lr", " lr %.3g"}, {"grad_norm", " gnorm %.3g"},
        {"tokens_per_s", " %.0f tok/s"}, {"data_stall_s", " stall %.1fs"},
    };
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
        const json_t *v = json_object_get(meta, shown[i].key);
        if (json_is_number(v)) fprintf(r->out, shown[i].fmt, json_number_value(v));
    }
    fputc('\n', r->out);
    fflush(r->out);
}

static void sup_print_eval(struct sup_report *r, const char *stage, const json_t *meta) {
    fprintf(r->out, "[%s] %s step %.0f: ppl %.4g  teacher ppl %.4g  top-1 agreement %.4g", r->phase ? r->phase : "-",
            stage, sup_meta_num(meta, "step", -1), sup_meta_num(meta, "ppl", -1),
            sup_meta_num(meta, "teacher_ppl", -1), sup_meta_num(meta, "top1_agreement", -1));
    const json_t *needle = json_object_get(meta, "needle_accuracy");
    if (json_is_number(needle)) fprintf(r->out, "  passkey %.3g", json_number_value(needle));
    fputc('\n', r->out);
    fflush(r->out);
}

void sup_report_message(struct sup_report *r, const struct wire_msg *m, struct sup_inst *insts, int ninsts) {
    const json_t *meta = m->meta;
    switch (m->kind) {
    case WIRE_HELLO:
    case WIRE_HEARTBEAT: {
        const json_t *pid = json_object_get(meta, "pid");
        for (int i = 0; i < ninsts; i++) {
            struct sup_inst *in = &insts[i];
            if (strcmp(in->name, m->stage) || in->pid <= 0 || in->ready) continue;
            if (json_is_integer(pid) && json_integer_value(pid) != in->pid) continue; /* an earlier process */
            in->ready = 1;
            in->state = SUP_RUNNING;
            log_info("stage %s is up (pid %d, %.1f s after start)", in->name, (int)in->pid, sup_now() - in->t_start);
        }
        break;
    }
    case WIRE_METRICS: {
        const json_t *ev = json_object_get(meta, "event");
        int end = json_is_string(ev) && !strcmp(json_string_value(ev), "end");
        double now = sup_now();
        if (r->progress && json_object_get(meta, "step") && (end || now - r->last_progress >= 1.0)) {
            sup_print_metrics(r, m);
            r->last_progress = now;
        }
        break;
    }
    case WIRE_EVAL:
        json_decref(r->last_eval);
        r->last_eval = meta ? json_deep_copy(meta) : json_object();
        snprintf(r->last_eval_stage, sizeof r->last_eval_stage, "%s", m->stage);
        if (r->progress) sup_print_eval(r, m->stage, meta);
        break;
    case WIRE_CHECKPOINT: {
        const char *path = json_string_value(json_object_get(meta, "path"));
        if (!path) break;
        sup_add_checkpoint(r, path);
        if (r->progress) {
            fprintf(r->out, "[%s] %s checkpoint step %.0f: %s\n", r->phase ? r->phase : "-", m->stage,
                    sup_meta_num(meta, "step", -1), path);
            fflush(r->out);
        }
        break;
    }
    default:
        break;
    }
}

void sup_report_load_results(struct sup_report *r, const char *path, double since) {
    struct stat st;
    char *text = NULL;
    size_t n = 0;
    if (!path || stat(path, &st) != 0 || st.st_mtime + 1 < since || fs_read_all(path, &text, &n)) return;
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ')) text[--n] = 0;
    char *line = strrchr(text, '\n');
    json_t *j = json_loads(line ? line + 1 : text, 0, NULL);
    free(text);
    json_t *meta = json_is_object(json_object_get(j, "meta")) ? json_object_get(j, "meta") : j;
    if (json_is_object(meta) && json_object_get(meta, "ppl")) {
        json_decref(r->last_eval);
        r->last_eval = json_incref(meta);
        snprintf(r->last_eval_stage, sizeof r->last_eval_stage, "%s", path);
    } else log_warn("%s: last line is not an eval result (no ppl): not used in the summary", path);
    json_decref(j);
}

int sup_report_write_state(const struct sup_pipeline *p, const char *phase, const struct sup_inst *insts,
                           int ninsts) {
    json_t *stages = json_object();
    for (int i = 0; i < ninsts; i++) {
        const struct sup_inst *in = &insts[i];
        char st[64];
        json_object_set_new(stages, in->name,
                            json_pack("{s:i, s:i, s:s, s:b, s:s, s:s}", "pid", (int)in->pid, "restarts", in->restarts,
                                      "state", sup_state_names[in->state], "ready", in->ready, "last_exit",
                                      sup_status_text(in->last_status, st, sizeof st), "program",
                                      in->stage->program));
    }
    json_t *root = json_pack("{s:s, s:s, s:i, s:s, s:s, s:o}", "pipeline", p->name, "file", p->file, "pid",
                             (int)getpid(), "phase", phase ? phase : "", "run_dir", p->run_dir, "stages", stages);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (!text) return sushi_error(SUSHI_ENOMEM, "supervisor.json: out of memory");
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/supervisor.json", p->run_dir);
    size_t n = strlen(text);
    text[n] = '\n';  /* json_dumps leaves room for the NUL only: write it without one */
    int rc = fs_write_atomic(path, text, n + 1);
    free(text);
    return rc;
}

/* After a rename, an announced checkpoint under `from` lives under `to`. */
void sup_report_rename_checkpoints(struct sup_report *r, const char *from, const char *to) {
    size_t n = strlen(from);
    for (int i = 0; i < r->ncheckpoints; i++) {
        const char *c = r->checkpoints[i];
        if (strncmp(c, from, n) || (c[n] && c[n] != '/')) continue;
        char *moved = malloc(strlen(to) + strlen(c + n) + 1);
        if (!moved) continue;
        sprintf(moved, "%s%s", to, c + n);
        free(r->checkpoints[i]);
        r->checkpoints[i] = moved;
    }
}

void sup_report_summary(const struct sup_pipeline *p, struct sup_phase_run *runs, int nruns, struct sup_report *r,
                        double total_s) {
    FILE *f = stdout;
    fprintf(f, "\n== sushi-run %s: summary (%.1f s) ==\n", p->name, total_s);
    for (int i = 0; i < nruns; i++) {
        struct sup_phase_run *pr = &runs[i];
        static const char *const res[] = {"completed", "FAILED", "interrupted"};
        if (pr->skipped) {
            fprintf(f, "phase %-18s skipped (%s exists)\n", pr->phase->name, pr->phase->skip_if_exists);
            continue;
        }
        fprintf(f, "phase %-18s %s in %.1f s%s%s\n", pr->phase->name, res[pr->result], pr->t_end - pr->t_start,
                pr->message[0] ? ": " : "", pr->message);
        for (int k = 0; k < pr->ninsts; k++) {
            struct sup_inst *in = &pr->insts[k];
            char st[96];
            double dur = in->t_first_start > 0 ? (in->t_end > 0 ? in->t_end : pr->t_end) - in->t_first_start : 0;
            fprintf(f, "  %-12s restarts %d  %-22s %7.1f s%s\n", in->name, in->restarts,
                    sup_status_text(in->last_status, st, sizeof st), dur, in->stage->main ? "  (main)" : "");
        }
    }
    if (r->last_eval) {
        const json_t *e = r->last_eval;
        json_t *v;
        v = json_object_get(e, "step");
        fprintf(f, "last eval (%s, step %.0f):", r->last_eval_stage, json_is_number(v) ? json_number_value(v) : -1.0);
        static const char *const keys[][2] = {{"ppl", "student ppl"}, {"teacher_ppl", "teacher ppl"},
                                              {"top1_agreement", "top-1 agreement"}, {"kd_loss", "kd loss"},
                                              {"needle_accuracy", "passkey accuracy"}};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (json_is_number(v = json_object_get(e, keys[k][0])))
                fprintf(f, "  %s %.4f", keys[k][1], json_number_value(v));
        const char *ck = json_string_value(json_object_get(e, "checkpoint"));
        fprintf(f, "%s%s\n", ck ? "  of " : "", ck ? ck : "");
    } else fprintf(f, "last eval: none received\n");
    for (int i = 0; i < r->ncheckpoints; i++) fprintf(f, "checkpoint: %s\n", r->checkpoints[i]);
    if (!r->ncheckpoints) fprintf(f, "checkpoints: none announced\n");
    fprintf(f, "logs: %s/logs/\n", p->run_dir);
    fflush(f);
}
