/* The supervisor's child processes: each stage instance runs in its own process group
 * (so a signal reaches its helpers too and a terminal Ctrl-C reaches only the
 * supervisor, which then stops the stages in order), with stdin from /dev/null, its
 * output appended to a log file, and SIGTERM delivered should the supervisor die. */
#include "pipelines/supervisor/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/core/log.h"

static volatile sig_atomic_t sup_stop_sig;

static void sup_on_signal(int sig) {
    if (!sup_stop_sig) sup_stop_sig = sig;
}

void sup_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sup_on_signal; /* no SA_RESTART: a blocking poll returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int sup_stopping(void) { return sup_stop_sig != 0; }
int sup_stop_signal(void) { return sup_stop_sig; }

double sup_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* In the child after fork: only async-signal-safe calls until exec. */
static void sup_child(const struct sup_stage *s, char *const *envp, int logfd, pid_t parent) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127); /* the supervisor died before the prctl */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    if (logfd >= 0) {
        dup2(logfd, STDOUT_FILENO);
        dup2(logfd, STDERR_FILENO);
    }
    execve(s->program, s->argv, envp);
    static const char msg[] = "sushi-run: cannot execute the stage program (missing or not executable)\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
}

extern char **environ;

/* The child's environment: ours minus SUSHI_STAGE/SUSHI_PUBLISH, plus those and env. */
static char **sup_child_env(const struct sup_stage *s, const char *instance, const char *publish, char **own) {
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + (size_t)s->nenv + 3, sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "SUSHI_STAGE=", 12) && strncmp(environ[i], "SUSHI_PUBLISH=", 14))
            env[k++] = environ[i];
    char *stage = malloc(strlen(instance) + 16), *pub = malloc(strlen(publish) + 16);
    if (!stage || !pub) {
        free(stage);
        free(pub);
        free(env);
        return NULL;
    }
    sprintf(stage, "SUSHI_STAGE=%s", instance);
    sprintf(pub, "SUSHI_PUBLISH=%s", publish);
    env[k++] = own[0] = stage;
    env[k++] = own[1] = pub;
    for (int i = 0; i < s->nenv; i++) env[k++] = s->env[i];
    env[k] = NULL;
    return env;
}

int sup_spawn(const struct sup_stage *s, const char *instance, const char *publish, const char *log_path,
              pid_t *out) {
    if (!s || !instance || !publish || !out) return sushi_error(SUSHI_EINVAL, "sup_spawn: bad argument");
    int logfd = -1;
    if (log_path && (logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
        return sushi_error(SUSHI_EIO, "stage %s: log %s: %s", instance, log_path, strerror(errno));
    char *own[2] = {NULL, NULL};
    char **env = sup_child_env(s, instance, publish, own);
    if (!env) {
        if (logfd >= 0) close(logfd);
        return sushi_error(SUSHI_ENOMEM, "stage %s: out of memory", instance);
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) sup_child(s, env, logfd, parent);
    int err = errno;
    if (pid > 0) setpgid(pid, pid); /* also from here: no window where a signal misses it */
    free(own[0]);
    free(own[1]);
    free(env);
    if (logfd >= 0) close(logfd);
    if (pid < 0) return sushi_error(SUSHI_EIO, "stage %s: fork: %s", instance, strerror(err));
    *out = pid;
    return SUSHI_OK;
}

void sup_signal(pid_t pid, int sig) {
    if (pid <= 0) return;
    if (kill(-pid, sig) != 0) kill(pid, sig); /* the group may not exist yet */
}

const char *sup_status_text(int status, char *buf, size_t cap) {
    if (status < 0) snprintf(buf, cap, "-");
    else if (WIFEXITED(status)) snprintf(buf, cap, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(buf, cap, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else snprintf(buf, cap, "status %d", status);
    return buf;
}
