/* test_sd.c — systemd's protocols (resolver/sd.c): LISTEN_FDS is taken only when LISTEN_PID is
 * ours and is cleared either way; NOTIFY_SOCKET messages arrive on a path or an abstract name;
 * nothing is sent (and nothing fails) without one. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vpcdns/sd.h"

static void set_listen(const char *pid, const char *n)
{
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", n, 1);
        setenv("LISTEN_FDNAMES", "dns", 1);
}

static void assert_listen_cleared(void)
{
        cr_assert_null(getenv("LISTEN_PID"));
        cr_assert_null(getenv("LISTEN_FDS"));
        cr_assert_null(getenv("LISTEN_FDNAMES"));
}

Test(sd, no_listen_fds_without_the_variables)
{
        int fds[4];
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        cr_assert_eq(vd_sd_listen_fds(fds, 4), 0);
}

Test(sd, listen_fds_of_another_process_are_not_ours)
{
        int fds[4];
        char pid[32];
        snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
        set_listen(pid, "2");
        cr_assert_eq(vd_sd_listen_fds(fds, 4), 0);
        assert_listen_cleared(); /* a child must not take them for its own either */
}

Test(sd, bad_listen_values_are_errors)
{
        int fds[4];
        char pid[32];
        set_listen("12x", "1");
        cr_assert_eq(vd_sd_listen_fds(fds, 4), -EINVAL);
        assert_listen_cleared();
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        set_listen(pid, "5"); /* more than the caller has room for */
        cr_assert_eq(vd_sd_listen_fds(fds, 4), -EINVAL);
        set_listen(pid, "-1");
        cr_assert_eq(vd_sd_listen_fds(fds, 4), -EINVAL);
}

Test(sd, listen_fds_zero_is_none)
{
        int fds[4];
        char pid[32];
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        set_listen(pid, "0");
        cr_assert_eq(vd_sd_listen_fds(fds, 4), 0);
        assert_listen_cleared();
}

/* A datagram socket bound to name (a path, or an abstract name when it starts with '@'). */
static int notify_socket(const char *name)
{
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        size_t len = strlen(name);
        int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
        cr_assert_geq(fd, 0);
        memcpy(sun.sun_path, name, len);
        if (name[0] == '@')
                sun.sun_path[0] = '\0';
        else
                unlink(name);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sun,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
                     0, "bind %s: %s", name, strerror(errno));
        struct timeval tv = {.tv_sec = 2};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return fd;
}

static void expect_message(int fd, const char *want)
{
        char buf[1100];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        cr_assert_gt(n, 0, "no notification: %s", strerror(errno));
        buf[n] = '\0';
        cr_assert_str_eq(buf, want);
}

Test(sd, notify_reaches_a_path)
{
        char path[64];
        snprintf(path, sizeof(path), "/tmp/vd-test-notify.%d", (int)getpid());
        int fd = notify_socket(path);
        setenv("NOTIFY_SOCKET", path, 1);
        cr_assert_eq(vd_sd_notify("READY=1\nSTATUS=serving"), 0);
        expect_message(fd, "READY=1\nSTATUS=serving");
        cr_assert_eq(vd_sd_notifyf("STATUS=reload failed: %s", "x.json:1: bad"), 0);
        expect_message(fd, "STATUS=reload failed: x.json:1: bad");
        close(fd);
        unlink(path);
        unsetenv("NOTIFY_SOCKET");
}

Test(sd, notify_reaches_an_abstract_name)
{
        char name[64];
        snprintf(name, sizeof(name), "@vd-test-notify.%d", (int)getpid());
        int fd = notify_socket(name);
        setenv("NOTIFY_SOCKET", name, 1);
        cr_assert_eq(vd_sd_notify("STOPPING=1"), 0);
        expect_message(fd, "STOPPING=1");
        close(fd);
        unsetenv("NOTIFY_SOCKET");
}

Test(sd, notify_without_a_socket_is_a_no_op)
{
        unsetenv("NOTIFY_SOCKET");
        cr_assert_eq(vd_sd_notify("READY=1"), 0);
        setenv("NOTIFY_SOCKET", "relative/path", 1);
        cr_assert_eq(vd_sd_notify("READY=1"), -EINVAL);
        setenv("NOTIFY_SOCKET", "/nonexistent/vd-notify", 1);
        cr_assert_lt(vd_sd_notify("READY=1"), 0); /* an error, never a crash or a block */
        unsetenv("NOTIFY_SOCKET");
}
