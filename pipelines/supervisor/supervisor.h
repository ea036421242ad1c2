/* sushi-run, the pipeline supervisor: shared types of its parts.
 *
 *   pipeline.c  the pipeline YAML -> struct sup_pipeline (vars substituted, validated)
 *   proc.c      child processes: spawn (own process group, log file), signal, reap
 *   phase.c     one phase: start stages, wait for hello/heartbeat, restart with backoff,
 *               end on the main stage's exit 0, stop the rest
 *   report.c    what the supervisor hears (metrics, eval, checkpoint), supervisor.json,
 *               progress lines and the final summary
 *   main.c      command line, phases in order, summary */
#ifndef SUSHI_SUPERVISOR_H
#define SUSHI_SUPERVISOR_H

#include <limits.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#define SUP_NAME_MAX 48
#define SUP_MAX_PHASES 8
#define SUP_MAX_STAGES 16
#define SUP_MAX_REPLICAS 16
#define SUP_MAX_INSTANCES 64
#define SUP_MAX_CHECKPOINTS 8

/* One stage of a phase after var substitution. */
struct sup_stage {
    char name[SUP_NAME_MAX];
    char *program;          /* path that is executed (sushi-NAME beside sushi-run, or as given) */
    char **argv;            /* argv[0] = program; NULL-terminated */
    int argc;
    char **env;             /* extra "KEY=VALUE" entries; NULL-terminated */
    int nenv;
    int replicas;           /* >= 1; > 1 names the instances NAME.1, NAME.2, ... */
    int main;               /* its exit 0 ends the phase */
    int console;            /* keeps the terminal (no log file) */
    int ready_on_start;     /* `ready: start`: the stage publishes no hello (counts as up at once) */
    int max_restarts;
};

struct sup_phase {
    char name[SUP_NAME_MAX];
    char *skip_if_exists;   /* NULL, or a path whose existence skips the phase */
    char *promote_from;     /* NULL, or rename promote_from -> promote_to after success */
    char *promote_to;
    char **promote_copy;    /* files copied into promote_to after the rename; NULL-terminated */
    int npromote_copy;
    int nstages;
    struct sup_stage stages[SUP_MAX_STAGES];
};

struct sup_pipeline {
    char file[PATH_MAX];    /* the YAML it came from (messages) */
    char name[SUP_NAME_MAX];
    char *run_dir;          /* supervisor.sock, supervisor.json and logs/ live here */
    char *publish;          /* SUSHI_PUBLISH for the children: the supervisor's SUB first */
    char *results;          /* NULL, or a JSONL file of eval results (its last line, when
                               written during this run, is the summary's last eval) */
    char sub_endpoint[PATH_MAX + 16];
    double start_timeout_s; /* a stage's first hello/heartbeat must come within this */
    double stop_grace_s;    /* SIGTERM -> SIGKILL */
    double backoff_initial_s, backoff_max_s;
    int nphases;
    struct sup_phase phases[SUP_MAX_PHASES];
};

/* Loads and validates a pipeline file; overrides are "vars.NAME=value" or
 * "key.path=value" (relative to `pipeline:`, or starting with "pipeline."). `bindir`
 * is where sushi-NAME programs are looked up. In phase `strict_phase` (-1: none) a
 * { json, key } var must resolve; elsewhere a missing file gives a placeholder. Every
 * error names the file and field. */
int sup_pipeline_load(const char *path, const char *const *overrides, int noverrides, const char *bindir,
                      int strict_phase, struct sup_pipeline *out);
void sup_pipeline_free(struct sup_pipeline *p);
/* One shell-quoted command line (no newline) into f. */
void sup_print_command(FILE *f, const struct sup_stage *s);

/* ---- processes (proc.c) ---- */

/* Starts argv in its own process group with SUSHI_STAGE=instance, SUSHI_PUBLISH=publish
 * and the stage's env, stdin from /dev/null, stdout+stderr appended to log_path (NULL:
 * inherited). The child gets SIGTERM when the supervisor dies. */
int sup_spawn(const struct sup_stage *s, const char *instance, const char *publish, const char *log_path,
              pid_t *out);
/* Signals the child's whole process group. */
void sup_signal(pid_t pid, int sig);
/* "exit 3", "signal 9 (Killed)" for a wait status. */
const char *sup_status_text(int status, char *buf, size_t cap);
double sup_now(void);   /* monotonic seconds */
/* 1 once SIGINT/SIGTERM reached the supervisor (handlers installed by sup_signals_install). */
int sup_stopping(void);
int sup_stop_signal(void);
void sup_signals_install(void);

/* ---- what the supervisor hears and reports (report.c) ---- */

enum sup_inst_state { SUP_STARTING = 0, SUP_RUNNING, SUP_BACKOFF, SUP_DONE, SUP_FAILED, SUP_STOPPED };

struct sup_inst {
    const struct sup_stage *stage;
    char name[SUP_NAME_MAX + 8];    /* "loader", "teacher.2" */
    enum sup_inst_state state;
    pid_t pid;                      /* 0 when not running */
    int ready;                      /* hello/heartbeat seen from this pid */
    int restarts;
    int last_status;                /* wait status of the last exit; -1 none */
    int start_timed_out;            /* killed for missing the start timeout */
    double t_start, t_first_start, t_end, restart_at, backoff;
};

struct sup_report {
    FILE *out;                      /* progress and summary lines */
    int progress;                   /* print progress lines (no console stage) */
    json_t *last_eval;              /* meta of the last eval message, or NULL */
    char last_eval_stage[64];       /* WIRE_STAGE_MAX */
    char *checkpoints[SUP_MAX_CHECKPOINTS]; /* last announced paths, oldest first */
    int ncheckpoints;
    double last_progress;
    const char *phase;
};

void sup_report_init(struct sup_report *r, FILE *out);
void sup_report_free(struct sup_report *r);
/* Handles one received message: readiness of instances, progress, evals, checkpoints. */
struct wire_msg;
void sup_report_message(struct sup_report *r, const struct wire_msg *m, struct sup_inst *insts, int ninsts);
/* Takes the last line of the JSONL file `path` as the last eval when the file was
 * written at or after `since` (wall-clock seconds); a line {"meta": {...}} or {...}. */
void sup_report_load_results(struct sup_report *r, const char *path, double since);
/* RUN/supervisor.json: pipeline, phase, each instance's pid, restarts, state. */
int sup_report_write_state(const struct sup_pipeline *p, const char *phase, const struct sup_inst *insts,
                           int ninsts);

/* ---- one phase (phase.c) ---- */
struct sup_phase_run;

enum sup_phase_result { SUP_PHASE_OK = 0, SUP_PHASE_FAILED, SUP_PHASE_INTERRUPTED };

struct sup_phase_run {
    const struct sup_phase *phase;
    enum sup_phase_result result;
    int skipped;
    char message[512];              /* why it failed */
    double t_start, t_end;
    int ninsts;
    struct sup_inst insts[SUP_MAX_INSTANCES];
};

/* Runs one phase to its end; `sub` is the supervisor's bound SUB transport. */
struct transport;
int sup_phase_run(const struct sup_pipeline *p, const struct sup_phase *ph, struct transport *sub,
                  struct sup_report *r, struct sup_phase_run *out);

/* After promote renamed `from` to `to`: announced checkpoints under `from` move too. */
void sup_report_rename_checkpoints(struct sup_report *r, const char *from, const char *to);
/* The end-of-run summary on stdout: phases, stage instances (restarts, last exit,
 * duration), the last eval, the checkpoints announced, the log folder. */
void sup_report_summary(const struct sup_pipeline *p, struct sup_phase_run *runs, int nruns, struct sup_report *r,
                        double total_s);

#endif
