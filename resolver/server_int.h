/* server_int.h — the server's state, shared by server.c (threads, loops, signals, reload, stop)
 * and server_observe.c (counters, liveness, readiness and the metrics the HTTP endpoint
 * serves). Private to those two files; nothing else may include it. */
#ifndef VPCDNS_SERVER_INT_H
#define VPCDNS_SERVER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vpcdns/takeover.h"
#include "transport.h"
#include "vpcdns/cache.h"
#include "vpcdns/health.h"
#include "vpcdns/metrics.h"
#include "vpcdns/qlog.h"
#include "vpcdns/server.h"
#include "vpcdns/watch.h"

struct vd_server {
        vd_snapshot_slot slot; /* the published snapshot; workers hold their own references */
        /* The ENI prober (health.h) when eni_health is on, else NULL: retargeted under
         * slot.lock before each publish; stopped (and set NULL under slot.lock) as the stop
         * begins, after the HTTP endpoint that reads it. */
        vd_health *health;
        vd_worker **workers;
        unsigned n_workers;
        /* Per-client tables that every worker shares (NULL when the limit is off): the UDP
         * response rate limit, forwarded queries pending upstream, and open TCP connections. */
        vd_ratelimit *rrl;
        vd_ratelimit_pending *pending;
        vd_ratelimit_pending *tcp_clients;
        /* upstream_max_qps for the whole process, shared by every worker's forwarder (NULL
         * when there is no limit); made with the first worker's forwarder. */
        vd_upstream_budget *upstream_budget;
        vd_cache *cache;       /* every worker's answer cache; NULL when the cache is off */
        vd_inflight *inflight; /* every worker's upstream queries in flight */
        vd_addr listen[VD_MAX_LISTEN];
        size_t n_listen;
        vd_addr upstream[VD_MAX_UPSTREAM];
        size_t n_upstream;
        bool ran;

        /* The start-up loop check: armed by worker 0, seen by any worker (their envs point
         * at it); the stop is requested through fail_async on the control loop. */
        vd_loop_probe probe;
        uv_async_t fail_async;
        bool fail_ready;
        _Atomic int failure; /* 0, or why the server stops on its own (-ELOOP) */

        uv_loop_t control; /* the thread of vd_server_run: signals only */
        uv_signal_t sigint;
        uv_signal_t sigterm;
        uv_signal_t sighup;
        /* The query log (qlog.h): NULL when off; SIGUSR1 reopens its file. */
        vd_qlog *qlog;
        uv_signal_t sigusr1;
        bool stopping; /* control thread only: no more reloads once the stop began */
        vd_reload_fn reload;
        vd_reload_commit_fn reload_commit;
        void *reload_arg;
        /* Reloads: one at a time on reload_thread (SCHED_IDLE), published by the control loop
         * when reload_async says the thread is done; one more request while it runs is kept
         * (reload_queued). The job's results are written by the thread before it signals and
         * read by the control thread after it joined it. Control thread only otherwise. */
        uv_async_t reload_async;
        bool reload_async_ready;
        uv_thread_t reload_thread;
        bool reload_running;
        bool reload_queued;
        const char *reload_trigger; /* "sighup", "watch", "control", "start" */
        const char *queued_trigger;
        uint64_t reload_began_ms; /* uv_hrtime in ms, for the reload's duration */
        uint64_t reloads_started; /* reloads begun; the running one is job_number */
        uint64_t job_number;      /* what `vpcdns --reload` requests wait for (takeover.h) */
        int job_rc;
        vd_snapshot *job_snap;
        vd_error job_err;
        /* The file watch (watch.h): on when watch_on and there are inputs; control loop. */
        bool watch_on;
        vd_inputs watch_inputs;
        vd_watch *watch;

        /* The HTTP endpoint (metrics.c): runs from vd_server_new until the stop begins, so
         * every worker, forwarder and resolver it reads outlives it. NULL when off. */
        vd_http *http;
        unsigned lameduck_ms;    /* 0: stop at once */
        uv_timer_t lameduck;     /* control loop: the end of the lameduck */
        bool lameduck_started;   /* control thread only */
        uint64_t draining;       /* 1 from the stop signal on: /ready fails (vd_count_set) */
        uint64_t loaded_unix;    /* the last successful load of local data (unix seconds) */
        uint64_t reload_failed;  /* reloads that failed (control thread writes) */
        uint64_t reload_skipped; /* reloads whose inputs were unchanged (control thread) */
        uint64_t data_names, data_records, data_zones; /* the published snapshot's size */
        uint64_t data_endpoints; /* AWS endpoints served, as main.c reported them */
        char **data_files;       /* the files local data is read from, for their age */
        size_t n_data_files;

        /* Settings a reload applies live (vd_server_apply_config). The control thread puts one
         * package per worker in live_pending (under slot.lock) and wakes the worker, which takes
         * it with the snapshot. fwd_of[i] is what worker i's forwarder and resolver were made
         * from: only that worker touches it once it runs. swap_lock guards the workers'
         * forwarder and resolver pointers while a worker replaces them and the metrics thread
         * reads them. */
        struct vd_live **live_pending;
        struct vd_fwd_settings **fwd_of;
        struct vd_retired **retired; /* per worker: replaced forwarders finishing their queries */
        uv_mutex_t swap_lock;
        bool swap_lock_ready;
        bool qlog_dnstap;          /* forwarders log upstream traffic (query_log dnstap) */
        unsigned upstream_max_qps; /* of the start: the shared budget is made with it */
        /* Serving the last-good copy of state_dir because the configured data did not load:
         * 1 or 0 (vd_count_set), and why (under slot.lock), for /ready and /metrics. */
        uint64_t fallback;
        char fallback_reason[400];
        /* Restarts (server.c, takeover.c, sd.c). socks: every distinct listening socket, as
         * the descriptor one of the workers holds (borrowed: valid until the stop begins),
         * what a --takeover successor is sent. */
        int socks[VD_TAKEOVER_MAX_FDS];
        size_t n_socks;
        bool takeover;          /* started with --takeover */
        int takeover_conn;      /* to the predecessor until this one serves; -1 none */
        vd_control *ctl;        /* our control sockets (control loop); NULL when closed */
        bool handed_over;       /* a successor serves our sockets: stop without lameduck */
        unsigned drain_ms;      /* between "stop reading" and the close: in-flight answers */
        uv_timer_t drain_timer; /* control loop */
        bool drain_started;
        _Atomic int stop_stage; /* 1: stop reading (answers in flight go on), 2: close all */
        /* The clients' AZ (vd_server_set_az, before the workers start; "": each client's by
         * the snapshot's subnets). Every worker's env points at it. */
        char az[VD_CFG_AZ_MAX];
        bool az_unknown; /* az: imds did not answer: affinity off */
};

/* ---- server_observe.c --------------------------------------------------------------------- */

/* Publishes the size of snap (names, records, zones) and the load time for /metrics. */
void vd_srv_note_data(vd_server *srv, const vd_snapshot *snap);
/* The worker's forwarder and resolver for /metrics: hold swap_lock (vd_srv_swap_lock) while
 * reading them, since a reload may replace them. */
void vd_srv_swap_lock(vd_server *srv);
void vd_srv_swap_unlock(vd_server *srv);
/* Starts the HTTP endpoint when cfg asks for one; 0 or -errno with err set. */
int vd_srv_http_start(vd_server *srv, const vd_config *cfg, vd_error *err);
/* Stops the HTTP endpoint (before any worker stops); safe when it never started. */
void vd_srv_http_stop(vd_server *srv);
/* The forwarder's own counters, under their names in the counter table. */
void vd_srv_take_forwarder_counters(vd_counters *c, const vd_forwarder *f);
/* The resolver's own counters, under their names in the counter table (counters.h). */
void vd_srv_take_resolver_counters(vd_counters *c, const vd_resolver *r);
/* The worker's heartbeat timer for /health (only with the HTTP endpoint); 0 or -errno. */
int vd_srv_worker_heartbeat_init(vd_worker *w);
/* Starts the heartbeat on the worker's own loop. */
void vd_srv_worker_heartbeat_start(vd_worker *w);

#endif
