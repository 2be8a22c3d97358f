/* cache.c — the process's cache of upstream answers, shared by every worker thread.
 *
 * This file owns the entry store: lock-striped shards, each a hash table + LRU list, their
 * creation, counters and teardown, and linking a new entry in (vd_cache_insert). Must not:
 * parse messages or write responses. Its parts: cache_store.c (the chain filter that decides
 * what of an upstream message is kept), cache_compress.c (writing the kept records, names
 * compressed) and cache_answer.c (the lookups and the response writer that serves an entry
 * with its TTLs counted down).
 *
 * It owns no sockets, timers or clocks (the caller passes now_ms) and never parses a byte
 * outside wire.h's bounded reader. Storing may allocate (one block per entry); looking up
 * never does.
 *
 * Concurrency: an entry lives in the shard its keyed hash picks; each shard has its own mutex,
 * its own LRU list, counters and share of max_entries. A store parses and filters the upstream
 * message into per-thread scratch space and allocates the entry before it takes the lock; under
 * the lock it only links the entry (and unlinks the one it replaces or evicts, freed after the
 * lock is let go). A lookup writes its response under the lock: a copy and a TTL per record,
 * no allocation. So a reader waits at most for another thread's link, unlink or copy.
 *
 * Entry layout (one malloc): struct entry, then one uint32_t per record (the offset of its TTL
 * field in the data), then the lower-cased key name, then the records exactly as they follow
 * the question in a response — answer-section records first, then authority-section ones.
 * They are name-compressed when stored: owners, and the names inside the rdata of the RFC 1035
 * types, point at the question name (at offset 12, the same length for every client asking
 * this key, so a pointer to it also echoes the client's letter case) and at earlier names;
 * other rdata names are written out in full. A lookup copies them and sets the TTLs. The
 * original TTL and the store time are kept so that serve-stale and prefetch can reason about
 * an entry's age.
 *
 * Serve-stale (RFC 8767): an expired entry stays until it is evicted or replaced, and
 * vd_cache_lookup_stale serves it (every TTL 30) while it is at most stale_max_s seconds past
 * its lifetime. A SERVFAIL must not destroy the data stale serving lives on, so a SERVFAIL
 * stored over a NOERROR/NXDOMAIN entry is kept *alongside* it: the old records stay, and the
 * entry carries a "servfail until" deadline. Until then vd_cache_lookup answers SERVFAIL for
 * the expired entry (RFC 9520: no upstream query for servfail_ttl seconds) — a still fresh
 * entry keeps answering with its records — while vd_cache_lookup_stale still serves the old
 * records. A SERVFAIL with no older entry (or over an older SERVFAIL) is a plain entry, which
 * is never served stale.
 *
 * Prefetch: a lookup that finds an entry fresh with less than 10 % of its lifetime left claims
 * it for a refresh when the caller asks (vd_cache_lookup_prefetch): the entry's flag is set
 * under the shard lock, so exactly one lookup process-wide is told to refresh it. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cache_int.h"
#include "vpcdns/siphash.h"
#include "vpcdns/cache.h"
#include "vpcdns/wire.h"

void vd_cache_options_default(vd_cache_options *o)
{
        o->max_entries = 100000;
        o->min_ttl = 0;
        o->max_ttl = 86400;
        o->max_neg_ttl = 3600;
        o->servfail_ttl = 5;
}

void vd_cache_set_ttls(vd_cache *c, const vd_cache_options *o)
{
        __atomic_store_n(&c->opt.min_ttl, o->min_ttl, __ATOMIC_RELAXED);
        __atomic_store_n(&c->opt.max_ttl, o->max_ttl, __ATOMIC_RELAXED);
        __atomic_store_n(&c->opt.max_neg_ttl, o->max_neg_ttl, __ATOMIC_RELAXED);
        __atomic_store_n(&c->opt.servfail_ttl, o->servfail_ttl, __ATOMIC_RELAXED);
}

int vd_cache_new(const vd_cache_options *o, vd_cache **out)
{
        vd_cache *c = calloc(1, sizeof(*c));
        if (c == NULL)
                return -ENOMEM;
        c->opt = *o;
        size_t n_shards = 1;
        while (n_shards < MAX_SHARDS && o->max_entries / (n_shards * 2) >= MIN_SHARD_ENTRIES)
                n_shards *= 2;
        c->shards = aligned_alloc(_Alignof(struct shard), n_shards * sizeof(*c->shards));
        if (c->shards == NULL) {
                free(c);
                return -ENOMEM;
        }
        memset(c->shards, 0, n_shards * sizeof(*c->shards));
        c->shard_mask = n_shards - 1;
        size_t i;
        for (i = 0; i < n_shards; i++) {
                struct shard *sh = &c->shards[i];
                /* Every shard's share, the remainder spread over the first ones: the shares
                 * add up to max_entries exactly. */
                sh->max_entries = o->max_entries / n_shards + (i < o->max_entries % n_shards);
                /* The bucket array starts small and doubles with the entries (up to one bucket
                 * per entry allowed): a cache holding a few thousand names keeps its buckets
                 * in a few pages, and a lookup does not miss the CPU cache on a sparse array. */
                size_t nb = 16;
                while (nb < sh->max_entries && nb < MAX_BUCKETS)
                        nb <<= 1;
                sh->max_buckets = nb;
                nb = nb < INITIAL_BUCKETS ? nb : INITIAL_BUCKETS;
                sh->buckets = calloc(nb, sizeof(*sh->buckets));
                if (sh->buckets == NULL || uv_mutex_init(&sh->lock) != 0) {
                        free(sh->buckets);
                        break;
                }
                sh->mask = nb - 1;
        }
        if (i < n_shards) {
                while (i-- > 0) {
                        uv_mutex_destroy(&c->shards[i].lock);
                        free(c->shards[i].buckets);
                }
                free(c->shards);
                free(c);
                return -ENOMEM;
        }
        uint64_t seed[2];
        vd_siphash_new_key(seed);
        c->seed0 = seed[0];
        c->seed1 = seed[1];
        *out = c;
        return 0;
}

void vd_cache_free(vd_cache *c)
{
        if (c == NULL)
                return;
        for (size_t i = 0; i <= c->shard_mask; i++) {
                struct shard *sh = &c->shards[i];
                struct entry *e = sh->lru_head;
                while (e != NULL) {
                        struct entry *next = e->lru_next;
                        free(e);
                        e = next;
                }
                free(sh->buckets);
                uv_mutex_destroy(&sh->lock);
        }
        free(c->shards);
        free(c);
}

void vd_cache_counters_get(const vd_cache *c, vd_cache_counters *out)
{
        memset(out, 0, sizeof(*out));
        for (size_t i = 0; i <= c->shard_mask; i++) {
                struct shard *sh = &c->shards[i];
                uv_mutex_lock(&sh->lock);
                out->hits += sh->counters.hits;
                out->misses += sh->counters.misses;
                out->stores += sh->counters.stores;
                out->evictions += sh->counters.evictions;
                out->entries += sh->counters.entries;
                uv_mutex_unlock(&sh->lock);
        }
}

/* --- hash table and LRU list: every function here runs under the shard's lock --- */

static void lru_unlink(struct shard *sh, struct entry *e)
{
        if (e->lru_prev != NULL)
                e->lru_prev->lru_next = e->lru_next;
        else
                sh->lru_head = e->lru_next;
        if (e->lru_next != NULL)
                e->lru_next->lru_prev = e->lru_prev;
        else
                sh->lru_tail = e->lru_prev;
        e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct shard *sh, struct entry *e)
{
        e->lru_prev = NULL;
        e->lru_next = sh->lru_head;
        if (sh->lru_head != NULL)
                sh->lru_head->lru_prev = e;
        sh->lru_head = e;
        if (sh->lru_tail == NULL)
                sh->lru_tail = e;
}

void vd_cache_lru_touch(struct shard *sh, struct entry *e)
{
        if (sh->lru_head == e)
                return;
        lru_unlink(sh, e);
        lru_push_front(sh, e);
}

struct entry *vd_cache_find(struct shard *sh, uint64_t hash, const uint8_t *name, size_t name_len,
                            uint16_t qtype, uint16_t qclass, bool dnssec_ok)
{
        for (struct entry *e = sh->buckets[hash & sh->mask]; e != NULL; e = e->hash_next) {
                if (e->hash == hash && e->key_len == name_len && e->qtype == qtype &&
                    e->qclass == qclass && e->dnssec_ok == dnssec_ok &&
                    memcmp(entry_key(e), name, name_len) == 0)
                        return e;
        }
        return NULL;
}

/* Moves every entry of the shard into buckets (nb chains, all empty) and installs it. Returns
 * the old array, which the caller frees after unlocking. */
static struct entry **rehash(struct shard *sh, struct entry **buckets, size_t nb)
{
        for (size_t i = 0; i <= sh->mask; i++) {
                struct entry *e = sh->buckets[i];
                while (e != NULL) {
                        struct entry *next = e->hash_next;
                        struct entry **b = &buckets[e->hash & (nb - 1)];
                        e->hash_next = *b;
                        *b = e;
                        e = next;
                }
        }
        struct entry **old = sh->buckets;
        sh->buckets = buckets;
        sh->mask = nb - 1;
        return old;
}

/* Doubles the shard's bucket array from old_size chains, allocating without the lock; does
 * nothing when another thread grew it meanwhile (or on failure: the chains get longer). */
static void grow_buckets(struct shard *sh, size_t old_size)
{
        size_t nb = old_size * 2;
        struct entry **buckets = calloc(nb, sizeof(*buckets));
        if (buckets == NULL)
                return;
        uv_mutex_lock(&sh->lock);
        if (sh->mask + 1 == old_size)
                buckets = rehash(sh, buckets, nb);
        uv_mutex_unlock(&sh->lock);
        free(buckets);
}

/* Takes e out of the shard; the caller frees it once the lock is let go. */
static void unlink_entry(struct shard *sh, struct entry *e)
{
        struct entry **pp = &sh->buckets[e->hash & sh->mask];
        while (*pp != e)
                pp = &(*pp)->hash_next;
        *pp = e->hash_next;
        lru_unlink(sh, e);
        sh->counters.entries--;
}

void vd_cache_insert(vd_cache *c, const vd_query_info *qi, struct entry *e, uint64_t now_ms)
{
        struct shard *sh = shard_of(c, e->hash);
        struct entry *gone = NULL, *evicted = NULL;
        size_t grow_from = 0;
        uv_mutex_lock(&sh->lock);
        struct entry *old = vd_cache_find(sh, e->hash, qi->qname_lower, qi->qname_len, qi->qtype,
                                          qi->qclass, qi->edns_do);
        if (e->rcode == VD_RCODE_SERVFAIL && old != NULL && old->rcode != VD_RCODE_SERVFAIL) {
                /* Kept alongside the older records, which serve-stale may still use. */
                old->servfail_until = now_ms + (uint64_t)e->ttl * 1000;
                vd_cache_lru_touch(sh, old);
                sh->counters.stores++;
                uv_mutex_unlock(&sh->lock);
                free(e);
                return;
        }
        if (old != NULL) {
                unlink_entry(sh, old);
                gone = old;
        } else if (sh->counters.entries >= sh->max_entries && sh->lru_tail != NULL) {
                evicted = sh->lru_tail;
                unlink_entry(sh, evicted);
                sh->counters.evictions++;
        }
        struct entry **bucket = &sh->buckets[e->hash & sh->mask];
        e->hash_next = *bucket;
        *bucket = e;
        lru_push_front(sh, e);
        sh->counters.entries++;
        sh->counters.stores++;
        if (sh->counters.entries > sh->mask + 1 && sh->mask + 1 < sh->max_buckets)
                grow_from = sh->mask + 1;
        uv_mutex_unlock(&sh->lock);

        free(gone);
        free(evicted);
        if (grow_from != 0)
                grow_buckets(sh, grow_from);
}
