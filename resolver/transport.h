/* transport.h — private to server.c, udp.c and tcp.c: the worker (one libuv loop with its
 * sockets, forwarder, resolver and query env) and the entry points server.c calls to open and
 * close the UDP and TCP transports. Not a public contract: nothing else includes it.
 *
 * Threading: every field of a worker is touched only by the thread running its loop, except
 * the counters and levels the metrics thread reads (env.counters, tcp_open, heartbeat_ns:
 * written with vd_count_add / vd_count_set, read with vd_count_read),
 * stop_async (uv_async_send from the control thread), reload_async (uv_async_send from
 * whichever thread publishes, under the slot's mutex), the shared snapshot slot (under its
 * mutex), and everything before the thread starts or after it was joined. */
#ifndef VPCDNS_TRANSPORT_H
#define VPCDNS_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vpcdns/acl.h"
#include "vpcdns/config.h"
#include "vpcdns/forward.h"
#include "vpcdns/qlog.h"
#include "vpcdns/query.h"
#include "vpcdns/ratelimit.h"
#include "vpcdns/resolve.h"

#define VD_UDP_SLOT 4096       /* receive slot: a larger datagram is no DNS query, and is dropped */
#define VD_UDP_BATCH 16        /* datagrams per recvmmsg call */
#define VD_UDP_ROUNDS 16       /* recvmmsg batches per wake-up, then the loop's other handles */
#define VD_UDP_SEND_BATCH 32   /* responses queued while a receive batch runs, per sendmmsg */
#define VD_UDP_FREE_MAX 256    /* cached pending-reply records per worker */
#define VD_UDP_DRAIN_ROUNDS 64 /* readable wake-ups a drain may run before a close */

#define VD_HEARTBEAT_MS 250 /* a worker's liveness mark, for /health */

#define VD_TCP_BACKLOG 256
#define VD_TCP_MAX_INFLIGHT 32         /* forwarded queries per connection before pausing */
#define VD_TCP_MAX_UNSENT (256 * 1024) /* bytes queued in libuv before the client is closed */

/* The snapshot the server publishes; workers copy a reference out of it when told to. */
typedef struct vd_snapshot_slot {
        /* Held to swap, to wake the workers, or to take a reference; never per query. */
        uv_mutex_t lock;
        vd_snapshot *current;
        /* Under lock: the workers are stopping (or never ran), so their reload_async may be
         * closing: nobody may send it any more. Set before the first stop_async is sent. */
        bool closed;
} vd_snapshot_slot;

struct vd_worker;
struct vd_udp_pending;
struct vd_udp_io;
struct vd_tcp_conn;

typedef struct vd_udp_listener {
        uv_poll_t handle;              /* readable: udp.c reads it; handle.data points back here */
        int fd;                        /* the socket, owned here; -1 until it is open */
        struct sockaddr_storage local; /* its bound address, for the query log */
        struct vd_worker *worker;
        bool open;      /* initialised: must be closed */
        int last_error; /* the last error logged (listener_error), 0 none */
} vd_udp_listener;

typedef struct vd_tcp_listener {
        uv_tcp_t handle;
        struct vd_worker *worker;
        bool open;
        int last_error; /* the last error logged (listener_error), 0 none */
} vd_tcp_listener;

typedef struct vd_worker {
        unsigned index;
        uv_loop_t loop;
        bool loop_ready; /* uv_loop_init done and uv_loop_close not yet */
        uv_async_t stop_async;
        bool async_ready;
        uv_async_t reload_async; /* the slot changed: take the new snapshot */
        bool reload_ready;
        vd_snapshot_slot *slot;
        vd_snapshot *snapshot; /* this worker's own reference; env.snapshot borrows it */
        uv_thread_t thread;
        bool thread_started;
        bool stopping; /* set once the stop began: replies must not touch closed handles */
        bool paused;   /* the listeners stopped reading (a hand-over or a drain): stay so */
        bool ran;      /* its thread started: the stop may answer what is queued */

        vd_forwarder *forwarder;  /* owned; NULL without upstreams or once closed */
        struct vd_cache *cache;   /* the server's, shared by every worker; NULL when off */
        vd_resolver *resolver;    /* owned; NULL once closed (closed before the forwarder) */
        struct vd_server *server; /* the server this worker belongs to */
        /* Worker 0 only: the start-up forwarding-loop check (server.c). */
        uv_timer_t probe_timer;
        bool probe_timer_ready;       /* initialised: must be closed */
        bool probe_pending;           /* the probe query is upstream */
        vd_query_env env;             /* env.counters: all of this worker's counters (counters.h) */
        unsigned tcp_idle_timeout_ms; /* 0: no idle timeout */
        unsigned tcp_max_connections;
        unsigned tcp_max_per_client; /* connections per client address; 0: unlimited */
        unsigned tcp_max_queries;    /* queries per connection; 0: unlimited */

        /* Limits per client, copied from the config when the worker is made; the tables are
         * the server's, one for the process, shared by every worker. */
        vd_cidr allow[VD_MAX_ACL]; /* never empty: the config's list or the defaults */
        size_t n_allow;
        vd_deny_action deny_action;
        vd_ratelimit *rrl;                 /* the server's; NULL when rate limiting is off */
        vd_ratelimit_pending *tcp_clients; /* the server's; NULL when tcp_max_per_client is 0 */
        /* (forwarded queries pending per client: env.pending, counted by query.c) */

        /* The listening sockets this worker reads (server.c): normally one of each per listen
         * address, its own SO_REUSEPORT socket; with sockets handed over (systemd, --takeover)
         * a share of them, see server.c. Allocated once, never moved (libuv holds them). */
        vd_udp_listener *udp;
        vd_tcp_listener *tcp;
        size_t n_udp, n_tcp;

        /* udp.c */
        struct vd_udp_io *udp_io;        /* receive slots and the batch's responses */
        struct vd_udp_pending *udp_free; /* free list of pending-reply records */
        size_t udp_free_count;

        /* tcp.c */
        struct vd_tcp_conn *tcp_conns; /* open (not closing) connections */
        unsigned tcp_count;
        uint64_t tcp_open; /* tcp_count, published for the metrics thread (vd_count_set) */

        /* Liveness (server.c): a timer stores uv_hrtime() here every VD_HEARTBEAT_MS with
         * vd_count_set; /health reads it. 0 until the loop first turned. */
        uv_timer_t heartbeat;
        bool heartbeat_ready; /* initialised: must be closed */
        bool heartbeat_on;    /* the HTTP endpoint is on: the timer runs */
        uint64_t heartbeat_ns;
        /* The debug hook VPCDNS_DEBUG_STALL_WORKER: block this loop once, for stall_ms, at
         * stall_at_ns (0: never). For tests of /health only. */
        uint64_t stall_at_ns;
        unsigned stall_ms;

        /* The query log: this worker's ring (qlog.h), NULL when logging is off. */
        struct vd_qlog_ring *qlog;

        uint8_t out[VD_TCP_MAX]; /* response buffer, used synchronously by both transports */
} vd_worker;

/* Shared by both transports (the per-client limits) */

static inline bool vd_transport_allowed(const vd_worker *w, const struct sockaddr *client)
{
        return vd_acl_match(w->allow, w->n_allow, client);
}

/* A listening socket failed with err (a negative errno): logs event=listener_error once, and
 * again only when the error changes, so that an error that repeats per datagram or per
 * connection attempt cannot flood the log. *last_error keeps the last one logged. */
void vd_transport_listener_error(const vd_worker *w, const char *proto, int fd, int err,
                                 int *last_error);
/* The query log's hook, for both transports: one entry when logging is on and the message
 * is in the sample. */
static inline void vd_transport_qlog(vd_worker *w, unsigned kind, bool tcp,
                                     const struct sockaddr *peer, const struct sockaddr *local,
                                     const uint8_t *msg, size_t len)
{
        uint16_t port = peer->sa_family == AF_INET6
                            ? ((const struct sockaddr_in6 *)(const void *)peer)->sin6_port
                            : ((const struct sockaddr_in *)(const void *)peer)->sin_port;
        if (vd_qlog_sampled(w->qlog, msg, len, port))
                vd_qlog_put(w->qlog, kind, tcp, peer, local, msg, len,
                            &w->env.counters.query_log_dropped);
}

/* udp.c */
/* Allocates the receive pool. Returns 0 or -ENOMEM. */
int vd_udp_worker_init(vd_worker *w);
/* Frees the pool and the cached pending records; the loop must have ended. */
void vd_udp_worker_release(vd_worker *w);
/* Wraps a bound datagram socket (ownership of fd is taken, also on failure) and starts
 * receiving. Returns 0 or a negative errno. l is marked open even on failure, when it must
 * still be closed. */
int vd_udp_listener_open(vd_worker *w, vd_udp_listener *l, int fd);
void vd_udp_listener_close(vd_udp_listener *l);
/* Before a listener closes (or stops reading at a hand-over): reads and answers what is
 * already queued in its socket, until the socket is empty or a bound (VD_UDP_DRAIN_ROUNDS
 * wake-ups' worth) is reached, so that a stop drops none of the queries it had received. */
void vd_udp_listener_drain(vd_udp_listener *l);
/* Stops reading the socket; it stays open for the answers of forwarded queries in flight. */
void vd_udp_listener_pause(vd_udp_listener *l);

/* tcp.c */
/* Wraps a bound stream socket (ownership of fd is taken) and listens. Same rules as UDP. */
int vd_tcp_listener_open(vd_worker *w, vd_tcp_listener *l, int fd);
void vd_tcp_listener_close(vd_tcp_listener *l);
/* Closes every connection of w; their memory goes once libuv and the forwarder let go. */
void vd_tcp_close_all(vd_worker *w);

#endif
