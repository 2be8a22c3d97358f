/* cache_answer.c — the lookups of the cache: finds an entry under its shard's lock, decides
 * whether it is served (fresh, SERVFAIL kept alongside, or stale), claims prefetches, and
 * writes the response: a copy of the stored records with every TTL counted down. Must not:
 * allocate, or change an entry other than its LRU place and its prefetch flag. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cache_int.h"
#include "vpcdns/cache.h"
#include "vpcdns/wire.h"

/* Seconds left of an entry's lifetime, or -1 when expired. */
static int64_t remaining(const struct entry *e, uint64_t now_ms)
{
        uint64_t elapsed_ms = now_ms > e->stored_ms ? now_ms - e->stored_ms : 0;
        if (elapsed_ms >= (uint64_t)e->ttl * 1000)
                return -1;
        return (int64_t)e->ttl - (int64_t)(elapsed_ms / 1000);
}

/* The shard of qi's key and, under its lock (taken here; the caller unlocks), qi's entry. */
static struct entry *lock_and_find(vd_cache *c, const vd_query_info *qi, struct shard **sh_out)
{
        uint64_t hash =
            key_hash(c, qi->qname_lower, qi->qname_len, qi->qtype, qi->qclass, qi->edns_do);
        struct shard *sh = shard_of(c, hash);
        *sh_out = sh;
        uv_mutex_lock(&sh->lock);
        return vd_cache_find(sh, hash, qi->qname_lower, qi->qname_len, qi->qtype, qi->qclass,
                             qi->edns_do);
}

/* Whether a lookup at now_ms claims fresh entry e for a prefetch: once per stored entry, in
 * the last 10 % of its lifetime. Under the shard's lock. */
static bool claim_prefetch(struct entry *e, uint64_t now_ms)
{
        if (e->prefetched || e->rcode == VD_RCODE_SERVFAIL)
                return false;
        uint64_t life = (uint64_t)e->ttl * 1000;
        uint64_t elapsed = now_ms > e->stored_ms ? now_ms - e->stored_ms : 0;
        if (elapsed >= life || (life - elapsed) * 10 >= life)
                return false; /* expired, or more than 10 % of its lifetime left */
        e->prefetched = true;
        return true;
}

/* Writes the response for entry e to qi: rcode, and unless bare, e's records with every TTL
 * set to ttl. When they do not all fit, the authority records go first (RFC 2181 §9) — unless
 * they are the DNSSEC proofs a DO client needs (RFC 4035 §3.1.1) or the SOA of a negative
 * answer (RFC 2308 §5) — and TC is set only when
 * what must be sent does not fit: then no records at all. Returns the length, or 0 when even
 * a bare response does not fit. */
static size_t write_response(const struct entry *e, const vd_query_info *qi, uint8_t rcode,
                             bool bare, uint32_t ttl, size_t max_len, uint8_t *out, size_t cap)
{
        size_t limit = max_len < cap ? max_len : cap;
        size_t opt_len = qi->has_edns ? 11 : 0;
        if (limit <= opt_len)
                return 0;
        size_t len = vd_wire_begin_response(qi, rcode, out, limit - opt_len);
        if (len == 0)
                return 0;

        uint16_t flags = vd_wire_get16(out + 2);
        size_t space = limit - opt_len - len;
        size_t copy = 0;
        uint16_t nscount = 0;
        if (!bare && e->ad && (qi->edns_do || (qi->flags & VD_FLAG_AD)))
                flags |= VD_FLAG_AD;
        if (bare) {
                /* header and question only */
        } else if (e->data_len <= space) {
                copy = e->data_len;
                nscount = e->nscount;
        } else if (e->an_len <= space && !e->dnssec_ok && e->ancount > 0) {
                copy = e->an_len;
        } else {
                flags |= VD_FLAG_TC;
        }
        if (copy > 0) {
                uint8_t *base = out + len;
                memcpy(base, entry_data((struct entry *)e), copy);
                for (size_t i = 0; i < e->nrecords && e->meta[i] < copy; i++)
                        vd_wire_put32(base + e->meta[i], ttl);
                len += copy;
        }
        if (!bare && !(flags & VD_FLAG_TC)) {
                vd_wire_put16(out + 6, e->ancount);
                vd_wire_put16(out + 8, nscount);
        }
        vd_wire_put16(out + 2, flags);
        return vd_wire_add_opt(qi, rcode, out, len, limit);
}

size_t vd_cache_lookup_prefetch(vd_cache *c, const vd_query_info *qi, uint64_t now_ms,
                                size_t max_len, uint8_t *out, size_t cap, bool *prefetch)
{
        if (prefetch != NULL)
                *prefetch = false;
        if (c == NULL || qi == NULL || out == NULL || !qi->question_ok)
                return 0;
        struct shard *sh;
        struct entry *e = lock_and_find(c, qi, &sh);
        size_t len = 0;
        if (e != NULL && c->opt.max_entries > 0) {
                int64_t left = remaining(e, now_ms);
                if (left >= 0)
                        len = write_response(e, qi, e->rcode, false, (uint32_t)left, max_len, out,
                                             cap);
                else if (e->servfail_until > now_ms)
                        len = write_response(e, qi, VD_RCODE_SERVFAIL, true, 0, max_len, out, cap);
        }
        if (len == 0) {
                sh->counters.misses++;
        } else {
                vd_cache_lru_touch(sh, e);
                sh->counters.hits++;
                if (prefetch != NULL && remaining(e, now_ms) >= 0)
                        *prefetch = claim_prefetch(e, now_ms);
        }
        uv_mutex_unlock(&sh->lock);
        return len;
}

size_t vd_cache_lookup(vd_cache *c, const vd_query_info *qi, uint64_t now_ms, size_t max_len,
                       uint8_t *out, size_t cap)
{
        return vd_cache_lookup_prefetch(c, qi, now_ms, max_len, out, cap, NULL);
}

size_t vd_cache_lookup_stale(vd_cache *c, const vd_query_info *qi, uint64_t now_ms,
                             unsigned stale_max_s, size_t max_len, uint8_t *out, size_t cap)
{
        if (c == NULL || qi == NULL || out == NULL || !qi->question_ok || stale_max_s == 0 ||
            c->opt.max_entries == 0)
                return 0;
        struct shard *sh;
        struct entry *e = lock_and_find(c, qi, &sh);
        size_t len = 0;
        if (e != NULL && e->rcode != VD_RCODE_SERVFAIL) {
                uint64_t expires = e->stored_ms + (uint64_t)e->ttl * 1000;
                /* Only once expired (a fresh one vd_cache_lookup serves) and not too old. */
                if (now_ms >= expires && now_ms - expires <= (uint64_t)stale_max_s * 1000)
                        len = write_response(e, qi, e->rcode, false, STALE_TTL, max_len, out, cap);
                if (len > 0)
                        vd_cache_lru_touch(sh, e);
        }
        uv_mutex_unlock(&sh->lock);
        return len;
}
