/* Logging to stderr with a level filter and a program-name prefix, and the
 * thread-local "last error" message that sushi_error() records. */
#include "common/core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static enum log_level g_level = LOG_INFO;
static int g_level_from_env = 0;
static char g_name[64] = "sushi";
static _Thread_local char t_error[1024];

static void log_init_from_env(void) {
    if (g_level_from_env) return;
    g_level_from_env = 1;
    const char *e = getenv("SUSHI_LOG");
    if (!e) return;
    if (!strcasecmp(e, "debug")) g_level = LOG_DEBUG;
    else if (!strcasecmp(e, "info")) g_level = LOG_INFO;
    else if (!strcasecmp(e, "warn")) g_level = LOG_WARN;
    else if (!strcasecmp(e, "error")) g_level = LOG_ERROR;
    else if (!strcasecmp(e, "quiet")) g_level = LOG_QUIET;
}

void log_set_level(enum log_level level) { g_level_from_env = 1; g_level = level; }
enum log_level log_get_level(void) { log_init_from_env(); return g_level; }
void log_set_name(const char *name) { snprintf(g_name, sizeof g_name, "%s", name ? name : "sushi"); }

void log_msg(enum log_level level, const char *fmt, ...) {
    log_init_from_env();
    if (level < g_level) return;
    static const char *tags[] = {"debug", "info", "warn", "error"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    /* one fprintf per line so lines from threads do not interleave */
    fprintf(stderr, "%02d:%02d:%02d %s %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec, g_name,
            tags[level > LOG_ERROR ? LOG_ERROR : level], line);
}

int sushi_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_error, sizeof t_error, fmt, ap);
    va_end(ap);
    return code;
}

const char *sushi_last_error(void) { return t_error; }
void sushi_clear_error(void) { t_error[0] = 0; }

const char *sushi_strerror(int code) {
    switch (code) {
    case SUSHI_OK: return "ok";
    case SUSHI_EINVAL: return "invalid argument";
    case SUSHI_EIO: return "I/O error";
    case SUSHI_ENOMEM: return "out of memory";
    case SUSHI_EFORMAT: return "malformed input";
    case SUSHI_ESHAPE: return "shape mismatch";
    case SUSHI_ENOTFOUND: return "not found";
    case SUSHI_EUNSUPPORTED: return "unsupported";
    case SUSHI_EBACKEND: return "backend failure";
    default: return "unknown error";
    }
}
