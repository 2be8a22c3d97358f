/* common.c — the shared error record, the strict decimal reader of configuration text and the
 * background-thread priority. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

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

void vd_thread_background(void)
{
        /* On Linux the nice value belongs to the thread: PRIO_PROCESS with the thread's id
         * changes this thread only. */
        id_t tid = (id_t)syscall(SYS_gettid);
        errno = 0;
        int now = getpriority(PRIO_PROCESS, tid);
        if (now == -1 && errno != 0)
                return;
        if (now < VD_BACKGROUND_NICE)
                (void)setpriority(PRIO_PROCESS, tid, VD_BACKGROUND_NICE);
}
