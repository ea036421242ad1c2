/* Logging and error reporting shared by every sushi program and library.
 *
 * Errors are plain ints: 0 is success, a negative SUSHI_E* value is a failure. The
 * function that detects a failure describes it once with sushi_error(), naming the
 * thing (file, tensor, field, peer) and the cause; callers pass the code upwards and
 * may read the message back with sushi_last_error() (thread-local). */
#ifndef SUSHI_LOG_H
#define SUSHI_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum {
    SUSHI_OK = 0,
    SUSHI_EINVAL = -1,   /* bad argument or configuration value */
    SUSHI_EIO = -2,      /* file or socket I/O failed */
    SUSHI_ENOMEM = -3,   /* allocation failed */
    SUSHI_EFORMAT = -4,  /* malformed input: corrupt file, bad message */
    SUSHI_ESHAPE = -5,   /* tensor shape or dtype mismatch */
    SUSHI_ENOTFOUND = -6,/* missing file, tensor or key */
    SUSHI_EUNSUPPORTED = -7, /* valid but not supported value */
    SUSHI_EBACKEND = -8, /* compute backend failure (BLAS, CUDA) */
};

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_QUIET = 4 };

/* Minimum level printed (default LOG_INFO; SUSHI_LOG=debug|info|warn|error|quiet). */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Prefix for every line, usually the program name (e.g. "sushi-trainer"). */
void log_set_name(const char *name);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Records the message of the current error (thread-local) and returns `code`, so a
 * caller writes `return sushi_error(SUSHI_EFORMAT, "%s: tensor %s: ...", path, name);` */
int sushi_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The message of the last sushi_error() on this thread ("" if none). */
const char *sushi_last_error(void);
void sushi_clear_error(void);
/* A short name for an error code ("invalid argument", ...). */
const char *sushi_strerror(int code);

#endif
