/* log.c — operator logs: one `ts=... level=... event=... key=value` line per event on
 * stderr, written with a single write(2) so that lines from several threads never mix.
 * Owns the process-wide level filter and the quoting of values (vd_log_value). Never called
 * per query; never allocates. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "vpcdns/log.h"

#define LINE_MAX_BYTES 2048

static int current_level = VD_LOG_INFO; /* read and written with __atomic builtins */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void vd_log_set_level(vd_log_level level)
{
        if ((int)level < VD_LOG_ERROR)
                level = VD_LOG_ERROR;
        if (level > VD_LOG_DEBUG)
                level = VD_LOG_DEBUG;
        __atomic_store_n(&current_level, (int)level, __ATOMIC_RELAXED);
}

vd_log_level vd_log_get_level(void)
{
        return (vd_log_level)__atomic_load_n(&current_level, __ATOMIC_RELAXED);
}

int vd_log_level_parse(const char *text, vd_log_level *out)
{
        if (text == NULL)
                return -EINVAL;
        for (int i = VD_LOG_ERROR; i <= VD_LOG_DEBUG; i++) {
                if (strcasecmp(text, level_names[i]) == 0) {
                        *out = (vd_log_level)i;
                        return 0;
                }
        }
        if (strcasecmp(text, "warning") == 0) {
                *out = VD_LOG_WARN;
                return 0;
        }
        return -EINVAL;
}

/* Appends the UTC time with milliseconds ("2026-11-27T09:30:00.123Z"); returns bytes written. */
static size_t format_time(char *out, size_t cap)
{
        struct timespec now;
        struct tm tm;
        if (clock_gettime(CLOCK_REALTIME, &now) != 0 || gmtime_r(&now.tv_sec, &tm) == NULL)
                return (size_t)snprintf(out, cap, "0000-00-00T00:00:00.000Z");
        size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
        int m = snprintf(out + n, cap - n, ".%03ldZ", now.tv_nsec / 1000000L);
        if (m < 0 || (size_t)m >= cap - n)
                return n;
        return n + (size_t)m;
}

/* Whether c may stand in a bare (unquoted) logfmt value. */
static int bare_char(unsigned char c)
{
        return c > ' ' && c != 0x7f && c != '=' && c != '"' && c != '\\';
}

const char *vd_log_value(const char *value, char *out, size_t cap)
{
        if (cap == 0)
                return out;
        if (value == NULL)
                value = "-";
        size_t i = 0;
        bool bare = value[0] != '\0';
        for (const unsigned char *p = (const unsigned char *)value; *p != '\0' && bare; p++)
                bare = bare_char(*p);
        if (bare) {
                snprintf(out, cap, "%s", value);
                return out;
        }
        if (cap < 3) {
                out[0] = '\0';
                return out;
        }
        out[i++] = '"';
        for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
                char esc[5];
                size_t n;
                switch (*p) {
                case '\\':
                case '"':
                        esc[0] = '\\', esc[1] = (char)*p, n = 2;
                        break;
                case '\n':
                        esc[0] = '\\', esc[1] = 'n', n = 2;
                        break;
                case '\r':
                        esc[0] = '\\', esc[1] = 'r', n = 2;
                        break;
                case '\t':
                        esc[0] = '\\', esc[1] = 't', n = 2;
                        break;
                default:
                        if (*p < ' ' || *p == 0x7f) {
                                static const char hex[] = "0123456789abcdef";
                                esc[0] = '\\', esc[1] = 'x', esc[2] = hex[*p >> 4],
                                esc[3] = hex[*p & 0xF], n = 4;
                        } else {
                                esc[0] = (char)*p, n = 1;
                        }
                }
                if (i + n + 2 > cap) /* room for the closing quote and the NUL */
                        break;
                memcpy(out + i, esc, n);
                i += n;
        }
        out[i++] = '"';
        out[i] = '\0';
        return out;
}

void vd_log(vd_log_level level, const char *event, const char *fmt, ...)
{
        if ((int)level > __atomic_load_n(&current_level, __ATOMIC_RELAXED) ||
            (int)level < VD_LOG_ERROR)
                return;
        int saved_errno = errno;
        char line[LINE_MAX_BYTES];
        size_t cap = sizeof(line) - 1; /* keep one byte for the newline */
        size_t len = 0;

        len += (size_t)snprintf(line, cap, "ts=");
        len += format_time(line + len, cap - len);
        int n = snprintf(line + len, cap - len, " level=%s event=%s", level_names[level],
                         event != NULL ? event : "-");
        len = (n < 0 || (size_t)n >= cap - len) ? cap - 1 : len + (size_t)n;

        if (fmt != NULL && fmt[0] != '\0' && len < cap - 1) {
                line[len++] = ' ';
                va_list ap;
                va_start(ap, fmt);
                n = vsnprintf(line + len, cap - len, fmt, ap);
                va_end(ap);
                if (n <= 0)
                        len--; /* no fields after all: drop the separator */
                else
                        len = (size_t)n >= cap - len ? cap - 1 : len + (size_t)n;
        }
        /* A value may not carry a newline into the next line. */
        for (size_t i = 0; i < len; i++) {
                if (line[i] == '\n' || line[i] == '\r')
                        line[i] = ' ';
        }
        line[len++] = '\n';

        ssize_t w;
        do {
                w = write(STDERR_FILENO, line, len);
        } while (w < 0 && errno == EINTR);
        errno = saved_errno;
}
