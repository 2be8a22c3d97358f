/* counters.h — every counter the server reports, in one table. Each row gives the counter's
 * name (snake_case; the key in the server_stop log line, and the name a metrics endpoint
 * exports: never rename one), its kind and a one-line help text. From the table come the
 * worker's counter struct (vd_counters: one uint64_t per row, in its query env), the sum
 * over the workers (vd_counters_add) and the server_stop line (server.c). A new counter is a
 * new row plus the line that increments it.
 *
 * Most rows are counted by the worker itself (query.c, chase.c, udp.c, tcp.c). The rows of the
 * resolver, the forwarder and the shared answer cache are each module's own counters, copied
 * in under these names when the worker stops (server.c).
 *
 * Two rows look alike. servfail_answers is the query path's count: client queries it answered
 * SERVFAIL itself or with a SERVFAIL it got back at once (no upstream configured, a client
 * over max_pending_per_client, a SERVFAIL kept in the cache, the resolver's immediate
 * SERVFAIL) and every CNAME chase that ended in SERVFAIL, even after waiting. A forwarded
 * query's SERVFAIL that arrives later is not in it. resolver_servfails is the resolver's
 * count: SERVFAILs it made or relayed for a question past the cache with nothing stale to
 * give (upstream timeout or failure, an upstream SERVFAIL, the upstream budget), for client
 * questions and CNAME hops alike. The resolver's immediate SERVFAIL counts in both.
 *
 * Not thread-safe: a worker's struct is its own thread's, summed after the threads are
 * joined. */
#ifndef VPCDNS_COUNTERS_H
#define VPCDNS_COUNTERS_H

#include <stdint.h>

/* The kinds of counter. */
#define VD_COUNTER_TOTAL 0 /* only goes up */
#define VD_COUNTER_GAUGE 1 /* a level when it was read (the sum over workers for workers') */

/* X(name, kind, help) for each counter, in the order the server_stop line lists them. */
#define VD_COUNTERS(X)                                                                             \
        /* the query path (query.c, chase.c) */                                                    \
        X(queries, VD_COUNTER_TOTAL,                                                               \
          "queries from allowed clients, over UDP and TCP, well-formed or not")                    \
        X(local_answers, VD_COUNTER_TOTAL,                                                         \
          "queries answered from local data or a special-use name (localhost.)")                   \
        X(cache_answers, VD_COUNTER_TOTAL,                                                         \
          "queries answered at once by the resolver: from the cache or stale data")                \
        X(forwarded, VD_COUNTER_TOTAL,                                                             \
          "queries handed to the resolver to answer later (upstream)")                             \
        X(dropped, VD_COUNTER_TOTAL,                                                               \
          "queries not answered at all (responses, unreadable headers)")                           \
        X(formerr, VD_COUNTER_TOTAL, "queries answered FORMERR")                                   \
        X(servfail_answers, VD_COUNTER_TOTAL,                                                      \
          "queries answered SERVFAIL without a forwarded reply (no upstream, pending limit, "      \
          "cached or immediate resolver SERVFAIL) or by a failed CNAME chase")                     \
        X(forward_denied, VD_COUNTER_TOTAL,                                                        \
          "queries answered SERVFAIL because the client had max_pending_per_client upstream")      \
        X(view_refused, VD_COUNTER_TOTAL,                                                          \
          "queries for a view's endpoint names from clients outside every view, answered "         \
          "REFUSED")                                                                               \
        /* the transports (udp.c, tcp.c) */                                                        \
        X(udp_send_dropped, VD_COUNTER_TOTAL,                                                      \
          "UDP responses not sent: the socket buffer was full")                                    \
        X(udp_errors, VD_COUNTER_TOTAL,                                                            \
          "UDP receive or send errors, and datagrams too large to be a query")                     \
        X(tcp_accepted, VD_COUNTER_TOTAL, "TCP connections accepted")                              \
        X(tcp_rejected, VD_COUNTER_TOTAL,                                                          \
          "TCP connections closed at once: over tcp_max_connections")                              \
        X(tcp_idle_closed, VD_COUNTER_TOTAL, "TCP connections closed after tcp_idle_timeout_ms")   \
        X(tcp_slow_closed, VD_COUNTER_TOTAL,                                                       \
          "TCP connections closed because the client did not read its answers")                    \
        X(tcp_client_rejected, VD_COUNTER_TOTAL,                                                   \
          "TCP connections closed at once: over tcp_max_connections_per_client")                   \
        X(tcp_query_limit_closed, VD_COUNTER_TOTAL,                                                \
          "TCP connections closed after tcp_max_queries_per_connection queries")                   \
        X(acl_refused, VD_COUNTER_TOTAL, "queries from clients outside allow answered REFUSED")    \
        X(acl_dropped, VD_COUNTER_TOTAL,                                                           \
          "datagrams dropped and TCP connections closed for clients outside allow")                \
        X(rrl_dropped, VD_COUNTER_TOTAL, "UDP responses over the rate limit, not sent")            \
        X(rrl_slipped, VD_COUNTER_TOTAL, "UDP responses over the rate limit, sent as an empty TC") \
        /* the query log (qlog.c), counted by the transports */                                    \
        X(query_log_dropped, VD_COUNTER_TOTAL,                                                     \
          "query log entries dropped: the worker's ring was full (the writer fell behind)")        \
        /* the resolver (resolve.c) */                                                             \
        X(cache_hits, VD_COUNTER_TOTAL, "resolver questions answered from the cache")              \
        X(cache_misses, VD_COUNTER_TOTAL, "resolver questions the cache could not answer")         \
        X(stale_answers, VD_COUNTER_TOTAL, "answers from expired cache entries (serve-stale)")     \
        X(merged, VD_COUNTER_TOTAL, "questions that joined an upstream query already in flight")   \
        X(prefetches, VD_COUNTER_TOTAL, "background refreshes of popular cache entries started")   \
        X(resolver_servfails, VD_COUNTER_TOTAL,                                                    \
          "SERVFAILs the resolver made or relayed past the cache, with nothing stale to give "     \
          "(timeouts, upstream failures and SERVFAIL, the upstream budget; CNAME hops included)")  \
        /* the answer cache (cache.c), shared by every worker: read once */                        \
        X(cache_stores, VD_COUNTER_TOTAL, "answers stored in the cache")                           \
        X(cache_evictions, VD_COUNTER_TOTAL, "cache entries evicted to make room")                 \
        X(cache_entries, VD_COUNTER_GAUGE, "entries in the cache")                                 \
        /* the forwarder (forward.c) */                                                            \
        X(upstream_queries, VD_COUNTER_TOTAL,                                                      \
          "queries sent upstream (retries and probes included)")                                   \
        X(upstream_timeouts, VD_COUNTER_TOTAL, "upstream queries a server did not answer in time") \
        X(upstream_failures, VD_COUNTER_TOTAL,                                                     \
          "upstream queries that got no usable answer at all")                                     \
        X(budget_refused, VD_COUNTER_TOTAL, "upstream queries not sent: over upstream_max_qps")    \
        X(mismatches, VD_COUNTER_TOTAL,                                                            \
          "upstream datagrams dropped: wrong source, ID, question or letter case")                 \
        X(failovers, VD_COUNTER_TOTAL, "upstream queries moved on to another server")              \
        X(servers_down, VD_COUNTER_GAUGE,                                                          \
          "upstream servers avoided: failed since their last answer")

/* Counting while another thread reads (a metrics scrape): every counter has one writer, its
 * own thread, which adds with a relaxed load and store — a plain increment in the machine
 * code, no locked instruction, no read-modify-write — and readers load it relaxed, so they
 * see a recent value and never a torn one. ThreadSanitizer knows these builtins. */
static inline void vd_count_add(uint64_t *c, uint64_t n)
{
        __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline uint64_t vd_count_read(const uint64_t *c)
{
        return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* A gauge's new level, by its one writer. */
static inline void vd_count_set(uint64_t *c, uint64_t v)
{
        __atomic_store_n(c, v, __ATOMIC_RELAXED);
}

/* One worker's counters (and, summed, the server's). */
typedef struct vd_counters {
#define VD_COUNTER_FIELD(name, kind, help) uint64_t name;
        VD_COUNTERS(VD_COUNTER_FIELD)
#undef VD_COUNTER_FIELD
} vd_counters;

/* sum += c, counter by counter. */
static inline void vd_counters_add(vd_counters *sum, const vd_counters *c)
{
#define VD_COUNTER_ADD(name, kind, help) sum->name += c->name;
        VD_COUNTERS(VD_COUNTER_ADD)
#undef VD_COUNTER_ADD
}

#endif
