/* test_log.c — operator log lines (resolver/log.c): format, level filter, one line per call. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vpcdns/log.h"

/* Captures what is written to fd 2 between begin and end. */
static int saved_stderr = -1;
static int pipe_fds[2];

static void capture_begin(void)
{
        cr_assert_eq(pipe(pipe_fds), 0);
        saved_stderr = dup(STDERR_FILENO);
        cr_assert_geq(saved_stderr, 0);
        cr_assert_geq(dup2(pipe_fds[1], STDERR_FILENO), 0);
        close(pipe_fds[1]);
}

/* Returns the captured bytes (NUL-terminated) in a static buffer. */
static const char *capture_end(void)
{
        static char buf[16384];
        cr_assert_geq(dup2(saved_stderr, STDERR_FILENO), 0);
        close(saved_stderr);
        size_t len = 0;
        ssize_t n;
        while (len < sizeof(buf) - 1 &&
               (n = read(pipe_fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
                len += (size_t)n;
        close(pipe_fds[0]);
        buf[len] = '\0';
        return buf;
}

static size_t count_lines(const char *text)
{
        size_t n = 0;
        for (; *text != '\0'; text++)
                n += *text == '\n';
        return n;
}

Test(log, level_parse)
{
        vd_log_level level;
        cr_assert_eq(vd_log_level_parse("error", &level), 0);
        cr_assert_eq(level, VD_LOG_ERROR);
        cr_assert_eq(vd_log_level_parse("warn", &level), 0);
        cr_assert_eq(level, VD_LOG_WARN);
        cr_assert_eq(vd_log_level_parse("warning", &level), 0);
        cr_assert_eq(level, VD_LOG_WARN);
        cr_assert_eq(vd_log_level_parse("INFO", &level), 0);
        cr_assert_eq(level, VD_LOG_INFO);
        cr_assert_eq(vd_log_level_parse("debug", &level), 0);
        cr_assert_eq(level, VD_LOG_DEBUG);
        level = VD_LOG_INFO;
        cr_assert_eq(vd_log_level_parse("verbose", &level), -EINVAL);
        cr_assert_eq(vd_log_level_parse("", &level), -EINVAL);
        cr_assert_eq(vd_log_level_parse("debug ", &level), -EINVAL);
        cr_assert_eq(vd_log_level_parse(NULL, &level), -EINVAL);
        cr_assert_eq(level, VD_LOG_INFO, "a rejected level must not be stored");
}

Test(log, default_level_is_info)
{
        cr_assert_eq(vd_log_get_level(), VD_LOG_INFO);
        vd_log_set_level(VD_LOG_DEBUG);
        cr_assert_eq(vd_log_get_level(), VD_LOG_DEBUG);
}

Test(log, line_format)
{
        capture_begin();
        vd_log(VD_LOG_WARN, "no_upstream", "listen=%s count=%d", "127.0.0.1:53", 2);
        const char *out = capture_end();
        regex_t re;
        cr_assert_eq(
            regcomp(&re,
                    "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                    "level=warn event=no_upstream listen=127\\.0\\.0\\.1:53 count=2\n$",
                    REG_EXTENDED),
            0);
        cr_assert_eq(regexec(&re, out, 0, NULL, 0), 0, "line: '%s'", out);
        regfree(&re);
}

Test(log, event_without_fields)
{
        capture_begin();
        vd_log(VD_LOG_ERROR, "stop", "%s", "");
        const char *out = capture_end();
        const char *tail = strstr(out, " level=error event=stop\n");
        cr_assert_not_null(tail, "line: '%s'", out);
        cr_assert_str_eq(tail, " level=error event=stop\n");
}

Test(log, level_filter)
{
        vd_log_set_level(VD_LOG_WARN);
        capture_begin();
        vd_log(VD_LOG_DEBUG, "d", "n=1");
        vd_log(VD_LOG_INFO, "i", "n=2");
        vd_log(VD_LOG_WARN, "w", "n=3");
        vd_log(VD_LOG_ERROR, "e", "n=4");
        const char *out = capture_end();
        cr_assert_eq(count_lines(out), 2, "output: '%s'", out);
        cr_assert_null(strstr(out, "event=d"));
        cr_assert_null(strstr(out, "event=i"));
        cr_assert_not_null(strstr(out, "level=warn event=w n=3\n"));
        cr_assert_not_null(strstr(out, "level=error event=e n=4\n"));

        vd_log_set_level(VD_LOG_DEBUG);
        capture_begin();
        vd_log(VD_LOG_DEBUG, "d", "n=1");
        out = capture_end();
        cr_assert_not_null(strstr(out, "level=debug event=d n=1\n"), "output: '%s'", out);

        vd_log_set_level(VD_LOG_ERROR);
        capture_begin();
        vd_log(VD_LOG_WARN, "w", "n=1");
        out = capture_end();
        cr_assert_str_eq(out, "");
}

Test(log, one_line_per_event_even_with_newlines_or_long_values)
{
        char big[5000];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        capture_begin();
        vd_log(VD_LOG_ERROR, "load_failed", "detail=\"line one\nline two\"");
        vd_log(VD_LOG_ERROR, "big", "value=%s", big);
        const char *out = capture_end();
        cr_assert_eq(count_lines(out), 2, "output: '%s'", out);
        cr_assert_not_null(strstr(out, "detail=\"line one line two\"\n"), "output: '%s'", out);
        const char *second = strchr(out, '\n') + 1;
        cr_assert_not_null(strstr(second, "level=error event=big value=aaaa"));
        cr_assert_eq(second[strlen(second) - 1], '\n', "a truncated line still ends the line");
        cr_assert_lt(strlen(second), 4096);
}

Test(log, keeps_errno)
{
        capture_begin();
        errno = ENOENT;
        vd_log(VD_LOG_ERROR, "x", "y=1");
        int saved = errno;
        capture_end();
        cr_assert_eq(saved, ENOENT);
}

/* ---- logfmt values ----------------------------------------------------------------------------
 */

/* Reads one logfmt value back the way logfmt parsers do (a bare run, or a quoted string with
 * backslash escapes); returns the bytes after it. */
static const char *parse_logfmt_value(const char *p, char *out, size_t cap)
{
        size_t n = 0;
        if (*p != '"') {
                while (*p != '\0' && *p != ' ' && n + 1 < cap)
                        out[n++] = *p++;
                out[n] = '\0';
                return p;
        }
        for (p++; *p != '\0' && *p != '"' && n + 1 < cap; p++) {
                if (*p != '\\') {
                        out[n++] = *p;
                        continue;
                }
                p++;
                switch (*p) {
                case 'n':
                        out[n++] = '\n';
                        break;
                case 'r':
                        out[n++] = '\r';
                        break;
                case 't':
                        out[n++] = '\t';
                        break;
                case 'x': {
                        unsigned v = 0;
                        cr_assert_eq(sscanf(p + 1, "%2x", &v), 1);
                        out[n++] = (char)v;
                        p += 2;
                        break;
                }
                default:
                        out[n++] = *p;
                }
        }
        cr_assert_eq(*p, '"', "the quoted value is closed");
        out[n] = '\0';
        return p + 1;
}

Test(log, plain_values_stay_bare)
{
        char buf[64];
        cr_assert_str_eq(vd_log_value("timeout", buf, sizeof(buf)), "timeout");
        cr_assert_str_eq(vd_log_value("127.0.0.1:53", buf, sizeof(buf)), "127.0.0.1:53");
        cr_assert_str_eq(vd_log_value("[::1]:5300", buf, sizeof(buf)), "[::1]:5300");
        cr_assert_str_eq(vd_log_value(NULL, buf, sizeof(buf)), "-");
        cr_assert_str_eq(vd_log_value("", buf, sizeof(buf)), "\"\"");
}

Test(log, nasty_values_are_quoted_escaped_and_read_back)
{
        static const char *const nasty[] = {
            "two words",
            "a=b",
            "say \"hi\"",
            "back\\slash",
            "line one\nline two",
            "cr\rand\ttab",
            "\"",
            "\\",
            "\\\"",
            "trailing backslash \\",
            "bell\x07 and del\x7f",
            "key=\"value\" other=x\n ts=forged level=error event=fake",
        };
        for (size_t i = 0; i < sizeof(nasty) / sizeof(nasty[0]); i++) {
                char buf[256], back[256];
                const char *v = vd_log_value(nasty[i], buf, sizeof(buf));
                cr_assert_eq(v[0], '"', "quoted: %s", v);
                cr_assert_null(strchr(v, '\n'), "no newline: %s", v);
                cr_assert_null(strchr(v, '\r'));
                const char *rest = parse_logfmt_value(v, back, sizeof(back));
                cr_assert_eq(*rest, '\0', "one value: %s", v);
                cr_assert_str_eq(back, nasty[i]);
        }
}

Test(log, a_value_cut_short_is_still_closed_and_never_splits_an_escape)
{
        char buf[8], back[16];
        for (size_t cap = 3; cap <= sizeof(buf); cap++) {
                const char *v = vd_log_value("\\\\\\\\\"\"\"", buf, cap);
                cr_assert_lt(strlen(v), cap);
                const char *rest = parse_logfmt_value(v, back, sizeof(back));
                cr_assert_eq(*rest, '\0', "cap %zu: %s", cap, v);
        }
}

Test(log, an_error_with_quotes_keeps_the_line_parsable)
{
        char why[128];
        capture_begin();
        vd_log(VD_LOG_ERROR, "reload_failed", "kept=previous error=%s",
               vd_log_value("zone \"a b\".txt:3: bad \\ escape\nnext", why, sizeof(why)));
        const char *out = capture_end();
        cr_assert_eq(count_lines(out), 1);
        const char *p = strstr(out, "error=");
        cr_assert_not_null(p);
        char back[128];
        const char *rest = parse_logfmt_value(p + 6, back, sizeof(back));
        cr_assert_str_eq(back, "zone \"a b\".txt:3: bad \\ escape\nnext");
        cr_assert_eq(*rest, '\n');
}
