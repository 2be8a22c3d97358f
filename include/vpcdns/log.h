/* log.h — operator logs on stderr: one line per event, key=value (logfmt), with a level.
 * Thread-safe (one write(2) per line). Never call it per query. Every value that does not come
 * from a fixed set of words (an error message, a file name, a name from a file) goes through
 * vd_log_value, so that a logfmt parser reads every line; the events are listed in
 * docs/operator-log.md. */
#ifndef VPCDNS_LOG_H
#define VPCDNS_LOG_H

#include <stddef.h>

typedef enum vd_log_level {
        VD_LOG_ERROR = 0,
        VD_LOG_WARN,
        VD_LOG_INFO,
        VD_LOG_DEBUG,
} vd_log_level;

void vd_log_set_level(vd_log_level level);
vd_log_level vd_log_get_level(void);

/* "error", "warn"/"warning", "info", "debug" → level; returns 0 or -EINVAL. */
int vd_log_level_parse(const char *text, vd_log_level *out);

/* Writes `ts=2026-11-27T09:30:00.123Z level=info event=<event> <fmt...>\n` to stderr when
 * level is enabled. fmt carries the remaining key=value pairs. */
void vd_log(vd_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* value as one logfmt value, written to out (cap bytes, always NUL-terminated) and returned:
 * as it is when it is a non-empty run of printable characters other than space, '=' and '"';
 * otherwise in double quotes, with backslash, double quote, newline, carriage return and tab
 * escaped as \\ \" \n \r \t and other control bytes as \xHH. A value too long for out is
 * cut at a character boundary (an escape is never cut) and still closed with its quote. NULL
 * is written as "-". */
const char *vd_log_value(const char *value, char *out, size_t cap);

#endif
