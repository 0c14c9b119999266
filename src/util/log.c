/* log: stderr in the foreground, syslog when daemonized. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static enum log_level current_level = LOG_LVL_INFO;
static int to_syslog;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level level) { current_level = level; }

int log_parse_level(const char *name, enum log_level *out)
{
    for (int i = 0; i <= LOG_LVL_DEBUG; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_use_syslog(int on)
{
    if (on && !to_syslog)
        openlog("hcexportfs", LOG_PID, LOG_DAEMON);
    to_syslog = on;
}

int log_enabled(enum log_level level) { return level <= current_level; }

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (to_syslog) {
        static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
        syslog(prio[level], "%s", line);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    /* One fprintf per line keeps lines from concurrent threads whole. */
    fprintf(stderr, "%02d:%02d:%02d.%03ld hcexportfs %s: %s\n", tm.tm_hour, tm.tm_min,
            tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], line);
}
