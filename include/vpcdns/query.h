/* query.h — one client query's pipeline: parse → local data (a CNAME chain that leaves it is
 * followed on, chase.h) → special-use names (special.h) → the resolver, independent of the
 * transport. The transports (udp.c, tcp.c) hand in the bytes and the client that sent them,
 * and get back either a response to send now, nothing to send, or a promise that reply()
 * will be called once later. Runs on one worker's loop; the env belongs to that worker
 * (what it points at may be shared: the pending table, the server's loop probe). */
#ifndef VPCDNS_QUERY_H
#define VPCDNS_QUERY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcdns/counters.h"
#include "vpcdns/forward.h"
#include "vpcdns/ratelimit.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/stats.h"

/* The forwarding-loop probe. At start-up the server sends a query for a unique name
 * (<16 hex digits>.vpcdns-loop-check.invalid.) to the upstreams; when that name reaches one
 * of our own listeners, the upstreams send our queries back to us. The server owns its probe
 * and arms it before the query leaves; every worker's env points at it, and vd_query_handle
 * answers a question for the armed name REFUSED (so that the loop ends there) and marks the
 * probe seen, on whichever worker thread gets it. */
#define VD_LOOP_PROBE_SUFFIX "vpcdns-loop-check.invalid."
#define VD_LOOP_PROBE_HEX 16

typedef struct vd_loop_probe {
        uint8_t name[VD_NAME_MAX]; /* lower-cased wire name; written only while not armed */
        size_t len;
        _Atomic bool armed; /* name is final: workers may compare it */
        _Atomic bool seen;  /* set by whichever worker thread receives the name */
} vd_loop_probe;

/* Arms p once its name is written: 0, or -EINVAL when the name is not a probe name's length.
 * Clears seen. */
int vd_loop_probe_arm(vd_loop_probe *p);
/* The check is over: the name is an ordinary name again. Idempotent. */
void vd_loop_probe_disarm(vd_loop_probe *p);

/* Per-worker state of the query pipeline. */
typedef struct vd_query_env {
        const vd_snapshot *snapshot;  /* borrowed; may be NULL (no local data) */
        vd_forwarder *forwarder;      /* borrowed; may be NULL: only its rules are asked here */
        struct vd_cache *cache;       /* borrowed; unused here: the resolver holds the cache */
        struct vd_resolver *resolver; /* borrowed; may be NULL (no upstream: SERVFAIL) */
        uv_loop_t *loop;              /* the worker's loop: its clock dates cache entries */
        uint32_t rotation;            /* advances per answer: RRset rotation */
        /* Forwarded queries pending per client address, in the table every worker shares
         * (borrowed; NULL: unlimited). A query about to go upstream is counted against its
         * client there, and answered SERVFAIL instead when the client already has
         * max_pending; a local answer or a cache hit never takes the table's lock. */
        vd_ratelimit_pending *pending;
        unsigned max_pending;
        vd_loop_probe *loop_probe; /* the server's (borrowed); NULL: no check */
        vd_counters counters;      /* the worker's: the transports count theirs here too */
        /* Labelled statistics (stats.h), the worker's. vd_query_handle counts every query and
         * every response it returns now; a transport counts the reply that comes later. */
        vd_stats stats;
        bool stats_stale; /* scratch for one vd_query_handle: the resolver answered stale */
        /* When the last query handed to vd_query_handle arrived (vd_stats_now_ns): a transport
         * keeps it with a VD_QUERY_PENDING query to time the reply. */
        uint64_t stats_start_ns;
        /* AZ affinity of endpoint answers: the mode, and the clients' AZ (borrowed from the
         * server; NULL or "": each client's by the snapshot's subnets). */
        vd_az_affinity az_affinity;
        const char *az;
} vd_query_env;

/* Who sent one query, as the transport knows it, and what the query took from env->pending:
 * the transport fills addr and vd_query_handle sets pending_slot. */
typedef struct vd_query_client {
        const struct sockaddr *addr; /* NULL: the query counts against no client */
        /* Out: the client's slot in env->pending when the query went upstream counted
         * (VD_QUERY_PENDING only); the transport gives it back with
         * vd_ratelimit_pending_dec(env->pending, slot) once the reply ran. Otherwise -1:
         * nothing to give back (a count taken for a query answered after all is returned
         * before vd_query_handle returns). */
        int pending_slot;
} vd_query_client;

typedef enum vd_query_outcome {
        VD_QUERY_REPLY = 0, /* send out[0..*out_len) now */
        VD_QUERY_DROP,      /* send nothing */
        VD_QUERY_PENDING,   /* reply(reply_arg, ...) will be called exactly once later */
} vd_query_outcome;

/* Handles one query from client (may be NULL: counted against nobody). tcp selects the size
 * limit (65535 instead of the client's UDP limit). out must hold at least VD_TCP_MAX bytes
 * for TCP and VD_UDP_PAYLOAD for UDP. */
vd_query_outcome vd_query_handle(vd_query_env *env, vd_query_client *client, const uint8_t *pkt,
                                 size_t len, bool tcp, uint8_t *out, size_t out_cap,
                                 size_t *out_len, vd_reply_fn reply, void *reply_arg);

/* For the pipeline's own steps (query.c, chase.c), once per query and only when it is about
 * to go upstream: counts the query against client in env->pending (client->pending_slot) and
 * says whether it may go; false when the client already has env->max_pending (the caller
 * answers SERVFAIL and counts forward_denied). True without a table or a client. */
bool vd_query_may_forward(vd_query_env *env, vd_query_client *client);

/* The answer to a client the access list denies (deny_action refuse), for both transports:
 * REFUSED with the question when the message parses as a query, written to out; 0 when
 * nothing should be sent (a response, or garbage that would earn FORMERR). Touches no env:
 * a denied client's query never enters the pipeline. */
size_t vd_query_refused(const uint8_t *pkt, size_t len, uint8_t *out, size_t cap);

#endif
