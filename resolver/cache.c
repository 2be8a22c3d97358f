/* cache.c — the process's cache of upstream answers, shared by every worker thread: the
 * chain filter that decides what of an upstream message is kept, the entry store (lock-striped
 * shards, each a hash table + LRU list), and the response writer that serves an entry with its
 * TTLs counted down.
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
#include <sys/random.h>
#include <time.h>
#include <uv.h>

#include "vpcdns/siphash.h"
#include "vpcdns/cache.h"

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
static _Thread_local struct scratch store_scratch;

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

static uint64_t key_hash(const vd_cache *c, const uint8_t *name, size_t name_len, uint16_t qtype,
                         uint16_t qclass, bool dnssec_ok)
{
        uint8_t key[VD_NAME_MAX + 5];
        memcpy(key, name, name_len);
        vd_wire_put16(key + name_len, qtype);
        vd_wire_put16(key + name_len + 2, qclass);
        key[name_len + 4] = dnssec_ok ? 1 : 0;
        return vd_siphash13(c->seed0, c->seed1, key, name_len + 5);
}

static uint8_t *entry_key(struct entry *e)
{
        return (uint8_t *)(e->meta + e->nrecords);
}

static uint8_t *entry_data(struct entry *e)
{
        return entry_key(e) + e->key_len;
}

void vd_cache_options_default(vd_cache_options *o)
{
        o->max_entries = 100000;
        o->min_ttl = 0;
        o->max_ttl = 86400;
        o->max_neg_ttl = 3600;
        o->servfail_ttl = 5;
}

static struct shard *shard_of(const vd_cache *c, uint64_t hash)
{
        return &c->shards[(hash >> 32) & c->shard_mask];
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

static void lru_touch(struct shard *sh, struct entry *e)
{
        if (sh->lru_head == e)
                return;
        lru_unlink(sh, e);
        lru_push_front(sh, e);
}

static struct entry *find(struct shard *sh, uint64_t hash, const uint8_t *name, size_t name_len,
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

/* --- reading the upstream message --- */

static int read_rr(const uint8_t *msg, size_t len, size_t *pos, struct rr *rr)
{
        size_t p = *pos;
        rr->start = p;
        if (vd_wire_read_name(msg, len, &p, rr->owner, &rr->owner_len, true) != 0)
                return -EBADMSG;
        p = rr->start;
        if (vd_wire_skip_rr(msg, len, &p, &rr->type, &rr->fixed) != 0)
                return -EBADMSG;
        rr->end = p;
        rr->rclass = vd_wire_get16(msg + rr->fixed + 2);
        rr->covered = rr->type;
        if (rr->type == TYPE_RRSIG) {
                if (rr->end - rr->fixed < 10 + 18) /* RFC 4034 §3.1 fixed fields */
                        return -EBADMSG;
                rr->covered = vd_wire_get16(msg + rr->fixed + 10);
        }
        *pos = p;
        return 0;
}

static bool name_eq(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
        return a_len == b_len && memcmp(a, b, a_len) == 0;
}

/* Whether lower-cased name a is b or one of b's ancestors (proper = not b itself). */
static bool name_is_suffix(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                           bool proper)
{
        size_t off = 0;
        while (off < b_len) {
                if (b_len - off == a_len && memcmp(a, b + off, a_len) == 0)
                        return !proper || off > 0;
                if (b[off] == 0)
                        break;
                off += 1 + (size_t)b[off];
        }
        return false;
}

static bool room(const struct kept *k, size_t n)
{
        return k->len <= MAX_DATA && MAX_DATA - k->len >= n;
}

/* RFC 1035 types whose rdata names may be compressed (RFC 3597 §4): no other type's. */
static bool rdata_compressible(uint16_t type)
{
        switch (type) {
        case 2:  /* NS */
        case 3:  /* MD */
        case 4:  /* MF */
        case 5:  /* CNAME */
        case 6:  /* SOA */
        case 7:  /* MB */
        case 8:  /* MG */
        case 9:  /* MR */
        case 12: /* PTR */
        case 14: /* MINFO */
        case 15: /* MX */
                return true;
        default:
                return false;
        }
}

static void lower_name(const uint8_t *name, size_t len, uint8_t *out)
{
        /* Length octets are at most 63, below 'A': one rule for the whole name. */
        for (size_t i = 0; i < len; i++)
                out[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (uint8_t)(name[i] + 32) : name[i];
}

/* Makes every suffix of lower (len octets) that starts in its first literal octets, written at
 * message offset msg_off, a target for later pointers. */
static void add_targets(struct scratch *c, struct kept *k, const uint8_t *lower, size_t len,
                        size_t literal, size_t msg_off)
{
        if (k->n_names >= MAX_TARGET_NAMES)
                return;
        uint8_t *copy = c->names[k->n_names++];
        memcpy(copy, lower, len);
        for (size_t p = 0; p < literal && copy[p] != 0 && k->n_targets < MAX_TARGETS;
             p += 1 + (size_t)copy[p]) {
                if (msg_off + p > POINTER_MAX)
                        return;
                c->targets[k->n_targets++] = (struct target){.lower = copy + p,
                                                             .len = (uint16_t)(len - p),
                                                             .msg_off = (uint16_t)(msg_off + p)};
        }
}

/* Appends name (uncompressed wire form, as the upstream spelt it). With compress, its longest
 * suffix already written (question name included, letter case aside) becomes a pointer, and
 * what it writes becomes a target itself. */
static int put_name(struct scratch *c, struct kept *k, const uint8_t *name, size_t len,
                    bool compress)
{
        uint8_t lower[VD_NAME_MAX];
        size_t literal = len;
        int pointer = -1;
        if (compress) {
                lower_name(name, len, lower);
                for (size_t p = 0; name[p] != 0 && pointer < 0; p += 1 + (size_t)name[p]) {
                        for (size_t t = 0; t < k->n_targets; t++) {
                                const struct target *tg = &c->targets[t];
                                if (tg->len == len - p &&
                                    memcmp(tg->lower, lower + p, len - p) == 0) {
                                        literal = p;
                                        pointer = tg->msg_off;
                                        break;
                                }
                        }
                }
        }
        size_t need = literal + (pointer >= 0 ? 2 : 0);
        if (!room(k, need))
                return -EMSGSIZE;
        uint8_t *w = c->data + k->len;
        memcpy(w, name, literal);
        if (pointer >= 0)
                vd_wire_put16(w + literal, (uint16_t)(0xC000u | (unsigned)pointer));
        if (compress)
                add_targets(c, k, lower, len, literal, k->base + k->len);
        k->len += need;
        return 0;
}

/* Appends one record to the kept set: its owner and the names in the rdata of the RFC 1035
 * types compressed against the question and the names before them; other rdata names written
 * out in full (expanded when the upstream compressed them). */
static int keep_record(struct scratch *c, struct kept *k, const uint8_t *msg, const struct rr *rr)
{
        uint8_t name[VD_NAME_MAX];
        size_t name_len;
        size_t pos = rr->start;
        int rc;

        if (k->n >= MAX_RECORDS)
                return -EMSGSIZE;
        /* The owner as the upstream spelt it; one that is the question name (or ends in it)
         * becomes a pointer into the question, which is the client's own spelling. */
        if (vd_wire_read_name(msg, rr->end, &pos, name, &name_len, false) != 0)
                return -EBADMSG;
        if ((rc = put_name(c, k, name, name_len, true)) != 0)
                return rc;
        if (!room(k, 10))
                return -EMSGSIZE;
        memcpy(c->data + k->len, msg + rr->fixed, 8); /* type, class, TTL; rdlength below */
        size_t ttl_off = k->len + 4;
        k->len += 10;

        size_t rdata = rr->fixed + 10;
        size_t end = rr->end;
        size_t prefix, names;
        uint16_t rdlen = (uint16_t)(end - rdata);
        if ((rr->type == VD_TYPE_A && rdlen != 4) || (rr->type == VD_TYPE_AAAA && rdlen != 16))
                return -EBADMSG;
        if (vd_wire_rdata_names(rr->type, &prefix, &names)) {
                bool compress = rdata_compressible(rr->type);
                if (rr->type == 35) {
                        for (int s = 0; s < 3; s++) {
                                if (rdata + prefix >= end)
                                        return -EBADMSG;
                                prefix += 1 + (size_t)msg[rdata + prefix];
                        }
                }
                if (prefix > rdlen || !room(k, prefix))
                        return prefix > rdlen ? -EBADMSG : -EMSGSIZE;
                memcpy(c->data + k->len, msg + rdata, prefix);
                k->len += prefix;
                size_t p = rdata + prefix;
                for (size_t i = 0; i < names; i++) {
                        /* Bounded by the rdata: the inline part of a name stays inside it. */
                        if (p >= end || vd_wire_read_name(msg, end, &p, name, &name_len, false))
                                return -EBADMSG;
                        if ((rc = put_name(c, k, name, name_len, compress)) != 0)
                                return rc;
                }
                size_t rest = end - p;
                if (rr->type == VD_TYPE_SOA) {
                        if (rest != 20)
                                return -EBADMSG;
                        k->soa_minimum = vd_wire_get32(msg + p + 16);
                }
                if (!room(k, rest))
                        return -EMSGSIZE;
                memcpy(c->data + k->len, msg + p, rest);
                k->len += rest;
        } else {
                if (!room(k, rdlen))
                        return -EMSGSIZE;
                memcpy(c->data + k->len, msg + rdata, rdlen);
                k->len += rdlen;
        }
        size_t new_rdlen = k->len - (ttl_off + 6);
        if (new_rdlen > 0xFFFF || ttl_off > 0xFFFF)
                return -EMSGSIZE;
        vd_wire_put16(c->data + ttl_off + 4, (uint16_t)new_rdlen);

        uint32_t ttl = vd_wire_get32(msg + rr->fixed + 4);
        if (ttl > TTL_MAX_VALID)
                ttl = 0;
        if (ttl < k->min_ttl)
                k->min_ttl = ttl;
        c->meta[k->n++] = (uint32_t)ttl_off;
        return 0;
}

static bool kept_get(const struct scratch *c, size_t i)
{
        return (c->kept[i / 8] >> (i % 8)) & 1;
}

static void kept_set(struct scratch *c, size_t i)
{
        c->kept[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Where the walk of the answer chain ended. */
struct chain {
        uint8_t name[VD_NAME_MAX]; /* the last name of the chain, lower-cased */
        size_t name_len;
        bool answered; /* records of the question type were found at the last name */
};

/* Keeps the DNAMEs of the answer section above the chain's current name, with their RRSIGs
 * for DO (RFC 6672: they precede the CNAME they synthesise). */
static int keep_dnames_above(struct scratch *c, struct kept *k, const vd_query_info *qi,
                             const uint8_t *msg, size_t len, size_t an_start, uint16_t ancount,
                             const struct chain *ch)
{
        struct rr rr;
        size_t pos = an_start;
        int rc;
        for (size_t i = 0; i < ancount; i++) {
                if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                        return rc;
                if (kept_get(c, i) || rr.rclass != qi->qclass || rr.covered != TYPE_DNAME ||
                    (rr.type == TYPE_RRSIG && !qi->edns_do) ||
                    !name_is_suffix(rr.owner, rr.owner_len, ch->name, ch->name_len, true))
                        continue;
                if ((rc = keep_record(c, k, msg, &rr)) != 0)
                        return rc;
                kept_set(c, i);
        }
        return 0;
}

/* Keeps the records of the answer section that lie on the question's chain: records of the
 * type at the current name (and, for DO, their RRSIGs); else the name's CNAME, the DNAMEs
 * above it that produced it, and their RRSIGs, and the walk moves to the CNAME's target. */
static int walk_chain(struct scratch *c, struct kept *k, const vd_query_info *qi,
                      const uint8_t *msg, size_t len, size_t an_start, uint16_t ancount,
                      struct chain *ch)
{
        struct rr rr;
        size_t pos;
        int rc;

        memcpy(ch->name, qi->qname_lower, qi->qname_len);
        ch->name_len = qi->qname_len;
        ch->answered = false;
        memset(c->kept, 0, (size_t)ancount / 8 + 1);

        for (int hop = 0;; hop++) {
                /* A CNAME question answered by a CNAME a DNAME synthesised: the DNAME (and
                 * its RRSIGs) go first, as the upstream sent them (RFC 6672 §3.1). */
                if (qi->qtype == VD_TYPE_CNAME &&
                    (rc = keep_dnames_above(c, k, qi, msg, len, an_start, ancount, ch)) != 0)
                        return rc;
                /* Records of the question type at the current name. */
                pos = an_start;
                for (size_t i = 0; i < ancount; i++) {
                        if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                                return rc;
                        if (kept_get(c, i) || rr.rclass != qi->qclass ||
                            !name_eq(rr.owner, rr.owner_len, ch->name, ch->name_len))
                                continue;
                        bool match =
                            rr.type == qi->qtype ||
                            (qi->edns_do && rr.type == TYPE_RRSIG && rr.covered == qi->qtype);
                        if (!match)
                                continue;
                        if ((rc = keep_record(c, k, msg, &rr)) != 0)
                                return rc;
                        kept_set(c, i);
                        if (rr.type == qi->qtype)
                                ch->answered = true;
                }
                if (ch->answered)
                        return 0;

                /* The current name's CNAME (the first one; a name has at most one). */
                size_t cname_index = SIZE_MAX;
                struct rr cname;
                pos = an_start;
                for (size_t i = 0; i < ancount && cname_index == SIZE_MAX; i++) {
                        if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                                return rc;
                        if (rr.type == VD_TYPE_CNAME && rr.rclass == qi->qclass &&
                            !kept_get(c, i) &&
                            name_eq(rr.owner, rr.owner_len, ch->name, ch->name_len)) {
                                cname_index = i;
                                cname = rr;
                        }
                }
                if (cname_index == SIZE_MAX)
                        return 0; /* the chain ends here without an answer */
                if (hop >= MAX_CHAIN_HOPS)
                        return -ELOOP;

                /* DNAMEs above the current name (RFC 6672: they precede the CNAME they
                 * synthesise), then the CNAME, each with its RRSIGs for DO. */
                for (int pass = 0; pass < 2; pass++) {
                        pos = an_start;
                        for (size_t i = 0; i < ancount; i++) {
                                if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                                        return rc;
                                if (kept_get(c, i) || rr.rclass != qi->qclass)
                                        continue;
                                if (rr.type == TYPE_RRSIG && !qi->edns_do)
                                        continue;
                                bool take;
                                if (pass == 0)
                                        take = rr.covered == TYPE_DNAME &&
                                               name_is_suffix(rr.owner, rr.owner_len, ch->name,
                                                              ch->name_len, true);
                                else
                                        take = rr.covered == VD_TYPE_CNAME &&
                                               name_eq(rr.owner, rr.owner_len, ch->name,
                                                       ch->name_len) &&
                                               (rr.type == TYPE_RRSIG || i == cname_index);
                                if (!take)
                                        continue;
                                if ((rc = keep_record(c, k, msg, &rr)) != 0)
                                        return rc;
                                kept_set(c, i);
                        }
                }
                size_t p = cname.fixed + 10;
                if (vd_wire_read_name(msg, cname.end, &p, ch->name, &ch->name_len, true) != 0 ||
                    p != cname.end)
                        return -EBADMSG;
        }
}

/* Keeps from the authority section the SOA of the zone that holds the chain's last name (for
 * a negative answer) and, for DO, the denial records and their RRSIGs. Returns the number of
 * records kept. */
static int keep_authority(struct scratch *c, struct kept *k, const vd_query_info *qi,
                          const uint8_t *msg, size_t len, size_t ns_start, uint16_t nscount,
                          const struct chain *ch, bool negative, size_t *kept_count)
{
        uint8_t soa_owner[VD_NAME_MAX];
        size_t soa_owner_len = 0;
        struct rr rr;
        size_t pos = ns_start;
        int rc;

        *kept_count = 0;
        if (negative) {
                for (size_t i = 0; i < nscount && !k->have_soa; i++) {
                        if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                                return rc;
                        if (rr.type != VD_TYPE_SOA || rr.rclass != qi->qclass ||
                            !name_is_suffix(rr.owner, rr.owner_len, ch->name, ch->name_len, false))
                                continue;
                        if ((rc = keep_record(c, k, msg, &rr)) != 0)
                                return rc;
                        k->have_soa = true;
                        memcpy(soa_owner, rr.owner, rr.owner_len);
                        soa_owner_len = rr.owner_len;
                        (*kept_count)++;
                }
                if (!k->have_soa)
                        return -ENODATA;
        }
        if (!qi->edns_do)
                return 0;
        pos = ns_start;
        for (size_t i = 0; i < nscount; i++) {
                if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                        return rc;
                if (rr.rclass != qi->qclass)
                        continue;
                bool take = rr.type == TYPE_NSEC || rr.type == TYPE_NSEC3 ||
                            (rr.type == TYPE_RRSIG &&
                             (rr.covered == TYPE_NSEC || rr.covered == TYPE_NSEC3 ||
                              (rr.covered == VD_TYPE_SOA && k->have_soa &&
                               name_eq(rr.owner, rr.owner_len, soa_owner, soa_owner_len))));
                if (!take)
                        continue;
                if ((rc = keep_record(c, k, msg, &rr)) != 0)
                        return rc;
                (*kept_count)++;
        }
        return 0;
}

/* Question types whose answers are never stored: ANY (RFC 8482 answers vary), zone transfers
 * and other meta types, OPT. */
static bool qtype_cacheable(uint16_t qtype)
{
        if (qtype == VD_TYPE_OPT || qtype == 0)
                return false;
        return qtype < 128 || qtype > 255;
}

int vd_cache_store(vd_cache *c, const vd_query_info *qi, const uint8_t *answer, size_t len,
                   uint64_t now_ms)
{
        struct scratch *scratch = &store_scratch;
        uint8_t qname[VD_NAME_MAX];
        size_t qname_len;
        struct kept k = {.min_ttl = UINT32_MAX};
        struct chain ch;
        struct rr rr;
        int rc;

        if (c == NULL || qi == NULL || answer == NULL || !qi->question_ok)
                return -EINVAL;
        if (c->opt.max_entries == 0)
                return -ENOSPC;
        if (!qtype_cacheable(qi->qtype))
                return -ENOTSUP;
        /* Answers to a CD=1 question may hold data the upstream could not validate; they are
         * never served to other clients. */
        if (qi->flags & VD_FLAG_CD)
                return -ENOTSUP;
        if (len < VD_HEADER_LEN)
                return -EBADMSG;
        uint16_t flags = vd_wire_get16(answer + 2);
        if (!(flags & VD_FLAG_QR) || VD_OPCODE(flags) != 0 || vd_wire_get16(answer + 4) != 1)
                return -EBADMSG;
        if (flags & VD_FLAG_TC)
                return -EMSGSIZE;
        uint8_t rcode = flags & 0x0Fu;
        if (rcode != VD_RCODE_NOERROR && rcode != VD_RCODE_NXDOMAIN && rcode != VD_RCODE_SERVFAIL)
                return -ENOTSUP;

        size_t pos = VD_HEADER_LEN;
        if (vd_wire_read_name(answer, len, &pos, qname, &qname_len, true) != 0 ||
            !name_eq(qname, qname_len, qi->qname_lower, qi->qname_len) || pos + 4 > len ||
            vd_wire_get16(answer + pos) != qi->qtype ||
            vd_wire_get16(answer + pos + 2) != qi->qclass)
                return -EBADMSG;
        pos += 4;

        /* The whole message must parse: a malformed one is not trusted in any part. */
        uint16_t an = vd_wire_get16(answer + 6);
        uint16_t ns = vd_wire_get16(answer + 8);
        uint16_t ar = vd_wire_get16(answer + 10);
        size_t an_start = pos, ns_start = 0;
        bool seen_opt = false;
        for (size_t i = 0; i < (size_t)an + ns + ar; i++) {
                if (i == an)
                        ns_start = pos;
                if (read_rr(answer, len, &pos, &rr) != 0)
                        return -EBADMSG;
                if (rr.type != VD_TYPE_OPT)
                        continue;
                if (i < (size_t)an + ns || seen_opt || rr.owner_len != 1)
                        return -EBADMSG;
                seen_opt = true;
                if (answer[rr.fixed + 4] != 0) /* extended rcode (BADVERS, ...) */
                        return -ENOTSUP;
        }
        if (pos != len) /* octets after the last record: not a well-formed message */
                return -EBADMSG;
        if (ns_start == 0) /* no authority or additional records */
                ns_start = pos;

        /* Records are written as they will follow the question in every response: names may
         * point into the question, whose length every client asking this key shares. */
        k.base = VD_HEADER_LEN + qi->qname_len + 4;
        add_targets(scratch, &k, qi->qname_lower, qi->qname_len, qi->qname_len, VD_HEADER_LEN);

        uint32_t ttl;
        uint16_t ancount_kept = 0, nscount_kept = 0;
        size_t an_len = 0;
        if (rcode == VD_RCODE_SERVFAIL) {
                ttl = c->opt.servfail_ttl;
                k.min_ttl = ttl;
        } else {
                if ((rc = walk_chain(scratch, &k, qi, answer, len, an_start, an, &ch)) != 0)
                        return rc;
                ancount_kept = (uint16_t)k.n;
                an_len = k.len;
                bool negative = !ch.answered;
                if (!negative && rcode != VD_RCODE_NOERROR)
                        return -EBADMSG; /* NXDOMAIN with an answer: inconsistent */
                size_t auth = 0;
                if ((rc = keep_authority(scratch, &k, qi, answer, len, ns_start, ns, &ch, negative,
                                         &auth)) != 0)
                        return rc;
                nscount_kept = (uint16_t)auth;
                if (negative) {
                        ttl = k.min_ttl < k.soa_minimum ? k.min_ttl : k.soa_minimum;
                        if (ttl > c->opt.max_neg_ttl)
                                ttl = c->opt.max_neg_ttl;
                } else {
                        ttl = k.min_ttl;
                        if (ttl < c->opt.min_ttl)
                                ttl = c->opt.min_ttl;
                        if (ttl > c->opt.max_ttl)
                                ttl = c->opt.max_ttl;
                }
        }
        if (ttl == 0)
                return -EAGAIN;

        size_t meta_size = k.n * sizeof(uint32_t);
        struct entry *e = malloc(sizeof(*e) + meta_size + qi->qname_len + k.len);
        if (e == NULL)
                return -ENOMEM;
        memset(e, 0, sizeof(*e));
        e->hash = key_hash(c, qi->qname_lower, qi->qname_len, qi->qtype, qi->qclass, qi->edns_do);
        e->stored_ms = now_ms;
        e->ttl = ttl;
        e->orig_ttl = k.min_ttl;
        e->data_len = (uint32_t)k.len;
        e->an_len = (uint32_t)an_len;
        e->qtype = qi->qtype;
        e->qclass = qi->qclass;
        e->nrecords = (uint16_t)k.n;
        e->ancount = ancount_kept;
        e->nscount = nscount_kept;
        e->rcode = rcode;
        e->key_len = qi->qname_len;
        e->dnssec_ok = qi->edns_do;
        e->ad = (flags & VD_FLAG_AD) != 0 && rcode != VD_RCODE_SERVFAIL;
        memcpy(e->meta, scratch->meta, meta_size);
        memcpy(entry_key(e), qi->qname_lower, qi->qname_len);
        memcpy(entry_data(e), scratch->data, k.len);

        struct shard *sh = shard_of(c, e->hash);
        struct entry *gone = NULL, *evicted = NULL;
        size_t grow_from = 0;
        uv_mutex_lock(&sh->lock);
        struct entry *old =
            find(sh, e->hash, qi->qname_lower, qi->qname_len, qi->qtype, qi->qclass, qi->edns_do);
        if (rcode == VD_RCODE_SERVFAIL && old != NULL && old->rcode != VD_RCODE_SERVFAIL) {
                /* Kept alongside the older records, which serve-stale may still use. */
                old->servfail_until = now_ms + (uint64_t)ttl * 1000;
                lru_touch(sh, old);
                sh->counters.stores++;
                uv_mutex_unlock(&sh->lock);
                free(e);
                return 0;
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
        return 0;
}

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
        return find(sh, hash, qi->qname_lower, qi->qname_len, qi->qtype, qi->qclass, qi->edns_do);
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
                lru_touch(sh, e);
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
                        lru_touch(sh, e);
        }
        uv_mutex_unlock(&sh->lock);
        return len;
}
