/* forward.h — sends questions that local data does not answer to the upstream servers
 * through c-ares on a libuv loop (vd_forwarder_resolve), and turns an upstream answer into the
 * client's response (vd_forward_relay).
 *
 * One forwarder per worker loop; it is not thread-safe and never blocks. For every query it
 * accepts it calls the done callback exactly once, never from inside vd_forwarder_resolve().
 * Caching, merging of identical questions and serve-stale are the resolver's (resolve.h). */
#ifndef VPCDNS_FORWARD_H
#define VPCDNS_FORWARD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vpcdns/common.h"
#include "vpcdns/addr.h"
#include "vpcdns/wire.h"

typedef struct vd_forwarder vd_forwarder;

/* A response for a client, as the query pipeline hands it to a transport. resp is valid only
 * during the call. len 0: nothing to send (shutdown). source is where the answer came from, a
 * vd_stats_source (stats.h): the upstream, the cache (another waiter's flight already
 * answered), a stale entry, or an error made here. */
typedef void (*vd_reply_fn)(void *arg, const uint8_t *resp, size_t len, unsigned source);

/* A forwarding rule (like a Route 53 Resolver rule): names at or under domain go to servers;
 * the most specific rule wins. use_default sends them to the default upstreams instead (a
 * "system" rule carving a subdomain out of a broader rule). */
typedef struct vd_forward_rule {
        uint8_t domain[VD_NAME_MAX]; /* lower-cased wire name */
        size_t domain_len;
        bool use_default;
        vd_addr servers[VD_MAX_UPSTREAM];
        size_t n_servers;
} vd_forward_rule;

/* The process-wide upstream_max_qps budget: one token bucket per upstream address (max_qps
 * queries per second each, a burst of max(max_qps / 10, 1)), shared by the forwarders of every
 * worker. Thread-safe; only a send about to go upstream takes a token. Free it after every
 * forwarder that uses it has been closed. */
typedef struct vd_upstream_budget vd_upstream_budget;
int vd_upstream_budget_new(unsigned max_qps, vd_upstream_budget **out);
void vd_upstream_budget_free(vd_upstream_budget *b);

typedef struct vd_forward_options {
        const vd_addr *servers; /* the default upstreams; copied */
        size_t n_servers;
        const vd_forward_rule *rules; /* copied; may be NULL */
        size_t n_rules;
        vd_upstream_budget *budget; /* shared by the forwarders of the process; may be NULL */
        unsigned max_qps; /* without a budget: per upstream server, this forwarder's; 0 = none */
        unsigned ports_per_server; /* UDP source ports (sockets) in rotation per server; 0 = 16 */
        bool use_0x20;             /* random letter case upstream, verified on return */
        unsigned timeout_ms;       /* total budget per query, e.g. 2000 */
        /* The query log (qlog.h): the owning worker's ring, NULL when off; each query sent
         * upstream and each answer that matched it is put there, drops counted in
         * *qlog_dropped (the worker's counter: the forwarder runs on its thread). */
        struct vd_qlog_ring *qlog;
        uint64_t *qlog_dropped;
} vd_forward_options;

int vd_forwarder_new(uv_loop_t *loop, const vd_forward_options *opt, vd_forwarder **out,
                     vd_error *err);

/* Records the round trip of every answered send in stats (borrowed; must outlive the
 * forwarder), one RTT histogram per server labelled "ADDR:PORT". Before the loop runs. */
struct vd_stats;
void vd_forwarder_set_stats(vd_forwarder *f, struct vd_stats *stats);

/* Sends qi's question upstream (qi is copied; the packet may be freed after return). done gets
 * status 0 and the upstream's answer, already checked to answer qi's question (source address
 * and port, ID, question — and letter case under 0x20; SERVFAIL only when every server tried
 * said so, never REFUSED); -ECONNREFUSED when the servers tried answered REFUSED and none is
 * left; -ETIMEDOUT when no server answered within the budget; -ECANCELED when the forwarder
 * is closing; -EIO on other failures. done is
 * called exactly once, never from inside this call. Returns 0, or synchronously (done never
 * called): -EBUSY when every eligible server is over its max_qps budget, -ENOENT when no server
 * serves this name, -ENOMEM / -EAGAIN when the query cannot be started. */
typedef void (*vd_upstream_fn)(void *arg, int status, const uint8_t *answer, size_t len);
int vd_forwarder_resolve(vd_forwarder *f, const vd_query_info *qi, vd_upstream_fn done, void *arg);

/* True when an explicit rule (not use_default) covers qi's name: such a name is forwarded
 * even when local data holds it (a rule at or under a private zone beats the zone). */
bool vd_forwarder_rule_covers(const vd_forwarder *f, const vd_query_info *qi);

typedef struct vd_forward_counters {
        uint64_t upstream_queries; /* sent to a server (retries and probes included) */
        uint64_t timeouts;         /* a server did not answer in time */
        uint64_t failures;         /* queries that got no usable answer at all */
        uint64_t budget_refused;   /* -EBUSY: over max_qps */
        uint64_t mismatches;       /* datagrams dropped: wrong source, ID, question or case */
        uint64_t failovers;        /* a query moved on to another server */
        unsigned servers_down;     /* servers avoided: failed since their last answer */
} vd_forward_counters;
/* Any thread while f is open (single-writer counters, read relaxed). */
void vd_forwarder_counters_get(const vd_forwarder *f, vd_forward_counters *out);

/* One upstream server's counters. Written by the forwarder's thread (vd_count_add/set);
 * vd_forwarder_server_stats reads them from any thread while f is open. */
typedef struct vd_forward_server_stats {
        vd_addr addr;
        uint64_t queries;        /* sends to this server (retries and probes included) */
        uint64_t timeouts;       /* sends it did not answer in time */
        uint64_t failures;       /* sends that ended in an error other than a timeout */
        uint64_t mismatches;     /* datagrams from it dropped: ID, question or letter case */
        uint64_t budget_refused; /* sends not made: over its upstream_max_qps */
        uint64_t up;             /* 1 while it is not failing (answered since its last failure) */
} vd_forward_server_stats;
/* The number of upstream servers f knows (default and rules). */
size_t vd_forwarder_n_servers(const vd_forwarder *f);
/* Copies server i's counters into *out (any thread; i < vd_forwarder_n_servers). */
void vd_forwarder_server_stats(const vd_forwarder *f, size_t i, vd_forward_server_stats *out);

/* Cancels every pending query (their callbacks run with -ECANCELED), closes every handle and frees
 * the forwarder once libuv has closed them; the loop can then end. */
void vd_forwarder_close(vd_forwarder *f);

/* Builds the client's response from an upstream answer: checks that it answers qi's question
 * (ID not checked here), restores the client's ID and question case, replaces the upstream's
 * OPT with ours (or removes it for a client without EDNS), passes TTLs over 2^31 - 1 on as 0
 * (RFC 2181 §8), and when longer than max_len leaves out the additional section, then (for an
 * answer with records in its answer section) the authority section, and sets TC with no
 * records only when that is not enough (RFC 2181 §9); AA is cleared (we answer as a
 * recursive service). Returns the response
 * length, or 0 when the answer is malformed or does not match (the caller then answers SERVFAIL).
 * resolve.c builds every forwarded response with it; fuzzed by tests/fuzz/fuzz_relay.c. */
size_t vd_forward_relay(const vd_query_info *qi, const uint8_t *answer, size_t answer_len,
                        size_t max_len, uint8_t *out, size_t cap);

#endif
