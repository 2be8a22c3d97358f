/* log.h — operator logs on stderr: one line per event, key=value, with a level.
 * Thread-safe (one write(2) per line). Never call it per query. */
#ifndef VPCDNS_LOG_H
#define VPCDNS_LOG_H

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

#endif
