// libs: wire config student kernels core
/* sushi-run: runs a pipeline (a pipelines/NAME.yaml file) — its phases in order, each phase's
 * stages as supervised child processes:
 *
 *   pipeline YAML + vars.NAME=value overrides → phases
 *   per phase: skip_if_exists? → start stages (SUSHI_STAGE, SUSHI_PUBLISH = our SUB +
 *   pipeline.publish) → hello/heartbeat within start_timeout_s → restart crashes with
 *   backoff → main stage exits 0 → stop the rest → promote (rename) its output
 *   → summary: phases, stages, restarts, exit codes, durations, last eval, checkpoints.
 *
 * Exit status: 0 every phase completed, 1 a phase failed (a stage past max_restarts, a
 * program that cannot start), 2 bad command line or pipeline file, 130/143 stopped by
 * SIGINT/SIGTERM (every stage stopped first). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/transport/transport.h"
#include "pipelines/supervisor/supervisor.h"

#define SUP_MAX_OVERRIDES 64

struct sup_args {
    const char *file;
    const char *overrides[SUP_MAX_OVERRIDES];
    int noverrides;
    int print_commands;     /* 1: --print-commands, 2: --dry-run (with phase/stage comments) */
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: sushi-run PIPELINE.yaml [vars.NAME=value | key.path=value ...] [--print-commands | --dry-run]\n"
            "       (also: sushi run ...)\n"
            "\n"
            "Runs the phases of a pipeline in order. Each phase starts its stages as child\n"
            "processes (sushi-PROGRAM beside sushi-run, or a path), SUSHI_STAGE=NAME (NAME.i for\n"
            "replicas) and SUSHI_PUBLISH = this supervisor's endpoint ipc://RUN/supervisor.sock plus\n"
            "pipeline.publish; output goes to RUN/logs/NAME.log except for a console stage. A stage\n"
            "must publish a hello or heartbeat within start_timeout_s; a stage that crashes (exit\n"
            "!= 0 or a signal) is restarted after 0.5 s, 1 s, 2 s ... (at most 10 s), and after\n"
            "max_restarts the run fails. A phase ends when its main stage exits 0 (the others get\n"
            "SIGTERM, SIGKILL after stop_grace_s); without a main stage, when every stage exited 0.\n"
            "RUN/supervisor.json shows each stage's pid, restarts and state while it runs. Ctrl-C\n"
            "or SIGTERM stops every stage cleanly. At the end a summary: phases, stages, restarts,\n"
            "exit codes, durations, the last eval results and the checkpoints announced.\n"
            "\n"
            "  vars.NAME=value   set a pipeline variable (e.g. vars.teacher=/data/DeepSeek-V2-Lite)\n"
            "  key.path=value    any other field under pipeline: (e.g. max_restarts=2)\n"
            "  --print-commands  print the command line of every stage instance, one per line, and exit\n"
            "  --dry-run         the same, with a comment line per phase and stage instance\n"
            "  -h, --help        this text\n"
            "\n"
            "Pipeline files: pipelines/distill.yaml (teacher pretraining when no teacher checkpoint\n"
            "exists, then distillation), pipelines/teacher-serve.yaml, pipelines/eval-watch.yaml;\n"
            "the schema is in the header comment of pipelines/supervisor/pipeline.c.\n"
            "Exit status: 0 done, 1 a phase failed, 2 bad arguments or pipeline, 130/143 interrupted.\n");
}

/* 1: --help shown */
static int sup_parse(int argc, char **argv, struct sup_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(s, "--print-commands")) a->print_commands = 1;
        else if (!strcmp(s, "--dry-run")) a->print_commands = 2;
        else if (s[0] != '-' && strchr(s, '=')) {
            if (a->noverrides == SUP_MAX_OVERRIDES)
                return sushi_error(SUSHI_EINVAL, "more than %d overrides", SUP_MAX_OVERRIDES);
            a->overrides[a->noverrides++] = s;
        } else if (s[0] != '-' && !a->file) a->file = s;
        else return sushi_error(SUSHI_EINVAL, "unknown argument %s (see --help)", s);
    }
    if (!a->file) return sushi_error(SUSHI_EINVAL, "no pipeline file given (see --help)");
    return SUSHI_OK;
}

static int sup_bindir(char *out, size_t n) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return sushi_error(SUSHI_EIO, "/proc/self/exe: %s", strerror(errno));
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(out, n, "%s", exe);
    return SUSHI_OK;
}

static void sup_print_plan(const struct sup_pipeline *p, int comments) {
    for (int i = 0; i < p->nphases; i++) {
        const struct sup_phase *ph = &p->phases[i];
        if (comments) {
            printf("# phase %s", ph->name);
            if (ph->skip_if_exists)
                printf(" (skipped when %s exists%s)", ph->skip_if_exists,
                       fs_exists(ph->skip_if_exists) ? ": it does now" : "");
            printf("\n");
        }
        for (int s = 0; s < ph->nstages; s++)
            for (int r = 0; r < ph->stages[s].replicas; r++) {
                if (comments) {
                    printf("# SUSHI_STAGE=%s", ph->stages[s].name);
                    if (ph->stages[s].replicas > 1) printf(".%d", r + 1);
                    printf("%s%s\n", ph->stages[s].main ? " (main)" : "", ph->stages[s].console ? " (console)" : "");
                }
                sup_print_command(stdout, &ph->stages[s]);
                printf("\n");
            }
    }
}

/* Every program of the phases that will run exists and is executable. */
static int sup_check_programs(const struct sup_pipeline *p) {
    for (int i = 0; i < p->nphases; i++)
        for (int s = 0; s < p->phases[i].nstages; s++) {
            const struct sup_stage *st = &p->phases[i].stages[s];
            if (access(st->program, X_OK) != 0)
                return sushi_error(SUSHI_ENOTFOUND, "%s: pipeline.phases[%d].stages[%d] (%s): program %s: %s%s",
                                   p->file, i, s, st->name, st->program, strerror(errno),
                                   strchr(st->program, '/') && !strstr(st->program, "/sushi-") ? "" : " (not built?)");
        }
    return SUSHI_OK;
}

/* Refuses a run directory that another live supervisor is using. */
static int sup_check_alone(const struct sup_pipeline *p) {
    char path[PATH_MAX + 32], *text = NULL;
    size_t n;
    snprintf(path, sizeof path, "%s/supervisor.json", p->run_dir);
    if (!fs_exists(path) || fs_read_all(path, &text, &n)) return SUSHI_OK;
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    json_t *pid = json_object_get(j, "pid");
    int other = json_is_integer(pid) ? (int)json_integer_value(pid) : 0;
    json_decref(j);
    if (other > 0 && other != getpid() && kill(other, 0) == 0) {
        char comm[64] = "", cpath[64];
        snprintf(cpath, sizeof cpath, "/proc/%d/comm", other);
        FILE *f = fopen(cpath, "r");
        if (f && fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
        if (f) fclose(f);
        if (!strcmp(comm, "sushi-run"))
            return sushi_error(SUSHI_EINVAL, "%s: another sushi-run (pid %d) is running in %s", p->file, other,
                               p->run_dir);
    }
    return SUSHI_OK;
}

static int sup_promote(const struct sup_phase *ph, struct sup_report *r) {
    if (!ph->promote_from) return SUSHI_OK;
    if (!fs_exists(ph->promote_from))
        return sushi_error(SUSHI_ENOTFOUND, "phase %s: promote.from %s: missing after the phase", ph->name,
                           ph->promote_from);
    if (rename(ph->promote_from, ph->promote_to) != 0)
        return sushi_error(SUSHI_EIO, "phase %s: rename %s -> %s: %s", ph->name, ph->promote_from, ph->promote_to,
                           strerror(errno));
    log_info("phase %s: %s is now %s", ph->name, ph->promote_from, ph->promote_to);
    sup_report_rename_checkpoints(r, ph->promote_from, ph->promote_to);
    for (int i = 0; i < ph->npromote_copy; i++) {
        const char *src = ph->promote_copy[i], *base = strrchr(src, '/');
        char dst[PATH_MAX + 256], *buf = NULL;
        size_t n = 0;
        snprintf(dst, sizeof dst, "%s/%s", ph->promote_to, base ? base + 1 : src);
        int rc = fs_read_all(src, &buf, &n);
        if (!rc) rc = fs_write_atomic(dst, buf, n);
        free(buf);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", sushi_last_error());
            return sushi_error(rc, "phase %s: promote.copy %s -> %s: %s", ph->name, src, dst, msg);
        }
        log_info("phase %s: copied %s into %s", ph->name, src, ph->promote_to);
    }
    return SUSHI_OK;
}

/* Runs the phases; returns the exit status. Each phase comes from the file loaded again
 * as it starts (phase_p[i], kept for the summary): { json, key } vars then see what
 * earlier phases wrote. */
static int sup_run(const struct sup_args *a, const char *bindir, const struct sup_pipeline *p,
                   struct sup_pipeline **phase_p, struct sup_phase_run *runs, int *nruns, struct sup_report *r) {
    char logs[PATH_MAX + 16];
    snprintf(logs, sizeof logs, "%s/logs", p->run_dir);
    int rc = fs_mkdir_p(logs, 0755);
    if (!rc) rc = sup_check_alone(p);
    if (rc) {
        log_error("%s", sushi_last_error());
        return 2;
    }
    void *zctx = zmq_ctx_new();
    struct transport *sub = NULL;
    struct transport_opts o = transport_opts_default();
    o.rcvhwm = 10000;
    o.name = "supervisor";
    if (!zctx || (rc = transport_open(&sub, zctx, TRANSPORT_SUB, p->sub_endpoint, 1, &o))) {
        log_error("%s", zctx ? sushi_last_error() : "zmq_ctx_new failed");
        if (zctx) zmq_ctx_term(zctx);
        return 1;
    }
    log_info("pipeline %s (%s): %d phase%s, run dir %s, listening on %s", p->name, p->file, p->nphases,
             p->nphases == 1 ? "" : "s", p->run_dir, p->sub_endpoint);
    int status = 0;
    for (int i = 0; i < p->nphases && !status; i++) {
        struct sup_phase_run *pr = &runs[(*nruns)++];
        struct sup_pipeline *pp = phase_p[i] = calloc(1, sizeof *pp);
        if (!pp || sup_pipeline_load(a->file, a->overrides, a->noverrides, bindir, i, pp)) {
            memset(pr, 0, sizeof *pr);
            pr->phase = &p->phases[i];
            pr->result = SUP_PHASE_FAILED;
            snprintf(pr->message, sizeof pr->message, "%s", pp ? sushi_last_error() : "out of memory");
            log_error("phase %s cannot start: %s", pr->phase->name, pr->message);
            status = 1;
            break;
        }
        const struct sup_phase *ph = &pp->phases[i];
        if (ph->skip_if_exists && fs_exists(ph->skip_if_exists)) {
            memset(pr, 0, sizeof *pr);
            pr->phase = ph;
            pr->skipped = 1;
            log_info("phase %s skipped: %s exists", ph->name, ph->skip_if_exists);
            continue;
        }
        log_info("phase %s: starting %d stage%s", ph->name, ph->nstages, ph->nstages == 1 ? "" : "s");
        sup_phase_run(pp, ph, sub, r, pr);
        if (pr->result == SUP_PHASE_INTERRUPTED) status = sup_stop_signal() == SIGINT ? 130 : 143;
        else if (pr->result == SUP_PHASE_FAILED) {
            log_error("phase %s failed: %s", ph->name, pr->message);
            status = 1;
        } else if (sup_promote(ph, r)) {
            snprintf(pr->message, sizeof pr->message, "%s", sushi_last_error());
            pr->result = SUP_PHASE_FAILED;
            log_error("%s", pr->message);
            status = 1;
        }
    }
    transport_close(sub);
    zmq_ctx_term(zctx);
    char sock[PATH_MAX + 32];
    snprintf(sock, sizeof sock, "%s/supervisor.sock", p->run_dir);
    unlink(sock);
    return status;
}

int main(int argc, char **argv) {
    log_set_name("sushi-run");
    struct sup_args a;
    int rc = sup_parse(argc, argv, &a);
    if (rc == 1) return 0;
    if (rc) {
        log_error("%s", sushi_last_error());
        return 2;
    }
    char bindir[PATH_MAX];
    static struct sup_pipeline p;
    if ((rc = sup_bindir(bindir, sizeof bindir)) ||
        (rc = sup_pipeline_load(a.file, a.overrides, a.noverrides, bindir, -1, &p))) {
        log_error("%s", sushi_last_error());
        return 2;
    }
    if (a.print_commands) {
        sup_print_plan(&p, a.print_commands == 2);
        sup_pipeline_free(&p);
        return 0;
    }
    if ((rc = sup_check_programs(&p))) {
        log_error("%s", sushi_last_error());
        sup_pipeline_free(&p);
        return 2;
    }
    sup_signals_install();
    struct sup_phase_run *runs = calloc(SUP_MAX_PHASES, sizeof *runs);
    if (!runs) {
        log_error("out of memory");
        sup_pipeline_free(&p);
        return 1;
    }
    struct sup_report r;
    sup_report_init(&r, stdout);
    int nruns = 0;
    double t0 = sup_now();
    time_t wall0 = time(NULL);
    struct sup_pipeline *phase_p[SUP_MAX_PHASES] = {0};
    int status = sup_run(&a, bindir, &p, phase_p, runs, &nruns, &r);
    sup_report_load_results(&r, p.results, (double)wall0);
    if (nruns) sup_report_summary(&p, runs, nruns, &r, sup_now() - t0);
    sup_report_free(&r);
    free(runs);
    for (int i = 0; i < SUP_MAX_PHASES; i++) {
        sup_pipeline_free(phase_p[i]);
        free(phase_p[i]);
    }
    sup_pipeline_free(&p);
    return status;
}
