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
 */
#include <errno.h>
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

#include "server_int.h"
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

/* Workers */

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
        w->stopping = true;
        for (size_t i = 0; i < w->n_listen; i++) {
                vd_udp_listener_close(&w->udp[i]);
                vd_tcp_listener_close(&w->tcp[i]);
        }
        vd_tcp_close_all(w);
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

static void worker_stop_cb(uv_async_t *a)
{
        worker_stop(a->data);
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

static void worker_reload_cb(uv_async_t *a)
{
        worker_take_snapshot(a->data);
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
        return 0;
}

/* The configured rules as the forwarder takes them: lower-cased wire names. out holds
 * VD_MAX_RULES entries. */
static int worker_rules(const vd_config *cfg, vd_forward_rule *out, size_t *n, vd_error *err)
{
        *n = 0;
        for (size_t i = 0; i < cfg->n_rules && i < VD_MAX_RULES; i++) {
                const vd_config_rule *c = &cfg->rules[i];
                vd_forward_rule *r = &out[(*n)++];
                memset(r, 0, sizeof(*r));
                if (c->domain == NULL || vd_name_from_text(c->domain, r->domain, &r->domain_len))
                        return vd_error_set(err, "forward: rule %zu: bad domain", i + 1);
                r->use_default = c->use_default;
                r->n_servers = c->n_servers < VD_MAX_UPSTREAM ? c->n_servers : VD_MAX_UPSTREAM;
                memcpy(r->servers, c->servers, r->n_servers * sizeof(r->servers[0]));
        }
        return 0;
}

/* The forwarder (when anything can be forwarded) and the resolver over it and the cache. */
static int worker_forwarding(vd_worker *w, const vd_config *cfg, vd_error *err)
{
        vd_server *srv = w->server;
        bool rule_servers = false;
        size_t n_rules = 0;
        int r = 0;

        for (size_t i = 0; i < cfg->n_rules; i++)
                rule_servers =
                    rule_servers || (!cfg->rules[i].use_default && cfg->rules[i].n_servers > 0);
        if (cfg->n_upstream > 0 || rule_servers) {
                vd_forward_rule *rules = NULL;
                /* Workers are made one after the other on this thread: the first makes it.
                 * Made without upstream_max_qps too (0: no limit), for the health its slots
                 * share: a server going down is logged once, not once per worker. */
                if (srv->upstream_budget == NULL &&
                    vd_upstream_budget_new(cfg->upstream_max_qps, &srv->upstream_budget) < 0) {
                        vd_error_set(err, "worker %u: out of memory", w->index);
                        return -ENOMEM;
                }
                if (cfg->n_rules > 0) {
                        rules = calloc(VD_MAX_RULES, sizeof(*rules));
                        if (rules == NULL) {
                                vd_error_set(err, "worker %u: out of memory", w->index);
                                return -ENOMEM;
                        }
                        r = worker_rules(cfg, rules, &n_rules, err);
                }
                vd_forward_options opt = {
                    .servers = cfg->upstream,
                    .n_servers = cfg->n_upstream,
                    .rules = rules,
                    .n_rules = n_rules,
                    .budget = srv->upstream_budget,
                    .ports_per_server = cfg->upstream_ports,
                    .use_0x20 = cfg->upstream_0x20,
                    .timeout_ms = cfg->upstream_timeout_ms,
                    /* upstream traffic goes in dnstap only */
                    .qlog = cfg->query_log.format == VD_QLOG_DNSTAP ? w->qlog : NULL,
                    .qlog_dropped = &w->env.counters.query_log_dropped,
                };
                if (r == 0)
                        r = vd_forwarder_new(&w->loop, &opt, &w->forwarder, err);
                free(rules); /* copied by the forwarder */
                if (r < 0)
                        return r;
                w->env.forwarder = w->forwarder;
                vd_forwarder_set_stats(w->forwarder, &w->env.stats);
        }
        vd_resolver_options ro;
        vd_resolver_options_default(&ro);
        ro.stale_max_s = cfg->stale_max;
        ro.stale_answer_ms = cfg->stale_answer_ms;
        ro.prefetch = cfg->prefetch;
        ro.inflight = w->server->inflight;
        r = vd_resolver_new(&w->loop, w->forwarder, w->cache, &ro, &w->resolver);
        if (r < 0) {
                vd_error_set(err, "worker %u: resolver: %s", w->index, strerror(-r));
                return r;
        }
        w->env.resolver = w->resolver;
        return 0;
}

static int worker_new(vd_server *srv, const vd_config *cfg, unsigned index, vd_worker **out,
                      vd_error *err)
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

        for (size_t i = 0; i < cfg->n_listen; i++) {
                const vd_addr *a = &cfg->listen[i];
                char text[80];
                int fd;

                w->n_listen = i + 1;
                r = open_socket(a, SOCK_DGRAM, &fd, err);
                if (r < 0)
                        return r;
                vd_addr_format(a, text, sizeof(text));
                r = vd_udp_listener_open(w, &w->udp[i], fd);
                if (r < 0) {
                        vd_error_set(err, "listen %s (udp): %s", text, uv_strerror(r));
                        return r;
                }
                r = open_socket(a, SOCK_STREAM, &fd, err);
                if (r < 0)
                        return r;
                r = vd_tcp_listener_open(w, &w->tcp[i], fd);
                if (r < 0) {
                        vd_error_set(err, "listen %s (tcp): listen: %s", text, uv_strerror(r));
                        return r;
                }
        }

        w->qlog = vd_qlog_ring_get(srv->qlog, index);
        w->env.loop = &w->loop;
        w->env.loop_probe = &srv->probe;
        w->cache = srv->cache;
        w->env.cache = w->cache;
        return worker_forwarding(w, cfg, err);
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

int vd_server_new(const vd_config *cfg, vd_snapshot *snap, vd_server **out, vd_error *err)
{
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
        srv->n_listen = cfg->n_listen;
        memcpy(srv->listen, cfg->listen, cfg->n_listen * sizeof(cfg->listen[0]));
        srv->n_upstream = cfg->n_upstream;
        memcpy(srv->upstream, cfg->upstream, cfg->n_upstream * sizeof(cfg->upstream[0]));
        srv->n_workers = cfg->workers > 0 ? cfg->workers : 1;
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
                vd_qlog_ids_read(cfg->snapshot_dirs, cfg->n_snapshots, &ids);
                r = vd_qlog_new(&cfg->query_log, &ids, srv->n_workers, &srv->qlog, err);
                if (r < 0)
                        goto fail;
        }
        srv->workers = calloc(srv->n_workers, sizeof(srv->workers[0]));
        if (srv->workers == NULL) {
                r = vd_error_set(err, "out of memory");
                goto fail;
        }
        for (unsigned i = 0; i < srv->n_workers; i++) {
                r = worker_new(srv, cfg, i, &srv->workers[i], err);
                if (r < 0)
                        goto fail;
        }
        r = vd_srv_http_start(srv, cfg, err);
        if (r < 0)
                goto fail;
        *out = srv;
        return 0;
fail:
        vd_server_free(srv);
        return r;
}

static void reload_stop(vd_server *srv);

static void stop_everything(vd_server *srv)
{
        vd_count_set(&srv->draining, 1);
        vd_srv_http_stop(srv); /* before any worker closes what its handlers read */
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
        for (unsigned i = 0; i < srv->n_workers; i++) {
                vd_worker *w = srv->workers[i];
                if (w->thread_started)
                        uv_async_send(&w->stop_async);
        }
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
                        return;
                }
        }
        vd_log(VD_LOG_INFO, "server_stopping", "signal=%s", name);
        stop_everything(srv);
}

void vd_server_on_reload(vd_server *srv, vd_reload_fn fn, void *arg)
{
        srv->reload = fn;
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

static void start_reload(vd_server *srv, const char *trigger)
{
        bool quiet = strcmp(trigger, "start") == 0; /* the check after start-up: debug only */
        vd_log(quiet ? VD_LOG_DEBUG : VD_LOG_INFO, "reload_start", "trigger=%s", trigger);
        srv->reload_trigger = trigger;
        srv->reload_began_ms = now_ms();
        int r = srv->reload_async_ready ? uv_thread_create(&srv->reload_thread, reload_main, srv)
                                        : UV_EINVAL;
        if (r < 0) {
                vd_log(VD_LOG_ERROR, "reload_failed", "trigger=%s kept=previous error=\"%s: %s\"",
                       trigger, "cannot start the reload thread", uv_strerror(r));
                vd_count_add(&srv->reload_failed, 1);
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
        unsigned long long ms = (unsigned long long)(now_ms() - srv->reload_began_ms);
        vd_snapshot *snap = srv->job_snap;
        srv->job_snap = NULL;
        if (srv->stopping) { /* too late to serve it */
                vd_log(VD_LOG_DEBUG, "reload_dropped", "trigger=%s reason=stopping", trigger);
        } else if (srv->job_rc < 0) {
                char why[sizeof(srv->job_err.msg) + 64];
                vd_log(VD_LOG_ERROR, "reload_failed", "trigger=%s kept=previous ms=%llu error=%s",
                       trigger, ms, vd_log_value(srv->job_err.msg, why, sizeof(why)));
                vd_count_add(&srv->reload_failed, 1);
        } else if (srv->job_rc == VD_RELOAD_UNCHANGED) {
                bool quiet = strcmp(trigger, "start") == 0;
                vd_log(quiet ? VD_LOG_DEBUG : VD_LOG_INFO, "reload_skipped",
                       "trigger=%s reason=unchanged ms=%llu", trigger, ms);
                vd_count_add(&srv->reload_skipped, 1);
        } else {
                vd_snapshot_summary sum = {0};
                if (snap != NULL)
                        vd_snapshot_summarize(snap, &sum);
                vd_server_publish(srv, snap);
                vd_count_set(&srv->loaded_unix, (uint64_t)time(NULL));
                vd_log(VD_LOG_INFO, "reload_done",
                       "trigger=%s names=%zu records=%zu zones=%zu ms=%llu", trigger, sum.names,
                       sum.records, sum.zones, ms);
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
        vd_srv_http_stop(srv);          /* a server that never ran still has its endpoint */
        uv_mutex_lock(&srv->slot.lock); /* a server that never ran: its workers stop here */
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
        if (srv->slot.current != NULL)
                vd_snapshot_unref(srv->slot.current);
        uv_mutex_destroy(&srv->slot.lock);
        vd_inputs_free(&srv->watch_inputs);
        for (size_t i = 0; i < srv->n_data_files; i++)
                free(srv->data_files[i]);
        free(srv->data_files);
        free(srv);
}
