/* cache_int.h — the cache's entry layout, shards and store scratch space, for its parts only:
 * the table and LRU lists (cache.c), the store path that filters an upstream message
 * (cache_store.c), the record writer that compresses what is kept (cache_compress.c) and the
 * lookups that write responses (cache_answer.c). Nothing else includes it; the public contract
 * is vpcdns/cache.h, and cache.c's top comment describes the layout and the locking. */
#ifndef VPCDNS_CACHE_INT_H
#define VPCDNS_CACHE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "vpcdns/cache.h"
#include "vpcdns/siphash.h"
#include "vpcdns/wire.h"

#define MAX_CHAIN_HOPS 8 /* CNAME/DNAME links followed from the question name */
#define MAX_DATA VD_TCP_MAX
#define MAX_RECORDS (MAX_DATA / 11)
#define MAX_BUCKETS ((size_t)1 << 24)
#define INITIAL_BUCKETS ((size_t)1024)
#define MAX_SHARDS 64             /* power of two */
#define MIN_SHARD_ENTRIES 256     /* no more shards than keep at least this many entries each */
#define MAX_TARGETS 1024          /* compression pointer targets per stored answer */
#define MAX_TARGET_NAMES 128      /* names whose suffixes are targets */
#define POINTER_MAX 0x3FFF        /* the largest offset a compression pointer reaches */
#define TTL_MAX_VALID 0x7FFFFFFFu /* RFC 2181 §8: larger TTLs are treated as zero */
#define STALE_TTL 30              /* RFC 8767 §4: TTL of every record served stale */

enum {
        TYPE_DNAME = 39,
        TYPE_RRSIG = 46,
        TYPE_NSEC = 47,
        TYPE_NSEC3 = 50,
};

struct entry {
        struct entry *hash_next;
        struct entry *lru_prev; /* towards the most recently used */
        struct entry *lru_next; /* towards the least recently used */
        uint64_t hash;
        uint64_t stored_ms;      /* when the answer arrived */
        uint64_t servfail_until; /* ms: a SERVFAIL kept alongside the records (see above) */
        uint32_t ttl;            /* lifetime in seconds after the clamps */
        uint32_t orig_ttl;       /* the smallest TTL the upstream gave, before the clamps */
        uint32_t data_len;
        uint32_t an_len; /* octets of data that are answer-section records */
        uint16_t qtype;
        uint16_t qclass;
        uint16_t nrecords;
        uint16_t ancount;
        uint16_t nscount;
        uint8_t rcode;
        uint8_t key_len;
        bool dnssec_ok;  /* key: the client's DO bit */
        bool ad;         /* the upstream set AD */
        bool prefetched; /* vd_cache_take_prefetch has said true for this entry */
        uint32_t meta[]; /* nrecords, then key name, then data */
};

/* One lock's worth of the cache. Aligned so that two shards never share a cache line. */
struct shard {
        _Alignas(64) uv_mutex_t lock;
        struct entry **buckets;
        size_t mask;
        size_t max_buckets; /* the size the bucket array may grow to */
        size_t max_entries; /* this shard's share of the cache's bound */
        struct entry *lru_head;
        struct entry *lru_tail;
        vd_cache_counters counters;
};

struct vd_cache {
        vd_cache_options opt;
        uint64_t seed0, seed1;
        size_t shard_mask;
        struct shard *shards;
};

/* A name already written that a compression pointer may reach: a suffix of it, lower-cased,
 * at message offset msg_off. */
struct target {
        const uint8_t *lower;
        uint16_t len;
        uint16_t msg_off;
};

/* Scratch space for vd_cache_store, one per thread, so that a rejected answer costs no
 * allocation and stores on different threads never share it. */
struct scratch {
        uint8_t data[MAX_DATA];
        uint32_t meta[MAX_RECORDS];
        uint8_t kept[65536 / 8]; /* answer records already kept, by index */
        struct target targets[MAX_TARGETS];
        uint8_t names[MAX_TARGET_NAMES][VD_NAME_MAX]; /* what targets[].lower points into */
};

/* One parsed resource record of the upstream message. */
struct rr {
        size_t start; /* owner name */
        size_t fixed; /* type field */
        size_t end;   /* just past the rdata */
        uint16_t type;
        uint16_t rclass;
        uint16_t covered; /* RRSIG: the type it covers; else type */
        uint8_t owner[VD_NAME_MAX];
        size_t owner_len;
};

/* The records being kept, written into the scratch data / meta, names compressed. */
struct kept {
        size_t base; /* the message offset of data[0] in every response: header + question */
        size_t len;
        size_t n;
        size_t n_targets;
        size_t n_names;
        uint32_t min_ttl;
        uint32_t soa_minimum;
        bool have_soa;
};

static inline uint64_t key_hash(const vd_cache *c, const uint8_t *name, size_t name_len,
                                uint16_t qtype, uint16_t qclass, bool dnssec_ok)
{
        uint8_t key[VD_NAME_MAX + 5];
        memcpy(key, name, name_len);
        vd_wire_put16(key + name_len, qtype);
        vd_wire_put16(key + name_len + 2, qclass);
        key[name_len + 4] = dnssec_ok ? 1 : 0;
        return vd_siphash13(c->seed0, c->seed1, key, name_len + 5);
}

static inline uint8_t *entry_key(struct entry *e)
{
        return (uint8_t *)(e->meta + e->nrecords);
}

static inline uint8_t *entry_data(struct entry *e)
{
        return entry_key(e) + e->key_len;
}

static inline struct shard *shard_of(const vd_cache *c, uint64_t hash)
{
        return &c->shards[(hash >> 32) & c->shard_mask];
}

/* cache.c: the hash table and LRU lists. find and lru_touch run under the shard's lock. */
struct entry *vd_cache_find(struct shard *sh, uint64_t hash, const uint8_t *name, size_t name_len,
                            uint16_t qtype, uint16_t qclass, bool dnssec_ok);
void vd_cache_lru_touch(struct shard *sh, struct entry *e);
/* Takes ownership of e (complete, its hash set): links it in place of the older entry of qi's
 * key, evicting the least recently used one when the shard is full; a SERVFAIL over older
 * records only marks the older entry, and e is freed. Takes and lets go of the shard's lock. */
void vd_cache_insert(vd_cache *c, const vd_query_info *qi, struct entry *e, uint64_t now_ms);

/* cache_compress.c: writing the kept records into the scratch space, names compressed. */
/* Makes the suffixes of lower (len octets) that start in its first literal octets, written at
 * message offset msg_off, targets of later compression pointers. */
void vd_cache_add_targets(struct scratch *c, struct kept *k, const uint8_t *lower, size_t len,
                          size_t literal, size_t msg_off);
/* Appends record rr of msg to the kept set (0), or fails (negative errno). */
int vd_cache_keep_record(struct scratch *c, struct kept *k, const uint8_t *msg,
                         const struct rr *rr);

#endif
