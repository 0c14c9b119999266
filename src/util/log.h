/* log: one place that decides where messages go.
 *
 * In the foreground (-f) messages go to stderr, otherwise to syslog.
 * Callers pass context (project, job, path, errno text) in the message;
 * secrets (SK, passwords, tokens) are never passed here. */
#ifndef HCX_LOG_H
#define HCX_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_set_level(enum log_level level);
/* Returns -1 if name is not one of error, warn, info, debug. */
int log_parse_level(const char *name, enum log_level *out);
/* Switches from stderr to syslog (after daemonizing). */
void log_use_syslog(int on);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) \
    do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
