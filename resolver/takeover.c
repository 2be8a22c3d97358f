/* takeover.c — the control socket (takeover.h): the hand-over of listening sockets from a
 * running vpcdns to its successor over SCM_RIGHTS, and the reload request of `vpcdns
 * --reload`. Owns the control sockets and their libuv handles on the server's control loop;
 * the new instance's side is plain blocking calls (it runs before any worker). Must not
 * touch a worker, a snapshot or a query: the server answers through vd_control_ops. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vpcdns/takeover.h"
#include "vpcdns/log.h"

#define MSG_MAX 1024

/* ---- shared -----------------------------------------------------------------------------------
 */

static socklen_t control_name(const vd_addr *addr, struct sockaddr_un *sun)
{
        char text[80];
        vd_addr_format(addr, text, sizeof(text));
        memset(sun, 0, sizeof(*sun));
        sun->sun_family = AF_UNIX;
        /* sun_path[0] stays NUL: the abstract namespace; the length ends the name */
        int n = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1, "vpcdns-control:%s", text);
        if (n < 0 || (size_t)n >= sizeof(sun->sun_path) - 1)
                n = (int)sizeof(sun->sun_path) - 2;
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* The peer may talk to us: the same user, or root (either way round). */
static bool peer_trusted(int fd, pid_t *pid)
{
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
                return false;
        if (pid != NULL)
                *pid = cred.pid;
        uid_t me = geteuid();
        return cred.uid == me || cred.uid == 0 || me == 0;
}

static int send_text(int fd, const char *text, const int *fds, size_t n_fds)
{
        struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
        union {
                char buf[CMSG_SPACE(sizeof(int) * VD_TAKEOVER_CHUNK)];
                struct cmsghdr align;
        } control;
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        if (n_fds > 0) {
                memset(&control, 0, sizeof(control));
                msg.msg_control = control.buf;
                msg.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        ssize_t r;
        do
                r = sendmsg(fd, &msg, MSG_NOSIGNAL);
        while (r < 0 && errno == EINTR);
        return r < 0 ? -errno : 0;
}

/* One message into text (NUL-terminated); descriptors that came with it go to fds[*n..cap),
 * beyond cap they are closed. Returns its length, 0 at end of stream, or -errno. */
static ssize_t recv_text(int fd, char *text, size_t cap, int *fds, size_t *n, size_t fds_cap)
{
        struct iovec iov = {.iov_base = text, .iov_len = cap - 1};
        union {
                char buf[CMSG_SPACE(sizeof(int) * VD_TAKEOVER_CHUNK)];
                struct cmsghdr align;
        } control;
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf)};
        ssize_t r;
        do
                r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int got[VD_TAKEOVER_CHUNK];
                if (k > VD_TAKEOVER_CHUNK)
                        k = VD_TAKEOVER_CHUNK;
                memcpy(got, CMSG_DATA(c), k * sizeof(int));
                for (size_t i = 0; i < k; i++) {
                        if (fds != NULL && *n < fds_cap)
                                fds[(*n)++] = got[i];
                        else
                                close(got[i]);
                }
        }
        if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
                return -EMSGSIZE;
        text[r] = '\0';
        return r;
}

/* ---- the new instance --------------------------------------------------------------------------
 */

/* A connection to addr's control socket with a receive timeout, or -errno (-ENOENT: nobody). */
static int control_connect(const vd_addr *addr, unsigned timeout_ms, pid_t *pid)
{
        struct sockaddr_un sun;
        socklen_t len = control_name(addr, &sun);
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&sun, len) != 0) {
                int e = errno;
                close(fd);
                return e == ECONNREFUSED || e == ENOENT ? -ENOENT : -e;
        }
        if (!peer_trusted(fd, pid)) {
                close(fd);
                return -EPERM;
        }
        return fd;
}

pid_t vd_takeover_peer(const vd_addr *addr)
{
        pid_t pid = 0;
        int fd = control_connect(addr, 500, &pid);
        if (fd < 0)
                return fd == -EPERM ? -1 : 0;
        close(fd);
        return pid;
}

int vd_takeover_request(const vd_addr *addr, int *fds, size_t cap, int *conn, vd_error *err)
{
        char where[80], text[MSG_MAX];
        size_t n = 0;
        pid_t pid = 0;
        int r;

        *conn = -1;
        vd_addr_format(addr, where, sizeof(where));
        int fd = control_connect(addr, VD_TAKEOVER_TIMEOUT_MS, &pid);
        if (fd == -ENOENT)
                return 0;
        if (fd < 0)
                return vd_error_set(err, "takeover %s: control socket: %s", where,
                                    fd == -EPERM ? "held by another user" : strerror(-fd));
        r = send_text(fd, "TAKEOVER", NULL, 0);
        for (unsigned i = 0; r == 0 && i < VD_TAKEOVER_MAX_FDS / VD_TAKEOVER_CHUNK + 2; i++) {
                ssize_t got = recv_text(fd, text, sizeof(text), fds, &n, cap);
                if (got < 0) {
                        r = (int)got;
                } else if (got == 0) {
                        r = -ECONNRESET;
                } else if (strcmp(text, "FDS") == 0) {
                        continue;
                } else if (strncmp(text, "END ", 4) == 0) {
                        unsigned want = 0;
                        if (!vd_parse_uint(text + 4, 0, VD_TAKEOVER_MAX_FDS, &want) || want != n)
                                r = -EPROTO;
                        else
                                break;
                } else {
                        r = -EPROTO;
                }
        }
        if (r == 0 && n == 0)
                r = -EPROTO; /* an instance that serves nothing cannot be taken over */
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        close(fds[i]);
                close(fd);
                return vd_error_set(err, "takeover %s: vpcdns pid %d: %s", where, (int)pid,
                                    r == -EAGAIN ? "no answer in time" : strerror(-r));
        }
        vd_log(VD_LOG_INFO, "takeover_received", "listen=%s from_pid=%d sockets=%zu", where,
               (int)pid, n);
        *conn = fd;
        return (int)n;
}

void vd_takeover_serving(int conn)
{
        if (conn < 0)
                return;
        if (send_text(conn, "SERVING", NULL, 0) != 0)
                vd_log(VD_LOG_WARN, "takeover_notify_failed",
                       "detail=\"the old instance may "
                       "keep serving beside this one\"");
        close(conn);
}

int vd_takeover_reload(const vd_addr *addr, unsigned timeout_ms, char *msg, size_t cap)
{
        char text[MSG_MAX];
        int fd = control_connect(addr, timeout_ms, NULL);
        int r;

        snprintf(msg, cap, "no vpcdns answers on its control socket");
        if (fd < 0) {
                if (fd != -ENOENT)
                        snprintf(msg, cap, "control socket: %s", strerror(-fd));
                return fd;
        }
        r = send_text(fd, "RELOAD", NULL, 0);
        if (r == 0) {
                ssize_t got = recv_text(fd, text, sizeof(text), NULL, NULL, 0);
                r = got < 0 ? (int)got : got == 0 ? -ECONNRESET : 0;
        }
        close(fd);
        if (r < 0) {
                snprintf(msg, cap, "%s", r == -EAGAIN ? "no answer in time" : strerror(-r));
                return r;
        }
        if (strncmp(text, "OK", 2) == 0) {
                snprintf(msg, cap, "%s", text[2] == ' ' ? text + 3 : "");
                return 0;
        }
        snprintf(msg, cap, "%s", strncmp(text, "ERROR ", 6) == 0 ? text + 6 : text);
        return -EIO;
}

/* ---- the running instance ----------------------------------------------------------------------
 */

#define CONTROL_RETRY_MS 500 /* a control name in use is tried again this often */
#define CONTROL_RETRIES 20   /* and given up after this many tries */
#define CONTROL_CONNS 4      /* clients served at once (a pid probe beside a hand-over) */

typedef struct control_listener {
        uv_poll_t poll;
        int fd;
        bool open;
        bool tried; /* bound, or given up: never bound again (its poll may be closing) */
        struct vd_control *owner;
} control_listener;

/* One client of the control socket. The slot is free again once its handle closed. */
typedef struct control_conn {
        uv_poll_t poll;
        int fd;
        bool open;    /* polling: must be closed */
        bool busy;    /* open or closing: the slot is taken */
        bool handed;  /* this one got the descriptors: its SERVING or close decides */
        bool waiting; /* asked RELOAD: answered when reload number ticket is over */
        uint64_t ticket;
        pid_t peer;
        struct vd_control *owner;
} control_conn;

struct vd_control {
        uv_loop_t *loop;
        vd_addr addrs[VD_MAX_LISTEN];
        control_listener listen[VD_MAX_LISTEN]; /* listen[i] answers for addrs[i] */
        size_t n_listen;
        uv_timer_t retry;
        bool retry_on; /* initialised: must be closed */
        unsigned retries;
        bool given_up; /* handed over: the names belong to the successor now */
        control_conn conns[CONTROL_CONNS];
        bool handed; /* descriptors sent (to one connection): waiting for its SERVING */
        unsigned open_handles;
        bool closing;
        const vd_control_ops *ops;
        void *arg;
};

static void maybe_free(vd_control *c)
{
        if (c->closing && c->open_handles == 0)
                free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
        vd_control *c = h->data;
        c->open_handles--;
        maybe_free(c);
}

static void on_listener_closed(uv_handle_t *h)
{
        control_listener *l = h->data;
        vd_control *c = l->owner;
        c->open_handles--;
        maybe_free(c);
}

static void listener_close(control_listener *l)
{
        if (!l->open)
                return;
        l->open = false;
        uv_close((uv_handle_t *)&l->poll, on_listener_closed);
        close(l->fd);
        l->fd = -1;
}

static void on_conn_closed(uv_handle_t *h)
{
        control_conn *k = h->data;
        vd_control *c = k->owner;
        k->busy = false;
        c->open_handles--;
        maybe_free(c);
}

static void conn_close(control_conn *k)
{
        if (!k->open)
                return;
        k->open = false;
        if (k->handed)
                k->owner->handed = false;
        k->handed = false;
        k->waiting = false;
        uv_close((uv_handle_t *)&k->poll, on_conn_closed);
        close(k->fd);
        k->fd = -1;
}

static void hand_over(control_conn *k)
{
        vd_control *c = k->owner;
        int *fds = calloc(VD_TAKEOVER_MAX_FDS, sizeof(*fds));
        char text[64];
        size_t n;
        int r = 0;

        if (fds == NULL) {
                vd_log(VD_LOG_ERROR, "takeover_failed", "reason=\"out of memory\"");
                conn_close(k);
                return;
        }
        n = c->ops->sockets(c->arg, fds, VD_TAKEOVER_MAX_FDS);
        for (size_t i = 0; r == 0 && i < n; i += VD_TAKEOVER_CHUNK) {
                size_t m = n - i < VD_TAKEOVER_CHUNK ? n - i : VD_TAKEOVER_CHUNK;
                r = send_text(k->fd, "FDS", fds + i, m);
        }
        free(fds);
        if (r == 0) {
                /* committed: the successor binds these names once it has END */
                c->given_up = true;
                for (size_t i = 0; i < c->n_listen; i++)
                        listener_close(&c->listen[i]);
                snprintf(text, sizeof(text), "END %zu", n);
                r = send_text(k->fd, text, NULL, 0);
        }
        if (r < 0) {
                char why[128];
                vd_log(VD_LOG_ERROR, "takeover_failed", "to_pid=%d error=%s", (int)k->peer,
                       vd_log_value(strerror(-r), why, sizeof(why)));
                conn_close(k);
                return;
        }
        k->handed = true;
        c->handed = true;
        vd_log(VD_LOG_INFO, "takeover_sent", "to_pid=%d sockets=%zu", (int)k->peer, n);
}

static void on_conn_readable(uv_poll_t *p, int status, int events)
{
        control_conn *k = p->data;
        vd_control *c = k->owner;
        char text[MSG_MAX], reply[MSG_MAX];
        (void)events;

        ssize_t got = status < 0 ? status : recv_text(k->fd, text, sizeof(text), NULL, NULL, 0);
        if (got == -EAGAIN)
                return;
        if (got <= 0) {
                if (k->handed)
                        vd_log(VD_LOG_WARN, "takeover_aborted",
                               "to_pid=%d detail=\"the new instance went away before serving: "
                               "serving on; its control socket stays closed until a restart\"",
                               (int)k->peer);
                conn_close(k);
                return;
        }
        if (strcmp(text, "TAKEOVER") == 0 && !c->handed && !c->given_up) {
                hand_over(k);
        } else if (strcmp(text, "SERVING") == 0 && k->handed) {
                pid_t pid = k->peer;
                conn_close(k);
                c->ops->serving(c->arg, pid);
        } else if (strcmp(text, "RELOAD") == 0 && !c->given_up && !k->waiting) {
                /* The reload runs on a thread of its own: the answer comes from
                 * vd_control_reload_done, when the reload this request started (or the one
                 * queued behind a running reload) is over. */
                char detail[MSG_MAX - 16] = "";
                int r = c->ops->reload(c->arg, &k->ticket, detail, sizeof(detail));
                if (r < 0) {
                        snprintf(reply, sizeof(reply), "ERROR %s", detail);
                        (void)send_text(k->fd, reply, NULL, 0);
                        conn_close(k);
                        return;
                }
                k->waiting = true;
        } else {
                conn_close(k); /* a second TAKEOVER, or nonsense: nothing for it */
        }
}

static void on_listener_readable(uv_poll_t *p, int status, int events)
{
        control_listener *l = p->data;
        vd_control *c = l->owner;
        control_conn *k = NULL;
        (void)events;
        if (status < 0)
                return;
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
                return;
        for (size_t i = 0; i < CONTROL_CONNS && k == NULL; i++)
                if (!c->conns[i].busy)
                        k = &c->conns[i];
        pid_t pid = 0;
        if (k == NULL || c->closing || !peer_trusted(fd, &pid) ||
            uv_poll_init_socket(p->loop, &k->poll, fd) != 0) {
                close(fd); /* busy, stopping, or a stranger: nothing */
                return;
        }
        k->fd = fd;
        k->open = true;
        k->busy = true;
        k->handed = false;
        k->peer = pid;
        k->owner = c;
        k->poll.data = k;
        c->open_handles++;
        uv_poll_start(&k->poll, UV_READABLE, on_conn_readable);
}

/* Binds the control socket of every address that has none yet. Another instance may still
 * hold a name for a moment (it is stopping, or it is the old one of an overlap): a name in use
 * is tried again from the retry timer, and only the last try logs. */
static void bind_missing(vd_control *c, bool last_try)
{
        bool missing = false;
        for (size_t i = 0; i < c->n_listen; i++) {
                control_listener *l = &c->listen[i];
                if (l->tried || c->closing || c->given_up)
                        continue;
                struct sockaddr_un sun;
                socklen_t len = control_name(&c->addrs[i], &sun);
                char where[80], why[128];
                int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                int e = 0;
                if (fd < 0 || bind(fd, (struct sockaddr *)&sun, len) != 0 || listen(fd, 4) != 0)
                        e = errno;
                if (e == 0 && uv_poll_init_socket(c->loop, &l->poll, fd) != 0)
                        e = EIO;
                if (e != 0) {
                        if (fd >= 0)
                                close(fd);
                        if (e == EADDRINUSE && !last_try) {
                                missing = true;
                                continue;
                        }
                        l->tried = true;
                        vd_addr_format(&c->addrs[i], where, sizeof(where));
                        vd_log(VD_LOG_WARN, "control_unavailable",
                               "listen=%s error=%s detail=\"no --takeover or --reload for this "
                               "address\"",
                               where, vd_log_value(strerror(e), why, sizeof(why)));
                        continue;
                }
                l->tried = true;
                l->fd = fd;
                l->open = true;
                l->owner = c;
                l->poll.data = l;
                c->open_handles++;
                uv_poll_start(&l->poll, UV_READABLE, on_listener_readable);
        }
        if (!missing && c->retry_on)
                uv_timer_stop(&c->retry);
}

static void on_retry(uv_timer_t *t)
{
        vd_control *c = t->data;
        c->retries++;
        bind_missing(c, c->retries >= CONTROL_RETRIES);
}

int vd_control_start(uv_loop_t *loop, const vd_addr *addrs, size_t n, const vd_control_ops *ops,
                     void *arg, vd_control **out)
{
        vd_control *c = calloc(1, sizeof(*c));
        *out = NULL;
        if (c == NULL)
                return -ENOMEM;
        c->ops = ops;
        c->arg = arg;
        c->loop = loop;
        c->n_listen = n < VD_MAX_LISTEN ? n : VD_MAX_LISTEN;
        memcpy(c->addrs, addrs, c->n_listen * sizeof(addrs[0]));
        if (uv_timer_init(loop, &c->retry) == 0) {
                c->retry.data = c;
                c->retry_on = true;
                c->open_handles++;
                uv_timer_start(&c->retry, on_retry, CONTROL_RETRY_MS, CONTROL_RETRY_MS);
        }
        bind_missing(c, !c->retry_on);
        *out = c;
        return 0;
}

void vd_control_reload_done(vd_control *c, uint64_t number, bool ok, const char *detail)
{
        if (c == NULL)
                return;
        char reply[MSG_MAX];
        snprintf(reply, sizeof(reply), "%s %s", ok ? "OK" : "ERROR", detail);
        for (size_t i = 0; i < CONTROL_CONNS; i++) {
                control_conn *k = &c->conns[i];
                if (!k->open || !k->waiting || k->ticket > number)
                        continue;
                (void)send_text(k->fd, reply, NULL, 0);
                conn_close(k);
        }
}

void vd_control_close(vd_control *c)
{
        if (c == NULL || c->closing)
                return;
        c->closing = true;
        if (c->retry_on) {
                c->retry_on = false;
                uv_close((uv_handle_t *)&c->retry, on_handle_closed);
        }
        for (size_t i = 0; i < c->n_listen; i++)
                listener_close(&c->listen[i]);
        for (size_t i = 0; i < CONTROL_CONNS; i++)
                conn_close(&c->conns[i]);
        maybe_free(c);
}
