/* sd.c — systemd's socket activation and notification protocols (sd.h), written out here
 * instead of linking libsystemd: each is a handful of lines over documented environment
 * variables, and the daemon then runs the same without systemd, in a container or under a
 * launcher that emulates it (bench/restart.sh does). Must not know anything about DNS,
 * workers or the config; it only reads the environment and talks to one unix socket. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vpcdns/sd.h"
#include "vpcdns/common.h"

static void forget_listen_env(void)
{
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
}

int vd_sd_listen_fds(int *fds, size_t cap)
{
        const char *pid_text = getenv("LISTEN_PID");
        const char *n_text = getenv("LISTEN_FDS");
        unsigned pid = 0, n = 0;
        int r = 0;

        if (pid_text == NULL || n_text == NULL)
                goto out;
        if (!vd_parse_uint(pid_text, 1, 0x7fffffff, &pid) || !vd_parse_uint(n_text, 0, 4096, &n)) {
                r = -EINVAL;
                goto out;
        }
        if ((pid_t)pid != getpid())
                goto out; /* meant for another process (a parent that exec'd us): not ours */
        if (n > cap) {
                r = -EINVAL;
                goto out;
        }
        for (unsigned i = 0; i < n; i++) {
                int fd = VD_SD_LISTEN_FDS_START + (int)i;
                int flags = fcntl(fd, F_GETFD);
                if (flags < 0) {
                        r = -EBADF;
                        goto out;
                }
                (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
                fds[i] = fd;
        }
        r = (int)n;
out:
        forget_listen_env();
        return r;
}

int vd_sd_notify(const char *state)
{
        const char *path = getenv("NOTIFY_SOCKET");
        struct sockaddr_un sun;
        socklen_t len;
        size_t plen;
        int fd, r = 0;

        if (path == NULL || path[0] == '\0')
                return 0;
        plen = strlen(path);
        if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sun.sun_path))
                return -EINVAL;
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path, path, plen);
        if (path[0] == '@')
                sun.sun_path[0] = '\0'; /* abstract namespace: no trailing NUL in the length */
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, len) < 0)
                r = -errno;
        close(fd);
        return r;
}

int vd_sd_notifyf(const char *fmt, ...)
{
        char text[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        return vd_sd_notify(text);
}
