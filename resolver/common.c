/* common.c — the shared error record. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

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
