/* query.h — one client query's pipeline: parse → local data (a CNAME chain that leaves it is
 * followed on, chase.h) → special-use names (special.h) → the resolver, independent of the
 * transport. The transports (udp.c, tcp.c) hand in bytes and get back either a response to
 * send now, nothing to send, or a promise that reply() will be called once later.
 * Runs on one worker's loop; the env belongs to that worker. */
#ifndef VPCDNS_QUERY_H
#define VPCDNS_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcdns/forward.h"
#include "vpcdns/snapshot.h"

typedef struct vd_query_counters {
        uint64_t queries;
        uint64_t local_answers;
        uint64_t cache_answers;
        uint64_t forwarded;
        uint64_t dropped;
        uint64_t formerr;
        uint64_t servfail;
        uint64_t forward_denied; /* SERVFAIL because the client had too many pending */
} vd_query_counters;

/* Per-worker state of the query pipeline. */
typedef struct vd_query_env {
        const vd_snapshot *snapshot;  /* borrowed; may be NULL (no local data) */
        vd_forwarder *forwarder;      /* borrowed; may be NULL: only its rules are asked here */
        struct vd_cache *cache;       /* borrowed; unused here: the resolver holds the cache */
        struct vd_resolver *resolver; /* borrowed; may be NULL (no upstream: SERVFAIL) */
        uv_loop_t *loop;              /* the worker's loop: its clock dates cache entries */
        uint32_t rotation;            /* advances per answer: RRset rotation */
        /* Asked once per query, and only when the query would go upstream (a local answer
         * never pays for it): false when this client may not start another upstream query
         * (SERVFAIL instead, or a cached answer). NULL: always allowed. */
        bool (*may_forward)(void *arg);
        void *may_forward_arg;
        vd_query_counters counters;
} vd_query_env;

typedef enum vd_query_outcome {
        VD_QUERY_REPLY = 0, /* send out[0..*out_len) now */
        VD_QUERY_DROP,      /* send nothing */
        VD_QUERY_PENDING,   /* reply(reply_arg, ...) will be called exactly once later */
} vd_query_outcome;

/* Handles one query. tcp selects the size limit (65535 instead of the client's UDP limit).
 * out must hold at least VD_TCP_MAX bytes for TCP and VD_UDP_PAYLOAD for UDP. */
vd_query_outcome vd_query_handle(vd_query_env *env, const uint8_t *pkt, size_t len, bool tcp,
                                 uint8_t *out, size_t out_cap, size_t *out_len, vd_reply_fn reply,
                                 void *reply_arg);

#endif
