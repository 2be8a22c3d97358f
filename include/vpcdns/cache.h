/* cache.h — the process's cache of upstream answers (RFC 1035 §7.4, RFC 2308, RFC 9520).
 *
 * Keyed on the lower-cased question name, type, class and the client's DO bit. An entry holds
 * only the records on the question's own chain — the answer-section records owned by the
 * question name and by each CNAME target along the chain, and for a negative answer the SOA
 * of the authority section — never the extra records an upstream adds for other names. TTLs
 * count down in served answers; entries are bounded by max_entries with LRU eviction.
 * Thread-safe: one cache serves every worker. It is split into lock-striped shards; a store
 * does its parsing and allocation before it takes a shard's lock, a lookup holds the lock only
 * to write its response. Lookups never allocate. */
#ifndef VPCDNS_CACHE_H
#define VPCDNS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcdns/common.h"
#include "vpcdns/wire.h"

typedef struct vd_cache vd_cache;

typedef struct vd_cache_options {
        size_t max_entries;    /* for the whole cache; default 100000; 0 disables the cache */
        uint32_t min_ttl;      /* clamp, seconds; default 0 */
        uint32_t max_ttl;      /* clamp for positive answers; default 86400 */
        uint32_t max_neg_ttl;  /* clamp for NXDOMAIN/NODATA (RFC 2308 §5); default 3600 */
        uint32_t servfail_ttl; /* SERVFAIL kept this long (RFC 9520 §3.2); default 5; 0 = never */
} vd_cache_options;

void vd_cache_options_default(vd_cache_options *o);

int vd_cache_new(const vd_cache_options *o, vd_cache **out);
/* Changes the TTL clamps of a cache in use (a reload), any thread while workers store; they
 * apply to answers stored from then on. max_entries is not read: the size needs a new cache. */
void vd_cache_set_ttls(vd_cache *c, const vd_cache_options *o);
void vd_cache_free(vd_cache *c);

/* Stores an upstream answer to qi's question (already checked to match it: QR, opcode, the
 * question). NOERROR with records on the chain → positive entry, TTL = smallest TTL of the kept
 * records; NXDOMAIN, or NOERROR without an answer for the type → negative entry with TTL
 * min(SOA TTL, SOA MINIMUM) (RFC 2308 §5), not cached without an SOA; SERVFAIL → servfail_ttl;
 * other rcodes, TC answers and malformed messages are not stored. Replaces an existing entry.
 * now_ms is a monotonic clock in milliseconds. Returns 0 when stored, a negative code when
 * not cacheable. */
int vd_cache_store(vd_cache *c, const vd_query_info *qi, const uint8_t *answer, size_t len,
                   uint64_t now_ms);

/* Answers qi from the cache into out (cap octets; the client accepts max_len): the client's ID,
 * RD and question as sent, RA set, AA clear, the cached rcode and records with their TTLs
 * counted down to the remaining lifetime, an OPT when the client sent EDNS, TC with no records
 * when over max_len. Returns the response length, or 0 on a miss (absent or expired). */
size_t vd_cache_lookup(vd_cache *c, const vd_query_info *qi, uint64_t now_ms, size_t max_len,
                       uint8_t *out, size_t cap);

/* Serve-stale (RFC 8767): like vd_cache_lookup, for an entry that expired at most stale_max_s
 * seconds ago; every TTL in the response is 30. Returns the length, or 0 when there is none. */
size_t vd_cache_lookup_stale(vd_cache *c, const vd_query_info *qi, uint64_t now_ms,
                             unsigned stale_max_s, size_t max_len, uint8_t *out, size_t cap);

/* vd_cache_lookup that also claims the entry for a prefetch: *prefetch is set true for one
 * lookup process-wide per stored entry, the first that finds it fresh but in the last 10 % of
 * its TTL; the caller then refreshes it in the background. prefetch may be NULL (no claim). */
size_t vd_cache_lookup_prefetch(vd_cache *c, const vd_query_info *qi, uint64_t now_ms,
                                size_t max_len, uint8_t *out, size_t cap, bool *prefetch);

typedef struct vd_cache_counters {
        uint64_t hits;
        uint64_t misses;
        uint64_t stores;
        uint64_t evictions;
        size_t entries;
} vd_cache_counters;
/* Sums every shard's counters (takes each shard's lock in turn). */
void vd_cache_counters_get(const vd_cache *c, vd_cache_counters *out);

#endif
