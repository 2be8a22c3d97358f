/* common.c — the shared error record and the strict decimal reader of configuration text. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vpcdns/common.h"

int vd_error_set(vd_error *err, const char *fmt, ...)
{
        if (err != NULL) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

bool vd_parse_uint(const char *text, unsigned min, unsigned max, unsigned *out)
{
        if (text[0] == '\0' || strlen(text) > 10)
                return false;
        unsigned long long value = 0;
        for (const char *p = text; *p != '\0'; p++) {
                if (*p < '0' || *p > '9')
                        return false;
                value = value * 10 + (unsigned long long)(*p - '0');
        }
        if (value < min || value > max)
                return false;
        *out = (unsigned)value;
        return true;
}
