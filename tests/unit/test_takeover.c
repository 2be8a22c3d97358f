/* test_takeover.c — the control socket (resolver/takeover.c): a running side on a libuv loop in
 * its own thread, the new instance's blocking calls on the test's thread. The hand-over gives
 * the very same sockets (same inode), SERVING reaches the running side with our pid, a reload
 * request carries the outcome both ways, and nobody answering is 0 (bind as usual). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "vpcdns/addr.h"
#include "vpcdns/takeover.h"

typedef struct running {
        uv_loop_t loop;
        uv_async_t quit;
        vd_control *control;
        int socks[3];
        atomic_int served_by;
        atomic_int reload_result;
        uint64_t reloads;      /* loop thread: reloads started */
        uv_timer_t reload_end; /* loop thread: a started reload ends a little later */
        uv_thread_t thread;
} running;

static size_t lend_sockets(void *arg, int *fds, size_t cap)
{
        running *r = arg;
        size_t n = cap < 3 ? cap : 3;
        memcpy(fds, r->socks, n * sizeof(int));
        return n;
}

static void on_serving(void *arg, pid_t pid)
{
        running *r = arg;
        atomic_store(&r->served_by, (int)pid);
}

/* As the server does: the reload ends later, on the loop, and its outcome goes to whoever
 * waits for it. */
static void on_reload_end(uv_timer_t *t)
{
        running *r = t->data;
        int result = atomic_load(&r->reload_result);
        vd_control_reload_done(r->control, r->reloads, result == 0,
                               result == 0 ? "names=3" : "bad.json:1: not JSON");
}

static int on_reload(void *arg, uint64_t *number, char *msg, size_t cap)
{
        running *r = arg;
        (void)msg;
        (void)cap;
        *number = ++r->reloads;
        uv_timer_start(&r->reload_end, on_reload_end, 50, 0);
        return 0;
}

static const vd_control_ops ops = {
    .sockets = lend_sockets, .serving = on_serving, .reload = on_reload};

static void on_quit(uv_async_t *a)
{
        running *r = a->data;
        vd_control_close(r->control);
        uv_close((uv_handle_t *)&r->reload_end, NULL);
        uv_close((uv_handle_t *)a, NULL);
}

static void run_loop(void *arg)
{
        running *r = arg;
        uv_run(&r->loop, UV_RUN_DEFAULT);
}

/* A test address nobody uses: port 1 on a loopback address of its own per process. */
static vd_addr test_addr(void)
{
        vd_addr a;
        char text[64];
        snprintf(text, sizeof(text), "127.%d.%d.%d:1", (getpid() >> 16) & 0xff,
                 (getpid() >> 8) & 0xff, getpid() & 0xff);
        cr_assert_eq(vd_addr_parse(text, 53, &a), 0);
        return a;
}

static void start_running(running *r, const vd_addr *a)
{
        memset(r, 0, sizeof(*r));
        cr_assert_eq(uv_loop_init(&r->loop), 0);
        cr_assert_eq(uv_async_init(&r->loop, &r->quit, on_quit), 0);
        r->quit.data = r;
        cr_assert_eq(uv_timer_init(&r->loop, &r->reload_end), 0);
        r->reload_end.data = r;
        for (int i = 0; i < 3; i++) {
                r->socks[i] = socket(AF_INET, i == 2 ? SOCK_STREAM : SOCK_DGRAM, 0);
                cr_assert_geq(r->socks[i], 0);
        }
        cr_assert_eq(vd_control_start(&r->loop, a, 1, &ops, r, &r->control), 0);
        cr_assert_eq(uv_thread_create(&r->thread, run_loop, r), 0);
}

static void stop_running(running *r)
{
        uv_async_send(&r->quit);
        uv_thread_join(&r->thread);
        cr_assert_eq(uv_loop_close(&r->loop), 0, "a control handle was left open");
        for (int i = 0; i < 3; i++)
                close(r->socks[i]);
}

static bool same_socket(int a, int b)
{
        struct stat sa, sb;
        return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_ino == sb.st_ino &&
               sa.st_dev == sb.st_dev;
}

Test(takeover, nobody_to_ask_is_zero)
{
        vd_addr a = test_addr();
        vd_error err = {{0}};
        int fds[4], conn = 7;
        char msg[128];
        cr_assert_eq(vd_takeover_request(&a, fds, 4, &conn, &err), 0);
        cr_assert_eq(conn, -1);
        cr_assert_eq(vd_takeover_peer(&a), 0);
        cr_assert_eq(vd_takeover_reload(&a, 1000, msg, sizeof(msg)), -ENOENT);
        cr_assert(strstr(msg, "no vpcdns answers") != NULL, "%s", msg);
}

Test(takeover, hands_over_the_same_sockets_then_hears_serving)
{
        vd_addr a = test_addr();
        vd_error err = {{0}};
        running r;
        int fds[8], conn = -1;

        start_running(&r, &a);
        cr_assert_eq(vd_takeover_peer(&a), getpid()); /* the pid of the holder: ours here */
        int n = vd_takeover_request(&a, fds, 8, &conn, &err);
        cr_assert_eq(n, 3, "%d: %s", n, err.msg);
        cr_assert_geq(conn, 0);
        for (int i = 0; i < 3; i++) {
                cr_assert(same_socket(fds[i], r.socks[i]), "socket %d is another one", i);
                cr_assert_neq(fds[i], r.socks[i]); /* a descriptor of our own */
        }
        /* once the sockets are sent, the name is free for the successor */
        cr_assert_eq(vd_takeover_peer(&a), 0);
        vd_takeover_serving(conn);
        for (int i = 0; i < 200 && atomic_load(&r.served_by) == 0; i++)
                usleep(10 * 1000);
        cr_assert_eq(atomic_load(&r.served_by), getpid());
        for (int i = 0; i < 3; i++)
                close(fds[i]);
        stop_running(&r);
}

Test(takeover, a_reload_request_reports_the_outcome)
{
        vd_addr a = test_addr();
        running r;
        char msg[256];

        start_running(&r, &a);
        atomic_store(&r.reload_result, 0);
        cr_assert_eq(vd_takeover_reload(&a, 5000, msg, sizeof(msg)), 0, "%s", msg);
        cr_assert_str_eq(msg, "names=3");
        atomic_store(&r.reload_result, -EINVAL);
        cr_assert_eq(vd_takeover_reload(&a, 5000, msg, sizeof(msg)), -EIO);
        cr_assert_str_eq(msg, "bad.json:1: not JSON");
        stop_running(&r);
}
