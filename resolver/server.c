/* server.c — the running daemon: creates the workers (one libuv loop per thread, each with
 * its own SO_REUSEPORT UDP socket and TCP listener per listen address, its own forwarder and
 * query env), runs them, reloads local data on SIGHUP, and stops them gracefully on
 * SIGINT/SIGTERM.
 *
 * The calling thread of vd_server_run runs a small control loop that only waits for the
 * signals, the file watch (watch.c) and the reload thread; every worker has its own thread, so
 * the worker count is only a number. Reloading (SIGHUP or the watch, one path:
 * vd_server_request_reload): a thread of its own at SCHED_IDLE builds the new snapshot (workers
 * keep answering, and come first on a busy core), then the control loop puts it in the shared
 * slot and wakes every worker, which swaps its own reference between two queries; a failed
 * build logs the error and changes nothing, an unchanged one publishes nothing. One reload
 * runs at a time; requests meanwhile make one more. vd_server_publish may also be called
 * from any other thread. Stopping: the control loop closes the slot to further wake-ups and
 * wakes every worker with uv_async_send; a worker stops its listeners, closes its
 * connections and its forwarder (pending queries are cancelled), closes every remaining
 * handle and lets its loop end; the control thread joins them all. This file
 * never touches a query; udp.c and tcp.c do. Each worker gets its own copy of the access list;
 * the per-client tables (rate limiting, pending forwarded queries, TCP connections) are not
 * per worker: they are allocated here once per server (so once per process) and shared by
 * every worker (lock-striped, ratelimit.c), so a client's limit holds whichever worker its
 * packets reach. At the stop, the workers' counters (counters.h) are summed into one line.
 *
 * Forwarding: each worker owns a forwarder (default upstreams and forwarding rules) and a
 * resolver over it. Shared by every worker, created here before the workers and freed after
 * them: the answer cache, the registry through which the resolvers merge identical questions
 * into one upstream query, and the upstream_max_qps budget of each upstream server. A
 * worker's resolver is closed before its forwarder. Loop protection: once running, worker 0
 * sends a probe for a unique name to the upstreams (serving does not wait for it); when that
 * name comes back to one of our listeners (query.c marks the server's probe, which every
 * worker's env points at), the server logs the loop and stops with -ELOOP.
 *
 * Observability: with metrics_listen, the HTTP endpoint (metrics.c) runs from vd_server_new
 * until the stop begins, and its handlers (server_observe.c) read only published values
 * (counters.h, each worker's heartbeat, the cache under its locks). /health fails when a worker's
 * heartbeat timer is over 2 s late; /ready fails until every loop turned and from the stop signal
 * on. The first SIGTERM or SIGINT then starts lameduck_ms of answering before the stop; it is
 * stopped before any worker, so everything its handlers read outlives it.
 *
 * Restarts: an address this process binds itself must be free of other sockets (probed
 * without SO_REUSEPORT), or the start fails; sockets from systemd (sd.c) or from the vpcdns we
 * take over (takeover.c) are shared among the workers instead of bound. The control thread
 * serves the control sockets: it lends the listening sockets to a successor and, once that one
 * serves, stops reading (stage 1) and closes after the in-flight answers (stage 2). Every stop
 * drains the UDP sockets before closing them. systemd hears READY, RELOADING and STOPPING.
 *
 * ENI health: with eni_health, the prober (health.c, a thread and loop of its own) runs from
 * vd_server_new until the stop begins; every publish first retargets it, under the slot's lock,
 * so a new snapshot carries the health of the addresses that remain before a worker takes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vpcdns/sd.h"
#include "server_int.h"
#include "vpcdns/takeover.h"
#include "transport.h"
#include "vpcdns/cache.h"
#include "vpcdns/log.h"
#include "vpcdns/metrics.h"
#include "vpcdns/server.h"
#include "vpcdns/stats.h"

/* Sockets */

/* A burst of queries must not overflow the kernel's default receive buffer (~208 KiB)
 * while the worker is busy: ask for 4 MiB. SO_RCVBUFFORCE passes net.core.rmem_max when we
 * are privileged; otherwise the kernel caps SO_RCVBUF. Best effort: failure only logs. */
static void grow_receive_buffer(int fd)
{
        int want = 4 * 1024 * 1024;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) == 0)
                return;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want)) != 0) {
                char why[128];
                vd_log(VD_LOG_DEBUG, "udp_rcvbuf", "error=%s",
                       vd_log_value(strerror(errno), why, sizeof(why)));
        }
}

static int open_socket(const vd_addr *a, int type, int *out, vd_error *err)
{
        char text[80];
        const char *proto = type == SOCK_DGRAM ? "udp" : "tcp";
        const char *step;
        int one = 1;
        int fd;

        vd_addr_format(a, text, sizeof(text));
        fd = socket(a->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                step = "socket";
                goto fail;
        }
        step = "setsockopt";
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                goto fail;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
                goto fail;
        if (a->ss.ss_family == AF_INET6 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
                goto fail;
        if (type == SOCK_DGRAM)
                grow_receive_buffer(fd);
        step = "bind";
        if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
                goto fail;
        *out = fd;
        return 0;
fail:;
        int e = errno;
        if (fd >= 0)
                close(fd);
        vd_error_set(err, "listen %s (%s): %s: %s", text, proto, step, strerror(e));
        return -e;
}

/* ---- one server per address, and sockets handed over (restarts) ------------------------------ */

/* Fails with a clear message when something already serves address a (this protocol):
 * SO_REUSEPORT would otherwise let this process silently take half of its queries. The probe
 * binds without SO_REUSEPORT, which fails against any bound socket; for TCP with SO_REUSEADDR,
 * which lets it pass connections in TIME_WAIT but not a listener. Any other failure is left to
 * the real bind to report. */
static int refuse_if_served(const vd_addr *a, int type, vd_error *err)
{
        const char *proto = type == SOCK_DGRAM ? "udp" : "tcp";
        char text[80];
        int one = 1;
        int fd = socket(a->ss.ss_family, type | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return 0;
        if (type == SOCK_STREAM)
                (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (a->ss.ss_family == AF_INET6)
                (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        int r = bind(fd, (const struct sockaddr *)&a->ss, a->len);
        int e = errno;
        close(fd);
        if (r == 0 || e != EADDRINUSE)
                return 0;
        vd_addr_format(a, text, sizeof(text));
        pid_t pid = vd_takeover_peer(a);
        if (pid > 0)
                vd_error_set(err,
                             "listen %s (%s): %s: served by vpcdns pid %d; refusing to share "
                             "it (each would get part of the queries). To replace it without "
                             "losing a query, start this one with --takeover; to run both, "
                             "give them different listen addresses",
                             text, proto, strerror(EADDRINUSE), (int)pid);
        else
                vd_error_set(err,
                             "listen %s (%s): %s by another program (no vpcdns answers on its "
                             "control socket); stop it, or choose another listen address",
                             text, proto, strerror(EADDRINUSE));
        return -EADDRINUSE;
}

/* Sockets handed to this process (by systemd or by the vpcdns it took over from), matched to
 * the configured listen addresses: fds[first[i][k] .. + count[i][k]) hold those of address i,
 * kind k (0 UDP, 1 TCP). The plan owns them until the workers hold their own duplicates. */
typedef struct listen_plan {
        int fds[VD_TAKEOVER_MAX_FDS];
        size_t n_fds;
        size_t first[VD_MAX_LISTEN][2];
        size_t count[VD_MAX_LISTEN][2];
        const char *source; /* "systemd" or "takeover" */
} listen_plan;

/* The listen address and kind of a handed-over socket, or -1 when it matches none. */
static int match_socket(const vd_server *srv, int fd, int *kind)
{
        vd_addr a;
        int type = 0;
        socklen_t len = sizeof(type);
        memset(&a, 0, sizeof(a));
        a.len = sizeof(a.ss);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
            (type != SOCK_DGRAM && type != SOCK_STREAM) ||
            getsockname(fd, (struct sockaddr *)&a.ss, &a.len) != 0)
                return -1;
        *kind = type == SOCK_DGRAM ? 0 : 1;
        for (size_t i = 0; i < srv->n_listen; i++)
                if (vd_addr_equal(&srv->listen[i], &a))
                        return (int)i;
        return -1;
}

/* Sorts the n descriptors of got into plan by address and kind; closes, with a warning, those
 * no listen address asks for (their address goes dark once the sender closes its copy). */
static void plan_sockets(listen_plan *plan, const vd_server *srv, const int *got, size_t n,
                         const char *source)
{
        int index[VD_TAKEOVER_MAX_FDS], kinds[VD_TAKEOVER_MAX_FDS];
        size_t at = 0;

        memset(plan->count, 0, sizeof(plan->count));
        plan->source = source;
        for (size_t j = 0; j < n; j++) {
                index[j] = match_socket(srv, got[j], &kinds[j]);
                if (index[j] >= 0) {
                        plan->count[index[j]][kinds[j]]++;
                        continue;
                }
                vd_addr a;
                char where[80] = "?";
                memset(&a, 0, sizeof(a));
                a.len = sizeof(a.ss);
                if (getsockname(got[j], (struct sockaddr *)&a.ss, &a.len) == 0)
                        vd_addr_format(&a, where, sizeof(where));
                vd_log(VD_LOG_WARN, "inherited_socket_unused",
                       "source=%s address=%s detail=\"not a listen address of this config: "
                       "closed\"",
                       source, where);
                close(got[j]);
        }
        for (size_t i = 0; i < srv->n_listen; i++)
                for (int k = 0; k < 2; k++) {
                        plan->first[i][k] = at;
                        at += plan->count[i][k];
                        plan->count[i][k] = 0;
                }
        for (size_t j = 0; j < n; j++) {
                if (index[j] < 0)
                        continue;
                size_t *c = &plan->count[index[j]][kinds[j]];
                plan->fds[plan->first[index[j]][kinds[j]] + (*c)++] = got[j];
                /* the workers poll it without blocking, as their own sockets */
                int flags = fcntl(got[j], F_GETFL);
                if (flags >= 0)
                        (void)fcntl(got[j], F_SETFL, flags | O_NONBLOCK);
                if (kinds[j] == 0)
                        grow_receive_buffer(got[j]);
        }
        plan->n_fds = at;
}

static void plan_close(listen_plan *plan)
{
        for (size_t j = 0; j < plan->n_fds; j++)
                close(plan->fds[j]);
        plan->n_fds = 0;
        memset(plan->count, 0, sizeof(plan->count));
}

/* The sockets systemd passed (LISTEN_FDS), or those of the vpcdns we take over: into plan.
 * Returns 0 or -errno with err set (a hand-over that was answered but failed). */
static int inherit_sockets(vd_server *srv, const vd_config *cfg, listen_plan *plan, vd_error *err)
{
        int got[VD_TAKEOVER_MAX_FDS];
        int n = vd_sd_listen_fds(got, VD_SD_MAX_FDS);

        memset(plan->count, 0, sizeof(plan->count));
        plan->n_fds = 0;
        if (n == -EBADF)
                return vd_error_set(err, "LISTEN_FDS: a descriptor from fd %d on is not open",
                                    VD_SD_LISTEN_FDS_START);
        if (n < 0)
                return vd_error_set(err,
                                    "LISTEN_PID and LISTEN_FDS: expected numbers, at most %d "
                                    "sockets from fd %d on",
                                    VD_SD_MAX_FDS, VD_SD_LISTEN_FDS_START);
        if (n > 0) {
                plan_sockets(plan, srv, got, (size_t)n, "systemd");
                vd_log(VD_LOG_INFO, "sockets_inherited", "source=systemd sockets=%d used=%zu", n,
                       plan->n_fds);
                return 0;
        }
        if (!cfg->takeover)
                return 0;
        n = vd_takeover_request(&srv->listen[0], got, VD_TAKEOVER_MAX_FDS, &srv->takeover_conn,
                                err);
        if (n < 0)
                return n;
        if (n == 0) {
                vd_log(VD_LOG_INFO, "takeover_none",
                       "detail=\"no vpcdns answers on the first listen address: binding as "
                       "usual\"");
                return 0;
        }
        plan_sockets(plan, srv, got, (size_t)n, "takeover");
        return 0;
}

/* Worker w's share of address i's handed-over sockets of one kind: socket j goes to worker
 * j mod n_workers, so every one of them is read (a socket of a SO_REUSEPORT group that nobody
 * reads would lose its part of the queries); a worker left without one shares (a duplicate of)
 * socket w mod count. Each is a duplicate the worker owns; *distinct says whether it is the
 * one copy the server hands over again. Returns how many went to out. */
static size_t plan_share(const listen_plan *plan, size_t i, int k, const vd_worker *w,
                         unsigned n_workers, int *out, bool *distinct, size_t cap)
{
        size_t count = plan->count[i][k], n = 0;
        const int *fds = plan->fds + plan->first[i][k];
        for (size_t j = w->index; j < count && n < cap; j += n_workers) {
                distinct[n] = true;
                out[n++] = fds[j];
        }
        if (count > 0 && w->index >= count && n < cap) {
                distinct[n] = false;
                out[n++] = fds[w->index % count];
        }
        return n;
}

/* Opens worker w's listeners: for each address and kind, its share of the handed-over sockets,
 * or else its own SO_REUSEPORT socket. Records the distinct sockets in srv->socks. */
static int worker_listeners(vd_worker *w, const vd_config *cfg, const listen_plan *plan,
                            vd_error *err)
{
        vd_server *srv = w->server;
        size_t cap = 0;
        int r;

        for (size_t i = 0; i < srv->n_listen; i++) {
                size_t most =
                    plan->count[i][0] > plan->count[i][1] ? plan->count[i][0] : plan->count[i][1];
                cap += most / srv->n_workers + 1;
        }
        w->udp = calloc(cap, sizeof(*w->udp));
        w->tcp = calloc(cap, sizeof(*w->tcp));
        if (w->udp == NULL || w->tcp == NULL) {
                vd_error_set(err, "worker %u: out of memory", w->index);
                return -ENOMEM;
        }
        for (size_t i = 0; i < srv->n_listen; i++) {
                const vd_addr *a = &srv->listen[i];
                char text[80];
                vd_addr_format(a, text, sizeof(text));
                for (int k = 0; k < 2; k++) {
                        int type = k == 0 ? SOCK_DGRAM : SOCK_STREAM;
                        int fds[VD_TAKEOVER_MAX_FDS];
                        bool distinct[VD_TAKEOVER_MAX_FDS];
                        size_t room = cap - (k == 0 ? w->n_udp : w->n_tcp);
                        size_t n = plan_share(plan, i, k, w, srv->n_workers, fds, distinct, room);
                        for (size_t j = 0; j < n; j++) {
                                fds[j] = fcntl(fds[j], F_DUPFD_CLOEXEC, 0);
                                if (fds[j] < 0) {
                                        vd_error_set(err, "listen %s (%s): dup: %s", text,
                                                     k == 0 ? "udp" : "tcp", strerror(errno));
                                        return -errno;
                                }
                        }
                        if (n == 0) {
                                r = open_socket(a, type, &fds[0], err);
                                if (r < 0)
                                        return r;
                                distinct[0] = true;
                                n = 1;
                        }
                        for (size_t j = 0; j < n; j++) {
                                if (distinct[j] && srv->n_socks < VD_TAKEOVER_MAX_FDS)
                                        srv->socks[srv->n_socks++] = fds[j];
                                if (k == 0)
                                        r = vd_udp_listener_open(w, &w->udp[w->n_udp++], fds[j]);
                                else
                                        r = vd_tcp_listener_open(w, &w->tcp[w->n_tcp++], fds[j]);
                                if (r < 0) {
                                        for (size_t m = j + 1; m < n; m++)
                                                close(fds[m]);
                                        vd_error_set(err, "listen %s (%s): %s", text,
                                                     k == 0 ? "udp" : "tcp", uv_strerror(r));
                                        return r;
                                }
                        }
                }
        }
        return 0;
}

/* Workers */

static void retired_close_all(vd_worker *w); /* the live-settings block below */

static void close_leftover(uv_handle_t *h, void *arg)
{
        (void)arg;
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

/* Runs on the worker's loop (or on the caller's thread when the worker never ran). */
static void worker_stop(vd_worker *w)
{
        if (w->stopping)
                return;
        /* what is queued in the sockets is answered, not dropped with them (by a worker that
         * served: one that never ran may not even have its forwarder) */
        for (size_t i = 0; i < w->n_udp && w->ran; i++)
                vd_udp_listener_drain(&w->udp[i]);
        w->stopping = true;
        for (size_t i = 0; i < w->n_udp; i++)
                vd_udp_listener_close(&w->udp[i]);
        for (size_t i = 0; i < w->n_tcp; i++)
                vd_tcp_listener_close(&w->tcp[i]);
        vd_tcp_close_all(w);
        retired_close_all(w);
        if (w->probe_timer_ready && !uv_is_closing((uv_handle_t *)&w->probe_timer))
                uv_close((uv_handle_t *)&w->probe_timer, NULL);
        if (w->resolver != NULL) {
                vd_resolver *r = w->resolver;
                w->resolver = NULL;
                w->env.resolver = NULL;
                vd_srv_take_resolver_counters(&w->env.counters, r);
                vd_resolver_close(r); /* waiting clients' replies run with len 0 */
        }
        if (w->forwarder != NULL) {
                vd_forwarder *f = w->forwarder;
                w->forwarder = NULL;
                w->env.forwarder = NULL;
                vd_srv_take_forwarder_counters(&w->env.counters, f);
                vd_forwarder_close(f); /* pending replies run with len 0 */
        }
        if (w->async_ready)
                uv_close((uv_handle_t *)&w->stop_async, NULL);
        if (w->reload_ready)
                uv_close((uv_handle_t *)&w->reload_async, NULL);
        uv_walk(&w->loop, close_leftover, NULL);
}

/* Stage 1 of a stop with answers in flight: read and answer what is queued, stop reading
 * and accepting; the UDP sockets stay open for the forwarded answers still to come. */
static void worker_quiet(vd_worker *w)
{
        if (w->stopping || w->paused)
                return;
        for (size_t i = 0; i < w->n_udp; i++)
                vd_udp_listener_drain(&w->udp[i]);
        w->paused = true;
        for (size_t i = 0; i < w->n_udp; i++)
                vd_udp_listener_pause(&w->udp[i]);
        for (size_t i = 0; i < w->n_tcp; i++)
                vd_tcp_listener_close(&w->tcp[i]);
}

static void worker_stop_cb(uv_async_t *a)
{
        vd_worker *w = a->data;
        if (atomic_load(&w->server->stop_stage) == 1)
                worker_quiet(w);
        else
                worker_stop(w);
}

/* Takes the slot's snapshot; the old one goes when its last holder lets go. */
static void worker_take_snapshot(vd_worker *w)
{
        uv_mutex_lock(&w->slot->lock);
        vd_snapshot *s = w->slot->current;
        if (s != NULL)
                vd_snapshot_ref(s);
        uv_mutex_unlock(&w->slot->lock);
        vd_snapshot *old = w->snapshot;
        w->snapshot = s;
        w->env.snapshot = s;
        if (old != NULL)
                vd_snapshot_unref(old);
}

static void worker_take_live(vd_worker *w);

static void worker_reload_cb(uv_async_t *a)
{
        worker_take_snapshot(a->data);
        worker_take_live(a->data);
}

/* Lets every closing handle finish and closes the loop. */
static void worker_finish_loop(vd_worker *w)
{
        if (!w->loop_ready)
                return;
        uv_run(&w->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&w->loop) == UV_EBUSY) {
                /* inactive handles nobody closed (a bug elsewhere): close them now */
                uv_walk(&w->loop, close_leftover, NULL);
                uv_run(&w->loop, UV_RUN_DEFAULT);
                if (uv_loop_close(&w->loop) != 0) {
                        vd_log(VD_LOG_ERROR, "worker_leak", "worker=%u", w->index);
                        return; /* keep loop_ready: memory is leaked, never reused */
                }
        }
        w->loop_ready = false;
}

/* ---- the forwarding-loop check (worker 0) ---------------------------------------------------- */

#define PROBE_POLL_MS 50

static void probe_finish(vd_worker *w)
{
        vd_server *srv = w->server;
        if (w->probe_timer_ready && !uv_is_closing((uv_handle_t *)&w->probe_timer))
                uv_timer_stop(&w->probe_timer);
        vd_loop_probe_disarm(&srv->probe);
}

/* The probe came back to us: log it once and ask the control thread to stop everything. */
static void probe_loop_found(vd_worker *w)
{
        vd_server *srv = w->server;
        char name[VD_NAME_MAX * 4 + 2] = "?";
        char upstreams[VD_MAX_UPSTREAM * 64] = "";
        size_t used = 0;
        for (size_t i = 0; i < srv->n_upstream; i++) {
                char text[64];
                vd_addr_format(&srv->upstream[i], text, sizeof(text));
                int n = snprintf(upstreams + used, sizeof(upstreams) - used, "%s%s", i ? "," : "",
                                 text);
                if (n < 0 || (size_t)n >= sizeof(upstreams) - used)
                        break;
                used += (size_t)n;
        }
        vd_name_to_text(srv->probe.name, name, sizeof(name));
        probe_finish(w);
        vd_log(VD_LOG_ERROR, "forwarding_loop",
               "upstream=%s probe=%s detail=\"forwarding loop: upstream %s sent our probe back "
               "to us; refusing to run (do not list vpcdns itself, or a server that forwards to "
               "it, as an upstream)\"",
               upstreams, name, upstreams);
        int expected = 0;
        if (atomic_compare_exchange_strong(&srv->failure, &expected, -ELOOP) && srv->fail_ready)
                uv_async_send(&srv->fail_async);
}

static void probe_poll(uv_timer_t *t)
{
        vd_worker *w = t->data;
        if (atomic_load(&w->server->probe.seen))
                probe_loop_found(w);
}

static void probe_done(void *arg, int status, const uint8_t *answer, size_t len)
{
        vd_worker *w = arg;
        (void)answer;
        (void)len;
        w->probe_pending = false;
        if (status == -ECANCELED || w->stopping) {
                probe_finish(w);
                return;
        }
        if (atomic_load(&w->server->probe.seen)) {
                probe_loop_found(w);
                return;
        }
        probe_finish(w);
        vd_log(VD_LOG_DEBUG, "loop_check", "result=no_loop upstream_status=%d", status);
}

/* A query for the probe name as a client would send it, parsed into qi (which borrows pkt). */
static int probe_query(const vd_loop_probe *p, uint8_t *pkt, size_t cap, vd_query_info *qi)
{
        uint16_t id;
        if (cap < VD_HEADER_LEN + p->len + 4 || getrandom(&id, sizeof(id), 0) != sizeof(id))
                return -EIO;
        memset(pkt, 0, VD_HEADER_LEN);
        vd_wire_put16(pkt, id);
        vd_wire_put16(pkt + 2, VD_FLAG_RD);
        vd_wire_put16(pkt + 4, 1);
        memcpy(pkt + VD_HEADER_LEN, p->name, p->len);
        vd_wire_put16(pkt + VD_HEADER_LEN + p->len, VD_TYPE_A);
        vd_wire_put16(pkt + VD_HEADER_LEN + p->len + 2, VD_CLASS_IN);
        return vd_wire_parse_query(pkt, VD_HEADER_LEN + p->len + 4, qi) == VD_PARSE_OK ? 0 : -EIO;
}

/* Makes a fresh probe name, registers it, sends it upstream and polls for its return. Any
 * failure only skips the check (logged): it must never keep the server from serving. */
static void probe_start(vd_worker *w)
{
        vd_server *srv = w->server;
        uint8_t random[VD_LOOP_PROBE_HEX / 2];
        char text[VD_LOOP_PROBE_HEX + sizeof(VD_LOOP_PROBE_SUFFIX) + 2];
        uint8_t pkt[VD_HEADER_LEN + VD_NAME_MAX + 4];
        vd_query_info qi;
        const char *why;
        int r;

        if (w->forwarder == NULL || srv->n_upstream == 0)
                return;
        why = "random";
        if (getrandom(random, sizeof(random), 0) != (ssize_t)sizeof(random))
                goto skip;
        for (size_t i = 0; i < sizeof(random); i++)
                snprintf(text + 2 * i, 3, "%02x", random[i]);
        snprintf(text + VD_LOOP_PROBE_HEX, sizeof(text) - VD_LOOP_PROBE_HEX, ".%s",
                 VD_LOOP_PROBE_SUFFIX);
        why = "name";
        if (vd_name_from_text(text, srv->probe.name, &srv->probe.len) != 0 ||
            probe_query(&srv->probe, pkt, sizeof(pkt), &qi) != 0)
                goto skip;
        why = "name";
        if (vd_loop_probe_arm(&srv->probe) != 0)
                goto skip;
        why = "timer";
        if (uv_timer_init(&w->loop, &w->probe_timer) != 0)
                goto skip;
        w->probe_timer.data = w;
        w->probe_timer_ready = true;
        if (uv_timer_start(&w->probe_timer, probe_poll, PROBE_POLL_MS, PROBE_POLL_MS) != 0)
                goto skip;
        r = vd_forwarder_resolve(w->forwarder, &qi, probe_done, w);
        if (r != 0) {
                why = r == -EBUSY ? "budget" : r == -ENOENT ? "no_server" : "send";
                goto skip;
        }
        w->probe_pending = true;
        vd_log(VD_LOG_DEBUG, "loop_check", "probe=%s", text);
        return;
skip:
        probe_finish(w);
        vd_log(VD_LOG_WARN, "loop_check", "result=skipped reason=%s", why);
}

static void worker_main(void *arg)
{
        vd_worker *w = arg;
        w->ran = true;
        if (w->loop_ready && !w->stopping)
                vd_srv_worker_heartbeat_start(w);
        if (w->index == 0 && w->loop_ready && !w->stopping)
                probe_start(w);
        worker_finish_loop(w);
}

static void worker_free(vd_worker *w)
{
        if (w == NULL)
                return;
        if (w->loop_ready) {
                worker_stop(w);
                worker_finish_loop(w);
        }
        if (w->loop_ready)
                return; /* handles still referenced the memory: leak rather than crash */
        vd_udp_worker_release(w);
        free(w->udp);
        free(w->tcp);
        if (w->snapshot != NULL)
                vd_snapshot_unref(w->snapshot);
        free(w);
}

/* Copies the per-client limits of cfg into w and points it at the server's tables. */
static int worker_limits(vd_worker *w, const vd_config *cfg, vd_error *err)
{
        w->tcp_max_per_client = cfg->tcp_max_connections_per_client;
        w->tcp_max_queries = cfg->tcp_max_queries_per_connection;
        if (cfg->n_allow > 0) {
                w->n_allow = cfg->n_allow < VD_MAX_ACL ? cfg->n_allow : VD_MAX_ACL;
                memcpy(w->allow, cfg->allow, w->n_allow * sizeof(w->allow[0]));
        } else {
                w->n_allow = vd_acl_defaults(w->allow, VD_MAX_ACL); /* never an open resolver */
        }
        w->deny_action = cfg->deny_action;

        w->rrl = w->server->rrl;
        w->tcp_clients = w->server->tcp_clients;
        if (cfg->max_pending_per_client > 0) {
                w->env.pending = w->server->pending;
                w->env.max_pending = cfg->max_pending_per_client;
        }
        w->env.az = w->server->az;
        w->env.az_affinity = w->server->az_unknown ? VD_AZ_AFFINITY_OFF : cfg->az_affinity;
        return 0;
}

/* What a worker's forwarder and resolver are made from, taken from the config once (zeroed
 * first, so two can be compared with memcmp): a reload rebuilds them only when it differs. */
struct vd_fwd_settings {
        vd_addr servers[VD_MAX_UPSTREAM];
        size_t n_servers;
        vd_forward_rule rules[VD_MAX_RULES]; /* lower-cased wire names */
        size_t n_rules;
        bool any; /* an upstream, or a rule with servers of its own: make a forwarder */
        unsigned ports, timeout_ms;
        bool use_0x20;
        unsigned stale_max, stale_answer_ms;
        bool prefetch;
};

static int fwd_settings_from(const vd_config *cfg, struct vd_fwd_settings *s, vd_error *err)
{
        memset(s, 0, sizeof(*s));
        s->n_servers = cfg->n_upstream < VD_MAX_UPSTREAM ? cfg->n_upstream : VD_MAX_UPSTREAM;
        memcpy(s->servers, cfg->upstream, s->n_servers * sizeof(s->servers[0]));
        s->any = s->n_servers > 0;
        for (size_t i = 0; i < cfg->n_rules && i < VD_MAX_RULES; i++) {
                const vd_config_rule *c = &cfg->rules[i];
                vd_forward_rule *r = &s->rules[s->n_rules++];
                if (c->domain == NULL || vd_name_from_text(c->domain, r->domain, &r->domain_len))
                        return vd_error_set(err, "forward: rule %zu: bad domain", i + 1);
                r->use_default = c->use_default;
                r->n_servers = c->n_servers < VD_MAX_UPSTREAM ? c->n_servers : VD_MAX_UPSTREAM;
                memcpy(r->servers, c->servers, r->n_servers * sizeof(r->servers[0]));
                s->any = s->any || (!c->use_default && c->n_servers > 0);
        }
        s->ports = cfg->upstream_ports;
        s->timeout_ms = cfg->upstream_timeout_ms;
        s->use_0x20 = cfg->upstream_0x20;
        s->stale_max = cfg->stale_max;
        s->stale_answer_ms = cfg->stale_answer_ms;
        s->prefetch = cfg->prefetch;
        return 0;
}

/* The forwarder (when anything can be forwarded) and the resolver over it and the cache, on
 * w's loop: at the start for every worker, and on the worker's own thread when a reload
 * changed the settings. */
static int make_forwarding(vd_worker *w, const struct vd_fwd_settings *s, vd_forwarder **fwd,
                           vd_resolver **res, vd_error *err)
{
        vd_server *srv = w->server;
        int r = 0;

        *fwd = NULL;
        *res = NULL;
        if (s->any) {
                /* Made with the first forwarder (at the start, or by the reload on the control
                 * thread before any worker is woken), without upstream_max_qps too (0: no
                 * limit), for the health its slots share: a server going down is logged once,
                 * not once per worker. */
                if (srv->upstream_budget == NULL &&
                    vd_upstream_budget_new(srv->upstream_max_qps, &srv->upstream_budget) < 0) {
                        vd_error_set(err, "worker %u: out of memory", w->index);
                        return -ENOMEM;
                }
                vd_forward_options opt = {
                    .servers = s->servers,
                    .n_servers = s->n_servers,
                    .rules = s->n_rules > 0 ? s->rules : NULL,
                    .n_rules = s->n_rules,
                    .budget = srv->upstream_budget,
                    .ports_per_server = s->ports,
                    .use_0x20 = s->use_0x20,
                    .timeout_ms = s->timeout_ms,
                    /* upstream traffic goes in dnstap only */
                    .qlog = srv->qlog_dnstap ? w->qlog : NULL,
                    .qlog_dropped = &w->env.counters.query_log_dropped,
                };
                r = vd_forwarder_new(&w->loop, &opt, fwd, err);
                if (r < 0)
                        return r;
                vd_forwarder_set_stats(*fwd, &w->env.stats);
        }
        vd_resolver_options ro;
        vd_resolver_options_default(&ro);
        ro.stale_max_s = s->stale_max;
        ro.stale_answer_ms = s->stale_answer_ms;
        ro.prefetch = s->prefetch;
        ro.inflight = w->server->inflight;
        r = vd_resolver_new(&w->loop, *fwd, w->cache, &ro, res);
        if (r < 0) {
                if (*fwd != NULL)
                        vd_forwarder_close(*fwd);
                *fwd = NULL;
                vd_error_set(err, "worker %u: resolver: %s", w->index, strerror(-r));
                return r;
        }
        return 0;
}

static int worker_forwarding(vd_worker *w, vd_error *err)
{
        int r = make_forwarding(w, w->server->fwd_of[w->index], &w->forwarder, &w->resolver, err);
        w->env.forwarder = w->forwarder;
        w->env.resolver = w->resolver;
        return r;
}

static int worker_new(vd_server *srv, const vd_config *cfg, const listen_plan *plan, unsigned index,
                      vd_worker **out, vd_error *err)
{
        vd_worker *w = calloc(1, sizeof(*w));
        int r;

        if (w == NULL) {
                vd_error_set(err, "worker %u: out of memory", index);
                return -ENOMEM;
        }
        *out = w;
        w->index = index;
        w->server = srv;
        w->tcp_idle_timeout_ms = cfg->tcp_idle_timeout_ms;
        w->tcp_max_connections = cfg->tcp_max_connections;
        w->heartbeat_on = cfg->n_metrics_listen > 0;
        w->slot = &srv->slot;
        r = worker_limits(w, cfg, err);
        if (r < 0)
                return r;
        worker_take_snapshot(w);

        r = uv_loop_init(&w->loop);
        if (r < 0) {
                vd_error_set(err, "worker %u: event loop: %s", index, uv_strerror(r));
                return r;
        }
        w->loop_ready = true;
        r = uv_async_init(&w->loop, &w->stop_async, worker_stop_cb);
        if (r < 0) {
                vd_error_set(err, "worker %u: async: %s", index, uv_strerror(r));
                return r;
        }
        w->stop_async.data = w;
        w->async_ready = true;
        r = uv_async_init(&w->loop, &w->reload_async, worker_reload_cb);
        if (r < 0) {
                vd_error_set(err, "worker %u: async: %s", index, uv_strerror(r));
                return r;
        }
        w->reload_async.data = w;
        w->reload_ready = true;
        r = vd_srv_worker_heartbeat_init(w);
        if (r < 0) {
                vd_error_set(err, "worker %u: timer: %s", index, uv_strerror(r));
                return r;
        }
        r = vd_udp_worker_init(w);
        if (r < 0) {
                vd_error_set(err, "worker %u: out of memory", index);
                return r;
        }

        r = worker_listeners(w, cfg, plan, err);
        if (r < 0)
                return r;

        w->qlog = vd_qlog_ring_get(srv->qlog, index);
        w->env.loop = &w->loop;
        w->env.loop_probe = &srv->probe;
        w->cache = srv->cache;
        w->env.cache = w->cache;
        return worker_forwarding(w, err);
}

/* Listener errors (transport.h) */

void vd_transport_listener_error(const vd_worker *w, const char *proto, int fd, int err,
                                 int *last_error)
{
        if (err == *last_error)
                return;
        *last_error = err;
        vd_addr a;
        char where[64] = "-", why[128];
        socklen_t len = sizeof(a.ss);
        memset(&a, 0, sizeof(a));
        if (fd >= 0 && getsockname(fd, (struct sockaddr *)&a.ss, &len) == 0) {
                a.len = len;
                vd_addr_format(&a, where, sizeof(where));
        }
        vd_log(VD_LOG_ERROR, "listener_error", "listen=%s proto=%s worker=%u error=%s", where,
               proto, w->index, vd_log_value(uv_strerror(err), why, sizeof(why)));
}

/* ---- live settings: what a reload changes without a restart ------------------------------ */

/* One worker's share of a reload: the settings it copies, and the forwarding settings it
 * rebuilds its forwarder and resolver from when they differ from its own. */
struct vd_live {
        vd_cidr allow[VD_MAX_ACL];
        size_t n_allow;
        vd_deny_action deny_action;
        unsigned tcp_idle_timeout_ms, tcp_max_connections, tcp_max_per_client, tcp_max_queries;
        unsigned max_pending;
        bool rrl_on; /* take the server's rate-limit table (else none) */
        vd_az_affinity az_affinity;
        struct vd_fwd_settings fwd;
};

static void live_from_config(struct vd_live *l, const vd_config *cfg)
{
        if (cfg->n_allow > 0) {
                l->n_allow = cfg->n_allow < VD_MAX_ACL ? cfg->n_allow : VD_MAX_ACL;
                memcpy(l->allow, cfg->allow, l->n_allow * sizeof(l->allow[0]));
        } else {
                l->n_allow = vd_acl_defaults(l->allow, VD_MAX_ACL); /* never an open resolver */
        }
        l->deny_action = cfg->deny_action;
        l->tcp_idle_timeout_ms = cfg->tcp_idle_timeout_ms;
        l->tcp_max_connections = cfg->tcp_max_connections;
        l->tcp_max_per_client = cfg->tcp_max_connections_per_client;
        l->tcp_max_queries = cfg->tcp_max_queries_per_connection;
        l->max_pending = cfg->max_pending_per_client;
        l->rrl_on = cfg->rrl_responses_per_second > 0;
        l->az_affinity = cfg->az_affinity;
}

void vd_srv_swap_lock(vd_server *srv)
{
        uv_mutex_lock(&srv->swap_lock);
}

void vd_srv_swap_unlock(vd_server *srv)
{
        uv_mutex_unlock(&srv->swap_lock);
}

/* Before the workers are made: the forwarding settings every worker starts from. */
static int live_init(vd_server *srv, const vd_config *cfg, vd_error *err)
{
        int r = uv_mutex_init(&srv->swap_lock);
        if (r < 0)
                return vd_error_set(err, "mutex: %s", uv_strerror(r));
        srv->swap_lock_ready = true;
        srv->qlog_dnstap = cfg->query_log.format == VD_QLOG_DNSTAP;
        srv->upstream_max_qps = cfg->upstream_max_qps;
        srv->live_pending = calloc(srv->n_workers, sizeof(srv->live_pending[0]));
        srv->fwd_of = calloc(srv->n_workers, sizeof(srv->fwd_of[0]));
        srv->retired = calloc(srv->n_workers, sizeof(srv->retired[0]));
        if (srv->live_pending == NULL || srv->fwd_of == NULL || srv->retired == NULL)
                return vd_error_set(err, "out of memory");
        for (unsigned i = 0; i < srv->n_workers; i++) {
                srv->fwd_of[i] = malloc(sizeof(*srv->fwd_of[i]));
                if (srv->fwd_of[i] == NULL)
                        return vd_error_set(err, "out of memory");
                r = fwd_settings_from(cfg, srv->fwd_of[i], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void live_free(vd_server *srv)
{
        for (unsigned i = 0; srv->live_pending != NULL && i < srv->n_workers; i++)
                free(srv->live_pending[i]);
        for (unsigned i = 0; srv->fwd_of != NULL && i < srv->n_workers; i++)
                free(srv->fwd_of[i]);
        free(srv->live_pending);
        free(srv->fwd_of);
        free(srv->retired); /* empty: every worker closed its own at its stop */
        if (srv->swap_lock_ready)
                uv_mutex_destroy(&srv->swap_lock);
}

/* Adds what the counters of a forwarder and resolver about to close counted to the worker's
 * own, so the totals of /metrics and the stop line never go down. */
static void retire_counters(vd_worker *w, const vd_resolver *r, const vd_forwarder *f)
{
        vd_counters c = {0};
        if (r != NULL)
                vd_srv_take_resolver_counters(&c, r);
        if (f != NULL)
                vd_srv_take_forwarder_counters(&c, f);
#define RETIRE(name, kind, help)                                                                   \
        if (kind == VD_COUNTER_TOTAL && c.name != 0)                                               \
                vd_count_add(&w->env.counters.name, c.name);
        VD_COUNTERS(RETIRE)
#undef RETIRE
}

/* A forwarder and resolver a reload replaced: new queries go to the new ones, while these
 * finish the queries they already sent (each ends within its timeout budget); a timer closes
 * them after that, or the worker's stop does. Worker thread only. */
struct vd_retired {
        uv_timer_t timer;
        vd_worker *w;
        vd_resolver *r;
        vd_forwarder *f;
        struct vd_retired *next;
};

static void retired_free_cb(uv_handle_t *h)
{
        free(h->data);
}

static void retired_finish(struct vd_retired *x)
{
        struct vd_retired **p = &x->w->server->retired[x->w->index];
        while (*p != NULL && *p != x)
                p = &(*p)->next;
        if (*p == x)
                *p = x->next;
        if (x->r != NULL)
                vd_resolver_close(x->r); /* before its forwarder, as at the stop */
        if (x->f != NULL)
                vd_forwarder_close(x->f);
        uv_close((uv_handle_t *)&x->timer, retired_free_cb);
}

static void retired_timer_cb(uv_timer_t *t)
{
        retired_finish(t->data);
}

static void retired_close_all(vd_worker *w)
{
        if (w->server->retired == NULL)
                return;
        while (w->server->retired[w->index] != NULL)
                retired_finish(w->server->retired[w->index]);
}

/* Retires r and f for grace_ms; closes them at once when the timer cannot be made. */
static void retire_later(vd_worker *w, vd_resolver *r, vd_forwarder *f, uint64_t grace_ms)
{
        struct vd_retired *x = calloc(1, sizeof(*x));
        if (x == NULL || uv_timer_init(&w->loop, &x->timer) != 0) {
                free(x);
                if (r != NULL)
                        vd_resolver_close(r);
                if (f != NULL)
                        vd_forwarder_close(f);
                return;
        }
        x->timer.data = x;
        x->w = w;
        x->r = r;
        x->f = f;
        x->next = w->server->retired[w->index];
        w->server->retired[w->index] = x;
        uv_timer_start(&x->timer, retired_timer_cb, grace_ms, 0);
}

/* On the worker's loop, between two queries: the settings of the last reload, if any. */
static void worker_take_live(vd_worker *w)
{
        vd_server *srv = w->server;
        uv_mutex_lock(&w->slot->lock);
        struct vd_live *l = srv->live_pending[w->index];
        srv->live_pending[w->index] = NULL;
        uv_mutex_unlock(&w->slot->lock);
        if (l == NULL || w->stopping) {
                free(l);
                return;
        }
        memcpy(w->allow, l->allow, l->n_allow * sizeof(w->allow[0]));
        w->n_allow = l->n_allow;
        w->deny_action = l->deny_action;
        w->tcp_idle_timeout_ms = l->tcp_idle_timeout_ms;
        w->tcp_max_connections = l->tcp_max_connections;
        w->tcp_max_per_client = l->tcp_max_per_client;
        w->tcp_max_queries = l->tcp_max_queries;
        w->env.max_pending = l->max_pending;
        w->rrl = l->rrl_on ? srv->rrl : NULL;
        w->env.az_affinity = srv->az_unknown ? VD_AZ_AFFINITY_OFF : l->az_affinity;
        if (memcmp(&l->fwd, srv->fwd_of[w->index], sizeof(l->fwd)) != 0) {
                vd_forwarder *f = NULL;
                vd_resolver *r = NULL;
                vd_error err = {{0}};
                if (make_forwarding(w, &l->fwd, &f, &r, &err) < 0) {
                        char why[sizeof(err.msg) + 64];
                        vd_log(VD_LOG_ERROR, "reload_forwarding_failed",
                               "worker=%u kept=previous error=%s", w->index,
                               vd_log_value(err.msg, why, sizeof(why)));
                        free(l);
                        return;
                }
                vd_srv_swap_lock(srv);
                vd_resolver *old_r = w->resolver;
                vd_forwarder *old_f = w->forwarder;
                retire_counters(w, old_r, old_f);
                w->resolver = r;
                w->env.resolver = r;
                w->forwarder = f;
                w->env.forwarder = f;
                vd_srv_swap_unlock(srv);
                const struct vd_fwd_settings *was = srv->fwd_of[w->index];
                unsigned grace =
                    was->timeout_ms > was->stale_answer_ms ? was->timeout_ms : was->stale_answer_ms;
                retire_later(w, old_r, old_f, (uint64_t)grace + 1000);
                *srv->fwd_of[w->index] = l->fwd;
        }
        free(l);
}

/* ---- ENI health (health.h) ---------------------------------------------------------------- */

static void health_options(const vd_config_eni_health *c, vd_health_options *o)
{
        o->port = c->port;
        o->interval_ms = c->interval_ms;
        o->timeout_ms = c->timeout_ms;
        o->fall = c->fall;
        o->rise = c->rise;
}

/* The ENI prober stops as the server's stop begins: no publish retargets it after this. */
static void health_stop(vd_server *srv)
{
        uv_mutex_lock(&srv->slot.lock);
        vd_health *h = srv->health;
        srv->health = NULL;
        uv_mutex_unlock(&srv->slot.lock);
        vd_health_stop(h);
}

int vd_server_apply_config(vd_server *srv, const vd_config *cfg, vd_error *err)
{
        struct vd_live **pkg = calloc(srv->n_workers, sizeof(*pkg));
        int r = 0;
        if (pkg == NULL)
                return vd_error_set(err, "out of memory");
        for (unsigned i = 0; i < srv->n_workers && r == 0; i++) {
                pkg[i] = calloc(1, sizeof(*pkg[i]));
                if (pkg[i] == NULL)
                        r = vd_error_set(err, "out of memory");
                else
                        r = fwd_settings_from(cfg, &pkg[i]->fwd, err);
                if (r == 0)
                        live_from_config(pkg[i], cfg);
        }
        /* Made here, before any worker is woken, when the start had nothing to forward. */
        if (r == 0 && pkg[0]->fwd.any && srv->upstream_budget == NULL &&
            vd_upstream_budget_new(srv->upstream_max_qps, &srv->upstream_budget) < 0)
                r = vd_error_set(err, "out of memory");
        /* Rate limiting: the one table is made when first turned on and kept until the server
         * is freed (a worker may still read it); its rate, slip and prefixes change in place. */
        vd_ratelimit_options rrl = {
            .responses_per_second = cfg->rrl_responses_per_second,
            .slip = cfg->rrl_slip,
            .ipv4_prefix = cfg->rrl_ipv4_prefix,
            .ipv6_prefix = cfg->rrl_ipv6_prefix,
        };
        if (r == 0 && rrl.responses_per_second > 0 && srv->rrl == NULL &&
            vd_ratelimit_new(&rrl, &srv->rrl) < 0)
                r = vd_error_set(err, "rate limiting: out of memory");
        if (r != 0) {
                for (unsigned i = 0; i < srv->n_workers; i++)
                        free(pkg[i]);
                free(pkg);
                return r;
        }
        srv->lameduck_ms = cfg->lameduck_ms; /* read on this thread only */
        if (rrl.responses_per_second > 0)
                vd_ratelimit_set(srv->rrl, &rrl);
        if (srv->cache != NULL) {
                vd_cache_options co = {
                    .min_ttl = cfg->cache_min_ttl,
                    .max_ttl = cfg->cache_max_ttl,
                    .max_neg_ttl = cfg->cache_max_negative_ttl,
                    .servfail_ttl = cfg->cache_servfail_ttl,
                };
                vd_cache_set_ttls(srv->cache, &co);
        }
        if (cfg->query_log.format != VD_QLOG_OFF)
                vd_qlog_set_sample(srv->qlog, cfg->query_log.sample_ppm);
        if (srv->health != NULL && cfg->eni_health.on) { /* on and off need a restart */
                vd_health_options ho;
                health_options(&cfg->eni_health, &ho);
                vd_health_set_options(srv->health, &ho);
        }
        uv_mutex_lock(&srv->slot.lock);
        for (unsigned i = 0; i < srv->n_workers; i++) {
                free(srv->live_pending[i]); /* a previous reload's, not taken yet */
                srv->live_pending[i] = pkg[i];
                if (!srv->slot.closed && srv->workers[i]->reload_ready)
                        uv_async_send(&srv->workers[i]->reload_async);
        }
        uv_mutex_unlock(&srv->slot.lock);
        free(pkg);
        return 0;
}

size_t vd_server_listen_addrs(const vd_server *srv, const vd_addr **out)
{
        *out = srv->listen;
        return srv->n_listen;
}

void vd_server_set_az(vd_server *srv, const char *az)
{
        snprintf(srv->az, sizeof(srv->az), "%s", az != NULL ? az : "");
        srv->az_unknown = az == NULL;
        for (unsigned i = 0; i < srv->n_workers && srv->az_unknown; i++)
                if (srv->workers[i] != NULL) /* not running yet */
                        srv->workers[i]->env.az_affinity = VD_AZ_AFFINITY_OFF;
}

void vd_server_note_fallback(vd_server *srv, const char *reason)
{
        uv_mutex_lock(&srv->slot.lock);
        snprintf(srv->fallback_reason, sizeof(srv->fallback_reason), "%s",
                 reason != NULL ? reason : "");
        vd_count_set(&srv->fallback, reason != NULL ? 1 : 0);
        uv_mutex_unlock(&srv->slot.lock);
}

/* The listen addresses the workers bind: cfg's; of the built-in defaults only those that can
 * be bound (a container without IPv6 has no [::1]), each skipped one logged. */
static int choose_listen(vd_server *srv, const vd_config *cfg, vd_error *err)
{
        vd_error first = {{0}};
        srv->n_listen = 0;
        for (size_t i = 0; i < cfg->n_listen; i++) {
                int fd;
                if (cfg->listen_default) {
                        vd_error why = {{0}};
                        if (open_socket(&cfg->listen[i], SOCK_DGRAM, &fd, &why) < 0) {
                                char text[sizeof(why.msg) + 64];
                                vd_log(VD_LOG_WARN, "listen_skipped",
                                       "error=%s detail=\"a default listen address that cannot "
                                       "be bound is skipped; set listen to choose\"",
                                       vd_log_value(why.msg, text, sizeof(text)));
                                if (first.msg[0] == '\0')
                                        first = why;
                                continue;
                        }
                        close(fd);
                }
                srv->listen[srv->n_listen++] = cfg->listen[i];
        }
        if (srv->n_listen == 0)
                return vd_error_set(err, "none of the default listen addresses can be bound: %s",
                                    first.msg);
        return 0;
}

/* Server */

/* Allocates the per-client tables every worker shares, for the limits cfg turns on. */
static int server_limits(vd_server *srv, const vd_config *cfg, vd_error *err)
{
        if (cfg->rrl_responses_per_second > 0) {
                vd_ratelimit_options opt = {
                    .responses_per_second = cfg->rrl_responses_per_second,
                    .slip = cfg->rrl_slip,
                    .ipv4_prefix = cfg->rrl_ipv4_prefix,
                    .ipv6_prefix = cfg->rrl_ipv6_prefix,
                };
                int r = vd_ratelimit_new(&opt, &srv->rrl);
                if (r < 0)
                        return vd_error_set(err, "rate limiting: %s",
                                            r == -ENOMEM ? "out of memory"
                                                         : "prefix length out of range");
        }
        if ((cfg->max_pending_per_client > 0 && vd_ratelimit_pending_new(0, &srv->pending) < 0) ||
            (cfg->tcp_max_connections_per_client > 0 &&
             vd_ratelimit_pending_new(0, &srv->tcp_clients) < 0))
                return vd_error_set(err, "out of memory");
        return 0;
}

/* Points the ENI prober at snap's addresses: with views, those of every view (a root holds
 * only the zone files); the prober holds its own reference to each snapshot it writes to. */
static int health_retarget(vd_health *h, vd_snapshot *snap)
{
        vd_snapshot *list[1 + VD_MAX_VIEWS];
        size_t n = 0;
        if (snap != NULL) {
                list[n++] = snap;
                size_t views = vd_snapshot_view_count(snap);
                for (size_t i = 0; i < views && n < sizeof(list) / sizeof(list[0]); i++)
                        /* the prober writes only the health flags, the one mutable part */
                        list[n++] = (vd_snapshot *)vd_snapshot_view(snap, i, NULL);
        }
        return vd_health_retarget(h, list, n);
}

int vd_server_new(const vd_config *cfg, vd_snapshot *snap, vd_server **out, vd_error *err)
{
        listen_plan *plan = NULL;
        vd_server *srv;
        int r;

        *out = NULL;
        if (cfg->n_listen == 0 || cfg->n_listen > VD_MAX_LISTEN)
                return vd_error_set(err, "no listen address");
        srv = calloc(1, sizeof(*srv));
        if (srv == NULL) {
                vd_error_set(err, "out of memory");
                return -ENOMEM;
        }
        r = uv_mutex_init(&srv->slot.lock);
        if (r < 0) {
                free(srv);
                return vd_error_set(err, "mutex: %s", uv_strerror(r));
        }
        if (snap != NULL)
                vd_snapshot_ref(snap);
        srv->slot.current = snap;
        r = choose_listen(srv, cfg, err);
        if (r < 0)
                goto fail;
        srv->n_upstream = cfg->n_upstream;
        memcpy(srv->upstream, cfg->upstream, cfg->n_upstream * sizeof(cfg->upstream[0]));
        srv->n_workers = cfg->workers > 0 ? cfg->workers : 1;
        srv->takeover_conn = -1;
        srv->takeover = cfg->takeover;
        /* in-flight forwarded answers after a hand-over, bounded */
        srv->drain_ms = cfg->upstream_timeout_ms < 2000 ? cfg->upstream_timeout_ms : 2000;
        srv->watch_on = cfg->watch;
        if (vd_inputs_from_config(cfg, &srv->watch_inputs) < 0) {
                r = vd_error_set(err, "out of memory");
                goto fail;
        }
        r = server_limits(srv, cfg, err);
        if (r < 0)
                goto fail;
        if (cfg->cache_size > 0) {
                vd_cache_options co;
                vd_cache_options_default(&co);
                co.max_entries = cfg->cache_size; /* for the process: every worker shares it */
                co.min_ttl = cfg->cache_min_ttl;
                co.max_ttl = cfg->cache_max_ttl;
                co.max_neg_ttl = cfg->cache_max_negative_ttl;
                co.servfail_ttl = cfg->cache_servfail_ttl;
                if (vd_cache_new(&co, &srv->cache) < 0) {
                        r = vd_error_set(err, "cache: out of memory");
                        goto fail;
                }
        }
        if (vd_inflight_new(&srv->inflight) < 0) {
                r = vd_error_set(err, "out of memory");
                goto fail;
        }
        if (cfg->query_log.format != VD_QLOG_OFF) {
                vd_qlog_ids ids;
                vd_qlog_ids_read(cfg->snapshot_dirs, cfg->n_snapshots, cfg->vpc, &ids);
                r = vd_qlog_new(&cfg->query_log, &ids, srv->n_workers, &srv->qlog, err);
                if (r < 0)
                        goto fail;
        }
        srv->workers = calloc(srv->n_workers, sizeof(srv->workers[0]));
        if (srv->workers == NULL) {
                r = vd_error_set(err, "out of memory");
                goto fail;
        }
        r = live_init(srv, cfg, err);
        if (r < 0)
                goto fail;
        plan = calloc(1, sizeof(*plan));
        if (plan == NULL) {
                r = vd_error_set(err, "out of memory");
                goto fail;
        }
        r = inherit_sockets(srv, cfg, plan, err);
        if (r < 0)
                goto fail;
        /* Nobody else may serve an address we bind ourselves, unless we were asked to take
         * over (--takeover binds beside an old instance that did not answer). */
        for (size_t i = 0; i < srv->n_listen && !cfg->takeover; i++)
                for (int k = 0; k < 2; k++) {
                        if (plan->count[i][k] > 0)
                                continue;
                        r = refuse_if_served(&srv->listen[i], k == 0 ? SOCK_DGRAM : SOCK_STREAM,
                                             err);
                        if (r < 0)
                                goto fail;
                }
        for (unsigned i = 0; i < srv->n_workers; i++) {
                r = worker_new(srv, cfg, plan, i, &srv->workers[i], err);
                if (r < 0)
                        goto fail;
        }
        plan_close(plan); /* every worker holds its own duplicates */
        free(plan);
        plan = NULL;
        /* ENI health: the prober starts with the snapshot of the start */
        if (cfg->eni_health.on) {
                vd_health_options ho;
                health_options(&cfg->eni_health, &ho);
                r = vd_health_new(&ho, &srv->health, err);
                if (r == 0 && health_retarget(srv->health, snap) < 0)
                        r = vd_error_set(err, "eni_health: out of memory");
                if (r < 0)
                        goto fail;
        }
        r = vd_srv_http_start(srv, cfg, err);
        if (r < 0)
                goto fail;
        *out = srv;
        return 0;
fail:
        if (plan != NULL) {
                plan_close(plan);
                free(plan);
        }
        vd_server_free(srv);
        return r;
}

/* Stage 2 of the stop: every worker drains its sockets and closes everything. */
static void stop_workers(vd_server *srv)
{
        atomic_store(&srv->stop_stage, 2);
        for (unsigned i = 0; i < srv->n_workers; i++) {
                vd_worker *w = srv->workers[i];
                if (w->thread_started)
                        uv_async_send(&w->stop_async);
        }
}

static void on_drain_end(uv_timer_t *t)
{
        vd_server *srv = t->data;
        uv_close((uv_handle_t *)t, NULL);
        stop_workers(srv);
}

static void reload_stop(vd_server *srv);

static void stop_everything(vd_server *srv)
{
        vd_count_set(&srv->draining, 1);
        vd_srv_http_stop(srv); /* before any worker closes what its handlers read */
        health_stop(srv);      /* after the HTTP endpoint that reads it, before the workers */
        if (srv->lameduck_started && !uv_is_closing((uv_handle_t *)&srv->lameduck))
                uv_close((uv_handle_t *)&srv->lameduck, NULL);
        srv->stopping = true;
        reload_stop(srv);
        uv_mutex_lock(&srv->slot.lock); /* no publish sends a reload past this point */
        srv->slot.closed = true;
        uv_mutex_unlock(&srv->slot.lock);
        if (!uv_is_closing((uv_handle_t *)&srv->sigint)) {
                uv_close((uv_handle_t *)&srv->sigint, NULL);
                uv_close((uv_handle_t *)&srv->sigterm, NULL);
                uv_close((uv_handle_t *)&srv->sighup, NULL);
                uv_close((uv_handle_t *)&srv->sigusr1, NULL);
        }
        vd_control_close(srv->ctl); /* a successor now binds as usual, beside our drain */
        srv->ctl = NULL;
        vd_sd_notify("STOPPING=1\nSTATUS=stopping");
        /* After a hand-over the successor reads our sockets: stop reading at once, and close
         * once the forwarded answers still in flight had their time. */
        if (srv->handed_over && srv->drain_ms > 0 &&
            uv_timer_init(&srv->control, &srv->drain_timer) == 0) {
                srv->drain_timer.data = srv;
                srv->drain_started = true;
                atomic_store(&srv->stop_stage, 1);
                for (unsigned i = 0; i < srv->n_workers; i++)
                        if (srv->workers[i]->thread_started)
                                uv_async_send(&srv->workers[i]->stop_async);
                uv_timer_start(&srv->drain_timer, on_drain_end, srv->drain_ms, 0);
                return;
        }
        stop_workers(srv);
}

/* A worker found a reason to stop the server (a forwarding loop): it already logged it. */
static void on_failure(uv_async_t *a)
{
        vd_server *srv = a->data;
        if (srv->stopping)
                return;
        vd_log(VD_LOG_ERROR, "server_stopping", "reason=forwarding_loop");
        stop_everything(srv);
}

static void on_lameduck_end(uv_timer_t *t)
{
        vd_server *srv = t->data;
        vd_log(VD_LOG_INFO, "server_stopping", "reason=lameduck_over");
        stop_everything(srv);
}

/* SIGINT or SIGTERM. With the HTTP endpoint on and lameduck_ms > 0, the first one only turns
 * /ready to 503 and keeps answering for lameduck_ms (so a load balancer or Kubernetes takes
 * the server out of rotation before its sockets close); a second one stops at once. Without
 * the endpoint nobody can see readiness, so the stop is immediate, as it always was. */
static void on_signal(uv_signal_t *s, int signum)
{
        vd_server *srv = s->data;
        const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
        if (srv->http != NULL && srv->lameduck_ms > 0 && !srv->lameduck_started) {
                vd_count_set(&srv->draining, 1);
                if (uv_timer_init(&srv->control, &srv->lameduck) == 0) {
                        srv->lameduck.data = srv;
                        srv->lameduck_started = true;
                        uv_timer_start(&srv->lameduck, on_lameduck_end, srv->lameduck_ms, 0);
                        vd_log(VD_LOG_INFO, "server_lameduck", "signal=%s ms=%u", name,
                               srv->lameduck_ms);
                        vd_sd_notify("STOPPING=1\nSTATUS=lameduck: answering, not ready");
                        return;
                }
        }
        vd_log(VD_LOG_INFO, "server_stopping", "signal=%s", name);
        stop_everything(srv);
}

/* ---- the control socket (takeover.h): hand-over and reload requests -------------------------- */

static size_t control_sockets(void *arg, int *fds, size_t cap)
{
        vd_server *srv = arg;
        size_t n = srv->n_socks < cap ? srv->n_socks : cap;
        memcpy(fds, srv->socks, n * sizeof(fds[0]));
        return n;
}

/* A successor serves on our sockets: leave without a lameduck (nobody needs to route around
 * us: the sockets, and their queues, live on in the successor). */
static void control_serving(void *arg, pid_t pid)
{
        vd_server *srv = arg;
        if (srv->stopping)
                return;
        srv->handed_over = true;
        vd_log(VD_LOG_INFO, "server_stopping", "reason=taken_over by_pid=%d drain_ms=%u", (int)pid,
               srv->drain_ms);
        stop_everything(srv);
}

/* `vpcdns --reload`: a reload as SIGHUP asks, answered when it is over (the one it starts, or
 * the one queued behind a reload already running). */
static int control_reload(void *arg, uint64_t *number, char *msg, size_t cap)
{
        vd_server *srv = arg;
        if (srv->reload == NULL || srv->stopping) {
                snprintf(msg, cap, "%s", srv->stopping ? "stopping" : "no reload source");
                return -EAGAIN;
        }
        vd_server_request_reload(srv, "control");
        *number = srv->reload_queued ? srv->reloads_started + 1 : srv->reloads_started;
        return 0;
}

static const vd_control_ops control_ops = {
    .sockets = control_sockets,
    .serving = control_serving,
    .reload = control_reload,
};

void vd_server_on_reload(vd_server *srv, vd_reload_fn fn, vd_reload_commit_fn commit, void *arg)
{
        srv->reload = fn;
        srv->reload_commit = commit;
        srv->reload_arg = arg;
}

/* Any thread. The workers are told under the slot's lock: stop_everything closes the slot
 * under it before any worker may begin to close its reload_async, so no send can reach a
 * closing handle or a closed loop. */
void vd_server_publish(vd_server *srv, vd_snapshot *snap)
{
        if (snap != NULL)
                vd_snapshot_ref(snap);
        uv_mutex_lock(&srv->slot.lock);
        /* The ENI states of the addresses still there go into snap before any worker sees it
         * (on no memory the prober keeps the previous snapshots: snap's ENIs stay up). */
        if (srv->health != NULL && health_retarget(srv->health, snap) < 0)
                vd_log(VD_LOG_ERROR, "eni_health_retarget_failed", "error=\"out of memory\"");
        vd_snapshot *old = srv->slot.current;
        srv->slot.current = snap;
        vd_srv_note_data(srv, snap);
        if (!srv->slot.closed) {
                for (unsigned i = 0; i < srv->n_workers; i++)
                        if (srv->workers[i]->reload_ready)
                                uv_async_send(&srv->workers[i]->reload_async);
        }
        uv_mutex_unlock(&srv->slot.lock);
        if (old != NULL)
                vd_snapshot_unref(old);
}

/* ---- reloads ------------------------------------------------------------------------------ */

static uint64_t now_ms(void)
{
        return uv_hrtime() / 1000000u;
}

/* The reload thread: the whole load and compile, at background priority so that on a busy
 * core the workers answer first. Hands its result to the control loop and ends. */
static void reload_main(void *arg)
{
        vd_server *srv = arg;
        vd_thread_background();
        /* Nice +10 alone still lets the compile run out its time slice when a worker on the
         * same core wakes (measured by bench/reload.sh: p50 of local answers 36 -> 273 us,
         * p99 x1.6 while reloading). SCHED_IDLE makes every waking worker preempt it at once;
         * the reload still gets a small share of a saturated core, so it ends, later. */
        struct sched_param idle = {.sched_priority = 0};
        (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
        srv->job_snap = NULL;
        memset(&srv->job_err, 0, sizeof(srv->job_err));
        srv->job_rc = srv->reload(srv->reload_arg, &srv->job_snap, &srv->job_err);
        uv_async_send(&srv->reload_async);
}

/* systemd hears of every reload but the quiet check after start-up: RELOADING=1 as it
 * begins, READY=1 with the outcome in STATUS= as it ends. */
static void notify_reloading(void)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        vd_sd_notifyf("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
                      (unsigned long long)now.tv_sec * 1000000ULL +
                          (unsigned long long)now.tv_nsec / 1000ULL);
}

/* The end of reload number srv->job_number: systemd and every `vpcdns --reload` waiting for
 * it hear the outcome. */
static void reload_outcome(vd_server *srv, bool quiet, bool ok, const char *detail)
{
        if (!quiet)
                vd_sd_notifyf("READY=1\nSTATUS=%s%s",
                              ok ? "serving; reloaded "
                                 : "reload failed, serving the previous data: ",
                              detail);
        vd_control_reload_done(srv->ctl, srv->job_number, ok, detail);
}

static void start_reload(vd_server *srv, const char *trigger)
{
        bool quiet = strcmp(trigger, "start") == 0; /* the check after start-up: debug only */
        vd_log(quiet ? VD_LOG_DEBUG : VD_LOG_INFO, "reload_start", "trigger=%s", trigger);
        if (!quiet)
                notify_reloading();
        srv->reload_trigger = trigger;
        srv->reload_began_ms = now_ms();
        srv->job_number = ++srv->reloads_started;
        int r = srv->reload_async_ready ? uv_thread_create(&srv->reload_thread, reload_main, srv)
                                        : UV_EINVAL;
        if (r < 0) {
                char detail[160];
                snprintf(detail, sizeof(detail), "cannot start the reload thread: %s",
                         uv_strerror(r));
                vd_log(VD_LOG_ERROR, "reload_failed", "trigger=%s kept=previous error=\"%s\"",
                       trigger, detail);
                vd_count_add(&srv->reload_failed, 1);
                reload_outcome(srv, quiet, false, detail);
                return;
        }
        srv->reload_running = true;
        uv_ref((uv_handle_t *)&srv->reload_async); /* the stop waits for the thread */
}

void vd_server_request_reload(vd_server *srv, const char *trigger)
{
        if (srv->reload == NULL || srv->stopping) {
                vd_log(VD_LOG_WARN, "reload_ignored", "trigger=%s reason=\"%s\"", trigger,
                       srv->stopping ? "stopping" : "no reload source");
                return;
        }
        if (srv->reload_running) {
                if (!srv->reload_queued)
                        vd_log(VD_LOG_DEBUG, "reload_queued", "trigger=%s running=%s", trigger,
                               srv->reload_trigger);
                srv->reload_queued = true;
                srv->queued_trigger = trigger;
                return;
        }
        start_reload(srv, trigger);
}

/* Logs and counts what the reload thread did, and publishes a new snapshot. */
static void finish_reload(vd_server *srv)
{
        const char *trigger = srv->reload_trigger;
        bool quiet = strcmp(trigger, "start") == 0;
        unsigned long long ms = (unsigned long long)(now_ms() - srv->reload_began_ms);
        vd_snapshot *snap = srv->job_snap;
        char detail[sizeof(srv->job_err.msg) + 64];
        srv->job_snap = NULL;
        vd_error commit_err = {{0}};
        bool publish = !srv->stopping && srv->job_rc == 0;
        if (srv->reload_commit != NULL &&
            srv->reload_commit(srv->reload_arg, publish, publish ? &commit_err : NULL) != 0) {
                srv->job_rc = -EINVAL; /* the settings could not be applied: nothing changes */
                srv->job_err = commit_err;
        }
        if (srv->stopping) { /* too late to serve it */
                vd_log(VD_LOG_DEBUG, "reload_dropped", "trigger=%s reason=stopping", trigger);
                reload_outcome(srv, true, false, "stopping");
        } else if (srv->job_rc < 0) {
                char why[sizeof(srv->job_err.msg) + 64];
                vd_log(VD_LOG_ERROR, "reload_failed", "trigger=%s kept=previous ms=%llu error=%s",
                       trigger, ms, vd_log_value(srv->job_err.msg, why, sizeof(why)));
                vd_count_add(&srv->reload_failed, 1);
                reload_outcome(srv, quiet, false, srv->job_err.msg);
        } else if (srv->job_rc == VD_RELOAD_UNCHANGED) {
                vd_log(quiet ? VD_LOG_DEBUG : VD_LOG_INFO, "reload_skipped",
                       "trigger=%s reason=unchanged ms=%llu", trigger, ms);
                vd_count_add(&srv->reload_skipped, 1);
                reload_outcome(srv, quiet, true, "nothing changed");
        } else {
                vd_snapshot_summary sum = {0};
                if (snap != NULL)
                        vd_snapshot_summarize(snap, &sum);
                vd_server_publish(srv, snap);
                vd_count_set(&srv->loaded_unix, (uint64_t)time(NULL));
                vd_log(VD_LOG_INFO, "reload_done",
                       "trigger=%s names=%zu records=%zu zones=%zu ms=%llu", trigger, sum.names,
                       sum.records, sum.zones, ms);
                snprintf(detail, sizeof(detail), "names=%zu records=%zu zones=%zu", sum.names,
                         sum.records, sum.zones);
                reload_outcome(srv, quiet, true, detail);
        }
        if (snap != NULL)
                vd_snapshot_unref(snap);
}

/* The reload thread is done: join it, publish, re-arm the watch (a swapped directory is a
 * new inode), and run the request that came meanwhile, if any. */
static void on_reload_done(uv_async_t *a)
{
        vd_server *srv = a->data;
        if (!srv->reload_running)
                return;
        uv_thread_join(&srv->reload_thread);
        srv->reload_running = false;
        uv_unref((uv_handle_t *)&srv->reload_async);
        finish_reload(srv);
        if (srv->stopping) {
                uv_close((uv_handle_t *)&srv->reload_async, NULL);
                srv->reload_async_ready = false;
                return;
        }
        vd_watch_rearm(srv->watch);
        if (srv->reload_queued) {
                srv->reload_queued = false;
                start_reload(srv, srv->queued_trigger);
        }
}

static void on_watch(void *arg, const char *path)
{
        vd_server *srv = arg;
        char text[512];
        vd_log(VD_LOG_INFO, "watch_change", "input=%s", vd_log_value(path, text, sizeof(text)));
        vd_server_request_reload(srv, "watch");
}

/* The file watch and the reload thread's wake-up, on the control loop. A watch that cannot
 * start is logged: SIGHUP still reloads. */
static int reload_init(vd_server *srv)
{
        int r = uv_async_init(&srv->control, &srv->reload_async, on_reload_done);
        if (r < 0)
                return r;
        srv->reload_async.data = srv;
        srv->reload_async_ready = true;
        uv_unref((uv_handle_t *)&srv->reload_async); /* only a running reload holds the loop */
        if (!srv->watch_on || srv->watch_inputs.n == 0 || srv->reload == NULL) {
                vd_log(VD_LOG_INFO, "watch_off", "reason=%s",
                       !srv->watch_on ? "config" : "nothing_to_watch");
                return 0;
        }
        r = vd_watch_new(&srv->control, &srv->watch_inputs, VD_WATCH_QUIET_MS, VD_WATCH_MAX_MS,
                         on_watch, srv, &srv->watch);
        if (r < 0) {
                vd_log(VD_LOG_ERROR, "watch_error",
                       "error=\"%s\" detail=\"no file watch: "
                       "reload with SIGHUP\"",
                       uv_strerror(r));
                return 0;
        }
        vd_log(VD_LOG_INFO, "watch_start", "inputs=%zu watches=%zu quiet_ms=%u",
               srv->watch_inputs.n, vd_watch_armed(srv->watch), (unsigned)VD_WATCH_QUIET_MS);
        /* What changed between the load at start-up and the watch is caught now. */
        vd_server_request_reload(srv, "start");
        return 0;
}

/* At the stop: no more watch events; the reload wake-up closes now, or when a running reload
 * ends. */
static void reload_stop(vd_server *srv)
{
        vd_watch_close(srv->watch);
        srv->watch = NULL;
        srv->reload_queued = false;
        if (srv->reload_async_ready && !srv->reload_running) {
                uv_close((uv_handle_t *)&srv->reload_async, NULL);
                srv->reload_async_ready = false;
        }
}

static void on_sighup(uv_signal_t *s, int signum)
{
        (void)signum;
        vd_server_request_reload(s->data, "sighup");
}

/* SIGUSR1: reopen the query log (after logrotate moved it); without one, only a word. */
static void on_sigusr1(uv_signal_t *s, int signum)
{
        vd_server *srv = s->data;
        (void)signum;
        if (srv->qlog == NULL) {
                vd_log(VD_LOG_INFO, "reopen_ignored", "signal=SIGUSR1 reason=\"no query log\"");
                return;
        }
        vd_qlog_reopen(srv->qlog);
}

static void log_start(const vd_server *srv)
{
        char addrs[VD_MAX_LISTEN * 50] = "";
        size_t used = 0;

        for (size_t i = 0; i < srv->n_listen; i++) {
                char text[48];
                vd_addr_format(&srv->listen[i], text, sizeof(text));
                int n = snprintf(addrs + used, sizeof(addrs) - used, "%s%s", i ? "," : "", text);
                if (n < 0 || (size_t)n >= sizeof(addrs) - used)
                        break;
                used += (size_t)n;
        }
        vd_log(VD_LOG_INFO, "server_start", "listen=%s workers=%u upstreams=%zu", addrs,
               srv->n_workers, srv->n_upstream);
}

/* One line with every counter of the table (counters.h), summed over the workers. */
static void log_stop(const vd_server *srv)
{
        vd_counters total = {0};
        char line[4096];
        size_t used = 0;

        for (unsigned i = 0; i < srv->n_workers; i++)
                vd_counters_add(&total, &srv->workers[i]->env.counters);
        if (srv->cache != NULL) { /* once: the workers share it */
                vd_cache_counters cc = {0};
                vd_cache_counters_get(srv->cache, &cc);
                total.cache_stores = cc.stores;
                total.cache_evictions = cc.evictions;
                total.cache_entries = cc.entries;
        }
        line[0] = '\0';
#define LOG_COUNTER(name, kind, help)                                                              \
        if (used < sizeof(line))                                                                   \
                used += (size_t)snprintf(line + used, sizeof(line) - used, "%s" #name "=%llu",     \
                                         used > 0 ? " " : "", (unsigned long long)total.name);
        VD_COUNTERS(LOG_COUNTER)
#undef LOG_COUNTER
        vd_log(VD_LOG_INFO, "server_stop", "%s", line);
}

int vd_server_run(vd_server *srv)
{
        struct sigaction ign;
        int result = 0;
        int r;

        if (srv == NULL || srv->ran)
                return -EALREADY;
        srv->ran = true;

        memset(&ign, 0, sizeof(ign));
        ign.sa_handler = SIG_IGN;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGPIPE, &ign, NULL);

        r = uv_loop_init(&srv->control);
        if (r < 0) {
                vd_log(VD_LOG_ERROR, "server_error", "what=control_loop error=\"%s\"",
                       uv_strerror(r));
                return r;
        }
        uv_signal_init(&srv->control, &srv->sigint);
        uv_signal_init(&srv->control, &srv->sigterm);
        uv_signal_init(&srv->control, &srv->sighup);
        uv_signal_init(&srv->control, &srv->sigusr1);
        srv->sigusr1.data = srv;
        srv->sigint.data = srv;
        srv->sigterm.data = srv;
        srv->sighup.data = srv;
        /* Signals first: once a worker answers, a SIGTERM is a clean stop. */
        r = uv_signal_start(&srv->sigint, on_signal, SIGINT);
        if (r == 0)
                r = uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
        if (r == 0)
                r = uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
        if (r == 0)
                r = uv_signal_start(&srv->sigusr1, on_sigusr1, SIGUSR1);
        if (r == 0 && srv->qlog != NULL) {
                r = vd_qlog_start(srv->qlog);
                if (r < 0)
                        vd_log(VD_LOG_ERROR, "server_error", "what=query_log_thread error=\"%s\"",
                               uv_strerror(r));
        }
        if (r == 0) {
                r = uv_async_init(&srv->control, &srv->fail_async, on_failure);
                srv->fail_async.data = srv;
                srv->fail_ready = r == 0;
                /* Workers may signal it until they are joined: it is closed after that, and
                 * does not keep the control loop running meanwhile. */
                if (r == 0)
                        uv_unref((uv_handle_t *)&srv->fail_async);
        }
        if (r == 0)
                r = reload_init(srv);
        if (r < 0) {
                vd_log(VD_LOG_ERROR, "server_error", "what=signals error=\"%s\"", uv_strerror(r));
                result = r;
        }

        if (result == 0) {
                log_start(srv);
                for (unsigned i = 0; i < srv->n_workers; i++) {
                        vd_worker *w = srv->workers[i];
                        r = uv_thread_create(&w->thread, worker_main, w);
                        if (r < 0) {
                                vd_log(VD_LOG_ERROR, "server_error",
                                       "what=thread worker=%u error=\"%s\"", i, uv_strerror(r));
                                result = r;
                                break;
                        }
                        w->thread_started = true;
                }
        }
        if (result == 0) {
                /* the predecessor stops reading once we serve; then our control sockets */
                vd_takeover_serving(srv->takeover_conn);
                srv->takeover_conn = -1;
                if (vd_control_start(&srv->control, srv->listen, srv->n_listen, &control_ops, srv,
                                     &srv->ctl) < 0)
                        vd_log(VD_LOG_WARN, "control_unavailable", "error=\"out of memory\"");
                vd_sd_notify("READY=1\nSTATUS=serving");
        }
        if (result < 0)
                stop_everything(srv);

        uv_run(&srv->control, UV_RUN_DEFAULT); /* until a signal closes the signal handles */

        for (unsigned i = 0; i < srv->n_workers; i++) {
                vd_worker *w = srv->workers[i];
                if (w->thread_started) {
                        uv_thread_join(&w->thread);
                        w->thread_started = false;
                }
        }
        if (srv->fail_ready) {
                uv_close((uv_handle_t *)&srv->fail_async, NULL);
                uv_run(&srv->control, UV_RUN_DEFAULT);
        }
        vd_loop_probe_disarm(&srv->probe); /* worker 0 may never have finished its check */
        r = uv_loop_close(&srv->control);
        if (r < 0 && result == 0)
                result = r;
        if (result == 0)
                result = atomic_load(&srv->failure);
        log_stop(srv);
        return result;
}

void vd_server_free(vd_server *srv)
{
        if (srv == NULL)
                return;
        vd_srv_http_stop(srv); /* a server that never ran still has its endpoint */
        health_stop(srv);
        if (srv->takeover_conn >= 0)
                close(srv->takeover_conn); /* never served: the old instance goes on */
        uv_mutex_lock(&srv->slot.lock);    /* a server that never ran: its workers stop here */
        srv->slot.closed = true;
        uv_mutex_unlock(&srv->slot.lock);
        if (srv->workers != NULL) {
                for (unsigned i = 0; i < srv->n_workers; i++)
                        worker_free(srv->workers[i]);
                free(srv->workers);
        }
        vd_qlog_free(srv->qlog); /* after the workers: it writes what they left, then closes */
        vd_inflight_free(srv->inflight); /* after the workers' resolvers */
        vd_cache_free(srv->cache);       /* after the workers that borrow it */
        vd_ratelimit_free(srv->rrl);
        vd_ratelimit_pending_free(srv->pending);
        vd_ratelimit_pending_free(srv->tcp_clients);
        vd_upstream_budget_free(srv->upstream_budget); /* after every forwarder */
        live_free(srv);
        if (srv->slot.current != NULL)
                vd_snapshot_unref(srv->slot.current);
        uv_mutex_destroy(&srv->slot.lock);
        vd_inputs_free(&srv->watch_inputs);
        for (size_t i = 0; i < srv->n_data_files; i++)
                free(srv->data_files[i]);
        free(srv->data_files);
        free(srv);
}
