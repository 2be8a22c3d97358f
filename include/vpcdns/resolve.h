/* resolve.h — the layer between the query pipeline and the forwarder for names without local
 * data: the answer cache, merging of identical questions in flight into one upstream query,
 * serve-stale (RFC 8767) and prefetch. One resolver per worker loop; a resolver is used only
 * on its loop's thread. Resolvers on several loops share the cache and, through a vd_inflight
 * registry, their upstream queries: one query per question at a time for the whole process.
 *
 * A question is answered from a fresh cache entry at once (a hit in the last 10 % of its TTL
 * also starts a background refresh). Otherwise it waits for the one upstream query of its key
 * (name, type, class, DO); when that answers, the answer is stored and relayed to every waiter
 * with its own ID, letter case, EDNS and size limit (vd_forward_relay). When every upstream
 * fails or times out, or the upstream budget refuses, waiters get an expired entry no older
 * than stale_max_s (TTL 30) or SERVFAIL; when the upstream is slower than stale_answer_ms and
 * a stale entry exists, waiters get it then and the query keeps going to refresh the cache. */
#ifndef VPCDNS_RESOLVE_H
#define VPCDNS_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vpcdns/cache.h"
#include "vpcdns/forward.h"
#include "vpcdns/query.h"

typedef struct vd_resolver vd_resolver;

/* The process-wide registry of upstream queries in flight, keyed like the flights (name, type,
 * class, DO, CD). A resolver given one asks the upstream only when no resolver on any thread
 * has the key in flight; otherwise its question waits for that query's outcome, which the
 * owning resolver hands over (its loop wakes through a uv_async_t). Thread-safe (striped
 * mutexes). Free it after every resolver that uses it is freed (their loops have ended). */
typedef struct vd_inflight vd_inflight;
int vd_inflight_new(vd_inflight **out);
void vd_inflight_free(vd_inflight *t);

typedef struct vd_resolver_options {
        unsigned stale_max_s;     /* default 3600; 0 = never serve stale */
        unsigned stale_answer_ms; /* default 1800 */
        bool prefetch;            /* default true */
        vd_inflight *inflight;    /* borrowed; default NULL: merging within this resolver */
} vd_resolver_options;

void vd_resolver_options_default(vd_resolver_options *o);

/* fwd and cache are borrowed (either may be NULL: no upstream → SERVFAIL; no cache → every
 * question goes upstream, still merged). The cache may be shared with resolvers on other
 * threads. */
int vd_resolver_new(uv_loop_t *loop, vd_forwarder *fwd, vd_cache *cache,
                    const vd_resolver_options *o, vd_resolver **out);

/* Answers qi (its packet may be freed after return; copy what is kept). VD_QUERY_REPLY: the
 * response is in out (cap octets; the client accepts max_len). VD_QUERY_PENDING: reply(arg,
 * ...) will be called exactly once, never from inside this call (len 0 when closing). */
vd_query_outcome vd_resolver_query(vd_resolver *r, const vd_query_info *qi, size_t max_len,
                                   uint8_t *out, size_t cap, size_t *out_len, vd_reply_fn reply,
                                   void *arg);

/* The two halves of vd_resolver_query, for a caller with work to do between them (the
 * per-client pending check, which a cache hit does not need): from_cache answers from the
 * cache (serve-stale for a kept SERVFAIL, prefetch near expiry) and returns true, or returns
 * false; query_upstream then starts or joins the upstream query. */
bool vd_resolver_from_cache(vd_resolver *r, const vd_query_info *qi, size_t max_len, uint8_t *out,
                            size_t cap, size_t *out_len);
vd_query_outcome vd_resolver_query_upstream(vd_resolver *r, const vd_query_info *qi, size_t max_len,
                                            uint8_t *out, size_t cap, size_t *out_len,
                                            vd_reply_fn reply, void *arg);

/* Every waiter's reply runs with len 0, timers close; questions of other resolvers that wait
 * for this one's upstream queries get -ECANCELED (then stale or SERVFAIL). The resolver frees
 * itself once libuv has closed its handles. Close it before the forwarder and the cache it
 * borrows; resolvers sharing a registry may close concurrently on their own threads. */
void vd_resolver_close(vd_resolver *r);

typedef struct vd_resolver_counters {
        uint64_t cache_hits;
        uint64_t cache_misses;
        uint64_t stale_answers;
        uint64_t merged;     /* questions that joined a query already in flight */
        uint64_t prefetches; /* background refreshes started */
        uint64_t servfails;  /* no answer and nothing stale */
} vd_resolver_counters;
/* Any thread while r is open (the counters are single-writer, read relaxed). */
void vd_resolver_counters_get(const vd_resolver *r, vd_resolver_counters *out);

#endif
