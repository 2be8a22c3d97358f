/* forward_int.h — the forwarder's state, shared by its query lifecycle (forward.c) and its
 * c-ares/libuv glue (forward_ares.c); nothing else includes it. The selection, rules, random
 * and relay parts have their own headers and know none of this.
 *
 * Ownership: the forwarder owns its servers, their channels, the socket watches, the queries
 * (live on f->queries until freed, recycled through a small free list) and every libuv handle;
 * handle memory is freed only from close callbacks, the forwarder itself once the last handle
 * has closed after vd_forwarder_close. */
#ifndef VPCDNS_FORWARD_INT_H
#define VPCDNS_FORWARD_INT_H

#include <ares.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vpcdns/forward.h"
#include "vpcdns/forward_budget.h"
#include "vpcdns/forward_select.h"

#include "forward_random.h"
#include "forward_rules.h"

#define VD_FWD_MAX_ATTEMPTS 12 /* sends per query: tries, failovers and probes */

struct fwd_query;
struct attempt;

/* One c-ares channel with one server: its own UDP socket, so its own source port. */
struct channel {
        vd_forwarder *f;
        struct server *srv;
        ares_channel ch;
        bool live;
        unsigned inflight;     /* sends on this channel whose callback has not run */
        struct attempt *sends; /* those sends, linked through chan_prev/chan_next */
        bool capturing;        /* inside our ares_send: note the ID that goes out */
        bool captured;
        uint16_t captured_id;
};

struct server {
        vd_addr addr;
        struct channel *chans;
        unsigned n_chans;
        vd_fwd_health health;
        vd_fwd_bucket bucket;            /* without a shared budget */
        vd_upstream_budget_slot *shared; /* this address's bucket in the shared budget, or NULL */
        vd_forward_server_stats stats;   /* read live by the metrics thread (counters.h) */
};

/* One query handed to c-ares. */
struct attempt {
        struct fwd_query *q;
        struct channel *chan;
        size_t pos;                            /* index in q->list */
        struct attempt *chan_prev, *chan_next; /* chan->sends, while pending */
        uint64_t sent_ns;
        uint16_t id;   /* the ID on the wire, once id_known */
        bool id_known; /* answers are matched only once the ID is known */
        bool pending;  /* the c-ares callback has not run */
        bool sending;  /* inside the send call: a callback now is a synchronous failure */
        bool sync_failed;
        int sync_status;
        bool is_probe;        /* sent to a dead server to see whether it is back */
        bool timeout_counted; /* its per-try deadline passed */
        uint8_t *raw;         /* c-ares 1.28+: the last datagram that answered it, as received */
        size_t raw_len;
};

struct fwd_query {
        struct fwd_query *prev, *next; /* f->queries: every query not yet freed */
        vd_forwarder *f;
        uv_timer_t timer; /* data = this query */
        vd_upstream_fn done;
        void *arg;
        const vd_fwd_server_list *list;
        uint64_t deadline_ms; /* the budget */
        uint64_t try_deadline_ms;
        int cur; /* the send the per-try deadline watches, -1 none */
        unsigned n_att, pending;
        bool answered;     /* the callback has run (or never will) */
        bool timer_closed; /* the timer's close callback has run */
        uint8_t tries[VD_MAX_UPSTREAM];
        struct attempt att[VD_FWD_MAX_ATTEMPTS];
        vd_query_info qi; /* qi.qname points at qname below */
        uint8_t qname[VD_NAME_MAX];
        uint8_t sent[VD_NAME_MAX]; /* the name as sent upstream (0x20 case) */
};

struct sock_watch {
        struct sock_watch *next;
        struct channel *chan;
        ares_socket_t fd;
        int events;     /* what c-ares last asked for */
        uv_poll_t poll; /* data = this watch */
};

struct vd_forwarder {
        uv_loop_t *loop;
        vd_fwd_routes routes;
        struct server *servers; /* one per routes.addrs */
        size_t n_servers;
        unsigned budget_ms;
        unsigned max_qps;
        bool use_0x20;
        bool channels_live;
        uv_timer_t ares_timer; /* data = forwarder */
        struct sock_watch *watches;
        struct fwd_query *queries;
        struct fwd_query *freelist;
        size_t n_free;
        unsigned open_handles; /* handles initialised and not yet through their close cb */
        int depth;             /* > 0 while inside a call that may run c-ares callbacks */
        bool closing;
        bool destroy_deferred; /* vd_forwarder_close ran inside a c-ares callback */
        vd_forward_counters counters;
        struct vd_stats *stats;    /* RTT histograms (stats.h); NULL: none */
        struct vd_qlog_ring *qlog; /* the worker's, NULL when off (vd_forward_options) */
        uint64_t *qlog_dropped;
        vd_fwd_random random;
        uint8_t answer[VD_TCP_MAX]; /* upstream answer with the client's question case */
};

/* ---- forward_ares.c: c-ares and libuv ------------------------------------------------ */

/* Once per process. 0, or a negative code with err set. */
int vd_fwd_ares_library(vd_error *err);
/* n channels for s (its source ports). On failure the channels opened so far stay for
 * vd_fwd_channels_destroy. */
int vd_fwd_channels_open(vd_forwarder *f, struct server *s, unsigned n, vd_error *err);
/* Every channel's pending sends get their callback (ARES_EDESTRUCTION); sockets close. */
void vd_fwd_channels_destroy(vd_forwarder *f);
/* The c-ares timer handle (counted in open_handles). */
void vd_fwd_ares_timer_init(vd_forwarder *f);
/* Closes every socket watch and the c-ares timer. */
void vd_fwd_glue_close(vd_forwarder *f);
/* True when a send still waiting on the channel chan (a struct channel) has this ID. */
bool vd_fwd_id_in_use(const void *chan, uint16_t id);
/* Hands pkt to c-ares on a->chan. vd_fwd_on_answer(a, ...) runs exactly once, possibly from
 * inside this call. Sets a->id and a->id_known once the ID on the wire is known. */
void vd_fwd_ares_send(struct attempt *a, const uint8_t *pkt, size_t len);
void vd_fwd_chan_link(struct channel *c, struct attempt *a);
void vd_fwd_chan_unlink(struct channel *c, struct attempt *a);
/* Every entry point that may run c-ares or its callbacks is bracketed by enter/leave; leave
 * re-arms the c-ares timer, or finishes a close that was asked for inside a callback. */
void vd_fwd_enter(vd_forwarder *f);
void vd_fwd_leave(vd_forwarder *f);

/* ---- forward.c: queries and lifetime -------------------------------------------------- */

/* A send ended: status is a c-ares status; abuf/alen the answer on ARES_SUCCESS. */
void vd_fwd_on_answer(struct attempt *a, int status, const uint8_t *abuf, size_t alen);
/* The answer answers q's question: header, one uncompressed question with our name (exactly
 * as sent under 0x20, else in any case), type and class. */
bool vd_fwd_answer_matches(const struct fwd_query *q, const uint8_t *a, size_t len);
/* A handle's close callback ran. */
void vd_fwd_handle_closed(vd_forwarder *f);
/* Destroys the channels and closes every handle (outside any c-ares call). */
void vd_fwd_finish_close(vd_forwarder *f);

#endif
